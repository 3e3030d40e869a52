//! The sending side of a link: a peer subscribed to one of our databases; stream it our
//! transaction log from its cursor (or a full copy first when the log no longer
//! reaches back that far), in commit order, batched, paced by the socket.

use std::sync::Arc;
use std::time::Instant;

use shoal_auth::SYSTEM_DATABASE;
use shoal_store::{Committed, CopyProgress, CopyRow, Database, LogEntry, SchemaChange, Snapshot};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::proto::{self, Frame};

/// Most log entries per frame.
const BATCH_ENTRIES: usize = 500;
/// Record changes per frame: a frame stops growing once it holds this many. About one
/// default group commit's worth: larger frames make larger commits, whose dirty pages LMDB
/// keeps allocated; much smaller ones measured several times the lag among three nodes
/// under load (more frames, acks and commits for the same changes).
const BATCH_CHANGES: usize = 4000;
/// Rows per full-copy frame.
const COPY_ROWS: usize = 1000;

/// Streams `database` to `node`, which holds our log up to `cursor`.
pub(crate) async fn stream<S>(
    shared: Arc<Shared>,
    conn: S,
    node: String,
    database: String,
    cursor: u64,
    copy: Option<CopyProgress>,
) -> Result<(), ClusterError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let db = shared.store.database(&database).map_err(|_| {
        ClusterError::Refused(format!(
            "database '{database}' does not exist on {}",
            shared.name
        ))
    })?;
    let (mut rd, mut wr) = tokio::io::split(conn);
    // The receiver's frames (acks, pongs, pings) are read by their own task; it ends the
    // stream when the receiver goes quiet past the idle timeout or closes.
    let (pong_tx, mut pong_rx) = mpsc::channel::<u64>(16);
    let idle = shared.options.idle_timeout;
    let mut reader = tokio::spawn(async move {
        loop {
            match tokio::time::timeout(idle, proto::read(&mut rd)).await {
                Ok(Ok(Some(Frame::Ping { sent_ms }))) => {
                    if pong_tx.send(sent_ms).await.is_err() {
                        return;
                    }
                }
                Ok(Ok(Some(_))) => {}
                _ => return,
            }
        }
    });
    let mut commits = db.watch_commits();
    if database == SYSTEM_DATABASE {
        let names = shared
            .store
            .databases()
            .iter()
            .map(|d| d.name().to_owned())
            .collect();
        proto::write(&mut wr, &Frame::Databases { names }).await?;
    }
    let mut next = cursor + 1;
    let snapshot = db.snapshot()?;
    let copy = match copy {
        // Resume only if the log still holds everything since the copy began.
        Some(progress) if log_covers(&snapshot, progress.seq + 1)? => Some(Some(progress)),
        Some(_) => Some(None),
        None if !log_covers(&snapshot, next)? => Some(None),
        None => None,
    };
    drop(snapshot);
    if let Some(resume) = copy {
        tracing::info!(peer = %node, %database, resumed = resume.is_some(), "full copy");
        let done = full_copy(&shared, &db, resume, &mut wr).await?;
        next = done.seq + 1;
    }
    let mut ping = tokio::time::interval(shared.options.ping_interval);
    loop {
        // Whatever was committed so far is in the log read next.
        commits.borrow_and_update();
        let batch = read_batch(&db, next, &node).await?;
        if let Some((entries, up_to, head)) = batch {
            proto::write(
                &mut wr,
                &Frame::Entries {
                    entries,
                    up_to,
                    head,
                },
            )
            .await?;
            next = up_to + 1;
            continue;
        }
        // Caught up: wait for a commit, a ping to send or answer, or the end.
        tokio::select! {
            changed = commits.changed() => if changed.is_err() {
                return Err(ClusterError::Refused(format!("database '{database}' closed")));
            },
            _ = ping.tick() => {
                proto::write(&mut wr, &Frame::Ping { sent_ms: shoal_store::wall_ms() }).await?;
            }
            pong = pong_rx.recv() => match pong {
                Some(sent_ms) => proto::write(&mut wr, &Frame::Pong { sent_ms }).await?,
                None => return Ok(()),
            },
            _ = &mut reader => return Ok(()),
        }
    }
}

/// Whether the log still holds every entry from `from` on.
fn log_covers(snapshot: &Snapshot, from: u64) -> Result<bool, ClusterError> {
    let last = snapshot.last_seq()?;
    Ok(match snapshot.first_seq()? {
        Some(first) => first <= from,
        None => from > last,
    })
}

