//! Following commits: from a sequence, a time and now; the gap after a trim; the lag
//! limit; runs read from the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{BatchLimits, FollowError, FollowOptions, Follower, Start};
use crate::{Database, Mode, Retention, Store, StoreOptions, TableSpec, Write};

const UNLIMITED: FollowOptions = FollowOptions { max_lag: u64::MAX };

async fn open(options: StoreOptions) -> (Store, Arc<Database>) {
    let store = Store::open(options).unwrap();
    let db = store.create_database("dev").await.unwrap();
    for name in ["dog", "cat"] {
        let spec = TableSpec {
            name: name.into(),
            primary_key: "id".into(),
            ..Default::default()
        };
        db.write(Write::CreateTable(spec), None).await.unwrap();
    }
    (store, db)
}

/// Commits one insert into `table`; returns its sequence.
async fn insert(db: &Database, table: &str, id: i64) -> u64 {
    let record = json!({"id": id, "pad": "p".repeat(50)});
    let write = Write::Records {
        table: table.into(),
        mode: Mode::Insert,
        records: vec![record.as_object().unwrap().clone()],
    };
    db.write(write, None).await.unwrap();
    db.snapshot().unwrap().last_seq().unwrap()
}

/// The sequence and the first key of each of the next `n` commits.
async fn take(follower: &mut Follower, n: usize) -> Vec<(u64, Value)> {
    let mut got = Vec::new();
    for _ in 0..n {
        let committed = tokio::time::timeout(Duration::from_secs(10), follower.next())
            .await
            .expect("a commit within 10 s")
            .unwrap();
        let key = committed.entry.changes.first().map(|c| c.key.clone());
        got.push((committed.seq, key.unwrap_or_default()));
    }
    got
}

fn expected(seqs: std::ops::RangeInclusive<u64>, first_id: i64) -> Vec<(u64, Value)> {
    seqs.zip(first_id..).map(|(s, id)| (s, json!(id))).collect()
}

#[tokio::test]
async fn follows_from_a_sequence_through_the_log_then_live() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open(StoreOptions::new(dir.path(), "n1")).await;
    // Tables take sequences 1 and 2; ids 1..=5 take 3..=7.
    for id in 1..=5 {
        insert(&db, "dog", id).await;
    }
    let mut follower = db.follow(Start::Seq(5), UNLIMITED);
    assert_eq!(take(&mut follower, 3).await, expected(5..=7, 3));
    let live = insert(&db, "dog", 6).await;
    assert_eq!(take(&mut follower, 1).await, vec![(live, json!(6))]);
    store.close().await;
}

#[tokio::test]
async fn follows_from_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open(StoreOptions::new(dir.path(), "n1")).await;
    for id in 1..=3 {
        insert(&db, "dog", id).await;
    }
    // A time after every commit so far, before every one to come.
    let last = db
        .snapshot()
        .unwrap()
        .log(1)
        .unwrap()
        .last()
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while (crate::wall_ms() as f64) <= last.entry.timestamp() {
        assert!(Instant::now() < deadline, "the clock stands still");
        tokio::task::yield_now().await;
    }
    let since = crate::wall_ms() as f64;
    let first = insert(&db, "dog", 4).await;
    insert(&db, "dog", 5).await;

    let mut follower = db.follow(Start::Time(since), UNLIMITED);
    assert_eq!(take(&mut follower, 2).await, expected(first..=first + 1, 4));

    let mut everything = db.follow(Start::Time(0.0), UNLIMITED);
    let all = take(&mut everything, 7).await;
    assert_eq!(
        all.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );

    // A time past every retained commit starts with the next one.
    let mut future = db.follow(Start::Time(f64::MAX), UNLIMITED);
    let next = insert(&db, "dog", 6).await;
    assert_eq!(take(&mut future, 1).await, vec![(next, json!(6))]);
    store.close().await;
}

#[tokio::test]
async fn follows_from_now_without_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open(StoreOptions::new(dir.path(), "n1")).await;
    insert(&db, "dog", 1).await;
    let mut follower = db.follow(Start::Now, UNLIMITED);
    // Committed after "now" was fixed, before the follower first asks.
    let first = insert(&db, "dog", 2).await;
    insert(&db, "dog", 3).await;
    assert_eq!(take(&mut follower, 2).await, expected(first..=first + 1, 2));
    // A wait abandoned loses nothing.
    assert!(
        tokio::time::timeout(Duration::from_millis(1), follower.next())
            .await
            .is_err()
    );
    let next = insert(&db, "dog", 4).await;
    assert_eq!(take(&mut follower, 1).await, vec![(next, json!(4))]);
    store.close().await;
}

