//! Configuration: `<root>/shoal-config.yaml` (written with defaults on first start), then
//! environment variables, then command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use shoal_cluster::identity::validate_node_name;

/// File name of the configuration inside the root folder.
pub(crate) const CONFIG_FILE: &str = "shoal-config.yaml";

/// The whole configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// This node.
    pub(crate) node: NodeSection,
    /// Listening addresses and request limits.
    pub(crate) network: NetworkSection,
    /// Log output.
    pub(crate) logging: LoggingSection,
    /// Storage engine settings.
    pub(crate) storage: StorageSection,
    /// Transaction log retention.
    pub(crate) transaction_log: TransactionLogSection,
    /// REST and real-time subscriptions.
    pub(crate) rest: RestSection,
    /// Replication between nodes.
    pub(crate) replication: ReplicationSection,
    /// Logins: password hashing and failed-login limits.
    pub(crate) auth: AuthSection,
    /// Memory and time bounds of query answers.
    pub(crate) query: QuerySection,
    /// Certificates of the secure (TLS) ports.
    pub(crate) tls: TlsSection,
    /// Client certificates on the secure ports (mTLS).
    pub(crate) mtls: MtlsSection,
    /// The MQTT broker: its ports and limits.
    pub(crate) mqtt: MqttSection,
}

/// `mqtt:` section (Harper's `mqtt`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MqttSection {
    /// MQTT port (0 picks a free port).
    pub(crate) port: u16,
    /// MQTT over TLS (see `tls:` and `mtls:`; 8883 is the usual port); null: none (0
    /// picks a free port).
    pub(crate) secure_port: Option<u16>,
    /// Serve MQTT over WebSocket (subprotocol `mqtt`, any path) on the HTTP port and its
    /// secure twin.
    pub(crate) websocket: bool,
    /// Refuse clients whose CONNECT carries no credentials (and no verified client
    /// certificate names a user).
    pub(crate) require_authentication: bool,
    /// Who may publish and subscribe to topics that name no table: `authenticated`
    /// (every logged-in user) or `super_user`.
    pub(crate) plain_topics: PlainTopicsSetting,
    /// Most MQTT connections at once (TCP, TLS and WebSocket together); more are closed
    /// at once (on the HTTP port, answered 503).
    pub(crate) max_connections: usize,
    /// Largest MQTT packet accepted, in bytes.
    pub(crate) max_packet_bytes: usize,
    /// Most QoS 1 and 2 messages sent to one client and not yet acknowledged.
    pub(crate) max_inflight: u16,
    /// Most messages queued for one session; the oldest are dropped beyond it.
    pub(crate) max_queued_messages: usize,
    /// Most bytes of messages queued for one session; the oldest are dropped beyond it.
    pub(crate) max_queued_bytes: usize,
    /// Most MQTT sessions at once, connected or kept for clients that are away; a
    /// client that would start one more is refused.
    pub(crate) max_sessions: usize,
    /// Most subscriptions one MQTT session holds; more are refused.
    pub(crate) max_subscriptions_per_session: usize,
    /// Longest a session may outlive its connection, in seconds.
    pub(crate) max_session_expiry_seconds: u64,
    /// A client that sends no CONNECT this long after connecting is dropped, in
    /// milliseconds.
    pub(crate) connect_timeout_ms: u64,
    /// A write to a client that blocks this long drops the connection, in milliseconds.
    pub(crate) write_timeout_ms: u64,
    /// How often sessions kept for clients (and their queued messages) are saved, in
    /// milliseconds; they are also saved on shutdown. A node killed outright loses at
    /// most this much of their changes.
    pub(crate) save_interval_ms: u64,
}

/// `mqtt.plain_topics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub(crate) enum PlainTopicsSetting {
    /// Super users only.
    SuperUser,
    /// Every authenticated user.
    Authenticated,
}

impl Default for MqttSection {
    fn default() -> Self {
        let defaults = shoal_mqtt::MqttOptions::default();
        MqttSection {
            port: 1883,
            secure_port: None,
            websocket: true,
            require_authentication: defaults.require_authentication,
            plain_topics: match defaults.plain_topics {
                shoal_mqtt::PlainTopics::SuperUsers => PlainTopicsSetting::SuperUser,
                shoal_mqtt::PlainTopics::Authenticated => PlainTopicsSetting::Authenticated,
            },
            max_connections: 1024,
            max_packet_bytes: defaults.max_packet_bytes,
            max_inflight: defaults.max_inflight,
            max_queued_messages: defaults.max_queued_messages,
            max_queued_bytes: defaults.max_queued_bytes,
            max_sessions: defaults.max_sessions,
            max_subscriptions_per_session: defaults.max_subscriptions,
            max_session_expiry_seconds: defaults.max_session_expiry.as_secs(),
            connect_timeout_ms: defaults.connect_timeout.as_millis() as u64,
            write_timeout_ms: defaults.write_timeout.as_millis() as u64,
            save_interval_ms: defaults.save_interval.as_millis() as u64,
        }
    }
}

impl MqttSection {
    /// The broker's options.
    pub(crate) fn options(&self) -> shoal_mqtt::MqttOptions {
        use std::time::Duration;
        shoal_mqtt::MqttOptions {
            require_authentication: self.require_authentication,
            plain_topics: match self.plain_topics {
                PlainTopicsSetting::SuperUser => shoal_mqtt::PlainTopics::SuperUsers,
                PlainTopicsSetting::Authenticated => shoal_mqtt::PlainTopics::Authenticated,
            },
            // Room for at least a CONNECT with long credentials.
            max_packet_bytes: self.max_packet_bytes.max(MIN_MQTT_PACKET_BYTES),
            max_inflight: self.max_inflight.max(1),
            max_queued_messages: self.max_queued_messages,
            max_queued_bytes: self.max_queued_bytes,
            max_sessions: self.max_sessions.max(1),
            max_subscriptions: self.max_subscriptions_per_session.max(1),
            max_session_expiry: Duration::from_secs(self.max_session_expiry_seconds),
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            write_timeout: Duration::from_millis(self.write_timeout_ms.max(1)),
            save_interval: Duration::from_millis(self.save_interval_ms.max(1)),
        }
    }
}

