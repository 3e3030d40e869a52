//! Which table (and record) a REST path names.

use std::sync::Arc;

use percent_encoding::percent_decode_str;
use serde_json::Value;
use shoal_store::{Database, TableDef};

use super::Format;
use crate::AppState;
use crate::error::ApiError;
use crate::realtime::Filter;

/// A resolved REST path.
pub(crate) struct Target {
    /// The table's database.
    pub(crate) db: Arc<Database>,
    /// The table.
    pub(crate) table: Arc<TableDef>,
    /// The URL path of the table's collection, ending in `/`.
    pub(crate) base: String,
    /// The record id as written in the URL (decoded), if the path names one.
    pub(crate) id: Option<String>,
    /// Whether the path ends at the table without a slash (`GET /T` describes).
    describe: bool,
    /// A format named by a suffix.
    pub(crate) suffix: Option<Format>,
}

impl Target {
    /// Resolves `/{Export}/...` first, then `/{database}/{table}/...` if allowed.
    pub(crate) fn resolve(state: &AppState, path: &str) -> Result<Target, ApiError> {
        let not_found = || ApiError::not_found(format!("Not found: {path}"));
        // A known suffix on the last segment picks the format: /T/1.csv, /db/t.csv?...
        // It is looked for before decoding, so an id whose dot is escaped (`a%2Ecsv`)
        // keeps it.
        let trimmed = path.trim_start_matches('/');
        let (body, suffix) = match trimmed.rsplit_once('.') {
            Some((stem, ext)) if !ext.contains('/') => match Format::from_suffix(ext) {
                Some(format) => (stem, Some(format)),
                None => (trimmed, None),
            },
            _ => (trimmed, None),
        };
        let segments: Vec<String> = body
            .split('/')
            .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let first = segments.first().cloned().unwrap_or_default();
        let (database, table, rest, base) =
            if let Some((db, table)) = state.components.export(&first) {
                (db, table, &segments[1..], format!("/{first}/"))
            } else if state.rest.expose_all_tables && segments.len() >= 2 {
                let base = format!("/{}/{}/", segments[0], segments[1]);
                (
                    segments[0].clone(),
                    segments[1].clone(),
                    &segments[2..],
                    base,
                )
            } else {
                return Err(not_found());
            };
        let db = state.store.database(&database)?;
        let table = db.catalog().tables.get(&table).cloned().ok_or_else(|| {
            shoal_store::StoreError::TableNotFound {
                database: database.clone(),
                table: table.clone(),
            }
        })?;
        let (describe, id) = match rest {
            // `/T.csv` with a suffix is the collection in that format.
            [] => (suffix.is_none(), None),
            [only] if only.is_empty() => (false, None),
            parts => (false, Some(parts.join("/"))),
        };
        Ok(Target {
            db,
            table,
            base,
            id,
            describe,
            suffix,
        })
    }

    /// Whether the request is for the table's description.
    pub(crate) fn is_describe(&self) -> bool {
        self.describe
    }

    /// Candidate primary keys for the URL id: a numeric-looking id is tried as a number
    /// first, then as a string; anything else is a string.
    pub(crate) fn keys(&self) -> Vec<Value> {
        let Some(id) = &self.id else {
            return Vec::new();
        };
        let text = Value::String(id.clone());
        match serde_json::from_str::<Value>(id) {
            Ok(number @ Value::Number(_)) => vec![number, text],
            _ => vec![text],
        }
    }

    /// The primary key the URL id names: the candidate a record exists under, else the
    /// first candidate.
    pub(crate) fn key(&self) -> Result<Option<Value>, ApiError> {
        let candidates = self.keys();
        let snapshot = self.db.snapshot()?;
        for key in &candidates {
            if snapshot.get(&self.table, key)?.is_some() {
                return Ok(Some(key.clone()));
            }
        }
        Ok(candidates.into_iter().next())
    }

    /// What a subscription on this path watches.
    pub(crate) fn filter(&self) -> Result<Filter, ApiError> {
        Ok(Filter {
            table: self.table.name.clone(),
            primary_key: self.table.primary_key.clone(),
            key: self.key()?,
        })
    }
}
