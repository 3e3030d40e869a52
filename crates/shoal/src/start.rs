//! `shoal start`: open the stores, make sure an admin exists, serve, and shut down cleanly.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shoal_auth::Auth;
use shoal_cluster::{Cluster, ClusterOptions};
use shoal_components::Components;
use shoal_mqtt::{Broker, BrokerParts};
use shoal_server::{
    App, AppState, BodyBudget, MqttServer, NodeInfo, Port, QueryOptions, RestOptions, ServeOptions,
    ServerStats, ServerTls, StoreTables, TlsOptions,
};
use shoal_store::{Retention, Store, StoreOptions};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::{Config, Overrides};
use crate::credentials::Users;
use crate::runfile::{self, RunFile};

/// How long the workers (requests in flight, links, subscriptions) get to finish on
/// shutdown before they are aborted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often idle databases are asked to trim their logs (busy ones trim as they commit).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Runs a node until SIGTERM or SIGINT.
pub(crate) fn run(root: &Path, overrides: &Overrides) -> anyhow::Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let config = Config::load(root, overrides)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.logging.level)
                .context("logging.level")?,
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // One node per root: a second one would corrupt nothing (LMDB locks) but would
    // fight over ports and the run file.
    let lock = std::fs::File::create(root.join("shoal.lock"))?;
    if lock.try_lock().is_err() {
        bail!("another shoal node is running with root {}", root.display());
    }
    return_freed_memory();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(root, config))
}

/// Makes glibc give large freed blocks back to the system. By default it raises its mmap
/// threshold to the size of each large block freed (up to 32 MiB), so after requests with
/// multi-MiB bodies later large allocations come from arenas that never shrink: measured,
/// a node that had served such bodies kept ~1 GiB of anonymous memory idle, against
/// ~25 MiB with the threshold fixed. Fixing it also fixes the trim threshold.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
        #[allow(unsafe_code)]
        // Safety: mallopt only sets allocator parameters; it is called before any other
        // thread exists, and the value is in the documented range.
        let ok = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if ok != 1 {
            tracing::warn!("could not fix the allocator's mmap threshold");
        }
    }
}

