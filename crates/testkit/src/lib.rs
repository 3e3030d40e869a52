//! End-to-end test harness for the `shoal` database server.
//!
//! It starts, kills and restarts real `shoal` processes (each in its own
//! temporary root directory) and talks to them only over the wire: process
//! spawning, signals, and HTTP against the operations API and the HTTP port.
//! It deliberately links no other workspace crate, so tests written with it
//! exercise exactly what a client would see.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::{path::Path, time::Duration};
//! use shoal_testkit::{Node, NodeOptions, wait_until};
//!
//! let mut node = Node::start(Path::new("target/debug/shoal"), NodeOptions::new("n1")).await?;
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

mod mitm;
mod node;
mod proxy;
mod wait;

pub use mitm::{Direction, Rewrite, TlsMitm};
pub use node::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, KEEP_DIRS_ENV, Node, NodeOptions, ReadyLine,
};
pub use proxy::Proxy;
pub use wait::{POLL_INTERVAL, wait_until};
