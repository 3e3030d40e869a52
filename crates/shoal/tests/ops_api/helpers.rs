//! Small helpers: the searches and describes the tests repeat, and readers of answers.

use serde_json::{Value, json};
use shoal_testkit::{Node, rows};

/// `search_by_id` on `dev.<table>` returning whole records.
pub(crate) async fn by_ids(node: &Node, table: &str, ids: Value) -> anyhow::Result<Value> {
    node.op_ok(json!({
        "operation": "search_by_id", "database": "dev", "table": table,
        "ids": ids, "get_attributes": ["*"]
    }))
    .await
}

/// `describe_table` of `dev.<table>`.
pub(crate) async fn describe(node: &Node, table: &str) -> anyhow::Result<Value> {
    node.op_ok(json!({"operation": "describe_table", "database": "dev", "table": table}))
        .await
}

/// `base` with the fields of `extra` added (both objects).
pub(crate) fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// A number field as `f64`.
#[track_caller]
pub(crate) fn num(v: &Value) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {v}"))
}

/// The `txn_time` of a write answer.
#[track_caller]
pub(crate) fn txn_time(body: &Value) -> f64 {
    num(&body["txn_time"])
}

/// The keys of a JSON object, in order.
#[track_caller]
pub(crate) fn keys(v: &Value) -> Vec<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("expected an object, got {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The keys of a JSON object, sorted.
#[track_caller]
pub(crate) fn sorted_keys(v: &Value) -> Vec<&str> {
    let mut k = keys(v);
    k.sort_unstable();
    k
}

/// JSON values sorted by their text (for answers whose order is unspecified).
pub(crate) fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(Value::to_string);
    values
}

/// The `attribute` names listed by a describe_table answer.
#[track_caller]
pub(crate) fn attribute_names(described: &Value) -> Vec<&str> {
    rows(&described["attributes"])
        .iter()
        .map(|a| a["attribute"].as_str().expect("attribute name"))
        .collect()
}
