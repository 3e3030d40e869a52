//! Applying what peers send: log entries (replication) and snapshot rows (full copy).
//!
//! Both merge by last-writer-wins on `(hlc, origin)` and, in the same transaction,
//! advance the per-peer cursor and the `origin -> origin_seq` version vector, so a crash
//! at any point loses nothing and applies nothing twice: an entry at or below the
//! version vector is skipped, and the cursor says where the peer resumes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use heed::RwTxn;

use crate::catalog::{TableDef, TableSpec};
use crate::error::Result;
use crate::mutate::{self, Ctx, Outcome, record_key};
use crate::record::{RecordState, Stamp, Version};
use crate::trees::{Trees, meta_get_u64, meta_put_u64};
use crate::txlog::{Change, ChangeKind, Committed, LogEntry, SEQ_KEY, SchemaChange};

/// A run of a peer's transaction log.
#[derive(Debug, Clone)]
pub struct RemoteBatch {
    /// The peer it came from.
    pub peer: String,
    /// The entries, in the peer's commit order, with the peer's sequence numbers.
    pub entries: Vec<Committed>,
    /// The peer's sequence this batch brings the receiver up to (entries the peer
    /// skipped, such as the receiver's own, count as seen).
    pub up_to: u64,
}

/// A piece of a peer's snapshot.
#[derive(Debug, Clone, Default)]
pub struct CopyChunk {
    /// The peer it came from.
    pub peer: String,
    /// Tables to create if missing, before the rows.
    pub tables: Vec<SchemaChange>,
    /// The peer's table drop markers (table, HLC of the drop), applied before `tables`:
    /// a table here created before its drop is dropped, and rows older than the drop
    /// are refused.
    pub dropped: Vec<(String, u64)>,
    /// The table the rows belong to.
    pub table: String,
    /// Rows in key order: versions and tombstones.
    pub rows: Vec<CopyRow>,
    /// Where the copy stands after this chunk, kept so an interrupted copy resumes.
    pub progress: CopyProgress,
    /// Set on the last chunk: the copy is complete.
    pub done: bool,
}

/// One row of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyRow {
    /// Primary key.
    pub key: Value,
    /// The record as stored (its state with every stamp; see `record.rs`).
    #[serde(with = "serde_bytes")]
    pub version: Vec<u8>,
}

/// How far a full copy from a peer got.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// The peer's log sequence of the first snapshot of this copy: replication resumes
    /// after it once the copy completes, so changes made while it ran are replayed.
    pub seq: u64,
    /// The peer's version vector at that first snapshot.
    pub vv: Vec<(String, u64)>,
    /// Tables finished, in order.
    pub tables_done: Vec<String>,
    /// The table in progress and the last key merged in it.
    pub last: Option<(String, Value)>,
    /// The peer's log floor (see [`crate::Snapshot::log_floor`]) when the copy began: a
    /// copy is resumed only while it has not moved.
    #[serde(default)]
    pub floor: u64,
}

/// What a batch did to each table, recorded once at its end rather than per row.
#[derive(Default)]
struct Touched(BTreeMap<String, Touch>);

#[derive(Default)]
struct Touch {
    /// Change in live records.
    delta: i64,
    /// Newest version written.
    hlc: u64,
    /// Attributes the table did not know.
    attributes: BTreeSet<String>,
}

impl Touched {
    /// Notes a version written to `def`.
    fn note(&mut self, def: &TableDef, old: bool, new: Option<&Map<String, Value>>, hlc: u64) {
        let touch = self.0.entry(def.name.clone()).or_default();
        touch.delta += i64::from(new.is_some()) - i64::from(old);
        touch.hlc = touch.hlc.max(hlc);
        for k in new.into_iter().flat_map(Map::keys) {
            if !def.attributes.contains(k) {
                touch.attributes.insert(k.clone());
            }
        }
    }

    /// Records counts, last-write times and new attributes.
    fn finish(self, txn: &mut RwTxn, ctx: &mut Ctx) -> Result<()> {
        let saved = ctx.hlc;
        for (table, touch) in self.0 {
            let Ok(def) = ctx.table(&table) else {
                continue;
            };
            ctx.hlc = touch.hlc;
            mutate::adjust_count(txn, ctx, def.id, touch.delta)?;
            if !touch.attributes.is_empty() {
                let mut grown = (*def).clone();
                grown.attributes.extend(touch.attributes);
                ctx.save_table(txn, grown)?;
            }
        }
        ctx.hlc = saved;
        Ok(())
    }
}

/// Meta key of the cursor for a peer: the last of its sequences received.
pub(crate) fn cursor_key(peer: &str) -> Vec<u8> {
    format!("cursor/{peer}").into_bytes()
}

/// Meta key of the version vector entry for an origin.
pub(crate) fn vv_key(origin: &str) -> Vec<u8> {
    format!("vv/{origin}").into_bytes()
}

