//! Group commit: one writer thread per database drains its queue, applies every waiting
//! request in one LMDB transaction (each in a nested transaction, so one bad request
//! cannot spoil the others), commits once (one fsync), and only then answers each caller
//! and publishes the log entries on the change feed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use heed::{Env, WithoutTls};
use shoal_workers::Ctx as WorkerCtx;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::catalog::Catalog;
use crate::error::{Result, StoreError};
use crate::hlc::{self, Hlc};
use crate::mutate::{self, Ctx, Outcome, Request};
use crate::trees::Trees;
use crate::txlog::{self, Committed, Retention};

/// How often the log is trimmed at most.
const TRIM_EVERY: Duration = Duration::from_secs(1);
/// Most log entries removed by one trim.
const TRIM_BUDGET: usize = 100_000;

/// A message to a writer.
pub(crate) enum Command {
    /// Apply a write.
    Write {
        write: Box<Request>,
        user: Option<String>,
        reply: oneshot::Sender<Result<Outcome>>,
    },
    /// Trim the log if due (sent by a timer so that idle databases are trimmed too).
    Trim,
    /// Empty the database and stop.
    Drop(oneshot::Sender<Result<()>>),
    /// Stop after everything queued before this.
    Shutdown,
}

/// State shared between a database handle and its writer.
pub(crate) struct Writer {
    pub(crate) name: String,
    pub(crate) env: &'static Env<WithoutTls>,
    pub(crate) trees: Trees,
    pub(crate) catalog: Arc<RwLock<Arc<Catalog>>>,
    pub(crate) feed: broadcast::Sender<Arc<Committed>>,
    /// The last sequence committed, for those who only need to know that the log grew.
    pub(crate) head: watch::Sender<u64>,
    pub(crate) hlc: Arc<Hlc>,
    pub(crate) origin: String,
    pub(crate) retention: Retention,
    pub(crate) max_batch: usize,
    /// Bytes the database may hold before writes that grow it are refused; the map is
    /// larger by a reserve so that deletes, drops and log trims still fit.
    pub(crate) capacity: u64,
    /// Largest log entry or record a local write may produce.
    pub(crate) max_transaction_bytes: usize,
    pub(crate) stats: Arc<WriterStats>,
    /// Set once the database is dropped (shared with its handles).
    pub(crate) dropped: Arc<AtomicBool>,
}

/// Counters of a database's writer.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Write requests answered.
    pub requests: AtomicU64,
}

type Pending = (Request, Option<String>, oneshot::Sender<Result<Outcome>>);

impl Writer {
    /// Runs until shut down or dropped; call on a dedicated thread, whose `worker`
    /// shows it idle while it waits and counts the requests it answers.
    pub(crate) fn run(self, mut rx: mpsc::Receiver<Command>, worker: &WorkerCtx) {
        let mut last_trim = Instant::now();
        let mut batch: Vec<Pending> = Vec::new();
        // A write that did not fit in the last batch opens the next.
        let mut carried = None;
        loop {
            let first = match carried.take() {
                Some(command) => command,
                None => {
                    worker.set_idle();
                    let command = rx.blocking_recv();
                    worker.set_running();
                    match command {
                        Some(command) => command,
                        None => break,
                    }
                }
            };
            match gather(first, &mut rx, &mut batch, self.max_batch) {
                Some(Command::Drop(reply)) => {
                    self.commit_batch(worker, &mut batch, false);
                    let dropped = self.drop_all();
                    // The store forgot the database before asking, so it is gone even if
                    // emptying it failed (the next start removes its folder).
                    self.refuse_queued(&mut rx);
                    let _ = reply.send(dropped);
                    return;
                }
                Some(Command::Shutdown) => {
                    self.commit_batch(worker, &mut batch, false);
                    return;
                }
                Some(write @ Command::Write { .. }) => carried = Some(write),
                // A timer's trim request: a due trim happens below, idle or not.
                Some(Command::Trim) | None => {}
            }
            let trim = last_trim.elapsed() >= TRIM_EVERY;
            if trim {
                last_trim = Instant::now();
            }
            if trim && batch.is_empty() {
                self.trim_alone(worker);
            } else {
                self.commit_batch(worker, &mut batch, trim);
            }
        }
        self.commit_batch(worker, &mut batch, false);
    }

