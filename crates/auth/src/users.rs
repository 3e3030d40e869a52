//! The user table and the operations that change it: the only writers of `hdb_user`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Map, Value, json};
use shoal_store::{Mode, Outcome, SYSTEM_DATABASE, Store, StoreError, TableSpec, Write};
use tokio::sync::Semaphore;

use crate::error::AuthError;
use crate::limiter::Limiter;
use crate::login::{Flights, Outcomes, hash_password};
use crate::permission::Permission;
use crate::roles::{NamedBy, ROLE_TABLE};
use crate::sessions::SESSION_TABLE;
use crate::tokens::TOKEN_KEY_TABLE;

/// Table of users, keyed by username.
pub const USER_TABLE: &str = "hdb_user";

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Role name.
    pub role: String,
    /// Whether the role may do everything.
    pub super_user: bool,
    /// What the role grants.
    pub permission: Arc<Permission>,
}

impl User {
    /// The user a stored `hdb_user` record describes, with the role record it names (none
    /// if that role does not exist: then it may do nothing), once its credentials are
    /// proven: refused if the record says it is inactive.
    pub(crate) fn from_record(
        username: &str,
        record: &Map<String, Value>,
        role: Option<&Map<String, Value>>,
    ) -> Result<Arc<User>, AuthError> {
        if record.get("active") == Some(&Value::Bool(false)) {
            return Err(AuthError::Inactive);
        }
        let role_id = record
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (name, permission) = match role {
            Some(role) => (
                role.get("role").and_then(Value::as_str).unwrap_or(role_id),
                Permission::from_value(role.get("permission").unwrap_or(&Value::Null)),
            ),
            None => (role_id, Permission::default()),
        };
        Ok(Arc::new(User {
            username: username.to_owned(),
            role: name.to_owned(),
            super_user: permission.super_user,
            permission: Arc::new(permission),
        }))
    }
}

/// How logins are protected.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthOptions {
    /// Most password hashes computed at once; each holds a core and about 19 MiB for tens
    /// of milliseconds, so this bounds what password checks can take from the node.
    pub hash_concurrency: usize,
    /// Failed logins a username may have per window before further attempts for it are
    /// refused without checking (0: no limit).
    pub failed_logins_per_user: u32,
    /// Failed logins a client address may have per window (0: no limit).
    pub failed_logins_per_address: u32,
    /// How long a failed login counts.
    pub failed_login_window: Duration,
}

impl AuthOptions {
    /// Half the cores, at least one: password checks never take the whole machine.
    pub fn default_hash_concurrency() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }
}

impl Default for AuthOptions {
    fn default() -> Self {
        AuthOptions {
            hash_concurrency: AuthOptions::default_hash_concurrency(),
            failed_logins_per_user: 10,
            failed_logins_per_address: 50,
            failed_login_window: Duration::from_secs(60),
        }
    }
}

/// Users, logins and the permission check.
pub struct Auth {
    pub(crate) store: Arc<Store>,
    /// Outcomes of checked `Authorization` headers: the accepted ones.
    pub(crate) verified: Outcomes,
    /// The refused ones (kept apart, so refusals never evict accepted logins).
    pub(crate) refused: Outcomes,
    /// Password checks under way, by header, so that equal concurrent ones share one.
    pub(crate) flights: Mutex<Flights>,
    /// Bounds the argon2 work running at once.
    pub(crate) hashing: Semaphore,
    /// Failed-login limits per username and per client address.
    pub(crate) limiter: Limiter,
}

impl Auth {
    /// Wraps the store with default options; call [`Auth::bootstrap`] once at start.
    pub fn new(store: Arc<Store>) -> Self {
        Auth::with_options(store, AuthOptions::default())
    }

    /// Wraps the store; call [`Auth::bootstrap`] once at start.
    pub fn with_options(store: Arc<Store>, options: AuthOptions) -> Self {
        Auth {
            store,
            verified: RwLock::new(HashMap::new()),
            refused: RwLock::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            hashing: Semaphore::new(options.hash_concurrency.max(1)),
            limiter: Limiter::new(
                options.failed_logins_per_user,
                options.failed_logins_per_address,
                options.failed_login_window,
            ),
        }
    }

