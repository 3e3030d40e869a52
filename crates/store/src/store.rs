//! The set of databases under a root folder: `<root>/database/<name>/` holds one LMDB
//! environment per database.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};

use heed::{Env, EnvOpenOptions, WithoutTls};
use shoal_workers::Workers;
use tokio::sync::{broadcast, watch};

use crate::catalog::validate_name;
use crate::database::{Database, DatabaseConfig};
use crate::error::{Result, StoreError};
use crate::hlc::{DEFAULT_MAX_OFFSET_MS, Hlc};
use crate::mutate::Request;
use crate::trees::{Trees, meta_get_u64, meta_put_u64};
use crate::txlog::{Retention, SchemaChange};
use crate::writer::Writer;

/// Environments opened by this process, by path. LMDB allows one open per path and the
/// trees borrow their environment, so each stays open (and is reused) for the process's life.
static OPEN_ENVS: LazyLock<Mutex<HashMap<PathBuf, &'static Env<WithoutTls>>>> =
    LazyLock::new(Default::default);

/// The database holding users, roles, cluster membership and the record of the other
/// databases' creations and drops; it is never dropped.
pub const SYSTEM_DATABASE: &str = "system";

/// File marking a dropped database, whose folder is removed at the next start.
const DROPPED_MARKER: &str = "dropped";
/// Meta key of a database's creation HLC (absent in databases made before it was kept).
pub(crate) const CREATED_KEY: &[u8] = b"created";

/// Store settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Folder holding one sub-folder per database.
    pub path: PathBuf,
    /// This node's name, recorded as the origin of local writes.
    pub node_name: String,
    /// Most a database may hold, in bytes (its trees, free pages left out). Past it, writes
    /// that would grow it are refused with [`crate::StoreError::MapFull`]; the LMDB map is
    /// larger by a reserve so that deletes and drops still run and room can be made.
    pub map_size: usize,
    /// Transaction log retention.
    pub retention: Retention,
    /// Most records (rows, replicated changes) one group commit takes; a request with
    /// more commits alone.
    pub max_batch: usize,
    /// Capacity of each writer's queue; senders wait when it is full (back-pressure).
    pub write_queue: usize,
    /// Entries each change feed holds for its slowest subscriber. A subscriber that falls
    /// further behind reads the log instead, so this only bounds the memory a slow
    /// subscriber pins (whole log entries), not how far behind it may be.
    pub feed_capacity: usize,
    /// Most concurrent read transactions per database.
    pub max_readers: u32,
    /// Remote timestamps further ahead of this node's wall clock than this, in
    /// milliseconds, are refused ([`StoreError::ClockAhead`]) rather than applied.
    pub max_clock_offset_ms: u64,
    /// Milliseconds added to the system clock for this node's timestamps: lets a test run
    /// a node whose clock is wrong. Zero in production.
    pub clock_offset_ms: i64,
    /// Largest transaction-log entry, and largest stored record, a local write may
    /// produce; a larger write is refused with [`StoreError::TooLarge`]. Replication ships
    /// one transaction whole, so this bounds what a peer must accept in one message.
    pub max_transaction_bytes: usize,
    /// The node's workers, where each database's writer thread is registered (a new,
    /// empty registry by default).
    pub workers: Workers,
}

impl StoreOptions {
    /// Defaults for a store at `path` on node `node_name`.
    pub fn new(path: impl Into<PathBuf>, node_name: impl Into<String>) -> Self {
        StoreOptions {
            path: path.into(),
            node_name: node_name.into(),
            map_size: 64 << 30,
            retention: Retention::default(),
            max_batch: 4096,
            write_queue: 4096,
            feed_capacity: 256,
            max_readers: 1024,
            max_clock_offset_ms: DEFAULT_MAX_OFFSET_MS,
            clock_offset_ms: 0,
            max_transaction_bytes: 128 << 20,
            workers: Workers::new(),
        }
    }
}

