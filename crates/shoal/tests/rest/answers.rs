//! Whole HTTP answers and the requests the tests make most: JSON gets and table queries.

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder};
use serde_json::{Map, Value};
use shoal_testkit::{Node, admin};

/// A whole HTTP answer.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}), status {}: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("body is UTF-8")
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The media type of `Content-Type`, without parameters.
    pub(crate) fn mime(&self) -> &str {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .unwrap_or_default()
            .trim()
    }
}

pub(crate) async fn send(rb: RequestBuilder) -> anyhow::Result<Resp> {
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
pub(crate) fn assert_api_error(resp: &Resp, status: u16, what: &str) -> String {
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
pub(crate) async fn get_json(node: &Node, path: &str) -> anyhow::Result<Value> {
    let resp = send(admin(node, Method::GET, path)).await?;
    assert_eq!(resp.status, 200, "GET {path}: {:?}", resp.text());
    Ok(resp.json())
}

/// Runs a query on `dev.<table>`; asserts 200 and returns the result array.
pub(crate) async fn query(node: &Node, table: &str, q: &str) -> anyhow::Result<Vec<Value>> {
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
pub(crate) fn ids_of(rows: &[Value]) -> Vec<u64> {
    rows.iter()
        .map(|r| {
            r["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("record without a numeric id: {r}"))
        })
        .collect()
}

/// The keys of an object, in order.
pub(crate) fn keys(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}
