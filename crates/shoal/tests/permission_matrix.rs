//! The permission matrix: each kind of role (super user, structure user, a role with table
//! grants, a role with attribute grants, a role with no grants) × each interface
//! (Operations API, REST, WebSocket, Server-Sent Events) × each action (read, insert,
//! update, delete, structure, user and cluster operations), against one real node.
//!
//! What is allowed must succeed; everything else must answer 403 with Harper's body — and
//! a read of the whole table as the admin afterwards must show that a refused write wrote
//! nothing. Reads by the attribute role must never carry the attribute it may not read.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use serde_json::{Value, json};
use shoal_testkit::{Node, admin, create_table, start, strip_timestamps};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const NOT_AUTHORIZED: &str =
    "This operation is not authorized due to role restrictions and/or invalid database items";
/// Longest wait for a subscription's handshake or first event.
const DEADLINE: Duration = Duration::from_secs(10);

/// One kind of role, and what it may do to `dev.dog`.
struct Kind {
    name: &'static str,
    permission: Value,
    read: bool,
    insert: bool,
    update: bool,
    delete: bool,
    structure: bool,
    admin: bool,
    /// The attribute it may not read (`secret`) is filtered from what it reads.
    filtered: bool,
}

fn kinds() -> Vec<Kind> {
    let attribute = |name: &str, allowed: bool| json!({"attribute_name": name, "read": allowed, "insert": allowed, "update": allowed});
    vec![
        Kind {
            name: "super",
            permission: json!({"super_user": true}),
            read: true,
            insert: true,
            update: true,
            delete: true,
            structure: true,
            admin: true,
            filtered: false,
        },
        Kind {
            name: "structure",
            permission: json!({"super_user": false, "structure_user": ["dev"]}),
            read: true,
            insert: true,
            update: true,
            delete: true,
            structure: true,
            admin: false,
            filtered: false,
        },
        Kind {
            name: "table",
            permission: json!({"super_user": false, "dev": {"tables": {"dog": {
                "read": true, "insert": true, "update": false, "delete": false,
                "attribute_permissions": []}}}}),
            read: true,
            insert: true,
            update: false,
            delete: false,
            structure: false,
            admin: false,
            filtered: false,
        },
        Kind {
            name: "attribute",
            permission: json!({"super_user": false, "dev": {"tables": {"dog": {
                "read": true, "insert": true, "update": true, "delete": false,
                "attribute_permissions": [attribute("name", true), attribute("secret", false)]}}}}),
            read: true,
            insert: true,
            update: true,
            delete: false,
            structure: false,
            admin: false,
            filtered: true,
        },
        Kind {
            name: "none",
            permission: json!({"super_user": false}),
            read: false,
            insert: false,
            update: false,
            delete: false,
            structure: false,
            admin: false,
            filtered: false,
        },
    ]
}

/// A user of one kind, with the records it acts on.
struct Actor<'a> {
    node: &'a Node,
    kind: &'a Kind,
    user: String,
    password: &'static str,
    /// Its own records: `base` is read and updated, `base + 1` deleted, `base + 2` inserted.
    base: u64,
}

impl Actor<'_> {
    async fn op(&self, op: Value) -> anyhow::Result<(u16, Value)> {
        self.node.ops_as(&self.user, self.password, op).await
    }

    fn rest(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.node
            .client()
            .request(method, self.node.http_url(path))
            .basic_auth(&self.user, Some(self.password))
    }

    async fn rest_send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let resp = rb.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// The whole table as the admin reads it, timestamps aside.
async fn dump(node: &Node) -> anyhow::Result<Value> {
    let rows = node
        .op_ok(
            json!({"operation": "search_by_value", "database": "dev", "table": "dog",
            "search_attribute": "id", "search_value": "*", "get_attributes": ["*"]}),
        )
        .await?;
    let mut rows: Vec<Value> = rows
        .as_array()
        .into_iter()
        .flatten()
        .map(strip_timestamps)
        .collect();
    rows.sort_by_key(|row| row["id"].to_string());
    Ok(Value::Array(rows))
}

/// Asserts an answer: success when `allowed`, else Harper's 403 body; and that a refused
/// write left the table as it was.
async fn expect(
    node: &Node,
    what: &str,
    allowed: bool,
    answer: (u16, Value),
    before: &Value,
) -> anyhow::Result<()> {
    let (status, body) = &answer;
    if allowed {
        assert!(
            (200..300).contains(status),
            "{what}: expected success, got {answer:?}"
        );
    } else {
        assert_eq!(*status, 403, "{what}: expected 403, got {answer:?}");
        assert_eq!(body["error"], json!(NOT_AUTHORIZED), "{what}: {body}");
        assert!(
            body["unauthorized_access"].is_array() && body["invalid_schema_items"].is_array(),
            "{what}: Harper's 403 body, got {body}"
        );
        assert_eq!(&dump(node).await?, before, "{what} was refused but wrote");
    }
    Ok(())
}

