//! Behaviour of the store as a whole: group commit, write semantics, scans, the log.

use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::{Map, Value, json};

use crate::{Mode, Retention, Store, StoreError, StoreOptions, TableSpec, Write};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("object").clone()
}

fn records(table: &str, mode: Mode, recs: Vec<Value>) -> Write {
    Write::Records {
        table: table.into(),
        mode,
        records: recs.into_iter().map(obj).collect(),
    }
}

/// Creates table `dog`, keyed by `id`.
async fn create_dog(db: &crate::Database) {
    let spec = TableSpec {
        name: "dog".into(),
        primary_key: "id".into(),
        ..Default::default()
    };
    db.write(Write::CreateTable(spec), None).await.unwrap();
}

async fn store_with_dog(dir: &std::path::Path) -> (Store, Arc<crate::Database>) {
    let store = Store::open(StoreOptions::new(dir, "n1")).unwrap();
    let db = store.create_database("dev").await.unwrap();
    create_dog(&db).await;
    (store, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_answers_each_caller_with_its_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_with_dog(dir.path()).await;
    let before = db.stats().commits.load(Ordering::Relaxed);
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let db = db.clone();
            tokio::spawn(async move {
                // Every fourth request is bad and must fail alone.
                let table = if i % 4 == 3 { "nope" } else { "dog" };
                let w = records(table, Mode::Insert, vec![json!({"id": i, "n": i})]);
                (i, db.write(w, None).await)
            })
        })
        .collect();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        if i % 4 == 3 {
            assert!(
                matches!(result, Err(StoreError::TableNotFound { .. })),
                "{i}: {result:?}"
            );
        } else {
            assert_eq!(result.unwrap().written, vec![json!(i)]);
        }
    }
    let commits = db.stats().commits.load(Ordering::Relaxed) - before;
    assert!(commits < 400, "requests were batched: {commits} commits");
    let snap = db.snapshot().unwrap();
    let dog = snap.table("dog").unwrap();
    assert_eq!(snap.record_count(&dog).unwrap(), 300);
    assert!(snap.get(&dog, &json!(3)).unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn records_nest_at_most_max_depth_levels_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_with_dog(dir.path()).await;
    // The record is level 1; each wrapper adds one.
    let nested = |id: u32, depth: usize| {
        let inner = (2..=depth).fold(json!("leaf"), |v, i| {
            if i % 2 == 0 {
                json!([v])
            } else {
                json!({ "x": v })
            }
        });
        json!({"id": id, "deep": inner})
    };
    let deepest = nested(1, crate::MAX_DEPTH);
    db.write(records("dog", Mode::Insert, vec![deepest.clone()]), None)
        .await
        .unwrap();
    let refused = db
        .write(
            records("dog", Mode::Insert, vec![nested(2, crate::MAX_DEPTH + 1)]),
            None,
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(m)) if m.contains("deeper than 64 levels")),
        "{refused:?}"
    );
    let snap = db.snapshot().unwrap();
    let dog = snap.table("dog").unwrap();
    let back = snap
        .get(&dog, &json!(1))
        .unwrap()
        .unwrap()
        .value()
        .unwrap()
        .unwrap();
    assert_eq!(back["deep"], deepest["deep"]);
    assert!(snap.get(&dog, &json!(2)).unwrap().is_none());
    let logged = snap.log(0).unwrap().last().unwrap().unwrap();
    assert_eq!(
        logged.entry.changes[0].value.as_ref().unwrap()["deep"],
        deepest["deep"]
    );
    store.close().await;
}

#[tokio::test]
async fn open_snapshots_are_counted_until_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_with_dog(dir.path()).await;
    assert_eq!(db.open_snapshots(), 0);
    let (a, b) = (db.snapshot().unwrap(), db.snapshot().unwrap());
    assert_eq!(db.open_snapshots(), 2);
    drop(a);
    assert_eq!(db.open_snapshots(), 1);
    drop(b);
    assert_eq!(db.open_snapshots(), 0);
    store.close().await;
}

