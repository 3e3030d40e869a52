//! Topics that are records. `Export/id` (a name a component exports), `database/table/id`
//! and `table/id` (a table of the `data` database) name a record; `…/#` and `…/+` after
//! the table follow the whole table. A retained publish upserts the record (a JSON
//! object payload is the record; any other payload is kept as `value` with its
//! `contentType`), an empty retained payload deletes it, and subscribers get every
//! committed change however it was made (REST, operations, replication), because each
//! database's commits are followed once for all of its subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use base64::Engine;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{Map, Value};
use shoal_auth::Action;
use shoal_store::{
    ChangeKind, Database, FollowError, FollowOptions, Mode, Pending, SYSTEM_DATABASE, Start,
    TableDef, Write,
};

use crate::BrokerParts;
use crate::access::Access;
use crate::codec::Refusal;
use crate::message::{Message, Properties};
use crate::router::min_qos;
use crate::session::{Delivery, QueueLimits, Session, SubOptions};

/// The database `table/id` topics name.
const DEFAULT_DATABASE: &str = "data";
/// A subscriber further behind its database's commits than this is skipped ahead.
const MAX_LAG: u64 = 100_000;
/// Attribute that holds a payload that is not a JSON object.
const VALUE: &str = "value";
/// Attribute that holds that payload's content type.
const CONTENT_TYPE: &str = "contentType";
/// Set when `value` holds base64 of a payload that is not UTF-8.
const ENCODING: &str = "encoding";

/// A subscription to a table's records, or to one record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TableFilter {
    /// The table's database.
    pub(crate) database: String,
    /// The table.
    pub(crate) table: String,
    /// How the subscriber named the table: what delivered topics start with.
    pub(crate) prefix: String,
    /// One record's primary key, or the whole table.
    pub(crate) key: Option<Value>,
}

/// A topic name or filter resolved to a table.
pub(crate) struct Resolved {
    /// The table's database.
    pub(crate) db: Arc<Database>,
    /// The table.
    pub(crate) table: Arc<TableDef>,
    /// How the topic named the table.
    pub(crate) prefix: String,
    /// The record id as written, when the topic names one record.
    pub(crate) id: Option<String>,
}

impl Resolved {
    /// The primary key the id names: the candidate a record exists under (a numeric id
    /// is tried as a number, then as a string), else the first candidate.
    pub(crate) fn key(&self) -> Option<Value> {
        let id = self.id.as_ref()?;
        let text = Value::String(id.clone());
        let candidates = match serde_json::from_str::<Value>(id) {
            Ok(number @ Value::Number(_)) => vec![number, text],
            _ => vec![text],
        };
        if let Ok(snapshot) = self.db.snapshot() {
            for key in &candidates {
                if matches!(snapshot.get(&self.table, key), Ok(Some(version)) if !version_is_deleted(&version))
                {
                    return Some(key.clone());
                }
            }
        }
        candidates.into_iter().next()
    }

    /// The subscription this resolves to.
    pub(crate) fn filter(&self) -> TableFilter {
        TableFilter {
            database: self.db.name().to_owned(),
            table: self.table.name.clone(),
            prefix: self.prefix.clone(),
            key: self.key(),
        }
    }
}

fn version_is_deleted(version: &shoal_store::Version<'_>) -> bool {
    !matches!(version.value(), Ok(Some(_)))
}

