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
//! - A role is never granted `system`, whatever its `permission` lists.
//! - Reads and writes need the table permission Harper names (`read`, `insert`, `update`,
//!   both for an upsert, `delete`); a database or table the role grants nothing on is
//!   told as not existing (`invalid_schema_items`), a missing permission is listed
//!   (`unauthorized_access`). The answer is a [`Grant`], which the caller applies to the
//!   attributes it reads and writes.
//! - Tables and attributes are created and dropped by structure users in their
//!   databases, databases only by `structure_user: true`; every other operation that is
//!   not about data is for super users, except what concerns the caller itself
//!   ([`Action::Own`]: its tokens, sessions and user record).
//!
//! SQL will ask it once per table a statement touches.

use serde_json::json;
use shoal_store::SYSTEM_DATABASE;

use crate::error::AuthError;
use crate::grant::{Denial, Grant};
use crate::permission::{Permission, Structure, TableGrant};
use crate::users::{Auth, User};

/// Harper's answer to any change of `system` through the data operations.
pub const SYSTEM_IS_INTERNAL: &str = "The 'system' database, tables and records are used internally by Shoal and cannot be updated or removed.";
/// Harper's answer when a role lacks a permission on a table.
pub const NOT_AUTHORIZED: &str =
    "This operation is not authorized due to role restrictions and/or invalid database items";

/// What a request does, as the permission check sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// About the caller itself (its tokens, sessions, its own user record): every
    /// authenticated user may, whatever the role.
    Own,
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
    /// The MQTT broker: subscribing reads, publishing writes.
    Mqtt,
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
    /// May `user` do what `access` describes? Answers what it may do on the table, attribute
    /// by attribute; refuses with Harper's 403 body ([`AuthError::Denied`]), or a plain 403
    /// or 404 for `system`.
    pub fn check(&self, user: &User, access: &Access<'_>) -> Result<Grant, AuthError> {
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
        let permission = &user.permission;
        if permission.super_user {
            return Ok(Grant::whole());
        }
        if system && access.action == Action::Describe {
            return Err(Denial::unauthorized(format!(
                "Your role does not have permission to view database metadata for '{SYSTEM_DATABASE}'"
            )));
        }
        match access.action {
            Action::Own => Ok(Grant::whole()),
            Action::Admin => Err(super_user_only(access.operation)),
            Action::Structure => check_structure(permission, access),
            Action::Describe
            | Action::Read
            | Action::Insert
            | Action::Update
            | Action::Upsert
            | Action::Delete => {
                // Without a table there is nothing to grant or refuse yet: the operation
                // answers its own validation error (Harper's order too). `describe_all`
                // shows only what the role sees.
                let Some(database) = access.database else {
                    return Ok(Grant::whole());
                };
                // `system` is never granted to a role: it does not exist for it.
                let sees = !system && permission.sees_database(database);
                let Some(table) = access.table else {
                    return match sees {
                        true => Ok(Grant::whole()),
                        false => Err(Denial::invalid(format!(
                            "database '{database}' does not exist"
                        ))),
                    };
                };
                let grant = (!system)
                    .then(|| permission.table(database, table))
                    .flatten();
                let Some(grant) = grant else {
                    return Err(Denial::invalid(match sees {
                        true => format!("Table '{database}.{table}' does not exist"),
                        false => format!("database '{database}' does not exist"),
                    }));
                };
                let missing = required(access.action)
                    .iter()
                    .copied()
                    .filter(|perm| !granted(grant, perm))
                    .collect::<Vec<_>>();
                if !missing.is_empty() {
                    return Err(AuthError::Denied(Box::new(Denial {
                        unauthorized_access: vec![json!({
                            "schema": database,
                            "table": table,
                            "required_table_permissions": missing,
                            "required_attribute_permissions": [],
                        })],
                        invalid_schema_items: Vec::new(),
                    })));
                }
                Ok(match &grant.attributes {
                    None => Grant::whole(),
                    Some(attributes) => Grant::attributes(
                        database,
                        table,
                        attributes.clone(),
                        &self.primary_key(database, table),
                    ),
                })
            }
        }
    }

    /// A table's primary key, for the attribute rules that derive its grant; empty if the
    /// table does not exist (the operation then fails on its own).
    fn primary_key(&self, database: &str, table: &str) -> String {
        self.store
            .database(database)
            .ok()
            .and_then(|db| {
                db.catalog()
                    .tables
                    .get(table)
                    .map(|t| t.primary_key.clone())
            })
            .unwrap_or_default()
    }
}

