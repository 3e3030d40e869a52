//! Node names that are DNS host names with dots (`db1.eu-west.example.com`), as Harper's
//! default node names are: a three-node cluster of such nodes forms, replicates and
//! reports them. The names need not resolve: nodes dial each other's loopback addresses
//! (127.0.117.x), and a name only has to match the peer's certificate.

use anyhow::Context;
use serde_json::json;

use shoal_testkit::cluster::{
    DBS, Member, Op, Outcome, add_node_request, links_up, logs, prepare, refs, status,
    wait_converged,
};

const NAMES: [&str; 3] = [
    "db1.eu-west.example.com",
    "db2.eu-west.example.com",
    "db3.us-east.example.com",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_with_dotted_names_converge() -> anyhow::Result<()> {
    let mut members = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let host = format!("127.0.117.{}", i + 1);
        members.push(Member::start(name, &host, false, &[]).await?);
    }
    // Joined by URL, as Harper's documentation writes them.
    for other in &members[1..] {
        let url = format!("wss://{}", other.url());
        let answer = members[0]
            .node
            .op_ok(add_node_request(&url, json!({})))
            .await?;
        assert_eq!(
            answer["message"],
            format!("Successfully added '{}' to the cluster", other.name()),
            "{answer}"
        );
    }
    let all = refs(&members);
    prepare(&members).await.with_context(|| logs(&all))?;

    for m in &members {
        let key = format!("from-{}", m.name());
        let outcome = m
            .handle()
            .write(Op::Insert, &key, &json!({"id": key, "by": m.name()}))
            .await?;
        assert!(
            matches!(outcome, Outcome::Written(_)),
            "{}: {outcome:?}",
            m.name()
        );
    }
    let dump = wait_converged(&all).await.with_context(|| logs(&all))?;
    let written: Vec<(&str, &str)> = dump
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or(""),
                r["by"].as_str().unwrap_or(""),
            )
        })
        .collect();
    let expected: Vec<(String, &str)> = NAMES.iter().map(|n| (format!("from-{n}"), *n)).collect();
    let expected: Vec<(&str, &str)> = expected.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(written, expected);

    for m in &members {
        let status = status(&m.node).await?;
        assert_eq!(status["node_name"], m.name(), "{status:#}");
        let mut peers: Vec<&str> = status["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        peers.sort_unstable();
        let others: Vec<&str> = NAMES.into_iter().filter(|n| *n != m.name()).collect();
        assert_eq!(peers, others, "{}: {status:#}", m.name());
        assert!(links_up(&status, &others, &DBS), "{}: {status:#}", m.name());
    }
    Ok(())
}
