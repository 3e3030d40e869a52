//! Harness for the cluster tests: nodes on fixed ports (optionally behind a cuttable
//! proxy), meshing, waiting for links, full dumps, convergence, and a ledger of
//! acknowledged writes that knows which value must win.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};
use shoal_testkit::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, NodeOptions, Proxy};

/// Database and table every test writes to.
pub(crate) const DB: &str = "dev";
pub(crate) const TABLE: &str = "kv";
/// Links the tests wait for: membership and the data.
pub(crate) const DBS: [&str; 2] = ["system", DB];

/// Generous deadlines: each is a bound on a poll, not a wait.
pub(crate) const LINKS_DEADLINE: Duration = Duration::from_secs(30);
pub(crate) const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);

/// Replication debug lines (link failures, full copies) make failures readable.
const LOG_LEVEL: &str = "info,shoal_cluster=debug";

/// The test seed: `SHOAL_TEST_SEED` or random; printed so a failure can be replayed.
pub(crate) fn seed(test: &str) -> u64 {
    let seed = std::env::var("SHOAL_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: seed {seed} (SHOAL_TEST_SEED={seed} to replay)");
    seed
}

/// Unwrapping that names the seed in the panic message.
pub(crate) trait OrPanic<T> {
    /// The value, or a panic naming `seed` and the error chain.
    fn or_panic(self, seed: u64) -> T;
}

impl<T, E: Into<anyhow::Error>> OrPanic<T> for Result<T, E> {
    #[track_caller]
    fn or_panic(self, seed: u64) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("seed {seed}: {:#}", e.into()),
        }
    }
}

/// One node, its replication address and, when proxied, the proxy peers dial instead.
pub(crate) struct Member {
    pub(crate) node: Node,
    pub(crate) proxy: Option<Proxy>,
}

impl Member {
    /// Starts a node on `host` with fixed ops and replication ports (so a restart keeps
    /// them), fast liveness settings and, if `proxied`, a proxy in front of its
    /// replication port that it advertises to its peers.
    pub(crate) async fn start(
        name: &str,
        host: &str,
        proxied: bool,
        extra: &[&str],
    ) -> anyhow::Result<Member> {
        let ip: IpAddr = host.parse().context("host")?;
        // Hold both reservations (and start the proxy) before releasing any, so that
        // no two of them can be handed the same port.
        let held = [TcpListener::bind((ip, 0))?, TcpListener::bind((ip, 0))?];
        let repl_port = held[0].local_addr()?.port();
        let ops_port = held[1].local_addr()?.port();
        let repl = SocketAddr::new(ip, repl_port);
        let proxy = if proxied {
            Some(Proxy::start(SocketAddr::new(ip, 0), repl).await?)
        } else {
            None
        };
        drop(held);
        let mut args: Vec<String> = [
            "--replication-port",
            &repl_port.to_string(),
            "--replication-ping-ms",
            "200",
            "--replication-idle-timeout-ms",
            "1500",
            "--log-level",
            LOG_LEVEL,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        if let Some(proxy) = &proxy {
            args.push("--replication-advertise".into());
            args.push(proxy.addr().to_string());
        }
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let opts = NodeOptions {
            host: host.into(),
            ops_port,
            args,
            ..NodeOptions::new(name)
        };
        let node = Node::start(Path::new(env!("CARGO_BIN_EXE_shoal")), opts).await?;
        let bound = node.ready_line().addr("replication")?;
        ensure!(
            bound == repl,
            "{name} bound replication on {bound}, not {repl}"
        );
        Ok(Member { node, proxy })
    }

    pub(crate) fn name(&self) -> &str {
        self.node.name()
    }

    /// The address peers dial: the proxy's, or the replication port's.
    pub(crate) fn url(&self) -> String {
        match &self.proxy {
            Some(proxy) => proxy.addr().to_string(),
            None => self
                .node
                .ready_line()
                .get("replication")
                .unwrap_or_default()
                .to_owned(),
        }
    }

    /// A cloneable client for this node's operations API (stable across restarts).
    pub(crate) fn handle(&self) -> Handle {
        Handle {
            name: self.name().to_owned(),
            url: self.node.ops_url(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Cuts the proxy in front of this node: nobody can pull from it.
    pub(crate) fn cut(&self) {
        self.proxy.as_ref().expect("a proxied member").cut();
    }

    pub(crate) fn heal(&self) {
        self.proxy.as_ref().expect("a proxied member").heal();
    }

    /// Warnings, errors and replication lines of every run, for failure reports.
    pub(crate) fn log_excerpt(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.node.stderr_log()).unwrap_or_default();
        let picked: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.contains("WARN")
                    || l.contains("ERROR")
                    || l.contains("full copy")
                    || l.contains("=== shoal-testkit")
                    || l.contains("replication link failed")
            })
            .collect();
        let tail = &picked[picked.len().saturating_sub(lines)..];
        format!("--- {} ---\n{}", self.name(), tail.join("\n"))
    }
}

/// Log excerpts of every member, for assertion messages.
pub(crate) fn logs(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| m.log_excerpt(25))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `members` as the slices of references the helpers take.
pub(crate) fn refs(members: &[Member]) -> Vec<&Member> {
    members.iter().collect()
}

/// Waits for the membership links, creates the test table on the first member (and
/// waits until every member has it), then waits for the data links.
pub(crate) async fn prepare(members: &[Member]) -> anyhow::Result<()> {
    let all = refs(members);
    wait_links(&all, &["system"]).await?;
    create_table(&members[0], &all).await?;
    wait_links(&all, &DBS).await
}

/// Starts `names` on 127.0.`subnet`.1, .2, ... and joins them all from the first one.
pub(crate) async fn start_cluster(
    names: &[&str],
    subnet: u8,
    proxied: bool,
    extra: &[&str],
) -> anyhow::Result<Vec<Member>> {
    let mut members = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let host = format!("127.0.{subnet}.{}", i + 1);
        members.push(Member::start(name, &host, proxied, extra).await?);
    }
    for other in &members[1..] {
        join(&members[0], other).await?;
    }
    Ok(members)
}

