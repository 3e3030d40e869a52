//! Secondary index entries: `table id + attribute + value + primary key`, all in the
//! order-preserving encoding of [`crate::key`].

use std::ops::Bound;

use serde_json::{Map, Value};

use crate::catalog::TableDef;
use crate::error::Result;
use crate::key;
use crate::trees::{Trees, table_prefix};

/// Index keys keep at most this many bytes of a string value; longer values are found by
/// their prefix and re-checked against the record.
pub const MAX_INDEXED_STRING: usize = 200;

/// Prefix of every entry of `attribute` in `table`.
pub(crate) fn attribute_prefix(table: &TableDef, attribute: &str) -> Vec<u8> {
    let mut out = table_prefix(table.id).to_vec();
    key::encode_into(&Value::String(attribute.to_owned()), &mut out);
    out
}

/// The scalar values of one attribute that get index entries: the value itself, or each
/// distinct scalar element of an array. Objects are not indexed.
fn indexed_values(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => {
            let mut out: Vec<&Value> = Vec::new();
            for item in items {
                if !matches!(item, Value::Array(_) | Value::Object(_)) && !out.contains(&item) {
                    out.push(item);
                }
            }
            out
        }
        Value::Object(_) => Vec::new(),
        scalar => vec![scalar],
    }
}

/// Every index key of a record.
pub(crate) fn entries(table: &TableDef, pk: &[u8], record: &Map<String, Value>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (attribute, value) in record {
        if !table.is_indexed(attribute) {
            continue;
        }
        let prefix = attribute_prefix(table, attribute);
        for v in indexed_values(value) {
            let mut entry = prefix.clone();
            key::encode_truncated_into(v, MAX_INDEXED_STRING, &mut entry);
            entry.extend_from_slice(pk);
            out.push(entry);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Replaces the index entries of `old` with those of `new` (either may be absent).
pub(crate) fn update(
    txn: &mut heed::RwTxn,
    trees: &Trees,
    table: &TableDef,
    pk: &[u8],
    old: Option<&Map<String, Value>>,
    new: Option<&Map<String, Value>>,
) -> Result<()> {
    let old = old.map(|r| entries(table, pk, r)).unwrap_or_default();
    let new = new.map(|r| entries(table, pk, r)).unwrap_or_default();
    for entry in &old {
        if new.binary_search(entry).is_err() {
            trees.index.delete(txn, entry)?;
        }
    }
    for entry in &new {
        if old.binary_search(entry).is_err() {
            trees.index.put(txn, entry, &[])?;
        }
    }
    Ok(())
}

/// Byte range of index keys for `attribute` values between `lower` and `upper`, both
/// treated as inclusive (callers re-check candidates). An open end stops at the edge of
/// the other end's type, so `> 5` scans numbers only; both open scans the attribute.
pub(crate) fn value_range(
    prefix: &[u8],
    lower: Bound<&Value>,
    upper: Bound<&Value>,
) -> (Vec<u8>, Vec<u8>) {
    let encoded = |v: &Value| {
        let mut out = prefix.to_vec();
        key::encode_truncated_into(v, MAX_INDEXED_STRING, &mut out);
        out
    };
    // Where the encodings of a value's type begin and end (booleans span two tags).
    let type_edge = |v: &Value, end: bool| {
        let mut out = prefix.to_vec();
        if let Some((first, past)) = key::type_span(v) {
            out.push(if end { past } else { first });
        }
        out
    };
    let (lo, hi) = (bound_value(lower), bound_value(upper));
    let start = match (lo, hi) {
        (Some(v), _) => encoded(v),
        (None, Some(v)) => type_edge(v, false),
        (None, None) => prefix.to_vec(),
    };
    let end = match (hi, lo) {
        (Some(v), _) => key::prefix_end(&encoded(v)),
        (None, Some(v)) => type_edge(v, true),
        (None, None) => key::prefix_end(prefix),
    };
    (start, end)
}

fn bound_value(b: Bound<&Value>) -> Option<&Value> {
    match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v),
        Bound::Unbounded => None,
    }
}

/// Byte range of index keys for string values starting with `text`.
pub(crate) fn prefix_range(prefix: &[u8], text: &str) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefix.to_vec();
    key::encode_truncated_into(
        &Value::String(text.to_owned()),
        MAX_INDEXED_STRING,
        &mut start,
    );
    start.truncate(start.len() - 2); // drop the terminator: a prefix of every longer string
    let end = key::prefix_end(&start);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> TableDef {
        TableDef {
            id: 7,
            name: "dog".into(),
            primary_key: "id".into(),
            attributes: vec![],
            indexed: None,
            replicate: true,
            created: 0,
        }
    }

    #[test]
    fn arrays_index_each_element_once_and_objects_not_at_all() {
        let record = json!({"id": 1, "tags": ["a", "b", "a", {"x": 1}], "meta": {"k": 1}});
        let pk = key::encode(&json!(1)).unwrap();
        let e = entries(&table(), &pk, record.as_object().unwrap());
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn open_upper_bound_stays_within_the_type() {
        let prefix = attribute_prefix(&table(), "age");
        let (start, end) = value_range(&prefix, Bound::Included(&json!(5)), Bound::Unbounded);
        let mut num = prefix.clone();
        key::encode_into(&json!(1e9), &mut num);
        let mut text = prefix.clone();
        key::encode_into(&json!(""), &mut text);
        assert!(start <= num && num < end);
        assert!(text >= end);
        // `< true` reaches false too: booleans are one type.
        let (start, end) = value_range(&prefix, Bound::Unbounded, Bound::Included(&json!(true)));
        for b in [false, true] {
            let mut key = prefix.clone();
            key::encode_into(&json!(b), &mut key);
            assert!(start <= key && key < end, "{b}");
        }
    }
}
