//! What a join needs of the node's users, without the cluster knowing how they are kept:
//! the layer that keeps them implements [`Credentials`] (the `shoal` binary wires in
//! `shoal_auth`'s password proofs).
//!
//! A join proves that the joiner knows a super user's password without sending it: the
//! existing node sends the parameters of the user's stored password hash, the joiner
//! derives the key from the password with them, and each side proves that it holds the
//! key with an HMAC over a transcript of the TLS session (see `join`), which the
//! implementation computes and checks.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::error::ClusterError;

/// The parameters a joiner derives its key with (sent in the join challenge): the user's
/// PHC hash string without the hash, and the hash's length in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyParams {
    /// `$argon2id$v=19$m=...,t=...,p=...$<salt>`.
    pub phc: String,
    /// Length of the derived key in bytes.
    pub len: u32,
}

/// The joiner's key, derived from the password.
pub trait ProofKey: Send + Sync {
    /// The joiner's proof over `transcript`.
    fn client_proof(&self, transcript: &[u8]) -> Vec<u8>;
    /// Whether `proof` is the existing node's proof over `transcript`.
    fn is_server_proof(&self, transcript: &[u8], proof: &[u8]) -> bool;
}

/// The existing node's half of one join's proof exchange.
pub trait Challenge: Send {
    /// The parameters to send the joiner.
    fn params(&self) -> &KeyParams;
    /// Checks the joiner's proof over `transcript`: `Ok(true)` if it proves a super user,
    /// `Ok(false)` another user; a refusal (wrong proof, unknown or inactive user) if not.
    fn verify(&mut self, transcript: &[u8], proof: &[u8]) -> Result<bool, ClusterError>;
    /// The existing node's proof over `transcript`, sent once the joiner's proof held.
    fn server_proof(&self, transcript: &[u8]) -> Vec<u8>;
}

/// A key being derived (one slow password hash).
pub type DerivedKey = Pin<Box<dyn Future<Output = Result<Box<dyn ProofKey>, ClusterError>> + Send>>;

/// The node's users, as a join sees them.
pub trait Credentials: Send + Sync {
    /// Starts answering a join as `username` from `peer`. An unknown user gets parameters
    /// derived from `secret` and the name, so the answer does not tell whether it exists;
    /// failed proofs count against the node's login limits, past which this refuses.
    fn challenge(
        &self,
        username: &str,
        secret: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Box<dyn Challenge + '_>, ClusterError>;

    /// The joiner's side: derives the key from `password` with the existing node's
    /// `params`, refusing parameters too weak to prove a password with or too heavy.
    fn derive_key(&self, password: &str, params: &KeyParams) -> DerivedKey;
}

/// Credentials for tests that join as nobody: no user can be proved, and a derived key is
/// an HMAC key made of the password itself.
#[cfg(test)]
pub(crate) struct NoUsers;

#[cfg(test)]
impl Credentials for NoUsers {
    fn challenge(
        &self,
        _username: &str,
        _secret: &[u8],
        _peer: Option<IpAddr>,
    ) -> Result<Box<dyn Challenge + '_>, ClusterError> {
        Err(ClusterError::Refused("no users here".into()))
    }

    fn derive_key(&self, password: &str, _params: &KeyParams) -> DerivedKey {
        use aws_lc_rs::hmac;

        struct Key(hmac::Key);
        impl ProofKey for Key {
            fn client_proof(&self, transcript: &[u8]) -> Vec<u8> {
                hmac::sign(&self.0, &[&b"client"[..], transcript].concat())
                    .as_ref()
                    .to_vec()
            }
            fn is_server_proof(&self, transcript: &[u8], proof: &[u8]) -> bool {
                hmac::verify(&self.0, &[&b"server"[..], transcript].concat(), proof).is_ok()
            }
        }
        let key = hmac::Key::new(hmac::HMAC_SHA256, password.as_bytes());
        Box::pin(async move { Ok(Box::new(Key(key)) as Box<dyn ProofKey>) })
    }
}
