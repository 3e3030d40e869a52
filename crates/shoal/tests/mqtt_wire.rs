//! End-to-end tests of how MQTT reaches the broker: the MQTT port, its TLS twin, MQTT over
//! WebSocket on the HTTP ports, the MQTT connection cap, and the `mqtt:` settings that turn
//! them on and off, against real `shoal` processes.
//!
//! These tests hold whatever the broker does with a connection once it has it: they
//! check that connections are accepted, handed over, capped, closed and shut down, not
//! what the broker says (that is for the broker's own tests).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use serde_json::{Value, json};
use shoal_testkit::{Node, admin, basic, create_table, start_with, tls_connect, wait_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Request;
use tokio_tungstenite::tungstenite::{self, Message};

/// The broker's CONNECT timeout in these tests: a client that sends nothing is dropped
/// after it (by the real broker; a broker that drops it sooner passes too).
const CONNECT_TIMEOUT_MS: &str = "300";
/// Longest wait for the node to close a connection that should be closed.
const CLOSE_DEADLINE: Duration = Duration::from_secs(5);
/// Longest wait for anything else.
const DEADLINE: Duration = Duration::from_secs(10);

fn generated_ca(node: &Node) -> anyhow::Result<String> {
    let path = node.root().join("keys").join("tls").join("ca.pem");
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `system_information`'s count of MQTT connections: `{open, max, refused}`.
async fn mqtt_connections(node: &Node) -> anyhow::Result<Value> {
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["connections"]}))
        .await?;
    Ok(info["connections"]["mqtt"].clone())
}

/// The names of the node's running workers.
async fn workers(node: &Node) -> anyhow::Result<Vec<String>> {
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["workers"]}))
        .await?;
    let active = info["workers"]["active"]
        .as_array()
        .context("workers.active")?;
    Ok(active
        .iter()
        .filter_map(|w| w["name"].as_str().map(str::to_owned))
        .collect())
}

/// Waits until the node closes `stream` (end of stream or reset), after reading and
/// dropping whatever it sent first.
async fn closed_by_node<S: AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> anyhow::Result<()> {
    let mut sink = [0u8; 1024];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .with_context(|| format!("the node kept the connection open for {within:?}"))
}

/// A WebSocket upgrade request for `path` on `addr`, offering `protocol` if given.
fn ws_request(
    scheme: &str,
    addr: SocketAddr,
    path: &str,
    protocol: Option<&str>,
    authorization: Option<&str>,
) -> anyhow::Result<Request<()>> {
    let mut request = format!("{scheme}://{addr}{path}").into_client_request()?;
    if let Some(protocol) = protocol {
        request
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(protocol)?);
    }
    if let Some(authorization) = authorization {
        request
            .headers_mut()
            .insert(AUTHORIZATION, HeaderValue::from_str(authorization)?);
    }
    Ok(request)
}

/// The status (and body) a refused WebSocket upgrade was answered with.
fn refusal(e: tungstenite::Error) -> anyhow::Result<(u16, String)> {
    match e {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Ok((response.status().as_u16(), body))
        }
        e => bail!("the upgrade failed without an HTTP answer: {e}"),
    }
}

/// Asserts that an upgraded connection is closed by the node: the broker owns it, and
/// without a CONNECT it ends it.
async fn ws_closed_by_node<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> anyhow::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(CLOSE_DEADLINE, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .context("the node kept the MQTT WebSocket open past the CONNECT timeout")
}