#[tokio::test]
async fn insert_update_upsert_delete_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_with_dog(dir.path()).await;
    let out = db
        .write(
            records(
                "dog",
                Mode::Insert,
                vec![
                    json!({"id": 1, "name": "Penny", "age": 5}),
                    json!({"id": 1}),
                    json!({"name": "anon"}),
                ],
            ),
            Some("admin"),
        )
        .await
        .unwrap();
    assert_eq!(out.written.len(), 2);
    assert_eq!(out.skipped, vec![json!(1)]);
    assert!(out.written[1].is_string(), "generated key");
    assert_eq!(
        out.new_attributes,
        vec!["name".to_string(), "age".to_string()]
    );

    let out = db
        .write(
            records(
                "dog",
                Mode::Update,
                vec![json!({"id": 1, "age": 6}), json!({"id": 2, "age": 1})],
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!((out.written, out.skipped), (vec![json!(1)], vec![json!(2)]));
    let err = db
        .write(records("dog", Mode::Update, vec![json!({"age": 1})]), None)
        .await;
    assert!(matches!(err, Err(StoreError::Invalid(_))));

    db.write(
        records(
            "dog",
            Mode::Upsert,
            vec![
                json!({"id": 1, "owner": "Kyle"}),
                json!({"id": 2, "name": "Ginger"}),
            ],
        ),
        None,
    )
    .await
    .unwrap();
    let snap = db.snapshot().unwrap();
    let dog = snap.table("dog").unwrap();
    let one = snap
        .get(&dog, &json!(1))
        .unwrap()
        .unwrap()
        .value()
        .unwrap()
        .unwrap();
    assert_eq!(one["name"], "Penny", "update and upsert merge");
    assert_eq!(
        (one["age"].clone(), one["owner"].clone()),
        (json!(6), json!("Kyle"))
    );
    assert!(one["__createdtime__"].as_f64().unwrap() < one["__updatedtime__"].as_f64().unwrap());
    drop(snap);

    let out = db
        .write(
            Write::Delete {
                table: "dog".into(),
                ids: vec![json!(2), json!(99)],
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (out.written, out.skipped),
        (vec![json!(2)], vec![json!(99)])
    );
    let snap = db.snapshot().unwrap();
    let tomb = snap.get(&dog, &json!(2)).unwrap().unwrap();
    assert!(tomb.json.is_none(), "delete leaves a tombstone");
    assert_eq!(snap.record_count(&dog).unwrap(), 2);

    let ops: Vec<String> = snap
        .log(0)
        .unwrap()
        .map(|c| c.unwrap().entry.operation)
        .collect();
    assert_eq!(
        ops,
        ["create_table", "insert", "update", "upsert", "delete"]
    );
    drop(snap);
    store.close().await;
}

#[tokio::test]
async fn index_scans_find_ranges_prefixes_and_array_elements() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = store_with_dog(dir.path()).await;
    let long = "x".repeat(500);
    db.write(
        records(
            "dog",
            Mode::Insert,
            vec![
                json!({"id": 1, "age": 3, "name": "Penny", "tags": ["a", "b"]}),
                json!({"id": 2, "age": 7, "name": "Pepper", "tags": ["b"]}),
                json!({"id": 3, "age": "old", "name": long.clone()}),
                json!({"id": 4, "age": 11.5, "name": "Kato"}),
            ],
        ),
        None,
    )
    .await
    .unwrap();
    let snap = db.snapshot().unwrap();
    let dog = snap.table("dog").unwrap();
    let keys = |it: Box<dyn Iterator<Item = crate::Result<Value>> + '_>| -> Vec<Value> {
        it.map(Result::unwrap).collect()
    };
    let n = |v: i64| json!(v);
    assert_eq!(
        keys(Box::new(
            snap.index_scan(&dog, "age", Bound::Included(&n(3)), Bound::Included(&n(7)))
                .unwrap()
        )),
        vec![n(1), n(2)]
    );
    assert_eq!(
        keys(Box::new(
            snap.index_scan(&dog, "age", Bound::Included(&n(5)), Bound::Unbounded)
                .unwrap()
        )),
        vec![n(2), n(4)],
        "numbers only"
    );
    assert_eq!(
        keys(Box::new(snap.index_prefix(&dog, "name", "Pe").unwrap())),
        vec![n(1), n(2)]
    );
    assert_eq!(
        keys(Box::new(
            snap.index_prefix(&dog, "name", &long[..300]).unwrap()
        )),
        vec![n(3)],
        "long values found by prefix"
    );
    let b = json!("b");
    assert_eq!(
        keys(Box::new(
            snap.index_scan(&dog, "tags", Bound::Included(&b), Bound::Included(&b))
                .unwrap()
        )),
        vec![n(1), n(2)]
    );
    let rows: Vec<Value> = snap
        .scan(&dog, Bound::Unbounded, Bound::Unbounded, true)
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(rows, vec![n(4), n(3), n(2), n(1)]);
    drop(snap);
    store.close().await;
}

/// Writes racing `drop_database` used to get `Closed` ("the store is shutting down") from
/// the dropped database's stopped writer; they either commit before the drop or are told
/// the database does not exist. Only a closing store answers `Closed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_racing_a_drop_are_not_told_the_store_is_closing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_dog(dir.path()).await;
    for round in 0..10 {
        let db = store.database("dev").unwrap();
        // Each writer keeps writing through its handle until the drop stops it.
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    loop {
                        let w = records("dog", Mode::Upsert, vec![json!({"id": i})]);
                        if let Err(e) = db.write(w, None).await {
                            return e;
                        }
                    }
                })
            })
            .collect();
        store.drop_database("dev").await.unwrap();
        for writer in writers {
            match writer.await.unwrap() {
                StoreError::DatabaseNotFound(name) => assert_eq!(name, "dev"),
                other => panic!("round {round}: a write racing the drop got {other:?}"),
            }
        }
        let db = store.create_database("dev").await.unwrap();
        create_dog(&db).await;
    }
    store.close().await;
    let db = store.database("dev").unwrap();
    let w = records("dog", Mode::Upsert, vec![json!({"id": 1})]);
    assert!(matches!(db.write(w, None).await, Err(StoreError::Closed)));
}

