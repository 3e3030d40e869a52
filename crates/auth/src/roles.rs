//! Roles and the views of users that show them: Harper's `add_role`, `alter_role`,
//! `drop_role`, `list_roles`, `list_users` and `user_info`, and the request checks of
//! `add_user`, with Harper's rules and messages.
//!
//! A role is a record `{id, role, permission}` of `system.hdb_role` (keyed by `id`, which
//! is the role's name unless `add_role` gives one). A user's record names its role by id;
//! operations name roles by their `role` name, as Harper's do. Role names are meant to be
//! unique: `add_role` and `alter_role` refuse a name another role has.
//!
//! Checks are made against this node's view of `system`, which replicates: two nodes may
//! each accept a change the other would refuse (Harper has the same window).

use std::collections::HashSet;
use std::ops::Bound;

use serde_json::{Map, Value, json};
use shoal_store::{Mode, SYSTEM_DATABASE, Store, StoreError, Write};

use crate::error::AuthError;
use crate::users::{Auth, USER_TABLE};

/// Table of roles, keyed by `id`.
pub const ROLE_TABLE: &str = "hdb_role";

/// The roles every node has from its first start; each one's id and name, and the flag
/// its permission sets.
const BUILT_IN_ROLES: [&str; 2] = ["super_user", "cluster_user"];

/// Attributes of a user record that no answer shows.
const SECRET_USER_ATTRIBUTES: [&str; 4] = ["password", "hash", "refresh_token", "hash_function"];

/// Harper's answer when a change would leave nobody able to administer the node.
pub const LAST_SUPER_USER: &str = "Rejected: this change would leave the instance with no active super_user. Grant super_user to another active user first.";

/// Keys a role request may carry (Harper's list).
const ROLE_REQUEST_KEYS: [&str; 6] = [
    "operation",
    "role",
    "id",
    "permission",
    "hdb_user",
    "access",
];
/// Permission keys that are flags of the role rather than database names.
const ROLE_FLAGS: [&str; 2] = ["super_user", "cluster_user"];
/// What a role may do on a table.
const TABLE_ACTIONS: [&str; 4] = ["read", "insert", "update", "delete"];
/// What a role may do on an attribute.
const ATTRIBUTE_ACTIONS: [&str; 3] = ["read", "insert", "update"];

/// Everything wrong with a role request, grouped as Harper reports it: problems with the
/// request or the role as a whole, and problems with one table's grants keyed
/// `<database>_<table>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleReport {
    /// Problems with the request or the role as a whole.
    pub main_permissions: Vec<String>,
    /// Problems with one table's grants, by `<database>_<table>`, in the order found.
    pub schema_permissions: Vec<(String, Vec<String>)>,
}

impl RoleReport {
    /// Harper's 400 body: `{"error", "main_permissions", "schema_permissions"}`.
    pub fn body(&self) -> Value {
        let tables: Map<String, Value> = self
            .schema_permissions
            .iter()
            .map(|(key, errors)| (key.clone(), json!(errors)))
            .collect();
        json!({
            "error": ROLE_PERMS_ERROR,
            "main_permissions": self.main_permissions,
            "schema_permissions": tables,
        })
    }

    fn is_empty(&self) -> bool {
        self.main_permissions.is_empty() && self.schema_permissions.is_empty()
    }

    fn main(&mut self, error: String) {
        self.main_permissions.push(error);
    }

    fn table(&mut self, database: &str, table: &str, error: String) {
        let key = format!("{database}_{table}");
        match self.schema_permissions.iter_mut().find(|(k, _)| *k == key) {
            Some((_, errors)) => errors.push(error),
            None => self.schema_permissions.push((key, vec![error])),
        }
    }
}

/// The `error` of a [`RoleReport`].
pub(crate) const ROLE_PERMS_ERROR: &str = "Errors in the role permissions JSON provided";

/// What checking a role needs to know of the node's databases.
pub(crate) trait Schema {
    /// Whether the database exists.
    fn has_database(&self, database: &str) -> bool;
    /// The table's known attributes, or `None` if there is no such table.
    fn attributes(&self, database: &str, table: &str) -> Option<Vec<String>>;
}

