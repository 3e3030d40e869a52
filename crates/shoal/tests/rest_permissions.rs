//! Role permissions on the HTTP port, end to end: REST, WebSocket and Server-Sent Events
//! against a real `shoal` process, for a role granting whole tables, one granting
//! attributes, and one granting nothing.
//!
//! What Harper does and these tests hold Shoal to: a refused request is a 403 with
//! Harper's body (`error`, `unauthorized_access`, `invalid_schema_items`) and writes
//! nothing; reads (records, queries in every format, table descriptions, subscription
//! events) show only the attributes the role may read; a write naming an attribute the
//! role may not write is refused whole; a PUT by a role that may not update some
//! attributes keeps their stored values (Harper's `Table.allowUpdate`). Beyond Harper's
//! REST (which drops unreadable names from `select()` silently), a query naming a hidden
//! attribute in a condition, `select()` or `sort()` is refused, as the Operations API
//! refuses it, since matches and order would tell hidden values; an ETag tells nothing
//! of hidden attributes; and a subscriber that is dropped, or whose role stops reading
//! the table, is cut off with the reason.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use shoal_testkit::{Node, admin, create_table, insert, start, strip_timestamps};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Harper's answer when a role lacks a permission.
const NOT_AUTHORIZED: &str =
    "This operation is not authorized due to role restrictions and/or invalid database items";
/// Longest wait for one expected message.
const DEADLINE: Duration = Duration::from_secs(10);

/// A user with a role granting `dev.dog` whole: read and insert, not update or delete.
const KEEPER: (&str, &str) = ("keeper", "keeper-password");
/// A user with a role granting attributes of `dev.dog`: `name` read and written, `owner`
/// only read, `secret` nothing.
const VIEWER: (&str, &str) = ("viewer", "viewer-password");
/// A user with a role granting nothing.
const NOBODY: (&str, &str) = ("nobody", "nobody-password");

fn attribute_permission() -> Value {
    json!({"dev": {"tables": {"dog": {
        "read": true, "insert": true, "update": true, "delete": true,
        "attribute_permissions": [
            {"attribute_name": "name", "read": true, "insert": true, "update": true},
            {"attribute_name": "owner", "read": true, "insert": false, "update": false},
            {"attribute_name": "secret", "read": false, "insert": false, "update": false}
        ]
    }}}})
}

/// A node with `dev.dog` holding dogs 1 and 2, the three roles and a user for each.
async fn node_with_roles(name: &str) -> anyhow::Result<Node> {
    let node = start(name).await?;
    create_table(&node, "dog").await?;
    insert(
        &node,
        "dog",
        json!([
            {"id": 1, "name": "Rex", "owner": "ann", "secret": "s1"},
            {"id": 2, "name": "Fido", "owner": "bob", "secret": "s2"}
        ]),
    )
    .await?;
    let keeper = json!({"dev": {"tables": {"dog": {
        "read": true, "insert": true, "update": false, "delete": false, "attribute_permissions": []
    }}}});
    let roles = [
        ("keeper", keeper, KEEPER),
        ("viewer", attribute_permission(), VIEWER),
        ("nobody", json!({"super_user": false}), NOBODY),
    ];
    for (role, permission, (username, password)) in roles {
        node.op_ok(json!({"operation": "add_role", "role": role, "permission": permission}))
            .await?;
        node.op_ok(
            json!({"operation": "add_user", "username": username, "password": password,
                          "role": role, "active": true}),
        )
        .await?;
    }
    Ok(node)
}

/// A request on the HTTP port as `user`.
fn as_user(
    node: &Node,
    (username, password): (&str, &str),
    method: Method,
    path: &str,
) -> RequestBuilder {
    node.client()
        .request(method, node.http_url(path))
        .basic_auth(username, Some(password))
}