#[tokio::test]
async fn data_survives_reopen_and_dropped_databases_stay_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, db) = store_with_dog(dir.path()).await;
        db.write(records("dog", Mode::Insert, vec![json!({"id": "a"})]), None)
            .await
            .unwrap();
        let tmp = store.create_database("tmp").await.unwrap();
        tmp.write(
            Write::CreateTable(TableSpec {
                name: "t".into(),
                primary_key: "id".into(),
                ..Default::default()
            }),
            None,
        )
        .await
        .unwrap();
        store.drop_database("tmp").await.unwrap();
        assert!(matches!(
            tmp.write(Write::DropTable("t".into()), None).await,
            Err(StoreError::DatabaseNotFound(name)) if name == "tmp"
        ));
        let again = store.create_database("tmp").await.unwrap();
        assert!(
            again.catalog().tables.is_empty(),
            "re-created database starts empty"
        );
        store.drop_database("tmp").await.unwrap();
        store.close().await;
    }
    let store = Store::open(StoreOptions::new(dir.path(), "n1")).unwrap();
    let names: Vec<String> = store
        .databases()
        .iter()
        .map(|d| d.name().to_owned())
        .collect();
    assert_eq!(
        names,
        ["dev", "system"],
        "the system database records the others"
    );
    let db = store.database("dev").unwrap();
    let snap = db.snapshot().unwrap();
    let dog = snap.table("dog").unwrap();
    assert!(snap.get(&dog, &json!("a")).unwrap().unwrap().json.is_some());
    let last = snap.log(0).unwrap().last().unwrap().unwrap().entry.hlc;
    assert!(store.hlc().now() > last, "clock resumes above the log");
    drop(snap);
    store.close().await;
}

/// Age is counted from when this node committed an entry: a peer's entry stamped long
/// ago (it arrived late) stays in the log for the retention period, for the peers that
/// read it from here, instead of going at the next trim.
#[tokio::test]
async fn the_log_keeps_a_late_peer_entry_for_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), "a");
    options.retention = Retention {
        max_age_ms: 3_600_000,
        max_bytes: 400,
    };
    let store = Store::open(options).unwrap();
    let db = store.create_database("dev").await.unwrap();
    create_dog(&db).await;
    // Local entries the size bound removes, so that a trim reaches the peer's entry.
    for i in 0..5 {
        let w = records(
            "dog",
            Mode::Insert,
            vec![json!({"id": i, "pad": "p".repeat(500)})],
        );
        db.write(w, None).await.unwrap();
    }
    let two_hours_ago = (crate::wall_ms() - 7_200_000) << 16;
    let late = crate::Committed {
        seq: 1,
        entry: crate::LogEntry {
            hlc: two_hours_ago,
            origin: "b".into(),
            origin_seq: 1,
            user: None,
            operation: "insert".into(),
            changes: vec![crate::Change {
                table: "dog".into(),
                key: json!("late"),
                kind: crate::ChangeKind::Put,
                value: Some(json!({"id": "late"})),
            }],
            schema: None,
        },
    };
    let batch = crate::RemoteBatch {
        peer: "b".into(),
        entries: vec![late],
        up_to: 1,
    };
    db.write(Write::Apply(batch), None).await.unwrap();
    let last = db.snapshot().unwrap().last_seq().unwrap();
    // Trims happen at most once a second; ask until one has run.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.snapshot().unwrap().first_seq().unwrap() == Some(1) {
        assert!(std::time::Instant::now() < deadline, "log never trimmed");
        store.trim_logs();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let kept: Vec<u64> = db
        .snapshot()
        .unwrap()
        .log(0)
        .unwrap()
        .map(|c| c.unwrap().seq)
        .collect();
    assert_eq!(
        kept,
        vec![last],
        "the late entry was trimmed as if committed 2 h ago"
    );
    store.close().await;
}

#[tokio::test]
async fn log_is_trimmed_to_its_size_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), "n1");
    options.retention = Retention {
        max_age_ms: u64::MAX,
        max_bytes: 2_000,
    };
    let store = Store::open(options).unwrap();
    let db = store.create_database("dev").await.unwrap();
    create_dog(&db).await;
    for i in 0..100 {
        db.write(
            records(
                "dog",
                Mode::Insert,
                vec![json!({"id": i, "pad": "p".repeat(50)})],
            ),
            None,
        )
        .await
        .unwrap();
    }
    // Trims happen at most once a second, so one may have run before the last writes
    // (slow disks): ask until one has run after them.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let snap = db.snapshot().unwrap();
        let bytes: usize = snap
            .log(0)
            .unwrap()
            .map(|c| c.unwrap().entry.encode(0).unwrap().len())
            .sum();
        if bytes <= 2_000 {
            let first = snap.log(0).unwrap().next().unwrap().unwrap().seq;
            assert!(first > 1, "the oldest entries went");
            assert_eq!(
                snap.last_seq().unwrap(),
                101,
                "create_table and 100 inserts"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log never trimmed to its bound: {bytes} bytes retained"
        );
        store.trim_logs();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    store.close().await;
}

/// Ships `from`'s log (after `to`'s cursor for it) to `to`, as a sender would.
async fn ship(
    from: &crate::Database,
    from_name: &str,
    to: &crate::Database,
    to_name: &str,
) -> usize {
    let cursor = to.snapshot().unwrap().cursor(from_name).unwrap();
    let snap = from.snapshot().unwrap();
    let entries: Vec<crate::Committed> = snap
        .log(cursor + 1)
        .unwrap()
        .map(Result::unwrap)
        .filter(|c| c.entry.origin != to_name)
        .collect();
    let up_to = snap.last_seq().unwrap();
    drop(snap);
    let batch = crate::RemoteBatch {
        peer: from_name.into(),
        entries,
        up_to,
    };
    to.write(Write::Apply(batch), None).await.unwrap().applied
}

