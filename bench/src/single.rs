//! Workloads against one node: REST GET/PUT, Operations API inserts and searches.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::Settings;
use crate::client::{Conn, Control, Credentials, Endpoint};
use crate::load::{self, CheckBody, Load, MakeReq, Req};
use crate::nodes::Launcher;
use crate::report::{Report, Row, Skipped};

/// Database every benchmark table lives in.
pub(crate) const DB: &str = "bench";
/// Target size of one generated record, in bytes of JSON.
const RECORD_BYTES: usize = 200;
/// Records per request when loading data.
pub(crate) const LOAD_BATCH: u64 = 1000;
/// Concurrent requests when loading data.
pub(crate) const LOAD_WORKERS: usize = 4;
/// Records per request in ops_insert_100 and the replication load.
pub(crate) const INSERT_BATCH: u64 = 100;
/// Records a search_by_conditions `between` covers.
const RANGE: u64 = 50;

/// Table `ops_insert_100` fills (every attribute indexed).
const INSERTS: &str = "inserts";
/// Table `ops_insert_100_declared` fills (declared attributes, only `group` indexed).
const DECLARED: &str = "declared";

/// The table an insert workload fills.
fn insert_table(workload: &str) -> Option<&'static str> {
    match workload {
        "ops_insert_100" => Some(INSERTS),
        "ops_insert_100_declared" => Some(DECLARED),
        _ => None,
    }
}

/// Random lowercase text that record payloads are cut from.
fn filler() -> &'static str {
    static FILLER: OnceLock<String> = OnceLock::new();
    FILLER.get_or_init(|| {
        let mut rng = SmallRng::seed_from_u64(7);
        (0..8192)
            .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
            .collect()
    })
}

