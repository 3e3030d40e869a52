//! The running cluster member: the replication listener, the link manager that keeps one
//! receiving link per (peer, database), and the operations behind add_node, remove_node
//! and cluster_status.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use shoal_store::{SYSTEM_DATABASE, Store};
use shoal_workers::{Backoff, Ctx, WorkerHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::credentials::Credentials;
use crate::error::ClusterError;
use crate::gate::{Gate, Streams};
use crate::identity::Identity;
use crate::nodes::{self, NodeRecord};
use crate::proto::{self, Frame};
use crate::relay::{RelayedMessages, Relays};
use crate::status::StatusBoard;
use crate::tls::{self, TrustStore};
use crate::{join, receiver, sender};

/// Cluster settings.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This node's name (unique in the cluster; a DNS label).
    pub name: String,
    /// Address the replication port binds.
    pub listen: SocketAddr,
    /// Address peers dial; defaults to the bound address.
    pub advertise: Option<String>,
    /// How often an idle link is pinged.
    pub ping_interval: Duration,
    /// A link with no traffic for this long is dropped and redialed.
    pub idle_timeout: Duration,
    /// How often membership and databases are checked for links to open or close.
    pub reconcile_interval: Duration,
    /// Bytes a sender aims to put in one frame (a run of log entries or a chunk of a full
    /// copy); a single entry or row larger than this goes alone.
    pub batch_bytes: usize,
    /// Bytes of received frames a link holds until their writes are durable; a frame
    /// larger than this is taken alone.
    pub receive_window_bytes: usize,
    /// A peer that accepts no byte of a pending write for this long is dropped.
    pub write_timeout: Duration,
    /// Messages each peer's relay queue holds (see [`Cluster::relay`]); also how many
    /// received messages a consumer of [`Cluster::relayed`] may fall behind.
    pub relay_queue_messages: usize,
    /// Bytes each peer's relay queue holds; a message larger than this is never relayed.
    pub relay_queue_bytes: usize,
}

impl ClusterOptions {
    /// Defaults for node `name` listening on `listen`.
    pub fn new(name: impl Into<String>, listen: SocketAddr) -> Self {
        ClusterOptions {
            name: name.into(),
            listen,
            advertise: None,
            ping_interval: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            reconcile_interval: Duration::from_millis(500),
            batch_bytes: 4 << 20,
            receive_window_bytes: 32 << 20,
            write_timeout: Duration::from_secs(30),
            relay_queue_messages: 10_000,
            relay_queue_bytes: 16 << 20,
        }
    }
}

/// What the listener, the manager and every link share.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) store: Arc<Store>,
    pub(crate) credentials: Arc<dyn Credentials>,
    pub(crate) identity: Identity,
    pub(crate) trust: TrustStore,
    pub(crate) options: ClusterOptions,
    pub(crate) status: StatusBoard,
    /// Wakes the manager early (membership or databases changed).
    pub(crate) wake: Notify,
    /// The sending streams peers have open with this node.
    pub(crate) streams: Streams,
    /// Messages relayed to and from peers.
    pub(crate) relays: Arc<Relays>,
}

/// Shortest and longest pause after a failed accept (out of file descriptors, say):
/// the loop retries rather than spinning, and recovers once the cause goes away.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A node's membership in its cluster. Its work runs as the store's workers (see
/// [`shoal_store::Store::workers`]): `replication/accept`, `replication/links`, one
/// `replication/receiver/<peer>/<database>` per link and one
/// `replication/sender/<peer>/<database>` per peer subscribed here; stopping those
/// workers stops the cluster.
pub struct Cluster {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

/// A running receiving link.
struct Link {
    url: String,
    worker: WorkerHandle,
}

impl Cluster {
    /// Loads (or creates) the node's identity in `keys`, binds the replication port,
    /// records this node in the membership tables and starts keeping links; joins are
    /// checked against `credentials`.
    pub async fn start(
        store: Arc<Store>,
        credentials: Arc<dyn Credentials>,
        keys: &Path,
        options: ClusterOptions,
    ) -> Result<Arc<Cluster>, ClusterError> {
        let identity = Identity::load_or_create(keys, &options.name)?;
        let trust = TrustStore::new(&identity);
        let listener = TcpListener::bind(options.listen).await?;
        let addr = listener.local_addr()?;
        let url = options
            .advertise
            .clone()
            .unwrap_or_else(|| addr.to_string());
        nodes::ensure_tables(&store).await?;
        let shared = Arc::new(Shared {
            name: options.name.clone(),
            url: url.clone(),
            store,
            credentials,
            identity,
            trust,
            status: StatusBoard::default(),
            wake: Notify::new(),
            streams: Streams::default(),
            relays: Arc::new(Relays::new(
                options.relay_queue_messages,
                options.relay_queue_bytes,
            )),
            options,
        });
        // Our own CA and record replicate like any others, so the mesh learns who and
        // where we are. Only we write our CA's row; rewriting it also repairs one that a
        // write from elsewhere made unusable.
        let published = nodes::certificates(&shared.store)?
            .into_iter()
            .any(|(node, pem)| node == shared.name && pem == shared.identity.ca_pem());
        if !published {
            nodes::publish_ca(&shared.store, &shared.name, shared.identity.ca_pem()).await?;
        }
        let known = nodes::members(&shared.store)?
            .into_iter()
            .find(|n| n.name == shared.name);
        if known.as_ref().is_none_or(|k| k.url != url) {
            let record = NodeRecord {
                url,
                ..known.unwrap_or_else(|| NodeRecord {
                    name: shared.name.clone(),
                    ..NodeRecord::default()
                })
            };
            nodes::save_record(&shared.store, &record).await?;
        }
        let workers = shared.store.workers();
        let accepting = shared.clone();
        workers.spawn("replication/accept", move |ctx| {
            accept_loop(accepting, listener, ctx)
        });
        let managing = shared.clone();
        workers.spawn("replication/links", move |ctx| manage(managing, ctx));
        Ok(Arc::new(Cluster { shared, addr }))
    }

