//! Random requests against a live node: operations with random fields and values, REST
//! calls with random methods, paths, query strings, content types and bodies (JSON, CBOR,
//! MessagePack, garbage, deep nesting). Every request must get an answer with a status
//! below 500 — or 507 (storage full), the one server-side status a client can cause — and
//! the node must stay up and keep serving its data.
//!
//! `SHOAL_TEST_SEED` replays a run, as for the other randomised tests (the seed is printed
//! on failure); `SHOAL_FUZZ_REQUESTS` sets how many requests are sent (default 1200).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::{Map, Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, seed, start_with};

const OPERATIONS: &[&str] = &[
    "create_database",
    "create_schema",
    "drop_database",
    "drop_schema",
    "create_table",
    "drop_table",
    "create_attribute",
    "drop_attribute",
    "describe_all",
    "describe_database",
    "describe_schema",
    "describe_table",
    "insert",
    "update",
    "upsert",
    "delete",
    "search_by_id",
    "search_by_hash",
    "search_by_value",
    "search_by_conditions",
    "read_transaction_log",
    "read_audit_log",
    "system_information",
    "add_node",
    "update_node",
    "remove_node",
    "cluster_status",
    "configure_cluster",
    "add_component",
    "set_component_file",
    "get_component_file",
    "get_components",
    "drop_component",
    "no_such_operation",
];

const FIELDS: &[&str] = &[
    "database",
    "schema",
    "table",
    "primary_key",
    "hash_attribute",
    "records",
    "ids",
    "hash_values",
    "search_attribute",
    "attribute",
    "search_value",
    "value",
    "search_type",
    "comparator",
    "conditions",
    "operator",
    "sort",
    "offset",
    "limit",
    "get_attributes",
    "attributes",
    "desc",
    "project",
    "file",
    "payload",
    "node_name",
    "subscriptions",
    "from",
    "to",
    "replicate",
    "indexed",
];

const NAMES: &[&str] = &[
    "dev",
    "dog",
    "data",
    "system",
    "hdb_user",
    "hdb_nodes",
    "hdb_certificate",
    "id",
    "name",
    "age",
    "",
    ".",
    "..",
    "a/b",
    "x\u{0}y",
    "config.yaml",
    "config.yaml/x",
    "schema.graphql",
    "../escape",
    "😀",
    "__createdtime__",
    "*",
];

const QUERY_TOKENS: &[&str] = &[
    "name",
    "age",
    "id",
    "=",
    "==",
    "!=",
    "=gt=",
    "=lt=",
    "=ge=",
    "=le=",
    "=ne=",
    "=ct=",
    "=sw=",
    "=ew=",
    "&",
    "|",
    "(",
    ")",
    "[",
    "]",
    "select(",
    "limit(",
    "sort(",
    ",",
    "-",
    "+",
    "number:",
    "date:",
    "string:",
    "boolean:",
    "%",
    "%2",
    "%ZZ",
    "%3C",
    "%3E",
    "5",
    "Penny",
    "null",
    "true",
    "*",
    "1e309",
    "-0",
    "\u{e9}",
    "startTime=",
];

struct Fuzzer {
    rng: StdRng,
}

impl Fuzzer {
    fn name(&mut self) -> String {
        if self.rng.random_ratio(1, 20) {
            return "n".repeat(self.rng.random_range(200..400));
        }
        (*NAMES.choose(&mut self.rng).expect("names")).to_owned()
    }

    fn string(&mut self) -> String {
        let len = match self.rng.random_range(0..10) {
            0 => self.rng.random_range(1000..20_000),
            _ => self.rng.random_range(0..12),
        };
        (0..len)
            .map(|_| match self.rng.random_range(0..8) {
                0 => char::from_u32(self.rng.random_range(0..0x11_0000)).unwrap_or('?'),
                1 => *['*', '(', ')', '/', '\\', '"', '%', '\u{0}']
                    .choose(&mut self.rng)
                    .expect("chars"),
                _ => self.rng.random_range(b'a'..=b'z') as char,
            })
            .collect()
    }

