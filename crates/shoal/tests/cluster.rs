//! End-to-end cluster tests: real `shoal` processes replicating over the wire.
//!
//! Every test starts its own small cluster on its own loopback subnet (test k uses
//! 127.0.k.x), writes through the Operations API, and checks the properties every
//! cluster test checks once the system is quiet: all full dumps are identical
//! (timestamps included), each key holds the acknowledged write with the greatest
//! (txn_time, node name) or is absent when that write is a delete, and nothing that was
//! never written exists.
//!
//! Seeded: set `SHOAL_TEST_SEED` to replay a run; each test prints its seed and every
//! assertion message names it. Nothing waits by sleeping: every wait polls with a
//! deadline (sleeps only let time pass while writes go on, or pace writers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use shoal_testkit::{OrPanic, seed};
use tokio::sync::Notify;

use shoal_testkit::cluster::{
    DB, DBS, Handle, Ledger, Member, Op, Outcome, TABLE, assert_no_problems, by_key,
    converge_and_check, dump, join, link_counter, links_up, log_times, logs, prepare, refs, socket,
    sockets, start_cluster, status, wait_converged, wait_links, wait_table,
};

/// A record with the attribute set every test writes (all writes to a key carry the
/// same attributes, so the winner's attributes are the whole record).
fn record(key: &str, tag: &str, by: &str) -> Value {
    json!({"id": key, "v": tag, "by": by})
}

