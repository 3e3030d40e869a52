//! The receiving side of a link: dial a peer, subscribe to one database from our cursor,
//! and apply what arrives, each batch atomically with the cursor it advances. Redials
//! with jittered exponential back-off whenever the link fails or goes quiet.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use shoal_store::{
    Committed, CopyChunk, LogEntry, Outcome, Pending, RemoteBatch, SYSTEM_DATABASE, SchemaChange,
    StoreError, Write, to_ms, wall_ms,
};
use shoal_workers::{Backoff, Ctx};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsConnector;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::gate::Gate;
use crate::nodes::{self, NodeRecord};
use crate::proto::{self, DatabaseState, Deadline, Frame, MAX_FRAME_BYTES};
use crate::tls;

/// Shortest and longest wait before a redial.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Keeps one (peer, database) link up until its worker is asked to stop; counts the
/// rows and entries it applies, and each redial as a restart.
pub(crate) async fn run(shared: Arc<Shared>, peer: NodeRecord, database: String, ctx: Ctx) {
    let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).with_jitter();
    loop {
        let result = tokio::select! {
            r = session(&shared, &peer, &database, &ctx) => r,
            () = ctx.stopping() => break,
        };
        shared.status.update(&peer.name, &database, |s| {
            s.connected = false;
            s.copying = false;
            if let Err(e) = &result {
                s.last_error = Some(e.to_string());
            }
            if let Err(ClusterError::Store(StoreError::ClockAhead { ahead_ms, .. })) = &result {
                s.clock_ahead_ms = Some(*ahead_ms);
            }
        });
        match &result {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::debug!(peer = %peer.name, %database, error = %e, "replication link failed");
                ctx.error(e);
            }
        }
        if !ctx.backoff(&mut backoff).await {
            break;
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
    /// The frame's share of the receive window, returned once the write is durable.
    _room: OwnedSemaphorePermit,
}

enum Then {
    /// Acknowledge a run of the log.
    Ack {
        up_to: u64,
        head: u64,
        last_hlc: Option<u64>,
        /// Database announcements in the run, with their timestamps.
        databases: Vec<(SchemaChange, u64)>,
    },
    /// A copy chunk merged; `Some(seq)` when it completed the copy.
    Copied(Option<u64>),
}