/// The smallest `mqtt.max_packet_bytes` honoured.
const MIN_MQTT_PACKET_BYTES: usize = 1024;

/// `tls:` section (Harper's `tls`), used by the secure ports
/// (`network.ops_secure_port`, `network.http_secure_port`, `mqtt.secure_port`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TlsSection {
    /// The server's certificate chain, a PEM file. Empty: one generated on first start
    /// and kept in `<root>/keys/tls/` (`certificate.pem`, `privateKey.pem`; clients
    /// trust its `ca.pem`).
    pub(crate) certificate: String,
    /// The private key of `certificate`, a PEM file; set with `certificate`.
    pub(crate) private_key: String,
    /// The CA certificates (PEM file) client certificates are checked against (mTLS).
    pub(crate) certificate_authority: String,
    /// A client that has not completed its TLS handshake this long after connecting is
    /// dropped, in milliseconds.
    pub(crate) handshake_timeout_ms: u64,
}

impl Default for TlsSection {
    fn default() -> Self {
        TlsSection {
            certificate: String::new(),
            private_key: String::new(),
            certificate_authority: String::new(),
            handshake_timeout_ms: 10_000,
        }
    }
}

/// `mtls:` section (Harper's `http.mtls`), for every secure port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MtlsSection {
    /// Ask clients for a certificate, checked against `tls.certificate_authority`.
    pub(crate) enabled: bool,
    /// Who a verified client certificate logs in as, when a request has no
    /// `Authorization` header: `Common Name` (or `CN`) for the user its subject's common
    /// name names; any other name for that user; null (or empty) for nobody, so every
    /// request logs in with credentials.
    pub(crate) user: Option<String>,
    /// Refuse (in the handshake) connections without a verified client certificate.
    pub(crate) required: bool,
}

impl Default for MtlsSection {
    fn default() -> Self {
        MtlsSection {
            enabled: false,
            user: Some(COMMON_NAME.into()),
            required: false,
        }
    }
}

/// `mtls.user` naming the certificate's common name, as Harper spells it.
const COMMON_NAME: &str = "Common Name";

impl MtlsSection {
    /// The server's mTLS options, when on.
    pub(crate) fn options(&self) -> Option<shoal_server::MtlsOptions> {
        self.enabled.then(|| shoal_server::MtlsOptions {
            user: match self.user.as_deref() {
                None | Some("") => shoal_server::MtlsUser::Nobody,
                Some(COMMON_NAME | "CN") => shoal_server::MtlsUser::CommonName,
                Some(name) => shoal_server::MtlsUser::Named(name.to_owned()),
            },
            required: self.required,
        })
    }
}

/// `auth:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// Most password checks (argon2 hashes, about 19 MiB each) computed at once; 0: half
    /// the cores, at least 1.
    pub(crate) hash_concurrency: usize,
    /// Failed logins one username may have per window; further attempts for it get 429
    /// until the window ends (0: no limit).
    pub(crate) failed_logins_per_user: u32,
    /// Failed logins one client address may have per window (0: no limit).
    pub(crate) failed_logins_per_address: u32,
    /// How long a failed login counts, in seconds.
    pub(crate) failed_login_window_seconds: u64,
    /// How long an operation token (`create_authentication_tokens`,
    /// `refresh_operation_token`) is valid, in seconds (Harper's
    /// `operationTokenTimeout`: 1 day).
    pub(crate) operation_token_timeout_seconds: u64,
    /// How long a refresh token is valid, in seconds (Harper's `refreshTokenTimeout`: 30
    /// days).
    pub(crate) refresh_token_timeout_seconds: u64,
    /// Whether `login` starts cookie sessions and session cookies are accepted (Harper's
    /// `enableSessions`).
    pub(crate) enable_sessions: bool,
    /// How long a session lasts after its `login`, in seconds.
    pub(crate) session_timeout_seconds: u64,
    /// Most sessions the cluster keeps (they replicate); a login past it is refused
    /// (503) until some expire or log out.
    pub(crate) max_sessions: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        let defaults = shoal_auth::AuthOptions::default();
        let tokens = shoal_auth::TokenOptions::default();
        AuthSection {
            hash_concurrency: 0,
            failed_logins_per_user: defaults.failed_logins_per_user,
            failed_logins_per_address: defaults.failed_logins_per_address,
            failed_login_window_seconds: defaults.failed_login_window.as_secs(),
            operation_token_timeout_seconds: tokens.operation_token_lifetime.as_secs(),
            refresh_token_timeout_seconds: tokens.refresh_token_lifetime.as_secs(),
            enable_sessions: tokens.sessions_enabled,
            session_timeout_seconds: tokens.session_lifetime.as_secs(),
            max_sessions: tokens.max_sessions,
        }
    }
}

impl AuthSection {
    /// The auth layer's options.
    pub(crate) fn options(&self) -> shoal_auth::AuthOptions {
        shoal_auth::AuthOptions {
            hash_concurrency: match self.hash_concurrency {
                0 => shoal_auth::AuthOptions::default_hash_concurrency(),
                n => n,
            },
            failed_logins_per_user: self.failed_logins_per_user,
            failed_logins_per_address: self.failed_logins_per_address,
            failed_login_window: std::time::Duration::from_secs(self.failed_login_window_seconds),
        }
    }

    /// Token and session lifetimes.
    pub(crate) fn tokens(&self) -> shoal_auth::TokenOptions {
        use std::time::Duration;
        shoal_auth::TokenOptions {
            operation_token_lifetime: Duration::from_secs(self.operation_token_timeout_seconds),
            refresh_token_lifetime: Duration::from_secs(self.refresh_token_timeout_seconds),
            sessions_enabled: self.enable_sessions,
            session_lifetime: Duration::from_secs(self.session_timeout_seconds),
            max_sessions: self.max_sessions,
        }
    }
}

