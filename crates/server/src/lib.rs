//! Shoal's network edge, on axum: the Operations API (port 9925) and the HTTP port (9926:
//! REST, WebSocket and Server-Sent Events subscriptions, `/health`).
//!
//! What it owns:
//! - **Routers.** [`ops_router`] answers `POST /` with `{"operation": ...}`: the name (or
//!   one of Harper's legacy aliases) is parsed once into a typed operation, which says
//!   what the permission check must require and which handler runs. [`http_router`]
//!   serves `/health`, REST at `/{database}/{table}/{id}` and at the names components
//!   export, and subscriptions on the same URLs; a WebSocket upgrade offering the `mqtt`
//!   subprotocol, on any path, goes to the MQTT broker. Both take an [`AppState`]: the node's
//!   parts ([`App`]), shared by every handler.
//! - **Serving.** [`serve()`] runs a router on a listener as a named worker, with a
//!   connection cap and counters ([`Port`], [`ServerStats`]), header and keep-alive
//!   timeouts ([`ServeOptions`]) and a graceful shutdown; [`serve_tls()`] the same over
//!   TLS, with a handshake timeout and, when configured, client certificates that name
//!   a user ([`ServerTls`]). [`serve_mqtt()`] and [`serve_mqtt_tls()`] hand the MQTT
//!   port's connections to the broker ([`MqttServer`]) under a cap of their own.
//! - **Requests and answers.** Bodies are read within a size limit, a stall timeout and a
//!   memory budget shared by all requests ([`BodyBudget`]); records go over the wire as
//!   JSON, CBOR, MessagePack or CSV; long answers stream ([`QueryOptions`]). Every failure
//!   is Harper's `{"error": "..."}` with a fitting status ([`ApiError`]).
//!
//! Every request is authenticated (Basic against the system user table, a Bearer
//! operation token, a verified client certificate, or a session cookie) except
//! `GET /health`, which only says the node is up, the Operations API's credential
//! operations, which bring their own (a password, a refresh token), and MQTT WebSocket
//! upgrades, whose clients log in with CONNECT (the broker checks); each asks
//! `shoal_auth`'s permission check before it acts and applies the grant it answers:
//! reads show only the attributes the role may read, writes are refused whole when one
//! attribute may not be written.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use axum::body::Body;
//! use axum::http::{Request, StatusCode};
//! use shoal_auth::Auth;
//! use shoal_components::Components;
//! use shoal_server::{App, AppState, BodyBudget, NodeInfo, Port, QueryOptions, RestOptions};
//! use shoal_server::{ServerStats, ops_router};
//! use shoal_store::{Store, StoreOptions};
//! use tower_service::Service;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "node-a"))?);
//! let auth = Arc::new(Auth::new(store.clone()));
//! auth.bootstrap("admin", Some("secret")).await?;
//! let port = || Arc::new(Port::new(100));
//! let stats = ServerStats::new(port(), port(), port());
//! let state = AppState::new(App {
//!     store: store.clone(),
//!     auth,
//!     components: Arc::new(Components::new(dir.path().join("components"))),
//!     cluster: None,
//!     info: NodeInfo { hostname: "localhost".into(), version: "0.1.0".into(), started: Instant::now() },
//!     rest: RestOptions::default(),
//!     max_body: 1 << 20,
//!     query: QueryOptions::default(),
//!     body_read_timeout: Duration::from_secs(10),
//!     body_budget: BodyBudget::new(16 << 20),
//!     stats: Arc::new(stats),
//!     tokens: shoal_auth::TokenOptions::default(),
//!     mqtt: None,
//! });
//!
//! // What `serve` does for each request on the Operations API port.
//! let mut ops = ops_router(state);
//! let request = Request::post("/")
//!     .header("authorization", "Basic YWRtaW46c2VjcmV0") // admin:secret
//!     .header("content-type", "application/json")
//!     .body(Body::from(r#"{"operation": "create_table", "table": "dog", "primary_key": "id"}"#))?;
//! let response = ops.call(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(store.database("data")?.catalog().tables.contains_key("dog"));
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! Not here: storage formats and how commits are followed (the store), query planning
//! (`shoal_query`), who may do what (`shoal_auth`), replication and membership
//! (`shoal_cluster`; the cluster operations call it), reading component folders
//! (`shoal_components`; this crate serves what they declare), and configuration files,
//! listening sockets and start-up (the `shoal` binary).

