//! Cluster workloads: replication lag (idle, under load, backlog drain), full copy to a
//! new node, and catch-up after an outage.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use crate::Settings;
use crate::client::{Conn, Endpoint};
use crate::load::{self, Load};
use crate::nodes::{BenchNode, Launcher, join_all, link, wait_link, wait_table};
use crate::report::{Report, Row, lag_percentile};
use crate::single::{DB, INSERT_BATCH, insert_requests, load_records};

/// How long to wait for replication to deliver what was written before giving up.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(600);
/// Receivers never cut the benchmark's subscriber off for lagging.
const SUBSCRIBER_MAX_LAG: &str = "1000000000";

/// What a phase of marked writes is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Probe,
    Warmup,
    Idle(usize),
    Load(usize),
    Final(usize),
}

/// One marked write: when it was sent and acknowledged on A, and seen on each receiver.
#[derive(Debug, Clone)]
struct Mark {
    phase: Phase,
    ack: Option<Instant>,
    seen: Vec<Option<Instant>>,
}

/// Every marked write, shared between the writer and the SSE readers.
#[derive(Debug)]
struct Book {
    marks: Mutex<HashMap<u64, Mark>>,
    receivers: usize,
    reconnects: AtomicU64,
}

impl Book {
    fn seen_all(&self, seq: u64) -> Option<Instant> {
        let marks = self.marks.lock().expect("marks lock");
        let mark = marks.get(&seq)?;
        mark.seen
            .iter()
            .copied()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    async fn wait_seen(&self, seq: u64, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.seen_all(seq) {
                return Ok(at);
            }
            if Instant::now() > deadline {
                bail!("marked write {seq} was not seen on every receiver within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Lags (ms) of a phase's marks: last receiver's sighting minus the ack on A (0 when a
    /// receiver saw it before the ack reached the client); also how many were not seen.
    fn lags(&self, phase: Phase) -> (Vec<f64>, usize) {
        let marks = self.marks.lock().expect("marks lock");
        let mut lags = Vec::new();
        let mut missing = 0;
        for mark in marks.values().filter(|m| m.phase == phase) {
            let seen: Option<Vec<Instant>> = mark.seen.iter().copied().collect();
            match (mark.ack, seen.and_then(|s| s.into_iter().max())) {
                (Some(ack), Some(seen)) => {
                    lags.push(seen.saturating_duration_since(ack).as_secs_f64() * 1000.0);
                }
                _ => missing += 1,
            }
        }
        (lags, missing)
    }
}

/// One parsed Server-Sent Events frame.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Frame {
    /// `event:` field.
    pub(crate) event: String,
    /// `id:` field.
    pub(crate) id: Option<String>,
    /// `data:` lines, joined by newlines.
    pub(crate) data: String,
}

/// Parses one frame (the text between blank lines); `None` for comments and keep-alives.
pub(crate) fn parse_frame(text: &str) -> Option<Frame> {
    let mut frame = Frame::default();
    let mut any = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with(':') || line.is_empty() {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => frame.event = value.to_owned(),
            "id" => frame.id = Some(value.to_owned()),
            "data" => {
                if !frame.data.is_empty() {
                    frame.data.push('\n');
                }
                frame.data.push_str(value);
            }
            _ => {}
        }
    }
    any.then_some(frame)
}

/// Follows `/bench/marks/` on one receiver over SSE and stamps each mark's arrival.
async fn follow(url: String, settings: Settings, index: usize, book: Arc<Book>) {
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return;
    };
    let mut last_id: Option<String> = None;
    loop {
        let mut request = client
            .get(&url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .basic_auth(&settings.creds.user, Some(&settings.creds.password));
        if let Some(id) = &last_id {
            request = request.header("Last-Event-ID", id.as_str());
        }
        let mut response = match request.send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                eprintln!("   SSE {url}: status {}", r.status());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => {
                eprintln!("   SSE {url}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut buffer: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let now = Instant::now();
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8_lossy(&buffer[..end]).into_owned();
                buffer.drain(..end + 2);
                let Some(frame) = parse_frame(&text) else {
                    continue;
                };
                if frame.event == "error" {
                    eprintln!(
                        "   SSE {url}: server ended the subscription: {}",
                        frame.data
                    );
                    continue;
                }
                if frame.id.is_some() {
                    last_id.clone_from(&frame.id);
                }
                let seq = serde_json::from_str::<Value>(&frame.data)
                    .ok()
                    .and_then(|v| v.get("seq").and_then(Value::as_u64));
                if let Some(seq) = seq
                    && let Some(mark) = book.marks.lock().expect("marks lock").get_mut(&seq)
                {
                    mark.seen[index].get_or_insert(now);
                }
            }
        }
        book.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes marked records on A.
struct Marker {
    endpoint: Endpoint,
    /// Idle connections (one is enough one at a time; overlapping writes open more).
    pool: Mutex<Vec<Conn>>,
    book: Arc<Book>,
    next: AtomicU64,
}

impl Marker {
    /// Writes one mark of `phase` and returns its sequence once A acknowledged it.
    async fn write(&self, phase: Phase) -> anyhow::Result<u64> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        self.book.marks.lock().expect("marks lock").insert(
            seq,
            Mark {
                phase,
                ack: None,
                seen: vec![None; self.book.receivers],
            },
        );
        let pooled = self.pool.lock().expect("pool lock").pop();
        let mut conn = match pooled {
            Some(conn) => conn,
            None => Conn::connect(&self.endpoint).await?,
        };
        let t = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let body = format!(
            r#"{{"operation":"insert","database":"{DB}","table":"marks","records":[{{"id":{seq},"seq":{seq},"t":{t}}}]}}"#
        );
        let (status, answer) = conn
            .send(Method::POST, "/", Bytes::from(body), true)
            .await?;
        let now = Instant::now();
        self.pool.lock().expect("pool lock").push(conn);
        if status != 200 {
            bail!(
                "marked insert answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
        if let Some(mark) = self.book.marks.lock().expect("marks lock").get_mut(&seq) {
            mark.ack = Some(now);
        }
        Ok(seq)
    }

    /// Writes `rate` marks per second for `duration`. One at a time (`overlap` false: a
    /// slow write delays the next), or on schedule whatever the previous ones are doing.
    async fn paced(
        self: Arc<Self>,
        phase: Phase,
        rate: u32,
        duration: Duration,
        overlap: bool,
    ) -> anyhow::Result<()> {
        let end = Instant::now() + duration;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = Vec::new();
        loop {
            tick.tick().await;
            if Instant::now() >= end {
                break;
            }
            if overlap {
                let marker = self.clone();
                pending.push(tokio::spawn(async move { marker.write(phase).await }));
            } else {
                self.write(phase).await?;
            }
        }
        for write in pending {
            write.await??;
        }
        Ok(())
    }
}

/// The measuring side of replication_lag: the marked writer and the SSE readers run on
/// a runtime of their own, so the load workers' tasks never delay their timestamps.
struct Stamper {
    rt: Option<tokio::runtime::Runtime>,
    marker: Arc<Marker>,
}

impl Stamper {
    /// Starts the runtime and connects the marked writer to `a`.
    async fn new(a: Endpoint, book: Arc<Book>) -> anyhow::Result<Stamper> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lag-stamper")
            .enable_all()
            .build()?;
        // Connect inside the runtime, so the connection's task runs there too.
        let endpoint = a.clone();
        let conn = rt
            .spawn(async move { Conn::connect(&endpoint).await })
            .await??;
        Ok(Stamper {
            rt: Some(rt),
            marker: Arc::new(Marker {
                endpoint: a,
                pool: Mutex::new(vec![conn]),
                book,
                next: AtomicU64::new(1),
            }),
        })
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        if let Some(rt) = &self.rt {
            rt.spawn(task);
        }
    }

    /// Writes one mark (see [`Marker::write`]).
    async fn write(&self, phase: Phase) -> anyhow::Result<u64> {
        let marker = self.marker.clone();
        let rt = self.rt.as_ref().context("stamper stopped")?;
        rt.spawn(async move { marker.write(phase).await }).await?
    }

    /// Paced marks (see [`Marker::paced`]).
    async fn paced(
        &self,
        phase: Phase,
        rate: u32,
        duration: Duration,
        overlap: bool,
    ) -> anyhow::Result<()> {
        let marker = self.marker.clone();
        let rt = self.rt.as_ref().context("stamper stopped")?;
        rt.spawn(marker.paced(phase, rate, duration, overlap))
            .await?
    }

    /// The last sequence handed out.
    fn last(&self) -> u64 {
        self.marker.next.load(Ordering::Relaxed) - 1
    }
}

impl Drop for Stamper {
    fn drop(&mut self) {
        // Stops the SSE readers too; safe inside an async context.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Insert load: [`INSERT_BATCH`] new records per request into `table`.
fn insert_load(settings: &Settings, endpoint: Endpoint, table: &'static str) -> Load {
    let make = insert_requests(settings.tag.clone(), table);
    Load {
        endpoint,
        connections: settings.connections,
        make,
        check: None,
        seed: settings.seed ^ 0x1a6,
        counter: Arc::new(AtomicU64::new(0)),
    }
}

fn endpoint(settings: &Settings, node: &BenchNode) -> Endpoint {
    Endpoint {
        addr: node.ops_addr(),
        kind: settings.client,
        auth: settings.creds.header(),
    }
}

/// The nodes of one cluster workload.
pub(crate) struct ClusterSpec<'a> {
    /// Workload name (for the memory report).
    pub(crate) workload: &'a str,
    /// Node names are this plus `a`, `b`, `c`...
    pub(crate) prefix: &'a str,
    /// How many nodes.
    pub(crate) count: usize,
    /// The first node's address; the others follow it.
    pub(crate) first_ip: Ipv4Addr,
    /// The database of `tables`.
    pub(crate) database: &'a str,
    /// Tables created on the first node.
    pub(crate) tables: &'a [&'a str],
    /// Extra command-line arguments for every node.
    pub(crate) extra: &'a [&'a str],
}

/// Starts the nodes on consecutive addresses, joins them all from the first, creates the
/// tables on the first and waits until every other node receives them.
pub(crate) async fn cluster(
    settings: &Settings,
    launcher: &Launcher,
    spec: &ClusterSpec<'_>,
) -> anyhow::Result<Vec<BenchNode>> {
    let mut nodes = Vec::new();
    for i in 0..spec.count {
        let [a, b, c, d] = spec.first_ip.octets();
        let ip = Ipv4Addr::new(a, b, c, d + i as u8);
        let name = format!("{}{}", spec.prefix, char::from(b'a' + i as u8));
        nodes.push(launcher.start(spec.workload, &name, ip, spec.extra).await?);
    }
    let tables = spec.tables;
    let others: Vec<&BenchNode> = nodes[1..].iter().collect();
    join_all(&nodes[0], &others, &settings.creds).await?;
    let database = spec.database;
    for table in tables {
        crate::create_table(&nodes[0].control, database, table).await?;
    }
    for other in &nodes[1..] {
        for table in tables {
            wait_table(other, database, table, Duration::from_secs(60)).await?;
        }
        wait_link(other, nodes[0].name(), database, Duration::from_secs(60)).await?;
    }
    Ok(nodes)
}

/// replication_lag with `count` nodes: writes on the first, SSE subscribers on the others.
pub(crate) async fn replication_lag(
    settings: &Settings,
    launcher: &Launcher,
    count: usize,
    first_ip: Ipv4Addr,
    report: &mut Report,
) -> anyhow::Result<()> {
    let workload = format!("replication_lag_{count}n");
    let prefix = format!("lag{count}");
    let spec = ClusterSpec {
        workload: &workload,
        prefix: &prefix,
        count,
        first_ip,
        database: DB,
        tables: &["marks", "lag"],
        extra: &["--subscription-max-lag", SUBSCRIBER_MAX_LAG],
    };
    let nodes = cluster(settings, launcher, &spec).await?;
    let book = Arc::new(Book {
        marks: Mutex::new(HashMap::new()),
        receivers: count - 1,
        reconnects: AtomicU64::new(0),
    });
    let stamper = Stamper::new(endpoint(settings, &nodes[0]), book.clone()).await?;
    for (index, node) in nodes[1..].iter().enumerate() {
        let url = format!("http://{}/{DB}/marks/", node.http_addr());
        stamper.spawn(follow(url, settings.clone(), index, book.clone()));
    }
    let result = lag_runs(settings, &workload, &nodes, &book, &stamper, report).await;
    drop(stamper);
    // Convergence check: every receiver holds what A holds.
    let on_a = nodes[0].control.record_count(DB, "lag").await?;
    for node in &nodes[1..] {
        let deadline = Instant::now() + Duration::from_secs(60);
        while node.control.record_count(DB, "lag").await? != on_a && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on_node = node.control.record_count(DB, "lag").await?;
        if on_node != on_a {
            let reason = format!(
                "did not converge: {} holds {on_node:?} records of bench.lag, A holds {on_a:?}",
                node.name()
            );
            eprintln!("   {reason}");
            report.failed.push(crate::report::Skipped {
                workload: workload.clone(),
                reason,
            });
        }
    }
    for node in nodes {
        node.finish(&launcher.rss).await?;
    }
    result
}

async fn lag_runs(
    settings: &Settings,
    workload: &str,
    nodes: &[BenchNode],
    book: &Arc<Book>,
    marker: &Stamper,
    report: &mut Report,
) -> anyhow::Result<()> {
    let a = &nodes[0];
    // The subscriptions are live once a probe shows up on every receiver.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seq = marker.write(Phase::Probe).await?;
        if book.wait_seen(seq, Duration::from_secs(1)).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the SSE subscribers on the receivers never saw a write made on {}",
                a.name()
            );
        }
    }
    eprintln!("   subscribers live; warm-up {:?}", settings.warmup);
    marker
        .paced(Phase::Warmup, settings.lag_rate, settings.warmup, false)
        .await?;

