//! The sending side of a link: a peer subscribed to one of our databases; stream it our
//! transaction log from its cursor (or a full copy first when the log no longer
//! reaches back that far, or lacks rows this node took by full copy and the peer does
//! not have), in commit order, batched, paced by the socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use shoal_store::{
    Batch, BatchLimits, Catalog, CopyProgress, CopyRow, Database, FollowError, LogEntry,
    SYSTEM_DATABASE, SchemaChange, Snapshot, Start, TableDef,
};
use shoal_workers::Ctx;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::gate::Gate;
use crate::proto::{self, DatabaseState, Deadline, Frame, MAX_FRAME_BYTES, Payload};
use crate::relay::Mailbox;

/// Most log entries per frame.
const BATCH_ENTRIES: usize = 500;
/// Record changes per frame: a frame stops growing once it holds this many. About one
/// default group commit's worth: larger frames make larger commits, whose dirty pages LMDB
/// keeps allocated; much smaller ones measured several times the lag among three nodes
/// under load (more frames, acks and commits for the same changes).
const BATCH_CHANGES: usize = 4000;
/// Rows per full-copy frame.
const COPY_ROWS: usize = 1000;
/// What a row's key and framing add to its stored bytes, about.
const ROW_OVERHEAD: usize = 32;

/// What a peer asked for in its `Subscribe` frame.
pub(crate) struct Subscription {
    /// The receiving node.
    pub(crate) node: String,
    /// The database it wants.
    pub(crate) database: String,
    /// The last of our sequences it holds.
    pub(crate) cursor: u64,
    /// An unfinished full copy to resume.
    pub(crate) copy: Option<CopyProgress>,
    /// Its version vector, if it sent one.
    pub(crate) vv: Option<Vec<(String, u64)>>,
}

/// Streams `database` to `node`, which holds our log up to `cursor` and, if it says,
/// the transactions of version vector `vv`. It streams while `gate` allows, counting the
/// entries sent on its worker's `ctx`.
pub(crate) async fn stream<S>(
    shared: Arc<Shared>,
    conn: S,
    subscription: Subscription,
    mut gate: Gate,
    ctx: &Ctx,
) -> Result<(), ClusterError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Subscription {
        node,
        database,
        cursor,
        copy,
        vv,
    } = subscription;
    let db = shared.store.database(&database).map_err(|_| {
        ClusterError::Refused(format!(
            "database '{database}' does not exist on {}",
            shared.name
        ))
    })?;
    let (mut rd, wr) = tokio::io::split(conn);
    let mut wr = Deadline::new(wr, shared.options.write_timeout);
    // The receiver's frames (acks, pongs, pings) are read by their own task; it ends the
    // stream when the receiver goes quiet past the idle timeout or closes.
    let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(16);
    let idle = shared.options.idle_timeout;
    let reader = shared.store.workers().spawn(
        format!("replication/sender/{node}/{database}/reader"),
        move |_| async move {
            loop {
                match tokio::time::timeout(idle, proto::read(&mut rd, MAX_FRAME_BYTES)).await {
                    Ok(Ok(Some(Frame::Ping { sent_ms }))) => {
                        if pong_tx.send(sent_ms).await.is_err() {
                            return;
                        }
                    }
                    Ok(Ok(Some(_))) => {}
                    _ => return,
                }
            }
        },
    );
    // However the stream ends, its reader must not keep the connection open.
    let _reader_guard = reader.abort_on_drop();
    // The gate is checked after each read and before its frame is sent: a membership
    // change committed before anything the frame holds is seen.
    if database == SYSTEM_DATABASE {
        let databases = database_states(&shared)?;
        gate.enforce(&mut wr).await?;
        proto::write(&mut wr, &Frame::Databases { databases }).await?;
    }
    let mut next = cursor + 1;
    let (start, mut floor) = plan(&db.snapshot()?, cursor, copy, vv.as_deref())?;
    if let Some(resume) = start {
        tracing::info!(peer = %node, %database, resumed = resume.is_some(), "full copy");
        let done = full_copy(&shared, &db, resume, &mut gate, &mut wr).await?;
        next = done.seq + 1;
        floor = done.floor;
    }
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    let limits = BatchLimits {
        max_bytes: shared.options.batch_bytes,
        max_entries: BATCH_ENTRIES,
        max_changes: BATCH_CHANGES,
    };
    let mut log = db.follow_batches(Start::Seq(next), limits, for_receiver(node.clone()));
    // Messages relayed to the peer go between runs of log entries, one frame of them
    // before each run, so neither waits for the other.
    let mut mailbox = (database == SYSTEM_DATABASE).then(|| shared.relays.open(&node));
    loop {
        if let Some(mailbox) = &mut mailbox {
            let messages = mailbox.take(shared.options.batch_bytes);
            if !messages.is_empty() {
                gate.enforce(&mut wr).await?;
                let sent = messages.len();
                let messages = messages.into_iter().map(Payload).collect();
                proto::write(&mut wr, &Frame::Messages { messages }).await?;
                mailbox.sent(sent);
            }
        }
        let read = log.read().await.map_err(|e| follow_error(e, &database))?;
        // Before the floor: a receiver membership no longer allows is told so, rather
        // than to subscribe again.
        gate.enforce(&mut wr).await?;
        if read.floor != floor {
            // We completed a full copy since this receiver subscribed: the copied rows
            // are in no entry we could send. It subscribes again with its version
            // vector as it is then, and gets a full copy only if it lacks them.
            let reason = format!(
                "{} took a full copy of '{database}'; subscribe again",
                shared.name
            );
            proto::refuse(&mut wr, &reason).await;
            return Ok(());
        }
        if let Some(Batch {
            entries,
            up_to,
            head,
        }) = read.batch
        {
            let sent = entries.len() as u64;
            proto::write(
                &mut wr,
                &Frame::Entries {
                    entries,
                    up_to,
                    head,
                },
            )
            .await?;
            ctx.count(sent);
            continue;
        }
        // Caught up: wait for a commit, a message to relay, a ping to send or answer, or
        // the end.
        tokio::select! {
            changed = log.changed() => changed.map_err(|e| follow_error(e, &database))?,
            () = queued(&mut mailbox) => {}
            _ = ping.tick() => {
                proto::write(&mut wr, &Frame::Ping { sent_ms: shoal_store::wall_ms() }).await?;
            }
            pong = pong_rx.recv() => match pong {
                Some(sent_ms) => proto::write(&mut wr, &Frame::Pong { sent_ms }).await?,
                None => return Ok(()),
            },
            () = reader.finished() => return Ok(()),
        }
    }
}

