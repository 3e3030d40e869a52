//! Replication with big data, stalled receivers, drops and relays: real `shoal` processes
//! replicating over the wire (issue #9, items 5 to 7).
//!
//! - Big records replicate, and writes after them still arrive; a write whose
//!   transaction or record passes `max_transaction_bytes` gets a 413 and changes nothing.
//! - A receiver stopped (SIGSTOP) in the middle of a full copy does not make the
//!   sender's data file grow with the writes made meanwhile; after SIGCONT the copy
//!   completes and the nodes converge.
//! - A table or database dropped while a peer was away past the log's retention, or
//!   before a node holding an old copy joined, never comes back anywhere, and that
//!   node drops it too; re-creating the names afterwards works everywhere.
//! - In a chain A–B–C (C hears of A's writes only through B), rows B learned by a
//!   full copy reach C, and A gets no copy back from B.
//!
//! Every test checks the properties every cluster test checks once quiet: identical
//! dumps (timestamps included) and each key holding its acknowledged winner. Seeded like
//! the other cluster tests (`SHOAL_TEST_SEED`); nothing waits by sleeping.

use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, OrPanic, seed};

use shoal_testkit::cluster::{
    CONVERGE_DEADLINE, DB, DBS, Handle, LINKS_DEADLINE, Ledger, Member, Op, Outcome, TABLE,
    assert_no_problems, converge_and_check, exists, join, join_with, link_counter, log_times, logs,
    prepare, refs, socket, start_cluster, status, wait_converged, wait_links, wait_table,
};

const MIB: usize = 1 << 20;