/// `query:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct QuerySection {
    /// Most bytes of results one query holds to sort them. A larger sort on an indexed
    /// attribute walks its index instead; on one without an index it is refused (400):
    /// add a limit, or an index.
    pub(crate) sort_buffer_bytes: usize,
    /// Most primary keys an index lookup collects for one condition; past it the
    /// condition is answered by a scan that re-checks every record.
    pub(crate) max_candidates: usize,
    /// Most bytes of a MessagePack collection gathered in memory; a larger answer is
    /// counted first, then streamed.
    pub(crate) msgpack_buffer_bytes: usize,
    /// A streamed answer whose client reads nothing for this long is ended and its read
    /// transaction released, in milliseconds.
    pub(crate) stream_stall_timeout_ms: u64,
}

impl Default for QuerySection {
    fn default() -> Self {
        let defaults = shoal_server::QueryOptions::default();
        QuerySection {
            sort_buffer_bytes: defaults.sort_buffer_bytes,
            max_candidates: defaults.max_candidates,
            msgpack_buffer_bytes: defaults.msgpack_buffer_bytes,
            stream_stall_timeout_ms: defaults.stall_timeout.as_millis() as u64,
        }
    }
}

/// `replication:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ReplicationSection {
    /// Replication port (mutual TLS; 0 picks a free port).
    pub(crate) port: u16,
    /// Address peers dial (`host:port`); empty: the bound address.
    pub(crate) advertise: String,
    /// How often an idle link is pinged, in milliseconds.
    pub(crate) ping_interval_ms: u64,
    /// A link with no traffic for this long is dropped and redialed, in milliseconds.
    pub(crate) idle_timeout_ms: u64,
    /// Replicated writes stamped further ahead of this node's clock than this, in
    /// milliseconds, wait (the link holds back) until the clock has caught up; a peer
    /// whose clock runs ahead can then neither win conflicts nor drag every clock along.
    pub(crate) max_clock_offset_ms: u64,
    /// Bytes a sender aims to put in one frame (a run of log entries or a chunk of a
    /// full copy); a single transaction or record larger than this goes alone.
    pub(crate) batch_bytes: usize,
    /// Bytes of received frames each link holds until they are durably applied (bounds
    /// a receiver's memory per link; a larger frame is taken alone).
    pub(crate) receive_window_bytes: usize,
    /// A peer that accepts no byte of a pending write for this long is dropped, in
    /// milliseconds.
    pub(crate) write_timeout_ms: u64,
    /// Messages (MQTT publishes) waiting to be relayed to each peer; past this, a peer
    /// misses new ones rather than slow the publisher. Also how many relayed messages a
    /// node holds for a consumer that falls behind.
    pub(crate) relay_queue_messages: usize,
    /// Bytes of messages waiting to be relayed to each peer; a larger message is never
    /// relayed.
    pub(crate) relay_queue_bytes: usize,
}

impl Default for ReplicationSection {
    fn default() -> Self {
        ReplicationSection {
            port: 9933,
            advertise: String::new(),
            ping_interval_ms: 2000,
            idle_timeout_ms: 10_000,
            max_clock_offset_ms: shoal_store::DEFAULT_MAX_OFFSET_MS,
            batch_bytes: 4 << 20,
            receive_window_bytes: 32 << 20,
            write_timeout_ms: 30_000,
            relay_queue_messages: 10_000,
            relay_queue_bytes: 16 << 20,
        }
    }
}

/// `rest:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RestSection {
    /// Serve every table at `/{database}/{table}/`, not only those components export.
    pub(crate) expose_all_tables: bool,
    /// A subscriber further behind than this many log entries is disconnected.
    pub(crate) subscription_max_lag: u64,
    /// A subscriber with more than this many bytes of changes waiting to be sent to it is
    /// disconnected (one change of any size is always sent).
    pub(crate) subscription_max_buffer_bytes: usize,
}

impl Default for RestSection {
    fn default() -> Self {
        let defaults = shoal_server::RestOptions::default();
        RestSection {
            expose_all_tables: defaults.expose_all_tables,
            subscription_max_lag: defaults.subscription_max_lag,
            subscription_max_buffer_bytes: defaults.subscription_max_buffer_bytes,
        }
    }
}

/// `node:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NodeSection {
    /// Unique node name, a host name (dots allowed, e.g. `db1.eu-west.example.com`);
    /// defaults to the machine's host name.
    pub(crate) name: String,
    /// Milliseconds added to the system clock for this node's timestamps. For tests of a
    /// node whose clock is wrong; leave at 0 (it is not written to new config files).
    #[serde(skip_serializing_if = "is_zero")]
    pub(crate) clock_offset_ms: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            name: default_node_name(),
            clock_offset_ms: 0,
        }
    }
}

/// `network:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct NetworkSection {
    /// Address every listener binds to.
    pub(crate) host: String,
    /// Operations API port (0 picks a free port).
    pub(crate) ops_port: u16,
    /// HTTP port: REST, subscriptions, health (0 picks a free port).
    pub(crate) http_port: u16,
    /// Operations API over TLS (HTTPS; see `tls:`); null: none (0 picks a free port).
    pub(crate) ops_secure_port: Option<u16>,
    /// HTTP port over TLS (HTTPS and WSS; see `tls:`); null: none (0 picks a free port).
    pub(crate) http_secure_port: Option<u16>,
    /// Largest request body accepted, in bytes.
    pub(crate) max_body_bytes: usize,
    /// Bytes of request bodies held at once across all requests (never below
    /// `max_body_bytes`); a body waits for its share, or gets 503.
    pub(crate) max_body_bytes_in_flight: usize,
    /// A request body that sends nothing for this long is answered 408 and its
    /// connection closed, in milliseconds.
    pub(crate) body_read_timeout_ms: u64,
    /// Most connections the operations API port serves at once (its plain and secure
    /// ports together); more are answered 503.
    pub(crate) ops_max_connections: usize,
    /// Most connections the HTTP port serves at once (its plain and secure ports
    /// together), open subscriptions included; more are answered 503.
    pub(crate) http_max_connections: usize,
    /// Longest a client may take to send a request's headers, counted from when its
    /// connection is ready for one, in milliseconds; then the connection is closed.
    pub(crate) header_read_timeout_ms: u64,
    /// A connection with no request in progress for this long is closed, in
    /// milliseconds (at most `header_read_timeout_ms` takes effect).
    pub(crate) keep_alive_timeout_ms: u64,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            host: "127.0.0.1".into(),
            ops_port: 9925,
            http_port: 9926,
            ops_secure_port: None,
            http_secure_port: None,
            max_body_bytes: 100 << 20,
            max_body_bytes_in_flight: 64 << 20,
            body_read_timeout_ms: 30_000,
            ops_max_connections: 128,
            http_max_connections: 768,
            header_read_timeout_ms: 30_000,
            keep_alive_timeout_ms: 30_000,
        }
    }
}