async fn session(
    shared: &Arc<Shared>,
    peer: &NodeRecord,
    database: &str,
    ctx: &Ctx,
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
    let (rd, wr) = tokio::io::split(conn);
    let mut wr = Deadline::new(wr, shared.options.write_timeout);
    let snapshot = db.snapshot()?;
    let subscribe = Frame::Subscribe {
        node: shared.name.clone(),
        database: database.to_owned(),
        cursor: snapshot.cursor(&peer.name)?,
        copy: snapshot.copy_progress(&peer.name)?,
        vv: Some(snapshot.version_vector(&shared.name)?),
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
    let (idle, window) = (
        shared.options.idle_timeout,
        Window::new(shared.options.receive_window_bytes),
    );
    let reader = shared.store.workers().spawn(
        format!("replication/receiver/{}/{database}/reader", peer.name),
        move |_| read_frames(rd, idle, window, frames_tx),
    );
    // However the session ends, its reader must not keep the connection open.
    let _reader_guard = reader.abort_on_drop();
    let mut gate = Gate::receiving(shared.clone(), &peer.name, database)?;
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    let mut inflight: VecDeque<InFlight> = VecDeque::new();
    loop {
        let frame = tokio::select! {
            frame = frames.recv() => frame.unwrap_or_else(|| Err(ClusterError::Protocol("peer closed the link".into())))?,
            _ = ping.tick() => {
                proto::write(&mut wr, &Frame::Ping { sent_ms: wall_ms() }).await?;
                continue;
            }
            done = front(&mut inflight) => {
                let InFlight { then, .. } = inflight.pop_front().expect("front was there");
                let queued = inflight.len();
                shared.status.update(&peer.name, database, |s| s.in_flight = queued);
                finish(shared, peer, database, ctx, &mut wr, done?, then).await?;
                continue;
            }
        };
        let (frame, room) = frame;
        if !matches!(
            frame,
            Frame::Ping { .. } | Frame::Pong { .. } | Frame::Refused { .. }
        ) {
            // Nothing more is applied from a peer that membership no longer lets send
            // this database to us.
            gate.check()?;
        }
        let mut held = None;
        let submitted = match frame {
            Frame::Entries {
                mut entries,
                mut up_to,
                head,
            } => {
                held = hold_back(shared, &peer.name, &mut entries, &mut up_to);
                shared
                    .status
                    .update(&peer.name, database, |s| s.clock_ahead_ms = held);
                nodes::drop_foreign_certificates(database, &mut entries);
                let last_hlc = entries.last().map(|(_, e)| e.hlc);
                let databases = if database == SYSTEM_DATABASE {
                    entries
                        .iter()
                        .filter_map(|(_, e)| Some((e.schema.clone()?, e.hlc)))
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
                if entries.is_empty() && held.is_none() {
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
            Frame::Databases { databases } if database == SYSTEM_DATABASE => {
                for state in databases {
                    let name = state.name.clone();
                    match reconcile_database(shared, state).await {
                        // A state stamped ahead of our clock waits, as a held-back entry
                        // does: the rest of the link goes on, and the peer's log (or the
                        // next link) brings it again once our clock has caught up.
                        Err(ClusterError::Store(StoreError::ClockAhead { ahead_ms, .. })) => {
                            tracing::warn!(peer = %peer.name, database = %name, ahead_ms,
                                "a peer's database state is stamped ahead of our clock; skipped");
                        }
                        other => other?,
                    }
                }
                continue;
            }
            Frame::CopyStart {
                progress,
                tables,
                dropped,
            } => {
                shared
                    .status
                    .update(&peer.name, database, |s| s.copying = true);
                let chunk = CopyChunk {
                    peer: peer.name.clone(),
                    tables,
                    dropped,
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
                mut rows,
                progress,
            } => {
                nodes::drop_foreign_certificate_rows(database, &table, &mut rows);
                let chunk = CopyChunk {
                    peer: peer.name.clone(),
                    table,
                    rows,
                    progress,
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
            Frame::Messages { messages } => {
                // Not durable and not in the log: handed out at once, in order.
                let payloads = messages.into_iter().map(|p| p.0).collect();
                shared.relays.deliver(&peer.name, payloads);
                continue;
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
        inflight.push_back(InFlight {
            pending,
            then,
            _room: room,
        });
        let queued = inflight.len();
        shared
            .status
            .update(&peer.name, database, |s| s.in_flight = queued);
        if inflight.len() > WINDOW {
            let InFlight { pending, then, .. } = inflight.pop_front().expect("not empty");
            finish(shared, peer, database, ctx, &mut wr, pending.await?, then).await?;
        }
        if let Some(ahead_ms) = held {
            // What came before the held entry lands; the link then waits for our clock.
            while let Some(InFlight { pending, then, .. }) = inflight.pop_front() {
                finish(shared, peer, database, ctx, &mut wr, pending.await?, then).await?;
            }
            let max_ms = shared.store.hlc().max_offset_ms();
            return Err(StoreError::ClockAhead { ahead_ms, max_ms }.into());
        }
    }
}

/// Cuts `entries` before the first one stamped further ahead of our clock than the
/// maximum offset, which the store would refuse: what precedes it is applied and the
/// cursor stops just before it, then the link waits (redialing with back-off) until our
/// clock has caught up. Holding back keeps every node's data the same once it is applied;
/// clamping the timestamp instead would not. Returns how far ahead that entry is.
fn hold_back(
    shared: &Shared,
    peer: &str,
    entries: &mut Vec<(u64, LogEntry)>,
    up_to: &mut u64,
) -> Option<u64> {
    let clock = shared.store.hlc();
    let (i, ahead_ms) = entries
        .iter()
        .enumerate()
        .find_map(|(i, (_, e))| clock.beyond_offset(e.hlc).map(|ahead| (i, ahead)))?;
    let (seq, entry) = &entries[i];
    tracing::warn!(
        %peer,
        seq,
        origin = %entry.origin,
        ahead_ms,
        max_ms = clock.max_offset_ms(),
        "holding back a replicated entry stamped ahead of this node's clock"
    );
    *up_to = seq.saturating_sub(1);
    entries.truncate(i);
    Some(ahead_ms)
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
    ctx: &Ctx,
    wr: &mut W,
    outcome: Outcome,
    then: Then,
) -> Result<(), ClusterError> {
    ctx.count(outcome.applied as u64);
    match then {
        Then::Ack {
            up_to,
            head,
            last_hlc,
            databases,
        } => {
            for (change, hlc) in databases {
                apply_database_change(shared, &change, hlc).await?;
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
        Then::Copied(done) => shared.status.update(&peer.name, database, |s| {
            s.copied_rows += outcome.applied as u64;
            if let Some(seq) = done {
                s.full_copies += 1;
                s.cursor = seq;
                s.copying = false;
            }
        }),
    }
    Ok(())
}

/// The bytes of received frames a link may hold until their writes are durable.
struct Window {
    room: Arc<Semaphore>,
    size: usize,
}

impl Window {
    fn new(bytes: usize) -> Self {
        let size = bytes.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Window {
            room: Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// Waits until a frame of `len` bytes fits; one larger than the whole window waits
    /// until the window is empty and then takes all of it.
    async fn take(&self, len: usize) -> OwnedSemaphorePermit {
        let want = u32::try_from(len.min(self.size)).unwrap_or(u32::MAX);
        self.room
            .clone()
            .acquire_many_owned(want)
            .await
            .expect("the window is never closed")
    }
}

/// A received frame and its share of the receive window.
type Received = (Frame, OwnedSemaphorePermit);

/// Reads frames into `tx` until the link fails, closes or goes quiet past `idle`. A frame
/// is read only once the window has room for it, so the frames read but not yet durable
/// stay within the window; the peer then waits (TCP back-pressure).
async fn read_frames<R: AsyncRead + Unpin>(
    mut rd: R,
    idle: Duration,
    window: Window,
    tx: mpsc::Sender<Result<Received, ClusterError>>,
) {
    loop {
        let item = async {
            let len = match tokio::time::timeout(idle, proto::read_len(&mut rd, MAX_FRAME_BYTES))
                .await
            {
                Ok(Ok(Some(len))) => len,
                Ok(Ok(None)) => return Err(ClusterError::Protocol("peer closed the link".into())),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(ClusterError::Protocol("link idle past the timeout".into())),
            };
            let room = window.take(len).await;
            let frame = proto::read_body(&mut rd, len, Some(idle)).await?;
            Ok((frame, room))
        }
        .await;
        let last = item.is_err();
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// When database `name` was last dropped, as this node knows (0: never).
fn dropped_at(shared: &Shared, name: &str) -> Result<u64, ClusterError> {
    let system = shared.store.database(SYSTEM_DATABASE)?;
    let dropped = system.snapshot()?.dropped_databases()?;
    Ok(dropped
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, at)| at))
}

/// Creates a database a peer created at `created`, if this node lacks it and knows of no
/// later drop.
async fn ensure_database(shared: &Shared, name: &str, created: u64) -> Result<(), ClusterError> {
    if name == SYSTEM_DATABASE {
        return Ok(());
    }
    let dropped = dropped_at(shared, name)?;
    if dropped > 0 && created <= dropped {
        return Ok(()); // created before a drop this node knows of
    }
    match shared.store.create_replicated_database(name, created).await {
        Ok(_) => {
            tracing::info!(database = name, "database created by replication");
            shared.wake.notify_one();
            Ok(())
        }
        Err(StoreError::DatabaseExists(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Drops database `name` here if it was created before `at` (a drop elsewhere); one
/// created since stays. The store records the drop either way.
async fn drop_database_before(shared: &Shared, name: &str, at: u64) -> Result<(), ClusterError> {
    if shared.store.drop_replicated_database(name, at).await? {
        tracing::info!(database = name, "database dropped by replication");
        shared.wake.notify_one();
    }
    Ok(())
}

/// Acts on a database created or dropped elsewhere at `hlc` (announced in the system
/// database, whose apply has recorded a drop's marker already).
async fn apply_database_change(
    shared: &Shared,
    change: &SchemaChange,
    hlc: u64,
) -> Result<(), ClusterError> {
    match change {
        SchemaChange::CreateDatabase { database } => ensure_database(shared, database, hlc).await,
        SchemaChange::DropDatabase { database } => {
            drop_database_before(shared, database, hlc).await
        }
        _ => Ok(()),
    }
}

/// Brings one database in line with what the system link's peer knows of it: a drop it
/// knows of removes an older database here (and is recorded, so that nobody brings it
/// back through this node), and a database it has that no known drop outranks is created.
async fn reconcile_database(shared: &Shared, state: DatabaseState) -> Result<(), ClusterError> {
    if let Some(at) = state.dropped {
        drop_database_before(shared, &state.name, at).await?;
    }
    if let Some(created) = state.created {
        ensure_database(shared, &state.name, created).await?;
    }
    Ok(())
}
