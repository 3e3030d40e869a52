//! Hardening of the network edge (issue #9, items 1, 8, 11, 12, 13), against real
//! `shoal` processes over raw sockets where the HTTP client would hide what is tested.
//!
//! What broke before: both ports ran `axum::serve` with no header-read timeout, no idle
//! timeout and no connection cap, so slow or idle clients held connections forever; a
//! chunked body announcing 2^64 - 1 bytes and then stalling was waited on forever, as was
//! a body whose declared length was over the limit; a subscriber's buffer was bounded by
//! count only (256 events of up to 100 MiB) and its task waited for the next commit to
//! notice the client had gone; an answer that needed none of the body (a refused login,
//! an unknown path) went out while the client was still sending it, which then saw a
//! reset instead; `set_component_file` with `config.yaml/x` answered 500,
//! left a folder behind and kept the node from starting again; `create_table` racing
//! `drop_database` answered 503 "the store is shutting down".

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail, ensure};
use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, assert_error_shape, basic, create_table,
    start_with, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for anything a test expects to happen.
const DEADLINE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The `connections` section of system_information.
async fn connections(node: &Node) -> anyhow::Result<Value> {
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["connections"]}))
        .await?;
    Ok(info["connections"].clone())
}

/// A request's bytes: the head with `Host`, the admin's credentials and `headers`,
/// then `body` (with a `Content-Length` unless `headers` set the framing).
fn request(auth: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: shoal\r\nauthorization: {auth}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers.iter().any(|(n, _)| {
        n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding")
    });
    if !framed {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// An answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts Harper's error shape with `status`; the message.
    #[track_caller]
    fn error(&self, status: u16) -> String {
        let body = self.json();
        assert_eq!(self.status, status, "status of {body}");
        assert_error_shape(&body);
        body["error"].as_str().unwrap_or_default().to_owned()
    }
}

/// A raw HTTP/1.1 connection.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Raw> {
        Ok(Raw {
            stream: TcpStream::connect(addr).await?,
            buf: Vec::new(),
        })
    }

    /// Connects with a small socket receive buffer, so a client that stops reading backs
    /// the server up quickly.
    async fn connect_small(addr: SocketAddr) -> anyhow::Result<Raw> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        Ok(Raw {
            stream: socket.connect(addr).await?,
            buf: Vec::new(),
        })
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// More bytes into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(DEADLINE, self.stream.read(&mut chunk))
            .await
            .map_err(|_| anyhow!("nothing read within {DEADLINE:?}"))??;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// Status line and headers; the body stays in the buffer.
    async fn head(&mut self) -> anyhow::Result<Answer> {
        loop {
            if let Some((head, end)) = parse_head(&self.buf)? {
                self.buf.drain(..end);
                return Ok(head);
            }
            ensure!(self.fill().await?, "connection closed before an answer");
        }
    }

    /// One whole answer with a `Content-Length` body (or none).
    async fn answer(&mut self) -> anyhow::Result<Answer> {
        loop {
            if let Some((answer, used)) = parse_answer(&self.buf)? {
                self.buf.drain(..used);
                return Ok(answer);
            }
            ensure!(
                self.fill().await?,
                "connection closed before a whole answer"
            );
        }
    }

    /// Waits for the server to close the connection (end of stream or reset); how long
    /// that took. Bytes that arrive meanwhile are kept.
    async fn closed(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            match self.fill().await {
                Ok(true) => {}
                Ok(false) => return Ok(started.elapsed()),
                Err(e) if e.downcast_ref::<std::io::Error>().is_some() => {
                    return Ok(started.elapsed());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes the chunked body read so far (and until the end of the stream).
    async fn chunked_to_end(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                if !self.fill().await? {
                    return Ok(body);
                }
                continue;
            };
            let size_line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("chunk size {size_line:?}"))?;
            while self.buf.len() < line_end + 2 + size + 2 {
                if !self.fill().await? {
                    return Ok(body);
                }
            }
            body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
            self.buf.drain(..line_end + 2 + size + 2);
            if size == 0 {
                return Ok(body);
            }
        }
    }
}

/// The status and headers (no body yet), and the length of the head, once `buf` holds a
/// whole head.
fn parse_head(buf: &[u8]) -> anyhow::Result<Option<(Answer, usize)>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("status line of {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let head = Answer {
        status,
        headers,
        body: Vec::new(),
    };
    Ok(Some((head, end + 4)))
}

/// An answer with a `Content-Length` body (or none) and the bytes it took, once `buf`
/// holds all of it.
fn parse_answer(buf: &[u8]) -> anyhow::Result<Option<(Answer, usize)>> {
    let Some((mut answer, start)) = parse_head(buf)? else {
        return Ok(None);
    };
    let length: usize = answer
        .header("content-length")
        .map_or(Ok(0), str::parse)
        .context("content-length")?;
    if buf.len() < start + length {
        return Ok(None);
    }
    answer.body = buf[start..start + length].to_vec();
    Ok(Some((answer, start + length)))
}