    fn commit_batch(&self, worker: &WorkerCtx, batch: &mut Vec<Pending>, trim: bool) {
        if batch.is_empty() {
            return;
        }
        let (ops, replies): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|(write, user, reply)| ((write, user), reply))
            .unzip();
        let mut catalog =
            Catalog::clone(&self.catalog.read().unwrap_or_else(PoisonError::into_inner));
        let mut results = Vec::with_capacity(ops.len());
        let mut entries = Vec::new();
        let committed = (|| -> Result<()> {
            let mut txn = self.env.write_txn()?;
            for (write, user) in ops {
                // Cheap: four page counts the transaction holds, read only for a write that
                // may grow the database.
                if write.grows() && self.trees.used_bytes(&txn)? > self.capacity {
                    results.push(Err(StoreError::MapFull));
                    continue;
                }
                let before = catalog.clone();
                // What peers sent is applied whatever its size: it was accepted at its origin.
                let limit = if write.is_local() {
                    self.max_transaction_bytes
                } else {
                    usize::MAX
                };
                let mut nested = self.env.nested_write_txn(&mut txn)?;
                // Taken here, one request after another, so that commit times never
                // decrease along the log.
                let now = self.hlc.now();
                let mut ctx = Ctx {
                    trees: &self.trees,
                    database: &self.name,
                    catalog: &mut catalog,
                    hlc: now,
                    origin: &self.origin,
                    clock: &self.hlc,
                    max_bytes: limit,
                };
                let applied = mutate::apply(&mut nested, &mut ctx, write, user).and_then(
                    |(outcome, logged)| {
                        // A peer's batch leaves `ctx.hlc` at its newest timestamp: an
                        // entry is never logged as committed before its own time, and
                        // the clock observes it before the next request's `now`.
                        let at = ctx.hlc.max(now);
                        let mut committed = Vec::with_capacity(logged.len());
                        for mut entry in logged {
                            let seq =
                                txlog::append(&mut nested, &self.trees, &mut entry, at, limit)?;
                            committed.push(Committed { seq, entry });
                        }
                        Ok((outcome, committed))
                    },
                );
                // Remote versions may carry timestamps ahead of ours.
                self.hlc.observe(ctx.hlc);
                match applied {
                    Ok((outcome, committed)) => {
                        nested.commit()?;
                        entries.extend(committed);
                        results.push(Ok(outcome));
                    }
                    Err(e) => {
                        nested.abort();
                        catalog = before;
                        results.push(Err(e));
                    }
                }
            }
            if trim {
                // A trim that fails (it needs pages too) must not fail the writes.
                let mut nested = self.env.nested_write_txn(&mut txn)?;
                match self.trim(&mut nested) {
                    Ok(_) => nested.commit()?,
                    Err(e) => {
                        nested.abort();
                        tracing::warn!(database = %self.name, error = %e, "log trim failed");
                        worker.error(format_args!("log trim failed: {e}"));
                    }
                }
            }
            txn.commit()?;
            Ok(())
        })();
        match committed {
            Ok(()) => {
                // Release: whoever sees the new count sees the commit (auth relies on an
                // unchanged count meaning an unchanged user table).
                self.stats.commits.fetch_add(1, Ordering::Release);
                self.stats
                    .requests
                    .fetch_add(results.len() as u64, Ordering::Relaxed);
                worker.count(results.len() as u64);
                *self.catalog.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(catalog);
                if let Some(last) = entries.last() {
                    self.head.send_replace(last.seq);
                }
                for entry in entries {
                    // No subscriber is not an error.
                    let _ = self.feed.send(Arc::new(entry));
                }
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(database = %self.name, error = %e, "batch commit failed");
                worker.error(format_args!("batch commit failed: {e}"));
                let message = e.to_string();
                for reply in replies {
                    let error = match e {
                        StoreError::MapFull => StoreError::MapFull,
                        StoreError::DiskFull => StoreError::DiskFull,
                        _ => StoreError::CommitFailed(message.clone()),
                    };
                    let _ = reply.send(Err(error));
                }
            }
        }
    }

    fn trim(&self, txn: &mut heed::RwTxn) -> Result<usize> {
        txlog::trim(
            txn,
            &self.trees,
            self.retention,
            hlc::wall_ms(),
            TRIM_BUDGET,
        )
    }

    fn trim_alone(&self, worker: &WorkerCtx) {
        let result = (|| -> Result<usize> {
            let mut txn = self.env.write_txn()?;
            let n = self.trim(&mut txn)?;
            txn.commit()?;
            Ok(n)
        })();
        if let Err(e) = result {
            tracing::warn!(database = %self.name, error = %e, "log trim failed");
            worker.error(format_args!("log trim failed: {e}"));
        }
    }

    /// Answers every command queued behind a drop, and any sent later, with "no such
    /// database": they raced the drop and lost, which is not the store shutting down.
    fn refuse_queued(&self, rx: &mut mpsc::Receiver<Command>) {
        self.dropped.store(true, Ordering::Release);
        rx.close();
        let gone = || StoreError::DatabaseNotFound(self.name.clone());
        while let Ok(command) = rx.try_recv() {
            match command {
                Command::Write { reply, .. } => {
                    let _ = reply.send(Err(gone()));
                }
                Command::Drop(reply) => {
                    let _ = reply.send(Err(gone()));
                }
                Command::Trim | Command::Shutdown => {}
            }
        }
    }

    fn drop_all(&self) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        self.trees.clear(&mut txn)?;
        txn.commit()?;
        *self.catalog.write().unwrap_or_else(PoisonError::into_inner) =
            Arc::new(Catalog::default());
        Ok(())
    }
}

