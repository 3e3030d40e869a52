//! The URL query language: each operator and function, combinations, selects, sorts and
//! limits, and malformed input.

use reqwest::Method;
use serde_json::{Value, json};
use shoal_testkit::{admin, create_table, insert, start, strip_timestamps};

use crate::answers::{assert_api_error, ids_of, keys, query, send};
use crate::dataset::{
    RECORDS, TABLES, by_num, by_text, expect, expect_sorted, has_tag, is_null, load_dataset,
    long_value, num, text,
};

/// Every comparison operator, typed value and combination, against ids computed here.
fn id_cases(d: &[Value]) -> Vec<(String, Vec<u64>)> {
    let age = |r: &Value| num(r, "age").unwrap();
    let name = |r: &Value| text(r, "name").unwrap().to_owned();
    let breed = |r: &Value| text(r, "breed").map(str::to_owned);
    let bday = |r: &Value| num(r, "birthday").unwrap();
    let id = |r: &Value| r["id"].as_u64().unwrap();
    let nick = |r: &Value| text(r, "nickname").map(str::to_owned);
    let is = |r: &Value, b: &str| breed(r).as_deref() == Some(b);
    let cases: Vec<(&str, Vec<u64>)> = vec![
        // Equality, in every spelling.
        ("name=Rex", expect(d, |r| name(r) == "Rex")),
        ("name==Rex", expect(d, |r| name(r) == "Rex")),
        ("name=eq=Rex", expect(d, |r| name(r) == "Rex")),
        ("name=equals=Rex", expect(d, |r| name(r) == "Rex")),
        ("name===Rex", expect(d, |r| name(r) == "Rex")),
        ("age=5", expect(d, |r| age(r) == 5.0)),
        ("age=number:5", expect(d, |r| age(r) == 5.0)),
        ("age=string:5", vec![]),
        ("weight=10", expect(d, |r| num(r, "weight") == Some(10.0))),
        (
            "weight=12.25",
            expect(d, |r| num(r, "weight") == Some(12.25)),
        ),
        ("adopted=true", expect(d, |r| r["adopted"] == json!(true))),
        (
            "adopted=boolean:false",
            expect(d, |r| r["adopted"] == json!(false)),
        ),
        ("code=42", vec![]),
        ("code=string:42", vec![42]),
        ("code===42", vec![42]),
        ("tags=loud", expect(d, |r| has_tag(r, "loud"))),
        ("id=5", vec![5]),
        ("id=string:5", vec![]),
        ("nickname=Rex%20Jr", vec![9]),
        ("nickname=A%26B", vec![7]),
        ("nickname=x%7Cy", vec![8]),
        ("nickname=100%25", vec![10]),
        ("nickname=a%3Db", vec![11]),
        ("nickname=plus+sign", vec![12]),
        ("nickname=%28paren%29", vec![13]),
        ("nickname=comma%2Chere", vec![14]),
        ("nickname=quote%22d", vec![15]),
        (
            "birthday=date:1421798400000",
            expect(d, |r| bday(r) == 1_421_798_400_000.0),
        ),
        // Not equal: a missing attribute is not equal.
        ("breed=ne=Husky", expect(d, |r| !is(r, "Husky"))),
        ("breed!=Husky", expect(d, |r| !is(r, "Husky"))),
        ("breed=not_equal=Husky", expect(d, |r| !is(r, "Husky"))),
        ("id=ne=5", expect(d, |r| id(r) != 5)),
        ("owner=ne=null", expect(d, |r| !is_null(r, "owner"))),
        ("tags=ne=fast", expect(d, |r| !has_tag(r, "fast"))),
        // Order comparisons (same type only).
        ("age=gt=10", expect(d, |r| age(r) > 10.0)),
        ("age=greater_than=10", expect(d, |r| age(r) > 10.0)),
        ("age=ge=10", expect(d, |r| age(r) >= 10.0)),
        ("age=greater_than_equal=10", expect(d, |r| age(r) >= 10.0)),
        ("age=lt=3", expect(d, |r| age(r) < 3.0)),
        ("age=less_than=3", expect(d, |r| age(r) < 3.0)),
        ("age=le=3", expect(d, |r| age(r) <= 3.0)),
        ("age=less_than_equal=3", expect(d, |r| age(r) <= 3.0)),
        (
            "weight=gt=number:15.5",
            expect(d, |r| num(r, "weight").unwrap() > 15.5),
        ),
        ("name=gt=M", expect(d, |r| name(r).as_str() > "M")),
        ("name=gt=5", vec![]),
        ("code=gt=5", vec![]),
        (
            "code=gt=string:95",
            expect(d, |r| text(r, "code").unwrap() > "95"),
        ),
        ("id=gt=95", expect(d, |r| id(r) > 95)),
        ("id=le=3", vec![1, 2, 3]),
        // Text comparisons.
        ("name=ct=uc", expect(d, |r| name(r).contains("uc"))),
        ("name=contains=ne", expect(d, |r| name(r).contains("ne"))),
        ("tags=ct=small", expect(d, |r| has_tag(r, "small"))),
        ("name=sw=Ma", expect(d, |r| name(r).starts_with("Ma"))),
        (
            "name=starts_with=Pen",
            expect(d, |r| name(r).starts_with("Pen")),
        ),
        ("name==Ma*", expect(d, |r| name(r).starts_with("Ma"))),
        ("name=eq=Pen*", expect(d, |r| name(r).starts_with("Pen"))),
        ("tags=sw=fr", expect(d, |r| has_tag(r, "friendly"))),
        ("name=ew=y", expect(d, |r| name(r).ends_with('y'))),
        ("name=ends_with=ne", expect(d, |r| name(r).ends_with("ne"))),
        ("tags=ew=all", expect(d, |r| has_tag(r, "small"))),
        (
            "code=sw=9",
            expect(d, |r| text(r, "code").unwrap().starts_with('9')),
        ),
        (
            "code=ew=0",
            expect(d, |r| text(r, "code").unwrap().ends_with('0')),
        ),
        ("nickname=ct=%26", vec![7]),
        ("name=sw=Rex%20", vec![]),
        ("nickname=sw=Rex%20", vec![9]),
        // Dates (milliseconds since the epoch).
        (
            "birthday=lt=date:2016-01-01",
            expect(d, |r| bday(r) < 1_451_606_400_000.0),
        ),
        (
            "birthday=ge=date:2018-01-01T00:00:00Z&lt=date:2019-01-01",
            expect(d, |r| {
                bday(r) >= 1_514_764_800_000.0 && bday(r) < 1_546_300_800_000.0
            }),
        ),
        (
            "birthday=gt=date:2017-06-15T12:30:00+02:00",
            expect(d, |r| bday(r) > 1_497_522_600_000.0),
        ),
        (
            "birthday=gt=date:2017-06-15T12%3A30%3A00%2B02%3A00",
            expect(d, |r| bday(r) > 1_497_522_600_000.0),
        ),
        // Ranges: a bound chained onto the condition before it.
        ("age=gt=3&lt=9", expect(d, |r| age(r) > 3.0 && age(r) < 9.0)),
        (
            "age=gt=3&=lt=9",
            expect(d, |r| age(r) > 3.0 && age(r) < 9.0),
        ),
        ("age=lt=9&gt=3", expect(d, |r| age(r) > 3.0 && age(r) < 9.0)),
        (
            "age=ge=3&le=9",
            expect(d, |r| (3.0..=9.0).contains(&age(r))),
        ),
        (
            "age=ge=3&lt=9",
            expect(d, |r| age(r) >= 3.0 && age(r) < 9.0),
        ),
        ("id=ge=10&le=12", vec![10, 11, 12]),
        (
            "name=ge=L&lt=P",
            expect(d, |r| name(r).as_str() >= "L" && name(r).as_str() < "P"),
        ),
        (
            "breed=Husky&age=gt=3&lt=9",
            expect(d, |r| is(r, "Husky") && age(r) > 3.0 && age(r) < 9.0),
        ),
        // And, or, precedence and grouping.
        (
            "breed=Beagle&adopted=true",
            expect(d, |r| is(r, "Beagle") && r["adopted"] == json!(true)),
        ),
        (
            "breed=Husky&&age=gt=5&",
            expect(d, |r| is(r, "Husky") && age(r) > 5.0),
        ),
        (
            "breed=Husky|breed=Poodle",
            expect(d, |r| is(r, "Husky") || is(r, "Poodle")),
        ),
        (
            "breed=Husky|age=0",
            expect(d, |r| is(r, "Husky") || age(r) == 0.0),
        ),
        (
            "breed=Husky|breed=Poodle&age=gt=8",
            expect(d, |r| is(r, "Husky") || (is(r, "Poodle") && age(r) > 8.0)),
        ),
        (
            "age=gt=8&breed=Poodle|breed=Husky",
            expect(d, |r| is(r, "Husky") || (is(r, "Poodle") && age(r) > 8.0)),
        ),
        (
            "(breed=Husky|breed=Poodle)&age=gt=8",
            expect(d, |r| (is(r, "Husky") || is(r, "Poodle")) && age(r) > 8.0),
        ),
        (
            "[breed=Husky|breed=Poodle]&age=gt=8",
            expect(d, |r| (is(r, "Husky") || is(r, "Poodle")) && age(r) > 8.0),
        ),
        (
            "((name=Rex|name=Max)&(age=lt=5|age=gt=12))|id=100",
            expect(d, |r| {
                ((name(r) == "Rex" || name(r) == "Max") && (age(r) < 5.0 || age(r) > 12.0))
                    || id(r) == 100
            }),
        ),
        (
            "tags=fast&tags=loud|nickname=sw=x",
            expect(d, |r| {
                (has_tag(r, "fast") && has_tag(r, "loud"))
                    || nick(r).is_some_and(|n| n.starts_with('x'))
            }),
        ),
        (
            "(adopted=true)&[owner=ne=null]",
            expect(d, |r| r["adopted"] == json!(true) && !is_null(r, "owner")),
        ),
        // A string longer than index keys keep.
        ("long=ew=050", vec![50]),
        ("long=sw=LLLL", expect(d, |r| r.get("long").is_some())),
    ];
    let long_eq = format!("long={}", long_value(50));
    let long_gt = format!("long=gt={}", long_value(70));
    let mut owned: Vec<(String, Vec<u64>)> = cases
        .into_iter()
        .map(|(q, ids)| (q.to_owned(), ids))
        .collect();
    owned.push((long_eq, vec![50]));
    owned.push((long_gt, vec![80, 90, 100]));
    owned
}

