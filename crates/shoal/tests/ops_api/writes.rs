//! Writes: insert, update, upsert and delete.

use serde_json::{Value, json};
use shoal_testkit::{
    assert_error, assert_error_shape, create_table, ids, insert, message, nums, rows, start,
    strip_timestamps,
};

use crate::helpers::{by_ids, describe, keys, num, sorted, txn_time};

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