/// `logging:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LoggingSection {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    pub(crate) level: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        LoggingSection {
            level: "info".into(),
        }
    }
}

/// `storage:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageSection {
    /// Most a database may hold, in MiB (its data, free pages left out). Past it, writes
    /// that grow it are refused with 507; deletes and drops still run on a reserve the
    /// LMDB map keeps beyond it. Address space, not disk: the disk must have the room.
    pub(crate) map_size_mb: usize,
    /// Most records one group commit takes (a request with more commits alone).
    pub(crate) max_batch: usize,
    /// Largest transaction (its log entry) or record one write may produce, in bytes;
    /// larger writes are refused with 413. Replication ships a transaction whole, so
    /// every node of a cluster should have the same value; at most half of 1 GiB.
    pub(crate) max_transaction_bytes: usize,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            map_size_mb: 64 << 10,
            max_batch: 4096,
            max_transaction_bytes: 128 << 20,
        }
    }
}

/// `transaction_log:` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct TransactionLogSection {
    /// Entries committed here longer ago than this are removed, in seconds.
    pub(crate) retention_seconds: u64,
    /// The oldest entries are removed while a database's log is larger than this.
    pub(crate) max_bytes: u64,
}

impl Default for TransactionLogSection {
    fn default() -> Self {
        TransactionLogSection {
            retention_seconds: 3 * 24 * 3600,
            max_bytes: 1 << 30,
        }
    }
}

