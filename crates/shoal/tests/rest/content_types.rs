//! Content negotiation: JSON, CBOR, MessagePack and CSV, in requests and in large
//! streamed answers.

use reqwest::Method;
use serde_json::{Value, json};
use shoal_testkit::{admin, create_table, insert, start, strip_timestamps};

use crate::answers::{assert_api_error, get_json, ids_of, keys, query, send};
use crate::dataset::load_dataset;

/// The rows of CSV text, header row included.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|row| {
            let row = row.unwrap_or_else(|e| panic!("bad CSV ({e}) in {text:?}"));
            row.iter().map(str::to_owned).collect()
        })
        .collect()
}

/// A JSON value as the server's CSV shows it: strings as is, null/absent empty, anything
/// else as JSON text.
fn csv_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn cbor<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    ciborium::from_reader(bytes).expect("valid CBOR")
}

fn to_cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encodes");
    out
}

/// Compares two decoded values, treating integers and floats of the same value alike
/// (CBOR and MessagePack may encode `10.0` as an integer or a smaller float).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((ka, va), (kb, vb))| ka == kb && same_value(va, vb))
        }
        _ => a == b,
    }
}

#[track_caller]
fn assert_same(a: &Value, b: &Value, what: &str) {
    assert!(same_value(a, b), "{what}:\n  left:  {a}\n  right: {b}");
}

