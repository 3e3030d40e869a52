//! Running a query against a snapshot: pick index scans for what they can answer, fetch
//! the candidates, re-check every condition on the record, then sort, page and project.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound;

use serde_json::{Map, Value};
use shoal_store::key::{self, compare};
use shoal_store::{Snapshot, TableDef};

use crate::condition::{Comparator, Condition, Operator};
use crate::error::QueryError;

/// Which attributes a result carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Projection {
    /// The whole record.
    #[default]
    All,
    /// These attributes, `null` when absent.
    Only(Vec<String>),
}

impl Projection {
    /// Harper's `get_attributes`: `["*"]` (or nothing) means all.
    pub fn from_attributes(attributes: Option<Vec<String>>) -> Self {
        match attributes {
            Some(list) if !list.iter().any(|a| a == "*") => Projection::Only(list),
            _ => Projection::All,
        }
    }

    /// The JSON of a record as the projection shows it.
    pub fn render(
        &self,
        json: &[u8],
        record: Option<&Map<String, Value>>,
    ) -> Result<Vec<u8>, QueryError> {
        match self {
            Projection::All => Ok(json.to_vec()),
            Projection::Only(attributes) => {
                let parsed;
                let record = match record {
                    Some(r) => r,
                    None => {
                        parsed = parse(json)?;
                        &parsed
                    }
                };
                let out: Map<String, Value> = attributes
                    .iter()
                    .map(|a| (a.clone(), record.get(a).cloned().unwrap_or(Value::Null)))
                    .collect();
                Ok(serde_json::to_vec(&out).expect("maps serialise"))
            }
        }
    }
}

/// Most attributes one sort may have: REST `sort(a,b,...)`, or the `next` chain of a
/// search's `sort` object. Comparing and dropping a chain recurse once per key.
pub const MAX_SORT_KEYS: usize = 16;

/// A sort key, with an optional next key for ties.
#[derive(Debug, Clone, PartialEq)]
pub struct Sort {
    /// Attribute to sort by.
    pub attribute: String,
    /// Largest first.
    pub descending: bool,
    /// Tie-breaker.
    pub next: Option<Box<Sort>>,
}

impl Sort {
    /// The keys of the chain, first to last, counted without recursion.
    fn keys(&self) -> Vec<&Sort> {
        std::iter::successors(Some(self), |s| s.next.as_deref()).collect()
    }

    fn compare(&self, a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
        let (x, y) = (
            a.get(&self.attribute).unwrap_or(&Value::Null),
            b.get(&self.attribute).unwrap_or(&Value::Null),
        );
        let ord = compare(x, y);
        let ord = if self.descending { ord.reverse() } else { ord };
        match (ord, &self.next) {
            (Ordering::Equal, Some(next)) => next.compare(a, b),
            _ => ord,
        }
    }
}

/// A search over one table.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// What records must satisfy; `None` means every record.
    pub condition: Option<Condition>,
    /// Result order; primary key order when absent.
    pub sort: Option<Sort>,
    /// Results to skip.
    pub offset: usize,
    /// Most results returned.
    pub limit: Option<usize>,
    /// Attributes returned.
    pub projection: Projection,
}

/// Records by primary key, in the order asked, leaving out those that do not exist.
pub fn by_ids(
    snapshot: &Snapshot,
    table: &TableDef,
    ids: &[Value],
    projection: &Projection,
) -> Result<Vec<Vec<u8>>, QueryError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(json) = snapshot.get(table, id)?.and_then(|v| v.json) {
            out.push(projection.render(json, None)?);
        }
    }
    Ok(out)
}

/// Harper's `search_by_value`: `*` alone matches every record; a leading and/or trailing
/// `*` makes a string value an ends-with, starts-with or contains match.
pub fn value_condition(attribute: &str, value: &Value) -> Option<Condition> {
    let leaf = |comparator, value| {
        Some(Condition::Compare {
            attribute: attribute.to_owned(),
            comparator,
            value,
        })
    };
    let Some(text) = value.as_str() else {
        return leaf(Comparator::Equals, value.clone());
    };
    if text.chars().all(|c| c == '*') && !text.is_empty() {
        return None;
    }
    match (text.strip_prefix('*'), text.strip_suffix('*')) {
        (Some(rest), Some(_)) if text.len() >= 2 => {
            leaf(Comparator::Contains, Value::from(&rest[..rest.len() - 1]))
        }
        (Some(rest), _) => leaf(Comparator::EndsWith, Value::from(rest)),
        (None, Some(rest)) => leaf(Comparator::StartsWith, Value::from(rest)),
        (None, None) => leaf(Comparator::Equals, value.clone()),
    }
}

/// Runs a query; each result is the JSON of one (projected) record.
pub fn run(
    snapshot: &Snapshot,
    table: &TableDef,
    query: &Query,
) -> Result<Vec<Vec<u8>>, QueryError> {
    let mut out = Vec::new();
    for_each(snapshot, table, query, |json| {
        out.push(json.to_vec());
        Ok(true)
    })?;
    Ok(out)
}