/// Values given by environment or flags; `None` keeps the file's value.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct Overrides {
    /// Node name.
    #[arg(long, env = "SHOAL_NAME")]
    pub(crate) name: Option<String>,
    /// Address to bind.
    #[arg(long, env = "SHOAL_HOST")]
    pub(crate) host: Option<String>,
    /// Operations API port (0 = any free port).
    #[arg(long, env = "SHOAL_OPS_PORT")]
    pub(crate) ops_port: Option<u16>,
    /// HTTP port (0 = any free port).
    #[arg(long, env = "SHOAL_HTTP_PORT")]
    pub(crate) http_port: Option<u16>,
    /// Log level or filter.
    #[arg(long, env = "SHOAL_LOG_LEVEL")]
    pub(crate) log_level: Option<String>,
    /// Transaction log retention in seconds.
    #[arg(long, env = "SHOAL_LOG_RETENTION_SECONDS")]
    pub(crate) log_retention_seconds: Option<u64>,
    /// Transaction log size bound per database, in bytes.
    #[arg(long, env = "SHOAL_LOG_MAX_BYTES")]
    pub(crate) log_max_bytes: Option<u64>,
    /// Most records one group commit takes (trades write throughput for latency and
    /// replication lag under load).
    #[arg(long, env = "SHOAL_MAX_BATCH")]
    pub(crate) max_batch: Option<usize>,
    /// Most a database may hold, in MiB; past it writes that grow it get 507.
    #[arg(long, env = "SHOAL_MAP_SIZE_MB")]
    pub(crate) map_size_mb: Option<usize>,
    /// Largest request body, in bytes.
    #[arg(long, env = "SHOAL_MAX_BODY_BYTES")]
    pub(crate) max_body_bytes: Option<usize>,
    /// Largest transaction or record one write may produce, in bytes (413 beyond).
    #[arg(long, env = "SHOAL_MAX_TRANSACTION_BYTES")]
    pub(crate) max_transaction_bytes: Option<usize>,
    /// Replication port (0 = any free port).
    #[arg(long, env = "SHOAL_REPLICATION_PORT")]
    pub(crate) replication_port: Option<u16>,
    /// Replication address peers dial (`host:port`), when not the bound one.
    #[arg(long, env = "SHOAL_REPLICATION_ADVERTISE")]
    pub(crate) replication_advertise: Option<String>,
    /// How often an idle replication link is pinged, in milliseconds.
    #[arg(long, env = "SHOAL_REPLICATION_PING_MS")]
    pub(crate) replication_ping_ms: Option<u64>,
    /// A replication link silent this long is redialed, in milliseconds.
    #[arg(long, env = "SHOAL_REPLICATION_IDLE_TIMEOUT_MS")]
    pub(crate) replication_idle_timeout_ms: Option<u64>,
    /// Replicated writes stamped further ahead of this node's clock than this many
    /// milliseconds wait until the clock has caught up.
    #[arg(long, env = "SHOAL_REPLICATION_MAX_CLOCK_OFFSET_MS")]
    pub(crate) replication_max_clock_offset_ms: Option<u64>,
    /// Shifts this node's clock by this many milliseconds (tests only).
    #[arg(
        long,
        env = "SHOAL_CLOCK_OFFSET_MS",
        hide = true,
        allow_negative_numbers = true
    )]
    pub(crate) clock_offset_ms: Option<i64>,
    /// Bytes a replication sender aims to put in one frame.
    #[arg(long, env = "SHOAL_REPLICATION_BATCH_BYTES")]
    pub(crate) replication_batch_bytes: Option<usize>,
    /// Bytes of received frames a replication link holds until they are applied.
    #[arg(long, env = "SHOAL_REPLICATION_RECEIVE_WINDOW_BYTES")]
    pub(crate) replication_receive_window_bytes: Option<usize>,
    /// A replication peer that reads nothing of a pending write this long is dropped, in
    /// milliseconds.
    #[arg(long, env = "SHOAL_REPLICATION_WRITE_TIMEOUT_MS")]
    pub(crate) replication_write_timeout_ms: Option<u64>,
    /// Messages waiting to be relayed to each replication peer before new ones are dropped.
    #[arg(long, env = "SHOAL_REPLICATION_RELAY_QUEUE_MESSAGES")]
    pub(crate) replication_relay_queue_messages: Option<usize>,
    /// Bytes of messages waiting to be relayed to each replication peer before new ones
    /// are dropped.
    #[arg(long, env = "SHOAL_REPLICATION_RELAY_QUEUE_BYTES")]
    pub(crate) replication_relay_queue_bytes: Option<usize>,
    /// Log entries a subscriber may fall behind before it is disconnected.
    #[arg(long, env = "SHOAL_SUBSCRIPTION_MAX_LAG")]
    pub(crate) subscription_max_lag: Option<u64>,
    /// Most password hashes computed at once (0 = half the cores).
    #[arg(long, env = "SHOAL_AUTH_HASH_CONCURRENCY")]
    pub(crate) auth_hash_concurrency: Option<usize>,
    /// Failed logins per username per window before 429 (0 = no limit).
    #[arg(long, env = "SHOAL_AUTH_FAILED_LOGINS_PER_USER")]
    pub(crate) auth_failed_logins_per_user: Option<u32>,
    /// Failed logins per client address per window before 429 (0 = no limit).
    #[arg(long, env = "SHOAL_AUTH_FAILED_LOGINS_PER_ADDRESS")]
    pub(crate) auth_failed_logins_per_address: Option<u32>,
    /// How long a failed login counts, in seconds.
    #[arg(long, env = "SHOAL_AUTH_FAILED_LOGIN_WINDOW_SECONDS")]
    pub(crate) auth_failed_login_window_seconds: Option<u64>,
    /// How long an operation token is valid, in seconds.
    #[arg(long, env = "SHOAL_AUTH_OPERATION_TOKEN_TIMEOUT_SECONDS")]
    pub(crate) auth_operation_token_timeout_seconds: Option<u64>,
    /// How long a refresh token is valid, in seconds.
    #[arg(long, env = "SHOAL_AUTH_REFRESH_TOKEN_TIMEOUT_SECONDS")]
    pub(crate) auth_refresh_token_timeout_seconds: Option<u64>,
    /// Whether `login` starts cookie sessions and session cookies are accepted.
    #[arg(long, env = "SHOAL_AUTH_ENABLE_SESSIONS")]
    pub(crate) auth_enable_sessions: Option<bool>,
    /// How long a session lasts after its login, in seconds.
    #[arg(long, env = "SHOAL_AUTH_SESSION_TIMEOUT_SECONDS")]
    pub(crate) auth_session_timeout_seconds: Option<u64>,
    /// Most sessions the cluster keeps.
    #[arg(long, env = "SHOAL_AUTH_MAX_SESSIONS")]
    pub(crate) auth_max_sessions: Option<u64>,
    /// Most bytes of results one query holds to sort them.
    #[arg(long, env = "SHOAL_SORT_BUFFER_BYTES")]
    pub(crate) sort_buffer_bytes: Option<usize>,
    /// Most primary keys an index lookup collects for one condition.
    #[arg(long, env = "SHOAL_MAX_CANDIDATES")]
    pub(crate) max_candidates: Option<usize>,
    /// Most bytes of a MessagePack collection gathered before it is counted and streamed.
    #[arg(long, env = "SHOAL_MSGPACK_BUFFER_BYTES")]
    pub(crate) msgpack_buffer_bytes: Option<usize>,
    /// A streamed answer whose client reads nothing this long is ended, in milliseconds.
    #[arg(long, env = "SHOAL_STREAM_STALL_TIMEOUT_MS")]
    pub(crate) stream_stall_timeout_ms: Option<u64>,
    /// Bytes of changes waiting for a subscriber before it is disconnected.
    #[arg(long, env = "SHOAL_SUBSCRIPTION_MAX_BUFFER_BYTES")]
    pub(crate) subscription_max_buffer_bytes: Option<usize>,
    /// Bytes of request bodies held at once across all requests.
    #[arg(long, env = "SHOAL_MAX_BODY_BYTES_IN_FLIGHT")]
    pub(crate) max_body_bytes_in_flight: Option<usize>,
    /// A request body silent this long gets a 408, in milliseconds.
    #[arg(long, env = "SHOAL_BODY_READ_TIMEOUT_MS")]
    pub(crate) body_read_timeout_ms: Option<u64>,
    /// Most connections on the operations API port at once.
    #[arg(long, env = "SHOAL_OPS_MAX_CONNECTIONS")]
    pub(crate) ops_max_connections: Option<usize>,
    /// Most connections on the HTTP port at once.
    #[arg(long, env = "SHOAL_HTTP_MAX_CONNECTIONS")]
    pub(crate) http_max_connections: Option<usize>,
    /// Longest wait for a request's headers, in milliseconds.
    #[arg(long, env = "SHOAL_HEADER_READ_TIMEOUT_MS")]
    pub(crate) header_read_timeout_ms: Option<u64>,
    /// An idle connection is closed after this long, in milliseconds.
    #[arg(long, env = "SHOAL_KEEP_ALIVE_TIMEOUT_MS")]
    pub(crate) keep_alive_timeout_ms: Option<u64>,
    /// Operations API port over TLS (0 = any free port).
    #[arg(long, env = "SHOAL_OPS_SECURE_PORT")]
    pub(crate) ops_secure_port: Option<u16>,
    /// HTTP port over TLS (0 = any free port).
    #[arg(long, env = "SHOAL_HTTP_SECURE_PORT")]
    pub(crate) http_secure_port: Option<u16>,
    /// Server certificate chain of the secure ports, a PEM file.
    #[arg(long, env = "SHOAL_TLS_CERTIFICATE")]
    pub(crate) tls_certificate: Option<String>,
    /// Private key of the server certificate, a PEM file.
    #[arg(long, env = "SHOAL_TLS_PRIVATE_KEY")]
    pub(crate) tls_private_key: Option<String>,
    /// CA certificates client certificates are checked against, a PEM file.
    #[arg(long, env = "SHOAL_TLS_CERTIFICATE_AUTHORITY")]
    pub(crate) tls_certificate_authority: Option<String>,
    /// Longest a client may take to complete its TLS handshake, in milliseconds.
    #[arg(long, env = "SHOAL_TLS_HANDSHAKE_TIMEOUT_MS")]
    pub(crate) tls_handshake_timeout_ms: Option<u64>,
    /// Ask clients of the secure ports for certificates (`true` or `false`).
    #[arg(long, env = "SHOAL_MTLS")]
    pub(crate) mtls: Option<bool>,
    /// Who a verified client certificate logs in as: `Common Name`, a user name, or
    /// empty for nobody.
    #[arg(long, env = "SHOAL_MTLS_USER")]
    pub(crate) mtls_user: Option<String>,
    /// Refuse connections without a verified client certificate (`true` or `false`).
    #[arg(long, env = "SHOAL_MTLS_REQUIRED")]
    pub(crate) mtls_required: Option<bool>,
    /// MQTT port (0 = any free port).
    #[arg(long, env = "SHOAL_MQTT_PORT")]
    pub(crate) mqtt_port: Option<u16>,
    /// MQTT over TLS port, usually 8883 (0 = any free port).
    #[arg(long, env = "SHOAL_MQTT_SECURE_PORT")]
    pub(crate) mqtt_secure_port: Option<u16>,
    /// Serve MQTT over WebSocket on the HTTP ports (`true` or `false`).
    #[arg(long, env = "SHOAL_MQTT_WEBSOCKET")]
    pub(crate) mqtt_websocket: Option<bool>,
    /// Refuse MQTT clients that send no credentials (`true` or `false`).
    #[arg(long, env = "SHOAL_MQTT_REQUIRE_AUTHENTICATION")]
    pub(crate) mqtt_require_authentication: Option<bool>,
    /// Who may use MQTT topics that name no table.
    #[arg(long, env = "SHOAL_MQTT_PLAIN_TOPICS")]
    pub(crate) mqtt_plain_topics: Option<PlainTopicsSetting>,
    /// Most MQTT connections at once.
    #[arg(long, env = "SHOAL_MQTT_MAX_CONNECTIONS")]
    pub(crate) mqtt_max_connections: Option<usize>,
    /// Largest MQTT packet accepted, in bytes.
    #[arg(long, env = "SHOAL_MQTT_MAX_PACKET_BYTES")]
    pub(crate) mqtt_max_packet_bytes: Option<usize>,
    /// Most unacknowledged QoS 1 and 2 messages sent to one MQTT client.
    #[arg(long, env = "SHOAL_MQTT_MAX_INFLIGHT")]
    pub(crate) mqtt_max_inflight: Option<u16>,
    /// Most messages queued for one MQTT session.
    #[arg(long, env = "SHOAL_MQTT_MAX_QUEUED_MESSAGES")]
    pub(crate) mqtt_max_queued_messages: Option<usize>,
    /// Most bytes of messages queued for one MQTT session.
    #[arg(long, env = "SHOAL_MQTT_MAX_QUEUED_BYTES")]
    pub(crate) mqtt_max_queued_bytes: Option<usize>,
    /// Most MQTT sessions at once.
    #[arg(long, env = "SHOAL_MQTT_MAX_SESSIONS")]
    pub(crate) mqtt_max_sessions: Option<usize>,
    /// Most subscriptions one MQTT session holds.
    #[arg(long, env = "SHOAL_MQTT_MAX_SUBSCRIPTIONS_PER_SESSION")]
    pub(crate) mqtt_max_subscriptions_per_session: Option<usize>,
    /// Longest an MQTT session may outlive its connection, in seconds.
    #[arg(long, env = "SHOAL_MQTT_MAX_SESSION_EXPIRY_SECONDS")]
    pub(crate) mqtt_max_session_expiry_seconds: Option<u64>,
    /// An MQTT client that sends no CONNECT this long is dropped, in milliseconds.
    #[arg(long, env = "SHOAL_MQTT_CONNECT_TIMEOUT_MS")]
    pub(crate) mqtt_connect_timeout_ms: Option<u64>,
    /// A write to an MQTT client blocked this long drops it, in milliseconds.
    #[arg(long, env = "SHOAL_MQTT_WRITE_TIMEOUT_MS")]
    pub(crate) mqtt_write_timeout_ms: Option<u64>,
    /// How often MQTT sessions kept for clients are saved, in milliseconds.
    #[arg(long, env = "SHOAL_MQTT_SAVE_INTERVAL_MS")]
    pub(crate) mqtt_save_interval_ms: Option<u64>,
}

