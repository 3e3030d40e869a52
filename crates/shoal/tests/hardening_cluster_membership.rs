//! Membership, trust and clocks, enforced (issue #9, items 2, 4 and 8): a removed or
//! narrowed node stops receiving at once; joining through a TLS man in the middle fails
//! without the password ever crossing the wire; a node publishes only its own CA; a peer
//! whose clock runs a day ahead neither wins conflicts nor drags the others' clocks.
//!
//! Real `shoal` processes on loopback (test k uses 127.0.9k.x). "Never arrives" is
//! checked by polling for a window many times the links' ping interval (200 ms) and the
//! membership check interval (500 ms) after a control write made at the same time has
//! arrived elsewhere.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, Direction, TlsMitm, now_ms, wait_until};

use shoal_testkit::cluster::{
    DB, DBS, LINKS_DEADLINE, Member, TABLE, add_node_request, exists, join, logs, prepare, refs,
    socket, start_cluster, status, wait_links, wait_table,
};

/// How long a write that must not arrive is watched for.
const NEVER_WINDOW: Duration = Duration::from_secs(3);
const DAY_MS: u64 = 86_400_000;

/// The record `key` of the test table on `member`, if it has it.
async fn get(member: &Member, key: &str) -> anyhow::Result<Option<Value>> {
    let found = member
        .node
        .op_ok(json!({
            "operation": "search_by_id", "database": DB, "table": TABLE,
            "ids": [key], "get_attributes": ["*"],
        }))
        .await?;
    Ok(found.as_array().and_then(|rows| rows.first()).cloned())
}

/// Upserts `{id: key, v: value}` on `member`; returns the write's txn_time.
async fn put(member: &Member, key: &str, value: &str) -> anyhow::Result<f64> {
    let answer = member
        .node
        .op_ok(json!({
            "operation": "upsert", "database": DB, "table": TABLE,
            "records": [{"id": key, "v": value}],
        }))
        .await?;
    answer["txn_time"]
        .as_f64()
        .ok_or_else(|| anyhow::anyhow!("no txn_time in {answer}"))
}

/// Waits until `member` holds `key` with value `value`.
async fn wait_value(member: &Member, key: &str, value: &str) -> anyhow::Result<()> {
    let what = format!("{} holds {key} = {value}", member.name());
    wait_until(LINKS_DEADLINE, &what, async || {
        Ok(get(member, key).await?.is_some_and(|r| r["v"] == value))
    })
    .await
}

/// Watches `member` for [`NEVER_WINDOW`]: none of `keys` may appear.
async fn never_arrives(member: &Member, keys: &[&str], members: &[&Member]) {
    let until = Instant::now() + NEVER_WINDOW;
    while Instant::now() < until {
        for key in keys {
            let got = get(member, key).await.expect("search_by_id");
            assert!(
                got.is_none(),
                "{} received {key}: {got:?}\n{}",
                member.name(),
                logs(members)
            );
        }
        tokio::time::sleep(shoal_testkit::POLL_INTERVAL).await;
    }
}

