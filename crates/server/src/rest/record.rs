//! One record: GET, PUT, PATCH, DELETE on `/T/id`, and POST on `/T/`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use shoal_auth::{Action, Grant, User};
use shoal_store::{Mode, Write};

use super::attributes;
use super::format::{self, Format};
use super::target::Target;
use crate::error::ApiError;

/// Characters escaped in an id placed in a URL path: all but RFC 3986's unreserved,
/// and `.` too, so that an id like `report.csv` is not read as a format suffix.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `GET /T/id`: the record, with only the attributes the role may read.
pub(super) fn get(
    target: &Target,
    headers: &HeaderMap,
    grant: &Grant,
) -> Result<Response, ApiError> {
    let format = format::negotiate(headers, target.suffix)?;
    let snapshot = target.db.snapshot()?;
    for key in target.keys() {
        let Some(version) = snapshot.get(&target.table, &key)? else {
            continue;
        };
        let Some(stored) = version.json else {
            continue;
        };
        let json = attributes::shown(grant, stored)?;
        let json = json.as_ref();
        let etag = attributes::etag(grant, version.hlc, json);
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
                format::encode(format, &value, &columns)?,
            )
                .into_response()
        };
        let h = response.headers_mut();
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            h.insert(header::ETAG, etag);
        }
        // The version's time is when any attribute last changed, hidden ones too.
        if grant.is_whole()
            && let Some(modified) = last_modified(version.hlc, SystemTime::now())
        {
            h.insert(header::LAST_MODIFIED, modified);
        }
        return Ok(response);
    }
    Err(missing(target))
}

/// The first second HTTP dates cannot express (year 10000).
const HTTP_DATE_END_SECS: u64 = 253_402_300_800;

/// `Last-Modified` for a version stamped `hlc`, never later than `now`: RFC 9110
/// (8.8.2.1) replaces a modification time in the future with the message's own date. A
/// peer whose clock ran ahead can stamp any time, even past year 9999, which an HTTP date
/// cannot express; `None` only if `now` itself is out of range.
fn last_modified(hlc: u64, now: SystemTime) -> Option<HeaderValue> {
    let stamped = UNIX_EPOCH + Duration::from_millis(hlc >> 16);
    let at = stamped.min(now);
    let secs = at.duration_since(UNIX_EPOCH).ok()?.as_secs();
    if secs >= HTTP_DATE_END_SECS {
        return None;
    }
    HeaderValue::from_str(&httpdate::fmt_http_date(at)).ok()
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
            let same = |a: &Value| shoal_store::key::same(a, given);
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

/// `PUT /T/id`: replace or create. Replacing needs update on every attribute sent,
/// creating needs insert; attributes the role may not update keep their stored values.
pub(super) async fn put(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
    grant: &Grant,
) -> Result<Response, ApiError> {
    let key = target.key()?;
    let mut record = record_body(target, headers, body, key.as_ref())?;
    if !grant.is_whole() {
        let pk = Some(target.table.primary_key.as_str());
        let stored = match &key {
            Some(key) => {
                let snapshot = target.db.snapshot()?;
                let version = snapshot.get(&target.table, key)?;
                version.map(|v| v.value()).transpose()?.flatten()
            }
            None => None,
        };
        match stored {
            Some(stored) => {
                attributes::check_write(grant, Action::Update, &record, pk)?;
                attributes::keep_unwritable(grant, &mut record, stored);
            }
            None => attributes::check_write(grant, Action::Insert, &record, pk)?,
        }
    }
    write(target, Mode::Put, record, user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH /T/id`: merge into an existing record; needs update on every attribute sent.
pub(super) async fn patch(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
    grant: &Grant,
) -> Result<Response, ApiError> {
    let key = target.key()?;
    let record = record_body(target, headers, body, key.as_ref())?;
    let pk = Some(target.table.primary_key.as_str());
    attributes::check_write(grant, Action::Update, &record, pk)?;
    let outcome = write(target, Mode::Update, record, user).await?;
    if outcome.written.is_empty() {
        return Err(missing(target));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /T/`: create a record, with a generated id unless the body has one; needs
/// insert on every attribute sent.
pub(super) async fn post(
    target: &Target,
    headers: &HeaderMap,
    body: &Bytes,
    user: &User,
    grant: &Grant,
) -> Result<Response, ApiError> {
    let record = record_body(target, headers, body, None)?;
    attributes::check_write(grant, Action::Insert, &record, None)?;
    let outcome = write(target, Mode::Insert, record, user).await?;
    let Some(id) = outcome.written.first() else {
        let key = outcome.skipped.first().cloned().unwrap_or(Value::Null);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a record with id {key} already exists"),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn date(header: Option<HeaderValue>) -> SystemTime {
        let header = header.expect("a Last-Modified header");
        httpdate::parse_http_date(header.to_str().unwrap()).unwrap()
    }

    #[test]
    fn last_modified_is_never_in_the_future_and_never_panics() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let past = (1_600_000_000_000u64 << 16) | 7;
        assert_eq!(
            date(last_modified(past, now)),
            UNIX_EPOCH + Duration::from_secs(1_600_000_000)
        );
        // Year 10000 (past what HTTP dates express), the largest millisecond an HLC can
        // hold, and every bit set: all clamp to now.
        let year_10000_ms = HTTP_DATE_END_SECS * 1000;
        for hlc in [year_10000_ms << 16, (year_10000_ms + 1) << 16, u64::MAX] {
            assert_eq!(date(last_modified(hlc, now)), now, "hlc {hlc:#x}");
        }
        // A clock stuck past year 9999 gets no header rather than a panic.
        let far = UNIX_EPOCH + Duration::from_secs(HTTP_DATE_END_SECS + 5);
        assert!(last_modified(u64::MAX, far).is_none());
    }
}