async fn node(dir: &std::path::Path, name: &str) -> (Store, Arc<crate::Database>) {
    let store = Store::open(StoreOptions::new(dir.join(name), name)).unwrap();
    let db = store.create_database("dev").await.unwrap();
    (store, db)
}

/// The log seeks by this node's commit time, which a peer's entry takes when it is
/// applied here, whatever its own (older) timestamp.
#[tokio::test]
async fn the_log_is_searched_by_local_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store_b, b) = node(dir.path(), "b").await;
    create_dog(&b).await;
    b.write(
        records("dog", Mode::Insert, vec![json!({"id": "from-b"})]),
        None,
    )
    .await
    .unwrap();
    let (store_a, a) = node(dir.path(), "a").await;
    assert_eq!(
        a.snapshot().unwrap().first_seq_at(0.0).unwrap(),
        None,
        "empty log"
    );
    create_dog(&a).await;
    for i in 0..5 {
        a.write(records("dog", Mode::Insert, vec![json!({"id": i})]), None)
            .await
            .unwrap();
    }
    ship(&b, "b", &a, "a").await;
    let committed = commit_times(&a);
    assert!(
        committed.windows(2).all(|w| w[0].1 <= w[1].1),
        "{committed:?}"
    );
    let snap = a.snapshot().unwrap();
    let entries: Vec<crate::Committed> = snap.log(0).unwrap().map(Result::unwrap).collect();
    let remote = entries.iter().find(|c| c.entry.origin == "b").unwrap();
    let last_local = entries.iter().rfind(|c| c.entry.origin == "a").unwrap();
    assert!(remote.seq > last_local.seq);
    assert!(
        remote.entry.timestamp() < last_local.entry.timestamp(),
        "b wrote before a: {entries:?}"
    );
    // After a's last local write: b's entries, committed here after it.
    let after = last_local.entry.timestamp() + 0.0005;
    assert_eq!(snap.first_seq_at(after).unwrap(), Some(remote.seq));
    let model = |ms: f64| {
        committed
            .iter()
            .find(|(_, c)| crate::hlc::to_ms(*c) >= ms)
            .map(|(seq, _)| *seq)
    };
    for (_, c) in &committed {
        let ms = crate::hlc::to_ms(*c);
        for probe in [ms - 0.0005, ms, ms + 0.0005] {
            assert_eq!(snap.first_seq_at(probe).unwrap(), model(probe), "{probe}");
        }
    }
    assert_eq!(snap.first_seq_at(0.0).unwrap(), Some(1));
    assert_eq!(snap.first_seq_at(f64::MAX).unwrap(), None);
    for (c, (_, at)) in entries.iter().zip(&committed) {
        assert!(*at >= c.entry.hlc, "committed before its own time: {c:?}");
    }
    drop(snap);

    // A peer whose clock runs ahead (within the accepted offset): its entry counts as
    // committed at its own time, so a search from just before that time finds it.
    let ahead = crate::hlc::wall_ms() + 30_000;
    let mut entry = entries
        .iter()
        .find(|c| c.entry.origin == "b" && !c.entry.changes.is_empty())
        .unwrap()
        .clone();
    entry.seq = 99;
    entry.entry.hlc = ahead << 16;
    entry.entry.origin_seq = 99;
    entry.entry.changes[0].key = json!("ahead");
    if let Some(Value::Object(v)) = &mut entry.entry.changes[0].value {
        v.insert("id".into(), json!("ahead"));
    }
    let batch = crate::RemoteBatch {
        peer: "b".into(),
        entries: vec![entry],
        up_to: 99,
    };
    a.write(Write::Apply(batch), None).await.unwrap();
    let snap = a.snapshot().unwrap();
    let last = snap.last_seq().unwrap();
    assert_eq!(snap.first_seq_at(ahead as f64 - 1.0).unwrap(), Some(last));
    drop(snap);
    store_a.close().await;
    store_b.close().await;
}

/// Every retained log entry of `db`: its sequence and when this node committed it.
fn commit_times(db: &crate::Database) -> Vec<(u64, u64)> {
    let snap = db.snapshot().unwrap();
    snap.trees
        .log
        .iter(&snap.txn)
        .unwrap()
        .map(|item| {
            let (k, v) = item.unwrap();
            (
                u64::from_be_bytes(k.try_into().unwrap()),
                crate::txlog::committed_at(v).unwrap(),
            )
        })
        .collect()
}

