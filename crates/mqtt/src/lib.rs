//! Shoal's MQTT broker, 3.1.1 and 5.0 (chosen per connection from CONNECT), on the MQTT
//! port, its TLS twin and WebSockets with the `mqtt` subprotocol.
//!
//! Topics that name a table's record (`Table/id`, `database/table/id`) are that record:
//! a retained publish writes it, an empty retained publish deletes it, a subscription
//! delivers it as the retained message and then every change to it, however it was made
//! (REST, the Operations API, replication). Other topics are plain topics, as in any
//! broker. Packets are read and written with rumqttc's codecs; everything else (sessions,
//! flows, routing, limits) is here.

mod access;
mod codec;
mod connection;
mod message;
mod persist;
mod records;
mod registry;
mod retained;
mod router;
mod routing;
mod session;
mod topic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, DisconnectReasonCode, Login};
use shoal_auth::{Auth, User};
use shoal_cluster::Cluster;
use shoal_components::Components;
use shoal_store::{SYSTEM_DATABASE, Store, StoreError, TableSpec, Write};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::access::Access;
use crate::message::Relay;
use crate::records::Tables;
use crate::router::Router;
use crate::session::{QueueLimits, Session};

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
    /// Most sessions at once, connected or kept for clients that are away; a client
    /// that would start one more is refused (CONNACK 0x97, quota exceeded).
    pub max_sessions: usize,
    /// Most subscriptions one session holds; more are refused (SUBACK 0x97).
    pub max_subscriptions: usize,
    /// Longest a session may outlive its connection (5.0 session expiry is capped to
    /// it; 3.1.1 persistent sessions get it).
    pub max_session_expiry: Duration,
    /// A client that has not sent CONNECT this long after connecting is dropped.
    pub connect_timeout: Duration,
    /// A write to a client that blocks this long drops the connection.
    pub write_timeout: Duration,
    /// How often sessions that outlive their connections are saved (those that
    /// changed); they are also saved when the broker closes.
    pub save_interval: Duration,
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
            max_sessions: 100_000,
            max_subscriptions: 10_000,
            max_session_expiry: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            save_interval: Duration::from_secs(1),
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