#[tokio::test]
async fn the_mqtt_port_accepts_and_drops_a_client_that_sends_no_connect() -> anyhow::Result<()> {
    let node = start_with(
        "mqtt-port",
        &[
            "--mqtt-connect-timeout-ms",
            CONNECT_TIMEOUT_MS,
            "--mqtt-max-connections",
            "7",
        ],
    )
    .await?;
    let addr = node.mqtt_addr()?;
    ensure!(addr.port() != 0, "a bound port: {}", node.ready_line());
    ensure!(
        addr.ip() == node.http_addr().ip(),
        "bound on the node's host"
    );
    ensure!(node.mqtts_addr().is_none(), "no secure port unless set");
    let names = workers(&node).await?;
    ensure!(names.iter().any(|n| n == "server/mqtt"), "{names:?}");
    ensure!(!names.iter().any(|n| n == "server/mqtt-tls"), "{names:?}");

    let started = Instant::now();
    let mut client = TcpStream::connect(addr).await.context("connecting")?;
    closed_by_node(&mut client, CLOSE_DEADLINE).await?;
    println!("closed after {:?}", started.elapsed());

    let stats = mqtt_connections(&node).await?;
    assert_eq!(stats["max"], 7, "{stats}");
    assert_eq!(stats["refused"], 0, "{stats}");
    wait_until(
        DEADLINE,
        "the connection's place is free again",
        async || Ok(mqtt_connections(&node).await?["open"] == 0),
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn the_secure_mqtt_port_alone_sets_up_tls_and_hands_over_after_the_handshake()
-> anyhow::Result<()> {
    let node = start_with(
        "mqtts-port",
        &[
            "--mqtt-secure-port",
            "0",
            "--mqtt-connect-timeout-ms",
            CONNECT_TIMEOUT_MS,
        ],
    )
    .await?;
    let addr = node.mqtts_addr().context("mqtts= in the ready line")?;
    ensure!(addr.port() != 0 && addr != node.mqtt_addr()?);
    ensure!(
        node.https_addr().is_none() && node.ops_tls_addr().is_none(),
        "only the MQTT port is secure: {}",
        node.ready_line()
    );
    let names = workers(&node).await?;
    for name in ["server/mqtt", "server/mqtt-tls"] {
        ensure!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let ca = generated_ca(&node)?;
    // MQTT clients may offer an application protocol of their own; none is refused.
    for alpn in [&[][..], &["mqtt"][..], &["x-amzn-mqtt-ca"][..]] {
        let mut tls = tls_connect(addr, &ca, None, alpn)
            .await
            .with_context(|| format!("handshake offering {alpn:?}"))?;
        closed_by_node(&mut tls, CLOSE_DEADLINE).await?;
    }
    // The plain port serves beside it.
    let mut plain = TcpStream::connect(node.mqtt_addr()?).await?;
    closed_by_node(&mut plain, CLOSE_DEADLINE).await?;
    Ok(())
}

#[tokio::test]
async fn a_websocket_offering_mqtt_goes_to_the_broker_and_the_rest_stays_rest() -> anyhow::Result<()>
{
    let node = start_with(
        "mqtt-ws",
        &[
            "--http-secure-port",
            "0",
            "--mqtt-connect-timeout-ms",
            CONNECT_TIMEOUT_MS,
        ],
    )
    .await?;
    create_table(&node, "dog").await?;
    let http = node.http_addr();

    // Without credentials, on any path (a record's, or none): CONNECT logs in, so the
    // upgrade asks for nothing; and credentials the request carries change nothing.
    let wrong = "Basic bm9ib2R5Om5vdGhpbmc="; // nobody:nothing
    for (path, protocols, authorization) in [
        ("/dev/dog/1", "mqtt", None),
        ("/mqtt", "mqtt", None),
        ("/", "wamp, mqtt", Some(wrong)),
    ] {
        let request = ws_request("ws", http, path, Some(protocols), authorization)?;
        let (mut ws, response) = tokio_tungstenite::connect_async(request)
            .await
            .with_context(|| format!("MQTT upgrade on {path}"))?;
        assert_eq!(response.status().as_u16(), 101, "{path}");
        assert_eq!(
            response
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .map(|v| v.as_bytes()),
            Some(&b"mqtt"[..]),
            "{path}: the mqtt subprotocol is selected"
        );
        ws_closed_by_node(&mut ws).await?;
    }

    // Over TLS on the secure HTTP port too.
    let https = node.https_addr().context("https= in the ready line")?;
    let tls = tls_connect(https, &generated_ca(&node)?, None, &[]).await?;
    let request = ws_request("wss", https, "/", Some("mqtt"), None)?;
    let (mut ws, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .context("MQTT upgrade on the secure HTTP port")?;
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(
        response
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .map(|v| v.as_bytes()),
        Some(&b"mqtt"[..])
    );
    ws_closed_by_node(&mut ws).await?;

    // Without the subprotocol an upgrade is a REST subscription, as before: it needs
    // credentials, and with them delivers the record's changes.
    let anonymous = ws_request("ws", http, "/dev/dog/1", None, None)?;
    let e = tokio_tungstenite::connect_async(anonymous)
        .await
        .err()
        .context("a subscription without credentials is refused")?;
    assert_eq!(refusal(e)?.0, 401);
    let subscribe = ws_request("ws", http, "/dev/dog/1", None, Some(&basic(&node)))?;
    let (mut ws, response) = tokio_tungstenite::connect_async(subscribe).await?;
    assert_eq!(response.status().as_u16(), 101);
    assert!(response.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none());
    let put = admin(&node, Method::PUT, "/dev/dog/1")
        .json(&json!({"name": "Rex"}))
        .send()
        .await?;
    assert_eq!(put.status().as_u16(), 204);
    let event = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(_)) => {}
                other => bail!("the subscription ended: {other:?}"),
            }
        }
    })
    .await
    .context("no event within the deadline")??;
    let event: Value = serde_json::from_str(&event)?;
    assert_eq!(event["value"]["name"], "Rex", "{event}");
    Ok(())
}

