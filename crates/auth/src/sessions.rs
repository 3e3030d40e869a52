//! Harper's cookie sessions: `login` makes one, `logout` ends it.
//!
//! A session is a record of `system.hdb_session` (Harper's table): a random id (what the
//! cookie carries), the username and when it expires. `system` replicates, so a session
//! made on one node works on every node, and a logout anywhere ends it everywhere. The
//! user is read on every request (`Auth::user_named`), so a dropped or disabled user's
//! sessions stop working at once. Sessions are bounded: each expires
//! (`TokenOptions::session_lifetime`), and there are at most `max_sessions`; a login that
//! finds the table full first removes the expired ones, and is refused if none were.

use std::net::IpAddr;
use std::ops::Bound;
use std::sync::Arc;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use serde_json::{Map, Value, json};
use shoal_store::{Mode, SYSTEM_DATABASE, Write};

use crate::error::AuthError;
use crate::tokens::{TokenOptions, now_secs};
use crate::users::{Auth, User};

/// Table of sessions, keyed by session id.
pub const SESSION_TABLE: &str = "hdb_session";

/// Longest session id looked up; the ids made here are 32 characters.
const MAX_ID_LEN: usize = 64;

/// Most expired sessions removed by one login.
const PURGE_BATCH: usize = 10_000;

/// A new session, made by [`Auth::login`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id the session cookie carries.
    pub id: String,
    /// When it expires, in seconds since the epoch.
    pub expires: u64,
}

impl Auth {
    /// Checks `username` and `password` as a Basic login from `peer` would (same limits,
    /// same answers) and, if they hold, makes a session for the user (Harper's `login`).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
        options: &TokenOptions,
    ) -> Result<(Arc<User>, Session), AuthError> {
        if !options.sessions_enabled {
            return Err(AuthError::Invalid("No session for login".into()));
        }
        let user = self.check_password(username, password, peer).await?;
        let db = self.store.database(SYSTEM_DATABASE)?;
        let count = {
            let snapshot = db.snapshot()?;
            let table = snapshot.table(SESSION_TABLE)?;
            snapshot.record_count(&table)?
        };
        if count >= options.max_sessions && self.purge_expired_sessions().await? == 0 {
            return Err(AuthError::TooManySessions);
        }
        let session = Session {
            id: random_id()?,
            expires: now_secs().saturating_add(options.session_lifetime.as_secs()),
        };
        let mut record = Map::new();
        record.insert("id".into(), json!(session.id));
        record.insert("user".into(), json!(user.username));
        record.insert("expires".into(), json!(session.expires));
        let write = Write::Records {
            table: SESSION_TABLE.into(),
            mode: Mode::Insert,
            records: vec![record],
        };
        db.write(write, Some(&user.username)).await?;
        Ok((user, session))
    }

    /// The live user of session `id`: `MissingCredentials` if there is no such session
    /// (or it has expired, or its user is gone), `Inactive` if its user is disabled.
    pub fn session_user(&self, id: &str) -> Result<Arc<User>, AuthError> {
        if id.len() > MAX_ID_LEN {
            return Err(AuthError::MissingCredentials);
        }
        let db = self.store.database(SYSTEM_DATABASE)?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(SESSION_TABLE)?;
        let record = match snapshot.get(&table, &Value::from(id))? {
            Some(version) => version.value()?,
            None => None,
        };
        drop(snapshot);
        let username = record
            .filter(|r| !expired(r, now_secs()))
            .and_then(|r| r.get("user").and_then(Value::as_str).map(str::to_owned))
            .ok_or(AuthError::MissingCredentials)?;
        self.user_named(&username).map_err(|e| match e {
            AuthError::LoginFailed => AuthError::MissingCredentials,
            e => e,
        })
    }

    /// Ends session `id` (Harper's `logout`); nothing if there is no such session.
    pub async fn logout(&self, id: &str) -> Result<(), AuthError> {
        if id.len() > MAX_ID_LEN {
            return Ok(());
        }
        let db = self.store.database(SYSTEM_DATABASE)?;
        let write = Write::Delete {
            table: SESSION_TABLE.into(),
            ids: vec![json!(id)],
        };
        db.write(write, None).await?;
        Ok(())
    }

    /// Removes up to [`PURGE_BATCH`] expired sessions; answers how many.
    async fn purge_expired_sessions(&self) -> Result<usize, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let now = now_secs();
        let ids = {
            let snapshot = db.snapshot()?;
            let table = snapshot.table(SESSION_TABLE)?;
            let mut ids = Vec::new();
            for row in snapshot.scan(&table, Bound::Unbounded, Bound::Unbounded, false)? {
                let (id, version) = row?;
                if version.value()?.is_none_or(|r| expired(&r, now)) {
                    ids.push(id);
                    if ids.len() == PURGE_BATCH {
                        break;
                    }
                }
            }
            ids
        };
        if ids.is_empty() {
            return Ok(0);
        }
        let write = Write::Delete {
            table: SESSION_TABLE.into(),
            ids,
        };
        Ok(db.write(write, None).await?.written.len())
    }

    /// The user `username` if `password` is theirs, checked as a Basic login is: within
    /// the same limits on hashing and failed attempts, and remembered the same way.
    pub async fn check_password(
        &self,
        username: &str,
        password: &str,
        peer: Option<IpAddr>,
    ) -> Result<Arc<User>, AuthError> {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        self.authenticate_from(Some(&format!("Basic {basic}")), peer)
            .await
    }
}