/// Owned arguments as the harness takes them.
fn arg_refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Creates the test table on `on` with its blobs left out of the indexes (indexing them
/// is not what these tests measure, and costs time).
async fn create_blob_table(on: &Node) -> anyhow::Result<()> {
    on.op_ok(json!({
        "operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id",
        "attributes": [{"name": "id"}, {"name": "tag", "indexed": true}, {"name": "blob"}],
    }))
    .await?;
    Ok(())
}

/// A string of `len` copies of one letter picked by `i`.
fn blob(i: usize, len: usize) -> String {
    let letter = char::from(b'a' + (i % 26) as u8);
    std::iter::repeat_n(letter, len).collect()
}

/// What the ledger and the digests compare of a record: its key and tag (each write
/// to a key carries its own tag, so the tag names the write).
fn summary(key: &str, tag: &str) -> Value {
    json!({"id": key, "tag": tag})
}

/// Every record of the test table without its blob: key, tag and both timestamps.
async fn digest(node: &Node) -> anyhow::Result<Vec<Value>> {
    let body = node
        .op_ok(json!({
            "operation": "search_by_value", "database": DB, "table": TABLE,
            "search_attribute": "id", "search_value": "*",
            "get_attributes": ["id", "tag", "__createdtime__", "__updatedtime__"],
        }))
        .await?;
    match body {
        Value::Array(rows) => Ok(rows),
        other => anyhow::bail!("search_by_value answered {other}"),
    }
}

/// Polls until every member's digest is the same, then checks it against the ledger.
async fn converge_digests(members: &[&Member], ledger: &Ledger, seed: u64, what: &str) {
    let mut last: Vec<Vec<Value>> = Vec::new();
    let waited =
        shoal_testkit::wait_until(CONVERGE_DEADLINE, "all digests are equal", async || {
            let mut current = Vec::with_capacity(members.len());
            for m in members {
                match digest(&m.node).await {
                    Ok(d) => current.push(d),
                    Err(_) => return Ok(false),
                }
            }
            last = current;
            Ok(last.windows(2).all(|w| w[0] == w[1]))
        })
        .await;
    if let Err(e) = waited {
        let counts: Vec<String> = members
            .iter()
            .zip(&last)
            .map(|(m, d)| format!("{}: {} records", m.name(), d.len()))
            .collect();
        panic!(
            "seed {seed}: {what}: {e:#}\n{}\n{}",
            counts.join(", "),
            logs(members)
        );
    }
    assert_no_problems(seed, what, &ledger.check(&last[0]), members);
}

/// Upserts `records` on `node` in one request; notes each in the ledger by its summary.
async fn upsert_all(node: &Node, records: Vec<Value>, ledger: &mut Ledger) -> anyhow::Result<f64> {
    let summaries: Vec<(String, Value)> = records
        .iter()
        .map(|r| {
            let key = r["id"].as_str().unwrap_or_default().to_owned();
            let tag = r["tag"].as_str().unwrap_or_default();
            (key.clone(), summary(&key, tag))
        })
        .collect();
    let answer = node
        .op_ok(json!({"operation": "upsert", "database": DB, "table": TABLE, "records": records}))
        .await?;
    let txn = answer["txn_time"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no txn_time in {answer}"))?;
    let upserted = answer["upserted_hashes"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(
        upserted == summaries.len(),
        "upserted {upserted} of {}",
        summaries.len()
    );
    for (key, value) in summaries {
        ledger.note(node.name(), &key, Some(value), &Outcome::Written(txn));
    }
    Ok(txn)
}

/// The primary keys of every record of `database.table` on `node`, sorted.
async fn keys(node: &Node, database: &str, table: &str) -> anyhow::Result<Vec<Value>> {
    let rows = node
        .op_ok(json!({
            "operation": "search_by_value", "database": database, "table": table,
            "search_attribute": "id", "search_value": "*", "get_attributes": ["id"],
        }))
        .await?;
    let mut keys: Vec<Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["id"].clone())
        .collect();
    keys.sort_by_key(Value::to_string);
    Ok(keys)
}

/// The file holding `database` on `node`.
fn data_file(node: &Node, database: &str) -> PathBuf {
    node.root().join("database").join(database).join("data.mdb")
}

fn signal(node: &Node, signal: Signal) -> anyhow::Result<()> {
    let pid = node
        .pid()
        .ok_or_else(|| anyhow::anyhow!("{} is not running", node.name()))?;
    kill(Pid::from_raw(i32::try_from(pid)?), signal)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_records_replicate_and_later_writes_still_arrive() {
    let seed = seed("big_records_replicate_and_later_writes_still_arrive");
    let max_body = 8 * MIB;
    // Room for a record of the largest body, not for one grown past it.
    let max_transaction = max_body + MIB / 2;
    let args = [
        "--max-body-bytes".to_owned(),
        max_body.to_string(),
        "--max-transaction-bytes".to_owned(),
        max_transaction.to_string(),
        "--replication-batch-bytes".to_owned(),
        (2 * MIB).to_string(),
        "--replication-receive-window-bytes".to_owned(),
        (4 * MIB).to_string(),
    ];
    let members = start_cluster(&["n1", "n2"], 41, true, &arg_refs(&args))
        .await
        .or_panic(seed);
    let all = refs(&members);
    wait_links(&all, &["system"]).await.or_panic(seed);
    create_blob_table(&members[0].node).await.or_panic(seed);
    wait_table(&all).await.or_panic(seed);
    wait_links(&all, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    let n1 = &members[0].node;
    let h1 = members[0].handle();
    let mut ledger = Ledger::default();
    let mut blobs = Vec::new();
    // n2 cannot pull while they are written: they reach it as one backlog, which a
    // sender must cut into frames it can ship.
    members[0].cut();
    // Four writers at a time: each record is its own request (and transaction).
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4 {
        let h = h1.clone();
        writers.spawn(async move {
            let mut done = Vec::new();
            for i in (w..100).step_by(4) {
                let key = format!("mib-{i:03}");
                let record = json!({"id": key, "tag": "mib", "blob": blob(i, MIB)});
                let outcome = h.write(Op::Insert, &key, &record).await?;
                done.push((i, key, outcome));
            }
            anyhow::Ok(done)
        });
    }
    while let Some(done) = writers.join_next().await {
        for (i, key, outcome) in done.expect("writer task").or_panic(seed) {
            assert!(
                matches!(outcome, Outcome::Written(_)),
                "seed {seed}: {key}: {outcome:?}"
            );
            ledger.note("n1", &key, Some(summary(&key, "mib")), &outcome);
            blobs.push((key, i, MIB));
        }
    }

    // One record whose request is exactly the largest body accepted.
    let head = format!(
        r#"{{"operation":"insert","database":"{DB}","table":"{TABLE}","records":[{{"id":"max","tag":"max","blob":""#
    );
    let tail = r#""}]}"#;
    let fill = max_body - head.len() - tail.len();
    let body = format!("{head}{}{tail}", blob(7, fill));
    assert_eq!(body.len(), max_body);
    let (code, answer) = n1
        .ops_raw(
            body,
            Some("application/json"),
            Some((DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD)),
        )
        .await
        .or_panic(seed);
    assert_eq!(code, 200, "seed {seed}: the largest body: {answer}");
    let txn = answer["txn_time"].as_f64().expect("txn_time");
    ledger.note(
        "n1",
        "max",
        Some(summary("max", "max")),
        &Outcome::Written(txn),
    );
    blobs.push(("max".to_owned(), 7, fill));

    // Growing that record past what one transaction may ship is refused whole.
    let (code, answer) = n1
        .ops(json!({
            "operation": "update", "database": DB, "table": TABLE,
            "records": [{"id": "max", "tag": "grown", "more": blob(1, MIB)}],
        }))
        .await
        .or_panic(seed);
    assert_eq!(code, 413, "seed {seed}: a record past the limit: {answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("too large")),
        "seed {seed}: {answer}"
    );
    let described = n1
        .op_ok(json!({"operation": "describe_table", "database": DB, "table": TABLE}))
        .await
        .or_panic(seed);
    assert!(
        !described.to_string().contains("\"more\""),
        "seed {seed}: a refused write added an attribute: {described}"
    );

    members[0].heal();
    // Writes after the big ones still arrive.
    for key in ["after-1", "after-2"] {
        let outcome = h1
            .write(Op::Insert, key, &json!({"id": key, "tag": "after"}))
            .await
            .or_panic(seed);
        ledger.note("n1", key, Some(summary(key, "after")), &outcome);
    }
    converge_digests(&refs(&members), &ledger, seed, "after big records").await;

    // Every blob arrived whole.
    let n2 = &members[1].node;
    for (key, letter, len) in blobs {
        let rows = n2
            .op_ok(json!({
                "operation": "search_by_hash", "database": DB, "table": TABLE,
                "hash_values": [key], "get_attributes": ["blob"],
            }))
            .await
            .or_panic(seed);
        let got = rows[0]["blob"].as_str().unwrap_or_default();
        assert!(
            got.len() == len && *got == blob(letter, len),
            "seed {seed}: {key} arrived with {} bytes, not the {len} written",
            got.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_stopped_mid_copy_leaves_the_sender_bounded() {
    let seed = seed("a_receiver_stopped_mid_copy_leaves_the_sender_bounded");
    let mut rng = StdRng::seed_from_u64(seed);
    const ROWS: usize = 40_000;
    const ROW_BYTES: usize = 1000;
    const BODY_ROWS: usize = 4000;
    const CHURN_ROUNDS: usize = 200;
    const CHURN_ROWS: usize = 200;
    let args = [
        // The log keeps little, so the new node needs a full copy.
        "--log-max-bytes",
        "1048576",
        "--replication-batch-bytes",
        "262144",
        "--replication-receive-window-bytes",
        "1048576",
        "--replication-write-timeout-ms",
        "1000",
    ];
    let n1 = Member::start("n1", "127.0.42.1", false, &args)
        .await
        .or_panic(seed);
    create_blob_table(&n1.node).await.or_panic(seed);
    let mut ledger = Ledger::default();
    let row = |i: usize, tag: &str| json!({"id": format!("k{i:05}"), "tag": tag, "blob": blob(i, ROW_BYTES)});
    let mut first = None;
    for start in (0..ROWS).step_by(BODY_ROWS) {
        let records = (start..start + BODY_ROWS).map(|i| row(i, "load")).collect();
        let txn = upsert_all(&n1.node, records, &mut ledger)
            .await
            .or_panic(seed);
        first.get_or_insert(txn);
    }
    let first = first.expect("loaded");
    shoal_testkit::wait_until(Duration::from_secs(30), "n1 trimmed its log", async || {
        Ok(!log_times(&n1.node, DB, TABLE).await?.contains(&first))
    })
    .await
    .or_panic(seed);

    let n2 = Member::start("n2", "127.0.42.2", false, &args)
        .await
        .or_panic(seed);
    join(&n1, &n2).await.or_panic(seed);
    // Stop n2 once the copy is under way (its first rows are in).
    let mut copied = 0;
    shoal_testkit::wait_until(
        LINKS_DEADLINE,
        "n2 merged the copy's first rows",
        async || {
            let (code, body) = n2
                .node
                .ops(json!({"operation": "describe_table", "database": DB, "table": TABLE}))
                .await?;
            copied = body["record_count"].as_u64().unwrap_or(0);
            Ok(code == 200 && copied > 0)
        },
    )
    .await
    .or_panic(seed);
    signal(&n2.node, Signal::SIGSTOP).or_panic(seed);
    let file = data_file(&n1.node, DB);
    let before = std::fs::metadata(&file).or_panic(seed).len();

    // Rewrites on n1 while n2 is stopped: with no reader holding an old snapshot, the
    // pages they free are reused and the file settles (about 10 MB more here, with no
    // receiver at all, however many rounds); a snapshot held for the whole copy keeps
    // every page they free, and the file grows with the records and log entries written.
    let mut churned = 0;
    for round in 0..CHURN_ROUNDS {
        let tag = format!("churn-{round}");
        // A run of neighbouring keys: few pages per commit, many over the rounds.
        let from = rng.random_range(0..ROWS - CHURN_ROWS);
        let records = (from..from + CHURN_ROWS)
            .map(|i| row(i, &tag))
            .collect::<Vec<_>>();
        churned += records.len() * ROW_BYTES;
        upsert_all(&n1.node, records, &mut ledger)
            .await
            .or_panic(seed);
    }
    let after = std::fs::metadata(&file).or_panic(seed).len();
    let grown = after.saturating_sub(before) as usize;
    eprintln!(
        "seed {seed}: n2 stopped after {copied} copied rows; n1's file {before} -> {after} bytes \
         while {churned} bytes of records were rewritten"
    );
    assert!(
        grown < churned / 2,
        "seed {seed}: n1's data file grew by {grown} bytes while its receiver was stopped \
         ({churned} bytes rewritten): a reader pins old pages\n{}",
        logs(&[&n1, &n2])
    );

    // The sender gave up on the stopped receiver (write deadline) rather than wait on it.
    shoal_testkit::wait_until(
        Duration::from_secs(10),
        "n1 drops the link n2 stopped reading",
        async || {
            let log = std::fs::read_to_string(n1.node.stderr_log())?;
            Ok(log.contains("the peer read nothing for"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&[&n1, &n2])));

    signal(&n2.node, Signal::SIGCONT).or_panic(seed);
    let both = [&n1, &n2];
    converge_digests(&both, &ledger, seed, "after SIGCONT").await;
    let st = status(&n2.node).await.or_panic(seed);
    assert!(
        link_counter(&st, &["n1"], DB, "full_copies") >= 1,
        "seed {seed}: n2 completed no full copy: {st:#}"
    );
}

/// Whether every one of `nodes` has (or lacks) `database.table`.
async fn all_have(
    nodes: &[&Member],
    database: &str,
    table: Option<&str>,
    want: bool,
) -> anyhow::Result<bool> {
    for m in nodes {
        if exists(&m.node, database, table).await? != want {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Inserts rows `keys` into `database.table` on `node`.
async fn insert_keys(
    node: &Node,
    database: &str,
    table: &str,
    keys: &[&str],
) -> anyhow::Result<()> {
    let records: Vec<Value> = keys.iter().map(|k| json!({"id": k, "v": k})).collect();
    node.op_ok(
        json!({"operation": "insert", "database": database, "table": table, "records": records}),
    )
    .await?;
    Ok(())
}

/// Creates `database.table` (keyed by `id`) on `node` with rows `keys`.
async fn table_with_rows(
    node: &Node,
    database: &str,
    table: &str,
    keys: &[&str],
) -> anyhow::Result<()> {
    node.op_ok(json!({"operation": "create_table", "database": database, "table": table, "primary_key": "id"}))
        .await?;
    insert_keys(node, database, table, keys).await
}

/// Waits until `database.table` holds exactly `want` on every one of `nodes`.
async fn wait_rows(
    nodes: &[&Member],
    database: &str,
    table: &str,
    want: &[&str],
) -> anyhow::Result<()> {
    let want: Vec<Value> = want.iter().map(|k| json!(k)).collect();
    let mut last = Vec::new();
    let waited = shoal_testkit::wait_until(
        CONVERGE_DEADLINE,
        &format!("{database}.{table} holds {want:?} everywhere"),
        async || {
            last.clear();
            for m in nodes {
                let got = if exists(&m.node, database, Some(table)).await? {
                    keys(&m.node, database, table).await?
                } else {
                    Vec::new()
                };
                last.push((m.name().to_owned(), got));
            }
            Ok(last.iter().all(|(_, got)| *got == want))
        },
    )
    .await;
    waited.map_err(|e| e.context(format!("last seen: {last:?}")))
}

/// Waits until no retained log entry of `database.table` is left on any of `nodes`.
async fn wait_logs_empty(nodes: &[&Member], database: &str, table: &str) -> anyhow::Result<()> {
    shoal_testkit::wait_until(
        Duration::from_secs(30),
        &format!("the {database}.{table} logs are trimmed"),
        async || {
            for m in nodes {
                if !log_times(&m.node, database, table).await?.is_empty() {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_stay_dropped_for_a_node_away_past_the_log_and_a_late_joiner() {
    let seed = seed("drops_stay_dropped_for_a_node_away_past_the_log_and_a_late_joiner");
    // The logs keep a second: whoever was away needs full copies.
    let args = ["--log-retention-seconds", "1"];
    // A node holding an old copy: the database and table the cluster drops later, with
    // rows, made before the cluster made (and dropped) them.
    let late = Member::start("n4", "127.0.43.4", false, &args)
        .await
        .or_panic(seed);
    table_with_rows(&late.node, "gone_db", "t", &["late-old"])
        .await
        .or_panic(seed);
    table_with_rows(&late.node, DB, "gone_t", &["late-old"])
        .await
        .or_panic(seed);

    let mut members = start_cluster(&["n1", "n2", "n3"], 43, false, &args)
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    let all = refs(&members);
    table_with_rows(&members[0].node, "gone_db", "t", &["old"])
        .await
        .or_panic(seed);
    table_with_rows(&members[0].node, DB, "gone_t", &["old"])
        .await
        .or_panic(seed);
    wait_rows(&all, "gone_db", "t", &["old"])
        .await
        .or_panic(seed);
    wait_rows(&all, DB, "gone_t", &["old"]).await.or_panic(seed);
    let mut ledger = Ledger::default();
    let h1 = members[0].handle();
    for key in ["k1", "k2"] {
        let value = json!({"id": key, "tag": "before"});
        let outcome = h1.write(Op::Insert, key, &value).await.or_panic(seed);
        ledger.note("n1", key, Some(value), &outcome);
    }
    wait_converged(&all).await.or_panic(seed);

    // n3 is away while n1 drops the table and the database.
    members[2].node.kill().await.or_panic(seed);
    let n1 = &members[0].node;
    n1.op_ok(json!({"operation": "drop_table", "database": DB, "table": "gone_t"}))
        .await
        .or_panic(seed);
    n1.op_ok(json!({"operation": "drop_database", "database": "gone_db"}))
        .await
        .or_panic(seed);
    let two = [&members[0], &members[1]];
    shoal_testkit::wait_until(CONVERGE_DEADLINE, "n2 dropped them too", async || {
        Ok(all_have(&two, "gone_db", None, false).await?
            && all_have(&two, DB, Some("gone_t"), false).await?)
    })
    .await
    .or_panic(seed);
    // Entries newer than the drops in both logs; once they are trimmed, so are the drops.
    let value = json!({"id": "k3", "tag": "after-drop"});
    let outcome = h1.write(Op::Insert, "k3", &value).await.or_panic(seed);
    ledger.note("n1", "k3", Some(value), &outcome);
    n1.op_ok(json!({"operation": "update_node", "node_name": "n2"}))
        .await
        .or_panic(seed);
    wait_logs_empty(&two, DB, TABLE).await.or_panic(seed);
    wait_logs_empty(&two, "system", "hdb_nodes")
        .await
        .or_panic(seed);

    // n3 comes back and n4 joins: both get full copies and drop what the others dropped.
    members[2].node.restart().await.or_panic(seed);
    join(&members[0], &late).await.or_panic(seed);
    members.push(late);
    let all = refs(&members);
    wait_links(&all, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    shoal_testkit::wait_until(
        CONVERGE_DEADLINE,
        "nobody has the dropped ones",
        async || {
            Ok(all_have(&all, "gone_db", None, false).await?
                && all_have(&all, DB, Some("gone_t"), false).await?)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    converge_and_check(&all, &ledger, seed, "after n3 returned and n4 joined").await;
    let st = status(&members[2].node).await.or_panic(seed);
    for database in ["system", DB] {
        assert!(
            link_counter(&st, &["n1", "n2"], database, "full_copies") >= 1,
            "seed {seed}: n3 was away past the logs but took no full copy of {database}: {st:#}"
        );
    }
    // Still gone once every link has had its say.
    for (database, table) in [("gone_db", None), (DB, Some("gone_t"))] {
        assert!(
            all_have(&all, database, table, false).await.or_panic(seed),
            "seed {seed}: {database} {table:?} came back\n{}",
            logs(&all)
        );
    }

    // Re-creating the names afterwards works everywhere, with none of the old rows.
    let n2 = &members[1].node;
    n2.op_ok(json!({"operation": "create_database", "database": "gone_db"}))
        .await
        .or_panic(seed);
    table_with_rows(n2, "gone_db", "t", &["new"])
        .await
        .or_panic(seed);
    table_with_rows(&members[2].node, DB, "gone_t", &["new"])
        .await
        .or_panic(seed);
    wait_rows(&all, "gone_db", "t", &["new"])
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    wait_rows(&all, DB, "gone_t", &["new"])
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    converge_and_check(&all, &ledger, seed, "after re-creating").await;
}

/// Upserts a padded record of `key` through `h` and notes it; returns its `txn_time`.
async fn put(h: &Handle, ledger: &mut Ledger, key: &str, tag: &str, seed: u64) -> f64 {
    let value = json!({"id": key, "tag": tag, "pad": "p".repeat(200)});
    let outcome = h.write(Op::Upsert, key, &value).await.or_panic(seed);
    ledger.note(&h.name, key, Some(value), &outcome);
    match outcome {
        Outcome::Written(txn) => txn,
        other => panic!("seed {seed}: upsert of {key}: {other:?}"),
    }
}

/// Waits until each (node, peer) pair shows a connected `dev` link.
async fn wait_dev_links(pairs: &[(&Member, &str)]) -> anyhow::Result<()> {
    shoal_testkit::wait_until(LINKS_DEADLINE, "the chain's links are up", async || {
        for (m, peer) in pairs {
            let st = status(&m.node).await?;
            if !socket(&st, peer, DB).is_some_and(|s| s["connected"] == true) {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_relays_rows_learned_by_a_full_copy() {
    let seed = seed("a_chain_relays_rows_learned_by_a_full_copy");
    // Only A's log is short: B, away, needs a full copy from A, while C's cursor on B
    // stays within B's log.
    let a = Member::start("a", "127.0.44.1", false, &["--log-max-bytes", "4000"])
        .await
        .or_panic(seed);
    let mut b = Member::start("b", "127.0.44.2", false, &[])
        .await
        .or_panic(seed);
    let c = Member::start("c", "127.0.44.3", false, &[])
        .await
        .or_panic(seed);
    for m in [&a, &b, &c] {
        m.node
            .op_ok(json!({"operation": "create_database", "database": DB}))
            .await
            .or_panic(seed);
    }
    // Only the test database flows, so membership does not spread: A and C never learn
    // of each other and C hears of A's writes only through B.
    let dev_only = json!({"subscriptions": [{"database": DB, "subscribe": true, "publish": true}]});
    join_with(&a, &b, dev_only.clone()).await.or_panic(seed);
    join_with(&b, &c, dev_only).await.or_panic(seed);
    wait_dev_links(&[(&a, "b"), (&b, "a"), (&b, "c"), (&c, "b")])
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&[&a, &b, &c])));
    a.node
        .op_ok(json!({"operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id"}))
        .await
        .or_panic(seed);
    wait_table(&[&a, &b, &c]).await.or_panic(seed);
    let st = status(&a.node).await.or_panic(seed);
    assert!(
        socket(&st, "c", DB).is_none(),
        "seed {seed}: A links to C directly, so this is no chain: {st:#}"
    );

    let (ha, hc) = (a.handle(), c.handle());
    let mut ledger = Ledger::default();
    for i in 0..5 {
        put(&ha, &mut ledger, &format!("a-{i}"), "before", seed).await;
        put(&hc, &mut ledger, &format!("c-{i}"), "before", seed).await;
    }
    wait_converged(&[&a, &b, &c]).await.or_panic(seed);

    // B is away; A writes past its log's bound, C writes too.
    b.node.kill().await.or_panic(seed);
    let mut first_away = None;
    for i in 0..40 {
        let txn = put(&ha, &mut ledger, &format!("a-away-{i}"), "away", seed).await;
        first_away.get_or_insert(txn);
        if i < 5 {
            put(&hc, &mut ledger, &format!("c-away-{i}"), "away", seed).await;
        }
    }
    let first_away = first_away.expect("written");
    shoal_testkit::wait_until(Duration::from_secs(30), "A trimmed its log", async || {
        Ok(!log_times(&a.node, DB, TABLE).await?.contains(&first_away))
    })
    .await
    .or_panic(seed);

    // B comes back: a full copy from A. C learns A's rows through B all the same.
    b.node.restart().await.or_panic(seed);
    let chain = [&a, &b, &c];
    wait_dev_links(&[(&a, "b"), (&b, "a"), (&b, "c"), (&c, "b")])
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&chain)));
    converge_and_check(&chain, &ledger, seed, "after B's full copy").await;
    let copies = |st: &Value, peer: &str| {
        socket(st, peer, DB).map_or(0, |s| s["full_copies"].as_u64().unwrap_or(0))
    };
    let st_b = status(&b.node).await.or_panic(seed);
    assert!(
        copies(&st_b, "a") >= 1,
        "seed {seed}: B took no full copy from A: {st_b:#}"
    );
    let st_a = status(&a.node).await.or_panic(seed);
    assert_eq!(
        copies(&st_a, "b"),
        0,
        "seed {seed}: A got an echo copy from B of what it had: {st_a:#}\n{}",
        logs(&chain)
    );

    // And the relay keeps working afterwards.
    for i in 0..3 {
        put(&ha, &mut ledger, &format!("a-later-{i}"), "later", seed).await;
        put(&hc, &mut ledger, &format!("c-later-{i}"), "later", seed).await;
    }
    converge_and_check(&chain, &ledger, seed, "after later writes").await;
}