/// An `add_node` request for `url` with the default admin's credentials, plus the fields
/// of `extra` (`subscriptions`, `ca_fingerprint`, ...).
pub(crate) fn add_node_request(url: &str, extra: Value) -> Value {
    let mut request = json!({
        "operation": "add_node",
        "url": url,
        "authorization": {"username": DEFAULT_ADMIN_USER, "password": DEFAULT_ADMIN_PASSWORD},
    });
    if let (Some(request), Value::Object(extra)) = (request.as_object_mut(), extra) {
        request.extend(extra);
    }
    request
}

/// `add_node` on `on` for `other`.
pub(crate) async fn join(on: &Member, other: &Member) -> anyhow::Result<()> {
    join_with(on, other, json!({})).await
}

/// `add_node` on `on` for `other`, with the request fields of `extra`.
pub(crate) async fn join_with(on: &Member, other: &Member, extra: Value) -> anyhow::Result<()> {
    let answer = on.node.op_ok(add_node_request(&other.url(), extra)).await?;
    ensure!(
        answer["message"] == format!("Successfully added '{}' to the cluster", other.name()),
        "add_node answered {answer}"
    );
    Ok(())
}

/// The node's `cluster_status`.
pub(crate) async fn status(node: &Node) -> anyhow::Result<Value> {
    node.op_ok(json!({"operation": "cluster_status"})).await
}

/// The link statuses (`database_sockets` entries) this status reports for `peer`.
pub(crate) fn sockets<'a>(status: &'a Value, peer: &str) -> Vec<&'a Value> {
    status["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == peer)
        .flat_map(|c| c["database_sockets"].as_array().into_iter().flatten())
        .collect()
}

/// The status of the link from `peer` for `database`, if there is one.
pub(crate) fn socket<'a>(status: &'a Value, peer: &str, database: &str) -> Option<&'a Value> {
    sockets(status, peer)
        .into_iter()
        .find(|s| s["database"] == database)
}

/// Whether the status shows a connected link from every peer for every database.
pub(crate) fn links_up(status: &Value, peers: &[&str], dbs: &[&str]) -> bool {
    peers.iter().all(|peer| {
        dbs.iter()
            .all(|db| socket(status, peer, db).is_some_and(|s| s["connected"] == true))
    })
}

/// Waits until every member shows connected links from every other member for `dbs`.
pub(crate) async fn wait_links(members: &[&Member], dbs: &[&str]) -> anyhow::Result<()> {
    let names: Vec<&str> = members.iter().map(|m| m.name()).collect();
    let mut last = BTreeMap::new();
    let waited = shoal_testkit::wait_until(LINKS_DEADLINE, "every link is up", async || {
        for m in members {
            let peers: Vec<&str> = names.iter().copied().filter(|n| *n != m.name()).collect();
            let Ok(status) = status(&m.node).await else {
                return Ok(false);
            };
            let up = links_up(&status, &peers, dbs);
            last.insert(m.name().to_owned(), status);
            if !up {
                return Ok(false);
            }
        }
        Ok(true)
    })
    .await;
    waited.with_context(|| format!("last cluster_status answers: {last:#?}"))
}

