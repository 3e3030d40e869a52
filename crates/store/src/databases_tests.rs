//! Creating and dropping databases: one commit of the system database is the authority
//! for each change and for its announcement to the cluster, and a restart carries out
//! what a crash interrupted.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::{
    Database, LogEntry, Mode, SYSTEM_DATABASE, SchemaChange, Store, StoreError, StoreOptions,
    TableSpec, Write,
};

fn open(dir: &std::path::Path) -> Store {
    Store::open(StoreOptions::new(dir, "n1")).unwrap()
}

fn commits(db: &Database) -> u64 {
    db.stats().commits.load(Ordering::Acquire)
}

/// The system database's last log entry, with its sequence.
fn last_entry(system: &Database) -> (u64, LogEntry) {
    let snapshot = system.snapshot().unwrap();
    let last = snapshot.log(0).unwrap().last().unwrap().unwrap();
    (last.seq, last.entry)
}

fn recorded(system: &Database, name: &str) -> (Option<u64>, Option<u64>) {
    let snapshot = system.snapshot().unwrap();
    let find = |list: Vec<(String, u64)>| list.into_iter().find(|(n, _)| n == name);
    (
        find(snapshot.created_databases().unwrap()).map(|(_, at)| at),
        find(snapshot.dropped_databases().unwrap()).map(|(_, at)| at),
    )
}

async fn writable(db: &Database) {
    let spec = TableSpec {
        name: "dog".into(),
        primary_key: "id".into(),
        ..Default::default()
    };
    db.write(Write::CreateTable(spec), None).await.unwrap();
    let records = vec![json!({"id": 1}).as_object().unwrap().clone()];
    let write = Write::Records {
        table: "dog".into(),
        mode: Mode::Insert,
        records,
    };
    assert_eq!(db.write(write, None).await.unwrap().written.len(), 1);
}

/// A creation and its announcement cannot be separated by a crash: the log entry that
/// tells the cluster is written by the very commit of the system database that records
/// the creation, and the database is created at that entry's timestamp. Likewise drops.
#[tokio::test]
async fn a_database_change_and_its_announcement_are_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_database("dev").await.unwrap();
    let system = store.database(SYSTEM_DATABASE).unwrap();
    let (seq, _) = last_entry(&system);
    let before = commits(&system);

    let zoo = store.create_database("zoo").await.unwrap();
    assert_eq!(
        commits(&system),
        before + 1,
        "one commit of the system database"
    );
    let (last, entry) = last_entry(&system);
    assert_eq!(last, seq + 1, "one log entry");
    assert_eq!(
        entry.schema,
        Some(SchemaChange::CreateDatabase {
            database: "zoo".into()
        })
    );
    assert_eq!(entry.operation, "create_database");
    assert_eq!(entry.origin, "n1");
    assert_eq!(
        entry.hlc,
        zoo.created(),
        "created at its announcement's time"
    );
    assert_eq!(recorded(&system, "zoo"), (Some(entry.hlc), None));

    store.drop_database("zoo").await.unwrap();
    assert_eq!(commits(&system), before + 2);
    let (dropped, entry) = last_entry(&system);
    assert_eq!(dropped, seq + 2);
    assert_eq!(
        entry.schema,
        Some(SchemaChange::DropDatabase {
            database: "zoo".into()
        })
    );
    assert!(entry.hlc > zoo.created());
    assert_eq!(recorded(&system, "zoo").1, Some(entry.hlc));
    assert!(matches!(
        store.database("zoo"),
        Err(StoreError::DatabaseNotFound(_))
    ));
    assert!(matches!(
        store.drop_database(SYSTEM_DATABASE).await,
        Err(StoreError::Invalid(_))
    ));
    store.close().await;
}

/// A crash after the system database committed a creation or a drop, before the
/// database itself was made or removed, is finished by the next start.
#[tokio::test]
async fn a_start_carries_out_the_changes_a_crash_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let created;
    {
        let store = open(dir.path());
        writable(&store.create_database("dev").await.unwrap()).await;
        // What `create_database` and `drop_database` commit first, alone: the crash
        // comes before the environment is made, or the database emptied.
        let late = SchemaChange::CreateDatabase {
            database: "late".into(),
        };
        store.record(late, None).await.unwrap();
        let gone = SchemaChange::DropDatabase {
            database: "dev".into(),
        };
        store.record(gone, None).await.unwrap();
        assert!(store.database("late").is_err());
        assert!(store.database("dev").is_ok());
        let system = store.database(SYSTEM_DATABASE).unwrap();
        created = recorded(&system, "late").0.unwrap();
        store.close().await;
    }
    let store = open(dir.path());
    let late = store
        .database("late")
        .expect("the recorded creation was made");
    assert_eq!(late.created(), created);
    assert!(late.catalog().tables.is_empty());
    writable(&late).await;
    assert!(
        matches!(store.database("dev"), Err(StoreError::DatabaseNotFound(_))),
        "the recorded drop was made"
    );
    let again = store.create_database("dev").await.unwrap();
    assert!(again.catalog().tables.is_empty(), "re-created empty");
    writable(&again).await;
    store.close().await;

    let store = open(dir.path());
    let names: Vec<_> = store
        .databases()
        .iter()
        .map(|d| d.name().to_owned())
        .collect();
    assert_eq!(names, ["dev", "late", SYSTEM_DATABASE]);
    let dev = store.database("dev").unwrap();
    assert_eq!(dev.snapshot().unwrap().table("dog").unwrap().name, "dog");
    store.close().await;
}

/// What a peer created or dropped is recorded (so that a restart finishes it too) but
/// not logged again here, and applying it twice changes nothing.
#[tokio::test]
async fn replicated_changes_are_recorded_not_logged_and_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.create_database("dev").await.unwrap();
    let system = store.database(SYSTEM_DATABASE).unwrap();
    let (seq, _) = last_entry(&system);

    let at = store.hlc().now();
    let peers = store.create_replicated_database("peers", at).await.unwrap();
    assert_eq!(peers.created(), at);
    assert!(matches!(
        store.create_replicated_database("peers", at).await,
        Err(StoreError::DatabaseExists(_))
    ));
    assert_eq!(recorded(&system, "peers"), (Some(at), None));

    // A drop older than the creation leaves it; a later one removes it, once.
    assert!(
        !store
            .drop_replicated_database("peers", at - 1)
            .await
            .unwrap()
    );
    assert!(store.database("peers").is_ok());
    let later = store.hlc().now();
    assert!(
        store
            .drop_replicated_database("peers", later)
            .await
            .unwrap()
    );
    assert!(
        !store
            .drop_replicated_database("peers", later)
            .await
            .unwrap()
    );
    assert!(store.database("peers").is_err());
    assert_eq!(recorded(&system, "peers"), (Some(at), Some(later)));
    assert_eq!(last_entry(&system).0, seq, "nothing logged");
    store.close().await;

    let store = open(dir.path());
    assert!(store.database("peers").is_err(), "stays dropped");
    assert!(store.database("dev").is_ok());
    store.close().await;
}
