//! End-to-end tests of the secure ports: the Operations API and the HTTP port over TLS
//! beside the plain ones, with a generated or a configured certificate, client
//! certificate logins (mTLS), and the handshake timeout. Clients are reqwest (rustls) and
//! the `curl` command line.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use reqwest::header::ACCEPT;
use serde_json::{Value, json};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Issued, Node, TestCa, create_table, https_client,
    insert, start_with, wait_until,
};
use tokio::io::AsyncReadExt;

/// Longest wait for an answer or an event.
const DEADLINE: Duration = Duration::from_secs(10);

/// Where a node keeps the certificate it generated, and the CA clients trust.
fn generated_ca(node: &Node) -> PathBuf {
    node.root().join("keys").join("tls").join("ca.pem")
}

fn secure_ports() -> [&'static str; 4] {
    ["--ops-secure-port", "0", "--http-secure-port", "0"]
}

fn https_url(node: &Node, path: &str) -> anyhow::Result<String> {
    let addr = node.https_addr().context("the node serves no https port")?;
    Ok(format!("https://{addr}{path}"))
}

fn ops_tls_url(node: &Node) -> anyhow::Result<String> {
    let addr = node
        .ops_tls_addr()
        .context("the node serves no ops_tls port")?;
    Ok(format!("https://{addr}/"))
}

/// Status and JSON body of a request.
async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Value)> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    let body = serde_json::from_str(&text).with_context(|| format!("not JSON: {text:?}"))?;
    Ok((status, body))
}

fn admin(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    request.basic_auth(DEFAULT_ADMIN_USER, Some(DEFAULT_ADMIN_PASSWORD))
}

/// Runs `curl` with `args` (silent, failing on no status); its exit code and stdout.
async fn curl(args: &[&str]) -> anyhow::Result<(i32, String)> {
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "10",
            "--noproxy",
            "*",
        ])
        .args(args)
        .output()
        .await
        .context("running curl (installed by .ci/run)")?;
    let code = out.status.code().unwrap_or(-1);
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `curl`, which must succeed; its stdout as JSON.
async fn curl_json(args: &[&str]) -> anyhow::Result<Value> {
    let (code, out) = curl(args).await?;
    ensure!(code == 0, "curl {args:?} exited {code}: {out}");
    serde_json::from_str(&out).with_context(|| format!("curl {args:?}: not JSON: {out:?}"))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))
}

/// Reads `GET path` as Server-Sent Events over HTTPS until an event's data holds `want`.
async fn sse_until(client: &reqwest::Client, url: &str, want: &str) -> anyhow::Result<String> {
    let mut response = admin(client.get(url).header(ACCEPT, "text/event-stream"))
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "SSE on {url}: {}",
        response.status()
    );
    let mut seen = String::new();
    while !seen
        .lines()
        .any(|l| l.starts_with("data:") && l.contains(want))
    {
        let chunk = tokio::time::timeout(DEADLINE, response.chunk())
            .await
            .map_err(|_| anyhow!("no event with {want:?} within {DEADLINE:?}; got {seen:?}"))??
            .ok_or_else(|| anyhow!("the stream ended; got {seen:?}"))?;
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    Ok(seen)
}

