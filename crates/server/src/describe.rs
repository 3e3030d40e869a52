//! The description of a table, as describe_table and `GET /T` give it.

use serde_json::{Map, Value, json};
use shoal_store::{Database, TableDef, to_ms};

use crate::error::ApiError;

/// Every table of a database, described.
pub(crate) fn describe_tables(db: &Database) -> Result<Value, ApiError> {
    let snapshot = db.snapshot()?;
    let mut out = Map::new();
    for def in snapshot.catalog().tables.values() {
        out.insert(def.name.clone(), describe(db, &snapshot, def)?);
    }
    Ok(Value::Object(out))
}

/// One table, described (Harper's describe_table shape).
pub(crate) fn describe(
    db: &Database,
    snapshot: &shoal_store::Snapshot,
    def: &TableDef,
) -> Result<Value, ApiError> {
    let attributes: Vec<Value> = def
        .attributes
        .iter()
        .map(|a| {
            let mut attr =
                json!({ "attribute": a, "indexed": def.is_indexed(a) || *a == def.primary_key });
            if *a == def.primary_key {
                attr["is_primary_key"] = Value::Bool(true);
            }
            attr
        })
        .collect();
    let mut out = json!({
        "schema": db.name(),
        "database": db.name(),
        "name": def.name,
        "hash_attribute": def.primary_key,
        "primary_key": def.primary_key,
        "audit": true,
        "schema_defined": def.indexed.is_some(),
        "replicate": def.replicate,
        "attributes": attributes,
        "db_size": db.disk_size(),
        "record_count": snapshot.record_count(def)?,
        "__createdtime__": to_ms(def.created),
    });
    if let Some(updated) = snapshot.last_updated(def)? {
        out["last_updated_record"] = json!(to_ms(updated));
    }
    Ok(out)
}