mod body;
mod cookie;
mod databases;
mod describe;
mod error;
mod mqtt;
mod ops;
mod realtime;
mod request;
mod rest;
mod serve;
mod stream;
mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, Method, StatusCode, Uri, header};
use axum::routing::{get, post};
use axum::{Router, middleware};
use serde_json::json;
use shoal_auth::{Auth, AuthError, TokenOptions, User};
use shoal_components::Components;
use shoal_store::Store;

pub use body::BodyBudget;
pub use databases::StoreTables;
pub use error::ApiError;
pub use mqtt::{MqttServer, serve_mqtt, serve_mqtt_tls};
pub use serve::{Port, ServeOptions, serve, serve_tls};
pub use tls::{MtlsOptions, MtlsUser, ServerTls, TlsError, TlsOptions};

/// Facts about the running node shown by system_information.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Machine host name.
    pub hostname: String,
    /// Shoal version.
    pub version: String,
    /// When the node started.
    pub started: Instant,
}

/// REST and subscription settings.
#[derive(Debug, Clone)]
pub struct RestOptions {
    /// Serve every table at `/{database}/{table}/`, not only exported ones.
    pub expose_all_tables: bool,
    /// A subscriber further behind the log head than this many entries is cut off.
    pub subscription_max_lag: u64,
    /// A subscriber with more than this many bytes of events not yet taken by its
    /// connection is cut off (an event always fits an empty buffer).
    pub subscription_max_buffer_bytes: usize,
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions {
            expose_all_tables: true,
            subscription_max_lag: 10_000,
            subscription_max_buffer_bytes: 8 << 20,
        }
    }
}

/// Limits on query answers.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    /// Most bytes of results one query holds to sort them.
    pub sort_buffer_bytes: usize,
    /// Most primary keys an index lookup collects for one condition.
    pub max_candidates: usize,
    /// Most bytes of a MessagePack collection gathered in memory; a larger answer is
    /// counted first (its array is length-prefixed), then streamed.
    pub msgpack_buffer_bytes: usize,
    /// A streamed answer whose client takes nothing for this long is ended, releasing
    /// the read transaction it holds.
    pub stall_timeout: std::time::Duration,
}

impl QueryOptions {
    /// The memory bounds of one query.
    pub(crate) fn limits(&self) -> shoal_query::Limits {
        shoal_query::Limits {
            sort_buffer_bytes: self.sort_buffer_bytes,
            max_candidates: self.max_candidates,
        }
    }
}

