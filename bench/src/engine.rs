//! The storage engine's ceiling: LMDB alone (through heed, as the node uses it), one
//! thread, durable commits, no network, no server, nothing else running. Each record is
//! written with the shape the node gives the benchmark's records: one record put and an
//! index entry per indexed attribute, in transactions as large as the node's group
//! commits under the matching over-the-wire workload. What the node reaches over the wire
//! can be read against this.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::Settings;
use crate::report::{Report, Row};

/// Bytes of a stored record (its JSON and per-attribute stamps) in the node.
const RECORD_VALUE: usize = 300;
/// Letters in a record's random `payload`, as in the over-the-wire workloads.
const PAYLOAD: usize = 140;
/// Records per transaction for inserts: the node's default group-commit budget, which
/// `ops_insert_100`'s 64 connections of 100 records fill.
const INSERT_TXN: usize = 4096;
/// Upserts per transaction: what one group commit holds under `rest_put` (64
/// connections answered in two alternating halves).
const UPSERT_TXN: usize = 32;

type Tree<'e> = Database<'e, Bytes, Bytes>;

/// The keys one record adds to the index, as the node's "every attribute indexed"
/// table has them: group (shared by ~100 records), num and name (random), payload
/// (random, 140 letters), and the two timestamps (always the newest).
fn index_keys(rng: &mut SmallRng, id: &[u8], groups: u64, stamp: u64) -> [Vec<u8>; 6] {
    let num = rng.random_range(0..1_000_000u64);
    let payload: Vec<u8> = (0..PAYLOAD)
        .map(|_| b'a' + rng.random_range(0..26))
        .collect();
    let values: [(&[u8], Vec<u8>); 6] = [
        (b"group", (num % groups).to_be_bytes().to_vec()),
        (b"num", num.to_be_bytes().to_vec()),
        (b"name", format!("item-{num}").into_bytes()),
        (b"payload", payload),
        (b"__createdtime__", stamp.to_be_bytes().to_vec()),
        (b"__updatedtime__", stamp.to_be_bytes().to_vec()),
    ];
    values.map(|(attribute, value)| entry(attribute, &value, id))
}

/// An index key: attribute, value, record id.
fn entry(attribute: &[u8], value: &[u8], id: &[u8]) -> Vec<u8> {
    [attribute, &[0], value, &[0], id].concat()
}

fn record_id(n: u64) -> Vec<u8> {
    format!("item-{n:012}").into_bytes()
}

struct Engine<'e> {
    env: &'e Env,
    records: Tree<'e>,
    index: Tree<'e>,
    rng: SmallRng,
    value: Vec<u8>,
    /// Each record's payload and update-time index keys, so an upsert replaces them.
    replaced: Vec<[Vec<u8>; 2]>,
    stamp: u64,
    groups: u64,
}

/// Opens an environment in `dir` with LMDB's default, fully synchronous, flags.
fn open_env(dir: &Path) -> anyhow::Result<Env> {
    let mut options = EnvOpenOptions::new();
    options.map_size(16 << 30).max_dbs(4);
    #[allow(unsafe_code)]
    // Safety: the folder is a fresh temporary one that only this environment touches.
    let env = unsafe { options.open(dir)? };
    Ok(env)
}

impl<'e> Engine<'e> {
    fn new(env: &'e Env, seed: u64, groups: u64) -> anyhow::Result<Engine<'e>> {
        let txn = env.write_txn()?;
        let opened = env.create_databases_and_commit(txn, |opener, txn| {
            let trees: [Tree<'e>; 2] = [
                opener.create_database(txn, Some("records"))?,
                opener.create_database(txn, Some("index"))?,
            ];
            Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(trees))
        })?;
        let [records, index] = opened.commit().context("trees not created")?;
        Ok(Engine {
            env,
            records,
            index,
            rng: SmallRng::seed_from_u64(seed),
            value: vec![b'v'; RECORD_VALUE],
            replaced: Vec::new(),
            stamp: 0,
            groups,
        })
    }

    /// Inserts `count` new records in one durable transaction.
    fn insert(&mut self, count: usize) -> anyhow::Result<()> {
        let mut txn = self.env.write_txn()?;
        for _ in 0..count {
            let id = record_id(self.replaced.len() as u64);
            self.stamp += 1;
            self.records.put(&mut txn, &id, &self.value)?;
            let keys = index_keys(&mut self.rng, &id, self.groups, self.stamp);
            for key in &keys {
                self.index.put(&mut txn, key, &[])?;
            }
            let [.., payload, _, updated] = keys;
            self.replaced.push([payload, updated]);
        }
        txn.commit()?;
        Ok(())
    }