    /// The bound replication address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Joins the node at `url` (`host:port`) with its admin credentials, which are proven
    /// without being sent; returns its name. With `ca_fingerprint`, the node's CA must
    /// have that SHA-256 fingerprint (as [`Cluster::status`] shows it on that node).
    pub async fn add_node(
        &self,
        url: &str,
        username: &str,
        password: &str,
        ca_fingerprint: Option<&str>,
    ) -> Result<String, ClusterError> {
        join::join(&self.shared, url, username, password, ca_fingerprint).await
    }

    /// Removes a node from the cluster (everywhere, as membership replicates). What this
    /// node sends it stops at once; its CA is no longer trusted and its links close.
    pub async fn remove_node(&self, name: &str) -> Result<bool, ClusterError> {
        let removed = nodes::remove(&self.shared.store, name).await?;
        self.shared.wake.notify_one();
        Ok(removed)
    }

    /// Changes what a member takes from and sends to the others.
    pub async fn update_node(
        &self,
        name: &str,
        subscribe: Option<Vec<String>>,
        publish: Option<Vec<String>>,
    ) -> Result<(), ClusterError> {
        let mut record = nodes::members(&self.shared.store)?
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| ClusterError::Refused(format!("node '{name}' is not a member")))?;
        if let Some(list) = subscribe {
            record.subscribe = list;
        }
        if let Some(list) = publish {
            record.publish = list;
        }
        nodes::save_record(&self.shared.store, &record).await?;
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Sends `payload` to every peer that has a live system database link from this node
    /// now, to come out of its [`Cluster::relayed`] in the order of the calls here. Best
    /// effort and never waits: a peer with no live link misses it, and so does one whose
    /// queue ([`ClusterOptions::relay_queue_messages`] and `relay_queue_bytes`) is full
    /// (counted as `relayed.dropped` in `cluster_status`). Peers do not forward what they
    /// are relayed: in a full mesh every node gets each message once, in a partial mesh
    /// only the direct peers do.
    pub fn relay(&self, payload: Bytes) {
        self.shared.relays.relay(&payload);
    }

    /// Whether [`Cluster::relay`] would send to any peer now: a caller may skip encoding
    /// a message when no peer's link is live.
    pub fn relays_to_peers(&self) -> bool {
        self.shared.relays.has_outboxes()
    }

    /// Messages peers relay to this node from now on, each peer's in the order it sent
    /// them.
    pub fn relayed(&self) -> RelayedMessages {
        self.shared.relays.subscribe()
    }

