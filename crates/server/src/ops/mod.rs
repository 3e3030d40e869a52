//! The Operations API: `POST /` with `{"operation": ...}`, dispatched by [`Operation`].

mod cluster;
mod components;
mod crud;
mod logs;
mod operation;
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
use shoal_store::Mode;

use crate::error::ApiError;
use crate::request::OpRequest;
use crate::{AppState, Peer};

pub(crate) use operation::{Operation, UnknownOperation};

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
    dispatch(&state, &user, operation, request).await
}

async fn dispatch(
    state: &AppState,
    user: &User,
    operation: Result<Operation, UnknownOperation>,
    req: OpRequest,
) -> Result<Reply, ApiError> {
    let database = req.database().ok();
    // A name no operation has is asked about as an administrative one, so only super users
    // learn that it does not exist.
    let (name, action) = match &operation {
        Ok(op) => (op.name(), op.action()),
        Err(UnknownOperation(name)) => (name.as_str(), Action::Admin),
    };
    let access = Access {
        via: Via::Operations,
        operation: name,
        action,
        database: database.as_deref(),
        table: req.get(&["table"]).and_then(Value::as_str),
    };
    state.auth.check(user, &access)?;
    let operation = operation.map_err(|unknown| ApiError::bad_request(unknown.to_string()))?;
    match operation {
        Operation::CreateDatabase => schema::create_database(state, req).await,
        Operation::DropDatabase => schema::drop_database(state, req).await,
        Operation::CreateTable => schema::create_table(state, req).await,
        Operation::DropTable => schema::drop_table(state, req).await,
        Operation::CreateAttribute => schema::create_attribute(state, req).await,
        Operation::DropAttribute => schema::drop_attribute(state, req).await,
        Operation::DescribeAll => schema::describe_all(state),
        Operation::DescribeDatabase => schema::describe_database(state, req),
        Operation::DescribeTable => schema::describe_table(state, req),
        Operation::Insert => crud::write(state, user, req, Mode::Insert).await,
        Operation::Update => crud::write(state, user, req, Mode::Update).await,
        Operation::Upsert => crud::write(state, user, req, Mode::Upsert).await,
        Operation::Delete => crud::delete(state, user, req).await,
        Operation::SearchById => search::by_id(state, req).await,
        Operation::SearchByValue => search::by_value(state, req).await,
        Operation::SearchByConditions => search::by_conditions(state, req).await,
        Operation::ReadTransactionLog => logs::read_transaction_log(state, req).await,
        Operation::ReadAuditLog => logs::read_audit_log(state, req).await,
        Operation::SystemInformation => system::system_information(state, req),
        Operation::AddNode => cluster::add_node(state, req).await,
        Operation::UpdateNode => cluster::update_node(state, req).await,
        Operation::RemoveNode => cluster::remove_node(state, req).await,
        Operation::ClusterStatus => cluster::cluster_status(state),
        Operation::ConfigureCluster => cluster::configure_cluster(state, req).await,
        Operation::AddComponent => components::add_component(state, req).await,
        Operation::SetComponentFile => components::set_component_file(state, req).await,
        Operation::GetComponentFile => components::get_component_file(state, req),
        Operation::GetComponents => components::get_components(state),
        Operation::DropComponent => components::drop_component(state, req).await,
        Operation::AddUser => users::add_user(state, req).await,
        Operation::AlterUser => users::alter_user(state, req).await,
        Operation::DropUser => users::drop_user(state, req).await,
        Operation::ListUsers => users::list_users(state),
        Operation::UserInfo => users::user_info(state, user),
        Operation::AddRole => users::add_role(state, req).await,
        Operation::AlterRole => users::alter_role(state, req).await,
        Operation::DropRole => users::drop_role(state, req).await,
        Operation::ListRoles => users::list_roles(state),
    }
}
