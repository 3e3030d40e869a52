//! Sessions that outlive their connections are kept in `system.hdb_mqtt_session` (this
//! node's own: the table does not replicate), with their subscriptions, queued messages
//! and messages in flight, so that they survive a restart. As Mosquitto does, sessions
//! are saved every `save_interval` (only those that changed) and when the broker
//! closes: a node killed outright loses at most the last interval's changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use shoal_store::{Mode, SYSTEM_DATABASE, Store, StoreError, TableSpec, Write, wall_ms};

use crate::message::{Message, Properties};
use crate::session::{Delivery, Inflight, Session, State, SubOptions};

/// The table that holds them.
const TABLE: &str = "hdb_mqtt_session";

/// Makes the table if it is missing.
pub(crate) async fn prepare(store: &Store) -> Result<(), StoreError> {
    let spec = TableSpec {
        name: TABLE.into(),
        primary_key: "clientId".into(),
        // Read whole, by client: indexing queues and subscriptions would only cost writes.
        attributes: ["username", "subscriptions", "queue", "inflight"]
            .map(|name| (name.to_owned(), false))
            .to_vec(),
        replicate: Some(false),
    };
    crate::system_table(store, spec).await
}

/// A message as saved.
#[derive(Debug, Serialize, Deserialize)]
struct SavedMessage {
    topic: String,
    /// Base64.
    payload: String,
    qos: u8,
    retain: bool,
    properties: Properties,
    /// Wall-clock milliseconds at which it expires.
    expires: Option<u64>,
    publisher: Option<String>,
    /// The delivery's QoS, retain flag and subscription ids.
    deliver_qos: u8,
    deliver_retain: bool,
    ids: Vec<usize>,
}

/// A subscription as saved: the filter the client gave, and its options.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedSubscription {
    pub(crate) path: String,
    pub(crate) qos: u8,
    pub(crate) no_local: bool,
    pub(crate) retain_as_published: bool,
    pub(crate) id: Option<usize>,
}

/// A session as saved.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Saved {
    #[serde(rename = "clientId")]
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    /// Seconds the session outlives its connection.
    pub(crate) expiry: u64,
    /// Wall-clock milliseconds when it was saved (its connection is gone after a restart,
    /// so its expiry counts from here).
    pub(crate) saved_at: u64,
    pub(crate) subscriptions: Vec<SavedSubscription>,
    queue: Vec<SavedMessage>,
    /// (packet id, released, message).
    inflight: Vec<(u16, bool, SavedMessage)>,
    last_pkid: u16,
}

