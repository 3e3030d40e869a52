//! Creating tables on behalf of clients, and their database with them if missing.

use std::sync::Arc;

use shoal_components::Tables;
use shoal_store::{Database, Store, StoreError, TableSpec, Write};

/// How often [`create_table`] re-creates a database dropped under it before giving up.
const RECREATE_ATTEMPTS: usize = 8;

/// The named database, created (and, by the store, announced) if missing.
async fn ensure(store: &Store, name: &str) -> Result<Arc<Database>, StoreError> {
    match store.database(name) {
        Err(StoreError::DatabaseNotFound(_)) => match store.create_database(name).await {
            Err(StoreError::DatabaseExists(_)) => store.database(name),
            other => other,
        },
        other => other,
    }
}

/// Creates a table, and its database if missing, as Harper's create_table does — also
/// when the database is dropped while this runs: finding it or writing to it then
/// answers "no such database", and the database is looked up (or created) again.
pub(crate) async fn create_table(
    store: &Store,
    database: &str,
    spec: TableSpec,
) -> Result<(), StoreError> {
    let mut attempts = 0;
    loop {
        let created = match ensure(store, database).await {
            Ok(db) => db.write(Write::CreateTable(spec.clone()), None).await,
            Err(e) => Err(e),
        };
        match created {
            Err(StoreError::DatabaseNotFound(_)) if attempts < RECREATE_ATTEMPTS => attempts += 1,
            result => return result.map(|_| ()),
        }
    }
}

/// The store, as components see it: the tables they declare are created like any other,
/// announced to the cluster.
pub struct StoreTables<'a>(pub &'a Store);

impl Tables for StoreTables<'_> {
    async fn ensure(&self, database: &str, spec: TableSpec) -> Result<(), StoreError> {
        let exists = self
            .0
            .database(database)
            .is_ok_and(|db| db.catalog().tables.contains_key(&spec.name));
        if exists {
            return Ok(());
        }
        match create_table(self.0, database, spec).await {
            Ok(()) | Err(StoreError::TableExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