/// The names `member`'s cluster_status lists as connections.
async fn connection_names(member: &Member) -> anyhow::Result<Vec<String>> {
    let status = status(&member.node).await?;
    Ok(status["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_node_stops_receiving_and_its_links_close() {
    let members = start_cluster(&["a", "b", "c"], 91, false, &[])
        .await
        .expect("cluster");
    prepare(&members).await.expect("links");
    let all = refs(&members);
    let [a, b, c] = [&members[0], &members[1], &members[2]];
    put(a, "before", "1").await.unwrap();
    wait_value(b, "before", "1").await.unwrap();

    a.node
        .op_ok(json!({"operation": "remove_node", "node_name": "b"}))
        .await
        .expect("remove_node");
    // The removal is a membership change that replicates; once c knows it too, nothing
    // may reach b from anyone.
    wait_until(LINKS_DEADLINE, "c no longer lists b", async || {
        Ok(!connection_names(c).await?.contains(&"b".to_owned()))
    })
    .await
    .unwrap();
    assert!(!connection_names(a).await.unwrap().contains(&"b".to_owned()));
    put(a, "after-a", "1").await.unwrap();
    put(c, "after-c", "1").await.unwrap();
    put(b, "from-b", "1").await.unwrap();
    // The controls: the remaining members still replicate both ways.
    wait_value(c, "after-a", "1").await.unwrap();
    wait_value(a, "after-c", "1").await.unwrap();
    never_arrives(b, &["after-a", "after-c"], &all).await;
    for other in [a, c] {
        assert!(
            get(other, "from-b").await.unwrap().is_none(),
            "{} took a write from the removed node",
            other.name()
        );
    }
    // b's links from a and c closed and stay closed (b still dials; nobody lets it in).
    wait_until(LINKS_DEADLINE, "b's links are all down", async || {
        let status = status(&b.node).await?;
        Ok(["a", "c"].iter().all(|peer| {
            DBS.iter()
                .all(|db| socket(&status, peer, db).is_none_or(|s| s["connected"] == false))
        }))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&all)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn narrowing_a_route_stops_that_database_at_once() {
    let members = start_cluster(&["a", "b"], 92, false, &[])
        .await
        .expect("cluster");
    prepare(&members).await.expect("links");
    let all = refs(&members);
    let [a, b] = [&members[0], &members[1]];

    // b keeps taking `system` (and sending everything) but no longer takes `dev`.
    a.node
        .op_ok(json!({
            "operation": "update_node", "node_name": "b",
            "subscriptions": [
                {"database": "system", "subscribe": true, "publish": true},
                {"database": DB, "subscribe": false, "publish": true},
            ],
        }))
        .await
        .expect("update_node");
    // Written at once: before b could have learned of the change and closed its link.
    put(a, "narrowed", "1").await.unwrap();
    // The controls: dev still flows from b, and system still flows to b.
    put(b, "from-b", "1").await.unwrap();
    wait_value(a, "from-b", "1").await.unwrap();
    a.node
        .op_ok(json!({"operation": "create_database", "database": "probe"}))
        .await
        .unwrap();
    wait_until(LINKS_DEADLINE, "b learns of database probe", async || {
        exists(&b.node, "probe", None).await
    })
    .await
    .unwrap();
    never_arrives(b, &["narrowed"], &all).await;
}

/// Rewrites the existing node's challenge so that it names the proxy's own CA (set once
/// the proxy runs): the joiner's certificate check then passes, and only the proof's
/// binding to the TLS session can stop the join.
fn substitute_ca(impostor_ca: Arc<OnceLock<String>>) -> shoal_testkit::Rewrite {
    Arc::new(move |direction, payload: Vec<u8>| {
        let Some(impostor_ca) = impostor_ca.get() else {
            return payload;
        };
        // A frame is its format byte, then MessagePack.
        let Some((&format, body)) = payload.split_first() else {
            return payload;
        };
        if direction != Direction::ToClient {
            return payload;
        }
        let Ok(mut frame) = rmp_serde::from_slice::<Value>(body) else {
            return payload;
        };
        let Some(challenge) = frame.get_mut("JoinChallenge") else {
            return payload;
        };
        challenge["ca_pem"] = Value::from(impostor_ca.as_str());
        let mut out = vec![format];
        out.extend(rmp_serde::to_vec_named(&frame).expect("re-encodes"));
        out
    })
}

/// `add_node` on `on` towards `url`; the status and answer.
async fn add_node(on: &Member, url: SocketAddr, extra: Value) -> (u16, Value) {
    let request = add_node_request(&url.to_string(), extra);
    on.node.ops(request).await.expect("add_node answered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_through_a_tls_man_in_the_middle_fails_without_revealing_the_password() {
    let a = Member::start("a", "127.0.93.1", false, &[]).await.unwrap();
    let b = Member::start("b", "127.0.93.2", false, &[]).await.unwrap();
    let target: SocketAddr = b.url().parse().unwrap();
    let listen: SocketAddr = "127.0.93.3:0".parse().unwrap();
    let password = DEFAULT_ADMIN_PASSWORD.as_bytes();
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);

    // A plain man in the middle: its certificate is not the one b's CA signed.
    let mitm = TlsMitm::start(listen, target, "b", None).await.unwrap();
    let (code, answer) = add_node(&a, mitm.addr(), json!({})).await;
    assert!(code >= 400, "joined through a man in the middle: {answer}");
    assert!(mitm.frames() >= 1, "the join went through the proxy");
    assert!(
        !contains(&mitm.seen(), password),
        "the man in the middle saw the password"
    );

    // One that also swaps in its own CA, so the certificate check passes: the proof it
    // relays is bound to its own TLS session with the joiner, and b refuses it.
    let own_ca = Arc::new(OnceLock::new());
    let rewriting = TlsMitm::start(listen, target, "b", Some(substitute_ca(own_ca.clone())))
        .await
        .unwrap();
    own_ca.set(rewriting.ca_pem().to_owned()).unwrap();
    let (code, answer) = add_node(&a, rewriting.addr(), json!({})).await;
    assert!(
        code >= 400,
        "joined through a rewriting man in the middle: {answer}"
    );
    // Join, challenge and proof all went through it: it was the proof that failed.
    assert!(rewriting.frames() >= 3, "{} frames", rewriting.frames());
    assert!(!contains(&rewriting.seen(), password));
    assert!(connection_names(&a).await.unwrap().is_empty());
    assert!(connection_names(&b).await.unwrap().is_empty());

    // With b's CA fingerprint pinned, even the rewriting one is caught before any proof.
    let fingerprint = status(&b.node).await.unwrap()["ca_fingerprint"]
        .as_str()
        .expect("cluster_status shows the CA fingerprint")
        .to_owned();
    let frames = rewriting.frames();
    let pin = json!({"ca_fingerprint": fingerprint});
    let (code, answer) = add_node(&a, rewriting.addr(), pin.clone()).await;
    assert!(code >= 400, "{answer}");
    assert_eq!(rewriting.frames() - frames, 2, "no proof sent: {answer}");

    // The real thing, pinned: joins.
    let (code, answer) = add_node(&a, target, json!({"ca_fingerprint": "00:11"})).await;
    assert!(code >= 400, "a wrong pin must refuse: {answer}");
    let (code, answer) = add_node(&a, target, pin).await;
    assert_eq!(code, 200, "{answer}");
    wait_links(&[&a, &b], &["system"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_published_for_another_node_is_not_trusted() {
    let mut members = start_cluster(&["a", "b", "c"], 94, false, &[])
        .await
        .expect("cluster");
    wait_links(&refs(&members), &["system"])
        .await
        .expect("links");
    let b_ca = std::fs::read_to_string(members[1].node.root().join("keys/ca.pem")).unwrap();
    let c_ca = std::fs::read_to_string(members[2].node.root().join("keys/ca.pem")).unwrap();

    // c, compromised or broken, publishes its own CA as b's: with it, c could pose as b.
    let c = &mut members[2];
    c.node.terminate().await.unwrap();
    {
        let options = shoal_store::StoreOptions::new(c.node.root().join("database"), "c");
        let store = shoal_store::Store::open(options).unwrap();
        let system = store.database("system").unwrap();
        let forged = json!({"name": "b", "certificate": c_ca});
        system
            .write(
                shoal_store::Write::Records {
                    table: "hdb_certificate".into(),
                    mode: shoal_store::Mode::Upsert,
                    records: vec![forged.as_object().unwrap().clone()],
                },
                None,
            )
            .await
            .unwrap();
        store.close().await;
    }
    c.node.restart().await.unwrap();
    // Logged after the forgery on c: once a has it, it has seen the forgery too.
    c.node
        .op_ok(json!({"operation": "create_database", "database": "probe"}))
        .await
        .unwrap();
    let [a, b, _] = [&members[0], &members[1], &members[2]];
    wait_until(LINKS_DEADLINE, "a learns of database probe", async || {
        exists(&a.node, "probe", None).await
    })
    .await
    .unwrap();
    for member in [a, b] {
        let rows = member
            .node
            .op_ok(json!({
                "operation": "search_by_id", "database": "system", "table": "hdb_certificate",
                "ids": ["b"], "get_attributes": ["*"],
            }))
            .await
            .unwrap();
        assert_eq!(
            rows[0]["certificate"].as_str(),
            Some(b_ca.as_str()),
            "{} took c's word for b's CA\n{}",
            member.name(),
            logs(&refs(&members))
        );
    }
    // a still trusts b's real certificate: its links with b come (or stay) up.
    wait_links(&[a, b], &["system"]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_a_day_ahead_neither_wins_nor_drags_the_other_clocks() {
    let day = DAY_MS.to_string();
    let a = Member::start("a", "127.0.95.1", false, &[]).await.unwrap();
    let b = Member::start("b", "127.0.95.2", false, &["--clock-offset-ms", &day])
        .await
        .unwrap();
    let c = Member::start("c", "127.0.95.3", false, &[]).await.unwrap();
    join(&a, &b).await.unwrap();
    join(&a, &c).await.unwrap();
    let all = [&a, &b, &c];
    wait_links(&[&a, &c], &["system"]).await.unwrap();
    a.node
        .op_ok(json!({"operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id"}))
        .await
        .unwrap();
    wait_table(&all)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&all)));

    // b writes first (stamped a day ahead), a writes the same key a moment later.
    let b_time = put(&b, "k", "from-b").await.unwrap();
    assert!(
        b_time > now_ms() + (DAY_MS - 60_000) as f64,
        "b's clock is shifted"
    );
    put(&b, "b-only", "1").await.unwrap();
    let a_time = put(&a, "k", "from-a").await.unwrap();
    assert!((a_time - now_ms()).abs() < 60_000.0, "a's clock: {a_time}");

    // a holds b's entries back and says why.
    wait_until(LINKS_DEADLINE, "a reports b's clock ahead", async || {
        let status = status(&a.node).await?;
        Ok(socket(&status, "b", DB)
            .and_then(|s| s["clock_ahead_ms"].as_u64())
            .is_some_and(|ahead| ahead > DAY_MS - 60_000))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", logs(&all)));

    // The others go on: their writes replicate, with timestamps of today, and a's write
    // is what they hold for k.
    let c_time = put(&c, "from-c", "1").await.unwrap();
    assert!((c_time - now_ms()).abs() < 60_000.0, "c's clock: {c_time}");
    wait_value(&a, "from-c", "1").await.unwrap();
    wait_value(&c, "k", "from-a").await.unwrap();
    // a's writes still reach b.
    put(&a, "to-b", "1").await.unwrap();
    wait_value(&b, "to-b", "1").await.unwrap();
    let a_later = put(&a, "later", "1").await.unwrap();
    assert!(
        (a_later - now_ms()).abs() < 60_000.0,
        "a's clock dragged: {a_later}"
    );
    for member in [&a, &c] {
        assert_eq!(get(member, "k").await.unwrap().unwrap()["v"], "from-a");
    }
    never_arrives(&a, &["b-only"], &all).await;
    never_arrives(&c, &["b-only"], &all).await;
}
