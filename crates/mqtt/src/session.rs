//! A client's session: its subscriptions, the messages queued for it, those sent and not
//! yet acknowledged, and the QoS 2 messages it sent that await release. A session
//! outlives its connection when the client asked for that (3.1.1 `clean_session = 0`,
//! 5.0 session expiry), so that a client that reconnects gets what it missed.
//!
//! Queues are bounded in messages and bytes: past either bound the oldest queued message
//! is dropped (logged and counted), so a slow or absent subscriber costs bounded memory
//! and never slows a publisher.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use tokio::sync::{Notify, watch};

use crate::message::Message;

/// How a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SubOptions {
    /// Most QoS a message is delivered with.
    pub(crate) qos: QoS,
    /// Messages this client published are not delivered back to it.
    pub(crate) no_local: bool,
    /// Messages keep their retain flag (else it is cleared on live delivery).
    pub(crate) retain_as_published: bool,
    /// The 5.0 subscription identifier.
    pub(crate) id: Option<usize>,
}

/// What a subscription follows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Target {
    /// A plain topic filter (possibly shared: `$share/<group>/<filter>`).
    Plain(crate::topic::Subscription),
    /// A table's records, or one of them.
    Table(crate::records::TableFilter),
}

/// One subscription of a session.
#[derive(Debug, Clone)]
pub(crate) struct Subscribed {
    /// What it follows.
    pub(crate) target: Target,
    /// How it delivers.
    pub(crate) options: SubOptions,
}

/// One message on its way to one client.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    /// The message.
    pub(crate) message: Arc<Message>,
    /// QoS it is delivered with.
    pub(crate) qos: QoS,
    /// The retain flag it is delivered with.
    pub(crate) retain: bool,
    /// The ids of the subscriptions it matched.
    pub(crate) ids: Vec<usize>,
}

/// A QoS 1 or 2 delivery sent and not yet completed.
#[derive(Debug, Clone)]
pub(crate) struct Inflight {
    /// What was sent.
    pub(crate) delivery: Delivery,
    /// For QoS 2: PUBREC came and PUBREL was sent; PUBCOMP is awaited.
    pub(crate) released: bool,
}

/// A session's mutable state.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Subscriptions by the filter the client gave.
    pub(crate) subscriptions: HashMap<String, Subscribed>,
    /// Deliveries waiting to be sent.
    pub(crate) queue: VecDeque<Delivery>,
    /// Bytes of `queue`.
    pub(crate) queued_bytes: usize,
    /// Sent QoS 1 and 2 deliveries, by packet id.
    pub(crate) inflight: BTreeMap<u16, Inflight>,
    /// The last packet id used.
    pub(crate) last_pkid: u16,
    /// Packet ids of QoS 2 messages received and not yet released.
    pub(crate) incoming: HashSet<u16>,
    /// The live connection, if any: its id and how to tell it to close.
    pub(crate) connection: Option<(u64, watch::Sender<Option<DisconnectReasonCode>>)>,
    /// How long the session outlives its connection.
    pub(crate) expiry: Duration,
    /// Bumped on every connect and end, so that a timer set for an older one (expiry,
    /// will delay) knows it is stale.
    pub(crate) generation: u64,
    /// The user the client logged in as.
    pub(crate) username: Option<String>,
    /// Most deliveries in flight the client accepts (5.0 receive maximum).
    pub(crate) receive_maximum: u16,
    /// Largest packet the client accepts (5.0 maximum packet size).
    pub(crate) max_packet: Option<u32>,
    /// Changed since it was last saved.
    pub(crate) dirty: bool,
}

/// Bounds on what one session queues, and what the bounds dropped across sessions.
#[derive(Debug)]
pub(crate) struct QueueLimits {
    /// Messages.
    pub(crate) messages: usize,
    /// Bytes.
    pub(crate) bytes: usize,
    /// Messages dropped from full queues since the broker started.
    pub(crate) dropped: AtomicU64,
}

/// A client's session, shared by the broker's indexes and its connection.
#[derive(Debug)]
pub(crate) struct Session {
    /// The client identifier.
    pub(crate) client_id: String,
    state: Mutex<State>,
    /// Woken when there is something to send.
    pub(crate) wake: Notify,
}

impl Session {
    /// A new, empty session.
    pub(crate) fn new(client_id: String) -> Session {
        Session {
            client_id,
            state: Mutex::new(State {
                receive_maximum: u16::MAX,
                ..State::default()
            }),
            wake: Notify::new(),
        }
    }

    /// The session's state, locked.
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a delivery, dropping the oldest beyond the limits. A QoS 0 delivery to a
    /// client not connected is dropped at once, as other brokers do.
    pub(crate) fn push(&self, delivery: Delivery, limits: &QueueLimits) {
        let size = delivery.message.size();
        {
            let mut state = self.state();
            if state.connection.is_none() && delivery.qos == QoS::AtMostOnce {
                return;
            }
            state.queued_bytes += size;
            state.queue.push_back(delivery);
            state.dirty = true;
            let mut dropped = 0;
            while state.queue.len() > limits.messages.max(1)
                || (state.queued_bytes > limits.bytes && state.queue.len() > 1)
            {
                if let Some(old) = state.queue.pop_front() {
                    state.queued_bytes = state.queued_bytes.saturating_sub(old.message.size());
                    dropped += 1;
                }
            }
            if dropped > 0 {
                let total = limits.dropped.fetch_add(dropped, Ordering::Relaxed) + dropped;
                // One line per power of two keeps a flood of drops from flooding the log.
                if total.is_power_of_two() {
                    tracing::warn!(
                        client = %self.client_id,
                        total,
                        "session queue full: oldest messages dropped"
                    );
                }
            }
        }
        self.wake.notify_one();
    }

    /// Takes the next delivery to send and, for QoS 1 and 2, its packet id (recorded as
    /// in flight): `None` when nothing is queued, or the in-flight window is full.
    pub(crate) fn next(&self, max_inflight: u16, now: Instant) -> Option<(Delivery, u16)> {
        let mut state = self.state();
        loop {
            let window = usize::from(max_inflight.min(state.receive_maximum).max(1));
            let front = state.queue.front()?;
            if front.qos != QoS::AtMostOnce && state.inflight.len() >= window {
                return None;
            }
            let delivery = state.queue.pop_front()?;
            state.queued_bytes = state.queued_bytes.saturating_sub(delivery.message.size());
            if delivery.message.expired(now) {
                continue;
            }
            if delivery.qos == QoS::AtMostOnce {
                return Some((delivery, 0));
            }
            let pkid = state.track(&delivery)?;
            return Some((delivery, pkid));
        }
    }
}

impl State {
    /// Records a QoS 1 or 2 delivery as in flight under a packet id not in use; `None`
    /// when all are.
    pub(crate) fn track(&mut self, delivery: &Delivery) -> Option<u16> {
        for _ in 0..u16::MAX {
            self.last_pkid = self.last_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&self.last_pkid) {
                let inflight = Inflight {
                    delivery: delivery.clone(),
                    released: false,
                };
                self.inflight.insert(self.last_pkid, inflight);
                self.dirty = true;
                return Some(self.last_pkid);
            }
        }
        None
    }
}
