//! Searches by id, hash and value (wildcards, paging).

use serde_json::{Value, json};
use shoal_testkit::{
    assert_error, assert_error_shape, create_table, ids, insert, nums, rows, start,
    strip_timestamps,
};

use crate::helpers::{by_ids, merged, sorted};

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