/// Resolves once `mailbox` holds a message; never without one.
async fn queued(mailbox: &mut Option<Mailbox>) {
    match mailbox {
        Some(mailbox) => mailbox.ready().await,
        None => std::future::pending().await,
    }
}

/// The databases this node has and those it knows were dropped, for the system link.
fn database_states(shared: &Shared) -> Result<Vec<DatabaseState>, ClusterError> {
    let mut states = BTreeMap::new();
    let system = shared.store.database(SYSTEM_DATABASE)?;
    for (name, at) in system.snapshot()?.dropped_databases()? {
        states.insert(
            name.clone(),
            DatabaseState {
                name,
                created: None,
                dropped: Some(at),
            },
        );
    }
    for db in shared.store.databases() {
        let name = db.name().to_owned();
        states
            .entry(name.clone())
            .or_insert(DatabaseState {
                name,
                created: None,
                dropped: None,
            })
            .created = Some(db.created());
    }
    Ok(states.into_values().collect())
}

/// How a session begins, decided on one snapshot: `Some(resume)` for a full copy
/// (resuming `resume` if given) or `None` for the log from the cursor; and the log floor
/// the session starts from.
fn plan(
    snapshot: &Snapshot,
    cursor: u64,
    copy: Option<CopyProgress>,
    vv: Option<&[(String, u64)]>,
) -> Result<(Option<Option<CopyProgress>>, u64), ClusterError> {
    let floor = snapshot.log_floor()?;
    let start = match copy {
        // Resume only if the log still holds everything since the copy began, and this
        // node took no full copy since (its rows would be missing from what was sent).
        Some(progress) if progress.floor == floor && snapshot.log_retains(progress.seq + 1)? => {
            Some(Some(progress))
        }
        Some(_) => Some(None),
        None if !snapshot.log_retains(cursor + 1)? => Some(None),
        // Rows this node took by full copy are in no log entry: a receiver that has not
        // streamed past the point of that copy needs them, unless it has them already.
        None if cursor <= floor && !dominates(vv, &snapshot.floor_vv()?) => Some(None),
        None => None,
    };
    Ok((start, floor))
}