    fn number(&mut self) -> Value {
        match self.rng.random_range(0..6) {
            0 => json!(self.rng.random::<i64>()),
            1 => json!(self.rng.random::<u64>()),
            2 => json!(self.rng.random::<f64>() * 1e300),
            3 => json!(-1),
            _ => json!(self.rng.random_range(0..50)),
        }
    }

    /// A random JSON value; deep chains now and then, up to a few hundred levels.
    fn value(&mut self, depth: usize) -> Value {
        if depth == 0 && self.rng.random_ratio(1, 30) {
            let levels = self.rng.random_range(20..300);
            return self.deep(levels);
        }
        let leaf = depth > 3 || self.rng.random_ratio(2, 3);
        match self.rng.random_range(0..if leaf { 5 } else { 7 }) {
            0 => Value::Null,
            1 => json!(self.rng.random::<bool>()),
            2 => self.number(),
            3 => json!(self.string()),
            4 => json!(self.name()),
            5 => Value::Array(
                (0..self.rng.random_range(0..5))
                    .map(|_| self.value(depth + 1))
                    .collect(),
            ),
            _ => Value::Object(
                (0..self.rng.random_range(0..5))
                    .map(|_| (self.name(), self.value(depth + 1)))
                    .collect(),
            ),
        }
    }

    fn deep(&mut self, levels: usize) -> Value {
        let mut v = json!(1);
        for _ in 0..levels {
            v = if self.rng.random() {
                json!([v])
            } else {
                json!({"a": v})
            };
        }
        v
    }

    fn record(&mut self) -> Value {
        let mut record = Map::new();
        if self.rng.random_ratio(4, 5) {
            let id = if self.rng.random() {
                json!(self.rng.random_range(0..40))
            } else {
                self.value(2)
            };
            record.insert("id".into(), id);
        }
        for _ in 0..self.rng.random_range(0..4) {
            let (k, v) = (self.name(), self.value(1));
            record.insert(k, v);
        }
        Value::Object(record)
    }

    fn condition(&mut self, depth: usize) -> Value {
        if depth < 60 && self.rng.random_ratio(1, 4) {
            let n = self.rng.random_range(0..3);
            let conditions: Vec<Value> = (0..n).map(|_| self.condition(depth + 1)).collect();
            return json!({"operator": self.name(), "conditions": conditions});
        }
        let comparators = [
            "equals",
            "contains",
            "between",
            "starts_with",
            "ends_with",
            "greater_than",
            "less_than_equal",
            "not_equal",
            "like",
        ];
        let comparator = *comparators.choose(&mut self.rng).expect("comparators");
        json!({"search_attribute": self.name(), "search_type": comparator, "search_value": self.value(1)})
    }

    /// A field's value: usually of the shape the field expects, sometimes anything.
    fn field(&mut self, field: &str) -> Value {
        if self.rng.random_ratio(1, 6) {
            return self.value(0);
        }
        match field {
            "records" => Value::Array(
                (0..self.rng.random_range(0..6))
                    .map(|_| self.record())
                    .collect(),
            ),
            "ids" | "hash_values" | "get_attributes" => Value::Array(
                (0..self.rng.random_range(0..5))
                    .map(|_| match self.rng.random_range(0..3) {
                        0 => json!(self.rng.random_range(0..40)),
                        1 => json!(self.name()),
                        _ => self.value(1),
                    })
                    .collect(),
            ),
            "conditions" => Value::Array(
                (0..self.rng.random_range(0..4))
                    .map(|_| self.condition(0))
                    .collect(),
            ),
            "sort" => json!({"attribute": self.name(), "descending": self.rng.random::<bool>()}),
            "offset" | "limit" | "from" | "to" => self.number(),
            "search_value" | "value" => self.value(1),
            "payload" => json!(self.string()),
            "attributes" => json!([{"name": self.name(), "indexed": self.rng.random::<bool>()}]),
            "subscriptions" => {
                json!([{"database": self.name(), "subscribe": true, "publish": true}])
            }
            _ => json!(self.name()),
        }
    }