/// Opens an SSE subscription on a raw connection; returns it after the 200 head.
async fn raw_sse(node: &Node, path: &str, small: bool) -> anyhow::Result<Raw> {
    let auth = basic(node);
    let mut raw = if small {
        Raw::connect_small(node.http_addr()).await?
    } else {
        Raw::connect(node.http_addr()).await?
    };
    raw.send(&request(
        &auth,
        "GET",
        path,
        &[("accept", "text/event-stream")],
        b"",
    ))
    .await?;
    let status = raw.head().await?.status;
    ensure!(status == 200, "SSE on {path}: status {status}");
    Ok(raw)
}

/// Opens a WebSocket subscription on a raw connection; returns it after the 101 head.
async fn raw_ws(node: &Node, path: &str) -> anyhow::Result<Raw> {
    let auth = basic(node);
    let mut raw = Raw::connect(node.http_addr()).await?;
    let headers = [
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    raw.send(&request(&auth, "GET", path, &headers, b""))
        .await?;
    let status = raw.head().await?.status;
    ensure!(status == 101, "WebSocket on {path}: status {status}");
    Ok(raw)
}

/// Every SSE event in `body`: (event, data).
fn sse_events(body: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|frame| {
            let mut event = None;
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = Some(v.trim().to_owned());
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            event.map(|e| (e, data))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Item 1: connections
// ---------------------------------------------------------------------------------------

/// Many clients sending their headers one byte at a time are cut off at the header-read
/// timeout, on both ports, while a normal client keeps getting answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_cut_at_the_header_timeout() -> anyhow::Result<()> {
    const SLOW: usize = 16;
    let timeout = Duration::from_millis(500);
    let node = start_with("edge-slow-headers", &["--header-read-timeout-ms", "500"]).await?;
    let mut slow = tokio::task::JoinSet::new();
    for i in 0..SLOW {
        let addr = if i % 2 == 0 {
            node.http_addr()
        } else {
            node.ops_addr()
        };
        slow.spawn(async move {
            let started = Instant::now();
            let mut stream = TcpStream::connect(addr).await?;
            let head = format!(
                "GET /health HTTP/1.1\r\nhost: shoal\r\nx-slow: {}",
                "a".repeat(400)
            );
            let mut sink = [0u8; 1024];
            for byte in head.bytes() {
                tokio::select! {
                    read = stream.read(&mut sink) => match read {
                        Ok(0) | Err(_) => return anyhow::Ok(started.elapsed()),
                        Ok(_) => bail!("the server answered a request it never got whole"),
                    },
                    () = tokio::time::sleep(Duration::from_millis(50)) => {
                        if stream.write_all(&[byte]).await.is_err() {
                            return Ok(started.elapsed());
                        }
                    }
                }
            }
            bail!("the server waited {:?} for a header", started.elapsed())
        });
    }
    // Meanwhile a normal client is answered on both ports.
    for _ in 0..5 {
        let (status, _) = node.http_get("/health").await?;
        assert_eq!(status, 200);
        node.op_ok(json!({"operation": "describe_all"})).await?;
    }
    while let Some(cut) = slow.join_next().await {
        let after = cut??;
        assert!(after >= timeout, "cut after {after:?}, before the timeout");
        assert!(after < DEADLINE, "cut after {after:?}");
    }
    let (status, _) = node.http_get("/health").await?;
    assert_eq!(status, 200, "the node still answers");
    Ok(())
}

/// Past the cap a connection is answered 503 at once and closed, while the connections
/// already open keep working; a place freed is taken again. A WebSocket keeps its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_refused_at_once() -> anyhow::Result<()> {
    let node = start_with(
        "edge-cap",
        &["--ops-max-connections", "3", "--http-max-connections", "2"],
    )
    .await?;
    // Nothing but these raw connections talks to the node, so the counts are exact.
    let auth = basic(&node);
    let describe = request(
        &auth,
        "POST",
        "/",
        &[("content-type", "application/json")],
        br#"{"operation":"describe_all"}"#,
    );
    let create = request(
        &auth,
        "POST",
        "/",
        &[("content-type", "application/json")],
        br#"{"operation":"create_table","database":"dev","table":"dog","primary_key":"id"}"#,
    );
    let mut held = Vec::new();
    for i in 0..3 {
        let mut raw = Raw::connect(node.ops_addr()).await?;
        raw.send(if i == 0 { &create } else { &describe }).await?;
        assert_eq!(raw.answer().await?.status, 200);
        held.push(raw);
    }
    let started = Instant::now();
    let mut extra = Raw::connect(node.ops_addr()).await?;
    extra.send(&describe).await?;
    let refused = extra.answer().await?;
    let message = refused.error(503);
    assert!(message.contains("too many connections"), "{message}");
    assert_eq!(refused.header("connection"), Some("close"));
    extra.closed().await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused in {:?}",
        started.elapsed()
    );
    // The held connections still work, and report the refusal.
    held[0].send(&describe).await?;
    assert_eq!(held[0].answer().await?.status, 200);
    let info = request(
        &auth,
        "POST",
        "/",
        &[("content-type", "application/json")],
        br#"{"operation":"system_information","attributes":["connections"]}"#,
    );
    held[1].send(&info).await?;
    let stats = held[1].answer().await?.json()["connections"]["operations_api"].clone();
    assert_eq!(stats["max"], json!(3), "{stats}");
    assert_eq!(stats["open"], json!(3), "{stats}");
    assert!(stats["refused"].as_u64() >= Some(1), "{stats}");
    // A freed place is taken again.
    drop(held.pop());
    wait_until(DEADLINE, "a new connection is served", async || {
        let mut raw = Raw::connect(node.ops_addr()).await?;
        raw.send(&describe).await?;
        Ok(raw.answer().await?.status == 200)
    })
    .await?;

    // On the HTTP port an upgraded WebSocket keeps its place under the cap.
    let ws = raw_ws(&node, "/dev/dog/").await?;
    let mut health = Raw::connect(node.http_addr()).await?;
    health
        .send(&request(&auth, "GET", "/health", &[], b""))
        .await?;
    assert_eq!(health.answer().await?.status, 200);
    let mut third = Raw::connect(node.http_addr()).await?;
    third
        .send(&request(&auth, "GET", "/health", &[], b""))
        .await?;
    third.answer().await?.error(503);
    drop(ws);
    wait_until(DEADLINE, "the WebSocket's place is free", async || {
        let mut raw = Raw::connect(node.http_addr()).await?;
        raw.send(&request(&auth, "GET", "/health", &[], b""))
            .await?;
        Ok(raw.answer().await?.status == 200)
    })
    .await?;
    Ok(())
}

