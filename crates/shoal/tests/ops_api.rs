//! End-to-end tests of the Operations API: every test starts its own `shoal` process
//! and talks to it over HTTP only, checking the answers against HarperDB's Operations
//! API as described by the compatibility spec.

use std::cmp::Ordering;

use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, assert_error, assert_error_prefix,
    assert_error_shape, create_table, ids, insert, message, nums, rows, start, start_with,
    strip_timestamps,
};

// ---------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------

/// `search_by_id` on `dev.<table>` returning whole records.
async fn by_ids(node: &Node, table: &str, ids: Value) -> anyhow::Result<Value> {
    node.op_ok(json!({
        "operation": "search_by_id", "database": "dev", "table": table,
        "ids": ids, "get_attributes": ["*"]
    }))
    .await
}

/// `describe_table` of `dev.<table>`.
async fn describe(node: &Node, table: &str) -> anyhow::Result<Value> {
    node.op_ok(json!({"operation": "describe_table", "database": "dev", "table": table}))
        .await
}

/// `base` with the fields of `extra` added (both objects).
fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// A number field as `f64`.
#[track_caller]
fn num(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The `txn_time` of a write answer.
#[track_caller]
fn txn_time(body: &Value) -> f64 {
    num(&body["txn_time"])
}

/// The keys of a JSON object, in order.
#[track_caller]
fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The keys of a JSON object, sorted.
#[track_caller]
fn sorted_keys(v: &Value) -> Vec<&str> {
    let mut k = keys(v);
    k.sort_unstable();
    k
}

/// JSON values sorted by their text (for answers whose order is unspecified).
fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(Value::to_string);
    values
}

/// The `attribute` names listed by a describe_table answer.
#[track_caller]
fn attribute_names(described: &Value) -> Vec<&str> {
    rows(&described["attributes"])
        .iter()
        .map(|a| a["attribute"].as_str().expect("attribute name"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Databases and tables
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn insert_update_upsert() -> anyhow::Result<()> {
    let node = start("writes").await?;
    create_table(&node, "dog").await?;

    let body = insert(
        &node,
        "dog",
        json!([{"id": 1, "name": "Penny", "age": 5}, {"id": 2, "name": "Rex"}]),
    )
    .await?;
    assert_eq!(
        keys(&body),
        [
            "message",
            "new_attributes",
            "txn_time",
            "inserted_hashes",
            "skipped_hashes"
        ]
    );
    assert_eq!(message(&body), "inserted 2 of 2 records");
    assert_eq!(
        sorted(rows(&body["new_attributes"]).clone()),
        [json!("age"), json!("name")]
    );
    assert_eq!(body["inserted_hashes"], json!([1, 2]));
    assert_eq!(body["skipped_hashes"], json!([]));

    // Timestamps: set on every record, the same within one request.
    let records = by_ids(&node, "dog", json!([1, 2])).await?;
    let created: Vec<f64> = rows(&records)
        .iter()
        .map(|r| num(&r["__createdtime__"]))
        .collect();
    let updated: Vec<f64> = rows(&records)
        .iter()
        .map(|r| num(&r["__updatedtime__"]))
        .collect();
    assert_eq!(created[0], created[1]);
    assert_eq!(created, updated);

    // Existing keys are skipped, not overwritten.
    let body = insert(
        &node,
        "dog",
        json!([{"id": 2, "name": "Dup"}, {"id": 3, "name": "Max"}]),
    )
    .await?;
    assert_eq!(message(&body), "inserted 1 of 2 records");
    assert_eq!(body["inserted_hashes"], json!([3]));
    assert_eq!(body["skipped_hashes"], json!([2]));
    assert_eq!(body["new_attributes"], json!([]));
    let rex = by_ids(&node, "dog", json!([2])).await?;
    assert_eq!(rex[0]["name"], "Rex");

    // A record without a primary key gets a generated UUID string.
    let body = insert(&node, "dog", json!([{"name": "Ghost"}])).await?;
    assert_eq!(message(&body), "inserted 1 of 1 records");
    let uuid = body["inserted_hashes"][0]
        .as_str()
        .unwrap_or_else(|| panic!("generated key is a string: {body}"))
        .to_owned();
    assert_eq!(uuid.len(), 36, "{uuid}");
    for (i, c) in uuid.chars().enumerate() {
        if [8, 13, 18, 23].contains(&i) {
            assert_eq!(c, '-', "{uuid}");
        } else {
            assert!(c.is_ascii_hexdigit(), "{uuid}");
        }
    }
    let ghost = by_ids(&node, "dog", json!([uuid])).await?;
    assert_eq!(
        strip_timestamps(&ghost[0]),
        json!({"id": uuid, "name": "Ghost"})
    );

    // update merges into existing records and skips missing keys.
    let body = node
        .op_ok(json!({
            "operation": "update", "database": "dev", "table": "dog",
            "records": [{"id": 1, "age": 6, "color": "brown"}, {"id": 42, "age": 1}]
        }))
        .await?;
    assert_eq!(
        keys(&body),
        [
            "message",
            "new_attributes",
            "txn_time",
            "update_hashes",
            "skipped_hashes"
        ]
    );
    assert_eq!(message(&body), "updated 1 of 2 records");
    assert_eq!(body["update_hashes"], json!([1]));
    assert_eq!(body["skipped_hashes"], json!([42]));
    assert_eq!(body["new_attributes"], json!(["color"]));
    let t_update = txn_time(&body);
    let penny = &by_ids(&node, "dog", json!([1])).await?[0];
    assert_eq!(
        strip_timestamps(penny),
        json!({"id": 1, "name": "Penny", "age": 6, "color": "brown"})
    );
    assert_eq!(
        num(&penny["__createdtime__"]),
        created[0],
        "created time is kept"
    );
    assert!(
        num(&penny["__updatedtime__"]) >= created[0],
        "updated time moves"
    );
    assert_eq!(num(&penny["__updatedtime__"]), t_update);
    assert_eq!(
        by_ids(&node, "dog", json!([42])).await?,
        json!([]),
        "update creates nothing"
    );

    let no_pk = node
        .ops(json!({"operation": "update", "database": "dev", "table": "dog", "records": [{"age": 3}]}))
        .await?;
    assert_error(
        &no_pk,
        400,
        "a valid hash attribute must be provided with update record",
    );

    // upsert merges or creates; it has no skipped_hashes.
    let body = node
        .op_ok(json!({
            "operation": "upsert", "database": "dev", "table": "dog",
            "records": [{"id": 2, "color": "black"}, {"id": 5, "name": "Bella"}]
        }))
        .await?;
    assert_eq!(
        keys(&body),
        ["message", "new_attributes", "txn_time", "upserted_hashes"]
    );
    assert_eq!(message(&body), "upserted 2 of 2 records");
    assert_eq!(body["upserted_hashes"], json!([2, 5]));
    let t_upsert = txn_time(&body);
    let upserted = by_ids(&node, "dog", json!([2, 5])).await?;
    assert_eq!(
        rows(&upserted)
            .iter()
            .map(strip_timestamps)
            .collect::<Vec<_>>(),
        [
            json!({"id": 2, "name": "Rex", "color": "black"}),
            json!({"id": 5, "name": "Bella"})
        ]
    );
    assert_eq!(num(&upserted[0]["__createdtime__"]), created[1]);
    assert_eq!(num(&upserted[1]["__createdtime__"]), t_upsert);
    assert_eq!(num(&upserted[1]["__updatedtime__"]), t_upsert);

    // Indexes follow updates.
    node.op_ok(json!({"operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "name": "Pen"}]}))
        .await?;
    let by_name = |name: &str| {
        json!({"operation": "search_by_value", "database": "dev", "table": "dog",
               "search_attribute": "name", "search_value": name, "get_attributes": ["id"]})
    };
    assert_eq!(node.op_ok(by_name("Penny")).await?, json!([]));
    assert_eq!(node.op_ok(by_name("Pen")).await?, json!([{"id": 1}]));
    assert_eq!(describe(&node, "dog").await?["record_count"], 5);

    // The default database is `data`.
    node.op_ok(json!({"operation": "create_table", "table": "thing", "primary_key": "id"}))
        .await?;
    let body = node
        .op_ok(json!({"operation": "insert", "table": "thing", "records": [{"id": "a"}]}))
        .await?;
    assert_eq!(body["inserted_hashes"], json!(["a"]));
    let found = node
        .op_ok(json!({"operation": "search_by_id", "database": "data", "table": "thing", "ids": ["a"], "get_attributes": ["id"]}))
        .await?;
    assert_eq!(found, json!([{"id": "a"}]));

    // Errors: writes answer a missing table or database with 400.
    for op in ["insert", "update", "upsert"] {
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "nope", "records": [{"id": 1}]}))
            .await?;
        assert_error(&answer, 400, "Table 'dev.nope' does not exist");
        let answer = node
            .ops(json!({"operation": op, "database": "nodb", "table": "dog", "records": [{"id": 1}]}))
            .await?;
        assert_error(&answer, 400, "database 'nodb' does not exist");
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "dog", "records": {"id": 1}}))
            .await?;
        assert_error(&answer, 400, "'records' must be an array");
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "dog"}))
            .await?;
        assert_error(&answer, 400, "'records' is required");
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "records": [{"id": 1}]}))
            .await?;
        assert_error(&answer, 400, "'table' is required");
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "dog", "records": [1, 2]}))
            .await?;
        assert_eq!(answer.0, 400, "{op} of non-objects: {}", answer.1);
        assert_error_shape(&answer.1);
    }
    assert_eq!(
        describe(&node, "dog").await?["record_count"],
        5,
        "failed writes wrote nothing"
    );
    Ok(())
}

