//! Proving that one knows a user's password without sending it, for a client that cannot
//! yet tell whether the server it talks to is the right one (`add_node` reaching a node
//! whose certificate nobody vouches for).
//!
//! The server keeps only the user's argon2 hash (a PHC string in `hdb_user.password`). It
//! answers a username with that hash's parameters and salt ([`KeyParams`]), never the
//! hash itself. The client hashes the password with them, which yields the stored hash
//! (the [`ProofKey`]), and sends `HMAC-SHA256(key, label || transcript)`; the server
//! recomputes it from what it stores. The transcript is the caller's: it must bind the
//! connection (a TLS exporter value, RFC 5705) and a fresh server nonce, so that a proof
//! is good for one connection only. A man in the middle holds a different TLS session
//! with each side, so a proof relayed from one fails on the other, and the password never
//! crosses the wire. Once the client's proof holds, the server proves its own knowledge
//! of the key the same way, under another label.
//!
//! What such a scheme cannot prevent: a party that receives a client's proof (the wrong
//! server, or a man in the middle) can guess passwords offline against it. Each guess
//! costs one argon2 hash, so the client refuses parameters weaker than Shoal's defaults;
//! a certificate pin removes the risk altogether.
//!
//! Knowing the stored hash is as good as knowing the password here: the `system`
//! database, which holds it, is readable only by super users.

use std::net::IpAddr;
use std::sync::Arc;

use argon2::password_hash::phc::{Output, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

use crate::error::AuthError;
use crate::limiter::Attempt;
use crate::login::Stored;
use crate::users::{Auth, User};

/// Least argon2 work (memory in KiB × passes) a client accepts: Shoal's own default
/// (19 MiB, 2 passes), so that a proof given to an impostor costs it as much per guess
/// as the stored hash would.
const MIN_WORK: u64 = 19 * 1024 * 2;
/// Least memory in KiB: fewer passes over more memory are fine, not the reverse.
const MIN_M_COST: u32 = 8 * 1024;
/// Most memory a client spends on deriving a key, in KiB (1 GiB).
const MAX_M_COST: u32 = 1 << 20;
/// Most passes and lanes a client accepts.
const MAX_T_COST: u32 = 32;
const MAX_P_COST: u32 = 16;
/// Key lengths a client accepts, in bytes.
const KEY_LEN: std::ops::RangeInclusive<usize> = 16..=64;

/// The parameters a proof's key is derived with: the user's PHC hash string without the
/// hash, and the hash's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParams {
    /// `$argon2id$v=19$m=...,t=...,p=...$<salt>`.
    pub phc: String,
    /// Length of the derived key in bytes.
    pub len: u32,
}

/// Which side of an exchange a proof comes from; each proves under its own label, so a
/// proof cannot be reflected back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The party that knows the password.
    Client,
    /// The party that stores the hash.
    Server,
}

impl Side {
    fn label(self) -> &'static [u8] {
        match self {
            Side::Client => b"shoal password proof v1: client",
            Side::Server => b"shoal password proof v1: server",
        }
    }
}

/// The key proofs are made with: the user's stored argon2 hash.
pub struct ProofKey(hmac::Key);

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProofKey(..)")
    }
}

impl ProofKey {
    fn new(bytes: &[u8]) -> Self {
        ProofKey(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// This side's proof over `transcript`.
    pub fn prove(&self, side: Side, transcript: &[u8]) -> Vec<u8> {
        hmac::sign(&self.0, &message(side, transcript))
            .as_ref()
            .to_vec()
    }

    /// Whether `proof` is `side`'s proof over `transcript` (compared in constant time).
    pub fn verify(&self, side: Side, transcript: &[u8], proof: &[u8]) -> bool {
        hmac::verify(&self.0, &message(side, transcript), proof).is_ok()
    }
}

fn message(side: Side, transcript: &[u8]) -> Vec<u8> {
    [side.label(), transcript].concat()
}

/// The server's half of an exchange with one client: the parameters to send it, and the
/// key its proof is checked against and the user it proves to be.
#[derive(Debug)]
pub struct Challenge<'a> {
    /// Counts against the failed-login limits, as a password login does.
    attempt: Attempt<'a>,
    params: KeyParams,
    key: ProofKey,
    /// The user as its record and role describe it (or why it may not log in); `None` for
    /// an unknown user (whose key nobody can know).
    user: Option<Result<Arc<User>, AuthError>>,
}

impl Challenge<'_> {
    /// What to send the client.
    pub fn params(&self) -> &KeyParams {
        &self.params
    }

