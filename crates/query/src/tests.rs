//! Queries against a real store, checked against a model: filter every record with the
//! condition, stable-sort in primary key order, page, project. Run with memory limits
//! small enough that every plan is taken: candidate sets over their cap (scans), sorts
//! over their buffer (index walks, or a refusal where there is no index), and the
//! in-memory sorts and bounded top-k where they fit.

use std::cmp::Ordering;
use std::ops::Bound;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use shoal_store::key::compare;
use shoal_store::{Mode, Snapshot, Store, StoreOptions, TableDef, TableSpec, Write};

use crate::{
    Comparator, Condition, Limits, Operator, Projection, Query, QueryError, Sort, count, for_each,
};

/// `SHOAL_TEST_SEED` or a random seed, printed so that a failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (SHOAL_TEST_SEED={seed} to replay)");
    seed
}

/// A long string: the index keeps only its first 200 bytes, which many share.
fn long(rng: &mut StdRng) -> String {
    format!("{}{}", "L".repeat(200), rng.random_range(0..6))
}

fn scalar(rng: &mut StdRng) -> Value {
    match rng.random_range(0..6) {
        0 => json!(rng.random_bool(0.5)),
        1 => json!(rng.random_range(0..8)),
        2 => json!(rng.random_range(0..8) as f64 + 0.5),
        3 => json!(["x", "y", "z", "xy"][rng.random_range(0..4)]),
        4 => json!(long(rng)),
        _ => json!(rng.random_range(-3..3)),
    }
}

/// A record with an attribute `a` of every kind (missing, null, scalars, long strings,
/// arrays, objects), a tie-breaker `b` and a text `c`.
fn record(rng: &mut StdRng, id: Value) -> Value {
    let mut r = Map::new();
    r.insert("id".into(), id);
    match rng.random_range(0..12) {
        0 => {}
        1 => {
            r.insert("a".into(), Value::Null);
        }
        2 => {
            r.insert("a".into(), json!([scalar(rng), scalar(rng)]));
        }
        3 => {
            r.insert("a".into(), json!({"x": scalar(rng)}));
        }
        _ => {
            r.insert("a".into(), scalar(rng));
        }
    }
    if rng.random_bool(0.8) {
        r.insert("b".into(), json!(rng.random_range(0..4)));
    }
    r.insert("c".into(), json!(format!("c{}", rng.random_range(0..50))));
    Value::Object(r)
}

fn leaf(attribute: &str, comparator: Comparator, value: Value) -> Condition {
    Condition::Compare {
        attribute: attribute.into(),
        comparator,
        value,
    }
}

fn condition(rng: &mut StdRng) -> Option<Condition> {
    use Comparator::*;
    let one = |rng: &mut StdRng| match rng.random_range(0..11) {
        8 => leaf("a", LessThan, json!(true)),
        9 => leaf("a", GreaterThanEqual, json!(false)),
        10 => leaf("a", Between, json!([1, 5])),
        0 => leaf("a", GreaterThan, json!(2)),
        1 => leaf("a", Equals, json!(rng.random_range(0..8))),
        2 => leaf("a", StartsWith, json!("x")),
        3 => leaf("a", StartsWith, json!("L".repeat(200))),
        4 => leaf("b", Equals, json!(rng.random_range(0..4))),
        5 => leaf("b", LessThan, json!(2)),
        6 => leaf("c", Contains, json!("1")),
        _ => leaf("id", Between, json!([20, 90])),
    };
    match rng.random_range(0..5) {
        0 => None,
        1 | 2 => Some(one(rng)),
        3 => Some(Condition::Group {
            operator: Operator::And,
            conditions: vec![one(rng), one(rng)],
        }),
        _ => Some(Condition::Group {
            operator: Operator::Or,
            conditions: vec![one(rng), one(rng)],
        }),
    }
}

fn sort(rng: &mut StdRng) -> Option<Sort> {
    let key = |rng: &mut StdRng, from: &[&str]| {
        (
            from[rng.random_range(0..from.len())].to_owned(),
            rng.random_bool(0.5),
        )
    };
    if rng.random_bool(0.15) {
        return None;
    }
    let (attribute, descending) = key(rng, &["a", "a", "a", "b", "c", "id"]);
    let next = rng.random_bool(0.4).then(|| {
        let (attribute, descending) = key(rng, &["b", "c", "id"]);
        Box::new(Sort {
            attribute,
            descending,
            next: None,
        })
    });
    Some(Sort {
        attribute,
        descending,
        next,
    })
}

