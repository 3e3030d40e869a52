//! read_transaction_log and read_audit_log, both answered from the transaction log.

use serde_json::{Map, Value, json};
use shoal_store::{ChangeKind, Committed};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

/// A table's share of one logged transaction.
struct TableEntry {
    operation: String,
    user: Option<String>,
    timestamp: f64,
    /// Each changed record's key, with what was written (nothing for a delete).
    changes: Vec<(Value, Option<Value>)>,
}

impl TableEntry {
    /// The part of the entry about one key.
    fn only(&self, key: &Value) -> TableEntry {
        TableEntry {
            operation: self.operation.clone(),
            user: self.user.clone(),
            timestamp: self.timestamp,
            changes: self
                .changes
                .iter()
                .filter(|(k, _)| k == key)
                .cloned()
                .collect(),
        }
    }

    /// Harper's shape; `user_field` is `user` (transaction log) or `user_name` (audit log).
    fn render(&self, user_field: &str) -> Value {
        let keys: Vec<&Value> = self.changes.iter().map(|(k, _)| k).collect();
        let records: Vec<&Value> = self
            .changes
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .collect();
        let mut v = json!({
            "operation": self.operation,
            user_field: self.user,
            "timestamp": self.timestamp,
            "hash_values": keys,
        });
        if !records.is_empty() {
            v["records"] = json!(records);
        }
        v
    }
}

/// Retained entries touching `table`, oldest first, filtered by time.
async fn entries(
    state: &AppState,
    req: &OpRequest,
    from: f64,
    to: f64,
) -> Result<Vec<TableEntry>, ApiError> {
    let db = state.store.database(&req.database()?)?;
    let table = req.table()?;
    tokio::task::spawn_blocking(move || -> Result<Vec<TableEntry>, ApiError> {
        let snapshot = db.snapshot()?;
        let created = snapshot.table(&table)?.created;
        let mut out = Vec::new();
        for item in snapshot.log(0)? {
            let Committed { entry, .. } = item?;
            let timestamp = entry.timestamp();
            // Entries older than the table belong to a dropped table of the same name.
            if timestamp < from || timestamp > to || entry.hlc < created {
                continue;
            }
            let changes: Vec<(Value, Option<Value>)> = entry
                .changes
                .into_iter()
                .filter(|c| c.table == table)
                .map(|c| (c.key, c.value.filter(|_| c.kind != ChangeKind::Delete)))
                .collect();
            if !changes.is_empty() {
                out.push(TableEntry {
                    operation: entry.operation,
                    user: entry.user,
                    timestamp,
                    changes,
                });
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| ApiError {
        status: axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("log read failed: {e}"),
    })?
}

fn time(req: &OpRequest, name: &str) -> Result<Option<f64>, ApiError> {
    match req.get(&[name]) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("'{name}' must be a timestamp in milliseconds"))
        }),
    }
}

pub(super) async fn read_transaction_log(
    state: &AppState,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let from = time(&req, "from")?.unwrap_or(f64::MIN);
    let to = time(&req, "to")?.unwrap_or(f64::MAX);
    let limit = req.count("limit")?.unwrap_or(usize::MAX);
    let out: Vec<Value> = entries(state, &req, from, to)
        .await?
        .into_iter()
        .take(limit)
        .map(|e| e.render("user"))
        .collect();
    Ok(Reply::Json(Value::Array(out)))
}

pub(super) async fn read_audit_log(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let search_type = req.optional::<String>(&["search_type"])?;
    let values: Vec<Value> = req.optional(&["search_values"])?.unwrap_or_default();
    let limit = req.count("limit")?.unwrap_or(usize::MAX);
    let render = |e: &TableEntry| e.render("user_name");
    match search_type.as_deref() {
        None | Some("timestamp") => {
            let bound = |i: usize| -> Result<Option<f64>, ApiError> {
                values
                    .get(i)
                    .map(|v| {
                        v.as_f64().ok_or_else(|| {
                            ApiError::bad_request("'search_values' must be timestamps")
                        })
                    })
                    .transpose()
            };
            let from = bound(0)?.unwrap_or(f64::MIN);
            let to = bound(1)?.unwrap_or(f64::MAX);
            let out = entries(state, &req, from, to)
                .await?
                .iter()
                .take(limit)
                .map(render)
                .collect();
            Ok(Reply::Json(Value::Array(out)))
        }
        Some("username") => {
            let mut out = Map::new();
            for e in entries(state, &req, f64::MIN, f64::MAX).await? {
                let user = e.user.clone().unwrap_or_default();
                if values.iter().any(|v| v.as_str() == Some(&user)) {
                    push(&mut out, user, render(&e));
                }
            }
            Ok(Reply::Json(Value::Object(out)))
        }
        Some("hash_value") => {
            let mut out = Map::new();
            for e in entries(state, &req, f64::MIN, f64::MAX).await? {
                for key in values
                    .iter()
                    .filter(|k| e.changes.iter().any(|(c, _)| c == *k))
                {
                    let name = key.as_str().map_or_else(|| key.to_string(), str::to_owned);
                    push(&mut out, name, render(&e.only(key)));
                }
            }
            Ok(Reply::Json(Value::Object(out)))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "Invalid searchType '{other}'"
        ))),
    }
}

fn push(out: &mut Map<String, Value>, key: String, entry: Value) {
    if let Value::Array(list) = out.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        list.push(entry);
    }
}