/// Creates the test table on `on` and waits until every member has it.
pub(crate) async fn create_table(on: &Member, members: &[&Member]) -> anyhow::Result<()> {
    on.node
        .op_ok(json!({"operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id"}))
        .await?;
    wait_table(members).await
}

/// Waits until every member can describe the test table.
pub(crate) async fn wait_table(members: &[&Member]) -> anyhow::Result<()> {
    shoal_testkit::wait_until(LINKS_DEADLINE, "the table exists everywhere", async || {
        for m in members {
            let describe = json!({"operation": "describe_table", "database": DB, "table": TABLE});
            match m.node.ops(describe).await {
                Ok((200, _)) => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    })
    .await
}

/// Whether `node` has `database` (and, if given, its `table`).
pub(crate) async fn exists(
    node: &Node,
    database: &str,
    table: Option<&str>,
) -> anyhow::Result<bool> {
    let op = match table {
        Some(t) => json!({"operation": "describe_table", "database": database, "table": t}),
        None => json!({"operation": "describe_database", "database": database}),
    };
    let (status, body) = node.ops(op).await?;
    match status {
        200 => Ok(true),
        404 => Ok(false),
        other => bail!("describe answered {other}: {body}"),
    }
}

/// Timestamps of the retained transaction-log entries of `database.table` on `node`.
pub(crate) async fn log_times(
    node: &Node,
    database: &str,
    table: &str,
) -> anyhow::Result<Vec<f64>> {
    let log = node
        .op_ok(json!({"operation": "read_transaction_log", "database": database, "table": table}))
        .await?;
    Ok(log
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["timestamp"].as_f64())
        .collect())
}

/// Every record of the test table, sorted by primary key, timestamps included.
pub(crate) async fn dump(node: &Node) -> anyhow::Result<Vec<Value>> {
    let body = node
        .op_ok(json!({
            "operation": "search_by_value", "database": DB, "table": TABLE,
            "search_attribute": "id", "search_value": "*",
        }))
        .await?;
    match body {
        Value::Array(rows) => Ok(rows),
        other => bail!("search_by_value answered {other}"),
    }
}

/// The records of a dump by primary key.
pub(crate) fn by_key(dump: &[Value]) -> BTreeMap<String, &Value> {
    dump.iter().map(|r| (key_of(r), r)).collect()
}

fn key_of(record: &Value) -> String {
    match &record["id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Polls until every member's full dump is identical; returns it. On timeout the error
/// says which keys differ and how.
pub(crate) async fn wait_converged(members: &[&Member]) -> anyhow::Result<Vec<Value>> {
    let mut last: Vec<anyhow::Result<Vec<Value>>> = Vec::new();
    let waited = shoal_testkit::wait_until(CONVERGE_DEADLINE, "all dumps are equal", async || {
        // Built aside: a poll cancelled at the deadline must not leave `last` half-filled.
        let mut current = Vec::with_capacity(members.len());
        for m in members {
            current.push(dump(&m.node).await);
        }
        last = current;
        let first = match &last[0] {
            Ok(first) => first,
            Err(_) => return Ok(false),
        };
        Ok(last.iter().all(|d| d.as_ref().is_ok_and(|d| d == first)))
    })
    .await;
    match waited {
        Ok(()) => Ok(last.swap_remove(0)?),
        Err(e) => Err(e.context(describe_divergence(members, &last))),
    }
}

/// What differs between the members' dumps (first few keys).
fn describe_divergence(members: &[&Member], dumps: &[anyhow::Result<Vec<Value>>]) -> String {
    let mut out = String::from("dumps differ:\n");
    let mut maps = Vec::new();
    for (m, d) in members.iter().zip(dumps) {
        match d {
            Ok(d) => {
                out.push_str(&format!("  {}: {} records\n", m.name(), d.len()));
                maps.push(Some(by_key(d)));
            }
            Err(e) => {
                out.push_str(&format!("  {}: dump failed: {e:#}\n", m.name()));
                maps.push(None);
            }
        }
    }
    let without_created: Vec<Vec<Value>> = dumps
        .iter()
        .flatten()
        .map(|d| {
            d.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.as_object_mut().map(|o| o.remove("__createdtime__"));
                    r
                })
                .collect()
        })
        .collect();
    out.push_str(&format!(
        "  equal once __createdtime__ is ignored: {}\n",
        without_created.windows(2).all(|w| w[0] == w[1])
    ));
    let keys: BTreeSet<&String> = maps.iter().flatten().flat_map(|m| m.keys()).collect();
    let mut shown = 0;
    for key in keys {
        let versions: Vec<Option<&&Value>> = maps.iter().flatten().map(|m| m.get(key)).collect();
        if versions.windows(2).all(|w| w[0] == w[1]) {
            continue;
        }
        shown += 1;
        if shown > 8 {
            out.push_str("  ...\n");
            break;
        }
        out.push_str(&format!("  key {key}:\n"));
        for (m, v) in members.iter().zip(&versions) {
            let v = v.map_or("<absent>".to_owned(), |v| v.to_string());
            out.push_str(&format!("    {}: {v}\n", m.name()));
        }
    }
    out
}

/// Waits for convergence and checks the common dump against the ledger; returns it.
///
/// If the dumps never become equal, panics with what differs and, for each node, how
/// its own dump fares against the acknowledged writes (so a divergence report also
/// says whether the winners are right).
pub(crate) async fn converge_and_check(
    members: &[&Member],
    ledger: &Ledger,
    seed: u64,
    what: &str,
) -> Vec<Value> {
    match wait_converged(members).await {
        Ok(dump) => {
            assert_no_problems(seed, what, &ledger.check(&dump), members);
            dump
        }
        Err(e) => {
            let mut report = String::new();
            for m in members {
                match dump(&m.node).await {
                    Ok(d) => {
                        let problems = ledger.check(&d);
                        report.push_str(&format!(
                            "  {}: {} records, {} problems against the acknowledged writes\n",
                            m.name(),
                            d.len(),
                            problems.len()
                        ));
                        for p in problems.iter().take(5) {
                            report.push_str(&format!("    {p}\n"));
                        }
                    }
                    Err(e) => report.push_str(&format!("  {}: dump failed: {e:#}\n", m.name())),
                }
            }
            panic!(
                "seed {seed}: {what}: {e:#}\nper-node check:\n{report}{}",
                logs(members)
            )
        }
    }
}

/// A client for one node's operations API that tasks can own.
#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) name: String,
    url: String,
    client: reqwest::Client,
}

