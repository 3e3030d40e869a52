//! The cluster's membership, kept in replicated system tables: `hdb_nodes` (name, url,
//! what to replicate) and `hdb_certificate` (each node's CA). Because they live in the
//! `system` database, which replicates like any other, every member learns every other
//! member and trusts its CA: the mesh completes itself.
//!
//! A node publishes only its own CA: a `hdb_certificate` row counts only if every write
//! to it came from the node it names, and receivers drop replicated changes to rows that
//! do not name the change's origin (see [`drop_foreign_certificates`]). The CA learned in
//! an `add_node` handshake is kept as a local pin (`hdb_node_pin`, not replicated) until
//! the node's own row arrives: it is what lets the first links come up.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use shoal_store::{
    CopyRow, LogEntry, Mode, SYSTEM_DATABASE, Store, StoreError, TableSpec, Version, Write,
};

use crate::error::ClusterError;

/// Table of cluster members, keyed by node name.
pub const NODES_TABLE: &str = "hdb_nodes";
/// Table of members' CA certificates, keyed by node name; each row written by its node.
pub const CERTIFICATES_TABLE: &str = "hdb_certificate";
/// Table of CAs learned in `add_node` handshakes, keyed by node name; local to each node.
pub const PINS_TABLE: &str = "hdb_node_pin";

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

/// Whether node `me` may send `database` to node `to`, given the members: both must be
/// members and the database must flow between them. The one check behind accepting a
/// subscription, every frame of data a sender sends or a receiver applies, and the
/// manager closing streams.
pub(crate) fn may_send(
    members: &[NodeRecord],
    me: &str,
    to: &str,
    database: &str,
) -> Result<(), String> {
    let find = |name: &str| members.iter().find(|m| m.name == name);
    match (find(me), find(to)) {
        (Some(me), Some(them)) if NodeRecord::flows(me, them, database) => Ok(()),
        (Some(_), Some(_)) => Err(format!("database '{database}' is not replicated to '{to}'")),
        _ => Err(format!("'{to}' is not a member of this cluster")),
    }
}

/// Creates the membership tables if missing.
pub(crate) async fn ensure_tables(store: &Store) -> Result<(), ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    for (table, replicate) in [
        (NODES_TABLE, true),
        (CERTIFICATES_TABLE, true),
        (PINS_TABLE, false),
    ] {
        if db.catalog().tables.contains_key(table) {
            continue;
        }
        let spec = TableSpec {
            name: table.into(),
            primary_key: "name".into(),
            replicate: Some(replicate),
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
    scan(store, NODES_TABLE, |_, record| {
        serde_json::from_value(record)
            .map(Some)
            .map_err(|e| ClusterError::Protocol(format!("bad node record: {e}")))
    })
}

/// The CAs nodes published themselves, as (node, PEM): rows every write to which came
/// from the node they name.
pub(crate) fn certificates(store: &Store) -> Result<Vec<(String, String)>, ClusterError> {
    scan(store, CERTIFICATES_TABLE, |version, record| {
        Ok(name_and_certificate(&record).filter(|(node, _)| written_by(version, node)))
    })
}

/// The CAs pinned by `add_node` handshakes on this node, as (node, PEM).
pub(crate) fn pins(store: &Store) -> Result<Vec<(String, String)>, ClusterError> {
    scan(store, PINS_TABLE, |_, record| {
        Ok(name_and_certificate(&record))
    })
}

fn name_and_certificate(record: &Value) -> Option<(String, String)> {
    Some((
        record.get("name")?.as_str()?.to_owned(),
        record.get("certificate")?.as_str()?.to_owned(),
    ))
}

/// Whether every write that made `version` (its base and each attribute) came from `node`.
fn written_by(version: &Version, node: &str) -> bool {
    version.state().is_ok_and(|state| {
        let base_ok = state.base.origin == node || state.base.origin.is_empty();
        base_ok && state.stamps.values().all(|s| s.origin == node)
    })
}

/// Reads every live row of a system table through `pick`.
fn scan<T>(
    store: &Store,
    table: &str,
    mut pick: impl FnMut(&Version, Value) -> Result<Option<T>, ClusterError>,
) -> Result<Vec<T>, ClusterError> {
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
        if let Some(record) = version.value()?
            && let Some(item) = pick(&version, Value::Object(record))?
        {
            out.push(item);
        }
    }
    Ok(out)
}