impl Config {
    /// Reads `<root>/shoal-config.yaml`, creating it with defaults if absent, then
    /// applies the overrides.
    pub(crate) fn load(root: &Path, overrides: &Overrides) -> anyhow::Result<Config> {
        let path = root.join(CONFIG_FILE);
        let mut config = if path.exists() {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            let config = Config::default();
            let text = serde_saphyr::to_string(&config).context("writing default config")?;
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            config
        };
        config.apply(overrides);
        Ok(config)
    }

    fn apply(&mut self, o: &Overrides) {
        let set = |target: &mut String, v: &Option<String>| {
            if let Some(v) = v {
                target.clone_from(v);
            }
        };
        set(&mut self.node.name, &o.name);
        set(&mut self.network.host, &o.host);
        set(&mut self.logging.level, &o.log_level);
        self.network.ops_port = o.ops_port.unwrap_or(self.network.ops_port);
        self.network.http_port = o.http_port.unwrap_or(self.network.http_port);
        self.replication.port = o.replication_port.unwrap_or(self.replication.port);
        set(&mut self.replication.advertise, &o.replication_advertise);
        self.replication.ping_interval_ms = o
            .replication_ping_ms
            .unwrap_or(self.replication.ping_interval_ms);
        self.replication.idle_timeout_ms = o
            .replication_idle_timeout_ms
            .unwrap_or(self.replication.idle_timeout_ms);
        self.replication.max_clock_offset_ms = o
            .replication_max_clock_offset_ms
            .unwrap_or(self.replication.max_clock_offset_ms);
        self.node.clock_offset_ms = o.clock_offset_ms.unwrap_or(self.node.clock_offset_ms);
        self.network.max_body_bytes = o.max_body_bytes.unwrap_or(self.network.max_body_bytes);
        self.storage.max_transaction_bytes = o
            .max_transaction_bytes
            .unwrap_or(self.storage.max_transaction_bytes);
        self.replication.batch_bytes = o
            .replication_batch_bytes
            .unwrap_or(self.replication.batch_bytes);
        self.replication.receive_window_bytes = o
            .replication_receive_window_bytes
            .unwrap_or(self.replication.receive_window_bytes);
        self.replication.write_timeout_ms = o
            .replication_write_timeout_ms
            .unwrap_or(self.replication.write_timeout_ms);
        self.replication.relay_queue_messages = o
            .replication_relay_queue_messages
            .unwrap_or(self.replication.relay_queue_messages);
        self.replication.relay_queue_bytes = o
            .replication_relay_queue_bytes
            .unwrap_or(self.replication.relay_queue_bytes);
        self.storage.max_batch = o.max_batch.unwrap_or(self.storage.max_batch);
        self.storage.map_size_mb = o.map_size_mb.unwrap_or(self.storage.map_size_mb);
        self.transaction_log.retention_seconds = o
            .log_retention_seconds
            .unwrap_or(self.transaction_log.retention_seconds);
        self.transaction_log.max_bytes = o.log_max_bytes.unwrap_or(self.transaction_log.max_bytes);
        self.rest.subscription_max_lag = o
            .subscription_max_lag
            .unwrap_or(self.rest.subscription_max_lag);
        let auth = &mut self.auth;
        auth.hash_concurrency = o.auth_hash_concurrency.unwrap_or(auth.hash_concurrency);
        auth.failed_logins_per_user = o
            .auth_failed_logins_per_user
            .unwrap_or(auth.failed_logins_per_user);
        auth.failed_logins_per_address = o
            .auth_failed_logins_per_address
            .unwrap_or(auth.failed_logins_per_address);
        auth.failed_login_window_seconds = o
            .auth_failed_login_window_seconds
            .unwrap_or(auth.failed_login_window_seconds);
        auth.operation_token_timeout_seconds = o
            .auth_operation_token_timeout_seconds
            .unwrap_or(auth.operation_token_timeout_seconds);
        auth.refresh_token_timeout_seconds = o
            .auth_refresh_token_timeout_seconds
            .unwrap_or(auth.refresh_token_timeout_seconds);
        auth.enable_sessions = o.auth_enable_sessions.unwrap_or(auth.enable_sessions);
        auth.session_timeout_seconds = o
            .auth_session_timeout_seconds
            .unwrap_or(auth.session_timeout_seconds);
        auth.max_sessions = o.auth_max_sessions.unwrap_or(auth.max_sessions);
        let q = &mut self.query;
        q.sort_buffer_bytes = o.sort_buffer_bytes.unwrap_or(q.sort_buffer_bytes);
        q.max_candidates = o.max_candidates.unwrap_or(q.max_candidates);
        q.msgpack_buffer_bytes = o.msgpack_buffer_bytes.unwrap_or(q.msgpack_buffer_bytes);
        q.stream_stall_timeout_ms = o
            .stream_stall_timeout_ms
            .unwrap_or(q.stream_stall_timeout_ms);
        self.rest.subscription_max_buffer_bytes = o
            .subscription_max_buffer_bytes
            .unwrap_or(self.rest.subscription_max_buffer_bytes);
        let net = &mut self.network;
        net.body_read_timeout_ms = o.body_read_timeout_ms.unwrap_or(net.body_read_timeout_ms);
        net.max_body_bytes_in_flight = o
            .max_body_bytes_in_flight
            .unwrap_or(net.max_body_bytes_in_flight);
        net.ops_max_connections = o.ops_max_connections.unwrap_or(net.ops_max_connections);
        net.http_max_connections = o.http_max_connections.unwrap_or(net.http_max_connections);
        net.header_read_timeout_ms = o
            .header_read_timeout_ms
            .unwrap_or(net.header_read_timeout_ms);
        net.keep_alive_timeout_ms = o.keep_alive_timeout_ms.unwrap_or(net.keep_alive_timeout_ms);
        net.ops_secure_port = o.ops_secure_port.or(net.ops_secure_port);
        net.http_secure_port = o.http_secure_port.or(net.http_secure_port);
        let tls = &mut self.tls;
        set(&mut tls.certificate, &o.tls_certificate);
        set(&mut tls.private_key, &o.tls_private_key);
        set(&mut tls.certificate_authority, &o.tls_certificate_authority);
        tls.handshake_timeout_ms = o
            .tls_handshake_timeout_ms
            .unwrap_or(tls.handshake_timeout_ms);
        let mtls = &mut self.mtls;
        mtls.enabled = o.mtls.unwrap_or(mtls.enabled);
        if let Some(user) = &o.mtls_user {
            mtls.user = Some(user.clone());
        }
        mtls.required = o.mtls_required.unwrap_or(mtls.required);
        let mqtt = &mut self.mqtt;
        mqtt.port = o.mqtt_port.unwrap_or(mqtt.port);
        mqtt.secure_port = o.mqtt_secure_port.or(mqtt.secure_port);
        mqtt.websocket = o.mqtt_websocket.unwrap_or(mqtt.websocket);
        mqtt.require_authentication = o
            .mqtt_require_authentication
            .unwrap_or(mqtt.require_authentication);
        mqtt.plain_topics = o.mqtt_plain_topics.unwrap_or(mqtt.plain_topics);
        mqtt.max_connections = o.mqtt_max_connections.unwrap_or(mqtt.max_connections);
        mqtt.max_packet_bytes = o.mqtt_max_packet_bytes.unwrap_or(mqtt.max_packet_bytes);
        mqtt.max_inflight = o.mqtt_max_inflight.unwrap_or(mqtt.max_inflight);
        mqtt.max_queued_messages = o
            .mqtt_max_queued_messages
            .unwrap_or(mqtt.max_queued_messages);
        mqtt.max_queued_bytes = o.mqtt_max_queued_bytes.unwrap_or(mqtt.max_queued_bytes);
        mqtt.max_sessions = o.mqtt_max_sessions.unwrap_or(mqtt.max_sessions);
        mqtt.max_subscriptions_per_session = o
            .mqtt_max_subscriptions_per_session
            .unwrap_or(mqtt.max_subscriptions_per_session);
        mqtt.max_session_expiry_seconds = o
            .mqtt_max_session_expiry_seconds
            .unwrap_or(mqtt.max_session_expiry_seconds);
        mqtt.connect_timeout_ms = o.mqtt_connect_timeout_ms.unwrap_or(mqtt.connect_timeout_ms);
        mqtt.write_timeout_ms = o.mqtt_write_timeout_ms.unwrap_or(mqtt.write_timeout_ms);
        mqtt.save_interval_ms = o.mqtt_save_interval_ms.unwrap_or(mqtt.save_interval_ms);
    }
}

