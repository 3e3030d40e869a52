//! Users, logins and permissions for Shoal.
//!
//! What it owns:
//! - **Users.** [`Auth`] is the only writer of the user table ([`USER_TABLE`]: `hdb_user`
//!   in the store's `system` database, keyed by username). [`Auth::bootstrap`] creates it,
//!   with a first super user, when the node starts; [`Auth::add_user`],
//!   [`Auth::alter_user`] and [`Auth::drop_user`] change it. Passwords are kept only as
//!   argon2id hashes. A user whose role is `super_user` is a super user; a record with
//!   `active: false` cannot log in.
//! - **Logins.** [`Auth::authenticate_from`] checks an `Authorization: Basic` header value
//!   and answers the [`User`] ([`Auth::authenticate`] when the client's address is
//!   unknown). An outcome, accepted or refused, is remembered with the user's stored
//!   record and used only while that record is unchanged, so a changed password, role or
//!   `active` flag, or a dropped user, takes effect on the next request, wherever the
//!   change was made. Password checks are bounded ([`AuthOptions`]: concurrent hashes,
//!   failed logins per username and per address).
//! - **Permissions.** [`Auth::check`] is the one permission check: every interface asks
//!   it whether a user may do an [`Action`] on a database and table through an interface
//!   ([`Via`]), and none decides alone. `system` is not data: nobody, super users
//!   included, changes it through the check, only super users read it, and only through
//!   the Operations API. Structure changes and administration are for super users.
//! - **Password proofs** ([`proof`]): proving to a node that one knows a user's password
//!   without sending it, over a connection not yet known to reach the right node (a
//!   cluster join).
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
//! let user = auth.authenticate(Some("Basic YWRtaW46c2VjcmV0")).await?; // admin:secret
//! assert!(user.super_user);
//! let drop_users = Access {
//!     via: Via::Operations,
//!     operation: "drop_table",
//!     action: Action::Structure,
//!     database: Some("system"),
//!     table: Some("hdb_user"),
//! };
//! assert!(matches!(auth.check(&user, &drop_users), Err(AuthError::Forbidden(_))));
//! let drop_dogs = Access { database: Some("dev"), table: Some("dog"), ..drop_users };
//! assert!(auth.check(&user, &drop_dogs).is_ok());
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! Not here: HTTP (the server hands over the header value and maps [`AuthError`] to a
//! status), roles with grants per database, table or attribute (a role is `super_user`
//! or not; other users may read and write every database but `system`), tokens and
//! sessions, and the cluster: a join asks `shoal_cluster`'s `Credentials`, which the
//! `shoal` binary implements over [`proof`], so neither crate depends on the other. The
//! other `system` tables (nodes, certificates) are the cluster's.

mod error;
mod grant;
mod limiter;
mod login;
mod permission;
mod permissions;
pub mod proof;
mod roles;
mod users;

pub use error::AuthError;
pub use grant::{Denial, Grant};
pub use permission::{AttributeGrant, Permission, Structure, TableGrant};
pub use permissions::{Access, Action, NOT_AUTHORIZED, SYSTEM_IS_INTERNAL, Via};
pub use roles::{LAST_SUPER_USER, ROLE_TABLE, RoleReport};
pub use users::{Auth, AuthOptions, USER_TABLE, User};
