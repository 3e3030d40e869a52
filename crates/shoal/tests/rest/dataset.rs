//! The query data set: dogs with every kind of attribute, and the ids a query must find
//! computed here over them.

use std::cmp::Ordering;

use serde_json::{Value, json};
use shoal_testkit::{Node, create_table, insert};

const NAMES: [&str; 11] = [
    "Rex", "Rover", "Bella", "Max", "Maxine", "Luna", "Lucky", "Daisy", "Buddy", "Penny",
    "Penelope",
];

const BREEDS: [&str; 5] = ["Husky", "Poodle", "Beagle", "Labrador", "Mixed"];

const TAGS: [&str; 4] = ["fast", "friendly", "loud", "small"];

/// Nicknames with characters that are syntax in the query language or in CSV.
const NICKNAMES: [(u64, &str); 9] = [
    (7, "A&B"),
    (8, "x|y"),
    (9, "Rex Jr"),
    (10, "100%"),
    (11, "a=b"),
    (12, "plus+sign"),
    (13, "(paren)"),
    (14, "comma,here"),
    (15, "quote\"d"),
];

const DAY_MS: i64 = 86_400_000;

/// 2015-01-01T00:00:00Z.
const BIRTH_BASE: i64 = 1_420_070_400_000;

pub(crate) const RECORDS: u64 = 100;

/// Record `i` (1-based) of the deterministic data set.
fn dog(i: u64) -> Value {
    let mut r = json!({
        "id": i,
        "name": NAMES[(i * 7 % 11) as usize],
        "age": (i * 3) % 17,
        "weight": 5.5 + (i % 10) as f64 * 2.25,
        "adopted": i.is_multiple_of(3),
        "code": i.to_string(),
        "birthday": BIRTH_BASE + i as i64 * 20 * DAY_MS,
    });
    if !i.is_multiple_of(13) {
        r["breed"] = json!(BREEDS[(i % 5) as usize]);
    }
    match i % 4 {
        0 => {}
        1 => r["owner"] = Value::Null,
        _ => r["owner"] = json!(format!("Owner{}", i % 6)),
    }
    let tags: Vec<&str> = TAGS
        .iter()
        .enumerate()
        .filter(|(bit, _)| ((i % 16) >> bit) & 1 == 1)
        .map(|(_, t)| *t)
        .collect();
    r["tags"] = json!(tags);
    if let Some((_, nick)) = NICKNAMES.iter().find(|(n, _)| *n == i) {
        r["nickname"] = json!(nick);
    }
    if i.is_multiple_of(10) {
        r["long"] = json!(long_value(i));
    }
    r
}

/// A string longer than the index keeps (200 bytes), distinct only at its end.
pub(crate) fn long_value(i: u64) -> String {
    format!("{}{i:03}", "L".repeat(210))
}

fn dataset() -> Vec<Value> {
    (1..=RECORDS).map(dog).collect()
}

pub(crate) fn num(r: &Value, a: &str) -> Option<f64> {
    r.get(a).and_then(Value::as_f64)
}

pub(crate) fn text<'a>(r: &'a Value, a: &str) -> Option<&'a str> {
    r.get(a).and_then(Value::as_str)
}

pub(crate) fn has_tag(r: &Value, tag: &str) -> bool {
    r["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == tag))
}

/// `a` missing or null.
pub(crate) fn is_null(r: &Value, a: &str) -> bool {
    r.get(a).is_none_or(Value::is_null)
}

/// Ids of the records matching `f`, in primary key order.
pub(crate) fn expect(data: &[Value], f: impl Fn(&Value) -> bool) -> Vec<u64> {
    data.iter()
        .filter(|r| f(r))
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// Ids of the records matching `f`, stably sorted by `cmp` (ties keep key order).
pub(crate) fn expect_sorted(
    data: &[Value],
    f: impl Fn(&Value) -> bool,
    cmp: impl Fn(&Value, &Value) -> Ordering,
) -> Vec<u64> {
    let mut rows: Vec<&Value> = data.iter().filter(|r| f(r)).collect();
    rows.sort_by(|a, b| cmp(a, b));
    rows.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

pub(crate) fn by_num(a: &Value, b: &Value, attr: &str) -> Ordering {
    num(a, attr).unwrap().total_cmp(&num(b, attr).unwrap())
}

pub(crate) fn by_text(a: &Value, b: &Value, attr: &str) -> Ordering {
    text(a, attr).cmp(&text(b, attr))
}

/// Loads the data set into `dev.dog` (dynamic: every attribute indexed) and
/// `dev.dog_plain` (declared attributes, none indexed), so that each query runs once
/// through index scans and once through a full scan.
pub(crate) async fn load_dataset(node: &Node) -> anyhow::Result<Vec<Value>> {
    let data = dataset();
    create_table(node, "dog").await?;
    let plain: Vec<Value> = [
        "name", "age", "weight", "adopted", "code", "birthday", "breed", "owner", "tags",
        "nickname", "long",
    ]
    .iter()
    .map(|a| json!({"name": a, "indexed": false}))
    .collect();
    node.op_ok(json!({
        "operation": "create_table", "database": "dev", "table": "dog_plain",
        "primary_key": "id", "attributes": plain
    }))
    .await?;
    for table in ["dog", "dog_plain"] {
        insert(node, table, Value::Array(data.clone())).await?;
    }
    Ok(data)
}

pub(crate) const TABLES: [&str; 2] = ["dog", "dog_plain"];