/// Makes one of the broker's tables in `system` if it is missing (another node's copy
/// may have replicated first).
async fn system_table(store: &Store, spec: TableSpec) -> Result<(), StoreError> {
    let system = store.database(SYSTEM_DATABASE)?;
    if system.catalog().tables.contains_key(&spec.name) {
        return Ok(());
    }
    match system.write(Write::CreateTable(spec), None).await {
        Ok(_) | Err(StoreError::TableExists { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// What the broker holds now, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttStats {
    /// Sessions, connected or kept for a client that is away.
    pub sessions: usize,
    /// Sessions with a live connection.
    pub connected: usize,
    /// Messages queued for sessions and not yet sent.
    pub queued: usize,
    /// Messages dropped from full session queues since the node started.
    pub dropped: u64,
}

/// Longest [`Broker::close`] waits for connections to end before saving sessions.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The MQTT broker of one node.
pub struct Broker {
    parts: BrokerParts,
    options: MqttOptions,
    limits: Arc<QueueLimits>,
    /// Sessions by client identifier.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Plain-topic subscriptions.
    router: Router,
    /// Table-topic subscriptions and the feeds that serve them.
    tables: Arc<Tables>,
    /// Who may do what.
    access: Arc<Access>,
    /// Numbers connections (and generated client identifiers).
    connections: AtomicU64,
    /// Set when the broker closes.
    closing: watch::Sender<bool>,
    /// Sessions that ended since sessions were last saved.
    ended: Mutex<Vec<String>>,
}

/// A session taken by a new connection.
pub(crate) struct Attached {
    session: Arc<Session>,
    present: bool,
    connection: u64,
    close: watch::Receiver<Option<DisconnectReasonCode>>,
}

impl Broker {
    /// Starts the broker: makes its tables if missing, restores the sessions it saved,
    /// and starts saving them.
    pub async fn start(parts: BrokerParts, options: MqttOptions) -> Arc<Broker> {
        if let Err(error) = retained::prepare(&parts.store).await {
            tracing::warn!(%error, "MQTT retained messages are not kept: no table for them");
        }
        if let Err(error) = persist::prepare(&parts.store).await {
            tracing::warn!(%error, "MQTT sessions are not saved: no table for them");
        }
        let limits = Arc::new(QueueLimits {
            messages: options.max_queued_messages,
            bytes: options.max_queued_bytes,
            dropped: AtomicU64::new(0),
        });
        let anonymous_plain =
            !options.require_authentication && options.plain_topics == PlainTopics::Authenticated;
        let access = Arc::new(Access::new(
            parts.auth.clone(),
            &parts.store,
            options.plain_topics,
            anonymous_plain,
        ));
        let broker = Arc::new(Broker {
            tables: Arc::new(Tables::new(parts.clone(), limits.clone(), access.clone())),
            access,
            parts,
            options,
            limits,
            sessions: Mutex::default(),
            router: Router::default(),
            connections: AtomicU64::new(0),
            closing: watch::Sender::new(false),
            ended: Mutex::default(),
        });
        broker.restore();
        if let Some(cluster) = &broker.parts.cluster {
            let mut relayed = cluster.relayed();
            let receiver = broker.clone();
            broker
                .parts
                .store
                .workers()
                .spawn("mqtt/relayed", move |ctx| async move {
                    loop {
                        ctx.set_idle();
                        let next = tokio::select! {
                            next = relayed.recv() => next,
                            () = ctx.stopping() => return,
                        };
                        let Some(next) = next else {
                            return;
                        };
                        match Relay::decode(&next.payload) {
                            Some(message) => receiver.relayed(message),
                            None => {
                                tracing::debug!(origin = %next.origin, "MQTT relay not understood")
                            }
                        }
                        ctx.count(1);
                    }
                });
        }
        let saver = broker.clone();
        broker
            .parts
            .store
            .workers()
            .spawn("mqtt/sessions", move |ctx| async move {
                let mut tick = tokio::time::interval(saver.options.save_interval);
                loop {
                    ctx.set_idle();
                    tokio::select! {
                        _ = tick.tick() => saver.save().await,
                        () = ctx.stopping() => return,
                    }
                }
            });
        broker
    }

    /// Serves one client connection until it closes or the broker closes.
    pub async fn connection<S>(self: Arc<Self>, stream: S, peer: Peer)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        if *self.closing.borrow() {
            return;
        }
        connection::serve(self, stream, peer).await;
    }

    /// Ends every connection (5.0 clients are told the server is shutting down) and
    /// saves persistent sessions; returns when done.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let sessions: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        for session in &sessions {
            if let Some((_, close)) = session.state().connection.as_ref() {
                close.send_replace(Some(DisconnectReasonCode::ServerShuttingDown));
            }
        }
        // Connections give their sessions back as they end; what they leave in flight
        // is saved with the rest.
        let deadline = tokio::time::Instant::now() + self.options.write_timeout.min(CLOSE_WAIT);
        while sessions.iter().any(|s| s.state().connection.is_some())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.save().await;
    }

    /// What the broker holds now.
    pub fn stats(&self) -> MqttStats {
        let sessions: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        let mut stats = MqttStats {
            sessions: sessions.len(),
            connected: 0,
            queued: 0,
            dropped: self.limits.dropped.load(Ordering::Relaxed),
        };
        for session in sessions {
            let state = session.state();
            stats.connected += usize::from(state.connection.is_some());
            stats.queued += state.queue.len();
        }
        stats
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_connection(&self) -> u64 {
        self.connections.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The user a CONNECT logs in as: its username and password, else the user its
    /// client certificate names; anonymous (`None`) only when that is allowed.
    async fn login(
        &self,
        login: Option<&Login>,
        peer: &Peer,
    ) -> Result<Option<Arc<User>>, ConnectReturnCode> {
        let auth = &self.parts.auth;
        if let Some(login) = login.filter(|l| !l.username.is_empty()) {
            let credentials = format!("{}:{}", login.username, login.password);
            let header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            );
            return auth
                .authenticate_from(Some(&header), Some(peer.address.ip()))
                .await
                .map(Some)
                .map_err(|_| ConnectReturnCode::BadUserNamePassword);
        }
        if let Some(name) = &peer.certificate_user {
            return auth
                .user_named(name)
                .map(Some)
                .map_err(|_| ConnectReturnCode::NotAuthorized);
        }
        if self.options.require_authentication {
            // Harper's answer to a client without credentials.
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        Ok(None)
    }
}