/// Meta key of an unfinished copy from a peer.
pub(crate) fn copy_key(peer: &str) -> Vec<u8> {
    format!("copy/{peer}").into_bytes()
}

/// Meta key of the log floor: this node's last sequence when it last completed a full copy.
pub(crate) const FLOOR_KEY: &[u8] = b"floor";

/// Meta prefix of the floor's version vector: `floor_vv/<origin>` -> the greatest
/// `origin_seq` any completed full copy brought from `origin`.
pub(crate) const FLOOR_VV_PREFIX: &[u8] = b"floor_vv/";

/// Applies a batch of a peer's log; returns the entries to append to the local log.
pub(crate) fn remote(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    batch: RemoteBatch,
) -> Result<(Outcome, Vec<LogEntry>)> {
    let trees = *ctx.trees;
    let mut logged = Vec::new();
    let mut newest = ctx.hlc;
    let mut touched = Touched::default();
    for Committed { entry, .. } in batch.entries {
        let vv = vv_key(&entry.origin);
        if entry.origin == ctx.origin || meta_get_u64(txn, &trees, &vv)? >= entry.origin_seq {
            continue; // ours, or already applied by way of another peer
        }
        ctx.clock.check_remote(entry.hlc)?;
        ctx.hlc = entry.hlc;
        newest = newest.max(entry.hlc);
        if let Some(change) = &entry.schema {
            // Settle what came before: the schema change may drop what it describes.
            std::mem::take(&mut touched).finish(txn, ctx)?;
            ctx.hlc = entry.hlc;
            apply_schema(txn, ctx, change)?;
        }
        for change in &entry.changes {
            apply_change(txn, ctx, &mut touched, change, entry.hlc, &entry.origin)?;
        }
        meta_put_u64(txn, &trees, &vv, entry.origin_seq)?;
        logged.push(entry);
    }
    touched.finish(txn, ctx)?;
    meta_put_u64(txn, &trees, &cursor_key(&batch.peer), batch.up_to)?;
    // The writer makes the clock observe this, so later local writes order after them.
    ctx.hlc = newest;
    let outcome = Outcome {
        applied: logged.len(),
        ..Outcome::default()
    };
    Ok((outcome, logged))
}

/// Applies a peer's schema change made at `ctx.hlc`. A table exists where its latest
/// creation is newer than its latest drop: a drop removes only a table created before it,
/// and a creation older than a known drop is ignored, whatever order they arrive in.
fn apply_schema(txn: &mut RwTxn, ctx: &mut Ctx, change: &SchemaChange) -> Result<()> {
    let exists = |ctx: &Ctx, table: &str| ctx.catalog.tables.contains_key(table);
    match change {
        SchemaChange::CreateTable {
            table,
            primary_key,
            attributes,
            replicate,
            created,
        } => {
            let created = if *created == 0 { ctx.hlc } else { *created };
            if !exists(ctx, table) && created > ctx.catalog.dropped_at(table) {
                let spec = TableSpec {
                    name: table.clone(),
                    primary_key: primary_key.clone(),
                    attributes: attributes.clone(),
                    replicate: Some(*replicate),
                };
                mutate::create_table(txn, ctx, spec, created)?;
            }
        }
        SchemaChange::DropTable { table } => {
            let at = ctx.hlc;
            if ctx.table(table).is_ok_and(|t| t.created < at) {
                mutate::drop_table(txn, ctx, table)?;
            } else {
                mutate::note_table_drop(txn, ctx, table, at)?;
            }
        }
        SchemaChange::DropDatabase { .. } => {
            // The cluster layer has the store drop the database; the marker keeps stale
            // peers from bringing it back, and a restart drops it if a crash came first.
            mutate::record_database(txn, ctx.trees, change, ctx.hlc)?;
        }
        SchemaChange::CreateAttribute {
            table,
            attribute,
            indexed,
        } if ctx
            .table(table)
            .is_ok_and(|t| !t.attributes.contains(attribute)) =>
        {
            mutate::create_attribute(txn, ctx, table, attribute, *indexed)?;
        }
        SchemaChange::DropAttribute { table, attribute }
            if ctx
                .table(table)
                .is_ok_and(|t| t.attributes.contains(attribute)) =>
        {
            mutate::drop_attribute(txn, ctx, table, attribute)?;
        }
        // Databases are created by the cluster layer, which reads the system database's
        // log and has the store record and create them; the rest are already in the
        // wanted state.
        _ => {}
    }
    Ok(())
}

/// Applies one change: merges it into the record's state (see `record.rs`).
fn apply_change(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    touched: &mut Touched,
    change: &Change,
    hlc: u64,
    origin: &str,
) -> Result<()> {
    let Ok(def) = ctx.table(&change.table) else {
        // Causal order (each node relays what it applied, in order) brings a table's
        // creation before its records; a table missing here was dropped since.
        tracing::debug!(table = %change.table, "change for a missing table ignored");
        return Ok(());
    };
    if hlc <= ctx.catalog.dropped_at(&change.table) {
        return Ok(()); // a write to the table as it was before a drop
    }
    let stamp = Stamp::new(hlc, origin);
    let value = change
        .value
        .as_ref()
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let incoming = match change.kind {
        ChangeKind::Put => RecordState::put(stamp, value),
        ChangeKind::Patch => RecordState::patch(stamp, value),
        ChangeKind::Delete => RecordState::delete(stamp),
    };
    merge_into(txn, ctx.trees, touched, &def, &change.key, &incoming)
}