    /// Harper's cluster_status: this node and, per peer, each database's link; and the
    /// replication workers running now.
    pub fn status(&self) -> Result<Value, ClusterError> {
        let links = self.shared.status.snapshot();
        let workers: Vec<_> = self
            .shared
            .store
            .workers()
            .list()
            .into_iter()
            .filter(|w| w.name.starts_with("replication/"))
            .collect();
        let mut connections = Vec::new();
        for member in nodes::members(&self.shared.store)? {
            if member.name == self.shared.name {
                continue;
            }
            let sockets: Vec<Value> = links
                .iter()
                .filter(|((peer, _), _)| *peer == member.name)
                .map(|((_, database), status)| {
                    let mut v = serde_json::to_value(status).expect("status serialises");
                    v["database"] = json!(database);
                    v
                })
                .collect();
            connections.push(json!({
                "name": member.name,
                "url": member.url,
                "subscribe": member.subscribe,
                "publish": member.publish,
                "database_sockets": sockets,
            }));
        }
        Ok(json!({
            "node_name": self.shared.name,
            "is_enabled": true,
            "url": self.shared.url,
            "ca_fingerprint": tls::fingerprint(self.shared.identity.ca_pem())?,
            "max_clock_offset_ms": self.shared.store.hlc().max_offset_ms(),
            "connections": connections,
            "workers": workers,
            "relayed": self.shared.relays.status(),
        }))
    }
}

/// Accepts replication connections, each served by a worker of its own, until asked to
/// stop; a failed accept is retried after a capped exponential back-off.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, ctx: Ctx) {
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
    loop {
        ctx.set_idle();
        let (tcp, from) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "replication accept failed");
                    ctx.error(format_args!("accept failed: {e}"));
                    if ctx.backoff(&mut backoff).await {
                        continue;
                    }
                    return;
                }
            },
            () = ctx.stopping() => return,
        };
        ctx.set_running();
        ctx.count(1);
        backoff.reset();
        let serving = shared.clone();
        shared.store.workers().spawn(
            format!("replication/incoming/{from}"),
            move |ctx| async move {
                let served = tokio::select! {
                    served = serve(serving, tcp, &ctx) => served,
                    () = ctx.stopping() => Ok(()),
                };
                if let Err(e) = served {
                    tracing::debug!(%from, error = %e, "replication connection ended");
                }
            },
        );
    }
}

/// One incoming connection: a join, or a peer subscribing to a database. `ctx` is
/// renamed for what the connection turns out to be.
async fn serve(shared: Arc<Shared>, tcp: TcpStream, ctx: &Ctx) -> Result<(), ClusterError> {
    tcp.set_nodelay(true)?;
    let from = tcp.peer_addr().ok().map(|a| a.ip());
    // Built per connection: the trusted CAs change as nodes join and leave.
    let acceptor = TlsAcceptor::from(tls::server_config(&shared.identity, &shared.trust)?);
    let mut conn = tokio::time::timeout(shared.options.idle_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| ClusterError::Refused("TLS handshake timed out".into()))??;
    let peer = tls::peer_name(conn.get_ref().1.peer_certificates());
    // Only a peer whose certificate a member's CA signed may send a large first frame.
    let max = match peer {
        Some(_) => proto::MAX_FRAME_BYTES,
        None => proto::JOIN_FRAME_BYTES,
    };
    let first = tokio::time::timeout(shared.options.idle_timeout, proto::read(&mut conn, max))
        .await
        .map_err(|_| ClusterError::Protocol("no request".into()))??;
    match first {
        Some(request @ Frame::Join { .. }) => {
            if let Some(from) = from {
                ctx.rename(format!("replication/join/{from}"));
            }
            let exporter = tls::exporter(conn.get_ref().1)?;
            join::accept(&shared, &mut conn, &exporter, request, from).await
        }
        Some(Frame::Subscribe {
            node,
            database,
            cursor,
            copy,
            vv,
        }) => {
            ctx.rename(format!("replication/sender/{node}/{database}"));
            let refusal = if peer.as_deref() != Some(node.as_str()) {
                Some(format!("certificate does not name '{node}'"))
            } else if shared.store.database(&database).is_err() {
                Some(format!(
                    "database '{database}' does not exist on {}",
                    shared.name
                ))
            } else {
                let members = nodes::members(&shared.store)?;
                nodes::may_send(&members, &shared.name, &node, &database).err()
            };
            if let Some(reason) = refusal {
                proto::refuse(&mut conn, &reason).await;
                return Err(ClusterError::Refused(reason));
            }
            let mut registered = shared.streams.register(&node, &database);
            let gate = Gate::sending(shared.clone(), &node, &database)?;
            let subscription = sender::Subscription {
                node,
                database,
                cursor,
                copy,
                vv,
            };
            tokio::select! {
                result = sender::stream(shared.clone(), conn, subscription, gate, ctx) => result,
                () = registered.revoked() => Err(ClusterError::Refused("membership changed".into())),
            }
        }
        Some(other) => Err(ClusterError::Protocol(format!(
            "unexpected first frame {other:?}"
        ))),
        None => Ok(()),
    }
}