/// What sorting sees of an attribute: missing is null; arrays and objects are all alike.
fn sort_value(record: &Map<String, Value>, attribute: &str) -> Value {
    match record.get(attribute) {
        None => Value::Null,
        Some(Value::Array(_) | Value::Object(_)) => json!([]),
        Some(v) => v.clone(),
    }
}

fn model_order(sort: &Sort, a: &Map<String, Value>, b: &Map<String, Value>) -> Ordering {
    let mut key = Some(sort);
    while let Some(s) = key {
        let ord = compare(&sort_value(a, &s.attribute), &sort_value(b, &s.attribute));
        let ord = if s.descending { ord.reverse() } else { ord };
        if ord != Ordering::Equal {
            return ord;
        }
        key = s.next.as_deref();
    }
    Ordering::Equal
}

/// The model's answer: every record (in primary key order) that matches, stably sorted,
/// paged and projected. A sort on nothing but the attribute an equality fixes leaves
/// primary-key order: every match sits under the matched value in that attribute's
/// index, an array under the element that matched (Harper's index order).
fn model(records: &[(Vec<u8>, Map<String, Value>)], query: &Query) -> Vec<Vec<u8>> {
    let mut matched: Vec<&(Vec<u8>, Map<String, Value>)> = records
        .iter()
        .filter(|(_, r)| query.condition.as_ref().is_none_or(|c| c.matches(r)))
        .collect();
    let fixed = |sort: &Sort| {
        sort.next.is_none()
            && matches!(&query.condition, Some(Condition::Compare { attribute, comparator: Comparator::Equals, value })
                if *attribute == sort.attribute && !matches!(value, Value::Array(_) | Value::Object(_)))
    };
    if let Some(sort) = query.sort.as_ref().filter(|s| !fixed(s)) {
        matched.sort_by(|x, y| model_order(sort, &x.1, &y.1));
    }
    matched
        .into_iter()
        .skip(query.offset)
        .take(query.limit.unwrap_or(usize::MAX))
        .map(|(json, r)| query.projection.render(json, Some(r)).unwrap())
        .collect()
}

fn all_records(snapshot: &Snapshot, table: &TableDef) -> Vec<(Vec<u8>, Map<String, Value>)> {
    snapshot
        .scan(table, Bound::Unbounded, Bound::Unbounded, false)
        .unwrap()
        .map(|row| {
            let (_, version) = row.unwrap();
            let json = version.json.unwrap().to_vec();
            let record = serde_json::from_slice(&json).unwrap();
            (json, record)
        })
        .collect()
}

fn run(snapshot: &Snapshot, table: &TableDef, query: &Query) -> Result<Vec<Vec<u8>>, QueryError> {
    let mut out = Vec::new();
    for_each(snapshot, table, query, |json| {
        out.push(json.to_vec());
        Ok(true)
    })?;
    Ok(out)
}

