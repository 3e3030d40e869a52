//! End-to-end tests of real-time subscriptions: WebSocket upgrades and Server-Sent
//! Events on REST URLs, against a real `shoal` process.
//!
//! Covered: table and record subscriptions see every change in commit order, resuming
//! with `Last-Event-ID` (SSE) and `?startTime=` (both) delivers exactly the missed
//! changes, a subscriber that stops reading is cut off (close code 1008 / `event:
//! error`) without slowing writers, and subscriptions need credentials.
//!
//! The WebSocket client is tungstenite's blocking client on a reader thread (the async
//! stream needs `futures` traits this crate does not depend on); messages reach the test
//! over a channel and are awaited with a deadline.

use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, admin, create_table, now_ms, start,
    start_with, wait_until,
};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::HandshakeError;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

/// Longest wait for one expected message.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Node and REST helpers
// ---------------------------------------------------------------------------------------

/// An Operations API write on `dev.dog` (`insert`, `update`, `upsert`, `delete`).
async fn op(node: &Node, operation: &str, body: Value) -> anyhow::Result<()> {
    let mut request = json!({"operation": operation, "database": "dev", "table": "dog"});
    if let (Some(req), Value::Object(extra)) = (request.as_object_mut(), body) {
        req.extend(extra);
    }
    node.op_ok(request).await?;
    Ok(())
}

/// A REST write that must answer `status`.
async fn rest(
    node: &Node,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> anyhow::Result<reqwest::Response> {
    let mut rb = admin(node, method.clone(), path);
    if let Some(body) = body {
        rb = rb.json(&body);
    }
    let resp = rb.send().await?;
    if resp.status().as_u16() != status {
        let got = resp.status();
        let text = resp.text().await.unwrap_or_default();
        bail!("{method} {path}: expected {status}, got {got}: {text}");
    }
    Ok(resp)
}

async fn put(node: &Node, path: &str, body: Value) -> anyhow::Result<()> {
    rest(node, Method::PUT, path, Some(body), 204).await?;
    Ok(())
}

async fn patch(node: &Node, path: &str, body: Value) -> anyhow::Result<()> {
    rest(node, Method::PATCH, path, Some(body), 204).await?;
    Ok(())
}

async fn delete(node: &Node, path: &str) -> anyhow::Result<()> {
    rest(node, Method::DELETE, path, None, 204).await?;
    Ok(())
}

/// Credentials a subscription request carries.
#[derive(Debug, Clone, Copy)]
enum Creds {
    Admin,
    WrongPassword,
    None,
}

fn authorization(node: &Node, creds: Creds) -> Option<HeaderValue> {
    let password = match creds {
        Creds::Admin => DEFAULT_ADMIN_PASSWORD,
        Creds::WrongPassword => "wrong-password",
        Creds::None => return None,
    };
    let request = node
        .client()
        .get(node.http_url("/"))
        .basic_auth(DEFAULT_ADMIN_USER, Some(password))
        .build()
        .expect("request builds");
    request.headers().get(AUTHORIZATION).cloned()
}

/// A change as `(type, id)`, the shape the assertions compare.
type Change = (String, Value);

fn change(kind: &str, id: impl Into<Value>) -> Change {
    (kind.to_owned(), id.into())
}

// ---------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------

/// A connected WebSocket that nothing reads yet.
struct WsConn {
    socket: WebSocket<TcpStream>,
    tcp: TcpStream,
}

/// What the reader thread saw.
#[derive(Debug)]
enum WsItem {
    /// A text message, parsed as JSON.
    Text(Value),
    /// A close frame: code and reason.
    Close(Option<(u16, String)>),
    /// The connection ended (the error text).
    Gone(String),
}

/// A WebSocket whose messages a reader thread forwards.
struct Ws {
    rx: mpsc::UnboundedReceiver<WsItem>,
    tcp: TcpStream,
}

/// Opens a WebSocket to `path` on the HTTP port; `Err((status, body))` if the server
/// refuses the upgrade. `recv_buffer` shrinks the client's socket receive buffer.
async fn ws_open(
    node: &Node,
    path: &str,
    creds: Creds,
    recv_buffer: Option<u32>,
) -> anyhow::Result<Result<WsConn, (u16, String)>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(node.http_addr()).await?.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(EVENT_DEADLINE))?;
    let tcp = stream.try_clone()?;
    let mut request = format!("ws://{}{path}", node.http_addr()).into_client_request()?;
    if let Some(value) = authorization(node, creds) {
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || match tungstenite::client::client(request, stream) {
        Ok((socket, _)) => {
            socket.get_ref().set_read_timeout(None)?;
            Ok(Ok(WsConn { socket, tcp }))
        }
        Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Ok(Err((resp.status().as_u16(), body)))
        }
        Err(e) => Err(anyhow!("WebSocket handshake on {path}: {e}")),
    })
    .await?
}

