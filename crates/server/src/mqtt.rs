//! MQTT on the network: the MQTT port and its TLS twin, and MQTT over WebSocket
//! (subprotocol `mqtt`, any path) on the HTTP ports. The broker (`shoal_mqtt`) serves
//! each connection; this module only brings it the bytes and says who is on the other end.
//!
//! Every MQTT connection, whatever its transport, takes a place under one cap (a
//! [`Port`]). On the MQTT ports it takes it when accepted (on the secure one before its
//! handshake, which the handshake timeout bounds); past the cap a connection is closed at
//! once, since MQTT has no answer for a client that has sent nothing yet. A WebSocket
//! upgrade past the cap is answered 503, as the HTTP port answers; an upgraded connection
//! also keeps its place under the HTTP port's own cap.
//!
//! The accept loops are workers (`server/mqtt`, `server/mqtt-tls`); on shutdown each
//! stops accepting, the broker is closed (once, whichever loop gets there first: it ends
//! every connection, WebSocket ones included, and saves sessions), and each returns once
//! its connections have ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shoal_mqtt::{Broker, MqttOptions, Peer};
use shoal_workers::{Backoff, Ctx};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, mpsc, watch};

use crate::AppState;
use crate::error::ApiError;
use crate::serve::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, Port, accept};
use crate::tls::{ServerTls, TlsClient};

/// The WebSocket subprotocol of MQTT, which clients offer and the server selects.
const SUBPROTOCOL: &str = "mqtt";
/// Bytes buffered each way between a WebSocket and the broker.
const BRIDGE_BUFFER: usize = 64 * 1024;
/// WebSocket frames and messages may carry a whole packet and its fixed header.
const FIXED_HEADER_BYTES: usize = 5;
/// WebSocket close code for data that is not binary (RFC 6455 "unsupported data").
const CLOSE_UNSUPPORTED: u16 = 1003;

/// The node's broker on the network, shared by the MQTT ports and the HTTP ports'
/// WebSocket upgrades.
pub struct MqttServer {
    broker: Arc<Broker>,
    port: Arc<Port>,
    max_message_bytes: usize,
    write_timeout: Duration,
    closed: OnceCell<()>,
}

impl std::fmt::Debug for MqttServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttServer")
            .field("max_connections", &self.port.max_connections())
            .finish_non_exhaustive()
    }
}

impl MqttServer {
    /// What the broker holds now.
    pub fn stats(&self) -> shoal_mqtt::MqttStats {
        self.broker.stats()
    }

    /// `broker` on the network, its connections capped by `port`, with the broker's
    /// packet size and write timeout (`options`) bounding WebSocket messages and sends.
    pub fn new(broker: Arc<Broker>, port: Arc<Port>, options: &MqttOptions) -> Arc<MqttServer> {
        Arc::new(MqttServer {
            broker,
            port,
            max_message_bytes: options.max_packet_bytes.saturating_add(FIXED_HEADER_BYTES),
            write_timeout: options.write_timeout,
            closed: OnceCell::new(),
        })
    }

    /// Closes the broker, the first time it is called; every call returns once it is
    /// closed.
    pub async fn close(&self) {
        self.closed
            .get_or_init(|| async { self.broker.close().await })
            .await;
    }

    /// Serves one upgraded WebSocket until it or the broker's side closes.
    async fn websocket(
        self: Arc<Self>,
        socket: WebSocket,
        peer: Peer,
        permit: OwnedSemaphorePermit,
    ) {
        let _permit = permit;
        let (ours, broker_side) = tokio::io::duplex(BRIDGE_BUFFER);
        // Each side ends the other: the client's close drops `ours` (the broker reads its
        // end), the broker's end drops `broker_side` (the bridge reads its end).
        tokio::join!(
            self.broker.clone().connection(broker_side, peer),
            bridge(socket, ours, self.write_timeout),
        );
    }
}

