//! MQTT workloads: publish → deliver throughput and latency through Shoal's broker (one
//! node, and from a publisher on one node to a subscriber on another) and, for plain
//! topics, through a Mosquitto the benchmark starts itself, in the same run.
//!
//! Every message carries its run, publisher, sequence number and send time; subscribers
//! stamp its arrival. Publishers are held to a window of messages sent but not yet
//! received by every subscriber, so no broker is pushed into unbounded queueing (which
//! would measure the queue, not the broker).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinSet;

use crate::Settings;
use crate::load::percentile_us;
use crate::nodes::{BenchNode, Launcher, free_port};
use crate::report::{Report, Row, Skipped};

/// The MQTT workloads, in the order they run on each broker.
pub(crate) const WORKLOADS: &[&str] = &[
    "mqtt_qos0_plain",
    "mqtt_qos1_plain",
    "mqtt_qos0_table",
    "mqtt_qos1_table",
];

/// The database of the table whose records the table-topic workloads publish (Harper's
/// default database, so the topic is `<table>/<id>`).
const TABLE_DB: &str = "data";
/// The table the table-topic workloads publish records of.
const TABLE: &str = "sensors";
/// Distinct record ids each publisher cycles through on table topics (so the retained
/// publishes are upserts of a bounded set of records).
const IDS_PER_PUBLISHER: u64 = 1000;
/// How long connecting (up to CONNACK) and subscribing (up to SUBACK) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long publishers may take to stop once a run ends.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// After a run, how long subscribers may go without a new message before what is
/// still missing counts as lost.
const DRAIN_IDLE: Duration = Duration::from_secs(3);
/// A publisher whose window has not moved for this long writes what it has outstanding
/// off as lost (the broker dropped it) and goes on.
const LOSS_TIMEOUT: Duration = Duration::from_secs(1);
/// Requests a client queues before `publish` waits for its event loop.
const CLIENT_CHANNEL: usize = 64;

/// A broker the MQTT workloads run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// One Shoal node: publishers and subscribers on it.
    Shoal1,
    /// Two Shoal nodes: publishers on A, subscribers on B.
    Shoal2,
    /// Mosquitto, started by the benchmark (plain topics only).
    Mosquitto,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Shoal1 => "shoal, 1 node",
            Target::Shoal2 => "shoal, 2 nodes",
            Target::Mosquitto => "mosquitto",
        }
    }
}

/// The MQTT protocol version of the benchmark's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Protocol {
    /// MQTT 3.1.1.
    V4,
    /// MQTT 5.0.
    V5,
}

/// Settings of the MQTT workloads.
#[derive(Debug, Clone)]
pub(crate) struct MqttSettings {
    /// Publisher connections.
    pub(crate) publishers: usize,
    /// Subscriber connections (each receives every message).
    pub(crate) subscribers: usize,
    /// Messages one publisher may have sent that not every subscriber has received yet.
    pub(crate) window: u64,
    /// QoS 1 publishes a client may have without PUBACK (rumqttc's `inflight`).
    pub(crate) inflight: u16,
    /// Client protocol versions, each measured.
    pub(crate) protocols: Vec<Protocol>,
    /// Brokers to measure.
    pub(crate) targets: Vec<Target>,
    /// The Mosquitto binary (`None`: looked up in `PATH` and the usual sbin folders).
    pub(crate) mosquitto: Option<PathBuf>,
}

/// One MQTT workload: its QoS and whether it publishes table records.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    qos1: bool,
    table: bool,
}

impl Workload {
    fn parse(name: &'static str) -> Option<Workload> {
        let (qos1, table) = match name {
            "mqtt_qos0_plain" => (false, false),
            "mqtt_qos1_plain" => (true, false),
            "mqtt_qos0_table" => (false, true),
            "mqtt_qos1_table" => (true, true),
            _ => return None,
        };
        Some(Workload { name, qos1, table })
    }

    fn row_name(self, protocol: Protocol, target: Target) -> String {
        let version = match protocol {
            Protocol::V4 => "",
            Protocol::V5 => "_v5",
        };
        format!("{}{version} ({})", self.name, target.label())
    }
}

/// Where the clients of one measurement connect.
#[derive(Debug, Clone)]
struct Ends {
    publish: SocketAddr,
    subscribe: SocketAddr,
    user: String,
    password: String,
}

