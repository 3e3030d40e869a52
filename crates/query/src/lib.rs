//! Shoal's query layer: condition trees, `search_by_*`, sorting, paging and projection,
//! answered from a [`shoal_store::Snapshot`] with index scans wherever an index can
//! narrow the candidates; every candidate is re-checked against the full condition, so
//! indexes only ever speed a query up, never change its answer.
//!
//! Whatever a request holds, a query runs in bounded stack and memory: conditions nest at
//! most [`MAX_DEPTH`] groups and sorts take at most [`MAX_SORT_KEYS`] keys; candidate key
//! sets and sort buffers are bounded by [`Limits`], and results are handed out one by one
//! ([`for_each`]) so that they can be streamed.

mod condition;
mod error;
mod rest;
mod search;

#[cfg(test)]
mod tests;

pub use condition::{Comparator, Condition, MAX_DEPTH, Operator};
pub use error::QueryError;
pub use rest::{RestQuery, parse_rest_query};
pub use search::{
    Limits, MAX_SORT_KEYS, Projection, Query, Sort, by_ids, count, for_each, value_condition,
};
