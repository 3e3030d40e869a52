//! One HTTP/1.1 connection per load worker, and a small client for control operations.
//!
//! Load workers each own one [`Conn`]: requests on it are sequential, so `--connections`
//! workers hold exactly that many TCP connections. The default implementation drives a
//! raw hyper connection (`--client hyper`); `--client reqwest` uses one reqwest client
//! per worker instead, for comparison.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

/// Which HTTP client the load workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ClientKind {
    /// A raw hyper HTTP/1.1 connection per worker.
    Hyper,
    /// One reqwest client (and so one pooled connection) per worker.
    Reqwest,
}

/// HTTP Basic credentials.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    /// User name.
    pub(crate) user: String,
    /// Password.
    pub(crate) password: String,
}

impl Credentials {
    /// The `Authorization` header value.
    pub(crate) fn header(&self) -> HeaderValue {
        let raw = format!("{}:{}", self.user, self.password);
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header")
    }
}

/// What a worker connects to.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// Server address.
    pub(crate) addr: SocketAddr,
    /// Client implementation.
    pub(crate) kind: ClientKind,
    /// `Authorization` header sent with every request.
    pub(crate) auth: HeaderValue,
}

enum Inner {
    Hyper(http1::SendRequest<Full<Bytes>>),
    Reqwest(reqwest::Client),
}

/// One connection (sequential requests) to one endpoint.
pub(crate) struct Conn {
    endpoint: Endpoint,
    host: HeaderValue,
    base: String,
    inner: Option<Inner>,
}

impl Conn {
    /// Opens the connection (for hyper: connects now; for reqwest: on first request).
    pub(crate) async fn connect(endpoint: &Endpoint) -> anyhow::Result<Conn> {
        let mut conn = Conn {
            host: HeaderValue::from_str(&endpoint.addr.to_string()).expect("address is ascii"),
            base: format!("http://{}", endpoint.addr),
            endpoint: endpoint.clone(),
            inner: None,
        };
        conn.reconnect().await?;
        Ok(conn)
    }

    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.inner = None;
        let inner = match self.endpoint.kind {
            ClientKind::Hyper => {
                let stream = TcpStream::connect(self.endpoint.addr)
                    .await
                    .with_context(|| format!("connecting to {}", self.endpoint.addr))?;
                stream.set_nodelay(true)?;
                let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Inner::Hyper(sender)
            }
            ClientKind::Reqwest => Inner::Reqwest(
                reqwest::Client::builder()
                    .no_proxy()
                    .tcp_nodelay(true)
                    .pool_max_idle_per_host(1)
                    .build()?,
            ),
        };
        self.inner = Some(inner);
        Ok(())
    }

    /// Sends one request and reads the whole answer; `json` marks the body as JSON.
    ///
    /// After a transport error the next call reconnects.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        json: bool,
    ) -> anyhow::Result<(u16, Bytes)> {
        if self.inner.is_none() {
            self.reconnect().await?;
        }
        let result = match self.inner.as_mut().expect("connected") {
            Inner::Hyper(sender) => {
                let outcome = async {
                    sender.ready().await?;
                    let mut request = Request::builder()
                        .method(method)
                        .uri(path)
                        .header(HOST, self.host.clone())
                        .header(AUTHORIZATION, self.endpoint.auth.clone());
                    if json {
                        request = request
                            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                    }
                    let response = sender.send_request(request.body(Full::new(body))?).await?;
                    let status = response.status().as_u16();
                    let bytes = response.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, bytes))
                };
                outcome.await
            }
            Inner::Reqwest(client) => {
                let outcome = async {
                    let mut request = client
                        .request(method, format!("{}{path}", self.base))
                        .header(AUTHORIZATION, self.endpoint.auth.clone())
                        .body(body);
                    if json {
                        request = request.header(CONTENT_TYPE, "application/json");
                    }
                    let response = request.send().await?;
                    let status = response.status().as_u16();
                    anyhow::Ok((status, response.bytes().await?))
                };
                outcome.await
            }
        };
        if result.is_err() {
            self.inner = None;
        }
        result
    }
}

/// A control-plane client: setup, status polling, checks. Not used for measured load.
#[derive(Debug, Clone)]
pub(crate) struct Control {
    client: reqwest::Client,
    /// Operations API URL (`http://host:port/`).
    pub(crate) ops_url: String,
    /// Credentials for both.
    pub(crate) creds: Credentials,
}

impl Control {
    /// A client for the node whose Operations API is at `ops_url`.
    pub(crate) fn new(ops_url: &str, creds: Credentials) -> anyhow::Result<Control> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(Control {
            client,
            ops_url: format!("{}/", ops_url.trim_end_matches('/')),
            creds,
        })
    }

    /// Sends an operation; returns status and JSON body.
    pub(crate) async fn op_raw(&self, op: &Value) -> anyhow::Result<(u16, Value)> {
        let response = self
            .client
            .post(&self.ops_url)
            .basic_auth(&self.creds.user, Some(&self.creds.password))
            .json(op)
            .send()
            .await
            .with_context(|| format!("POST {}", self.ops_url))?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }

    /// Sends an operation; errors unless the status is 2xx.
    pub(crate) async fn op(&self, op: Value) -> anyhow::Result<Value> {
        let (status, body) = self.op_raw(&op).await?;
        if !(200..300).contains(&status) {
            let name = op.get("operation").and_then(Value::as_str).unwrap_or("?");
            bail!("{} `{name}` answered {status}: {body}", self.ops_url);
        }
        Ok(body)
    }

    /// `describe_table`'s `record_count`, or `None` while the table does not exist.
    pub(crate) async fn record_count(
        &self,
        database: &str,
        table: &str,
    ) -> anyhow::Result<Option<u64>> {
        let (status, body) = self
            .op_raw(&serde_json::json!({
                "operation": "describe_table", "database": database, "table": table
            }))
            .await?;
        if !(200..300).contains(&status) {
            return Ok(None);
        }
        Ok(body.get("record_count").and_then(Value::as_u64))
    }
}
