//! One `shoal` server process: spawn, ready line, wire calls, kill/terminate/restart.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// Admin user name passed to nodes unless [`NodeOptions::admin_user`] overrides it.
pub const DEFAULT_ADMIN_USER: &str = "admin";
/// Admin password passed to nodes unless [`NodeOptions::admin_password`] overrides it.
pub const DEFAULT_ADMIN_PASSWORD: &str = "test-password";
/// Environment variable that, when set (non-empty, not `0`), keeps node root directories.
pub const KEEP_DIRS_ENV: &str = "SHOAL_KEEP_TEST_DIRS";

const READY_PREFIX: &str = "shoal ready";
const STDERR_LOG: &str = "stderr.log";
const STDOUT_LOG: &str = "stdout.log";
const STDERR_TAIL_LINES: usize = 40;
const TERMINATE_DEADLINE: Duration = Duration::from_secs(30);
const KILL_DEADLINE: Duration = Duration::from_secs(10);
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CHILD_POLL: Duration = Duration::from_millis(10);

/// How to start a node; build with [`NodeOptions::new`] or `..Default::default()`.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Node name (`--name`).
    pub name: String,
    /// Listen host (`--host`), default `127.0.0.1`.
    pub host: String,
    /// Operations API port (`--ops-port`); 0 picks a free port on every start.
    pub ops_port: u16,
    /// HTTP port (`--http-port`); 0 picks a free port on every start.
    pub http_port: u16,
    /// Extra command-line arguments appended after the standard ones.
    pub args: Vec<String>,
    /// Extra environment variables for the process (applied after the admin credentials).
    pub env: Vec<(String, String)>,
    /// Root directory to use instead of a fresh temporary one (never deleted by the harness).
    pub root: Option<PathBuf>,
    /// Admin user name (`SHOAL_ADMIN_USERNAME`), also used by [`Node::ops`].
    pub admin_user: String,
    /// Admin password (`SHOAL_ADMIN_PASSWORD`), also used by [`Node::ops`].
    pub admin_password: String,
    /// How long to wait for the ready line on each start, default 30 s.
    pub ready_timeout: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            name: "node".to_owned(),
            host: "127.0.0.1".to_owned(),
            ops_port: 0,
            http_port: 0,
            args: Vec::new(),
            env: Vec::new(),
            root: None,
            admin_user: DEFAULT_ADMIN_USER.to_owned(),
            admin_password: DEFAULT_ADMIN_PASSWORD.to_owned(),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

impl NodeOptions {
    /// Default options with the given node name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// The parsed `shoal ready key=value ...` line printed by a node once it is ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyLine {
    fields: BTreeMap<String, String>,
}

impl ReadyLine {
    /// Parses a ready line into its `key=value` fields; `None` if the line is not a ready line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix(READY_PREFIX)?;
        if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let fields = rest
            .split_whitespace()
            .filter_map(|token| token.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Some(Self { fields })
    }

    /// The raw value of field `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// Field `key` parsed as a socket address (e.g. `ops`, `http`, `mqtt`, `replication`).
    pub fn addr(&self, key: &str) -> anyhow::Result<SocketAddr> {
        let raw = self
            .get(key)
            .ok_or_else(|| anyhow!("ready line has no `{key}=` field: {self}"))?;
        raw.parse()
            .with_context(|| format!("ready line field `{key}={raw}` is not an ip:port"))
    }

    /// The `pid=` field.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let raw = self
            .get("pid")
            .ok_or_else(|| anyhow!("ready line has no `pid=` field: {self}"))?;
        raw.parse()
            .with_context(|| format!("ready line field `pid={raw}` is not a pid"))
    }

    /// All fields, sorted by key.
    pub fn fields(&self) -> &BTreeMap<String, String> {
        &self.fields
    }
}

