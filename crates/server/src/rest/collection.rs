//! A table as a collection: describe, query (streamed), delete by query.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use shoal_auth::{Grant, User};
use shoal_query::{Limits, Projection, Query, QueryError, parse_rest_query};
use shoal_store::{Snapshot, TableDef, Write};

use super::attributes;
use super::format::{self, Format};
use super::target::Target;
use crate::AppState;
use crate::error::ApiError;
use crate::stream::{self, JsonArray, Out};

/// `GET /T`: the table's description, with the attributes the role may see.
pub(super) fn describe(
    target: &Target,
    headers: &HeaderMap,
    grant: &Grant,
) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let snapshot = target.db.snapshot()?;
    let mut value = crate::describe::describe(&target.db, &snapshot, &target.table)?;
    attributes::describe(grant, &mut value);
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

fn parse(query: Option<&str>, limits: Limits) -> Result<Query, ApiError> {
    let rest = parse_rest_query(query.unwrap_or_default()).map_err(ApiError::from)?;
    Ok(Query {
        condition: rest.condition,
        sort: rest.sort,
        offset: rest.offset,
        limit: rest.limit,
        projection: rest.select,
        limits,
    })
}

/// `GET /T/?query`: matching records, streamed as they are found. MessagePack arrays
/// start with their length: a small answer is gathered and sent with it; a larger one
/// is counted first, on the same snapshot, then streamed. The query may name only
/// attributes the role may read, and records show only those.
pub(super) async fn query(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    raw: Option<&str>,
    grant: Grant,
) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let query = parse(raw, state.query.limits())?;
    attributes::check_query(&grant, &query)?;
    let columns = match &query.projection {
        Projection::Only(list) => list.clone(),
        Projection::All => target
            .table
            .attributes
            .iter()
            .filter(|a| grant.may_read(a))
            .cloned()
            .collect(),
    };
    // A select names only readable attributes (checked above): nothing to filter then.
    let grant = match query.projection {
        Projection::All => grant,
        Projection::Only(_) => Grant::whole(),
    };
    let db = target.db.clone();
    let table = target.table.clone();
    let gather = state.query.msgpack_buffer_bytes;
    stream::respond(format.mime(), state.query.stall_timeout, move |out| {
        let snapshot = db.snapshot()?;
        if format == Format::MsgPack {
            return msgpack(&snapshot, &table, &query, &grant, gather, out);
        }
        let mut records = Records::new(format, &columns, out);
        shoal_query::for_each(&snapshot, &table, &query, |json| {
            records.push(&attributes::shown(&grant, json)?)
        })?;
        records.finish();
        Ok(())
    })
    .await
}

fn parse_record(json: &[u8]) -> Result<Value, QueryError> {
    serde_json::from_slice(json)
        .map_err(|e| QueryError::Invalid(format!("stored record unreadable: {e}")))
}

fn msgpack_record(json: &[u8]) -> Result<Vec<u8>, QueryError> {
    Ok(rmp_serde::to_vec_named(&parse_record(json)?).expect("JSON values encode"))
}

/// The MessagePack header of an array of `len` elements.
fn msgpack_array(len: usize) -> Result<Vec<u8>, ApiError> {
    Ok(match len {
        0..16 => vec![0x90 | len as u8],
        16..=0xFFFF => [&[0xdc][..], &(len as u16).to_be_bytes()].concat(),
        _ => {
            let len = u32::try_from(len)
                .map_err(|_| ApiError::bad_request("too many records for a MessagePack array"))?;
            [&[0xdd][..], &len.to_be_bytes()].concat()
        }
    })
}

/// A MessagePack answer: gathered up to `gather` bytes, else counted, then streamed.
fn msgpack(
    snapshot: &Snapshot,
    table: &TableDef,
    query: &Query,
    grant: &Grant,
    gather: usize,
    out: &mut Out,
) -> Result<(), ApiError> {
    let mut gathered = Vec::new();
    let mut count = 0;
    let mut whole = true;
    shoal_query::for_each(snapshot, table, query, |json| {
        gathered.extend_from_slice(&msgpack_record(&attributes::shown(grant, json)?)?);
        count += 1;
        whole = gathered.len() <= gather;
        Ok(whole)
    })?;
    if whole {
        out.write(&msgpack_array(count)?);
        out.write(&gathered);
        return Ok(());
    }
    drop(gathered);
    let total = shoal_query::count(snapshot, table, query)?;
    if !out.write(&msgpack_array(total)?) {
        return Ok(());
    }
    let (mut sent, mut open) = (0, true);
    let mut records = Records::MsgPack(out);
    shoal_query::for_each(snapshot, table, query, |json| {
        // Never more than announced.
        if sent == total {
            return Ok(false);
        }
        sent += 1;
        open = records.push(&attributes::shown(grant, json)?)?;
        Ok(open)
    })?;
    if open && sent != total {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the query gave {sent} records after counting {total}"),
        ));
    }
    Ok(())
}

/// Records written one by one as one array (a CSV table).
enum Records<'a> {
    Json(JsonArray<'a>),
    /// An indefinite-length array.
    Cbor(&'a mut Out),
    /// A header, then a row a record.
    Csv(&'a [String], &'a mut Out),
    /// The elements only: the array's length comes first, from the caller.
    MsgPack(&'a mut Out),
}

impl<'a> Records<'a> {
    fn new(format: Format, columns: &'a [String], out: &'a mut Out) -> Self {
        match format {
            Format::Json => Records::Json(JsonArray::new(out)),
            Format::Cbor => {
                out.write(&[0x9f]);
                Records::Cbor(out)
            }
            Format::Csv => {
                out.write(&format::csv_header(columns));
                Records::Csv(columns, out)
            }
            Format::MsgPack => Records::MsgPack(out),
        }
    }

    /// Adds one record; false once the client is gone.
    fn push(&mut self, json: &[u8]) -> Result<bool, QueryError> {
        Ok(match self {
            Records::Json(array) => array.push(json),
            Records::Cbor(out) => {
                let mut encoded = Vec::new();
                ciborium::into_writer(&parse_record(json)?, &mut encoded)
                    .expect("JSON values encode");
                out.write(&encoded)
            }
            Records::Csv(columns, out) => {
                let mut row = Vec::new();
                format::csv_row(&parse_record(json)?, columns, &mut row);
                out.write(&row)
            }
            Records::MsgPack(out) => out.write(&msgpack_record(json)?),
        })
    }

    fn finish(self) {
        match self {
            Records::Json(array) => array.finish(),
            Records::Cbor(out) => {
                out.write(&[0xff]);
            }
            Records::Csv(..) | Records::MsgPack(_) => {}
        }
    }
}

/// `DELETE /T/?query`: deletes every matching record. Its conditions may name only
/// attributes the role may read: what it deletes would tell their values.
pub(super) async fn delete(
    target: &Target,
    raw: Option<&str>,
    user: &User,
    grant: &Grant,
    limits: Limits,
) -> Result<Response, ApiError> {
    let mut query = parse(raw, limits)?;
    attributes::check_query(grant, &query)?;
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
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("delete failed: {e}"),
        )
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
