//! A table as a collection: describe, query (streamed), delete by query.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_auth::User;
use shoal_query::{Projection, Query, QueryError, parse_rest_query};
use shoal_store::Write;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::format::{self, Format};
use super::target::Target;
use crate::error::ApiError;

/// Bytes gathered before a chunk of a streamed answer is sent.
const CHUNK: usize = 64 * 1024;

/// `GET /T`: the table's description.
pub(super) fn describe(target: &Target, headers: &HeaderMap) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let snapshot = target.db.snapshot()?;
    let value = crate::describe::describe(&target.db, &snapshot, &target.table)?;
    let columns: Vec<String> = value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    Ok((
        [(header::CONTENT_TYPE, format.mime())],
        format::encode(format, &value, &columns)?,
    )
        .into_response())
}

fn parse(query: Option<&str>) -> Result<Query, ApiError> {
    let rest = parse_rest_query(query.unwrap_or_default()).map_err(ApiError::from)?;
    Ok(Query {
        condition: rest.condition,
        sort: rest.sort,
        offset: rest.offset,
        limit: rest.limit,
        projection: rest.select,
    })
}

/// `GET /T/?query`: matching records, streamed as they are found (sorted queries and
/// MessagePack, whose arrays are length-prefixed, are gathered first).
pub(super) fn query(
    target: &Target,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let query = parse(raw)?;
    if let Some(c) = &query.condition {
        c.validate()?;
    }
    let columns = match &query.projection {
        Projection::Only(list) => list.clone(),
        Projection::All => target.table.attributes.clone(),
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let db = target.db.clone();
    let table = target.table.clone();
    tokio::task::spawn_blocking(move || {
        let mut writer = Writer::new(format, columns, tx);
        let result = db
            .snapshot()
            .map_err(QueryError::from)
            .and_then(|snapshot| {
                shoal_query::for_each(&snapshot, &table, &query, |json| writer.record(json))
            });
        match result {
            Ok(()) => writer.finish(),
            Err(e) => {
                // Too late for a status: end the stream broken so the client sees it.
                tracing::warn!(error = %e, "REST query failed while streaming");
                let _ = writer
                    .tx
                    .blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, format.mime())],
        Body::from_stream(ReceiverStream::new(rx)),
    )
        .into_response())
}

/// Encodes records into chunks for the response stream.
struct Writer {
    format: Format,
    columns: Vec<String>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
    count: usize,
    /// MessagePack needs the count up front, so its records are gathered.
    gathered: Vec<Value>,
}

impl Writer {
    fn new(
        format: Format,
        columns: Vec<String>,
        tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    ) -> Self {
        let buf = match format {
            Format::Json => b"[".to_vec(),
            Format::Cbor => vec![0x9f], // indefinite-length array
            Format::Csv => format::csv_header(&columns),
            Format::MsgPack => Vec::new(),
        };
        Writer {
            format,
            columns,
            tx,
            buf,
            count: 0,
            gathered: Vec::new(),
        }
    }

    /// Adds one record; false once the client is gone.
    fn record(&mut self, json: &[u8]) -> Result<bool, QueryError> {
        let parse = || -> Result<Value, QueryError> {
            serde_json::from_slice(json)
                .map_err(|e| QueryError::Invalid(format!("stored record unreadable: {e}")))
        };
        match self.format {
            Format::Json => {
                if self.count > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(json);
            }
            Format::Cbor => {
                ciborium::into_writer(&parse()?, &mut self.buf).expect("values serialise")
            }
            Format::Csv => format::csv_row(&parse()?, &self.columns, &mut self.buf),
            Format::MsgPack => self.gathered.push(parse()?),
        }
        self.count += 1;
        if self.buf.len() >= CHUNK {
            return Ok(self.flush());
        }
        Ok(true)
    }

    fn flush(&mut self) -> bool {
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.blocking_send(Ok(chunk)).is_ok()
    }

    fn finish(mut self) {
        match self.format {
            Format::Json => self.buf.push(b']'),
            Format::Cbor => self.buf.push(0xff),
            Format::Csv => {}
            Format::MsgPack => {
                self.buf = rmp_serde::to_vec_named(&self.gathered).expect("values serialise");
            }
        }
        self.flush();
    }
}

/// `DELETE /T/?query`: deletes every matching record.
pub(super) async fn delete(
    target: &Target,
    raw: Option<&str>,
    user: &User,
) -> Result<Response, ApiError> {
    let mut query = parse(raw)?;
    let pk = target.table.primary_key.clone();
    query.projection = Projection::Only(vec![pk.clone()]);
    let db = target.db.clone();
    let table = target.table.clone();
    let ids = tokio::task::spawn_blocking(move || -> Result<Vec<Value>, ApiError> {
        let snapshot = db.snapshot()?;
        let mut ids = Vec::new();
        shoal_query::for_each(&snapshot, &table, &query, |json| {
            let record: Value =
                serde_json::from_slice(json).map_err(|e| QueryError::Invalid(e.to_string()))?;
            ids.push(record[&pk].clone());
            Ok(true)
        })?;
        Ok(ids)
    })
    .await
    .map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("delete failed: {e}"),
    })??;
    let write = Write::Delete {
        table: target.table.name.clone(),
        ids,
    };
    let outcome = target.db.write(write, Some(&user.username)).await?;
    Ok(axum::Json(json!({
        "message": format!("{} records successfully deleted", outcome.written.len()),
        "deleted_hashes": outcome.written,
    }))
    .into_response())
}
