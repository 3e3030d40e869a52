//! Logins: checking an `Authorization` header against the user table.
//!
//! A password check costs an argon2 hash (tens of milliseconds of a core, about 19 MiB),
//! so the outcome of a check is remembered with the exact stored bytes of the user's
//! record it was made against (or the user's absence). Each later request with that
//! header reads the record again (one point read) and uses the memory only if nothing
//! changed: a new password, a changed role, `active: false`, a delete or a new user, made
//! here or arriving by replication, takes effect on the very next request. Refusals are
//! remembered too: a client repeating the same wrong password costs no hash and is not a
//! new guess, so it does not lock its user out.
//!
//! What a check may cost the node is bounded three ways: at most `hash_concurrency` hashes
//! run at once; concurrent checks of the same header share one hash; and failed logins
//! are limited per username and per client address (see `limiter`). An unknown user is
//! checked against a dummy hash, so it costs as much as a wrong password and the timing
//! does not tell which usernames exist.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use serde_json::{Map, Value};

use shoal_store::{SYSTEM_DATABASE, Snapshot, TableDef};
use tokio::sync::{OnceCell, Semaphore};

use crate::error::AuthError;
use crate::roles::ROLE_TABLE;
use crate::users::{Auth, USER_TABLE, User};

/// Most outcomes remembered (of each kind) before that memory starts over.
const CACHE_LIMIT: usize = 10_000;

/// The hash unknown users are checked against: argon2id with the default parameters (as
/// every stored password), of a random password nobody kept.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$43h0Luo79iXakDNPCCEkpA$pbim/lbYqTKGt0R+/NhFPq1M4X5TEE+UB7sODoPrmEg";

/// The outcome of checking one header, and the user record it was checked against.
#[derive(Debug, Clone)]
pub(crate) struct Checked {
    username: String,
    /// The system database's commit count read before the record was: while it stays
    /// the same, the record cannot have changed, and is not read again.
    commits: u64,
    /// The record's stored bytes; `None` if there was no such user.
    record: Option<Arc<[u8]>>,
    /// The stored bytes of the role record it names; `None` if there is none.
    role: Option<Arc<[u8]>>,
    /// The user, or why it was refused (`LoginFailed`, `Inactive`).
    outcome: Result<Arc<User>, AuthError>,
}

/// Remembered outcomes, by header.
pub(crate) type Outcomes = RwLock<HashMap<String, Checked>>;

/// A user's or role's record as stored: its exact bytes and its attributes.
pub(crate) struct Stored {
    bytes: Arc<[u8]>,
    pub(crate) record: Map<String, Value>,
}

impl Stored {
    /// The user's password hash (a PHC string), if the record has one.
    pub(crate) fn password_hash(&self) -> Option<&str> {
        self.record.get("password").and_then(Value::as_str)
    }
}

/// One password check, shared by every request waiting for it. `Err` only for what must
/// not be remembered (limits, store failures).
type Flight = Arc<OnceCell<Result<Checked, AuthError>>>;

/// Checks under way, by header, with how many requests share each.
pub(crate) type Flights = HashMap<String, (Flight, usize)>;