/// Status and JSON body (`null` when empty or not JSON).
async fn answer(rb: RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let resp = rb.send().await?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// Harper's 403 body for a role missing table permissions on `dev.dog`.
fn lacks_table(permissions: &[&str]) -> Value {
    json!({
        "error": NOT_AUTHORIZED,
        "unauthorized_access": [{"schema": "dev", "table": "dog",
            "required_table_permissions": permissions, "required_attribute_permissions": []}],
        "invalid_schema_items": []
    })
}

/// Harper's 403 body for a role missing `permission` on attribute `attribute` of `dev.dog`.
fn lacks_attribute(attribute: &str, permissions: &[&str]) -> Value {
    json!({
        "error": NOT_AUTHORIZED,
        "unauthorized_access": [{"schema": "dev", "table": "dog", "required_table_permissions": [],
            "required_attribute_permissions": [
                {"attribute_name": attribute, "required_permissions": permissions}
            ]}],
        "invalid_schema_items": []
    })
}

/// Harper's 403 body naming what the role may not see.
fn invalid(item: &str) -> Value {
    json!({"error": NOT_AUTHORIZED, "unauthorized_access": [], "invalid_schema_items": [item]})
}

/// The stored record `id`, as the admin reads it, without timestamps.
async fn stored(node: &Node, id: u64) -> anyhow::Result<Value> {
    let (status, body) = answer(admin(node, Method::GET, &format!("/dev/dog/{id}"))).await?;
    Ok(match status {
        200 => strip_timestamps(&body),
        404 => Value::Null,
        other => bail!("GET /dev/dog/{id} as admin: {other} {body}"),
    })
}

/// Every stored record, as the admin reads it, without timestamps.
async fn all_stored(node: &Node) -> anyhow::Result<Vec<Value>> {
    let (status, body) = answer(admin(node, Method::GET, "/dev/dog/")).await?;
    anyhow::ensure!(status == 200, "GET /dev/dog/ as admin: {status} {body}");
    let rows = body.as_array().context("an array")?;
    Ok(rows.iter().map(strip_timestamps).collect())
}

/// A role granting whole tables gets what it grants, and Harper's 403 for the rest, with
/// nothing written.
#[tokio::test]
async fn table_grants_allow_what_they_grant_and_refuse_the_rest() -> anyhow::Result<()> {
    let node = node_with_roles("perm-table").await?;
    let before = all_stored(&node).await?;

    let (status, body) = answer(as_user(&node, KEEPER, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        strip_timestamps(&body),
        json!({"id": 1, "name": "Rex", "owner": "ann", "secret": "s1"}),
        "a whole-table grant reads every attribute"
    );
    let (status, body) = answer(as_user(&node, KEEPER, Method::GET, "/dev/dog/?secret=s2")).await?;
    assert_eq!(
        (status, body.as_array().map(Vec::len)),
        (200, Some(1)),
        "{body}"
    );

    let refused = [
        (
            Method::PUT,
            "/dev/dog/1",
            Some(json!({"name": "Max"})),
            lacks_table(&["update"]),
        ),
        (
            Method::PUT,
            "/dev/dog/9",
            Some(json!({"name": "Max"})),
            lacks_table(&["update"]),
        ),
        (
            Method::PATCH,
            "/dev/dog/1",
            Some(json!({"name": "Max"})),
            lacks_table(&["update"]),
        ),
        (Method::DELETE, "/dev/dog/1", None, lacks_table(&["delete"])),
        (
            Method::DELETE,
            "/dev/dog/?name=Rex",
            None,
            lacks_table(&["delete"]),
        ),
    ];
    for (method, path, body, expected) in refused {
        let mut rb = as_user(&node, KEEPER, method.clone(), path);
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        assert_eq!(answer(rb).await?, (403, expected), "{method} {path}");
        assert_eq!(
            all_stored(&node).await?,
            before,
            "{method} {path} wrote nothing"
        );
    }

    let (status, body) = answer(
        as_user(&node, KEEPER, Method::POST, "/dev/dog/").json(&json!({"id": 3, "name": "New"})),
    )
    .await?;
    assert_eq!((status, body), (201, json!(3)));
    assert_eq!(stored(&node, 3).await?, json!({"id": 3, "name": "New"}));
    Ok(())
}

/// A role granting nothing may not even see the database, through any method or a
/// subscription, and writes nothing.
#[tokio::test]
async fn a_role_without_grants_sees_nothing() -> anyhow::Result<()> {
    let node = node_with_roles("perm-none").await?;
    let before = all_stored(&node).await?;
    let expected = invalid("database 'dev' does not exist");
    let requests = [
        (Method::GET, "/dev/dog/1", None),
        (Method::GET, "/dev/dog/", None),
        (Method::GET, "/dev/dog", None),
        (Method::PUT, "/dev/dog/1", Some(json!({"name": "Max"}))),
        (Method::PATCH, "/dev/dog/1", Some(json!({"name": "Max"}))),
        (Method::POST, "/dev/dog/", Some(json!({"name": "Max"}))),
        (Method::DELETE, "/dev/dog/1", None),
        (Method::DELETE, "/dev/dog/?name=Rex", None),
    ];
    for (method, path, body) in requests {
        let mut rb = as_user(&node, NOBODY, method.clone(), path);
        if let Some(body) = body {
            rb = rb.json(&body);
        }
        assert_eq!(
            answer(rb).await?,
            (403, expected.clone()),
            "{method} {path}"
        );
    }
    assert_eq!(all_stored(&node).await?, before, "nothing was written");

    let sse = as_user(&node, NOBODY, Method::GET, "/dev/dog/").header(ACCEPT, "text/event-stream");
    assert_eq!(answer(sse).await?, (403, expected.clone()));
    match websocket(&node, NOBODY, "/dev/dog/").await {
        Err(e) => assert!(e.to_string().contains("403"), "{e:#}"),
        Ok(_) => bail!("a role without grants subscribed"),
    }
    Ok(())
}

/// Records, queries in every format and the table's description show only the attributes
/// the role may read; a query naming a hidden attribute is refused.
#[tokio::test]
async fn attribute_grants_filter_every_read() -> anyhow::Result<()> {
    let node = node_with_roles("perm-attr-read").await?;
    let rex = json!({"id": 1, "name": "Rex", "owner": "ann"});
    let fido = json!({"id": 2, "name": "Fido", "owner": "bob"});

    let (status, body) = answer(as_user(&node, VIEWER, Method::GET, "/dev/dog/1")).await?;
    assert_eq!(
        (status, body),
        (200, rex.clone()),
        "no secret, no timestamps"
    );
    let resp = as_user(&node, VIEWER, Method::GET, "/dev/dog/1")
        .header(ACCEPT, "application/cbor")
        .send()
        .await?;
    let record: Value = ciborium::from_reader(resp.bytes().await?.as_ref())?;
    assert_eq!(record, rex, "CBOR record");

    let (status, body) = answer(as_user(&node, VIEWER, Method::GET, "/dev/dog/")).await?;
    assert_eq!((status, body), (200, json!([rex, fido])), "JSON query");
    let (status, body) = answer(as_user(&node, VIEWER, Method::GET, "/dev/dog/?owner=bob")).await?;
    assert_eq!((status, body), (200, json!([fido])), "a readable condition");
    let (status, body) = answer(as_user(
        &node,
        VIEWER,
        Method::GET,
        "/dev/dog/?name=Rex&select(name)",
    ))
    .await?;
    assert_eq!(
        (status, body),
        (200, json!([{"name": "Rex"}])),
        "a readable select"
    );

    for accept in ["application/cbor", "application/x-msgpack"] {
        let resp = as_user(&node, VIEWER, Method::GET, "/dev/dog/")
            .header(ACCEPT, accept)
            .send()
            .await?;
        assert_eq!(resp.status().as_u16(), 200, "{accept}");
        let bytes = resp.bytes().await?;
        let rows: Value = match accept {
            "application/cbor" => ciborium::from_reader(bytes.as_ref())?,
            _ => rmp_serde::from_slice(&bytes)?,
        };
        assert_eq!(rows, json!([rex, fido]), "{accept} query");
    }

    let resp = as_user(&node, VIEWER, Method::GET, "/dev/dog/")
        .header(ACCEPT, "text/csv")
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader.headers()?.iter().map(str::to_owned).collect();
    assert_eq!(
        headers.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from(["id".to_owned(), "name".to_owned(), "owner".to_owned()]),
        "CSV columns: {text}"
    );
    let rows: Vec<Value> = reader
        .records()
        .map(|row| {
            let row = row?;
            let mut record = serde_json::Map::new();
            for (column, field) in headers.iter().zip(row.iter()) {
                let value = field
                    .parse::<u64>()
                    .map_or_else(|_| json!(field), |n| json!(n));
                record.insert(column.clone(), value);
            }
            Ok(Value::Object(record))
        })
        .collect::<anyhow::Result<_>>()?;
    assert_eq!(rows, vec![rex.clone(), fido.clone()], "CSV rows: {text}");

    let (status, body) = answer(as_user(&node, VIEWER, Method::GET, "/dev/dog")).await?;
    assert_eq!(status, 200, "{body}");
    let shown: BTreeSet<&str> = body["attributes"]
        .as_array()
        .context("attributes")?
        .iter()
        .filter_map(|a| a["attribute"].as_str())
        .collect();
    assert_eq!(
        shown,
        BTreeSet::from(["id", "name", "owner"]),
        "describe: {body}"
    );

    let hidden = invalid("Attribute 'secret' does not exist on 'dev.dog'");
    for path in [
        "/dev/dog/?secret=s1",
        "/dev/dog/?name=Rex|secret=s1",
        "/dev/dog/?select(name,secret)",
        "/dev/dog/?sort(secret)",
        "/dev/dog/?name=Rex&sort(name,-secret)",
    ] {
        let got = answer(as_user(&node, VIEWER, Method::GET, path)).await?;
        assert_eq!(got, (403, hidden.clone()), "{path}");
    }
    let got = answer(as_user(
        &node,
        VIEWER,
        Method::DELETE,
        "/dev/dog/?secret=s1",
    ))
    .await?;
    assert_eq!(got, (403, hidden.clone()), "a delete by a hidden condition");
    assert_eq!(all_stored(&node).await?.len(), 2, "nothing was deleted");
    Ok(())
}

/// The ETag of what a role is shown changes with what it is shown, not with hidden
/// attributes; and no Last-Modified tells when a hidden attribute changed.
#[tokio::test]
async fn etags_tell_nothing_of_hidden_attributes() -> anyhow::Result<()> {
    let node = node_with_roles("perm-etag").await?;
    let get = |etag: Option<&str>| {
        let mut rb = as_user(&node, VIEWER, Method::GET, "/dev/dog/1");
        if let Some(etag) = etag {
            rb = rb.header(IF_NONE_MATCH, etag);
        }
        rb.send()
    };
    let resp = get(None).await?;
    assert!(
        resp.headers().get(LAST_MODIFIED).is_none(),
        "{:?}",
        resp.headers()
    );
    let etag = resp
        .headers()
        .get(ETAG)
        .context("an ETag")?
        .to_str()?
        .to_owned();
    let admin_etag = admin(&node, Method::GET, "/dev/dog/1").send().await?;
    let admin_etag = admin_etag
        .headers()
        .get(ETAG)
        .context("an ETag")?
        .to_str()?
        .to_owned();
    assert_ne!(
        etag, admin_etag,
        "the stored version's tag is not the shown one's"
    );

    let patch = |body: Value| admin(&node, Method::PATCH, "/dev/dog/1").json(&body).send();
    assert_eq!(
        patch(json!({"secret": "changed"})).await?.status().as_u16(),
        204
    );
    let resp = get(Some(&etag)).await?;
    assert_eq!(
        resp.status().as_u16(),
        304,
        "a hidden change leaves the tag"
    );
    let resp = get(None).await?;
    assert_eq!(
        resp.headers().get(ETAG).and_then(|v| v.to_str().ok()),
        Some(etag.as_str())
    );

    assert_eq!(patch(json!({"name": "Rexa"})).await?.status().as_u16(), 204);
    let resp = get(Some(&etag)).await?;
    assert_eq!(resp.status().as_u16(), 200, "a shown change moves the tag");
    let moved = resp
        .headers()
        .get(ETAG)
        .context("an ETag")?
        .to_str()?
        .to_owned();
    assert_ne!(moved, etag);
    assert_eq!(get(Some(&moved)).await?.status().as_u16(), 304);
    Ok(())
}

/// Writes by a role granting attributes: refused whole, with what is missing, when they
/// name an attribute the role may not write; a PUT keeps what the role may not update.
#[tokio::test]
async fn attribute_grants_check_every_write() -> anyhow::Result<()> {
    let node = node_with_roles("perm-attr-write").await?;
    let before = all_stored(&node).await?;
    let refused = [
        (
            Method::PUT,
            "/dev/dog/1",
            json!({"name": "Max", "owner": "eve"}),
            lacks_attribute("owner", &["update"]),
        ),
        (
            Method::PUT,
            "/dev/dog/9",
            json!({"name": "Max", "owner": "eve"}),
            lacks_attribute("owner", &["insert"]),
        ),
        (
            Method::PATCH,
            "/dev/dog/1",
            json!({"owner": "eve"}),
            lacks_attribute("owner", &["update"]),
        ),
        (
            Method::PATCH,
            "/dev/dog/2",
            json!({"secret": "x"}),
            invalid("Attribute 'secret' does not exist on 'dev.dog'"),
        ),
        (
            Method::POST,
            "/dev/dog/",
            json!({"name": "New", "owner": "eve"}),
            lacks_attribute("owner", &["insert"]),
        ),
        (
            Method::POST,
            "/dev/dog/",
            json!({"name": "New", "secret": "x"}),
            invalid("Attribute 'secret' does not exist on 'dev.dog'"),
        ),
    ];
    for (method, path, body, expected) in refused {
        let got = answer(as_user(&node, VIEWER, method.clone(), path).json(&body)).await?;
        assert_eq!(got, (403, expected), "{method} {path} {body}");
        assert_eq!(
            all_stored(&node).await?,
            before,
            "{method} {path} wrote nothing"
        );
    }

    // A replacement of what the role may write keeps what it may not (Harper restores it).
    let (status, _) =
        answer(as_user(&node, VIEWER, Method::PUT, "/dev/dog/1").json(&json!({"name": "Max"})))
            .await?;
    assert_eq!(status, 204);
    assert_eq!(
        stored(&node, 1).await?,
        json!({"id": 1, "name": "Max", "owner": "ann", "secret": "s1"})
    );
    let (status, _) =
        answer(as_user(&node, VIEWER, Method::PUT, "/dev/dog/5").json(&json!({"name": "Pup"})))
            .await?;
    assert_eq!(status, 204);
    assert_eq!(stored(&node, 5).await?, json!({"id": 5, "name": "Pup"}));
    let (status, _) =
        answer(as_user(&node, VIEWER, Method::PATCH, "/dev/dog/2").json(&json!({"name": "Fid"})))
            .await?;
    assert_eq!(status, 204);
    assert_eq!(
        stored(&node, 2).await?,
        json!({"id": 2, "name": "Fid", "owner": "bob", "secret": "s2"})
    );
    let (status, id) =
        answer(as_user(&node, VIEWER, Method::POST, "/dev/dog/").json(&json!({"name": "New"})))
            .await?;
    assert_eq!(status, 201);
    let id = id.as_str().context("a generated id")?;
    let (status, record) = answer(as_user(
        &node,
        VIEWER,
        Method::GET,
        &format!("/dev/dog/{id}"),
    ))
    .await?;
    assert_eq!((status, record), (200, json!({"id": id, "name": "New"})));

    // Delete needs the table's delete permission only.
    let (status, _) = answer(as_user(&node, VIEWER, Method::DELETE, "/dev/dog/2")).await?;
    assert_eq!(status, 204);
    assert_eq!(stored(&node, 2).await?, Value::Null);
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------------------

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket subscription on `path` as `user`.
async fn websocket(node: &Node, user: (&str, &str), path: &str) -> anyhow::Result<WsStream> {
    let mut request = format!("ws://{}{path}", node.http_addr()).into_client_request()?;
    let auth = as_user(node, user, Method::GET, path).build()?;
    let value = auth
        .headers()
        .get(AUTHORIZATION)
        .context("credentials")?
        .clone();
    request.headers_mut().insert(AUTHORIZATION, value);
    let (socket, _) =
        tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request)).await??;
    Ok(socket)
}

/// What a WebSocket subscriber receives next: a change, or the close frame.
#[derive(Debug, PartialEq)]
enum WsItem {
    Change(Value),
    Closed(u16, String),
}

async fn ws_next(socket: &mut WsStream) -> anyhow::Result<WsItem> {
    loop {
        let message = tokio::time::timeout(DEADLINE, socket.next())
            .await
            .map_err(|_| anyhow!("no WebSocket message within {DEADLINE:?}"))?
            .context("the WebSocket ended without a close frame")??;
        return Ok(match message {
            Message::Text(text) => WsItem::Change(serde_json::from_str(text.as_str())?),
            Message::Close(frame) => {
                let frame = frame.context("a close frame with a reason")?;
                WsItem::Closed(u16::from(frame.code), frame.reason.to_string())
            }
            _ => continue,
        });
    }
}

/// A WebSocket change as `(type, id, value)`.
fn ws_change(item: WsItem) -> anyhow::Result<(String, Value, Value)> {
    match item {
        WsItem::Change(m) => Ok((
            m["type"].as_str().unwrap_or_default().to_owned(),
            m["id"].clone(),
            m["value"].clone(),
        )),
        other => bail!("expected a change, got {other:?}"),
    }
}

/// An open `text/event-stream` answer.
struct Sse {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

async fn sse(node: &Node, user: (&str, &str), path: &str) -> anyhow::Result<Sse> {
    // Not the node's client: its overall timeout would end the stream.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let (username, password) = user;
    let resp = client
        .get(node.http_url(path))
        .basic_auth(username, Some(password))
        .header(ACCEPT, "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 200, "SSE answered {}", resp.status());
    Ok(Sse {
        resp,
        buf: Vec::new(),
    })
}

impl Sse {
    /// The next event as `(event, data)`; `None` once the stream has ended.
    async fn next(&mut self) -> anyhow::Result<Option<(String, String)>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let frame: Vec<u8> = self.buf.drain(..end + 2).collect();
                let frame = String::from_utf8_lossy(&frame);
                let (mut event, mut data) = (None, Vec::new());
                for line in frame.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        event = Some(value.trim_start().to_owned());
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push(value.trim_start().to_owned());
                    }
                }
                if let Some(event) = event {
                    return Ok(Some((event, data.join("\n"))));
                }
                continue;
            }
            let chunk = tokio::time::timeout(DEADLINE, self.resp.chunk())
                .await
                .map_err(|_| anyhow!("no SSE event within {DEADLINE:?}"))??;
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }

    /// The next event, which must be there, with its data as JSON when it is JSON.
    async fn event(&mut self) -> anyhow::Result<(String, Value)> {
        let (event, data) = self.next().await?.context("the SSE stream ended")?;
        let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
        Ok((event, data))
    }
}

