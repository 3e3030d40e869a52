//! The Operations API: `POST /` with `{"operation": ...}`, dispatched by name.

mod cluster;
mod components;
mod crud;
mod logs;
mod schema;
mod search;
mod system;
mod users;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_auth::{Access, Action, User, Via};

use crate::error::ApiError;
use crate::request::OpRequest;
use crate::{AppState, Peer};

/// What an operation answers.
pub(crate) enum Reply {
    /// A JSON value.
    Json(Value),
    /// An answer already made (searches and logs stream theirs as they are produced).
    Response(Response),
}

impl Reply {
    /// Harper wraps plain strings as `{"message": ...}`.
    pub(crate) fn message(text: impl Into<String>) -> Self {
        Reply::Json(json!({ "message": text.into() }))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self {
            Reply::Json(v) => axum::Json(v).into_response(),
            Reply::Response(response) => response,
        }
    }
}

/// `POST /` on the operations port.
pub(crate) async fn handle(
    State(state): State<AppState>,
    peer: Peer,
    headers: HeaderMap,
    body: Body,
) -> Result<Reply, ApiError> {
    let user = crate::authenticate(&state, &headers, peer).await?;
    let body = crate::body::bytes(&state, body, &headers).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Invalid JSON."));
    }
    let body = crate::body::json(&body).map_err(|e| e.bad_request("Invalid JSON"))?;
    let (operation, request) = OpRequest::new(body)?;
    dispatch(&state, &user, &operation, request).await
}

async fn dispatch(
    state: &AppState,
    user: &User,
    operation: &str,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let database = req.database().ok();
    let access = Access {
        via: Via::Operations,
        operation,
        action: action(operation),
        database: database.as_deref(),
        table: req.get(&["table"]).and_then(Value::as_str),
    };
    state.auth.check(user, &access)?;
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
        "search_by_id" | "search_by_hash" => search::by_id(state, req).await,
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
        "add_user" => users::add_user(state, req).await,
        "alter_user" => users::alter_user(state, req).await,
        "drop_user" => users::drop_user(state, req).await,
        other => Err(ApiError::bad_request(format!(
            "Operation '{other}' not found"
        ))),
    }
}

/// What an operation does, for the permission check. Anything not about data is `Admin`,
/// unknown operations included (they are answered after the check).
fn action(operation: &str) -> Action {
    match operation {
        "search_by_id" | "search_by_hash" | "search_by_value" | "search_by_conditions" => {
            Action::Read
        }
        "describe_all" | "describe_database" | "describe_schema" | "describe_table" => {
            Action::Describe
        }
        "insert" => Action::Insert,
        "update" => Action::Update,
        "upsert" => Action::Upsert,
        "delete" => Action::Delete,
        "create_database" | "create_schema" | "drop_database" | "drop_schema" | "create_table"
        | "drop_table" | "create_attribute" | "drop_attribute" => Action::Structure,
        _ => Action::Admin,
    }
}
