//! Tables a component exports, and what dropping them does.

use reqwest::Method;
use serde_json::json;
use shoal_testkit::{admin, start, strip_timestamps};

use crate::answers::{assert_api_error, get_json, send};

#[tokio::test]
async fn component_export_and_drop() -> anyhow::Result<()> {
    let node = start("rest-components").await?;
    let config = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";
    let schema = "type Cat @table(database: \"dev\", table: \"cat\") @export(name: \"Cat\") {\n  id: ID @primaryKey\n  name: String @indexed\n}\n";
    for (file, payload) in [("config.yaml", config), ("schema.graphql", schema)] {
        node.op_ok(json!({
            "operation": "set_component_file", "project": "cats", "file": file, "payload": payload
        }))
        .await?;
    }
    // The component is listed with its files.
    let tree = node.op_ok(json!({"operation": "get_components"})).await?;
    let project = tree["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|p| p["name"] == "cats"))
        .unwrap_or_else(|| panic!("get_components lists `cats`: {tree}"));
    let files: Vec<&str> = project["entries"]
        .as_array()
        .expect("project entries")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(files, ["config.yaml", "schema.graphql"]);

    // The declared table exists, with its indexed attribute.
    let describe = node
        .op_ok(json!({"operation": "describe_table", "database": "dev", "table": "cat"}))
        .await?;
    assert_eq!(describe["primary_key"], json!("id"));
    let name_attr = describe["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["attribute"] == "name"))
        .unwrap_or_else(|| panic!("cat has `name`: {describe}"));
    assert_eq!(name_attr["indexed"], json!(true));

    // Served at /Cat/.
    let describe = get_json(&node, "/Cat").await?;
    assert_eq!(describe["name"], json!("cat"));
    assert_eq!(get_json(&node, "/Cat/").await?, json!([]));
    let put = send(admin(&node, Method::PUT, "/Cat/1").json(&json!({"name": "Tom"}))).await?;
    assert_eq!(put.status, 204, "{:?}", put.text());
    assert_eq!(
        strip_timestamps(&get_json(&node, "/Cat/1").await?),
        json!({"name": "Tom", "id": 1})
    );
    let post = send(admin(&node, Method::POST, "/Cat/").json(&json!({"name": "Felix"}))).await?;
    assert_eq!(post.status, 201);
    let location = post.header("location").expect("Location").to_owned();
    assert!(
        location.starts_with("/Cat/"),
        "Location {location} is under the export"
    );
    assert_eq!(get_json(&node, &location).await?["name"], json!("Felix"));
    let found = get_json(&node, "/Cat/?name=Tom&select(id)").await?;
    assert_eq!(found, json!([{"id": 1}]));
    let resp = send(admin(&node, Method::GET, "/Cat/1.csv")).await?;
    assert_eq!(resp.mime(), "text/csv");
    // The same table at its database path.
    assert_eq!(get_json(&node, "/dev/cat/1").await?["name"], json!("Tom"));
    let patch = send(admin(&node, Method::PATCH, "/Cat/1").json(&json!({"age": 2}))).await?;
    assert_eq!(patch.status, 204);
    assert_eq!(get_json(&node, "/dev/cat/1").await?["age"], json!(2));

    // A component with REST off declares its table but exports nothing.
    let hidden = "type Hidden @table(database: \"dev\", table: \"hidden\") @export(name: \"Hidden\") {\n  id: ID @primaryKey\n}\n";
    for (file, payload) in [
        (
            "config.yaml",
            "rest: false\ngraphqlSchema:\n  files: schema.graphql\n",
        ),
        ("schema.graphql", hidden),
    ] {
        node.op_ok(json!({
            "operation": "set_component_file", "project": "hidden", "file": file, "payload": payload
        }))
        .await?;
    }
    let resp = send(admin(&node, Method::GET, "/Hidden/")).await?;
    assert_api_error(&resp, 404, "GET /Hidden/ with rest: false");
    assert_eq!(get_json(&node, "/dev/hidden/").await?, json!([]));

    // Dropping the component removes the export, not the table.
    node.op_ok(json!({"operation": "drop_component", "project": "cats"}))
        .await?;
    for path in ["/Cat/1", "/Cat/", "/Cat"] {
        let resp = send(admin(&node, Method::GET, path)).await?;
        assert_api_error(&resp, 404, &format!("GET {path} after drop_component"));
    }
    let resp = send(admin(&node, Method::PUT, "/Cat/2").json(&json!({"name": "x"}))).await?;
    assert_api_error(&resp, 404, "PUT /Cat/2 after drop_component");
    assert_eq!(get_json(&node, "/dev/cat/1").await?["name"], json!("Tom"));
    let tree = node.op_ok(json!({"operation": "get_components"})).await?;
    let names: Vec<&str> = tree["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["hidden"], "get_components after drop: {tree}");
    Ok(())
}
