//! Retained messages of plain topics, kept durably in `system.hdb_mqtt_retained` (one
//! record per topic, which replicates like the rest of `system`, so every node of a
//! cluster holds them). A subscription reads the ones its filter matches from the table.

use std::ops::Bound;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{Map, Value, json};
use shoal_store::{Database, Mode, Pending, SYSTEM_DATABASE, Store, StoreError, TableSpec, Write};

use crate::message::{Message, Properties};
use crate::topic::matches;

/// The table that holds them.
pub(crate) const TABLE: &str = "hdb_mqtt_retained";
/// Most retained messages one SUBSCRIBE is sent, however many its filters match.
pub(crate) const MAX_SENT: usize = 10_000;
/// Most retained topics one filter's look-up reads: a filter with a leading wildcard
/// reads them all.
const MAX_SCANNED: usize = 100_000;

/// Makes the table if it is missing.
pub(crate) async fn prepare(store: &Store) -> Result<(), StoreError> {
    let spec = TableSpec {
        name: TABLE.into(),
        primary_key: "topic".into(),
        // Read by topic only: indexing payloads would only cost writes.
        attributes: ["payload", "qos", "properties", "expires"]
            .map(|name| (name.to_owned(), false))
            .to_vec(),
        replicate: Some(true),
    };
    crate::system_table(store, spec).await
}

/// Queues the write that keeps `message` as its topic's retained message, or forgets the
/// topic's retained message when the payload is empty; the answer resolves once it is
/// durable.
pub(crate) async fn submit(store: &Store, message: &Message) -> Result<Pending, StoreError> {
    let system = store.database(SYSTEM_DATABASE)?;
    let write = if message.payload.is_empty() {
        Write::Delete {
            table: TABLE.into(),
            ids: vec![Value::String(message.topic.clone())],
        }
    } else {
        Write::Records {
            table: TABLE.into(),
            mode: Mode::Upsert,
            records: vec![record(message)],
        }
    };
    system.submit(write, None).await
}

fn record(message: &Message) -> Map<String, Value> {
    let payload = base64::engine::general_purpose::STANDARD.encode(&message.payload);
    let mut record = json!({
        "topic": message.topic,
        "payload": payload,
        "qos": message.qos as u8,
        "properties": serde_json::to_value(&message.properties).unwrap_or(Value::Null),
    });
    if let Some(at) = message.expires {
        let left = at.saturating_duration_since(std::time::Instant::now());
        record["expires"] = json!(shoal_store::wall_ms() + left.as_millis() as u64);
    }
    match record {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn message(record: &Map<String, Value>, now_ms: u64) -> Option<Message> {
    let topic = record.get("topic")?.as_str()?.to_owned();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(record.get("payload")?.as_str()?)
        .ok()?;
    let expires = match record.get("expires").and_then(Value::as_u64) {
        Some(at) if at <= now_ms => return None,
        Some(at) => Some(std::time::Instant::now() + std::time::Duration::from_millis(at - now_ms)),
        None => None,
    };
    Some(Message {
        topic,
        payload: Bytes::from(payload),
        qos: match record.get("qos").and_then(Value::as_u64) {
            Some(0) => QoS::AtMostOnce,
            Some(1) => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        },
        retain: true,
        properties: record
            .get("properties")
            .and_then(|p| serde_json::from_value::<Properties>(p.clone()).ok())
            .unwrap_or_default(),
        expires,
        publisher: None,
    })
}

/// The retained messages `filter` matches, at most `limit`: read from the range of topics
/// that share the filter's levels before its first wildcard, at most [`MAX_SCANNED`] of
/// them.
pub(crate) fn matching(store: &Store, filter: &str, limit: usize) -> Vec<Arc<Message>> {
    let Ok(system) = store.database(SYSTEM_DATABASE) else {
        return Vec::new();
    };
    read(&system, filter, limit).unwrap_or_default()
}

fn read(system: &Database, filter: &str, limit: usize) -> Result<Vec<Arc<Message>>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let snapshot = system.snapshot()?;
    let Ok(table) = snapshot.table(TABLE) else {
        return Ok(Vec::new());
    };
    let now_ms = shoal_store::wall_ms();
    if !filter.contains(['+', '#']) {
        let key = Value::String(filter.to_owned());
        let found = snapshot
            .get(&table, &key)?
            .and_then(|v| v.value().ok().flatten())
            .and_then(|record| message(&record, now_ms));
        return Ok(found.into_iter().map(Arc::new).collect());
    }
    // The literal levels before the first wildcard bound the scan.
    let literal: Vec<&str> = filter
        .split('/')
        .take_while(|level| *level != "+" && *level != "#")
        .collect();
    let prefix = literal.join("/");
    let lower = Value::String(prefix.clone());
    let upper = Value::String(format!("{prefix}\u{10ffff}"));
    let mut found = Vec::new();
    let rows = snapshot.scan(
        &table,
        Bound::Included(&lower),
        Bound::Included(&upper),
        false,
    )?;
    for row in rows.take(MAX_SCANNED) {
        let (topic, version) = row?;
        // The key is the topic: only matching records are decoded.
        if !topic.as_str().is_some_and(|topic| matches(filter, topic)) {
            continue;
        }
        let Some(record) = version.value()? else {
            continue;
        };
        if let Some(message) = message(&record, now_ms) {
            found.push(Arc::new(message));
            if found.len() >= limit {
                break;
            }
        }
    }
    Ok(found)
}