/// Runs the selected MQTT workloads against every selected broker.
pub(crate) async fn run(
    settings: &Settings,
    mqtt: &MqttSettings,
    launcher: &Launcher,
    names: &[&'static str],
    report: &mut Report,
) {
    let workloads: Vec<Workload> = names.iter().copied().filter_map(Workload::parse).collect();
    let first_row = report.rows.len();
    for &target in &mqtt.targets {
        let runnable: Vec<Workload> = workloads
            .iter()
            .copied()
            .filter(|w| target != Target::Mosquitto || !w.table)
            .collect();
        if runnable.is_empty() {
            continue;
        }
        eprintln!("== mqtt ({})", target.label());
        let rows: Vec<(Workload, Protocol)> = runnable
            .iter()
            .flat_map(|&w| mqtt.protocols.iter().map(move |&p| (w, p)))
            .collect();
        let fail_all = |report: &mut Report, reason: &str| {
            for (w, p) in &rows {
                report.failed.push(Skipped {
                    workload: w.row_name(*p, target),
                    reason: reason.to_owned(),
                });
            }
        };
        let result = match target {
            Target::Mosquitto => on_mosquitto(settings, mqtt, launcher, &rows, report).await,
            Target::Shoal1 | Target::Shoal2 => {
                on_shoal(settings, mqtt, launcher, target, &rows, report).await
            }
        };
        if let Err(e) = result {
            let reason = format!("{e:#}");
            eprintln!("   {}: {reason}", target.label());
            fail_all(report, &reason);
        }
    }
    // Side by side: each workload's rows together, brokers in the order they ran.
    report.rows[first_row..]
        .sort_by_key(|row| WORKLOADS.iter().position(|w| row.workload.starts_with(w)));
}

/// Measures each row against `ends`; a row that fails is reported and the next runs.
async fn measure_rows(
    settings: &Settings,
    mqtt: &MqttSettings,
    target: Target,
    ends: &Ends,
    rows: &[(Workload, Protocol)],
    report: &mut Report,
) {
    for &(workload, protocol) in rows {
        let name = workload.row_name(protocol, target);
        eprintln!("== {name}");
        match measure(settings, mqtt, ends, workload, protocol, &name).await {
            Ok(row) => report.rows.push(row),
            Err(e) => {
                let reason = format!("{e:#}");
                eprintln!("   {name} failed: {reason}");
                report.failed.push(Skipped {
                    workload: name,
                    reason,
                });
            }
        }
    }
}

/// The MQTT address from a node's ready line (`mqtt=`).
fn mqtt_addr(node: &BenchNode) -> anyhow::Result<SocketAddr> {
    node.node
        .ready_line()
        .addr("mqtt")
        .context("node has no MQTT listener (does this shoal binary have the broker?)")
}

async fn on_shoal(
    settings: &Settings,
    mqtt: &MqttSettings,
    launcher: &Launcher,
    target: Target,
    rows: &[(Workload, Protocol)],
    report: &mut Report,
) -> anyhow::Result<()> {
    let nodes = if target == Target::Shoal2 {
        let spec = crate::repl::ClusterSpec {
            workload: "mqtt_2n",
            prefix: "mqtt2-",
            count: 2,
            first_ip: Ipv4Addr::new(127, 0, 0, 61),
            database: TABLE_DB,
            tables: &[TABLE],
            extra: &[],
        };
        crate::repl::cluster(settings, launcher, &spec).await?
    } else {
        let node = launcher
            .start("mqtt_1n", "mqtt1", Ipv4Addr::new(127, 0, 0, 51), &[])
            .await?;
        crate::create_table(&node.control, TABLE_DB, TABLE).await?;
        vec![node]
    };
    let result = async {
        let (first, last) = (&nodes[0], &nodes[nodes.len() - 1]);
        let ends = Ends {
            publish: mqtt_addr(first)?,
            subscribe: mqtt_addr(last)?,
            user: settings.creds.user.clone(),
            password: settings.creds.password.clone(),
        };
        measure_rows(settings, mqtt, target, &ends, rows, report).await;
        anyhow::Ok(())
    }
    .await;
    for node in nodes {
        node.finish(&launcher.rss).await?;
    }
    result
}

/// The Mosquitto binary: the given path, or `mosquitto` in `PATH` or an sbin folder.
fn find_mosquitto(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = given {
        return path.is_file().then(|| path.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mosquitto"))
        .find(|candidate| candidate.is_file())
}

/// A Mosquitto started by the benchmark on 127.0.0.1 and a free port, anonymous, without
/// persistence. Dropping it kills the process and removes its folder.
struct Mosquitto {
    child: tokio::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    async fn start(bin: &Path, launcher: &Launcher) -> anyhow::Result<Mosquitto> {
        let ip = Ipv4Addr::LOCALHOST;
        let port = free_port(ip)?;
        let dir = tempfile::Builder::new()
            .prefix("shoal-bench-mosquitto-")
            .tempdir()?;
        let config = dir.path().join("mosquitto.conf");
        std::fs::write(
            &config,
            // No queue limit: the benchmark bounds what is outstanding itself (publishers x
            // window), and with its default of 1000, Mosquitto 2.0.11 dropped QoS 1
            // messages for the online subscriber with only 400 outstanding.
            format!(
                "listener {port} {ip}\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nset_tcp_nodelay true\n"
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("mosquitto.log"))?;
        let child = tokio::process::Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut mosquitto = Mosquitto {
            child,
            addr: SocketAddr::from((ip, port)),
            dir,
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        while tokio::net::TcpStream::connect(mosquitto.addr)
            .await
            .is_err()
        {
            if let Some(status) = mosquitto.child.try_wait()? {
                bail!(
                    "mosquitto exited with {status} before listening: {}",
                    mosquitto.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "mosquitto did not listen on {} within {HANDSHAKE_TIMEOUT:?}: {}",
                    mosquitto.addr,
                    mosquitto.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(pid) = mosquitto.child.id() {
            launcher.rss.register("mqtt", "mosquitto", pid);
        }
        Ok(mosquitto)
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }
}

async fn on_mosquitto(
    settings: &Settings,
    mqtt: &MqttSettings,
    launcher: &Launcher,
    rows: &[(Workload, Protocol)],
    report: &mut Report,
) -> anyhow::Result<()> {
    let Some(bin) = find_mosquitto(mqtt.mosquitto.as_deref()) else {
        eprintln!("   mosquitto not found: skipping the mosquitto rows");
        for (w, p) in rows {
            report.failed.push(Skipped {
                workload: w.row_name(*p, Target::Mosquitto),
                reason: "skipped: no mosquitto binary (install the Debian package `mosquitto` or pass --mosquitto)".into(),
            });
        }
        return Ok(());
    };
    let mut mosquitto = Mosquitto::start(&bin, launcher).await?;
    eprintln!("   {} on {}", bin.display(), mosquitto.addr);
    let ends = Ends {
        publish: mosquitto.addr,
        subscribe: mosquitto.addr,
        user: settings.creds.user.clone(),
        password: settings.creds.password.clone(),
    };
    measure_rows(settings, mqtt, Target::Mosquitto, &ends, rows, report).await;
    launcher.rss.after_runs("mosquitto");
    mosquitto.child.kill().await?;
    if std::env::var_os(shoal_testkit::KEEP_DIRS_ENV).is_some() {
        eprintln!("   kept {}", mosquitto.dir.keep().display());
    }
    Ok(())
}

/// A client of either protocol version.
enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop of a [`Client`].
enum Driver {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// What the event loop yielded, in the terms the benchmark needs.
enum Got {
    ConnAck,
    SubAck(Result<(), String>),
    Publish(Bytes),
    Closed,
    Other,
}

impl Client {
    /// Connects (up to CONNACK); `role` names the connection in errors.
    async fn connect(
        ends: &Ends,
        addr: SocketAddr,
        protocol: Protocol,
        inflight: u16,
        role: &str,
    ) -> anyhow::Result<(Client, Driver)> {
        let id = format!("shoal-bench-{role}-{}", next_id());
        let host = addr.ip().to_string();
        let (client, mut driver) = match protocol {
            Protocol::V4 => {
                let mut options = rumqttc::MqttOptions::new(id, host, addr.port());
                options
                    .set_keep_alive(Duration::from_secs(30))
                    .set_credentials(&ends.user, &ends.password)
                    .set_clean_session(true)
                    .set_inflight(inflight.max(1));
                let (client, mut events) = rumqttc::AsyncClient::new(options, CLIENT_CHANNEL);
                events.set_network_options(network());
                (Client::V4(client), Driver::V4(Box::new(events)))
            }
            Protocol::V5 => {
                let mut options = rumqttc::v5::MqttOptions::new(id, host, addr.port());
                options
                    .set_keep_alive(Duration::from_secs(30))
                    .set_credentials(&ends.user, &ends.password)
                    .set_clean_start(true)
                    .set_outgoing_inflight_upper_limit(inflight.max(1))
                    .set_network_options(network());
                let (client, events) = rumqttc::v5::AsyncClient::new(options, CLIENT_CHANNEL);
                (Client::V5(client), Driver::V5(Box::new(events)))
            }
        };
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match driver.next().await? {
                    Got::ConnAck => return anyhow::Ok(()),
                    Got::Closed => bail!("the broker closed the connection before CONNACK"),
                    _ => {}
                }
            }
        })
        .await;
        match connected {
            Ok(Ok(())) => Ok((client, driver)),
            Ok(Err(e)) => Err(e.context(format!("MQTT {role} connecting to {addr}"))),
            Err(_) => {
                bail!("MQTT {role} connecting to {addr}: no CONNACK within {HANDSHAKE_TIMEOUT:?}")
            }
        }
    }

    async fn subscribe(&self, driver: &mut Driver, filter: &str, qos1: bool) -> anyhow::Result<()> {
        match self {
            Client::V4(c) => c.subscribe(filter, qos_v4(qos1)).await?,
            Client::V5(c) => c.subscribe(filter, qos_v5(qos1)).await?,
        }
        let acked = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match driver.next().await? {
                    Got::SubAck(answer) => {
                        return answer.map_err(|e| anyhow::anyhow!("SUBSCRIBE {filter}: {e}"));
                    }
                    Got::Closed => bail!("the broker closed the connection before SUBACK"),
                    _ => {}
                }
            }
        })
        .await;
        acked.unwrap_or_else(|_| bail!("no SUBACK for {filter} within {HANDSHAKE_TIMEOUT:?}"))
    }

    async fn publish(
        &self,
        topic: &str,
        qos1: bool,
        retain: bool,
        payload: Vec<u8>,
    ) -> anyhow::Result<()> {
        match self {
            Client::V4(c) => c.publish(topic, qos_v4(qos1), retain, payload).await?,
            Client::V5(c) => c.publish(topic, qos_v5(qos1), retain, payload).await?,
        }
        Ok(())
    }

    async fn disconnect(&self) {
        let _ = match self {
            Client::V4(c) => c.disconnect().await.map_err(|_| ()),
            Client::V5(c) => c.disconnect().await.map_err(|_| ()),
        };
    }
}

/// Socket options of every client: no Nagle delay (as the HTTP workloads' clients), so
/// small messages are not held back waiting for the broker's delayed ACKs.
fn network() -> rumqttc::NetworkOptions {
    let mut options = rumqttc::NetworkOptions::new();
    options.set_tcp_nodelay(true);
    options
}

fn qos_v4(qos1: bool) -> rumqttc::QoS {
    if qos1 {
        rumqttc::QoS::AtLeastOnce
    } else {
        rumqttc::QoS::AtMostOnce
    }
}

fn qos_v5(qos1: bool) -> rumqttc::v5::mqttbytes::QoS {
    if qos1 {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    }
}

impl Driver {
    /// The next event; a transport or protocol error is an `Err`.
    async fn next(&mut self) -> anyhow::Result<Got> {
        use rumqttc::Outgoing;
        Ok(match self {
            Driver::V4(events) => {
                use rumqttc::{Event, Packet, SubscribeReasonCode};
                match events.poll().await? {
                    Event::Incoming(Packet::ConnAck(_)) => Got::ConnAck,
                    Event::Incoming(Packet::SubAck(ack)) => Got::SubAck(
                        if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                            Err(format!("refused: {:?}", ack.return_codes))
                        } else {
                            Ok(())
                        },
                    ),
                    Event::Incoming(Packet::Publish(p)) => Got::Publish(p.payload),
                    Event::Incoming(Packet::Disconnect) => bail!("the broker sent DISCONNECT"),
                    Event::Outgoing(Outgoing::Disconnect) => Got::Closed,
                    _ => Got::Other,
                }
            }
            Driver::V5(events) => {
                use rumqttc::v5::Event;
                use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
                match events.poll().await? {
                    Event::Incoming(Packet::ConnAck(_)) => Got::ConnAck,
                    Event::Incoming(Packet::SubAck(ack)) => Got::SubAck(
                        if ack
                            .return_codes
                            .iter()
                            .all(|c| matches!(c, SubscribeReasonCode::Success(_)))
                        {
                            Ok(())
                        } else {
                            Err(format!("refused: {:?}", ack.return_codes))
                        },
                    ),
                    Event::Incoming(Packet::Publish(p)) => Got::Publish(p.payload),
                    Event::Incoming(Packet::Disconnect(d)) => {
                        bail!("the broker sent DISCONNECT ({:?})", d.reason_code)
                    }
                    Event::Outgoing(Outgoing::Disconnect) => Got::Closed,
                    _ => Got::Other,
                }
            }
        })
    }
}

/// A process-wide counter: client ids and run ids never repeat within a benchmark.
fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Nanoseconds since the first call: the clock send times are written in.
fn clock_ns() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What every message carries.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
struct Mark {
    /// Run.
    r: u64,
    /// Publisher.
    p: usize,
    /// Sequence number within the publisher's run.
    s: u64,
    /// Send time, [`clock_ns`].
    t: u64,
}

/// A message's payload: a small JSON record (for table topics, with the record's `id`).
fn payload(id: Option<&str>, mark: &Mark) -> Vec<u8> {
    let Mark { r, p, s, t } = mark;
    match id {
        Some(id) => format!(r#"{{"id":"{id}","r":{r},"p":{p},"s":{s},"t":{t}}}"#),
        None => format!(r#"{{"r":{r},"p":{p},"s":{s},"t":{t}}}"#),
    }
    .into_bytes()
}

/// State shared by the publishers, the subscribers and the run loop of one measurement.
struct Flow {
    /// The run the publishers are in; 0 between runs.
    run: watch::Sender<u64>,
    /// The run whose messages the subscribers count.
    current: AtomicU64,
    /// Whether the measured window is open.
    measuring: AtomicBool,
    /// `[subscriber][publisher]`: highest sequence number received in this run, plus one.
    seen: Vec<Vec<AtomicU64>>,
    /// `[subscriber]`: messages of this run received.
    received: Vec<AtomicU64>,
    /// Messages received inside the window, over all subscribers.
    in_window: AtomicU64,
    /// Publish → receipt of every message received inside the window (µs).
    latencies: Mutex<Vec<u32>>,
    /// `[publisher]`: woken when a subscriber received one of its messages.
    wake: Vec<Notify>,
    /// The first connection failure, which fails the measurement.
    failure: Mutex<Option<String>>,
    /// Set while the clients are being closed, when errors are expected.
    closing: AtomicBool,
}

impl Flow {
    fn fail(&self, what: String) {
        if self.closing.load(Ordering::Relaxed) {
            return;
        }
        self.failure
            .lock()
            .expect("failure lock")
            .get_or_insert(what);
    }

    fn failed(&self) -> Option<String> {
        self.failure.lock().expect("failure lock").clone()
    }

    /// How many of publisher `p`'s messages every subscriber has seen (by sequence).
    fn acked(&self, p: usize) -> u64 {
        self.seen
            .iter()
            .map(|s| s[p].load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    fn receive(&self, subscriber: usize, bytes: &[u8]) {
        let now = clock_ns();
        let Ok(mark) = serde_json::from_slice::<Mark>(bytes) else {
            return;
        };
        if mark.r != self.current.load(Ordering::Acquire) || mark.p >= self.wake.len() {
            // A retained message or a late one from an earlier run.
            return;
        }
        self.seen[subscriber][mark.p].fetch_max(mark.s + 1, Ordering::AcqRel);
        self.received[subscriber].fetch_add(1, Ordering::Relaxed);
        if self.measuring.load(Ordering::Acquire) {
            self.in_window.fetch_add(1, Ordering::Relaxed);
            let us = now.saturating_sub(mark.t) / 1000;
            self.latencies
                .lock()
                .expect("latency lock")
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
        self.wake[mark.p].notify_one();
    }
}

/// What one publisher sent in one run.
struct Sent {
    run: u64,
    count: u64,
}

/// One publisher: in each run, sends messages as fast as its window (and, at QoS 1, its
/// PUBACKs) allow, until the run ends.
#[allow(clippy::too_many_arguments)]
async fn publisher(
    client: Client,
    index: usize,
    flow: Arc<Flow>,
    workload: Workload,
    window: u64,
    topic: String,
    mut run: watch::Receiver<u64>,
    sent: mpsc::UnboundedSender<Sent>,
) {
    let mut last = 0;
    loop {
        let Ok(r) = run.wait_for(|r| *r != 0 && *r != last).await.map(|r| *r) else {
            return;
        };
        last = r;
        let mut seq: u64 = 0;
        // Messages written off as lost, so that losses do not stall the window for good.
        let mut lost: u64 = 0;
        'run: while *run.borrow() == r {
            let mut progress = (flow.acked(index), Instant::now());
            while seq.saturating_sub(lost + flow.acked(index)) >= window {
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), flow.wake[index].notified())
                        .await;
                if *run.borrow() != r {
                    break 'run;
                }
                let acked = flow.acked(index);
                if acked != progress.0 {
                    progress = (acked, Instant::now());
                } else if progress.1.elapsed() > LOSS_TIMEOUT {
                    lost = seq.saturating_sub(acked);
                }
            }
            let mark = Mark {
                r,
                p: index,
                s: seq,
                t: clock_ns(),
            };
            let (topic, body) = if workload.table {
                let id = format!("p{index}-{}", seq % IDS_PER_PUBLISHER);
                (format!("{topic}/{id}"), payload(Some(&id), &mark))
            } else {
                (topic.clone(), payload(None, &mark))
            };
            if let Err(e) = client
                .publish(&topic, workload.qos1, workload.table, body)
                .await
            {
                flow.fail(format!("publisher {index}: {e:#}"));
                let _ = sent.send(Sent { run: r, count: seq });
                return;
            }
            seq += 1;
        }
        if sent.send(Sent { run: r, count: seq }).is_err() {
            return;
        }
    }
}

/// Measures one workload: warm-up, then `settings.runs` runs of `settings.duration`.
async fn measure(
    settings: &Settings,
    mqtt: &MqttSettings,
    ends: &Ends,
    workload: Workload,
    protocol: Protocol,
    name: &str,
) -> anyhow::Result<Row> {
    let (publishers, subscribers) = (mqtt.publishers.max(1), mqtt.subscribers.max(1));
    let (run_tx, run_rx) = watch::channel(0);
    let flow = Arc::new(Flow {
        run: run_tx,
        current: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
        seen: (0..subscribers)
            .map(|_| (0..publishers).map(|_| AtomicU64::new(0)).collect())
            .collect(),
        received: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
        in_window: AtomicU64::new(0),
        latencies: Mutex::new(Vec::new()),
        wake: (0..publishers).map(|_| Notify::new()).collect(),
        failure: Mutex::new(None),
        closing: AtomicBool::new(false),
    });
    let (topic, filter) = if workload.table {
        (TABLE.to_owned(), format!("{TABLE}/+"))
    } else {
        let base = format!("shoal-bench/{}", settings.tag);
        (format!("{base}/plain"), format!("{base}/+"))
    };
    let mut tasks = JoinSet::new();
    let mut clients = Vec::new();

    // Subscribers first, so that every message published is delivered.
    for s in 0..subscribers {
        let role = format!("subscriber-{s}");
        let (client, mut driver) =
            Client::connect(ends, ends.subscribe, protocol, mqtt.inflight, &role).await?;
        client
            .subscribe(&mut driver, &filter, workload.qos1)
            .await
            .with_context(|| format!("MQTT {role} on {}", ends.subscribe))?;
        let flow = flow.clone();
        tasks.spawn(async move {
            loop {
                match driver.next().await {
                    Ok(Got::Publish(bytes)) => flow.receive(s, &bytes),
                    Ok(Got::Closed) => return,
                    Ok(_) => {}
                    Err(e) => {
                        flow.fail(format!("MQTT {role}: {e:#}"));
                        return;
                    }
                }
            }
        });
        clients.push(client);
    }
    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
    for p in 0..publishers {
        let role = format!("publisher-{p}");
        let (client, mut driver) =
            Client::connect(ends, ends.publish, protocol, mqtt.inflight, &role).await?;
        let events = flow.clone();
        tasks.spawn(async move {
            loop {
                match driver.next().await {
                    Ok(Got::Closed) => return,
                    Ok(_) => {}
                    Err(e) => {
                        events.fail(format!("MQTT {role}: {e:#}"));
                        return;
                    }
                }
            }
        });
        let (handle, flow, sent, run) = (
            match &client {
                Client::V4(c) => Client::V4(c.clone()),
                Client::V5(c) => Client::V5(c.clone()),
            },
            flow.clone(),
            sent_tx.clone(),
            run_rx.clone(),
        );
        let (window, topic) = (mqtt.window, topic.clone());
        tasks.spawn(publisher(
            handle, p, flow, workload, window, topic, run, sent,
        ));
        clients.push(client);
    }
    drop(sent_tx);

    let mut row = Row::new(name, "msgs/s").with_note(format!(
        "{publishers} pub -> {subscribers} sub, {}, window {}/pub{}",
        if workload.table {
            format!("retained JSON records {TABLE}/<id>")
        } else {
            "plain topic".to_owned()
        },
        mqtt.window,
        if workload.qos1 {
            format!(", inflight {}", mqtt.inflight)
        } else {
            String::new()
        }
    ));
    let outcome = async {
        eprintln!("   connected; warm-up {:?}", settings.warmup);
        one_run(&flow, &mut sent_rx, publishers, settings.warmup).await?;
        let mut runs = Vec::new();
        for run in 1..=settings.runs {
            let mut stats = one_run(&flow, &mut sent_rx, publishers, settings.duration).await?;
            let rate = stats.in_window as f64 / stats.elapsed.as_secs_f64();
            let (p50, p99) = (
                percentile_us(&mut stats.latencies, 0.5).map(|us| us / 1000.0),
                percentile_us(&mut stats.latencies, 0.99).map(|us| us / 1000.0),
            );
            eprintln!(
                "   run {run}/{}: {rate:.0} msgs/s, p50 {:.2} ms, p99 {:.2} ms; {} published, {} delivered, {} lost",
                settings.runs,
                p50.unwrap_or(f64::NAN),
                p99.unwrap_or(f64::NAN),
                stats.published,
                stats.delivered,
                stats.lost
            );
            row.push(Some(rate), p50, p99);
            row.errors += stats.lost;
            runs.push(json!({
                "published": stats.published,
                "delivered": stats.delivered,
                "lost": stats.lost,
                "in_window": stats.in_window,
            }));
        }
        row.detail = json!({
            "protocol": protocol,
            "qos": u8::from(workload.qos1),
            "table_topics": workload.table,
            "retain": workload.table,
            "publishers": publishers,
            "subscribers": subscribers,
            "window_per_publisher": mqtt.window,
            "inflight": mqtt.inflight,
            "publish_addr": ends.publish.to_string(),
            "subscribe_addr": ends.subscribe.to_string(),
            "runs": runs,
            "errors": "messages published and never delivered (per subscriber)",
        });
        anyhow::Ok(())
    }
    .await;
    flow.closing.store(true, Ordering::Relaxed);
    let _ = flow.run.send(0);
    for client in &clients {
        client.disconnect().await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    outcome.map(|()| row)
}

/// What one run measured.
struct RunStats {
    elapsed: Duration,
    in_window: u64,
    latencies: Vec<u32>,
    published: u64,
    delivered: u64,
    lost: u64,
}

/// One run: the publishers send for `duration`; then what they sent is drained.
async fn one_run(
    flow: &Flow,
    sent: &mut mpsc::UnboundedReceiver<Sent>,
    publishers: usize,
    duration: Duration,
) -> anyhow::Result<RunStats> {
    let r = next_id();
    flow.current.store(r, Ordering::Release);
    for counter in flow.seen.iter().flatten().chain(&flow.received) {
        counter.store(0, Ordering::Release);
    }
    flow.in_window.store(0, Ordering::Release);
    flow.latencies.lock().expect("latency lock").clear();
    flow.measuring.store(true, Ordering::Release);
    let start = Instant::now();
    let _ = flow.run.send(r);
    let end = start + duration;
    while Instant::now() < end {
        if let Some(failure) = flow.failed() {
            bail!("{failure}");
        }
        tokio::time::sleep((end - Instant::now()).min(Duration::from_millis(100))).await;
    }
    flow.measuring.store(false, Ordering::Release);
    let elapsed = start.elapsed();
    let in_window = flow.in_window.load(Ordering::Acquire);
    let latencies = std::mem::take(&mut *flow.latencies.lock().expect("latency lock"));
    let _ = flow.run.send(0);

    let mut published = 0;
    let mut reported = 0;
    let stop = Instant::now() + STOP_TIMEOUT;
    while reported < publishers {
        match tokio::time::timeout_at(stop.into(), sent.recv()).await {
            Ok(Some(s)) if s.run == r => {
                published += s.count;
                reported += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!(
                "publishers ended: {}",
                flow.failed().unwrap_or_else(|| "no reason".into())
            ),
            Err(_) => bail!(
                "{} of {publishers} publishers did not stop within {STOP_TIMEOUT:?} (the broker stopped accepting publishes){}",
                publishers - reported,
                flow.failed().map(|f| format!(": {f}")).unwrap_or_default()
            ),
        }
    }

    // Drain: wait until every subscriber has everything, or nothing arrives for a while.
    let total = |flow: &Flow| -> u64 {
        flow.received
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .sum()
    };
    let want = published * flow.received.len() as u64;
    let mut last = (total(flow), Instant::now());
    while flow
        .received
        .iter()
        .any(|c| c.load(Ordering::Acquire) < published)
    {
        if let Some(failure) = flow.failed() {
            bail!("{failure}");
        }
        let now = total(flow);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > DRAIN_IDLE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = total(flow);
    if in_window == 0 {
        bail!(
            "no message was delivered in {elapsed:?} ({published} published){}",
            flow.failed().map(|f| format!(": {f}")).unwrap_or_default()
        );
    }
    Ok(RunStats {
        elapsed,
        in_window,
        latencies,
        published,
        delivered,
        lost: want.saturating_sub(delivered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_mark() {
        let mark = Mark {
            r: 3,
            p: 1,
            s: 42,
            t: 123_456,
        };
        for id in [None, Some("p1-42")] {
            let bytes = payload(id, &mark);
            assert_eq!(serde_json::from_slice::<Mark>(&bytes).ok(), Some(mark));
        }
        let record: serde_json::Value =
            serde_json::from_slice(&payload(Some("p1-42"), &mark)).unwrap_or_default();
        assert_eq!(record["id"], json!("p1-42"));
    }

    fn ends() -> Ends {
        Ends {
            publish: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            subscribe: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            user: "admin".into(),
            password: "secret".into(),
        }
    }

    /// A broker that accepts connections and drops them (as a broker without a
    /// connection handler does) is a clear error, for either protocol, not a hang.
    #[tokio::test]
    async fn a_dropped_connection_is_an_error() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                drop(stream);
            }
        });
        for protocol in [Protocol::V4, Protocol::V5] {
            let error = Client::connect(&ends(), addr, protocol, 10, "subscriber-0")
                .await
                .err()
                .map(|e| format!("{e:#}"));
            let error = error.expect("connecting to a broker that drops the stream must fail");
            assert!(
                error.contains(&format!("MQTT subscriber-0 connecting to {addr}")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_error() {
        let addr = {
            let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
            listener.local_addr().expect("address")
        };
        let error = Client::connect(&ends(), addr, Protocol::V4, 10, "publisher-1")
            .await
            .err()
            .map(|e| format!("{e:#}"));
        let error = error.expect("connecting to a closed port must fail");
        assert!(error.contains("publisher-1"), "{error}");
    }

    #[test]
    fn row_names() {
        let w =
            Workload::parse("mqtt_qos1_table").map(|w| w.row_name(Protocol::V4, Target::Shoal2));
        assert_eq!(w.as_deref(), Some("mqtt_qos1_table (shoal, 2 nodes)"));
        let w =
            Workload::parse("mqtt_qos0_plain").map(|w| w.row_name(Protocol::V5, Target::Mosquitto));
        assert_eq!(w.as_deref(), Some("mqtt_qos0_plain_v5 (mosquitto)"));
    }
}
