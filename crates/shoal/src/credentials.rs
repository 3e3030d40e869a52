//! The node's users as the cluster's join sees them: `shoal_auth`'s password proofs
//! behind `shoal_cluster`'s [`Credentials`], so that neither crate depends on the other.

use std::net::IpAddr;
use std::sync::Arc;

use shoal_auth::proof::{self, Side};
use shoal_auth::{Auth, AuthError};
use shoal_cluster::{Challenge, ClusterError, Credentials, DerivedKey, KeyParams, ProofKey};

/// The users `auth` keeps.
pub(crate) struct Users(pub(crate) Arc<Auth>);

impl Credentials for Users {
    fn challenge(
        &self,
        username: &str,
        secret: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Box<dyn Challenge + '_>, ClusterError> {
        let challenge = self
            .0
            .proof_challenge(username, secret, peer)
            .map_err(refusal)?;
        let params = challenge.params();
        let params = KeyParams {
            phc: params.phc.clone(),
            len: params.len,
        };
        Ok(Box::new(UserChallenge { challenge, params }))
    }

    fn derive_key(&self, password: &str, params: &KeyParams) -> DerivedKey {
        let password = password.to_owned();
        let params = proof::KeyParams {
            phc: params.phc.clone(),
            len: params.len,
        };
        Box::pin(async move {
            let key = proof::derive_key(&password, &params)
                .await
                .map_err(refusal)?;
            Ok(Box::new(UserKey(key)) as Box<dyn ProofKey>)
        })
    }
}

struct UserChallenge<'a> {
    challenge: proof::Challenge<'a>,
    params: KeyParams,
}

impl Challenge for UserChallenge<'_> {
    fn params(&self) -> &KeyParams {
        &self.params
    }

    fn verify(&mut self, transcript: &[u8], proof: &[u8]) -> Result<bool, ClusterError> {
        let user = self.challenge.verify(transcript, proof).map_err(refusal)?;
        // Harper's cluster_user role exists for exactly this: joining, and nothing else.
        Ok(user.super_user || user.permission.cluster_user)
    }

    fn server_proof(&self, transcript: &[u8]) -> Vec<u8> {
        self.challenge.server_proof(transcript)
    }
}

struct UserKey(proof::ProofKey);

impl ProofKey for UserKey {
    fn client_proof(&self, transcript: &[u8]) -> Vec<u8> {
        self.0.prove(Side::Client, transcript)
    }

    fn is_server_proof(&self, transcript: &[u8], proof: &[u8]) -> bool {
        self.0.verify(Side::Server, transcript, proof)
    }
}

/// The peer is told why, as a login refusal would tell a client.
fn refusal(e: AuthError) -> ClusterError {
    ClusterError::Refused(e.to_string())
}
