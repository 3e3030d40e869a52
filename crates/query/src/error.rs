//! The query layer's error type.

use shoal_store::StoreError;

/// A query that could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The query is malformed (unknown comparator, wrong value type, ...).
    #[error("{0}")]
    Invalid(String),
    /// Condition groups nest deeper than [`crate::MAX_DEPTH`].
    #[error("conditions are nested more than {} groups deep", crate::MAX_DEPTH)]
    TooDeep,
    /// A sort would hold more than the sort buffer allows, and no index can order it.
    #[error(
        "the results to sort are larger than the sort buffer of {limit} bytes; add a limit,          sort by an indexed attribute, or allow a larger buffer"
    )]
    SortBufferFull {
        /// The buffer's size, in bytes.
        limit: usize,
    },
    /// The store failed or the table does not exist.
    #[error(transparent)]
    Store(#[from] StoreError),
}
