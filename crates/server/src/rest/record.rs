//! One record: GET, PUT, PATCH, DELETE on `/T/id`, and POST on `/T/`.

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use shoal_auth::User;
use shoal_store::{Mode, Write};

use super::format::{self, Format};
use super::target::Target;
use crate::error::ApiError;

/// Characters escaped in an id placed in a URL path: all but RFC 3986's unreserved,
/// and `.` too, so that an id like `report.csv` is not read as a format suffix.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `GET /T/id`.
pub(super) fn get(target: &Target, headers: &HeaderMap) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let snapshot = target.db.snapshot()?;
    for key in target.keys() {
        let Some(version) = snapshot.get(&target.table, &key)? else {
            continue;
        };
        let Some(json) = version.json else {
            continue;
        };
        let etag = format!("\"{:x}\"", version.hlc);
        let modified = UNIX_EPOCH + Duration::from_millis(version.hlc >> 16);
        let mut response = if if_none_match(headers, &etag) {
            StatusCode::NOT_MODIFIED.into_response()
        } else if format == Format::Json {
            // Served as stored: no parsing, no re-encoding.
            ([(header::CONTENT_TYPE, format.mime())], json.to_vec()).into_response()
        } else {
            let value: Value = serde_json::from_slice(json)
                .map_err(|e| ApiError::bad_request(format!("stored record unreadable: {e}")))?;
            let columns = columns(&value);
            (
                [(header::CONTENT_TYPE, format.mime())],
                format::encode(format, &value, &columns),
            )
                .into_response()
        };
        let h = response.headers_mut();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex is a valid header"),
        );
        h.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_str(&httpdate::fmt_http_date(modified))
                .expect("dates are valid headers"),
        );
        return Ok(response);
    }
    Err(missing(target))
}

/// The 404 for a record the URL names but the table does not hold.
fn missing(target: &Target) -> ApiError {
    ApiError::not_found(format!(
        "Record '{}' not found in {}",
        target.id.as_deref().unwrap_or_default(),
        target.table.name
    ))
}

/// Whether `If-None-Match` lists the current version.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| {
            list.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == etag)
        })
}

/// A record's own attributes, in order, as CSV columns.
fn columns(value: &Value) -> Vec<String> {
    value
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The body as a record keyed by `key`: a primary key in the body must name the same
/// record as the URL (as `"1"`, `1` and `1.0` do for `/T/1`) and is replaced by `key`.
fn record_body(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    key: Option<&Value>,
) -> Result<Map<String, Value>, ApiError> {
    let Value::Object(mut record) = format::decode(headers, body)? else {
        return Err(ApiError::bad_request("the body must be an object"));
    };
    let pk = &target.table.primary_key;
    if let Some(key) = key {
        if let Some(given) = record.get(pk) {
            let same = |a: &Value| shoal_store::key::encode(a) == shoal_store::key::encode(given);
            if !same(key) && !target.keys().iter().any(same) {
                return Err(ApiError::bad_request(format!(
                    "the body's '{pk}' ({given}) does not match the URL"
                )));
            }
        }
        record.insert(pk.clone(), key.clone());
    }
    Ok(record)
}

/// `PUT /T/id`: replace or create.
pub(super) async fn put(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
) -> Result<Response, ApiError> {
    let key = target.key()?;
    let record = record_body(target, headers, body, key.as_ref())?;
    write(target, Mode::Put, record, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /T/id`: merge into an existing record.
pub(super) async fn patch(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
) -> Result<Response, ApiError> {
    let key = target.key()?;
    let record = record_body(target, headers, body, key.as_ref())?;
    let outcome = write(target, Mode::Update, record, user).await?;
    if outcome.written.is_empty() {
        return Err(missing(target));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /T/`: create a record, with a generated id unless the body has one.
pub(super) async fn post(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
) -> Result<Response, ApiError> {
    let record = record_body(target, headers, body, None)?;
    let outcome = write(target, Mode::Insert, record, user).await?;
    let Some(id) = outcome.written.first() else {
        let key = outcome.skipped.first().cloned().unwrap_or(Value::Null);
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: format!("a record with id {key} already exists"),
        });
    };
    let text = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
    let location = format!(
        "{}{}",
        target.base,
        percent_encoding::utf8_percent_encode(&text, PATH_SEGMENT)
    );
    Ok((
        StatusCode::CREATED,
        [
            (header::LOCATION, location),
            (header::CONTENT_TYPE, "application/json".to_owned()),
        ],
        id.to_string(),
    )
        .into_response())
}

/// `DELETE /T/id`.
pub(super) async fn delete(target: &Target, user: &User) -> Result<Response, ApiError> {
    let Some(key) = target.key()? else {
        return Err(ApiError::bad_request("no id"));
    };
    let write = Write::Delete {
        table: target.table.name.clone(),
        ids: vec![key],
    };
    let outcome = target.db.write(write, Some(&user.username)).await?;
    if outcome.written.is_empty() {
        return Err(missing(target));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn write(
    target: &Target,
    mode: Mode,
    record: Map<String, Value>,
    user: &User,
) -> Result<shoal_store::Outcome, ApiError> {
    let write = Write::Records {
        table: target.table.name.clone(),
        mode,
        records: vec![record],
    };
    Ok(target.db.write(write, Some(&user.username)).await?)
}
