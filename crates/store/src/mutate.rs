//! Local writes: what one request does inside the writer's transaction. Each function
//! either completes its whole request or returns an error, and the writer then discards
//! the request's nested transaction, so nothing is ever half-applied.

use std::collections::BTreeSet;
use std::sync::Arc;

use heed::RwTxn;
use serde_json::{Map, Value};

use crate::apply::{CopyChunk, RemoteBatch};
use crate::catalog::{
    CREATED_TIME, Catalog, MAX_ATTRIBUTE_LEN, TableDef, TableSpec, UPDATED_TIME, validate_name,
};
use crate::error::{Result, StoreError};
use crate::hlc::{self, Hlc};
use crate::index;
use crate::key;
use crate::record::{RecordState, Stamp, Version};
use crate::trees::{Trees, count_key, meta_get_u64, meta_put_u64, table_prefix, updated_key};
use crate::txlog::{Change, ChangeKind, LogEntry, SchemaChange};

/// Longest encoded primary key accepted; keeps index keys under LMDB's 511-byte limit.
pub const MAX_KEY_LEN: usize = 200;

/// Deepest nesting a record may have: the record object is level 1, an object or array
/// in it level 2, and so on. Records are kept as JSON and read back with serde_json,
/// which stops at 128 levels; 64 leaves room for what wraps a record on its way (an
/// operation's body, a log entry, a replication frame) and is far past what a document
/// needs.
pub const MAX_DEPTH: usize = 64;

/// Levels of nesting of a record, counted without recursion.
fn depth(record: &Map<String, Value>) -> usize {
    let mut deepest = 1;
    let mut stack: Vec<(&Value, usize)> = record.values().map(|v| (v, 1)).collect();
    while let Some((value, outer)) = stack.pop() {
        let level = outer + 1;
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, level))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, level))),
            _ => continue,
        }
        deepest = deepest.max(level);
    }
    deepest
}

/// How a batch of records is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create records; existing keys are skipped.
    Insert,
    /// Merge into existing records; missing keys are skipped.
    Update,
    /// Merge into existing records or create them.
    Upsert,
    /// Replace existing records whole, or create them (REST `PUT`).
    Put,
}

impl Mode {
    /// The operation's name, as logged.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Insert => "insert",
            Mode::Update => "update",
            Mode::Upsert => "upsert",
            Mode::Put => "put",
        }
    }
}

/// One write request to a database.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create a table.
    CreateTable(TableSpec),
    /// Drop a table and all its records.
    DropTable(String),
    /// Declare an attribute.
    CreateAttribute {
        /// Table name.
        table: String,
        /// Attribute name.
        attribute: String,
        /// Whether it is indexed.
        indexed: bool,
    },
    /// Remove an attribute from the table and every record.
    DropAttribute {
        /// Table name.
        table: String,
        /// Attribute name.
        attribute: String,
    },
    /// Insert, update or upsert records.
    Records {
        /// Table name.
        table: String,
        /// How.
        mode: Mode,
        /// The records, JSON objects.
        records: Vec<Map<String, Value>>,
    },
    /// Delete records by primary key.
    Delete {
        /// Table name.
        table: String,
        /// Primary keys.
        ids: Vec<Value>,
    },
    /// Apply a batch of a peer's transaction log (replication).
    Apply(RemoteBatch),
    /// Merge a chunk of a peer's snapshot (full copy).
    Merge(Box<CopyChunk>),
}

impl Write {
    /// Whether the write originates here (rather than applying what a peer sent).
    pub(crate) fn is_local(&self) -> bool {
        !matches!(self, Write::Apply(_) | Write::Merge(_))
    }

    /// Records (rows, changes) it writes: what a group commit's size is counted in.
    pub(crate) fn weight(&self) -> usize {
        match self {
            Write::Records { records, .. } => records.len(),
            Write::Delete { ids, .. } => ids.len(),
            Write::Apply(batch) => batch.entries.iter().map(|c| c.entry.changes.len()).sum(),
            Write::Merge(chunk) => chunk.rows.len(),
            _ => 1,
        }
        .max(1)
    }