async fn admin_write(node: &Node, method: Method, path: &str, body: Value) -> anyhow::Result<()> {
    let resp = admin(node, method.clone(), path).json(&body).send().await?;
    anyhow::ensure!(resp.status() == 204, "{method} {path}: {}", resp.status());
    Ok(())
}

/// WebSocket and SSE events show only what the role may read, and a patch of hidden
/// attributes only is not told at all.
#[tokio::test]
async fn subscriptions_show_only_readable_attributes() -> anyhow::Result<()> {
    let node = node_with_roles("perm-subscribe").await?;
    let mut ws = websocket(&node, VIEWER, "/dev/dog/").await?;
    let mut events = sse(&node, VIEWER, "/dev/dog/").await?;

    let record = json!({"name": "Sub", "owner": "o", "secret": "hidden"});
    admin_write(&node, Method::PUT, "/dev/dog/7", record).await?;
    let shown = json!({"id": 7, "name": "Sub", "owner": "o"});
    assert_eq!(
        ws_change(ws_next(&mut ws).await?)?,
        ("put".into(), json!(7), shown.clone())
    );
    assert_eq!(events.event().await?, ("put".into(), shown));

    admin_write(&node, Method::PATCH, "/dev/dog/7", json!({"secret": "h2"})).await?;
    admin_write(
        &node,
        Method::PATCH,
        "/dev/dog/7",
        json!({"name": "Sub2", "secret": "h3"}),
    )
    .await?;
    let (kind, id, value) = ws_change(ws_next(&mut ws).await?)?;
    assert_eq!(
        (kind.as_str(), id),
        ("patch", json!(7)),
        "the hidden patch was skipped"
    );
    assert_eq!(value["name"], "Sub2");
    assert!(value.get("secret").is_none(), "{value}");
    let (kind, data) = events.event().await?;
    assert_eq!((kind.as_str(), &data["name"]), ("patch", &json!("Sub2")));
    assert!(data.get("secret").is_none(), "{data}");

    admin_write(&node, Method::DELETE, "/dev/dog/7", Value::Null).await?;
    assert_eq!(ws_change(ws_next(&mut ws).await?)?.0, "delete");
    assert_eq!(events.event().await?.0, "delete");
    Ok(())
}