#[tokio::test]
async fn delete_records() -> anyhow::Result<()> {
    let node = start("delete").await?;
    create_table(&node, "dog").await?;
    let dogs: Vec<Value> = (1..=5)
        .map(|i| json!({"id": i, "name": format!("dog{i}")}))
        .collect();
    insert(&node, "dog", Value::Array(dogs)).await?;
    let delete =
        |ids: Value| json!({"operation": "delete", "database": "dev", "table": "dog", "ids": ids});

    let body = node.op_ok(delete(json!([1, 2, 99]))).await?;
    assert_eq!(
        keys(&body),
        ["message", "deleted_hashes", "skipped_hashes", "txn_time"]
    );
    assert_eq!(message(&body), "2 of 3 records successfully deleted");
    assert_eq!(body["deleted_hashes"], json!([1, 2]));
    assert_eq!(body["skipped_hashes"], json!([99]));

    let body = node.op_ok(delete(json!([3]))).await?;
    assert_eq!(message(&body), "1 of 1 record successfully deleted");
    assert_eq!(body["deleted_hashes"], json!([3]));
    // The legacy field name.
    let body = node
        .op_ok(
            json!({"operation": "delete", "database": "dev", "table": "dog", "hash_values": [4]}),
        )
        .await?;
    assert_eq!(message(&body), "1 of 1 record successfully deleted");
    assert_eq!(body["deleted_hashes"], json!([4]));
    let body = node.op_ok(delete(json!([4]))).await?;
    assert_eq!(message(&body), "0 of 1 record successfully deleted");
    assert_eq!(body["deleted_hashes"], json!([]));
    assert_eq!(body["skipped_hashes"], json!([4]));

    let left = by_ids(&node, "dog", json!([1, 2, 3, 4, 5])).await?;
    assert_eq!(ids(&left), nums(&[5]));
    assert_eq!(describe(&node, "dog").await?["record_count"], 1);
    let all = node
        .op_ok(json!({"operation": "search_by_value", "database": "dev", "table": "dog", "search_attribute": "name", "search_value": "dog*"}))
        .await?;
    assert_eq!(ids(&all), nums(&[5]), "deleted records leave the index");

    // String keys.
    let body = insert(&node, "dog", json!([{"name": "Ghost"}])).await?;
    let uuid = body["inserted_hashes"][0].clone();
    let body = node.op_ok(delete(json!([uuid]))).await?;
    assert_eq!(body["deleted_hashes"], json!([uuid]));
    // A deleted key can be inserted again.
    let body = insert(&node, "dog", json!([{"id": 1, "name": "again"}])).await?;
    assert_eq!(body["inserted_hashes"], json!([1]));

    let answer = node
        .ops(json!({"operation": "delete", "database": "dev", "table": "nope", "ids": [1]}))
        .await?;
    assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    let answer = node
        .ops(json!({"operation": "delete", "database": "nodb", "table": "dog", "ids": [1]}))
        .await?;
    assert_error(&answer, 404, "database 'nodb' does not exist");
    let answer = node
        .ops(json!({"operation": "delete", "database": "dev", "table": "dog"}))
        .await?;
    assert_eq!(answer.0, 400, "delete without ids: {}", answer.1);
    assert_error_shape(&answer.1);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Searches
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn search_by_id_and_hash() -> anyhow::Result<()> {
    let node = start("by-id").await?;
    create_table(&node, "dog").await?;
    let penny = json!({"id": 1, "name": "Penny", "age": 5});
    let rex = json!({"id": 2, "name": "Rex"});
    let max = json!({"id": 3, "name": "Max", "age": 9});
    let text = json!({"id": "abc", "name": "Str"});
    insert(&node, "dog", json!([penny, rex, max, text])).await?;

    // Order of the ids is kept; missing ids are left out.
    let body = by_ids(&node, "dog", json!([3, 99, 1])).await?;
    assert_eq!(
        rows(&body).iter().map(strip_timestamps).collect::<Vec<_>>(),
        [max.clone(), penny.clone()]
    );
    for record in rows(&body) {
        assert!(record["__createdtime__"].is_number(), "{record}");
        assert!(record["__updatedtime__"].is_number(), "{record}");
    }
    // Projection: requested attributes only, absent ones as null.
    let body = node
        .op_ok(json!({
            "operation": "search_by_id", "database": "dev", "table": "dog",
            "ids": [2, 1], "get_attributes": ["name", "age"]
        }))
        .await?;
    assert_eq!(
        body,
        json!([{"name": "Rex", "age": null}, {"name": "Penny", "age": 5}])
    );
    // The legacy alias and field name, mixed key types.
    let body = node
        .op_ok(json!({
            "operation": "search_by_hash", "schema": "dev", "table": "dog",
            "hash_values": ["abc", 1, "nope"], "get_attributes": ["id", "name"]
        }))
        .await?;
    assert_eq!(
        body,
        json!([{"id": "abc", "name": "Str"}, {"id": 1, "name": "Penny"}])
    );
    assert_eq!(by_ids(&node, "dog", json!([])).await?, json!([]));
    assert_eq!(by_ids(&node, "dog", json!([4, 5])).await?, json!([]));

    let answer = node
        .ops(json!({"operation": "search_by_id", "database": "dev", "table": "nope", "ids": [1], "get_attributes": ["*"]}))
        .await?;
    assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    let answer = node
        .ops(json!({"operation": "search_by_id", "database": "nodb", "table": "dog", "ids": [1], "get_attributes": ["*"]}))
        .await?;
    assert_error(&answer, 404, "database 'nodb' does not exist");
    let answer = node
        .ops(json!({"operation": "search_by_id", "database": "dev", "table": "dog", "ids": 1, "get_attributes": ["*"]}))
        .await?;
    assert_eq!(answer.0, 400, "ids not an array: {}", answer.1);
    assert_error_shape(&answer.1);
    Ok(())
}

#[tokio::test]
async fn search_by_value_wildcards_and_paging() -> anyhow::Result<()> {
    let node = start("by-value").await?;
    create_table(&node, "dog").await?;
    insert(
        &node,
        "dog",
        json!([
            {"id": 1, "name": "Penny", "age": 5},
            {"id": 2, "name": "Rex", "age": 3},
            {"id": 3, "name": "Pencil", "age": 5},
            {"id": 4, "name": "Benny", "age": 7},
            {"id": 5, "name": "Penelope", "age": 2},
            {"id": 6, "name": "Johnny"}
        ]),
    )
    .await?;
    let search = |attribute: &str, value: Value, extra: Value| {
        merged(
            json!({
                "operation": "search_by_value", "database": "dev", "table": "dog",
                "search_attribute": attribute, "search_value": value, "get_attributes": ["*"]
            }),
            extra,
        )
    };

    // Matches, compared as sets; `expected` is in the order of the attribute's values.
    let cases: [(&str, Value, &[u64]); 8] = [
        ("name", json!("Pen*"), &[3, 5, 1]),
        ("name", json!("*ny"), &[4, 6, 1]),
        ("name", json!("*en*"), &[4, 3, 5, 1]),
        ("name", json!("Rex"), &[2]),
        ("name", json!("Nobody"), &[]),
        ("name", json!("*"), &[4, 6, 3, 5, 1, 2]),
        ("age", json!(5), &[1, 3]),
        ("age", json!(7), &[4]),
    ];
    for (attribute, value, expected) in cases {
        let body = node
            .op_ok(search(attribute, value.clone(), json!({})))
            .await?;
        assert_eq!(
            sorted(ids(&body)),
            sorted(nums(expected)),
            "search_by_value {attribute} = {value}"
        );
        if attribute == "name" {
            // Results come in the order of the searched attribute's index (value order),
            // not in primary key order.
            assert_eq!(
                ids(&body),
                nums(expected),
                "order of search_by_value {attribute} = {value}"
            );
        }
    }
    // The new field names.
    let body = node
        .op_ok(json!({
            "operation": "search_by_value", "database": "dev", "table": "dog",
            "attribute": "age", "value": 2, "get_attributes": ["id", "name"]
        }))
        .await?;
    assert_eq!(body, json!([{"id": 5, "name": "Penelope"}]));
    let body = node
        .op_ok(search(
            "name",
            json!("Rex"),
            json!({"get_attributes": ["name", "color"]}),
        ))
        .await?;
    assert_eq!(body, json!([{"name": "Rex", "color": null}]));

    // Paging over the primary key, where value order and key order agree.
    let body = node
        .op_ok(search("id", json!("*"), json!({"offset": 1, "limit": 2})))
        .await?;
    assert_eq!(ids(&body), nums(&[2, 3]));
    let body = node
        .op_ok(search("id", json!("*"), json!({"offset": 4})))
        .await?;
    assert_eq!(ids(&body), nums(&[5, 6]));
    let body = node
        .op_ok(search("id", json!("*"), json!({"limit": 1})))
        .await?;
    assert_eq!(ids(&body), nums(&[1]));
    // `desc` reverses the value order.
    let body = node
        .op_ok(search("name", json!("Pen*"), json!({"desc": true})))
        .await?;
    assert_eq!(ids(&body), nums(&[1, 5, 3]), "Penny, Penelope, Pencil");
    // limit/offset page through the value order (Pencil, Penelope, Penny).
    let body = node
        .op_ok(search("name", json!("Pen*"), json!({"limit": 2})))
        .await?;
    assert_eq!(ids(&body), nums(&[3, 5]), "search_by_value Pen* limit 2");
    let body = node
        .op_ok(search(
            "name",
            json!("Pen*"),
            json!({"offset": 1, "limit": 2}),
        ))
        .await?;
    assert_eq!(
        ids(&body),
        nums(&[5, 1]),
        "search_by_value Pen* offset 1 limit 2"
    );

    let answer = node
        .ops(json!({"operation": "search_by_value", "database": "dev", "table": "nope", "search_attribute": "name", "search_value": "*"}))
        .await?;
    assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    let answer = node
        .ops(json!({"operation": "search_by_value", "database": "nodb", "table": "dog", "search_attribute": "name", "search_value": "*"}))
        .await?;
    assert_error(&answer, 404, "database 'nodb' does not exist");
    Ok(())
}

// --- search_by_conditions against a model -------------------------------------------

const NAMES: [&str; 6] = ["Penny", "Pencil", "Rex", "Maxine", "Bella", "Ben"];
const BREEDS: [&str; 5] = ["lab", "poodle", "pug", "beagle", "husky"];

/// One dog of the conditions dataset, fully determined by its id.
fn dog(id: u64) -> Value {
    let tags = match id % 4 {
        0 => json!([]),
        1 => json!(["a"]),
        2 => json!(["a", "b"]),
        _ => json!(["b", "c"]),
    };
    let mut dog = json!({
        "id": id,
        "name": format!("{}-{:02}", NAMES[(id % 6) as usize], id % 37),
        "age": id % 17,
        "weight": (id * 7 % 50) as f64 + 0.5,
        "active": id.is_multiple_of(3),
        "tags": tags,
    });
    // Every eleventh dog has no breed at all.
    if !id.is_multiple_of(11) {
        dog["breed"] = json!(BREEDS[(id % 5) as usize]);
    }
    dog
}

/// Creates `dev.dog` and inserts 200 dogs in one request, in shuffled key order; returns
/// them sorted by id.
async fn load_dogs(node: &Node) -> anyhow::Result<Vec<Value>> {
    create_table(node, "dog").await?;
    let dogs: Vec<Value> = (0..200u64).map(|i| dog(i * 73 % 200 + 1)).collect();
    let body = insert(node, "dog", Value::Array(dogs.clone())).await?;
    assert_eq!(message(&body), "inserted 200 of 200 records");
    let mut dogs = dogs;
    dogs.sort_by_key(|d| d["id"].as_u64());
    Ok(dogs)
}

/// A condition with the current field names.
fn cond(attribute: &str, comparator: &str, value: Value) -> Value {
    json!({"attribute": attribute, "comparator": comparator, "value": value})
}

/// A condition with the legacy field names.
fn legacy(attribute: &str, comparator: &str, value: Value) -> Value {
    json!({"search_attribute": attribute, "search_type": comparator, "search_value": value})
}

/// A nested group.
fn group(operator: &str, conditions: Value) -> Value {
    json!({"operator": operator, "conditions": conditions})
}

/// Harper's ordering of two scalars of the same type; `None` across types.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

/// The first present field among `names` of a condition.
fn field<'a>(condition: &'a Value, names: &[&str]) -> &'a Value {
    names
        .iter()
        .find_map(|n| condition.get(*n))
        .unwrap_or_else(|| panic!("condition {condition} has none of {names:?}"))
}

