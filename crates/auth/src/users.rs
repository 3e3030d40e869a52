//! The user table, password hashing and the verified-credentials cache.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use serde_json::{Value, json};
use shoal_store::{Mode, Store, StoreError, TableSpec, Write};

use crate::error::AuthError;

/// Database holding users, roles and other node metadata.
pub const SYSTEM_DATABASE: &str = "system";
/// Table of users, keyed by username.
pub const USER_TABLE: &str = "hdb_user";
/// Most verified credentials remembered before the cache starts over.
const CACHE_LIMIT: usize = 10_000;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// Login name.
    pub username: String,
    /// Role name.
    pub role: String,
    /// Whether the role may do everything.
    pub super_user: bool,
}

/// Authentication against the user table.
pub struct Auth {
    store: Arc<Store>,
    verified: RwLock<HashMap<String, Arc<User>>>,
}

impl Auth {
    /// Wraps the store; call [`Auth::bootstrap`] once at start.
    pub fn new(store: Arc<Store>) -> Self {
        Auth {
            store,
            verified: RwLock::new(HashMap::new()),
        }
    }

    /// Creates the system database and user table if missing, and the first super user if
    /// there is no user yet. Returns the password when it had to be generated.
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
        if !db.catalog().tables.contains_key(USER_TABLE) {
            let spec = TableSpec {
                name: USER_TABLE.into(),
                primary_key: "username".into(),
                ..TableSpec::default()
            };
            db.write(Write::CreateTable(spec), None).await?;
        }
        let snapshot = db.snapshot()?;
        let table = snapshot.table(USER_TABLE)?;
        if snapshot.record_count(&table)? > 0 {
            return Ok(None);
        }
        drop(snapshot);
        let generated = password.is_none().then(random_password);
        let password = password
            .or(generated.as_deref())
            .expect("one of them is set");
        self.add_user(username, password, "super_user", true)
            .await?;
        Ok(generated)
    }

    /// Adds a user.
    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        role: &str,
        active: bool,
    ) -> Result<(), AuthError> {
        if username.is_empty() || password.is_empty() {
            return Err(AuthError::Invalid(
                "username and password are required".into(),
            ));
        }
        let hash = hash_password(password.to_owned()).await?;
        let record =
            json!({"username": username, "password": hash, "role": role, "active": active});
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Records {
            table: USER_TABLE.into(),
            mode: Mode::Insert,
            records: vec![record.as_object().expect("object").clone()],
        };
        let outcome = db.write(write, None).await?;
        if outcome.written.is_empty() {
            return Err(AuthError::Invalid(format!(
                "User {username} already exists"
            )));
        }
        self.forget();
        Ok(())
    }

    /// Checks an `Authorization` header value.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<User>, AuthError> {
        let header = authorization.ok_or(AuthError::MissingCredentials)?;
        if let Some(user) = self.verified.read().expect("cache lock").get(header) {
            return Ok(user.clone());
        }
        let (username, password) = parse_basic(header).ok_or(AuthError::LoginFailed)?;
        let db = self.store.database(SYSTEM_DATABASE)?;
        let stored = {
            let snapshot = db.snapshot()?;
            let table = snapshot.table(USER_TABLE)?;
            match snapshot
                .get(&table, &Value::from(username.as_str()))?
                .map(|v| v.value())
            {
                Some(record) => record?,
                None => None,
            }
        };
        let Some(stored) = stored else {
            return Err(AuthError::LoginFailed);
        };
        let hash = stored
            .get("password")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if !verify_password(password, hash).await {
            return Err(AuthError::LoginFailed);
        }
        if stored.get("active") == Some(&Value::Bool(false)) {
            return Err(AuthError::Inactive);
        }
        let role = stored
            .get("role")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let user = Arc::new(User {
            username,
            super_user: role == "super_user",
            role,
        });
        let mut cache = self.verified.write().expect("cache lock");
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(header.to_owned(), user.clone());
        Ok(user)
    }

    /// The store users are kept in.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Forgets every verified credential (after any change to users).
    pub fn forget(&self) {
        self.verified.write().expect("cache lock").clear();
    }
}

fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Hashing is slow on purpose; keep it off the async workers.
async fn hash_password(password: String) -> Result<String, AuthError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Invalid(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| AuthError::Invalid(format!("hashing failed: {e}")))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

fn random_password() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_store::StoreOptions;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[tokio::test]
    async fn bootstrap_then_authenticate() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::new(store.clone());
        assert_eq!(auth.bootstrap("admin", Some("pw")).await.unwrap(), None);
        assert_eq!(
            auth.bootstrap("admin", None).await.unwrap(),
            None,
            "only once"
        );
        let user = auth
            .authenticate(Some(&basic("admin", "pw")))
            .await
            .unwrap();
        assert!(user.super_user);
        assert!(
            auth.authenticate(Some(&basic("admin", "pw"))).await.is_ok(),
            "cached"
        );
        assert!(matches!(
            auth.authenticate(Some(&basic("admin", "no"))).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            auth.authenticate(Some(&basic("nobody", "pw"))).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            auth.authenticate(Some("Basic !!!")).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::MissingCredentials)
        ));
        auth.add_user("off", "pw", "super_user", false)
            .await
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&basic("off", "pw"))).await,
            Err(AuthError::Inactive)
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn generated_password_when_none_given() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::new(store.clone());
        let pw = auth.bootstrap("admin", None).await.unwrap().unwrap();
        assert_eq!(pw.len(), 24);
        assert!(auth.authenticate(Some(&basic("admin", &pw))).await.is_ok());
        store.close().await;
    }
}
