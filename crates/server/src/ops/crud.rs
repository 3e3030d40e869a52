//! insert, update, upsert, delete.

use serde_json::{Map, Value, json};
use shoal_auth::{Action, Grant, User};
use shoal_store::{Mode, Write};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

pub(super) async fn write(
    state: &AppState,
    user: &User,
    grant: &Grant,
    mut req: OpRequest,
    mode: Mode,
) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let records = match req.take(&["records"]) {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::bad_request("'records' must be an array")),
        None => return Err(ApiError::bad_request("'records' is required")),
    };
    let records = records
        .into_iter()
        .map(|r| match r {
            Value::Object(map) => Ok(map),
            _ => Err(ApiError::bad_request("'records' must contain objects")),
        })
        .collect::<Result<Vec<Map<String, Value>>, _>>()?;
    check_attributes(grant, mode, &records)?;
    let total = records.len();
    let db = state
        .store
        .database(&database)
        .map_err(|e| ApiError::from(e).not_found_as_bad_request())?;
    let write = Write::Records {
        table,
        mode,
        records,
    };
    let outcome = db
        .write(write, Some(&user.username))
        .await
        .map_err(|e| ApiError::from(e).not_found_as_bad_request())?;
    let verb = match mode {
        Mode::Insert => "inserted",
        Mode::Update => "updated",
        Mode::Upsert | Mode::Put => "upserted",
    };
    let mut out = json!({
        "message": format!("{verb} {} of {total} records", outcome.written.len()),
        "new_attributes": outcome.new_attributes,
        "txn_time": outcome.txn_time,
    });
    match mode {
        Mode::Insert => {
            out["inserted_hashes"] = Value::Array(outcome.written);
            out["skipped_hashes"] = Value::Array(outcome.skipped);
        }
        Mode::Update => {
            out["update_hashes"] = Value::Array(outcome.written);
            out["skipped_hashes"] = Value::Array(outcome.skipped);
        }
        Mode::Upsert | Mode::Put => out["upserted_hashes"] = Value::Array(outcome.written),
    }
    Ok(Reply::Json(out))
}

/// Refuses the whole write, before anything is written, if the role lacks what `mode`
/// needs on any attribute a record sets (Harper checks the union of the records' keys).
fn check_attributes(
    grant: &Grant,
    mode: Mode,
    records: &[Map<String, Value>],
) -> Result<(), ApiError> {
    if grant.is_whole() {
        return Ok(());
    }
    let action = match mode {
        Mode::Insert => Action::Insert,
        Mode::Update => Action::Update,
        Mode::Upsert | Mode::Put => Action::Upsert,
    };
    let names = records.iter().flat_map(Map::keys).map(String::as_str);
    Ok(grant.check_attributes(action, names)?)
}

/// Needs only the table's delete permission, which the dispatcher's check asked for: a
/// delete names keys, not attributes (Harper's rule too).
pub(super) async fn delete(
    state: &AppState,
    user: &User,
    mut req: OpRequest,
) -> Result<Reply, ApiError> {
    let database = req.database()?;
    let table = req.table()?;
    let ids = match req.take(&["ids", "hash_values"]) {
        Some(Value::Array(ids)) => ids,
        Some(_) => return Err(ApiError::bad_request("'ids' must be an array")),
        None => return Err(ApiError::bad_request("'ids' is required")),
    };
    if ids.iter().any(|id| !(id.is_string() || id.is_number())) {
        return Err(ApiError::bad_request("'ids' must be strings or numbers"));
    }
    let total = ids.len();
    let db = state.store.database(&database)?;
    let outcome = db
        .write(Write::Delete { table, ids }, Some(&user.username))
        .await?;
    let noun = if total == 1 { "record" } else { "records" };
    Ok(Reply::Json(json!({
        "message": format!("{} of {total} {noun} successfully deleted", outcome.written.len()),
        "deleted_hashes": outcome.written,
        "skipped_hashes": outcome.skipped,
        "txn_time": outcome.txn_time,
    })))
}