/// A keep-alive connection with no request in progress is closed after the idle
/// timeout (well before the header timeout), while a streaming answer in progress on
/// another connection is not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_close() -> anyhow::Result<()> {
    let idle = Duration::from_millis(300);
    let node = start_with("edge-idle", &["--keep-alive-timeout-ms", "300"]).await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    let mut sse = raw_sse(&node, "/dev/dog/", false).await?;
    for addr in [node.http_addr(), node.ops_addr()] {
        let mut raw = Raw::connect(addr).await?;
        let ask = if addr == node.http_addr() {
            request(&auth, "GET", "/health", &[], b"")
        } else {
            request(
                &auth,
                "POST",
                "/",
                &[("content-type", "application/json")],
                br#"{"operation":"describe_all"}"#,
            )
        };
        // Two requests on one connection: it is kept alive between them. The idle time
        // is measured from before the second, so it covers all of the server's.
        raw.send(&ask).await?;
        assert_eq!(raw.answer().await?.status, 200);
        let asked = Instant::now();
        raw.send(&ask).await?;
        assert_eq!(raw.answer().await?.status, 200);
        raw.closed().await?;
        let after = asked.elapsed();
        assert!(after >= idle, "closed after {after:?}");
    }
    // The subscription, older than both, is still served.
    node.op_ok(json!({
        "operation": "insert", "database": "dev", "table": "dog", "records": [{"id": 1}]
    }))
    .await?;
    let events = loop {
        ensure!(sse.fill().await?, "the SSE stream ended");
        let events = sse_events(&sse.buf);
        if !events.is_empty() {
            break events;
        }
    };
    assert_eq!(events[0].0, "put", "{events:?}");
    Ok(())
}

/// On SIGTERM the ports stop accepting, a request in flight is still answered, and an
/// open connection with nothing in progress does not hold up the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_requests_in_flight() -> anyhow::Result<()> {
    let mut node = start_with("edge-drain", &[]).await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    let addr = node.http_addr();
    let head = [
        ("content-type", "application/json"),
        ("transfer-encoding", "chunked"),
    ];
    let mut in_flight = Raw::connect(addr).await?;
    in_flight
        .send(&request(
            &auth,
            "PUT",
            "/dev/dog/1",
            &head,
            b"5\r\n{\"a\":\r\n",
        ))
        .await?;
    // In flight once the node reads its body, which then holds a share of the body budget
    // beside the 1 KiB of the request that asks: a head not yet read when the node is told
    // to stop is an idle connection, rightly closed.
    wait_until(DEADLINE, "the node reads the request's body", async || {
        let in_flight = connections(&node).await?["body_bytes_in_flight"].as_u64();
        Ok(in_flight.is_some_and(|bytes| bytes > 1024))
    })
    .await?;
    let _silent = Raw::connect(addr).await?;
    let started = Instant::now();
    let finish = async {
        wait_until(DEADLINE, "the HTTP port stops accepting", async || {
            Ok(TcpStream::connect(addr).await.is_err())
        })
        .await?;
        in_flight.send(b"3\r\n 1}\r\n0\r\n\r\n").await?;
        in_flight.answer().await
    };
    let (exit, answer) = tokio::join!(node.terminate(), finish);
    assert!(exit?.success(), "clean exit");
    assert_eq!(answer?.status, 204, "the request in flight is answered");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "exit took {:?}",
        started.elapsed()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Item 13: bodies