    /// Checks the client's proof over `transcript`; returns the user it proves to be.
    ///
    /// Unknown users and wrong proofs fail alike ([`AuthError::LoginFailed`]); whether
    /// the user is active is told only to a client whose proof holds.
    pub fn verify(&mut self, transcript: &[u8], proof: &[u8]) -> Result<Arc<User>, AuthError> {
        let valid = self.key.verify(Side::Client, transcript, proof);
        match &self.user {
            Some(user) if valid => user.clone(),
            _ => {
                self.attempt.failed();
                Err(AuthError::LoginFailed)
            }
        }
    }

    /// The server's proof over `transcript`, to send once the client's proof held.
    pub fn server_proof(&self, transcript: &[u8]) -> Vec<u8> {
        self.key.prove(Side::Server, transcript)
    }
}

impl Auth {
    /// Starts a proof exchange for `username` from `peer` on the server side: reads the
    /// user's stored hash. For an unknown user (or an unreadable hash) the parameters
    /// carry a salt derived from `secret` and the name, the same on every request, so that
    /// the answer does not tell whether the user exists. A failed proof counts against the
    /// failed-login limits like a wrong password; past them the exchange is refused.
    pub fn proof_challenge(
        &self,
        username: &str,
        secret: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Challenge<'_>, AuthError> {
        let attempt = self.limiter.begin(username, peer)?;
        let stored = self.stored_user(username)?;
        let hashed = stored
            .as_ref()
            .and_then(Stored::password_hash)
            .and_then(|phc| split_hash(phc).ok());
        let (params, key, user) = match (hashed, stored) {
            (Some((params, key)), Some(stored)) => {
                (params, key, Some(self.user_from(username, &stored)))
            }
            _ => {
                let (params, key) = decoy(username, secret);
                (params, key, None)
            }
        };
        Ok(Challenge {
            attempt,
            params,
            key,
            user,
        })
    }
}

/// The parameters and key of a stored PHC hash string.
fn split_hash(phc: &str) -> Result<(KeyParams, ProofKey), AuthError> {
    let mut parsed = PasswordHash::new(phc).map_err(|_| invalid("unreadable password hash"))?;
    let hash = parsed
        .hash
        .take()
        .ok_or_else(|| invalid("password hash without a hash"))?;
    let params = KeyParams {
        phc: parsed.to_string(),
        len: u32::try_from(hash.len()).map_err(|_| invalid("password hash too long"))?,
    };
    Ok((params, ProofKey::new(hash.as_bytes())))
}

/// Parameters (Shoal's defaults, a salt derived from the name) and a key nobody can know,
/// for a user that does not exist.
fn decoy(username: &str, secret: &[u8]) -> (KeyParams, ProofKey) {
    let secret = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let derive = |what: &[u8]| hmac::sign(&secret, &[what, username.as_bytes()].concat());
    let salt = derive(b"salt\0");
    let salt = Salt::new(&salt.as_ref()[..Salt::RECOMMENDED_LENGTH]).expect("16 bytes fit");
    let key = derive(b"key\0");
    let params = Params::default();
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: (&params).try_into().expect("default parameters encode"),
        salt: Some(salt),
        hash: None,
    };
    let len = Params::DEFAULT_OUTPUT_LEN as u32;
    let key = ProofKey::new(&key.as_ref()[..len as usize]);
    (
        KeyParams {
            phc: phc.to_string(),
            len,
        },
        key,
    )
}

/// Derives the key from `password` with the server's parameters: one argon2 hash, run off
/// the async workers. Parameters weaker than Shoal's defaults (cheap to guess against) or
/// heavier than a client should spend are refused.
pub async fn derive_key(password: &str, params: &KeyParams) -> Result<ProofKey, AuthError> {
    let (argon, salt, len) = checked(params)?;
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut out = vec![0; len];
        argon
            .hash_password_into(password.as_bytes(), salt.as_ref(), &mut out)
            .map_err(|e| invalid(&format!("cannot derive the key: {e}")))?;
        // The same bytes the server stores: check they encode as its hash would.
        Output::new(&out).map_err(|e| invalid(&format!("cannot derive the key: {e}")))?;
        Ok(ProofKey::new(&out))
    })
    .await
    .map_err(|e| invalid(&format!("deriving the key failed: {e}")))?
}