    /// Upserts `count` random existing records with a new payload in one durable
    /// transaction: read, rewrite the record, replace its payload and update-time entries.
    fn upsert(&mut self, count: usize) -> anyhow::Result<()> {
        let mut txn = self.env.write_txn()?;
        for _ in 0..count {
            let n = self.rng.random_range(0..self.replaced.len());
            let id = record_id(n as u64);
            self.stamp += 1;
            self.records.get(&txn, &id)?.context("missing record")?;
            self.records.put(&mut txn, &id, &self.value)?;
            let payload: Vec<u8> = (0..PAYLOAD)
                .map(|_| b'a' + self.rng.random_range(0..26))
                .collect();
            let fresh = [
                entry(b"payload", &payload, &id),
                entry(b"__updatedtime__", &self.stamp.to_be_bytes(), &id),
            ];
            for (old, new) in self.replaced[n].iter().zip(&fresh) {
                self.index.delete(&mut txn, old)?;
                self.index.put(&mut txn, new, &[])?;
            }
            self.replaced[n] = fresh;
        }
        txn.commit()?;
        Ok(())
    }
}

/// Runs `step` (which writes `per_step` records) for `duration`; records per second.
fn timed(
    duration: Duration,
    per_step: usize,
    mut step: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < duration {
        step()?;
        done += per_step;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Each run fills a fresh store with `copy_records` records, as a full copy fills a new
/// node (whose writer joins the copy's chunks into commits of the group-commit budget).
fn measure_copy(settings: &Settings, dir: &Path) -> anyhow::Result<Row> {
    let groups = crate::single::groups(settings.copy_records);
    let mut row = Row::new("engine_copy", "records/s").with_note(format!(
        "LMDB alone: {} records into an empty store, {INSERT_TXN}/txn",
        settings.copy_records
    ));
    for run in 1..=settings.runs {
        let dir = dir.join(format!("copy-{run}"));
        std::fs::create_dir_all(&dir)?;
        let env = open_env(&dir)?;
        let mut engine = Engine::new(&env, settings.seed, groups)?;
        let start = Instant::now();
        while (engine.replaced.len() as u64) < settings.copy_records {
            engine.insert(INSERT_TXN)?;
        }
        let rate = engine.replaced.len() as f64 / start.elapsed().as_secs_f64();
        eprintln!("   copy run {run}/{}: {rate:.0} records/s", settings.runs);
        row.push(Some(rate), None, None);
        drop(engine);
        drop(env);
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(row)
}

fn measure(settings: &Settings, dir: &Path) -> anyhow::Result<Vec<Row>> {
    let copy = measure_copy(settings, dir)?;
    let groups = crate::single::groups(settings.records);
    let env = open_env(dir)?;
    let mut engine = Engine::new(&env, settings.seed, groups)?;
    while (engine.replaced.len() as u64) < settings.records {
        engine.insert(1000)?;
    }
    // In the node's order: upserts of the loaded records, then inserts of new ones.
    let mut upsert = Row::new("engine_upsert", "records/s").with_note(format!(
        "LMDB alone, one thread: {UPSERT_TXN} upserts/txn, record + 2 index entries replaced"
    ));
    timed(settings.warmup, UPSERT_TXN, || engine.upsert(UPSERT_TXN))?;
    for run in 1..=settings.runs {
        let rate = timed(settings.duration, UPSERT_TXN, || engine.upsert(UPSERT_TXN))?;
        eprintln!("   upsert run {run}/{}: {rate:.0} records/s", settings.runs);
        upsert.push(Some(rate), None, None);
    }
    let mut insert = Row::new("engine_insert", "records/s").with_note(format!(
        "LMDB alone, one thread: {INSERT_TXN} records/txn, record + 6 index entries each"
    ));
    timed(settings.warmup, INSERT_TXN, || engine.insert(INSERT_TXN))?;
    for run in 1..=settings.runs {
        let rate = timed(settings.duration, INSERT_TXN, || engine.insert(INSERT_TXN))?;
        eprintln!("   insert run {run}/{}: {rate:.0} records/s", settings.runs);
        insert.push(Some(rate), None, None);
    }
    Ok(vec![upsert, insert, copy])
}

/// The `engine_ceiling` workload.
pub(crate) async fn engine_ceiling(
    settings: &Settings,
    data_dir: Option<&Path>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let dir = match data_dir {
        Some(parent) => tempfile::Builder::new()
            .prefix("shoal-engine-")
            .tempdir_in(parent)?,
        None => tempfile::Builder::new().prefix("shoal-engine-").tempdir()?,
    };
    let settings = settings.clone();
    let path = dir.path().to_owned();
    let rows = tokio::task::spawn_blocking(move || measure(&settings, &path)).await??;
    report.rows.extend(rows);
    Ok(())
}