async fn serve(root: &Path, config: Config) -> anyhow::Result<()> {
    let name = config.node.name.clone();
    tracing::info!(node = %name, root = %root.display(), "opening stores");
    let mut options = StoreOptions::new(root.join("database"), &name);
    options.map_size = config.storage.map_size_mb << 20;
    options.max_batch = config.storage.max_batch.max(1);
    options.max_clock_offset_ms = config.replication.max_clock_offset_ms;
    options.clock_offset_ms = config.node.clock_offset_ms;
    if options.clock_offset_ms != 0 {
        tracing::warn!(
            offset_ms = options.clock_offset_ms,
            "this node's clock is shifted (node.clock_offset_ms)"
        );
    }
    // A transaction replicates in one frame, whatever the sender's batch target.
    options.max_transaction_bytes = config
        .storage
        .max_transaction_bytes
        .clamp(1, shoal_cluster::MAX_FRAME_BYTES / 2);
    options.retention = Retention {
        max_age_ms: config
            .transaction_log
            .retention_seconds
            .saturating_mul(1000),
        max_bytes: config.transaction_log.max_bytes,
    };
    let store = Arc::new(Store::open(options).context("opening stores")?);
    // One registry for the node: the store's writers are in it already, and every other
    // long-running task joins them, so that system_information lists them all and
    // shutdown awaits them all.
    let workers = store.workers().clone();

    let auth = Arc::new(Auth::with_options(store.clone(), config.auth.options()));
    let admin = std::env::var("SHOAL_ADMIN_USERNAME").unwrap_or_else(|_| "admin".into());
    let password = std::env::var("SHOAL_ADMIN_PASSWORD").ok();
    if let Some(generated) = auth.bootstrap(&admin, password.as_deref()).await? {
        // Printed once: the hash is all that is kept.
        println!("created user '{admin}' with password: {generated}");
    }

    let components = Arc::new(Components::new(root.join("components")));
    // A component that fails to load is logged and skipped, never fatal.
    components.load(&StoreTables(&store)).await;

    let replication_listen = format!("{}:{}", config.network.host, config.replication.port)
        .parse()
        .with_context(|| {
            format!(
                "replication address {}:{}",
                config.network.host, config.replication.port
            )
        })?;
    let mut cluster_options = ClusterOptions::new(&name, replication_listen);
    cluster_options.ping_interval =
        Duration::from_millis(config.replication.ping_interval_ms.max(10));
    cluster_options.idle_timeout =
        Duration::from_millis(config.replication.idle_timeout_ms.max(100));
    cluster_options.batch_bytes = config.replication.batch_bytes.max(1);
    cluster_options.receive_window_bytes = config.replication.receive_window_bytes.max(1);
    cluster_options.write_timeout =
        Duration::from_millis(config.replication.write_timeout_ms.max(100));
    cluster_options.relay_queue_messages = config.replication.relay_queue_messages.max(1);
    cluster_options.relay_queue_bytes = config.replication.relay_queue_bytes;
    if !config.replication.advertise.is_empty() {
        cluster_options.advertise = Some(config.replication.advertise.clone());
    }
    let cluster = Cluster::start(
        store.clone(),
        Arc::new(Users(auth.clone())),
        &root.join("keys"),
        cluster_options,
    )
    .await
    .context("starting replication")?;
    let replication_addr = cluster.local_addr();

    let net = &config.network;
    let stats = Arc::new(ServerStats::new(
        Arc::new(Port::new(net.ops_max_connections)),
        Arc::new(Port::new(net.http_max_connections)),
        Arc::new(Port::new(config.mqtt.max_connections)),
    ));
    let mqtt_options = config.mqtt.options();
    let broker = Broker::start(
        BrokerParts {
            store: store.clone(),
            auth: auth.clone(),
            components: components.clone(),
            cluster: Some(cluster.clone()),
        },
        mqtt_options.clone(),
    )
    .await;
    let mqtt = MqttServer::new(broker, stats.mqtt.clone(), &mqtt_options);
    let serve_options = ServeOptions {
        header_read_timeout: millis(net.header_read_timeout_ms),
        keep_alive_timeout: millis(net.keep_alive_timeout_ms),
    };
    let state = AppState::new(App {
        store: store.clone(),
        auth,
        components,
        cluster: Some(cluster.clone()),
        tokens: config.auth.tokens(),
        rest: RestOptions {
            expose_all_tables: config.rest.expose_all_tables,
            subscription_max_lag: config.rest.subscription_max_lag,
            subscription_max_buffer_bytes: config.rest.subscription_max_buffer_bytes,
        },
        info: NodeInfo {
            hostname: crate::config::hostname(),
            version: env!("CARGO_PKG_VERSION").into(),
            started: Instant::now(),
        },
        max_body: config.network.max_body_bytes,
        query: QueryOptions {
            sort_buffer_bytes: config.query.sort_buffer_bytes,
            max_candidates: config.query.max_candidates,
            msgpack_buffer_bytes: config.query.msgpack_buffer_bytes,
            stall_timeout: millis(config.query.stream_stall_timeout_ms),
        },
        body_read_timeout: millis(config.network.body_read_timeout_ms),
        // Never below one whole body of the largest size.
        body_budget: BodyBudget::new(
            config
                .network
                .max_body_bytes_in_flight
                .max(config.network.max_body_bytes),
        ),
        stats: stats.clone(),
        mqtt: config.mqtt.websocket.then(|| mqtt.clone()),
    });
    let host = config.network.host.as_str();
    let ops = bind(host, config.network.ops_port, "operations API").await?;
    let http = bind(host, config.network.http_port, "HTTP").await?;
    let (ops_addr, http_addr) = (ops.local_addr()?, http.local_addr()?);
    let ops_tls = bind_secure(host, net.ops_secure_port, "operations API (TLS)").await?;
    let https = bind_secure(host, net.http_secure_port, "HTTP (TLS)").await?;
    let mqtt_listener = bind(host, config.mqtt.port, "MQTT").await?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    let mqtts = bind_secure(host, config.mqtt.secure_port, "MQTT (TLS)").await?;
    let tls = if ops_tls.is_some() || https.is_some() || mqtts.is_some() {
        Some(ServerTls::new(&tls_options(root, &config)).context("setting up TLS")?)
    } else {
        None
    };
    let ops_tls_addr = ops_tls.as_ref().map(TcpListener::local_addr).transpose()?;
    let https_addr = https.as_ref().map(TcpListener::local_addr).transpose()?;
    let mqtts_addr = mqtts.as_ref().map(TcpListener::local_addr).transpose()?;

    let ops_router = shoal_server::ops_router(state.clone());
    let (router, port) = (ops_router.clone(), stats.ops.clone());
    workers.spawn("server/operations-api", move |ctx| async move {
        shoal_server::serve(ops, router, port, serve_options, &ctx).await
    });
    let http_router = shoal_server::http_router(state);
    let (router, port) = (http_router.clone(), stats.http.clone());
    workers.spawn("server/http", move |ctx| async move {
        shoal_server::serve(http, router, port, serve_options, &ctx).await
    });
    // The secure ports serve the same routers under the same connection caps.
    if let (Some(listener), Some(tls)) = (ops_tls, tls.clone()) {
        let port = stats.ops.clone();
        workers.spawn("server/operations-api-tls", move |ctx| async move {
            shoal_server::serve_tls(listener, tls, ops_router, port, serve_options, &ctx).await
        });
    }
    if let (Some(listener), Some(tls)) = (https, tls.clone()) {
        let port = stats.http.clone();
        workers.spawn("server/https", move |ctx| async move {
            shoal_server::serve_tls(listener, tls, http_router, port, serve_options, &ctx).await
        });
    }
    // Either MQTT loop closes the broker when asked to stop, before the workers are
    // awaited; WebSocket connections end with it.
    if let (Some(listener), Some(tls)) = (mqtts, tls) {
        let server = mqtt.clone();
        workers.spawn("server/mqtt-tls", move |ctx| async move {
            shoal_server::serve_mqtt_tls(listener, tls, server, &ctx).await
        });
    }
    workers.spawn("server/mqtt", move |ctx| async move {
        shoal_server::serve_mqtt(mqtt_listener, mqtt, &ctx).await
    });
    let trimmed = store.clone();
    workers.spawn("store/log-trimmer", move |ctx| async move {
        let mut tick = tokio::time::interval(TRIM_INTERVAL);
        loop {
            ctx.set_idle();
            tokio::select! {
                _ = tick.tick() => {
                    trimmed.trim_logs();
                    ctx.count(1);
                }
                () = ctx.stopping() => break,
            }
        }
    });

    let pid = std::process::id();
    RunFile {
        pid,
        name: name.clone(),
        ops: ops_addr,
        http: http_addr,
        mqtt: Some(mqtt_addr),
    }
    .write(root)?;
    tracing::info!(%ops_addr, %http_addr, %mqtt_addr, ?ops_tls_addr, ?https_addr, ?mqtts_addr, %replication_addr, "node ready");
    let secure: String = [
        ("ops_tls", ops_tls_addr),
        ("https", https_addr),
        ("mqtts", mqtts_addr),
    ]
    .into_iter()
    .filter_map(|(key, addr)| addr.map(|addr| format!(" {key}={addr}")))
    .collect();
    println!(
        "shoal ready name={name} ops={ops_addr} http={http_addr} mqtt={mqtt_addr}{secure} replication={replication_addr} pid={pid}"
    );

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let started = Instant::now();
    let overdue = workers.shutdown(DRAIN_TIMEOUT).await;
    if !overdue.is_empty() {
        let names: Vec<&str> = overdue.iter().map(|w| w.name.as_str()).collect();
        tracing::warn!(
            ?names,
            "workers did not stop within {DRAIN_TIMEOUT:?}; aborted"
        );
    }
    // Nothing else can write now: the writers finish what is queued (every acknowledged
    // write is already durable) and stop.
    store.close().await;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        left = workers.list().len(),
        "workers stopped"
    );
    let _ = std::fs::remove_file(runfile::path(root));
    tracing::info!("stopped");
    Ok(())
}

