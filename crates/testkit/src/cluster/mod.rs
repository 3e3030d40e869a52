//! Harness for the cluster tests: nodes on fixed ports (optionally behind a cuttable
//! proxy), meshing, waiting for links, full dumps, convergence, and a ledger of
//! acknowledged writes that knows which value must win.

mod ledger;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

pub use ledger::{Acked, Handle, Ledger, Op, Outcome};

use crate::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, NodeOptions, Proxy, shoal_bin, wait_until,
};

/// Database every test writes to.
pub const DB: &str = "dev";
/// Table every test writes to.
pub const TABLE: &str = "kv";
/// Links the tests wait for: membership and the data.
pub const DBS: [&str; 2] = ["system", DB];

// Generous deadlines: each is a bound on a poll, not a wait.
/// How long links get to come up.
pub const LINKS_DEADLINE: Duration = Duration::from_secs(30);
/// How long the members' dumps get to become equal.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(30);

/// Replication debug lines (link failures, full copies) make failures readable.
const LOG_LEVEL: &str = "info,shoal_cluster=debug";

/// One node, its replication address and, when proxied, the proxy peers dial instead.
pub struct Member {
    /// The node itself.
    pub node: Node,
    /// The cuttable proxy in front of its replication port, if proxied.
    pub proxy: Option<Proxy>,
}

impl Member {
    /// Starts a node on `host` with fixed ops and replication ports (so a restart keeps
    /// them), fast liveness settings and, if `proxied`, a proxy in front of its
    /// replication port that it advertises to its peers.
    pub async fn start(
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
        let node = Node::start(&shoal_bin(), opts).await?;
        let bound = node.ready_line().addr("replication")?;
        ensure!(
            bound == repl,
            "{name} bound replication on {bound}, not {repl}"
        );
        Ok(Member { node, proxy })
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.name()
    }

    /// The address peers dial: the proxy's, or the replication port's.
    pub fn url(&self) -> String {
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
    pub fn handle(&self) -> Handle {
        Handle::new(self.name(), self.node.ops_url())
    }

    /// Cuts the proxy in front of this node: nobody can pull from it.
    pub fn cut(&self) {
        self.proxy.as_ref().expect("a proxied member").cut();
    }

    /// Heals the proxy cut by [`Member::cut`].
    pub fn heal(&self) {
        self.proxy.as_ref().expect("a proxied member").heal();
    }

    /// Warnings, errors and replication lines of every run, for failure reports.
    pub fn log_excerpt(&self, lines: usize) -> String {
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
pub fn logs(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| m.log_excerpt(25))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `members` as the slices of references the helpers take.
pub fn refs(members: &[Member]) -> Vec<&Member> {
    members.iter().collect()
}

/// Waits for the membership links, creates the test table on the first member (and
/// waits until every member has it), then waits for the data links.
pub async fn prepare(members: &[Member]) -> anyhow::Result<()> {
    let all = refs(members);
    wait_links(&all, &["system"]).await?;
    create_table(&members[0], &all).await?;
    wait_links(&all, &DBS).await
}

/// Starts `names` on 127.0.`subnet`.1, .2, ... and joins them all from the first one.
pub async fn start_cluster(
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
pub fn add_node_request(url: &str, extra: Value) -> Value {
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
pub async fn join(on: &Member, other: &Member) -> anyhow::Result<()> {
    join_with(on, other, json!({})).await
}

/// `add_node` on `on` for `other`, with the request fields of `extra`.
pub async fn join_with(on: &Member, other: &Member, extra: Value) -> anyhow::Result<()> {
    let answer = on.node.op_ok(add_node_request(&other.url(), extra)).await?;
    ensure!(
        answer["message"] == format!("Successfully added '{}' to the cluster", other.name()),
        "add_node answered {answer}"
    );
    Ok(())
}

/// The node's `cluster_status`.
pub async fn status(node: &Node) -> anyhow::Result<Value> {
    node.op_ok(json!({"operation": "cluster_status"})).await
}

/// The link statuses (`database_sockets` entries) this status reports for `peer`.
pub fn sockets<'a>(status: &'a Value, peer: &str) -> Vec<&'a Value> {
    status["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"] == peer)
        .flat_map(|c| c["database_sockets"].as_array().into_iter().flatten())
        .collect()
}

/// The status of the link from `peer` for `database`, if there is one.
pub fn socket<'a>(status: &'a Value, peer: &str, database: &str) -> Option<&'a Value> {
    sockets(status, peer)
        .into_iter()
        .find(|s| s["database"] == database)
}

/// Whether the status shows a connected link from every peer for every database.
pub fn links_up(status: &Value, peers: &[&str], dbs: &[&str]) -> bool {
    peers.iter().all(|peer| {
        dbs.iter()
            .all(|db| socket(status, peer, db).is_some_and(|s| s["connected"] == true))
    })
}

/// A link counter (`applied`, `full_copies`, ...) summed over `peers`' links for `database`.
pub fn link_counter(status: &Value, peers: &[&str], database: &str, counter: &str) -> u64 {
    peers
        .iter()
        .filter_map(|p| socket(status, p, database))
        .map(|s| s[counter].as_u64().unwrap_or(0))
        .sum()
}

/// Waits until every member shows connected links from every other member for `dbs`.
pub async fn wait_links(members: &[&Member], dbs: &[&str]) -> anyhow::Result<()> {
    let names: Vec<&str> = members.iter().map(|m| m.name()).collect();
    let mut last = BTreeMap::new();
    let waited = wait_until(LINKS_DEADLINE, "every link is up", async || {
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
pub async fn create_table(on: &Member, members: &[&Member]) -> anyhow::Result<()> {
    on.node
        .op_ok(json!({"operation": "create_table", "database": DB, "table": TABLE, "primary_key": "id"}))
        .await?;
    wait_table(members).await
}

/// Waits until every member can describe the test table.
pub async fn wait_table(members: &[&Member]) -> anyhow::Result<()> {
    wait_until(LINKS_DEADLINE, "the table exists everywhere", async || {
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
pub async fn exists(node: &Node, database: &str, table: Option<&str>) -> anyhow::Result<bool> {
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
pub async fn log_times(node: &Node, database: &str, table: &str) -> anyhow::Result<Vec<f64>> {
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
pub async fn dump(node: &Node) -> anyhow::Result<Vec<Value>> {
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
pub fn by_key(dump: &[Value]) -> BTreeMap<String, &Value> {
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
pub async fn wait_converged(members: &[&Member]) -> anyhow::Result<Vec<Value>> {
    let mut last: Vec<anyhow::Result<Vec<Value>>> = Vec::new();
    let waited = wait_until(CONVERGE_DEADLINE, "all dumps are equal", async || {
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
pub async fn converge_and_check(
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

/// Panics with the seed, the problems and the nodes' log excerpts unless `problems` is empty.
#[track_caller]
pub fn assert_no_problems(seed: u64, what: &str, problems: &[String], members: &[&Member]) {
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
