//! The auth layer's error type.

use shoal_store::StoreError;

/// Why a request is not let through, or a user operation failed.
#[derive(Debug, thiserror::Error)]
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
    /// The user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A user operation was malformed.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