/// The secure ports' TLS set-up from the `tls:` and `mtls:` sections.
fn tls_options(root: &Path, config: &Config) -> TlsOptions {
    let path = |p: &str| (!p.is_empty()).then(|| p.into());
    let tls = &config.tls;
    // A generated certificate names this machine and the loopback addresses, and the
    // bound address when it is a specific one.
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let host = config.network.host.as_str();
    let unspecified = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    let host = (!unspecified).then(|| host.to_owned());
    for name in host.into_iter().chain([crate::config::hostname()]) {
        if name.is_ascii() && !names.contains(&name) {
            names.push(name);
        }
    }
    TlsOptions {
        certificate: path(&tls.certificate),
        private_key: path(&tls.private_key),
        certificate_authority: path(&tls.certificate_authority),
        generated_dir: root.join("keys").join("tls"),
        generated_names: names,
        handshake_timeout: millis(tls.handshake_timeout_ms),
        mtls: config.mtls.options(),
    }
}

/// A duration setting given in milliseconds; zero would disable nothing and break
/// everything, so it counts as one millisecond.
fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms.max(1))
}

async fn bind(host: &str, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port))
        .await
        .with_context(|| format!("binding the {what} port {host}:{port}"))
}

/// Binds a secure port, if one is configured.
async fn bind_secure(
    host: &str,
    port: Option<u16>,
    what: &str,
) -> anyhow::Result<Option<TcpListener>> {
    match port {
        Some(port) => Ok(Some(bind(host, port, what).await?)),
        None => Ok(None),
    }
}