/// Opens a WebSocket subscription as the admin and starts reading it.
async fn ws_subscribe(node: &Node, path: &str) -> anyhow::Result<Ws> {
    match ws_open(node, path, Creds::Admin, None).await? {
        Ok(conn) => Ok(conn.read()),
        Err((status, body)) => bail!("WebSocket upgrade on {path} refused: {status} {body}"),
    }
}

impl WsConn {
    /// Starts the reader thread.
    fn read(self) -> Ws {
        let WsConn { mut socket, tcp } = self;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            loop {
                let item = match socket.read() {
                    Ok(Message::Text(text)) => WsItem::Text(
                        serde_json::from_str(text.as_str())
                            .unwrap_or_else(|_| Value::String(text.to_string())),
                    ),
                    Ok(Message::Close(frame)) => {
                        WsItem::Close(frame.map(|f| (u16::from(f.code), f.reason.to_string())))
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(WsItem::Gone(e.to_string()));
                        return;
                    }
                };
                if tx.send(item).is_err() {
                    return;
                }
            }
        });
        Ws { rx, tcp }
    }
}

impl Ws {
    async fn next(&mut self) -> anyhow::Result<WsItem> {
        tokio::time::timeout(EVENT_DEADLINE, self.rx.recv())
            .await
            .map_err(|_| anyhow!("no WebSocket message within {EVENT_DEADLINE:?}"))?
            .ok_or_else(|| anyhow!("the WebSocket reader stopped"))
    }

    /// The next change message.
    async fn message(&mut self) -> anyhow::Result<Value> {
        match self.next().await? {
            WsItem::Text(value) => Ok(value),
            other => bail!("expected a change message, got {other:?}"),
        }
    }

    /// The next `n` change messages.
    async fn messages(&mut self, n: usize) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let message = self
                .message()
                .await
                .with_context(|| format!("message {} of {n}; got so far: {out:?}", i + 1))?;
            out.push(message);
        }
        Ok(out)
    }

    /// Drops the connection (the client going away without a close handshake).
    fn disconnect(self) {
        drop(self);
    }
}

impl Drop for Ws {
    fn drop(&mut self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }
}

fn ws_change(message: &Value) -> Change {
    (
        message["type"].as_str().unwrap_or_default().to_owned(),
        message["id"].clone(),
    )
}

// ---------------------------------------------------------------------------------------
// SSE client
// ---------------------------------------------------------------------------------------

/// One Server-Sent Event.
#[derive(Debug, Clone)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {:?}", self.data))
    }

    fn change(&self) -> Change {
        (self.event.clone(), self.json()["id"].clone())
    }

    /// The event id: `<sequence>` for a commit's last change, `<sequence>.<index>` for
    /// the others, so that resuming inside a commit is exact.
    fn id(&self) -> String {
        self.id
            .clone()
            .unwrap_or_else(|| panic!("SSE event without an id: {self:?}"))
    }

    /// The log sequence of the event's commit.
    fn seq(&self) -> u64 {
        let id = self.id();
        let seq = id.split_once('.').map_or(id.as_str(), |(seq, _)| seq);
        seq.parse()
            .unwrap_or_else(|_| panic!("SSE id {id:?} does not start with a sequence"))
    }
}

/// An open `text/event-stream` response.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

/// GET `path` with `Accept: text/event-stream`; the response must be 200.
async fn sse_subscribe(
    node: &Node,
    path: &str,
    last_event_id: Option<String>,
) -> anyhow::Result<Sse> {
    let resp = sse_request(node, path, Creds::Admin, last_event_id).await?;
    let status = resp.status().as_u16();
    if status != 200 {
        bail!("SSE on {path}: status {status}: {}", resp.text().await?);
    }
    let mime = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        mime.starts_with("text/event-stream"),
        "SSE content type: {mime}"
    );
    Ok(Sse {
        resp,
        buf: Vec::new(),
    })
}