/// Resolves a topic name (`filter` false) or a subscription filter to a table: `None`
/// for a plain topic.
pub(crate) fn resolve(parts: &BrokerParts, topic: &str, filter: bool) -> Option<Resolved> {
    let levels: Vec<&str> = topic.split('/').collect();
    let table_in = |db: &str, table: &str| -> Option<(Arc<Database>, Arc<TableDef>)> {
        if db == SYSTEM_DATABASE {
            return None;
        }
        let db = parts.store.database(db).ok()?;
        let table = db.catalog().tables.get(table).cloned()?;
        Some((db, table))
    };
    let first = *levels.first()?;
    let (db, table, prefix, rest) = if let Some((db, table)) = parts.components.export(first) {
        let (db, table) = table_in(&db, &table)?;
        (db, table, first.to_owned(), &levels[1..])
    } else if let Some((db, table)) = levels.get(1).and_then(|t| table_in(first, t)) {
        (db, table, format!("{first}/{}", levels[1]), &levels[2..])
    } else if let Some((db, table)) = table_in(DEFAULT_DATABASE, first) {
        (db, table, first.to_owned(), &levels[1..])
    } else {
        return None;
    };
    let id = match rest {
        [] => return None,
        ["#"] | ["+"] if filter => None,
        parts if parts.iter().any(|p| *p == "#" || *p == "+") => return None,
        parts => Some(parts.join("/")),
    };
    Some(Resolved {
        db,
        table,
        prefix,
        id,
    })
}

/// Queues the write a retained publish makes to its record: an upsert, or a delete when
/// the payload is empty. Writes queued one after another commit in that order; the
/// answer resolves once this one is durable.
pub(crate) async fn submit(
    access: &Access,
    username: Option<&str>,
    resolved: &Resolved,
    message: &Message,
) -> Result<Pending, Refusal> {
    let key = resolved.key().ok_or(Refusal::TopicInvalid)?;
    let (database, table) = (resolved.db.name(), resolved.table.name.as_str());
    let write = if message.payload.is_empty() {
        access
            .table(username, Action::Delete, database, table)
            .ok_or(Refusal::NotAuthorized)?;
        Write::Delete {
            table: table.to_owned(),
            ids: vec![key],
        }
    } else {
        let grant = access
            .table(username, Action::Upsert, database, table)
            .ok_or(Refusal::NotAuthorized)?;
        let mut record = record_of(message);
        record.insert(resolved.table.primary_key.clone(), key);
        grant
            .check_attributes(Action::Upsert, record.keys().map(String::as_str))
            .map_err(|_| Refusal::NotAuthorized)?;
        Write::Records {
            table: table.to_owned(),
            mode: Mode::Upsert,
            records: vec![record],
        }
    };
    resolved.db.submit(write, username).await.map_err(|error| {
        tracing::debug!(%error, "MQTT publish to a record not taken");
        Refusal::Failed
    })
}

/// The record a payload makes: a JSON object as it is; anything else as `value` with its
/// content type.
fn record_of(message: &Message) -> Map<String, Value> {
    if let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(&message.payload) {
        return record;
    }
    let mut record = Map::new();
    match std::str::from_utf8(&message.payload) {
        Ok(text) => record.insert(VALUE.into(), Value::String(text.to_owned())),
        Err(_) => {
            record.insert(ENCODING.into(), Value::String("base64".into()));
            let encoded = base64::engine::general_purpose::STANDARD.encode(&message.payload);
            record.insert(VALUE.into(), Value::String(encoded))
        }
    };
    let content_type = message
        .properties
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".into());
    record.insert(CONTENT_TYPE.into(), Value::String(content_type));
    record
}

/// The payload (and content type) that delivers a record: the record as JSON, or the
/// payload it was made from when it holds one that was not a JSON object.
fn payload_of(record: &Map<String, Value>, primary_key: &str) -> (Bytes, Option<String>) {
    let own = |name: &str| {
        name == primary_key
            || name == VALUE
            || name == CONTENT_TYPE
            || name == ENCODING
            || name == shoal_store::CREATED_TIME
            || name == shoal_store::UPDATED_TIME
    };
    if let (Some(Value::String(value)), Some(Value::String(content_type))) =
        (record.get(VALUE), record.get(CONTENT_TYPE))
        && record.keys().all(|name| own(name))
    {
        let bytes = match record.get(ENCODING).and_then(Value::as_str) {
            Some("base64") => base64::engine::general_purpose::STANDARD
                .decode(value)
                .unwrap_or_default(),
            _ => value.clone().into_bytes(),
        };
        return (Bytes::from(bytes), Some(content_type.clone()));
    }
    let json = serde_json::to_vec(record).unwrap_or_default();
    (Bytes::from(json), Some("application/json".into()))
}

