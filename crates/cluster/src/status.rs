//! What each replication link is doing, for `cluster_status`.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;

/// The state of one (peer, database) link, as this node receives it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkStatus {
    /// Whether the link is up.
    pub connected: bool,
    /// Round-trip time of the last ping, in milliseconds.
    pub latency: Option<f64>,
    /// Last of the peer's sequences applied here.
    pub cursor: u64,
    /// The peer's last sequence, as last heard.
    pub head: u64,
    /// Entries behind the peer.
    pub lag: u64,
    /// Milliseconds between the commit on the peer of the last applied entry and its
    /// application here.
    pub lag_ms: Option<f64>,
    /// Commit time (ms) on the peer of the last entry applied here.
    #[serde(rename = "lastReceivedRemoteTime")]
    pub last_received_remote_time: Option<f64>,
    /// When (ms) this node last confirmed a commit to the peer.
    #[serde(rename = "lastCommitConfirmed")]
    pub last_commit_confirmed: Option<f64>,
    /// Remote transactions applied since start.
    pub applied: u64,
    /// Batches received and queued for commit but not yet durable (back-pressure: the
    /// link stops reading past a small window).
    pub in_flight: usize,
    /// Full copies taken from this peer since start.
    pub full_copies: u64,
    /// Whether a full copy from this peer is under way.
    pub copying: bool,
    /// Rows merged by full copies from this peer since start.
    pub copied_rows: u64,
    /// Connections made since start.
    pub connects: u64,
    /// Set while the peer's next entry is stamped this many milliseconds ahead of this
    /// node's clock, beyond the maximum offset: it and what follows it on this link wait
    /// until this node's clock has caught up (the peer's clock is probably wrong).
    pub clock_ahead_ms: Option<u64>,
    /// The last error, if the link has failed since it last connected.
    pub last_error: Option<String>,
}

/// Every link's status, by (peer, database).
#[derive(Debug, Default)]
pub(crate) struct StatusBoard {
    links: Mutex<BTreeMap<(String, String), LinkStatus>>,
}

impl StatusBoard {
    /// Changes one link's status.
    pub(crate) fn update(&self, peer: &str, database: &str, f: impl FnOnce(&mut LinkStatus)) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        f(links
            .entry((peer.to_owned(), database.to_owned()))
            .or_default());
    }

    /// Forgets a link that no longer exists.
    pub(crate) fn remove(&self, peer: &str, database: &str) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(peer.to_owned(), database.to_owned()));
    }

    /// A copy of every link's status.
    pub(crate) fn snapshot(&self) -> BTreeMap<(String, String), LinkStatus> {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