async fn sse_request(
    node: &Node,
    path: &str,
    creds: Creds,
    last_event_id: Option<String>,
) -> anyhow::Result<reqwest::Response> {
    // No overall timeout: the stream stays open; each read has its own deadline.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut rb = client
        .get(node.http_url(path))
        .header(ACCEPT, "text/event-stream");
    if let Some(value) = authorization(node, creds) {
        rb = rb.header(AUTHORIZATION, value);
    }
    if let Some(id) = last_event_id {
        rb = rb.header("last-event-id", id);
    }
    Ok(tokio::time::timeout(EVENT_DEADLINE, rb.send()).await??)
}

impl Sse {
    /// The next event (comments such as keep-alives are skipped); `None` once the stream
    /// has ended.
    async fn next(&mut self) -> anyhow::Result<Option<SseEvent>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(event) = parse_sse_frame(&String::from_utf8_lossy(&frame)) {
                    return Ok(Some(event));
                }
                continue;
            }
            let chunk = tokio::time::timeout(EVENT_DEADLINE, self.resp.chunk())
                .await
                .map_err(|_| anyhow!("no SSE event within {EVENT_DEADLINE:?}"))??;
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The next event, which must be there.
    async fn event(&mut self) -> anyhow::Result<SseEvent> {
        self.next()
            .await?
            .ok_or_else(|| anyhow!("the SSE stream ended"))
    }

    async fn events(&mut self, n: usize) -> anyhow::Result<Vec<SseEvent>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let event = self
                .event()
                .await
                .with_context(|| format!("event {} of {n}; got so far: {out:?}", i + 1))?;
            out.push(event);
        }
        Ok(out)
    }
}

/// Parses one SSE frame; `None` for a frame of comments only.
fn parse_sse_frame(frame: &str) -> Option<SseEvent> {
    let (mut event, mut id, mut data) = (None, None, Vec::new());
    for line in frame.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return None;
    }
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".to_owned()),
        id,
        data: data.join("\n"),
    })
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

/// A mixed sequence of writes on `dev.dog` (and one on `dev.cat`), grouped by commit,
/// with the changes each commit makes to `dev.dog`.
async fn write_sequence(node: &Node) -> anyhow::Result<Vec<Vec<Change>>> {
    let mut commits = Vec::new();
    put(node, "/dev/dog/1", json!({"name": "Rex"})).await?;
    commits.push(vec![change("put", 1)]);
    put(node, "/dev/dog/2", json!({"name": "Bo"})).await?;
    commits.push(vec![change("put", 2)]);
    patch(node, "/dev/dog/1", json!({"age": 3})).await?;
    commits.push(vec![change("patch", 1)]);
    put(node, "/dev/cat/1", json!({"name": "Tom"})).await?; // another table: not seen
    rest(
        node,
        Method::POST,
        "/dev/dog/",
        Some(json!({"id": 3, "name": "Cy"})),
        201,
    )
    .await?;
    commits.push(vec![change("put", 3)]);
    delete(node, "/dev/dog/2").await?;
    commits.push(vec![change("delete", 2)]);
    op(node, "insert", json!({"records": [{"id": 4}, {"id": 5}]})).await?;
    commits.push(vec![change("put", 4), change("put", 5)]);
    op(
        node,
        "upsert",
        json!({"records": [{"id": 4, "x": 1}, {"id": 6}]}),
    )
    .await?;
    commits.push(vec![change("patch", 4), change("put", 6)]);
    op(node, "update", json!({"records": [{"id": 5, "age": 1}]})).await?;
    commits.push(vec![change("patch", 5)]);
    put(node, "/dev/dog/1", json!({"name": "Rex II"})).await?;
    commits.push(vec![change("put", 1)]);
    let resp = rest(node, Method::DELETE, "/dev/dog/?id=ge=5", None, 200).await?;
    assert_eq!(
        resp.json::<Value>().await?["message"],
        json!("2 records successfully deleted")
    );
    commits.push(vec![change("delete", 5), change("delete", 6)]);
    op(node, "delete", json!({"ids": [3, 4]})).await?;
    commits.push(vec![change("delete", 3), change("delete", 4)]);
    Ok(commits)
}

