//! Named background workers: every long-running task of a node is started here, with a
//! name and a status operators can see, and is awaited when the node stops.
//!
//! [`Workers`] is a registry. [`Workers::spawn`] starts an async task and
//! [`Workers::spawn_thread`] an OS thread; each gets a [`Ctx`] through which it reports
//! its state (running, idle, waiting to retry), counts what it processed, records its last
//! error, waits out a capped exponential [`Backoff`] after a transient failure, and learns
//! that it should stop ([`Ctx::stopping`]). A worker that returns an error or panics is
//! reported (logged, counted, its message kept), never lost silently.
//!
//! [`Workers::list`] shows the workers running now; a finished worker leaves the registry
//! (so high-churn workers, such as one per subscription, cost nothing once gone) and only
//! counts in [`Workers::totals`]. [`Workers::shutdown`] asks every task to stop and awaits
//! them all within a deadline, aborting those that overstay it. Threads are stopped by
//! their owner (the store's writers finish their queue once nothing else can write).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::time::Duration;
//! use shoal_workers::Workers;
//! let workers = Workers::new();
//! workers.spawn("ticker", |ctx| async move {
//!     loop {
//!         tokio::select! {
//!             () = tokio::time::sleep(Duration::from_millis(10)) => ctx.count(1),
//!             () = ctx.stopping() => return,
//!         }
//!     }
//! });
//! assert_eq!(workers.list()[0].name, "ticker");
//! assert!(workers.shutdown(Duration::from_secs(5)).await.is_empty());
//! assert!(workers.list().is_empty());
//! # }
//! ```
//!
//! Non-goals: scheduling, priorities, restarting a worker that ended (a worker that should
//! survive failures loops and backs off itself), short per-request blocking reads.

mod backoff;
mod registry;
mod status;

#[cfg(test)]
mod tests;

pub use backoff::Backoff;
pub use registry::{AbortOnDrop, Ctx, Exit, WorkerHandle, Workers};
pub use status::{LastError, State, Totals, WorkerStatus};
