//! The typed operation list, over the wire: legacy names answer as the
//! operation they name, the permission check speaks of an operation by its name whichever
//! alias asked for it, and a name no operation has is answered only after the check.

use serde_json::json;

use shoal_testkit::{assert_error, start};

const READER: (&str, &str) = ("reader", "reader-password");

fn restricted(operation: &str) -> String {
    format!("Operation '{operation}' is restricted to 'super_user' roles")
}

#[tokio::test]
async fn aliases_and_unknown_operations() -> anyhow::Result<()> {
    let node = start("operations").await?;
    node.op_ok(json!({"operation": "add_role", "role": "reader", "permission": {}}))
        .await?;
    node.op_ok(json!({
        "operation": "add_user", "username": READER.0, "password": READER.1,
        "role": "reader", "active": true,
    }))
    .await?;
    let reader = |op| node.ops_as(READER.0, READER.1, op);

    // Each legacy name does what its operation does.
    node.op_ok(json!({"operation": "create_schema", "schema": "old"}))
        .await?;
    node.op_ok(json!({"operation": "create_table", "schema": "old", "table": "dog", "hash_attribute": "id"}))
        .await?;
    node.op_ok(json!({"operation": "insert", "schema": "old", "table": "dog", "records": [{"id": 1, "name": "Rex"}]}))
        .await?;
    let described = node
        .op_ok(json!({"operation": "describe_schema", "schema": "old"}))
        .await?;
    assert!(
        described.get("dog").is_some(),
        "describe_schema: {described}"
    );
    let found = node
        .op_ok(json!({"operation": "search_by_hash", "schema": "old", "table": "dog", "hash_values": [1], "get_attributes": ["name"]}))
        .await?;
    assert_eq!(found, json!([{"name": "Rex"}]));
    // A reader may read through the alias as through the name.
    let (status, found) = reader(json!({"operation": "search_by_hash", "schema": "old", "table": "dog", "hash_values": [1], "get_attributes": ["name"]})).await?;
    assert_eq!((status, found), (200, json!([{"name": "Rex"}])));

    // Refusals name the operation, whichever of its names was sent.
    for (sent, name) in [
        ("create_schema", "create_database"),
        ("drop_schema", "drop_database"),
        ("set_node", "add_node"),
    ] {
        let answer =
            reader(json!({"operation": sent, "schema": "old", "hostname": "127.0.0.1"})).await?;
        assert_error(&answer, 403, &restricted(name));
    }
    node.op_ok(json!({"operation": "drop_schema", "schema": "old"}))
        .await?;
    let answer = node
        .ops(json!({"operation": "describe_database", "database": "old"}))
        .await?;
    assert_error(&answer, 404, "database 'old' does not exist");

    // An unknown name is answered after the permission check: only a super user learns that
    // no operation has it. Names are exact (case and spacing count).
    for name in ["frobnicate", "INSERT", " insert", ""] {
        assert_error(
            &reader(json!({"operation": name})).await?,
            403,
            &restricted(name),
        );
        let answer = node.ops(json!({"operation": name})).await?;
        assert_error(&answer, 400, &format!("Operation '{name}' not found"));
    }
    Ok(())
}