#[tokio::test]
async fn content_types_round_trip() -> anyhow::Result<()> {
    let node = start("rest-formats").await?;
    create_table(&node, "dog").await?;
    let body = json!({
        "name": "Format", "age": 3, "weight": 4.5, "tags": ["a", "b"],
        "nested": {"k": [1, 2, {"deep": "x"}]}, "flag": true, "nothing": null,
        "negative": -7, "unicode": "héllo ✓"
    });
    let with_id = |id: u64| {
        let mut v = body.clone();
        v["id"] = json!(id);
        v
    };

    // PUT in every request format.
    let put = |path: &str, content_type: Option<&str>, bytes: Vec<u8>| {
        let mut rb = admin(&node, Method::PUT, path).body(bytes);
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        send(rb)
    };
    let json_bytes = serde_json::to_vec(&body)?;
    let msgpack = rmp_serde::to_vec_named(&body)?;
    let requests: Vec<(u64, Option<&str>, Vec<u8>)> = vec![
        (1, Some("application/cbor"), to_cbor(&body)),
        (2, Some("application/x-msgpack"), msgpack.clone()),
        (3, Some("application/msgpack"), msgpack.clone()),
        (4, Some("application/vnd.msgpack"), msgpack),
        (
            5,
            Some("application/json; charset=utf-8"),
            json_bytes.clone(),
        ),
        (6, None, json_bytes.clone()),
        (7, Some("text/plain"), json_bytes.clone()),
        (8, Some("application/x-www-form-urlencoded"), json_bytes),
    ];
    for (id, ct, bytes) in requests {
        let resp = put(&format!("/dev/dog/{id}"), ct, bytes).await?;
        assert_eq!(resp.status, 204, "PUT {ct:?}: {:?}", resp.text());
        let got = get_json(&node, &format!("/dev/dog/{id}")).await?;
        assert_same(
            &strip_timestamps(&got),
            &with_id(id),
            &format!("PUT as {ct:?}"),
        );
    }
    // POST and PATCH with binary bodies.
    let post = send(
        admin(&node, Method::POST, "/dev/dog/")
            .header("content-type", "application/cbor")
            .body(to_cbor(&json!({"id": 20, "name": "cbor-post"}))),
    )
    .await?;
    assert_eq!(post.status, 201, "POST CBOR: {:?}", post.text());
    assert_eq!(post.header("location"), Some("/dev/dog/20"));
    let patch = send(
        admin(&node, Method::PATCH, "/dev/dog/20")
            .header("content-type", "application/x-msgpack")
            .body(rmp_serde::to_vec_named(&json!({"age": 9}))?),
    )
    .await?;
    assert_eq!(patch.status, 204, "PATCH MessagePack: {:?}", patch.text());
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/20").await?),
        json!({"id": 20, "name": "cbor-post", "age": 9})
    );
    // Undecodable bodies are 400.
    for ct in [
        "application/cbor",
        "application/x-msgpack",
        "application/json",
    ] {
        let resp = put("/dev/dog/30", Some(ct), vec![0xc1, 0xff, 0x00]).await?;
        assert_api_error(&resp, 400, &format!("garbage as {ct}"));
    }

    // GET one record in every response format, by suffix and by Accept.
    let reference = get_json(&node, "/dev/dog/1").await?;
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("/dev/dog/1.json", None, "application/json"),
        ("/dev/dog/1", Some("application/json"), "application/json"),
        ("/dev/dog/1", Some("*/*"), "application/json"),
        ("/dev/dog/1.cbor", None, "application/cbor"),
        ("/dev/dog/1", Some("application/cbor"), "application/cbor"),
        ("/dev/dog/1.msgpack", None, "application/x-msgpack"),
        (
            "/dev/dog/1",
            Some("application/x-msgpack"),
            "application/x-msgpack",
        ),
        (
            "/dev/dog/1",
            Some("text/html;q=0.9, application/x-msgpack;q=0.8, application/json;q=0.1"),
            "application/x-msgpack",
        ),
        (
            "/dev/dog/1",
            Some("application/cbor;q=0.5, text/csv"),
            "text/csv",
        ),
        // The suffix wins over Accept.
        (
            "/dev/dog/1.cbor",
            Some("application/json"),
            "application/cbor",
        ),
    ];
    for (path, accept, mime) in cases {
        let mut rb = admin(&node, Method::GET, path);
        if let Some(accept) = accept {
            rb = rb.header("accept", accept);
        }
        let resp = send(rb).await?;
        let what = format!("GET {path} Accept {accept:?}");
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(resp.mime(), mime, "{what}: content type");
        let decoded: Value = match mime {
            "application/json" => resp.json(),
            "application/cbor" => cbor(&resp.body),
            "application/x-msgpack" => rmp_serde::from_slice(&resp.body)?,
            _ => {
                let rows = parse_csv(&resp.text());
                assert_eq!(rows.len(), 2, "{what}: header and one row");
                assert_eq!(rows[0], keys(&reference), "{what}: CSV header");
                let expected: Vec<String> = keys(&reference)
                    .iter()
                    .map(|k| csv_text(reference.get(k)))
                    .collect();
                assert_eq!(rows[1], expected, "{what}: CSV row");
                continue;
            }
        };
        assert_same(&decoded, &reference, &what);
    }

    // Collections in every response format.
    let reference = get_json(&node, "/dev/dog/?id=le=8").await?;
    assert_eq!(reference.as_array().map(Vec::len), Some(8));
    let collection_cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("/dev/dog/.cbor?id=le=8", None, "application/cbor"),
        (
            "/dev/dog/?id=le=8",
            Some("application/cbor"),
            "application/cbor",
        ),
        ("/dev/dog.cbor?id=le=8", None, "application/cbor"),
        ("/dev/dog/.msgpack?id=le=8", None, "application/x-msgpack"),
        (
            "/dev/dog/?id=le=8",
            Some("application/msgpack"),
            "application/x-msgpack",
        ),
        ("/dev/dog/.json?id=le=8", None, "application/json"),
    ];
    for (path, accept, mime) in collection_cases {
        let mut rb = admin(&node, Method::GET, path);
        if let Some(accept) = accept {
            rb = rb.header("accept", accept);
        }
        let resp = send(rb).await?;
        let what = format!("GET {path} Accept {accept:?}");
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(resp.mime(), mime, "{what}: content type");
        let decoded: Value = match mime {
            "application/cbor" => cbor(&resp.body),
            "application/x-msgpack" => rmp_serde::from_slice(&resp.body)?,
            _ => resp.json(),
        };
        assert_same(&decoded, &reference, &what);
    }
    // An empty result in each format.
    let empty = send(admin(&node, Method::GET, "/dev/dog/.cbor?id=0")).await?;
    assert_eq!(cbor::<Value>(&empty.body), json!([]));
    let empty = send(admin(&node, Method::GET, "/dev/dog/.msgpack?id=0")).await?;
    assert_eq!(rmp_serde::from_slice::<Value>(&empty.body)?, json!([]));
    let empty = send(admin(&node, Method::GET, "/dev/dog/?id=0")).await?;
    assert_eq!(empty.json(), json!([]));
    Ok(())
}

