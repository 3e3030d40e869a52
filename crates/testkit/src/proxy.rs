//! Loopback TCP proxy whose links can be cut and healed, for partition tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

/// A TCP proxy on 127.0.0.1 forwarding to `target`; links through it can be cut and healed.
///
/// Every accepted connection is forwarded in its own task to a fresh
/// connection to `target`. [`Proxy::cut`] aborts all of those tasks (closing
/// both sides) and makes the proxy close new connections right after
/// accepting them, until [`Proxy::heal`]. Dropping the proxy stops the accept
/// loop and every forwarding task.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Cut flag and forwarding tasks, behind one lock so that no connection
    /// can be admitted between a cut's flag change and its abort.
    state: Mutex<State>,
    connections: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    cut: bool,
    tasks: JoinSet<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Proxy {
    /// Starts listening on `listen` (e.g. "127.0.0.1:0" or a 127.x address) and forwarding each accepted connection to `target`.
    ///
    /// Both addresses must be loopback addresses. Must be called within a
    /// Tokio runtime; the proxy's tasks run on it.
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> anyhow::Result<Proxy> {
        ensure!(
            listen.ip().is_loopback(),
            "proxy listen address {listen} is not a loopback address"
        );
        ensure!(
            target.ip().is_loopback(),
            "proxy target address {target} is not a loopback address"
        );
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding proxy listener on {listen}"))?;
        let addr = listener.local_addr().context("proxy listener address")?;
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn(accept_loop(listener, target, Arc::clone(&shared)));
        Ok(Proxy {
            addr,
            target,
            shared,
            accept_task,
        })
    }

    /// Address the proxy listens on; connect here instead of to the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Address every connection is forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Drops every open connection and refuses (accepts then immediately closes) new ones until healed.
    pub fn cut(&self) {
        let mut state = self.shared.lock();
        state.cut = true;
        state.tasks.abort_all();
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.shared.lock().cut = false;
    }

    /// Whether the proxy is currently cut.
    pub fn is_cut(&self) -> bool {
        self.shared.lock().cut
    }

    /// Connections accepted so far (for tests asserting a redial happened).
    ///
    /// Counts every accepted connection, including those closed straight away
    /// because the proxy was cut.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.lock().tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(_) => {
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let mut state = shared.lock();
        // Reap finished forwarding tasks so the set does not grow without bound.
        while state.tasks.try_join_next().is_some() {}
        if state.cut {
            // Refused: dropping the socket closes it.
            continue;
        }
        state.tasks.spawn(forward(client, target));
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr) {
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        // Target unreachable: dropping `client` closes it, like a dead peer.
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Errors only mean one side went away; dropping both streams closes the other.
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

#[cfg(test)]
mod tests {
    use std::io;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(5);

    fn any_loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Echo server on an ephemeral loopback port; runs until the test's runtime ends.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(any_loopback()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    /// Sends `msg` and expects it echoed back, within [`DEADLINE`].
    async fn assert_echo(stream: &mut TcpStream, msg: &[u8]) {
        tokio::time::timeout(DEADLINE, async {
            stream.write_all(msg).await.unwrap();
            let mut buf = vec![0; msg.len()];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, msg);
        })
        .await
        .expect("echo timed out");
    }

    /// Expects the stream to be closed by the far side (EOF or an error) within [`DEADLINE`].
    async fn assert_closed(stream: &mut TcpStream) {
        let mut buf = [0; 64];
        let read: io::Result<usize> = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("stream was not closed within the deadline");
        if let Ok(n) = read {
            assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
        }
    }

    /// Connects through the proxy and checks the connection is refused: it is
    /// accepted, but writing and reading yield no echo, only EOF or an error.
    async fn assert_refused(proxy: &Proxy) {
        let Ok(mut stream) = TcpStream::connect(proxy.addr()).await else {
            return;
        };
        // The write may fail or succeed depending on timing; either is fine.
        let _ = stream.write_all(b"hello?").await;
        assert_closed(&mut stream).await;
    }

    #[tokio::test]
    async fn forwards_cuts_and_heals() {
        let echo = echo_server().await;
        let proxy = Proxy::start(any_loopback(), echo).await.unwrap();
        assert!(proxy.addr().ip().is_loopback());
        assert_ne!(proxy.addr().port(), 0);
        assert_eq!(proxy.target(), echo);
        assert!(!proxy.is_cut());
        assert_eq!(proxy.connections(), 0);

        let mut a = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echo(&mut a, b"ping").await;
        assert_echo(&mut a, b"pong again").await;
        assert_eq!(proxy.connections(), 1);

        proxy.cut();
        assert!(proxy.is_cut());
        assert_closed(&mut a).await;
        assert_refused(&proxy).await;
        assert_eq!(proxy.connections(), 2);

        proxy.heal();
        assert!(!proxy.is_cut());
        let mut b = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echo(&mut b, b"healed").await;
        assert_eq!(proxy.connections(), 3);

        // Cutting again works the same way, and so does a second heal.
        proxy.cut();
        assert_closed(&mut b).await;
        proxy.heal();
        let mut c = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echo(&mut c, b"again").await;
        assert_eq!(proxy.connections(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cut_drops_every_open_connection() {
        let echo = echo_server().await;
        let proxy = Proxy::start(any_loopback(), echo).await.unwrap();
        let mut streams = Vec::new();
        for i in 0..5u8 {
            let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
            assert_echo(&mut s, &[i; 3]).await;
            streams.push(s);
        }
        assert_eq!(proxy.connections(), 5);
        proxy.cut();
        for s in &mut streams {
            assert_closed(s).await;
        }
        // Healing does not resurrect the dropped connections.
        proxy.heal();
        for s in &mut streams {
            assert_closed(s).await;
        }
        let mut fresh = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echo(&mut fresh, b"fresh").await;
    }

    #[tokio::test]
    async fn listens_on_other_loopback_address() {
        let echo = echo_server().await;
        let listen: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let proxy = match Proxy::start(listen, echo).await {
            Ok(proxy) => proxy,
            // Not every platform routes all of 127.0.0.0/8 to loopback.
            Err(err) if cfg!(not(target_os = "linux")) => {
                eprintln!("skipping: {err:#}");
                return;
            }
            Err(err) => panic!("{err:#}"),
        };
        assert_eq!(proxy.addr().ip(), listen.ip());
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_echo(&mut s, b"127.0.0.2").await;
    }

    #[tokio::test]
    async fn unreachable_target_closes_client() {
        // Reserve a port, then free it so nothing listens there.
        let dead = TcpListener::bind(any_loopback())
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = Proxy::start(any_loopback(), dead).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_closed(&mut s).await;
        assert_eq!(proxy.connections(), 1);
    }

    #[tokio::test]
    async fn client_half_close_is_forwarded() {
        let echo = echo_server().await;
        let proxy = Proxy::start(any_loopback(), echo).await.unwrap();
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        s.write_all(b"last words").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(DEADLINE, s.read_to_end(&mut got))
            .await
            .expect("echo after half-close timed out")
            .unwrap();
        assert_eq!(got, b"last words");
    }

    #[tokio::test]
    async fn drop_stops_everything() {
        let echo = echo_server().await;
        let proxy = Proxy::start(any_loopback(), echo).await.unwrap();
        let addr = proxy.addr();
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_echo(&mut s, b"before drop").await;
        drop(proxy);
        assert_closed(&mut s).await;
        // The listener is gone: connecting fails, or (if the connect raced
        // the listener's close) the connection is closed without an echo.
        if let Ok(mut late) = TcpStream::connect(addr).await {
            let _ = late.write_all(b"anyone?").await;
            assert_closed(&mut late).await;
        }
    }

    #[tokio::test]
    async fn rejects_non_loopback_addresses() {
        let echo = echo_server().await;
        let err = Proxy::start("0.0.0.0:0".parse().unwrap(), echo)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let err = Proxy::start(any_loopback(), "192.0.2.1:80".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
    }
}