/// Creating and dropping: databases by `structure_user: true` roles, tables and
/// attributes by roles that structure their database.
fn check_structure(permission: &Permission, access: &Access<'_>) -> Result<Grant, AuthError> {
    let allowed = match (access.database, access.table) {
        (Some(database), Some(_)) => permission.structures(database),
        _ => permission.structure == Structure::All,
    };
    if allowed {
        return Ok(Grant::whole());
    }
    // Databases themselves are for `structure_user: true` only: to a role limited to
    // some databases, creating or dropping one is a super user's operation (Harper).
    if permission.structure == Structure::None || access.table.is_none() {
        return Err(super_user_only(access.operation));
    }
    Err(Denial::unauthorized(format!(
        "User does not have access to perform '{}' against schema '{}'",
        access.operation,
        access.database.unwrap_or_default()
    )))
}

fn super_user_only(operation: &str) -> AuthError {
    Denial::unauthorized(format!(
        "Operation '{operation}' is restricted to 'super_user' roles"
    ))
}

/// The table permissions an action needs, by Harper's names.
fn required(action: Action) -> &'static [&'static str] {
    match action {
        Action::Read => &["read"],
        Action::Insert => &["insert"],
        Action::Update => &["update"],
        Action::Upsert => &["insert", "update"],
        Action::Delete => &["delete"],
        _ => &[],
    }
}