impl Schema for Store {
    fn has_database(&self, database: &str) -> bool {
        self.database(database).is_ok()
    }

    fn attributes(&self, database: &str, table: &str) -> Option<Vec<String>> {
        let db = self.database(database).ok()?;
        let catalog = db.catalog();
        Some(catalog.tables.get(table)?.attributes.clone())
    }
}

/// Which operation a role request is for: they require different fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoleOp {
    /// `add_role`: `role` and `permission` required, `id` optional.
    Add,
    /// `alter_role`: `id` and `permission` required, `role` optional.
    Alter,
}

/// Harper's checks of an `add_role` or `alter_role` request, every problem reported.
pub(crate) fn check_role(
    request: &Map<String, Value>,
    op: RoleOp,
    schema: &dyn Schema,
) -> Result<(), RoleReport> {
    let mut report = RoleReport::default();
    let unknown: Vec<&str> = request
        .keys()
        .map(String::as_str)
        .filter(|key| !ROLE_REQUEST_KEYS.contains(key))
        .collect();
    if !unknown.is_empty() {
        let noun = if unknown.len() > 1 { "keys" } else { "key" };
        report.main(format!(
            "Invalid {noun} in JSON body - '{}'",
            unknown.join("', '")
        ));
    }
    for error in [
        name_field(request, "role", "Role", op == RoleOp::Add),
        name_field(request, "id", "Id", op == RoleOp::Alter),
    ]
    .into_iter()
    .flatten()
    {
        report.main(error);
    }
    match request.get("permission") {
        None | Some(Value::Null) => report.main("Permission can't be blank".into()),
        Some(Value::Object(permission)) => check_permission(permission, schema, &mut report),
        Some(_) => report.main(
            "Value for 'permission' must be an object of role and database permissions".into(),
        ),
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(report)
    }
}

fn check_permission(permission: &Map<String, Value>, schema: &dyn Schema, report: &mut RoleReport) {
    if permission.get("super_user") == Some(&Value::Bool(true)) && permission.len() > 1 {
        report
            .main("Roles with 'super_user' set to true cannot have other permissions set.".into());
    }
    for flag in ROLE_FLAGS {
        if permission
            .get(flag)
            .is_some_and(|v| truthy(v) && !v.is_boolean())
        {
            report.main(format!("Value for '{flag}' permission must be a boolean"));
        }
    }
    for (key, grant) in permission {
        if ROLE_FLAGS.contains(&key.as_str()) {
            continue;
        }
        if key == "structure_user" {
            match grant {
                Value::Bool(_) => {}
                Value::Array(databases) => {
                    for database in databases {
                        let name = text(database);
                        if !schema.has_database(&name) {
                            report.main(format!("database '{name}' does not exist"));
                        }
                    }
                }
                _ => report.main(format!(
                    "Value for '{key}' permission must be a boolean or Array"
                )),
            }
            continue;
        }
        if key == "operations" {
            // Harper's per-role operation lists are not enforced here; accepting one would
            // let the role do what its author meant to forbid.
            report.main("Permission 'operations' is not supported by Shoal".into());
            continue;
        }
        if !schema.has_database(key) {
            report.main(format!("database '{key}' does not exist"));
            continue;
        }
        match grant.get("tables") {
            None | Some(Value::Null) => {}
            Some(Value::Object(tables)) => {
                for (table, grant) in tables {
                    check_table(key, table, grant, schema, report);
                }
            }
            Some(_) => report.main(format!("Value for 'tables' of '{key}' must be an object")),
        }
    }
}

