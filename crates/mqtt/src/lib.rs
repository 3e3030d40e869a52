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
mod retained;
mod router;
mod session;
mod topic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, DisconnectReasonCode, Filter, LastWill, Login, RetainForwardRule,
    SubscribeReasonCode,
};
use shoal_auth::{Action, Auth, User};
use shoal_cluster::Cluster;
use shoal_components::Components;
use shoal_store::Store;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::access::Access;
use crate::codec::Refusal;
use crate::connection::End;
use crate::message::{Message, Relay};
use crate::records::Tables;
use crate::router::Router;
use crate::session::{QueueLimits, Session, State, SubOptions, Subscribed, Target};
use crate::topic::Subscription;

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

    /// Restores the saved sessions, each expiring when it would have.
    fn restore(self: &Arc<Self>) {
        let saved = match persist::load(&self.parts.store) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "MQTT sessions not restored");
                return;
            }
        };
        let count = saved.len();
        for saved in saved {
            let (session, left, subscriptions) = saved.restore();
            let username = session.state().username.clone();
            for saved in subscriptions {
                if let Some(target) = self.target(&saved.path) {
                    let options = saved.options();
                    self.index(&session, &saved.path, &target, options, username.clone());
                }
            }
            self.sessions()
                .insert(session.client_id.clone(), session.clone());
            self.expire(&session, left, session.state().generation);
        }
        if count > 0 {
            tracing::info!(sessions = count, "MQTT sessions restored");
        }
    }

    /// Saves the sessions that changed and forgets those that ended.
    async fn save(&self) {
        let sessions: Vec<Arc<Session>> = self.sessions().values().cloned().collect();
        let mut changed = Vec::new();
        for session in sessions {
            let mut state = session.state();
            if state.dirty && !state.expiry.is_zero() {
                state.dirty = false;
                changed.push(persist::save(&session.client_id, &state));
            }
        }
        let ended = std::mem::take(&mut *self.ended.lock().unwrap_or_else(PoisonError::into_inner));
        if changed.is_empty() && ended.is_empty() {
            return;
        }
        if let Err(error) = persist::write(&self.parts.store, changed, ended).await {
            tracing::warn!(%error, "MQTT sessions not saved");
        }
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

    /// Gives `client_id`'s session to a new connection: the existing one (whose
    /// connection, if live, is told it was taken over) unless `clean` asks for a new one.
    fn attach(&self, client_id: &str, clean: bool, set: impl FnOnce(&mut State)) -> Attached {
        let mut sessions = self.sessions();
        let existing = sessions.get(client_id).cloned();
        if let Some(existing) = &existing
            && let Some((_, close)) = existing.state().connection.take()
        {
            close.send_replace(Some(DisconnectReasonCode::SessionTakenOver));
        }
        let (session, present) = match existing {
            Some(existing) if !clean => (existing, true),
            existing => {
                if let Some(old) = existing {
                    self.discard(&old);
                }
                let session = Arc::new(Session::new(client_id.to_owned()));
                sessions.insert(client_id.to_owned(), session.clone());
                (session, false)
            }
        };
        let connection = self.next_connection();
        let (close_tx, close) = watch::channel(None);
        {
            let mut state = session.state();
            set(&mut state);
            state.connection = Some((connection, close_tx));
            state.generation += 1;
        }
        Attached {
            session,
            present,
            connection,
            close,
        }
    }

    /// A connection ended: its session ends too unless it is kept (then it expires
    /// later, unless a connection takes it first).
    fn detach(self: &Arc<Self>, session: &Arc<Session>, connection: u64, end: &End) {
        let (expiry, generation) = {
            let mut state = session.state();
            if state.connection.as_ref().map(|c| c.0) != Some(connection) {
                // Taken over: the session is the new connection's now.
                return;
            }
            state.connection = None;
            state.generation += 1;
            // QoS 0 messages are not kept for an absent client.
            let mut freed = 0;
            state.queue.retain(|d| {
                let keep = d.qos != QoS::AtMostOnce;
                if !keep {
                    freed += d.message.size();
                }
                keep
            });
            state.queued_bytes = state.queued_bytes.saturating_sub(freed);
            (state.expiry, state.generation)
        };
        tracing::debug!(client = %session.client_id, ?end, "MQTT connection ended");
        if expiry.is_zero() {
            self.forget(session);
            return;
        }
        self.expire(session, expiry, generation);
    }

    /// Forgets `session` after `after`, unless a connection takes it first.
    fn expire(self: &Arc<Self>, session: &Arc<Session>, after: Duration, generation: u64) {
        let (broker, session) = (self.clone(), session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let current = session.state().generation == generation;
            if current {
                broker.forget(&session);
            }
        });
    }

    /// Removes a session and its subscriptions.
    fn forget(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions();
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
        }
        drop(sessions);
        if !session.state().expiry.is_zero() {
            self.ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(session.client_id.clone());
        }
        self.discard(session);
    }

    /// Removes a session's subscriptions from the indexes.
    fn discard(&self, session: &Arc<Session>) {
        let subscriptions: Vec<Subscribed> = session
            .state()
            .subscriptions
            .drain()
            .map(|(_, s)| s)
            .collect();
        for subscribed in subscriptions {
            self.unindex(&subscribed.target, &session.client_id);
        }
    }

    fn unindex(&self, target: &Target, client: &str) -> bool {
        match target {
            Target::Plain(subscription) => self.router.remove(subscription, client),
            Target::Table(filter) => self.tables.remove(filter, client),
        }
    }

    /// Publishes a client's will: now, or after its delay unless the client is back.
    fn will(self: &Arc<Self>, session: &Arc<Session>, will: LastWill, username: Option<String>) {
        let message = Message::will(&will, &session.client_id);
        let delay = will
            .properties
            .as_ref()
            .and_then(|p| p.delay_interval)
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or_default();
        let (delay, generation) = {
            let state = session.state();
            // The will waits no longer than the session lives.
            (delay.min(state.expiry), state.generation)
        };
        let (broker, session) = (self.clone(), session.clone());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                if session.state().generation != generation {
                    return;
                }
            }
            if let Err(refusal) = broker.publish(message, username.as_deref()).await {
                tracing::debug!(client = %session.client_id, ?refusal, "MQTT will not published");
            }
        });
    }

    /// Takes a message a client (or a will) published: a record write for a retained
    /// message on a table topic, a live delivery otherwise; peers get what they need.
    async fn publish(&self, message: Message, username: Option<&str>) -> Result<(), Refusal> {
        if let Some(resolved) = records::resolve(&self.parts, &message.topic, false) {
            if message.retain {
                // Subscribers here and on every peer learn of it from the commit.
                return records::write(&self.access, username, &resolved, &message).await;
            }
            let (database, table) = (resolved.db.name(), resolved.table.name.as_str());
            self.access
                .table(username, Action::Upsert, database, table)
                .ok_or(Refusal::NotAuthorized)?;
            let key = resolved.key().ok_or(Refusal::TopicInvalid)?;
            self.relay(&message);
            self.tables
                .deliver(database, &resolved.table, &key, None, Some(&message));
            return Ok(());
        }
        if !self.access.plain(username) {
            return Err(Refusal::NotAuthorized);
        }
        if message.retain {
            retained::keep(&self.parts.store, &message)
                .await
                .map_err(|error| {
                    tracing::warn!(%error, "MQTT retained message not kept");
                    Refusal::Failed
                })?;
        }
        self.relay(&message);
        self.route(Arc::new(message));
        Ok(())
    }

    /// Delivers a plain-topic message to this node's subscribers.
    fn route(&self, message: Arc<Message>) {
        for (session, delivery) in self.router.route(&message) {
            session.push(delivery, &self.limits);
        }
    }

    /// Sends a live message to the cluster's other nodes.
    fn relay(&self, message: &Message) {
        if let Some(cluster) = &self.parts.cluster
            && let Some(bytes) = Relay::encode(message)
        {
            cluster.relay(bytes.into());
        }
    }

    /// Delivers a message a peer relayed to this node's subscribers.
    fn relayed(&self, message: Message) {
        if let Some(resolved) = records::resolve(&self.parts, &message.topic, false) {
            if let Some(key) = resolved.key() {
                self.tables.deliver(
                    resolved.db.name(),
                    &resolved.table,
                    &key,
                    None,
                    Some(&message),
                );
            }
            return;
        }
        self.route(Arc::new(message));
    }

    /// What a subscription filter follows: a table (or a record of it), or plain topics;
    /// `None` if it is not a valid filter.
    fn target(&self, path: &str) -> Option<Target> {
        let subscription = Subscription::parse(path)?;
        let resolved = subscription
            .group
            .is_none()
            .then(|| records::resolve(&self.parts, &subscription.filter, true))
            .flatten();
        Some(match resolved {
            Some(resolved) => Target::Table(resolved.filter()),
            None => Target::Plain(subscription),
        })
    }

    /// Adds one subscription of a SUBSCRIBE: the QoS granted and the retained messages
    /// it starts with, or the reason it is refused.
    fn subscribe(
        &self,
        session: &Arc<Session>,
        username: Option<&str>,
        filter: &Filter,
        id: Option<usize>,
    ) -> Result<(QoS, Vec<Arc<Message>>), SubscribeReasonCode> {
        let target = self
            .target(&filter.path)
            .ok_or(SubscribeReasonCode::TopicFilterInvalid)?;
        let allowed = match &target {
            Target::Table(table) => self
                .access
                .table(username, Action::Read, &table.database, &table.table)
                .is_some(),
            Target::Plain(_) => self.access.plain(username),
        };
        if !allowed {
            return Err(SubscribeReasonCode::NotAuthorized);
        }
        let options = SubOptions {
            qos: filter.qos,
            no_local: filter.nolocal,
            retain_as_published: filter.preserve_retain,
            id,
        };
        let existed = self.index(
            session,
            &filter.path,
            &target,
            options,
            username.map(str::to_owned),
        );
        let send_retained = match filter.retain_forward_rule {
            RetainForwardRule::OnEverySubscribe => true,
            RetainForwardRule::OnNewSubscribe => !existed,
            RetainForwardRule::Never => false,
        };
        let retained = match (&target, send_retained) {
            (_, false) => Vec::new(),
            (Target::Plain(s), true) if s.group.is_some() => Vec::new(),
            (Target::Plain(s), true) => retained::matching(&self.parts.store, &s.filter),
            (Target::Table(table), true) => self
                .tables
                .current(table, username, &filter.path)
                .map(Arc::new)
                .into_iter()
                .collect(),
        };
        Ok((filter.qos, retained))
    }

    /// Records a subscription in the session and its index; whether one existed for the
    /// same filter.
    fn index(
        &self,
        session: &Arc<Session>,
        path: &str,
        target: &Target,
        options: SubOptions,
        username: Option<String>,
    ) -> bool {
        let existed = self.remember(session, path, target.clone(), options.clone());
        match target {
            Target::Table(filter) => self.tables.add(session, filter, options, username),
            Target::Plain(subscription) => {
                self.router.add(subscription, session, options);
            }
        }
        existed
    }

    /// Records a subscription in the session; whether one existed for the same filter.
    fn remember(
        &self,
        session: &Arc<Session>,
        path: &str,
        target: Target,
        options: SubOptions,
    ) -> bool {
        let mut state = session.state();
        state.dirty = true;
        let previous = state
            .subscriptions
            .insert(path.to_owned(), Subscribed { target, options });
        drop(state);
        match previous {
            Some(previous) => {
                // The same filter resolving elsewhere now (a table created or dropped).
                self.unindex(&previous.target, &session.client_id);
                true
            }
            None => false,
        }
    }

    /// Removes a subscription; whether it existed.
    fn unsubscribe(&self, session: &Arc<Session>, path: &str) -> bool {
        let removed = {
            let mut state = session.state();
            state.dirty = true;
            state.subscriptions.remove(path)
        };
        match removed {
            Some(subscribed) => {
                self.unindex(&subscribed.target, &session.client_id);
                true
            }
            None => false,
        }
    }
}
