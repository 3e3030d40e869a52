//! Following a database's commits: the one way subscriptions, replication and MQTT
//! learn what was committed, from a sequence, a time or now.
//!
//! A [`Follower`] ([`Database::follow`]) delivers commits one at a time: live from the
//! change feed, and from the transaction log while it is behind the feed (it started in
//! the past, or the feed overflowed while it was busy). A [`BatchFollower`]
//! ([`Database::follow_batches`]) reads the log alone, in runs bounded in bytes, for a
//! caller that forwards commits in bulk: waiting, it holds no entries alive. Both deliver
//! every commit from their start in sequence order and none twice; where the log no
//! longer holds the next one (trimmed by [`crate::Retention`]) they report the gap
//! ([`FollowError::Gap`]) so that the caller can resynchronise, then go on from the first
//! commit the log still holds. Log reads run on blocking threads, never on the async
//! runtime's.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::database::Database;
use crate::error::StoreError;
use crate::read::Snapshot;
use crate::txlog::{Committed, LogEntry};

#[cfg(test)]
mod tests;

/// Most log entries a [`Follower`] reads in one catch-up step.
const CATCH_UP_ENTRIES: usize = 1000;
/// Bytes of log entries a [`Follower`] reads in one catch-up step, unless a single
/// entry is larger.
const CATCH_UP_BYTES: usize = 4 << 20;

/// Where following starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Start {
    /// With the commit of this sequence.
    Seq(u64),
    /// With the first retained commit made here at or after this time (milliseconds
    /// since the epoch, as [`LogEntry::timestamp`] counts them), or else the next one.
    Time(f64),
    /// With the next commit.
    Now,
}

/// How far a [`Follower`] may fall behind.
#[derive(Debug, Clone, Copy)]
pub struct FollowOptions {
    /// Commits past the last one delivered at which the follower is cut off
    /// ([`FollowError::TooSlow`]).
    pub max_lag: u64,
}

/// Why a follower stopped. After a [`FollowError::Gap`] it goes on with the first
/// commit the log holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FollowError {
    /// More commits than the lag limit were made past the last one delivered.
    #[error("too slow: {behind} changes behind")]
    TooSlow {
        /// Commits made since the last one delivered.
        behind: u64,
    },
    /// The log was trimmed past the next commit: commits `from` up to `resume`
    /// (excluded) can no longer be delivered.
    #[error("changes from sequence {from} are no longer in the transaction log")]
    Gap {
        /// The first commit missed.
        from: u64,
        /// The commit the follower goes on with.
        resume: u64,
    },
    /// The database was dropped or the store is closing.
    #[error("the database was dropped or the node is stopping")]
    Closed,
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Database {
    /// Follows this database's commits one at a time from `start`. "Now" is fixed before
    /// this returns, so a commit acknowledged afterwards is never missed.
    pub fn follow(self: &Arc<Self>, start: Start, options: FollowOptions) -> Follower {
        // The feed first: whatever is committed after the head is read below is on it.
        let feed = self.subscribe();
        let head = self.watch_commits();
        let (next, time) = position(start, *head.borrow());
        Follower {
            db: self.clone(),
            feed,
            head,
            max_lag: options.max_lag,
            next,
            time,
            behind: start != Start::Now,
            read: VecDeque::new(),
            reading: None,
        }
    }

    /// Follows this database's commits from `start` in runs read from the log, each
    /// within `limits` and trimmed by `keep` (see [`BatchFollower::read`]).
    pub fn follow_batches(
        self: &Arc<Self>,
        start: Start,
        limits: BatchLimits,
        keep: impl Fn(&Catalog, &mut LogEntry) -> bool + Send + Sync + 'static,
    ) -> BatchFollower {
        let commits = self.watch_commits();
        let (next, time) = position(start, *commits.borrow());
        BatchFollower {
            db: self.clone(),
            commits,
            next,
            time,
            limits,
            keep: Arc::new(keep),
        }
    }
}

/// The sequence to start at and, for a time, the time to look up (the sequence is then
/// what to start at if no retained commit was made at or after it).
fn position(start: Start, head: u64) -> (u64, Option<f64>) {
    match start {
        // Sequences start at 1.
        Start::Seq(seq) => (seq.max(1), None),
        Start::Time(ms) => (head + 1, Some(ms)),
        Start::Now => (head + 1, None),
    }
}

/// Commits the log no longer holds: `from` up to `resume` (excluded).
struct Lost {
    from: u64,
    resume: u64,
}

impl Lost {
    /// Moves a follower whose next commit is lost on to `resume`, and says so.
    fn skip(self, next: &mut u64) -> FollowError {
        *next = self.resume;
        FollowError::Gap {
            from: self.from,
            resume: self.resume,
        }
    }
}

