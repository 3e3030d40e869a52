//! Creating and dropping databases on behalf of clients. Each is announced in the system
//! database's log so that the rest of the cluster follows.

use std::sync::Arc;

use shoal_auth::SYSTEM_DATABASE;
use shoal_store::{Database, SchemaChange, Store, StoreError, Write};

/// Creates a database and announces it.
pub(crate) async fn create(store: &Store, name: &str) -> Result<Arc<Database>, StoreError> {
    let db = store.create_database(name).await?;
    announce(
        store,
        SchemaChange::CreateDatabase {
            database: name.to_owned(),
        },
    )
    .await?;
    Ok(db)
}

/// The named database, created (and announced) if missing.
pub(crate) async fn ensure(store: &Store, name: &str) -> Result<Arc<Database>, StoreError> {
    match store.database(name) {
        Err(StoreError::DatabaseNotFound(_)) => match create(store, name).await {
            Err(StoreError::DatabaseExists(_)) => store.database(name),
            other => other,
        },
        other => other,
    }
}

/// Drops a database and announces it.
pub(crate) async fn drop(store: &Store, name: &str) -> Result<(), StoreError> {
    store.drop_database(name).await?;
    announce(
        store,
        SchemaChange::DropDatabase {
            database: name.to_owned(),
        },
    )
    .await
}

async fn announce(store: &Store, change: SchemaChange) -> Result<(), StoreError> {
    let system = store.database(SYSTEM_DATABASE)?;
    system.write(Write::Announce(change), None).await?;
    Ok(())
}