impl Auth {
    /// Checks an `Authorization` header value, limiting failures per username only.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<User>, AuthError> {
        self.authenticate_from(authorization, None).await
    }

    /// Checks an `Authorization` header value sent from `peer`: `Basic` credentials
    /// (failures are limited per username and per address) or a `Bearer` operation token.
    pub async fn authenticate_from(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Arc<User>, AuthError> {
        let header = authorization.ok_or(AuthError::MissingCredentials)?;
        if let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        {
            return self.verify_operation_token(token.trim());
        }
        if let Some(outcome) = self.remembered(header)? {
            return outcome;
        }
        let (username, password) = parse_basic(header).ok_or(AuthError::LoginFailed)?;
        let joined = self.join_flight(header);
        let checked = joined
            .flight
            .get_or_init(|| self.verify(&username, password, peer))
            .await
            .clone()?;
        self.remember(header, &checked);
        checked.outcome
    }

    /// The remembered outcome for a header, if the user's record is still exactly what it
    /// was checked against.
    fn remembered(&self, header: &str) -> Result<Option<Result<Arc<User>, AuthError>>, AuthError> {
        for outcomes in [&self.verified, &self.refused] {
            let Some(checked) = read(outcomes).get(header).cloned() else {
                continue;
            };
            let commits = self.system_commits()?;
            if commits == checked.commits {
                return Ok(Some(checked.outcome));
            }
            if self.unchanged(&checked)? {
                // Something else in `system` changed: the next request takes the fast way.
                if let Some(c) = write(outcomes).get_mut(header)
                    && same_record(&c.record, &checked.record)
                {
                    c.commits = c.commits.max(commits);
                }
                return Ok(Some(checked.outcome));
            }
            let mut outcomes = write(outcomes);
            if outcomes
                .get(header)
                .is_some_and(|c| same_record(&c.record, &checked.record))
            {
                outcomes.remove(header);
            }
        }
        Ok(None)
    }

    fn remember(&self, header: &str, checked: &Checked) {
        let outcomes = if checked.outcome.is_ok() {
            &self.verified
        } else {
            &self.refused
        };
        let mut outcomes = write(outcomes);
        if outcomes.len() >= CACHE_LIMIT {
            outcomes.clear();
        }
        outcomes.insert(header.to_owned(), checked.clone());
    }

    /// Commits of the system database so far; read before a user record, it dates it.
    fn system_commits(&self) -> Result<u64, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        Ok(db.stats().commits.load(Ordering::Acquire))
    }

    /// Whether the user's record, and the role record it names, are still exactly what
    /// `checked` was checked against.
    fn unchanged(&self, checked: &Checked) -> Result<bool, AuthError> {
        let user = self.stored_user(&checked.username)?;
        if !same_bytes(user.as_ref(), &checked.record) {
            return Ok(false);
        }
        let role = match &user {
            Some(user) => self.stored_role(&user.record)?,
            None => None,
        };
        Ok(same_bytes(role.as_ref(), &checked.role))
    }

    /// Joins the check under way for `header`, or starts a new one. A finished check is
    /// never joined: its answer may predate a change of the user.
    fn join_flight<'a>(&'a self, header: &'a str) -> Joined<'a> {
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        let flight = match flights.get_mut(header) {
            Some((flight, waiting)) if !flight.initialized() => {
                *waiting += 1;
                flight.clone()
            }
            _ => {
                let flight = Flight::default();
                flights.insert(header.to_owned(), (flight.clone(), 1));
                flight
            }
        };
        Joined {
            auth: self,
            header,
            flight,
        }
    }

    /// One password check: limits, then the hash, then the user's state.
    async fn verify(
        &self,
        username: &str,
        password: String,
        peer: Option<IpAddr>,
    ) -> Result<Checked, AuthError> {
        let mut attempt = self.limiter.begin(username, peer)?;
        let commits = self.system_commits()?;
        let stored = self.stored_user(username)?;
        // Read with the user, refused or not: a remembered refusal is reused only while
        // both records stay as they were.
        let role = match &stored {
            Some(user) => self.stored_role(&user.record)?,
            None => None,
        };
        let hash = stored
            .as_ref()
            .and_then(Stored::password_hash)
            .unwrap_or(DUMMY_HASH)
            .to_owned();
        let matches = verify_password(&self.hashing, password, hash).await;
        let mut checked = Checked {
            username: username.to_owned(),
            commits,
            record: stored.as_ref().map(|s| s.bytes.clone()),
            role: role.as_ref().map(|r| r.bytes.clone()),
            outcome: Err(AuthError::LoginFailed),
        };
        let Some(user) = stored.filter(|_| matches) else {
            attempt.failed();
            return Ok(checked);
        };
        drop(attempt);
        checked.outcome =
            User::from_record(username, &user.record, role.as_ref().map(|r| &r.record));
        Ok(checked)
    }

    /// The live user named `username`, as a successful login would answer it, without a
    /// password check: for credentials proven another way (a signed token, a session, a
    /// client certificate). `LoginFailed` if there is no such user, `Inactive` if it is
    /// disabled. Read on every call, so a dropped or disabled user is refused at once.
    pub fn user_named(&self, username: &str) -> Result<Arc<User>, AuthError> {
        let user = self.stored_user(username)?.ok_or(AuthError::LoginFailed)?;
        self.user_from(username, &user)
    }

    /// The user a stored user record describes, with the permission of the role it names.
    pub(crate) fn user_from(&self, username: &str, user: &Stored) -> Result<Arc<User>, AuthError> {
        let role = self.stored_role(&user.record)?;
        User::from_record(username, &user.record, role.as_ref().map(|r| &r.record))
    }

    /// A live user record.
    pub(crate) fn stored_user(&self, username: &str) -> Result<Option<Stored>, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(USER_TABLE)?;
        stored(&snapshot, &table, username)
    }

    /// The live role record a user record names (by its id, as Harper's user records do).
    pub(crate) fn stored_role(
        &self,
        user: &Map<String, Value>,
    ) -> Result<Option<Stored>, AuthError> {
        let Some(role) = user.get("role").and_then(Value::as_str) else {
            return Ok(None);
        };
        let db = self.store.database(SYSTEM_DATABASE)?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(ROLE_TABLE)?;
        stored(&snapshot, &table, role)
    }
}