/// A node restarted with its last entry a peer's, stamped well before this node committed
/// it, resumes its clock after that commit time (not after the entry's own, older time), so
/// commit times keep never decreasing along the log even if the wall clock went back.
#[tokio::test]
async fn a_restart_resumes_the_clock_after_the_last_commit_time() {
    let dir = tempfile::tempdir().unwrap();
    let (sb, b) = node(dir.path(), "b").await;
    create_dog(&b).await;
    b.write(records("dog", Mode::Insert, vec![json!({"id": 1})]), None)
        .await
        .unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    // a's clock runs 10 s ahead of the wall (within the accepted offset) when b's entries
    // arrive; after the restart the wall clock is where it was, 10 s behind that.
    sa.hlc().observe(sb.hlc().now() + (10_000 << 16));
    ship(&b, "b", &a, "a").await;
    let before = commit_times(&a);
    let (_, last) = *before.last().unwrap();
    let newest_own = a
        .snapshot()
        .unwrap()
        .log(0)
        .unwrap()
        .map(|c| c.unwrap().entry.hlc)
        .max();
    assert!(
        newest_own < Some(last),
        "b's entries were committed after their time"
    );
    drop(a);
    sa.close().await;

    let sa = Store::open(StoreOptions::new(dir.path().join("a"), "a")).unwrap();
    let a = sa.database("dev").unwrap();
    a.write(records("dog", Mode::Insert, vec![json!({"id": 2})]), None)
        .await
        .unwrap();
    let after = commit_times(&a);
    assert!(
        after.windows(2).all(|w| w[0].1 <= w[1].1),
        "commit times went back after the restart: {after:?}"
    );
    drop(a);
    sa.close().await;
    sb.close().await;
}

fn dump(db: &crate::Database) -> Vec<(Value, Option<Value>)> {
    let snap = db.snapshot().unwrap();
    let Some(t) = snap.catalog().tables.get("dog").cloned() else {
        return Vec::new();
    };
    snap.versions(&t, None)
        .unwrap()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k, v.value().unwrap().map(Value::Object))
        })
        .collect()
}

#[tokio::test]
async fn remote_batches_converge_with_lww_and_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    let (sb, b) = node(dir.path(), "b").await;
    create_dog(&a).await;
    a.write(
        records(
            "dog",
            Mode::Insert,
            vec![json!({"id": 1, "n": "a1"}), json!({"id": 2, "n": "a2"})],
        ),
        None,
    )
    .await
    .unwrap();
    assert_eq!(ship(&a, "a", &b, "b").await, 2, "schema entry and insert");
    assert_eq!(ship(&a, "a", &b, "b").await, 0, "cursor: nothing twice");
    // Concurrent writes to the same key on both sides: the greater (hlc, node) wins everywhere.
    let tb = b
        .write(
            records("dog", Mode::Upsert, vec![json!({"id": 1, "n": "b1"})]),
            None,
        )
        .await
        .unwrap()
        .txn_time;
    let ta = a
        .write(
            records("dog", Mode::Upsert, vec![json!({"id": 1, "n": "a1-later"})]),
            None,
        )
        .await
        .unwrap()
        .txn_time;
    b.write(
        Write::Delete {
            table: "dog".into(),
            ids: vec![json!(2)],
        },
        None,
    )
    .await
    .unwrap();
    ship(&a, "a", &b, "b").await;
    ship(&b, "b", &a, "a").await;
    assert_eq!(dump(&a), dump(&b));
    let one = dump(&a)
        .into_iter()
        .find(|(k, _)| *k == json!(1))
        .unwrap()
        .1
        .unwrap();
    let winner = if (ta, "a") > (tb, "b") {
        "a1-later"
    } else {
        "b1"
    };
    assert_eq!(one["n"], winner);
    assert!(
        dump(&a).iter().any(|(k, v)| *k == json!(2) && v.is_none()),
        "delete replicated as tombstone"
    );
    // Replaying a batch already applied (a reconnect that lost its cursor) changes nothing.
    let all: Vec<crate::Committed> = a
        .snapshot()
        .unwrap()
        .log(0)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let before = dump(&b);
    let batch = crate::RemoteBatch {
        peer: "a".into(),
        entries: all,
        up_to: 0,
    };
    assert_eq!(b.write(Write::Apply(batch), None).await.unwrap().applied, 0);
    assert_eq!(dump(&b), before);
    let count = |db: &crate::Database| {
        let s = db.snapshot().unwrap();
        let t = s.table("dog").unwrap();
        s.record_count(&t).unwrap()
    };
    assert_eq!((count(&a), count(&b)), (1, 1));
    sa.close().await;
    sb.close().await;
}

#[tokio::test]
async fn relayed_entries_keep_their_origin_and_converge_a_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    let (sb, b) = node(dir.path(), "b").await;
    let (sc, c) = node(dir.path(), "c").await;
    create_dog(&a).await;
    a.write(records("dog", Mode::Insert, vec![json!({"id": "x"})]), None)
        .await
        .unwrap();
    // a -> b -> c, no a -> c link.
    ship(&a, "a", &b, "b").await;
    ship(&b, "b", &c, "c").await;
    c.write(records("dog", Mode::Upsert, vec![json!({"id": "y"})]), None)
        .await
        .unwrap();
    ship(&c, "c", &b, "b").await;
    ship(&b, "b", &a, "a").await;
    assert_eq!(dump(&a), dump(&c));
    assert_eq!(dump(&a).len(), 2);
    let origins: Vec<String> = c
        .snapshot()
        .unwrap()
        .log(0)
        .unwrap()
        .map(|e| e.unwrap().entry.origin)
        .collect();
    assert!(
        origins.contains(&"a".to_string()),
        "relayed entries keep their origin: {origins:?}"
    );
    // b relaying a's entries back to a is a no-op.
    assert_eq!(ship(&b, "b", &a, "a").await, 0);
    for s in [sa, sb, sc] {
        s.close().await;
    }
}