// ---------------------------------------------------------------------------------------

/// A chunked body announcing 2^64 - 1 bytes: 413 as soon as the data passes the limit,
/// 408 (and the connection closed) when it stalls instead; on both ports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_chunk_is_refused_at_the_limit_or_timed_out() -> anyhow::Result<()> {
    let node = start_with(
        "edge-chunk",
        &["--max-body-bytes", "65536", "--body-read-timeout-ms", "500"],
    )
    .await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    let chunked = [
        ("content-type", "application/json"),
        ("transfer-encoding", "chunked"),
    ];
    let targets = [
        (node.http_addr(), "PUT", "/dev/dog/1"),
        (node.ops_addr(), "POST", "/"),
    ];
    for (addr, method, path) in targets {
        // Data keeps coming: 413 once it passes 64 KiB.
        let mut raw = Raw::connect(addr).await?;
        raw.send(&request(
            &auth,
            method,
            path,
            &chunked,
            b"ffffffffffffffff\r\n",
        ))
        .await?;
        let (mut reader, mut writer) = raw.stream.split();
        let feed = async {
            let block = vec![b' '; 8192];
            let mut sent = 0usize;
            // Until the server closes; 16 MiB at most.
            while sent < 16 << 20 && writer.write_all(&block).await.is_ok() {
                sent += block.len();
            }
            sent
        };
        let read = async {
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                if let Some((answer, _)) = parse_answer(&bytes)? {
                    return anyhow::Ok(answer);
                }
                let n = reader.read(&mut chunk).await?;
                ensure!(n > 0, "closed without an answer");
                bytes.extend_from_slice(&chunk[..n]);
            }
        };
        let (answer, sent) = tokio::time::timeout(DEADLINE, async { tokio::join!(read, feed) })
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer to an endless chunk"))?;
        let message = answer?.error(413);
        assert!(message.contains("65536"), "{message}");
        assert!(sent < 16 << 20, "the server kept reading ({sent} bytes)");

        // The body stalls: 408, and the connection is closed.
        let mut raw = Raw::connect(addr).await?;
        raw.send(&request(
            &auth,
            method,
            path,
            &chunked,
            b"ffffffffffffffff\r\n{\"a\": 1",
        ))
        .await?;
        let started = Instant::now();
        let answer = raw.answer().await?;
        let message = answer.error(408);
        assert!(message.contains("timed out"), "{message}");
        assert!(started.elapsed() >= Duration::from_millis(450));
        assert_eq!(answer.header("connection"), Some("close"));
        raw.closed().await?;
    }
    let (status, _) = node.http_get("/health").await?;
    assert_eq!(status, 200);
    Ok(())
}

/// A declared `Content-Length` over the limit is refused at once, before any of the
/// body is sent.
#[tokio::test]
async fn declared_length_over_the_limit_is_refused_before_the_body() -> anyhow::Result<()> {
    let node = start_with("edge-length", &["--max-body-bytes", "65536"]).await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    let headers = [
        ("content-type", "application/json"),
        ("content-length", "1048576"),
    ];
    for (addr, method, path) in [
        (node.http_addr(), "PUT", "/dev/dog/1"),
        (node.ops_addr(), "POST", "/"),
    ] {
        let mut raw = Raw::connect(addr).await?;
        raw.send(&request(&auth, method, path, &headers, b""))
            .await?;
        let message = raw.answer().await?.error(413);
        assert!(message.contains("65536"), "{method} {path}: {message}");
    }
    // A body within the limit still works.
    let resp = node
        .client()
        .put(node.http_url("/dev/dog/1"))
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .json(&json!({"name": "x".repeat(1000)}))
        .send()
        .await?;
    assert_eq!(resp.status(), 204);
    Ok(())
}

