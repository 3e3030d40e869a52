//! Serving a router on a listening port: HTTP/1.1 on hyper with a header-read timeout, an
//! idle keep-alive timeout, a cap on open connections, WebSocket upgrades, and a graceful
//! shutdown that lets requests in flight finish.
//!
//! Past the cap a connection is answered at once with a 503 (Harper's `{"error": ...}`,
//! `Connection: close`) and closed, rather than queued: a client learns why, and nothing
//! it sends is read. An upgraded (WebSocket) connection keeps its place under the cap
//! until it closes.
//!
//! A secure port ([`serve_tls`]) runs the same loop: a connection takes its place under the
//! cap when accepted, so a client that never completes its TLS handshake holds it only
//! until the handshake timeout. Plain and secure ports of one API may share a [`Port`],
//! and so one cap.
//!
//! The serving loop is a worker (`server/operations-api`, `server/http`); it tracks every
//! connection task it starts and returns only once they have all ended.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use shoal_workers::{Backoff, Ctx};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tower_service::Service;

use crate::tls::{ServerTls, TlsClient};

/// Longest a refused connection is kept to deliver its 503.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Refused connections being answered at once, beyond which more are closed unanswered
/// (so a flood past the cap costs a bounded number of tasks).
const REFUSING_MAX: usize = 64;
/// Shortest and longest pause after a failed accept (out of file descriptors, say)
/// before the next one: capped exponential, back to the shortest after a success.
pub(crate) const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub(crate) const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Connection timeouts of a port.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest a client may take to send a request's headers, counted from when the
    /// connection is ready for a request (opened, or done with the previous answer).
    pub header_read_timeout: Duration,
    /// A connection with no request in progress for this long is closed. hyper counts
    /// the wait for the next request toward `header_read_timeout`, so a longer value has
    /// no effect.
    pub keep_alive_timeout: Duration,
}

/// One listening port's connection cap and counters.
#[derive(Debug)]
pub struct Port {
    max: usize,
    permits: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    refused: AtomicU64,
}

impl Port {
    /// A port serving at most `max_connections` connections at once.
    pub fn new(max_connections: usize) -> Self {
        let max = max_connections.max(1);
        Port {
            max,
            permits: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(REFUSING_MAX)),
            refused: AtomicU64::new(0),
        }
    }

    /// The cap.
    pub fn max_connections(&self) -> usize {
        self.max
    }

    /// Connections open now (upgraded ones included).
    pub fn open_connections(&self) -> usize {
        self.max - self.permits.available_permits()
    }

    /// Connections refused because the port was full, since start.
    pub fn refused_connections(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A place under the cap, held until the permit is dropped; `None` (counted as a
    /// refusal) when the port is full.
    pub(crate) fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// Serves `router` on `listener` until the worker `ctx` is asked to stop, then stops
/// accepting, asks every connection to close once its request in flight is answered, and
/// returns when they all have (an upgraded connection is handed to its handler, whose
/// own worker ends it). `ctx` counts the connections accepted.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    port: Arc<Port>,
    options: ServeOptions,
    ctx: &Ctx,
) {
    serve_on(listener, None, router, port, options, ctx).await;
}

/// The next connection on `listener`, failed accepts retried with `backoff`; `None` once
/// the worker `ctx` is asked to stop (or gives up). `ctx` counts the connections accepted.
pub(crate) async fn accept(
    listener: &TcpListener,
    backoff: &mut Backoff,
    ctx: &Ctx,
    what: &str,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => {
                    backoff.reset();
                    ctx.count(1);
                    return Some(accepted);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting {what} failed");
                    ctx.error(format_args!("accept failed: {e}"));
                    if !ctx.backoff(backoff).await {
                        return None;
                    }
                }
            },
            () = ctx.stopping() => return None,
        }
    }
}

/// Like [`serve()`], over TLS: each connection completes its handshake (within the
/// handshake timeout) before its requests are read, and a verified client certificate
/// logs its requests in (mTLS).
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    router: Router,
    port: Arc<Port>,
    options: ServeOptions,
    ctx: &Ctx,
) {
    serve_on(listener, Some(tls), router, port, options, ctx).await;
}