    let mut idle = Row::new(format!("{workload}_idle"), "").with_note(format!(
        "ack on A -> seen on all {} receivers (SSE), {}/s one at a time",
        nodes.len() - 1,
        settings.lag_rate
    ));
    let mut loaded = Row::new(format!("{workload}_load"), "").with_note(format!(
        "same, {}/s marks on schedule while A takes max insert load",
        settings.lag_rate
    ));
    let mut insert = Row::new(format!("{workload}_load_insert"), "records/s").with_note(format!(
        "the load on A: {INSERT_BATCH} records/insert, {} connections",
        settings.connections
    ));
    let mut drain = Row::new(format!("{workload}_drain"), "s")
        .with_note("load stops -> last write seen on all receivers");
    let load = insert_load(settings, endpoint(settings, a), "lag");
    let mut missing_total = 0;
    for run in 0..settings.runs {
        // (a) idle
        marker
            .paced(
                Phase::Idle(run),
                settings.lag_rate,
                settings.duration,
                false,
            )
            .await?;
        let last = marker.last();
        book.wait_seen(last, DELIVERY_TIMEOUT).await?;
        let (lags, missing) = book.lags(Phase::Idle(run));
        missing_total += missing;
        idle.push(
            None,
            lag_percentile(&lags, 0.5),
            lag_percentile(&lags, 0.99),
        );
        eprintln!(
            "   run {}/{} idle: {} marks, lag p50 {:.2} ms, p99 {:.2} ms",
            run + 1,
            settings.runs,
            lags.len(),
            lag_percentile(&lags, 0.5).unwrap_or(f64::NAN),
            lag_percentile(&lags, 0.99).unwrap_or(f64::NAN)
        );

        // (b) under load, (c) drain
        let load_task = {
            let load = load.clone();
            let duration = settings.duration;
            tokio::spawn(async move { load::run(&load, duration).await })
        };
        marker
            .paced(Phase::Load(run), settings.lag_rate, settings.duration, true)
            .await?;
        let mut stats = load_task.await??;
        let stopped = Instant::now();
        let last = marker.write(Phase::Final(run)).await?;
        let seen = book.wait_seen(last, DELIVERY_TIMEOUT).await?;
        let drain_s = seen.saturating_duration_since(stopped).as_secs_f64();
        let (lags, missing) = book.lags(Phase::Load(run));
        missing_total += missing;
        loaded.push(
            None,
            lag_percentile(&lags, 0.5),
            lag_percentile(&lags, 0.99),
        );
        insert.push(
            Some(stats.item_rate()),
            stats.latency_ms(0.5),
            stats.latency_ms(0.99),
        );
        insert.errors += stats.errors;
        drain.push(Some(drain_s), None, None);
        eprintln!(
            "   run {}/{} load: {:.0} records/s on A, {} marks, lag p50 {:.2} ms, p99 {:.2} ms; drain {drain_s:.3} s",
            run + 1,
            settings.runs,
            stats.item_rate(),
            lags.len(),
            lag_percentile(&lags, 0.5).unwrap_or(f64::NAN),
            lag_percentile(&lags, 0.99).unwrap_or(f64::NAN)
        );
        if let Some(e) = &stats.first_error {
            eprintln!("   first load error: {e}");
        }
    }
    let reconnects = book.reconnects.load(Ordering::Relaxed);
    for row in [&mut idle, &mut loaded] {
        row.errors = missing_total as u64;
        row.detail =
            json!({ "sse_reconnects": reconnects, "unit": "ms of lag, not a request round trip" });
    }
    report.rows.extend([idle, loaded, insert, drain]);
    Ok(())
}