/// Drops, from entries a peer sent for `database`, the changes to `hdb_certificate` rows
/// other than the entry's origin's own: a node publishes only its own CA, so a row for
/// node `x` is taken only from a transaction `x` made. (Origins are asserted by the
/// members that relay them; members are trusted not to forge them.)
pub(crate) fn drop_foreign_certificates(database: &str, entries: &mut [(u64, LogEntry)]) {
    if database != SYSTEM_DATABASE {
        return;
    }
    for (seq, entry) in entries {
        let origin = entry.origin.as_str();
        let before = entry.changes.len();
        entry
            .changes
            .retain(|c| c.table != CERTIFICATES_TABLE || c.key.as_str() == Some(origin));
        if entry.changes.len() != before {
            tracing::warn!(%origin, seq = *seq, "ignored a CA certificate published for another node");
        }
    }
}

/// Drops, from full-copy rows of `table` in `database`, the `hdb_certificate` rows not
/// written entirely by the node they name.
pub(crate) fn drop_foreign_certificate_rows(database: &str, table: &str, rows: &mut Vec<CopyRow>) {
    if database != SYSTEM_DATABASE || table != CERTIFICATES_TABLE {
        return;
    }
    rows.retain(|row| {
        let owned = row.key.as_str().is_some_and(|node| {
            Version::decode(&row.version).is_ok_and(|v| written_by(&v, node))
        });
        if !owned {
            tracing::warn!(key = %row.key, "ignored a copied CA certificate not written by its node");
        }
        owned
    });
}

/// Publishes this node's own CA (the row replicates; only this node writes it).
pub(crate) async fn publish_ca(store: &Store, me: &str, ca_pem: &str) -> Result<(), ClusterError> {
    let row = json!({"name": me, "certificate": ca_pem});
    upsert(store, CERTIFICATES_TABLE, row).await
}

/// Pins the CA a node showed in an `add_node` handshake (kept on this node only).
pub(crate) async fn pin(store: &Store, node: &str, ca_pem: &str) -> Result<(), ClusterError> {
    let row = json!({"name": node, "certificate": ca_pem});
    upsert(store, PINS_TABLE, row).await
}

/// Records (or updates) a member's record; it replicates.
pub(crate) async fn save_record(store: &Store, node: &NodeRecord) -> Result<(), ClusterError> {
    let row = serde_json::to_value(node)
        .map_err(|e| ClusterError::Protocol(format!("node record: {e}")))?;
    upsert(store, NODES_TABLE, row).await
}

async fn upsert(store: &Store, table: &str, row: Value) -> Result<(), ClusterError> {
    let Value::Object(record) = row else {
        return Err(ClusterError::Protocol(format!(
            "a {table} row must be an object"
        )));
    };
    let db = store.database(SYSTEM_DATABASE)?;
    let write = Write::Records {
        table: table.into(),
        mode: Mode::Upsert,
        records: vec![record],
    };
    db.write(write, None).await?;
    Ok(())
}