    fn operation(&mut self) -> Value {
        let op = *OPERATIONS.choose(&mut self.rng).expect("operations");
        let mut body = Map::new();
        body.insert("operation".into(), json!(op));
        for _ in 0..self.rng.random_range(0..7) {
            let field = *FIELDS.choose(&mut self.rng).expect("fields");
            let value = self.field(field);
            body.insert(field.into(), value);
        }
        if matches!(op, "add_node" | "set_node" | "configure_cluster") {
            // Never let a node dial anything but a closed loopback port.
            body.insert("hostname".into(), json!("127.0.0.1"));
            body.insert("url".into(), json!("127.0.0.1:1"));
            body.remove("connections");
        }
        Value::Object(body)
    }

    /// An operations body: mostly JSON of an operation, sometimes broken bytes.
    fn ops_body(&mut self) -> Vec<u8> {
        let text = serde_json::to_vec(&self.operation()).expect("serialises");
        match self.rng.random_range(0..12) {
            0 => text[..self.rng.random_range(0..text.len().max(1))].to_vec(),
            1 => (0..self.rng.random_range(0..64))
                .map(|_| self.rng.random())
                .collect(),
            2 => serde_json::to_vec(&self.value(0)).expect("serialises"),
            _ => text,
        }
    }

    fn query(&mut self) -> String {
        if self.rng.random_ratio(1, 25) {
            let depth = self.rng.random_range(50..3000);
            return format!("{}name=a{}", "(".repeat(depth), ")".repeat(depth));
        }
        (0..self.rng.random_range(0..12))
            .map(|_| match self.rng.random_range(0..6) {
                0 => self.string().chars().take(6).collect(),
                _ => (*QUERY_TOKENS.choose(&mut self.rng).expect("tokens")).to_owned(),
            })
            .collect::<String>()
    }

    fn rest_path(&mut self) -> String {
        let segment = |f: &mut Fuzzer| -> String {
            let s = f.name();
            percent_encode(&s)
        };
        let base = match self.rng.random_range(0..8) {
            0 => "/system/hdb_user/".to_owned(),
            1 => format!("/{}/", segment(self)),
            2 => format!("/{}/{}", segment(self), segment(self)),
            3 => format!(
                "/dev/dog.{}",
                ["csv", "json", "cbor", "msgpack", "xml"]
                    .choose(&mut self.rng)
                    .expect("suffixes")
            ),
            4 => format!("/dev/dog/{}", self.rng.random_range(0..40)),
            5 => format!("/dev/dog/{}", segment(self)),
            _ => "/dev/dog/".to_owned(),
        };
        if self.rng.random() {
            format!("{base}?{}", self.query())
        } else {
            base
        }
    }