/// An open subscription of a user who is dropped, or whose role stops reading the table,
/// is ended with the reason at the next change, which it does not see.
#[tokio::test]
async fn subscriptions_end_when_the_user_or_role_loses_access() -> anyhow::Result<()> {
    let node = node_with_roles("perm-revoke").await?;
    let reader = json!({"dev": {"tables": {"dog": {
        "read": true, "insert": false, "update": false, "delete": false, "attribute_permissions": []
    }}}});
    const DEMOTED: (&str, &str) = ("demoted", "demoted-password");
    node.op_ok(json!({"operation": "add_role", "role": "reader", "permission": reader}))
        .await?;
    node.op_ok(
        json!({"operation": "add_user", "username": DEMOTED.0, "password": DEMOTED.1,
                      "role": "reader", "active": true}),
    )
    .await?;

    let mut ws_viewer = websocket(&node, VIEWER, "/dev/dog/").await?;
    let mut sse_viewer = sse(&node, VIEWER, "/dev/dog/").await?;
    let mut ws_demoted = websocket(&node, DEMOTED, "/dev/dog/1").await?;
    let mut sse_demoted = sse(&node, DEMOTED, "/dev/dog/1").await?;

    admin_write(&node, Method::PATCH, "/dev/dog/1", json!({"name": "Live"})).await?;
    for ws in [&mut ws_viewer, &mut ws_demoted] {
        assert_eq!(
            ws_change(ws_next(ws).await?)?.0,
            "patch",
            "live before the change"
        );
    }
    for events in [&mut sse_viewer, &mut sse_demoted] {
        assert_eq!(events.event().await?.0, "patch", "live before the change");
    }

    node.op_ok(json!({"operation": "drop_user", "username": VIEWER.0}))
        .await?;
    node.op_ok(
        json!({"operation": "alter_role", "id": "reader", "role": "reader",
                      "permission": {"dev": {"tables": {"dog": {
                          "read": false, "insert": true, "update": false, "delete": false,
                          "attribute_permissions": []}}}}}),
    )
    .await?;
    admin_write(&node, Method::PATCH, "/dev/dog/1", json!({"name": "Gone"})).await?;

    assert_eq!(
        ws_next(&mut ws_viewer).await?,
        WsItem::Closed(1008, "Login failed".into())
    );
    assert_eq!(
        sse_viewer.event().await?,
        ("error".into(), json!("Login failed"))
    );
    assert_eq!(
        sse_viewer.next().await?,
        None,
        "the stream ends after its reason"
    );
    assert_eq!(
        ws_next(&mut ws_demoted).await?,
        WsItem::Closed(1008, NOT_AUTHORIZED.into())
    );
    assert_eq!(
        sse_demoted.event().await?,
        ("error".into(), json!(NOT_AUTHORIZED))
    );
    assert_eq!(
        sse_demoted.next().await?,
        None,
        "the stream ends after its reason"
    );
    Ok(())
}