#[tokio::test]
async fn ws_and_sse_see_table_changes_in_commit_order() -> anyhow::Result<()> {
    let node = start("rt-order").await?;
    create_table(&node, "dog").await?;
    create_table(&node, "cat").await?;
    let mut ws = ws_subscribe(&node, "/dev/dog/").await?;
    let mut sse = sse_subscribe(&node, "/dev/dog/", None).await?;

    let commits = write_sequence(&node).await?;
    let expected: Vec<Change> = commits.iter().flatten().cloned().collect();

    let messages = ws.messages(expected.len()).await?;
    let got: Vec<Change> = messages.iter().map(ws_change).collect();
    assert_eq!(got, expected, "WebSocket changes in commit order");
    let events = sse.events(expected.len()).await?;
    let got: Vec<Change> = events.iter().map(SseEvent::change).collect();
    assert_eq!(got, expected, "SSE changes in commit order");

    // SSE ids are log sequences: one per commit, increasing from commit to commit.
    let mut at = 0;
    let mut last_seq = 0;
    for (n, commit) in commits.iter().enumerate() {
        let seqs: Vec<u64> = events[at..at + commit.len()]
            .iter()
            .map(SseEvent::seq)
            .collect();
        assert!(
            seqs.iter().all(|s| *s == seqs[0]),
            "commit {n} shares one id: {seqs:?}"
        );
        assert!(
            seqs[0] > last_seq,
            "commit {n}: id {} after {last_seq}",
            seqs[0]
        );
        last_seq = seqs[0];
        at += commit.len();
    }
    // WebSocket timestamps never go backwards.
    let stamps: Vec<f64> = messages
        .iter()
        .map(|m| m["timestamp"].as_f64().expect("numeric timestamp"))
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "timestamps in commit order: {stamps:?}"
    );

    // Payloads: a put carries the record, a patch the changed attributes, a delete the id.
    let first = &messages[0];
    assert_eq!(first["value"]["name"], json!("Rex"));
    assert_eq!(first["value"]["id"], json!(1));
    assert_eq!(
        first["value"]["__updatedtime__"].as_f64(),
        first["timestamp"].as_f64(),
        "the timestamp is the commit time: {first}"
    );
    let patched = &messages[2];
    assert_eq!(patched["value"]["age"], json!(3), "{patched}");
    assert!(
        patched["value"].get("name").is_none(),
        "a patch carries only the change: {patched}"
    );
    let deleted = &messages[4];
    assert_eq!(deleted["value"], Value::Null, "{deleted}");
    assert_eq!(events[0].json()["name"], json!("Rex"));
    assert_eq!(events[2].json()["age"], json!(3));
    assert_eq!(
        events[4].json(),
        json!({"id": 2}),
        "SSE delete data is the id"
    );

    // Both are still live.
    put(&node, "/dev/dog/7", json!({"name": "Last"})).await?;
    assert_eq!(ws_change(&ws.message().await?), change("put", 7));
    assert_eq!(sse.event().await?.change(), change("put", 7));
    Ok(())
}

#[tokio::test]
async fn record_subscription_sees_only_that_record() -> anyhow::Result<()> {
    let node = start("rt-record").await?;
    create_table(&node, "dog").await?;
    let mut ws = ws_subscribe(&node, "/dev/dog/1").await?;
    let mut sse = sse_subscribe(&node, "/dev/dog/1", None).await?;
    let mut ws_abc = ws_subscribe(&node, "/dev/dog/abc").await?;

    put(&node, "/dev/dog/1", json!({"name": "one"})).await?;
    put(&node, "/dev/dog/10", json!({"name": "ten"})).await?;
    put(&node, "/dev/dog/2", json!({"name": "two"})).await?;
    put(&node, "/dev/dog/abc", json!({"name": "letters"})).await?;
    patch(&node, "/dev/dog/1", json!({"age": 1})).await?;
    op(
        &node,
        "insert",
        json!({"records": [{"id": 11}, {"id": 21}, {"id": "1"}]}),
    )
    .await?;
    delete(&node, "/dev/dog/1").await?;
    put(&node, "/dev/dog/1", json!({"name": "one again"})).await?;
    patch(&node, "/dev/dog/10", json!({"age": 10})).await?;
    op(
        &node,
        "upsert",
        json!({"records": [{"id": 2, "x": 2}, {"id": 1, "x": 1}]}),
    )
    .await?;
    delete(&node, "/dev/dog/2").await?;
    patch(&node, "/dev/dog/abc", json!({"age": 5})).await?;
    put(&node, "/dev/dog/1", json!({"name": "final"})).await?;

    let expected = vec![
        change("put", 1),
        change("patch", 1),
        change("delete", 1),
        change("put", 1),
        change("patch", 1),
        change("put", 1),
    ];
    // The last expected change is the last write, so anything else would have shown up.
    let got: Vec<Change> = ws
        .messages(expected.len())
        .await?
        .iter()
        .map(ws_change)
        .collect();
    assert_eq!(got, expected, "WebSocket on /dev/dog/1");
    let events = sse.events(expected.len()).await?;
    let got: Vec<Change> = events.iter().map(SseEvent::change).collect();
    assert_eq!(got, expected, "SSE on /dev/dog/1");
    assert_eq!(events[5].json()["name"], json!("final"));

    let got: Vec<Change> = ws_abc.messages(2).await?.iter().map(ws_change).collect();
    assert_eq!(
        got,
        vec![change("put", "abc"), change("patch", "abc")],
        "/dev/dog/abc"
    );
    put(&node, "/dev/dog/abc", json!({"name": "end"})).await?;
    assert_eq!(ws_change(&ws_abc.message().await?), change("put", "abc"));
    Ok(())
}