/// Polls `node` until `database.table` holds `want` records; returns when it did.
async fn wait_count(
    node: &BenchNode,
    table: &str,
    want: u64,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        let count = node.control.record_count(DB, table).await?;
        if count.is_some_and(|c| c >= want) {
            return Ok(Instant::now());
        }
        last = count.or(last);
        if Instant::now() > deadline {
            bail!(
                "{} holds {last:?} of {want} records of {DB}.{table} after {timeout:?}",
                node.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `full_copies` of the link on `node` receiving `DB` from `peer`.
async fn full_copies(node: &BenchNode, peer: &str) -> anyhow::Result<Option<u64>> {
    let status = node
        .control
        .op(json!({"operation": "cluster_status"}))
        .await?;
    Ok(link(&status, peer, DB).and_then(|l| l["full_copies"].as_u64()))
}

/// full_copy: a source with `copy_records` records and a small log; a fresh node joins and
/// the time until it holds them all is measured, `runs` times with a new node each time.
pub(crate) async fn full_copy(
    settings: &Settings,
    launcher: &Launcher,
    report: &mut Report,
) -> anyhow::Result<()> {
    let n = settings.copy_records;
    let source = launcher
        .start(
            "full_copy",
            "copy-src",
            Ipv4Addr::new(127, 0, 0, 31),
            &["--log-max-bytes", "1000000"],
        )
        .await?;
    crate::create_table(&source.control, DB, "copy").await?;
    eprintln!("   loading {n} records on the source");
    let took = load_records(&endpoint(settings, &source), "copy", n, settings.seed).await?;
    eprintln!(
        "   loaded in {:.1} s; letting the log trim",
        took.as_secs_f64()
    );
    // The trimmer runs once a second; give it two passes.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let mut row = Row::new("full_copy", "records/s").with_note(format!(
        "{n} records, add_node -> new node's record_count = {n}"
    ));
    let mut seconds = Vec::new();
    let mut copies = Vec::new();
    let mut outcome = Ok(());
    for run in 0..settings.runs {
        let name = format!("copy-dst{}", run + 1);
        let dest = launcher
            .start("full_copy", &name, Ipv4Addr::new(127, 0, 0, 32), &[])
            .await?;
        let started = Instant::now();
        let result = async {
            dest.control
                .op(json!({
                    "operation": "add_node",
                    "url": source.replication,
                    "authorization": {"username": settings.creds.user, "password": settings.creds.password},
                }))
                .await?;
            wait_count(&dest, "copy", n, DELIVERY_TIMEOUT).await
        }
        .await;
        match result {
            Ok(done) => {
                let secs = done.duration_since(started).as_secs_f64();
                let full = full_copies(&dest, source.name()).await?;
                eprintln!(
                    "   run {}/{}: {n} records in {secs:.2} s = {:.0} records/s (full copies: {full:?})",
                    run + 1,
                    settings.runs,
                    n as f64 / secs
                );
                row.push(Some(n as f64 / secs), None, None);
                seconds.push(secs);
                copies.push(full);
            }
            Err(e) => outcome = Err(e),
        }
        dest.finish(&launcher.rss).await?;
        source
            .control
            .op(json!({"operation": "remove_node", "node_name": name}))
            .await
            .ok();
        if outcome.is_err() {
            break;
        }
    }
    row.detail = json!({
        "records": n,
        "runs_seconds": seconds,
        "runs_full_copies": copies,
        "source_load_records_per_s": n as f64 / took.as_secs_f64(),
    });
    if copies.contains(&Some(0)) {
        row.note
            .push_str(" (some runs replayed the log instead of copying)");
    }
    if !row.runs.is_empty() {
        report.rows.push(row);
    }
    source.finish(&launcher.rss).await?;
    outcome
}

/// catch_up: two nodes; B is SIGKILLed, A takes writes for `away`, B restarts and the
/// time until it holds everything is measured.
pub(crate) async fn catch_up(
    settings: &Settings,
    launcher: &Launcher,
    report: &mut Report,
) -> anyhow::Result<()> {
    let spec = ClusterSpec {
        workload: "catch_up",
        prefix: "catch-",
        count: 2,
        first_ip: Ipv4Addr::new(127, 0, 0, 41),
        database: DB,
        tables: &["catch"],
        extra: &[],
    };
    let mut nodes = cluster(settings, launcher, &spec).await?;
    let result = catch_up_runs(settings, launcher, &mut nodes, report).await;
    for node in nodes {
        node.finish(&launcher.rss).await?;
    }
    result
}

async fn catch_up_runs(
    settings: &Settings,
    launcher: &Launcher,
    nodes: &mut [BenchNode],
    report: &mut Report,
) -> anyhow::Result<()> {
    let (a, rest) = nodes.split_first_mut().context("two nodes")?;
    let b = &mut rest[0];
    let load = insert_load(settings, endpoint(settings, a), "catch");
    let mut row = Row::new("catch_up", "records/s").with_note(format!(
        "B killed, A takes max inserts for {:.0} s, B restarts; records / (ready -> caught up)",
        settings.away.as_secs_f64()
    ));
    let mut time_row = Row::new("catch_up_time", "s").with_note("B ready -> B holds every record");
    let mut details = Vec::new();
    for run in 0..settings.runs {
        let before = b.control.record_count(DB, "catch").await?.unwrap_or(0);
        b.kill(&launcher.rss).await?;
        let stats = load::run(&load, settings.away).await?;
        let on_a = a.control.record_count(DB, "catch").await?.unwrap_or(0);
        let restarting = Instant::now();
        b.restart(&launcher.rss).await?;
        let ready = Instant::now();
        let done = wait_count(b, "catch", on_a, DELIVERY_TIMEOUT).await?;
        let secs = done.duration_since(ready).as_secs_f64().max(1e-6);
        let behind = on_a.saturating_sub(before);
        let full = full_copies(b, a.name()).await?;
        eprintln!(
            "   run {}/{}: {behind} records behind ({:.0} records/s written while away); caught up {secs:.2} s after ready = {:.0} records/s (start {:.2} s, full copies {full:?})",
            run + 1,
            settings.runs,
            stats.item_rate(),
            behind as f64 / secs,
            ready.duration_since(restarting).as_secs_f64()
        );
        row.push(Some(behind as f64 / secs), None, None);
        time_row.push(Some(secs), None, None);
        details.push(json!({
            "records_behind": behind,
            "written_per_s_while_away": stats.item_rate(),
            "restart_to_ready_s": ready.duration_since(restarting).as_secs_f64(),
            "ready_to_caught_up_s": secs,
            "full_copies": full,
        }));
        if let Some(e) = &stats.first_error {
            eprintln!("   first write error: {e}");
        }
        row.errors += stats.errors;
    }
    row.detail = json!({ "runs": details });
    report.rows.push(row);
    report.rows.push(time_row);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sse_frames() {
        assert_eq!(
            parse_frame("event: put\nid: 42\ndata: {\"seq\":1}"),
            Some(Frame {
                event: "put".into(),
                id: Some("42".into()),
                data: "{\"seq\":1}".into()
            })
        );
        assert_eq!(parse_frame(":\n"), None);
        assert_eq!(
            parse_frame("data:a\r\ndata: b").map(|f| f.data),
            Some("a\nb".into())
        );
    }
}
