//! Table definitions: what a database holds, kept in its `meta` tree and mirrored in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Harper's timestamp attributes, maintained on every write.
pub const CREATED_TIME: &str = "__createdtime__";
/// See [`CREATED_TIME`].
pub const UPDATED_TIME: &str = "__updatedtime__";

/// Longest database or table name accepted.
pub(crate) const MAX_NAME_LEN: usize = 250;
/// Longest attribute name accepted: attribute names are part of index keys, which must
/// stay under LMDB's 511-byte limit.
pub(crate) const MAX_ATTRIBUTE_LEN: usize = 100;

/// A table's definition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TableDef {
    /// Internal id, the prefix of the table's keys in the shared trees.
    pub id: u32,
    /// Table name.
    pub name: String,
    /// Name of the primary key attribute.
    pub primary_key: String,
    /// Known top-level attributes, in the order they first appeared.
    pub attributes: Vec<String>,
    /// Attributes that are indexed; `None` means every attribute.
    pub indexed: Option<BTreeSet<String>>,
    /// Whether the table's changes leave this node (clustering).
    pub replicate: bool,
    /// HLC timestamp of the table's creation.
    pub created: u64,
}

impl TableDef {
    /// Whether `attribute` has a secondary index. The primary key never needs one: the
    /// records tree is ordered by it.
    pub fn is_indexed(&self, attribute: &str) -> bool {
        attribute != self.primary_key
            && self
                .indexed
                .as_ref()
                .is_none_or(|set| set.contains(attribute))
    }
}

/// What a caller asks for when creating a table.
#[derive(Debug, Clone, Default)]
pub struct TableSpec {
    /// Table name.
    pub name: String,
    /// Primary key attribute name.
    pub primary_key: String,
    /// Declared attributes with whether each is indexed; empty means dynamic, all indexed.
    pub attributes: Vec<(String, bool)>,
    /// Whether the table replicates; defaults to true.
    pub replicate: Option<bool>,
}

/// All tables of one database, as of one commit.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tables by name.
    pub tables: BTreeMap<String, Arc<TableDef>>,
    /// Next free table id.
    pub next_id: u32,
    /// When each dropped table name was last dropped (HLC): a table of that name created
    /// before it, and rows written before it, are the dropped table's and never return.
    pub dropped: BTreeMap<String, u64>,
}

impl Catalog {
    /// The HLC of the last drop of table `name` (0 if it was never dropped).
    pub fn dropped_at(&self, name: &str) -> u64 {
        self.dropped.get(name).copied().unwrap_or(0)
    }
}

/// Checks a database, table or attribute name.
pub(crate) fn validate_name(kind: &str, name: &str) -> Result<()> {
    let max = if kind == "attribute" || kind == "primary key" {
        MAX_ATTRIBUTE_LEN
    } else {
        MAX_NAME_LEN
    };
    if name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "{kind} name must not be empty"
        )));
    }
    if name.len() > max {
        return Err(StoreError::Invalid(format!(
            "{kind} name '{name}' is longer than {max} bytes"
        )));
    }
    if name.contains(['`', '/']) {
        return Err(StoreError::Invalid(format!(
            "'{kind}' names cannot include backticks or forward slashes"
        )));
    }
    if name.starts_with('.') || name.contains(['\\', '\0']) {
        return Err(StoreError::Invalid(format!(
            "{kind} name '{name}' may not start with '.' or contain '\\' or NUL"
        )));
    }
    Ok(())
}