#[tokio::test]
async fn full_copy_merges_and_never_wipes() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    let (sb, b) = node(dir.path(), "b").await;
    for db in [&a, &b] {
        create_dog(db).await;
    }
    b.write(
        records(
            "dog",
            Mode::Insert,
            vec![json!({"id": "only-b"}), json!({"id": "both", "n": "old"})],
        ),
        None,
    )
    .await
    .unwrap();
    // a's write comes after b's: a has seen b's clock.
    sa.hlc().observe(sb.hlc().now());
    a.write(
        records(
            "dog",
            Mode::Insert,
            vec![json!({"id": "both", "n": "new"}), json!({"id": "gone"})],
        ),
        None,
    )
    .await
    .unwrap();
    a.write(
        Write::Delete {
            table: "dog".into(),
            ids: vec![json!("gone")],
        },
        None,
    )
    .await
    .unwrap();
    let rows = copy_rows(&a);
    let snap = a.snapshot().unwrap();
    let progress = crate::CopyProgress {
        seq: snap.last_seq().unwrap(),
        vv: snap.version_vector("a").unwrap(),
        ..Default::default()
    };
    drop(snap);
    let chunk = crate::CopyChunk {
        peer: "a".into(),
        table: "dog".into(),
        rows,
        progress,
        done: true,
        ..Default::default()
    };
    b.write(Write::Merge(Box::new(chunk)), None).await.unwrap();
    let got = dump(&b);
    assert!(
        got.iter()
            .any(|(k, v)| *k == json!("only-b") && v.is_some()),
        "rows only b had are kept"
    );
    assert!(
        got.iter()
            .any(|(k, v)| *k == json!("both") && v.as_ref().unwrap()["n"] == "new")
    );
    assert!(
        got.iter().any(|(k, v)| *k == json!("gone") && v.is_none()),
        "tombstones copied"
    );
    let snap = b.snapshot().unwrap();
    assert_eq!(
        snap.cursor("a").unwrap(),
        a.snapshot().unwrap().last_seq().unwrap()
    );
    assert!(snap.copy_progress("a").unwrap().is_none());
    drop(snap);
    assert_eq!(ship(&a, "a", &b, "b").await, 0, "the copy covered the log");
    sa.close().await;
    sb.close().await;
}

/// A database that holds its configured size refuses writes that grow it with `MapFull`,
/// keeps answering reads, still takes deletes, and takes writes again once they made room.
#[tokio::test]
async fn a_full_database_refuses_growth_but_deletes_make_room() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), "n1");
    options.map_size = 1 << 20;
    let store = Store::open(options).unwrap();
    // The system database is the one filled: it must still take the drop of another.
    store.create_database("other").await.unwrap();
    let db = store.database(crate::SYSTEM_DATABASE).unwrap();
    create_dog(&db).await;
    let pad = "x".repeat(500);
    let mut stored = 0;
    loop {
        let w = records("dog", Mode::Insert, vec![json!({"id": stored, "pad": pad})]);
        match db.write(w, None).await {
            Ok(_) => stored += 1,
            Err(StoreError::MapFull) => break,
            Err(e) => panic!("expected MapFull, got {e:?}"),
        }
        assert!(stored < 10_000, "the size limit was never reached");
    }
    assert!(stored > 100, "only {stored} records fit in 1 MiB");
    let snapshot = db.snapshot().unwrap();
    let dog = snapshot.table("dog").unwrap();
    assert_eq!(snapshot.record_count(&dog).unwrap(), stored as u64);
    assert!(
        snapshot
            .get(&dog, &json!(0))
            .unwrap()
            .unwrap()
            .json
            .is_some()
    );
    drop(snapshot);
    // A database's drop is recorded and announced in this (full) one's log: refusing it
    // would leave a database that cannot be dropped.
    store
        .drop_database("other")
        .await
        .expect("a drop's record and announcement run on the reserve");
    assert!(store.database("other").is_err());
    let ids = (0..stored / 2).map(Value::from).collect();
    let deleted = db
        .write(
            Write::Delete {
                table: "dog".into(),
                ids,
            },
            None,
        )
        .await
        .expect("deletes run on the reserve");
    assert_eq!(deleted.written.len(), stored / 2);
    let w = records("dog", Mode::Insert, vec![json!({"id": -1, "pad": pad})]);
    db.write(w, None).await.expect("room was made");
    store.close().await;
}