/// The root folder: flag, then `SHOAL_ROOT`, then `./shoal-data`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RootArg {
    /// Root folder: config, databases, keys, logs.
    #[arg(long, env = "SHOAL_ROOT", default_value = "shoal-data")]
    pub(crate) root: PathBuf,
}

/// The machine's host name, or `shoal` if it cannot be read.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "shoal".into())
}

/// The default node name: the host name, as Harper's is.
fn default_node_name() -> String {
    node_name_from_host(&hostname())
}

/// `host` as a node name, with anything a node name may not hold turned into `-`; its
/// first label if the whole still is no node name, else `shoal`.
fn node_name_from_host(host: &str) -> String {
    let labels: Vec<String> = host
        .split('.')
        .map(|label| {
            let label: String = label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .take(63)
                .collect();
            label.trim_matches('-').to_owned()
        })
        .filter(|label| !label.is_empty())
        .collect();
    [
        labels.join("."),
        labels.first().cloned().unwrap_or_default(),
    ]
    .into_iter()
    .find(|name| validate_node_name(name).is_ok())
    .unwrap_or_else(|| "shoal".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_from_host_names() {
        for (host, name) in [
            ("db1", "db1"),
            ("db1.eu-west.example.com", "db1.eu-west.example.com"),
            ("db1.eu-west.example.com.", "db1.eu-west.example.com"),
            ("db_1.my_zone", "db-1.my-zone"),
            ("host.10", "host"),
            ("10.0.0.1", "shoal"),
            ("12", "shoal"),
            ("", "shoal"),
            ("-.-", "shoal"),
        ] {
            assert_eq!(node_name_from_host(host), name, "{host:?}");
        }
        let long = format!("{}.example", "a".repeat(300));
        assert_eq!(
            node_name_from_host(&long),
            format!("{}.example", "a".repeat(63))
        );
        let long = vec!["a".repeat(63); 5].join(".");
        assert_eq!(node_name_from_host(&long), "a".repeat(63));
    }

    #[test]
    fn mtls_user_as_harper_spells_it() {
        use shoal_server::MtlsUser;
        let dir = tempfile::tempdir().unwrap();
        let user = |yaml: &str, flag: Option<&str>| {
            std::fs::write(dir.path().join(CONFIG_FILE), yaml).unwrap();
            let overrides = Overrides {
                mtls_user: flag.map(str::to_owned),
                ..Overrides::default()
            };
            let config = Config::load(dir.path(), &overrides).unwrap();
            config.mtls.options().map(|o| o.user)
        };
        assert_eq!(user("mtls:\n  required: true\n", None), None, "off");
        let on = "mtls:\n  enabled: true\n";
        assert_eq!(user(on, None), Some(MtlsUser::CommonName));
        assert_eq!(
            user("mtls:\n  enabled: true\n  user: CN\n", None),
            Some(MtlsUser::CommonName)
        );
        assert_eq!(
            user("mtls:\n  enabled: true\n  user: null\n", None),
            Some(MtlsUser::Nobody)
        );
        assert_eq!(
            user(on, Some("carol")),
            Some(MtlsUser::Named("carol".into()))
        );
        assert_eq!(user(on, Some("")), Some(MtlsUser::Nobody));
    }

    #[test]
    fn mqtt_section_file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(config.mqtt.port, 1883);
        assert_eq!(config.mqtt.secure_port, None);
        assert!(config.mqtt.websocket);
        let defaults = config.mqtt.options();
        assert!(defaults.require_authentication);
        assert_eq!(
            defaults.plain_topics,
            shoal_mqtt::PlainTopics::Authenticated
        );
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "mqtt:\n  secure_port: 8883\n  websocket: false\n  plain_topics: super_user\n  connect_timeout_ms: 250\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(config.mqtt.secure_port, Some(8883));
        assert!(!config.mqtt.websocket);
        let options = config.mqtt.options();
        assert_eq!(options.plain_topics, shoal_mqtt::PlainTopics::SuperUsers);
        assert_eq!(options.connect_timeout.as_millis(), 250);
        let overrides = Overrides {
            mqtt_port: Some(0),
            mqtt_plain_topics: Some(PlainTopicsSetting::Authenticated),
            mqtt_max_inflight: Some(5),
            ..Overrides::default()
        };
        let config = Config::load(dir.path(), &overrides).unwrap();
        assert_eq!(config.mqtt.port, 0);
        let options = config.mqtt.options();
        assert_eq!(options.plain_topics, shoal_mqtt::PlainTopics::Authenticated);
        assert_eq!(options.max_inflight, 5);
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "mqtt:\n  plain_topics: everyone\n",
        )
        .unwrap();
        assert!(
            Config::load(dir.path(), &overrides).is_err(),
            "unknown value"
        );
    }

    #[test]
    fn file_then_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(config.network.ops_port, 9925);
        assert!(dir.path().join(CONFIG_FILE).exists(), "defaults written");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "network:\n  ops_port: 1234\n  http_port: 1235\nstorage:\n  max_batch: 100\n",
        )
        .unwrap();
        let config = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(config.storage.max_batch, 100);
        let overrides = Overrides {
            http_port: Some(0),
            max_batch: Some(7),
            ..Overrides::default()
        };
        let config = Config::load(dir.path(), &overrides).unwrap();
        assert_eq!(
            (config.network.ops_port, config.network.http_port),
            (1234, 0)
        );
        assert_eq!(config.query.sort_buffer_bytes, 64 << 20);
        assert_eq!(config.storage.max_batch, 7);
        assert_eq!(config.network.host, "127.0.0.1");
        std::fs::write(dir.path().join(CONFIG_FILE), "network:\n  bogus: 1\n").unwrap();
        assert!(
            Config::load(dir.path(), &overrides).is_err(),
            "typos are errors"
        );
    }
}