/// The hasher, salt and key length `params` describe, if within bounds.
fn checked(params: &KeyParams) -> Result<(Argon2<'static>, Salt, usize), AuthError> {
    let phc = PasswordHash::new(&params.phc).map_err(|_| invalid("unreadable key parameters"))?;
    let algorithm = Algorithm::try_from(phc.algorithm.as_str())
        .map_err(|_| invalid("unknown key algorithm"))?;
    if algorithm != Algorithm::Argon2id {
        return Err(invalid("key parameters must use argon2id"));
    }
    let version = phc
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|_| invalid("unknown argon2 version"))?
        .unwrap_or_default();
    let salt = phc
        .salt
        .ok_or_else(|| invalid("key parameters without a salt"))?;
    let mut builder = argon2::ParamsBuilder::new();
    let parsed = Params::try_from(&phc).map_err(|_| invalid("unreadable argon2 parameters"))?;
    let (m, t, p) = (parsed.m_cost(), parsed.t_cost(), parsed.p_cost());
    let work = u64::from(m) * u64::from(t);
    if m < MIN_M_COST || work < MIN_WORK {
        return Err(invalid(
            "the server's argon2 parameters are too weak to prove a password with",
        ));
    }
    if m > MAX_M_COST || t > MAX_T_COST || p > MAX_P_COST {
        return Err(invalid("the server's argon2 parameters are too heavy"));
    }
    let len = usize::try_from(params.len).unwrap_or(usize::MAX);
    if !KEY_LEN.contains(&len) {
        return Err(invalid("unsupported key length"));
    }
    let built = builder
        .m_cost(m)
        .t_cost(t)
        .p_cost(p)
        .output_len(len)
        .build()
        .map_err(|e| invalid(&format!("bad argon2 parameters: {e}")))?;
    Ok((Argon2::new(algorithm, version, built), salt, len))
}

fn invalid(message: &str) -> AuthError {
    AuthError::Invalid(message.to_owned())
}

#[cfg(test)]
mod tests {
    use shoal_store::{Store, StoreOptions};

    use super::*;
    use crate::AuthOptions;

    const SECRET: &[u8] = b"node secret";

