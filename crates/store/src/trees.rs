//! The trees inside one database's environment, and small helpers over the `meta` tree.
//!
//! | tree    | key                                               | value               |
//! |---------|---------------------------------------------------|---------------------|
//! | meta    | `table/<name>`, `seq`, `log_bytes`, `count/<id>`… | JSON or u64 BE      |
//! | records | table id (u32 BE) + encoded primary key           | [`crate::Version`]  |
//! | index   | table id + encoded attribute + value + key        | empty               |
//! | log     | local sequence (u64 BE)                           | [`crate::LogEntry`] |

use heed::types::Bytes;
use heed::{CommitOrAbort, Env, RoTxn, RwTxn, WithoutTls};

use crate::error::Result;

/// A tree of raw bytes.
pub(crate) type Tree = heed::Database<'static, Bytes, Bytes>;

/// The four trees of a database.
#[derive(Clone, Copy)]
pub(crate) struct Trees {
    pub(crate) meta: Tree,
    pub(crate) records: Tree,
    pub(crate) index: Tree,
    pub(crate) log: Tree,
}

impl Trees {
    /// Opens (creating if needed) the trees of `env`.
    pub(crate) fn open(env: &'static Env<WithoutTls>) -> Result<Self> {
        let txn = env.write_txn()?;
        let opened = env.create_databases_and_commit(txn, |opener, txn| {
            let trees: [Tree; 4] = [
                opener.create_database(txn, Some("meta"))?,
                opener.create_database(txn, Some("records"))?,
                opener.create_database(txn, Some("index"))?,
                opener.create_database(txn, Some("log"))?,
            ];
            Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(trees))
        })?;
        let Some([meta, records, index, log]) = opened.commit() else {
            unreachable!("the closure never aborts");
        };
        Ok(Trees {
            meta,
            records,
            index,
            log,
        })
    }

    /// Bytes the trees occupy in the transaction's view, free pages left out: what a
    /// database holds, as opposed to how far its file has grown.
    pub(crate) fn used_bytes(&self, txn: &RoTxn) -> Result<u64> {
        let mut total = 0;
        for tree in [self.meta, self.records, self.index, self.log] {
            total += tree.stat(txn)?.non_free_page_size() as u64;
        }
        Ok(total)
    }

    /// Empties every tree (drop database).
    pub(crate) fn clear(&self, txn: &mut RwTxn) -> Result<()> {
        for tree in [self.meta, self.records, self.index, self.log] {
            tree.clear(txn)?;
        }
        Ok(())
    }
}

/// Reads a u64 from `meta`, 0 if absent.
pub(crate) fn meta_get_u64(txn: &RoTxn, trees: &Trees, key: &[u8]) -> Result<u64> {
    Ok(trees
        .meta
        .get(txn, key)?
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_be_bytes))
}

/// The u64s in `meta` under `prefix`, by the rest of their key (0 for a malformed value,
/// as [`meta_get_u64`] reads it).
pub(crate) fn meta_u64s(txn: &RoTxn, trees: &Trees, prefix: &[u8]) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for item in trees.meta.prefix_iter(txn, prefix)? {
        let (k, v) = item?;
        let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        let value = v.try_into().map_or(0, u64::from_be_bytes);
        out.push((name, value));
    }
    Ok(out)
}

/// Writes a u64 to `meta`.
pub(crate) fn meta_put_u64(txn: &mut RwTxn, trees: &Trees, key: &[u8], value: u64) -> Result<()> {
    trees.meta.put(txn, key, &value.to_be_bytes())?;
    Ok(())
}

/// Meta key of a table's live record count.
pub(crate) fn count_key(table_id: u32) -> Vec<u8> {
    let mut key = b"count/".to_vec();
    key.extend_from_slice(&table_id.to_be_bytes());
    key
}

/// Meta key of the HLC timestamp of a table's last write.
pub(crate) fn updated_key(table_id: u32) -> Vec<u8> {
    let mut key = b"updated/".to_vec();
    key.extend_from_slice(&table_id.to_be_bytes());
    key
}

/// Prefix of a table's keys in `records` and `index`.
pub(crate) fn table_prefix(table_id: u32) -> [u8; 4] {
    table_id.to_be_bytes()
}