impl Default for QueryOptions {
    fn default() -> Self {
        let limits = shoal_query::Limits::default();
        QueryOptions {
            sort_buffer_bytes: limits.sort_buffer_bytes,
            max_candidates: limits.max_candidates,
            msgpack_buffer_bytes: 16 << 20,
            stall_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// What the network edge is carrying now, for operators (`system_information`).
#[derive(Debug)]
pub struct ServerStats {
    /// The Operations API port's connections.
    pub ops: Arc<Port>,
    /// The HTTP port's connections.
    pub http: Arc<Port>,
    /// MQTT connections (its ports and WebSockets together).
    pub mqtt: Arc<Port>,
}

impl ServerStats {
    /// Statistics over the Operations API, HTTP and MQTT connections.
    pub fn new(ops: Arc<Port>, http: Arc<Port>, mqtt: Arc<Port>) -> Self {
        ServerStats { ops, http, mqtt }
    }
}

/// What every handler needs, shared: handlers and middleware take a copy per request,
/// which costs one reference count however many parts the node has.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl AppState {
    /// Shares `app` among the handlers.
    pub fn new(app: App) -> Self {
        AppState(Arc::new(app))
    }
}

impl std::ops::Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

/// The node's parts the handlers use.
pub struct App {
    /// The node's databases.
    pub store: Arc<Store>,
    /// Users and credentials.
    pub auth: Arc<Auth>,
    /// Components and their REST exports.
    pub components: Arc<Components>,
    /// Cluster membership and replication, when enabled.
    pub cluster: Option<Arc<shoal_cluster::Cluster>>,
    /// Node facts.
    pub info: NodeInfo,
    /// REST and subscription settings.
    pub rest: RestOptions,
    /// Largest request body accepted, in bytes (413 beyond it).
    pub max_body: usize,
    /// Limits on query answers.
    pub query: QueryOptions,
    /// Longest a request body may go without sending bytes (408 beyond it).
    pub body_read_timeout: Duration,
    /// Bytes of request bodies held at once, across all requests.
    pub body_budget: BodyBudget,
    /// Connections and subscriptions, for operators.
    pub stats: Arc<ServerStats>,
    /// Token and session lifetimes, and whether session cookies are accepted.
    pub tokens: TokenOptions,
    /// The MQTT broker that WebSocket upgrades offering the `mqtt` subprotocol go to;
    /// `None`: MQTT is not served on the HTTP ports.
    pub mqtt: Option<Arc<MqttServer>>,
}

/// The Operations API router.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/", post(ops::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_before_answering,
        ))
        // The handlers enforce `max_body` themselves, with a Harper-shaped error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The HTTP router: MQTT over WebSocket (when on), `/health`, then REST and
/// subscriptions for everything else.
pub fn http_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(rest::handle)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_before_answering,
        ))
        .layer(DefaultBodyLimit::disable())
        // Outermost: an MQTT upgrade is no REST request, and logs in with CONNECT.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            mqtt::intercept,
        ))
        .with_state(state)
}

/// Who is asking, as the connection recorded it in the request's extensions.
pub(crate) struct Peer {
    /// The client's IP address: a `ConnectInfo<SocketAddr>` extension, which
    /// `into_make_service_with_connect_info` (or any accept loop that inserts one)
    /// provides. Failed logins are limited per address when it is known.
    pub(crate) address: Option<IpAddr>,
    /// Whether the request came over TLS ([`serve_tls`]).
    pub(crate) secure: bool,
    /// The user the connection's verified client certificate names (mTLS).
    pub(crate) certificate_user: Option<Arc<str>>,
}

impl Peer {
    /// What a request's extensions say of its client.
    pub(crate) fn of(extensions: &Extensions) -> Self {
        let tls = extensions.get::<tls::TlsClient>();
        Peer {
            address: extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
            secure: tls.is_some(),
            certificate_user: tls.and_then(|tls| tls.user.clone()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Peer::of(&parts.extensions))
    }
}

/// Checks the request's credentials.
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Arc<User>, ApiError> {
    Ok(credentials(state, headers, peer).await?)
}

/// The request's user: from its `Authorization` header (Basic, or a Bearer operation
/// token) if it has one; else the user a verified client certificate names; else its
/// session cookie (when sessions are enabled). Users are read live: a dropped or disabled
/// user is refused at once.
pub(crate) async fn credentials(
    state: &AppState,
    headers: &HeaderMap,
    peer: Peer,
) -> Result<Arc<User>, AuthError> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if authorization.is_none() {
        if let Some(name) = &peer.certificate_user {
            return state.auth.user_named(name);
        }
        if state.tokens.sessions_enabled
            && let Some(id) = cookie::session_id(headers)
        {
            return state.auth.session_user(&id);
        }
    }
    state
        .auth
        .authenticate_from(authorization, peer.address)
        .await
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("Not found")
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{method} is not allowed on {}", uri.path()),
    )
}
