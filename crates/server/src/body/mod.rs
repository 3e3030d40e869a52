//! Request bodies, within their limits: read off the connection within the size limit
//! (413) and the stall timeout (408), then decoded within the nesting limit (400,
//! [`decode`]), for every body either router takes.
//!
//! hyper checks a chunk-size line only for overflow past 64 bits, so a client can
//! announce a chunk of 2^64 - 1 bytes and then send nothing, or send forever: the limit
//! is enforced here, frame by frame, and a body that stops arriving times out.

mod decode;

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;

use crate::AppState;
use crate::error::ApiError;

pub(crate) use decode::{cbor, json, msgpack};

/// Most bytes reserved up front for a body from its `Content-Length`: a client may
/// declare a large body and never send it.
const PREALLOCATE_MAX: u64 = 1 << 20;

/// The whole body, or 413 as soon as it is known to pass the node's body limit (a
/// `Content-Length` over it is refused before reading anything), or 408 when no bytes
/// arrive for the body-read timeout.
pub(crate) async fn bytes(
    state: &AppState,
    mut body: Body,
    headers: &HeaderMap,
) -> Result<Bytes, ApiError> {
    let (max, timeout) = (state.max_body, state.body_read_timeout);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large(max));
    }
    let reserve = declared.map_or(0, |n| n.min(PREALLOCATE_MAX) as usize);
    let mut out = Vec::with_capacity(reserve);
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| stalled(timeout))?;
        let Some(frame) = frame else {
            return Ok(out.into());
        };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(too_large(max));
            }
            out.extend_from_slice(&data);
        }
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("request body is larger than the limit of {max} bytes"),
    }
}

fn stalled(after: Duration) -> ApiError {
    ApiError {
        status: StatusCode::REQUEST_TIMEOUT,
        message: format!(
            "request body timed out: no data for {} ms",
            after.as_millis()
        ),
    }
}