    /// Whether it may need more room than it frees: refused once the database holds its
    /// configured size, while deletes and drops still run (on the map's reserve) so that
    /// room can be made.
    pub(crate) fn grows(&self) -> bool {
        match self {
            Write::DropTable(_) | Write::DropAttribute { .. } | Write::Delete { .. } => false,
            Write::Apply(batch) => batch.entries.iter().any(|c| {
                c.entry
                    .changes
                    .iter()
                    .any(|ch| ch.kind != ChangeKind::Delete)
                    || c.entry.schema.as_ref().is_some_and(|s| !s.is_drop())
            }),
            _ => true,
        }
    }
}

/// What a writer applies: a write, or the system database's record of a database created
/// or dropped ([`SchemaChange::CreateDatabase`], [`SchemaChange::DropDatabase`]), which
/// only the store itself asks for (see `Store::create_database`).
#[derive(Debug)]
pub(crate) enum Request {
    /// A client's write, or what a peer sent.
    Write(Write),
    /// A database created or dropped here, now: recorded and logged in one commit, so
    /// that the change, and its announcement to the cluster, are one.
    Database(SchemaChange),
    /// A database a peer created or dropped at the given HLC: recorded, not logged (the
    /// peer's own log entry or link tells the others).
    PeerDatabase(SchemaChange, u64),
}

impl Request {
    /// See [`Write::is_local`].
    pub(crate) fn is_local(&self) -> bool {
        match self {
            Request::Write(write) => write.is_local(),
            Request::Database(_) => true,
            Request::PeerDatabase(..) => false,
        }
    }

    /// See [`Write::weight`].
    pub(crate) fn weight(&self) -> usize {
        match self {
            Request::Write(write) => write.weight(),
            Request::Database(_) | Request::PeerDatabase(..) => 1,
        }
    }

    /// See [`Write::grows`]. A drop's record runs on the reserve: refusing it would leave
    /// a database that cannot be dropped, and so no room to be made.
    pub(crate) fn grows(&self) -> bool {
        match self {
            Request::Write(write) => write.grows(),
            Request::Database(change) | Request::PeerDatabase(change, _) => !change.is_drop(),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    /// Keys written (records writes and deletes).
    pub written: Vec<Value>,
    /// Keys skipped: already there (insert), missing (update, delete).
    pub skipped: Vec<Value>,
    /// Attributes first seen in this write.
    pub new_attributes: Vec<String>,
    /// Timestamp of the transaction, in milliseconds.
    pub txn_time: f64,
    /// Remote transactions or rows applied (replication).
    pub applied: usize,
}

/// Where a request is applied.
pub(crate) struct Ctx<'a> {
    pub(crate) trees: &'a Trees,
    pub(crate) database: &'a str,
    pub(crate) catalog: &'a mut Catalog,
    pub(crate) hlc: u64,
    pub(crate) origin: &'a str,
    /// The node's clock, which bounds the remote timestamps a write may bring in.
    pub(crate) clock: &'a Hlc,
    /// Largest record this write may store, in bytes.
    pub(crate) max_bytes: usize,
}

impl Ctx<'_> {
    pub(crate) fn table(&self, name: &str) -> Result<Arc<TableDef>> {
        self.catalog
            .tables
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::TableNotFound {
                database: self.database.to_owned(),
                table: name.to_owned(),
            })
    }

    pub(crate) fn save_table(&mut self, txn: &mut RwTxn, def: TableDef) -> Result<()> {
        let bytes = serde_json::to_vec(&def).expect("table definitions serialise");
        self.trees.meta.put(txn, &table_key(&def.name), &bytes)?;
        self.catalog.tables.insert(def.name.clone(), Arc::new(def));
        Ok(())
    }
}

/// Meta key of a table definition.
pub(crate) fn table_key(name: &str) -> Vec<u8> {
    format!("table/{name}").into_bytes()
}

/// Meta prefix of table drop markers: `dropped/<table>` -> HLC of the last drop.
pub(crate) const DROPPED_TABLE_PREFIX: &[u8] = b"dropped/";
/// Meta prefix of database drop markers, kept in the database whose log announces the
/// drops (the system database): `dropped_database/<name>` -> HLC of the last drop.
pub(crate) const DROPPED_DATABASE_PREFIX: &[u8] = b"dropped_database/";
/// Meta prefix of database creation records, kept in the system database beside the drop
/// markers: `created_database/<name>` -> HLC of the last creation made through this node's
/// store (older databases have none).
pub(crate) const CREATED_DATABASE_PREFIX: &[u8] = b"created_database/";

