//! The description of a table, as describe_table and `GET /T` give it.

use serde_json::{Map, Value, json};
use shoal_auth::Grant;
use shoal_store::{Database, TableDef, to_ms};

use crate::error::ApiError;

/// The tables of a database that `visible` answers a grant for, each described as its
/// grant shows it; the others are left out, as if they did not exist.
pub(crate) fn describe_tables(
    db: &Database,
    visible: impl Fn(&str) -> Option<Grant>,
) -> Result<Value, ApiError> {
    let snapshot = db.snapshot()?;
    let mut out = Map::new();
    for def in snapshot.catalog().tables.values() {
        if let Some(grant) = visible(&def.name) {
            let description = describe_visible(db, &snapshot, def, &grant)?;
            out.insert(def.name.clone(), description);
        }
    }
    Ok(Value::Object(out))
}

/// One table, described with only the attributes `grant` shows (Harper hides the ones a
/// role has no permission on).
pub(crate) fn describe_visible(
    db: &Database,
    snapshot: &shoal_store::Snapshot,
    def: &TableDef,
    grant: &Grant,
) -> Result<Value, ApiError> {
    let mut description = describe(db, snapshot, def)?;
    if !grant.is_whole()
        && let Some(Value::Array(attributes)) = description.get_mut("attributes")
    {
        attributes.retain(|a| a["attribute"].as_str().is_some_and(|n| grant.may_see(n)));
    }
    Ok(description)
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