    async fn auth_with_admin(options: AuthOptions) -> (tempfile::TempDir, Arc<Store>, Auth) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path(), "n")).unwrap());
        let auth = Auth::with_options(store.clone(), options);
        auth.bootstrap("admin", Some("right")).await.unwrap();
        auth.add_user("reader", "pw", "reader", true).await.unwrap();
        auth.add_user("off", "pw", "super_user", false)
            .await
            .unwrap();
        (dir, store, auth)
    }

    #[tokio::test]
    async fn the_right_password_proves_and_the_server_proves_back() {
        let (_dir, store, auth) = auth_with_admin(AuthOptions::default()).await;
        let mut challenge = auth.proof_challenge("admin", SECRET, None).unwrap();
        let key = derive_key("right", challenge.params()).await.unwrap();
        let proof = key.prove(Side::Client, b"transcript");
        let user = challenge.verify(b"transcript", &proof).unwrap();
        assert!(user.super_user);
        assert_eq!(user.username, "admin");
        let back = challenge.server_proof(b"transcript");
        assert!(key.verify(Side::Server, b"transcript", &back));
        assert!(
            !key.verify(Side::Client, b"transcript", &back),
            "labels differ"
        );
        assert!(!key.verify(Side::Server, b"another session", &back));
        store.close().await;
    }

    #[tokio::test]
    async fn a_wrong_password_another_transcript_or_an_unknown_user_fail_alike() {
        let (_dir, store, auth) = auth_with_admin(AuthOptions::default()).await;
        let mut challenge_admin = auth.proof_challenge("admin", SECRET, None).unwrap();
        let wrong = derive_key("wrong", challenge_admin.params()).await.unwrap();
        let right = derive_key("right", challenge_admin.params()).await.unwrap();
        assert!(matches!(
            challenge_admin.verify(b"t", &wrong.prove(Side::Client, b"t")),
            Err(AuthError::LoginFailed)
        ));
        // A proof made for one connection is worthless on another.
        assert!(matches!(
            challenge_admin.verify(b"t2", &right.prove(Side::Client, b"t")),
            Err(AuthError::LoginFailed)
        ));
        assert!(matches!(
            challenge_admin.verify(b"t", b"short"),
            Err(AuthError::LoginFailed)
        ));

        // Unknown users get parameters of the same shape, the same ones every time.
        let mut ghost = auth.proof_challenge("ghost", SECRET, None).unwrap();
        let again = auth.proof_challenge("ghost", SECRET, None).unwrap();
        assert_eq!(ghost.params(), again.params());
        assert_ne!(
            ghost.params(),
            auth.proof_challenge("ghost2", SECRET, None)
                .unwrap()
                .params()
        );
        let shape = |p: &KeyParams| {
            let h = PasswordHash::new(&p.phc).unwrap();
            (h.algorithm, h.version, h.params.to_string(), p.len)
        };
        assert_eq!(shape(ghost.params()), shape(challenge_admin.params()));
        let key = derive_key("right", ghost.params()).await.unwrap();
        assert!(matches!(
            ghost.verify(b"t", &key.prove(Side::Client, b"t")),
            Err(AuthError::LoginFailed)
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn inactive_and_role_are_told_only_after_a_valid_proof() {
        let (_dir, store, auth) = auth_with_admin(AuthOptions::default()).await;
        let mut off = auth.proof_challenge("off", SECRET, None).unwrap();
        let key = derive_key("pw", off.params()).await.unwrap();
        assert!(matches!(
            off.verify(b"t", &key.prove(Side::Client, b"t")),
            Err(AuthError::Inactive)
        ));
        let mut reader = auth.proof_challenge("reader", SECRET, None).unwrap();
        let key = derive_key("pw", reader.params()).await.unwrap();
        let user = reader.verify(b"t", &key.prove(Side::Client, b"t")).unwrap();
        assert!(!user.super_user);
        assert_eq!(user.role, "reader");
        store.close().await;
    }

    /// A failed proof is a failed login: past the per-user limit a join is refused
    /// before any proof is looked at.
    #[tokio::test]
    async fn failed_proofs_count_against_the_login_limits() {
        let options = AuthOptions {
            failed_logins_per_user: 2,
            ..AuthOptions::default()
        };
        let (_dir, store, auth) = auth_with_admin(options).await;
        for _ in 0..2 {
            let mut challenge = auth.proof_challenge("admin", SECRET, None).unwrap();
            assert!(challenge.verify(b"t", b"not a proof").is_err());
        }
        assert!(matches!(
            auth.proof_challenge("admin", SECRET, None),
            Err(AuthError::TooManyAttempts { .. })
        ));
        store.close().await;
    }

    #[tokio::test]
    async fn weak_or_heavy_parameters_are_refused_by_the_client() {
        let params = |m: u32, t: u32, p: u32| KeyParams {
            phc: format!("$argon2id$v=19$m={m},t={t},p={p}$c29tZXNhbHRzb21lc2FsdA"),
            len: 32,
        };
        for (m, t, p) in [(8, 1, 1), (1024, 8, 1), (19 * 1024, 1, 1), (1 << 21, 1, 1)] {
            assert!(
                matches!(
                    derive_key("pw", &params(m, t, p)).await,
                    Err(AuthError::Invalid(_))
                ),
                "m={m} t={t} p={p} accepted"
            );
        }
        assert!(matches!(
            derive_key("pw", &params(19 * 1024, 2, 64)).await,
            Err(AuthError::Invalid(_))
        ));
        let params = params(19 * 1024, 2, 1);
        assert!(derive_key("pw", &params).await.is_ok());
        let mut bad = params.clone();
        bad.len = 4096;
        assert!(derive_key("pw", &bad).await.is_err());
        bad = params.clone();
        bad.phc = bad.phc.replace("argon2id", "argon2i");
        assert!(derive_key("pw", &bad).await.is_err());
        bad.phc = "garbage".into();
        assert!(derive_key("pw", &bad).await.is_err());
    }
}