/// A record delivered as a message on `topic`: empty for a deleted record.
pub(crate) fn record_message(
    topic: String,
    record: Option<&Map<String, Value>>,
    primary_key: &str,
) -> Message {
    let (payload, content_type) = match record {
        Some(record) => payload_of(record, primary_key),
        None => (Bytes::new(), None),
    };
    Message {
        topic,
        payload,
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: Properties {
            content_type,
            ..Properties::default()
        },
        expires: None,
        publisher: None,
    }
}

/// A table subscriber.
#[derive(Debug, Clone)]
struct Subscriber {
    session: Arc<Session>,
    filter: TableFilter,
    options: SubOptions,
    /// The user it subscribed as, whose grant is asked again as users and roles change.
    username: Option<String>,
}

/// Table subscriptions of every session, and the followers that feed them.
pub(crate) struct Tables {
    parts: BrokerParts,
    limits: Arc<QueueLimits>,
    /// Subscribers by (database, table).
    subscribers: RwLock<HashMap<(String, String), Vec<Subscriber>>>,
    /// Databases whose commits are followed.
    followed: Mutex<HashMap<String, shoal_workers::WorkerHandle>>,
    /// What subscribers may read.
    access: Arc<Access>,
}

impl Tables {
    /// No subscriptions yet.
    pub(crate) fn new(parts: BrokerParts, limits: Arc<QueueLimits>, access: Arc<Access>) -> Tables {
        Tables {
            parts,
            limits,
            subscribers: RwLock::default(),
            followed: Mutex::default(),
            access,
        }
    }

    /// Adds `session`'s subscription, following its database from now on.
    pub(crate) fn add(
        self: &Arc<Self>,
        session: &Arc<Session>,
        filter: &TableFilter,
        options: SubOptions,
        username: Option<String>,
    ) {
        self.follow(&filter.database);
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let list = subscribers
            .entry((filter.database.clone(), filter.table.clone()))
            .or_default();
        list.retain(|s| !(s.session.client_id == session.client_id && s.filter == *filter));
        list.push(Subscriber {
            session: session.clone(),
            filter: filter.clone(),
            options,
            username,
        });
    }

    /// Removes `client`'s subscription; whether it existed.
    pub(crate) fn remove(&self, filter: &TableFilter, client: &str) -> bool {
        let mut subscribers = self
            .subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (filter.database.clone(), filter.table.clone());
        let Some(list) = subscribers.get_mut(&key) else {
            return false;
        };
        let before = list.len();
        list.retain(|s| !(s.session.client_id == client && s.filter == *filter));
        let removed = list.len() < before;
        if list.is_empty() {
            subscribers.remove(&key);
        }
        removed
    }

    /// Delivers a change of one record to the table's subscribers: `record` is the
    /// record now (`None`: deleted); `message` overrides it for a non-retained publish.
    pub(crate) fn deliver(
        &self,
        database: &str,
        table: &TableDef,
        key: &Value,
        record: Option<&Map<String, Value>>,
        published: Option<&Message>,
    ) {
        let subscribers = self
            .subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(list) = subscribers.get(&(database.to_owned(), table.name.clone())) else {
            return;
        };
        let id = key_text(key);
        for subscriber in list {
            if subscriber.filter.key.as_ref().is_some_and(|k| k != key) {
                continue;
            }
            let username = subscriber.username.as_deref();
            let Some(grant) = self
                .access
                .table(username, Action::Read, database, &table.name)
            else {
                continue;
            };
            let topic = format!("{}/{id}", subscriber.filter.prefix);
            let message = match published {
                Some(published) => {
                    if subscriber.options.no_local
                        && published.publisher.as_deref() == Some(&subscriber.session.client_id)
                    {
                        continue;
                    }
                    Message {
                        topic,
                        ..published.clone()
                    }
                }
                None => {
                    let mut visible = record.cloned();
                    if let Some(visible) = visible.as_mut() {
                        grant.filter(visible);
                    }
                    record_message(topic, visible.as_ref(), &table.primary_key)
                }
            };
            let retain = subscriber.options.retain_as_published && message.retain;
            let qos = min_qos(subscriber.options.qos, message.qos);
            subscriber.session.push(
                Delivery {
                    message: Arc::new(message),
                    qos,
                    retain,
                    ids: subscriber.options.id.into_iter().collect(),
                },
                &self.limits,
            );
        }
    }