/// Cases whose order is not key order.
fn sorted_cases(d: &[Value]) -> Vec<(String, Vec<u64>)> {
    let all = |_: &Value| true;
    let is = |r: &Value, b: &str| text(r, "breed") == Some(b);
    let id = |r: &Value| r["id"].as_u64().unwrap();
    let ids: Vec<u64> = (1..=RECORDS).collect();
    vec![
        ("limit(5)".into(), ids[..5].to_vec()),
        ("limit(10,15)".into(), ids[10..15].to_vec()),
        ("limit(95,200)".into(), ids[95..].to_vec()),
        ("limit(0)".into(), vec![]),
        ("limit(7,7)".into(), vec![]),
        (
            "breed=Husky&limit(3)".into(),
            expect(d, |r| is(r, "Husky"))[..3].to_vec(),
        ),
        (
            "limit(3)&breed=Husky".into(),
            expect(d, |r| is(r, "Husky"))[..3].to_vec(),
        ),
        (
            "breed=Husky&limit(2,4)".into(),
            expect(d, |r| is(r, "Husky"))[2..4].to_vec(),
        ),
        (
            "sort(age)".into(),
            expect_sorted(d, all, |a, b| by_num(a, b, "age")),
        ),
        (
            "sort(+age)".into(),
            expect_sorted(d, all, |a, b| by_num(a, b, "age")),
        ),
        (
            "sort(-age)".into(),
            expect_sorted(d, all, |a, b| by_num(b, a, "age")),
        ),
        (
            "sort(+age,-id)".into(),
            expect_sorted(d, all, |a, b| by_num(a, b, "age").then(id(b).cmp(&id(a)))),
        ),
        (
            "sort(name,-weight)".into(),
            expect_sorted(d, all, |a, b| {
                by_text(a, b, "name").then(by_num(b, a, "weight"))
            }),
        ),
        (
            // Records without a breed sort first (null orders before strings).
            "sort(breed)".into(),
            expect_sorted(d, all, |a, b| by_text(a, b, "breed")),
        ),
        (
            "sort(-weight)&limit(3)".into(),
            expect_sorted(d, all, |a, b| by_num(b, a, "weight"))[..3].to_vec(),
        ),
        (
            "breed=Poodle&sort(-age,name)&limit(2,6)".into(),
            expect_sorted(
                d,
                |r| is(r, "Poodle"),
                |a, b| by_num(b, a, "age").then(by_text(a, b, "name")),
            )[2..6]
                .to_vec(),
        ),
        (
            "select(id)&sort(-age)".into(),
            expect_sorted(d, all, |a, b| by_num(b, a, "age")),
        ),
        (
            "sort(-id)&age=gt=12".into(),
            expect_sorted(
                d,
                |r| num(r, "age").unwrap() > 12.0,
                |a, b| id(b).cmp(&id(a)),
            ),
        ),
    ]
}