#[tokio::test]
async fn a_generated_certificate_serves_both_apis_beside_the_plain_ports() -> anyhow::Result<()> {
    let mut node = start_with("tls-generated", &secure_ports()).await?;
    let ca_path = generated_ca(&node);
    let ca = std::fs::read_to_string(&ca_path)?;
    let client = https_client(&ca, None)?;

    // The Operations API over TLS, and the plain one beside it.
    create_table(&node, "dog").await?;
    let (status, body) = answer(admin(client.post(ops_tls_url(&node)?)).json(&json!({
        "operation": "insert", "database": "dev", "table": "dog",
        "records": [{"id": 1, "name": "Harper"}]
    })))
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["inserted_hashes"], json!([1]));

    // REST over TLS, and plain REST beside it.
    let (status, body) = answer(admin(client.get(https_url(&node, "/dev/dog/1")?))).await?;
    assert_eq!((status, &body["name"]), (200, &json!("Harper")), "{body}");
    assert_eq!(node.http_get("/health").await?.0, 200);
    let (status, _) = answer(client.get(https_url(&node, "/dev/dog/1")?)).await?;
    assert_eq!(status, 401, "TLS alone logs nobody in");

    // A session cookie set over HTTPS is for HTTPS only, as Harper sets it.
    let login = client
        .post(ops_tls_url(&node)?)
        .json(
            &json!({"operation": "login", "username": DEFAULT_ADMIN_USER,
            "password": DEFAULT_ADMIN_PASSWORD}),
        )
        .send()
        .await?;
    let cookie = login
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        cookie.contains("-hdb-session=") && cookie.ends_with("; Secure; SameSite=None"),
        "{cookie}"
    );

    // curl, trusting the generated CA.
    let ca_arg = path_str(&ca_path)?;
    let health = curl_json(&["--cacert", ca_arg, &https_url(&node, "/health")?]).await?;
    assert_eq!(health["status"], "ok");
    let auth = format!("{DEFAULT_ADMIN_USER}:{DEFAULT_ADMIN_PASSWORD}");
    let describe = curl_json(&[
        "--cacert",
        ca_arg,
        "--user",
        &auth,
        "--header",
        "content-type: application/json",
        "--data",
        r#"{"operation": "describe_table", "database": "dev", "table": "dog"}"#,
        &ops_tls_url(&node)?,
    ])
    .await?;
    assert_eq!(describe["name"], "dog", "{describe}");
    let (code, _) = curl(&[&https_url(&node, "/health")?]).await?;
    assert_ne!(code, 0, "curl trusts nothing it was not told to");

    // A subscription over TLS sees a write made after it opened.
    let url = https_url(&node, "/dev/dog/")?;
    let events = tokio::spawn({
        let client = client.clone();
        async move { sse_until(&client, &url, "Subscribed over TLS").await }
    });
    wait_until(
        DEADLINE,
        "the SSE subscription delivers the new record",
        async || {
            node.op_ok(json!({
                "operation": "upsert", "database": "dev", "table": "dog",
                "records": [{"id": 2, "name": "Subscribed over TLS"}]
            }))
            .await?;
            Ok(events.is_finished())
        },
    )
    .await?;
    events.await??;

    // The certificate is kept: after a restart the same CA still verifies the node.
    node.terminate().await?;
    node.restart().await?;
    assert_eq!(std::fs::read_to_string(&ca_path)?, ca);
    let client = https_client(&ca, None)?;
    let (status, body) = answer(admin(client.get(https_url(&node, "/dev/dog/1")?))).await?;
    assert_eq!((status, &body["name"]), (200, &json!("Harper")), "{body}");
    Ok(())
}

/// A CA, a server certificate for the loopback address, and the PEM files a node reads.
struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Pki {
    fn new() -> anyhow::Result<Pki> {
        let dir = tempfile::tempdir()?;
        let ca = TestCa::new("Test CA")?;
        let server = ca.server(&["127.0.0.1", "localhost"])?;
        let (ca_path, cert_path, key_path) = (
            dir.path().join("ca.pem"),
            dir.path().join("server.pem"),
            dir.path().join("server.key"),
        );
        std::fs::write(&ca_path, ca.pem())?;
        std::fs::write(&cert_path, &server.cert_pem)?;
        std::fs::write(&key_path, &server.key_pem)?;
        Ok(Pki {
            _dir: dir,
            ca,
            ca_path,
            cert_path,
            key_path,
        })
    }

    /// Flags for a node serving with this certificate, mTLS on.
    fn args(&self) -> anyhow::Result<Vec<String>> {
        let mut args: Vec<String> = secure_ports().iter().map(|a| (*a).to_owned()).collect();
        for (flag, path) in [
            ("--tls-certificate", &self.cert_path),
            ("--tls-private-key", &self.key_path),
            ("--tls-certificate-authority", &self.ca_path),
        ] {
            args.extend([flag.to_owned(), path_str(path)?.to_owned()]);
        }
        args.extend(["--mtls".to_owned(), "true".to_owned()]);
        Ok(args)
    }

    /// Writes a client certificate's PEM files; their paths (certificate, key).
    fn write_client(&self, issued: &Issued, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let dir = self.ca_path.parent().context("the PEM folder")?;
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert, &issued.cert_pem)?;
        std::fs::write(&key, &issued.key_pem)?;
        Ok((cert, key))
    }
}

async fn start_pki(name: &str, pki: &Pki, extra: &[&str]) -> anyhow::Result<Node> {
    let mut args = pki.args()?;
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    start_with(name, &args).await
}