/// Keeps the set of receiving links equal to (members other than us) × (our databases
/// that flow from them to us), the trusted CAs equal to the members' CAs, and the sending
/// streams to those membership allows.
async fn manage(shared: Arc<Shared>, ctx: Ctx) {
    let mut links: HashMap<(String, String), Link> = HashMap::new();
    // Membership lives in the system database: act on each of its commits at once,
    // whether made here or replicated.
    let mut system = match shared.store.database(SYSTEM_DATABASE) {
        Ok(db) => Some(db.watch_commits()),
        Err(e) => {
            tracing::warn!(error = %e, "no system database to watch");
            None
        }
    };
    loop {
        ctx.set_running();
        match reconcile(&shared, &mut links) {
            Ok(()) => ctx.count(1),
            Err(e) => {
                tracing::warn!(error = %e, "cluster reconcile failed");
                ctx.error(format_args!("reconcile failed: {e}"));
            }
        }
        ctx.set_idle();
        let system_changed = async {
            let changed = match system.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(shared.options.reconcile_interval) => {}
            _ = shared.wake.notified() => {}
            () = system_changed => {}
            () = ctx.stopping() => break,
        }
    }
    for (_, link) in links.drain() {
        link.worker.stop();
        link.worker.finished().await;
    }
}

fn reconcile(
    shared: &Arc<Shared>,
    links: &mut HashMap<(String, String), Link>,
) -> Result<(), ClusterError> {
    let members = nodes::members(&shared.store)?;
    shared
        .streams
        .revoke(|node, database| nodes::may_send(&members, &shared.name, node, database));
    // A member's own published CA, else the one pinned when it joined through this node.
    let published: BTreeMap<String, String> =
        nodes::certificates(&shared.store)?.into_iter().collect();
    let mut pins: BTreeMap<String, String> = nodes::pins(&shared.store)?.into_iter().collect();
    let cas: BTreeMap<String, String> = members
        .iter()
        .filter(|m| m.name != shared.name)
        .filter_map(|m| {
            let pem = published
                .get(&m.name)
                .cloned()
                .or_else(|| pins.remove(&m.name))?;
            Some((m.name.clone(), pem))
        })
        .collect();
    for (node, e) in shared.trust.replace(&cas) {
        tracing::warn!(%node, error = %e, "bad CA certificate for a member");
    }
    let Some(me) = members.iter().find(|m| m.name == shared.name) else {
        return Ok(());
    };
    let databases: Vec<String> = shared
        .store
        .databases()
        .iter()
        .map(|d| d.name().to_owned())
        .collect();
    let mut wanted = HashMap::new();
    for peer in members.iter().filter(|m| m.name != shared.name) {
        for db in &databases {
            if NodeRecord::flows(peer, me, db) {
                wanted.insert((peer.name.clone(), db.clone()), peer.clone());
            }
        }
    }
    links.retain(|key, link| {
        let keep = wanted.get(key).is_some_and(|p| p.url == link.url) && !link.worker.is_finished();
        if !keep {
            link.worker.stop();
        }
        keep
    });
    for (key, peer) in wanted {
        if links.contains_key(&key) {
            continue;
        }
        let url = peer.url.clone();
        let (linked, database) = (shared.clone(), key.1.clone());
        let worker = shared.store.workers().spawn(
            format!("replication/receiver/{}/{}", key.0, key.1),
            move |ctx| receiver::run(linked, peer, database, ctx),
        );
        links.insert(key, Link { url, worker });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use shoal_store::StoreOptions;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;

    use super::*;
    use crate::credentials::NoUsers;

    #[tokio::test]
    async fn a_connection_without_a_certificate_cannot_announce_a_large_frame() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(StoreOptions::new(dir.path().join("db"), "me")).unwrap());
        store.create_database(SYSTEM_DATABASE).await.unwrap();
        let options = ClusterOptions {
            idle_timeout: Duration::from_secs(60),
            ..ClusterOptions::new("me", "127.0.0.1:0".parse().unwrap())
        };
        let keys = dir.path().join("keys");
        let cluster = Cluster::start(store.clone(), Arc::new(NoUsers), &keys, options)
            .await
            .unwrap();

        let tcp = TcpStream::connect(cluster.local_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("me").unwrap();
        let mut conn = TlsConnector::from(tls::first_contact_config().unwrap())
            .connect(name, tcp)
            .await
            .unwrap();
        let announced = u32::try_from(proto::JOIN_FRAME_BYTES + 1).unwrap();
        conn.write_all(&announced.to_be_bytes()).await.unwrap();
        conn.flush().await.unwrap();
        // The node hangs up on the prefix, rather than wait (up to the idle timeout) for
        // bytes it would have to hold.
        let mut byte = [0; 1];
        let closed = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut byte)).await;
        assert!(
            matches!(closed, Ok(Ok(0) | Err(_))),
            "the connection stayed open: {closed:?}"
        );
        store.workers().shutdown(Duration::from_secs(10)).await;
        store.close().await;
    }
}