/// Writes made while a subscriber was away; returns the changes they make, in order.
async fn missed_writes(node: &Node) -> anyhow::Result<Vec<Change>> {
    put(node, "/dev/dog/6", json!({"n": 6})).await?;
    patch(node, "/dev/dog/1", json!({"seen": false})).await?;
    delete(node, "/dev/dog/2").await?;
    op(node, "insert", json!({"records": [{"id": 7}, {"id": 8}]})).await?;
    put(node, "/dev/dog/9", json!({"n": 9})).await?;
    Ok(vec![
        change("put", 6),
        change("patch", 1),
        change("delete", 2),
        change("put", 7),
        change("put", 8),
        change("put", 9),
    ])
}

#[tokio::test]
async fn sse_resumes_after_last_event_id() -> anyhow::Result<()> {
    let node = start("rt-sse-resume").await?;
    create_table(&node, "dog").await?;
    let mut sse = sse_subscribe(&node, "/dev/dog/", None).await?;
    for id in 1..=5 {
        put(&node, &format!("/dev/dog/{id}"), json!({"n": id})).await?;
    }
    let seen = sse.events(5).await?;
    let got: Vec<Change> = seen.iter().map(SseEvent::change).collect();
    assert_eq!(got, (1..=5).map(|i| change("put", i)).collect::<Vec<_>>());
    let last = seen[4].seq();
    drop(sse);

    let missed = missed_writes(&node).await?;
    let mut resumed = sse_subscribe(&node, "/dev/dog/", Some(seen[4].id())).await?;
    let events = resumed.events(missed.len()).await?;
    let got: Vec<Change> = events.iter().map(SseEvent::change).collect();
    assert_eq!(got, missed, "exactly the missed changes, in order");
    assert!(
        events.iter().all(|e| e.seq() > last),
        "all after {last}: {events:?}"
    );
    // Then live, with nothing repeated in between.
    put(&node, "/dev/dog/10", json!({"n": 10})).await?;
    assert_eq!(resumed.event().await?.change(), change("put", 10));

    // Resuming from the middle: after the event of `delete 2`, only what follows.
    let after_delete = events[2].id();
    let mut middle = sse_subscribe(&node, "/dev/dog/", Some(after_delete)).await?;
    let got: Vec<Change> = middle
        .events(4)
        .await?
        .iter()
        .map(SseEvent::change)
        .collect();
    assert_eq!(
        got,
        vec![
            change("put", 7),
            change("put", 8),
            change("put", 9),
            change("put", 10)
        ]
    );
    // A record subscription resumes too, and filters the replay.
    let mut record = sse_subscribe(&node, "/dev/dog/1", Some(last.to_string())).await?;
    assert_eq!(record.event().await?.change(), change("patch", 1));
    put(&node, "/dev/dog/1", json!({"n": 1})).await?;
    assert_eq!(record.event().await?.change(), change("put", 1));
    Ok(())
}

/// A client that processed only the first change of a multi-record commit resumes
/// with that event's id and must still get the rest of the commit.
#[tokio::test]
async fn sse_resume_inside_a_multi_record_commit() -> anyhow::Result<()> {
    let node = start("rt-sse-commit").await?;
    create_table(&node, "dog").await?;
    let mut sse = sse_subscribe(&node, "/dev/dog/", None).await?;
    op(
        &node,
        "insert",
        json!({"records": [{"id": 1}, {"id": 2}, {"id": 3}]}),
    )
    .await?;
    let first = sse.event().await?;
    assert_eq!(first.change(), change("put", 1));
    drop(sse);

    let mut resumed = sse_subscribe(&node, "/dev/dog/", Some(first.id())).await?;
    put(&node, "/dev/dog/4", json!({})).await?;
    // Read up to the change of the later write, which must come last.
    let mut got = Vec::new();
    while got.last() != Some(&change("put", 4)) && got.len() < 3 {
        got.push(resumed.event().await?.change());
    }
    // The first event's id names the change inside its commit, so the rest follow.
    assert_eq!(
        got,
        vec![change("put", 2), change("put", 3), change("put", 4)],
        "resuming after the first event of a three-record commit"
    );
    Ok(())
}