#[tokio::test]
async fn a_client_certificate_logs_in_the_user_it_names() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let node = start_pki("tls-mtls", &pki, &[]).await?;
    create_table(&node, "dog").await?;
    insert(&node, "dog", json!([{"id": 1, "name": "Harper"}])).await?;
    node.op_ok(json!({
        "operation": "add_user", "username": "carol", "password": "carol-password",
        "role": "super_user", "active": true
    }))
    .await?;

    let carol = pki.ca.client("carol")?;
    let as_carol = https_client(&pki.ca.pem(), Some(&carol))?;
    let record = https_url(&node, "/dev/dog/1")?;
    // No Authorization header: the certificate logs carol in, on both secure ports.
    let (status, body) = answer(as_carol.get(&record)).await?;
    assert_eq!((status, &body["name"]), (200, &json!("Harper")), "{body}");
    let (status, body) = answer(as_carol.post(ops_tls_url(&node)?).json(&json!({
        "operation": "search_by_hash", "database": "dev", "table": "dog",
        "hash_values": [1], "get_attributes": ["name"]
    })))
    .await?;
    assert_eq!(
        (status, &body[0]["name"]),
        (200, &json!("Harper")),
        "{body}"
    );
    // An Authorization header is checked instead of the certificate.
    let (status, _) = answer(as_carol.get(&record).basic_auth("carol", Some("wrong"))).await?;
    assert_eq!(status, 401);

    // The same with curl, with the configured CA and the client's certificate and key.
    let (cert, key) = pki.write_client(&carol, "carol")?;
    let ca_arg = path_str(&pki.ca_path)?;
    let by_curl = curl_json(&[
        "--cacert",
        ca_arg,
        "--cert",
        path_str(&cert)?,
        "--key",
        path_str(&key)?,
        &record,
    ])
    .await?;
    assert_eq!(by_curl["name"], "Harper", "{by_curl}");

    // Without a certificate, or with one from another CA (mTLS is not required: the
    // handshake succeeds and the certificate is ignored), a request must log in.
    let other_ca = TestCa::new("Another CA")?;
    let forged = other_ca.client("carol")?;
    for (what, identity) in [("no certificate", None), ("another CA", Some(&forged))] {
        let client = https_client(&pki.ca.pem(), identity)?;
        let (status, body) = answer(client.get(&record)).await?;
        assert_eq!(status, 401, "{what}: {body}");
        let (status, body) = answer(admin(client.get(&record))).await?;
        assert_eq!(status, 200, "{what}, with credentials: {body}");
    }
    // A certificate naming no user logs nobody in.
    let stranger = https_client(&pki.ca.pem(), Some(&pki.ca.client("nobody-here")?))?;
    assert_eq!(answer(stranger.get(&record)).await?.0, 401);

    // Dropping the user ends its certificate's access at once, on an open connection too.
    node.op_ok(json!({"operation": "drop_user", "username": "carol"}))
        .await?;
    let (status, body) = answer(as_carol.get(&record)).await?;
    assert_eq!(status, 401, "{body}");
    Ok(())
}

#[tokio::test]
async fn required_mtls_refuses_connections_without_a_trusted_certificate() -> anyhow::Result<()> {
    let pki = Pki::new()?;
    let node = start_pki("tls-required", &pki, &["--mtls-required", "true"]).await?;
    node.op_ok(json!({
        "operation": "add_user", "username": "dave", "password": "dave-password",
        "role": "super_user", "active": true
    }))
    .await?;
    let health = https_url(&node, "/health")?;

    let dave = https_client(&pki.ca.pem(), Some(&pki.ca.client("dave")?))?;
    assert_eq!(answer(dave.get(&health)).await?.0, 200);
    let other_ca = TestCa::new("Another CA")?;
    for (what, identity) in [
        ("no certificate", None),
        ("another CA", Some(other_ca.client("dave")?)),
    ] {
        let client = https_client(&pki.ca.pem(), identity.as_ref())?;
        let result = admin(client.get(&health)).send().await;
        assert!(result.is_err(), "{what}: the handshake fails: {result:?}");
    }
    let (code, out) = curl(&["--cacert", path_str(&pki.ca_path)?, &health]).await?;
    assert_ne!(code, 0, "curl without a certificate is refused: {out}");

    // The plain ports are not affected.
    assert_eq!(node.http_get("/health").await?.0, 200);
    Ok(())
}

#[tokio::test]
async fn a_silent_client_is_dropped_when_its_handshake_times_out() -> anyhow::Result<()> {
    const TIMEOUT_MS: u64 = 2000;
    let timeout = TIMEOUT_MS.to_string();
    let mut args = secure_ports().to_vec();
    args.extend([
        "--tls-handshake-timeout-ms",
        &timeout,
        "--http-max-connections",
        "1",
    ]);
    let node = start_with("tls-handshake", &args).await?;
    let ca = std::fs::read_to_string(generated_ca(&node))?;
    let client = https_client(&ca, None)?;
    let health = https_url(&node, "/health")?;
    let addr = node.https_addr().context("https port")?;

    // A client that connects and sends nothing holds the port's only place...
    let opened = Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await?;
    let (status, body) = answer(client.get(&health)).await?;
    assert_eq!(status, 503, "the port is full: {body}");
    // ...until the handshake timeout closes it,
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(DEADLINE, silent.read(&mut byte))
        .await
        .map_err(|_| anyhow!("the silent connection was not closed within {DEADLINE:?}"))?;
    let waited = opened.elapsed();
    if !matches!(read, Ok(0) | Err(_)) {
        bail!("the server sent something to a silent client: {read:?}");
    }
    assert!(
        waited >= Duration::from_millis(TIMEOUT_MS / 2),
        "closed after {waited:?}, well before the timeout"
    );
    // ...and its place serves others again.
    let (status, body) = answer(client.get(&health)).await?;
    assert_eq!((status, &body["status"]), (200, &json!("ok")), "{body}");
    Ok(())
}