    fn rest_body(&mut self) -> (&'static str, Vec<u8>) {
        let value = if self.rng.random() {
            self.record()
        } else {
            self.value(0)
        };
        match self.rng.random_range(0..6) {
            0 => {
                let mut out = Vec::new();
                ciborium::into_writer(&value, &mut out).expect("encodes");
                ("application/cbor", out)
            }
            1 => (
                "application/x-msgpack",
                rmp_serde::to_vec_named(&value).expect("encodes"),
            ),
            2 => (
                *[
                    "application/cbor",
                    "application/x-msgpack",
                    "application/json",
                    "text/csv",
                    "image/png",
                ]
                .choose(&mut self.rng)
                .expect("types"),
                (0..self.rng.random_range(0..64))
                    .map(|_| self.rng.random())
                    .collect(),
            ),
            _ => (
                "application/json",
                serde_json::to_vec(&value).expect("encodes"),
            ),
        }
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Whether a status is one a client may cause: below 500, or 507 (storage full).
fn acceptable(status: u16) -> bool {
    status < 500 || status == 507
}

#[tokio::test]
async fn random_requests_never_get_a_server_error_or_take_the_node_down() -> anyhow::Result<()> {
    let seed = seed("hardening_fuzz");
    let count: usize = std::env::var("SHOAL_FUZZ_REQUESTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1200);
    eprintln!("hardening_fuzz: SHOAL_FUZZ_REQUESTS={count}");
    let result = run(seed, count).await;
    if result.is_err() {
        eprintln!(
            "fuzz run failed; replay with SHOAL_TEST_SEED={seed} SHOAL_FUZZ_REQUESTS={count}"
        );
    }
    result
}

async fn run(seed: u64, count: usize) -> anyhow::Result<()> {
    // Small bodies keep the run fast; the limit itself is exercised too.
    let mut node = start_with("fuzz", &["--max-body-bytes", "262144"]).await?;
    let mut fuzz = Fuzzer {
        rng: StdRng::seed_from_u64(seed),
    };
    let client = node.client().clone();
    let mut failures = Vec::new();
    let mut last = String::new();
    for i in 0..count {
        if i % 100 == 0 {
            // Keep something to query, whatever the run dropped.
            node.ops(json!({"operation": "create_table", "database": "dev", "table": "dog", "primary_key": "id"}))
                .await?;
            node.ops(json!({"operation": "upsert", "database": "dev", "table": "dog",
                "records": [{"id": 1, "name": "Penny", "age": 5}, {"id": 2, "name": "Kato", "age": 9}]}))
                .await?;
        }
        let (what, request) = if fuzz.rng.random_ratio(1, 2) {
            let body = fuzz.ops_body();
            let what = format!(
                "ops {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
            let request = client
                .post(node.ops_url())
                .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                .header("content-type", "application/json")
                .body(body);
            (what, request)
        } else {
            let method = [
                Method::GET,
                Method::GET,
                Method::PUT,
                Method::POST,
                Method::PATCH,
                Method::DELETE,
                Method::HEAD,
                Method::OPTIONS,
            ]
            .choose(&mut fuzz.rng)
            .expect("methods")
            .clone();
            let path = fuzz.rest_path();
            let (content_type, body) = fuzz.rest_body();
            let accept = *[
                "application/json",
                "application/cbor",
                "application/x-msgpack",
                "text/csv",
                "*/*",
                "text/html",
            ]
            .choose(&mut fuzz.rng)
            .expect("accepts");
            let what = format!("{method} {}", path.chars().take(300).collect::<String>());
            let request = client
                .request(method, node.http_url(&path))
                .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                .header("content-type", content_type)
                .header("accept", accept)
                .body(body);
            (what, request)
        };
        let this = what.chars().take(200).collect::<String>();
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the whole answer: a stream that breaks is a failure too.
                let body = response.bytes().await;
                if !acceptable(status) || body.is_err() {
                    failures.push(format!("#{i} {what} -> {status} {body:?}"));
                }
            }
            // The request before may be the one that broke the connection.
            Err(e) => failures.push(format!("#{i} {what} -> no answer: {e:?} (after {last})")),
        }
        last = this;
        anyhow::ensure!(
            node.is_running(),
            "seed {seed}: the node died at request #{i}: {what}\n{}",
            node.stderr_tail(30)
        );
    }
    let (status, health) = node.http_get("/health").await?;
    anyhow::ensure!(
        status == 200,
        "seed {seed}: /health answered {status} {health}"
    );
    node.op_ok(json!({"operation": "create_table", "database": "dev", "table": "after", "primary_key": "id"}))
        .await?;
    node.op_ok(
        json!({"operation": "insert", "database": "dev", "table": "after", "records": [{"id": 1}]}),
    )
    .await?;
    let found = node
        .op_ok(
            json!({"operation": "search_by_id", "database": "dev", "table": "after", "ids": [1]}),
        )
        .await?;
    anyhow::ensure!(
        found.as_array().map(Vec::len) == Some(1),
        "seed {seed}: {found}"
    );
    anyhow::ensure!(
        failures.is_empty(),
        "seed {seed}: {} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
