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
    /// The storage map is full; raise `storage.map_size` and restart.
    #[error("storage is full: the database reached its configured map size")]
    MapFull,
    /// The store is closing or closed; the request was not applied.
    #[error("the store is shutting down")]
    Closed,
    /// The batch this request was part of failed to commit; nothing of it was written.
    #[error("commit failed: {0}")]
    CommitFailed(String),
    /// Stored bytes could not be decoded.
    #[error("corrupt {0} in storage")]
    Corrupt(String),
    /// An error from the storage engine.
    #[error("storage engine error: {0}")]
    Engine(heed::Error),
    /// A filesystem error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => StoreError::MapFull,
            other => StoreError::Engine(other),
        }
    }
}

/// Short for a result with a [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