/// Serves MQTT on `listener` until the worker `ctx` is asked to stop, then stops
/// accepting, closes the broker and returns once every connection it accepted has ended.
/// `ctx` counts the connections accepted.
pub async fn serve_mqtt(listener: TcpListener, server: Arc<MqttServer>, ctx: &Ctx) {
    serve_on(listener, None, server, ctx).await;
}

/// Like [`serve_mqtt`], over TLS: each connection completes its handshake (within the
/// handshake timeout) before the broker reads it, and a verified client certificate's
/// user is offered to the broker (mTLS).
pub async fn serve_mqtt_tls(
    listener: TcpListener,
    tls: Arc<ServerTls>,
    server: Arc<MqttServer>,
    ctx: &Ctx,
) {
    serve_on(listener, Some(tls), server, ctx).await;
}

async fn serve_on(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    server: Arc<MqttServer>,
    ctx: &Ctx,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; `recv` answers `None` once all are gone.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut backoff = Backoff::new(ACCEPT_BACKOFF_MIN, ACCEPT_BACKOFF_MAX);
    while let Some((stream, address)) =
        accept(&listener, &mut backoff, ctx, "an MQTT connection").await
    {
        // Past the cap: dropped, which closes it.
        let Some(permit) = server.port.try_enter() else {
            tracing::debug!(%address, "MQTT port full; connection closed");
            continue;
        };
        // Small packets (acknowledgements, pings) must not wait for the client's delayed
        // ACK (Nagle).
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            address,
            permit,
            tls.clone(),
            server.broker.clone(),
            stop_rx.clone(),
            alive_tx.clone(),
        ));
    }
    drop(listener);
    // Handshakes in progress are abandoned; the broker ends the connections it serves.
    let _ = stop_tx.send(true);
    server.close().await;
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// Hands one connection to the broker, after its TLS handshake on the secure port;
/// `_alive` tells [`serve_on`] it is still running.
async fn connection(
    stream: TcpStream,
    address: SocketAddr,
    permit: OwnedSemaphorePermit,
    tls: Option<Arc<ServerTls>>,
    broker: Arc<Broker>,
    mut stop: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let _permit = permit;
    let Some(tls) = tls else {
        let peer = Peer {
            address,
            secure: false,
            certificate_user: None,
        };
        return broker.connection(stream, peer).await;
    };
    let accepted = tokio::select! {
        accepted = tls.accept_mqtt(stream) => accepted,
        _ = stop.wait_for(|stop| *stop) => return,
    };
    match accepted {
        Ok((stream, client)) => {
            broker
                .connection(stream, secure_peer(address, &client))
                .await
        }
        Err(e) => tracing::debug!(error = %e, %address, "MQTT TLS handshake failed"),
    }
}

fn secure_peer(address: SocketAddr, client: &TlsClient) -> Peer {
    Peer {
        address,
        secure: true,
        certificate_user: client.user.as_deref().map(str::to_owned),
    }
}

/// Middleware on the HTTP router: a WebSocket upgrade that offers the `mqtt` subprotocol
/// goes to the broker, whatever its path and before any other handling. It asks for no
/// HTTP credentials: the client logs in with CONNECT, which alone decides.
pub(crate) async fn intercept(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match &state.mqtt {
        Some(server) if offers_mqtt(request.method(), request.headers()) => {
            upgrade(&state, server.clone(), request).await
        }
        _ => next.run(request).await,
    }
}

/// Whether a request is a WebSocket upgrade offering the `mqtt` subprotocol.
fn offers_mqtt(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|list| list.split(','))
            .any(|protocol| protocol.trim() == SUBPROTOCOL)
}