fn check_table(
    database: &str,
    table: &str,
    grant: &Value,
    schema: &dyn Schema,
    report: &mut RoleReport,
) {
    let Some(attributes) = schema.attributes(database, table) else {
        report.main(format!("Table '{database}.{table}' does not exist"));
        return;
    };
    let empty = Map::new();
    let grant = grant.as_object().unwrap_or(&empty);
    for key in grant.keys() {
        if key != "attribute_permissions" && !TABLE_ACTIONS.contains(&key.as_str()) {
            report.table(
                database,
                table,
                format!("Invalid table permission key value '{key}'"),
            );
        }
    }
    for action in TABLE_ACTIONS {
        let upper = action.to_uppercase();
        match grant.get(action) {
            None | Some(Value::Null) => {
                report.table(database, table, format!("Missing table {upper} permission"));
            }
            Some(Value::Bool(_)) => {}
            Some(_) => report.table(
                database,
                table,
                format!("Table {upper} permission must be a boolean"),
            ),
        }
    }
    let list = match grant.get("attribute_permissions") {
        None => {
            report.table(
                database,
                table,
                "Missing 'attribute_permissions' array".into(),
            );
            return;
        }
        Some(Value::Null) => return,
        Some(Value::Array(list)) => list,
        Some(_) => {
            report.table(
                database,
                table,
                "Value for 'attribute_permissions' must be an array".into(),
            );
            return;
        }
    };
    // Which actions some attribute grants: a table that denies one cannot.
    let mut granted = HashSet::new();
    for item in list {
        let item = item.as_object().unwrap_or(&empty);
        for key in item.keys() {
            // Harper tolerates `delete` here and ignores it.
            if key != "attribute_name"
                && key != "delete"
                && !ATTRIBUTE_ACTIONS.contains(&key.as_str())
            {
                report.table(
                    database,
                    table,
                    format!("Invalid attribute permission key value '{key}'"),
                );
            }
        }
        let name = match item.get("attribute_name") {
            None | Some(Value::Null) => {
                report.table(
                    database,
                    table,
                    "Permission object in 'attribute_permission' missing an 'attribute_name'"
                        .into(),
                );
                continue;
            }
            Some(Value::String(name)) if attributes.contains(name) => name,
            Some(other) => {
                report.table(
                    database,
                    table,
                    format!(
                        "Invalid attribute '{}' in 'attribute_permissions'",
                        text(other)
                    ),
                );
                continue;
            }
        };
        for action in ATTRIBUTE_ACTIONS {
            let upper = action.to_uppercase();
            match item.get(action) {
                None | Some(Value::Null) => report.table(
                    database,
                    table,
                    format!("{upper} attribute permission missing for '{name}'"),
                ),
                Some(Value::Bool(true)) => {
                    granted.insert(action);
                }
                Some(Value::Bool(false)) => {}
                Some(_) => report.table(
                    database,
                    table,
                    format!("{upper} attribute permission for '{name}' must be a boolean"),
                ),
            }
        }
    }
    let conflict = ATTRIBUTE_ACTIONS
        .iter()
        .any(|action| granted.contains(action) && grant.get(*action) == Some(&Value::Bool(false)));
    if conflict {
        report.table(
            database,
            table,
            format!(
                "You have a conflict with TABLE permissions for '{database}.{table}' being false and ATTRIBUTE permissions being true"
            ),
        );
    }
}

