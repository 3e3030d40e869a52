//! The store's error type.

/// Everything that can go wrong in the store, with variants a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The named database does not exist.
    #[error("database '{0}' does not exist")]
    DatabaseNotFound(String),
    /// A database of that name already exists.
    #[error("database '{0}' already exists")]
    DatabaseExists(String),
    /// The named table does not exist.
    #[error("Table '{database}.{table}' does not exist")]
    TableNotFound {
        /// Database looked in.
        database: String,
        /// Table asked for.
        table: String,
    },
    /// A table of that name already exists.
    #[error("Table '{table}' already exists in '{database}'")]
    TableExists {
        /// Database looked in.
        database: String,
        /// Table asked for.
        table: String,
    },
    /// The attribute does not exist on the table.
    #[error("Attribute '{attribute}' does not exist on '{database}.{table}'")]
    AttributeNotFound {
        /// Database looked in.
        database: String,
        /// Table looked in.
        table: String,
        /// Attribute asked for.
        attribute: String,
    },
    /// The attribute already exists on the table.
    #[error("attribute '{attribute}' already exists in {database}.{table}")]
    AttributeExists {
        /// Database looked in.
        database: String,
        /// Table looked in.
        table: String,
        /// Attribute asked for.
        attribute: String,
    },
    /// The request is malformed (bad name, bad key, wrong type); nothing was written.
    #[error("{0}")]
    Invalid(String),
    /// A write would produce a transaction or a record larger than the store accepts
    /// (`StoreOptions::max_transaction_bytes`); nothing was written.
    #[error("{0}")]
    TooLarge(String),
    /// The database holds as much as its configured size allows; deletes still work.
    #[error(
        "storage is full: the database reached its configured size (storage.map_size_mb); \
         delete data or raise the setting and restart"
    )]
    MapFull,
    /// The file system has no room left for the write.
    #[error("storage is full: no space left on the disk")]
    DiskFull,
    /// The store is closing or closed; the request was not applied.
    #[error("the store is shutting down")]
    Closed,
    /// The batch this request was part of failed to commit; nothing of it was written.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// A remote timestamp is further ahead of this node's clock than the maximum offset;
    /// nothing of the batch was applied. Replication holds such entries back until the
    /// local clock has caught up.
    #[error(
        "a remote timestamp is {ahead_ms} ms ahead of this node's clock (at most {max_ms} ms allowed)"
    )]
    ClockAhead {
        /// How far ahead of the local wall clock the timestamp is.
        ahead_ms: u64,
        /// The maximum offset allowed.
        max_ms: u64,
    },
    /// Stored bytes could not be decoded.
    #[error("corrupt {0} in storage")]
    Corrupt(String),
    /// An error from the storage engine.
    #[error("storage engine error: {0}")]
    Engine(heed::Error),
    /// A filesystem error.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            StoreError::DiskFull
        } else {
            StoreError::Io(e)
        }
    }
}

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::MapFull,
            heed::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => {
                StoreError::DiskFull
            }
            other => StoreError::Engine(other),
        }
    }
}

/// Short for a result with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