/// Whether a session record's `expires` has passed (a record without one has).
fn expired(record: &Map<String, Value>, now: u64) -> bool {
    record
        .get("expires")
        .and_then(Value::as_u64)
        .is_none_or(|expires| expires <= now)
}

/// 128 random bits from the system's generator, as 32 hex digits: session and key ids.
pub(crate) fn random_id() -> Result<String, AuthError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| AuthError::Invalid("the system's random generator failed".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use shoal_store::{Store, StoreOptions};

    async fn open() -> (tempfile::TempDir, Arc<Store>, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::new(store.clone());
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        (dir, store, auth)
    }

    #[tokio::test]
    async fn login_session_logout() {
        let (_dir, store, auth) = open().await;
        let options = TokenOptions::default();
        assert!(matches!(
            auth.login("admin", "wrong", None, &options).await,
            Err(AuthError::LoginFailed)
        ));
        let (user, session) = auth.login("admin", "pw", None, &options).await.unwrap();
        assert_eq!(user.username, "admin");
        assert_eq!(session.id.len(), 32);
        assert_eq!(auth.session_user(&session.id).unwrap().username, "admin");
        assert!(matches!(
            auth.session_user("unknown"),
            Err(AuthError::MissingCredentials)
        ));
        auth.logout(&session.id).await.unwrap();
        assert!(matches!(
            auth.session_user(&session.id),
            Err(AuthError::MissingCredentials)
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn sessions_follow_the_live_user() {
        let (_dir, store, auth) = open().await;
        let options = TokenOptions::default();
        auth.add_user("bob", "pw", "reader", true).await.unwrap();
        let (_, session) = auth.login("bob", "pw", None, &options).await.unwrap();
        auth.alter_user("bob", None, None, Some(false))
            .await
            .unwrap();
        assert!(matches!(
            auth.session_user(&session.id),
            Err(AuthError::Inactive)
        ));
        auth.alter_user("bob", None, None, Some(true))
            .await
            .unwrap();
        assert!(auth.session_user(&session.id).is_ok());
        auth.drop_user("bob").await.unwrap();
        assert!(matches!(
            auth.session_user(&session.id),
            Err(AuthError::MissingCredentials)
        ));
        store.close().await;
    }

    /// At the cap, expired sessions make room; without any, the login is refused.
    #[tokio::test]
    async fn sessions_expire_and_are_capped() {
        let (_dir, store, auth) = open().await;
        let short = TokenOptions {
            session_lifetime: Duration::ZERO,
            max_sessions: 2,
            ..TokenOptions::default()
        };
        let (_, gone) = auth.login("admin", "pw", None, &short).await.unwrap();
        assert!(matches!(
            auth.session_user(&gone.id),
            Err(AuthError::MissingCredentials)
        ));
        auth.login("admin", "pw", None, &short).await.unwrap();
        let long = TokenOptions {
            max_sessions: 2,
            ..TokenOptions::default()
        };
        // Two expired sessions fill the table: the login removes them.
        let (_, kept) = auth.login("admin", "pw", None, &long).await.unwrap();
        auth.login("admin", "pw", None, &long).await.unwrap();
        assert!(matches!(
            auth.login("admin", "pw", None, &long).await,
            Err(AuthError::TooManySessions)
        ));
        auth.logout(&kept.id).await.unwrap();
        assert!(auth.login("admin", "pw", None, &long).await.is_ok());
        let disabled = TokenOptions {
            sessions_enabled: false,
            ..TokenOptions::default()
        };
        assert!(matches!(
            auth.login("admin", "pw", None, &disabled).await,
            Err(AuthError::Invalid(m)) if m == "No session for login"
        ));
        store.close().await;
    }
}
