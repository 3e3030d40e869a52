//! The Operations API: `POST /` with `{"operation": ...}`, dispatched by [`Operation`].

mod cluster;
mod components;
mod crud;
mod logs;
mod operation;
mod schema;
mod search;
mod system;
mod tokens;
mod users;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_auth::{Access, Action, AuthError, User, Via};
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
    let (address, secure) = (peer.address, peer.secure);
    let user = match crate::credentials(&state, &headers, peer).await {
        Ok(user) => Ok(user),
        // A request with no credentials, or a refresh token as its bearer, may bring its
        // own to an operation that takes them (a password, a refresh token): the body
        // says which operation it is.
        Err(refused @ (AuthError::MissingCredentials | AuthError::InvalidToken)) => Err(refused),
        Err(e) => return Err(e.into()),
    };
    // The body keeps its share of the body budget until the answer is made: the parsed
    // operation lives that long.
    let parsed = match crate::body::bytes(&state, body, &headers).await {
        Ok(held) => parse_operation(&held).map(|operation| (held, operation)),
        Err(e) => Err(e),
    };
    let call = Call {
        headers: &headers,
        peer: address,
        secure,
    };
    match (user, parsed) {
        (Ok(user), parsed) => {
            let (_held, (operation, request)) = parsed?;
            dispatch(&state, &user, operation, request, call).await
        }
        (Err(refused), Ok((_held, (operation, request)))) => {
            tokens::without_credentials(&state, operation, request, call, refused).await
        }
        // As before any body is looked at: the credentials' answer comes first.
        (Err(refused), Err(_)) => Err(refused.into()),
    }
}

/// The request's body parsed as an operation.
fn parse_operation(
    body: &[u8],
) -> Result<(Result<Operation, UnknownOperation>, OpRequest), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Invalid JSON."));
    }
    let body = crate::body::json(body).map_err(|e| e.bad_request("Invalid JSON"))?;
    OpRequest::new(body)
}

/// What an operation may need of its request beyond the body.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The request's headers.
    pub(crate) headers: &'a HeaderMap,
    /// The client's address, when known.
    pub(crate) peer: Option<std::net::IpAddr>,
    /// Whether the request came over TLS.
    pub(crate) secure: bool,
}

async fn dispatch(
    state: &AppState,
    user: &User,
    operation: Result<Operation, UnknownOperation>,
    req: OpRequest,
    call: Call<'_>,
) -> Result<Reply, ApiError> {
    // The operations about the caller name no database or table, and describe_all names
    // none (`database()` would answer the default one): it shows whatever the role sees.
    let about_data = !matches!(&operation, Ok(op) if op.action() == Action::Own);
    let database = match operation {
        Ok(Operation::DescribeAll) => None,
        _ => req.database().ok().filter(|_| about_data),
    };
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
        table: req
            .get(&["table"])
            .and_then(Value::as_str)
            .filter(|_| about_data),
    };
    let grant = state.auth.check(user, &access)?;
    let operation = operation.map_err(|unknown| ApiError::bad_request(unknown.to_string()))?;
    match operation {
        Operation::CreateDatabase => schema::create_database(state, req).await,
        Operation::DropDatabase => schema::drop_database(state, req).await,
        Operation::CreateTable => schema::create_table(state, req).await,
        Operation::DropTable => schema::drop_table(state, req).await,
        Operation::CreateAttribute => schema::create_attribute(state, req).await,
        Operation::DropAttribute => schema::drop_attribute(state, req).await,
        Operation::DescribeAll => schema::describe_all(state, user),
        Operation::DescribeDatabase => schema::describe_database(state, user, req),
        Operation::DescribeTable => schema::describe_table(state, &grant, req),
        Operation::Insert => crud::write(state, user, &grant, req, Mode::Insert).await,
        Operation::Update => crud::write(state, user, &grant, req, Mode::Update).await,
        Operation::Upsert => crud::write(state, user, &grant, req, Mode::Upsert).await,
        Operation::Delete => crud::delete(state, user, req).await,
        Operation::SearchById => search::by_id(state, &grant, req).await,
        Operation::SearchByValue => search::by_value(state, &grant, req).await,
        Operation::SearchByConditions => search::by_conditions(state, &grant, req).await,
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
        Operation::CreateAuthenticationTokens => {
            tokens::create_authentication_tokens(state, Some(user), req, call).await
        }
        Operation::RefreshOperationToken => {
            tokens::refresh_operation_token(state, req, call, false)
        }
        Operation::Login => tokens::login(state, req, call).await,
        Operation::Logout => tokens::logout(state, call).await,
    }
}