#[tokio::test]
async fn ws_and_sse_resume_from_start_time() -> anyhow::Result<()> {
    let node = start("rt-ws-resume").await?;
    create_table(&node, "dog").await?;
    let mut ws = ws_subscribe(&node, "/dev/dog/").await?;
    for id in 1..=5 {
        put(&node, &format!("/dev/dog/{id}"), json!({"n": id})).await?;
    }
    let seen = ws.messages(5).await?;
    let got: Vec<Change> = seen.iter().map(ws_change).collect();
    assert_eq!(got, (1..=5).map(|i| change("put", i)).collect::<Vec<_>>());
    let last = seen[4]["timestamp"].as_f64().expect("timestamp");
    ws.disconnect();

    // Resume from the next millisecond; the missed writes come after it.
    let resume = last.floor() + 1.0;
    wait_until(
        Duration::from_secs(5),
        "the clock passes the last seen change",
        async || Ok(now_ms() > resume),
    )
    .await?;
    let missed = missed_writes(&node).await?;

    let mut resumed = ws_subscribe(&node, &format!("/dev/dog/?startTime={resume}")).await?;
    let messages = resumed.messages(missed.len()).await?;
    let got: Vec<Change> = messages.iter().map(ws_change).collect();
    assert_eq!(got, missed, "exactly the missed changes, in order");
    assert!(
        messages
            .iter()
            .all(|m| m["timestamp"].as_f64() >= Some(resume)),
        "all at or after {resume}: {messages:?}"
    );
    let mut sse = sse_subscribe(&node, &format!("/dev/dog/?startTime={resume}"), None).await?;
    let got: Vec<Change> = sse
        .events(missed.len())
        .await?
        .iter()
        .map(SseEvent::change)
        .collect();
    assert_eq!(got, missed, "SSE with startTime");
    // Then live, with nothing repeated in between.
    put(&node, "/dev/dog/10", json!({"n": 10})).await?;
    assert_eq!(ws_change(&resumed.message().await?), change("put", 10));
    assert_eq!(sse.event().await?.change(), change("put", 10));

    // startTime=0 replays all of the table's history, then goes live.
    let mut history: Vec<Change> = (1..=5).map(|i| change("put", i)).collect();
    history.extend(missed);
    history.push(change("put", 10));
    let mut replay = ws_subscribe(&node, "/dev/dog/?startTime=0").await?;
    let got: Vec<Change> = replay
        .messages(history.len())
        .await?
        .iter()
        .map(ws_change)
        .collect();
    assert_eq!(got, history, "startTime=0 replays everything");
    put(&node, "/dev/dog/11", json!({"n": 11})).await?;
    assert_eq!(ws_change(&replay.message().await?), change("put", 11));
    Ok(())
}

/// Distinct commits carry distinct timestamps, so that `startTime` can name the point
/// right after a change (the HLC keeps a counter for commits within one millisecond).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_timestamps_are_distinct() -> anyhow::Result<()> {
    let node = start("rt-stamps").await?;
    create_table(&node, "dog").await?;
    let mut ws = ws_subscribe(&node, "/dev/dog/").await?;
    const WRITES: u64 = 200;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8u64 {
        let client = node.client().clone();
        let base = node.http_url("/dev/dog/");
        tasks.spawn(async move {
            for id in (worker..WRITES).step_by(8) {
                let resp = client
                    .put(format!("{base}{id}"))
                    .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                    .json(&json!({"n": id}))
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 204, "PUT {id}: {}", resp.status());
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let messages = ws.messages(WRITES as usize).await?;
    let stamps: Vec<f64> = messages
        .iter()
        .map(|m| m["timestamp"].as_f64().expect("timestamp"))
        .collect();
    let repeats: Vec<(usize, f64)> = stamps
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] <= w[0])
        .map(|(i, w)| (i + 1, w[1]))
        .collect();
    assert!(
        repeats.is_empty(),
        "{} of {WRITES} commits do not have a later timestamp than the one before: {:?}",
        repeats.len(),
        &repeats[..repeats.len().min(10)]
    );
    Ok(())
}