/// The next run of entries from `next` for `receiver`: (entries, covered up to, head), or
/// `None` when there is nothing new. Entries that originated at the receiver, and changes
/// to tables that do not replicate, are left out; the run still counts as covered.
async fn read_batch(
    db: &Arc<Database>,
    next: u64,
    receiver: &str,
) -> Result<Option<(Vec<(u64, LogEntry)>, u64, u64)>, ClusterError> {
    let db = db.clone();
    let receiver = receiver.to_owned();
    tokio::task::spawn_blocking(move || {
        let snapshot = db.snapshot()?;
        let head = snapshot.last_seq()?;
        if next > head {
            return Ok(None);
        }
        let catalog = snapshot.catalog();
        let replicated = |table: &str| catalog.tables.get(table).is_none_or(|t| t.replicate);
        let mut entries = Vec::new();
        let (mut up_to, mut changes) = (next - 1, 0);
        for item in snapshot.log(next)?.take(BATCH_ENTRIES) {
            let Committed { seq, mut entry } = item?;
            if seq != up_to + 1 {
                // Trimmed while we streamed: the receiver needs a full copy.
                return Err(ClusterError::Protocol(format!(
                    "log entry {} is no longer retained",
                    up_to + 1
                )));
            }
            up_to = seq;
            if entry.origin == receiver {
                continue;
            }
            entry.changes.retain(|c| replicated(&c.table));
            let schema_kept = entry
                .schema
                .as_ref()
                .is_none_or(|s| s.table().is_none_or(&replicated));
            if entry.changes.is_empty() && (entry.schema.is_none() || !schema_kept) {
                continue;
            }
            changes += entry.changes.len();
            entries.push((seq, entry));
            if changes >= BATCH_CHANGES {
                break;
            }
        }
        Ok(Some((entries, up_to, head)))
    })
    .await
    .map_err(|e| ClusterError::Protocol(format!("log reader failed: {e}")))?
}

/// Streams a consistent snapshot (resuming `resume` if given); returns the final progress.
async fn full_copy<W: AsyncWrite + Unpin>(
    shared: &Arc<Shared>,
    db: &Arc<Database>,
    resume: Option<CopyProgress>,
    wr: &mut W,
) -> Result<CopyProgress, ClusterError> {
    let (tx, mut rx) = mpsc::channel::<Frame>(4);
    let db = db.clone();
    let me = shared.name.clone();
    // The snapshot's read transaction lives on one blocking thread; frames cross to the
    // socket through a small channel, so the socket paces the scan.
    let producer = tokio::task::spawn_blocking(move || produce_copy(&db, &me, resume, &tx));
    let started = Instant::now();
    let mut rows = 0usize;
    while let Some(frame) = rx.recv().await {
        if let Frame::CopyRows { rows: r, .. } = &frame {
            rows += r.len();
        }
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

fn produce_copy(
    db: &Database,
    me: &str,
    resume: Option<CopyProgress>,
    tx: &mpsc::Sender<Frame>,
) -> Result<CopyProgress, ClusterError> {
    let gone = || ClusterError::Protocol("receiver went away during a full copy".into());
    let snapshot = db.snapshot()?;
    let mut progress = match resume {
        Some(p) => p,
        None => CopyProgress {
            seq: snapshot.last_seq()?,
            vv: snapshot.version_vector(me)?,
            ..CopyProgress::default()
        },
    };
    let tables: Vec<_> = snapshot
        .catalog()
        .tables
        .values()
        .filter(|t| t.replicate)
        .cloned()
        .collect();
    let schema = tables
        .iter()
        .map(|t| SchemaChange::CreateTable {
            table: t.name.clone(),
            primary_key: t.primary_key.clone(),
            attributes: t
                .indexed
                .as_ref()
                .map(|set| {
                    t.attributes
                        .iter()
                        .map(|a| (a.clone(), set.contains(a)))
                        .collect()
                })
                .unwrap_or_default(),
            replicate: true,
            created: t.created,
        })
        .collect();
    tx.blocking_send(Frame::CopyStart {
        progress: progress.clone(),
        tables: schema,
    })
    .map_err(|_| gone())?;
    for table in tables {
        if progress.tables_done.contains(&table.name) {
            continue;
        }
        let after = match &progress.last {
            Some((name, key)) if *name == table.name => Some(key.clone()),
            _ => None,
        };
        let mut rows = Vec::with_capacity(COPY_ROWS);
        for row in snapshot.versions(&table, after.as_ref())? {
            let (key, version) = row?;
            rows.push(CopyRow {
                key,
                version: version.bytes().to_vec(),
            });
            if rows.len() == COPY_ROWS {
                send_rows(tx, &table.name, &mut rows, &mut progress)?;
            }
        }
        if !rows.is_empty() {
            send_rows(tx, &table.name, &mut rows, &mut progress)?;
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

fn send_rows(
    tx: &mpsc::Sender<Frame>,
    table: &str,
    rows: &mut Vec<CopyRow>,
    progress: &mut CopyProgress,
) -> Result<(), ClusterError> {
    let last = rows.last().map(|r| r.key.clone()).expect("not empty");
    progress.last = Some((table.to_owned(), last));
    tx.blocking_send(Frame::CopyRows {
        table: table.to_owned(),
        rows: std::mem::take(rows),
        progress: progress.clone(),
    })
    .map_err(|_| ClusterError::Protocol("receiver went away during a full copy".into()))
}
