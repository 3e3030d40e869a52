//! Messages a layer above (the MQTT broker) relays between nodes: opaque payloads this
//! crate never looks into, carried on the system database link between each ordered pair
//! of peers, best effort and in the order they were relayed.
//!
//! Each sending stream of the system database opens a [`Mailbox`]: a queue bounded in
//! messages and bytes that [`Relays::relay`] fills without waiting (a full queue drops,
//! and counts) and the stream empties into `Messages` frames between its runs of log
//! entries. Only direct peers get a message; nobody forwards it, so in a full mesh every
//! node gets each message once, and in a partial mesh a node does not get the messages
//! of nodes it has no link from.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::proto::MAX_FRAME_BYTES;

/// A message a peer relayed.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// The node it was published on (the peer whose link carried it).
    pub origin: String,
    /// The relaying layer's encoding of it, opaque here.
    pub payload: Bytes,
}

/// Relayed messages as they arrive from peers (see [`crate::Cluster::relayed`]).
pub struct RelayedMessages {
    rx: broadcast::Receiver<Arc<Relayed>>,
    counters: Arc<Counters>,
}

impl RelayedMessages {
    /// The next message, in the order its peer sent them; `None` once the cluster is
    /// gone. A consumer that falls further behind than the receive queue holds loses the
    /// oldest messages it has not taken (counted as `lost` in `cluster_status`).
    /// Cancel-safe.
    pub async fn recv(&mut self) -> Option<Arc<Relayed>> {
        loop {
            match self.rx.recv().await {
                Ok(message) => return Some(message),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.counters.lost.fetch_add(missed, Ordering::Relaxed);
                    tracing::debug!(missed, "relayed messages lost: their consumer lagged");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// What happened to relayed messages since start.
#[derive(Debug, Default)]
struct Counters {
    /// Messages written to a peer's link (once per peer).
    sent: AtomicU64,
    /// Messages a peer missed: its queue was full, or its link ended before they left.
    dropped: AtomicU64,
    /// Messages peers relayed to this node.
    received: AtomicU64,
    /// Received messages a lagging consumer lost.
    lost: AtomicU64,
}

/// A peer's queue, as the relaying side sees it.
struct Outbox {
    id: u64,
    node: String,
    tx: mpsc::Sender<Bytes>,
    /// Bytes of the messages in the queue.
    queued: Arc<AtomicUsize>,
}

/// Every open mailbox and the channel that hands received messages out.
pub(crate) struct Relays {
    outboxes: RwLock<Vec<Outbox>>,
    next: AtomicU64,
    incoming: broadcast::Sender<Arc<Relayed>>,
    counters: Arc<Counters>,
    max_messages: usize,
    max_bytes: usize,
}

impl Relays {
    /// Queues of at most `max_messages` messages and `max_bytes` bytes per peer; a
    /// consumer may fall `max_messages` received messages behind.
    pub(crate) fn new(max_messages: usize, max_bytes: usize) -> Self {
        let max_messages = max_messages.clamp(1, usize::MAX / 4);
        // A message must fit in a frame, whatever else the frame holds.
        let max_bytes = max_bytes.min(MAX_FRAME_BYTES / 2);
        Relays {
            outboxes: RwLock::new(Vec::new()),
            next: AtomicU64::new(0),
            incoming: broadcast::channel(max_messages).0,
            counters: Arc::default(),
            max_messages,
            max_bytes,
        }
    }

    /// Whether a relayed message would go anywhere now (some peer's link is live).
    pub(crate) fn has_outboxes(&self) -> bool {
        !self
            .outboxes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Queues `payload` for every peer with an open mailbox; a peer whose queue has no
    /// room misses it. Never waits.
    pub(crate) fn relay(&self, payload: &Bytes) {
        let len = payload.len();
        let outboxes = self.outboxes.read().unwrap_or_else(PoisonError::into_inner);
        for outbox in outboxes.iter() {
            let reserved = outbox
                .queued
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    queued.checked_add(len).filter(|&n| n <= self.max_bytes)
                })
                .is_ok();
            if reserved && outbox.tx.try_send(payload.clone()).is_ok() {
                continue;
            }
            if reserved {
                outbox.queued.fetch_sub(len, Ordering::AcqRel);
            }
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %outbox.node, bytes = len, "relay queue full; message dropped");
        }
    }

    /// Opens the queue of messages for `node`, until the mailbox drops.
    pub(crate) fn open(self: &Arc<Self>, node: &str) -> Mailbox {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.max_messages);
        let queued = Arc::new(AtomicUsize::new(0));
        self.outboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Outbox {
                id,
                node: node.to_owned(),
                tx,
                queued: queued.clone(),
            });
        Mailbox {
            relays: self.clone(),
            id,
            rx,
            queued,
            peeked: None,
        }
    }

    /// Hands out messages `origin` relayed to this node, in order.
    pub(crate) fn deliver(&self, origin: &str, payloads: Vec<Bytes>) {
        self.counters
            .received
            .fetch_add(payloads.len() as u64, Ordering::Relaxed);
        for payload in payloads {
            // With no consumer, nobody wants it.
            let _ = self.incoming.send(Arc::new(Relayed {
                origin: origin.to_owned(),
                payload,
            }));
        }
    }

    /// A new consumer of received messages, from now on.
    pub(crate) fn subscribe(&self) -> RelayedMessages {
        RelayedMessages {
            rx: self.incoming.subscribe(),
            counters: self.counters.clone(),
        }
    }

    /// The counters, for `cluster_status`.
    pub(crate) fn status(&self) -> Value {
        let c = &self.counters;
        json!({
            "sent": c.sent.load(Ordering::Relaxed),
            "dropped": c.dropped.load(Ordering::Relaxed),
            "received": c.received.load(Ordering::Relaxed),
            "lost": c.lost.load(Ordering::Relaxed),
        })
    }
}

/// One sending stream's queue of messages to relay; dropping it closes the queue, and
/// what it still holds counts as dropped.
pub(crate) struct Mailbox {
    relays: Arc<Relays>,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    queued: Arc<AtomicUsize>,
    /// A message taken by [`Mailbox::ready`] and not yet by [`Mailbox::take`].
    peeked: Option<Bytes>,
}

impl Mailbox {
    /// Resolves once a message is queued. Cancel-safe.
    pub(crate) async fn ready(&mut self) {
        if self.peeked.is_none() {
            // The outbox holds a sender until this mailbox drops: never `None`.
            self.peeked = self.rx.recv().await;
        }
    }

    /// Takes the queued messages, in order, up to `max_bytes` (the first one whatever
    /// its size); empty when none is queued.
    pub(crate) fn take(&mut self, max_bytes: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut bytes = 0;
        while let Some(message) = self.peeked.take().or_else(|| self.rx.try_recv().ok()) {
            if !out.is_empty() && bytes + message.len() > max_bytes {
                self.peeked = Some(message);
                break;
            }
            bytes += message.len();
            self.queued.fetch_sub(message.len(), Ordering::AcqRel);
            out.push(message);
        }
        out
    }

    /// Counts `n` messages written to the link.
    pub(crate) fn sent(&self, n: usize) {
        self.relays
            .counters
            .sent
            .fetch_add(n as u64, Ordering::Relaxed);
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        self.relays
            .outboxes
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|o| o.id != self.id);
        // Unregistered: nothing more arrives, so what is left was never sent.
        let mut left = u64::from(self.peeked.is_some());
        self.rx.close();
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        self.relays
            .counters
            .dropped
            .fetch_add(left, Ordering::Relaxed);
    }
}