/// A subscriber that stops reading is cut off once it is more than
/// `--subscription-max-lag` changes behind, and writers never wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_is_cut_off_without_slowing_writers() -> anyhow::Result<()> {
    const WRITES: u64 = 2000;
    const WORKERS: u64 = 8;
    let node = start_with("rt-slow", &["--subscription-max-lag", "50"]).await?;
    create_table(&node, "dog").await?;
    // Never read until the writes are done; a small receive buffer and large records
    // make the server's socket back up quickly.
    let ws = match ws_open(&node, "/dev/dog/", Creds::Admin, Some(4096)).await? {
        Ok(conn) => conn,
        Err((status, body)) => bail!("WebSocket refused: {status} {body}"),
    };
    let sse = sse_subscribe(&node, "/dev/dog/", None).await?;

    // 32 MiB in all: far more than socket buffers hold even with generous tcp_wmem.
    let payload = "x".repeat(16 * 1024);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let client = node.client().clone();
        let base = node.http_url("/dev/dog/");
        let payload = payload.clone();
        tasks.spawn(async move {
            let mut slowest = Duration::ZERO;
            for id in (worker + 1..=WRITES).step_by(WORKERS as usize) {
                let t = Instant::now();
                let resp = client
                    .put(format!("{base}{id}"))
                    .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
                    .json(&json!({"n": id, "payload": payload}))
                    .send()
                    .await?;
                anyhow::ensure!(resp.status() == 204, "PUT {id}: {}", resp.status());
                slowest = slowest.max(t.elapsed());
            }
            anyhow::Ok(slowest)
        });
    }
    let mut slowest = Duration::ZERO;
    let all = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(result) = tasks.join_next().await {
            slowest = slowest.max(result??);
        }
        anyhow::Ok(())
    })
    .await;
    let elapsed = started.elapsed();
    all.map_err(|_| anyhow!("{WRITES} writes did not finish within 20 s"))??;
    eprintln!("{WRITES} writes in {elapsed:?}, slowest {slowest:?}");
    assert!(
        slowest < Duration::from_secs(5),
        "no write waits for the stalled subscribers (slowest {slowest:?})"
    );
    let count = node
        .op_ok(json!({"operation": "describe_table", "database": "dev", "table": "dog"}))
        .await?["record_count"]
        .as_u64();
    assert_eq!(count, Some(WRITES), "every write landed");

    // Now read the WebSocket: what was buffered, then a policy-violation close.
    let mut ws = ws.read();
    let mut received = Vec::new();
    let close = loop {
        match ws.next().await? {
            WsItem::Text(message) => received.push(message),
            WsItem::Close(frame) => break frame,
            WsItem::Gone(e) => bail!(
                "connection ended without a close frame after {} messages: {e}",
                received.len()
            ),
        }
    };
    let (code, reason) = close.ok_or_else(|| anyhow!("close frame without a code"))?;
    assert_eq!(code, 1008, "close code (reason {reason:?})");
    assert!(reason.contains("too slow"), "close reason: {reason:?}");
    assert!(
        (received.len() as u64) < WRITES,
        "cut off before the end: got all {} changes",
        received.len()
    );
    let mut ids: Vec<u64> = received.iter().filter_map(|m| m["id"].as_u64()).collect();
    assert!(received.iter().all(|m| m["type"] == "put"), "only puts");
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "no change delivered twice");

    // The SSE subscriber: buffered events, then an error event, then the end.
    let mut sse = sse;
    let mut events = 0u64;
    let error = loop {
        match sse.next().await? {
            Some(event) if event.event == "error" => break event,
            Some(event) => {
                assert_eq!(event.event, "put", "{event:?}");
                events += 1;
            }
            None => bail!("SSE stream ended without an error event after {events} events"),
        }
    };
    assert!(error.data.contains("too slow"), "SSE error: {error:?}");
    assert!(
        events < WRITES,
        "SSE cut off before the end: got all {events}"
    );
    assert!(
        sse.next().await?.is_none(),
        "the SSE stream ends after the error"
    );
    eprintln!(
        "WebSocket got {} changes before its close, SSE {events}",
        received.len()
    );

    // The node is fine, and a new subscriber gets new changes.
    let mut fresh = ws_subscribe(&node, "/dev/dog/").await?;
    put(&node, "/dev/dog/1", json!({"n": 1})).await?;
    assert_eq!(ws_change(&fresh.message().await?), change("put", 1));
    Ok(())
}