/// A role's `role` or `id`: Harper's `[\w\-]+`, whole. `None` if fine.
fn name_field(
    request: &Map<String, Value>,
    key: &str,
    label: &str,
    required: bool,
) -> Option<String> {
    match request.get(key) {
        None | Some(Value::Null) => required.then(|| format!("{label} can't be blank")),
        Some(Value::String(name)) if valid_name(name) => None,
        Some(_) => Some(format!("{label} is invalid")),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// JavaScript's truthiness, which Harper's flag checks use.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as Harper's messages show it: strings bare.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Harper's checks of an `add_user` request, every problem in one message.
fn check_new_user(request: &Map<String, Value>) -> Result<(), AuthError> {
    let mut errors = Vec::new();
    let present = |key: &str| request.get(key).filter(|v| !v.is_null());
    match present("username") {
        None => errors.push("Username can't be blank".to_owned()),
        Some(Value::String(name)) if name.is_empty() => {
            errors.push("Username can't be blank".to_owned());
        }
        Some(Value::String(name)) if name == SYSTEM_DATABASE => {
            errors.push("Username You cannot create tables within the system schema".to_owned());
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("Username must be a string".to_owned()),
    }
    match present("password") {
        None => errors.push("Password can't be blank".to_owned()),
        Some(Value::String(password)) if password.is_empty() => {
            errors.push("Password can't be blank".to_owned());
        }
        Some(Value::String(_)) => {}
        Some(_) => errors.push("Password must be a string".to_owned()),
    }
    if let Some(error) = name_field(request, "role", "Role", true) {
        errors.push(error);
    }
    match present("active") {
        None => errors.push("Active can't be blank".to_owned()),
        Some(Value::Bool(_)) => {}
        Some(_) => errors.push("Active must be a boolean".to_owned()),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(AuthError::Invalid(errors.join(",")))
    }
}

/// Which operation names a role, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NamedBy {
    /// `add_user`.
    AddUser,
    /// `alter_user`.
    AlterUser,
}

impl Auth {
    /// Adds the built-in `super_user` and `cluster_user` roles where missing (their ids are
    /// their names, so every node makes the same records and replication has nothing to
    /// reconcile). Part of [`Auth::bootstrap`].
    pub(crate) async fn add_built_in_roles(&self) -> Result<(), AuthError> {
        let roles = self.roles()?;
        let records = BUILT_IN_ROLES
            .iter()
            .filter(|name| !roles.iter().any(|r| r.get("role") == Some(&json!(name))))
            .map(|name| role_record(&json!(name), name, json!({ *name: true })))
            .collect::<Vec<_>>();
        if !records.is_empty() {
            self.write_roles(Mode::Insert, records).await?;
        }
        Ok(())
    }

    /// Harper's `add_user`: checks the request, finds the role it names and adds the user
    /// with that role's id. Answers the username.
    pub async fn add_user_request(
        &self,
        request: &Map<String, Value>,
    ) -> Result<String, AuthError> {
        check_new_user(request)?;
        let text = |key: &str| request.get(key).and_then(Value::as_str).unwrap_or_default();
        let role = self.role_id_named(text("role"), NamedBy::AddUser)?;
        let active = request
            .get("active")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let username = text("username");
        self.add_user(username, text("password"), &role, active)
            .await?;
        Ok(username.to_owned())
    }

    /// The id of the role named `name`, or Harper's refusal (404 none, 409 several).
    pub(crate) fn role_id_named(&self, name: &str, by: NamedBy) -> Result<String, AuthError> {
        let roles = self.roles()?;
        let mut named = roles.iter().filter(|r| r.get("role") == Some(&json!(name)));
        let Some(role) = named.next() else {
            return Err(AuthError::NotFound(match by {
                NamedBy::AddUser => format!("{name} role not found"),
                NamedBy::AlterUser => format!("Update failed.  Requested '{name}' role not found."),
            }));
        };
        if named.next().is_some() {
            return Err(AuthError::Exists(format!(
                "Multiple {name} roles found.  Roles must have unique 'role' value. Please update and try again."
            )));
        }
        Ok(role.get("id").map(text).unwrap_or_default())
    }

    /// Harper's `add_role`: answers the stored role.
    pub async fn add_role(
        &self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, AuthError> {
        check_role(request, RoleOp::Add, &*self.store).map_err(AuthError::RolePermissions)?;
        let name = request
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if self
            .roles()?
            .iter()
            .any(|r| r.get("role") == Some(&json!(name)))
        {
            return Err(AuthError::Exists(format!(
                "A role with name '{name}' already exists"
            )));
        }
        let id = request.get("id").cloned().unwrap_or_else(|| json!(name));
        let permission = request.get("permission").cloned().unwrap_or_default();
        let outcome = self
            .write_roles(Mode::Insert, vec![role_record(&id, name, permission)])
            .await?;
        if outcome.written.is_empty() {
            return Err(AuthError::Exists(format!(
                "A role with id '{}' already exists",
                text(&id)
            )));
        }
        self.role(&id)?
            .ok_or_else(|| AuthError::NotFound("Role not found".into()))
    }

    /// Harper's `alter_role`: replaces the role's permission (and its name, if given);
    /// answers the stored role.
    pub async fn alter_role(
        &self,
        request: &Map<String, Value>,
    ) -> Result<Map<String, Value>, AuthError> {
        check_role(request, RoleOp::Alter, &*self.store).map_err(AuthError::RolePermissions)?;
        let id = request.get("id").cloned().unwrap_or_default();
        let roles = self.roles()?;
        if let Some(name) = request.get("role")
            && roles
                .iter()
                .any(|r| r.get("role") == Some(name) && r.get("id") != Some(&id))
        {
            return Err(AuthError::Exists(format!(
                "A role with name '{}' already exists",
                text(name)
            )));
        }
        let mut record = Map::new();
        record.insert("id".into(), id.clone());
        for key in ["role", "permission"] {
            if let Some(value) = request.get(key) {
                record.insert(key.into(), value.clone());
            }
        }
        let after: Vec<Map<String, Value>> = roles
            .iter()
            .map(|role| {
                let mut role = role.clone();
                if role.get("id") == Some(&id) {
                    role.extend(record.clone());
                }
                role
            })
            .collect();
        let users = self.users()?;
        self.super_user_remains(&users, &roles, &users, &after)?;
        let outcome = self.write_roles(Mode::Update, vec![record]).await?;
        if outcome.written.is_empty() {
            return Err(AuthError::Invalid("Invalid role id".into()));
        }
        self.role(&id)?
            .ok_or_else(|| AuthError::Invalid("Invalid role id".into()))
    }

    /// Harper's `drop_role`, refused while an active user has the role; answers Harper's
    /// message.
    pub async fn drop_role(&self, request: &Map<String, Value>) -> Result<String, AuthError> {
        if let Some(error) = name_field(request, "id", "Id", true) {
            return Err(AuthError::Invalid(error));
        }
        let id = request.get("id").cloned().unwrap_or_default();
        let Some(role) = self.role(&id)? else {
            return Err(AuthError::NotFound("Role not found".into()));
        };
        let name = role.get("role").map(text).unwrap_or_default();
        let roles = self.roles()?;
        let in_use = self.users()?.iter().any(|user| {
            user.get("active") == Some(&Value::Bool(true))
                && role_of(user, &roles).is_some_and(|r| r.get("id") == Some(&id))
        });
        if in_use {
            return Err(AuthError::Exists(format!(
                "Cannot drop role {name} as it has active user(s) tied to this role"
            )));
        }
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Delete {
            table: ROLE_TABLE.into(),
            ids: vec![id],
        };
        if db.write(write, None).await?.written.is_empty() {
            return Err(AuthError::NotFound("Role not found".into()));
        }
        Ok(format!("{name} successfully deleted"))
    }

    /// Harper's `list_roles`: every stored role, by id.
    pub fn list_roles(&self) -> Result<Vec<Map<String, Value>>, AuthError> {
        self.roles()
    }

    /// Harper's `list_users`: every user without its password hash, its role expanded
    /// into the role's record (with the `system` tables' read-only grants Harper shows).
    pub fn list_users(&self) -> Result<Vec<Map<String, Value>>, AuthError> {
        let roles = self.roles()?;
        let system_tables: Vec<String> = self
            .store
            .database(SYSTEM_DATABASE)?
            .catalog()
            .tables
            .keys()
            .cloned()
            .collect();
        self.users()?
            .into_iter()
            .map(|mut user| {
                let role = role_of(&user, &roles).cloned().map(|mut role| {
                    let super_user = role
                        .get("permission")
                        .is_some_and(|p| p.get("super_user") == Some(&Value::Bool(true)));
                    if let Some(Value::Object(permission)) = role.get_mut("permission") {
                        let grants: Map<String, Value> = system_tables
                            .iter()
                            .map(|table| (table.clone(), system_grant(super_user)))
                            .collect();
                        let system = permission
                            .entry(SYSTEM_DATABASE)
                            .or_insert_with(|| json!({}));
                        if let Value::Object(system) = system {
                            system.insert("tables".into(), Value::Object(grants));
                        } else {
                            *system = json!({ "tables": grants });
                        }
                    }
                    role
                });
                Ok(shown(&mut user, role))
            })
            .collect()
    }

    /// Harper's `user_info`: the user's own record without its password hash, its role
    /// expanded.
    pub fn user_info(&self, username: &str) -> Result<Map<String, Value>, AuthError> {
        let roles = self.roles()?;
        let mut user = self
            .users()?
            .into_iter()
            .find(|u| u.get("username") == Some(&json!(username)))
            .ok_or_else(|| AuthError::NotFound(format!("User {username} does not exist")))?;
        let role = role_of(&user, &roles).cloned();
        Ok(shown(&mut user, role))
    }

    /// Refuses a change to users or roles that would leave no active super user where
    /// there is one (Harper's guard against locking everyone out).
    pub(crate) fn super_user_remains(
        &self,
        users: &[Map<String, Value>],
        roles: &[Map<String, Value>],
        users_after: &[Map<String, Value>],
        roles_after: &[Map<String, Value>],
    ) -> Result<(), AuthError> {
        if active_super_users(users, roles) > 0 && active_super_users(users_after, roles_after) == 0
        {
            return Err(AuthError::Exists(LAST_SUPER_USER.into()));
        }
        Ok(())
    }

    /// Every role record, by id; none if the table does not exist yet.
    pub(crate) fn roles(&self) -> Result<Vec<Map<String, Value>>, AuthError> {
        self.records(ROLE_TABLE)
    }

    /// Every user record, by username.
    pub(crate) fn users(&self) -> Result<Vec<Map<String, Value>>, AuthError> {
        self.records(USER_TABLE)
    }

    fn records(&self, table: &str) -> Result<Vec<Map<String, Value>>, AuthError> {
        let db = match self.store.database(SYSTEM_DATABASE) {
            Ok(db) => db,
            Err(StoreError::DatabaseNotFound(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let snapshot = db.snapshot()?;
        let table = match snapshot.table(table) {
            Ok(table) => table,
            Err(StoreError::TableNotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut records = Vec::new();
        for row in snapshot.scan(&table, Bound::Unbounded, Bound::Unbounded, false)? {
            let (_, version) = row?;
            records.extend(version.value()?);
        }
        Ok(records)
    }

    fn role(&self, id: &Value) -> Result<Option<Map<String, Value>>, AuthError> {
        Ok(self.roles()?.into_iter().find(|r| r.get("id") == Some(id)))
    }

    async fn write_roles(
        &self,
        mode: Mode,
        records: Vec<Map<String, Value>>,
    ) -> Result<shoal_store::Outcome, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Records {
            table: ROLE_TABLE.into(),
            mode,
            records,
        };
        Ok(db.write(write, None).await?)
    }
}

fn role_record(id: &Value, name: &str, permission: Value) -> Map<String, Value> {
    let mut record = Map::new();
    record.insert("id".into(), id.clone());
    record.insert("role".into(), json!(name));
    record.insert("permission".into(), permission);
    record
}

/// The role a user record names, by its id.
pub(crate) fn role_of<'a>(
    user: &Map<String, Value>,
    roles: &'a [Map<String, Value>],
) -> Option<&'a Map<String, Value>> {
    let id = user.get("role")?;
    roles.iter().find(|r| r.get("id") == Some(id))
}

fn active_super_users(users: &[Map<String, Value>], roles: &[Map<String, Value>]) -> usize {
    users
        .iter()
        .filter(|user| user.get("active") == Some(&Value::Bool(true)))
        .filter(|user| {
            role_of(user, roles).is_some_and(|role| {
                role.get("permission")
                    .is_some_and(|p| p.get("super_user") == Some(&Value::Bool(true)))
            })
        })
        .count()
}

/// A user record as answers show it: no secrets, the role expanded (or left out when it
/// no longer exists, as Harper does).
fn shown(user: &mut Map<String, Value>, role: Option<Map<String, Value>>) -> Map<String, Value> {
    for secret in SECRET_USER_ATTRIBUTES {
        user.remove(secret);
    }
    match role {
        Some(role) => {
            user.insert("role".into(), Value::Object(role));
        }
        None => {
            user.remove("role");
        }
    }
    std::mem::take(user)
}

fn system_grant(read: bool) -> Value {
    json!({
        "read": read,
        "insert": false,
        "update": false,
        "delete": false,
        "attribute_permissions": [],
    })
}

#[cfg(test)]
mod tests;