fn qos(n: u8) -> QoS {
    match n {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn save_delivery(delivery: &Delivery, now: Instant, now_ms: u64) -> SavedMessage {
    let m = &delivery.message;
    SavedMessage {
        topic: m.topic.clone(),
        payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
        qos: m.qos as u8,
        retain: m.retain,
        properties: m.properties.clone(),
        expires: m.expires.map(|at| {
            now_ms + u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(0)
        }),
        publisher: m.publisher.clone(),
        deliver_qos: delivery.qos as u8,
        deliver_retain: delivery.retain,
        ids: delivery.ids.clone(),
    }
}

fn restore_delivery(saved: SavedMessage, now: Instant, now_ms: u64) -> Option<Delivery> {
    let expires = match saved.expires {
        Some(at) if at <= now_ms => return None,
        Some(at) => Some(now + Duration::from_millis(at - now_ms)),
        None => None,
    };
    let payload = base64::engine::general_purpose::STANDARD
        .decode(saved.payload)
        .ok()?;
    Some(Delivery {
        message: Arc::new(Message {
            topic: saved.topic,
            payload: Bytes::from(payload),
            qos: qos(saved.qos),
            retain: saved.retain,
            properties: saved.properties,
            expires,
            publisher: saved.publisher,
        }),
        qos: qos(saved.deliver_qos),
        retain: saved.deliver_retain,
        ids: saved.ids,
    })
}

/// What to save of a session's state.
pub(crate) fn save(client_id: &str, state: &State) -> Saved {
    let (now, now_ms) = (Instant::now(), wall_ms());
    Saved {
        client_id: client_id.to_owned(),
        username: state.username.clone(),
        expiry: state.expiry.as_secs(),
        saved_at: now_ms,
        subscriptions: state
            .subscriptions
            .iter()
            .map(|(path, s)| SavedSubscription {
                path: path.clone(),
                qos: s.options.qos as u8,
                no_local: s.options.no_local,
                retain_as_published: s.options.retain_as_published,
                id: s.options.id,
            })
            .collect(),
        queue: state
            .queue
            .iter()
            .filter(|d| d.qos != QoS::AtMostOnce)
            .map(|d| save_delivery(d, now, now_ms))
            .collect(),
        inflight: state
            .inflight
            .iter()
            .map(|(pkid, i)| (*pkid, i.released, save_delivery(&i.delivery, now, now_ms)))
            .collect(),
        last_pkid: state.last_pkid,
    }
}

impl SavedSubscription {
    /// The subscription's options.
    pub(crate) fn options(&self) -> SubOptions {
        SubOptions {
            qos: qos(self.qos),
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            id: self.id,
        }
    }
}

impl Saved {
    /// The session this was, without its subscriptions (the broker indexes those), and
    /// how long it has left to live.
    pub(crate) fn restore(self) -> (Arc<Session>, Duration, Vec<SavedSubscription>) {
        let (now, now_ms) = (Instant::now(), wall_ms());
        let session = Arc::new(Session::new(self.client_id));
        {
            let mut state = session.state();
            state.username = self.username;
            state.expiry = Duration::from_secs(self.expiry);
            state.last_pkid = self.last_pkid;
            for saved in self.queue {
                if let Some(delivery) = restore_delivery(saved, now, now_ms) {
                    state.queued_bytes += delivery.message.size();
                    state.queue.push_back(delivery);
                }
            }
            for (pkid, released, saved) in self.inflight {
                if let Some(delivery) = restore_delivery(saved, now, now_ms) {
                    state.inflight.insert(pkid, Inflight { delivery, released });
                }
            }
        }
        let gone = Duration::from_millis(now_ms.saturating_sub(self.saved_at));
        let left = Duration::from_secs(self.expiry).saturating_sub(gone);
        (session, left, self.subscriptions)
    }
}

/// Every saved session.
pub(crate) fn load(store: &Store) -> Result<Vec<Saved>, StoreError> {
    let system = store.database(SYSTEM_DATABASE)?;
    let snapshot = system.snapshot()?;
    let Ok(table) = snapshot.table(TABLE) else {
        return Ok(Vec::new());
    };
    let mut saved = Vec::new();
    let all = std::ops::Bound::Unbounded;
    for row in snapshot.scan(&table, all, all, false)? {
        let (key, version) = row?;
        let Some(record) = version.value()? else {
            continue;
        };
        match serde_json::from_value::<Saved>(Value::Object(record)) {
            Ok(session) => saved.push(session),
            Err(error) => tracing::warn!(client = %key, %error, "MQTT session not restored"),
        }
    }
    Ok(saved)
}

/// Writes `sessions` and removes the saved sessions of `ended`.
pub(crate) async fn write(
    store: &Store,
    sessions: Vec<Saved>,
    ended: Vec<String>,
) -> Result<(), StoreError> {
    let system = store.database(SYSTEM_DATABASE)?;
    if !sessions.is_empty() {
        let records: Vec<Map<String, Value>> = sessions
            .into_iter()
            .filter_map(|s| match serde_json::to_value(s) {
                Ok(Value::Object(record)) => Some(record),
                _ => None,
            })
            .collect();
        let write = Write::Records {
            table: TABLE.into(),
            mode: Mode::Put,
            records,
        };
        system.write(write, None).await?;
    }
    if !ended.is_empty() {
        let write = Write::Delete {
            table: TABLE.into(),
            ids: ended.into_iter().map(Value::String).collect(),
        };
        system.write(write, None).await?;
    }
    Ok(())
}