impl std::fmt::Display for ReadyLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(READY_PREFIX)?;
        for (k, v) in &self.fields {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// A running (or stopped) `shoal` process with its root directory and an HTTP client.
///
/// Dropping a `Node` SIGKILLs the process if it is still running, then removes
/// the temporary root unless the thread is panicking or [`KEEP_DIRS_ENV`] is set.
#[derive(Debug)]
pub struct Node {
    bin: PathBuf,
    opts: NodeOptions,
    root: PathBuf,
    tempdir: Option<TempDir>,
    child: Option<Child>,
    drain: Option<JoinHandle<()>>,
    ready: ReadyLine,
    ops_addr: SocketAddr,
    http_addr: SocketAddr,
    client: reqwest::Client,
    starts: u32,
}

impl Node {
    /// Spawns `bin start ...` in a fresh (or the given) root and waits for its ready line.
    pub async fn start(bin: &Path, opts: NodeOptions) -> anyhow::Result<Node> {
        let (root, tempdir) = match &opts.root {
            Some(root) => {
                fs::create_dir_all(root)
                    .with_context(|| format!("creating root dir {}", root.display()))?;
                (root.clone(), None)
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("shoal-test-")
                    .tempdir()
                    .context("creating temporary root dir")?;
                (dir.path().to_path_buf(), Some(dir))
            }
        };
        let placeholder = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut node = Node {
            bin: bin.to_path_buf(),
            opts,
            root,
            tempdir,
            child: None,
            drain: None,
            ready: ReadyLine {
                fields: BTreeMap::new(),
            },
            ops_addr: placeholder,
            http_addr: placeholder,
            client: build_client()?,
            starts: 0,
        };
        if let Err(err) = node.spawn().await {
            // Keep the logs of a node that never came up; the error names the path.
            if let Some(dir) = node.tempdir.take() {
                let _ = dir.keep();
            }
            return Err(err);
        }
        Ok(node)
    }

    /// Starts the process again on the same root, name, options and explicit ports.
    ///
    /// Errors if the process is still running: call [`Node::kill`] or
    /// [`Node::terminate`] first. Ports given as 0 are picked afresh, so read
    /// [`Node::ops_addr`] / [`Node::http_addr`] again afterwards.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(child) = &mut self.child {
            if child.try_wait()?.is_none() {
                bail!(
                    "node `{}` is still running; kill() or terminate() it before restart()",
                    self.opts.name
                );
            }
            self.child = None;
        }
        self.join_drain().await;
        self.client = build_client()?;
        self.spawn().await
    }

    /// Sends SIGKILL (a crash) and waits for the process to exit.
    ///
    /// Errors if the node was not running, including when it had already
    /// exited on its own (the error then carries its exit status and stderr tail).
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        let mut child = self.take_running_child()?;
        child.kill().context("sending SIGKILL")?;
        let status = wait_child(&mut child, KILL_DEADLINE).await?;
        self.join_drain().await;
        match status {
            Some(_) => Ok(()),
            None => {
                bail!(self.failure(&format!("did not exit within {KILL_DEADLINE:?} of SIGKILL")))
            }
        }
    }

    /// Sends SIGTERM (clean shutdown) and waits up to 30 s for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<ExitStatus> {
        self.terminate_within(TERMINATE_DEADLINE).await
    }

    /// Sends SIGTERM and waits up to `deadline`; on timeout SIGKILLs the process and errors.
    pub async fn terminate_within(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.take_running_child()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
        kill(pid, Signal::SIGTERM).context("sending SIGTERM")?;
        let status = wait_child(&mut child, deadline).await?;
        if status.is_none() {
            let _ = child.kill();
            let _ = wait_child(&mut child, KILL_DEADLINE).await;
        }
        self.join_drain().await;
        status.ok_or_else(|| {
            anyhow!(self.failure(&format!(
                "did not exit within {deadline:?} of SIGTERM (SIGKILLed)"
            )))
        })
    }

    /// Waits up to `deadline` for the process to exit on its own and returns its status.
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> anyhow::Result<ExitStatus> {
        let child = self
            .child
            .as_mut()
            .ok_or_else(|| anyhow!("node `{}` is not running", self.opts.name))?;
        let status = wait_child(child, deadline).await?;
        let Some(status) = status else {
            bail!(self.failure(&format!("did not exit within {deadline:?}")));
        };
        self.child = None;
        self.join_drain().await;
        Ok(status)
    }

    /// Whether the process is alive (started and not yet exited).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// POSTs an operation to the operations API as the admin; returns status and JSON body.
    pub async fn ops(&self, op: Value) -> anyhow::Result<(u16, Value)> {
        self.ops_as(&self.opts.admin_user, &self.opts.admin_password, op)
            .await
    }

    /// Like [`Node::ops`] but errors (with status, body and request) unless the status is 2xx.
    pub async fn op_ok(&self, op: Value) -> anyhow::Result<Value> {
        let request = op.to_string();
        let (status, body) = self.ops(op).await?;
        if !(200..300).contains(&status) {
            bail!(
                "node `{}`: operation failed with status {status}: {body}\n  request: {request}",
                self.opts.name
            );
        }
        Ok(body)
    }

    /// POSTs an operation with HTTP Basic credentials `user`/`password`.
    pub async fn ops_as(
        &self,
        user: &str,
        password: &str,
        op: Value,
    ) -> anyhow::Result<(u16, Value)> {
        let body = serde_json::to_vec(&op)?;
        self.ops_raw(body, Some("application/json"), Some((user, password)))
            .await
    }

    /// POSTs raw bytes to the operations API with an optional content type and Basic credentials.
    ///
    /// The response body must still be JSON (the error names the raw body otherwise).
    pub async fn ops_raw(
        &self,
        body: impl Into<Vec<u8>>,
        content_type: Option<&str>,
        auth: Option<(&str, &str)>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = self.ops_url();
        let mut req = self.client.post(&url).body(body.into());
        if let Some(ct) = content_type {
            req = req.header(reqwest::header::CONTENT_TYPE, ct);
        }
        if let Some((user, password)) = auth {
            req = req.basic_auth(user, Some(password));
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("node `{}`: POST {url}", self.opts.name))?;
        json_response(resp).await
    }

    /// GETs `path` on the HTTP port; returns status and body text.
    pub async fn http_get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let url = self.http_url(path);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("node `{}`: GET {url}", self.opts.name))?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("reading response body")?;
        Ok((status, text))
    }

    /// `http://<ops>/`, the operations API endpoint.
    pub fn ops_url(&self) -> String {
        format!("http://{}/", self.ops_addr)
    }

    /// `http://<http><path>` (a leading `/` is added to `path` if missing).
    pub fn http_url(&self, path: &str) -> String {
        let sep = if path.starts_with('/') { "" } else { "/" };
        format!("http://{}{sep}{path}", self.http_addr)
    }

    /// The node's HTTP client (for requests the helpers do not cover).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Node name.
    pub fn name(&self) -> &str {
        &self.opts.name
    }

    /// Options the node was started with (reused by [`Node::restart`]).
    pub fn options(&self) -> &NodeOptions {
        &self.opts
    }

    /// Root directory (`--root`), stable across restarts.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Operations API address from the latest ready line.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// HTTP address from the latest ready line.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The secure Operations API address (`ops_tls=` in the latest ready line), if the
    /// node serves one.
    pub fn ops_tls_addr(&self) -> Option<SocketAddr> {
        self.ready.addr("ops_tls").ok()
    }

    /// The secure HTTP address (`https=` in the latest ready line), if the node serves
    /// one.
    pub fn https_addr(&self) -> Option<SocketAddr> {
        self.ready.addr("https").ok()
    }

    /// The MQTT address (`mqtt=` in the latest ready line).
    pub fn mqtt_addr(&self) -> anyhow::Result<SocketAddr> {
        self.ready.addr("mqtt")
    }

    /// The MQTT over TLS address (`mqtts=` in the latest ready line), if the node serves
    /// one.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.ready.addr("mqtts").ok()
    }

    /// The latest ready line, for fields beyond `ops`/`http` (e.g. `mqtt`, `replication`).
    pub fn ready_line(&self) -> &ReadyLine {
        &self.ready
    }

    /// OS pid of the current process, if it was started and not yet reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Path of the log collecting the process's stderr across all runs.
    pub fn stderr_log(&self) -> PathBuf {
        self.root.join(STDERR_LOG)
    }

    /// Path of the log collecting the process's stdout across all runs.
    pub fn stdout_log(&self) -> PathBuf {
        self.root.join(STDOUT_LOG)
    }

    /// The last `lines` lines of `stderr.log`.
    pub fn stderr_tail(&self, lines: usize) -> String {
        tail(&self.stderr_log(), lines)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let marker = format!(
            "=== shoal-testkit: start #{} of node `{}` ===\n",
            self.starts, self.opts.name
        );
        let mut stderr_file = open_log(&self.stderr_log())?;
        stderr_file.write_all(marker.as_bytes())?;
        let mut stdout_file = open_log(&self.stdout_log())?;
        stdout_file.write_all(marker.as_bytes())?;

        let o = &self.opts;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("start")
            .arg("--root")
            .arg(&self.root)
            .args(["--host", &o.host])
            .args(["--ops-port", &o.ops_port.to_string()])
            .args(["--http-port", &o.http_port.to_string()])
            .args(["--name", &o.name])
            .args(&o.args)
            .env("SHOAL_ADMIN_USERNAME", &o.admin_user)
            .env("SHOAL_ADMIN_PASSWORD", &o.admin_password)
            // Any free replication port unless a flag or `env` says otherwise: nodes of
            // parallel tests must not fight over 9933.
            .env("SHOAL_REPLICATION_PORT", "0")
            // Likewise any free MQTT port: not 1883, which a system broker may hold.
            .env("SHOAL_MQTT_PORT", "0")
            .envs(o.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr_file));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        let stdout = child.stdout.take().context("child stdout not piped")?;
        let (ready_tx, ready_rx) = oneshot::channel();
        let drain = std::thread::Builder::new()
            .name(format!("shoal-{}-stdout", o.name))
            .spawn(move || drain_stdout(stdout, stdout_file, ready_tx));
        let drain = match drain {
            Ok(handle) => handle,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err).context("spawning stdout drain thread");
            }
        };
        self.drain = Some(drain);

        let timeout = o.ready_timeout;
        let line = match tokio::time::timeout(timeout, ready_rx).await {
            Ok(Ok(line)) => line,
            Ok(Err(_)) => {
                // Stdout closed without a ready line: the process is exiting.
                let status = wait_child(&mut child, DRAIN_DEADLINE).await?;
                let what = match status {
                    Some(status) => format!("exited ({status}) before printing its ready line"),
                    None => {
                        let _ = child.kill();
                        let _ = child.wait();
                        "closed stdout without printing its ready line (SIGKILLed)".to_owned()
                    }
                };
                self.join_drain().await;
                bail!(self.failure(&what));
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                self.join_drain().await;
                bail!(self.failure(&format!(
                    "printed no ready line within {timeout:?} (SIGKILLed)"
                )));
            }
        };
        let parsed = ReadyLine::parse(&line)
            .context("unparsable ready line")
            .and_then(|ready| Ok((ready.addr("ops")?, ready.addr("http")?, ready)));
        let (ops_addr, http_addr, ready) = match parsed {
            Ok(parsed) => parsed,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                self.join_drain().await;
                bail!(self.failure(&format!("printed a bad ready line `{line}`: {err:#}")));
            }
        };
        self.ops_addr = ops_addr;
        self.http_addr = http_addr;
        self.ready = ready;
        self.child = Some(child);
        Ok(())
    }

    /// Takes the child for stopping; errors if there is none or it already exited.
    fn take_running_child(&mut self) -> anyhow::Result<Child> {
        let mut child = self
            .child
            .take()
            .ok_or_else(|| anyhow!("node `{}` is not running", self.opts.name))?;
        if let Some(status) = child.try_wait()? {
            bail!(self.failure(&format!("had already exited on its own ({status})")));
        }
        Ok(child)
    }

    /// Waits (bounded) for the stdout drain thread so `stdout.log` is complete.
    async fn join_drain(&mut self) {
        let Some(handle) = self.drain.take() else {
            return;
        };
        let deadline = Instant::now() + DRAIN_DEADLINE;
        while !handle.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(CHILD_POLL).await;
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "shoal node `{}` {what}\n  root: {}\n  stderr.log tail:\n{}",
            self.opts.name,
            self.root.display(),
            self.stderr_tail(STDERR_TAIL_LINES)
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let panicking = std::thread::panicking();
        if !(panicking || keep_dirs_requested()) {
            return;
        }
        if let Some(dir) = self.tempdir.take() {
            let _ = dir.keep();
        }
        eprintln!(
            "shoal-testkit: kept root of node `{}`: {}",
            self.opts.name,
            self.root.display()
        );
        if panicking {
            eprintln!(
                "shoal-testkit: stderr.log tail of node `{}`:\n{}",
                self.opts.name,
                self.stderr_tail(STDERR_TAIL_LINES)
            );
        }
    }
}