/// Results larger than one streamed chunk (64 KiB) arrive whole in every format.
#[tokio::test]
async fn large_results_stream_whole_in_every_format() -> anyhow::Result<()> {
    let node = start("rest-large").await?;
    create_table(&node, "big").await?;
    const N: u64 = 400;
    let records: Vec<Value> = (1..=N)
        .map(|i| json!({"id": i, "blob": format!("{i}:{}", "b".repeat(1000)), "odd": i % 2 == 1}))
        .collect();
    insert(&node, "big", Value::Array(records.clone())).await?;
    let check = |rows: &[Value], expected: &[u64], what: &str| {
        assert_eq!(ids_of(rows), expected, "{what}: ids");
        for row in rows {
            let id = row["id"].as_u64().unwrap();
            assert_eq!(
                row["blob"],
                records[id as usize - 1]["blob"],
                "{what}: blob of {id}"
            );
        }
    };
    let all: Vec<u64> = (1..=N).collect();
    let odd: Vec<u64> = (1..=N).filter(|i| i % 2 == 1).collect();
    let mut reversed = all.clone();
    reversed.reverse();
    let queries: [(&str, &[u64]); 4] = [
        ("", &all),
        ("odd=true", &odd),
        ("sort(-id)", &reversed),
        ("limit(150,350)", &all[150..350]),
    ];
    for (q, expected) in queries {
        let json = send(admin(&node, Method::GET, &format!("/dev/big/?{q}"))).await?;
        assert_eq!(json.status, 200);
        assert!(
            json.body.len() > 64 * 1024 || expected.len() < 100,
            "large enough"
        );
        let rows: Vec<Value> = serde_json::from_slice(&json.body)?;
        check(&rows, expected, &format!("JSON ?{q}"));
        let cbor_resp = send(admin(&node, Method::GET, &format!("/dev/big/.cbor?{q}"))).await?;
        check(
            &cbor::<Vec<Value>>(&cbor_resp.body),
            expected,
            &format!("CBOR ?{q}"),
        );
        let msgpack = send(admin(&node, Method::GET, &format!("/dev/big/.msgpack?{q}"))).await?;
        let rows: Vec<Value> = rmp_serde::from_slice(&msgpack.body)?;
        check(&rows, expected, &format!("MessagePack ?{q}"));
        let csv = send(admin(
            &node,
            Method::GET,
            &format!("/dev/big/.csv?{q}&select(id,blob)"),
        ))
        .await?;
        let rows = parse_csv(&csv.text());
        assert_eq!(rows[0], ["id", "blob"], "CSV ?{q}: header");
        let rows: Vec<Value> = rows[1..]
            .iter()
            .map(|r| json!({"id": r[0].parse::<u64>().unwrap(), "blob": r[1]}))
            .collect();
        check(&rows, expected, &format!("CSV ?{q}"));
        let head = send(admin(&node, Method::HEAD, &format!("/dev/big/?{q}"))).await?;
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
    }
    // Deleting by a query that matches many records.
    let resp = send(admin(&node, Method::DELETE, "/dev/big/?odd=true")).await?;
    assert_eq!(
        resp.json()["message"],
        json!(format!("{} records successfully deleted", odd.len()))
    );
    let rest: Vec<u64> = (1..=N).filter(|i| i % 2 == 0).collect();
    assert_eq!(ids_of(&query(&node, "big", "select(id)").await?), rest);
    Ok(())
}

/// Streamed query answers on a kept-alive connection come back as fast as single
/// records: nothing holds the body back after the headers.