/// The live record keyed `key`, with its exact bytes.
fn stored(snapshot: &Snapshot, table: &TableDef, key: &str) -> Result<Option<Stored>, AuthError> {
    let Some(version) = snapshot.get(table, &Value::from(key))? else {
        return Ok(None);
    };
    Ok(version.value()?.map(|record| Stored {
        bytes: Arc::from(version.bytes()),
        record,
    }))
}

/// Whether a record read now is the one remembered (both absent counts as the same).
fn same_bytes(current: Option<&Stored>, remembered: &Option<Arc<[u8]>>) -> bool {
    match (current, remembered) {
        (Some(current), Some(remembered)) => current.bytes == *remembered,
        (None, None) => true,
        _ => false,
    }
}

/// Whether two remembered records are the same remembered value.
fn same_record(a: &Option<Arc<[u8]>>, b: &Option<Arc<[u8]>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn read(outcomes: &Outcomes) -> std::sync::RwLockReadGuard<'_, HashMap<String, Checked>> {
    // The maps are whole after every statement; a panic elsewhere leaves them usable.
    outcomes.read().unwrap_or_else(PoisonError::into_inner)
}

fn write(outcomes: &Outcomes) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Checked>> {
    outcomes.write().unwrap_or_else(PoisonError::into_inner)
}

/// A request's share in the check of its header. Leaving counts it out; the last one out
/// removes the flight, so a finished check is not reused by requests that come after it
/// (they find the header remembered, or check again). The count is kept under the lock
/// rather than read from the `Arc`, whose clones are dropped outside it.
struct Joined<'a> {
    auth: &'a Auth,
    header: &'a str,
    flight: Flight,
}

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        let mut flights = self
            .auth
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A flight that finished may have been replaced by a newer one for the header.
        if let Some((flight, waiting)) = flights.get_mut(self.header)
            && Arc::ptr_eq(flight, &self.flight)
        {
            *waiting -= 1;
            if *waiting == 0 {
                flights.remove(self.header);
            }
        }
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

/// Hashes a new password, within the bound on concurrent hashing.
pub(crate) async fn hash_password(
    hashing: &Semaphore,
    password: String,
) -> Result<String, AuthError> {
    let _permit = hashing
        .acquire()
        .await
        .map_err(|_| AuthError::Invalid("password hashing has stopped".into()))?;
    // Slow on purpose: off the async workers.
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Invalid(format!("cannot hash password: {e}")))
    })
    .await
    .map_err(|e| AuthError::Invalid(format!("hashing failed: {e}")))?
}