    /// The record a subscription to one record starts with (its retained message), if
    /// the record exists and the user may read it.
    pub(crate) fn current(
        &self,
        filter: &TableFilter,
        username: Option<&str>,
        topic: &str,
    ) -> Option<Message> {
        let key = filter.key.as_ref()?;
        let grant = self
            .access
            .table(username, Action::Read, &filter.database, &filter.table)?;
        let db = self.parts.store.database(&filter.database).ok()?;
        let snapshot = db.snapshot().ok()?;
        let table = snapshot.table(&filter.table).ok()?;
        let mut record = snapshot.get(&table, key).ok()??.value().ok()??;
        grant.filter(&mut record);
        Some(record_message(
            topic.to_owned(),
            Some(&record),
            &table.primary_key,
        ))
    }

    /// Follows `database`'s commits, once, for as long as the node runs.
    fn follow(self: &Arc<Self>, database: &str) {
        let mut followed = self.followed.lock().unwrap_or_else(PoisonError::into_inner);
        if followed.contains_key(database) {
            return;
        }
        let Ok(db) = self.parts.store.database(database) else {
            return;
        };
        let tables = self.clone();
        let name = database.to_owned();
        let handle = self
            .parts
            .store
            .workers()
            .spawn(format!("mqtt/records/{database}"), move |ctx| async move {
                tables.feed(db, &name, &ctx).await
            });
        followed.insert(database.to_owned(), handle);
    }

    async fn feed(&self, db: Arc<Database>, name: &str, ctx: &shoal_workers::Ctx) {
        let options = FollowOptions { max_lag: MAX_LAG };
        let mut follower = db.follow(Start::Now, options);
        loop {
            ctx.set_idle();
            let next = tokio::select! {
                next = follower.next() => next,
                () = ctx.stopping() => return,
            };
            let committed = match next {
                Ok(committed) => committed,
                Err(FollowError::Closed) => return,
                Err(FollowError::TooSlow { behind }) => {
                    tracing::warn!(
                        database = name,
                        behind,
                        "MQTT record feed fell behind; skipping ahead"
                    );
                    follower = db.follow(Start::Now, options);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(database = name, %error, "MQTT record feed");
                    continue;
                }
            };
            ctx.count(1);
            let catalog = db.catalog();
            let mut snapshot = None;
            for change in &committed.entry.changes {
                let Some(table) = catalog.tables.get(&change.table) else {
                    continue;
                };
                if !self.has_subscribers(name, &table.name) {
                    continue;
                }
                let record = match (&change.kind, &change.value) {
                    (ChangeKind::Delete, _) => None,
                    (ChangeKind::Put, Some(Value::Object(record))) => Some(record.clone()),
                    // A patch carries the changed attributes: deliver the whole record.
                    _ => {
                        if snapshot.is_none() {
                            snapshot = db.snapshot().ok();
                        }
                        snapshot
                            .as_ref()
                            .and_then(|s| s.get(table, &change.key).ok().flatten())
                            .and_then(|v| v.value().ok().flatten())
                    }
                };
                self.deliver(name, table, &change.key, record.as_ref(), None);
            }
        }
    }

    fn has_subscribers(&self, database: &str, table: &str) -> bool {
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&(database.to_owned(), table.to_owned()))
    }
}

/// A primary key as a topic level: strings as they are, numbers as JSON writes them.
pub(crate) fn key_text(key: &Value) -> String {
    key.as_str().map_or_else(|| key.to_string(), str::to_owned)
}
