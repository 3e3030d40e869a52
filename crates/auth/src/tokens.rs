//! JWTs: Harper's operation and refresh tokens.
//!
//! A token is an ES256 JWT whose header names the key that signed it (`kid`) and whose
//! claims are the username, `super_user`, `iat`, `exp` and the token's kind as its subject
//! (`operation` or `refresh`, as Harper's). The keys live in `system.hdb_token_key`, one
//! record per key id, written only here; `system` replicates, so every node learns every
//! key. A node that made its own key before it joined a cluster keeps it: tokens it signed
//! still verify everywhere, and from then on every node signs with the same key, the one
//! with the smallest id, so a cluster converges on one.
//!
//! Verifying a token checks its signature, its expiry (to the second, no leeway) and its
//! kind, and then reads the user it names on every request (`Auth::user_named`): a dropped
//! or disabled user's tokens stop working at once. Nothing about a token is remembered.

use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use shoal_store::{Mode, SYSTEM_DATABASE, Write};

use crate::error::AuthError;
use crate::users::{Auth, User};

/// Table of token signing keys, keyed by key id.
pub const TOKEN_KEY_TABLE: &str = "hdb_token_key";

/// The only algorithm tokens are signed and accepted with.
const ALGORITHM: Algorithm = Algorithm::ES256;

/// Longest token looked at; a real one is about 400 bytes.
const MAX_TOKEN_LEN: usize = 8 << 10;

/// How long tokens and sessions last, and how many sessions there may be.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenOptions {
    /// Lifetime of an operation token (Harper's `operationTokenTimeout`, 1 day).
    pub operation_token_lifetime: Duration,
    /// Lifetime of a refresh token (Harper's `refreshTokenTimeout`, 30 days).
    pub refresh_token_lifetime: Duration,
    /// Whether `login` makes sessions and session cookies are accepted (Harper's
    /// `enableSessions`).
    pub sessions_enabled: bool,
    /// How long a session lasts after its login.
    pub session_lifetime: Duration,
    /// Most sessions the cluster keeps; a login past it is refused until some expire or
    /// log out.
    pub max_sessions: u64,
}

impl Default for TokenOptions {
    fn default() -> Self {
        TokenOptions {
            operation_token_lifetime: Duration::from_secs(24 * 60 * 60),
            refresh_token_lifetime: Duration::from_secs(30 * 24 * 60 * 60),
            sessions_enabled: true,
            session_lifetime: Duration::from_secs(30 * 24 * 60 * 60),
            max_sessions: 100_000,
        }
    }
}

/// What `create_authentication_tokens` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// For `Authorization: Bearer` on every request.
    pub operation_token: String,
    /// For `refresh_operation_token` only.
    pub refresh_token: String,
}

/// The two kinds of token, as their JWT subject names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Operation,
    Refresh,
}

