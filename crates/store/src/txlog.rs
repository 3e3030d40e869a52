//! The transaction log: one entry per logical transaction, keyed by local sequence, written
//! in the same LMDB commit as the data it describes, trimmed by age and size.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Result, StoreError};
use crate::hlc;
use crate::trees::{Trees, meta_get_u64, meta_put_u64};

/// Format 1: the MessagePack entry alone.
const FORMAT_1: u8 = 1;
/// Format 2: the HLC at which this node committed the entry, then the MessagePack entry.
const FORMAT: u8 = 2;
/// Meta key of the last local sequence number.
pub(crate) const SEQ_KEY: &[u8] = b"seq";
/// Meta key of the total encoded size of retained log entries.
const BYTES_KEY: &[u8] = b"log_bytes";

/// What a change did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// The record was replaced by `value`.
    Put,
    /// The attributes in `value` were merged into the record.
    Patch,
    /// The record was deleted.
    Delete,
}

/// One record's change within a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Table name.
    pub table: String,
    /// Primary key.
    pub key: Value,
    /// What happened.
    pub kind: ChangeKind,
    /// The full record (put), the merged attributes (patch), nothing (delete).
    pub value: Option<Value>,
}

/// A logical transaction as the log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// HLC timestamp shared by every change of the transaction.
    pub hlc: u64,
    /// Node where the transaction was first committed.
    pub origin: String,
    /// Sequence of the transaction in its origin's log.
    pub origin_seq: u64,
    /// User who made the request, if known.
    pub user: Option<String>,
    /// The operation as the client named it (`insert`, `update`, `upsert`, `delete`).
    pub operation: String,
    /// The changes, in the order they were made.
    pub changes: Vec<Change>,
    /// A schema change, for entries that change the schema rather than records.
    #[serde(default)]
    pub schema: Option<SchemaChange>,
}

/// A change to a database's schema (or, in the system database, to the set of databases),
/// logged so that it replicates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SchemaChange {
    /// A table was created.
    CreateTable {
        /// Table name.
        table: String,
        /// Primary key attribute.
        primary_key: String,
        /// Declared attributes and whether each is indexed; empty means all indexed.
        attributes: Vec<(String, bool)>,
        /// Whether the table replicates.
        replicate: bool,
        /// HLC of the creation at its origin (0 in entries written before it was logged:
        /// the entry's own timestamp stands in).
        #[serde(default)]
        created: u64,
    },
    /// A table was dropped.
    DropTable {
        /// Table name.
        table: String,
    },
    /// An attribute was declared.
    CreateAttribute {
        /// Table name.
        table: String,
        /// Attribute name.
        attribute: String,
        /// Whether it is indexed.
        indexed: bool,
    },
    /// An attribute was dropped.
    DropAttribute {
        /// Table name.
        table: String,
        /// Attribute name.
        attribute: String,
    },
    /// A database was created (logged in the system database).
    CreateDatabase {
        /// Database name.
        database: String,
    },
    /// A database was dropped (logged in the system database).
    DropDatabase {
        /// Database name.
        database: String,
    },
}

impl SchemaChange {
    /// The table the change is about, if any.
    pub fn table(&self) -> Option<&str> {
        match self {
            SchemaChange::CreateTable { table, .. }
            | SchemaChange::DropTable { table }
            | SchemaChange::CreateAttribute { table, .. }
            | SchemaChange::DropAttribute { table, .. } => Some(table),
            SchemaChange::CreateDatabase { .. } | SchemaChange::DropDatabase { .. } => None,
        }
    }

    /// Whether it removes something (a table, an attribute, a database).
    pub fn is_drop(&self) -> bool {
        matches!(
            self,
            SchemaChange::DropTable { .. }
                | SchemaChange::DropAttribute { .. }
                | SchemaChange::DropDatabase { .. }
        )
    }

    /// The operation name logged for it.
    pub fn operation(&self) -> &'static str {
        match self {
            SchemaChange::CreateTable { .. } => "create_table",
            SchemaChange::DropTable { .. } => "drop_table",
            SchemaChange::CreateAttribute { .. } => "create_attribute",
            SchemaChange::DropAttribute { .. } => "drop_attribute",
            SchemaChange::CreateDatabase { .. } => "create_database",
            SchemaChange::DropDatabase { .. } => "drop_database",
        }
    }
}

impl LogEntry {
    /// Wall-clock milliseconds of the transaction, as Harper shows timestamps.
    pub fn timestamp(&self) -> f64 {
        hlc::to_ms(self.hlc)
    }

    /// The stored form, with `committed`: this node's HLC when it committed the entry.
    pub(crate) fn encode(&self, committed: u64) -> Result<Vec<u8>> {
        let mut out = vec![FORMAT];
        out.extend_from_slice(&committed.to_be_bytes());
        rmp_serde::encode::write_named(&mut out, self)
            .map_err(|e| StoreError::Invalid(format!("cannot encode log entry: {e}")))?;
        Ok(out)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        let body = match bytes.split_first() {
            Some((&FORMAT_1, body)) => body,
            Some((&FORMAT, rest)) => rest.get(8..).ok_or_else(corrupt)?,
            _ => return Err(corrupt()),
        };
        rmp_serde::from_slice(body).map_err(|_| corrupt())
    }
}