/// An answer that needs none of the body (a refused login, an unknown path, a method the
/// path does not take) still waits for the whole body: a client that sends its body
/// before reading gets the answer, not a reset, on a connection that stays usable. With
/// `Expect: 100-continue` it is answered at once, before any of the body is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_need_no_body_still_wait_for_it() -> anyhow::Result<()> {
    // More than the socket buffers of both ends hold, so that unread bytes are left.
    const BODY: usize = 32 << 20;
    let node = start_with("edge-early", &[]).await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    // nobody:wrong
    let stranger = "Basic bm9ib2R5Ondyb25n";
    let json = ("content-type", "application/json");
    let length = BODY.to_string();
    let (ops, http) = (node.ops_addr(), node.http_addr());
    let cases = [
        (ops, stranger, "POST", "/", 401),
        (http, stranger, "PUT", "/dev/dog/1", 401),
        (ops, auth.as_str(), "POST", "/no/such/path", 404),
        (ops, auth.as_str(), "PUT", "/", 405),
        (http, auth.as_str(), "POST", "/health", 405),
        (http, auth.as_str(), "PUT", "/dev/no_such_table/1", 404),
    ];
    let body = vec![b' '; BODY];
    for (addr, authorization, method, path, status) in cases {
        let what = format!("{method} {path} ({status})");
        let mut raw = Raw::connect(addr).await?;
        raw.send(&request(authorization, method, path, &[json], &body))
            .await
            .with_context(|| format!("{what}: sending the body"))?;
        raw.answer()
            .await
            .with_context(|| format!("{what}: reading the answer"))?
            .error(status);
        // The body was read whole: the connection takes another request.
        let next = if addr == ops {
            request(
                &auth,
                "POST",
                "/",
                &[json],
                br#"{"operation":"describe_all"}"#,
            )
        } else {
            request(&auth, "GET", "/health", &[], b"")
        };
        raw.send(&next).await?;
        assert_eq!(raw.answer().await?.status, 200, "{what}: the next request");

        let mut raw = Raw::connect(addr).await?;
        let expect = [
            json,
            ("content-length", &length),
            ("expect", "100-continue"),
        ];
        raw.send(&request(authorization, method, path, &expect, b""))
            .await?;
        let answer = raw
            .answer()
            .await
            .with_context(|| format!("{what}, expecting 100"))?;
        answer.error(status);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Item 1: subscriptions
// ---------------------------------------------------------------------------------------

/// A subscriber to big records that does not read is cut off by the byte bound on its
/// buffer, long before the count bound or the lag bound would, and its task ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_record_subscriber_that_does_not_read_is_cut_off() -> anyhow::Result<()> {
    const RECORDS: u64 = 64;
    let node = start_with(
        "edge-sub-bytes",
        &["--subscription-max-buffer-bytes", "1048576"],
    )
    .await?;
    create_table(&node, "dog").await?;
    let mut sse = raw_sse(&node, "/dev/dog/", true).await?;
    // 24 MiB of changes: far past the 1 MiB bound and what socket buffers hold, far
    // below 256 events or the lag bound of 10,000.
    let payload = "x".repeat(384 * 1024);
    for id in 1..=RECORDS {
        node.op_ok(json!({
            "operation": "upsert", "database": "dev", "table": "dog",
            "records": [{"id": id, "payload": payload}]
        }))
        .await?;
    }
    let body = sse.chunked_to_end().await?;
    let events = sse_events(&body);
    let (last, reason) = events.last().context("no SSE event at all")?;
    assert_eq!(last, "error", "the stream ends with an error event");
    assert!(reason.contains("too slow"), "reason: {reason}");
    let puts = events.iter().filter(|(e, _)| e == "put").count() as u64;
    assert!(puts < RECORDS, "cut off before the end, got all {puts}");
    wait_until(DEADLINE, "the subscription task ended", async || {
        Ok(connections(&node).await?["subscriptions"] == json!(0))
    })
    .await?;
    Ok(())
}

/// A subscriber that goes away ends its subscription task at once, although nothing is
/// committed to its table afterwards (the task used to wait for the next commit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_disconnects_frees_its_task_on_a_quiet_table() -> anyhow::Result<()> {
    let node = start_with("edge-sub-gone", &[]).await?;
    create_table(&node, "dog").await?;
    assert_eq!(connections(&node).await?["subscriptions"], json!(0));
    let sse = raw_sse(&node, "/dev/dog/", false).await?;
    let ws = raw_ws(&node, "/dev/dog/").await?;
    wait_until(DEADLINE, "both subscriptions run", async || {
        Ok(connections(&node).await?["subscriptions"] == json!(2))
    })
    .await?;
    drop(sse);
    drop(ws);
    wait_until(DEADLINE, "both subscription tasks ended", async || {
        Ok(connections(&node).await?["subscriptions"] == json!(0))
    })
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Item 11: components
// ---------------------------------------------------------------------------------------

/// The names of a get_components tree, recursively, with its statuses.
fn names(tree: &Value) -> Value {
    let mut out = json!({"name": tree["name"]});
    if let Some(status) = tree.get("status") {
        out["status"] = status["status"].clone();
    }
    if let Some(entries) = tree["entries"].as_array() {
        out["entries"] = entries.iter().map(names).collect();
    }
    out
}

fn set_file(project: &str, file: &str, payload: &str) -> Value {
    json!({"operation": "set_component_file", "project": project, "file": file, "payload": payload})
}