/// Removes a member (everywhere, as the record's delete replicates) and this node's pin
/// of its CA. Its published CA row stays, but only members' CAs are trusted.
pub(crate) async fn remove(store: &Store, name: &str) -> Result<bool, ClusterError> {
    let db = store.database(SYSTEM_DATABASE)?;
    let mut removed = false;
    for table in [NODES_TABLE, PINS_TABLE] {
        let write = Write::Delete {
            table: table.into(),
            ids: vec![Value::from(name)],
        };
        let written = !db.write(write, None).await?.written.is_empty();
        removed |= written && table == NODES_TABLE;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use shoal_store::{Change, ChangeKind, StoreOptions};

    use super::*;

    /// A store for node `name` with the system database and the membership tables.
    async fn store(dir: &std::path::Path, name: &str) -> Store {
        let store = Store::open(StoreOptions::new(dir.join(name), name)).unwrap();
        store.create_database(SYSTEM_DATABASE).await.unwrap();
        ensure_tables(&store).await.unwrap();
        store
    }

    /// The stored rows of the certificate table, as a full copy ships them.
    fn copy_rows(store: &Store) -> Vec<CopyRow> {
        let db = store.database(SYSTEM_DATABASE).unwrap();
        let snapshot = db.snapshot().unwrap();
        let table = snapshot.table(CERTIFICATES_TABLE).unwrap();
        snapshot
            .versions(&table, None)
            .unwrap()
            .map(|row| {
                let (key, version) = row.unwrap();
                CopyRow {
                    key,
                    version: version.bytes().to_vec(),
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn only_a_node_own_ca_row_counts() {
        let dir = tempfile::tempdir().unwrap();
        let c = store(dir.path(), "c").await;
        publish_ca(&c, "c", "c's CA").await.unwrap();
        // c writes a row naming b: c may hold it, but it is not b's word.
        publish_ca(&c, "b", "c's CA again").await.unwrap();
        pin(&c, "b", "b's CA from a join").await.unwrap();
        assert_eq!(
            certificates(&c).unwrap(),
            [("c".to_owned(), "c's CA".to_owned())]
        );
        assert_eq!(
            pins(&c).unwrap(),
            [("b".to_owned(), "b's CA from a join".to_owned())]
        );

        // In a full copy, only the row c wrote for itself survives.
        let mut rows = copy_rows(&c);
        assert_eq!(rows.len(), 2);
        drop_foreign_certificate_rows(SYSTEM_DATABASE, CERTIFICATES_TABLE, &mut rows);
        assert_eq!(
            rows.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
            ["c"]
        );
        let mut untouched = copy_rows(&c);
        drop_foreign_certificate_rows("dev", CERTIFICATES_TABLE, &mut untouched);
        drop_foreign_certificate_rows(SYSTEM_DATABASE, NODES_TABLE, &mut untouched);
        assert_eq!(
            untouched.len(),
            2,
            "other tables and databases are left alone"
        );
        let mut garbled = vec![CopyRow {
            key: "c".into(),
            version: vec![9, 9, 9],
        }];
        drop_foreign_certificate_rows(SYSTEM_DATABASE, CERTIFICATES_TABLE, &mut garbled);
        assert!(garbled.is_empty());
        c.close().await;
    }

    #[test]
    fn replicated_changes_to_another_node_ca_row_are_dropped() {
        let change = |table: &str, key: &str| Change {
            table: table.into(),
            key: key.into(),
            kind: ChangeKind::Put,
            value: Some(json!({"name": key, "certificate": "pem"})),
        };
        let entry = LogEntry {
            hlc: 1 << 16,
            origin: "c".into(),
            origin_seq: 7,
            user: None,
            operation: "upsert".into(),
            changes: vec![
                change(CERTIFICATES_TABLE, "b"),
                change(CERTIFICATES_TABLE, "c"),
                change(NODES_TABLE, "b"),
            ],
            schema: None,
        };
        let mut entries = vec![(3, entry.clone())];
        drop_foreign_certificates(SYSTEM_DATABASE, &mut entries);
        let kept: Vec<_> = entries[0]
            .1
            .changes
            .iter()
            .map(|c| (c.table.as_str(), c.key.as_str().unwrap()))
            .collect();
        assert_eq!(kept, [(CERTIFICATES_TABLE, "c"), (NODES_TABLE, "b")]);
        let mut elsewhere = vec![(3, entry)];
        drop_foreign_certificates("dev", &mut elsewhere);
        assert_eq!(elsewhere[0].1.changes.len(), 3);
    }

    fn node(name: &str, subscribe: &[&str], publish: &[&str]) -> NodeRecord {
        let list = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect();
        NodeRecord {
            name: name.into(),
            url: String::new(),
            subscribe: list(subscribe),
            publish: list(publish),
        }
    }

    #[test]
    fn may_send_needs_both_members_and_a_route() {
        let members = [
            node("a", &[], &[]),
            node("b", &["system"], &[]),
            node("c", &[], &["system"]),
        ];
        assert!(may_send(&members, "a", "b", "system").is_ok());
        assert!(
            may_send(&members, "a", "b", "dev")
                .unwrap_err()
                .contains("not replicated")
        );
        assert!(
            may_send(&members, "c", "a", "dev").is_err(),
            "c publishes only system"
        );
        assert!(may_send(&members, "a", "c", "dev").is_ok());
        assert!(
            may_send(&members, "a", "x", "dev")
                .unwrap_err()
                .contains("not a member")
        );
        assert!(
            may_send(&members, "x", "a", "dev").is_err(),
            "nor may a non-member send"
        );
    }
}
