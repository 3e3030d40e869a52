//! Reads: a snapshot is one LMDB read transaction plus the catalog of the same moment.
//! Snapshots never block the writer and are never blocked by it.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use heed::{RoTxn, WithoutTls};
use serde_json::Value;

use crate::apply::{CopyProgress, FLOOR_KEY, FLOOR_VV_PREFIX, copy_key, cursor_key};
use crate::catalog::{Catalog, TableDef};
use crate::error::{Result, StoreError};
use crate::hlc;
use crate::index;
use crate::key;
use crate::mutate::{CREATED_DATABASE_PREFIX, DROPPED_DATABASE_PREFIX, record_key};
use crate::record::Version;
use crate::trees::{Trees, count_key, meta_get_u64, meta_u64s, table_prefix, updated_key};
use crate::txlog::{self, Committed, LogEntry, SEQ_KEY};

/// A consistent, read-only view of one database.
pub struct Snapshot {
    pub(crate) txn: RoTxn<'static, WithoutTls>,
    pub(crate) trees: Trees,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) database: String,
    pub(crate) _open: OpenSnapshot,
}

/// Counts a snapshot among its database's open ones while it lives.
pub(crate) struct OpenSnapshot(Arc<AtomicUsize>);

impl OpenSnapshot {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        OpenSnapshot(count.clone())
    }
}

impl Drop for OpenSnapshot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A live record: its primary key and stored version.
pub type Row<'a> = (Value, Version<'a>);

/// Index entries in order: (encoded value, primary key); see [`Snapshot::index_entries`].
pub type IndexEntries<'a> = Box<dyn Iterator<Item = Result<(&'a [u8], Value)>> + 'a>;

