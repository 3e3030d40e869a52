//! Starting real `shoal` nodes for the benchmark, and sampling their resident memory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};
use shoal_testkit::{Node, NodeOptions};
use tempfile::TempDir;

use crate::client::{Control, Credentials};

/// How the benchmark starts nodes.
#[derive(Debug, Clone)]
pub(crate) struct Launcher {
    /// The `shoal` binary.
    pub(crate) bin: PathBuf,
    /// Where root folders go (`None`: the system temporary folder).
    pub(crate) data_dir: Option<PathBuf>,
    /// Admin credentials given to every node.
    pub(crate) creds: Credentials,
    /// Resident-memory sampler every node registers with.
    pub(crate) rss: Rss,
    /// Command-line arguments given to every node (`--node-arg`).
    pub(crate) node_args: Vec<String>,
}

/// A node started by the benchmark. Dropping it SIGKILLs the process and removes its root.
pub(crate) struct BenchNode {
    /// The process (declared first: dropped, and so killed, before its folder goes).
    pub(crate) node: Node,
    _dir: Option<TempDir>,
    /// Control client for its Operations API and REST port.
    pub(crate) control: Control,
    /// Its replication address from the ready line.
    pub(crate) replication: String,
    /// The workload that started it (for the memory report).
    pub(crate) workload: String,
}

/// A free TCP port on `ip` (bound and released; the node binds it right after).
pub(crate) fn free_port(ip: Ipv4Addr) -> anyhow::Result<u16> {
    let listener = TcpListener::bind((ip, 0)).with_context(|| format!("binding {ip}:0"))?;
    Ok(listener.local_addr()?.port())
}

impl Launcher {
    /// Starts a node named `name` on `ip` with fixed free ports (so a restart keeps them),
    /// plus extra command-line arguments.
    pub(crate) async fn start(
        &self,
        workload: &str,
        name: &str,
        ip: Ipv4Addr,
        extra: &[&str],
    ) -> anyhow::Result<BenchNode> {
        let dir = match &self.data_dir {
            Some(parent) => {
                std::fs::create_dir_all(parent)?;
                Some(
                    tempfile::Builder::new()
                        .prefix(&format!("shoal-bench-{name}-"))
                        .tempdir_in(parent)?,
                )
            }
            None => None,
        };
        let mut opts = NodeOptions::new(name);
        opts.host = ip.to_string();
        opts.ops_port = free_port(ip)?;
        opts.http_port = free_port(ip)?;
        opts.root = dir.as_ref().map(|d| d.path().to_path_buf());
        opts.admin_user = self.creds.user.clone();
        opts.admin_password = self.creds.password.clone();
        opts.args = vec!["--replication-port".into(), free_port(ip)?.to_string()];
        opts.args.extend(self.node_args.iter().cloned());
        opts.args.extend(extra.iter().map(|s| (*s).to_owned()));
        opts.ready_timeout = Duration::from_secs(60);
        let node = Node::start(&self.bin, opts)
            .await
            .with_context(|| format!("starting node {name} from {}", self.bin.display()))?;
        let replication = node
            .ready_line()
            .get("replication")
            .context("the ready line has no replication= address (is the shoal binary current?)")?
            .to_owned();
        let control = Control::new(&node.ops_url(), self.creds.clone())?;
        if let Some(pid) = node.pid() {
            self.rss.register(workload, name, pid);
        }
        Ok(BenchNode {
            node,
            _dir: dir,
            control,
            replication,
            workload: workload.to_owned(),
        })
    }
}

impl BenchNode {
    /// Node name.
    pub(crate) fn name(&self) -> &str {
        self.node.name()
    }

    /// The HTTP (REST) address.
    pub(crate) fn http_addr(&self) -> SocketAddr {
        self.node.http_addr()
    }

    /// The Operations API address.
    pub(crate) fn ops_addr(&self) -> SocketAddr {
        self.node.ops_addr()
    }

    /// SIGKILL (a crash).
    pub(crate) async fn kill(&mut self, rss: &Rss) -> anyhow::Result<()> {
        rss.sample_now();
        rss.unregister(self.name());
        self.node.kill().await
    }

    /// Starts the process again on the same root and ports.
    pub(crate) async fn restart(&mut self, rss: &Rss) -> anyhow::Result<()> {
        self.node.restart().await?;
        if let Some(pid) = self.node.pid() {
            rss.register(&self.workload, self.node.name(), pid);
        }
        Ok(())
    }

    /// Records the node's memory after the runs, then stops it cleanly.
    pub(crate) async fn finish(mut self, rss: &Rss) -> anyhow::Result<()> {
        rss.after_runs(self.name());
        self.node.terminate().await?;
        Ok(())
    }
}