/// Whether `record` satisfies a condition or group (the model of the comparators).
fn satisfies(condition: &Value, record: &Value) -> bool {
    if let Some(list) = condition.get("conditions") {
        return satisfies_all(condition.get("operator"), list, record);
    }
    let attribute = field(condition, &["attribute", "search_attribute"])
        .as_str()
        .expect("attribute name");
    let comparator = field(condition, &["comparator", "search_type"])
        .as_str()
        .expect("comparator");
    let value = field(condition, &["value", "search_value"]);
    let stored = record.get(attribute);
    // An array attribute matches when one of its elements does.
    let scalars: Vec<&Value> = match stored {
        None => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(v) => vec![v],
    };
    let any = |f: &dyn Fn(Option<Ordering>) -> bool| scalars.iter().any(|x| f(order(x, value)));
    let text = |f: &dyn Fn(&str, &str) -> bool| {
        scalars.iter().any(|x| match (x.as_str(), value.as_str()) {
            (Some(s), Some(t)) => f(s, t),
            _ => false,
        })
    };
    use Ordering::{Equal, Greater, Less};
    match comparator {
        "equals" => any(&|o| o == Some(Equal)),
        "not_equal" => !any(&|o| o == Some(Equal)),
        "contains" => match stored {
            Some(Value::String(s)) => value.as_str().is_some_and(|t| s.contains(t)),
            Some(Value::Array(_)) => any(&|o| o == Some(Equal)),
            _ => false,
        },
        "starts_with" => text(&|s, t| s.starts_with(t)),
        "ends_with" => text(&|s, t| s.ends_with(t)),
        "greater_than" => any(&|o| o == Some(Greater)),
        "greater_than_equal" => any(&|o| matches!(o, Some(Greater | Equal))),
        "less_than" => any(&|o| o == Some(Less)),
        "less_than_equal" => any(&|o| matches!(o, Some(Less | Equal))),
        "between" => scalars.iter().any(|x| {
            matches!(order(x, &value[0]), Some(Greater | Equal))
                && matches!(order(x, &value[1]), Some(Less | Equal))
        }),
        other => panic!("the model has no comparator {other}"),
    }
}