fn granted(grant: &TableGrant, permission: &str) -> bool {
    match permission {
        "read" => grant.read,
        "insert" => grant.insert,
        "update" => grant.update,
        _ => grant.delete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use serde_json::Value;
    use shoal_store::{Store, StoreOptions};

    fn user(permission: Value) -> User {
        let permission = Permission::from_value(&permission);
        User {
            username: "u".into(),
            role: "r".into(),
            super_user: permission.super_user,
            permission: Arc::new(permission),
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

    const ACTIONS: [Action; 8] = [
        Action::Read,
        Action::Describe,
        Action::Insert,
        Action::Update,
        Action::Upsert,
        Action::Delete,
        Action::Structure,
        Action::Admin,
    ];

    fn auth() -> (tempfile::TempDir, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        (dir, Auth::new(store))
    }

    fn denial(result: Result<Grant, AuthError>) -> Denial {
        match result {
            Err(AuthError::Denied(denial)) => *denial,
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    /// Every action on `system` and on a data table, for a super user and a role granted
    /// everything on the data table, through both interfaces.
    #[test]
    fn system_is_not_data() {
        let (_dir, auth) = auth();
        let crud = json!({"read": true, "insert": true, "update": true, "delete": true});
        for su in [true, false] {
            let user = match su {
                true => user(json!({"super_user": true})),
                false => user(
                    json!({"data": {"tables": {"t": crud}}, "system": {"tables": {"t": crud}}}),
                ),
            };
            for action in ACTIONS {
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
                    // A role never reaches system, whatever it lists.
                    assert_eq!(system.is_ok(), su, "{action:?} on system by super={su}");
                }
                let su_only = matches!(action, Action::Structure | Action::Admin);
                for via in [Via::Operations, Via::Http] {
                    let data = on(via, "data");
                    assert_eq!(
                        data.is_ok(),
                        su || !su_only,
                        "{action:?} on data, super={su}"
                    );
                }
            }
        }
        let reader = user(json!({}));
        assert_eq!(
            denial(auth.check(&reader, &access(Via::Operations, Action::Admin, None, None))),
            Denial {
                unauthorized_access: vec![json!(
                    "Operation 'op' is restricted to 'super_user' roles"
                )],
                invalid_schema_items: vec![],
            }
        );
        let describe = access(
            Via::Operations,
            Action::Describe,
            Some(SYSTEM_DATABASE),
            None,
        );
        assert!(
            denial(auth.check(&reader, &describe)).unauthorized_access[0]
                .as_str()
                .unwrap()
                .starts_with("Your role does not have permission")
        );
    }

    /// Table grants: each action needs its permissions; what the role cannot see is told
    /// as missing; what it lacks is listed.
    #[test]
    fn table_grants_decide_each_action() {
        let (_dir, auth) = auth();
        let reader = user(json!({"dev": {"tables": {
            "dog": {"read": true, "insert": true, "update": false, "delete": false},
            "cat": {"read": false, "insert": false, "update": false, "delete": false}
        }}}));
        let on =
            |action, db, table| auth.check(&reader, &access(Via::Http, action, Some(db), table));
        assert!(on(Action::Read, "dev", Some("dog")).unwrap().is_whole());
        assert!(on(Action::Insert, "dev", Some("dog")).is_ok());
        assert!(on(Action::Describe, "dev", Some("dog")).is_ok());
        assert!(on(Action::Describe, "dev", None).is_ok());
        assert_eq!(
            denial(on(Action::Upsert, "dev", Some("dog"))).unauthorized_access,
            [
                json!({"schema": "dev", "table": "dog", "required_table_permissions": ["update"],
                    "required_attribute_permissions": []})
            ]
        );
        assert_eq!(
            denial(on(Action::Delete, "dev", Some("cat"))).invalid_schema_items,
            ["Table 'dev.cat' does not exist"]
        );
        assert_eq!(
            denial(on(Action::Read, "prod", Some("dog"))).invalid_schema_items,
            ["database 'prod' does not exist"]
        );
        assert_eq!(
            denial(on(Action::Describe, "prod", None)).invalid_schema_items,
            ["database 'prod' does not exist"]
        );
        // No table named: the operation's own validation answers.
        assert!(on(Action::Insert, "prod", None).is_err());
        assert!(
            auth.check(&reader, &access(Via::Operations, Action::Read, None, None))
                .is_ok()
        );
    }

    /// Structure users create tables and attributes where they are allowed, and
    /// databases only with `structure_user: true`.
    #[test]
    fn structure_users_change_only_their_databases() {
        let (_dir, auth) = auth();
        let some = user(json!({"structure_user": ["dev"]}));
        let all = user(json!({"structure_user": true}));
        let ddl = |db, table| access(Via::Operations, Action::Structure, Some(db), table);
        assert!(auth.check(&some, &ddl("dev", Some("t"))).is_ok());
        assert_eq!(
            denial(auth.check(&some, &ddl("prod", Some("t")))).unauthorized_access,
            [json!(
                "User does not have access to perform 'op' against schema 'prod'"
            )]
        );
        assert_eq!(
            denial(auth.check(&some, &ddl("dev", None))).unauthorized_access,
            [json!("Operation 'op' is restricted to 'super_user' roles")]
        );
        assert!(auth.check(&all, &ddl("prod", None)).is_ok());
        assert!(auth.check(&all, &ddl("prod", Some("t"))).is_ok());
        // Structure covers the data of its databases too.
        let read = access(Via::Http, Action::Delete, Some("dev"), Some("any"));
        assert!(auth.check(&some, &read).is_ok());
        assert!(
            auth.check(&user(json!({})), &ddl("dev", Some("t")))
                .is_err()
        );
    }
}
