//! A database that reaches its configured size: writes that would grow it get 507 with a
//! clear message, everything else keeps working, deleting makes room, and the store is
//! consistent after a restart. (Before: the failing commit answered 500 "commit failed",
//! and once the map was full even deletes failed, so no room could be made.)

use serde_json::{Value, json};
use shoal_testkit::start_with;

#[tokio::test]
async fn a_full_database_answers_507_and_deletes_make_room() -> anyhow::Result<()> {
    let mut node = start_with("full", &["--map-size-mb", "2"]).await?;
    node.op_ok(json!({"operation": "create_table", "database": "dev", "table": "blob", "primary_key": "id"}))
        .await?;
    let pad = "x".repeat(8 * 1024);
    let mut stored = 0u64;
    let refused = loop {
        let answer = node
            .ops(
                json!({"operation": "insert", "database": "dev", "table": "blob",
                "records": [{"id": stored, "pad": pad}]}),
            )
            .await?;
        if answer.0 != 200 {
            break answer;
        }
        stored += 1;
        assert!(stored < 2_000, "2 MiB never filled up");
    };
    assert_eq!(refused.0, 507, "{}", refused.1);
    let text = refused.1["error"].as_str().unwrap_or_default();
    assert!(text.starts_with("storage is full"), "{text}");
    assert!(stored > 20, "only {stored} records of 8 KiB fit in 2 MiB");

    // Reads and the headroom report still work.
    let found = node
        .op_ok(json!({"operation": "search_by_id", "database": "dev", "table": "blob", "ids": [0, stored - 1], "get_attributes": ["id"]}))
        .await?;
    assert_eq!(found.as_array().map(Vec::len), Some(2), "{found}");
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["table_size"]}))
        .await?;
    let dev = info["table_size"]
        .as_array()
        .and_then(|dbs| dbs.iter().find(|d| d["database"] == "dev"))
        .cloned()
        .unwrap_or_else(|| panic!("no dev in {info}"));
    assert_eq!(dev["capacity"], json!(2 << 20));
    assert!(dev["used"].as_u64().unwrap() > (2 << 20) * 3 / 4, "{dev}");

    // Deleting makes room; then writes work again.
    let half: Vec<Value> = (0..stored / 2).map(Value::from).collect();
    let deleted = node
        .op_ok(json!({"operation": "delete", "database": "dev", "table": "blob", "ids": half}))
        .await?;
    assert_eq!(
        deleted["deleted_hashes"].as_array().unwrap().len() as u64,
        stored / 2
    );
    node.op_ok(
        json!({"operation": "insert", "database": "dev", "table": "blob",
        "records": [{"id": "after", "pad": pad}]}),
    )
    .await?;

    // Consistent after a restart: exactly the records acknowledged.
    node.terminate().await?;
    node.restart().await?;
    let described = node
        .op_ok(json!({"operation": "describe_table", "database": "dev", "table": "blob"}))
        .await?;
    assert_eq!(described["record_count"], json!(stored - stored / 2 + 1));
    Ok(())
}