/// Where reading starts in `snapshot`: `next`, or the first commit at or after `time`;
/// or what was lost when the log no longer reaches back to it.
fn resolve(
    snapshot: &Snapshot,
    next: u64,
    time: Option<f64>,
) -> Result<Result<u64, Lost>, StoreError> {
    let from = match time {
        Some(ms) => snapshot.first_seq_at(ms)?.unwrap_or(next),
        None => next,
    };
    if snapshot.log_retains(from)? {
        return Ok(Ok(from));
    }
    let resume = match snapshot.first_seq()? {
        Some(first) => first,
        None => snapshot.last_seq()? + 1,
    };
    Ok(Err(Lost { from, resume }))
}

/// A database's commits, one at a time, from a starting point; see the module docs.
pub struct Follower {
    db: Arc<Database>,
    feed: broadcast::Receiver<Arc<Committed>>,
    head: watch::Receiver<u64>,
    max_lag: u64,
    /// The next sequence to deliver.
    next: u64,
    /// A start time not yet looked up in the log.
    time: Option<f64>,
    /// Whether the next commits come from the log rather than the feed.
    behind: bool,
    /// Commits read from the log and not yet delivered.
    read: VecDeque<Arc<Committed>>,
    /// A log read under way, kept so that a cancelled [`Follower::next`] loses nothing.
    reading: Option<JoinHandle<Result<Chunk, StoreError>>>,
}

/// What one catch-up step read from the log.
enum Chunk {
    /// Commits from `from` on; none when the follower has caught up.
    Commits {
        from: u64,
        commits: Vec<Arc<Committed>>,
    },
    /// The log no longer reaches back to the next commit.
    Lost(Lost),
}

impl Follower {
    /// The next commit, waiting for it if need be. Cancel-safe: a call dropped before it
    /// returns loses no commit. A follower whose feed overflowed while it was busy is
    /// cut off if it is past the lag limit, and otherwise catches up from the log.
    pub async fn next(&mut self) -> Result<Arc<Committed>, FollowError> {
        loop {
            if let Some(committed) = self.read.pop_front() {
                self.next = committed.seq + 1;
                return Ok(committed);
            }
            if self.behind {
                self.catch_up().await?;
                continue;
            }
            match self.feed.recv().await {
                Ok(committed) if committed.seq < self.next => {}
                Ok(committed) if committed.seq == self.next => {
                    self.next += 1;
                    return Ok(committed);
                }
                // Ahead of us: the commits in between come from the log.
                Ok(_) => self.behind = true,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.check_lag()?;
                    self.behind = true;
                }
                Err(broadcast::error::RecvError::Closed) => return Err(FollowError::Closed),
            }
        }
    }

    /// Whether the follower is within its lag limit: a caller whose consumer is slow to
    /// take what it was given asks this while it waits.
    pub fn check_lag(&self) -> Result<(), FollowError> {
        let behind = (*self.head.borrow() + 1).saturating_sub(self.next);
        if behind > self.max_lag {
            return Err(FollowError::TooSlow { behind });
        }
        Ok(())
    }

    /// Reads the next chunk of the log into `read`, or leaves the log for the feed once
    /// nothing is left in it.
    async fn catch_up(&mut self) -> Result<(), FollowError> {
        let reading = match &mut self.reading {
            Some(reading) => reading,
            None => {
                let (db, next, time) = (self.db.clone(), self.next, self.time);
                let read = move || read_chunk(&db.snapshot()?, next, time);
                self.reading.insert(tokio::task::spawn_blocking(read))
            }
        };
        let chunk = reading.await;
        self.reading = None;
        self.time = None;
        match chunk.map_err(|e| StoreError::Io(e.into()))?? {
            Chunk::Commits { from, commits } => {
                self.next = from;
                self.behind = !commits.is_empty();
                self.read = commits.into();
                Ok(())
            }
            Chunk::Lost(lost) => Err(lost.skip(&mut self.next)),
        }
    }
}

/// The log from `next` (or the first commit at or after `time`), one catch-up step of it.
fn read_chunk(snapshot: &Snapshot, next: u64, time: Option<f64>) -> Result<Chunk, StoreError> {
    let from = match resolve(snapshot, next, time)? {
        Ok(from) => from,
        Err(lost) => return Ok(Chunk::Lost(lost)),
    };
    let (mut commits, mut bytes) = (Vec::new(), 0);
    for item in snapshot.log_sized(from)?.take(CATCH_UP_ENTRIES) {
        let (committed, size) = item?;
        commits.push(Arc::new(committed));
        bytes += size;
        if bytes >= CATCH_UP_BYTES {
            break;
        }
    }
    Ok(Chunk::Commits { from, commits })
}

