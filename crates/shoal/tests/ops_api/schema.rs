//! Databases, tables and attributes: create, drop, describe.

use serde_json::json;
use shoal_testkit::{
    assert_error, assert_error_shape, create_table, ids, insert, message, nums, rows, start,
    strip_timestamps,
};

use crate::helpers::{attribute_names, by_ids, describe, num, sorted_keys, txn_time};

#[tokio::test]
async fn databases_create_drop_describe() -> anyhow::Result<()> {
    let node = start("databases").await?;

    let body = node
        .op_ok(json!({"operation": "create_database", "database": "dev"}))
        .await?;
    assert_eq!(
        body,
        json!({"message": "database 'dev' successfully created"})
    );
    let dup = node
        .ops(json!({"operation": "create_database", "database": "dev"}))
        .await?;
    assert_error(&dup, 400, "database 'dev' already exists");

    // The legacy alias and field name.
    let body = node
        .op_ok(json!({"operation": "create_schema", "schema": "legacy"}))
        .await?;
    assert_eq!(message(&body), "database 'legacy' successfully created");
    let dup = node
        .ops(json!({"operation": "create_schema", "schema": "legacy"}))
        .await?;
    assert_error(&dup, 400, "database 'legacy' already exists");

    // `database` wins over `schema`; neither means `data`.
    let body = node
        .op_ok(json!({"operation": "create_database", "database": "both", "schema": "ignored"}))
        .await?;
    assert_eq!(message(&body), "database 'both' successfully created");
    let body = node.op_ok(json!({"operation": "create_database"})).await?;
    assert_eq!(message(&body), "database 'data' successfully created");

    // describe_all lists every database except `system`; an empty one is `{}`.
    let all = node.op_ok(json!({"operation": "describe_all"})).await?;
    assert_eq!(
        all,
        json!({"dev": {}, "legacy": {}, "both": {}, "data": {}}),
        "describe_all"
    );
    for (op, field, name) in [
        ("describe_database", "database", "dev"),
        ("describe_schema", "schema", "legacy"),
    ] {
        let body = node.op_ok(json!({"operation": op, field: name})).await?;
        assert_eq!(body, json!({}), "{op} {name}");
    }
    let body = node
        .op_ok(json!({"operation": "describe_database"}))
        .await?;
    assert_eq!(body, json!({}), "describe_database defaults to `data`");
    for (op, name) in [
        ("describe_database", "ignored"),
        ("describe_database", "nope"),
        ("describe_schema", "nope"),
    ] {
        let answer = node.ops(json!({"operation": op, "database": name})).await?;
        assert_error(&answer, 404, &format!("database '{name}' does not exist"));
    }

    // A database with a table and records, dropped and created again, comes back empty.
    create_table(&node, "dog").await?;
    insert(&node, "dog", json!([{"id": 1, "name": "Penny"}])).await?;
    let body = node
        .op_ok(json!({"operation": "drop_database", "database": "dev"}))
        .await?;
    assert_eq!(body, json!({"message": "successfully deleted 'dev'"}));
    let again = node
        .ops(json!({"operation": "drop_database", "database": "dev"}))
        .await?;
    assert_error(&again, 404, "database 'dev' does not exist");
    let gone = node
        .ops(json!({"operation": "describe_database", "database": "dev"}))
        .await?;
    assert_error(&gone, 404, "database 'dev' does not exist");
    let search = node
        .ops(json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": [1]}))
        .await?;
    assert_error(&search, 404, "database 'dev' does not exist");
    node.op_ok(json!({"operation": "create_database", "database": "dev"}))
        .await?;
    let body = node
        .op_ok(json!({"operation": "describe_database", "database": "dev"}))
        .await?;
    assert_eq!(body, json!({}), "a re-created database starts empty");

    let body = node
        .op_ok(json!({"operation": "drop_schema", "schema": "legacy"}))
        .await?;
    assert_eq!(message(&body), "successfully deleted 'legacy'");
    let missing = node.ops(json!({"operation": "drop_database"})).await?;
    assert_error(&missing, 400, "'database' is required");
    let system = node
        .ops(json!({"operation": "drop_database", "database": "system"}))
        .await?;
    assert_eq!(
        system.0, 403,
        "the system database cannot be dropped: {}",
        system.1
    );
    assert_error_shape(&system.1);

    let all = node.op_ok(json!({"operation": "describe_all"})).await?;
    assert_eq!(sorted_keys(&all), ["both", "data", "dev"]);
    Ok(())
}

#[tokio::test]
async fn tables_create_drop_describe() -> anyhow::Result<()> {
    let node = start("tables").await?;

    // create_table creates its database on first use.
    let body = node
        .op_ok(json!({"operation": "create_table", "database": "dev", "table": "dog", "primary_key": "id"}))
        .await?;
    assert_eq!(
        body,
        json!({"message": "table 'dev.dog' successfully created."})
    );
    let dup = node
        .ops(json!({"operation": "create_table", "database": "dev", "table": "dog", "primary_key": "id"}))
        .await?;
    assert_error(&dup, 400, "Table 'dog' already exists in 'dev'");

    // Legacy `schema` and `hash_attribute`; no database at all means `data`.
    let body = node
        .op_ok(json!({"operation": "create_table", "schema": "dev", "table": "cat", "hash_attribute": "name"}))
        .await?;
    assert_eq!(message(&body), "table 'dev.cat' successfully created.");
    let body = node
        .op_ok(json!({"operation": "create_table", "table": "bird", "primary_key": "id"}))
        .await?;
    assert_eq!(message(&body), "table 'data.bird' successfully created.");
    // The primary key can also be marked in `attributes`.
    let body = node
        .op_ok(json!({
            "operation": "create_table", "database": "dev", "table": "item",
            "attributes": [{"name": "sku", "is_primary_key": true}, {"name": "price", "indexed": true}]
        }))
        .await?;
    assert_eq!(message(&body), "table 'dev.item' successfully created.");

    let no_pk = node
        .ops(json!({"operation": "create_table", "database": "dev", "table": "fish"}))
        .await?;
    assert_error(&no_pk, 400, "'primary_key' is required");
    let no_table = node
        .ops(json!({"operation": "create_table", "database": "dev", "primary_key": "id"}))
        .await?;
    assert_error(&no_table, 400, "'table' is required");

    // describe_table of an empty table.
    let dog = describe(&node, "dog").await?;
    assert_eq!(dog["schema"], "dev");
    assert_eq!(dog["name"], "dog");
    assert_eq!(dog["hash_attribute"], "id");
    assert_eq!(dog["record_count"], 0);
    assert_eq!(
        dog["attributes"],
        json!([
            {"attribute": "id", "indexed": true, "is_primary_key": true},
            {"attribute": "__createdtime__", "indexed": true},
            {"attribute": "__updatedtime__", "indexed": true}
        ])
    );
    let cat = describe(&node, "cat").await?;
    assert_eq!(cat["hash_attribute"], "name");
    let item = describe(&node, "item").await?;
    assert_eq!(item["hash_attribute"], "sku");
    let sku = rows(&item["attributes"])
        .iter()
        .find(|a| a["attribute"] == "sku")
        .expect("sku is described");
    assert_eq!(sku["is_primary_key"], true);
    assert!(attribute_names(&item).contains(&"price"), "{item}");
    let bird = node
        .op_ok(json!({"operation": "describe_table", "table": "bird"}))
        .await?;
    assert_eq!(
        (&bird["schema"], &bird["name"]),
        (&json!("data"), &json!("bird"))
    );

    // After a write: new attributes, the count and the last update time.
    let written = insert(&node, "dog", json!([{"id": 1, "name": "Penny", "age": 5}])).await?;
    let dog = describe(&node, "dog").await?;
    assert_eq!(dog["record_count"], 1);
    assert_eq!(
        attribute_names(&dog),
        ["id", "__createdtime__", "__updatedtime__", "name", "age"]
    );
    for attr in &rows(&dog["attributes"])[3..] {
        assert_eq!(attr["indexed"], true, "{attr}");
        assert!(attr.get("is_primary_key").is_none(), "{attr}");
    }
    assert_eq!(num(&dog["last_updated_record"]), txn_time(&written));

    // describe_database / describe_schema / describe_all agree.
    let dev = node
        .op_ok(json!({"operation": "describe_database", "database": "dev"}))
        .await?;
    assert_eq!(sorted_keys(&dev), ["cat", "dog", "item"]);
    assert_eq!(dev["dog"]["record_count"], 1);
    assert_eq!(dev["dog"]["hash_attribute"], "id");
    let dev = node
        .op_ok(json!({"operation": "describe_schema", "schema": "dev"}))
        .await?;
    assert_eq!(sorted_keys(&dev), ["cat", "dog", "item"]);
    let all = node.op_ok(json!({"operation": "describe_all"})).await?;
    assert_eq!(
        sorted_keys(&all),
        ["data", "dev"],
        "no `system` in describe_all"
    );
    assert_eq!(sorted_keys(&all["data"]), ["bird"]);
    assert_eq!(all["dev"]["dog"]["record_count"], 1);
    assert_eq!(all["dev"]["dog"]["attributes"], dog["attributes"]);

    // Missing things.
    let answer = node
        .ops(json!({"operation": "describe_table", "database": "dev", "table": "nope"}))
        .await?;
    assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    let answer = node
        .ops(json!({"operation": "describe_table", "database": "nodb", "table": "dog"}))
        .await?;
    assert_error(&answer, 404, "database 'nodb' does not exist");
    let answer = node
        .ops(json!({"operation": "describe_table", "database": "dev"}))
        .await?;
    assert_error(&answer, 400, "'table' is required");

    // drop_table.
    let body = node
        .op_ok(json!({"operation": "drop_table", "database": "dev", "table": "dog"}))
        .await?;
    assert_eq!(
        body,
        json!({"message": "successfully deleted table 'dev.dog'"})
    );
    let again = node
        .ops(json!({"operation": "drop_table", "database": "dev", "table": "dog"}))
        .await?;
    assert_error(&again, 404, "Table 'dev.dog' does not exist");
    let answer = node
        .ops(json!({"operation": "drop_table", "database": "nodb", "table": "dog"}))
        .await?;
    assert_error(&answer, 404, "database 'nodb' does not exist");
    let body = node
        .op_ok(json!({"operation": "drop_table", "table": "bird"}))
        .await?;
    assert_eq!(message(&body), "successfully deleted table 'data.bird'");
    let answer = node
        .ops(json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": [1]}))
        .await?;
    assert_error(&answer, 404, "Table 'dev.dog' does not exist");
    let dev = node
        .op_ok(json!({"operation": "describe_database", "database": "dev"}))
        .await?;
    assert_eq!(sorted_keys(&dev), ["cat", "item"]);
    // A table created again under the same name starts empty.
    create_table(&node, "dog").await?;
    assert_eq!(describe(&node, "dog").await?["record_count"], 0);
    assert_eq!(by_ids(&node, "dog", json!([1])).await?, json!([]));

    // Names: 1-250 characters, no backtick and no forward slash.
    for bad in ["a/b", "a`b"] {
        let answer = node
            .ops(json!({"operation": "create_table", "database": "dev", "table": bad, "primary_key": "id"}))
            .await?;
        // Both are rejected with the same 400 error.
        assert_eq!(
            answer,
            (
                400,
                json!({"error": "'table' names cannot include backticks or forward slashes"}),
            ),
            "create_table `{bad}`"
        );
    }
    let long = "t".repeat(250);
    let answer = node
        .ops(json!({"operation": "create_table", "database": "dev", "table": long, "primary_key": "id"}))
        .await?;
    // Names of up to 250 characters are allowed.
    assert_eq!(
        answer,
        (
            200,
            json!({"message": format!("table 'dev.{long}' successfully created.")}),
        ),
        "create_table with a 250-character name"
    );
    Ok(())
}

#[tokio::test]
async fn attributes_create_and_drop() -> anyhow::Result<()> {
    let node = start("attributes").await?;
    create_table(&node, "dog").await?;
    insert(
        &node,
        "dog",
        json!([{"id": 1, "name": "Penny", "age": 5}, {"id": 2, "name": "Rex", "age": 7}]),
    )
    .await?;

    let body = node
        .op_ok(json!({"operation": "create_attribute", "database": "dev", "table": "dog", "attribute": "owner"}))
        .await?;
    assert_eq!(
        body,
        json!({"message": "attribute 'dev.dog.owner' successfully created."})
    );
    let dog = describe(&node, "dog").await?;
    let owner = rows(&dog["attributes"])
        .iter()
        .find(|a| a["attribute"] == "owner")
        .unwrap_or_else(|| panic!("owner is described: {dog}"));
    assert_eq!(owner["indexed"], true);

    for existing in ["owner", "age"] {
        let dup = node
            .ops(json!({"operation": "create_attribute", "database": "dev", "table": "dog", "attribute": existing}))
            .await?;
        assert_eq!(dup.0, 400, "duplicate attribute {existing}: {}", dup.1);
        assert_error_shape(&dup.1);
        // The spec's exact text, e.g. `attribute 'owner' already exists in dev.dog`.
        assert_eq!(
            dup.1,
            json!({"error": format!("attribute '{existing}' already exists in dev.dog")}),
            "create_attribute duplicate `{existing}` message"
        );
    }

    // Dropping an attribute removes it from the table and from every record.
    let body = node
        .op_ok(json!({"operation": "drop_attribute", "database": "dev", "table": "dog", "attribute": "age"}))
        .await?;
    assert_eq!(
        body,
        json!({"message": "successfully deleted attribute 'age'"})
    );
    let dog = describe(&node, "dog").await?;
    assert!(!attribute_names(&dog).contains(&"age"), "{dog}");
    assert_eq!(dog["record_count"], 2);
    let records = by_ids(&node, "dog", json!([1, 2])).await?;
    assert_eq!(
        rows(&records)
            .iter()
            .map(strip_timestamps)
            .collect::<Vec<_>>(),
        [
            json!({"id": 1, "name": "Penny"}),
            json!({"id": 2, "name": "Rex"})
        ]
    );
    let found = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "dog", "search_attribute": "age", "search_value": 7}))
        .await?;
    assert_eq!(found, json!([]), "the dropped attribute's index is gone");
    let found = node
        .op_ok(json!({
            "operation": "search_by_conditions", "database": "dev", "table": "dog",
            "conditions": [{"attribute": "age", "comparator": "greater_than", "value": 0}]
        }))
        .await?;
    assert_eq!(found, json!([]));

    let pk = node
        .ops(json!({"operation": "drop_attribute", "database": "dev", "table": "dog", "attribute": "id"}))
        .await?;
    assert_error(&pk, 400, "You cannot drop a hash attribute");
    let internal = node
        .ops(json!({"operation": "drop_attribute", "database": "dev", "table": "dog", "attribute": "__createdtime__"}))
        .await?;
    assert_error(
        &internal,
        400,
        "cannot drop internal timestamp attribute: __createdtime__",
    );
    let missing = node
        .ops(json!({"operation": "drop_attribute", "database": "dev", "table": "nope", "attribute": "x"}))
        .await?;
    assert_error(&missing, 404, "Table 'dev.nope' does not exist");

    // The attribute can come back, and is then new again.
    let body = insert(&node, "dog", json!([{"id": 3, "name": "Max", "age": 9}])).await?;
    assert_eq!(body["new_attributes"], json!(["age"]));
    let found = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "dog", "search_attribute": "age", "search_value": 9}))
        .await?;
    assert_eq!(ids(&found), nums(&[3]));
    let found = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "dog", "search_attribute": "age", "search_value": "*"}))
        .await?;
    assert_eq!(
        ids(&found),
        nums(&[1, 2, 3]),
        "`*` alone matches every record"
    );
    Ok(())
}
