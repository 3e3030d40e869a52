//! Users, logins and permissions for Shoal.
//!
//! What it owns:
//! - **Users.** [`Auth`] is the only writer of the user table ([`USER_TABLE`]: `hdb_user`
//!   in the store's `system` database, keyed by username). [`Auth::bootstrap`] creates it,
//!   with a first super user, when the node starts; [`Auth::add_user`],
//!   [`Auth::alter_user`] and [`Auth::drop_user`] change it. Passwords are kept only as
//!   argon2id hashes. A record with `active: false` cannot log in.
//! - **Roles** (`roles`): the role table ([`ROLE_TABLE`]: `hdb_role`, keyed by `id`), with
//!   the built-in `super_user` and `cluster_user` roles (made by [`Auth::bootstrap`]);
//!   Harper's role operations, their checks of a role's `permission` object
//!   ([`RoleReport`]), and the views of users that expand their roles and never show a
//!   password hash. Users name roles by their name; records keep the role's id. No change
//!   may leave the node without an active super user ([`LAST_SUPER_USER`]).
//! - **Logins.** [`Auth::authenticate_from`] checks an `Authorization: Basic` header value
//!   and answers the [`User`], with the [`Permission`] of its role ([`Auth::authenticate`]
//!   when the client's address is unknown). An outcome, accepted or refused, is
//!   remembered with the user's and its role's stored records and used only while both
//!   are unchanged, so a changed password, role, grant or `active` flag, or a dropped
//!   user, takes effect on the next request, wherever the change was made. Password checks are bounded ([`AuthOptions`]: concurrent hashes,
//!   failed logins per username and per address).
//! - **Tokens and sessions.** [`Auth::create_tokens`], [`Auth::refresh_token_user`] and
//!   [`Auth::create_operation_token`] make Harper's JWTs (operation and refresh tokens,
//!   ES256, [`TokenOptions`] lifetimes), signed with keys kept in `system` ([`TOKEN_KEY_TABLE`], replicated, so every node
//!   verifies every node's tokens); [`Auth::authenticate_from`] accepts `Bearer` operation
//!   tokens. [`Auth::login`] makes a session in `system` ([`SESSION_TABLE`]), which
//!   [`Auth::session_user`] resolves and [`Auth::logout`] ends. Both read the live user on
//!   every request.
//! - **Permissions.** [`Auth::check`] is the one permission check: every interface asks
//!   it whether a user may do an [`Action`] on a database and table through an interface
//!   ([`Via`]), and none decides alone. It answers a [`Grant`]: what the role allows
//!   attribute by attribute (reads filtered, writes checked whole), or Harper's refusal
//!   ([`Denial`]: `unauthorized_access`, `invalid_schema_items`). Roles grant per
//!   database, table and attribute ([`Permission`], read from Harper's `permission`
//!   objects); structure users create and drop tables in their databases; administration
//!   is for super users. `system` is not data: nobody, super users included, changes it
//!   through the check, only super users read it, and only through the Operations API.
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
//! status and Harper's body), TLS and client certificates (the server verifies them and
//! asks [`Auth::user_named`]), cookies (the server names them and hands over the session
//! id), and the cluster: a join asks
//! `shoal_cluster`'s `Credentials`, which the `shoal` binary implements over [`proof`], so
//! neither crate depends on the other. The other `system` tables (nodes, certificates) are
//! the cluster's.

mod error;
mod grant;
mod limiter;
mod login;
mod permission;
mod permissions;
pub mod proof;
mod roles;
mod sessions;
mod tokens;
mod users;

pub use error::AuthError;
pub use grant::{Denial, Grant};
pub use permission::{AttributeGrant, Permission, Structure, TableGrant};
pub use permissions::{Access, Action, NOT_AUTHORIZED, SYSTEM_IS_INTERNAL, Via};
pub use roles::{LAST_SUPER_USER, ROLE_TABLE, RoleReport};
pub use sessions::{SESSION_TABLE, Session};
pub use tokens::{TOKEN_KEY_TABLE, TokenOptions, Tokens};
pub use users::{Auth, AuthOptions, USER_TABLE, User};
