//! Self-tests of the harness against a fake `shoal` (a shell script) and an in-process HTTP stub.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};
use shoal_testkit::{Node, NodeOptions, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const FAKE: &str = r#"#!/bin/sh
echo "fake: args=$*" >&2
echo "fake: admin=$SHOAL_ADMIN_USERNAME:$SHOAL_ADMIN_PASSWORD" >&2
echo "booting"
case "$FAKE_MODE" in
  die) echo "fatal: cannot open store" >&2; exit 3;;
  hang) exec sleep 1000;;
  exit_later) echo "shoal ready name=x ops=$FAKE_OPS http=$FAKE_HTTP pid=$$"; read _ < "$FAKE_FIFO"; exit 7;;
esac
echo "shoal ready name=x ops=$FAKE_OPS http=$FAKE_HTTP pid=$$ mqtt=127.0.0.1:1883"
exec sleep 1000
"#;

/// Writes the fake binary once per test process (before any spawn, avoiding ETXTBSY).
fn fake_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("fake-shoal.{}.tmp", std::process::id()));
        std::fs::write(&tmp, FAKE).unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("fake-shoal.sh");
        std::fs::rename(&tmp, &bin).unwrap();
        bin
    })
}

/// Minimal HTTP/1.1 server echoing each request as JSON (400 + error for body `bad`).
async fn stub_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (sock, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(sock));
        }
    });
    addr
}

async fn serve(mut sock: TcpStream) {
    let mut buf = Vec::new();
    let header_end = loop {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await.unwrap();
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut start = lines.next().unwrap().split(' ');
    let (method, path) = (start.next().unwrap(), start.next().unwrap());
    let header = |name: &str| {
        head.split("\r\n").find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let len: usize = header("content-length").map_or(0, |v| v.parse().unwrap());
    while buf.len() < header_end + len {
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await.unwrap();
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[header_end..header_end + len]).to_string();
    let reply = match body.as_str() {
        "bad" | r#"{"operation":"fail"}"# => {
            ("400 Bad Request", json!({"error": "bad"}).to_string())
        }
        "text" => ("200 OK", "not json".to_owned()),
        _ => {
            let echo = json!({
                "method": method, "path": path, "body": body,
                "authorization": header("authorization"), "content_type": header("content-type"),
            });
            ("200 OK", echo.to_string())
        }
    };
    let (status, reply) = reply;
    let resp = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    );
    sock.write_all(resp.as_bytes()).await.unwrap();
}

async fn opts(mode: &str) -> NodeOptions {
    let addr = stub_server().await;
    let mut o = NodeOptions::new("n1");
    o.env = vec![
        ("FAKE_MODE".into(), mode.into()),
        ("FAKE_OPS".into(), addr.clone()),
        ("FAKE_HTTP".into(), addr),
    ];
    o
}

/// Removes the root a failed start kept for inspection (named in the error).
fn remove_kept_root(msg: &str) {
    let root = msg
        .lines()
        .find_map(|l| l.trim().strip_prefix("root: "))
        .expect("error names the root");
    assert!(Path::new(root).join("stderr.log").exists(), "{msg}");
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn start_parses_ready_line_and_passes_args_and_env() {
    let mut o = opts("ok").await;
    o.ops_port = 9999;
    o.args = vec!["--extra".into()];
    let node = Node::start(fake_bin(), o).await.unwrap();
    assert_eq!(node.ready_line().addr("mqtt").unwrap().port(), 1883);
    assert_eq!(node.pid(), Some(node.ready_line().pid().unwrap()));
    let stderr = std::fs::read_to_string(node.stderr_log()).unwrap();
    let root = node.root().display().to_string();
    assert!(
        stderr.contains(&format!(
            "args=start --root {root} --host 127.0.0.1 --ops-port 9999 --http-port 0 --name n1 --extra"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("admin=admin:test-password"), "{stderr}");
    let stdout = std::fs::read_to_string(node.stdout_log()).unwrap();
    assert!(stdout.contains("booting"), "{stdout}");
}

#[tokio::test]
async fn ops_sends_json_with_basic_auth() {
    let node = Node::start(fake_bin(), opts("ok").await).await.unwrap();
    let body = node.op_ok(json!({"operation": "ping"})).await.unwrap();
    assert_eq!(body["method"], "POST");
    assert_eq!(body["path"], "/");
    // base64("admin:test-password")
    assert_eq!(body["authorization"], "Basic YWRtaW46dGVzdC1wYXNzd29yZA==");
    assert_eq!(body["content_type"], "application/json");
    let sent: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"operation": "ping"}));

    let (status, body) = node.ops_as("u", "p", json!({})).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["authorization"], "Basic dTpw");

    let (status, body) = node.ops_raw("bad", None, None).await.unwrap();
    assert_eq!((status, body), (400, json!({"error": "bad"})));
    let (_, body) = node.ops_raw("{", Some("text/plain"), None).await.unwrap();
    assert_eq!(body["authorization"], Value::Null);
    assert_eq!(body["content_type"], "text/plain");

    let (status, text) = node.http_get("health").await.unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("\"path\":\"/health\""), "{text}");
}

