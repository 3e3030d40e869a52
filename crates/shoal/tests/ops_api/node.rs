//! The node as a whole: system information, request errors and authentication, the HTTP
//! port, durability across restarts.

use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, assert_error, assert_error_prefix,
    assert_error_shape, create_table, ids, insert, nums, start, start_with,
};

use crate::conditions::{cond, dog};
use crate::helpers::{by_ids, describe, keys, num, sorted_keys, txn_time};

#[tokio::test]
async fn system_information() -> anyhow::Result<()> {
    let node = start("sysinfo").await?;
    let body = node
        .op_ok(json!({"operation": "system_information"}))
        .await?;
    for key in ["system", "time", "memory", "cpu"] {
        assert!(body[key].is_object(), "{key} in {body}");
    }
    assert!(
        num(&body["time"]["current"]) > 1.6e12,
        "time.current is epoch ms: {body}"
    );
    assert!(body["time"]["uptime"].is_number(), "{body}");

    let body = node
        .op_ok(json!({"operation": "system_information", "attributes": ["time"]}))
        .await?;
    assert_eq!(keys(&body), ["time"]);
    let body = node
        .op_ok(json!({"operation": "system_information", "attributes": ["memory", "cpu"]}))
        .await?;
    assert_eq!(sorted_keys(&body), ["cpu", "memory"]);
    Ok(())
}

#[tokio::test]
async fn request_errors_and_authentication() -> anyhow::Result<()> {
    let node = start_with("errors", &["--max-body-bytes", "1000"]).await?;
    let admin = Some((DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD));
    let json_type = Some("application/json");

    let answer = node.ops(json!({"operation": "frobnicate"})).await?;
    assert_error(&answer, 400, "Operation 'frobnicate' not found");
    let answer = node.ops(json!({"table": "dog", "records": []})).await?;
    assert_error(
        &answer,
        400,
        "Request body must include an 'operation' property.",
    );
    let answer = node
        .ops_raw(&b"{\"operation\": \"describe_all\""[..], json_type, admin)
        .await?;
    assert_error_prefix(&answer, 400, "Invalid JSON");
    let answer = node.ops_raw(&b"not json"[..], json_type, admin).await?;
    assert_error_prefix(&answer, 400, "Invalid JSON");
    let answer = node.ops_raw(Vec::new(), json_type, admin).await?;
    assert_error_prefix(&answer, 400, "Invalid JSON");
    let answer = node.ops_raw(&b"[1, 2]"[..], json_type, admin).await?;
    assert_error(&answer, 400, "Invalid JSON.");

    // Credentials.
    let describe_all = serde_json::to_vec(&json!({"operation": "describe_all"}))?;
    let answer = node.ops_raw(describe_all.clone(), json_type, None).await?;
    assert_error(&answer, 401, "Must login");
    let answer = node
        .ops_as(
            DEFAULT_ADMIN_USER,
            "wrong-password",
            json!({"operation": "describe_all"}),
        )
        .await?;
    assert_error(&answer, 401, "Login failed");
    let answer = node
        .ops_as(
            "nobody",
            DEFAULT_ADMIN_PASSWORD,
            json!({"operation": "describe_all"}),
        )
        .await?;
    assert_error(&answer, 401, "Login failed");
    let answer = node.ops_raw(describe_all, json_type, admin).await?;
    assert_eq!(answer, (200, json!({})), "the right credentials work");

    // Body size: under the limit is served, over it is 413 with an error body.
    let padded = |len: usize| {
        serde_json::to_vec(&json!({"operation": "describe_all", "pad": "x".repeat(len)}))
    };
    let small = padded(800)?;
    assert!(small.len() < 1000);
    let answer = node.ops_raw(small, json_type, admin).await?;
    assert_eq!(answer, (200, json!({})));
    let big = padded(2000)?;
    let (status, body) = node.ops_raw(big, json_type, admin).await?;
    assert_eq!(status, 413, "{body}");
    assert_error_shape(&body);
    Ok(())
}

