//! Request bodies, within their limits: read off the connection within the size limit
//! (413) and the stall timeout (408), then decoded within the nesting limit (400,
//! [`decode`]), for every body either router takes.
//!
//! hyper checks a chunk-size line only for overflow past 64 bits, so a client can
//! announce a chunk of 2^64 - 1 bytes and then send nothing, or send forever: the limit
//! is enforced here, frame by frame, and a body that stops arriving times out. A body no
//! handler wanted is read and dropped within the same limits before the answer goes out
//! ([`read_before_answering`]).

mod decode;

use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::AppState;
use crate::error::ApiError;

pub(crate) use decode::{cbor, json, msgpack};

/// Most bytes reserved up front for a body from its `Content-Length`: a client may
/// declare a large body and never send it.
const PREALLOCATE_MAX: usize = 1 << 20;

/// Bytes of request bodies held in memory at once, across every request of both ports:
/// bounds what concurrent large bodies (and what is parsed from them) take from the node.
/// A body larger than the whole budget takes all of it, and so waits to run alone.
#[derive(Debug)]
pub struct BodyBudget {
    /// One permit per KiB.
    kib: Arc<Semaphore>,
    total_kib: u32,
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let total_kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        BodyBudget {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// Bytes of bodies held now (in whole KiB).
    pub fn in_use(&self) -> usize {
        (self.total_kib as usize).saturating_sub(self.kib.available_permits()) * 1024
    }

    /// The KiB a body of `bytes` takes, at most the whole budget.
    fn kib(&self, bytes: usize) -> u32 {
        u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib)
    }
}

/// A body read whole, holding its share of the [`BodyBudget`] until dropped (the end of
/// the request that read it).
#[derive(Default)]
pub(crate) struct Held {
    bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

impl Deref for Held {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.bytes
    }
}

/// The whole body, or 413 as soon as it is known to pass the node's body limit (a
/// `Content-Length` over it is refused before reading anything), or 408 when no bytes
/// arrive for the body-read timeout. It first takes its share of the body budget: a
/// declared length all at once, waiting its turn (503 if the budget stays taken for the
/// body-read timeout); a body of unknown length as it arrives (503 at once when the
/// budget is spent, since waiting while holding a part could deadlock with another).
pub(crate) async fn bytes(
    state: &AppState,
    body: Body,
    headers: &HeaderMap,
) -> Result<Held, ApiError> {
    let declared = declared(state, headers)?;
    let budget = &state.body_budget;
    let mut share = match declared {
        Some(n) => {
            let wait = budget.kib.clone().acquire_many_owned(budget.kib(n));
            let permit = tokio::time::timeout(state.body_read_timeout, wait)
                .await
                .map_err(|_| busy())?
                .map_err(|_| busy())?;
            Some(permit)
        }
        None => None,
    };
    let mut out = Vec::with_capacity(declared.map_or(0, |n| n.min(PREALLOCATE_MAX)));
    read(state, body, |data| {
        out.extend_from_slice(&data);
        if declared.is_none() {
            let held = share.as_ref().map_or(0, |p| p.num_permits() as u32);
            let more = budget.kib(out.len()).saturating_sub(held);
            if more > 0 {
                let permit = budget.kib.clone().try_acquire_many_owned(more);
                let permit = permit.map_err(|_| busy())?;
                match &mut share {
                    Some(held) => held.merge(permit),
                    None => share = Some(permit),
                }
            }
        }
        Ok(())
    })
    .await?;
    Ok(Held {
        bytes: out.into(),
        _share: share,
    })
}

/// Middleware for both routers: no answer goes out before the request's body has
/// arrived. An answer that needs none of it (a refused login, an unknown path or
/// method) would otherwise be sent while the client is still sending, and the connection
/// closed under it: a client that sends its whole body before reading sees a reset, not
/// the answer. So a body the handler left untouched is read here and dropped, within
/// the same limits, before the answer is sent. A client that asked `Expect:
/// 100-continue` has sent none of it yet, and is answered at once.
pub(crate) async fn read_before_answering(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let continues = request
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if request.body().is_end_stream() || continues {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let within_limit = declared(&state, &parts.headers).is_ok();
    let (back, mut returned) = oneshot::channel();
    let body = Body::new(Untouched {
        body,
        back: Some(back),
    });
    let response = next.run(Request::from_parts(parts, body)).await;
    if let Ok(body) = returned.try_recv()
        && within_limit
    {
        // The answer stands whatever the body does; past the limits hyper closes the
        // connection after it.
        let _ = read(&state, body, |_| Ok(())).await;
    }
    response
}

/// A request body that goes back to [`read_before_answering`] if it is dropped before
/// anything polled it.
struct Untouched {
    body: Body,
    back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for Untouched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.back = None;
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for Untouched {
    fn drop(&mut self) {
        if let Some(back) = self.back.take() {
            let _ = back.send(std::mem::take(&mut self.body));
        }
    }
}

/// The body's declared `Content-Length`, or 413 if it is over the limit.
fn declared(state: &AppState, headers: &HeaderMap) -> Result<Option<usize>, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared.map(usize::try_from) {
        None => Ok(None),
        Some(Ok(n)) if n <= state.max_body => Ok(Some(n)),
        Some(_) => Err(too_large(state.max_body)),
    }
}

/// Hands the body's bytes to `take` as they arrive: 413 once they pass the node's body
/// limit, 408 when none arrive for the body-read timeout, or `take`'s own refusal.
async fn read(
    state: &AppState,
    mut body: Body,
    mut take: impl FnMut(Bytes) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let (max, timeout) = (state.max_body, state.body_read_timeout);
    let mut total = 0usize;
    loop {
        let frame = tokio::time::timeout(timeout, body.frame())
            .await
            .map_err(|_| stalled(timeout))?;
        let Some(frame) = frame else {
            return Ok(());
        };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total > max {
                return Err(too_large(max));
            }
            take(data)?;
        }
    }
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {max} bytes"),
    )
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many large request bodies at once (network.max_body_bytes_in_flight); \
                  retry shortly",
    )
}

fn stalled(after: Duration) -> ApiError {
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "request body timed out: no data for {} ms",
            after.as_millis()
        ),
    )
}