impl Snapshot {
    /// The database's tables as of this snapshot.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// A table's definition, or [`StoreError::TableNotFound`].
    pub fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.catalog
            .tables
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TableNotFound {
                database: self.database.clone(),
                table: name.to_owned(),
            })
    }

    /// The stored version of a record, tombstones included.
    pub fn get(&self, table: &TableDef, pk: &Value) -> Result<Option<Version<'_>>> {
        let key = record_key(table, pk)?;
        self.trees
            .records
            .get(&self.txn, &key)?
            .map(Version::decode)
            .transpose()
    }

    /// Live records with primary keys between the bounds (an open end stops at the other
    /// end's type), in key order or reversed.
    pub fn scan(
        &self,
        table: &TableDef,
        lower: Bound<&Value>,
        upper: Bound<&Value>,
        reverse: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<Row<'_>>> + '_>> {
        let prefix = table_prefix(table.id);
        let (start, end) = index::value_range(&prefix, lower, upper);
        let range = (Bound::Included(&start[..]), Bound::Excluded(&end[..]));
        Ok(if reverse {
            Box::new(
                self.trees
                    .records
                    .rev_range(&self.txn, &range)?
                    .filter_map(live_row),
            )
        } else {
            Box::new(
                self.trees
                    .records
                    .range(&self.txn, &range)?
                    .filter_map(live_row),
            )
        })
    }

    /// Primary keys of records whose `attribute` (or an element of it) lies between the
    /// bounds, inclusive, in value order. Long strings are indexed by their first bytes, so
    /// callers must re-check candidates; a key may repeat (several matching elements).
    pub fn index_scan(
        &self,
        table: &TableDef,
        attribute: &str,
        lower: Bound<&Value>,
        upper: Bound<&Value>,
    ) -> Result<impl Iterator<Item = Result<Value>> + '_> {
        let prefix = index::attribute_prefix(table, attribute);
        let (start, end) = index::value_range(&prefix, lower, upper);
        self.index_keys(prefix.len(), start, end)
    }

    /// Primary keys of records whose string `attribute` starts with `text`.
    pub fn index_prefix(
        &self,
        table: &TableDef,
        attribute: &str,
        text: &str,
    ) -> Result<impl Iterator<Item = Result<Value>> + '_> {
        let prefix = index::attribute_prefix(table, attribute);
        let (start, end) = index::prefix_range(&prefix, text);
        self.index_keys(prefix.len(), start, end)
    }

    /// Index entries of `attribute` whose encoded value lies between the bounds, in value
    /// order or reversed: each entry's value as [`crate::key`] encodes it (a string cut
    /// to [`crate::MAX_INDEXED_STRING`] bytes), and its record's primary key. Entries of
    /// one value follow each other in primary key order, so comparing the encoded values
    /// finds runs of equal values; bounds are encoded values too.
    pub fn index_entries(
        &self,
        table: &TableDef,
        attribute: &str,
        lower: Bound<&[u8]>,
        upper: Bound<&[u8]>,
        reverse: bool,
    ) -> Result<IndexEntries<'_>> {
        let prefix = index::attribute_prefix(table, attribute);
        let at = |v: &[u8]| [&prefix[..], v].concat();
        let start = match lower {
            Bound::Included(v) => at(v),
            Bound::Excluded(v) => key::prefix_end(&at(v)),
            Bound::Unbounded => prefix.clone(),
        };
        let end = match upper {
            Bound::Included(v) => key::prefix_end(&at(v)),
            Bound::Excluded(v) => at(v),
            Bound::Unbounded => key::prefix_end(&prefix),
        };
        let range = (Bound::Included(&start[..]), Bound::Excluded(&end[..]));
        let skip = prefix.len();
        let split = move |item| index_entry(skip, item);
        Ok(if reverse {
            Box::new(self.trees.index.rev_range(&self.txn, &range)?.map(split))
        } else {
            Box::new(self.trees.index.range(&self.txn, &range)?.map(split))
        })
    }

    fn index_keys(
        &self,
        skip: usize,
        start: Vec<u8>,
        end: Vec<u8>,
    ) -> Result<impl Iterator<Item = Result<Value>> + '_> {
        let range = (Bound::Included(&start[..]), Bound::Excluded(&end[..]));
        let iter = self.trees.index.range(&self.txn, &range)?;
        Ok(iter.map(move |item| {
            let (k, _) = item?;
            let corrupt = || StoreError::Corrupt("index key".into());
            let rest = key::skip(&k[skip..]).ok_or_else(corrupt)?;
            let (pk, _) = key::decode(rest).ok_or_else(corrupt)?;
            Ok(pk)
        }))
    }

    /// Every stored version of a table, tombstones included, in key order, starting after
    /// `after` (a full copy streams these).
    pub fn versions(
        &self,
        table: &TableDef,
        after: Option<&Value>,
    ) -> Result<impl Iterator<Item = Result<Row<'_>>> + '_> {
        let prefix = table_prefix(table.id);
        let start = match after {
            Some(pk) => key::prefix_end(&record_key(table, pk)?),
            None => prefix.to_vec(),
        };
        let end = key::prefix_end(&prefix);
        let range = (Bound::Included(&start[..]), Bound::Excluded(&end[..]));
        Ok(self.trees.records.range(&self.txn, &range)?.map(|item| {
            let (k, v) = item?;
            let (pk, _) = key::decode(&k[4..]).ok_or_else(|| StoreError::Corrupt("key".into()))?;
            Ok((pk, Version::decode(v)?))
        }))
    }

    /// The last of `peer`'s log sequences applied here (0: none).
    pub fn cursor(&self, peer: &str) -> Result<u64> {
        meta_get_u64(&self.txn, &self.trees, &cursor_key(peer))
    }

    /// An unfinished full copy from `peer`, if any.
    pub fn copy_progress(&self, peer: &str) -> Result<Option<CopyProgress>> {
        self.trees
            .meta
            .get(&self.txn, &copy_key(peer))?
            .map(|b| {
                serde_json::from_slice(b).map_err(|_| StoreError::Corrupt("copy progress".into()))
            })
            .transpose()
    }

    /// For each origin, the last of its transactions this database holds; this node's own
    /// count as its whole log (`node` is this node's name).
    pub fn version_vector(&self, node: &str) -> Result<Vec<(String, u64)>> {
        let mut out = meta_u64s(&self.txn, &self.trees, b"vv/")?;
        out.retain(|(origin, _)| origin != node);
        out.push((node.to_owned(), self.last_seq()?));
        Ok(out)
    }

    /// The oldest sequence the log still holds, if any.
    pub fn first_seq(&self) -> Result<Option<u64>> {
        Ok(self
            .trees
            .log
            .first(&self.txn)?
            .and_then(|(k, _)| k.try_into().ok().map(u64::from_be_bytes)))
    }

    /// Whether the log still holds every entry from sequence `from` on (it does for any
    /// `from` past the last entry): false once trimming removed one of them.
    pub fn log_retains(&self, from: u64) -> Result<bool> {
        Ok(match self.first_seq()? {
            Some(first) => first <= from,
            None => from > self.last_seq()?,
        })
    }

    /// The first retained log sequence this node committed at or after `ms` (milliseconds
    /// since the epoch, as [`LogEntry::timestamp`] counts them), if any: a binary search,
    /// since commit times never decrease along the log.
    pub fn first_seq_at(&self, ms: f64) -> Result<Option<u64>> {
        let Some(first) = self.first_seq()? else {
            return Ok(None);
        };
        // Everything below `lo` was committed before `ms`; the entry at `hi` (if below
        // `end`) at or after it.
        let end = self.last_seq()? + 1;
        let (mut lo, mut hi) = (first, end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.committed_from(mid)? {
                Some((seq, committed)) if seq < hi => {
                    if hlc::to_ms(committed) >= ms {
                        hi = seq;
                    } else {
                        lo = seq + 1;
                    }
                }
                // No entry in [mid, hi).
                _ => hi = mid,
            }
        }
        Ok(self
            .committed_from(lo)?
            .map(|(seq, _)| seq)
            .filter(|seq| *seq < end))
    }

    /// The first retained entry at or after sequence `from`, with its commit time.
    fn committed_from(&self, from: u64) -> Result<Option<(u64, u64)>> {
        let start = from.to_be_bytes();
        let range = (Bound::Included(&start[..]), Bound::Unbounded);
        let Some(item) = self.trees.log.range(&self.txn, &range)?.next() else {
            return Ok(None);
        };
        let (k, v) = item?;
        let seq = u64::from_be_bytes(
            k.try_into()
                .map_err(|_| StoreError::Corrupt("log key".into()))?,
        );
        Ok(Some((seq, txlog::committed_at(v)?)))
    }

    /// Number of live records in a table.
    pub fn record_count(&self, table: &TableDef) -> Result<u64> {
        meta_get_u64(&self.txn, &self.trees, &count_key(table.id))
    }

    /// HLC timestamp of the table's last record write, if any.
    pub fn last_updated(&self, table: &TableDef) -> Result<Option<u64>> {
        let hlc = meta_get_u64(&self.txn, &self.trees, &updated_key(table.id))?;
        Ok((hlc > 0).then_some(hlc))
    }

    /// Sequence number of the last committed log entry (0 if none yet).
    pub fn last_seq(&self) -> Result<u64> {
        meta_get_u64(&self.txn, &self.trees, SEQ_KEY)
    }

    /// Retained log entries from sequence `from` on, in commit order.
    pub fn log(&self, from: u64) -> Result<impl Iterator<Item = Result<Committed>> + '_> {
        Ok(self.log_sized(from)?.map(|item| item.map(|(c, _)| c)))
    }

    /// Like [`Snapshot::log`], with each entry's stored size in bytes (about what it
    /// takes on the wire), so that readers can bound batches by bytes.
    pub fn log_sized(
        &self,
        from: u64,
    ) -> Result<impl Iterator<Item = Result<(Committed, usize)>> + '_> {
        let start = from.to_be_bytes();
        let range = (Bound::Included(&start[..]), Bound::Unbounded);
        Ok(self.trees.log.range(&self.txn, &range)?.map(|item| {
            let (k, v) = item?;
            let seq = u64::from_be_bytes(
                k.try_into()
                    .map_err(|_| StoreError::Corrupt("log key".into()))?,
            );
            let entry = LogEntry::decode(v)?;
            Ok((Committed { seq, entry }, v.len()))
        }))
    }

    /// Databases whose drop this database's log announced or a peer reported (in
    /// practice the system database's), with the HLC of each one's last drop.
    pub fn dropped_databases(&self) -> Result<Vec<(String, u64)>> {
        meta_u64s(&self.txn, &self.trees, DROPPED_DATABASE_PREFIX)
    }

    /// Databases whose creation this database (the system database) records, with the
    /// HLC of each one's last creation.
    pub(crate) fn created_databases(&self) -> Result<Vec<(String, u64)>> {
        meta_u64s(&self.txn, &self.trees, CREATED_DATABASE_PREFIX)
    }

    /// This node's last sequence when it last completed a full copy from a peer (0 if
    /// it never did). The copied rows are in no entry of this log: a peer streaming the
    /// log from at or before the floor lacks them unless it has, by its version vector,
    /// everything the copies brought ([`Snapshot::floor_vv`]).
    pub fn log_floor(&self) -> Result<u64> {
        meta_get_u64(&self.txn, &self.trees, FLOOR_KEY)
    }

    /// For each origin, the greatest of its sequences a completed full copy brought here.
    pub fn floor_vv(&self) -> Result<Vec<(String, u64)>> {
        meta_u64s(&self.txn, &self.trees, FLOOR_VV_PREFIX)
    }
}

/// An index key, less its first `skip` bytes, as (encoded value, primary key).
fn index_entry<'t>(
    skip: usize,
    item: heed::Result<(&'t [u8], &'t [u8])>,
) -> Result<(&'t [u8], Value)> {
    let (k, _) = item?;
    let corrupt = || StoreError::Corrupt("index key".into());
    let entry = k.get(skip..).ok_or_else(corrupt)?;
    let rest = key::skip(entry).ok_or_else(corrupt)?;
    let (pk, _) = key::decode(rest).ok_or_else(corrupt)?;
    Ok((&entry[..entry.len() - rest.len()], pk))
}

/// A records-tree entry as a row, or `None` for a tombstone.
fn live_row<'t>(item: heed::Result<(&'t [u8], &'t [u8])>) -> Option<Result<Row<'t>>> {
    let decoded = (|| {
        let (k, v) = item?;
        let version = Version::decode(v)?;
        if version.json.is_none() {
            return Ok(None);
        }
        let (pk, _) = key::decode(&k[4..]).ok_or_else(|| StoreError::Corrupt("key".into()))?;
        Ok(Some((pk, version)))
    })();
    decoded.transpose()
}
