//! Reading and asserting answers: Harper's error envelope, messages, rows and records.

use serde_json::{Value, json};

/// Asserts that an answer is an error with `status` and exactly the text `message`.
#[track_caller]
pub fn assert_error(answer: &(u16, Value), status: u16, message: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "status of {body}");
    assert_eq!(body, &json!({ "error": message }), "body (status {got})");
}

/// Asserts that an answer is an error with `status` whose text starts with `prefix`.
#[track_caller]
pub fn assert_error_prefix(answer: &(u16, Value), status: u16, prefix: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "status of {body}");
    assert_error_shape(body);
    let text = body["error"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(prefix),
        "error {text:?} should start with {prefix:?}"
    );
}

/// Asserts that a body is Harper's error envelope: an object with a string `error`.
#[track_caller]
pub fn assert_error_shape(body: &Value) {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert!(
        object.get("error").is_some_and(Value::is_string),
        "no string `error` in {body}"
    );
}

/// The `message` of a successful answer.
pub fn message(body: &Value) -> &str {
    body["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
}

/// The array of a search answer.
pub fn rows(body: &Value) -> &Vec<Value> {
    body.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {body}"))
}

/// The `id` of every record in a search answer, in order.
pub fn ids(body: &Value) -> Vec<Value> {
    rows(body).iter().map(|r| r["id"].clone()).collect()
}

/// `ids` as JSON numbers.
pub fn nums(ids: &[u64]) -> Vec<Value> {
    ids.iter().map(|&i| json!(i)).collect()
}

/// A record without the server-maintained timestamp attributes.
pub fn strip_timestamps(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(map) = record.as_object_mut() {
        map.remove("__createdtime__");
        map.remove("__updatedtime__");
    }
    record
}