#[tokio::test]
async fn mqtt_websocket_false_leaves_every_upgrade_to_rest() -> anyhow::Result<()> {
    let node = start_with(
        "mqtt-ws-off",
        &[
            "--mqtt-websocket",
            "false",
            "--mqtt-connect-timeout-ms",
            CONNECT_TIMEOUT_MS,
        ],
    )
    .await?;
    create_table(&node, "dog").await?;
    // What was the broker's is now a REST subscription, which needs credentials.
    let request = ws_request("ws", node.http_addr(), "/dev/dog/1", Some("mqtt"), None)?;
    let e = tokio_tungstenite::connect_async(request)
        .await
        .err()
        .context("no MQTT upgrade when mqtt.websocket is false")?;
    let (status, body) = refusal(e)?;
    assert_eq!(status, 401, "{body}");
    // The MQTT port itself still serves.
    let mut client = TcpStream::connect(node.mqtt_addr()?).await?;
    closed_by_node(&mut client, CLOSE_DEADLINE).await?;
    Ok(())
}

#[tokio::test]
async fn the_cap_counts_every_mqtt_connection_and_shutdown_abandons_handshakes()
-> anyhow::Result<()> {
    // A connection to the secure port holds its place from accept until its handshake
    // ends, which a silent client makes last the whole (long) handshake timeout: a
    // place held however the broker treats connections.
    let mut node = start_with(
        "mqtt-cap",
        &[
            "--mqtt-secure-port",
            "0",
            "--mqtt-max-connections",
            "1",
            "--tls-handshake-timeout-ms",
            "60000",
            "--mqtt-connect-timeout-ms",
            CONNECT_TIMEOUT_MS,
        ],
    )
    .await?;
    let mqtts = node.mqtts_addr().context("mqtts=")?;
    let silent = TcpStream::connect(mqtts).await?;
    wait_until(
        DEADLINE,
        "the silent client holds the one place",
        async || Ok(mqtt_connections(&node).await?["open"] == 1),
    )
    .await?;

    // Past the cap: the plain port closes a connection at once...
    let started = Instant::now();
    let mut refused = TcpStream::connect(node.mqtt_addr()?).await?;
    // Bytes sent to a refused connection change nothing.
    let _ = refused.write_all(&[0x10, 0x00]).await;
    closed_by_node(&mut refused, CLOSE_DEADLINE).await?;
    let stats = mqtt_connections(&node).await?;
    assert_eq!(stats["refused"], 1, "{stats}");
    println!("refused in {:?}", started.elapsed());

    // ...and an MQTT WebSocket upgrade is answered 503, Harper's way.
    let request = ws_request("ws", node.http_addr(), "/", Some("mqtt"), None)?;
    let e = tokio_tungstenite::connect_async(request)
        .await
        .err()
        .context("an MQTT upgrade past the cap is refused")?;
    let (status, body) = refusal(e)?;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body)?;
    let message = body["error"].as_str().context("an error message")?;
    assert!(message.contains("too many MQTT connections"), "{message}");
    assert_eq!(mqtt_connections(&node).await?["refused"], 2);

    // Shutdown abandons the handshake in progress instead of waiting it out.
    let started = Instant::now();
    let status = node.terminate().await?;
    ensure!(status.success(), "exit status {status}");
    let took = started.elapsed();
    ensure!(
        took < Duration::from_secs(8),
        "shutdown took {took:?} with a handshake pending"
    );
    drop(silent);
    Ok(())
}
