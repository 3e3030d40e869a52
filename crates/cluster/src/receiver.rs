//! The receiving side of a link: dial a peer, subscribe to one database from our cursor,
//! and apply what arrives, each batch atomically with the cursor it advances. Redials
//! with jittered exponential back-off whenever the link fails or goes quiet.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use shoal_auth::SYSTEM_DATABASE;
use shoal_store::{
    Committed, CopyChunk, Outcome, Pending, RemoteBatch, SchemaChange, StoreError, Write, to_ms,
    wall_ms,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsConnector;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::nodes::NodeRecord;
use crate::proto::{self, Frame};
use crate::tls;

/// Shortest and longest wait before a redial.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps one (peer, database) link up until `stop` turns true.
pub(crate) async fn run(
    shared: Arc<Shared>,
    peer: NodeRecord,
    database: String,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            r = session(&shared, &peer, &database) => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        shared.status.update(&peer.name, &database, |s| {
            s.connected = false;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
        });
        match &result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(peer = %peer.name, %database, error = %e, "replication link failed");
            }
        }
        let base = BACKOFF_MIN
            .saturating_mul(1 << failures.min(7))
            .min(BACKOFF_MAX);
        let wait = base.mul_f64(rand::rng().random_range(0.5..1.0));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    shared.status.remove(&peer.name, &database);
}

/// Writes kept in flight per link: the writer batches them into fewer commits while the
/// next frames are read.
const WINDOW: usize = 8;

/// A write submitted for a frame, and what to do once it is durable.
struct InFlight {
    pending: Pending,
    then: Then,
}

enum Then {
    /// Acknowledge a run of the log.
    Ack {
        up_to: u64,
        head: u64,
        last_hlc: Option<u64>,
        databases: Vec<SchemaChange>,
    },
    /// A copy chunk merged; `Some(seq)` when it completed the copy.
    Copied(Option<u64>),
}

async fn session(
    shared: &Arc<Shared>,
    peer: &NodeRecord,
    database: &str,
) -> Result<(), ClusterError> {
    let db = shared.store.database(database)?;
    let config = tls::client_config(&shared.identity, &shared.trust)?;
    let name = rustls::pki_types::ServerName::try_from(peer.name.clone())
        .map_err(|e| ClusterError::Tls(format!("peer name {}: {e}", peer.name)))?;
    let tcp = tokio::time::timeout(shared.options.idle_timeout, TcpStream::connect(&peer.url))
        .await
        .map_err(|_| ClusterError::Refused(format!("connecting to {} timed out", peer.url)))??;
    tcp.set_nodelay(true)?;
    let conn = tokio::time::timeout(
        shared.options.idle_timeout,
        TlsConnector::from(config).connect(name, tcp),
    )
    .await
    .map_err(|_| ClusterError::Refused("TLS handshake timed out".into()))??;
    let (rd, mut wr) = tokio::io::split(conn);
    let snapshot = db.snapshot()?;
    let subscribe = Frame::Subscribe {
        node: shared.name.clone(),
        database: database.to_owned(),
        cursor: snapshot.cursor(&peer.name)?,
        copy: snapshot.copy_progress(&peer.name)?,
    };
    drop(snapshot);
    proto::write(&mut wr, &subscribe).await?;
    shared.status.update(&peer.name, database, |s| {
        s.connected = true;
        s.connects += 1;
        s.last_error = None;
    });
    // Frames are read by their own task: reading is not cancel-safe, and the loop below
    // also waits on pings and on commits.
    let (frames_tx, mut frames) = mpsc::channel(WINDOW);
    let _reader = AbortOnDrop(tokio::spawn(read_frames(
        rd,
        shared.options.idle_timeout,
        frames_tx,
    )));
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    let mut pending_tables: Vec<SchemaChange> = Vec::new();
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame.unwrap_or_else(|| Err(ClusterError::Protocol("peer closed the link".into())))?,
            _ = ping.tick() => {
                proto::write(&mut wr, &Frame::Ping { sent_ms: wall_ms() }).await?;
                continue;
            }
            done = front(&mut inflight) => {
                let then = inflight.pop_front().expect("front was there").then;
                let queued = inflight.len();
                shared.status.update(&peer.name, database, |s| s.in_flight = queued);
                finish(shared, peer, database, &mut wr, done?, then).await?;
                continue;
            }
        };
        let submitted = match frame {
            Frame::Entries {
                entries,
                up_to,
                head,
            } => {
                let last_hlc = entries.last().map(|(_, e)| e.hlc);
                let databases = if database == SYSTEM_DATABASE {
                    entries
                        .iter()
                        .filter_map(|(_, e)| e.schema.clone())
                        .collect()
                } else {
                    Vec::new()
                };
                let then = Then::Ack {
                    up_to,
                    head,
                    last_hlc,
                    databases,
                };
                if entries.is_empty() {
                    // Only our own entries, echoed: not worth a commit; if the cursor
                    // move is lost, the peer re-reads and skips them again.
                    proto::write(&mut wr, &Frame::Ack { seq: up_to }).await?;
                    shared.status.update(&peer.name, database, |s| {
                        s.cursor = s.cursor.max(up_to);
                        s.head = head.max(s.cursor);
                        s.lag = s.head - s.cursor;
                    });
                    continue;
                }
                let batch = RemoteBatch {
                    peer: peer.name.clone(),
                    entries: entries
                        .into_iter()
                        .map(|(seq, entry)| Committed { seq, entry })
                        .collect(),
                    up_to,
                };
                (db.submit(Write::Apply(batch), None).await?, then)
            }
            Frame::Databases { names } => {
                for name in names {
                    ensure_database(shared, &name).await?;
                }
                continue;
            }
            Frame::CopyStart { progress, tables } => {
                pending_tables = tables.clone();
                let chunk = CopyChunk {
                    peer: peer.name.clone(),
                    tables,
                    progress,
                    ..CopyChunk::default()
                };
                (
                    db.submit(Write::Merge(Box::new(chunk)), None).await?,
                    Then::Copied(None),
                )
            }
            Frame::CopyRows {
                table,
                rows,
                progress,
            } => {
                let chunk = CopyChunk {
                    peer: peer.name.clone(),
                    tables: std::mem::take(&mut pending_tables),
                    table,
                    rows,
                    progress,
                    done: false,
                    ..CopyChunk::default()
                };
                (
                    db.submit(Write::Merge(Box::new(chunk)), None).await?,
                    Then::Copied(None),
                )
            }
            Frame::CopyDone { progress } => {
                let seq = progress.seq;
                let chunk = CopyChunk {
                    peer: peer.name.clone(),
                    progress,
                    done: true,
                    ..CopyChunk::default()
                };
                (
                    db.submit(Write::Merge(Box::new(chunk)), None).await?,
                    Then::Copied(Some(seq)),
                )
            }
            Frame::Ping { sent_ms } => {
                proto::write(&mut wr, &Frame::Pong { sent_ms }).await?;
                continue;
            }
            Frame::Pong { sent_ms } => {
                let rtt = wall_ms().saturating_sub(sent_ms) as f64;
                shared
                    .status
                    .update(&peer.name, database, |s| s.latency = Some(rtt));
                continue;
            }
            Frame::Refused { reason } => return Err(ClusterError::Refused(reason)),
            other => {
                return Err(ClusterError::Protocol(format!(
                    "unexpected frame from a sender: {other:?}"
                )));
            }
        };
        let (pending, then) = submitted;
        inflight.push_back(InFlight { pending, then });
        let queued = inflight.len();
        shared
            .status
            .update(&peer.name, database, |s| s.in_flight = queued);
        if inflight.len() > WINDOW {
            let InFlight { pending, then } = inflight.pop_front().expect("not empty");
            finish(shared, peer, database, &mut wr, pending.await?, then).await?;
        }
    }
}

