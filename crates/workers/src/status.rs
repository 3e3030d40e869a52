//! What operators see of a worker.

use serde::Serialize;

/// What a worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Working.
    Running,
    /// Waiting for work.
    Idle,
    /// Waiting before it retries after a failure.
    Backoff,
    /// Asked to stop, not yet finished.
    Stopping,
    /// Finished.
    Stopped,
}

impl State {
    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            1 => State::Idle,
            2 => State::Backoff,
            _ => State::Running,
        }
    }
}

/// The last error a worker reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    /// What went wrong.
    pub message: String,
    /// When, in milliseconds since the epoch.
    pub time: u64,
}

/// One worker's status.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStatus {
    /// What the worker is, e.g. `replication/sender/node-b/dev`.
    pub name: String,
    /// What it is doing.
    pub state: State,
    /// When it started, in milliseconds since the epoch.
    pub started: u64,
    /// Times it waited out a back-off and tried again.
    pub restarts: u64,
    /// Items it processed (writes, entries, events, connections: see its name).
    pub items: u64,
    /// The last error it reported, if any.
    pub last_error: Option<LastError>,
}

/// Counts over a registry's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Workers running now.
    pub running: usize,
    /// Workers that finished, however they ended.
    pub finished: u64,
    /// Of those, the ones that ended with an error or a panic.
    pub failed: u64,
}
