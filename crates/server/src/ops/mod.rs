//! The Operations API: `POST /` with `{"operation": ...}`, dispatched by name.

mod cluster;
mod components;
mod crud;
mod logs;
mod schema;
mod search;
mod system;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_auth::User;

use crate::AppState;
use crate::error::ApiError;
use crate::request::OpRequest;

/// What an operation answers.
pub(crate) enum Reply {
    /// A JSON value.
    Json(Value),
    /// JSON already serialised (search results are served from stored bytes).
    Raw(Vec<u8>),
}

impl Reply {
    /// Harper wraps plain strings as `{"message": ...}`.
    pub(crate) fn message(text: impl Into<String>) -> Self {
        Reply::Json(json!({ "message": text.into() }))
    }

    /// A JSON array of already serialised records.
    pub(crate) fn records(records: Vec<Vec<u8>>) -> Self {
        let len = records.iter().map(|r| r.len() + 1).sum::<usize>() + 2;
        let mut out = Vec::with_capacity(len);
        out.push(b'[');
        for (i, r) in records.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(r);
        }
        out.push(b']');
        Reply::Raw(out)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(v) => axum::Json(v).into_response(),
            Reply::Raw(bytes) => (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                bytes,
            )
                .into_response(),
        }
    }
}

/// `POST /` on the operations port.
pub(crate) async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply, ApiError> {
    let user = crate::authenticate(&state, &headers).await?;
    let body = crate::read_body::bytes(&state, body, &headers).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Invalid JSON."));
    }
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON: {e}")))?;
    let (operation, request) = OpRequest::new(body)?;
    dispatch(&state, &user, &operation, request).await
}

async fn dispatch(
    state: &AppState,
    user: &User,
    operation: &str,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    if !user.super_user && !is_data_operation(operation) {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("Operation '{operation}' is restricted to 'super_user' roles"),
        });
    }
    match operation {
        "create_database" | "create_schema" => schema::create_database(state, req).await,
        "drop_database" | "drop_schema" => schema::drop_database(state, req).await,
        "create_table" => schema::create_table(state, req).await,
        "drop_table" => schema::drop_table(state, req).await,
        "create_attribute" => schema::create_attribute(state, req).await,
        "drop_attribute" => schema::drop_attribute(state, req).await,
        "describe_all" => schema::describe_all(state),
        "describe_database" | "describe_schema" => schema::describe_database(state, req),
        "describe_table" => schema::describe_table(state, req),
        "insert" => crud::write(state, user, req, shoal_store::Mode::Insert).await,
        "update" => crud::write(state, user, req, shoal_store::Mode::Update).await,
        "upsert" => crud::write(state, user, req, shoal_store::Mode::Upsert).await,
        "delete" => crud::delete(state, user, req).await,
        "search_by_id" | "search_by_hash" => search::by_id(state, req),
        "search_by_value" => search::by_value(state, req).await,
        "search_by_conditions" => search::by_conditions(state, req).await,
        "read_transaction_log" => logs::read_transaction_log(state, req).await,
        "read_audit_log" => logs::read_audit_log(state, req).await,
        "system_information" => system::system_information(state, req),
        "add_node" | "set_node" => cluster::add_node(state, req).await,
        "update_node" => cluster::update_node(state, req).await,
        "remove_node" => cluster::remove_node(state, req).await,
        "cluster_status" => cluster::cluster_status(state),
        "configure_cluster" => cluster::configure_cluster(state, req).await,
        "add_component" => components::add_component(state, req).await,
        "set_component_file" => components::set_component_file(state, req).await,
        "get_component_file" => components::get_component_file(state, req),
        "get_components" => components::get_components(state),
        "drop_component" => components::drop_component(state, req).await,
        other => Err(ApiError::bad_request(format!(
            "Operation '{other}' not found"
        ))),
    }
}

/// Operations a user without the super_user role may run (on data it can reach).
fn is_data_operation(operation: &str) -> bool {
    matches!(
        operation,
        "insert"
            | "update"
            | "upsert"
            | "delete"
            | "search_by_id"
            | "search_by_hash"
            | "search_by_value"
            | "search_by_conditions"
            | "describe_all"
            | "describe_database"
            | "describe_schema"
            | "describe_table"
    )
}