#[tokio::test]
async fn timestamps_beyond_the_maximum_offset_are_refused_whole() {
    const DAY_MS: i64 = 86_400_000;
    let dir = tempfile::tempdir().unwrap();
    let mut ahead = StoreOptions::new(dir.path().join("ahead"), "ahead");
    ahead.clock_offset_ms = DAY_MS;
    let sa = Store::open(ahead).unwrap();
    let a = sa.create_database("dev").await.unwrap();
    let (sb, b) = node(dir.path(), "b").await;
    create_dog(&b).await;
    create_dog(&a).await;
    a.write(
        records("dog", Mode::Insert, vec![json!({"id": 1, "n": "future"})]),
        None,
    )
    .await
    .unwrap();

    // The log path: the batch is refused as a whole, cursor and clock untouched.
    let snap = a.snapshot().unwrap();
    let entries: Vec<crate::Committed> = snap.log(1).unwrap().map(Result::unwrap).collect();
    let up_to = snap.last_seq().unwrap();
    drop(snap);
    let batch = crate::RemoteBatch {
        peer: "ahead".into(),
        entries,
        up_to,
    };
    match b.write(Write::Apply(batch), None).await {
        Err(StoreError::ClockAhead { ahead_ms, max_ms }) => {
            assert!(ahead_ms >= DAY_MS as u64 - 60_000, "{ahead_ms}");
            assert_eq!(max_ms, crate::DEFAULT_MAX_OFFSET_MS);
        }
        other => panic!("expected ClockAhead, got {other:?}"),
    }
    assert_eq!(b.snapshot().unwrap().cursor("ahead").unwrap(), 0);
    assert!(dump(&b).is_empty());
    let now = b
        .write(records("dog", Mode::Insert, vec![json!({"id": 2})]), None)
        .await
        .unwrap()
        .txn_time;
    assert!(
        (now - crate::wall_ms() as f64).abs() < 60_000.0,
        "b's clock was not dragged ahead: {now}"
    );

    // The full-copy path: a chunk holding a future row is refused as a whole.
    let chunk = crate::CopyChunk {
        peer: "ahead".into(),
        table: "dog".into(),
        rows: copy_rows(&a),
        ..Default::default()
    };
    assert!(matches!(
        b.write(Write::Merge(Box::new(chunk)), None).await,
        Err(StoreError::ClockAhead { .. })
    ));
    assert_eq!(dump(&b).len(), 1, "only b's own record");
    assert!(
        b.snapshot()
            .unwrap()
            .copy_progress("ahead")
            .unwrap()
            .is_none()
    );
    sa.close().await;
    sb.close().await;
}

/// Timestamps a peer brings in other than its log entries and rows (a copy's drop markers
/// and table creations, a reported database drop, a replicated database's creation) are
/// bounded alike: one a day ahead is refused and does not drag this node's clock.
#[tokio::test]
async fn every_timestamp_a_peer_brings_in_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (sb, b) = node(dir.path(), "b").await;
    let day_ahead = (crate::wall_ms() + 86_400_000) << 16;
    let refused = |result: crate::Result<()>, what: &str| {
        assert!(
            matches!(result, Err(StoreError::ClockAhead { .. })),
            "{what}: {result:?}"
        );
        let now = crate::hlc::to_ms(sb.hlc().now());
        assert!(
            (now - crate::wall_ms() as f64).abs() < 60_000.0,
            "{what} dragged the clock to {now}"
        );
    };
    let copy = |tables, dropped| crate::CopyChunk {
        peer: "ahead".into(),
        tables,
        dropped,
        table: "dog".into(),
        ..Default::default()
    };
    let chunk = copy(Vec::new(), vec![("dog".to_owned(), day_ahead)]);
    refused(
        b.write(Write::Merge(Box::new(chunk)), None).await.map(drop),
        "a copied drop marker",
    );
    let created = crate::SchemaChange::CreateTable {
        table: "dog".into(),
        primary_key: "id".into(),
        attributes: Vec::new(),
        replicate: true,
        created: day_ahead,
    };
    let chunk = copy(vec![created], Vec::new());
    refused(
        b.write(Write::Merge(Box::new(chunk)), None).await.map(drop),
        "a copied table creation",
    );
    assert!(b.snapshot().unwrap().table("dog").is_err());
    refused(
        sb.drop_replicated_database("gone", day_ahead)
            .await
            .map(drop),
        "a reported database drop",
    );
    assert!(
        sb.database(crate::SYSTEM_DATABASE)
            .unwrap()
            .snapshot()
            .unwrap()
            .dropped_databases()
            .unwrap()
            .is_empty()
    );
    refused(
        sb.create_replicated_database("later", day_ahead)
            .await
            .map(drop),
        "a replicated database creation",
    );
    assert!(sb.database("later").is_err());
    sb.close().await;
}

#[tokio::test]
async fn writes_larger_than_the_transaction_limit_are_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), "n1");
    options.max_transaction_bytes = 4096;
    let store = Store::open(options).unwrap();
    let db = store.create_database("dev").await.unwrap();
    create_dog(&db).await;
    let big = "x".repeat(5000);
    let refused = db
        .write(
            records(
                "dog",
                Mode::Insert,
                vec![json!({"id": 1}), json!({"id": 2, "big": big})],
            ),
            None,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "{refused:?}"
    );
    // Many small records whose transaction passes the limit together.
    let many: Vec<Value> = (0..200)
        .map(|i| json!({"id": i, "n": "0123456789"}))
        .collect();
    let refused = db.write(records("dog", Mode::Insert, many), None).await;
    assert!(
        matches!(refused, Err(StoreError::TooLarge(_))),
        "{refused:?}"
    );
    assert!(dump(&db).is_empty(), "nothing of a refused write is kept");
    // A record grown by patches, each small, may not pass the limit either.
    db.write(records("dog", Mode::Insert, vec![json!({"id": 1})]), None)
        .await
        .unwrap();
    let chunk = "y".repeat(1500);
    let mut refused = None;
    for i in 0..4 {
        let patch = json!({"id": 1, format!("a{i}"): chunk});
        if let Err(e) = db
            .write(records("dog", Mode::Update, vec![patch]), None)
            .await
        {
            refused = Some(e);
            break;
        }
    }
    assert!(
        matches!(refused, Some(StoreError::TooLarge(_))),
        "{refused:?}"
    );
    let kept = dump(&db);
    assert_eq!(kept.len(), 1);
    assert!(kept[0].1.as_ref().unwrap().as_object().unwrap().len() < 6);
    store.close().await;
}

