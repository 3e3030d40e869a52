//! Named background workers, seen from outside: `system_information` and `cluster_status`
//! list what a node runs (writers per database, log trimming, serving loops, the
//! replication accept loop, links and senders per peer, subscriptions while they are
//! open), and a SIGTERM stops them all, promptly, with a subscription open.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};
use shoal_testkit::cluster::{DB, Member, prepare, start_cluster};
use shoal_testkit::{Node, basic, start_with, wait_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DEADLINE: Duration = Duration::from_secs(20);

/// The node's `system_information` `workers` section.
async fn workers_section(node: &Node) -> anyhow::Result<Value> {
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["workers"]}))
        .await?;
    Ok(info["workers"].clone())
}

/// The names of the workers in a list of worker statuses.
fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["name"].as_str().map(str::to_owned))
        .collect()
}

/// The status of the worker named `name`.
fn worker<'a>(list: &'a Value, name: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|w| w["name"] == name)
}

/// How many workers in a list have a name starting with `prefix`.
fn count(list: &Value, prefix: &str) -> usize {
    list.as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
        .count()
}

/// Waits until the active workers satisfy `want`; the last list seen on failure.
async fn wait_workers(
    node: &Node,
    what: &str,
    want: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let mut last = Value::Null;
    let waited = wait_until(DEADLINE, what, async || {
        last = workers_section(node).await?;
        Ok(want(&last["active"]))
    })
    .await;
    waited.with_context(|| format!("last workers section: {last:#}"))?;
    Ok(last)
}

async fn create_table(node: &Node) -> anyhow::Result<()> {
    node.op_ok(json!({
        "operation": "create_table", "database": "dev", "table": "dog", "primary_key": "id"
    }))
    .await?;
    Ok(())
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket subscription on `path` as the admin.
async fn websocket(node: &Node, path: &str) -> anyhow::Result<WsStream> {
    let mut request = format!("ws://{}{path}", node.http_addr()).into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, basic(node).parse()?);
    let (socket, response) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request)).await??;
    anyhow::ensure!(
        response.status() == 101,
        "upgrade answered {}",
        response.status()
    );
    Ok(socket)
}

/// Opens an SSE subscription on `path` as the admin.
async fn sse(node: &Node, path: &str) -> anyhow::Result<reqwest::Response> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let response = client
        .get(node.http_url(path))
        .header(ACCEPT, "text/event-stream")
        .header(AUTHORIZATION, basic(node))
        .send()
        .await?;
    anyhow::ensure!(
        response.status() == 200,
        "SSE answered {}",
        response.status()
    );
    Ok(response)
}

/// Every entry of a worker list has the documented fields.
fn assert_shape(list: &Value) {
    for w in list.as_array().expect("a list of workers") {
        assert!(w["name"].is_string(), "{w}");
        assert!(
            ["running", "idle", "backoff", "stopping"].contains(&w["state"].as_str().unwrap_or("")),
            "{w}"
        );
        assert!(w["started"].is_u64(), "{w}");
        assert!(w["restarts"].is_u64(), "{w}");
        assert!(w["items"].is_u64(), "{w}");
        assert!(
            w.as_object().is_some_and(|o| o.contains_key("last_error")),
            "{w}"
        );
    }
}