/// Records that table `name` was dropped at `at`, unless a later drop is known.
pub(crate) fn note_table_drop(txn: &mut RwTxn, ctx: &mut Ctx, name: &str, at: u64) -> Result<()> {
    if ctx.catalog.dropped_at(name) >= at {
        return Ok(());
    }
    let key = [DROPPED_TABLE_PREFIX, name.as_bytes()].concat();
    meta_put_u64(txn, ctx.trees, &key, at)?;
    ctx.catalog.dropped.insert(name.to_owned(), at);
    Ok(())
}

/// Records that a database was created or dropped at `at` (a [`SchemaChange::CreateDatabase`]
/// or [`SchemaChange::DropDatabase`]; other changes are not about databases), unless a
/// later one of the same kind is known.
pub(crate) fn record_database(
    txn: &mut RwTxn,
    trees: &Trees,
    change: &SchemaChange,
    at: u64,
) -> Result<()> {
    let (prefix, name) = match change {
        SchemaChange::CreateDatabase { database } => (CREATED_DATABASE_PREFIX, database),
        SchemaChange::DropDatabase { database } => (DROPPED_DATABASE_PREFIX, database),
        _ => return Ok(()),
    };
    let key = [prefix, name.as_bytes()].concat();
    if meta_get_u64(txn, trees, &key)? < at {
        meta_put_u64(txn, trees, &key, at)?;
    }
    Ok(())
}

/// Key of a record in the records tree.
pub(crate) fn record_key(table: &TableDef, pk: &Value) -> Result<Vec<u8>> {
    let mut out = table_prefix(table.id).to_vec();
    if !matches!(pk, Value::String(_) | Value::Number(_)) || !key::encode_into(pk, &mut out) {
        return Err(StoreError::Invalid(format!(
            "primary key '{}' must be a string or a number, got {pk}",
            table.primary_key
        )));
    }
    if out.len() - 4 > MAX_KEY_LEN {
        return Err(StoreError::Invalid(format!(
            "primary key value is longer than {MAX_KEY_LEN} bytes"
        )));
    }
    Ok(out)
}

/// Applies one request; returns its outcome and the log entries to append.
pub(crate) fn apply(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    request: Request,
    user: Option<String>,
) -> Result<(Outcome, Vec<LogEntry>)> {
    let write = match request {
        Request::Write(write) => write,
        Request::Database(change) => {
            record_database(txn, ctx.trees, &change, ctx.hlc)?;
            return Ok(logged(ctx, change, user));
        }
        Request::PeerDatabase(change, at) => {
            ctx.clock.check_remote(at)?;
            record_database(txn, ctx.trees, &change, at)?;
            // Databases created here from now on are stamped after what the peer did.
            ctx.hlc = ctx.hlc.max(at);
            return Ok((Outcome::default(), Vec::new()));
        }
    };
    let change = match write {
        Write::CreateTable(spec) => {
            let created = ctx.hlc;
            create_table(txn, ctx, spec, created)?
        }
        Write::DropTable(name) => drop_table(txn, ctx, &name)?,
        Write::CreateAttribute {
            table,
            attribute,
            indexed,
        } => create_attribute(txn, ctx, &table, &attribute, indexed)?,
        Write::DropAttribute { table, attribute } => drop_attribute(txn, ctx, &table, &attribute)?,
        Write::Records {
            table,
            mode,
            records,
        } => return write_records(txn, ctx, &table, mode, records, user),
        Write::Delete { table, ids } => return delete(txn, ctx, &table, ids, user),
        Write::Apply(batch) => return crate::apply::remote(txn, ctx, batch),
        Write::Merge(chunk) => return crate::apply::merge(txn, ctx, *chunk),
    };
    Ok(logged(ctx, change, user))
}

/// The outcome of a schema change made here, and its log entry.
fn logged(ctx: &Ctx, change: SchemaChange, user: Option<String>) -> (Outcome, Vec<LogEntry>) {
    let outcome = Outcome {
        txn_time: hlc::to_ms(ctx.hlc),
        ..Outcome::default()
    };
    let entry = LogEntry {
        hlc: ctx.hlc,
        origin: ctx.origin.to_owned(),
        origin_seq: 0,
        user,
        operation: change.operation().to_owned(),
        changes: Vec::new(),
        schema: Some(change),
    };
    (outcome, vec![entry])
}