/// Bounds on one [`Batch`].
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Stored bytes of the entries kept: a run stops before an entry that would take it
    /// past this, unless that entry is its first.
    pub max_bytes: usize,
    /// Log entries read, kept or not.
    pub max_entries: usize,
    /// Record changes kept: a run stops once it holds this many.
    pub max_changes: usize,
}

/// A run of commits read from the log by a [`BatchFollower`].
#[derive(Debug)]
pub struct Batch {
    /// The commits kept, as (sequence, entry) trimmed by the follower's `keep`, in
    /// sequence order.
    pub entries: Vec<(u64, LogEntry)>,
    /// The last sequence the run covers, commits left out included.
    pub up_to: u64,
    /// The database's last sequence when the run was read.
    pub head: u64,
}

/// What one [`BatchFollower::read`] found.
#[derive(Debug)]
pub struct LogRead {
    /// The log floor ([`Snapshot::log_floor`]) in the snapshot the run was read in.
    pub floor: u64,
    /// The next run, or `None` when nothing new was committed.
    pub batch: Option<Batch>,
}

/// What a [`BatchFollower`] keeps of an entry: it trims the entry and says whether
/// anything of it is left to deliver.
type Keep = dyn Fn(&Catalog, &mut LogEntry) -> bool + Send + Sync;

/// A database's commits in runs read from the log; see the module docs.
pub struct BatchFollower {
    db: Arc<Database>,
    commits: watch::Receiver<u64>,
    /// The next sequence to deliver.
    next: u64,
    /// A start time not yet looked up in the log.
    time: Option<f64>,
    limits: BatchLimits,
    keep: Arc<Keep>,
}

impl BatchFollower {
    /// The next run of commits and the log floor, read in one snapshot on a blocking
    /// thread. An entry `keep` (given the catalog of that snapshot) refuses is left out
    /// but counts as covered; the run stops at the first of [`BatchLimits`] reached.
    /// A call dropped before it returns loses nothing: the next one reads the same.
    pub async fn read(&mut self) -> Result<LogRead, FollowError> {
        // Whatever was committed so far is in the snapshot read next.
        self.commits.borrow_and_update();
        let (db, next, time) = (self.db.clone(), self.next, self.time);
        let (limits, keep) = (self.limits, self.keep.clone());
        let read = move || read_batch(&db.snapshot()?, next, time, limits, &*keep);
        let result = tokio::task::spawn_blocking(read)
            .await
            .map_err(|e| StoreError::Io(e.into()))??;
        self.time = None;
        match result {
            Ok((from, read)) => {
                self.next = read.batch.as_ref().map_or(from, |b| b.up_to + 1);
                Ok(read)
            }
            Err(lost) => Err(lost.skip(&mut self.next)),
        }
    }

    /// Waits until something is committed past what the last [`BatchFollower::read`]
    /// saw. Cancel-safe.
    pub async fn changed(&mut self) -> Result<(), FollowError> {
        self.commits
            .changed()
            .await
            .map_err(|_| FollowError::Closed)
    }
}

/// The floor and the next run from `next` (or the first commit at or after `time`), with
/// the sequence it was read from; the gap if the log no longer reaches back to it.
fn read_batch(
    snapshot: &Snapshot,
    next: u64,
    time: Option<f64>,
    limits: BatchLimits,
    keep: &Keep,
) -> Result<Result<(u64, LogRead), Lost>, StoreError> {
    let from = match resolve(snapshot, next, time)? {
        Ok(from) => from,
        Err(lost) => return Ok(Err(lost)),
    };
    let floor = snapshot.log_floor()?;
    let head = snapshot.last_seq()?;
    if from > head {
        return Ok(Ok((from, LogRead { floor, batch: None })));
    }
    let catalog = snapshot.catalog();
    let mut entries = Vec::new();
    let (mut up_to, mut changes, mut bytes) = (from - 1, 0, 0);
    for item in snapshot.log_sized(from)?.take(limits.max_entries) {
        let (Committed { seq, mut entry }, size) = item?;
        if !keep(catalog, &mut entry) {
            up_to = seq;
            continue;
        }
        if !entries.is_empty() && bytes + size > limits.max_bytes {
            break; // the next run starts with it
        }
        up_to = seq;
        bytes += size;
        changes += entry.changes.len();
        entries.push((seq, entry));
        if changes >= limits.max_changes || bytes >= limits.max_bytes {
            break;
        }
    }
    let batch = Batch {
        entries,
        up_to,
        head,
    };
    Ok(Ok((
        from,
        LogRead {
            floor,
            batch: Some(batch),
        },
    )))
}