fn assert_filtered(kind: &Kind, what: &str, record: &Value) {
    assert_eq!(
        record.get("secret").is_some(),
        !kind.filtered,
        "{what} by {}: {record}",
        kind.name
    );
    assert!(
        record.get("name").is_some(),
        "{what} by {}: {record}",
        kind.name
    );
}

#[tokio::test]
async fn every_role_kind_through_every_interface() -> anyhow::Result<()> {
    let node = start("perm-matrix").await?;
    create_table(&node, "dog").await?;
    let kinds = kinds();
    let mut records = Vec::new();
    for i in 0..kinds.len() as u64 {
        for id in [i * 10, i * 10 + 1] {
            records.push(json!({"id": id, "name": format!("dog-{id}"), "secret": "hidden"}));
        }
    }
    node.op_ok(
        json!({"operation": "insert", "database": "dev", "table": "dog", "records": records}),
    )
    .await?;

    // Every role first: the operations below name the `none` role.
    for kind in &kinds {
        node.op_ok(
            json!({"operation": "add_role", "role": kind.name, "permission": kind.permission}),
        )
        .await?;
        node.op_ok(
            json!({"operation": "add_user", "username": format!("user-{}", kind.name),
            "password": "pw", "role": kind.name, "active": true}),
        )
        .await?;
    }
    for (i, kind) in kinds.iter().enumerate() {
        let actor = Actor {
            node: &node,
            kind,
            user: format!("user-{}", kind.name),
            password: "pw",
            base: i as u64 * 10,
        };
        operations_api(&actor).await?;
        rest(&actor).await?;
        subscriptions(&actor).await?;
    }
    Ok(())
}

async fn operations_api(a: &Actor<'_>) -> anyhow::Result<()> {
    let (node, kind, base) = (a.node, a.kind, a.base);
    let what = |action: &str| format!("ops {action} by {}", kind.name);
    let table = json!({"database": "dev", "table": "dog"});
    let with = |op: &str, extra: Value| {
        let mut body = table.clone();
        body["operation"] = json!(op);
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    };

    let before = dump(node).await?;
    let answer = a
        .op(with(
            "search_by_id",
            json!({"ids": [base], "get_attributes": ["*"]}),
        ))
        .await?;
    if kind.read {
        assert_filtered(kind, &what("search_by_id"), &answer.1[0]);
    }
    expect(node, &what("read"), kind.read, answer, &before).await?;

    let answer = a
        .op(with(
            "insert",
            json!({"records": [{"id": base + 2, "name": "new"}]}),
        ))
        .await?;
    expect(node, &what("insert"), kind.insert, answer, &before).await?;

    let before = dump(node).await?;
    let answer = a
        .op(with(
            "update",
            json!({"records": [{"id": base, "name": "updated"}]}),
        ))
        .await?;
    expect(node, &what("update"), kind.update, answer, &before).await?;

    let before = dump(node).await?;
    let answer = a.op(with("delete", json!({"ids": [base + 1]}))).await?;
    expect(node, &what("delete"), kind.delete, answer, &before).await?;

    let before = dump(node).await?;
    let answer = a
        .op(json!({"operation": "create_table", "database": "dev",
            "table": format!("made_by_{}", kind.name), "primary_key": "id"}))
        .await?;
    expect(node, &what("create_table"), kind.structure, answer, &before).await?;
    let tables = node
        .op_ok(json!({"operation": "describe_database", "database": "dev"}))
        .await?;
    assert_eq!(
        tables.get(format!("made_by_{}", kind.name)).is_some(),
        kind.structure,
        "{}: {tables}",
        what("create_table")
    );

    let answer = a
        .op(
            json!({"operation": "add_user", "username": format!("made-by-{}", kind.name),
            "password": "x", "role": "none", "active": true}),
        )
        .await?;
    expect(node, &what("add_user"), kind.admin, answer, &before).await?;
    let users = node.op_ok(json!({"operation": "list_users"})).await?;
    let made = users.as_array().is_some_and(|u| {
        u.iter()
            .any(|u| u["username"] == json!(format!("made-by-{}", kind.name)))
    });
    assert_eq!(made, kind.admin, "{}", what("add_user"));

    let answer = a.op(json!({"operation": "cluster_status"})).await?;
    expect(node, &what("cluster_status"), kind.admin, answer, &before).await?;
    Ok(())
}