/// Creates a table whose creation is stamped `created` (now, or when a peer created it).
pub(crate) fn create_table(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    spec: TableSpec,
    created: u64,
) -> Result<SchemaChange> {
    validate_name("table", &spec.name)?;
    validate_name("primary key", &spec.primary_key)?;
    if ctx.catalog.tables.contains_key(&spec.name) {
        return Err(StoreError::TableExists {
            database: ctx.database.to_owned(),
            table: spec.name,
        });
    }
    let mut attributes = vec![
        spec.primary_key.clone(),
        CREATED_TIME.to_owned(),
        UPDATED_TIME.to_owned(),
    ];
    let mut indexed = None;
    if !spec.attributes.is_empty() {
        let mut set = BTreeSet::from([CREATED_TIME.to_owned(), UPDATED_TIME.to_owned()]);
        for (name, is_indexed) in &spec.attributes {
            validate_name("attribute", name)?;
            if !attributes.contains(name) {
                attributes.push(name.clone());
            }
            if *is_indexed {
                set.insert(name.clone());
            }
        }
        indexed = Some(set);
    }
    let change = SchemaChange::CreateTable {
        table: spec.name.clone(),
        primary_key: spec.primary_key.clone(),
        attributes: spec.attributes.clone(),
        replicate: spec.replicate.unwrap_or(true),
        created,
    };
    let id = ctx.catalog.next_id;
    ctx.catalog.next_id += 1;
    ctx.trees
        .meta
        .put(txn, b"next_table_id", &ctx.catalog.next_id.to_be_bytes())?;
    let def = TableDef {
        id,
        name: spec.name,
        primary_key: spec.primary_key,
        attributes,
        indexed,
        replicate: spec.replicate.unwrap_or(true),
        created,
    };
    ctx.save_table(txn, def)?;
    Ok(change)
}

/// Drops a table and its rows, leaving a marker stamped with the drop's time that
/// outranks any older creation of the same name and any older row a peer still holds.
pub(crate) fn drop_table(txn: &mut RwTxn, ctx: &mut Ctx, name: &str) -> Result<SchemaChange> {
    let def = ctx.table(name)?;
    let prefix = table_prefix(def.id);
    let end = key::prefix_end(&prefix);
    let range = (
        std::ops::Bound::Included(&prefix[..]),
        std::ops::Bound::Excluded(&end[..]),
    );
    ctx.trees.records.delete_range(txn, &range)?;
    ctx.trees.index.delete_range(txn, &range)?;
    ctx.trees.meta.delete(txn, &table_key(name))?;
    ctx.trees.meta.delete(txn, &count_key(def.id))?;
    ctx.trees.meta.delete(txn, &updated_key(def.id))?;
    ctx.catalog.tables.remove(name);
    let at = ctx.hlc;
    note_table_drop(txn, ctx, name, at)?;
    Ok(SchemaChange::DropTable {
        table: name.to_owned(),
    })
}

pub(crate) fn create_attribute(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    table: &str,
    attribute: &str,
    indexed: bool,
) -> Result<SchemaChange> {
    validate_name("attribute", attribute)?;
    let def = ctx.table(table)?;
    if def.attributes.iter().any(|a| a == attribute) {
        return Err(StoreError::AttributeExists {
            database: ctx.database.to_owned(),
            table: table.to_owned(),
            attribute: attribute.to_owned(),
        });
    }
    let mut new = (*def).clone();
    new.attributes.push(attribute.to_owned());
    let backfill = match &mut new.indexed {
        Some(set) if indexed => set.insert(attribute.to_owned()),
        _ => false,
    };
    if backfill {
        // Records written before the declaration may already carry the attribute.
        for (pk, record) in live_records(txn, ctx.trees, &def)? {
            index::update(
                txn,
                ctx.trees,
                &new,
                &pk,
                None,
                Some(&only(&record, attribute)),
            )?;
        }
    }
    ctx.save_table(txn, new)?;
    Ok(SchemaChange::CreateAttribute {
        table: table.to_owned(),
        attribute: attribute.to_owned(),
        indexed,
    })
}