#[tokio::test]
async fn query_operators_and_functions_match_expected_ids() -> anyhow::Result<()> {
    let node = start("rest-query").await?;
    let data = load_dataset(&node).await?;
    let mut failures = Vec::new();
    let mut cases = id_cases(&data);
    cases.extend(sorted_cases(&data));
    for table in TABLES {
        // No query: everything, in key order.
        assert_eq!(
            ids_of(&query(&node, table, "").await?),
            (1..=RECORDS).collect::<Vec<_>>()
        );
        for (q, expected) in &cases {
            let got = ids_of(&query(&node, table, q).await?);
            if &got != expected {
                failures.push(format!(
                    "{table}?{q}\n    expected {expected:?}\n    got      {got:?}"
                ));
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} queries answered wrongly:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    Ok(())
}

/// `attr=null` matches records where the attribute is null *or absent* (a missing
/// attribute compares as null, as `=ne=null` and the full scan treat it), whether or not
/// the attribute is indexed.
#[tokio::test]
async fn null_equality_is_the_same_with_and_without_an_index() -> anyhow::Result<()> {
    let node = start("rest-null").await?;
    let data = load_dataset(&node).await?;
    let owner_null = expect(&data, |r| is_null(r, "owner"));
    let breed_null = expect(&data, |r| is_null(r, "breed"));
    let mut failures = Vec::new();
    for table in TABLES {
        for (q, expected) in [("owner=null", &owner_null), ("breed=null", &breed_null)] {
            let got = ids_of(&query(&node, table, q).await?);
            if &got != expected {
                failures.push(format!("{table}?{q}: expected {expected:?}, got {got:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// `attr<v`, `attr<=v`, `attr>v` and `attr>=v`, as a client sends them: HTTP clients
/// percent-encode `<` and `>` in a query string (RFC 3986 does not allow them raw, and
/// the server's HTTP parser rejects a raw `<` with an empty 400).
#[tokio::test]
async fn angle_bracket_comparisons_work_as_clients_send_them() -> anyhow::Result<()> {
    let node = start("rest-angles").await?;
    let data = load_dataset(&node).await?;
    let age = |r: &Value| num(r, "age").unwrap();
    let cases: Vec<(&str, Vec<u64>)> = vec![
        ("age%3C3", expect(&data, |r| age(r) < 3.0)),
        ("age%3C=3", expect(&data, |r| age(r) <= 3.0)),
        ("age%3E14", expect(&data, |r| age(r) > 14.0)),
        ("age%3E=14", expect(&data, |r| age(r) >= 14.0)),
        (
            "age%3E=14&breed=Husky",
            expect(&data, |r| {
                age(r) >= 14.0 && text(r, "breed") == Some("Husky")
            }),
        ),
    ];
    let mut failures = Vec::new();
    for table in TABLES {
        for (q, expected) in &cases {
            let path = format!("/dev/{table}/?{q}");
            let resp = send(admin(&node, Method::GET, &path)).await?;
            if resp.status != 200 {
                failures.push(format!("{path}: status {}: {}", resp.status, resp.text()));
                continue;
            }
            let got = ids_of(resp.json().as_array().expect("an array"));
            if &got != expected {
                failures.push(format!("{path}: expected {expected:?}, got {got:?}"));
            }
        }
    }
    // Clients percent-encode `<` and `>`; the encoded forms are operators.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn select_sort_and_limit_shape_the_results() -> anyhow::Result<()> {
    let node = start("rest-select").await?;
    let data = load_dataset(&node).await?;
    let husky = |r: &Value| text(r, "breed") == Some("Husky");
    for table in TABLES {
        // select(a,b): exactly those attributes, in that order.
        let rows = query(&node, table, "breed=Husky&select(name,age)").await?;
        let expected: Vec<Value> = data
            .iter()
            .filter(|r| husky(r))
            .map(|r| json!({"name": r["name"], "age": r["age"]}))
            .collect();
        assert_eq!(rows, expected, "{table}: select(name,age)");
        for row in &rows {
            assert_eq!(keys(row), ["name", "age"], "{table}: attribute order");
        }
        // Absent attributes are null in a projection.
        let rows = query(&node, table, "id=le=4&select(id,owner,nickname)").await?;
        let expected: Vec<Value> = data[..4]
            .iter()
            .map(|r| json!({"id": r["id"], "owner": r.get("owner").cloned().unwrap_or(Value::Null), "nickname": null}))
            .collect();
        assert_eq!(rows, expected, "{table}: select with absent attributes");
        // A trailing comma, and `*` for everything.
        let rows = query(&node, table, "id=1&select(name,)").await?;
        assert_eq!(
            rows,
            vec![json!({"name": data[0]["name"]})],
            "{table}: select(name,)"
        );
        let rows = query(&node, table, "id=1&select(*)").await?;
        assert_eq!(rows.len(), 1);
        assert_eq!(strip_timestamps(&rows[0]), data[0], "{table}: select(*)");
        // Everything together, functions in any position.
        let rows = query(
            &node,
            table,
            "select(id,age,name)&breed=Poodle&sort(-age,name)&limit(1,4)",
        )
        .await?;
        let expected_ids = expect_sorted(
            &data,
            |r| text(r, "breed") == Some("Poodle"),
            |a, b| by_num(b, a, "age").then(by_text(a, b, "name")),
        )[1..4]
            .to_vec();
        assert_eq!(ids_of(&rows), expected_ids, "{table}: combined");
        for row in &rows {
            assert_eq!(
                keys(row),
                ["id", "age", "name"],
                "{table}: combined projection"
            );
            let source = &data[row["id"].as_u64().unwrap() as usize - 1];
            assert_eq!(row["age"], source["age"]);
            assert_eq!(row["name"], source["name"]);
        }
        // Whole records come back as stored (plus timestamps).
        let rows = query(&node, table, "id=gt=98").await?;
        let stripped: Vec<Value> = rows.iter().map(strip_timestamps).collect();
        assert_eq!(stripped, data[98..].to_vec(), "{table}: whole records");
    }
    Ok(())
}

#[tokio::test]
async fn malformed_queries_are_400() -> anyhow::Result<()> {
    let node = start("rest-malformed").await?;
    create_table(&node, "dog").await?;
    insert(&node, "dog", json!([{"id": 1, "name": "Rex", "age": 3}])).await?;
    let malformed = [
        "name=(Rex",
        "(name=Rex",
        "name=Rex)",
        "[name=Rex",
        "(name=Rex]",
        "age=zz=5",
        "age=between=1",
        "foo(1)",
        "limit(x)",
        "limit(-1)",
        "limit(5,2)",
        "limit(1,2,3)",
        "limit(1)&limit(2)",
        "sort(-)",
        "sort(a)&sort(b)",
        "select()",
        "select(a)&select(b)",
        "(select(name))",
        "name=Rex&(limit(1))",
        "name",
        "name&age=3",
        "=Rex",
        "=lt=9",
        "name=Rex&=lt=9",
        "name=Rex|",
        "|name=Rex",
        "()",
        "name=Rex&()",
        "name=%ZZ",
        "name=%E2%28",
        "name==a*b*",
        "name==*a",
        "age=number:abc",
        "adopted=boolean:maybe",
        "birthday=gt=date:2020-13-01",
        "birthday=gt=date:yesterday",
        "name=sw=number:5",
        "name=ew=boolean:true",
        "name=a=b",
        "name!Rex",
        "tags[0]=x",
        "select(name",
    ];
    for q in malformed {
        let resp = send(admin(&node, Method::GET, &format!("/dev/dog/?{q}"))).await?;
        assert_api_error(&resp, 400, &format!("GET ?{q}"));
        let resp = send(admin(&node, Method::DELETE, &format!("/dev/dog/?{q}"))).await?;
        assert_api_error(&resp, 400, &format!("DELETE ?{q}"));
    }
    // Formats do not change that: the error comes before any streaming starts.
    let resp = send(admin(&node, Method::GET, "/dev/dog/.csv?name=(Rex")).await?;
    assert_api_error(&resp, 400, "CSV query");
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/?age=zz=1").header("accept", "application/cbor"))
            .await?;
    assert_api_error(&resp, 400, "CBOR query");
    // Nothing was deleted by the malformed DELETEs.
    assert_eq!(ids_of(&query(&node, "dog", "").await?), vec![1]);
    Ok(())
}