/// Resolves when the oldest write in flight is durable; never, when none is.
async fn front(inflight: &mut VecDeque<InFlight>) -> Result<Outcome, StoreError> {
    match inflight.front_mut() {
        Some(f) => (&mut f.pending).await,
        None => std::future::pending().await,
    }
}

/// What follows a durable write: acknowledge, act on database announcements, report.
async fn finish<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    peer: &NodeRecord,
    database: &str,
    wr: &mut W,
    outcome: Outcome,
    then: Then,
) -> Result<(), ClusterError> {
    match then {
        Then::Ack {
            up_to,
            head,
            last_hlc,
            databases,
        } => {
            for change in databases {
                apply_database_change(shared, &change).await?;
            }
            proto::write(wr, &Frame::Ack { seq: up_to }).await?;
            let now = wall_ms() as f64;
            shared.status.update(&peer.name, database, |s| {
                s.cursor = up_to;
                s.head = head.max(up_to);
                s.lag = s.head - up_to;
                s.applied += outcome.applied as u64;
                s.last_commit_confirmed = Some(now);
                if let Some(hlc) = last_hlc {
                    s.last_received_remote_time = Some(to_ms(hlc));
                    s.lag_ms = Some((now - to_ms(hlc)).max(0.0));
                }
            });
        }
        Then::Copied(Some(seq)) => shared.status.update(&peer.name, database, |s| {
            s.full_copies += 1;
            s.cursor = seq;
        }),
        Then::Copied(None) => {}
    }
    Ok(())
}

/// Reads frames into `tx` until the link fails, closes or goes quiet past `idle`.
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    idle: Duration,
    tx: mpsc::Sender<Result<Frame, ClusterError>>,
) {
    loop {
        let item = match tokio::time::timeout(idle, proto::read(&mut rd)).await {
            Ok(Ok(Some(frame))) => Ok(frame),
            Ok(Ok(None)) => Err(ClusterError::Protocol("peer closed the link".into())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClusterError::Protocol("link idle past the timeout".into())),
        };
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// Aborts a task when dropped: the reader must not outlive its session.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Creates a database a peer has, if this node lacks it.
async fn ensure_database(shared: &Shared, name: &str) -> Result<(), ClusterError> {
    match shared.store.create_database(name).await {
        Ok(_) => {
            tracing::info!(database = name, "database created by replication");
            shared.wake.notify_one();
            Ok(())
        }
        Err(StoreError::DatabaseExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Acts on a database created or dropped elsewhere (announced in the system database).
async fn apply_database_change(shared: &Shared, change: &SchemaChange) -> Result<(), ClusterError> {
    match change {
        SchemaChange::CreateDatabase { database } => ensure_database(shared, database).await,
        SchemaChange::DropDatabase { database } if database != SYSTEM_DATABASE => {
            match shared.store.drop_database(database).await {
                Ok(()) => {
                    shared.wake.notify_one();
                    Ok(())
                }
                Err(StoreError::DatabaseNotFound(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        _ => Ok(()),
    }
}