fn satisfies_all(operator: Option<&Value>, list: &Value, record: &Value) -> bool {
    let list = list.as_array().expect("conditions array");
    match operator
        .and_then(Value::as_str)
        .map(str::to_lowercase)
        .as_deref()
    {
        None | Some("and") => list.iter().all(|c| satisfies(c, record)),
        Some("or") => list.iter().any(|c| satisfies(c, record)),
        Some(other) => panic!("the model has no operator {other}"),
    }
}

/// Harper's sort object as a comparison of two records.
fn sort_order(sort: &Value, a: &Value, b: &Value) -> Ordering {
    let attribute = sort["attribute"].as_str().expect("sort attribute");
    let ord = order(&a[attribute], &b[attribute])
        .unwrap_or_else(|| panic!("sort attribute {attribute} is not comparable"));
    let ord = if sort["descending"].as_bool().unwrap_or(false) {
        ord.reverse()
    } else {
        ord
    };
    match (ord, sort.get("next")) {
        (Ordering::Equal, Some(next)) => sort_order(next, a, b),
        _ => ord,
    }
}

/// What a search_by_conditions request should answer over `dogs` (sorted by id): matches
/// in key order unless sorted (ties keep key order), then offset, limit and projection.
fn expected(dogs: &[Value], query: &Value) -> Vec<Value> {
    let mut hits: Vec<&Value> = dogs
        .iter()
        .filter(|d| satisfies_all(query.get("operator"), &query["conditions"], d))
        .collect();
    if let Some(sort) = query.get("sort") {
        hits.sort_by(|a, b| sort_order(sort, a, b));
    }
    let offset = query.get("offset").and_then(Value::as_u64).unwrap_or(0) as usize;
    let limit = query
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |l| l as usize);
    let attributes: Option<Vec<&str>> = query.get("get_attributes").map(|list| {
        rows(list)
            .iter()
            .map(|a| a.as_str().expect("attribute name"))
            .collect()
    });
    hits.into_iter()
        .skip(offset)
        .take(limit)
        .map(|d| match &attributes {
            Some(list) if !list.contains(&"*") => Value::Object(
                list.iter()
                    .map(|a| ((*a).to_owned(), d.get(*a).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
            _ => d.clone(),
        })
        .collect()
}

/// Runs a search_by_conditions on `dev.dog` (`query` holds everything but the operation
/// and table) and compares it exactly with the model; returns the number of results.
async fn check_conditions(node: &Node, dogs: &[Value], query: Value) -> anyhow::Result<usize> {
    let request = merged(
        json!({"operation": "search_by_conditions", "database": "dev", "table": "dog"}),
        query.clone(),
    );
    let body = node.op_ok(request).await?;
    let actual: Vec<Value> = rows(&body).iter().map(strip_timestamps).collect();
    let want = expected(dogs, &query);
    let id_list = |v: &[Value]| v.iter().map(|r| r["id"].clone()).collect::<Vec<_>>();
    assert_eq!(id_list(&actual), id_list(&want), "ids of {query}");
    assert_eq!(actual, want, "records of {query}");
    Ok(want.len())
}

#[tokio::test]
async fn search_by_conditions_comparators_and_groups() -> anyhow::Result<()> {
    let node = start("conditions").await?;
    let dogs = load_dogs(&node).await?;

    // Every comparator, alone, with both the current and the legacy field names; on
    // indexed attributes, on the primary key, on arrays and on booleans.
    let single = [
        cond("age", "equals", json!(5)),
        legacy("weight", "equals", json!(10.5)),
        legacy("breed", "not_equal", json!("lab")),
        cond("age", "not_equal", json!(3)),
        cond("name", "contains", json!("ell")),
        legacy("tags", "contains", json!("b")),
        cond("name", "starts_with", json!("Pen")),
        legacy("name", "starts_with", json!("Max")),
        cond("name", "ends_with", json!("7")),
        legacy("breed", "ends_with", json!("le")),
        cond("age", "greater_than", json!(12)),
        legacy("id", "greater_than", json!(190)),
        cond("weight", "greater_than_equal", json!(40.5)),
        legacy("name", "greater_than_equal", json!("Pencil-30")),
        cond("age", "less_than", json!(3)),
        legacy("id", "less_than", json!(8)),
        cond("weight", "less_than_equal", json!(10.5)),
        legacy("breed", "less_than_equal", json!("husky")),
        cond("age", "between", json!([4, 6])),
        legacy("name", "between", json!(["Maxine", "Pencil-10"])),
        cond("id", "between", json!([10, 20])),
        cond("weight", "between", json!([20, 30.5])),
        cond("active", "equals", json!(true)),
        cond("tags", "equals", json!("a")),
    ];
    for c in single {
        let n = check_conditions(
            &node,
            &dogs,
            json!({"conditions": [c], "get_attributes": ["id"]}),
        )
        .await?;
        assert!(
            n > 0 && n < 200,
            "the dataset makes {c} selective ({n} hits)"
        );
    }

    // Groups, nested to any depth; the operator is case-insensitive and defaults to and.
    let groups = [
        json!({"conditions": [
            cond("age", "greater_than_equal", json!(10)),
            cond("breed", "equals", json!("pug"))
        ]}),
        json!({"operator": "and", "conditions": [
            legacy("name", "ends_with", json!("1")),
            legacy("age", "greater_than", json!(5))
        ]}),
        json!({"operator": "or", "conditions": [
            cond("age", "equals", json!(1)),
            cond("name", "starts_with", json!("Ben"))
        ]}),
        json!({"operator": "OR", "conditions": [
            cond("weight", "less_than", json!(5)),
            cond("id", "greater_than", json!(195))
        ]}),
        json!({"operator": "and", "conditions": [
            cond("active", "equals", json!(true)),
            group("or", json!([
                cond("breed", "equals", json!("pug")),
                cond("age", "less_than", json!(3))
            ]))
        ]}),
        json!({"operator": "or", "conditions": [
            group("and", json!([
                cond("name", "starts_with", json!("Rex")),
                cond("age", "between", json!([2, 9]))
            ])),
            group("and", json!([
                legacy("tags", "contains", json!("c")),
                group("or", json!([
                    legacy("weight", "greater_than", json!(45)),
                    legacy("breed", "ends_with", json!("le"))
                ]))
            ]))
        ]}),
    ];
    for mut query in groups {
        query["get_attributes"] = json!(["id"]);
        let n = check_conditions(&node, &dogs, query.clone()).await?;
        assert!(
            n > 0 && n < 200,
            "the dataset makes {query} selective ({n} hits)"
        );
    }
    let n = check_conditions(
        &node,
        &dogs,
        json!({"conditions": [cond("age", "equals", json!(3)), cond("age", "equals", json!(4))]}),
    )
    .await?;
    assert_eq!(n, 0);

    // Malformed conditions.
    let bad = |conditions: Value| json!({"operation": "search_by_conditions", "database": "dev", "table": "dog", "conditions": conditions});
    for conditions in [
        json!([cond("age", "like", json!(5))]),
        json!([cond("age", "between", json!([1]))]),
        json!([cond("age", "between", json!(5))]),
        json!([cond("age", "between", json!([1, 2, 3]))]),
    ] {
        let answer = node.ops(bad(conditions.clone())).await?;
        assert_eq!(answer.0, 400, "{conditions}: {}", answer.1);
        assert_error_shape(&answer.1);
    }
    let answer = node
        .ops(
            json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
                    "operator": "xor", "conditions": [cond("age", "equals", json!(1))]}),
        )
        .await?;
    assert_eq!(answer.0, 400, "operator xor: {}", answer.1);
    let answer = node
        .ops(json!({"operation": "search_by_conditions", "database": "dev", "table": "dog"}))
        .await?;
    assert_eq!(answer.0, 400, "no conditions: {}", answer.1);
    assert_error_shape(&answer.1);
    let answer = node
        .ops(
            json!({"operation": "search_by_conditions", "database": "dev", "table": "nope",
                    "conditions": [cond("age", "equals", json!(1))]}),
        )
        .await?;
    assert_error(&answer, 404, "Table 'dev.nope' does not exist");

    // The answer must not depend on whether an index serves the condition: `breed` is
    // indexed, so alone the condition is answered from the index, while the `or` with a
    // never-matching ends_with forces a scan of every record.
    let alone = node
        .op_ok(json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
                      "conditions": [cond("breed", "equals", Value::Null)], "get_attributes": ["id"]}))
        .await?;
    let scanned = node
        .op_ok(
            json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
                      "operator": "or", "get_attributes": ["id"],
                      "conditions": [cond("breed", "equals", Value::Null),
                                     cond("name", "ends_with", json!("no-such-suffix"))]}),
        )
        .await?;
    // `equals null` matches the same records (those without the attribute) either way.
    assert_eq!(
        ids(&alone),
        ids(&scanned),
        "breed equals null: index answer vs scan answer"
    );
    Ok(())
}