async fn serve_on(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    router: Router,
    port: Arc<Port>,
    options: ServeOptions,
    ctx: &Ctx,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` answers `None` once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
    while let Some((stream, peer)) = accept(&listener, &mut backoff, ctx, "a connection").await {
        match port.try_enter() {
            Some(permit) => {
                tokio::spawn(connection(
                    stream,
                    peer,
                    permit,
                    tls.clone(),
                    router.clone(),
                    options,
                    stop_rx.clone(),
                    alive_tx.clone(),
                ));
            }
            None => {
                if let Ok(slot) = port.refusing.clone().try_acquire_owned() {
                    let tls = tls.clone();
                    tokio::spawn(refuse(stream, tls, port.max, slot, alive_tx.clone()));
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// Answers a connection past the cap with a 503 (after the handshake, on a secure port)
/// and closes it; `_alive` tells [`serve`] it is still running.
async fn refuse(
    stream: TcpStream,
    tls: Option<Arc<ServerTls>>,
    max: usize,
    _slot: OwnedSemaphorePermit,
    _alive: mpsc::Sender<()>,
) {
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, async {
        match tls {
            None => answer_refusal(stream, max).await,
            Some(tls) => answer_refusal(tls.accept(stream).await?.0, max).await,
        }
    })
    .await;
}

async fn answer_refusal<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    max: usize,
) -> io::Result<()> {
    let body = serde_json::json!({
        "error": format!("too many connections: this port serves at most {max} at once")
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // The answer waits for the request to begin: an answer that reaches a client before
    // it has asked is, to the client, a broken connection (HTTP clients check that an
    // idle connection has nothing to read, which a TLS client's may until it writes).
    let mut sink = [0u8; 4096];
    if stream.read(&mut sink).await? == 0 {
        return Ok(());
    }
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await?;
    // Read (and drop) what the client sent until it closes: closing with unread bytes
    // would send a reset, which may destroy the answer before it is read.
    while stream.read(&mut sink).await? > 0 {}
    Ok(())
}

/// Serves one connection, after its TLS handshake on a secure port; `_alive` tells
/// [`serve`] it is still running.
#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    tls: Option<Arc<ServerTls>>,
    router: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    // Small answers must not wait for the client's delayed ACK (Nagle).
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return http(stream, peer, None, permit, router, options, stop).await;
    };
    let accepted = tokio::select! {
        accepted = tls.accept(stream) => accepted,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    match accepted {
        Ok((stream, client)) => {
            http(stream, peer, Some(client), permit, router, options, stop).await
        }
        Err(e) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
    }
}

/// Serves HTTP/1.1 on an open (and, on a secure port, handshaken) connection.
async fn http<S>(
    stream: S,
    peer: SocketAddr,
    tls: Option<TlsClient>,
    permit: OwnedSemaphorePermit,
    router: Router,
    options: ServeOptions,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let busy = activity.begin();
            let mut router = router.clone();
            // Who is asking, for handlers that limit per client address (`ConnectInfo`,
            // as axum's own server records it).
            request.extensions_mut().insert(ConnectInfo(peer));
            if let Some(tls) = &tls {
                request.extensions_mut().insert(tls.clone());
            }
            async move {
                let response = router.call(request.map(Body::new)).await?;
                // The request counts as in progress until its answer's body is done
                // (hyper drops it then), which for a stream may be much later.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    // The permit travels with the socket, also into an upgraded connection.
    let io = TokioIo::new(Held {
        stream,
        _permit: permit,
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        // Checked when a keep-alive period could have run out, not on every request:
        // requests only count themselves in and out, which costs a hot path nothing.
        let wake = activity.idle_since().unwrap_or_else(Instant::now) + options.keep_alive_timeout;
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep_until(wake.into()), if !closing => {
                let idle_for = activity.idle_since().map(|since| since.elapsed());
                if idle_for.is_some_and(|idle| idle >= options.keep_alive_timeout) {
                    // With no request in progress hyper closes the connection at once.
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// Whether a connection has a request in progress, and since when it has not.
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `born` when the last request finished.
    idle_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_ms: AtomicU64::new(0),
        }
    }

    /// Marks a request in progress until the returned guard is dropped.
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    /// When the connection went idle, if no request is in progress.
    fn idle_since(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let ms = self.idle_ms.load(Ordering::Acquire);
        Some(self.born + Duration::from_millis(ms))
    }
}

/// A request in progress on a connection.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_ms.store(ms, Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A socket holding its place under the port's connection cap.
pub(crate) struct Held<S> {
    pub(crate) stream: S,
    pub(crate) _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use shoal_workers::Workers;

    use super::*;

    /// Reads from `stream` until `want` shows up (or the stream ends); what was read.
    async fn read_until(stream: &mut TcpStream, want: &str) -> String {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk));
            match read.await.expect("an answer within 10 s") {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    }

    #[tokio::test]
    async fn requests_carry_the_client_address_and_the_cap_refuses_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route(
            "/",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let port = Arc::new(Port::new(1));
        let options = ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(10),
        };
        let workers = Workers::new();
        let serving = port.clone();
        let server = workers.spawn("server/http", |ctx| async move {
            serve(listener, router, serving, options, &ctx).await
        });
        let ask = b"GET / HTTP/1.1\r\nhost: shoal\r\n\r\n";

        let mut first = TcpStream::connect(addr).await.unwrap();
        let me = first.local_addr().unwrap().to_string();
        first.write_all(ask).await.unwrap();
        let answer = read_until(&mut first, &me).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(&me),
            "the handler saw the client's address: {answer}"
        );
        assert_eq!(port.open_connections(), 1);

        let mut second = TcpStream::connect(addr).await.unwrap();
        second.write_all(ask).await.unwrap();
        let refused = read_until(&mut second, "}").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("too many connections"), "{refused}");
        assert_eq!(port.refused_connections(), 1);

        server.stop();
        tokio::time::timeout(Duration::from_secs(10), server.finished())
            .await
            .expect("serve returns once its idle connection is closed");
        assert_eq!(
            read_until(&mut first, "never").await,
            "",
            "closed on shutdown"
        );
    }
}