/// A single-record write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Insert,
    Update,
    Upsert,
    Delete,
}

/// What became of a write request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome {
    /// Committed at this `txn_time`.
    Written(f64),
    /// Acknowledged, but nothing was written (insert of an existing key, update or
    /// delete of a missing one).
    Skipped,
    /// The request never reached the node (connection refused): it had no effect.
    NotSent,
    /// No answer: it may or may not have been committed.
    Uncertain(String),
}

impl Handle {
    /// One write of `key`; `record` is the whole record (ignored for a delete).
    /// Errors only on an error answer from the node (a bug to report).
    pub(crate) async fn write(&self, op: Op, key: &str, record: &Value) -> anyhow::Result<Outcome> {
        let (operation, field) = match op {
            Op::Insert => ("insert", "inserted_hashes"),
            Op::Update => ("update", "update_hashes"),
            Op::Upsert => ("upsert", "upserted_hashes"),
            Op::Delete => ("delete", "deleted_hashes"),
        };
        let body = if op == Op::Delete {
            json!({"operation": operation, "database": DB, "table": TABLE, "ids": [key]})
        } else {
            json!({"operation": operation, "database": DB, "table": TABLE, "records": [record]})
        };
        let sent = self
            .client
            .post(&self.url)
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Ok(Outcome::NotSent),
            Err(e) => return Ok(Outcome::Uncertain(e.to_string())),
        };
        let status = response.status().as_u16();
        let answer: Value = match response.json().await {
            Ok(v) => v,
            Err(e) => return Ok(Outcome::Uncertain(format!("reading the answer: {e}"))),
        };
        ensure!(
            status == 200,
            "{}: {operation} of {key} answered {status}: {answer}",
            self.name
        );
        let written = answer[field]
            .as_array()
            .is_some_and(|ks| ks.iter().any(|k| k == key));
        if !written {
            return Ok(Outcome::Skipped);
        }
        let txn = answer["txn_time"]
            .as_f64()
            .with_context(|| format!("{}: no txn_time in {answer}", self.name))?;
        Ok(Outcome::Written(txn))
    }
}

/// An acknowledged write: when, where, and the record written (`None`: a delete).
#[derive(Debug, Clone)]
pub(crate) struct Acked {
    pub(crate) txn: f64,
    pub(crate) node: String,
    pub(crate) value: Option<Value>,
}

impl Acked {
    /// Last-writer-wins order: (txn_time, node name).
    fn beats(&self, other: &Acked) -> bool {
        self.txn
            .total_cmp(&other.txn)
            .then_with(|| self.node.cmp(&other.node))
            .is_gt()
    }
}