#[tokio::test]
async fn op_ok_and_non_json_errors_carry_the_body() {
    let node = Node::start(fake_bin(), opts("ok").await).await.unwrap();
    let (status, _) = node.ops_raw("bad", None, None).await.unwrap();
    assert_eq!(status, 400);
    let err = node.op_ok(json!({"operation": "fail"})).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("status 400") && msg.contains(r#"{"error":"bad"}"#),
        "{msg}"
    );
    let err = node.ops_raw("text", None, None).await.unwrap_err();
    assert!(format!("{err:#}").contains("not json"), "{err:#}");
}

#[tokio::test]
async fn terminate_kill_restart_keep_root_and_logs() {
    let mut node = Node::start(fake_bin(), opts("ok").await).await.unwrap();
    let root = node.root().to_path_buf();
    let first = node.pid().unwrap();
    let status = node.terminate().await.unwrap();
    assert_eq!(status.signal(), Some(15));
    assert!(!node.is_running());
    assert!(node.terminate().await.is_err());

    node.restart().await.unwrap();
    assert!(node.is_running());
    assert_ne!(node.pid().unwrap(), first);
    assert_eq!(node.root(), root);
    assert!(
        node.restart()
            .await
            .unwrap_err()
            .to_string()
            .contains("still running")
    );

    node.kill().await.unwrap();
    assert!(node.kill().await.is_err());
    node.restart().await.unwrap();
    let stdout = std::fs::read_to_string(node.stdout_log()).unwrap();
    assert!(stdout.contains("start #3"), "{stdout}");
    drop(node);
    assert!(!root.exists(), "temp root should be removed on drop");
}

#[tokio::test]
async fn early_exit_reports_status_and_stderr_tail() {
    let err = Node::start(fake_bin(), opts("die").await)
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("fatal: cannot open store"), "{msg}");
    remove_kept_root(&msg);
}

#[tokio::test]
async fn missing_ready_line_times_out() {
    let mut o = opts("hang").await;
    o.ready_timeout = Duration::from_millis(300);
    let err = Node::start(fake_bin(), o).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("no ready line within"), "{msg}");
    remove_kept_root(&msg);
}

#[tokio::test]
async fn wait_for_exit_and_crash_detection() {
    let fifo_dir = tempfile::tempdir().unwrap();
    let fifo = fifo_dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut o = opts("exit_later").await;
    o.env.push(("FAKE_FIFO".into(), fifo.display().to_string()));
    let mut node = Node::start(fake_bin(), o).await.unwrap();
    assert!(node.is_running());
    // Opening the fifo for writing and closing it lets the script's `read` finish.
    std::fs::write(&fifo, "go\n").unwrap();
    let status = node.wait_for_exit(Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.code(), Some(7));
    wait_until(Duration::from_secs(1), "node reports stopped", async || {
        Ok(!node.is_running())
    })
    .await
    .unwrap();
}
