//! read_transaction_log and read_audit_log, both answered from the transaction log.

use serde_json::{Value, json};
use shoal_store::{ChangeKind, Committed, Snapshot};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;
use crate::stream::{self, JSON, JsonArray};

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

/// Calls `f` with the retained entries touching `table` whose time lies in `[from, to]`,
/// oldest first, until it returns false. Reading starts at the first entry committed
/// here at or after `from` (no entry of a later time comes before it), and goes no
/// further than `f` wants.
fn each_entry(
    snapshot: &Snapshot,
    table: &str,
    from: f64,
    to: f64,
    mut f: impl FnMut(TableEntry) -> Result<bool, ApiError>,
) -> Result<(), ApiError> {
    let created = snapshot.table(table)?.created;
    let Some(start) = snapshot.first_seq_at(from)? else {
        return Ok(());
    };
    for item in snapshot.log(start)? {
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
        if changes.is_empty() {
            continue;
        }
        let more = f(TableEntry {
            operation: entry.operation,
            user: entry.user,
            timestamp,
            changes,
        })?;
        if !more {
            break;
        }
    }
    Ok(())
}

fn time(req: &OpRequest, name: &str) -> Result<Option<f64>, ApiError> {
    match req.get(&[name]) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| {
            ApiError::bad_request(format!("'{name}' must be a timestamp in milliseconds"))
        }),
    }
}

/// Streams, as a JSON array, at most `limit` entries of the table in `[from, to]`, each
/// shown with its user under `user_field`.
async fn stream_entries(
    state: &AppState,
    req: &OpRequest,
    (from, to): (f64, f64),
    limit: usize,
    user_field: &'static str,
) -> Result<Reply, ApiError> {
    let db = state.store.database(&req.database()?)?;
    let table = req.table()?;
    let response = stream::respond(JSON, state.query.stall_timeout, move |out| {
        let snapshot = db.snapshot()?;
        let mut array = JsonArray::new(out);
        let mut sent = 0;
        each_entry(&snapshot, &table, from, to, |e| {
            if sent >= limit {
                return Ok(false);
            }
            sent += 1;
            Ok(array.push(&e.render(user_field).to_string().into_bytes()))
        })?;
        array.finish();
        Ok(())
    })
    .await?;
    Ok(Reply::Response(response))
}

pub(super) async fn read_transaction_log(
    state: &AppState,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let from = time(&req, "from")?.unwrap_or(f64::MIN);
    let to = time(&req, "to")?.unwrap_or(f64::MAX);
    let limit = req.count("limit")?.unwrap_or(usize::MAX);
    stream_entries(state, &req, (from, to), limit, "user").await
}

pub(super) async fn read_audit_log(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let search_type = req.optional::<String>(&["search_type"])?;
    let values: Vec<Value> = req.optional(&["search_values"])?.unwrap_or_default();
    let limit = req.count("limit")?.unwrap_or(usize::MAX);
    let by_user = match search_type.as_deref() {
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
            return stream_entries(state, &req, (from, to), limit, "user_name").await;
        }
        Some("username") => true,
        Some("hash_value") => false,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid searchType '{other}'"
            )));
        }
    };
    // An object with a list of entries per user or key that has any, in the order asked:
    // one pass over the log per value, so nothing is gathered.
    let mut wanted: Vec<Value> = Vec::new();
    for v in values {
        if !wanted.contains(&v) {
            wanted.push(v);
        }
    }
    let db = state.store.database(&req.database()?)?;
    let table = req.table()?;
    let response = stream::respond(JSON, state.query.stall_timeout, move |out| {
        let snapshot = db.snapshot()?;
        out.write(b"{");
        let mut listed = 0;
        for value in &wanted {
            let name = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            let mut found = 0;
            let mut open = true;
            each_entry(&snapshot, &table, f64::MIN, f64::MAX, |e| {
                let entry = if by_user {
                    if e.user.as_deref() != value.as_str() {
                        return Ok(true);
                    }
                    e.render("user_name")
                } else {
                    if !e.changes.iter().any(|(k, _)| k == value) {
                        return Ok(true);
                    }
                    e.only(value).render("user_name")
                };
                let head = if found > 0 {
                    ",".to_owned()
                } else {
                    let comma = if listed > 0 { "," } else { "" };
                    format!("{comma}{}:[", Value::String(name.clone()))
                };
                found += 1;
                open = out.write(head.as_bytes()) && out.write(entry.to_string().as_bytes());
                Ok(open)
            })?;
            if !open {
                return Ok(());
            }
            if found > 0 {
                listed += 1;
                out.write(b"]");
            }
        }
        out.write(b"}");
        Ok(())
    })
    .await?;
    Ok(Reply::Response(response))
}