#[tokio::test]
async fn http_port_health_and_unknown_paths() -> anyhow::Result<()> {
    let node = start("http").await?;
    let (status, _) = node.http_get("/health").await?;
    assert_eq!(status, 200, "GET /health needs no credentials");
    // The HTTP port also serves REST, which authenticates first: an anonymous request
    // for an unknown path is refused (401) or not found (404), either way as JSON.
    let (status, text) = node.http_get("/no/such/path").await?;
    assert!([401, 404].contains(&status), "{status} {text}");
    assert_error_shape(&serde_json::from_str(&text)?);
    // With credentials, an unknown path is a 404 with a JSON error.
    let response = node
        .client()
        .get(node.http_url("/no/such/path"))
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    assert_eq!(status, 404, "{text}");
    assert_error_shape(&serde_json::from_str(&text)?);
    Ok(())
}

#[tokio::test]
async fn data_survives_restarts() -> anyhow::Result<()> {
    let mut node = start("persist").await?;
    create_table(&node, "dog").await?;
    let dogs: Vec<Value> = (1..=50).map(dog).collect();
    insert(&node, "dog", Value::Array(dogs)).await?;
    node.op_ok(
        json!({"operation": "update", "database": "dev", "table": "dog",
                      "records": [{"id": 1, "name": "Changed"}]}),
    )
    .await?;
    let last = node
        .op_ok(json!({"operation": "delete", "database": "dev", "table": "dog", "ids": [2, 3]}))
        .await?;
    node.op_ok(json!({"operation": "create_attribute", "database": "dev", "table": "dog", "attribute": "owner"}))
        .await?;

    let search = json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
                        "conditions": [cond("age", "greater_than_equal", json!(5))],
                        "sort": {"attribute": "weight", "descending": true}});
    let log = json!({"operation": "read_transaction_log", "database": "dev", "table": "dog"});
    let before_describe = describe(&node, "dog").await?;
    let before_search = node.op_ok(search.clone()).await?;
    let before_log = node.op_ok(log.clone()).await?;
    assert_eq!(before_describe["record_count"], 48);

    let status = node.terminate().await?;
    assert!(status.success(), "clean shutdown: {status}");
    node.restart().await?;

    let after = describe(&node, "dog").await?;
    for key in [
        "record_count",
        "hash_attribute",
        "attributes",
        "last_updated_record",
    ] {
        assert_eq!(
            after[key], before_describe[key],
            "describe_table {key} after restart"
        );
    }
    assert_eq!(node.op_ok(search.clone()).await?, before_search);
    assert_eq!(node.op_ok(log.clone()).await?, before_log);
    let found = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "dog",
                      "search_attribute": "name", "search_value": "Changed", "get_attributes": ["id"]}))
        .await?;
    assert_eq!(found, json!([{"id": 1}]), "indexes survive");
    let all = node.op_ok(json!({"operation": "describe_all"})).await?;
    assert_eq!(sorted_keys(&all), ["dev"]);

    // Writes go on: keys are still known, deleted ones are free, time moves forward.
    let body = insert(
        &node,
        "dog",
        json!([{"id": 1, "name": "dup"}, {"id": 2, "name": "back"}]),
    )
    .await?;
    assert_eq!(body["inserted_hashes"], json!([2]));
    assert_eq!(body["skipped_hashes"], json!([1]));
    assert!(txn_time(&body) > txn_time(&last));
    assert_eq!(describe(&node, "dog").await?["record_count"], 49);

    // An acknowledged write survives a crash too.
    insert(&node, "dog", json!([{"id": 100, "name": "crash"}])).await?;
    node.kill().await?;
    node.restart().await?;
    let body = by_ids(&node, "dog", json!([100, 2])).await?;
    assert_eq!(ids(&body), nums(&[100, 2]));
    assert_eq!(describe(&node, "dog").await?["record_count"], 50);
    let (status, _) = node.http_get("/health").await?;
    assert_eq!(status, 200);
    Ok(())
}