/// Whether version vector `vv` holds every transaction `floor_vv` names.
fn dominates(vv: Option<&[(String, u64)]>, floor_vv: &[(String, u64)]) -> bool {
    let has: HashMap<&str, u64> = vv
        .unwrap_or_default()
        .iter()
        .map(|(origin, seq)| (origin.as_str(), *seq))
        .collect();
    floor_vv
        .iter()
        .all(|(origin, seq)| has.get(origin.as_str()).is_some_and(|s| s >= seq))
}

/// What of an entry goes to `receiver`: nothing of one it originated, and only the
/// changes (and schema change) of tables that replicate; `false` when nothing is left.
fn for_receiver(receiver: String) -> impl Fn(&Catalog, &mut LogEntry) -> bool + Send + Sync {
    move |catalog, entry| {
        if entry.origin == receiver {
            return false;
        }
        let replicated = |table: &str| catalog.tables.get(table).is_none_or(|t| t.replicate);
        entry.changes.retain(|c| replicated(&c.table));
        let schema_kept = entry
            .schema
            .as_ref()
            .is_none_or(|s| s.table().is_none_or(&replicated));
        !entry.changes.is_empty() || (entry.schema.is_some() && schema_kept)
    }
}

/// Why following our log ended, for the link.
fn follow_error(error: FollowError, database: &str) -> ClusterError {
    match error {
        // Trimmed while we streamed: the receiver gets a full copy when it subscribes
        // again.
        FollowError::Gap { from, .. } => {
            ClusterError::Protocol(format!("log entry {from} is no longer retained"))
        }
        FollowError::Closed => ClusterError::Refused(format!("database '{database}' closed")),
        FollowError::Store(e) => ClusterError::Store(e),
        other => ClusterError::Protocol(other.to_string()),
    }
}

/// Streams a snapshot (resuming `resume` if given) while `gate` allows; returns the
/// final progress.
async fn full_copy<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    db: &Arc<Database>,
    resume: Option<CopyProgress>,
    gate: &mut Gate,
    wr: &mut W,
) -> Result<CopyProgress, ClusterError> {
    let (tx, mut rx) = mpsc::channel::<Frame>(4);
    let db = db.clone();
    let me = shared.name.clone();
    let max_bytes = shared.options.batch_bytes;
    // The scan runs on a blocking thread; frames cross to the socket through a small
    // channel, so the socket paces the scan.
    let producer =
        tokio::task::spawn_blocking(move || produce_copy(&db, &me, resume, max_bytes, &tx));
    let started = Instant::now();
    let mut rows = 0usize;
    while let Some(frame) = rx.recv().await {
        if let Frame::CopyRows { rows: r, .. } = &frame {
            rows += r.len();
        }
        gate.enforce(wr).await?;
        proto::write(wr, &frame).await?;
    }
    let progress = producer
        .await
        .map_err(|e| ClusterError::Protocol(format!("copy failed: {e}")))??;
    tracing::info!(
        rows,
        seconds = started.elapsed().as_secs_f64(),
        "full copy sent"
    );
    Ok(progress)
}