/// Every stored version of `db`'s `dog` table as copy rows.
fn copy_rows(db: &crate::Database) -> Vec<crate::CopyRow> {
    let snap = db.snapshot().unwrap();
    let table = snap.table("dog").unwrap();
    snap.versions(&table, None)
        .unwrap()
        .map(|r| {
            let (key, v) = r.unwrap();
            crate::CopyRow {
                key,
                version: v.bytes().to_vec(),
            }
        })
        .collect()
}

/// A whole-database copy chunk of `from` as a sender builds it: its tables, its drop
/// markers, the rows of `dog` if it has the table, done.
fn whole_copy(from: &crate::Database, from_name: &str) -> crate::CopyChunk {
    let snap = from.snapshot().unwrap();
    let catalog = snap.catalog().clone();
    let tables = catalog
        .tables
        .values()
        .map(|t| crate::SchemaChange::CreateTable {
            table: t.name.clone(),
            primary_key: t.primary_key.clone(),
            attributes: Vec::new(),
            replicate: true,
            created: t.created,
        })
        .collect();
    let progress = crate::CopyProgress {
        seq: snap.last_seq().unwrap(),
        vv: snap.version_vector(from_name).unwrap(),
        ..Default::default()
    };
    drop(snap);
    let rows = if catalog.tables.contains_key("dog") {
        copy_rows(from)
    } else {
        Vec::new()
    };
    crate::CopyChunk {
        peer: from_name.into(),
        tables,
        dropped: catalog.dropped.clone().into_iter().collect(),
        table: "dog".into(),
        rows,
        progress,
        done: true,
    }
}

#[tokio::test]
async fn dropped_tables_stay_dropped_through_copies_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    let (sb, b) = node(dir.path(), "b").await;
    create_dog(&a).await;
    a.write(
        records("dog", Mode::Insert, vec![json!({"id": "old"})]),
        None,
    )
    .await
    .unwrap();
    ship(&a, "a", &b, "b").await;
    assert_eq!(dump(&b).len(), 1);
    // b is away; a drops the table. b's copy (and b's log) still hold it.
    sa.hlc().observe(sb.hlc().now());
    a.write(Write::DropTable("dog".into()), None).await.unwrap();
    let stale = whole_copy(&b, "b");
    a.write(Write::Merge(Box::new(stale.clone())), None)
        .await
        .unwrap();
    assert!(
        a.snapshot().unwrap().table("dog").is_err(),
        "a stale copy does not re-create a dropped table"
    );
    // b's log (table creation and rows, from a's log) replayed to a changes nothing.
    let replay: Vec<crate::Committed> = b
        .snapshot()
        .unwrap()
        .log(0)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let batch = crate::RemoteBatch {
        peer: "b".into(),
        entries: replay
            .into_iter()
            .map(|mut c| {
                // As if b had originated them: a's version vector must not skip them.
                c.entry.origin = "b".into();
                c
            })
            .collect(),
        up_to: 10,
    };
    a.write(Write::Apply(batch), None).await.unwrap();
    assert!(a.snapshot().unwrap().table("dog").is_err());
    // b gets a's copy: it drops the table a dropped.
    b.write(Write::Merge(Box::new(whole_copy(&a, "a"))), None)
        .await
        .unwrap();
    assert!(
        b.snapshot().unwrap().table("dog").is_err(),
        "b drops it too"
    );
    // Re-creating the name afterwards works, and the old rows stay out of the new table.
    create_dog(&a).await;
    a.write(
        records("dog", Mode::Insert, vec![json!({"id": "new"})]),
        None,
    )
    .await
    .unwrap();
    a.write(Write::Merge(Box::new(stale)), None).await.unwrap();
    let keys: Vec<Value> = dump(&a).into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![json!("new")], "old rows never come back");
    b.write(Write::Merge(Box::new(whole_copy(&a, "a"))), None)
        .await
        .unwrap();
    assert_eq!(dump(&b), dump(&a), "the new table reaches the stale node");
    sa.close().await;
    sb.close().await;
}

#[tokio::test]
async fn a_completed_copy_sets_the_log_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (sa, a) = node(dir.path(), "a").await;
    let (sb, b) = node(dir.path(), "b").await;
    create_dog(&a).await;
    a.write(records("dog", Mode::Insert, vec![json!({"id": 1})]), None)
        .await
        .unwrap();
    create_dog(&b).await;
    b.write(records("dog", Mode::Insert, vec![json!({"id": 2})]), None)
        .await
        .unwrap();
    let snap = b.snapshot().unwrap();
    assert_eq!(snap.log_floor().unwrap(), 0);
    assert!(snap.floor_vv().unwrap().is_empty());
    let before = snap.last_seq().unwrap();
    drop(snap);
    let copy = whole_copy(&a, "a");
    let vv = copy.progress.vv.clone();
    b.write(Write::Merge(Box::new(copy)), None).await.unwrap();
    let snap = b.snapshot().unwrap();
    assert_eq!(snap.log_floor().unwrap(), before, "no entry logs the copy");
    assert_eq!(snap.floor_vv().unwrap(), vv);
    assert_eq!(snap.last_seq().unwrap(), before);
    drop(snap);
    sa.close().await;
    sb.close().await;
}