/// Writes a mix of inserts, updates, upserts and deletes on shared and own keys.
async fn mixed_writer(
    h: Handle,
    seed: u64,
    shared: Vec<String>,
    ops: usize,
) -> anyhow::Result<Ledger> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    for n in 0..ops {
        let key = if rng.random_bool(0.5) {
            shared[rng.random_range(0..shared.len())].clone()
        } else {
            format!("{}-{}", h.name, rng.random_range(0..40))
        };
        let op = match rng.random_range(0..100) {
            0..30 => Op::Insert,
            30..60 => Op::Upsert,
            60..85 => Op::Update,
            _ => Op::Delete,
        };
        let value = record(&key, &format!("{}-{n}", h.name), &h.name);
        let outcome = h.write(op, &key, &value).await?;
        anyhow::ensure!(
            matches!(outcome, Outcome::Written(_) | Outcome::Skipped),
            "{}: {op:?} {key}: {outcome:?}",
            h.name
        );
        ledger.note(&h.name, &key, (op != Op::Delete).then_some(value), &outcome);
    }
    Ok(ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_concurrent_writes_converge() {
    let seed = seed("three_nodes_concurrent_writes_converge");
    let members = start_cluster(&["n1", "n2", "n3"], 1, false, &[])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));

    let shared: Vec<String> = (0..30).map(|i| format!("s{i}")).collect();
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            tokio::spawn(mixed_writer(
                m.handle(),
                seed.wrapping_add(i as u64),
                shared.clone(),
                150,
            ))
        })
        .collect();
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.extend(w.await.unwrap().or_panic(seed));
    }
    let all = refs(&members);
    let dump =
        converge_and_check(&all, &ledger, seed, "converged dump vs acknowledged writes").await;
    let once = ledger.acked.values().filter(|w| w.len() == 1).count();
    eprintln!(
        "seed {seed}: {} keys written ({once} once), {} records after convergence",
        ledger.acked.len(),
        dump.len()
    );
    assert!(!dump.is_empty(), "seed {seed}: nothing survived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_pick_the_greatest_hlc_then_node() {
    let seed = seed("conflicting_writes_pick_the_greatest_hlc_then_node");
    let members = start_cluster(&["n1", "n2", "n3"], 2, false, &[])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));

    let keys: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let (h, mut keys) = (m.handle(), keys.clone());
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(i as u64));
            tokio::spawn(async move {
                let mut ledger = Ledger::default();
                for round in 0..12 {
                    keys.shuffle(&mut rng);
                    for key in &keys {
                        let value = record(key, &format!("{}-{round}", h.name), &h.name);
                        let outcome = h.write(Op::Upsert, key, &value).await?;
                        anyhow::ensure!(
                            matches!(outcome, Outcome::Written(_)),
                            "{}: {key}: {outcome:?}",
                            h.name
                        );
                        ledger.note(&h.name, key, Some(value), &outcome);
                    }
                }
                anyhow::Ok(ledger)
            })
        })
        .collect();
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.extend(w.await.unwrap().or_panic(seed));
    }
    let all = refs(&members);
    let dump = converge_and_check(&all, &ledger, seed, "LWW winners").await;
    // Same txn_time on two nodes for one key: the node name decides.
    let ties: usize = ledger
        .acked
        .values()
        .map(|ws| {
            ws.iter()
                .filter(|a| ws.iter().any(|b| b.txn == a.txn && b.node != a.node))
                .count()
        })
        .sum();
    eprintln!("seed {seed}: {ties} writes tied on txn_time with another node's");
    assert_eq!(
        dump.len(),
        keys.len(),
        "seed {seed}: every key must exist: {dump:?}"
    );
    for key in &keys {
        let w = ledger
            .winner(key)
            .unwrap_or_else(|| panic!("seed {seed}: no acknowledged write to {key}"));
        let got = &by_key(&dump)[key];
        assert_eq!(
            (&got["v"], got["__updatedtime__"].as_f64()),
            (&w.value.as_ref().unwrap()["v"], Some(w.txn)),
            "seed {seed}: {key} must hold the write with the greatest (txn_time, node)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_catches_up_from_its_cursor() {
    let seed = seed("node_down_catches_up_from_its_cursor");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut members = start_cluster(&["n1", "n2", "n3"], 3, false, &[])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    let handles: Vec<Handle> = members.iter().map(Member::handle).collect();

    // Every node writes its own rows; all of them reach n3 before it goes down.
    let mut ledger = Ledger::default();
    for h in &handles {
        for i in 0..10 {
            let key = format!("{}-{i}", h.name);
            let value = record(&key, &format!("{}-first", h.name), &h.name);
            let outcome = h.write(Op::Insert, &key, &value).await.or_panic(seed);
            ledger.note(&h.name, &key, Some(value), &outcome);
        }
    }
    wait_converged(&refs(&members)).await.or_panic(seed);

    members[2].node.kill().await.or_panic(seed);
    // While n3 is down: updates, new rows and deletes (of n3's rows too) on n1 and n2.
    let mut deleted = Vec::new();
    let mut missed = 0u64;
    for (n, h) in handles[..2].iter().enumerate() {
        for i in 0..15 {
            // Rows that stay: everything but n3-0..n3-7, which get deleted below.
            let key = match rng.random_range(0..3) {
                2 => format!("n3-{}", rng.random_range(8..10)),
                n => format!("n{}-{}", n + 1, rng.random_range(0..10)),
            };
            let value = record(&key, &format!("{}-update-{i}", h.name), &h.name);
            let outcome = h.write(Op::Upsert, &key, &value).await.or_panic(seed);
            ledger.note(&h.name, &key, Some(value), &outcome);
            let key = format!("{}-new-{i}", h.name);
            let value = record(&key, &format!("{}-new", h.name), &h.name);
            let inserted = h.write(Op::Insert, &key, &value).await.or_panic(seed);
            ledger.note(&h.name, &key, Some(value), &inserted);
            for o in [outcome, inserted] {
                assert!(matches!(o, Outcome::Written(_)), "seed {seed}: {o:?}");
                missed += 1;
            }
        }
        for i in 0..4 {
            let key = format!("n3-{}", n * 4 + i);
            let outcome = h.write(Op::Delete, &key, &Value::Null).await.or_panic(seed);
            assert!(
                matches!(outcome, Outcome::Written(_)),
                "seed {seed}: delete {key}: {outcome:?}"
            );
            ledger.note(&h.name, &key, None, &outcome);
            deleted.push(key);
            missed += 1;
        }
    }
    members[2].node.restart().await.or_panic(seed);
    let all = refs(&members);
    wait_links(&all, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    let dump = converge_and_check(&all, &ledger, seed, "after catching up").await;
    for key in &deleted {
        assert!(
            !by_key(&dump).contains_key(key),
            "seed {seed}: deleted {key} came back"
        );
    }

    // Once both of n3's links are caught up (cursor at the peer's head), n3 has applied
    // each transaction it missed exactly once, though each came from both peers.
    let mut st = Value::Null;
    let caught_up = shoal_testkit::wait_until(
        Duration::from_secs(15),
        "n3's links report no lag",
        async || {
            st = status(&members[2].node).await?;
            Ok(["n1", "n2"].iter().all(|p| {
                socket(&st, p, DB).is_some_and(|s| s["lag"] == 0 && s["cursor"] == s["head"])
            }))
        },
    )
    .await;
    caught_up.unwrap_or_else(|e| panic!("seed {seed}: {e:#}: {st:#}"));
    assert_eq!(
        link_counter(&st, &["n1", "n2"], DB, "applied"),
        missed,
        "seed {seed}: n3 must apply each of the {missed} transactions it missed exactly once: {st:#}"
    );

    // The log still reached back to n3's cursors: no full copy, on any link.
    for peer in ["n1", "n2"] {
        let links = sockets(&st, peer);
        assert!(
            !links.is_empty(),
            "seed {seed}: n3 has no links from {peer}: {st:#}"
        );
        for link in links {
            assert_eq!(
                link["full_copies"],
                0,
                "seed {seed}: n3 took a full copy from {peer} although the log covered its cursor: {link}\n{}",
                logs(&all)
            );
            assert!(link["connects"].as_u64() >= Some(1), "seed {seed}: {link}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_node_and_expired_log_get_a_full_copy_without_wipe() {
    let seed = seed("new_node_and_expired_log_get_a_full_copy_without_wipe");
    let args = ["--log-max-bytes", "4000"];
    let mut members = start_cluster(&["n1", "n2", "n3"], 4, false, &args)
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    let handles: Vec<Handle> = members.iter().map(Member::handle).collect();
    let pad = "p".repeat(150);
    let padded = |key: &str, tag: &str, by: &str| {
        let mut r = record(key, tag, by);
        r["pad"] = json!(pad);
        r
    };

    // (a) n3 writes rows that replicate, then is away while the log moves past it.
    let mut ledger = Ledger::default();
    for (h, prefix) in [(&handles[0], "b"), (&handles[2], "n3-")] {
        for i in 0..10 {
            let key = format!("{prefix}{i}");
            let value = padded(&key, "before", &h.name);
            let outcome = h.write(Op::Insert, &key, &value).await.or_panic(seed);
            ledger.note(&h.name, &key, Some(value), &outcome);
        }
    }
    wait_converged(&refs(&members)).await.or_panic(seed);
    members[2].node.kill().await.or_panic(seed);
    let mut delete_time = 0.0;
    for key in ["n3-0", "b0"] {
        let outcome = handles[0]
            .write(Op::Delete, key, &Value::Null)
            .await
            .or_panic(seed);
        let Outcome::Written(t) = outcome else {
            panic!("seed {seed}: delete {key}: {outcome:?}")
        };
        delete_time = t;
        ledger.note("n1", key, None, &outcome);
    }
    let value = padded("n3-5", "updated-while-away", "n2");
    let outcome = handles[1]
        .write(Op::Update, "n3-5", &value)
        .await
        .or_panic(seed);
    ledger.note("n2", "n3-5", Some(value), &outcome);
    for i in 0..40 {
        for h in &handles[..2] {
            let key = format!("{}-fill-{i}", h.name);
            let value = padded(&key, "fill", &h.name);
            let outcome = h.write(Op::Upsert, &key, &value).await.or_panic(seed);
            ledger.note(&h.name, &key, Some(value), &outcome);
        }
    }
    // Both logs must have dropped the deletes, so n3's cursors are out of reach.
    shoal_testkit::wait_until(
        Duration::from_secs(30),
        "n1 and n2 trimmed their logs",
        async || {
            for m in &members[..2] {
                if log_times(&m.node, DB, TABLE)
                    .await?
                    .iter()
                    .any(|t| *t <= delete_time)
                {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await
    .or_panic(seed);
    members[2].node.restart().await.or_panic(seed);
    let three = refs(&members);
    wait_links(&three, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&three)));
    let dump = converge_and_check(&three, &ledger, seed, "n3 after a full copy").await;
    let st = status(&members[2].node).await.or_panic(seed);
    assert!(
        link_counter(&st, &["n1", "n2"], DB, "full_copies") >= 1,
        "seed {seed}: n3 was away past the log but took no full copy: {st:#}"
    );
    let found = by_key(&dump);
    assert!(
        !found.contains_key("n3-0") && !found.contains_key("b0"),
        "seed {seed}: a deleted key came back"
    );
    assert_eq!(
        found["n3-1"]["by"], "n3",
        "seed {seed}: n3's own replicated rows must be intact"
    );

    // (b) A fresh node with rows of its own joins late: it gets everything, loses nothing.
    let n4 = Member::start("n4", "127.0.4.4", false, &args)
        .await
        .or_panic(seed);
    n4.node
        .op_ok(json!({"operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id"}))
        .await.or_panic(seed);
    let h4 = n4.handle();
    for i in 0..30 {
        let key = format!("n4-{i}");
        let value = padded(&key, "standalone", "n4");
        let outcome = h4.write(Op::Insert, &key, &value).await.or_panic(seed);
        assert!(
            matches!(outcome, Outcome::Written(_)),
            "seed {seed}: {key}: {outcome:?}"
        );
        ledger.note("n4", &key, Some(value), &outcome);
    }
    join(&members[0], &n4).await.or_panic(seed);
    members.push(n4);
    let four = refs(&members);
    wait_table(&four).await.or_panic(seed);
    wait_links(&four, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&four)));
    converge_and_check(&four, &ledger, seed, "after n4 joined").await;
    let st = status(&members[3].node).await.or_panic(seed);
    assert!(
        link_counter(&st, &["n1", "n2", "n3"], DB, "full_copies") >= 1,
        "seed {seed}: n4 joined after the logs were trimmed but took no full copy: {st:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_window_acknowledged_writes_reach_peers() {
    let seed = seed("crash_window_acknowledged_writes_reach_peers");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut members = start_cluster(&["n1", "n2"], 5, false, &[])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    const CLIENTS: usize = 6;
    let mut ledger = Ledger::default();
    // Round 0: a burst whose last acknowledgement triggers the kill (nothing in flight).
    // Round 1: writes keep coming; the kill lands after a random number of acks.
    for round in 0..2 {
        let burst = rng.random_range(150..300);
        let acks = Arc::new(AtomicUsize::new(0));
        let reached = Arc::new(Notify::new());
        let h = members[0].handle();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (h, acks, reached) = (h.clone(), acks.clone(), reached.clone());
                tokio::spawn(async move {
                    let mut ledger = Ledger::default();
                    for n in 0.. {
                        if round == 0 && n * CLIENTS + c >= burst {
                            break;
                        }
                        let key = format!("r{round}-c{c}-{n}");
                        let value = record(&key, &format!("{round}-{c}-{n}"), "n1");
                        let outcome = h.write(Op::Upsert, &key, &value).await?;
                        ledger.note("n1", &key, Some(value), &outcome);
                        if !matches!(outcome, Outcome::Written(_)) {
                            break;
                        }
                        if acks.fetch_add(1, Ordering::SeqCst) + 1 == burst {
                            reached.notify_one();
                        }
                    }
                    anyhow::Ok(ledger)
                })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(60), reached.notified())
            .await
            .unwrap_or_else(|_| {
                panic!("seed {seed}: round {round}: {burst} writes were never acknowledged")
            });
        members[0].node.kill().await.or_panic(seed);
        for c in clients {
            ledger.extend(c.await.unwrap().or_panic(seed));
        }
        // How much was still only on n1 (the crash window this round exercised).
        let on_n2_at_kill = by_key(&dump(&members[1].node).await.or_panic(seed)).len();
        eprintln!(
            "seed {seed}: round {round}: killed n1 after {burst} acknowledged writes; \
             n2 held {on_n2_at_kill} of {} acknowledged keys",
            ledger.acked.len()
        );
        members[0].node.restart().await.or_panic(seed);
        let all = refs(&members);
        let what = format!("round {round}: n2 after n1 crashed");
        let dump = converge_and_check(&all, &ledger, seed, &what).await;
        let on_n2 = by_key(&dump);
        let lost: Vec<&String> = ledger
            .acked
            .keys()
            .filter(|k| !on_n2.contains_key(*k))
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: round {round}: acknowledged writes never reached n2: {lost:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_converges() {
    let seed = seed("partition_then_heal_converges");
    let mut rng = StdRng::seed_from_u64(seed);
    let members = start_cluster(&["n1", "n2"], 6, true, &[])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    let all = refs(&members);
    let handles: Vec<Handle> = members.iter().map(Member::handle).collect();
    let mut ledger = Ledger::default();
    for i in 0..10 {
        let key = format!("c{i}");
        let value = record(&key, "base", "n1");
        let outcome = handles[0]
            .write(Op::Insert, &key, &value)
            .await
            .or_panic(seed);
        ledger.note("n1", &key, Some(value), &outcome);
    }
    wait_converged(&all).await.or_panic(seed);

    for m in &members {
        m.cut();
    }
    shoal_testkit::wait_until(
        Duration::from_secs(15),
        "both sides see the link down",
        async || {
            for (m, peer) in [(&members[0], "n2"), (&members[1], "n1")] {
                if links_up(&status(&m.node).await?, &[peer], &[DB]) {
                    return Ok(false);
                }
            }
            Ok(true)
        },
    )
    .await
    .or_panic(seed);

    // Both sides write the same keys (existing and new), keys of their own, and
    // deletes that race updates on the other side.
    let mut written_on: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    // What each side alone must hold while cut: the common base plus its own writes.
    let mut sides = [Ledger::default(), Ledger::default()];
    for side in &mut sides {
        for (key, writes) in &ledger.acked {
            for w in writes {
                side.note(&w.node, key, w.value.clone(), &Outcome::Written(w.txn));
            }
        }
    }
    for round in 0..4 {
        for (side, h) in handles.iter().enumerate() {
            let mut ops: Vec<(Op, String)> = Vec::new();
            ops.extend((0..8).map(|i| (Op::Upsert, format!("c{i}"))));
            ops.extend((0..5).map(|i| (Op::Insert, format!("x{i}-r{round}"))));
            ops.extend((0..5).map(|i| (Op::Insert, format!("{}-{round}-{i}", h.name))));
            match (side, round) {
                (0, 0) => ops.push((Op::Delete, "c8".into())),
                (1, _) => ops.push((Op::Upsert, "c8".into())),
                (0, _) => ops.push((Op::Upsert, "c9".into())),
                _ => {}
            }
            if (side, round) == (1, 3) {
                ops.push((Op::Delete, "c9".into()));
            }
            ops.shuffle(&mut rng);
            for (op, key) in ops {
                let tag = format!("{}-{round}-{key}", h.name);
                let value = record(&key, &tag, &h.name);
                let outcome = h.write(op, &key, &value).await.or_panic(seed);
                assert!(
                    matches!(outcome, Outcome::Written(_)),
                    "seed {seed}: {} {op:?} {key}: {outcome:?}",
                    h.name
                );
                let value = (op != Op::Delete).then_some(value);
                sides[side].note(&h.name, &key, value.clone(), &outcome);
                ledger.note(&h.name, &key, value, &outcome);
                if op != Op::Delete {
                    written_on[side].push(tag);
                }
            }
        }
        // Let time pass while cut, so a leak through the cut link would show.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (side, m) in members.iter().enumerate() {
        let other = &written_on[1 - side];
        let own = dump(&m.node).await.or_panic(seed);
        // Read-your-writes, and LWW among one side's own writes, while cut.
        assert_no_problems(
            seed,
            &format!("{} alone while partitioned", m.name()),
            &sides[side].check(&own),
            &all,
        );
        let leaked: Vec<Value> = own
            .into_iter()
            .filter(|r| {
                r["v"]
                    .as_str()
                    .is_some_and(|v| other.iter().any(|t| t == v))
            })
            .collect();
        assert!(
            leaked.is_empty(),
            "seed {seed}: {} has the other side's writes while partitioned: {leaked:?}",
            m.name()
        );
    }

    for m in &members {
        m.heal();
    }
    wait_links(&all, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    converge_and_check(&all, &ledger, seed, "after healing").await;
}

/// Writes until `stop`, on a shared key pool; notes unanswered writes as uncertain.
async fn chaos_writer(h: Handle, seed: u64, stop: Arc<AtomicBool>) -> anyhow::Result<Ledger> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("k{}", rng.random_range(0..40));
        let op = match rng.random_range(0..100) {
            0..25 => Op::Insert,
            25..65 => Op::Upsert,
            65..85 => Op::Update,
            _ => Op::Delete,
        };
        let value = record(&key, &format!("{}-{n}", h.name), &h.name);
        let outcome = h.write(op, &key, &value).await?;
        ledger.note(&h.name, &key, (op != Op::Delete).then_some(value), &outcome);
        // Pace the writers (and back off from a dead node): time passing, not a wait.
        let pause = match outcome {
            Outcome::Written(_) | Outcome::Skipped => rng.random_range(0..15),
            Outcome::NotSent | Outcome::Uncertain(_) => 100,
        };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Ok(ledger)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_kills_partitions_writes() {
    let seed = seed("randomised_kills_partitions_writes");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut members = start_cluster(&["n1", "n2", "n3"], 7, true, &["--log-max-bytes", "20000"])
        .await
        .or_panic(seed);
    prepare(&members)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&refs(&members))));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            tokio::spawn(chaos_writer(
                m.handle(),
                seed.wrapping_add(i as u64),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let mut alive = [true; 3];
    let mut cut = [false; 3];
    while started.elapsed() < Duration::from_secs(20) {
        // Writes go on between the actions.
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1200))).await;
        let i = rng.random_range(0..3);
        let at = started.elapsed().as_millis();
        match rng.random_range(0..4) {
            0 if alive[i] && alive.iter().filter(|a| **a).count() > 1 => {
                eprintln!("seed {seed}: {at} ms: SIGKILL {}", members[i].name());
                members[i].node.kill().await.or_panic(seed);
                alive[i] = false;
            }
            1 if !alive[i] => {
                eprintln!("seed {seed}: {at} ms: restart {}", members[i].name());
                members[i].node.restart().await.or_panic(seed);
                alive[i] = true;
            }
            2 if !cut[i] => {
                eprintln!("seed {seed}: {at} ms: cut links from {}", members[i].name());
                members[i].cut();
                cut[i] = true;
            }
            3 if cut[i] => {
                eprintln!(
                    "seed {seed}: {at} ms: heal links from {}",
                    members[i].name()
                );
                members[i].heal();
                cut[i] = false;
            }
            _ => {}
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut ledger = Ledger::default();
    for w in writers {
        ledger.extend(w.await.unwrap().or_panic(seed));
    }
    for (i, m) in members.iter_mut().enumerate() {
        m.heal();
        if !alive[i] {
            m.node.restart().await.or_panic(seed);
        }
    }
    let writes: usize = ledger.acked.values().map(Vec::len).sum();
    let unanswered: usize = ledger.maybe.values().map(Vec::len).sum();
    eprintln!("seed {seed}: {writes} acknowledged writes, {unanswered} unanswered");
    let all = refs(&members);
    wait_links(&all, &DBS)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: {e:#}\n{}", logs(&all)));
    converge_and_check(&all, &ledger, seed, "after the chaos").await;
}