fn corrupt() -> StoreError {
    StoreError::Corrupt("log entry".into())
}

/// When this node committed a stored entry, as an HLC timestamp (never before the entry's
/// own `hlc`): unlike `hlc` (its origin's), it never decreases from one sequence to the
/// next, so the log can be searched by time. Entries written before it was recorded
/// (format 1) give their `hlc`, which is the same for local transactions.
pub(crate) fn committed_at(bytes: &[u8]) -> Result<u64> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => rest
            .first_chunk::<8>()
            .map(|b| u64::from_be_bytes(*b))
            .ok_or_else(corrupt),
        _ => LogEntry::decode(bytes).map(|e| e.hlc),
    }
}

/// A log entry with its local sequence number, as published on the change feed.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Local sequence number.
    pub seq: u64,
    /// The entry.
    pub entry: LogEntry,
}

/// Appends an entry in `txn`, committed at `now` (this node's HLC, which must not
/// decrease from one call to the next), returning its sequence number. A local entry
/// (origin_seq 0) takes the new sequence as its origin sequence. An entry whose encoding
/// passes `limit` bytes is refused.
pub(crate) fn append(
    txn: &mut heed::RwTxn,
    trees: &Trees,
    entry: &mut LogEntry,
    now: u64,
    limit: usize,
) -> Result<u64> {
    let seq = meta_get_u64(txn, trees, SEQ_KEY)? + 1;
    if entry.origin_seq == 0 {
        entry.origin_seq = seq;
    }
    let bytes = entry.encode(now)?;
    if bytes.len() > limit {
        return Err(StoreError::TooLarge(format!(
            "the transaction is too large: it takes {} bytes, more than the limit of {limit} bytes",
            bytes.len()
        )));
    }
    trees.log.put(txn, &seq.to_be_bytes(), &bytes)?;
    meta_put_u64(txn, trees, SEQ_KEY, seq)?;
    let total = meta_get_u64(txn, trees, BYTES_KEY)? + bytes.len() as u64;
    meta_put_u64(txn, trees, BYTES_KEY, total)?;
    Ok(seq)
}

/// How long the log is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Entries committed here more than this many milliseconds ago are removed.
    pub max_age_ms: u64,
    /// The oldest entries are removed while the log is larger than this many bytes.
    pub max_bytes: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_age_ms: 3 * 24 * 3600 * 1000,
            max_bytes: 1 << 30,
        }
    }
}

/// Removes at most `budget` entries that fall outside `retention`; returns how many went.
/// Bounded so that one trim never holds the writer for long; the next one continues.
pub(crate) fn trim(
    txn: &mut heed::RwTxn,
    trees: &Trees,
    retention: Retention,
    now_ms: u64,
    budget: usize,
) -> Result<usize> {
    let mut total = meta_get_u64(txn, trees, BYTES_KEY)?;
    let cutoff = now_ms.saturating_sub(retention.max_age_ms);
    let mut doomed = Vec::new();
    for item in trees.log.iter(txn)? {
        if doomed.len() >= budget {
            break;
        }
        let (key, bytes) = item?;
        let too_big = total > retention.max_bytes;
        // By when this node committed it: a peer's entry may arrive long after its own
        // time, and is kept as long as any other for the peers that read it from here.
        // Commit times never decrease, so the first young entry ends the scan.
        let too_old = committed_at(bytes)? >> 16 < cutoff;
        if !too_big && !too_old {
            break;
        }
        total = total.saturating_sub(bytes.len() as u64);
        doomed.push(key.to_vec());
    }
    for key in &doomed {
        trees.log.delete(txn, key)?;
    }
    meta_put_u64(txn, trees, BYTES_KEY, total)?;
    Ok(doomed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip() {
        let entry = LogEntry {
            hlc: 5 << 16,
            origin: "a".into(),
            origin_seq: 3,
            user: Some("admin".into()),
            operation: "insert".into(),
            changes: vec![Change {
                table: "dog".into(),
                key: Value::from(1),
                kind: ChangeKind::Put,
                value: Some(serde_json::json!({"id": 1, "tags": ["x", 2.5, null]})),
            }],
            schema: Some(SchemaChange::DropTable { table: "t".into() }),
        };
        let stored = entry.encode(7 << 16).unwrap();
        assert_eq!(LogEntry::decode(&stored).unwrap(), entry);
        assert_eq!(committed_at(&stored).unwrap(), 7 << 16);
        assert!(LogEntry::decode(&[9, 1, 2]).is_err());
        assert!(LogEntry::decode(&[FORMAT, 1, 2]).is_err());
        // Format 1, written before the commit time was recorded, still reads.
        let mut old = vec![FORMAT_1];
        rmp_serde::encode::write_named(&mut old, &entry).unwrap();
        assert_eq!(LogEntry::decode(&old).unwrap(), entry);
        assert_eq!(committed_at(&old).unwrap(), entry.hlc);
    }
}
