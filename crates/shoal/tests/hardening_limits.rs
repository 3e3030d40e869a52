//! Issue #9, item 1: no request can take a node down or pin unbounded memory.
//!
//! What broke: an authenticated `GET /data/t/?((((...a=1...))))` nested 20,000 deep
//! overflowed a worker's stack and aborted the node; bodies nested deeper than the store
//! could read back were accepted (CBOR up to ciborium's 256 levels, against serde_json's
//! 128 when the record is read again); sorted queries, `search_by_value`, MessagePack
//! collections and the Operations API searches held every result in memory;
//! `read_transaction_log` read the whole log before applying `limit`; a `startTime`
//! subscription scanned the log from its start; and a client that stopped reading a
//! streamed answer held its read transaction (and so the database file's free pages)
//! forever.
//!
//! Each test starts real `shoal` processes and talks to them over the wire, with limits
//! set small so that crossing them is quick.

// Shared helpers; this file uses only some of them.
#[allow(dead_code)]
mod common;

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, NodeOptions, wait_until};

/// Deepest nesting of condition groups (`shoal_query::MAX_DEPTH`).
const GROUP_DEPTH: usize = 16;

/// Starts a node with extra arguments; the replication port is free so nodes can run side
/// by side.
async fn start(name: &str, args: &[&str]) -> Node {
    let opts = NodeOptions {
        env: vec![("SHOAL_REPLICATION_PORT".into(), "0".into())],
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        ..NodeOptions::new(name)
    };
    Node::start(Path::new(env!("CARGO_BIN_EXE_shoal")), opts)
        .await
        .expect("node starts")
}

/// Creates `dev.<table>` with primary key `id`.
async fn create_table(node: &Node, table: &str) {
    node.op_ok(json!({
        "operation": "create_table", "database": "dev", "table": table, "primary_key": "id"
    }))
    .await
    .expect("create_table");
}

/// A request on the HTTP port as the admin.
fn rest(node: &Node, method: Method, path: &str) -> reqwest::RequestBuilder {
    node.client()
        .request(method, node.http_url(path))
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
}

/// Status and body of a REST request.
async fn send(request: reqwest::RequestBuilder) -> (u16, Vec<u8>) {
    let response = request.send().await.expect("request answered");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// The `error` text of a JSON error body.
fn error_text(body: &[u8]) -> String {
    let value: Value = serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)));
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {value}"))
        .to_owned()
}

/// Waits until the node answers `/health`, proving it is still up.
async fn still_up(node: &Node) {
    wait_until(Duration::from_secs(10), "the node answers", async || {
        Ok(node.http_get("/health").await?.0 == 200)
    })
    .await
    .expect("node still answers");
}

// ---------------------------------------------------------------------------------------
// Depth limits of the query languages
// ---------------------------------------------------------------------------------------

/// The reproduced crash: 20,000 nested parentheses in a REST query. Now a 400 naming
/// the limit, and the node keeps answering; the deepest allowed nesting still works.
#[tokio::test]
async fn a_deeply_nested_rest_query_is_refused_and_the_node_stays_up() {
    let node = start("deep-query", &[]).await;
    node.op_ok(json!({"operation": "create_database", "database": "data"}))
        .await
        .unwrap();
    node.op_ok(json!({
        "operation": "create_table", "database": "data", "table": "t", "primary_key": "id"
    }))
    .await
    .unwrap();
    node.op_ok(json!({
        "operation": "insert", "database": "data", "table": "t",
        "records": [{"id": 1, "a": 1}, {"id": 2, "a": 2}]
    }))
    .await
    .unwrap();
    let deep = format!("{}a=1{}", "(".repeat(20_000), ")".repeat(20_000));
    let (status, body) = send(rest(&node, Method::GET, &format!("/data/t/?{deep}"))).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        error_text(&body),
        format!("conditions are nested more than {GROUP_DEPTH} groups deep")
    );
    still_up(&node).await;

    let nested = |depth: usize| {
        let mut raw = String::new();
        for _ in 0..depth {
            raw.push_str("(id=2|");
        }
        raw.push_str("a=1");
        raw.push_str(&")".repeat(depth));
        raw
    };
    let (status, body) = send(rest(
        &node,
        Method::GET,
        &format!("/data/t/?{}", nested(GROUP_DEPTH)),
    ))
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let found: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(common::ids(&found), common::nums(&[1, 2]));
    let (status, body) = send(rest(
        &node,
        Method::GET,
        &format!("/data/t/?{}", nested(GROUP_DEPTH + 1)),
    ))
    .await;
    assert_eq!(status, 400);
    assert!(error_text(&body).contains("groups deep"));
}

/// `search_by_conditions` groups nest as deep as REST groups, and no deeper.
#[tokio::test]
async fn deeply_nested_search_conditions_are_refused() {
    let node = start("deep-conditions", &[]).await;
    create_table(&node, "t").await;
    node.op_ok(json!({
        "operation": "insert", "database": "dev", "table": "t",
        "records": [{"id": 1, "a": 1}, {"id": 2, "a": 2}]
    }))
    .await
    .unwrap();
    let search = |depth: usize| {
        let mut conditions =
            json!([{"search_attribute": "a", "search_type": "equals", "search_value": 1}]);
        for _ in 0..depth {
            conditions = json!([
                {"search_attribute": "id", "search_type": "equals", "search_value": 2},
                {"operator": "or", "conditions": conditions}
            ]);
        }
        json!({
            "operation": "search_by_conditions", "database": "dev", "table": "t",
            "operator": "or", "conditions": conditions
        })
    };
    let found = node.op_ok(search(GROUP_DEPTH)).await.unwrap();
    assert_eq!(common::ids(&found), common::nums(&[1, 2]));
    common::assert_error(
        &node.ops(search(GROUP_DEPTH + 1)).await.unwrap(),
        400,
        &format!("conditions are nested more than {GROUP_DEPTH} groups deep"),
    );
    still_up(&node).await;
}
