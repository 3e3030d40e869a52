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
use crate::trees::{Trees, meta_put_u64};
use crate::txlog::Retention;
use crate::writer::Writer;

/// Environments opened by this process, by path. LMDB allows one open per path and the
/// trees borrow their environment, so each stays open (and is reused) for the process's life.
static OPEN_ENVS: LazyLock<Mutex<HashMap<PathBuf, &'static Env<WithoutTls>>>> =
    LazyLock::new(Default::default);

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
    /// Opens every database under the root, removing those dropped before a crash.
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
        names.sort();
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
            let env = store.open_env(&name)?;
            let trees = Trees::open(env)?;
            let db = store.start_database(&name, env, trees)?;
            store
                .databases
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name, db);
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

    /// Creates a database.
    pub async fn create_database(&self, name: &str) -> Result<Arc<Database>> {
        self.create_database_at(name, self.hlc.now()).await
    }

    /// Creates a database that a peer created at `created` (its HLC), so that the
    /// creation keeps its place among drops of the same name. A creation stamped further
    /// ahead of this node's clock than the maximum offset is refused
    /// ([`StoreError::ClockAhead`]), as a log entry would be.
    pub async fn create_replicated_database(
        &self,
        name: &str,
        created: u64,
    ) -> Result<Arc<Database>> {
        self.hlc.check_remote(created)?;
        self.hlc.observe(created);
        self.create_database_at(name, created).await
    }

    async fn create_database_at(&self, name: &str, created: u64) -> Result<Arc<Database>> {
        validate_name("database", name)?;
        let _ddl = self.ddl.lock().await;
        if self.database(name).is_ok() {
            return Err(StoreError::DatabaseExists(name.to_owned()));
        }
        let env = self.open_env(name)?;
        let trees = Trees::open(env)?;
        let marker = self.options.path.join(name).join(DROPPED_MARKER);
        let reused = marker.exists();
        let mut txn = env.write_txn()?;
        if reused {
            // Reusing the environment of a dropped database: make sure it is empty.
            trees.clear(&mut txn)?;
        }
        meta_put_u64(&mut txn, &trees, CREATED_KEY, created)?;
        txn.commit()?;
        if reused {
            std::fs::remove_file(marker)?;
        }
        let db = self.start_database(name, env, trees)?;
        self.databases
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned(), db.clone());
        Ok(db)
    }

    /// Drops a database: empties it durably, then forgets it.
    pub async fn drop_database(&self, name: &str) -> Result<()> {
        let _ddl = self.ddl.lock().await;
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