/// Merges `incoming` into the stored state of `key`, writing only if that changes it.
fn merge_into(
    txn: &mut RwTxn,
    trees: &Trees,
    touched: &mut Touched,
    def: &TableDef,
    pk: &Value,
    incoming: &RecordState,
) -> Result<()> {
    let key = record_key(def, pk)?;
    let current = mutate::stored_state(txn, trees, &key)?;
    let merged = current.merge(incoming);
    if merged == current {
        return Ok(()); // nothing new: an older write, or one applied before
    }
    let old = current.live();
    mutate::store_state(txn, trees, def, &key, old, &merged)?;
    touched.note(def, old.is_some(), merged.live(), merged.newest().hlc);
    Ok(())
}

/// Merges a chunk of a peer's snapshot: rows only this node has are kept; a row (or
/// tombstone) from the peer replaces ours only if it is newer.
pub(crate) fn merge(
    txn: &mut RwTxn,
    ctx: &mut Ctx,
    chunk: CopyChunk,
) -> Result<(Outcome, Vec<LogEntry>)> {
    let trees = *ctx.trees;
    // Bounded like rows: a drop's time feeds the clock, and a creation stamped ahead
    // would outrank every drop of the name until then.
    let created = chunk.tables.iter().filter_map(|change| match change {
        SchemaChange::CreateTable { created, .. } => Some(*created),
        _ => None,
    });
    for at in chunk.dropped.iter().map(|(_, at)| *at).chain(created) {
        ctx.clock.check_remote(at)?;
    }
    let now = ctx.hlc;
    let mut newest = 0;
    // Drops first: a table the peer dropped after we created it goes, with its rows.
    for (table, at) in &chunk.dropped {
        ctx.hlc = *at;
        apply_schema(
            txn,
            ctx,
            &SchemaChange::DropTable {
                table: table.clone(),
            },
        )?;
        newest = newest.max(*at);
    }
    ctx.hlc = now;
    for change in &chunk.tables {
        if let SchemaChange::CreateTable { .. } = change {
            apply_schema(txn, ctx, change)?;
        }
    }
    let mut applied = 0;
    let mut touched = Touched::default();
    match ctx.table(&chunk.table) {
        Ok(def) => {
            let dropped = ctx.catalog.dropped_at(&def.name);
            for row in &chunk.rows {
                let incoming = Version::decode(&row.version)?.state()?;
                ctx.clock.check_remote(incoming.newest().hlc)?;
                if incoming.newest().hlc <= dropped {
                    continue; // a row of the table as it was before a drop
                }
                merge_into(txn, &trees, &mut touched, &def, &row.key, &incoming)?;
                applied += 1;
            }
        }
        // A table dropped here after the peer's snapshot (or never created because a
        // drop outranks it): its rows stay out.
        Err(_) if !chunk.rows.is_empty() => {
            tracing::debug!(table = %chunk.table, "copied rows of a missing table ignored");
        }
        Err(_) => {}
    }
    newest = newest.max(touched.0.values().map(|t| t.hlc).max().unwrap_or(0));
    touched.finish(txn, ctx)?;
    ctx.hlc = now.max(newest);
    if chunk.done {
        // Replication resumes after the first snapshot of the copy, and the version
        // vector claims no more than that snapshot had, so what changed while the copy
        // ran is replayed (and merged by LWW) rather than skipped.
        for (origin, seq) in &chunk.progress.vv {
            for key in [
                vv_key(origin),
                [FLOOR_VV_PREFIX, origin.as_bytes()].concat(),
            ] {
                let mine = meta_get_u64(txn, &trees, &key)?;
                meta_put_u64(txn, &trees, &key, mine.max(*seq))?;
            }
        }
        // The copied rows are in no log here: a peer that streams our log from before
        // this point, and lacks what the copy brought, needs a full copy from us.
        let seq = meta_get_u64(txn, &trees, SEQ_KEY)?;
        meta_put_u64(txn, &trees, FLOOR_KEY, seq)?;
        meta_put_u64(txn, &trees, &cursor_key(&chunk.peer), chunk.progress.seq)?;
        trees.meta.delete(txn, &copy_key(&chunk.peer))?;
    } else {
        let bytes = serde_json::to_vec(&chunk.progress).expect("progress serialises");
        trees.meta.put(txn, &copy_key(&chunk.peer), &bytes)?;
    }
    let outcome = Outcome {
        applied,
        ..Outcome::default()
    };
    Ok((outcome, Vec::new()))
}
