//! Shoal's query layer: condition trees, `search_by_*`, sorting, paging and projection,
//! answered from a [`shoal_store::Snapshot`].
//!
//! What it owns:
//! - **Conditions** ([`Condition`], [`Comparator`], [`Operator`]): Harper's comparators
//!   and `and`/`or` groups, checked against a record by [`Condition::matches`].
//! - **Plans.** [`for_each`] and [`count`] narrow the candidates with index scans wherever
//!   an index can, then re-check every candidate against the full condition, so indexes
//!   only ever speed a query up, never change its answer. [`by_ids`] reads by primary key.
//! - **REST query strings** ([`parse_rest_query`]): `name=Penny&age=gt=3&select(name)`,
//!   percent-decoded, typed and bounded, into the same [`Query`] parts.
//!
//! Whatever a request holds, a query runs in bounded stack and memory: conditions nest at
//! most [`MAX_DEPTH`] groups and sorts take at most [`MAX_SORT_KEYS`] keys; candidate key
//! sets and sort buffers are bounded by [`Limits`], and results are handed out one by one
//! ([`for_each`]) so that they can be streamed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use serde_json::json;
//! use shoal_query::{Query, for_each, parse_rest_query};
//! use shoal_store::{Mode, Store, StoreOptions, TableSpec, Write};
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreOptions::new(dir.path(), "node-a"))?;
//! let db = store.create_database("dev").await?;
//! db.write(Write::CreateTable(TableSpec { name: "dog".into(), primary_key: "id".into(), ..Default::default() }), None).await?;
//! let dogs = [json!({"id": 1, "name": "Penny", "age": 5}), json!({"id": 2, "name": "Kato", "age": 2})];
//! let records = dogs.iter().map(|d| d.as_object().unwrap().clone()).collect();
//! db.write(Write::Records { table: "dog".into(), mode: Mode::Insert, records }, None).await?;
//!
//! let rest = parse_rest_query("age=gt=3&select(name)")?;
//! let query = Query { condition: rest.condition, projection: rest.select, ..Default::default() };
//! let snapshot = db.snapshot()?;
//! let dog = snapshot.table("dog")?;
//! let mut found = Vec::new();
//! for_each(&snapshot, &dog, &query, |json| {
//!     found.push(serde_json::from_slice::<serde_json::Value>(json).unwrap());
//!     Ok(true)
//! })?;
//! assert_eq!(found, vec![json!({"name": "Penny"})]);
//! # drop(snapshot);
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! Not here: permissions (the caller asks `shoal_auth` first), HTTP and wire formats
//! (the server renders the JSON this layer hands out), and writes (the store's
//! [`shoal_store::Database::write`]). There is no SQL parser yet.

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