/// Runs a query, handing each result (the JSON of one projected record) to `emit` as it
/// is found, so that results can be streamed; `emit` returns false to stop early. Only a
/// sorted query holds its matches in memory.
pub fn for_each(
    snapshot: &Snapshot,
    table: &TableDef,
    query: &Query,
    mut emit: impl FnMut(&[u8]) -> Result<bool, QueryError>,
) -> Result<(), QueryError> {
    if let Some(c) = &query.condition {
        c.validate()?;
    }
    if query
        .sort
        .as_ref()
        .is_some_and(|s| s.keys().len() > MAX_SORT_KEYS)
    {
        return Err(QueryError::Invalid(format!(
            "a sort takes at most {MAX_SORT_KEYS} attributes"
        )));
    }
    let exact = query
        .condition
        .as_ref()
        .is_some_and(|c| exact_by_index(table, c));
    let sort = query
        .sort
        .as_ref()
        .filter(|s| !sorts_nothing(s, query.condition.as_ref()));
    let limit = query.limit.unwrap_or(usize::MAX);
    let mut sorted: Vec<(Vec<u8>, Map<String, Value>)> = Vec::new();
    let (mut skipped, mut sent) = (0, 0);
    // Returns false once the page is full.
    let mut accept = |json: &[u8]| -> Result<bool, QueryError> {
        // A whole record answered straight from an exact index match needs no parsing.
        let needs_record = !exact || sort.is_some() || query.projection != Projection::All;
        let record = needs_record.then(|| parse(json)).transpose()?;
        if let Some(record) = &record
            && !exact
            && !query.condition.as_ref().is_none_or(|c| c.matches(record))
        {
            return Ok(true);
        }
        if sort.is_some() {
            sorted.push((json.to_vec(), record.unwrap_or_default()));
            return Ok(true);
        }
        if skipped < query.offset {
            skipped += 1;
            return Ok(true);
        }
        if sent >= limit {
            return Ok(false);
        }
        sent += 1;
        Ok(emit(&query.projection.render(json, record.as_ref())?)? && sent < limit)
    };
    let candidates = match &query.condition {
        Some(c) => candidates(snapshot, table, c)?,
        None => None,
    };
    match candidates {
        Some(keys) => {
            for pk in keys.values() {
                if let Some(json) = snapshot.get(table, pk)?.and_then(|v| v.json)
                    && !accept(json)?
                {
                    break;
                }
            }
        }
        None => {
            for row in snapshot.scan(table, Bound::Unbounded, Bound::Unbounded, false)? {
                let (_, version) = row?;
                if !accept(version.json.unwrap_or_default())? {
                    break;
                }
            }
        }
    }
    if let Some(sort) = sort {
        // Stable: ties keep primary key order.
        sorted.sort_by(|a, b| sort.compare(&a.1, &b.1));
        for (json, record) in sorted.iter().skip(query.offset).take(limit) {
            if !emit(&query.projection.render(json, Some(record))?)? {
                break;
            }
        }
    }
    Ok(())
}

fn parse(json: &[u8]) -> Result<Map<String, Value>, QueryError> {
    serde_json::from_slice(json)
        .map_err(|e| QueryError::Invalid(format!("stored record is not a JSON object: {e}")))
}

/// Whether the index alone decides `condition`: an equality on the primary key or an
/// indexed attribute, with a value the index holds whole (not a string it cuts short),
/// so candidates need no re-check.
fn exact_by_index(table: &TableDef, condition: &Condition) -> bool {
    let Condition::Compare {
        attribute,
        comparator: Comparator::Equals,
        value,
    } = condition
    else {
        return false;
    };
    let whole = match value {
        Value::String(s) => s.len() < shoal_store::MAX_INDEXED_STRING,
        Value::Number(_) | Value::Bool(_) => true,
        _ => false,
    };
    whole && (*attribute == table.primary_key || table.is_indexed(attribute))
}

/// Whether sorting by `sort` leaves primary-key order as it is: a sort on the very
/// attribute an equality condition fixes (every match has the same value).
fn sorts_nothing(sort: &Sort, condition: Option<&Condition>) -> bool {
    sort.next.is_none()
        && matches!(condition, Some(Condition::Compare { attribute, comparator: Comparator::Equals, .. })
            if *attribute == sort.attribute)
}

/// Keys by encoded primary key (so in key order and without repeats).
type Keys = BTreeMap<Vec<u8>, Value>;

