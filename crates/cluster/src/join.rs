//! `add_node`: the first contact between two nodes, where neither trusts the other's CA
//! yet. The password of the existing node's admin never crosses the wire:
//!
//! ```text
//! joiner                                        existing node
//!   Join {username, node, ca_pem, url, nonce} ->
//!                   <- JoinChallenge {node, ca_pem, url, params, nonce}
//!   (checks the server's certificate: named `node`, signed by `ca_pem`,
//!    and the CA's fingerprint if the request pinned one)
//!   JoinProof {proof} ->
//!                   (checks the proof; the user must be an active super user;
//!                    records the joiner and pins its CA)
//!                   <- Joined {proof}
//!   (checks the server's proof; records it and pins its CA)
//! ```
//!
//! Proofs are HMACs keyed by the user's password hash (see [`crate::Credentials`]) over a
//! transcript of the exchange that includes keying material exported from this TLS
//! session. A man in the middle has a different TLS session with each side, so it can
//! neither relay a proof nor make one; the joiner refuses the join unless the server
//! proves it holds the same hash. Membership then replicates to everyone.

use std::net::IpAddr;
use std::sync::Arc;

use rand::RngCore;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cluster::Shared;
use crate::credentials::KeyParams;
use crate::error::ClusterError;

use crate::identity::validate_node_name;
use crate::nodes::{self, NodeRecord};
use crate::proto::{self, Frame};
use crate::tls;

/// Length of each side's nonce.
const NONCE_LEN: usize = 32;
/// The least a join waits for the other side's next frame.
const JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// What the decoy salts of unknown users are derived from (see
/// [`crate::Credentials::challenge`]).
pub(crate) const DECOY_PURPOSE: &str = "add_node decoy salts";

/// One side's part of the transcript.
struct Party<'a> {
    node: &'a str,
    ca_pem: &'a str,
    url: &'a str,
    nonce: &'a [u8],
}