fn build_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building HTTP client")
}

async fn json_response(resp: reqwest::Response) -> anyhow::Result<(u16, Value)> {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.context("reading response body")?;
    let body = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "non-JSON response (status {status}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    })?;
    Ok((status, body))
}

/// Polls `child` until it exits or `deadline` passes (`Ok(None)`).
async fn wait_child(child: &mut Child, deadline: Duration) -> anyhow::Result<Option<ExitStatus>> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            return Ok(Some(status));
        }
        if Instant::now() >= end {
            return Ok(None);
        }
        tokio::time::sleep(CHILD_POLL).await;
    }
}

/// Copies child stdout into `log`, handing the first ready line to `ready_tx`.
fn drain_stdout(stdout: ChildStdout, mut log: File, ready_tx: oneshot::Sender<String>) {
    let mut ready_tx = Some(ready_tx);
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(&buf);
        let line = String::from_utf8_lossy(&buf);
        if let Some(tx) = ready_tx.take_if(|_| ReadyLine::parse(&line).is_some()) {
            let _ = tx.send(line.trim().to_owned());
        }
    }
}

fn open_log(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("<cannot read {}: {err}>", path.display()),
    }
}

fn keep_dirs_requested() -> bool {
    std::env::var_os(KEEP_DIRS_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ready_line_generically() {
        let r = ReadyLine::parse(
            "shoal ready name=n1 ops=127.0.0.1:9925 http=127.0.0.1:9926 pid=42 mqtt=127.0.0.1:1883",
        )
        .unwrap();
        assert_eq!(r.get("name"), Some("n1"));
        assert_eq!(r.addr("ops").unwrap(), "127.0.0.1:9925".parse().unwrap());
        assert_eq!(r.addr("mqtt").unwrap().port(), 1883);
        assert_eq!(r.pid().unwrap(), 42);
        assert!(r.addr("replication").is_err());
        assert!(ReadyLine::parse("shoal readyish x=1").is_none());
        assert!(ReadyLine::parse("starting shoal").is_none());
    }
}