/// Primary keys that may satisfy `condition`, from indexes; `None` when some part of it
/// can only be answered by reading every record.
fn candidates(
    snapshot: &Snapshot,
    table: &TableDef,
    condition: &Condition,
) -> Result<Option<Keys>, QueryError> {
    match condition {
        Condition::Compare {
            attribute,
            comparator,
            value,
        } => leaf_candidates(snapshot, table, attribute, *comparator, value),
        Condition::Group {
            operator: Operator::And,
            conditions,
        } => {
            let mut best: Option<Keys> = None;
            for c in conditions {
                if let Some(keys) = candidates(snapshot, table, c)? {
                    best = Some(match best {
                        None => keys,
                        Some(prev) => prev
                            .into_iter()
                            .filter(|(k, _)| keys.contains_key(k))
                            .collect(),
                    });
                }
            }
            Ok(best)
        }
        Condition::Group {
            operator: Operator::Or,
            conditions,
        } => {
            let mut all = Keys::new();
            for c in conditions {
                match candidates(snapshot, table, c)? {
                    Some(keys) => all.extend(keys),
                    None => return Ok(None),
                }
            }
            Ok(Some(all))
        }
    }
}

fn leaf_candidates(
    snapshot: &Snapshot,
    table: &TableDef,
    attribute: &str,
    comparator: Comparator,
    value: &Value,
) -> Result<Option<Keys>, QueryError> {
    let (lower, upper) = match (comparator, value) {
        // A missing attribute counts as null, and the index has no entry for it.
        (_, Value::Null) => return Ok(None),
        (Comparator::Equals, v) => (Bound::Included(v), Bound::Included(v)),
        (Comparator::GreaterThan | Comparator::GreaterThanEqual, v) => {
            (Bound::Included(v), Bound::Unbounded)
        }
        (Comparator::LessThan | Comparator::LessThanEqual, v) => {
            (Bound::Unbounded, Bound::Included(v))
        }
        (Comparator::Between, Value::Array(pair)) if pair.len() == 2 => {
            (Bound::Included(&pair[0]), Bound::Included(&pair[1]))
        }
        (Comparator::StartsWith, Value::String(prefix)) if table.is_indexed(attribute) => {
            return collect(snapshot.index_prefix(table, attribute, prefix)?).map(Some);
        }
        _ => return Ok(None),
    };
    if attribute == table.primary_key {
        let rows = snapshot.scan(table, lower, upper, false)?;
        return collect(rows.map(|r| r.map(|(pk, _)| pk))).map(Some);
    }
    if !table.is_indexed(attribute) {
        return Ok(None);
    }
    collect(snapshot.index_scan(table, attribute, lower, upper)?).map(Some)
}

fn collect(keys: impl Iterator<Item = shoal_store::Result<Value>>) -> Result<Keys, QueryError> {
    let mut out = Keys::new();
    for pk in keys {
        let pk = pk?;
        let encoded = key::encode(&pk).unwrap_or_default();
        out.insert(encoded, pk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_index_matches_and_no_op_sorts() {
        let table = TableDef {
            id: 1,
            name: "dog".into(),
            primary_key: "id".into(),
            attributes: vec![],
            indexed: Some(["age".to_owned()].into()),
            replicate: true,
            created: 0,
        };
        let eq = |attribute: &str, value: Value| Condition::Compare {
            attribute: attribute.into(),
            comparator: Comparator::Equals,
            value,
        };
        assert!(exact_by_index(&table, &eq("age", json!(3))));
        assert!(exact_by_index(&table, &eq("id", json!("a"))));
        assert!(
            !exact_by_index(&table, &eq("name", json!("a"))),
            "not indexed"
        );
        assert!(
            !exact_by_index(&table, &eq("age", json!(null))),
            "null is answered by a scan"
        );
        let long = "x".repeat(shoal_store::MAX_INDEXED_STRING);
        assert!(
            !exact_by_index(&table, &eq("age", json!(long))),
            "cut in the index"
        );
        let sort = |attribute: &str| Sort {
            attribute: attribute.into(),
            descending: true,
            next: None,
        };
        assert!(sorts_nothing(&sort("age"), Some(&eq("age", json!(3)))));
        assert!(!sorts_nothing(&sort("name"), Some(&eq("age", json!(3)))));
        assert!(!sorts_nothing(&sort("age"), None));
    }

    #[test]
    fn wildcards() {
        let c = |v: Value| value_condition("name", &v);
        assert_eq!(c(json!("*")), None);
        let cmp = |cond: Option<Condition>| match cond {
            Some(Condition::Compare {
                comparator, value, ..
            }) => (comparator, value),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            cmp(c(json!("Pen*"))),
            (Comparator::StartsWith, json!("Pen"))
        );
        assert_eq!(cmp(c(json!("*ny"))), (Comparator::EndsWith, json!("ny")));
        assert_eq!(cmp(c(json!("*en*"))), (Comparator::Contains, json!("en")));
        assert_eq!(cmp(c(json!("Penny"))), (Comparator::Equals, json!("Penny")));
        assert_eq!(cmp(c(json!(5))), (Comparator::Equals, json!(5)));
    }
}
