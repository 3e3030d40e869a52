//! `search_by_conditions`: every comparator, groups, sorts, paging and projection, checked
//! against a model of the conditions evaluated here over a deterministic data set.

use std::cmp::Ordering;

use serde_json::{Value, json};
use shoal_testkit::{
    Node, assert_error, assert_error_shape, create_table, ids, insert, message, rows, start,
    strip_timestamps,
};

use crate::helpers::merged;

const NAMES: [&str; 6] = ["Penny", "Pencil", "Rex", "Maxine", "Bella", "Ben"];

const BREEDS: [&str; 5] = ["lab", "poodle", "pug", "beagle", "husky"];

/// One dog of the conditions dataset, fully determined by its id.
pub(crate) fn dog(id: u64) -> Value {
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
pub(crate) fn cond(attribute: &str, comparator: &str, value: Value) -> Value {
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