async fn upgrade(state: &AppState, server: Arc<MqttServer>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, state).await {
        Ok(upgrade) => upgrade,
        Err(e) => {
            return ApiError::bad_request(format!("WebSocket upgrade failed: {e}")).into_response();
        }
    };
    let Some(permit) = server.port.try_enter() else {
        let max = server.port.max_connections();
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("too many MQTT connections: this node serves at most {max} at once"),
        )
        .into_response();
    };
    let tls = parts.extensions.get::<TlsClient>();
    let address = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
    let peer = match tls {
        Some(client) => secure_peer(address, client),
        None => Peer {
            address,
            secure: false,
            certificate_user: None,
        },
    };
    let workers = state.store.workers().clone();
    let limit = server.max_message_bytes;
    upgrade
        .protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| {
            // A worker, so that shutdown waits for it (the broker's close ends it).
            let worker = workers.spawn("server/mqtt-websocket", move |_| {
                server.websocket(socket, peer, permit)
            });
            async move { worker.finished().await }
        })
}

/// Carries bytes between a WebSocket (binary messages) and the broker's stream until
/// either ends. A WebSocket message may hold any part of a packet, or several
/// [MQTT-6.0.0-2]: the broker reads a byte stream.
async fn bridge(mut socket: WebSocket, broker: DuplexStream, write_timeout: Duration) {
    let (mut from_broker, mut to_broker) = tokio::io::split(broker);
    let mut chunk = vec![0u8; BRIDGE_BUFFER];
    // A message not yet all taken by the broker; the socket is not read meanwhile.
    let mut pending = Bytes::new();
    loop {
        tokio::select! {
            read = from_broker.read(&mut chunk) => {
                let n = match read {
                    Ok(0) | Err(_) => {
                        let close = Message::Close(None);
                        let _ = tokio::time::timeout(write_timeout, socket.send(close)).await;
                        return;
                    }
                    Ok(n) => n,
                };
                let message = Message::Binary(Bytes::copy_from_slice(&chunk[..n]));
                match tokio::time::timeout(write_timeout, socket.send(message)).await {
                    Ok(Ok(())) => {}
                    _ => return,
                }
            }
            written = write_some(&mut to_broker, &mut pending), if !pending.is_empty() => {
                if written.is_err() {
                    return;
                }
            }
            incoming = socket.recv(), if pending.is_empty() => match incoming {
                Some(Ok(Message::Binary(data))) => pending = data,
                // axum answers pings itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                // MQTT travels in binary messages only [MQTT-6.0.0-1].
                Some(Ok(Message::Text(_))) => {
                    let close = Message::Close(Some(CloseFrame {
                        code: CLOSE_UNSUPPORTED,
                        reason: "MQTT packets go in binary messages".into(),
                    }));
                    let _ = tokio::time::timeout(write_timeout, socket.send(close)).await;
                    return;
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
        }
    }
}

/// Writes what the broker takes of `pending` now, and drops that much from it.
async fn write_some<W: AsyncWrite + Unpin>(to: &mut W, pending: &mut Bytes) -> std::io::Result<()> {
    let n = to.write(pending).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    *pending = pending.slice(n..);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_websocket_upgrades_offering_mqtt_go_to_the_broker() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            map
        };
        let upgrade = ("upgrade", "websocket");
        let get = &Method::GET;
        assert!(offers_mqtt(
            get,
            &headers(&[upgrade, ("sec-websocket-protocol", "mqtt")])
        ));
        assert!(offers_mqtt(
            get,
            &headers(&[upgrade, ("sec-websocket-protocol", "wamp, mqtt")])
        ));
        assert!(offers_mqtt(
            get,
            &headers(&[
                upgrade,
                ("sec-websocket-protocol", "wamp"),
                ("sec-websocket-protocol", "mqtt"),
            ])
        ));
        assert!(!offers_mqtt(get, &headers(&[upgrade])));
        assert!(!offers_mqtt(
            get,
            &headers(&[upgrade, ("sec-websocket-protocol", "mqttv3.1")])
        ));
        assert!(!offers_mqtt(
            get,
            &headers(&[("sec-websocket-protocol", "mqtt")])
        ));
        assert!(!offers_mqtt(
            &Method::POST,
            &headers(&[upgrade, ("sec-websocket-protocol", "mqtt")])
        ));
    }
}