/// Whether `password` matches `hash`, within the bound on concurrent hashing. An
/// unreadable hash is replaced by the dummy one, so it costs the same and never matches.
async fn verify_password(hashing: &Semaphore, password: String, hash: String) -> bool {
    let Ok(_permit) = hashing.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let (parsed, real) = match PasswordHash::new(&hash) {
            Ok(parsed) => (parsed, true),
            Err(_) => match PasswordHash::new(DUMMY_HASH) {
                Ok(parsed) => (parsed, false),
                Err(_) => return false,
            },
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && real
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    use shoal_store::{Store, StoreOptions};

    use crate::users::AuthOptions;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    fn open(options: AuthOptions) -> (tempfile::TempDir, Arc<Store>, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::with_options(store.clone(), options);
        (dir, store, auth)
    }

    #[tokio::test]
    async fn bootstrap_then_authenticate() {
        let (_dir, store, auth) = open(AuthOptions::default());
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
        let (_dir, store, auth) = open(AuthOptions::default());
        let pw = auth.bootstrap("admin", None).await.unwrap().unwrap();
        assert_eq!(pw.len(), 24);
        assert!(auth.authenticate(Some(&basic("admin", &pw))).await.is_ok());
        store.close().await;
    }

    /// A remembered login follows every change of the user's record at once.
    #[tokio::test]
    async fn remembered_logins_follow_the_record() {
        let (_dir, store, auth) = open(AuthOptions::default());
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        auth.add_user("bob", "one", "reader", true).await.unwrap();
        let old = basic("bob", "one");
        assert!(!auth.authenticate(Some(&old)).await.unwrap().super_user);

        auth.alter_user("bob", None, Some("super_user"), None)
            .await
            .unwrap();
        assert!(
            auth.authenticate(Some(&old)).await.unwrap().super_user,
            "the new role applies to the remembered login"
        );
        auth.alter_user("bob", Some("two"), None, None)
            .await
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&old)).await,
            Err(AuthError::LoginFailed)
        ));
        let new = basic("bob", "two");
        assert!(auth.authenticate(Some(&new)).await.is_ok());
        auth.alter_user("bob", None, None, Some(false))
            .await
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&new)).await,
            Err(AuthError::Inactive)
        ));
        auth.alter_user("bob", None, None, Some(true))
            .await
            .unwrap();
        assert!(auth.authenticate(Some(&new)).await.is_ok());
        auth.drop_user("bob").await.unwrap();
        assert!(matches!(
            auth.authenticate(Some(&new)).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            auth.drop_user("bob").await,
            Err(AuthError::NotFound(m)) if m == "User bob does not exist"
        ));
        store.close().await;
    }

    /// Concurrent checks of the same header share one hash, so a burst of equal logins is
    /// not counted against the limits (with a limit of one, a second check in flight would
    /// be refused); a remembered login is never limited.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn equal_concurrent_logins_share_one_check() {
        let options = AuthOptions {
            hash_concurrency: 1,
            failed_logins_per_user: 1,
            ..AuthOptions::default()
        };
        let (_dir, store, auth) = open(options);
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        let auth = Arc::new(auth);
        let right = basic("admin", "pw");
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (auth, right) = (auth.clone(), right.clone());
                tokio::spawn(async move { auth.authenticate(Some(&right)).await })
            })
            .collect();
        for task in tasks {
            let answer = task.await.unwrap();
            assert!(answer.is_ok(), "{answer:?}");
        }
        assert!(
            auth.flights.lock().unwrap().is_empty(),
            "no flight left behind"
        );
        assert!(matches!(
            auth.authenticate(Some(&basic("admin", "wrong"))).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            auth.authenticate(Some(&basic("admin", "wrong2"))).await,
            Err(AuthError::TooManyAttempts { .. })
        ));
        assert!(
            auth.authenticate(Some(&right)).await.is_ok(),
            "the remembered login is not limited"
        );
        store.close().await;
    }

    /// Whatever order the requests sharing a check leave in, and however late each drops
    /// its handle on it, the last one out removes it; a request leaving a finished check
    /// that a newer one replaced leaves the newer one alone.
    #[test]
    fn the_last_request_out_removes_its_flight() {
        let (_dir, _store, auth) = open(AuthOptions::default());
        let flights = || auth.flights.lock().unwrap().len();
        let (a, b) = (auth.join_flight("h"), auth.join_flight("h"));
        assert!(Arc::ptr_eq(&a.flight, &b.flight));
        // Another thread's handle, dropped after its request has left.
        let late = a.flight.clone();
        drop(a);
        drop(b);
        assert_eq!(flights(), 0, "no flight left behind");
        drop(late);

        let old = auth.join_flight("h");
        old.flight.set(Err(AuthError::LoginFailed)).unwrap();
        let new = auth.join_flight("h");
        assert!(
            !Arc::ptr_eq(&old.flight, &new.flight),
            "a finished check is not joined"
        );
        drop(old);
        assert_eq!(flights(), 1, "the newer check stays");
        drop(new);
        assert_eq!(flights(), 0);
    }

    /// A refusal is remembered like an acceptance: repeating the same wrong password is
    /// answered without a hash and is not a new guess, until the user's record changes.
    #[tokio::test]
    async fn a_repeated_wrong_password_is_not_a_new_guess() {
        let options = AuthOptions {
            failed_logins_per_user: 2,
            ..AuthOptions::default()
        };
        let (_dir, store, auth) = open(options);
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        let stale = basic("admin", "next");
        for _ in 0..5 {
            assert!(matches!(
                auth.authenticate(Some(&stale)).await,
                Err(AuthError::LoginFailed)
            ));
        }
        // A change elsewhere in `system` leaves the user and its role as they were: the
        // remembered refusal still holds, and the repeat is still no new guess.
        auth.add_user("carol", "x", "super_user", true)
            .await
            .unwrap();
        assert!(matches!(
            auth.authenticate(Some(&stale)).await,
            Err(AuthError::LoginFailed)
        ));
        assert!(
            matches!(
                auth.authenticate(Some(&basic("admin", "other"))).await,
                Err(AuthError::LoginFailed)
            ),
            "five repeats counted once"
        );
        assert!(matches!(
            auth.authenticate(Some(&basic("admin", "third"))).await,
            Err(AuthError::TooManyAttempts { .. })
        ));
        assert!(matches!(
            auth.authenticate(Some(&basic("nobody", "x"))).await,
            Err(AuthError::LoginFailed)
        ));
        auth.add_user("nobody", "x", "reader", true).await.unwrap();
        assert!(
            auth.authenticate(Some(&basic("nobody", "x"))).await.is_ok(),
            "a new user is not refused from memory"
        );
        auth.alter_user("admin", Some("next"), None, None)
            .await
            .unwrap();
        // The window is a minute: the limit still holds for new guesses, but the remembered
        // refusal is gone with the record it was made against, so this is checked again.
        assert!(matches!(
            auth.authenticate(Some(&stale)).await,
            Err(AuthError::TooManyAttempts { .. })
        ));
        store.close().await;
    }

    /// An unknown user costs what a wrong password costs: both pay one argon2 check.
    #[tokio::test]
    async fn unknown_user_costs_a_wrong_password() {
        let options = AuthOptions {
            failed_logins_per_user: 0,
            failed_logins_per_address: 0,
            ..AuthOptions::default()
        };
        let (_dir, store, auth) = open(options);
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        let time = async |header: &str| {
            let start = Instant::now();
            let answer = auth.authenticate(Some(header)).await;
            assert!(matches!(answer, Err(AuthError::LoginFailed)), "{answer:?}");
            start.elapsed()
        };
        let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
        // Interleaved, so a slow moment of the machine hits both alike.
        for i in 0..7 {
            unknown.push(time(&basic(&format!("nobody{i}"), "pw")).await);
            wrong.push(time(&basic("admin", &format!("wrong{i}"))).await);
        }
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v[v.len() / 2]
        };
        let (unknown, wrong) = (median(unknown), median(wrong));
        let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "unknown user took {unknown:?}, wrong password {wrong:?}"
        );
        store.close().await;
    }

    #[test]
    fn dummy_hash_has_the_default_parameters() {
        let dummy = PasswordHash::new(DUMMY_HASH).unwrap();
        let real_hash = Argon2::default().hash_password(b"x").unwrap().to_string();
        let real = PasswordHash::new(&real_hash).unwrap();
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
    }
}
