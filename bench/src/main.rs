//! `shoal-bench`: starts real `shoal` nodes (or targets a running one) and measures,
//! over the wire, REST reads and writes, Operations API inserts and searches,
//! replication lag, full copies, catch-up after an outage, resident memory, and MQTT
//! publish → deliver throughput and latency (side by side with Mosquitto).
//!
//! See `bench/README.md` for what each workload measures.

mod client;
mod engine;
mod load;
mod mqtt;
mod nodes;
mod repl;
mod report;
mod single;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;

use crate::client::{ClientKind, Credentials};
use crate::nodes::{Launcher, Rss};
use crate::report::{Report, Skipped};

/// Every workload, in the order they run.
const WORKLOADS: &[&str] = &[
    "rest_get",
    "rest_get_role",
    "ops_search_by_id",
    "ops_search_by_value",
    "ops_search_by_conditions",
    "rest_put",
    "ops_insert_100",
    "ops_insert_100_declared",
    "engine_ceiling",
    "replication_lag_2n",
    "replication_lag_3n",
    "full_copy",
    "catch_up",
    "mqtt_qos0_plain",
    "mqtt_qos1_plain",
    "mqtt_qos0_table",
    "mqtt_qos1_table",
];

/// Workloads that run against the single node (started, or `--url`).
const SINGLE: &[&str] = &[
    "rest_get",
    "rest_get_role",
    "ops_search_by_id",
    "ops_search_by_value",
    "ops_search_by_conditions",
    "rest_put",
    "ops_insert_100",
    "ops_insert_100_declared",
];

/// Workload benchmark for shoal, over the wire.
#[derive(Debug, Parser)]
#[command(name = "shoal-bench", version)]
struct Args {
    /// The shoal binary to start nodes from (build it with `cargo build --release -p shoal`).
    #[arg(long)]
    shoal: Option<PathBuf>,
    /// Target a running node's Operations API (e.g. http://127.0.0.1:9925) instead of
    /// starting one; only the single-node workloads run then.
    #[arg(long)]
    url: Option<String>,
    /// The running node's HTTP (REST) URL, for rest_get and rest_put with `--url`.
    #[arg(long)]
    http_url: Option<String>,
    /// Admin user.
    #[arg(long, default_value = "admin")]
    user: String,
    /// Admin password (given to started nodes, used against `--url`).
    #[arg(
        long,
        env = "SHOAL_ADMIN_PASSWORD",
        default_value = "bench-password",
        hide_env_values = true
    )]
    password: String,
    /// Seconds each measured run lasts [default: 10; --quick: 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of warm-up before a workload's runs [default: 3; --quick: 1].
    #[arg(long)]
    warmup: Option<f64>,
    /// Measured runs per workload [default: 3; --quick: 1].
    #[arg(long)]
    runs: Option<usize>,
    /// Concurrent connections, one worker loop each [default: 64].
    #[arg(long)]
    connections: Option<usize>,
    /// Records loaded into bench.items [default: 100000; --quick: 10000].
    #[arg(long)]
    records: Option<u64>,
    /// Records on the source node of full_copy [default: 100000; --quick: 10000].
    #[arg(long)]
    copy_records: Option<u64>,
    /// Seconds node B is down in catch_up while A takes writes [default: 60; --quick: 3].
    #[arg(long)]
    away: Option<f64>,
    /// Marked writes per second in replication_lag.
    #[arg(long, default_value_t = 10)]
    lag_rate: u32,
    /// Run only these workloads, comma-separated (`replication_lag`: both sizes;
    /// `ops_search`: the three searches; `mqtt`: the four MQTT workloads). Memory is
    /// always reported. `--quick` without `--only` leaves the MQTT workloads out.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// A short smoke configuration (explicit flags still win).
    #[arg(long)]
    quick: bool,
    /// JSON results file [default: bench/results/latest.json in the workspace].
    #[arg(long)]
    out: Option<PathBuf>,
    /// SVG chart [default: the JSON path with .svg].
    #[arg(long)]
    svg: Option<PathBuf>,
    /// Folder for the nodes' root folders [default: the system temporary folder].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// HTTP client of the load workers.
    #[arg(long, value_enum, default_value = "hyper")]
    client: ClientKind,
    /// An argument for every started node's `shoal start`, e.g. `--node-arg=--max-batch=500`
    /// (repeatable).
    #[arg(long, allow_hyphen_values = true)]
    node_arg: Vec<String>,
    /// Seed for the random ids and values.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// MQTT: publisher connections.
    #[arg(long, default_value_t = 4)]
    mqtt_publishers: usize,
    /// MQTT: subscriber connections (each receives every message).
    #[arg(long, default_value_t = 1)]
    mqtt_subscribers: usize,
    /// MQTT: messages one publisher may have sent that not every subscriber received yet.
    #[arg(long, default_value_t = 100)]
    mqtt_window: u64,
    /// MQTT: QoS 1 publishes a client may have without PUBACK (rumqttc's `inflight`).
    #[arg(long, default_value_t = 100)]
    mqtt_inflight: u16,
    /// MQTT: client protocol versions, comma-separated (v4 = 3.1.1, v5 = 5.0).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "v4")]
    mqtt_protocol: Vec<mqtt::Protocol>,
    /// MQTT: brokers to measure, comma-separated (shoal1: one node; shoal2: publishers on
    /// node A, subscribers on node B; mosquitto: plain topics only).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "shoal1,shoal2,mosquitto"
    )]
    mqtt_brokers: Vec<mqtt::Target>,
    /// The Mosquitto binary [default: `mosquitto` in PATH, /usr/sbin, /usr/local/sbin].
    #[arg(long)]
    mosquitto: Option<PathBuf>,
}