#[tokio::test]
async fn csv_responses() -> anyhow::Result<()> {
    let node = start("rest-csv").await?;
    let data = load_dataset(&node).await?;

    // One record: its own attributes as the header, in stored order.
    for id in [7u64, 14, 15, 1] {
        for (path, accept) in [
            (format!("/dev/dog/{id}.csv"), None),
            (format!("/dev/dog/{id}"), Some("text/csv")),
        ] {
            let mut rb = admin(&node, Method::GET, &path);
            if let Some(accept) = accept {
                rb = rb.header("accept", accept);
            }
            let resp = send(rb).await?;
            assert_eq!(resp.status, 200, "{path}");
            assert_eq!(resp.mime(), "text/csv", "{path}");
            let record = get_json(&node, &format!("/dev/dog/{id}")).await?;
            let rows = parse_csv(&resp.text());
            assert_eq!(rows.len(), 2, "{path}: {:?}", resp.text());
            assert_eq!(rows[0], keys(&record), "{path}: header");
            let expected: Vec<String> = keys(&record)
                .iter()
                .map(|k| csv_text(record.get(k)))
                .collect();
            assert_eq!(rows[1], expected, "{path}: row");
        }
    }
    // Quoting, exactly: a comma, a quote, and an array.
    let resp = send(admin(
        &node,
        Method::GET,
        "/dev/dog/.csv?id=ge=13&le=15&select(id,nickname,tags)",
    ))
    .await?;
    assert_eq!(
        resp.text(),
        format!(
            "id,nickname,tags\r\n13,(paren),\"{}\"\r\n14,\"comma,here\",\"{}\"\r\n15,\"quote\"\"d\",\"{}\"\r\n",
            data[12]["tags"].to_string().replace('"', "\"\""),
            data[13]["tags"].to_string().replace('"', "\"\""),
            data[14]["tags"].to_string().replace('"', "\"\""),
        )
    );

    // A query with select: those columns; absent attributes are empty.
    let resp = send(admin(
        &node,
        Method::GET,
        "/dev/dog/.csv?id=le=20&select(id,name,tags,nickname,owner)",
    ))
    .await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.mime(), "text/csv");
    let rows = parse_csv(&resp.text());
    assert_eq!(rows[0], ["id", "name", "tags", "nickname", "owner"]);
    let expected: Vec<Vec<String>> = data[..20]
        .iter()
        .map(|r| {
            ["id", "name", "tags", "nickname", "owner"]
                .iter()
                .map(|k| csv_text(r.get(*k)))
                .collect()
        })
        .collect();
    assert_eq!(rows[1..], expected[..]);

    // Without select: the table's attributes as columns, by suffix or by Accept.
    let describe = get_json(&node, "/dev/dog").await?;
    let attributes: Vec<String> = describe["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .map(|a| a["attribute"].as_str().unwrap().to_owned())
        .collect();
    for (path, accept) in [
        ("/dev/dog.csv?breed=Husky&age=gt=10", None),
        ("/dev/dog/?breed=Husky&age=gt=10", Some("text/csv")),
    ] {
        let mut rb = admin(&node, Method::GET, path);
        if let Some(accept) = accept {
            rb = rb.header("accept", accept);
        }
        let resp = send(rb).await?;
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.mime(), "text/csv", "{path}");
        let rows = parse_csv(&resp.text());
        let mut header = rows[0].clone();
        let mut sorted_attributes = attributes.clone();
        header.sort();
        sorted_attributes.sort();
        assert_eq!(
            header, sorted_attributes,
            "{path}: header lists every attribute"
        );
        let records = query(&node, "dog", "breed=Husky&age=gt=10").await?;
        assert_eq!(rows.len(), records.len() + 1, "{path}: one row per record");
        for (row, record) in rows[1..].iter().zip(&records) {
            let expected: Vec<String> = rows[0].iter().map(|k| csv_text(record.get(k))).collect();
            assert_eq!(row, &expected, "{path}: row of {}", record["id"]);
        }
    }
    Ok(())
}