/// A component's export path subscribes like the table's own path.
#[tokio::test]
async fn export_paths_subscribe_too() -> anyhow::Result<()> {
    let node = start("rt-export").await?;
    let schema = "type Cat @table(database: \"dev\", table: \"cat\") @export(name: \"Cat\") {\n  id: ID @primaryKey\n  name: String @indexed\n}\n";
    for (file, payload) in [
        (
            "config.yaml",
            "rest: true\ngraphqlSchema:\n  files: schema.graphql\n",
        ),
        ("schema.graphql", schema),
    ] {
        node.op_ok(json!({
            "operation": "set_component_file", "project": "cats", "file": file, "payload": payload
        }))
        .await?;
    }
    let mut table = ws_subscribe(&node, "/Cat/").await?;
    let mut record = sse_subscribe(&node, "/Cat/2", None).await?;
    put(&node, "/Cat/1", json!({"name": "Tom"})).await?;
    put(&node, "/dev/cat/2", json!({"name": "Felix"})).await?;
    patch(&node, "/Cat/2", json!({"age": 3})).await?;
    delete(&node, "/Cat/1").await?;
    let got: Vec<Change> = table.messages(4).await?.iter().map(ws_change).collect();
    assert_eq!(
        got,
        vec![
            change("put", 1),
            change("put", 2),
            change("patch", 2),
            change("delete", 1)
        ]
    );
    let got: Vec<Change> = record
        .events(2)
        .await?
        .iter()
        .map(SseEvent::change)
        .collect();
    assert_eq!(got, vec![change("put", 2), change("patch", 2)]);
    // Replay on a record path: startTime=0 gives that record's history, then live.
    let mut replay = ws_subscribe(&node, "/Cat/2?startTime=0").await?;
    let got: Vec<Change> = replay.messages(2).await?.iter().map(ws_change).collect();
    assert_eq!(got, vec![change("put", 2), change("patch", 2)]);
    delete(&node, "/Cat/2").await?;
    assert_eq!(ws_change(&replay.message().await?), change("delete", 2));
    Ok(())
}

#[tokio::test]
async fn subscriptions_require_credentials_and_valid_parameters() -> anyhow::Result<()> {
    let node = start("rt-auth").await?;
    create_table(&node, "dog").await?;
    for creds in [Creds::None, Creds::WrongPassword] {
        for path in ["/dev/dog/", "/dev/dog/1"] {
            match ws_open(&node, path, creds, None).await? {
                Ok(_) => panic!("WebSocket upgrade on {path} with {creds:?} was accepted"),
                Err((status, _)) => assert_eq!(status, 401, "WebSocket {path} with {creds:?}"),
            }
            let resp = sse_request(&node, path, creds, None).await?;
            assert_eq!(resp.status().as_u16(), 401, "SSE {path} with {creds:?}");
            let body: Value = resp.json().await?;
            assert!(body["error"].is_string(), "SSE 401 body: {body}");
        }
    }
    // Unknown tables: 404 before any upgrade.
    match ws_open(&node, "/dev/nope/", Creds::Admin, None).await? {
        Ok(_) => panic!("WebSocket upgrade on a missing table was accepted"),
        Err((status, _)) => assert_eq!(status, 404, "WebSocket on a missing table"),
    }
    let resp = sse_request(&node, "/dev/nope/", Creds::Admin, None).await?;
    assert_eq!(resp.status().as_u16(), 404, "SSE on a missing table");
    // Bad resume points: 400.
    match ws_open(&node, "/dev/dog/?startTime=yesterday", Creds::Admin, None).await? {
        Ok(_) => panic!("WebSocket with startTime=yesterday was accepted"),
        Err((status, _)) => assert_eq!(status, 400, "WebSocket with a bad startTime"),
    }
    let resp = sse_request(&node, "/dev/dog/?startTime=soon", Creds::Admin, None).await?;
    assert_eq!(resp.status().as_u16(), 400, "SSE with a bad startTime");
    let resp = node
        .client()
        .get(node.http_url("/dev/dog/"))
        .basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
        .header(ACCEPT, "text/event-stream")
        .header("last-event-id", "not-a-number")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400, "SSE with a bad Last-Event-ID");

    // With credentials both work, and nothing the refused requests did is visible.
    let mut ws = ws_subscribe(&node, "/dev/dog/").await?;
    let mut sse = sse_subscribe(&node, "/dev/dog/", None).await?;
    put(&node, "/dev/dog/1", json!({"n": 1})).await?;
    assert_eq!(ws_change(&ws.message().await?), change("put", 1));
    assert_eq!(sse.event().await?.change(), change("put", 1));
    Ok(())
}
