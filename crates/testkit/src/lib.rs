//! End-to-end test harness for the `shoal` database server.
//!
//! It starts, kills and restarts real `shoal` processes (each in its own
//! temporary root directory) and talks to them only over the wire: process
//! spawning, signals, and HTTP against the operations API and the HTTP port.
//! It deliberately links no other workspace crate, so tests written with it
//! exercise exactly what a client would see.
//!
//! What it offers:
//!
//! - one node: [`Node`] (spawn, ready line, kill, restart, operations API calls), and
//!   [`start`] / [`start_with`] for a fresh node of the [`shoal_bin`] cargo built;
//! - requests: [`admin`] and [`anon`] build requests on the HTTP port, [`basic`] is the
//!   admin's `Authorization` header; [`create_table`], [`create_table_in`] and [`insert`]
//!   set up tables through the operations API;
//! - answers: [`assert_error`] and friends check Harper's `{"error": ...}` envelope,
//!   [`assert_denied`] its 403 refusal body; [`add_role`] and [`add_user_with_role`] make
//!   roles and their users;
//!   [`rows`], [`ids`], [`message`] and [`strip_timestamps`] read what came back;
//! - waiting and randomness: [`wait_until`] polls with a deadline instead of sleeping,
//!   [`seed`] gives a replayable seed, [`now_ms`] the clock the nodes share;
//! - MQTT: [`Node::mqtt_addr`] (an ephemeral port unless a flag or `env` sets
//!   `--mqtt-port`) and [`Node::mqtts_addr`];
//! - TLS: [`Node::ops_tls_addr`] and [`Node::https_addr`] give the secure ports, a
//!   [`TestCa`] issues server and client certificates, [`https_client`] trusts a CA, and
//!   [`tls_connect`] opens a TLS stream for clients other than HTTP;
//! - the network between nodes: [`Proxy`] (a TCP proxy that can be cut) and [`TlsMitm`]
//!   (a TLS man in the middle);
//! - clusters: the [`cluster`] module starts members on their own loopback addresses,
//!   joins them, waits for links and convergence, and keeps a [`cluster::Ledger`] of
//!   acknowledged writes that knows which value must win.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::time::Duration;
//! use shoal_testkit::{create_table, start, wait_until};
//!
//! let mut node = start("n1").await?;
//! create_table(&node, "dog").await?;
//! let body = node.op_ok(serde_json::json!({"operation": "describe_all"})).await?;
//! node.kill().await?;
//! node.restart().await?;
//! wait_until(Duration::from_secs(5), "node is healthy", async || {
//!     Ok(node.http_get("/health").await?.0 == 200)
//! })
//! .await?;
//! # let _ = body;
//! # Ok(())
//! # }
//! ```
//!
//! Root directories are removed when the [`Node`] is dropped, unless the test
//! is panicking or the `SHOAL_KEEP_TEST_DIRS` environment variable is set; the
//! kept path is printed to stderr. Each root holds `stdout.log` and
//! `stderr.log` with the output of every run of the node.

pub mod cluster;

mod answers;
mod certs;
mod clock;
mod http;
mod mitm;
mod node;
mod ops;
mod proxy;
mod roles;
mod seed;
mod start;
mod wait;

pub use answers::{
    assert_error, assert_error_prefix, assert_error_shape, ids, message, nums, rows,
    strip_timestamps,
};
pub use certs::{Issued, TestCa, https_client, tls_connect};
pub use clock::now_ms;
pub use http::{admin, anon, basic};
pub use mitm::{Direction, Rewrite, TlsMitm};
pub use node::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, KEEP_DIRS_ENV, Node, NodeOptions, ReadyLine,
};
pub use ops::{create_table, create_table_in, insert};
pub use proxy::Proxy;
pub use roles::{
    NOT_AUTHORIZED, add_role, add_user_with_role, assert_denied, assert_super_user_only,
};
pub use seed::{OrPanic, seed};
pub use start::{shoal_bin, start, start_with};
pub use wait::{POLL_INTERVAL, wait_until};