/// Every write the tests made, by key: acknowledged ones, and unanswered ones that may
/// or may not have been committed.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    pub(crate) acked: BTreeMap<String, Vec<Acked>>,
    pub(crate) maybe: BTreeMap<String, Vec<(String, Option<Value>)>>,
}

impl Ledger {
    /// Records what became of a write of `value` (`None` for a delete) to `key` on `node`.
    pub(crate) fn note(&mut self, node: &str, key: &str, value: Option<Value>, outcome: &Outcome) {
        match outcome {
            Outcome::Written(txn) => self.acked.entry(key.to_owned()).or_default().push(Acked {
                txn: *txn,
                node: node.to_owned(),
                value,
            }),
            Outcome::Uncertain(_) => self
                .maybe
                .entry(key.to_owned())
                .or_default()
                .push((node.to_owned(), value)),
            Outcome::Skipped | Outcome::NotSent => {}
        }
    }

    pub(crate) fn extend(&mut self, other: Ledger) {
        for (k, v) in other.acked {
            self.acked.entry(k).or_default().extend(v);
        }
        for (k, v) in other.maybe {
            self.maybe.entry(k).or_default().extend(v);
        }
    }

    /// The acknowledged write that must win for `key`.
    pub(crate) fn winner(&self, key: &str) -> Option<&Acked> {
        self.acked
            .get(key)?
            .iter()
            .fold(None, |best: Option<&Acked>, w| match best {
                Some(b) if !w.beats(b) => Some(b),
                _ => Some(w),
            })
    }

    /// Checks a converged dump against the ledger; returns every problem found.
    ///
    /// A key whose winning acknowledged write is a record must hold exactly that
    /// record's attributes with `__updatedtime__` equal to its `txn_time`; a key whose
    /// winner is a delete must be absent. A write that was never answered may have
    /// won instead (then its timestamp must be above the acknowledged winner's). Keys
    /// nobody wrote must not exist.
    pub(crate) fn check(&self, dump: &[Value]) -> Vec<String> {
        let found = by_key(dump);
        let keys: BTreeSet<&String> = self
            .acked
            .keys()
            .chain(self.maybe.keys())
            .chain(found.keys())
            .collect();
        let mut problems = Vec::new();
        for key in keys {
            let winner = self.winner(key);
            let maybes = self.maybe.get(key.as_str()).map_or(&[][..], Vec::as_slice);
            let got = found.get(key.as_str()).copied();
            let floor = winner.map_or(f64::MIN, |w| w.txn);
            let ok = match got {
                None => {
                    winner.is_none_or(|w| w.value.is_none())
                        || maybes.iter().any(|(_, v)| v.is_none())
                }
                Some(record) => {
                    let updated = record["__updatedtime__"].as_f64().unwrap_or(f64::NAN);
                    let attrs = strip(record);
                    winner.is_some_and(|w| w.value.as_ref() == Some(&attrs) && updated == w.txn)
                        || maybes
                            .iter()
                            .any(|(_, v)| v.as_ref() == Some(&attrs) && updated >= floor)
                }
            };
            if !ok {
                problems.push(format!(
                    "key {key}: found {}, expected {} (acknowledged writes: {:?}; unanswered: {:?})",
                    got.map_or("<absent>".to_owned(), Value::to_string),
                    match winner {
                        Some(Acked { value: Some(v), txn, node }) =>
                            format!("{v} written by {node} at {txn}"),
                        Some(Acked { value: None, txn, node }) =>
                            format!("absent (deleted by {node} at {txn})"),
                        None => "absent (never written)".to_owned(),
                    },
                    self.acked.get(key.as_str()).map(|ws| ws
                        .iter()
                        .map(|w| (w.txn, w.node.as_str(), w.value.is_some()))
                        .collect::<Vec<_>>()),
                    maybes,
                ));
            }
        }
        problems
    }
}

/// A record without the server-maintained timestamps.
pub(crate) fn strip(record: &Value) -> Value {
    let mut record = record.clone();
    if let Some(map) = record.as_object_mut() {
        map.remove("__createdtime__");
        map.remove("__updatedtime__");
    }
    record
}

/// Panics with the seed, the problems and the nodes' log excerpts unless `problems` is empty.
#[track_caller]
pub(crate) fn assert_no_problems(seed: u64, what: &str, problems: &[String], members: &[&Member]) {
    assert!(
        problems.is_empty(),
        "seed {seed}: {what}: {} problems:\n{}\n{}",
        problems.len(),
        problems
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
        logs(members)
    );
}