/// The bytes both proofs are made over: the TLS session, the user, and both parties as
/// each announced itself. Fields are length-prefixed, so no two transcripts coincide.
fn transcript(exporter: &[u8], username: &str, joiner: &Party, server: &Party) -> Vec<u8> {
    let mut out = b"shoal add_node v1".to_vec();
    for field in [
        exporter,
        username.as_bytes(),
        joiner.node.as_bytes(),
        joiner.ca_pem.as_bytes(),
        joiner.url.as_bytes(),
        joiner.nonce,
        server.node.as_bytes(),
        server.ca_pem.as_bytes(),
        server.url.as_bytes(),
        server.nonce,
    ] {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

fn nonce() -> Vec<u8> {
    let mut nonce = vec![0; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// Joins the node at `url` (`host:port`) as its user `username`; returns its name. With
/// `ca_fingerprint`, the node's CA must have that SHA-256 fingerprint.
pub(crate) async fn join(
    shared: &Arc<Shared>,
    url: &str,
    username: &str,
    password: &str,
    ca_fingerprint: Option<&str>,
) -> Result<String, ClusterError> {
    let timeout = join_timeout(shared);
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(url))
        .await
        .map_err(|_| ClusterError::Refused(format!("connecting to {url} timed out")))?
        .map_err(|e| ClusterError::Refused(format!("cannot reach {url}: {e}")))?;
    // The server's certificate is judged below, against the CA it announces.
    let name = ServerName::try_from("shoal-join").expect("a valid name");
    let mut conn = tokio::time::timeout(
        timeout,
        TlsConnector::from(tls::first_contact_config()?).connect(name, tcp),
    )
    .await
    .map_err(|_| ClusterError::Refused(format!("TLS handshake with {url} timed out")))??;
    let exporter = tls::exporter(conn.get_ref().1)?;
    let me = Party {
        node: &shared.name,
        ca_pem: shared.identity.ca_pem(),
        url: &shared.url,
        nonce: &nonce(),
    };
    let hello = Frame::Join {
        username: username.to_owned(),
        node: me.node.to_owned(),
        ca_pem: me.ca_pem.to_owned(),
        url: me.url.to_owned(),
        nonce: me.nonce.to_vec(),
    };
    proto::write(&mut conn, &hello).await?;
    let (node, ca_pem, peer_url, params, server_nonce) = match answer(&mut conn, timeout).await? {
        Frame::JoinChallenge {
            node,
            ca_pem,
            url,
            params,
            nonce,
        } => (node, ca_pem, url, params, nonce),
        other => return Err(unexpected(other)),
    };
    // Before proving anything: the server must be the node it claims, under the CA it
    // announces (and the pinned one, if any).
    let leaf = conn
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first().cloned())
        .ok_or_else(|| ClusterError::Tls("the peer presented no certificate".into()))?;
    if tls::peer_name(Some(std::slice::from_ref(&leaf))).as_deref() != Some(node.as_str())
        || !tls::signed_by(&leaf, &ca_pem)
    {
        return Err(ClusterError::Tls(format!(
            "{url} answered as '{node}' but its certificate is not that node's"
        )));
    }
    if let Some(expected) = ca_fingerprint {
        let actual = tls::fingerprint(&ca_pem)?;
        if !tls::fingerprint_matches(expected, &actual) {
            return Err(ClusterError::Tls(format!(
                "{url}'s CA has fingerprint {actual}, not the {expected} given"
            )));
        }
    }
    validate_node_name(&node)?;
    if node == shared.name {
        return Err(ClusterError::Refused(format!("{url} is this node")));
    }
    let key = shared.credentials.derive_key(password, &params).await?;
    let server = Party {
        node: &node,
        ca_pem: &ca_pem,
        url: &peer_url,
        nonce: &server_nonce,
    };
    let transcript = transcript(&exporter, username, &me, &server);
    let proof = key.client_proof(&transcript);
    proto::write(&mut conn, &Frame::JoinProof { proof }).await?;
    match answer(&mut conn, timeout).await? {
        Frame::Joined { proof } if key.is_server_proof(&transcript, &proof) => {}
        Frame::Joined { .. } => {
            return Err(ClusterError::Tls(format!(
                "{url} did not prove that it holds the credentials: not the node it claims"
            )));
        }
        other => return Err(unexpected(other)),
    }
    // Dial the address we reached unless the peer advertised a better one.
    let record = NodeRecord {
        name: node.clone(),
        url: if peer_url.is_empty() {
            url.to_owned()
        } else {
            peer_url
        },
        ..NodeRecord::default()
    };
    admit(shared, &record, &ca_pem).await?;
    Ok(node)
}

/// Pins a new member's CA and records it; its own CA row replaces the pin once it arrives.
async fn admit(shared: &Shared, record: &NodeRecord, ca_pem: &str) -> Result<(), ClusterError> {
    shared.trust.set(&record.name, ca_pem)?;
    nodes::pin(&shared.store, &record.name, ca_pem).await?;
    nodes::save_record(&shared.store, record).await?;
    shared.wake.notify_one();
    Ok(())
}

/// How long either side of a join waits for the other's next frame. Not the links' idle
/// timeout: a join waits on password hashing and on commits of `system` on a node that
/// may be busy, once, by an operator's request.
fn join_timeout(shared: &Shared) -> std::time::Duration {
    shared.options.idle_timeout.max(JOIN_TIMEOUT)
}

/// The next frame, within `timeout`; a refusal becomes an error.
async fn answer<S: AsyncRead + Unpin>(
    conn: &mut S,
    timeout: std::time::Duration,
) -> Result<Frame, ClusterError> {
    match tokio::time::timeout(timeout, proto::read(conn, proto::JOIN_FRAME_BYTES)).await {
        Err(_) => Err(ClusterError::Refused(
            "no answer to the join request".into(),
        )),
        Ok(Ok(Some(Frame::Refused { reason }))) => Err(ClusterError::Refused(reason)),
        Ok(Ok(Some(frame))) => Ok(frame),
        Ok(Ok(None)) => Err(ClusterError::Refused(
            "the other node closed the join connection".into(),
        )),
        Ok(Err(e)) => Err(e),
    }
}

fn unexpected(frame: Frame) -> ClusterError {
    ClusterError::Protocol(format!("unexpected frame in a join: {frame:?}"))
}

/// Answers a join request on the replication port; `exporter` is the TLS session's
/// keying material.
pub(crate) async fn accept<S>(
    shared: &Arc<Shared>,
    conn: &mut S,
    exporter: &[u8],
    request: Frame,
    from: Option<IpAddr>,
) -> Result<(), ClusterError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Frame::Join {
        username,
        node,
        ca_pem,
        url,
        nonce,
    } = request
    else {
        return Err(ClusterError::Protocol("not a join request".into()));
    };
    let joiner = Party {
        node: &node,
        ca_pem: &ca_pem,
        url: &url,
        nonce: &nonce,
    };
    let result = answer_join(shared, conn, exporter, &username, &joiner, from).await;
    if let Err(ClusterError::Refused(reason)) = &result {
        proto::refuse(conn, reason).await;
    }
    result
}

async fn answer_join<S>(
    shared: &Arc<Shared>,
    conn: &mut S,
    exporter: &[u8],
    username: &str,
    joiner: &Party<'_>,
    from: Option<IpAddr>,
) -> Result<(), ClusterError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let node = joiner.node;
    validate_node_name(node).map_err(|e| ClusterError::Refused(e.to_string()))?;
    if node == shared.name {
        return Err(ClusterError::Refused(format!(
            "a node named '{node}' is this node"
        )));
    }
    tls::fingerprint(joiner.ca_pem).map_err(|e| ClusterError::Refused(e.to_string()))?;
    let secret = shared.identity.derived_secret(DECOY_PURPOSE);
    let mut challenge = shared.credentials.challenge(username, &secret, from)?;
    let me = Party {
        node: &shared.name,
        ca_pem: shared.identity.ca_pem(),
        url: &shared.url,
        nonce: &nonce(),
    };
    let params: KeyParams = challenge.params().clone();
    let ask = Frame::JoinChallenge {
        node: me.node.to_owned(),
        ca_pem: me.ca_pem.to_owned(),
        url: me.url.to_owned(),
        params,
        nonce: me.nonce.to_vec(),
    };
    proto::write(conn, &ask).await?;
    let proof = match answer(conn, join_timeout(shared)).await? {
        Frame::JoinProof { proof } => proof,
        other => return Err(unexpected(other)),
    };
    let transcript = transcript(exporter, username, joiner, &me);
    if !challenge.verify(&transcript, &proof)? {
        return Err(ClusterError::Refused(
            "add_node needs a super_user or cluster_user".into(),
        ));
    }
    let record = NodeRecord {
        name: node.to_owned(),
        url: joiner.url.to_owned(),
        ..NodeRecord::default()
    };
    admit(shared, &record, joiner.ca_pem).await?;
    let welcome = Frame::Joined {
        proof: challenge.server_proof(&transcript),
    };
    proto::write(conn, &welcome).await?;
    tracing::info!(%node, "node joined");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use shoal_store::{SYSTEM_DATABASE, Store, StoreOptions};
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::credentials::NoUsers;
    use crate::identity::Identity;
    use crate::tls::TrustStore;
    use crate::{Cluster, ClusterOptions};

    /// A server that answers a join as node `fake` would, without knowing any password:
    /// its challenge is well formed, its closing proof is not.
    async fn impostor(dir: &std::path::Path) -> SocketAddr {
        let identity = Identity::load_or_create(dir, "fake").unwrap();
        let config = tls::server_config(&identity, &TrustStore::new(&identity)).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut conn = TlsAcceptor::from(config).accept(tcp).await.unwrap();
            assert!(matches!(
                proto::read(&mut conn, proto::JOIN_FRAME_BYTES)
                    .await
                    .unwrap(),
                Some(Frame::Join { .. })
            ));
            let challenge = Frame::JoinChallenge {
                node: "fake".into(),
                ca_pem: identity.ca_pem().to_owned(),
                url: addr.to_string(),
                params: KeyParams {
                    phc: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA".into(),
                    len: 32,
                },
                nonce: nonce(),
            };
            proto::write(&mut conn, &challenge).await.unwrap();
            assert!(matches!(
                proto::read(&mut conn, proto::JOIN_FRAME_BYTES)
                    .await
                    .unwrap(),
                Some(Frame::JoinProof { .. })
            ));
            let welcome = Frame::Joined { proof: vec![0; 32] };
            proto::write(&mut conn, &welcome).await.unwrap();
        });
        addr
    }

    #[tokio::test]
    async fn a_server_that_cannot_prove_it_holds_the_credentials_is_not_joined() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path().join("db"), "me")).unwrap());
        store.create_database(SYSTEM_DATABASE).await.unwrap();
        let options = ClusterOptions::new("me", "127.0.0.1:0".parse().unwrap());
        let keys = dir.path().join("keys");
        let cluster = Cluster::start(store.clone(), Arc::new(NoUsers), &keys, options)
            .await
            .unwrap();
        let fake = impostor(&dir.path().join("fake")).await;

        let err = cluster
            .add_node(&fake.to_string(), "admin", "pw", None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("did not prove"), "{err}");
        assert!(
            nodes::members(&store)
                .unwrap()
                .iter()
                .all(|m| m.name != "fake"),
            "the impostor was recorded"
        );
        assert!(nodes::pins(&store).unwrap().is_empty());
        store.workers().shutdown(Duration::from_secs(10)).await;
        store.close().await;
    }
}