/// One record of about [`RECORD_BYTES`] bytes: `id` is JSON (a number or a quoted string).
pub(crate) fn record(rng: &mut SmallRng, id: &str, group: u64, num: u64) -> String {
    let head =
        format!(r#"{{"id":{id},"group":{group},"num":{num},"name":"item-{num}","payload":""#);
    let len = RECORD_BYTES.saturating_sub(head.len() + 2).max(16);
    let text = filler();
    let start = rng.random_range(0..text.len() - len);
    format!("{head}{}\"}}", &text[start..start + len])
}

/// Requests that insert [`INSERT_BATCH`] new records each into `table`, ids tagged `tag`.
pub(crate) fn insert_requests(tag: String, table: &'static str) -> MakeReq {
    Arc::new(move |rng: &mut SmallRng, counter: &AtomicU64| {
        let first = counter.fetch_add(INSERT_BATCH, Ordering::Relaxed);
        let records: Vec<String> = (first..first + INSERT_BATCH)
            .map(|i| {
                let num = rng.random_range(0..1_000_000u64);
                record(rng, &format!("\"{tag}-{i}\""), num % 1000, num)
            })
            .collect();
        Req {
            method: Method::POST,
            path: "/".into(),
            body: Bytes::from(insert_body(table, &records)),
            json: true,
            expect: 200,
            items: INSERT_BATCH,
        }
    })
}

/// An Operations API `insert` body.
pub(crate) fn insert_body(table: &str, records: &[String]) -> String {
    format!(
        r#"{{"operation":"insert","database":"{DB}","table":"{table}","records":[{}]}}"#,
        records.join(",")
    )
}

/// Distinct `group` values for `records` records: about 100 records share each.
pub(crate) fn groups(records: u64) -> u64 {
    (records / 100).max(1)
}

/// Loads records `0..count` (numeric ids) into `table` in batches of [`LOAD_BATCH`];
/// returns the time it took.
pub(crate) async fn load_records(
    endpoint: &Endpoint,
    table: &str,
    count: u64,
    seed: u64,
) -> anyhow::Result<Duration> {
    let batches = count.div_ceil(LOAD_BATCH);
    let next = Arc::new(AtomicU64::new(0));
    let groups = groups(count);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..LOAD_WORKERS {
        let mut conn = Conn::connect(endpoint).await?;
        let next = next.clone();
        let table = table.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed ^ worker as u64);
            loop {
                let batch = next.fetch_add(1, Ordering::Relaxed);
                if batch >= batches {
                    return anyhow::Ok(());
                }
                let ids = batch * LOAD_BATCH..((batch + 1) * LOAD_BATCH).min(count);
                let records: Vec<String> = ids
                    .map(|id| record(&mut rng, &id.to_string(), id % groups, id))
                    .collect();
                let body = insert_body(&table, &records);
                let (status, answer) = conn
                    .send(Method::POST, "/", Bytes::from(body), true)
                    .await?;
                if status != 200 {
                    bail!(
                        "loading {table}: insert answered {status}: {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// A cheap body check: the answer must be a JSON array (counting its elements on every
/// request would cost the client more than the server).
fn expect_array() -> CheckBody {
    Arc::new(|body: &Bytes| {
        if body.first() == Some(&b'[') {
            Ok(())
        } else {
            Err(format!(
                "not an array: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        }
    })
}

/// Runs the selected single-node workloads on a node the benchmark starts.
pub(crate) async fn run_started(
    settings: &Settings,
    launcher: &Launcher,
    workloads: &[&str],
    report: &mut Report,
) -> anyhow::Result<()> {
    eprintln!("== single node: starting");
    let node = launcher
        .start("single", "bench1", std::net::Ipv4Addr::LOCALHOST, &[])
        .await?;
    let result = run_workloads(
        settings,
        &node.control,
        node.ops_addr(),
        Some(node.http_addr()),
        true,
        workloads,
        report,
    )
    .await;
    node.finish(&launcher.rss).await?;
    result
}

/// Runs the selected single-node workloads against a running node.
pub(crate) async fn run_remote(
    settings: &Settings,
    url: &str,
    http_url: Option<&str>,
    workloads: &[&str],
    report: &mut Report,
) -> anyhow::Result<()> {
    let control = Control::new(url, settings.creds.clone())?;
    let ops = resolve(url).await?;
    let http = match http_url {
        Some(u) => Some(resolve(u).await?),
        None => None,
    };
    run_workloads(settings, &control, ops, http, false, workloads, report).await
}

/// `http://host:port/...` → the first address of `host:port`.
async fn resolve(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    tokio::net::lookup_host(authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} has no address"))
}

async fn run_workloads(
    settings: &Settings,
    control: &Control,
    ops: SocketAddr,
    http: Option<SocketAddr>,
    fresh: bool,
    workloads: &[&str],
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = settings.records;
    let groups = groups(n);
    let endpoint = |addr| Endpoint {
        addr,
        kind: settings.client,
        auth: settings.creds.header(),
    };
    let ops_ep = endpoint(ops);

    crate::create_table(control, DB, "items").await?;
    crate::create_table(control, DB, INSERTS).await?;
    // As an application schema would declare it: only `group` indexed.
    let declared = json!([
        {"name": "id", "is_primary_key": true},
        {"name": "group", "indexed": true},
        {"name": "num"}, {"name": "name"}, {"name": "payload"}
    ]);
    crate::create_table_with(control, DB, DECLARED, Some(declared)).await?;
    eprintln!(
        "== loading {n} records into {DB}.items ({LOAD_BATCH} per insert, {LOAD_WORKERS} at a time)"
    );
    let took = load_records(&ops_ep, "items", n, settings.seed).await?;
    let mut row = Row::new("load_items_1000", "records/s").with_note(format!(
        "{LOAD_BATCH} records/insert, {LOAD_WORKERS} connections, one run"
    ));
    row.push(Some(n as f64 / took.as_secs_f64()), None, None);
    report.rows.push(row);
    let count = control.record_count(DB, "items").await?.unwrap_or(0);
    if fresh && count != n {
        bail!("bench.items holds {count} records after loading {n}");
    }
    // The searches must hit what they are meant to.
    let sample_group = 7 % groups;
    let hits_value = control
        .op(
            json!({"operation": "search_by_value", "database": DB, "table": "items",
            "search_attribute": "group", "search_value": sample_group, "get_attributes": ["id"]}),
        )
        .await?
        .as_array()
        .map_or(0, Vec::len);
    let hits_range = control
        .op(json!({"operation": "search_by_conditions", "database": DB, "table": "items",
            "conditions": [{"attribute": "num", "comparator": "between", "value": [10, 10 + RANGE - 1]}],
            "get_attributes": ["id"]}))
        .await?
        .as_array()
        .map_or(0, Vec::len);
    eprintln!("   search_by_value hits {hits_value}, search_by_conditions hits {hits_range}");

    let role_user = if workloads.contains(&"rest_get_role") {
        Some(add_attribute_reader(control).await?)
    } else {
        None
    };

    for &workload in workloads {
        let needs_http = workload.starts_with("rest_");
        let Some(ep) = (if needs_http {
            http.map(endpoint).map(|mut ep| {
                if let (Some(creds), "rest_get_role") = (&role_user, workload) {
                    ep.auth = creds.header();
                }
                ep
            })
        } else {
            Some(ops_ep.clone())
        }) else {
            report.failed.push(Skipped {
                workload: workload.into(),
                reason: "needs --http-url with --url".into(),
            });
            continue;
        };
        let tag = settings.tag.clone();
        let (unit, make, check, note): (&str, MakeReq, Option<CheckBody>, String) = match workload {
            "rest_get" => (
                "req/s",
                get_items(n),
                Some(Arc::new(|b: &Bytes| {
                    if b.first() == Some(&b'{') {
                        Ok(())
                    } else {
                        Err("not a record".into())
                    }
                })),
                format!("random id of {n}"),
            ),
            "rest_get_role" => (
                "req/s",
                get_items(n),
                // The role may not read `payload`: an answer with it is a permission bug.
                Some(Arc::new(|b: &Bytes| {
                    let filtered = !b.windows(9).any(|w| w == b"\"payload\"");
                    if b.first() == Some(&b'{') && filtered {
                        Ok(())
                    } else {
                        Err("not a record without payload".into())
                    }
                })),
                format!(
                    "as rest_get, by a role with attribute permissions (no payload); random id of {n}"
                ),
            ),
            "rest_put" => (
                "req/s",
                Arc::new(move |rng: &mut SmallRng, _: &AtomicU64| {
                    let id = rng.random_range(0..n);
                    Req {
                        method: Method::PUT,
                        path: format!("/{DB}/items/{id}"),
                        body: Bytes::from(record(rng, &id.to_string(), id % groups, id)),
                        json: true,
                        expect: 204,
                        items: 1,
                    }
                }),
                None,
                format!("~{RECORD_BYTES} B upsert, random id of {n}"),
            ),
            "ops_insert_100" | "ops_insert_100_declared" => {
                let table = insert_table(workload).unwrap_or(INSERTS);
                (
                    "records/s",
                    insert_requests(tag.clone(), table),
                    None,
                    format!("{INSERT_BATCH} new records/request into {table}; latency per request"),
                )
            }
            "ops_search_by_id" => (
                "req/s",
                Arc::new(move |rng: &mut SmallRng, _: &AtomicU64| Req {
                    method: Method::POST,
                    path: "/".into(),
                    body: Bytes::from(format!(
                        r#"{{"operation":"search_by_id","database":"{DB}","table":"items","ids":[{}],"get_attributes":["*"]}}"#,
                        rng.random_range(0..n)
                    )),
                    json: true,
                    expect: 200,
                    items: 1,
                }),
                Some(expect_array()),
                "1 id/request".into(),
            ),
            "ops_search_by_value" => (
                "req/s",
                Arc::new(move |rng: &mut SmallRng, _: &AtomicU64| Req {
                    method: Method::POST,
                    path: "/".into(),
                    body: Bytes::from(format!(
                        r#"{{"operation":"search_by_value","database":"{DB}","table":"items","search_attribute":"group","search_value":{},"get_attributes":["*"]}}"#,
                        rng.random_range(0..groups)
                    )),
                    json: true,
                    expect: 200,
                    items: 1,
                }),
                Some(expect_array()),
                format!("indexed group = v, {hits_value} hits"),
            ),
            "ops_search_by_conditions" => (
                "req/s",
                Arc::new(move |rng: &mut SmallRng, _: &AtomicU64| {
                    let lo = rng.random_range(0..=n - RANGE);
                    Req {
                        method: Method::POST,
                        path: "/".into(),
                        body: Bytes::from(format!(
                            r#"{{"operation":"search_by_conditions","database":"{DB}","table":"items","conditions":[{{"attribute":"num","comparator":"between","value":[{lo},{}]}}],"get_attributes":["*"]}}"#,
                            lo + RANGE - 1
                        )),
                        json: true,
                        expect: 200,
                        items: 1,
                    }
                }),
                Some(expect_array()),
                format!("indexed num between, {hits_range} hits"),
            ),
            other => bail!("not a single-node workload: {other}"),
        };
        let load = Load {
            endpoint: ep,
            connections: settings.connections,
            make,
            check,
            seed: settings
                .seed
                .wrapping_mul(1000)
                .wrapping_add(report.rows.len() as u64),
            counter: Arc::new(AtomicU64::new(0)),
        };
        let (row, acked) = measure(settings, workload, unit, &load).await?;
        let mut row = row.with_note(note);
        if let Some(table) = insert_table(workload).filter(|_| fresh) {
            // Every acknowledged insert must be stored, and nothing more than was sent.
            let stored = control.record_count(DB, table).await?.unwrap_or(0);
            let sent = load.counter.load(Ordering::Relaxed);
            row.detail["acked_records"] = json!(acked);
            row.detail["stored_records"] = json!(stored);
            if stored < acked || stored > sent {
                bail!(
                    "bench.{table} holds {stored} records: {acked} were acknowledged, {sent} sent"
                );
            }
        }
        report.rows.push(row);
    }
    Ok(())
}

/// REST reads of random records of `bench.items`.
fn get_items(n: u64) -> MakeReq {
    Arc::new(move |rng: &mut SmallRng, _: &AtomicU64| Req {
        method: Method::GET,
        path: format!("/{DB}/items/{}", rng.random_range(0..n)),
        body: Bytes::new(),
        json: false,
        expect: 200,
        items: 1,
    })
}

/// Adds a role that may read `bench.items` but not its `payload` attribute, and a user
/// with that role: the permission check's per-attribute path, for `rest_get_role`.
async fn add_attribute_reader(control: &Control) -> anyhow::Result<Credentials> {
    let read = |name: &str, read: bool| json!({"attribute_name": name, "read": read, "insert": false, "update": false});
    let attributes = json!([
        read("id", true),
        read("group", true),
        read("num", true),
        read("name", true),
        read("payload", false)
    ]);
    let role = "bench_attribute_reader";
    control
        .op(
            json!({"operation": "add_role", "role": role, "permission": {
                "super_user": false,
                (DB): {"tables": {"items": {"read": true, "insert": false, "update": false,
                    "delete": false, "attribute_permissions": attributes}}}
            }}),
        )
        .await?;
    let creds = Credentials {
        user: "bench_reader".into(),
        password: "bench-reader-password".into(),
    };
    control
        .op(
            json!({"operation": "add_user", "username": creds.user, "password": creds.password,
            "role": role, "active": true}),
        )
        .await?;
    Ok(creds)
}

/// Warm-up, then `runs` measured runs of one closed-loop load; also returns the items
/// acknowledged in all (warm-up and requests that finished after a window included).
pub(crate) async fn measure(
    settings: &Settings,
    workload: &str,
    unit: &str,
    load: &Load,
) -> anyhow::Result<(Row, u64)> {
    eprintln!("== {workload}: warm-up {:?}", settings.warmup);
    let mut acked = 0;
    if !settings.warmup.is_zero() {
        let warm = load::run(load, settings.warmup).await?;
        acked += warm.acked_items_total;
        if let Some(e) = &warm.first_error {
            eprintln!("   warm-up error (first of {}): {e}", warm.errors);
        }
    }
    let mut row = Row::new(workload, unit);
    let mut request_rates = Vec::new();
    for run in 0..settings.runs {
        let mut stats = load::run(load, settings.duration).await?;
        let value = if unit == "records/s" {
            stats.item_rate()
        } else {
            stats.request_rate()
        };
        let (p50, p99) = (stats.latency_ms(0.5), stats.latency_ms(0.99));
        eprintln!(
            "   run {}/{}: {value:.0} {unit}, p50 {:.2} ms, p99 {:.2} ms, errors {}",
            run + 1,
            settings.runs,
            p50.unwrap_or(f64::NAN),
            p99.unwrap_or(f64::NAN),
            stats.errors
        );
        if let Some(e) = &stats.first_error {
            eprintln!("   first error: {e}");
        }
        row.errors += stats.errors;
        acked += stats.acked_items_total;
        request_rates.push(stats.request_rate());
        row.push(Some(value), p50, p99);
        if stats.requests == 0 {
            bail!(
                "{workload}: no request succeeded ({})",
                stats
                    .first_error
                    .unwrap_or_else(|| "no error recorded".into())
            );
        }
    }
    row.detail = json!({ "runs_requests_per_s": request_rates });
    Ok((row, acked))
}
