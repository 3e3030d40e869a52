//! The auth layer's error type.

use std::sync::Arc;
use std::time::Duration;

use shoal_store::StoreError;

use crate::grant::Denial;

/// Why a request is not let through, or a user operation failed.
///
/// Cloneable so that concurrent logins with the same credentials can share one answer.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were sent.
    #[error("Must login")]
    MissingCredentials,
    /// Unknown user, wrong password or unreadable credentials.
    #[error("Login failed")]
    LoginFailed,
    /// The user exists but is disabled.
    #[error("Cannot complete request: User is inactive")]
    Inactive,
    /// Too many failed logins for this username or client address; the rest of the window
    /// must pass first.
    #[error(
        "Too many failed login attempts, try again in {} seconds",
        retry_after.as_secs().max(1)
    )]
    TooManyAttempts {
        /// How long until attempts are let through again.
        retry_after: Duration,
    },
    /// The user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The user's role does not grant this: Harper's 403 with what is missing.
    #[error("{}", crate::NOT_AUTHORIZED)]
    Denied(Box<Denial>),
    /// The thing does not exist, or this interface may not show it (`system` over REST).
    #[error("{0}")]
    NotFound(String),
    /// A user operation named a user that already exists.
    #[error("{0}")]
    Exists(String),
    /// A user operation was malformed.
    #[error("{0}")]
    Invalid(String),
    /// A role request was malformed: every problem, as Harper reports them.
    #[error("{}", crate::roles::ROLE_PERMS_ERROR)]
    RolePermissions(crate::roles::RoleReport),
    /// The store failed.
    #[error(transparent)]
    Store(Arc<StoreError>),
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        AuthError::Store(Arc::new(e))
    }
}
