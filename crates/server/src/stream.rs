//! Streamed answers: a producer on a blocking thread writes the answer in chunks to a
//! small bounded channel, and the response body takes them as the client reads.
//!
//! The status is decided by what comes first: an error before the first chunk is an
//! ordinary error answer (so a query refused for its size gets its 400); an error after
//! it can only cut the stream short, which the client sees as an incomplete body. A
//! client that stops reading holds the producer, and with it the read transaction it
//! reads from, for at most the stall timeout: past it the producer gives up, its
//! snapshot is released and the body ends cut short.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::runtime::Handle;
use tokio::sync::mpsc::{self, error::SendTimeoutError};
use tokio_stream::Stream;

use crate::error::ApiError;

/// The JSON media type, for answers in JSON.
pub(crate) const JSON: &str = "application/json";

/// Bytes gathered before a chunk is sent.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting between the producer and the connection.
const IN_FLIGHT: usize = 4;

/// What the producer sends.
enum Piece {
    Data(Bytes),
    /// The answer is complete.
    End,
    /// The answer failed.
    Failed(ApiError),
}

/// Where a producer writes its answer.
pub(crate) struct Out {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
    stall: Duration,
    runtime: Handle,
    /// The client went away or stopped reading: produce nothing more.
    gone: bool,
}

impl Out {
    /// Appends bytes to the answer; false once the client is gone or has stalled, when
    /// the producer should stop.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> bool {
        if self.gone {
            return false;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            let chunk = Bytes::from(std::mem::take(&mut self.buf));
            return self.send(Piece::Data(chunk));
        }
        true
    }

    fn send(&mut self, piece: Piece) -> bool {
        // A blocking thread of the runtime may wait on it; this bounds the wait.
        match self
            .runtime
            .block_on(self.tx.send_timeout(piece, self.stall))
        {
            Ok(()) => {}
            Err(SendTimeoutError::Timeout(_)) => {
                tracing::warn!(
                    stall_ms = self.stall.as_millis() as u64,
                    "a client stopped reading a streamed answer; ending it"
                );
                self.gone = true;
            }
            Err(SendTimeoutError::Closed(_)) => self.gone = true,
        }
        !self.gone
    }

    /// Sends what is left and the end of the answer.
    fn finish(mut self, result: Result<(), ApiError>) {
        if self.gone {
            return;
        }
        match result {
            Ok(()) => {
                if !self.buf.is_empty() {
                    let chunk = Bytes::from(std::mem::take(&mut self.buf));
                    if !self.send(Piece::Data(chunk)) {
                        return;
                    }
                }
                self.send(Piece::End);
            }
            Err(e) => {
                if e.status.is_server_error() {
                    tracing::error!(error = %e, "streamed answer failed");
                }
                self.send(Piece::Failed(e));
            }
        }
    }
}

/// Runs `produce` on a blocking thread and answers with what it writes, as `mime`;
/// `stall` bounds how long it waits for a client that stops reading.
pub(crate) async fn respond(
    mime: &'static str,
    stall: Duration,
    produce: impl FnOnce(&mut Out) -> Result<(), ApiError> + Send + 'static,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let runtime = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = Out {
            tx,
            buf: Vec::new(),
            stall,
            runtime,
            gone: false,
        };
        let result = produce(&mut out);
        out.finish(result);
    });
    let first = match rx.recv().await {
        Some(Piece::Data(chunk)) => Some(chunk),
        Some(Piece::End) => None,
        Some(Piece::Failed(e)) => return Err(e),
        None => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the answer ended before it began",
            ));
        }
    };
    let chunks = Chunks {
        first,
        rx,
        done: false,
    };
    Ok(([(header::CONTENT_TYPE, mime)], Body::from_stream(chunks)).into_response())
}

/// The response body: the chunks in order, then the end, or an error that cuts it short.
struct Chunks {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Piece>,
    done: bool,
}

impl Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(chunk) = self.first.take() {
            return Poll::Ready(Some(Ok(chunk)));
        }
        let cut = |why: String| Poll::Ready(Some(Err(std::io::Error::other(why))));
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(chunk))) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(Some(Piece::End)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Piece::Failed(e))) => {
                self.done = true;
                cut(e.message)
            }
            Poll::Ready(None) => {
                self.done = true;
                cut("the answer was cut off: the client stopped reading".into())
            }
        }
    }
}

/// A JSON array written element by element.
pub(crate) struct JsonArray<'o> {
    out: &'o mut Out,
    empty: bool,
}

impl<'o> JsonArray<'o> {
    /// Opens the array.
    pub(crate) fn new(out: &'o mut Out) -> Self {
        out.write(b"[");
        JsonArray { out, empty: true }
    }

    /// Adds one element, already JSON; false once the client is gone.
    pub(crate) fn push(&mut self, json: &[u8]) -> bool {
        if !self.empty && !self.out.write(b",") {
            return false;
        }
        self.empty = false;
        self.out.write(json)
    }

    /// Closes the array.
    pub(crate) fn finish(self) {
        self.out.write(b"]");
    }
}