/// Settings after defaults and `--quick` are applied.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// Measured run length.
    pub(crate) duration: Duration,
    /// Warm-up length.
    pub(crate) warmup: Duration,
    /// Runs per workload.
    pub(crate) runs: usize,
    /// Connections (workers).
    pub(crate) connections: usize,
    /// Records in bench.items.
    pub(crate) records: u64,
    /// Records for full_copy.
    pub(crate) copy_records: u64,
    /// Outage length for catch_up.
    pub(crate) away: Duration,
    /// Marked writes per second.
    pub(crate) lag_rate: u32,
    /// Load client.
    pub(crate) client: ClientKind,
    /// Seed.
    pub(crate) seed: u64,
    /// Admin credentials.
    pub(crate) creds: Credentials,
    /// A tag unique to this invocation (for fresh ids against a running node).
    pub(crate) tag: String,
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn selected(only: &[String], quick: bool) -> anyhow::Result<Vec<&'static str>> {
    if only.is_empty() {
        return Ok(WORKLOADS
            .iter()
            .copied()
            .filter(|w| !quick || !mqtt::WORKLOADS.contains(w))
            .collect());
    }
    let mut chosen = Vec::new();
    for name in only {
        let name = name.trim();
        let matches: Vec<&'static str> = match name {
            "replication_lag" => vec!["replication_lag_2n", "replication_lag_3n"],
            "ops_search" => vec![
                "ops_search_by_id",
                "ops_search_by_value",
                "ops_search_by_conditions",
            ],
            "mqtt" => mqtt::WORKLOADS.to_vec(),
            _ => WORKLOADS.iter().copied().filter(|w| *w == name).collect(),
        };
        if matches.is_empty() {
            bail!(
                "unknown workload '{name}'; known: {}, replication_lag, ops_search, mqtt",
                WORKLOADS.join(", ")
            );
        }
        chosen.extend(matches);
    }
    Ok(WORKLOADS
        .iter()
        .copied()
        .filter(|w| chosen.contains(w))
        .collect())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let q = args.quick;
    let secs = |v: Option<f64>, normal: f64, quick: f64| {
        Duration::from_secs_f64(v.unwrap_or(if q { quick } else { normal }).max(0.0))
    };
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let settings = Settings {
        duration: secs(args.duration, 10.0, 2.0),
        warmup: secs(args.warmup, 3.0, 1.0),
        runs: args.runs.unwrap_or(if q { 1 } else { 3 }).max(1),
        connections: args.connections.unwrap_or(64).max(1),
        records: args
            .records
            .unwrap_or(if q { 10_000 } else { 100_000 })
            .max(100),
        copy_records: args
            .copy_records
            .unwrap_or(if q { 10_000 } else { 100_000 })
            .max(1),
        away: secs(args.away, 60.0, 3.0),
        lag_rate: args.lag_rate.max(1),
        client: args.client,
        seed: args.seed,
        creds: Credentials {
            user: args.user.clone(),
            password: args.password.clone(),
        },
        tag: format!("{nanos:x}"),
    };
    let workloads = selected(&args.only, q)?;
    let mqtt_settings = mqtt::MqttSettings {
        publishers: args.mqtt_publishers.max(1),
        subscribers: args.mqtt_subscribers.max(1),
        window: args.mqtt_window.max(1),
        inflight: args.mqtt_inflight.max(1),
        protocols: args.mqtt_protocol.clone(),
        targets: args.mqtt_brokers.clone(),
        mosquitto: args.mosquitto.clone(),
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("bench/results/latest.json"));
    let svg = args
        .svg
        .clone()
        .unwrap_or_else(|| out.with_extension("svg"));
    let shoal = args
        .shoal
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/release/shoal"));
    // Only the engine ceiling and the MQTT workloads against Mosquitto need no node.
    let needs_nodes = workloads.iter().any(|w| {
        *w != "engine_ceiling"
            && (!mqtt::WORKLOADS.contains(w)
                || mqtt_settings
                    .targets
                    .iter()
                    .any(|t| *t != mqtt::Target::Mosquitto))
    });
    if args.url.is_none() && needs_nodes && !shoal.exists() {
        bail!(
            "no shoal binary at {}: build it with `cargo build --release -p shoal` or pass --shoal",
            shoal.display()
        );
    }

    let rss = Rss::start();
    let launcher = Launcher {
        bin: shoal.clone(),
        data_dir: args.data_dir.clone(),
        creds: settings.creds.clone(),
        rss: rss.clone(),
        node_args: args.node_arg.clone(),
    };
    let mut report = Report {
        meta: json!({
            "started_unix_s": nanos / 1_000_000_000,
            "target": args.url.clone().unwrap_or_else(|| format!("started from {}", shoal.display())),
            "shoal_version": shoal_version(&shoal, args.url.is_some()),
            "client": settings.client,
            "connections": settings.connections,
            "duration_s": settings.duration.as_secs_f64(),
            "warmup_s": settings.warmup.as_secs_f64(),
            "runs": settings.runs,
            "records": settings.records,
            "copy_records": settings.copy_records,
            "away_s": settings.away.as_secs_f64(),
            "lag_rate_per_s": settings.lag_rate,
            "mqtt": {
                "publishers": mqtt_settings.publishers,
                "subscribers": mqtt_settings.subscribers,
                "window_per_publisher": mqtt_settings.window,
                "inflight": mqtt_settings.inflight,
                "protocols": mqtt_settings.protocols,
                "brokers": mqtt_settings.targets,
            },
            "workloads": workloads,
            "cpus": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
            "data_dir": args.data_dir.as_ref().map_or_else(|| std::env::temp_dir().display().to_string(), |d| d.display().to_string()),
            "quick": q,
            "node_args": args.node_arg,
            "git_commit": git_commit(),
            "loadavg_at_start": std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.trim().to_owned()),
        }),
        rows: Vec::new(),
        rss: Vec::new(),
        failed: Vec::new(),
    };

    let singles: Vec<&str> = workloads
        .iter()
        .copied()
        .filter(|w| SINGLE.contains(w))
        .collect();
    if !singles.is_empty() {
        let result = match &args.url {
            Some(url) => {
                single::run_remote(
                    &settings,
                    url,
                    args.http_url.as_deref(),
                    &singles,
                    &mut report,
                )
                .await
            }
            None => single::run_started(&settings, &launcher, &singles, &mut report).await,
        };
        if let Err(e) = result {
            eprintln!("single-node workloads failed: {e:#}");
            report.failed.push(Skipped {
                workload: singles.join(","),
                reason: format!("{e:#}"),
            });
        }
    }
    let others = workloads
        .iter()
        .copied()
        .filter(|w| !SINGLE.contains(w) && !mqtt::WORKLOADS.contains(w));
    for workload in others {
        if args.url.is_some() && workload != "engine_ceiling" {
            report.failed.push(Skipped {
                workload: workload.into(),
                reason: "needs nodes the benchmark starts itself (not with --url)".into(),
            });
            continue;
        }
        eprintln!("== {workload}");
        let result = match workload {
            "replication_lag_2n" | "replication_lag_3n" => {
                // Each size on addresses of its own: 127.0.0.11.. and 127.0.0.21..
                let (nodes, first) = if workload == "replication_lag_2n" {
                    (2, 11)
                } else {
                    (3, 21)
                };
                let ip = Ipv4Addr::new(127, 0, 0, first);
                repl::replication_lag(&settings, &launcher, nodes, ip, &mut report).await
            }
            "engine_ceiling" => {
                engine::engine_ceiling(&settings, args.data_dir.as_deref(), &mut report).await
            }
            "full_copy" => repl::full_copy(&settings, &launcher, &mut report).await,
            "catch_up" => repl::catch_up(&settings, &launcher, &mut report).await,
            other => bail!("no runner for {other}"),
        };
        if let Err(e) = result {
            eprintln!("{workload} failed: {e:#}");
            report.failed.push(Skipped {
                workload: workload.into(),
                reason: format!("{e:#}"),
            });
        }
    }

    let mqtt_workloads: Vec<&'static str> = workloads
        .iter()
        .copied()
        .filter(|w| mqtt::WORKLOADS.contains(w))
        .collect();
    if !mqtt_workloads.is_empty() {
        if args.url.is_some() {
            report.failed.push(Skipped {
                workload: mqtt_workloads.join(","),
                reason: "needs nodes the benchmark starts itself (not with --url)".into(),
            });
        } else {
            mqtt::run(
                &settings,
                &mqtt_settings,
                &launcher,
                &mqtt_workloads,
                &mut report,
            )
            .await;
        }
    }

    report.rss = rss.entries();
    println!("\n{}", report.table());
    report.write_json(&out)?;
    report.write_svg(&svg)?;
    println!("wrote {} and {}", out.display(), svg.display());
    if !report.failed.is_empty() && report.rows.is_empty() {
        bail!("nothing was measured");
    }
    Ok(())
}