/// Inserts until the log is trimmed past its start; returns its first retained sequence.
async fn trimmed(store: &Store, db: &Database) -> u64 {
    for id in 1..=100 {
        insert(db, "dog", id).await;
    }
    // Trims run at most once a second; ask until one has.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let first = db.snapshot().unwrap().first_seq().unwrap().unwrap();
        if first > 1 {
            return first;
        }
        assert!(Instant::now() < deadline, "the log was never trimmed");
        store.trim_logs();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn small_log(dir: &std::path::Path) -> StoreOptions {
    let mut options = StoreOptions::new(dir, "n1");
    options.retention = Retention {
        max_age_ms: u64::MAX,
        max_bytes: 2_000,
    };
    options
}

#[tokio::test]
async fn a_trimmed_start_is_reported_as_a_gap_then_followed_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open(small_log(dir.path())).await;
    let first = trimmed(&store, &db).await;

    let mut follower = db.follow(Start::Seq(first - 1), UNLIMITED);
    match follower.next().await {
        Err(FollowError::Gap { from, resume }) => {
            assert_eq!((from, resume), (first - 1, first));
        }
        other => panic!("expected a gap, got {other:?}"),
    }
    assert_eq!(
        follower.next().await.unwrap().seq,
        first,
        "on from the log's start"
    );

    let mut batches = db.follow_batches(Start::Seq(1), limits(1 << 20), |_, _| true);
    match batches.read().await {
        Err(FollowError::Gap { from, resume }) => assert_eq!((from, resume), (1, first)),
        other => panic!("expected a gap, got {other:?}"),
    }
    let batch = batches.read().await.unwrap().batch.unwrap();
    assert_eq!(batch.entries[0].0, first);

    // A start the log still holds is no gap.
    let mut retained = db.follow(Start::Seq(first), UNLIMITED);
    assert_eq!(retained.next().await.unwrap().seq, first);
    store.close().await;
}

#[tokio::test]
async fn a_follower_past_the_lag_limit_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), "n1");
    options.feed_capacity = 4;
    let (store, db) = open(options).await;
    let mut slow = db.follow(Start::Now, FollowOptions { max_lag: 10 });
    let mut within = db.follow(Start::Now, FollowOptions { max_lag: 20 });
    let start = db.snapshot().unwrap().last_seq().unwrap() + 1;
    for id in 1..=5 {
        insert(&db, "dog", id).await;
    }
    slow.check_lag().unwrap();
    for id in 6..=15 {
        insert(&db, "dog", id).await;
    }
    // 15 commits behind, past a feed of 4: the one allowed 10 is cut off...
    match slow.check_lag() {
        Err(FollowError::TooSlow { behind }) => assert_eq!(behind, 15),
        other => panic!("expected too slow, got {other:?}"),
    }
    match slow.next().await {
        Err(FollowError::TooSlow { behind }) => assert_eq!(behind, 15),
        other => panic!("expected too slow, got {other:?}"),
    }
    // ...the one allowed 20 catches up from the log, every commit in order.
    within.check_lag().unwrap();
    assert_eq!(take(&mut within, 15).await, expected(start..=start + 14, 1));
    store.close().await;
}

fn limits(max_bytes: usize) -> BatchLimits {
    BatchLimits {
        max_bytes,
        max_entries: 500,
        max_changes: 4000,
    }
}

#[tokio::test]
async fn batches_are_bounded_and_trimmed_and_cover_what_they_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let (store, db) = open(StoreOptions::new(dir.path(), "n1")).await;
    let start = db.snapshot().unwrap().last_seq().unwrap() + 1;
    for id in 1..=6 {
        insert(&db, if id % 2 == 0 { "cat" } else { "dog" }, id).await;
    }
    // Dogs only; room for two entries a run.
    let size = {
        let snapshot = db.snapshot().unwrap();
        snapshot
            .log_sized(start)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .1
    };
    let mut follower = db.follow_batches(Start::Seq(start), limits(2 * size), |_, entry| {
        entry.changes.retain(|c| c.table == "dog");
        !entry.changes.is_empty()
    });
    let read = follower.read().await.unwrap();
    assert_eq!(read.floor, 0);
    let batch = read.batch.unwrap();
    let ids: Vec<Value> = batch
        .entries
        .iter()
        .map(|(_, e)| e.changes[0].key.clone())
        .collect();
    assert_eq!(ids, vec![json!(1), json!(3)]);
    assert_eq!(batch.up_to, start + 2, "the cat between is covered");
    assert_eq!(batch.head, start + 5);
    let batch = follower.read().await.unwrap().batch.unwrap();
    assert_eq!(batch.entries.len(), 1);
    assert_eq!(batch.up_to, start + 5, "the last cat is covered");
    assert!(follower.read().await.unwrap().batch.is_none(), "caught up");

    // Waiting ends with the next commit, which the next read holds.
    let waiting = tokio::spawn(async move {
        follower.changed().await.unwrap();
        follower.read().await.unwrap().batch.unwrap()
    });
    insert(&db, "dog", 7).await;
    let batch = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the commit")
        .unwrap();
    assert_eq!(batch.entries[0].1.changes[0].key, json!(7));
    store.close().await;
}