/// The LMDB map for a database of `capacity` bytes: larger by a reserve, so that once the
/// database holds its capacity (and writes that grow it are refused) deletes, drops and log
/// trims, which copy pages before they free any, still have room to run.
fn map_with_reserve(capacity: usize) -> usize {
    const MIB: usize = 1 << 20;
    let reserve = (capacity / 8).clamp(8 * MIB, 1024 * MIB);
    let page = 64 * 1024; // a multiple of any page size LMDB runs with
    (capacity.saturating_add(reserve)).div_ceil(page) * page
}

/// All databases of a node.
pub struct Store {
    options: StoreOptions,
    hlc: Arc<Hlc>,
    databases: RwLock<BTreeMap<String, Arc<Database>>>,
    /// Serialises create and drop of databases.
    ddl: tokio::sync::Mutex<()>,
}

impl Store {
    /// Opens every database under the root, and finishes what a crash interrupted: a
    /// database the system database records as dropped since it was created is removed,
    /// and one it records as created but missing (or left half made) is created.
    pub fn open(options: StoreOptions) -> Result<Self> {
        std::fs::create_dir_all(&options.path)?;
        let hlc = Hlc::with_clock(options.clock_offset_ms, options.max_clock_offset_ms);
        let store = Store {
            options,
            hlc: Arc::new(hlc),
            databases: RwLock::new(BTreeMap::new()),
            ddl: tokio::sync::Mutex::new(()),
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&store.options.path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        // The system database first: it records which databases should exist.
        names.sort_by_key(|name| (name != SYSTEM_DATABASE, name.clone()));
        let mut records = Records::default();
        for name in names {
            let path = store.options.path.join(&name);
            if path.join(DROPPED_MARKER).exists() {
                // Dropped before a restart; an environment still open in this process
                // (a store reopened in tests) keeps its emptied files for reuse.
                if !OPEN_ENVS
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&path)
                {
                    std::fs::remove_dir_all(&path)?;
                }
                continue;
            }
            let Some(db) = store.open_existing(&name, &records)? else {
                continue;
            };
            if name == SYSTEM_DATABASE {
                records = Records::read(&db)?;
            }
            store
                .databases
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name, db);
        }
        for (name, created) in &records.created {
            if *created > records.dropped(name) && store.database(name).is_err() {
                // Its creation was committed, but a crash came before it was carried out.
                store.materialise(name, *created)?;
            }
        }
        Ok(store)
    }

    /// The node's clock.
    pub fn hlc(&self) -> &Arc<Hlc> {
        &self.hlc
    }

    /// The workers the store's writers run as; the node's other workers join them, so
    /// that one registry lists and stops them all.
    pub fn workers(&self) -> &Workers {
        &self.options.workers
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.options.node_name
    }

    /// The named database, or [`StoreError::DatabaseNotFound`].
    pub fn database(&self, name: &str) -> Result<Arc<Database>> {
        self.databases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::DatabaseNotFound(name.to_owned()))
    }

    /// All open databases, by name.
    pub fn databases(&self) -> Vec<Arc<Database>> {
        self.databases
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Creates a database. Its creation, and the entry of the system database's log that
    /// announces it to the cluster, are one commit of the system database (created first
    /// if missing): once that commit is durable, the database exists, if need be from the
    /// next start on.
    pub async fn create_database(&self, name: &str) -> Result<Arc<Database>> {
        self.create(name, None).await
    }

    /// Creates a database that a peer created at `created` (its HLC), so that the
    /// creation keeps its place among drops of the same name; recorded in the system
    /// database, not logged. A creation stamped further ahead of this node's clock than
    /// the maximum offset is refused ([`StoreError::ClockAhead`]), as a log entry would be.
    pub async fn create_replicated_database(
        &self,
        name: &str,
        created: u64,
    ) -> Result<Arc<Database>> {
        self.hlc.check_remote(created)?;
        self.hlc.observe(created);
        self.create(name, Some(created)).await
    }

    async fn create(&self, name: &str, at: Option<u64>) -> Result<Arc<Database>> {
        validate_name("database", name)?;
        let _ddl = self.ddl.lock().await;
        if self.database(name).is_ok() {
            return Err(StoreError::DatabaseExists(name.to_owned()));
        }
        if name == SYSTEM_DATABASE {
            // It records the others, not itself.
            return self.materialise(name, at.unwrap_or_else(|| self.hlc.now()));
        }
        let change = SchemaChange::CreateDatabase {
            database: name.to_owned(),
        };
        self.record(change, at).await?;
        let system = self.database(SYSTEM_DATABASE)?;
        let created = Records::read(&system)?.created(name);
        self.materialise(name, created)
    }

    /// Drops a database: its drop, and the entry of the system database's log that
    /// announces it to the cluster, are one commit; then it is emptied and forgotten (from
    /// the next start on, if a crash comes first). The system database is never dropped.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        if name == SYSTEM_DATABASE {
            return Err(StoreError::Invalid(format!(
                "the '{SYSTEM_DATABASE}' database cannot be dropped"
            )));
        }
        let _ddl = self.ddl.lock().await;
        self.database(name)?;
        let change = SchemaChange::DropDatabase {
            database: name.to_owned(),
        };
        self.record(change, None).await?;
        self.discard(name).await
    }

    /// Records that a peer dropped database `name` at `at` (its HLC), in the system
    /// database, not logged, and drops the database here if it was created before then
    /// (one created since stays). Returns whether it was dropped here. A drop stamped
    /// further ahead of this node's clock than the maximum offset is refused
    /// ([`StoreError::ClockAhead`]).
    pub async fn drop_replicated_database(&self, name: &str, at: u64) -> Result<bool> {
        if name == SYSTEM_DATABASE {
            return Ok(false);
        }
        let _ddl = self.ddl.lock().await;
        let known = match self.database(SYSTEM_DATABASE) {
            Ok(system) => Records::read(&system)?.dropped(name),
            Err(_) => 0,
        };
        if known < at {
            let change = SchemaChange::DropDatabase {
                database: name.to_owned(),
            };
            self.record(change, Some(at)).await?;
        }
        match self.database(name) {
            Ok(db) if db.created() < at => self.discard(name).await.map(|()| true),
            _ => Ok(false),
        }
    }

    /// Commits a database's creation or drop in the system database (created first if
    /// missing): made here now (`at` is `None`), it is also logged, in the same commit,
    /// so that peers follow; made by a peer at `at`, it is only recorded. Either way a
    /// restart finishes it if a crash comes before it is carried out. The caller holds
    /// the DDL lock.
    pub(crate) async fn record(&self, change: SchemaChange, at: Option<u64>) -> Result<()> {
        let system = match self.database(SYSTEM_DATABASE) {
            Err(StoreError::DatabaseNotFound(_)) => {
                self.materialise(SYSTEM_DATABASE, self.hlc.now())?
            }
            other => other?,
        };
        let request = match at {
            None => Request::Database(change),
            Some(at) => Request::PeerDatabase(change, at),
        };
        system.request(request).await.map(drop)
    }

    /// Opens database `name` found on disk at start, unless `records` (of the system
    /// database) says that a crash interrupted its drop, which is then finished, or its
    /// creation, which the caller makes again.
    fn open_existing(&self, name: &str, records: &Records) -> Result<Option<Arc<Database>>> {
        let env = self.open_env(name)?;
        let trees = Trees::open(env)?;
        let created = {
            let txn = env.read_txn()?;
            meta_get_u64(&txn, &trees, CREATED_KEY)?
        };
        if created < records.dropped(name) {
            // As a drop does: marked, then emptied; the next start removes the folder.
            let marker = self.options.path.join(name).join(DROPPED_MARKER);
            std::fs::File::create(marker)?.sync_all()?;
            let mut txn = env.write_txn()?;
            trees.clear(&mut txn)?;
            txn.commit()?;
            return Ok(None);
        }
        if created < records.created(name) {
            return Ok(None); // half made
        }
        self.start_database(name, env, trees).map(Some)
    }

    /// Makes the environment of database `name`, created at `created`, and opens it. Any
    /// files left under its name (a dropped database's, a creation a crash interrupted)
    /// are emptied first.
    fn materialise(&self, name: &str, created: u64) -> Result<Arc<Database>> {
        let env = self.open_env(name)?;
        let trees = Trees::open(env)?;
        let mut txn = env.write_txn()?;
        trees.clear(&mut txn)?;
        meta_put_u64(&mut txn, &trees, CREATED_KEY, created)?;
        txn.commit()?;
        let marker = self.options.path.join(name).join(DROPPED_MARKER);
        if marker.exists() {
            std::fs::remove_file(marker)?;
        }
        let db = self.start_database(name, env, trees)?;
        self.databases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Empties database `name` durably and forgets it; the next start removes its folder.
    async fn discard(&self, name: &str) -> Result<()> {
        let db = self.database(name)?;
        self.databases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        // The marker first: whatever happens next, the next start removes the folder.
        let marker = self.options.path.join(name).join(DROPPED_MARKER);
        std::fs::File::create(&marker)?.sync_all()?;
        db.drop_all().await
    }

    /// Asks every writer to trim its log if due; call periodically.
    pub fn trim_logs(&self) {
        for db in self.databases() {
            db.nudge_trim();
        }
    }

    /// Finishes queued writes and stops every writer.
    pub async fn close(&self) {
        for db in self.databases() {
            db.shutdown().await;
        }
    }

    fn open_env(&self, name: &str) -> Result<&'static Env<WithoutTls>> {
        let path = self.options.path.join(name);
        std::fs::create_dir_all(&path)?;
        let mut envs = OPEN_ENVS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(env) = envs.get(&path) {
            return Ok(env);
        }
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options
            .map_size(map_with_reserve(self.options.map_size))
            .max_dbs(8)
            .max_readers(self.options.max_readers);
        #[allow(unsafe_code)]
        // Safety: the environment's files belong to this process alone (the node holds a
        // lock on its root folder) and are only touched through LMDB; no unsafe flags
        // such as NO_SYNC or NO_LOCK are set.
        let env = unsafe { options.open(&path)? };
        // Trees borrow their environment for as long as they live, which is the life of
        // the process; leaking one small handle per database gives them that.
        let env: &'static Env<WithoutTls> = Box::leak(Box::new(env));
        envs.insert(path, env);
        Ok(env)
    }

    fn start_database(
        &self,
        name: &str,
        env: &'static Env<WithoutTls>,
        trees: Trees,
    ) -> Result<Arc<Database>> {
        let catalog = Database::load_catalog(env, &trees)?;
        if let Some(last) = Database::last_committed(env, &trees)? {
            // Never hand out a timestamp below one already committed, even if the wall
            // clock went back while the node was down: commit times never decrease along
            // the log (a peer's entry may be stamped well before it was committed here).
            self.hlc.observe(last);
        }
        let (feed, _) = broadcast::channel(self.options.feed_capacity);
        let (head, _) = watch::channel(Database::last_seq(env, &trees)?);
        let writer = Writer {
            name: name.to_owned(),
            env,
            trees,
            catalog: Arc::new(RwLock::new(Arc::new(catalog))),
            feed,
            head,
            hlc: self.hlc.clone(),
            origin: self.options.node_name.clone(),
            retention: self.options.retention,
            max_batch: self.options.max_batch,
            capacity: self.options.map_size as u64,
            max_transaction_bytes: self.options.max_transaction_bytes,
            stats: Default::default(),
            dropped: Default::default(),
        };
        Database::start(DatabaseConfig {
            writer,
            queue: self.options.write_queue,
            workers: self.options.workers.clone(),
        })
    }
}

/// What the system database records of the other databases: when each was last created
/// and last dropped (absent: never, or before creations were recorded).
#[derive(Default)]
struct Records {
    created: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
}

impl Records {
    fn read(system: &Database) -> Result<Self> {
        let snapshot = system.snapshot()?;
        Ok(Records {
            created: snapshot.created_databases()?.into_iter().collect(),
            dropped: snapshot.dropped_databases()?.into_iter().collect(),
        })
    }

    fn created(&self, name: &str) -> u64 {
        self.created.get(name).copied().unwrap_or(0)
    }

    fn dropped(&self, name: &str) -> u64 {
        self.dropped.get(name).copied().unwrap_or(0)
    }
}
