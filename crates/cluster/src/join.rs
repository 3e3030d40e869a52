//! `add_node`: the first contact between two nodes. The joining node connects without a
//! client certificate, trusting the server's certificate on first use, and sends the
//! other node's admin credentials with its own name, address and CA. The other node
//! checks the credentials, records the newcomer in its membership tables and answers
//! with its own; the newcomer checks that the server's certificate is the one that CA
//! signed for that name, and records it. Membership then replicates to everyone.

use std::sync::Arc;

use base64::Engine;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::identity::validate_node_name;
use crate::nodes::{self, NodeRecord};
use crate::proto::{self, Frame};
use crate::tls;

/// Joins the node at `url` (`host:port`); returns its name.
pub(crate) async fn join(
    shared: &Arc<Shared>,
    url: &str,
    username: &str,
    password: &str,
) -> Result<String, ClusterError> {
    let tcp = tokio::time::timeout(shared.options.idle_timeout, TcpStream::connect(url))
        .await
        .map_err(|_| ClusterError::Refused(format!("connecting to {url} timed out")))?
        .map_err(|e| ClusterError::Refused(format!("cannot reach {url}: {e}")))?;
    // The name is not checked on first contact (trust on first use); any will do.
    let name = ServerName::try_from("shoal-join").expect("a valid name");
    let mut conn = TlsConnector::from(tls::first_contact_config()?)
        .connect(name, tcp)
        .await?;
    let request = Frame::Join {
        username: username.to_owned(),
        password: password.to_owned(),
        node: shared.name.clone(),
        ca_pem: shared.identity.ca_pem().to_owned(),
        url: shared.url.clone(),
    };
    proto::write(&mut conn, &request).await?;
    let answer = tokio::time::timeout(shared.options.idle_timeout, proto::read(&mut conn))
        .await
        .map_err(|_| ClusterError::Refused("no answer to the join request".into()))??;
    let (node, ca_pem, peer_url) = match answer {
        Some(Frame::Joined { node, ca_pem, url }) => (node, ca_pem, url),
        Some(Frame::Refused { reason }) => return Err(ClusterError::Refused(reason)),
        other => {
            return Err(ClusterError::Protocol(format!(
                "unexpected answer to a join: {other:?}"
            )));
        }
    };
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
    validate_node_name(&node)?;
    if node == shared.name {
        return Err(ClusterError::Refused(format!("{url} is this node")));
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
    shared.trust.set(&node, &ca_pem)?;
    nodes::save(&shared.store, &record, &ca_pem).await?;
    shared.wake.notify_one();
    Ok(node)
}

/// Answers a join request on the replication port.
pub(crate) async fn accept<S>(
    shared: &Arc<Shared>,
    conn: &mut S,
    request: Frame,
) -> Result<(), ClusterError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Frame::Join {
        username,
        password,
        node,
        ca_pem,
        url,
    } = request
    else {
        return Err(ClusterError::Protocol("not a join request".into()));
    };
    let refuse = |reason: String| Frame::Refused { reason };
    let header = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    );
    let verdict = match shared.auth.authenticate(Some(&header)).await {
        Ok(user) if user.super_user => validate_node_name(&node)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                if node == shared.name {
                    Err(format!("a node named '{node}' is this node"))
                } else {
                    Ok(())
                }
            }),
        Ok(_) => Err("add_node needs a super_user".to_owned()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(reason) = verdict {
        proto::write(conn, &refuse(reason.clone())).await?;
        return Err(ClusterError::Refused(reason));
    }
    shared.trust.set(&node, &ca_pem)?;
    let record = NodeRecord {
        name: node.clone(),
        url,
        ..NodeRecord::default()
    };
    nodes::save(&shared.store, &record, &ca_pem).await?;
    shared.wake.notify_one();
    let answer = Frame::Joined {
        node: shared.name.clone(),
        ca_pem: shared.identity.ca_pem().to_owned(),
        url: shared.url.clone(),
    };
    proto::write(conn, &answer).await?;
    tracing::info!(%node, "node joined");
    Ok(())
}
