//! add_user, alter_user, drop_user: the only way the Operations API changes `hdb_user`.
//!
//! Only as much of Harper's user operations as logins need today: any non-empty role name
//! is accepted and only `super_user` grants anything beyond data.

use serde_json::{Value, json};

use super::Reply;
use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

pub(super) async fn add_user(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let username = req.string(&["username"])?;
    let password = req.string(&["password"])?;
    let role = req.string(&["role"])?;
    let active = active(&req)?.unwrap_or(true);
    state
        .auth
        .add_user(&username, &password, &role, active)
        .await?;
    Ok(Reply::message(format!("{username} successfully added")))
}

pub(super) async fn alter_user(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let username = req.string(&["username"])?;
    let password = req.optional::<String>(&["password"])?;
    let role = req.optional::<String>(&["role"])?;
    let outcome = state
        .auth
        .alter_user(
            &username,
            password.as_deref(),
            role.as_deref(),
            active(&req)?,
        )
        .await?;
    // Harper answers with the update's own report.
    Ok(Reply::Json(json!({
        "message": format!("updated {} of 1 records", outcome.written.len()),
        "new_attributes": outcome.new_attributes,
        "txn_time": outcome.txn_time,
        "update_hashes": outcome.written,
        "skipped_hashes": outcome.skipped,
    })))
}

pub(super) async fn drop_user(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let username = req.string(&["username"])?;
    state.auth.drop_user(&username).await?;
    Ok(Reply::message(format!("{username} successfully deleted")))
}

fn active(req: &OpRequest) -> Result<Option<bool>, ApiError> {
    match req.get(&["active"]) {
        None => Ok(None),
        Some(Value::Bool(active)) => Ok(Some(*active)),
        Some(_) => Err(ApiError::bad_request("active must be true or false")),
    }
}
