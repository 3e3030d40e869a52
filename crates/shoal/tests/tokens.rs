//! Harper's JWT tokens and cookie sessions, end to end: `create_authentication_tokens`,
//! `refresh_operation_token`, `login` and `logout` on real nodes, and the credentials they
//! give used on the Operations API, REST, WebSocket and SSE, on one node and across a
//! two-node cluster. Expiry is waited for by polling until the node refuses, never by
//! sleeping a fixed time.

use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, COOKIE, HOST, ORIGIN, SET_COOKIE};
use serde_json::{Value, json};
use shoal_testkit::cluster::{Member, join, wait_links};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, assert_error, create_table, insert, start,
    start_with, wait_until,
};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Long enough for a loaded machine; the waits end as soon as their condition holds.
const DEADLINE: Duration = Duration::from_secs(20);

type Headers<'a> = &'a [(&'static str, String)];

/// POSTs `op` to the Operations API with exactly `headers`.
async fn ops_with(node: &Node, headers: Headers<'_>, op: Value) -> anyhow::Result<(u16, Value)> {
    let mut request = node.client().post(node.ops_url()).json(&op);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("not JSON: {text}"))?;
    Ok((status, body))
}

/// GETs `path` on the HTTP port with exactly `headers`.
async fn rest_get(node: &Node, path: &str, headers: Headers<'_>) -> anyhow::Result<(u16, Value)> {
    let mut request = node.client().get(node.http_url(path));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

fn bearer(token: &str) -> (&'static str, String) {
    (AUTHORIZATION.as_str(), format!("Bearer {token}"))
}

fn search(table: &str) -> Value {
    json!({"operation": "search_by_id", "database": "dev", "table": table, "ids": [1],
           "get_attributes": ["*"]})
}

/// `create_authentication_tokens` with a username and password in the body and no
/// `Authorization` header, as Harper's documentation shows it.
async fn create_tokens(
    node: &Node,
    user: &str,
    password: &str,
) -> anyhow::Result<(String, String)> {
    let answer = ops_with(
        node,
        &[],
        json!({"operation": "create_authentication_tokens", "username": user, "password": password}),
    )
    .await?;
    if answer.0 != 200 {
        bail!("create_authentication_tokens answered {answer:?}");
    }
    let field = |name: &str| {
        answer.1[name]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {name} in {}", answer.1))
    };
    Ok((field("operation_token")?, field("refresh_token")?))
}

/// A plain user; its role is made first where roles must exist.
async fn add_user(node: &Node, user: &str, role: &str) -> anyhow::Result<()> {
    if role != "super_user" {
        // Where roles are kept, the role must exist first; where not, add_role is unknown
        // and any role name is taken as it is.
        node.ops(
            json!({"operation": "add_role", "role": role, "permission": {"super_user": false}}),
        )
        .await?;
    }
    node.op_ok(
        json!({"operation": "add_user", "username": user, "password": "pw-1",
                       "role": role, "active": true}),
    )
    .await?;
    Ok(())
}

/// The session cookie's value from a `login` answer, checked against Harper's shape.
fn session_cookie(set_cookie: &str, expected_name: &str) -> String {
    let (pair, attributes) = set_cookie.split_once(';').expect("cookie attributes");
    let (name, id) = pair.split_once('=').expect("name=value");
    assert_eq!(name, expected_name, "{set_cookie}");
    assert!(!id.is_empty(), "{set_cookie}");
    assert!(attributes.contains("Path=/"), "{set_cookie}");
    assert!(attributes.contains("HttpOnly"), "{set_cookie}");
    assert!(attributes.contains("Expires="), "{set_cookie}");
    id.to_owned()
}

/// The cookie name Harper gives a request to `addr` (its `Host`).
fn cookie_name(addr: std::net::SocketAddr) -> String {
    let host: String = addr
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{host}-hdb-session")
}

fn cookie_for(addr: std::net::SocketAddr, id: &str) -> (&'static str, String) {
    (COOKIE.as_str(), format!("{}={id}", cookie_name(addr)))
}

/// `login` on the Operations API; the session id from its cookie.
async fn login(node: &Node, user: &str, password: &str) -> anyhow::Result<String> {
    let response = node
        .client()
        .post(node.ops_url())
        .json(&json!({"operation": "login", "username": user, "password": password}))
        .send()
        .await?;
    let status = response.status().as_u16();
    let set_cookie = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await?;
    if status != 200 {
        bail!("login answered {status} {body}");
    }
    assert_eq!(body, json!({"message": "Login successful"}));
    let set_cookie = set_cookie.context("login set no cookie")?;
    // Over plain HTTP: a cookie marked `Secure` would never be sent back.
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    Ok(session_cookie(&set_cookie, &cookie_name(node.ops_addr())))
}

/// Tokens are made from a password (or the caller's own credentials), by any user, and
/// the operation token works everywhere Basic does: the Operations API, REST, WebSocket
/// and SSE. Bad tokens, tampered tokens and refresh tokens used as operation tokens are
/// refused as Harper refuses them.
#[tokio::test]
async fn tokens_work_everywhere_basic_does() -> anyhow::Result<()> {
    let node = start("tokens").await?;
    create_table(&node, "dog").await?;
    insert(&node, "dog", json!([{"id": 1, "name": "Harper"}])).await?;

    // Without any credentials, or with ones that do not hold.
    let none = ops_with(
        &node,
        &[],
        json!({"operation": "create_authentication_tokens"}),
    )
    .await?;
    assert_error(&none, 401, "Must login");
    for body in [
        json!({"operation": "create_authentication_tokens", "username": DEFAULT_ADMIN_USER}),
        json!({"operation": "create_authentication_tokens", "username": DEFAULT_ADMIN_USER,
               "password": "wrong"}),
        json!({"operation": "create_authentication_tokens", "username": "nobody",
               "password": "pw"}),
    ] {
        assert_error(
            &ops_with(&node, &[], body).await?,
            401,
            "invalid credentials",
        );
    }
    // Only the credential operations go without credentials.
    assert_error(
        &ops_with(&node, &[], search("dog")).await?,
        401,
        "Must login",
    );

    let (operation, refresh) =
        create_tokens(&node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    // With the caller's own Basic credentials instead.
    let mine = node
        .op_ok(json!({"operation": "create_authentication_tokens"}))
        .await?;
    assert!(
        mine["operation_token"].is_string() && mine["refresh_token"].is_string(),
        "{mine}"
    );
    // Any user, not only super users.
    add_user(&node, "reader", "reader_role").await?;
    create_tokens(&node, "reader", "pw-1").await?;
    let (status, body) = node
        .ops_as(
            "reader",
            "pw-1",
            json!({"operation": "create_authentication_tokens"}),
        )
        .await?;
    assert_eq!(status, 200, "{body}");

    // Operations API.
    let (status, rows) = ops_with(&node, &[bearer(&operation)], search("dog")).await?;
    assert_eq!(
        (status, rows[0]["name"].clone()),
        (200, json!("Harper")),
        "{rows}"
    );
    // REST.
    let (status, record) = rest_get(&node, "/dev/dog/1", &[bearer(&operation)]).await?;
    assert_eq!(
        (status, record["name"].clone()),
        (200, json!("Harper")),
        "{record}"
    );

    // WebSocket: the upgrade is authenticated by the bearer, and changes arrive.
    let mut request = format!("ws://{}/dev/dog/2", node.http_addr()).into_client_request()?;
    request
        .headers_mut()
        .insert(AUTHORIZATION, format!("Bearer {operation}").parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    // SSE, likewise.
    let mut sse = node
        .client()
        .get(node.http_url("/dev/dog/2"))
        .header(ACCEPT, "text/event-stream")
        .header(AUTHORIZATION, format!("Bearer {operation}"))
        .timeout(DEADLINE)
        .send()
        .await?;
    assert_eq!(sse.status(), 200);
    insert(&node, "dog", json!([{"id": 2, "name": "Lassie"}])).await?;
    let message = tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(m)) if m.is_text() && m.to_text()?.contains("Lassie") => {
                    return anyhow::Ok(());
                }
                Some(Ok(_)) => continue,
                other => bail!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await;
    message.context("no WebSocket message")??;
    ws.close(None).await.ok();
    let mut seen = String::new();
    while !seen.contains("Lassie") {
        let chunk = tokio::time::timeout(DEADLINE, sse.chunk())
            .await
            .context("no SSE event")??
            .context("the SSE stream ended")?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(sse);
    // Neither opens with a bad token.
    let mut bad = format!("ws://{}/dev/dog/2", node.http_addr()).into_client_request()?;
    bad.headers_mut()
        .insert(AUTHORIZATION, "Bearer BAD_TOKEN".parse()?);
    assert!(tokio_tungstenite::connect_async(bad).await.is_err());
    let refused = node
        .client()
        .get(node.http_url("/dev/dog/2"))
        .header(ACCEPT, "text/event-stream")
        .header(AUTHORIZATION, "Bearer BAD_TOKEN")
        .send()
        .await?;
    assert_eq!(refused.status(), 401);

    // A token whose payload names another user, its signature kept.
    let parts: Vec<&str> = operation.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut claims: Value = serde_json::from_slice(&b64.decode(parts[1])?)?;
    assert_eq!(claims["sub"], "operation");
    claims["username"] = json!("reader");
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64.encode(claims.to_string()),
        parts[2]
    );
    for token in ["BAD_TOKEN", tampered.as_str(), refresh.as_str()] {
        let answer = ops_with(&node, &[bearer(token)], search("dog")).await?;
        assert_error(&answer, 401, "invalid token");
        let answer = rest_get(&node, "/dev/dog/1", &[bearer(token)]).await?;
        assert_error(&answer, 401, "invalid token");
    }

    // refresh_operation_token: the refresh token as the bearer, or in the body.
    let refresh_op = json!({"operation": "refresh_operation_token"});
    let (status, fresh) = ops_with(&node, &[bearer(&refresh)], refresh_op.clone()).await?;
    assert_eq!(status, 200, "{fresh}");
    assert_eq!(fresh.as_object().map(|o| o.len()), Some(1), "{fresh}");
    let fresh = fresh["operation_token"]
        .as_str()
        .context("operation_token")?;
    assert_eq!(
        ops_with(&node, &[bearer(fresh)], search("dog")).await?.0,
        200
    );
    let in_body = json!({"operation": "refresh_operation_token", "refresh_token": refresh});
    let (status, body) = ops_with(&node, &[], in_body).await?;
    assert_eq!(status, 200, "{body}");
    // An operation token is no refresh token; a bad bearer is refused even with a good
    // refresh token in the body.
    for token in [operation.as_str(), "BAD_TOKEN", tampered.as_str()] {
        let answer = ops_with(&node, &[bearer(token)], refresh_op.clone()).await?;
        assert_error(&answer, 401, "invalid token");
        let in_body = json!({"operation": "refresh_operation_token", "refresh_token": refresh});
        let answer = ops_with(&node, &[bearer(token)], in_body).await?;
        if token == operation {
            // A caller authenticated by its operation token may pass the refresh token.
            assert_eq!(answer.0, 200, "{answer:?}");
        } else {
            assert_error(&answer, 401, "invalid token");
        }
    }
    // Without credentials, a body that is no operation is answered as before: 401.
    let response = node
        .client()
        .post(node.ops_url())
        .body("{not json")
        .send()
        .await?;
    assert_eq!(response.status(), 401);
    Ok(())
}

/// Operation tokens expire after `auth.operation_token_timeout_seconds` ("token
/// expired"), and a refresh gives a new one; refresh tokens expire after theirs.
#[tokio::test]
async fn tokens_expire_and_refresh() -> anyhow::Result<()> {
    let node = start_with("expiry", &["--auth-operation-token-timeout-seconds", "1"]).await?;
    create_table(&node, "dog").await?;
    let (operation, refresh) =
        create_tokens(&node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    let answer = ops_with(&node, &[bearer(&operation)], search("dog")).await?;
    assert_eq!(
        answer.0, 200,
        "{answer:?}: a fresh token lasts at least a second"
    );
    let expired = async |token: &str| -> anyhow::Result<()> {
        wait_until(DEADLINE, "the operation token expires", async || {
            let answer = ops_with(&node, &[bearer(token)], search("dog")).await?;
            if answer.0 == 200 {
                return Ok(false);
            }
            assert_error(&answer, 401, "token expired");
            Ok(true)
        })
        .await
    };
    expired(&operation).await?;
    let answer = rest_get(&node, "/dev/dog/1", &[bearer(&operation)]).await?;
    assert_error(&answer, 401, "token expired");

    let refresh_op = json!({"operation": "refresh_operation_token"});
    let (status, fresh) = ops_with(&node, &[bearer(&refresh)], refresh_op).await?;
    assert_eq!(status, 200, "{fresh}");
    let fresh = fresh["operation_token"]
        .as_str()
        .context("operation_token")?;
    expired(fresh).await?;

    // A node whose refresh tokens last a second.
    let short = start_with(
        "short-refresh",
        &["--auth-refresh-token-timeout-seconds", "1"],
    )
    .await?;
    let (_, refresh) = create_tokens(&short, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    wait_until(DEADLINE, "the refresh token expires", async || {
        let op = json!({"operation": "refresh_operation_token"});
        let answer = ops_with(&short, &[bearer(&refresh)], op).await?;
        if answer.0 == 200 {
            return Ok(false);
        }
        assert_error(&answer, 401, "token expired");
        Ok(true)
    })
    .await?;
    // In the body, Harper's operation answers it 403.
    let in_body = json!({"operation": "refresh_operation_token", "refresh_token": refresh});
    assert_error(&ops_with(&short, &[], in_body).await?, 403, "token expired");
    Ok(())
}

/// `login` sets Harper's cookie; the session works on both ports (the cookie named for
/// each), not under another origin, and `logout` ends it everywhere.
#[tokio::test]
async fn login_logout_cookie_flow() -> anyhow::Result<()> {
    let node = start("sessions").await?;
    create_table(&node, "dog").await?;
    insert(&node, "dog", json!([{"id": 1, "name": "Harper"}])).await?;

    let wrong = json!({"operation": "login", "username": DEFAULT_ADMIN_USER, "password": "no"});
    assert_error(&ops_with(&node, &[], wrong).await?, 401, "Login failed");
    let id = login(&node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;

    let ops_cookie = cookie_for(node.ops_addr(), &id);
    let http_cookie = cookie_for(node.http_addr(), &id);
    let (status, rows) = ops_with(&node, std::slice::from_ref(&ops_cookie), search("dog")).await?;
    assert_eq!(status, 200, "{rows}");
    let (status, record) =
        rest_get(&node, "/dev/dog/1", std::slice::from_ref(&http_cookie)).await?;
    assert_eq!((status, record["name"].clone()), (200, json!("Harper")));
    // The cookie named for the other port, or a request from another origin: no session.
    assert_error(
        &rest_get(&node, "/dev/dog/1", std::slice::from_ref(&ops_cookie)).await?,
        401,
        "Must login",
    );
    let foreign = [
        http_cookie.clone(),
        (ORIGIN.as_str(), "http://evil.example".into()),
    ];
    assert_error(
        &rest_get(&node, "/dev/dog/1", &foreign).await?,
        401,
        "Must login",
    );
    // A Host of another name needs the cookie of that name.
    let renamed = [
        (COOKIE.as_str(), format!("other_host-hdb-session={id}")),
        (HOST.as_str(), "other.host".into()),
    ];
    assert_eq!(rest_get(&node, "/dev/dog/1", &renamed).await?.0, 200);

    let response = node
        .client()
        .post(node.ops_url())
        .header(ops_cookie.0, &ops_cookie.1)
        .json(&json!({"operation": "logout"}))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let cleared = response
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        cleared.starts_with(&format!("{}=;", cookie_name(node.ops_addr()))),
        "{cleared}"
    );
    assert_eq!(
        response.json::<Value>().await?,
        json!({"message": "Logout successful"})
    );
    assert_error(
        &ops_with(&node, std::slice::from_ref(&ops_cookie), search("dog")).await?,
        401,
        "Must login",
    );
    assert_error(
        &rest_get(&node, "/dev/dog/1", std::slice::from_ref(&http_cookie)).await?,
        401,
        "Must login",
    );
    // Any user logs in and out.
    add_user(&node, "reader", "reader_role").await?;
    let reader = login(&node, "reader", "pw-1").await?;
    let logout = ops_with(
        &node,
        &[cookie_for(node.ops_addr(), &reader)],
        json!({"operation": "logout"}),
    )
    .await?;
    assert_eq!(logout, (200, json!({"message": "Logout successful"})));
    Ok(())
}

/// A disabled or dropped user's tokens and sessions are refused on the very next
/// request; enabled again, they work again.
#[tokio::test]
async fn dropped_and_inactive_users_lose_tokens_and_sessions_at_once() -> anyhow::Result<()> {
    let node = start("revoked").await?;
    create_table(&node, "dog").await?;
    add_user(&node, "bob", "super_user").await?;
    let (operation, refresh) = create_tokens(&node, "bob", "pw-1").await?;
    let session = login(&node, "bob", "pw-1").await?;
    let token = [bearer(&operation)];
    let cookie = [cookie_for(node.ops_addr(), &session)];
    let http_cookie = [cookie_for(node.http_addr(), &session)];
    let refresh_op = json!({"operation": "refresh_operation_token"});
    assert_eq!(ops_with(&node, &token, search("dog")).await?.0, 200);
    assert_eq!(ops_with(&node, &cookie, search("dog")).await?.0, 200);

    let alter =
        |active: bool| json!({"operation": "alter_user", "username": "bob", "active": active});
    node.op_ok(alter(false)).await?;
    assert_error(
        &ops_with(&node, &token, search("dog")).await?,
        401,
        "invalid token",
    );
    assert_error(
        &rest_get(&node, "/dev/dog/1", &token).await?,
        401,
        "invalid token",
    );
    assert_error(
        &ops_with(&node, &[bearer(&refresh)], refresh_op.clone()).await?,
        401,
        "invalid token",
    );
    let inactive = "Cannot complete request: User is inactive";
    assert_error(
        &ops_with(&node, &cookie, search("dog")).await?,
        401,
        inactive,
    );
    assert_error(
        &rest_get(&node, "/dev/dog/1", &http_cookie).await?,
        401,
        inactive,
    );

    node.op_ok(alter(true)).await?;
    assert_eq!(ops_with(&node, &token, search("dog")).await?.0, 200);
    assert_eq!(ops_with(&node, &cookie, search("dog")).await?.0, 200);

    node.op_ok(json!({"operation": "drop_user", "username": "bob"}))
        .await?;
    assert_error(
        &ops_with(&node, &token, search("dog")).await?,
        401,
        "invalid token",
    );
    assert_error(
        &ops_with(&node, &[bearer(&refresh)], refresh_op).await?,
        401,
        "invalid token",
    );
    assert_error(
        &ops_with(&node, &cookie, search("dog")).await?,
        401,
        "Must login",
    );
    assert_error(
        &rest_get(&node, "/dev/dog/1", &http_cookie).await?,
        401,
        "Must login",
    );
    Ok(())
}

/// Two nodes that each made a signing key before they joined verify each other's tokens
/// once `system` has replicated, then sign with one key; a session made on one works on
/// the other.
#[tokio::test]
async fn tokens_and_sessions_work_on_every_node_of_a_cluster() -> anyhow::Result<()> {
    let a = Member::start("a", "127.0.131.1", false, &[]).await?;
    let b = Member::start("b", "127.0.131.2", false, &[]).await?;
    let (from_a, _) = create_tokens(&a.node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    let (from_b, _) = create_tokens(&b.node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    let describe = json!({"operation": "describe_all"});
    assert_error(
        &ops_with(&b.node, &[bearer(&from_a)], describe.clone()).await?,
        401,
        "invalid token",
    );
    join(&a, &b).await?;
    wait_links(&[&a, &b], &["system"]).await?;
    for (node, token) in [(&b.node, &from_a), (&a.node, &from_b)] {
        wait_until(
            DEADLINE,
            "each node accepts the other's token",
            async || Ok(ops_with(node, &[bearer(token)], describe.clone()).await?.0 == 200),
        )
        .await?;
    }
    let kid = |token: &str| -> anyhow::Result<Value> {
        let header = token.split('.').next().context("header")?;
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header)?,
        )?;
        Ok(header["kid"].clone())
    };
    wait_until(DEADLINE, "both nodes sign with the same key", async || {
        let (ta, _) = create_tokens(&a.node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
        let (tb, _) = create_tokens(&b.node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
        Ok(kid(&ta)? == kid(&tb)?)
    })
    .await?;

    let session = login(&a.node, DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD).await?;
    let on_b = [cookie_for(b.node.ops_addr(), &session)];
    wait_until(DEADLINE, "a's session works on b", async || {
        Ok(ops_with(&b.node, &on_b, describe.clone()).await?.0 == 200)
    })
    .await?;
    let logout = ops_with(&b.node, &on_b, json!({"operation": "logout"})).await?;
    assert_eq!(logout.0, 200, "{logout:?}");
    let on_a = [cookie_for(a.node.ops_addr(), &session)];
    wait_until(
        DEADLINE,
        "the logout on b ends the session on a",
        async || Ok(ops_with(&a.node, &on_a, describe.clone()).await?.0 == 401),
    )
    .await?;
    Ok(())
}