/// One node: its standing workers; a subscription's workers while it is open and gone
/// after it closes (WebSocket and SSE); then a SIGTERM with subscriptions open stops
/// every worker promptly, and the WebSocket client is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lists_its_workers_and_stops_them_all_on_sigterm() -> anyhow::Result<()> {
    let mut node = start_with("workers-one", &[]).await?;
    create_table(&node).await?;

    let standing = [
        "store/writer/system",
        "store/writer/dev",
        "store/log-trimmer",
        "server/operations-api",
        "server/http",
        "replication/accept",
        "replication/links",
    ];
    let section = wait_workers(&node, "the standing workers", |list| {
        let names = names(list);
        standing.iter().all(|n| names.contains(*n))
    })
    .await?;
    assert_shape(&section["active"]);
    assert!(
        section["finished"].is_u64() && section["failed"] == 0,
        "{section:#}"
    );
    let accepted = worker(&section["active"], "server/operations-api").unwrap()["items"]
        .as_u64()
        .unwrap();
    assert!(
        accepted >= 1,
        "the operations API counts its connections: {section:#}"
    );
    // The other sections keep their fields.
    let info = node
        .op_ok(json!({"operation": "system_information"}))
        .await?;
    for key in [
        "system",
        "time",
        "cpu",
        "memory",
        "table_size",
        "connections",
        "workers",
    ] {
        assert!(
            info.get(key).is_some(),
            "system_information lacks {key}: {info:#}"
        );
    }

    // A WebSocket subscription: its subscription and connection workers come and go.
    let mut ws = websocket(&node, "/dev/dog/").await?;
    wait_workers(&node, "the WebSocket's workers", |list| {
        count(list, "subscription/dev/dog") == 1 && count(list, "server/websocket/dev/dog") == 1
    })
    .await?;
    let info = node
        .op_ok(json!({"operation": "system_information"}))
        .await?;
    assert_eq!(info["connections"]["subscriptions"], 1, "{info:#}");
    ws.close(None).await?;
    wait_workers(&node, "the WebSocket's workers gone", |list| {
        count(list, "subscription/") + count(list, "server/websocket/") == 0
    })
    .await?;

    // An SSE subscription: the same, ended by the client going away.
    let stream = sse(&node, "/dev/dog/").await?;
    wait_workers(&node, "the SSE subscription's worker", |list| {
        count(list, "subscription/dev/dog") == 1
    })
    .await?;
    drop(stream);
    let section = wait_workers(&node, "the SSE subscription's worker gone", |list| {
        count(list, "subscription/") == 0
    })
    .await?;
    assert!(section["finished"].as_u64().unwrap() >= 3, "{section:#}");

    // SIGTERM with a WebSocket and an SSE subscription open.
    let mut ws = websocket(&node, "/dev/dog/").await?;
    let _stream = sse(&node, "/dev/dog/").await?;
    wait_workers(&node, "both subscriptions", |list| {
        count(list, "subscription/dev/dog") == 2
    })
    .await?;
    let started = Instant::now();
    let (exit, closed) = tokio::join!(node.terminate(), async {
        // The subscription ends with a reason, sent as the close frame.
        loop {
            match tokio::time::timeout(DEADLINE, ws.next()).await? {
                Some(Ok(Message::Close(frame))) => {
                    return Ok::<_, anyhow::Error>(frame.map(|f| f.reason.to_string()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the WebSocket failed before its close frame: {e}"),
                None => bail!("the WebSocket ended without a close frame"),
            }
        }
    });
    let took = started.elapsed();
    assert!(exit?.success(), "clean exit; log: {}", node.stderr_tail(30));
    let reason = closed?.ok_or_else(|| anyhow!("a close frame without a reason"))?;
    assert!(reason.contains("shutting down"), "close reason: {reason}");
    println!("SIGTERM to exit with two subscriptions open: {took:?}");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
    let log = std::fs::read_to_string(node.stderr_log())?;
    assert!(
        !log.contains("did not stop"),
        "every worker stopped by itself: {}",
        node.stderr_tail(30)
    );
    Ok(())
}

/// Two nodes: `cluster_status` lists the replication workers for the peer (a receiver
/// and a sender per database, the accept loop, the link manager), with the fields it had
/// before; a replicated write counts on the receiving link's worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_status_lists_the_links_and_senders_for_each_peer() -> anyhow::Result<()> {
    let members: Vec<Member> = start_cluster(&["wk-a", "wk-b"], 71, false, &[]).await?;
    prepare(&members).await?;
    let (a, b) = (&members[0].node, &members[1].node);

    let expected: Vec<String> = [
        "replication/accept".to_owned(),
        "replication/links".to_owned(),
    ]
    .into_iter()
    .chain(["system", DB].iter().flat_map(|db| {
        [
            format!("replication/receiver/wk-b/{db}"),
            format!("replication/sender/wk-b/{db}"),
        ]
    }))
    .collect();
    let mut last = Value::Null;
    let waited = wait_until(DEADLINE, "a's replication workers", async || {
        last = shoal_testkit::cluster::status(a).await?;
        let listed = names(&last["workers"]);
        Ok(expected.iter().all(|n| listed.contains(n)))
    })
    .await;
    waited.with_context(|| format!("last cluster_status: {last:#}"))?;
    assert_shape(&last["workers"]);
    assert!(
        names(&last["workers"])
            .iter()
            .all(|n| n.starts_with("replication/")),
        "cluster_status lists replication workers only: {last:#}"
    );
    for key in [
        "node_name",
        "is_enabled",
        "url",
        "ca_fingerprint",
        "connections",
    ] {
        assert!(
            last.get(key).is_some(),
            "cluster_status lacks {key}: {last:#}"
        );
    }
    // system_information lists them too.
    let section = workers_section(a).await?;
    let listed = names(&section["active"]);
    assert!(expected.iter().all(|n| listed.contains(n)), "{section:#}");

    // A write on b is applied on a by the link from b, which counts it.
    b.op_ok(json!({
        "operation": "insert", "database": DB, "table": shoal_testkit::cluster::TABLE,
        "records": [{"id": "counted", "v": 1}]
    }))
    .await?;
    let link = format!("replication/receiver/wk-b/{DB}");
    wait_until(DEADLINE, "the link counts what it applied", async || {
        let status = shoal_testkit::cluster::status(a).await?;
        Ok(worker(&status["workers"], &link).is_some_and(|w| w["items"].as_u64() >= Some(1)))
    })
    .await?;
    Ok(())
}

/// Out of file descriptors, the replication accept loop backs off (capped exponential)
/// instead of spinning on the failing accept, shows the error on its worker, and accepts
/// again once descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accept_loop_backs_off_when_out_of_file_descriptors_and_recovers() -> anyhow::Result<()>
{
    let node = start_with("workers-emfile", &[]).await?;
    let pid = node.pid().context("the node's pid")?;
    let replication = node.ready_line().addr("replication")?;
    let accepted = |section: &Value| {
        worker(&section["active"], "replication/accept").and_then(|w| w["items"].as_u64())
    };
    let before = accepted(&workers_section(&node).await?).unwrap_or(0);

    // Leave the node a few descriptors, then open more connections than that.
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let limit = open + 8;
    let status = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={limit}:{limit}"),
        ])
        .status()
        .context("running prlimit (util-linux)")?;
    anyhow::ensure!(status.success(), "prlimit failed: {status}");
    let mut held = Vec::new();
    for _ in 0..32 {
        held.push(tokio::net::TcpStream::connect(replication).await?);
    }
    let log = node.stderr_log();
    let failures = || -> anyhow::Result<usize> {
        let text = std::fs::read_to_string(&log)?;
        Ok(text.matches("replication accept failed").count())
    };
    wait_until(
        DEADLINE,
        "accept fails for want of descriptors",
        async || Ok(failures()? > 0),
    )
    .await?;
    // Measure the retry rate over a while: a spinning loop fails thousands of times.
    let first = failures()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let retried = failures()? - first;
    assert!(
        retried <= 12,
        "{retried} failed accepts in 2 s: the loop does not back off"
    );

    // Descriptors free again: the loop accepts, and its status shows what happened.
    drop(held);
    wait_until(DEADLINE, "the accept loop recovers", async || {
        let Ok(section) = workers_section(&node).await else {
            return Ok(false);
        };
        let probe = tokio::net::TcpStream::connect(replication).await;
        drop(probe);
        Ok(accepted(&section).is_some_and(|n| n > before + 32))
    })
    .await?;
    let section = workers_section(&node).await?;
    let accept = worker(&section["active"], "replication/accept").unwrap();
    assert!(accept["restarts"].as_u64() >= Some(1), "{accept}");
    let error = accept["last_error"]["message"].as_str().unwrap_or_default();
    assert!(error.contains("Too many open files"), "{accept}");
    Ok(())
}
