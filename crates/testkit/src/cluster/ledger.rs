//! Writes the cluster tests make, and a ledger of what became of each, which knows the
//! value that must win every key.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use super::{DB, TABLE, by_key};
use crate::{DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, strip_timestamps};

/// A client for one node's operations API that tasks can own.
#[derive(Clone)]
pub struct Handle {
    /// The node's name.
    pub name: String,
    url: String,
    client: reqwest::Client,
}

/// A single-record write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `insert`: writes only a missing key.
    Insert,
    /// `update`: writes only an existing key.
    Update,
    /// `upsert`: writes the key either way.
    Upsert,
    /// `delete`: removes the key.
    Delete,
}

/// What became of a write request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Committed at this `txn_time`.
    Written(f64),
    /// Acknowledged, but nothing was written (insert of an existing key, update or
    /// delete of a missing one).
    Skipped,
    /// The request never reached the node (connection refused): it had no effect.
    NotSent,
    /// No answer: it may or may not have been committed.
    Uncertain(String),
}

impl Handle {
    /// A client for the operations API at `url` of the node `name`.
    pub(super) fn new(name: &str, url: String) -> Handle {
        Handle {
            name: name.to_owned(),
            url,
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("HTTP client"),
        }
    }

    /// One write of `key`; `record` is the whole record (ignored for a delete).
    /// Errors only on an error answer from the node (a bug to report).
    pub async fn write(&self, op: Op, key: &str, record: &Value) -> anyhow::Result<Outcome> {
        let (operation, field) = match op {
            Op::Insert => ("insert", "inserted_hashes"),
            Op::Update => ("update", "update_hashes"),
            Op::Upsert => ("upsert", "upserted_hashes"),
            Op::Delete => ("delete", "deleted_hashes"),
        };
        let body = if op == Op::Delete {
            json!({"operation": operation, "database": DB, "table": TABLE, "ids": [key]})
        } else {
            json!({"operation": operation, "database": DB, "table": TABLE, "records": [record]})
        };
        let sent = self
            .client
            .post(&self.url)
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_connect() => return Ok(Outcome::NotSent),
            Err(e) => return Ok(Outcome::Uncertain(e.to_string())),
        };
        let status = response.status().as_u16();
        let answer: Value = match response.json().await {
            Ok(v) => v,
            Err(e) => return Ok(Outcome::Uncertain(format!("reading the answer: {e}"))),
        };
        ensure!(
            status == 200,
            "{}: {operation} of {key} answered {status}: {answer}",
            self.name
        );
        let written = answer[field]
            .as_array()
            .is_some_and(|ks| ks.iter().any(|k| k == key));
        if !written {
            return Ok(Outcome::Skipped);
        }
        let txn = answer["txn_time"]
            .as_f64()
            .with_context(|| format!("{}: no txn_time in {answer}", self.name))?;
        Ok(Outcome::Written(txn))
    }
}

/// An acknowledged write: when, where, and the record written (`None`: a delete).
#[derive(Debug, Clone)]
pub struct Acked {
    /// The write's `txn_time`.
    pub txn: f64,
    /// The node that acknowledged it.
    pub node: String,
    /// The record written; `None` for a delete.
    pub value: Option<Value>,
}

impl Acked {
    /// Last-writer-wins order: (txn_time, node name).
    fn beats(&self, other: &Acked) -> bool {
        self.txn
            .total_cmp(&other.txn)
            .then_with(|| self.node.cmp(&other.node))
            .is_gt()
    }
}

/// Every write the tests made, by key: acknowledged ones, and unanswered ones that may
/// or may not have been committed.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Acknowledged writes by key.
    pub acked: BTreeMap<String, Vec<Acked>>,
    /// Unanswered writes by key: the node and the record (`None` for a delete).
    pub maybe: BTreeMap<String, Vec<(String, Option<Value>)>>,
}

impl Ledger {
    /// Records what became of a write of `value` (`None` for a delete) to `key` on `node`.
    pub fn note(&mut self, node: &str, key: &str, value: Option<Value>, outcome: &Outcome) {
        match outcome {
            Outcome::Written(txn) => self.acked.entry(key.to_owned()).or_default().push(Acked {
                txn: *txn,
                node: node.to_owned(),
                value,
            }),
            Outcome::Uncertain(_) => self
                .maybe
                .entry(key.to_owned())
                .or_default()
                .push((node.to_owned(), value)),
            Outcome::Skipped | Outcome::NotSent => {}
        }
    }

    /// Adds every write `other` noted.
    pub fn extend(&mut self, other: Ledger) {
        for (k, v) in other.acked {
            self.acked.entry(k).or_default().extend(v);
        }
        for (k, v) in other.maybe {
            self.maybe.entry(k).or_default().extend(v);
        }
    }

    /// The acknowledged write that must win for `key`.
    pub fn winner(&self, key: &str) -> Option<&Acked> {
        self.acked
            .get(key)?
            .iter()
            .fold(None, |best: Option<&Acked>, w| match best {
                Some(b) if !w.beats(b) => Some(b),
                _ => Some(w),
            })
    }

    /// Checks a converged dump against the ledger; returns every problem found.
    ///
    /// A key whose winning acknowledged write is a record must hold exactly that
    /// record's attributes with `__updatedtime__` equal to its `txn_time`; a key whose
    /// winner is a delete must be absent. A write that was never answered may have
    /// won instead (then its timestamp must be above the acknowledged winner's). Keys
    /// nobody wrote must not exist.
    pub fn check(&self, dump: &[Value]) -> Vec<String> {
        let found = by_key(dump);
        let keys: BTreeSet<&String> = self
            .acked
            .keys()
            .chain(self.maybe.keys())
            .chain(found.keys())
            .collect();
        let mut problems = Vec::new();
        for key in keys {
            let winner = self.winner(key);
            let maybes = self.maybe.get(key.as_str()).map_or(&[][..], Vec::as_slice);
            let got = found.get(key.as_str()).copied();
            let floor = winner.map_or(f64::MIN, |w| w.txn);
            let ok = match got {
                None => {
                    winner.is_none_or(|w| w.value.is_none())
                        || maybes.iter().any(|(_, v)| v.is_none())
                }
                Some(record) => {
                    let updated = record["__updatedtime__"].as_f64().unwrap_or(f64::NAN);
                    let attrs = strip_timestamps(record);
                    winner.is_some_and(|w| w.value.as_ref() == Some(&attrs) && updated == w.txn)
                        || maybes
                            .iter()
                            .any(|(_, v)| v.as_ref() == Some(&attrs) && updated >= floor)
                }
            };
            if !ok {
                problems.push(format!(
                    "key {key}: found {}, expected {} (acknowledged writes: {:?}; unanswered: {:?})",
                    got.map_or("<absent>".to_owned(), Value::to_string),
                    match winner {
                        Some(Acked { value: Some(v), txn, node }) =>
                            format!("{v} written by {node} at {txn}"),
                        Some(Acked { value: None, txn, node }) =>
                            format!("absent (deleted by {node} at {txn})"),
                        None => "absent (never written)".to_owned(),
                    },
                    self.acked.get(key.as_str()).map(|ws| ws
                        .iter()
                        .map(|w| (w.txn, w.node.as_str(), w.value.is_some()))
                        .collect::<Vec<_>>()),
                    maybes,
                ));
            }
        }
        problems
    }
}
