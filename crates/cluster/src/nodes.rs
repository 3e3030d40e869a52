//! The cluster's membership, kept in replicated system tables: `hdb_nodes` (name, url,
//! what to replicate) and `hdb_certificate` (each node's CA). Because they live in the
//! `system` database, which replicates like any other, every member learns every other
//! member and trusts its CA: the mesh completes itself.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shoal_auth::SYSTEM_DATABASE;
use shoal_store::{Mode, Store, StoreError, TableSpec, Write};

use crate::error::ClusterError;

/// Table of cluster members, keyed by node name.
pub const NODES_TABLE: &str = "hdb_nodes";
/// Table of members' CA certificates, keyed by node name.
pub const CERTIFICATES_TABLE: &str = "hdb_certificate";

/// One member as `hdb_nodes` holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Replication address, `host:port`.
    pub url: String,
    /// Databases this node takes from the others; empty: all.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Databases this node sends to the others; empty: all.
    #[serde(default)]
    pub publish: Vec<String>,
}

impl NodeRecord {
    /// Whether `database` flows from `from` to `to`.
    pub fn flows(from: &NodeRecord, to: &NodeRecord, database: &str) -> bool {
        let allows = |list: &[String]| list.is_empty() || list.iter().any(|d| d == database);
        allows(&from.publish) && allows(&to.subscribe)
    }
}

/// Creates the membership tables if missing.
pub(crate) async fn ensure_tables(store: &Store) -> Result<(), ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    for (table, pk) in [(NODES_TABLE, "name"), (CERTIFICATES_TABLE, "name")] {
        if db.catalog().tables.contains_key(table) {
            continue;
        }
        let spec = TableSpec {
            name: table.into(),
            primary_key: pk.into(),
            ..TableSpec::default()
        };
        match db.write(Write::CreateTable(spec), None).await {
            Ok(_) | Err(StoreError::TableExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Every live member record.
pub(crate) fn members(store: &Store) -> Result<Vec<NodeRecord>, ClusterError> {
    read_all(store, NODES_TABLE)?
        .into_iter()
        .map(|v| {
            serde_json::from_value(v)
                .map_err(|e| ClusterError::Protocol(format!("bad node record: {e}")))
        })
        .collect()
}

/// Every member CA, as (node, PEM).
pub(crate) fn certificates(store: &Store) -> Result<Vec<(String, String)>, ClusterError> {
    Ok(read_all(store, CERTIFICATES_TABLE)?
        .into_iter()
        .filter_map(|v| {
            Some((
                v.get("name")?.as_str()?.to_owned(),
                v.get("certificate")?.as_str()?.to_owned(),
            ))
        })
        .collect())
}

fn read_all(store: &Store, table: &str) -> Result<Vec<Value>, ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    let snapshot = db.snapshot()?;
    let Some(def) = snapshot.catalog().tables.get(table).cloned() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in snapshot.scan(
        &def,
        std::ops::Bound::Unbounded,
        std::ops::Bound::Unbounded,
        false,
    )? {
        let (_, version) = row?;
        if let Some(record) = version.value()? {
            out.push(Value::Object(record));
        }
    }
    Ok(out)
}

/// Records (or updates) a member and its CA; both replicate. The CA goes first, so a
/// recorded member always has one to be trusted by.
pub(crate) async fn save(
    store: &Store,
    node: &NodeRecord,
    ca_pem: &str,
) -> Result<(), ClusterError> {
    let cert = json!({"name": node.name, "certificate": ca_pem});
    upsert(store, CERTIFICATES_TABLE, cert).await?;
    save_record(store, node).await
}

/// Records (or updates) a member's record alone.
pub(crate) async fn save_record(store: &Store, node: &NodeRecord) -> Result<(), ClusterError> {
    upsert(
        store,
        NODES_TABLE,
        serde_json::to_value(node).expect("node records serialise"),
    )
    .await
}

async fn upsert(store: &Store, table: &str, record: Value) -> Result<(), ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    let write = Write::Records {
        table: table.into(),
        mode: Mode::Upsert,
        records: vec![record.as_object().expect("object").clone()],
    };
    db.write(write, None).await?;
    Ok(())
}

/// Removes a member (its CA stays trusted until removed too, so links drain cleanly).
pub(crate) async fn remove(store: &Store, name: &str) -> Result<bool, ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    let write = Write::Delete {
        table: NODES_TABLE.into(),
        ids: vec![Value::from(name)],
    };
    Ok(!db.write(write, None).await?.written.is_empty())
}
