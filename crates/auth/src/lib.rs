//! Users, logins and permissions for Shoal.
//!
//! Users live in the `system` database (`hdb_user`, keyed by username), with passwords
//! hashed by argon2id. [`Auth::authenticate_from`] checks an `Authorization: Basic` header;
//! a verified header is remembered with the user's stored record and used only while that
//! record is unchanged, so a changed password, role or `active` flag, or a dropped user,
//! takes effect on the next request, wherever the change was made. Password checks are
//! bounded (concurrent hashes, failed logins per username and per address).
//!
//! [`Auth::check`] is the one permission check: every interface asks it whether a user may
//! do an [`Action`] on a database and table, and none decides alone.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use shoal_auth::{Access, Action, Auth, AuthError, Via};
//! use shoal_store::{Store, StoreOptions};
//! let dir = tempfile::tempdir()?;
//! let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "node-a"))?);
//! let auth = Auth::new(store.clone());
//! auth.bootstrap("admin", Some("secret")).await?;
//! let user = auth.authenticate(Some("Basic YWRtaW46c2VjcmV0")).await?;
//! let drop_users = Access {
//!     via: Via::Operations,
//!     operation: "drop_table",
//!     action: Action::Structure,
//!     database: Some("system"),
//!     table: Some("hdb_user"),
//! };
//! assert!(matches!(auth.check(&user, &drop_users), Err(AuthError::Forbidden(_))));
//! store.close().await;
//! # Ok(()) }
//! ```

mod error;
mod limiter;
mod login;
mod permissions;
pub mod proof;
mod users;

pub use error::AuthError;
pub use permissions::{Access, Action, NOT_AUTHORIZED, SYSTEM_IS_INTERNAL, Via};
pub use users::{Auth, AuthOptions, USER_TABLE, User};
