//! The REST interface on the HTTP port: `/{database}/{table}/{id}` for every table (unless
//! turned off) and `/{Export}/{id}` for tables a component exports.
//!
//! | request | answer |
//! |---|---|
//! | `GET /T/id` | the record (404 if missing), `ETag`, `Last-Modified`; `If-None-Match` → 304 |
//! | `PUT /T/id` | replace or create the record → 204 |
//! | `POST /T/` | create with a generated id → 201 + `Location` |
//! | `PATCH /T/id` | merge into the record (404 if missing) → 204 |
//! | `DELETE /T/id` | delete → 204 (404 if missing) |
//! | `GET /T/?query` | the matching records, streamed |
//! | `DELETE /T/?query` | delete the matching records |
//! | `GET /T` | describe the table |
//! | `OPTIONS` | the allowed methods |
//!
//! A WebSocket upgrade or `Accept: text/event-stream` on `/T/id` or `/T/` subscribes.
//!
//! Every request asks the permission check first; tables of the `system` database are
//! never served here (404, as if they did not exist), whatever path would name them.
//! The check answers a [`shoal_auth::Grant`] that the handlers apply attribute by
//! attribute (see [`attributes`]): reads show only readable attributes, queries may
//! name only readable ones, writes are refused whole if they touch an attribute the role
//! may not write.

mod attributes;
mod collection;
mod format;
mod record;
mod target;

use axum::body::Body;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

pub(crate) use format::Format;
pub(crate) use target::Target;

use shoal_auth::{Access, Action, Via};

use crate::error::ApiError;
use crate::realtime;
use crate::{AppState, Peer};

/// Every request to the HTTP port that is not `/health`.
pub(crate) async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let head_only = request.method() == Method::HEAD;
    let response = match route(state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if head_only {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    response
}

async fn route(state: AppState, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let user = crate::authenticate(&state, &parts.headers, Peer::of(&parts.extensions)).await?;
    let target = Target::resolve(&state, parts.uri.path())?;
    let access = Access {
        via: Via::Http,
        operation: parts.method.as_str(),
        action: action(&parts.method, &target),
        database: Some(target.db.name()),
        table: Some(&target.table.name),
    };
    // What the role may do attribute by attribute: every handler below applies it.
    let grant = state.auth.check(&user, &access)?;
    let query = parts.uri.query().map(str::to_owned);
    let method = parts.method.clone();
    let wants_events = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if method == Method::GET && parts.headers.contains_key(header::UPGRADE) {
        let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("WebSocket upgrade failed: {e}")))?;
        let start = realtime::start(query.as_deref(), &parts.headers)?;
        return realtime::websocket(&state, &target, start, &user, upgrade);
    }
    if method == Method::GET && wants_events && !target.is_describe() {
        let start = realtime::start(query.as_deref(), &parts.headers)?;
        return realtime::sse(&state, &target, start, &user);
    }
    if method == Method::OPTIONS {
        return Ok((
            StatusCode::NO_CONTENT,
            [(
                header::ALLOW,
                "GET, HEAD, PUT, POST, PATCH, DELETE, OPTIONS",
            )],
        )
            .into_response());
    }
    let headers = &parts.headers;
    // Only writes take a body; any other is read and dropped before the answer goes out
    // (`body::read_before_answering`).
    let body = match method {
        Method::PUT | Method::PATCH | Method::POST => {
            crate::body::bytes(&state, body, headers).await?
        }
        _ => Default::default(),
    };
    match (method, target.id.is_some(), target.is_describe()) {
        (Method::GET | Method::HEAD, _, true) => collection::describe(&target, headers, &grant),
        (Method::GET | Method::HEAD, true, _) => record::get(&target, headers, &grant),
        (Method::GET | Method::HEAD, false, _) => {
            collection::query(&state, &target, headers, query.as_deref(), grant).await
        }
        (Method::PUT, true, _) => record::put(&target, headers, &body, &user, &grant).await,
        (Method::PATCH, true, _) => record::patch(&target, headers, &body, &user, &grant).await,
        (Method::DELETE, true, _) => record::delete(&target, &user).await,
        (Method::POST, false, false) => record::post(&target, headers, &body, &user, &grant).await,
        (Method::DELETE, false, false) => {
            let limits = state.query.limits();
            collection::delete(&target, query.as_deref(), &user, &grant, limits).await
        }
        (method, _, _) => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {}", parts.uri.path()),
        )),
    }
}

/// What a request does to its table, for the permission check (a subscription reads).
fn action(method: &Method, target: &Target) -> Action {
    match *method {
        Method::PUT => Action::Upsert,
        Method::POST => Action::Insert,
        Method::PATCH => Action::Update,
        Method::DELETE => Action::Delete,
        _ if target.is_describe() => Action::Describe,
        _ => Action::Read,
    }
}