pub(crate) fn drop_attribute(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    table: &str,
    attribute: &str,
) -> Result<SchemaChange> {
    let def = ctx.table(table)?;
    if attribute == def.primary_key {
        return Err(StoreError::Invalid(
            "You cannot drop a hash attribute".to_owned(),
        ));
    }
    if attribute == CREATED_TIME || attribute == UPDATED_TIME {
        return Err(StoreError::Invalid(format!(
            "cannot drop internal timestamp attribute: {attribute}"
        )));
    }
    if !def.attributes.iter().any(|a| a == attribute) {
        return Err(StoreError::AttributeNotFound {
            database: ctx.database.to_owned(),
            table: table.to_owned(),
            attribute: attribute.to_owned(),
        });
    }
    for (pk, record) in live_records(txn, ctx.trees, &def)? {
        if !record.contains_key(attribute) {
            continue;
        }
        let mut key = table_prefix(def.id).to_vec();
        key.extend_from_slice(&pk);
        // The same on every node, whatever else the record holds: the stamps stay.
        let mut state = stored_state(txn, ctx.trees, &key)?;
        state.attrs.remove(attribute);
        state.stamps.remove(attribute);
        store_state(txn, ctx.trees, &def, &key, Some(&record), &state)?;
    }
    let mut new = (*def).clone();
    new.attributes.retain(|a| a != attribute);
    if let Some(set) = &mut new.indexed {
        set.remove(attribute);
    }
    ctx.save_table(txn, new)?;
    Ok(SchemaChange::DropAttribute {
        table: table.to_owned(),
        attribute: attribute.to_owned(),
    })
}

/// The attribute alone, for index maintenance of one attribute.
fn only(record: &Map<String, Value>, attribute: &str) -> Map<String, Value> {
    record
        .get(attribute)
        .map(|v| Map::from_iter([(attribute.to_owned(), v.clone())]))
        .unwrap_or_default()
}

/// A record with its encoded primary key.
type KeyedRecord = (Vec<u8>, Map<String, Value>);

/// Every live record of a table.
fn live_records(txn: &RwTxn, trees: &Trees, def: &TableDef) -> Result<Vec<KeyedRecord>> {
    let prefix = table_prefix(def.id);
    let mut out = Vec::new();
    for item in trees.records.prefix_iter(txn, &prefix)? {
        let (k, v) = item?;
        if let Some(record) = Version::decode(v)?.value()? {
            out.push((k[4..].to_vec(), record));
        }
    }
    Ok(out)
}