impl Kind {
    fn subject(self) -> &'static str {
        match self {
            Kind::Operation => "operation",
            Kind::Refresh => "refresh",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    super_user: bool,
    sub: String,
    iat: u64,
    exp: u64,
}

/// A stored signing key: its id, private key (PKCS#8) and public key (SEC1 point).
struct StoredKey {
    id: String,
    private: Vec<u8>,
    public: Vec<u8>,
}

impl StoredKey {
    fn from_record(record: &Map<String, Value>) -> Option<StoredKey> {
        let text = |name: &str| record.get(name).and_then(Value::as_str);
        if text("algorithm")? != "ES256" {
            return None;
        }
        Some(StoredKey {
            id: text("id")?.to_owned(),
            private: STANDARD.decode(text("private_key")?).ok()?,
            public: STANDARD.decode(text("public_key")?).ok()?,
        })
    }
}

impl Auth {
    /// Makes a token signing key if there is none yet. Part of [`Auth::bootstrap`].
    pub(crate) async fn add_signing_key(&self) -> Result<(), AuthError> {
        if self.signing_key()?.is_some() {
            return Ok(());
        }
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| AuthError::Invalid("cannot generate a token signing key".into()))?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| AuthError::Invalid("cannot read the token signing key".into()))?;
        let mut record = Map::new();
        record.insert("id".into(), json!(crate::sessions::random_id()?));
        record.insert("algorithm".into(), json!("ES256"));
        record.insert("private_key".into(), json!(STANDARD.encode(pkcs8.as_ref())));
        record.insert(
            "public_key".into(),
            json!(STANDARD.encode(pair.public_key().as_ref())),
        );
        let write = Write::Records {
            table: TOKEN_KEY_TABLE.into(),
            mode: Mode::Insert,
            records: vec![record],
        };
        self.store
            .database(SYSTEM_DATABASE)?
            .write(write, None)
            .await?;
        Ok(())
    }

    /// An operation token and a refresh token for `user` (Harper's
    /// `create_authentication_tokens`), once the caller has proven to be that user.
    pub fn create_tokens(&self, user: &User, options: &TokenOptions) -> Result<Tokens, AuthError> {
        Ok(Tokens {
            operation_token: self.sign(user, Kind::Operation, options.operation_token_lifetime)?,
            refresh_token: self.sign(user, Kind::Refresh, options.refresh_token_lifetime)?,
        })
    }

    /// A new operation token for `user` (Harper's `refresh_operation_token`, once
    /// [`Auth::refresh_token_user`] has found the user).
    pub fn create_operation_token(
        &self,
        user: &User,
        options: &TokenOptions,
    ) -> Result<String, AuthError> {
        self.sign(user, Kind::Operation, options.operation_token_lifetime)
    }

    /// The live user a refresh token names: `InvalidToken` unless it is a valid refresh
    /// token of a live, active user, `TokenExpired` if it has expired.
    pub fn refresh_token_user(&self, refresh_token: &str) -> Result<Arc<User>, AuthError> {
        self.verify_token(refresh_token, Kind::Refresh)
    }

    /// The live user an operation token names (for `Authorization: Bearer`).
    pub(crate) fn verify_operation_token(&self, token: &str) -> Result<Arc<User>, AuthError> {
        self.verify_token(token, Kind::Operation)
    }

    fn sign(&self, user: &User, kind: Kind, lifetime: Duration) -> Result<String, AuthError> {
        let key = self
            .signing_key()?
            .ok_or_else(|| AuthError::Invalid("there is no token signing key".into()))?;
        let iat = now_secs();
        let claims = Claims {
            username: user.username.clone(),
            super_user: user.super_user,
            sub: kind.subject().to_owned(),
            iat,
            exp: iat.saturating_add(lifetime.as_secs()),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(key.id);
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&key.private))
            .map_err(|e| AuthError::Invalid(format!("cannot sign a token: {e}")))
    }

    fn verify_token(&self, token: &str, kind: Kind) -> Result<Arc<User>, AuthError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::InvalidToken);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::InvalidToken)?;
        let kid = header.kid.ok_or(AuthError::InvalidToken)?;
        if header.alg != ALGORITHM {
            return Err(AuthError::InvalidToken);
        }
        let key = self.key(&kid)?.ok_or(AuthError::InvalidToken)?;
        let mut validation = Validation::new(ALGORITHM);
        validation.leeway = 0;
        validation.sub = Some(kind.subject().to_owned());
        validation.set_required_spec_claims(&["exp", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_ec_der(&key.public),
            &validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::TokenExpired,
            _ => AuthError::InvalidToken,
        })?
        .claims;
        // As Harper: a token of a user who is gone or disabled is simply not valid.
        self.user_named(&claims.username).map_err(|e| match e {
            AuthError::LoginFailed | AuthError::Inactive => AuthError::InvalidToken,
            e => e,
        })
    }

    /// The key new tokens are signed with: the one with the smallest id, so that every
    /// node of a cluster signs with the same key once their keys have replicated.
    fn signing_key(&self) -> Result<Option<StoredKey>, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(TOKEN_KEY_TABLE)?;
        for row in snapshot.scan(&table, Bound::Unbounded, Bound::Unbounded, false)? {
            let (_, version) = row?;
            if let Some(key) = version.value()?.as_ref().and_then(StoredKey::from_record) {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    fn key(&self, id: &str) -> Result<Option<StoredKey>, AuthError> {
        let db = self.store.database(SYSTEM_DATABASE)?;
        let snapshot = db.snapshot()?;
        let table = snapshot.table(TOKEN_KEY_TABLE)?;
        let Some(version) = snapshot.get(&table, &Value::from(id))? else {
            return Ok(None);
        };
        Ok(version.value()?.as_ref().and_then(StoredKey::from_record))
    }
}

/// Seconds since the epoch, as JWTs count time.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    use shoal_store::{Store, StoreOptions};

    async fn open() -> (tempfile::TempDir, Arc<Store>, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::new(store.clone());
        auth.bootstrap("admin", Some("pw")).await.unwrap();
        (dir, store, auth)
    }

    fn options(operation: u64, refresh: u64) -> TokenOptions {
        TokenOptions {
            operation_token_lifetime: Duration::from_secs(operation),
            refresh_token_lifetime: Duration::from_secs(refresh),
            ..TokenOptions::default()
        }
    }

    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).unwrap();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn tokens_name_their_user_kind_and_key() {
        let (_dir, store, auth) = open().await;
        let admin = auth.user_named("admin").unwrap();
        let tokens = auth.create_tokens(&admin, &options(60, 600)).unwrap();
        let operation = claims(&tokens.operation_token);
        assert_eq!(operation["username"], "admin");
        assert_eq!(operation["sub"], "operation");
        assert_eq!(operation["super_user"], true);
        let (iat, exp) = (
            operation["iat"].as_u64().unwrap(),
            operation["exp"].as_u64(),
        );
        assert_eq!(exp, Some(iat + 60));
        let refresh = claims(&tokens.refresh_token);
        assert_eq!(refresh["sub"], "refresh");
        assert_eq!(
            refresh["exp"].as_u64(),
            Some(refresh["iat"].as_u64().unwrap() + 600)
        );
        let header = jsonwebtoken::decode_header(&tokens.operation_token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid, auth.signing_key().unwrap().map(|k| k.id));

        let user = auth
            .verify_operation_token(&tokens.operation_token)
            .unwrap();
        assert_eq!(user.username, "admin");
        store.close().await;
    }

    /// Each kind of token works only as itself.
    #[tokio::test]
    async fn a_refresh_token_is_no_operation_token() {
        let (_dir, store, auth) = open().await;
        let admin = auth.user_named("admin").unwrap();
        let tokens = auth.create_tokens(&admin, &options(60, 600)).unwrap();
        assert!(matches!(
            auth.verify_operation_token(&tokens.refresh_token),
            Err(AuthError::InvalidToken)
        ));
        assert!(matches!(
            auth.refresh_token_user(&tokens.operation_token),
            Err(AuthError::InvalidToken)
        ));
        let user = auth.refresh_token_user(&tokens.refresh_token).unwrap();
        let fresh = auth
            .create_operation_token(&user, &options(60, 600))
            .unwrap();
        assert_eq!(claims(&fresh)["sub"], "operation");
        assert!(auth.verify_operation_token(&fresh).is_ok());
        store.close().await;
    }

    /// A changed byte anywhere, a foreign key, an unknown key id, another algorithm or
    /// garbage: all `InvalidToken`.
    #[tokio::test]
    async fn tampered_and_foreign_tokens_are_invalid() {
        let (_dir, store, auth) = open().await;
        let admin = auth.user_named("admin").unwrap();
        let token = auth
            .create_tokens(&admin, &options(60, 600))
            .unwrap()
            .operation_token;
        let parts: Vec<&str> = token.split('.').collect();

        // The payload says another user, keeping the signature.
        let mut forged = claims(&token);
        forged["username"] = json!("mallory");
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap());
        let swapped = format!("{}.{forged}.{}", parts[0], parts[2]);
        // A flipped signature character.
        let mut signature = parts[2].to_owned().into_bytes();
        signature[5] = if signature[5] == b'A' { b'B' } else { b'A' };
        let flipped = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(signature).unwrap()
        );
        // Signed by a key of the same id that is not the stored one.
        let rng = SystemRandom::new();
        let other = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kid = auth.signing_key().unwrap().unwrap().id;
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(kid.clone());
        let foreign = jsonwebtoken::encode(
            &header,
            &claims(&token),
            &EncodingKey::from_ec_der(other.as_ref()),
        )
        .unwrap();
        // An HMAC token keyed with the public key (the classic algorithm confusion).
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some(kid);
        let public = auth.signing_key().unwrap().unwrap().public;
        let confused = jsonwebtoken::encode(
            &hs,
            &claims(&token),
            &EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap();
        let mut unknown = Header::new(ALGORITHM);
        unknown.kid = Some("nope".into());
        let unknown_kid = jsonwebtoken::encode(
            &unknown,
            &claims(&token),
            &EncodingKey::from_ec_der(other.as_ref()),
        )
        .unwrap();
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        for bad in [
            swapped.as_str(),
            &flipped,
            &foreign,
            &confused,
            &unknown_kid,
            "BAD_TOKEN",
            "a.b.c",
            "",
            &long,
        ] {
            assert!(
                matches!(
                    auth.verify_operation_token(bad),
                    Err(AuthError::InvalidToken)
                ),
                "{bad}"
            );
        }
        store.close().await;
    }

    #[tokio::test]
    async fn expired_tokens_are_refused_as_expired() {
        let (_dir, store, auth) = open().await;
        let admin = auth.user_named("admin").unwrap();
        let tokens = auth.create_tokens(&admin, &options(0, 0)).unwrap();
        // `exp` is in whole seconds and still valid during its own second.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match auth.verify_operation_token(&tokens.operation_token) {
                Err(AuthError::TokenExpired) => break,
                Ok(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            auth.refresh_token_user(&tokens.refresh_token),
            Err(AuthError::TokenExpired)
        ));
        store.close().await;
    }

    /// A dropped or disabled user's tokens stop working at once; enabled again, they work.
    #[tokio::test]
    async fn tokens_follow_the_live_user() {
        let (_dir, store, auth) = open().await;
        auth.add_user("bob", "pw", "reader", true).await.unwrap();
        let bob = auth.user_named("bob").unwrap();
        let tokens = auth.create_tokens(&bob, &options(60, 600)).unwrap();
        assert!(
            !auth
                .verify_operation_token(&tokens.operation_token)
                .unwrap()
                .super_user
        );
        auth.alter_user("bob", None, Some("super_user"), None)
            .await
            .unwrap();
        assert!(
            auth.verify_operation_token(&tokens.operation_token)
                .unwrap()
                .super_user,
            "the role is read live, not from the token"
        );
        auth.alter_user("bob", None, None, Some(false))
            .await
            .unwrap();
        assert!(matches!(
            auth.verify_operation_token(&tokens.operation_token),
            Err(AuthError::InvalidToken)
        ));
        assert!(matches!(
            auth.refresh_token_user(&tokens.refresh_token),
            Err(AuthError::InvalidToken)
        ));
        auth.alter_user("bob", None, None, Some(true))
            .await
            .unwrap();
        assert!(auth.verify_operation_token(&tokens.operation_token).is_ok());
        auth.drop_user("bob").await.unwrap();
        assert!(matches!(
            auth.verify_operation_token(&tokens.operation_token),
            Err(AuthError::InvalidToken)
        ));
        store.close().await;
    }

    /// Two nodes that each made a key verify each other's tokens once both keys are in
    /// both tables, and then sign with the same key.
    #[tokio::test]
    async fn every_stored_key_verifies_and_the_smallest_signs() {
        let (_dir_a, store_a, a) = open().await;
        let (_dir_b, store_b, b) = open().await;
        let admin = a.user_named("admin").unwrap();
        let from_a = a.create_tokens(&admin, &options(60, 600)).unwrap();
        let from_b = b.create_tokens(&admin, &options(60, 600)).unwrap();
        assert!(matches!(
            a.verify_operation_token(&from_b.operation_token),
            Err(AuthError::InvalidToken)
        ));
        // What replication does: each side's key record arrives at the other.
        for (from, to) in [(&store_a, &store_b), (&store_b, &store_a)] {
            let snapshot = from.database(SYSTEM_DATABASE).unwrap().snapshot().unwrap();
            let table = snapshot.table(TOKEN_KEY_TABLE).unwrap();
            let records: Vec<_> = snapshot
                .scan(&table, Bound::Unbounded, Bound::Unbounded, false)
                .unwrap()
                .map(|row| row.unwrap().1.value().unwrap().unwrap())
                .collect();
            drop(snapshot);
            let write = Write::Records {
                table: TOKEN_KEY_TABLE.into(),
                mode: Mode::Upsert,
                records,
            };
            to.database(SYSTEM_DATABASE)
                .unwrap()
                .write(write, None)
                .await
                .unwrap();
        }
        for auth in [&a, &b] {
            for token in [&from_a.operation_token, &from_b.operation_token] {
                assert!(auth.verify_operation_token(token).is_ok());
            }
        }
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid;
        let next_a = a.create_tokens(&admin, &options(60, 600)).unwrap();
        let next_b = b.create_tokens(&admin, &options(60, 600)).unwrap();
        assert_eq!(kid(&next_a.operation_token), kid(&next_b.operation_token));
        store_a.close().await;
        store_b.close().await;
    }
}
