//! The one permission check every interface asks before it acts: may this user do this
//! action on this database and table, through this interface?
//!
//! The rules today:
//! - `system` is not data. Its tables (users, nodes, certificates and any later `hdb_*`)
//!   change only through their own operations, which write them through this crate or the
//!   cluster, never through [`Auth::check`]. So every write, drop or schema change that
//!   names `system` is refused, to super users too.
//! - Only super users read `system`, and only through the Operations API; HTTP (REST and
//!   subscriptions) does not show it at all, as if it did not exist.
//! - Schema changes and every operation that is not about data are for super users.
//!
//! Roles with per-database, per-table and per-attribute grants extend [`Action`] and this
//! check (and add attribute filtering beside it); callers keep asking the same question.
//! SQL asks it once per table a statement touches.

use shoal_store::SYSTEM_DATABASE;

use crate::error::AuthError;
use crate::users::{Auth, User};

/// Harper's answer to any change of `system` through the data operations.
pub const SYSTEM_IS_INTERNAL: &str = "The 'system' database, tables and records are used internally by Shoal and cannot be updated or removed.";
/// Harper's answer when a role lacks a permission on a table.
pub const NOT_AUTHORIZED: &str =
    "This operation is not authorized due to role restrictions and/or invalid database items";

/// What a request does, as the permission check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Read records: searches, REST reads, subscriptions.
    Read,
    /// Read the description of a database or table.
    Describe,
    /// Add records.
    Insert,
    /// Change existing records.
    Update,
    /// Add or replace records.
    Upsert,
    /// Remove records.
    Delete,
    /// Create or drop databases, tables or attributes.
    Structure,
    /// Anything that is not about data: users, nodes, components, logs, node facts.
    Admin,
    /// Obtain or end the caller's own credentials (tokens, sessions): every authenticated
    /// user may, whatever the role.
    Login,
}

impl Action {
    /// Whether the action changes what it names.
    fn changes(self) -> bool {
        matches!(
            self,
            Action::Insert | Action::Update | Action::Upsert | Action::Delete | Action::Structure
        )
    }
}

/// The interface a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Via {
    /// The Operations API (including SQL, which arrives as an operation).
    Operations,
    /// The HTTP port: REST, WebSocket and Server-Sent Events.
    Http,
}

/// One request, as the permission check sees it.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The interface it came through.
    pub via: Via,
    /// The operation's name, for messages (`insert`, `drop_table`, `GET`).
    pub operation: &'a str,
    /// What it does.
    pub action: Action,
    /// The database it names, if any.
    pub database: Option<&'a str>,
    /// The table it names, if any.
    pub table: Option<&'a str>,
}

impl Auth {
    /// May `user` do what `access` describes? `Forbidden` (403) or `NotFound` (404) if not.
    pub fn check(&self, user: &User, access: &Access<'_>) -> Result<(), AuthError> {
        let system = access.database == Some(SYSTEM_DATABASE);
        if system && access.via != Via::Operations {
            return Err(AuthError::NotFound(match access.table {
                Some(table) => format!("Table '{SYSTEM_DATABASE}.{table}' does not exist"),
                None => format!("database '{SYSTEM_DATABASE}' does not exist"),
            }));
        }
        if system && access.action.changes() {
            return Err(AuthError::Forbidden(SYSTEM_IS_INTERNAL.to_owned()));
        }
        if user.super_user {
            return Ok(());
        }
        if matches!(access.action, Action::Structure | Action::Admin) {
            return Err(AuthError::Forbidden(format!(
                "Operation '{}' is restricted to 'super_user' roles",
                access.operation
            )));
        }
        if !system {
            return Ok(());
        }
        Err(AuthError::Forbidden(match access.action {
            Action::Describe => format!(
                "Your role does not have permission to view database metadata for '{SYSTEM_DATABASE}'"
            ),
            _ => NOT_AUTHORIZED.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use shoal_store::{Store, StoreOptions};

    fn user(super_user: bool) -> User {
        User {
            username: "u".into(),
            role: if super_user { "super_user" } else { "reader" }.into(),
            super_user,
        }
    }

    fn access<'a>(
        via: Via,
        action: Action,
        database: Option<&'a str>,
        table: Option<&'a str>,
    ) -> Access<'a> {
        Access {
            via,
            operation: "op",
            action,
            database,
            table,
        }
    }

    /// Every action on `system` and on a data table, for both kinds of user, through both
    /// interfaces: the whole matrix the check decides today.
    #[test]
    fn system_is_not_data() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::new(store);
        let actions = [
            Action::Read,
            Action::Describe,
            Action::Insert,
            Action::Update,
            Action::Upsert,
            Action::Delete,
            Action::Structure,
            Action::Admin,
        ];
        for su in [true, false] {
            let user = user(su);
            for action in actions {
                let on = |via, db| auth.check(&user, &access(via, action, Some(db), Some("t")));
                // HTTP never shows system.
                assert!(matches!(
                    on(Via::Http, SYSTEM_DATABASE),
                    Err(AuthError::NotFound(m)) if m == "Table 'system.t' does not exist"
                ));
                let system = on(Via::Operations, SYSTEM_DATABASE);
                if action.changes() {
                    assert!(
                        matches!(&system, Err(AuthError::Forbidden(m)) if m == SYSTEM_IS_INTERNAL),
                        "{action:?} on system by super={su}: {system:?}"
                    );
                } else {
                    assert_eq!(system.is_ok(), su, "{action:?} on system by super={su}");
                }
                let data = on(Via::Operations, "data");
                let su_only = matches!(action, Action::Structure | Action::Admin);
                assert_eq!(
                    data.is_ok(),
                    su || !su_only,
                    "{action:?} on data, super={su}"
                );
                assert!(on(Via::Http, "data").is_ok() || (!su && su_only));
            }
        }
        let reader = user(false);
        assert!(matches!(
            auth.check(&reader, &access(Via::Operations, Action::Admin, None, None)),
            Err(AuthError::Forbidden(m)) if m == "Operation 'op' is restricted to 'super_user' roles"
        ));
        assert!(matches!(
            auth.check(&reader, &access(Via::Operations, Action::Describe, Some(SYSTEM_DATABASE), None)),
            Err(AuthError::Forbidden(m)) if m.starts_with("Your role does not have permission")
        ));
    }
}