async fn rest(a: &Actor<'_>) -> anyhow::Result<()> {
    let (node, kind, base) = (a.node, a.kind, a.base);
    let what = |action: &str| format!("REST {action} by {}", kind.name);

    let before = dump(node).await?;
    let answer = a
        .rest_send(a.rest(Method::GET, &format!("/dev/dog/{base}")))
        .await?;
    if kind.read {
        assert_filtered(kind, &what("GET"), &answer.1);
    }
    expect(node, &what("GET"), kind.read, answer, &before).await?;

    let answer = a
        .rest_send(a.rest(Method::GET, "/dev/dog/?id=ge=0"))
        .await?;
    if kind.read {
        // Records the actors added have no `secret` to hide: some of the seeded must show it.
        let records = answer.1.as_array().cloned().unwrap_or_default();
        let shown = records.iter().filter(|r| r.get("secret").is_some()).count();
        assert_eq!(
            shown > 0,
            !kind.filtered,
            "{}: {records:?}",
            what("GET collection")
        );
    }
    expect(node, &what("GET collection"), kind.read, answer, &before).await?;

    let answer = a
        .rest_send(
            a.rest(Method::POST, "/dev/dog/")
                .json(&json!({"name": "posted"})),
        )
        .await?;
    expect(node, &what("POST"), kind.insert, answer, &before).await?;

    let before = dump(node).await?;
    let path = format!("/dev/dog/{base}");
    let answer = a
        .rest_send(
            a.rest(Method::PATCH, &path)
                .json(&json!({"name": "patched"})),
        )
        .await?;
    expect(node, &what("PATCH"), kind.update, answer, &before).await?;

    let before = dump(node).await?;
    let answer = a
        .rest_send(a.rest(Method::DELETE, &format!("/dev/dog/{}", base + 1)))
        .await?;
    // The Operations API delete may already have removed it: 404 is a success here.
    let answer = match answer {
        (404, _) if kind.delete => (204, Value::Null),
        other => other,
    };
    expect(node, &what("DELETE"), kind.delete, answer, &before).await?;
    Ok(())
}

/// A WebSocket and an SSE subscription on the actor's record: opened (and then given the
/// record's next change, filtered) when it may read, refused with 403 when not.
async fn subscriptions(a: &Actor<'_>) -> anyhow::Result<()> {
    let (node, kind, base) = (a.node, a.kind, a.base);
    let path = format!("/dev/dog/{base}");
    let authorization = a
        .rest(Method::GET, "/")
        .build()?
        .headers()
        .get(AUTHORIZATION)
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no Authorization header"))?;

    let mut request = format!("ws://{}{path}", node.http_addr()).into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, authorization.clone());
    let ws = tokio::time::timeout(DEADLINE, tokio_tungstenite::connect_async(request)).await?;
    let sse = node
        .client()
        .get(node.http_url(&path))
        .header(ACCEPT, "text/event-stream")
        .header(AUTHORIZATION, authorization)
        .send()
        .await?;
    if !kind.read {
        match ws {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(
                    response.status().as_u16(),
                    403,
                    "WebSocket by {}",
                    kind.name
                )
            }
            other => panic!("WebSocket by {} must be refused: {other:?}", kind.name),
        }
        assert_eq!(sse.status().as_u16(), 403, "SSE by {}", kind.name);
        let body: Value = sse.json().await?;
        assert_eq!(body["error"], json!(NOT_AUTHORIZED));
        return Ok(());
    }
    let (mut ws, _) = ws?;
    assert_eq!(sse.status().as_u16(), 200, "SSE by {}", kind.name);
    // Subscriptions start now: the change made after both are open is the first event.
    let changed = json!({"name": format!("seen-by-{}", kind.name), "secret": "hidden"});
    admin(node, Method::PATCH, &path)
        .json(&changed)
        .send()
        .await?
        .error_for_status()?;

    let message = loop {
        let next = tokio::time::timeout(DEADLINE, ws.next()).await?;
        match next {
            Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                break serde_json::from_str::<Value>(&text)?;
            }
            Some(Ok(_)) => continue,
            other => anyhow::bail!("WebSocket by {} ended: {other:?}", kind.name),
        }
    };
    assert_filtered(kind, "WebSocket event", &message["value"]);

    let mut sse = sse;
    let mut text = String::new();
    let data = loop {
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("data:")) {
            break serde_json::from_str::<Value>(line.trim())?;
        }
        let chunk = tokio::time::timeout(DEADLINE, sse.chunk()).await??;
        match chunk {
            Some(chunk) => text.push_str(&String::from_utf8_lossy(&chunk)),
            None => anyhow::bail!("SSE by {} ended: {text}", kind.name),
        }
    };
    assert_filtered(kind, "SSE event", &data);
    Ok(())
}