/// Sends `CopyStart`, every replicated table's rows in key order in chunks of about
/// `max_bytes`, and `CopyDone`. Each chunk is read in a snapshot of its own, released
/// before the chunk is sent: a receiver that stops reading holds no read transaction
/// here, which would keep every page written meanwhile from being reused. Rows changed
/// after the first snapshot (`progress.seq`) are replayed from the log after the copy,
/// and merge by last-writer-wins whichever version a chunk saw.
fn produce_copy(
    db: &Database,
    me: &str,
    resume: Option<CopyProgress>,
    max_bytes: usize,
    tx: &mpsc::Sender<Frame>,
) -> Result<CopyProgress, ClusterError> {
    let gone = || ClusterError::Protocol("receiver went away during a full copy".into());
    let (mut progress, tables, dropped) = {
        let snapshot = db.snapshot()?;
        let progress = match resume {
            Some(p) => p,
            None => CopyProgress {
                seq: snapshot.last_seq()?,
                vv: snapshot.version_vector(me)?,
                floor: snapshot.log_floor()?,
                ..CopyProgress::default()
            },
        };
        let catalog = snapshot.catalog();
        let tables: Vec<Arc<TableDef>> = catalog
            .tables
            .values()
            .filter(|t| t.replicate)
            .cloned()
            .collect();
        let dropped: Vec<(String, u64)> = catalog
            .dropped
            .iter()
            .map(|(name, at)| (name.clone(), *at))
            .collect();
        (progress, tables, dropped)
    };
    let schema = tables.iter().map(|t| create_table(t)).collect();
    tx.blocking_send(Frame::CopyStart {
        progress: progress.clone(),
        tables: schema,
        dropped,
    })
    .map_err(|_| gone())?;
    for table in tables {
        if progress.tables_done.contains(&table.name) {
            continue;
        }
        while let Some(rows) = next_chunk(db, &table.name, &progress, max_bytes)? {
            let last = rows
                .last()
                .map(|r| r.key.clone())
                .expect("chunks are never empty");
            progress.last = Some((table.name.clone(), last));
            tx.blocking_send(Frame::CopyRows {
                table: table.name.clone(),
                rows,
                progress: progress.clone(),
            })
            .map_err(|_| gone())?;
        }
        progress.tables_done.push(table.name.clone());
        progress.last = None;
    }
    tx.blocking_send(Frame::CopyDone {
        progress: progress.clone(),
    })
    .map_err(|_| gone())?;
    Ok(progress)
}

/// The next rows of `table` after `progress.last`, read in a fresh snapshot: at most
/// `COPY_ROWS`, and no more than `max_bytes` unless a single row is larger. `None` when
/// the table has no more (or was dropped since the copy began: its drop is in the log).
fn next_chunk(
    db: &Database,
    table: &str,
    progress: &CopyProgress,
    max_bytes: usize,
) -> Result<Option<Vec<CopyRow>>, ClusterError> {
    let snapshot = db.snapshot()?;
    if snapshot.log_floor()? != progress.floor {
        // We completed a full copy meanwhile: chunks sent before it lack its rows.
        return Err(ClusterError::Protocol(
            "a full copy completed here meanwhile; the copy starts over".into(),
        ));
    }
    let Some(def) = snapshot.catalog().tables.get(table).cloned() else {
        return Ok(None);
    };
    let after = match &progress.last {
        Some((name, key)) if name == table => Some(key),
        _ => None,
    };
    let mut rows = Vec::new();
    let mut bytes = 0;
    for row in snapshot.versions(&def, after)? {
        let (key, version) = row?;
        let size = version.bytes().len() + ROW_OVERHEAD;
        if !rows.is_empty() && bytes + size > max_bytes {
            break; // the next chunk starts with it
        }
        bytes += size;
        rows.push(CopyRow {
            key,
            version: version.bytes().to_vec(),
        });
        if rows.len() >= COPY_ROWS || bytes >= max_bytes {
            break;
        }
    }
    Ok((!rows.is_empty()).then_some(rows))
}

/// The schema change that creates `table` as it is defined here.
fn create_table(table: &TableDef) -> SchemaChange {
    SchemaChange::CreateTable {
        table: table.name.clone(),
        primary_key: table.primary_key.clone(),
        attributes: table
            .indexed
            .as_ref()
            .map(|set| {
                table
                    .attributes
                    .iter()
                    .map(|a| (a.clone(), set.contains(a)))
                    .collect()
            })
            .unwrap_or_default(),
        replicate: true,
        created: table.created,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|(o, s)| ((*o).to_owned(), *s)).collect()
    }

    #[test]
    fn a_receiver_lacks_copied_rows_unless_its_version_vector_covers_them() {
        let floor = vv(&[("a", 10), ("c", 3)]);
        assert!(dominates(
            Some(&vv(&[("a", 10), ("c", 4), ("b", 1)])),
            &floor
        ));
        assert!(!dominates(Some(&vv(&[("a", 9), ("c", 4)])), &floor));
        assert!(!dominates(Some(&vv(&[("a", 12)])), &floor), "c missing");
        assert!(!dominates(None, &floor), "a receiver that does not say");
        assert!(dominates(None, &[]), "no copy taken: nothing to lack");
    }
}