#[tokio::test]
async fn search_by_conditions_sort_paging_projection() -> anyhow::Result<()> {
    let node = start("sorting").await?;
    let dogs = load_dogs(&node).await?;

    let queries = [
        // Sorted, ties in key order.
        json!({"conditions": [cond("active", "equals", json!(true))],
               "sort": {"attribute": "age"}, "get_attributes": ["id", "age"]}),
        // Descending with a tie-breaker, then offset and limit.
        json!({"conditions": [cond("breed", "not_equal", json!("lab"))],
               "sort": {"attribute": "age", "descending": true,
                        "next": {"attribute": "name", "descending": false}},
               "offset": 5, "limit": 20, "get_attributes": ["id", "age", "name"]}),
        // Three sort keys.
        json!({"conditions": [cond("age", "greater_than_equal", json!(0))],
               "sort": {"attribute": "active", "descending": true,
                        "next": {"attribute": "weight", "descending": true,
                                 "next": {"attribute": "id", "descending": true}}},
               "limit": 25, "get_attributes": ["id", "active", "weight"]}),
        // Sorting by a string attribute, paged.
        json!({"conditions": [legacy("name", "starts_with", json!("Pen"))],
               "sort": {"attribute": "name"}, "offset": 3, "limit": 4,
               "get_attributes": ["name", "id"]}),
        json!({"operator": "or",
               "conditions": [cond("age", "less_than", json!(2)), cond("tags", "contains", json!("c"))],
               "sort": {"attribute": "weight", "descending": false, "next": {"attribute": "name", "descending": true}},
               "get_attributes": ["id"]}),
        // Paging without a sort (key order).
        json!({"conditions": [cond("age", "greater_than_equal", json!(8))],
               "offset": 10, "limit": 5, "get_attributes": ["id"]}),
        json!({"conditions": [cond("tags", "contains", json!("a"))], "limit": 3, "get_attributes": ["id"]}),
        json!({"conditions": [cond("name", "ends_with", json!("5"))], "offset": 2, "get_attributes": ["id"]}),
        json!({"conditions": [cond("age", "equals", json!(5))], "offset": 100, "get_attributes": ["id"]}),
        // Projection: absent attributes come back null; `*` is the whole record.
        json!({"conditions": [cond("id", "between", json!([20, 24]))],
               "get_attributes": ["id", "breed", "nickname"]}),
        json!({"conditions": [cond("id", "between", json!([1, 3]))], "get_attributes": ["*"]}),
        json!({"conditions": [cond("id", "less_than", json!(4))]}),
    ];
    for query in queries {
        check_conditions(&node, &dogs, query).await?;
    }
    // Whole records carry their timestamps too.
    let body = node
        .op_ok(
            json!({"operation": "search_by_conditions", "database": "dev", "table": "dog",
                      "conditions": [cond("id", "equals", json!(7))]}),
        )
        .await?;
    assert_eq!(rows(&body).len(), 1);
    assert!(body[0]["__createdtime__"].is_number(), "{body}");
    assert_eq!(body[0]["__createdtime__"], body[0]["__updatedtime__"]);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// System information and logs
// ---------------------------------------------------------------------------------------

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
async fn transaction_and_audit_logs() -> anyhow::Result<()> {
    let node = start("logs").await?;
    create_table(&node, "dog").await?;
    create_table(&node, "cat").await?;

    let t1 = txn_time(
        &insert(
            &node,
            "dog",
            json!([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]),
        )
        .await?,
    );
    // Writes to another table never show up in dog's log.
    insert(&node, "cat", json!([{"id": 1, "name": "Tom"}])).await?;
    let t2 = txn_time(
        &node
            .op_ok(json!({"operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "name": "c"}]}))
            .await?,
    );
    let t3 = txn_time(
        &node
            .op_ok(json!({"operation": "upsert", "database": "dev", "table": "dog", "records": [{"id": 3, "name": "d"}]}))
            .await?,
    );
    let t4 = txn_time(
        &node
            .op_ok(json!({"operation": "delete", "database": "dev", "table": "dog", "ids": [2]}))
            .await?,
    );
    let all = [t1, t2, t3, t4];
    // (Distinct timestamps are checked by `concurrent_writes_are_all_applied_and_logged`;
    // the windows below hold either way.)
    // Log entries between two times, inclusive, as the timestamps the writes reported.
    let window = |from: f64, to: f64| -> Vec<f64> {
        all.iter()
            .copied()
            .filter(|t| (from..=to).contains(t))
            .collect()
    };

    let read_log = |extra: Value| {
        merged(
            json!({"operation": "read_transaction_log", "database": "dev", "table": "dog"}),
            extra,
        )
    };
    let stamps =
        |body: &Value| -> Vec<f64> { rows(body).iter().map(|e| num(&e["timestamp"])).collect() };

    let log = node.op_ok(read_log(json!({}))).await?;
    let entries = rows(&log);
    assert_eq!(entries.len(), 4, "{log}");
    let column = |name: &str| entries.iter().map(|e| e[name].clone()).collect::<Vec<_>>();
    assert_eq!(
        column("operation"),
        [
            json!("insert"),
            json!("update"),
            json!("upsert"),
            json!("delete")
        ]
    );
    assert_eq!(column("user"), vec![json!("admin"); 4]);
    assert_eq!(stamps(&log), [t1, t2, t3, t4]);
    assert_eq!(
        column("hash_values"),
        [json!([1, 2]), json!([1]), json!([3]), json!([2])]
    );
    // Insert entries hold whole records; update entries the changed fields, the key and
    // __updatedtime__; a delete entry holds no records.
    let records = |i: usize| rows(&entries[i]["records"]).clone();
    assert_eq!(
        records(0).iter().map(strip_timestamps).collect::<Vec<_>>(),
        [json!({"id": 1, "name": "a"}), json!({"id": 2, "name": "b"})]
    );
    for r in records(0) {
        assert_eq!(
            (num(&r["__createdtime__"]), num(&r["__updatedtime__"])),
            (t1, t1)
        );
    }
    let update = &records(1)[0];
    assert_eq!(sorted_keys(update), ["__updatedtime__", "id", "name"]);
    assert_eq!(strip_timestamps(update), json!({"id": 1, "name": "c"}));
    assert_eq!(num(&update["__updatedtime__"]), t2);
    let upsert = &records(2)[0];
    assert_eq!(strip_timestamps(upsert), json!({"id": 3, "name": "d"}));
    assert_eq!(num(&upsert["__createdtime__"]), t3);
    assert!(
        entries[3].get("records").is_none_or(|r| r == &json!([])),
        "delete entry: {}",
        entries[3]
    );

    // Time windows (inclusive) and limit.
    let body = node.op_ok(read_log(json!({"from": t2}))).await?;
    assert_eq!(stamps(&body), window(t2, f64::MAX));
    let body = node.op_ok(read_log(json!({"to": t2}))).await?;
    assert_eq!(stamps(&body), window(0.0, t2));
    let body = node.op_ok(read_log(json!({"from": t2, "to": t3}))).await?;
    assert_eq!(stamps(&body), window(t2, t3));
    let body = node.op_ok(read_log(json!({"limit": 2}))).await?;
    assert_eq!(stamps(&body), [t1, t2]);
    let body = node.op_ok(read_log(json!({"from": t4 + 1.0}))).await?;
    assert_eq!(body, json!([]));

    // read_audit_log.
    let audit = |search: Value| {
        merged(
            json!({"operation": "read_audit_log", "database": "dev", "table": "dog"}),
            search,
        )
    };
    let body = node.op_ok(audit(json!({}))).await?;
    assert_eq!(stamps(&body), [t1, t2, t3, t4]);
    for entry in rows(&body) {
        assert_eq!(entry["user_name"], "admin", "{entry}");
    }
    assert_eq!(
        rows(&body)
            .iter()
            .map(|e| e["hash_values"].clone())
            .collect::<Vec<_>>(),
        [json!([1, 2]), json!([1]), json!([3]), json!([2])]
    );
    let body = node
        .op_ok(audit(
            json!({"search_type": "timestamp", "search_values": [t3]}),
        ))
        .await?;
    assert_eq!(
        stamps(&body),
        window(t3, f64::MAX),
        "one timestamp: everything from it on"
    );
    let body = node
        .op_ok(audit(
            json!({"search_type": "timestamp", "search_values": [t1, t2]}),
        ))
        .await?;
    assert_eq!(stamps(&body), window(t1, t2));

    let body = node
        .op_ok(audit(
            json!({"search_type": "username", "search_values": ["admin"]}),
        ))
        .await?;
    assert_eq!(keys(&body), ["admin"]);
    assert_eq!(stamps(&body["admin"]), [t1, t2, t3, t4]);
    let body = node
        .op_ok(audit(
            json!({"search_type": "username", "search_values": ["nobody"]}),
        ))
        .await?;
    assert_eq!(body, json!({}));

    let body = node
        .op_ok(audit(
            json!({"search_type": "hash_value", "search_values": [2, 3]}),
        ))
        .await?;
    assert_eq!(sorted_keys(&body), ["2", "3"]);
    let operations = |list: &Value| {
        rows(list)
            .iter()
            .map(|e| e["operation"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(operations(&body["2"]), [json!("insert"), json!("delete")]);
    assert_eq!(operations(&body["3"]), [json!("upsert")]);
    assert_eq!(stamps(&body["2"]), [t1, t4]);
    let body = node
        .op_ok(audit(
            json!({"search_type": "hash_value", "search_values": [1]}),
        ))
        .await?;
    assert_eq!(keys(&body), ["1"]);
    assert_eq!(operations(&body["1"]), [json!("insert"), json!("update")]);
    let insert_entry = &body["1"][0];
    // Per record, an entry found by hash_value is about that record only
    // (`hash_values: [1]`, records of id 1), not the whole transaction.
    assert_eq!(
        insert_entry
            .get("hash_values")
            .cloned()
            .unwrap_or(json!([1])),
        json!([1]),
        "read_audit_log hash_value 1: hash_values of the insert entry"
    );
    assert_eq!(
        ids(&insert_entry["records"]),
        nums(&[1]),
        "read_audit_log hash_value 1: ids of the insert entry's records"
    );

    let bogus = node
        .ops(audit(json!({"search_type": "bogus", "search_values": [1]})))
        .await?;
    assert_error(&bogus, 400, "Invalid searchType 'bogus'");
    for op in ["read_transaction_log", "read_audit_log"] {
        let answer = node
            .ops(json!({"operation": op, "database": "dev", "table": "nope"}))
            .await?;
        assert_error(&answer, 404, "Table 'dev.nope' does not exist");
    }

    // A table created again under a dropped table's name has a history of its own.
    node.op_ok(json!({"operation": "drop_table", "database": "dev", "table": "dog"}))
        .await?;
    create_table(&node, "dog").await?;
    let log = node.op_ok(read_log(json!({}))).await?;
    let audit_log = node.op_ok(audit(json!({}))).await?;
    // The dropped table's log entries are not reported for the new table.
    assert_eq!(log, json!([]), "read_transaction_log of a re-created table");
    assert_eq!(audit_log, json!([]), "read_audit_log of a re-created table");
    Ok(())
}

/// Sends every operation at once, as the admin; the answers come back in request order.
async fn concurrently(node: &Node, ops: Vec<Value>) -> anyhow::Result<Vec<(u16, Value)>> {
    let mut set = tokio::task::JoinSet::new();
    for (i, op) in ops.into_iter().enumerate() {
        let request = node
            .client()
            .post(node.ops_url())
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
            .json(&op);
        set.spawn(async move {
            let response = request.send().await?;
            let status = response.status().as_u16();
            anyhow::Ok((i, status, response.json::<Value>().await?))
        });
    }
    let mut answers = vec![(0, Value::Null); set.len()];
    while let Some(joined) = set.join_next().await {
        let (i, status, body) = joined??;
        answers[i] = (status, body);
    }
    Ok(answers)
}

#[tokio::test]
async fn concurrent_writes_are_all_applied_and_logged() -> anyhow::Result<()> {
    let node = start("concurrent").await?;
    create_table(&node, "dog").await?;
    const N: usize = 32;
    let ops = (1..=N)
        .map(|i| json!({"operation": "insert", "database": "dev", "table": "dog", "records": [{"id": i, "n": i}]}))
        .collect();
    let answers = concurrently(&node, ops).await?;
    let mut times = Vec::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["inserted_hashes"], json!([i + 1]), "{body}");
        times.push(txn_time(body));
    }
    assert_eq!(describe(&node, "dog").await?["record_count"], N);
    let read_log = |from: f64, to: f64| json!({"operation": "read_transaction_log", "database": "dev", "table": "dog", "from": from, "to": to});
    let log = node.op_ok(read_log(0.0, f64::MAX)).await?;
    assert_eq!(rows(&log).len(), N, "one log entry per request");
    let logged: Vec<f64> = rows(&log).iter().map(|e| num(&e["timestamp"])).collect();
    let mut in_order = times.clone();
    in_order.sort_by(f64::total_cmp);
    assert_eq!(logged, in_order, "the log is in timestamp order");

    let mut distinct = times.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    // Each transaction gets its own timestamp (the spec groups records into one log
    // entry by timestamp), even for writes committed in the same millisecond.
    assert_eq!(
        distinct.len(),
        N,
        "distinct txn_time values among concurrent inserts"
    );
    let mut single = 0;
    for t in &times {
        let entries = node.op_ok(read_log(*t, *t)).await?;
        if rows(&entries).len() == 1 {
            single += 1;
        }
    }
    // So a from/to window of one transaction's timestamp holds exactly one entry.
    assert_eq!(single, N, "one-timestamp windows holding exactly one entry");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Request errors, authentication and the HTTP port
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Durability
// ---------------------------------------------------------------------------------------

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
