//! Shoal's network edge: the Operations API (port 9925) and the HTTP port (9926:
//! `/health` now; REST and subscriptions later), on axum.
//!
//! Every request is authenticated (Basic, against the system user table) except
//! `GET /health`, which only says the node is up. Every failure is Harper's
//! `{"error": "..."}` with a fitting status; nothing here knows storage formats.

mod error;
mod ops;
mod request;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde_json::json;
use shoal_auth::Auth;
use shoal_store::Store;

pub use error::ApiError;

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

/// What every handler needs.
#[derive(Clone)]
pub struct AppState {
    /// The node's databases.
    pub store: Arc<Store>,
    /// Users and credentials.
    pub auth: Arc<Auth>,
    /// Node facts.
    pub info: Arc<NodeInfo>,
    /// Largest request body accepted, in bytes (413 beyond it).
    pub max_body: usize,
}

/// The Operations API router.
pub fn ops_router(state: AppState) -> Router {
    Router::new()
        .route("/", post(ops::handle))
        .fallback(not_found)
        // The handler enforces `max_body` itself, with a Harper-shaped error.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The HTTP router: `/health` and, as they arrive, REST and real-time endpoints.
pub fn http_router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "ok" }))
}

async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "Not found".into(),
    }
}