/// Adds every other node to `first` with `add_node` (run on `first`).
pub(crate) async fn join_all(
    first: &BenchNode,
    others: &[&BenchNode],
    creds: &Credentials,
) -> anyhow::Result<()> {
    for other in others {
        first
            .control
            .op(json!({
                "operation": "add_node",
                "url": other.replication,
                "authorization": {"username": creds.user, "password": creds.password},
            }))
            .await
            .with_context(|| format!("add_node {} on {}", other.name(), first.name()))?;
    }
    Ok(())
}

/// Waits until `node` has a connected link receiving `database` from `peer`.
pub(crate) async fn wait_link(
    node: &BenchNode,
    peer: &str,
    database: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let status = node
            .control
            .op(json!({"operation": "cluster_status"}))
            .await?;
        if link(&status, peer, database).is_some_and(|l| l["connected"] == json!(true)) {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "node {} has no connected link from {peer} for database {database} after {timeout:?}: {status}",
                node.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status of the link receiving `database` from `peer` in a `cluster_status` answer.
pub(crate) fn link<'a>(status: &'a Value, peer: &str, database: &str) -> Option<&'a Value> {
    status["connections"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == json!(peer))?["database_sockets"]
        .as_array()?
        .iter()
        .find(|s| s["database"] == json!(database))
}

/// Waits until `table` exists on `node`.
pub(crate) async fn wait_table(
    node: &BenchNode,
    database: &str,
    table: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    while node.control.record_count(database, table).await?.is_none() {
        if std::time::Instant::now() > deadline {
            bail!(
                "table {database}.{table} did not reach {} within {timeout:?}",
                node.name()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Resident memory of one node.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct RssEntry {
    /// The workload that started the node.
    pub(crate) workload: String,
    /// Node name.
    pub(crate) node: String,
    /// Highest VmRSS seen, in MiB (includes LMDB's memory-mapped file pages).
    pub(crate) max_mib: f64,
    /// Highest RssAnon seen, in MiB: memory the process itself allocated (heap, stacks),
    /// without the mapped database files the kernel can drop at will.
    pub(crate) max_anon_mib: f64,
    /// VmRSS after the workload's runs, in MiB.
    pub(crate) after_runs_mib: Option<f64>,
    /// Samples taken.
    pub(crate) samples: u64,
    #[serde(skip)]
    pid: Option<u32>,
}

/// Samples VmRSS of every registered node every 100 ms.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rss {
    /// In the order the nodes were first started.
    entries: Arc<Mutex<Vec<RssEntry>>>,
}

/// VmRSS of `pid` in KiB, from `/proc/<pid>/status`.
pub(crate) fn vm_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// A `/proc/<pid>/status` memory field, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Rss {
    /// Starts the background sampler.
    pub(crate) fn start() -> Rss {
        let rss = Rss::default();
        let sampler = rss.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                sampler.sample_now();
            }
        });
        rss
    }

    /// Samples every registered node once.
    pub(crate) fn sample_now(&self) {
        let mut entries = self.entries.lock().expect("rss lock");
        for entry in entries.iter_mut() {
            if let Some(kib) = entry.pid.and_then(vm_rss_kib) {
                entry.max_mib = entry.max_mib.max(kib as f64 / 1024.0);
                entry.samples += 1;
            }
            if let Some(kib) = entry.pid.and_then(|pid| status_kib(pid, "RssAnon:")) {
                entry.max_anon_mib = entry.max_anon_mib.max(kib as f64 / 1024.0);
            }
        }
    }

    /// Starts (or resumes) sampling `pid` as node `name`.
    pub(crate) fn register(&self, workload: &str, name: &str, pid: u32) {
        let mut entries = self.entries.lock().expect("rss lock");
        match entries.iter_mut().find(|e| e.node == name) {
            Some(entry) => entry.pid = Some(pid),
            None => entries.push(RssEntry {
                workload: workload.to_owned(),
                node: name.to_owned(),
                pid: Some(pid),
                ..RssEntry::default()
            }),
        }
    }

    /// Stops sampling node `name` (it is going away).
    pub(crate) fn unregister(&self, name: &str) {
        if let Some(entry) = self
            .entries
            .lock()
            .expect("rss lock")
            .iter_mut()
            .find(|e| e.node == name)
        {
            entry.pid = None;
        }
    }

    /// Records the node's memory now as its after-runs value and stops sampling it.
    pub(crate) fn after_runs(&self, name: &str) {
        self.sample_now();
        if let Some(entry) = self
            .entries
            .lock()
            .expect("rss lock")
            .iter_mut()
            .find(|e| e.node == name)
        {
            entry.after_runs_mib = entry.pid.and_then(vm_rss_kib).map(|k| k as f64 / 1024.0);
            entry.pid = None;
        }
    }

    /// Every node's figures.
    pub(crate) fn entries(&self) -> Vec<RssEntry> {
        self.entries.lock().expect("rss lock").clone()
    }
}