/// Moves `first` and the writes already queued behind it into `batch` while their weight
/// stays within `max` (a heavier write still goes, alone), and returns the command that
/// ended the batch without joining it: a write that did not fit, or a control command.
/// Bounding a group commit by records bounds how long it holds the writer (and so how far
/// replicas trail under load) and the dirty pages it allocates, which LMDB keeps for reuse.
fn gather(
    first: Command,
    rx: &mut mpsc::Receiver<Command>,
    batch: &mut Vec<Pending>,
    max: usize,
) -> Option<Command> {
    let mut weight = 0;
    let mut next = first;
    loop {
        let Command::Write { write, user, reply } = next else {
            return Some(next);
        };
        let w = write.weight();
        if !batch.is_empty() && weight + w > max {
            return Some(Command::Write { write, user, reply });
        }
        weight += w;
        batch.push((*write, user, reply));
        if weight >= max {
            return None;
        }
        next = rx.try_recv().ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mutate::{Mode, Write};

    fn write(records: usize) -> Command {
        let record = serde_json::Map::from_iter([("id".to_owned(), 1.into())]);
        Command::Write {
            write: Box::new(Request::Write(Write::Records {
                table: "t".into(),
                mode: Mode::Upsert,
                records: vec![record; records],
            })),
            user: None,
            reply: oneshot::channel().0,
        }
    }

    fn weight(batch: &[Pending]) -> usize {
        batch.iter().map(|(w, _, _)| w.weight()).sum()
    }

    #[test]
    fn a_group_commit_stays_within_its_record_budget() {
        let (tx, mut rx) = mpsc::channel(16);
        for _ in 0..3 {
            tx.try_send(write(4)).unwrap();
        }
        let mut batch = Vec::new();
        // 4 + 4 fit a budget of 10; the third request would pass it and opens the next.
        let carried = gather(write(4), &mut rx, &mut batch, 10);
        assert_eq!(weight(&batch), 8);
        assert!(matches!(carried, Some(Command::Write { .. })));
        batch.clear();
        assert!(gather(carried.unwrap(), &mut rx, &mut batch, 10).is_none());
        assert_eq!(weight(&batch), 8);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_request_bigger_than_the_budget_commits_alone() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.try_send(write(1)).unwrap();
        let mut batch = Vec::new();
        assert!(gather(write(50), &mut rx, &mut batch, 10).is_none());
        assert_eq!(weight(&batch), 50);
        assert!(
            rx.try_recv().is_ok(),
            "the next request waits for the next batch"
        );
        let (tx, mut rx) = mpsc::channel(16);
        tx.try_send(write(50)).unwrap();
        let mut batch = Vec::new();
        let carried = gather(write(1), &mut rx, &mut batch, 10);
        assert_eq!(weight(&batch), 1);
        assert!(matches!(carried, Some(Command::Write { .. })));
    }

    #[test]
    fn a_control_command_ends_the_batch_before_it() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.try_send(Command::Shutdown).unwrap();
        tx.try_send(write(1)).unwrap();
        let mut batch = Vec::new();
        let stop = gather(write(1), &mut rx, &mut batch, 10);
        assert!(matches!(stop, Some(Command::Shutdown)));
        assert_eq!(batch.len(), 1);
    }
}
