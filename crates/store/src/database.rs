//! One database: its LMDB environment, trees, catalog, writer and change feed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use heed::{Env, WithoutTls};
use shoal_workers::{WorkerHandle, Workers};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::catalog::{Catalog, TableDef};
use crate::error::{Result, StoreError};
use crate::mutate::{DROPPED_TABLE_PREFIX, Outcome, Request, Write};
use crate::read::{OpenSnapshot, Snapshot};
use crate::store::CREATED_KEY;
use crate::trees::{Trees, meta_get_u64, meta_u64s};
use crate::txlog::{self, Committed, SEQ_KEY};
use crate::writer::{Command, Writer, WriterStats};

/// A queued write; await it for the outcome once durable.
pub struct Pending(oneshot::Receiver<Result<Outcome>>);

impl std::future::Future for Pending {
    type Output = Result<Outcome>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.map_err(|_| StoreError::Closed)?)
    }
}

/// A handle on one open database. Cheap to share (`Arc`); all writes go through its writer.
pub struct Database {
    name: String,
    created: u64,
    env: &'static Env<WithoutTls>,
    trees: Trees,
    catalog: Arc<RwLock<Arc<Catalog>>>,
    tx: mpsc::Sender<Command>,
    feed: broadcast::Sender<Arc<Committed>>,
    head: watch::Receiver<u64>,
    writer: WorkerHandle,
    stats: Arc<WriterStats>,
    capacity: u64,
    /// Snapshots open now: each pins the pages it reads, which LMDB cannot reuse.
    snapshots: Arc<AtomicUsize>,
    /// Set by the writer once the database is dropped, so that a handle kept across the
    /// drop answers "no such database" rather than "shutting down".
    dropped: Arc<AtomicBool>,
}

/// Per-database settings.
pub(crate) struct DatabaseConfig {
    pub(crate) writer: Writer,
    pub(crate) queue: usize,
    /// Where the writer thread runs, as worker `store/writer/<database>`.
    pub(crate) workers: Workers,
}

impl Database {
    /// Loads the catalog and starts the writer thread.
    pub(crate) fn start(config: DatabaseConfig) -> Result<Arc<Self>> {
        let DatabaseConfig {
            writer,
            queue,
            workers,
        } = config;
        let (tx, rx) = mpsc::channel(queue);
        let created = {
            let txn = writer.env.read_txn()?;
            meta_get_u64(&txn, &writer.trees, CREATED_KEY)?
        };
        let name = writer.name.clone();
        let env = writer.env;
        let trees = writer.trees;
        let catalog = writer.catalog.clone();
        let feed = writer.feed.clone();
        let head = writer.head.subscribe();
        let stats = writer.stats.clone();
        let capacity = writer.capacity;
        let dropped = writer.dropped.clone();
        let handle = workers.spawn_thread(format!("store/writer/{name}"), move |ctx| {
            writer.run(rx, &ctx)
        })?;
        Ok(Arc::new(Database {
            name,
            created,
            env,
            trees,
            catalog,
            tx,
            feed,
            head,
            writer: handle,
            stats,
            capacity,
            snapshots: Arc::default(),
            dropped,
        }))
    }

    /// Reads the catalog stored in `trees`.
    pub(crate) fn load_catalog(env: &Env<WithoutTls>, trees: &Trees) -> Result<Catalog> {
        let txn = env.read_txn()?;
        let mut catalog = Catalog::default();
        for item in trees.meta.prefix_iter(&txn, b"table/")? {
            let (_, bytes) = item?;
            let def: TableDef = serde_json::from_slice(bytes)
                .map_err(|_| StoreError::Corrupt("table definition".into()))?;
            catalog.tables.insert(def.name.clone(), Arc::new(def));
        }
        catalog
            .dropped
            .extend(meta_u64s(&txn, trees, DROPPED_TABLE_PREFIX)?);
        catalog.next_id = trees
            .meta
            .get(&txn, b"next_table_id")?
            .and_then(|b| b.try_into().ok())
            .map_or(1, u32::from_be_bytes);
        Ok(catalog)
    }

