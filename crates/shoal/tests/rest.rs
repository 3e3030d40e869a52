//! End-to-end tests of the REST interface on the HTTP port: every test starts its own
//! `shoal` process and talks to it over HTTP only.
//!
//! Covered: every method and status code of `/{database}/{table}/{id}`, the URL query
//! language (each operator and function, combinations, malformed input), content
//! negotiation (JSON, CBOR, MessagePack and CSV), `ETag` / `If-None-Match`, `POST`
//! locations, component exports, body limits, large streamed answers and
//! authentication. Query answers are checked against ids computed here over a
//! deterministic data set, once on a table whose attributes are all indexed and once
//! on a table with no indexes (so both the index and the full-scan paths are covered).

use std::cmp::Ordering;

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Map, Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, admin, anon, create_table, insert, start,
    start_with, strip_timestamps,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A whole HTTP answer.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("body is UTF-8")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type`, without parameters.
    fn mime(&self) -> &str {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
    }
}

async fn send(rb: RequestBuilder) -> anyhow::Result<Resp> {
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?.to_vec();
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Asserts `resp` has `status` and a JSON body `{"error": "<text>"}`; returns the text.
#[track_caller]
fn assert_api_error(resp: &Resp, status: u16, what: &str) -> String {
    assert_eq!(
        resp.status,
        status,
        "{what}: status (body {:?})",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(resp.mime(), "application/json", "{what}: content type");
    let body = resp.json();
    let text = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{what}: no string `error` in {body}"));
    assert_eq!(
        body.as_object().map(Map::len),
        Some(1),
        "{what}: error body {body}"
    );
    text.to_owned()
}

/// GET a path as the admin; asserts 200 and returns the JSON body.
async fn get_json(node: &Node, path: &str) -> anyhow::Result<Value> {
    let resp = send(admin(node, Method::GET, path)).await?;
    assert_eq!(resp.status, 200, "GET {path}: {:?}", resp.text());
    Ok(resp.json())
}

/// Runs a query on `dev.<table>`; asserts 200 and returns the result array.
async fn query(node: &Node, table: &str, q: &str) -> anyhow::Result<Vec<Value>> {
    let path = format!("/dev/{table}/?{q}");
    let resp = send(admin(node, Method::GET, &path)).await?;
    assert_eq!(resp.status, 200, "GET {path}: {:?}", resp.text());
    assert_eq!(resp.mime(), "application/json", "GET {path}");
    match resp.json() {
        Value::Array(rows) => Ok(rows),
        other => panic!("GET {path}: expected an array, got {other}"),
    }
}

/// The numeric `id`s of records, in order.
fn ids_of(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| {
            r["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("record without a numeric id: {r}"))
        })
        .collect()
}

/// The keys of an object, in order.
fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Parses CSV text (RFC 4180: quoted fields, doubled quotes, CRLF rows).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                other => field.push(other),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            other => field.push(other),
        }
    }
    assert!(!quoted, "unterminated quoted CSV field in {text:?}");
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
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

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for seconds since the epoch.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[month as usize - 1],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

// ---------------------------------------------------------------------------------------
// The query data set
// ---------------------------------------------------------------------------------------

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
const RECORDS: u64 = 100;

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
fn long_value(i: u64) -> String {
    format!("{}{i:03}", "L".repeat(210))
}

fn dataset() -> Vec<Value> {
    (1..=RECORDS).map(dog).collect()
}

fn num(r: &Value, a: &str) -> Option<f64> {
    r.get(a).and_then(Value::as_f64)
}

fn text<'a>(r: &'a Value, a: &str) -> Option<&'a str> {
    r.get(a).and_then(Value::as_str)
}

fn has_tag(r: &Value, tag: &str) -> bool {
    r["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == tag))
}

/// `a` missing or null.
fn is_null(r: &Value, a: &str) -> bool {
    r.get(a).is_none_or(Value::is_null)
}

/// Ids of the records matching `f`, in primary key order.
fn expect(data: &[Value], f: impl Fn(&Value) -> bool) -> Vec<u64> {
    data.iter()
        .filter(|r| f(r))
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

/// Ids of the records matching `f`, stably sorted by `cmp` (ties keep key order).
fn expect_sorted(
    data: &[Value],
    f: impl Fn(&Value) -> bool,
    cmp: impl Fn(&Value, &Value) -> Ordering,
) -> Vec<u64> {
    let mut rows: Vec<&Value> = data.iter().filter(|r| f(r)).collect();
    rows.sort_by(|a, b| cmp(a, b));
    rows.iter().map(|r| r["id"].as_u64().unwrap()).collect()
}

fn by_num(a: &Value, b: &Value, attr: &str) -> Ordering {
    num(a, attr).unwrap().total_cmp(&num(b, attr).unwrap())
}

fn by_text(a: &Value, b: &Value, attr: &str) -> Ordering {
    text(a, attr).cmp(&text(b, attr))
}

/// Loads the data set into `dev.dog` (dynamic: every attribute indexed) and
/// `dev.dog_plain` (declared attributes, none indexed), so that each query runs once
/// through index scans and once through a full scan.
async fn load_dataset(node: &Node) -> anyhow::Result<Vec<Value>> {
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

const TABLES: [&str; 2] = ["dog", "dog_plain"];

// ---------------------------------------------------------------------------------------
// Methods and status codes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn record_methods_and_status_codes() -> anyhow::Result<()> {
    let node = start("rest-methods").await?;
    create_table(&node, "dog").await?;

    // PUT creates (204, no body) and replaces.
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 3})))
        .await?;
    assert_eq!(put.status, 204, "PUT new: {:?}", put.text());
    assert!(put.body.is_empty(), "PUT answers without a body");
    let got = get_json(&node, "/dev/dog/1").await?;
    assert_eq!(
        strip_timestamps(&got),
        json!({"name": "Rex", "age": 3, "id": 1})
    );
    let created = got["__createdtime__"].clone();
    assert!(created.is_number(), "timestamps are maintained: {got}");

    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"id": 1, "name": "Rexy"})))
        .await?;
    assert_eq!(put.status, 204, "PUT replace: {:?}", put.text());
    let got = get_json(&node, "/dev/dog/1").await?;
    assert_eq!(
        strip_timestamps(&got),
        json!({"id": 1, "name": "Rexy"}),
        "PUT replaces the whole record (age is gone)"
    );
    assert_eq!(
        got["__createdtime__"], created,
        "a replacement keeps the creation time"
    );

    // GET answers JSON with validators.
    let resp = send(admin(&node, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.mime(), "application/json");
    assert!(resp.header("etag").is_some(), "GET has an ETag");
    assert!(
        resp.header("last-modified").is_some(),
        "GET has Last-Modified"
    );

    // A string id.
    let put = send(admin(&node, Method::PUT, "/dev/dog/abc").json(&json!({"name": "Str"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/abc").await?),
        json!({"name": "Str", "id": "abc"})
    );
    // A percent-encoded id.
    let put =
        send(admin(&node, Method::PUT, "/dev/dog/a%20b").json(&json!({"name": "Sp"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(get_json(&node, "/dev/dog/a%20b").await?["id"], json!("a b"));

    // PATCH merges (204); PATCH of a missing record is 404.
    let patch =
        send(admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"age": 4, "color": "brown"})))
            .await?;
    assert_eq!(patch.status, 204, "PATCH: {:?}", patch.text());
    assert!(patch.body.is_empty());
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/1").await?),
        json!({"id": 1, "name": "Rexy", "age": 4, "color": "brown"})
    );
    let patch = send(admin(&node, Method::PATCH, "/dev/dog/999").json(&json!({"age": 4}))).await?;
    assert_api_error(&patch, 404, "PATCH missing");
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/999"))
            .await?
            .status,
        404,
        "PATCH of a missing record must not create it"
    );

    // GET of a missing record: 404 with a JSON error.
    let missing = send(admin(&node, Method::GET, "/dev/dog/2")).await?;
    let message = assert_api_error(&missing, 404, "GET missing");
    assert!(message.contains('2'), "the error names the id: {message}");

    // HEAD: same status and headers, no body.
    let head = send(admin(&node, Method::HEAD, "/dev/dog/1")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD has no body");
    assert!(head.header("etag").is_some(), "HEAD has the ETag");
    assert_eq!(head.mime(), "application/json");
    let head = send(admin(&node, Method::HEAD, "/dev/dog/2")).await?;
    assert_eq!(head.status, 404);
    assert!(head.body.is_empty(), "HEAD 404 has no body");
    let head = send(admin(&node, Method::HEAD, "/dev/dog/")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "HEAD of a query has no body");

    // OPTIONS: 204 with Allow, on a record, a collection and a table.
    for path in ["/dev/dog/1", "/dev/dog/", "/dev/dog"] {
        let options = send(admin(&node, Method::OPTIONS, path)).await?;
        assert_eq!(options.status, 204, "OPTIONS {path}");
        let allow = options.header("allow").unwrap_or_default();
        let allowed: Vec<&str> = allow.split(',').map(str::trim).collect();
        for method in ["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS"] {
            assert!(
                allowed.contains(&method),
                "OPTIONS {path}: Allow {allow:?} lacks {method}"
            );
        }
    }

    // DELETE: 204, then 404 for GET and for a second DELETE.
    let delete = send(admin(&node, Method::DELETE, "/dev/dog/abc")).await?;
    assert_eq!(delete.status, 204, "DELETE: {:?}", delete.text());
    assert!(delete.body.is_empty());
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/abc"))
            .await?
            .status,
        404
    );
    let again = send(admin(&node, Method::DELETE, "/dev/dog/abc")).await?;
    assert_api_error(&again, 404, "DELETE deleted");
    let never = send(admin(&node, Method::DELETE, "/dev/dog/nope")).await?;
    assert_api_error(&never, 404, "DELETE missing");
    // A deleted record can be created again.
    let put =
        send(admin(&node, Method::PUT, "/dev/dog/abc").json(&json!({"name": "Back"}))).await?;
    assert_eq!(put.status, 204);
    assert_eq!(
        get_json(&node, "/dev/dog/abc").await?["name"],
        json!("Back")
    );

    // POST creates with a generated id: 201, Location, the id as the body.
    let post = send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "New"}))).await?;
    assert_eq!(post.status, 201, "POST: {:?}", post.text());
    let location = post
        .header("location")
        .expect("POST has a Location")
        .to_owned();
    let id = post.json();
    let id_text = id.as_str().expect("a generated id is a string");
    assert_eq!(location, format!("/dev/dog/{id_text}"));

    // Wrong methods: 405 with a JSON error.
    for (method, path) in [
        (Method::POST, "/dev/dog/1"),
        (Method::PUT, "/dev/dog/"),
        (Method::PATCH, "/dev/dog/"),
        (Method::POST, "/dev/dog"),
        (Method::DELETE, "/dev/dog"),
        (Method::PUT, "/dev/dog"),
    ] {
        let resp = send(admin(&node, method.clone(), path).json(&json!({"name": "x"}))).await?;
        assert_api_error(&resp, 405, &format!("{method} {path}"));
    }

    // Unknown database, table, or path: 404.
    for path in [
        "/dev/cat/1",
        "/nodb/dog/1",
        "/dev/cat/",
        "/nowhere",
        "/dev/cat",
    ] {
        let resp = send(admin(&node, Method::GET, path)).await?;
        assert_api_error(&resp, 404, &format!("GET {path}"));
    }
    let resp = send(admin(&node, Method::PUT, "/dev/cat/1").json(&json!({"a": 1}))).await?;
    assert_api_error(&resp, 404, "PUT to a missing table");

    // Bad bodies: 400.
    let bad = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "application/json")
            .body("{not json"),
    )
    .await?;
    assert_api_error(&bad, 400, "PUT invalid JSON");
    let bad = send(admin(&node, Method::PUT, "/dev/dog/5").json(&json!([1, 2]))).await?;
    assert_api_error(&bad, 400, "PUT a non-object");
    let bad = send(admin(&node, Method::PUT, "/dev/dog/5").json(&json!({"id": 6, "a": 1}))).await?;
    assert_api_error(&bad, 400, "PUT with a mismatching id");
    let bad = send(admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"id": 2}))).await?;
    assert_api_error(&bad, 400, "PATCH with a mismatching id");
    let bad = send(admin(&node, Method::POST, "/dev/dog/").json(&json!("str"))).await?;
    assert_api_error(&bad, 400, "POST a non-object");
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/5")).await?.status,
        404
    );
    assert_eq!(
        send(admin(&node, Method::GET, "/dev/dog/6")).await?.status,
        404
    );

    // Unsupported media types: 415 for bodies, 406 for Accept.
    let resp = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "application/xml")
            .body("<dog/>"),
    )
    .await?;
    assert_api_error(&resp, 415, "PUT XML");
    let resp = send(
        admin(&node, Method::PUT, "/dev/dog/5")
            .header("content-type", "text/csv")
            .body("id,name\r\n5,x\r\n"),
    )
    .await?;
    assert_api_error(&resp, 415, "PUT CSV");
    let resp = send(admin(&node, Method::GET, "/dev/dog/1").header("accept", "image/png")).await?;
    assert_api_error(&resp, 406, "Accept image/png");
    let resp = send(admin(&node, Method::GET, "/dev/dog/").header("accept", "text/html")).await?;
    assert_api_error(&resp, 406, "query with Accept text/html");

    Ok(())
}

#[tokio::test]
async fn describe_collection_and_delete_by_query() -> anyhow::Result<()> {
    let node = start("rest-collection").await?;
    create_table(&node, "dog").await?;
    let records: Vec<Value> = (1..=10)
        .map(|i| json!({"id": i, "kind": if i % 2 == 0 { "even" } else { "odd" }, "n": i}))
        .collect();
    insert(&node, "dog", Value::Array(records)).await?;

    // GET /T describes the table.
    let describe = get_json(&node, "/dev/dog").await?;
    assert_eq!(describe["name"], json!("dog"));
    assert_eq!(describe["database"], json!("dev"));
    assert_eq!(describe["primary_key"], json!("id"));
    assert_eq!(describe["record_count"], json!(10));
    let attributes: Vec<&str> = describe["attributes"]
        .as_array()
        .expect("attributes")
        .iter()
        .filter_map(|a| a["attribute"].as_str())
        .collect();
    for a in ["id", "kind", "n", "__createdtime__", "__updatedtime__"] {
        assert!(attributes.contains(&a), "describe lists {a}: {describe}");
    }
    let head = send(admin(&node, Method::HEAD, "/dev/dog")).await?;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // GET /T/ lists every record in key order.
    let all = query(&node, "dog", "").await?;
    assert_eq!(ids_of(&all), (1..=10).collect::<Vec<_>>());
    let all = get_json(&node, "/dev/dog/").await?;
    assert_eq!(all.as_array().map(Vec::len), Some(10));

    // DELETE /T/?query: 200 with the count, and only the matches are gone.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=even&n=gt=4")).await?;
    assert_eq!(resp.status, 200, "DELETE by query: {:?}", resp.text());
    let body = resp.json();
    assert_eq!(
        body["message"],
        json!("3 records successfully deleted"),
        "{body}"
    );
    let mut deleted: Vec<u64> = body["deleted_hashes"]
        .as_array()
        .expect("deleted_hashes")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, vec![6, 8, 10]);
    assert_eq!(
        ids_of(&query(&node, "dog", "").await?),
        vec![1, 2, 3, 4, 5, 7, 9]
    );
    // Nothing matches: 200 with a zero count.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=none")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json()["message"],
        json!("0 records successfully deleted")
    );
    // A malformed query deletes nothing.
    let resp = send(admin(&node, Method::DELETE, "/dev/dog/?kind=(odd")).await?;
    assert_api_error(&resp, 400, "DELETE with a malformed query");
    assert_eq!(query(&node, "dog", "").await?.len(), 7);
    assert_eq!(get_json(&node, "/dev/dog").await?["record_count"], json!(7));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Query language
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Content types
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Validators, locations, components, authentication
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn etag_and_conditional_get() -> anyhow::Result<()> {
    let node = start("rest-etag").await?;
    create_table(&node, "dog").await?;
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex"}))).await?;
    assert_eq!(put.status, 204);

    let first = send(admin(&node, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").expect("ETag").to_owned();
    let modified = first
        .header("last-modified")
        .expect("Last-Modified")
        .to_owned();
    assert!(
        modified.ends_with(" GMT"),
        "Last-Modified is an HTTP date: {modified}"
    );
    // The ETag is the quoted hex HLC of the version: its milliseconds are those of the
    // record's update time.
    let hex = etag
        .strip_prefix('"')
        .and_then(|e| e.strip_suffix('"'))
        .unwrap_or_else(|| panic!("ETag is quoted: {etag}"));
    let hlc = u64::from_str_radix(hex, 16).expect("ETag is hex");
    let record = first.json();
    let updated = record["__updatedtime__"].as_f64().expect("__updatedtime__");
    assert_eq!(
        (hlc >> 16) as f64,
        updated.floor(),
        "ETag {etag} is the HLC of the version updated at {updated}"
    );
    assert_eq!(
        modified,
        http_date((hlc >> 16) / 1000),
        "Last-Modified is the version's time"
    );

    // If-None-Match with the current tag (plain, weak, in a list, or *): 304, no body.
    for value in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"nope\", {etag}"),
        "*".to_owned(),
    ] {
        let resp =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &value)).await?;
        assert_eq!(resp.status, 304, "If-None-Match: {value}");
        assert!(resp.body.is_empty(), "304 has no body");
        assert_eq!(
            resp.header("etag"),
            Some(etag.as_str()),
            "304 repeats the ETag"
        );
    }
    // Another tag: 200 with the record.
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", "\"other\"")).await?;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), record);
    // Also in other formats.
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1.cbor").header("if-none-match", &etag)).await?;
    assert_eq!(resp.status, 304, "CBOR with If-None-Match");

    // Every kind of write changes the tag.
    let mut seen = vec![etag.clone()];
    let writes = [
        admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 2})),
        admin(&node, Method::PATCH, "/dev/dog/1").json(&json!({"age": 3})),
        admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex", "age": 3})),
    ];
    for write in writes {
        let resp = send(write).await?;
        assert_eq!(resp.status, 204, "{:?}", resp.text());
        let resp =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &etag)).await?;
        assert_eq!(
            resp.status, 200,
            "the old tag no longer matches after a write"
        );
        let new = resp.header("etag").expect("ETag").to_owned();
        assert!(
            !seen.contains(&new),
            "ETag {new} changes with every write: {seen:?}"
        );
        let again =
            send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", &new)).await?;
        assert_eq!(again.status, 304, "the new tag matches");
        seen.push(new);
    }
    // A write through the Operations API changes it too.
    node.op_ok(json!({
        "operation": "update", "database": "dev", "table": "dog", "records": [{"id": 1, "age": 4}]
    }))
    .await?;
    let resp =
        send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", seen.last().unwrap()))
            .await?;
    assert_eq!(resp.status, 200, "an ops API update changes the ETag");
    assert_eq!(resp.json()["age"], json!(4));
    // A deleted record: 404 even with If-None-Match: *.
    assert_eq!(
        send(admin(&node, Method::DELETE, "/dev/dog/1"))
            .await?
            .status,
        204
    );
    let resp = send(admin(&node, Method::GET, "/dev/dog/1").header("if-none-match", "*")).await?;
    assert_eq!(resp.status, 404);
    Ok(())
}

#[tokio::test]
async fn post_location_resolves() -> anyhow::Result<()> {
    let node = start("rest-post").await?;
    create_table(&node, "dog").await?;

    // A generated id.
    let post = send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "Gen"}))).await?;
    assert_eq!(post.status, 201, "{:?}", post.text());
    assert_eq!(post.mime(), "application/json");
    let id = post.json();
    let location = post.header("location").expect("Location").to_owned();
    let got = get_json(&node, &location).await?;
    assert_eq!(strip_timestamps(&got), json!({"name": "Gen", "id": id}));
    // Two POSTs make two records.
    let second =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"name": "Gen"}))).await?;
    assert_eq!(second.status, 201);
    assert_ne!(second.header("location"), Some(location.as_str()));

    // An id given in the body: a number, and a string that needs escaping.
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": 500, "n": 1}))).await?;
    assert_eq!(post.status, 201);
    assert_eq!(post.json(), json!(500));
    assert_eq!(post.header("location"), Some("/dev/dog/500"));
    assert_eq!(get_json(&node, "/dev/dog/500").await?["n"], json!(1));
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": "x/y z?&#%", "n": 2})))
            .await?;
    assert_eq!(post.status, 201, "{:?}", post.text());
    assert_eq!(post.json(), json!("x/y z?&#%"));
    let location = post.header("location").expect("Location").to_owned();
    assert_eq!(location, "/dev/dog/x%2Fy%20z%3F%26%23%25");
    let got = get_json(&node, &location).await?;
    assert_eq!(got["id"], json!("x/y z?&#%"), "Location resolves");

    // An existing id: 409, and the record is untouched.
    let post =
        send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": 500, "n": 9}))).await?;
    assert_api_error(&post, 409, "POST an existing id");
    assert_eq!(get_json(&node, "/dev/dog/500").await?["n"], json!(1));
    // The table without a slash is the table itself: POST is not allowed there.
    let post = send(admin(&node, Method::POST, "/dev/dog").json(&json!({"n": 1}))).await?;
    assert_api_error(&post, 405, "POST /dev/dog");
    assert_eq!(query(&node, "dog", "").await?.len(), 4);
    Ok(())
}

/// A body whose id agrees with the URL's (the server accepts `"1"` for `/T/1`, and `2.0`
/// is the same key as `2`) addresses the record the URL names: PUT replaces it and PATCH
/// merges into it, or the request is refused; it never writes some other record.
#[tokio::test]
async fn body_id_agreeing_with_the_url_addresses_the_same_record() -> anyhow::Result<()> {
    let node = start("rest-body-id").await?;
    create_table(&node, "dog").await?;
    for id in [1, 2, 3] {
        let put =
            send(admin(&node, Method::PUT, &format!("/dev/dog/{id}")).json(&json!({"name": "a"})))
                .await?;
        assert_eq!(put.status, 204);
    }
    let mut failures = Vec::new();

    // PUT /dev/dog/1 with the id as a string.
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"id": "1", "name": "b"})))
        .await?;
    let got = get_json(&node, "/dev/dog/1").await?;
    if put.status == 204 && got["name"] != json!("b") {
        failures.push(format!(
            "PUT /dev/dog/1 {{\"id\": \"1\"}} answered 204 but GET /dev/dog/1 still gives {got}"
        ));
    } else if put.status != 204 && put.status != 400 {
        failures.push(format!(
            "PUT /dev/dog/1 {{\"id\": \"1\"}}: status {}",
            put.status
        ));
    }
    // PATCH /dev/dog/2 (which exists) with the id as a string.
    let patch =
        send(admin(&node, Method::PATCH, "/dev/dog/2").json(&json!({"id": "2", "age": 3}))).await?;
    let got = get_json(&node, "/dev/dog/2").await?;
    if patch.status == 204 && got["age"] != json!(3) {
        failures.push(format!(
            "PATCH /dev/dog/2 {{\"id\": \"2\"}} answered 204 but GET /dev/dog/2 gives {got}"
        ));
    } else if patch.status != 204 && patch.status != 400 {
        failures.push(format!(
            "PATCH /dev/dog/2 {{\"id\": \"2\"}} of an existing record: status {} {}",
            patch.status,
            patch.text()
        ));
    }
    // PUT /dev/dog/3 with the id as the float 3.0 (the same key as 3).
    let put = send(admin(&node, Method::PUT, "/dev/dog/3").json(&json!({"id": 3.0, "name": "c"})))
        .await?;
    if put.status != 204 {
        failures.push(format!(
            "PUT /dev/dog/3 {{\"id\": 3.0}}: status {} {}",
            put.status,
            put.text()
        ));
    } else if get_json(&node, "/dev/dog/3").await?["name"] != json!("c") {
        failures.push("PUT /dev/dog/3 {\"id\": 3.0} did not replace record 3".to_owned());
    }
    // Whatever happened, no second record appeared.
    let all = query(&node, "dog", "").await?;
    if all.len() != 3 {
        failures.push(format!("the table should still hold 3 records: {all:?}"));
    }
    // A body id naming the URL's record ("1", 1.0 for /1) addresses that same record.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

/// The `Location` of a POST resolves even when the id ends like a format suffix.
#[tokio::test]
async fn post_location_resolves_for_ids_ending_in_a_format_suffix() -> anyhow::Result<()> {
    let node = start("rest-post-suffix").await?;
    create_table(&node, "dog").await?;
    let mut failures = Vec::new();
    for id in ["report.csv", "data.json", "blob.cbor", "pack.msgpack"] {
        let post =
            send(admin(&node, Method::POST, "/dev/dog/").json(&json!({"id": id, "n": 1}))).await?;
        assert_eq!(post.status, 201, "POST {id}: {:?}", post.text());
        let location = post.header("location").expect("Location").to_owned();
        let resp = send(admin(&node, Method::GET, &location)).await?;
        let record: Option<Value> =
            (resp.status == 200 && resp.mime() == "application/json").then(|| resp.json());
        if record.as_ref().map(|r| &r["id"]) != Some(&json!(id)) {
            failures.push(format!(
                "POST id {id:?}: Location {location} answers {} {}",
                resp.status,
                String::from_utf8_lossy(&resp.body)
            ));
        }
    }
    // The Location escapes the `.`, so the end of the id is not read as a format suffix.
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    Ok(())
}

#[tokio::test]
async fn oversized_body_is_413() -> anyhow::Result<()> {
    let node = start_with("rest-413", &["--max-body-bytes", "1000"]).await?;
    create_table(&node, "dog").await?;
    let big = json!({"blob": "x".repeat(2000)});
    for (method, path) in [
        (Method::PUT, "/dev/dog/1"),
        (Method::POST, "/dev/dog/"),
        (Method::PATCH, "/dev/dog/1"),
    ] {
        let resp = send(admin(&node, method.clone(), path).json(&big)).await?;
        assert_api_error(&resp, 413, &format!("{method} {path} with 2000 bytes"));
    }
    let small = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"blob": "x"}))).await?;
    assert_eq!(small.status, 204);
    assert_eq!(query(&node, "dog", "").await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn component_export_and_drop() -> anyhow::Result<()> {
    let node = start("rest-components").await?;
    let config = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";
    let schema = "type Cat @table(database: \"dev\", table: \"cat\") @export(name: \"Cat\") {\n  id: ID @primaryKey\n  name: String @indexed\n}\n";
    for (file, payload) in [("config.yaml", config), ("schema.graphql", schema)] {
        node.op_ok(json!({
            "operation": "set_component_file", "project": "cats", "file": file, "payload": payload
        }))
        .await?;
    }
    // The component is listed with its files.
    let tree = node.op_ok(json!({"operation": "get_components"})).await?;
    let project = tree["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|p| p["name"] == "cats"))
        .unwrap_or_else(|| panic!("get_components lists `cats`: {tree}"));
    let files: Vec<&str> = project["entries"]
        .as_array()
        .expect("project entries")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(files, ["config.yaml", "schema.graphql"]);

    // The declared table exists, with its indexed attribute.
    let describe = node
        .op_ok(json!({"operation": "describe_table", "database": "dev", "table": "cat"}))
        .await?;
    assert_eq!(describe["primary_key"], json!("id"));
    let name_attr = describe["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["attribute"] == "name"))
        .unwrap_or_else(|| panic!("cat has `name`: {describe}"));
    assert_eq!(name_attr["indexed"], json!(true));

    // Served at /Cat/.
    let describe = get_json(&node, "/Cat").await?;
    assert_eq!(describe["name"], json!("cat"));
    assert_eq!(get_json(&node, "/Cat/").await?, json!([]));
    let put = send(admin(&node, Method::PUT, "/Cat/1").json(&json!({"name": "Tom"}))).await?;
    assert_eq!(put.status, 204, "{:?}", put.text());
    assert_eq!(
        strip_timestamps(&get_json(&node, "/Cat/1").await?),
        json!({"name": "Tom", "id": 1})
    );
    let post = send(admin(&node, Method::POST, "/Cat/").json(&json!({"name": "Felix"}))).await?;
    assert_eq!(post.status, 201);
    let location = post.header("location").expect("Location").to_owned();
    assert!(
        location.starts_with("/Cat/"),
        "Location {location} is under the export"
    );
    assert_eq!(get_json(&node, &location).await?["name"], json!("Felix"));
    let found = get_json(&node, "/Cat/?name=Tom&select(id)").await?;
    assert_eq!(found, json!([{"id": 1}]));
    let resp = send(admin(&node, Method::GET, "/Cat/1.csv")).await?;
    assert_eq!(resp.mime(), "text/csv");
    // The same table at its database path.
    assert_eq!(get_json(&node, "/dev/cat/1").await?["name"], json!("Tom"));
    let patch = send(admin(&node, Method::PATCH, "/Cat/1").json(&json!({"age": 2}))).await?;
    assert_eq!(patch.status, 204);
    assert_eq!(get_json(&node, "/dev/cat/1").await?["age"], json!(2));

    // A component with REST off declares its table but exports nothing.
    let hidden = "type Hidden @table(database: \"dev\", table: \"hidden\") @export(name: \"Hidden\") {\n  id: ID @primaryKey\n}\n";
    for (file, payload) in [
        (
            "config.yaml",
            "rest: false\ngraphqlSchema:\n  files: schema.graphql\n",
        ),
        ("schema.graphql", hidden),
    ] {
        node.op_ok(json!({
            "operation": "set_component_file", "project": "hidden", "file": file, "payload": payload
        }))
        .await?;
    }
    let resp = send(admin(&node, Method::GET, "/Hidden/")).await?;
    assert_api_error(&resp, 404, "GET /Hidden/ with rest: false");
    assert_eq!(get_json(&node, "/dev/hidden/").await?, json!([]));

    // Dropping the component removes the export, not the table.
    node.op_ok(json!({"operation": "drop_component", "project": "cats"}))
        .await?;
    for path in ["/Cat/1", "/Cat/", "/Cat"] {
        let resp = send(admin(&node, Method::GET, path)).await?;
        assert_api_error(&resp, 404, &format!("GET {path} after drop_component"));
    }
    let resp = send(admin(&node, Method::PUT, "/Cat/2").json(&json!({"name": "x"}))).await?;
    assert_api_error(&resp, 404, "PUT /Cat/2 after drop_component");
    assert_eq!(get_json(&node, "/dev/cat/1").await?["name"], json!("Tom"));
    let tree = node.op_ok(json!({"operation": "get_components"})).await?;
    let names: Vec<&str> = tree["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["hidden"], "get_components after drop: {tree}");
    Ok(())
}

#[tokio::test]
async fn rest_requires_authentication() -> anyhow::Result<()> {
    let node = start("rest-auth").await?;
    create_table(&node, "dog").await?;
    let put = send(admin(&node, Method::PUT, "/dev/dog/1").json(&json!({"name": "Rex"}))).await?;
    assert_eq!(put.status, 204);

    let requests = || {
        vec![
            (Method::GET, "/dev/dog/1"),
            (Method::GET, "/dev/dog/"),
            (Method::GET, "/dev/dog/?name=Rex"),
            (Method::GET, "/dev/dog"),
            (Method::HEAD, "/dev/dog/1"),
            (Method::OPTIONS, "/dev/dog/1"),
            (Method::PUT, "/dev/dog/1"),
            (Method::PATCH, "/dev/dog/1"),
            (Method::POST, "/dev/dog/"),
            (Method::DELETE, "/dev/dog/1"),
            (Method::DELETE, "/dev/dog/?name=Rex"),
            (Method::GET, "/dev/missing/1"),
        ]
    };
    type Auth = fn(RequestBuilder) -> RequestBuilder;
    let credentials: [(&str, Auth); 5] = [
        ("no credentials", |rb| rb),
        ("wrong password", |rb| {
            rb.basic_auth(DEFAULT_ADMIN_USER, Some("wrong-password"))
        }),
        ("unknown user", |rb| {
            rb.basic_auth("nobody", Some(DEFAULT_ADMIN_PASSWORD))
        }),
        ("bearer token", |rb| rb.bearer_auth("token")),
        ("garbage", |rb| {
            rb.header("authorization", "Basic !!!not-base64")
        }),
    ];
    for (what, auth) in credentials {
        for (method, path) in requests() {
            let rb = auth(anon(&node, method.clone(), path).json(&json!({"name": "Evil"})));
            let resp = send(rb).await?;
            let context = format!("{method} {path} with {what}");
            assert_eq!(resp.status, 401, "{context}");
            if method != Method::HEAD {
                assert_api_error(&resp, 401, &context);
            }
        }
    }
    // Nothing was written or deleted by the rejected requests.
    assert_eq!(
        strip_timestamps(&get_json(&node, "/dev/dog/1").await?),
        json!({"name": "Rex", "id": 1})
    );
    assert_eq!(query(&node, "dog", "").await?.len(), 1);
    // Health needs no credentials.
    assert_eq!(node.http_get("/health").await?.0, 200);
    Ok(())
}