/// Bad component names are 400s that leave nothing behind; a component that cannot load
/// is reported and skipped, and the node restarts with it in place.
#[tokio::test]
async fn a_poisoned_component_cannot_take_the_node_down() -> anyhow::Result<()> {
    let mut node = start_with("edge-components", &[]).await?;
    let config = "rest: true\ngraphqlSchema:\n  files: schema.graphql\n";
    let schema = "type Cat @table(database: \"dev\", table: \"cat\") @export(name: \"Cat\") {\n  id: ID @primaryKey\n}\n";
    node.op_ok(set_file("p1", "config.yaml", config)).await?;
    node.op_ok(set_file("p1", "schema.graphql", schema)).await?;
    node.op_ok(set_file("p1", "static/index.html", "<p>hi</p>"))
        .await?;
    let before = names(&node.op_ok(json!({"operation": "get_components"})).await?);

    let long = "x".repeat(300);
    let bad = [
        // The reported case: a folder needed where a file is.
        ("p1", "config.yaml/x".to_owned(), "is a file"),
        ("p1", "config.yaml/x/y".to_owned(), "is a file"),
        // A file where a folder is.
        ("p1", "static".to_owned(), "is a folder"),
        // Paths that leave the component or are not plain.
        ("p1", "../escape".to_owned(), "Invalid file path"),
        ("p1", "/etc/passwd".to_owned(), "Invalid file path"),
        ("p1", "a//b".to_owned(), "Invalid file path"),
        ("p1", "./a".to_owned(), "Invalid file path"),
        ("p1", "a/".to_owned(), "Invalid file path"),
        ("p1", "".to_owned(), "Invalid file path"),
        ("p1", "a\0b".to_owned(), "Invalid file path"),
        ("p1", long.clone(), "Invalid file path"),
        ("p1", "a/".repeat(40) + "b", "Invalid file path"),
        // Project names as Harper allows them.
        ("../p1", "x".to_owned(), "Project name can only contain"),
        ("p1/sub", "x".to_owned(), "Project name can only contain"),
        (".hidden", "x".to_owned(), "Project name can only contain"),
        ("", "x".to_owned(), "Project name can only contain"),
        ("p\0", "x".to_owned(), "Project name can only contain"),
        (&long, "x".to_owned(), "Project name must be at most"),
    ];
    for (project, file, expected) in &bad {
        let answer = node.ops(set_file(project, file, "payload")).await?;
        let what = format!("set_component_file {project:?} {file:?}");
        assert_eq!(answer.0, 400, "{what}: {}", answer.1);
        assert_error_shape(&answer.1);
        let message = answer.1["error"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{what}: {message}");
    }
    for (op, extra) in [
        (
            "get_component_file",
            json!({"project": "p1", "file": "../p1/config.yaml"}),
        ),
        ("get_component_file", json!({"project": "..", "file": "x"})),
        ("drop_component", json!({"project": "p1", "file": "../.."})),
        ("drop_component", json!({"project": "../components"})),
        ("add_component", json!({"project": "a b"})),
        ("add_component", json!({"project": "p1"})),
    ] {
        let mut body = json!({"operation": op});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let answer = node.ops(body.clone()).await?;
        assert_eq!(answer.0, 400, "{body}: {}", answer.1);
        assert_error_shape(&answer.1);
    }
    let after = names(&node.op_ok(json!({"operation": "get_components"})).await?);
    assert_eq!(after, before, "refused requests leave nothing behind");
    // Nothing but the components themselves on disk either (no temporary files).
    let on_disk: Vec<String> = std::fs::read_dir(node.root().join("components"))?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    assert_eq!(on_disk, ["p1"]);
    assert_eq!(
        node.op_ok(
            json!({"operation": "get_component_file", "project": "p1", "file": "config.yaml"})
        )
        .await?["message"],
        json!(config)
    );

    // A component that cannot load is accepted as Harper accepts files, then reported
    // and skipped; the others keep working.
    node.op_ok(set_file("broken", "config.yaml", "graphqlSchema: [oops"))
        .await?;
    node.op_ok(set_file("broken2", "config.yaml", config))
        .await?;
    node.op_ok(set_file("broken2", "schema.graphql", "type {"))
        .await?;
    let check = async |node: &Node| -> anyhow::Result<()> {
        let tree = node.op_ok(json!({"operation": "get_components"})).await?;
        let status = |name: &str| {
            tree["entries"]
                .as_array()
                .and_then(|e| e.iter().find(|p| p["name"] == name))
                .map(|p| p["status"].clone())
                .unwrap_or(Value::Null)
        };
        assert_eq!(status("p1")["status"], json!("healthy"), "{tree}");
        for name in ["broken", "broken2"] {
            let s = status(name);
            assert_eq!(s["status"], json!("error"), "{name}: {tree}");
            assert!(s["message"].as_str().is_some_and(|m| !m.is_empty()), "{s}");
        }
        let resp = node
            .client()
            .get(node.http_url("/Cat/"))
            .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
            .send()
            .await?;
        assert_eq!(resp.status(), 200, "p1's export still served");
        Ok(())
    };
    check(&node).await?;
    node.terminate().await?;
    node.restart().await?;
    check(&node).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Item 12: races
// ---------------------------------------------------------------------------------------

/// 20 clients race `create_table`, REST writes and `drop_database` on one database:
/// every answer is a success or a not-found, never "the store is shutting down".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_table_racing_drop_database_never_answers_503() -> anyhow::Result<()> {
    const CLIENTS: usize = 20;
    const ROUNDS: usize = 25;
    let node = start_with("edge-race", &[]).await?;
    let mut statuses = std::collections::BTreeMap::<(String, u16), usize>::new();
    for round in 0..ROUNDS {
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..CLIENTS {
            let ops = node.ops_url();
            let table = format!("t{}", client % 4);
            let http = node.http_url(&format!("/race/{table}/{round}"));
            let http_client = node.client().clone();
            tasks.spawn(async move {
                let auth = |rb: reqwest::RequestBuilder| {
                    rb.basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                };
                let (what, resp) = match client % 5 {
                    0 => (
                        "drop_database",
                        auth(http_client.post(&ops))
                            .json(&json!({"operation": "drop_database", "database": "race"})),
                    ),
                    1 | 2 => (
                        "create_table",
                        auth(http_client.post(&ops)).json(&json!({
                            "operation": "create_table", "database": "race",
                            "table": table, "primary_key": "id"
                        })),
                    ),
                    3 => (
                        "rest_put",
                        auth(http_client.put(&http)).json(&json!({"n": 1})),
                    ),
                    _ => (
                        "insert",
                        auth(http_client.post(&ops)).json(&json!({
                            "operation": "insert", "database": "race", "table": table,
                            "records": [{"id": round}]
                        })),
                    ),
                };
                let resp = resp.send().await?;
                let status = resp.status().as_u16();
                let body = resp.text().await?;
                anyhow::Ok((what, status, body))
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (what, status, body) = done??;
            assert!(
                status < 500,
                "round {round}: {what} answered {status}: {body}"
            );
            if what == "create_table" && status == 404 {
                eprintln!("create_table 404: {body}");
            }
            *statuses.entry((what.to_owned(), status)).or_default() += 1;
        }
    }
    eprintln!("answers: {statuses:?}");
    // The race was real: writes landed in the database the drops removed.
    for what in ["create_table", "rest_put", "drop_database"] {
        let ok = statuses
            .iter()
            .any(|((w, status), _)| w == what && (200..300).contains(status));
        assert!(ok, "no {what} succeeded: {statuses:?}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Item 8 (part): Last-Modified
// ---------------------------------------------------------------------------------------

/// `Last-Modified` is a valid HTTP date never later than the answer's own time (a
/// timestamp past year 9999 used to panic the response; the clamp to now is unit-tested
/// in `rest::record`, since no API can stamp a record in the future). Here: the latest
/// timestamp the API can produce, read back at once.
#[tokio::test]
async fn last_modified_is_a_date_no_later_than_now() -> anyhow::Result<()> {
    let node = start_with("edge-last-modified", &[]).await?;
    create_table(&node, "dog").await?;
    let url = node.http_url("/dev/dog/1");
    let put = node
        .client()
        .put(&url)
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .json(&json!({"name": "Rex"}))
        .send()
        .await?;
    assert_eq!(put.status(), 204);
    let resp = node
        .client()
        .get(&url)
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .send()
        .await?;
    assert_eq!(resp.status(), 200);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let modified = header("last-modified").context("Last-Modified")?;
    let date = header("date").context("Date")?;
    let record: Value = resp.json().await?;
    let parse = |s: &str| httpdate::parse_http_date(s).with_context(|| format!("HTTP date {s:?}"));
    let (modified, date) = (parse(&modified)?, parse(&date)?);
    assert!(
        modified <= date,
        "Last-Modified {modified:?} after Date {date:?}"
    );
    let updated = record["__updatedtime__"]
        .as_f64()
        .context("__updatedtime__")?;
    let updated = SystemTime::UNIX_EPOCH + Duration::from_secs((updated / 1000.0) as u64);
    assert_eq!(modified, updated, "Last-Modified is the record's time");
    Ok(())
}

/// A record stamped past the year 9999 (a node whose clock is far ahead; HTTP dates stop
/// at 9999) is served whole: `Last-Modified` falls back to the answer's own date, where
/// formatting it used to panic the response.
#[tokio::test]
async fn a_record_stamped_after_the_year_9999_is_served() -> anyhow::Result<()> {
    // 10000-01-01T00:00:00Z is 253402300800000 ms after the epoch; aim a month past it.
    let now_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)?
        .as_millis() as i64;
    let offset = 253_402_300_800_000 + 30 * 86_400_000 - now_ms;
    let node = start_with(
        "edge-year-10000",
        &["--clock-offset-ms", &offset.to_string()],
    )
    .await?;
    create_table(&node, "dog").await?;
    let url = node.http_url("/dev/dog/1");
    let auth =
        |r: reqwest::RequestBuilder| r.basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD));
    let put = auth(node.client().put(&url))
        .json(&json!({"name": "Rex"}))
        .send()
        .await?;
    assert_eq!(put.status(), 204);
    let resp = auth(node.client().get(&url)).send().await?;
    assert_eq!(resp.status(), 200);
    let modified = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record: Value = resp.json().await?;
    assert_eq!(record["name"], "Rex");
    let updated = record["__updatedtime__"]
        .as_f64()
        .context("__updatedtime__")?;
    assert!(updated > 253_402_300_800_000.0, "stamped {updated}");
    if let Some(modified) = modified {
        let modified = httpdate::parse_http_date(&modified)?;
        assert!(modified <= SystemTime::now() + Duration::from_secs(60));
    }
    let (status, _) = node.http_get("/health").await?;
    assert_eq!(status, 200, "the node still answers");
    Ok(())
}

/// `body` as one chunk of a chunked body, then the end.
fn chunk(body: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n0\r\n\r\n");
    out
}

/// Request bodies held at once are bounded across all requests: while one request holds
/// the whole budget, a body of declared length waits its turn (503 once the body timeout
/// passes), one of unknown length is refused at once, and bodies go through again once
/// the first request is done.
#[tokio::test]
async fn bodies_in_flight_share_one_budget() -> anyhow::Result<()> {
    let limits = [
        "--max-body-bytes",
        "65536",
        // One whole body, and 1 KiB for the requests that watch it.
        "--max-body-bytes-in-flight",
        "66560",
        "--body-read-timeout-ms",
        "1500",
    ];
    let node = start_with("edge-budget", &limits).await?;
    create_table(&node, "dog").await?;
    let auth = basic(&node);
    // Exactly the budget.
    let record = format!(r#"{{"pad":"{}"}}"#, "x".repeat(65_536 - 10));
    let length = record.len().to_string();
    let json = ("content-type", "application/json");

    // The holder declares its whole body and sends it a byte at a time.
    let mut holder = Raw::connect(node.http_addr()).await?;
    let head = request(
        &auth,
        "PUT",
        "/dev/dog/1",
        &[json, ("content-length", &length)],
        b"",
    );
    holder.send(&head).await?;
    holder.send(&record.as_bytes()[..1]).await?;
    wait_until(DEADLINE, "the holder takes the budget", || async {
        // The request that asks holds its own 1 KiB share.
        let in_flight = connections(&node).await?["body_bytes_in_flight"].as_u64();
        Ok(in_flight == Some(65_536 + 1024))
    })
    .await?;
    let (trickle_stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let bytes = record.clone().into_bytes();
    let trickle = tokio::spawn(async move {
        let mut sent = 1;
        loop {
            tokio::select! {
                _ = &mut stopped => return anyhow::Ok((holder, sent)),
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    holder.send(&bytes[sent..=sent]).await?;
                    sent += 1;
                }
            }
        }
    });

    // Each needs 2 KiB, more than is left.
    let small = format!(r#"{{"pad":"{}"}}"#, "y".repeat(2000));
    let small = small.as_bytes();
    let mut waiting = Raw::connect(node.http_addr()).await?;
    let started = Instant::now();
    waiting
        .send(&request(&auth, "PUT", "/dev/dog/2", &[json], small))
        .await?;
    let message = waiting.answer().await?.error(503);
    assert!(message.contains("max_body_bytes_in_flight"), "{message}");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "it waited its turn"
    );

    let mut chunked = Raw::connect(node.http_addr()).await?;
    let started = Instant::now();
    let framing = [json, ("transfer-encoding", "chunked")];
    chunked
        .send(&request(
            &auth,
            "PUT",
            "/dev/dog/3",
            &framing,
            &chunk(small),
        ))
        .await?;
    chunked.answer().await?.error(503);
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "refused at once"
    );

    let _ = trickle_stop.send(());
    let (mut holder, sent) = trickle.await??;
    holder.send(&record.as_bytes()[sent..]).await?;
    assert_eq!(holder.answer().await?.status, 204);
    let mut after = Raw::connect(node.http_addr()).await?;
    after
        .send(&request(&auth, "PUT", "/dev/dog/2", &[json], small))
        .await?;
    assert_eq!(after.answer().await?.status, 204);
    // Only the asking request's own share is left.
    assert_eq!(connections(&node).await?["body_bytes_in_flight"], 1024);
    Ok(())
}