    /// Creates the system database and its user, role, token key and session tables if
    /// missing, the built-in roles, a token signing key if there is none, and the first
    /// super user if there is no user yet. Returns the password when it had to be generated.
    pub async fn bootstrap(
        &self,
        username: &str,
        password: Option<&str>,
    ) -> Result<Option<String>, AuthError> {
        let db = match self.store.database(SYSTEM_DATABASE) {
            Ok(db) => db,
            Err(StoreError::DatabaseNotFound(_)) => {
                self.store.create_database(SYSTEM_DATABASE).await?
            }
            Err(e) => return Err(e.into()),
        };
        let tables = [
            (USER_TABLE, "username"),
            (ROLE_TABLE, "id"),
            (TOKEN_KEY_TABLE, "id"),
            (SESSION_TABLE, "id"),
        ];
        for (table, primary_key) in tables {
            if db.catalog().tables.contains_key(table) {
                continue;
            }
            let spec = TableSpec {
                name: table.into(),
                primary_key: primary_key.into(),
                ..TableSpec::default()
            };
            match db.write(Write::CreateTable(spec), None).await {
                // Made meanwhile by replication from a node that started first.
                Ok(_) | Err(StoreError::TableExists { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.add_built_in_roles().await?;
        self.add_signing_key().await?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(USER_TABLE)?;
        if snapshot.record_count(&table)? > 0 {
            return Ok(None);
        }
        drop(snapshot);
        let (password, generated) = match password {
            Some(password) => (password.to_owned(), None),
            None => {
                let generated = random_password();
                (generated.clone(), Some(generated))
            }
        };
        self.add_user(username, &password, "super_user", true)
            .await?;
        Ok(generated)
    }

    /// Adds a user whose record names `role`, a role's id, as it is (Harper's `add_user`
    /// with the role already found: [`Auth::add_user_request`]).
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        role: &str,
        active: bool,
    ) -> Result<(), AuthError> {
        required("username", username)?;
        required("password", password)?;
        required("role", role)?;
        let hash = hash_password(&self.hashing, password.to_owned()).await?;
        let mut record = Map::new();
        record.insert("username".into(), json!(username));
        record.insert("password".into(), json!(hash));
        record.insert("role".into(), json!(role));
        record.insert("active".into(), json!(active));
        let outcome = self.write(Mode::Insert, record).await?;
        if outcome.written.is_empty() {
            return Err(AuthError::Exists(format!("User {username} already exists")));
        }
        Ok(())
    }

    /// Changes a user's password, role (named by its `role` name) or active flag (Harper's
    /// `alter_user`); the outcome names the user as updated, or skipped if there is no such
    /// user. Refused if it would leave no active super user.
    pub async fn alter_user(
        &self,
        username: &str,
        password: Option<&str>,
        role: Option<&str>,
        active: Option<bool>,
    ) -> Result<Outcome, AuthError> {
        required("username", username)?;
        if password.is_none() && role.is_none() && active.is_none() {
            return Err(AuthError::Invalid(
                "nothing to update, must supply active, role or password to update".into(),
            ));
        }
        if password.is_some_and(|p| p.trim().is_empty()) {
            return Err(AuthError::Invalid(
                "password cannot be an empty string".into(),
            ));
        }
        if role.is_some_and(str::is_empty) {
            return Err(AuthError::Invalid(
                "If role is specified, it cannot be empty.".into(),
            ));
        }
        let role = role
            .map(|name| self.role_id_named(name, NamedBy::AlterUser))
            .transpose()?;
        if role.is_some() || active.is_some() {
            let users = self.users()?;
            let roles = self.roles()?;
            let after: Vec<_> = users
                .iter()
                .map(|user| {
                    let mut user = user.clone();
                    if user.get("username") == Some(&json!(username)) {
                        if let Some(role) = &role {
                            user.insert("role".into(), json!(role));
                        }
                        if let Some(active) = active {
                            user.insert("active".into(), json!(active));
                        }
                    }
                    user
                })
                .collect();
            self.super_user_remains(&users, &roles, &after, &roles)?;
        }
        let mut record = Map::new();
        record.insert("username".into(), json!(username));
        if let Some(password) = password {
            let hash = hash_password(&self.hashing, password.to_owned()).await?;
            record.insert("password".into(), json!(hash));
        }
        if let Some(role) = role {
            record.insert("role".into(), json!(role));
        }
        if let Some(active) = active {
            record.insert("active".into(), json!(active));
        }
        self.write(Mode::Update, record).await
    }

    /// Removes a user (Harper's `drop_user`); refused if it would leave no active super
    /// user.
    pub async fn drop_user(&self, username: &str) -> Result<(), AuthError> {
        required("username", username)?;
        let users = self.users()?;
        let missing = || AuthError::NotFound(format!("User {username} does not exist"));
        if !users
            .iter()
            .any(|u| u.get("username") == Some(&json!(username)))
        {
            return Err(missing());
        }
        let after: Vec<_> = users
            .iter()
            .filter(|u| u.get("username") != Some(&json!(username)))
            .cloned()
            .collect();
        let roles = self.roles()?;
        self.super_user_remains(&users, &roles, &after, &roles)?;
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Delete {
            table: USER_TABLE.into(),
            ids: vec![json!(username)],
        };
        if db.write(write, None).await?.written.is_empty() {
            return Err(missing());
        }
        Ok(())
    }

    async fn write(&self, mode: Mode, record: Map<String, Value>) -> Result<Outcome, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Records {
            table: USER_TABLE.into(),
            mode,
            records: vec![record],
        };
        Ok(db.write(write, None).await?)
    }
}

fn required(name: &str, value: &str) -> Result<(), AuthError> {
    if value.is_empty() {
        return Err(AuthError::Invalid(format!("{name} is required")));
    }
    Ok(())
}

fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}
