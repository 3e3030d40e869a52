//! Creating tables on behalf of clients, and their database with them if missing.

use std::sync::Arc;

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
