//! Harper's user and role operations: the only way the Operations API changes `hdb_user`
//! and `hdb_role`. The rules and messages are auth's; this maps requests and answers.

use serde_json::{Map, Value, json};
use shoal_auth::{AuthError, User};

use super::Reply;
use crate::AppState;
use crate::error::{ApiError, role_report};
use crate::request::OpRequest;

pub(super) async fn add_user(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    let username = state.auth.add_user_request(&fields(&req)).await?;
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

pub(super) fn list_users(state: &AppState) -> Result<Reply, ApiError> {
    Ok(Reply::Json(json!(state.auth.list_users()?)))
}

pub(super) fn user_info(state: &AppState, user: &User) -> Result<Reply, ApiError> {
    Ok(Reply::Json(Value::Object(
        state.auth.user_info(&user.username)?,
    )))
}

pub(super) async fn add_role(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    role_answer(state.auth.add_role(&fields(&req)).await)
}

pub(super) async fn alter_role(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    role_answer(state.auth.alter_role(&fields(&req)).await)
}

pub(super) async fn drop_role(state: &AppState, req: OpRequest) -> Result<Reply, ApiError> {
    Ok(Reply::message(state.auth.drop_role(&fields(&req)).await?))
}

pub(super) fn list_roles(state: &AppState) -> Result<Reply, ApiError> {
    Ok(Reply::Json(json!(state.auth.list_roles()?)))
}

/// The request's fields, which auth checks as Harper does.
fn fields(req: &OpRequest) -> Map<String, Value> {
    match req.to_value() {
        Value::Object(fields) => fields,
        _ => Map::new(),
    }
}

/// A role, or Harper's report of what is wrong with the request.
fn role_answer(outcome: Result<Map<String, Value>, AuthError>) -> Result<Reply, ApiError> {
    match outcome {
        Ok(role) => Ok(Reply::Json(Value::Object(role))),
        Err(AuthError::RolePermissions(report)) => Ok(Reply::Response(role_report(&report))),
        Err(e) => Err(e.into()),
    }
}
