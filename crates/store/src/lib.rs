//! Shoal's storage engine.
//!
//! A [`Store`] holds a node's databases, one LMDB environment each. A [`Database`] keeps
//! its tables, their secondary indexes, its transaction log and its metadata as trees of
//! that one environment, so each commit covers all of them atomically.
//!
//! Guarantees:
//! - **Durable group commit.** [`Database::write`] returns only after the transaction
//!   holding the write has been committed and synced. One writer thread per database
//!   (worker `store/writer/<database>` in [`StoreOptions::workers`]) batches concurrent
//!   writes into one transaction; each request is applied in a nested transaction, so it
//!   is all-or-nothing even inside a batch.
//! - **Snapshot reads.** [`Database::snapshot`] is a read transaction: consistent, never
//!   blocked by the writer.
//! - **Versions.** Every stored record carries its HLC timestamp and origin node; deletes
//!   leave tombstones.
//! - **Transaction log.** Every write appends a [`LogEntry`] in the same commit; the log is
//!   trimmed by age and size ([`Retention`]) and every entry is also published on the
//!   database's change feed ([`Database::subscribe`]).
//! - **Databases.** [`Store::create_database`] and [`Store::drop_database`] commit the
//!   change, and its announcement in the log, in one transaction of the
//!   [`SYSTEM_DATABASE`], then carry it out; a restart finishes what a crash interrupted.
//! - **Following.** [`Database::follow`] (one commit at a time, live from the feed) and
//!   [`Database::follow_batches`] (runs read from the log, bounded in bytes) are the one
//!   way to follow a database's commits from a sequence, a time or now: they catch up from
//!   the log when behind, cut off a follower past its lag limit
//!   ([`FollowError::TooSlow`]) and report where the log was trimmed past them
//!   ([`FollowError::Gap`]) so that the caller can resynchronise.
//!
//! Bounds (each refusal leaves nothing of the write behind):
//! - **Size.** A database holds at most [`StoreOptions::map_size`] bytes: past it, writes
//!   that grow it get [`StoreError::MapFull`], while deletes, drops and log trims still run
//!   on a reserve the map keeps beyond that size, so room can be made.
//! - **Transactions.** A local write whose log entry or any stored record passes
//!   [`StoreOptions::max_transaction_bytes`] gets [`StoreError::TooLarge`].
//! - **Nesting.** A record nests at most [`MAX_DEPTH`] levels.
//! - **Clock.** A peer's timestamp (entry, row, drop, creation) further ahead of the local
//!   wall clock than [`StoreOptions::max_clock_offset_ms`] gets [`StoreError::ClockAhead`]
//!   instead of dragging the clock; the clock itself never wraps ([`MAX_MS`]).
//!
//! The store knows nothing of HTTP, peers or configuration files.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), shoal_store::StoreError> {
//! use shoal_store::{Mode, Store, StoreOptions, TableSpec, Write};
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreOptions::new(dir.path(), "node-a"))?;
//! let db = store.create_database("dev").await?;
//! db.write(Write::CreateTable(TableSpec { name: "dog".into(), primary_key: "id".into(), ..Default::default() }), None).await?;
//! let record = serde_json::json!({"id": 1, "name": "Penny"});
//! let records = vec![record.as_object().unwrap().clone()];
//! let outcome = db.write(Write::Records { table: "dog".into(), mode: Mode::Insert, records }, None).await?;
//! assert_eq!(outcome.written, vec![serde_json::json!(1)]);
//! let snapshot = db.snapshot()?;
//! let dog = snapshot.table("dog")?;
//! assert!(snapshot.get(&dog, &serde_json::json!(1))?.unwrap().json.is_some());
//! store.close().await;
//! # Ok(()) }
//! ```

mod apply;
mod catalog;
mod database;
mod error;
mod follow;
mod hlc;
mod index;
pub mod key;
mod mutate;
mod read;
mod record;
mod store;
mod trees;
mod txlog;
mod writer;

#[cfg(test)]
mod databases_tests;
#[cfg(test)]
mod tests;

pub use apply::{CopyChunk, CopyProgress, CopyRow, RemoteBatch};
pub use catalog::{CREATED_TIME, Catalog, TableDef, TableSpec, UPDATED_TIME};
pub use database::{Database, Pending};
pub use error::{Result, StoreError};
pub use follow::{
    Batch, BatchFollower, BatchLimits, FollowError, FollowOptions, Follower, LogRead, Start,
};
pub use hlc::{DEFAULT_MAX_OFFSET_MS, Hlc, MAX_MS, to_ms, wall_ms};
pub use index::MAX_INDEXED_STRING;
pub use mutate::{MAX_DEPTH, MAX_KEY_LEN, Mode, Outcome, Write};
pub use read::{IndexEntries, Row, Snapshot};
pub use record::Version;
pub use store::{SYSTEM_DATABASE, Store, StoreOptions};
pub use txlog::{Change, ChangeKind, Committed, LogEntry, Retention, SchemaChange};
pub use writer::WriterStats;