    /// Sequence of the last logged transaction (0 if none ever was).
    pub(crate) fn last_seq(env: &Env<WithoutTls>, trees: &Trees) -> Result<u64> {
        let txn = env.read_txn()?;
        meta_get_u64(&txn, trees, SEQ_KEY)
    }

    /// When this node committed the last retained log entry, if any: at or after every
    /// retained entry's own timestamp and commit time.
    pub(crate) fn last_committed(env: &Env<WithoutTls>, trees: &Trees) -> Result<Option<u64>> {
        let txn = env.read_txn()?;
        trees
            .log
            .last(&txn)?
            .map(|(_, bytes)| txlog::committed_at(bytes))
            .transpose()
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// HLC of the database's creation (at the node that created it; 0 if unknown): a
    /// drop of the same name stamped later than this removes it.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Queues a write and waits until it is durably committed (or refused).
    pub async fn write(&self, write: Write, user: Option<&str>) -> Result<Outcome> {
        self.submit(write, user).await?.await
    }

    /// Queues a write and returns once it is queued; the returned [`Pending`] resolves
    /// when it is durably committed. Writes queued one after another commit in that
    /// order, so a caller can keep several in flight (replication does).
    pub async fn submit(&self, write: Write, user: Option<&str>) -> Result<Pending> {
        self.submit_request(Request::Write(write), user).await
    }

    /// Applies a request only the store makes (see [`Request`]), once durable.
    pub(crate) async fn request(&self, request: Request) -> Result<Outcome> {
        self.submit_request(request, None).await?.await
    }

    async fn submit_request(&self, request: Request, user: Option<&str>) -> Result<Pending> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Write {
            write: Box::new(request),
            user: user.map(str::to_owned),
            reply,
        };
        self.tx.send(command).await.map_err(|_| self.stopped())?;
        Ok(Pending(answer))
    }

    /// Why the writer no longer takes commands: the database was dropped, or the store
    /// is closing.
    fn stopped(&self) -> StoreError {
        if self.dropped.load(Ordering::Acquire) {
            StoreError::DatabaseNotFound(self.name.clone())
        } else {
            StoreError::Closed
        }
    }

    /// A consistent read-only view.
    pub fn snapshot(&self) -> Result<Snapshot> {
        // The catalog first: a transaction opened after it sees at least the commit that
        // produced it.
        let catalog = self.catalog();
        Ok(Snapshot {
            txn: self.env.read_txn()?,
            trees: self.trees,
            catalog,
            database: self.name.clone(),
            _open: OpenSnapshot::new(&self.snapshots),
        })
    }

    /// How many snapshots (read transactions) are open now. While one is, the pages it
    /// reads cannot be reused, so the file grows with every write that replaces them.
    pub fn open_snapshots(&self) -> usize {
        self.snapshots.load(Ordering::Relaxed)
    }

    /// The tables as of the last commit.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Subscribes to entries committed from now on. A receiver that falls behind the
    /// feed's capacity gets `Lagged` and must catch up from the log.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.feed.subscribe()
    }

    /// The last committed log sequence, changing with every commit that logs entries. Unlike
    /// [`Database::subscribe`] it holds no entries, so a reader that only needs to know the
    /// log grew (and then reads it) keeps nothing alive while it is busy.
    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    /// The writer's counters.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Bytes the database occupies on disk.
    pub fn disk_size(&self) -> u64 {
        self.env.real_disk_size().unwrap_or(0)
    }

    /// Bytes the database holds (free pages left out) and the most it may hold: the
    /// headroom before writes that grow it are refused.
    pub fn usage(&self) -> Result<(u64, u64)> {
        let txn = self.env.read_txn()?;
        Ok((self.trees.used_bytes(&txn)?, self.capacity))
    }

    /// Asks the writer to trim the log if it is due; never waits.
    pub(crate) fn nudge_trim(&self) {
        let _ = self.tx.try_send(Command::Trim);
    }

    /// Empties the database and stops its writer; the handle refuses writes afterwards.
    pub(crate) async fn drop_all(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Command::Drop(reply))
            .await
            .map_err(|_| self.stopped())?;
        answer.await.map_err(|_| self.stopped())??;
        self.writer.finished().await;
        Ok(())
    }

    /// Finishes queued writes and stops the writer.
    pub(crate) async fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown).await;
        self.writer.finished().await;
    }
}
