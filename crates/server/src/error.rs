//! `ApiError`: every failure, as Harper shows it — `{"error": "..."}` with a status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use shoal_auth::{AuthError, Denial, RoleReport};
use shoal_components::ComponentError;
use shoal_query::QueryError;
use shoal_store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// The `error` text.
    pub message: String,
    /// What a role lacks, for a refusal by the permission check: Harper's 403 body
    /// carries it beside `error`.
    denial: Option<Box<Denial>>,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            denial: None,
        }
    }

    /// 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message.into())
    }

    /// 404 with a message.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message.into())
    }

    /// Writes answer a missing database or table with 400, as Harper's writes do.
    pub(crate) fn not_found_as_bad_request(mut self) -> Self {
        if self.status == StatusCode::NOT_FOUND {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::from(&e)
    }
}

impl From<&StoreError> for ApiError {
    fn from(e: &StoreError) -> Self {
        let status = match e {
            StoreError::DatabaseNotFound(_)
            | StoreError::TableNotFound { .. }
            | StoreError::AttributeNotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::DatabaseExists(_)
            | StoreError::TableExists { .. }
            | StoreError::AttributeExists { .. }
            | StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::MapFull | StoreError::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
            StoreError::Closed => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "store error");
        }
        ApiError::new(status, e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Store(e) => e.into(),
            QueryError::SortBufferFull { limit } => ApiError::bad_request(format!(
                "the results to sort are larger than the sort buffer ({limit} bytes, the \
                 setting query.sort_buffer_bytes); add a limit, sort by an indexed attribute, \
                 or raise the setting"
            )),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match &e {
            AuthError::MissingCredentials | AuthError::LoginFailed | AuthError::Inactive => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            AuthError::Denied(denial) => {
                let mut error = ApiError::new(StatusCode::FORBIDDEN, e.to_string());
                error.denial = Some(denial.clone());
                return error;
            }
            AuthError::NotFound(_) => StatusCode::NOT_FOUND,
            AuthError::Exists(_) => StatusCode::CONFLICT,
            AuthError::Invalid(_) | AuthError::RolePermissions(_) => StatusCode::BAD_REQUEST,
            AuthError::Store(e) => return ApiError::from(&**e),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Harper's answer to a malformed role: 400 with the report's groups beside `error`.
pub(crate) fn role_report(report: &RoleReport) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(report.body())).into_response()
}

impl From<ComponentError> for ApiError {
    fn from(e: ComponentError) -> Self {
        let status = match &e {
            ComponentError::Store(e) => return ApiError::from(e),
            ComponentError::FileNotFound(_) | ComponentError::NotFound(_) => StatusCode::NOT_FOUND,
            e if e.is_node_fault() => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "component files");
        }
        ApiError::new(status, e.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.status)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match &self.denial {
            Some(denial) => serde_json::Value::Object(denial.to_json(&self.message)),
            None => serde_json::json!({ "error": self.message }),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The request was abandoned part-way: the connection cannot carry another.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}