/// The workspace's current commit, if git is there.
fn git_commit() -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// `shoal version` of the binary, when the benchmark starts nodes.
fn shoal_version(bin: &std::path::Path, remote: bool) -> Option<String> {
    if remote {
        return None;
    }
    let output = std::process::Command::new(bin)
        .arg("version")
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Creates `database.table` with primary key `id`; an existing table is fine.
pub(crate) async fn create_table(
    control: &client::Control,
    database: &str,
    table: &str,
) -> anyhow::Result<()> {
    create_table_with(control, database, table, None).await
}

/// Creates a table with declared `attributes` (only those marked `indexed` get an index),
/// or with none (every attribute indexed).
pub(crate) async fn create_table_with(
    control: &client::Control,
    database: &str,
    table: &str,
    attributes: Option<serde_json::Value>,
) -> anyhow::Result<()> {
    let mut request = json!({
        "operation": "create_table", "database": database, "table": table, "primary_key": "id"
    });
    if let Some(attributes) = attributes {
        request["attributes"] = attributes;
    }
    let (status, body) = control.op_raw(&request).await?;
    if (200..300).contains(&status) || body.to_string().contains("already exists") {
        return Ok(());
    }
    Err(anyhow::anyhow!(
        "create_table {database}.{table} answered {status}: {body}"
    ))
    .context("creating a benchmark table")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_leaves_mqtt_out_unless_named() {
        let all = selected(&[], false).unwrap_or_default();
        let quick = selected(&[], true).unwrap_or_default();
        assert!(mqtt::WORKLOADS.iter().all(|w| all.contains(w)));
        assert!(mqtt::WORKLOADS.iter().all(|w| !quick.contains(w)));
        assert!(quick.contains(&"rest_get"));
        let named = selected(&["mqtt".to_owned()], true).unwrap_or_default();
        assert_eq!(named, mqtt::WORKLOADS);
    }
}