fn write_records(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    table: &str,
    mode: Mode,
    records: Vec<Map<String, Value>>,
    user: Option<String>,
) -> Result<(Outcome, Vec<LogEntry>)> {
    let def = ctx.table(table)?;
    let mut attributes = def.attributes.clone();
    let now = Value::from(hlc::to_ms(ctx.hlc));
    let mut outcome = Outcome {
        txn_time: hlc::to_ms(ctx.hlc),
        ..Outcome::default()
    };
    let mut changes = Vec::with_capacity(records.len());
    let mut added: i64 = 0;
    for mut record in records {
        if depth(&record) > MAX_DEPTH {
            return Err(StoreError::Invalid(format!(
                "a record nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let pk = match record.get(&def.primary_key) {
            Some(Value::Null) | None if mode == Mode::Update => {
                return Err(StoreError::Invalid(
                    "a valid hash attribute must be provided with update record".to_owned(),
                ));
            }
            Some(Value::Null) | None => {
                let id = Value::String(uuid::Uuid::now_v7().to_string());
                record.insert(def.primary_key.clone(), id.clone());
                id
            }
            Some(pk) => pk.clone(),
        };
        let key = record_key(&def, &pk)?;
        let current = stored_state(txn, ctx.trees, &key)?;
        let old = current.live().cloned();
        let skip = match mode {
            Mode::Insert => old.is_some(),
            Mode::Update => old.is_none(),
            Mode::Upsert | Mode::Put => false,
        };
        if skip {
            outcome.skipped.push(pk);
            continue;
        }
        for name in record.keys() {
            if !attributes.contains(name) {
                if name.is_empty() || name.len() > MAX_ATTRIBUTE_LEN {
                    return Err(StoreError::Invalid(format!(
                        "Invalid attribute name: '{name}'"
                    )));
                }
                attributes.push(name.clone());
                outcome.new_attributes.push(name.clone());
            }
        }
        record.insert(UPDATED_TIME.to_owned(), now.clone());
        let stamp = Stamp::new(ctx.hlc, ctx.origin);
        let (incoming, kind) = match &old {
            Some(old) if mode == Mode::Put => {
                // A replacement keeps only the creation time of what it replaces.
                if let Some(created) = old.get(CREATED_TIME) {
                    record.insert(CREATED_TIME.to_owned(), created.clone());
                }
                (RecordState::put(stamp, record.clone()), ChangeKind::Put)
            }
            Some(_) => {
                record.remove(CREATED_TIME);
                (RecordState::patch(stamp, record.clone()), ChangeKind::Patch)
            }
            None => {
                added += 1;
                record.insert(CREATED_TIME.to_owned(), now.clone());
                (RecordState::put(stamp, record.clone()), ChangeKind::Put)
            }
        };
        let change = (kind, Value::Object(record));
        let stored = store_state(
            txn,
            ctx.trees,
            &def,
            &key,
            old.as_ref(),
            &current.merge(&incoming),
        )?;
        if stored > ctx.max_bytes {
            // A full copy ships each record whole, so a record must fit where its
            // transaction would.
            return Err(StoreError::TooLarge(format!(
                "record '{pk}' is too large: it takes {stored} bytes, more than the limit of {} bytes",
                ctx.max_bytes
            )));
        }
        changes.push(Change {
            table: table.to_owned(),
            key: pk.clone(),
            kind: change.0,
            value: Some(change.1),
        });
        outcome.written.push(pk);
    }
    adjust_count(txn, ctx, def.id, added)?;
    if !outcome.new_attributes.is_empty() {
        let mut new = (*def).clone();
        new.attributes = attributes;
        ctx.save_table(txn, new)?;
    }
    Ok((outcome, log_entry(ctx, user, mode.name(), changes)))
}

fn delete(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    table: &str,
    ids: Vec<Value>,
    user: Option<String>,
) -> Result<(Outcome, Vec<LogEntry>)> {
    let def = ctx.table(table)?;
    let mut outcome = Outcome {
        txn_time: hlc::to_ms(ctx.hlc),
        ..Outcome::default()
    };
    let mut changes = Vec::new();
    for pk in ids {
        let key = record_key(&def, &pk)?;
        let current = stored_state(txn, ctx.trees, &key)?;
        let Some(old) = current.live() else {
            outcome.skipped.push(pk);
            continue;
        };
        let deleted = current.merge(&RecordState::delete(Stamp::new(ctx.hlc, ctx.origin)));
        store_state(txn, ctx.trees, &def, &key, Some(old), &deleted)?;
        changes.push(Change {
            table: table.to_owned(),
            key: pk.clone(),
            kind: ChangeKind::Delete,
            value: None,
        });
        outcome.written.push(pk);
    }
    adjust_count(txn, ctx, def.id, -(outcome.written.len() as i64))?;
    Ok((outcome, log_entry(ctx, user, "delete", changes)))
}

/// The stored state of a record (absent if never written).
pub(crate) fn stored_state(txn: &RwTxn, trees: &Trees, key: &[u8]) -> Result<RecordState> {
    match trees.records.get(txn, key)? {
        Some(bytes) => Version::decode(bytes)?.state(),
        None => Ok(RecordState::absent()),
    }
}

/// Writes a record's new state and keeps the indexes in step with it; `old` is what was
/// live before. Returns the stored size in bytes.
pub(crate) fn store_state(
    txn: &mut RwTxn,
    trees: &Trees,
    def: &TableDef,
    key: &[u8],
    old: Option<&Map<String, Value>>,
    state: &RecordState,
) -> Result<usize> {
    index::update(txn, trees, def, &key[4..], old, state.live())?;
    let bytes = state.encode();
    trees.records.put(txn, key, &bytes)?;
    Ok(bytes.len())
}

/// Records the table's new live count and last write time.
pub(crate) fn adjust_count(txn: &mut RwTxn, ctx: &Ctx, table_id: u32, delta: i64) -> Result<()> {
    let trees = ctx.trees;
    meta_put_u64(txn, trees, &updated_key(table_id), ctx.hlc)?;
    if delta != 0 {
        let key = count_key(table_id);
        let count = meta_get_u64(txn, trees, &key)?.saturating_add_signed(delta);
        meta_put_u64(txn, trees, &key, count)?;
    }
    Ok(())
}

fn log_entry(
    ctx: &Ctx,
    user: Option<String>,
    operation: &str,
    changes: Vec<Change>,
) -> Vec<LogEntry> {
    if changes.is_empty() {
        return Vec::new();
    }
    vec![LogEntry {
        hlc: ctx.hlc,
        origin: ctx.origin.to_owned(),
        origin_seq: 0, // set by the writer when the entry gets its sequence
        user,
        operation: operation.to_owned(),
        changes,
        schema: None,
    }]
}