#[tokio::test]
async fn queries_match_the_model_under_every_plan() {
    let seed = seed("queries_match_the_model_under_every_plan");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path(), "n1")).unwrap();
    let db = store.create_database("dev").await.unwrap();
    let specs = [
        // Every attribute indexed (the default), and none.
        ("indexed", vec![]),
        ("plain", vec![("a".to_owned(), false)]),
    ];
    let records: Vec<Value> = (0..160)
        .map(|i| {
            let id = if i % 7 == 0 {
                json!(format!("k{i}"))
            } else {
                json!(i)
            };
            record(&mut rng, id)
        })
        .collect();
    for (name, attributes) in specs.clone() {
        let spec = TableSpec {
            name: name.into(),
            primary_key: "id".into(),
            attributes,
            ..Default::default()
        };
        db.write(Write::CreateTable(spec), None).await.unwrap();
        let records = records
            .iter()
            .map(|r| r.as_object().unwrap().clone())
            .collect();
        db.write(
            Write::Records {
                table: name.into(),
                mode: Mode::Insert,
                records,
            },
            None,
        )
        .await
        .unwrap();
    }
    let snapshot = db.snapshot().unwrap();
    for (name, _) in specs {
        let table = snapshot.table(name).unwrap();
        let stored = all_records(&snapshot, &table);
        assert_eq!(stored.len(), 160);
        for case in 0..250 {
            let query = Query {
                condition: condition(&mut rng),
                sort: sort(&mut rng),
                offset: rng.random_range(0..4),
                limit: rng.random_bool(0.5).then(|| rng.random_range(0..25)),
                projection: if rng.random_bool(0.7) {
                    Projection::All
                } else {
                    Projection::Only(vec!["id".into(), "a".into()])
                },
                limits: Limits {
                    sort_buffer_bytes: [4_000, 30_000, 64 << 20][rng.random_range(0..3)],
                    max_candidates: [5, 40, 100_000][rng.random_range(0..3)],
                },
            };
            let expected = model(&stored, &query);
            let what = format!("seed {seed}, table {name}, case {case}: {query:?}");
            match run(&snapshot, &table, &query) {
                Ok(got) => {
                    let show = |rows: &[Vec<u8>]| {
                        rows.iter()
                            .map(|r| String::from_utf8_lossy(r).into_owned())
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(show(&got), show(&expected), "{what}");
                }
                Err(QueryError::SortBufferFull { .. }) => {
                    let first = query.sort.as_ref().expect("only sorts fill the buffer");
                    assert!(
                        !table.is_indexed(&first.attribute) && first.attribute != "id",
                        "{what}: an indexed sort must walk its index instead"
                    );
                }
                Err(e) => panic!("{what}: {e}"),
            }
            assert_eq!(
                count(&snapshot, &table, &query).unwrap(),
                expected.len(),
                "{what}"
            );
        }
    }
    drop(snapshot);
    store.close().await;
}

/// An index walk holds a bounded amount whatever the table: sorted on an indexed
/// attribute with a sort buffer far smaller than the answer, every record comes out in
/// order; on an attribute without an index, the query is refused before sending anything.
#[tokio::test]
async fn a_sort_larger_than_its_buffer_walks_the_index_or_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path(), "n1")).unwrap();
    let db = store.create_database("dev").await.unwrap();
    let spec = TableSpec {
        name: "t".into(),
        primary_key: "id".into(),
        attributes: vec![("n".to_owned(), true), ("m".to_owned(), false)],
        ..Default::default()
    };
    db.write(Write::CreateTable(spec), None).await.unwrap();
    let records = (0..2000)
        .map(|i| {
            let r = json!({"id": i, "n": (i * 7919) % 2000, "m": (i * 7919) % 2000, "pad": "p".repeat(100)});
            r.as_object().unwrap().clone()
        })
        .collect();
    db.write(
        Write::Records {
            table: "t".into(),
            mode: Mode::Insert,
            records,
        },
        None,
    )
    .await
    .unwrap();
    let snapshot = db.snapshot().unwrap();
    let table = snapshot.table("t").unwrap();
    let limits = Limits {
        sort_buffer_bytes: 10_000,
        max_candidates: 100,
    };
    let by = |attribute: &str, descending| Query {
        sort: Some(Sort {
            attribute: attribute.into(),
            descending,
            next: None,
        }),
        limits,
        ..Query::default()
    };
    let got = run(&snapshot, &table, &by("n", true)).unwrap();
    let ns: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(r).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ns, (0..2000).rev().collect::<Vec<_>>());
    // A consumer that wants no more stops the walk.
    for attribute in ["n", "id"] {
        let mut calls = 0;
        for_each(&snapshot, &table, &by(attribute, false), |_| {
            calls += 1;
            Ok(false)
        })
        .unwrap();
        assert_eq!(calls, 1, "{attribute}");
    }
    let mut sent = 0;
    let refused = for_each(&snapshot, &table, &by("m", false), |_| {
        sent += 1;
        Ok(true)
    });
    assert!(
        matches!(refused, Err(QueryError::SortBufferFull { limit: 10_000 })),
        "{refused:?}"
    );
    assert_eq!(sent, 0, "refused before anything was sent");
    // With a limit, the best few fit: a bounded top-k, index or not.
    let mut top = by("m", false);
    top.limit = Some(5);
    top.offset = 10;
    let got = run(&snapshot, &table, &top).unwrap();
    let ms: Vec<i64> = got
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(r).unwrap()["m"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(ms, (10..15).collect::<Vec<_>>());
    drop(snapshot);
    store.close().await;
}
