//! Relaying opaque messages between joined nodes: two real `Cluster`s on loopback, over
//! their mutual TLS links, each on a store of its own in a temporary directory.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::hmac;
use bytes::Bytes;
use serde_json::Value;
use shoal_cluster::{
    Challenge, Cluster, ClusterError, ClusterOptions, Credentials, DerivedKey, KeyParams, ProofKey,
    Relayed, RelayedMessages,
};
use shoal_store::{SYSTEM_DATABASE, Store, StoreOptions};

/// How long anything here may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// How often a condition is checked again.
const POLL: Duration = Duration::from_millis(20);
const PASSWORD: &str = "relay-test-password";

/// A node whose only user, `admin`, has `PASSWORD`; proofs are HMACs keyed by the
/// password itself (the real key derivation is the `shoal` binary's business).
struct OneUser;

fn key(password: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, password.as_bytes())
}

struct Key(hmac::Key);

impl ProofKey for Key {
    fn client_proof(&self, transcript: &[u8]) -> Vec<u8> {
        hmac::sign(&self.0, &[&b"client"[..], transcript].concat())
            .as_ref()
            .to_vec()
    }
    fn is_server_proof(&self, transcript: &[u8], proof: &[u8]) -> bool {
        hmac::verify(&self.0, &[&b"server"[..], transcript].concat(), proof).is_ok()
    }
}

struct Answer {
    params: KeyParams,
    key: Key,
}

impl Challenge for Answer {
    fn params(&self) -> &KeyParams {
        &self.params
    }
    fn verify(&mut self, transcript: &[u8], proof: &[u8]) -> Result<bool, ClusterError> {
        hmac::verify(&self.key.0, &[&b"client"[..], transcript].concat(), proof)
            .map(|()| true)
            .map_err(|_| ClusterError::Refused("wrong proof".into()))
    }
    fn server_proof(&self, transcript: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key.0, &[&b"server"[..], transcript].concat())
            .as_ref()
            .to_vec()
    }
}

impl Credentials for OneUser {
    fn challenge(
        &self,
        _username: &str,
        _secret: &[u8],
        _peer: Option<IpAddr>,
    ) -> Result<Box<dyn Challenge + '_>, ClusterError> {
        Ok(Box::new(Answer {
            params: KeyParams {
                phc: "test".into(),
                len: 32,
            },
            key: Key(key(PASSWORD)),
        }))
    }

    fn derive_key(&self, password: &str, _params: &KeyParams) -> DerivedKey {
        let key = Key(key(password));
        Box::pin(async move { Ok(Box::new(key) as Box<dyn ProofKey>) })
    }
}

/// One running node.
struct Node {
    name: String,
    store: Arc<Store>,
    cluster: Arc<Cluster>,
}

/// Settings small enough for a test: quick pings, quick reconciles.
fn options(name: &str, listen: SocketAddr) -> ClusterOptions {
    ClusterOptions {
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(5),
        reconcile_interval: Duration::from_millis(100),
        ..ClusterOptions::new(name, listen)
    }
}

impl Node {
    /// Starts (or restarts) node `name` on its files in `dir`.
    async fn start(dir: &Path, options: ClusterOptions) -> Node {
        let name = options.name.clone();
        let store =
            Arc::new(Store::open(StoreOptions::new(dir.join("db"), name.as_str())).unwrap());
        if store.database(SYSTEM_DATABASE).is_err() {
            store.create_database(SYSTEM_DATABASE).await.unwrap();
        }
        let cluster = Cluster::start(store.clone(), Arc::new(OneUser), &dir.join("keys"), options)
            .await
            .unwrap();
        Node {
            name,
            store,
            cluster,
        }
    }

    /// Stops the node, keeping its files.
    async fn stop(self) {
        self.store.workers().shutdown(Duration::from_secs(10)).await;
        self.store.close().await;
    }

    /// The `relayed` counters of its cluster_status.
    fn counters(&self) -> Value {
        self.cluster.status().unwrap()["relayed"].clone()
    }

    fn counter(&self, name: &str) -> u64 {
        self.counters()[name].as_u64().unwrap()
    }
}

/// Waits until `check` holds, failing with `what` past the deadline.
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < DEADLINE,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The next message `rx` gets, failing past the deadline.
async fn next(rx: &mut RelayedMessages) -> Arc<Relayed> {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("a relayed message arrives in time")
        .expect("the cluster is running")
}

/// Two nodes, `a` joined to `b`.
async fn pair(root: &Path, a: ClusterOptions, b: ClusterOptions) -> (Node, Node) {
    let b = Node::start(&root.join("b"), b).await;
    let a = Node::start(&root.join("a"), a).await;
    let joined = a
        .cluster
        .add_node(&b.cluster.local_addr().to_string(), "admin", PASSWORD, None)
        .await
        .unwrap();
    assert_eq!(joined, "b");
    (a, b)
}

/// Waits until what `from` relays reaches `rx`: relays probes until one arrives, then a
/// marker, and takes everything up to the marker (only probes may come before it).
async fn linked(from: &Node, rx: &mut RelayedMessages) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < DEADLINE, "{} never linked", from.name);
        from.cluster.relay(Bytes::from_static(b"probe"));
        if let Ok(got) = tokio::time::timeout(POLL * 5, rx.recv()).await {
            assert_eq!(got.unwrap().payload, "probe");
            break;
        }
    }
    from.cluster.relay(Bytes::from_static(b"linked"));
    loop {
        let got = next(rx).await;
        assert_eq!(got.origin, from.name);
        if got.payload == "linked" {
            return;
        }
        assert_eq!(got.payload, "probe");
    }
}

/// Relays `n` numbered messages from `from` and checks that `rx` gets exactly those, in
/// order, from `from`, and nothing more (the fence relayed after them comes next).
async fn relay_and_check(from: &Node, rx: &mut RelayedMessages, tag: &str, n: usize) {
    for i in 0..n {
        from.cluster.relay(Bytes::from(format!("{tag} {i}")));
    }
    from.cluster.relay(Bytes::from_static(b"fence"));
    for i in 0..n {
        let got = next(rx).await;
        assert_eq!(got.origin, from.name);
        assert_eq!(got.payload, format!("{tag} {i}").as_bytes(), "message {i}");
    }
    let fence = next(rx).await;
    assert_eq!(
        fence.payload, "fence",
        "a message arrived twice or out of place"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_messages_reach_the_peer_once_in_order_both_ways() {
    let root = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let (a, b) = pair(root.path(), options("a", any), options("b", any)).await;
    let mut at_a = a.cluster.relayed();
    let mut at_b = b.cluster.relayed();
    linked(&a, &mut at_b).await;
    linked(&b, &mut at_a).await;

    relay_and_check(&a, &mut at_b, "from a", 2000).await;
    relay_and_check(&b, &mut at_a, "from b", 2000).await;
    // A second consumer sees the same messages, each once.
    let mut again = b.cluster.relayed();
    a.cluster.relay(Bytes::from_static(b"to both"));
    assert_eq!(next(&mut at_b).await.payload, "to both");
    assert_eq!(next(&mut again).await.payload, "to both");
    // A node does not get what it relays itself: what `b` relays next comes first.
    b.cluster.relay(Bytes::from_static(b"from b"));
    let got = next(&mut at_a).await;
    assert_eq!(
        (got.origin.as_str(), &got.payload[..]),
        ("b", &b"from b"[..])
    );

    assert!(a.counter("sent") >= 2002, "{}", a.counters());
    assert!(b.counter("received") >= 2002, "{}", b.counters());
    assert_eq!(a.counter("lost") + b.counter("lost"), 0);
    a.stop().await;
    b.stop().await;
}

/// Relays `payload` from `from` and waits until `rx` has it, skipping nothing.
async fn relay_one(from: &Node, rx: &mut RelayedMessages, payload: &'static str) {
    from.cluster.relay(Bytes::from_static(payload.as_bytes()));
    assert_eq!(next(rx).await.payload, payload);
}

// One thread: the links cannot run while the test relays without awaiting, so the queues
// fill exactly as the bounds say.
#[tokio::test(flavor = "current_thread")]
async fn full_queues_drop_rather_than_block_and_a_lagging_consumer_loses_the_oldest() {
    let root = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let small = |name| ClusterOptions {
        relay_queue_messages: 4,
        relay_queue_bytes: 64,
        ..options(name, any)
    };
    let (a, b) = pair(root.path(), small("a"), small("b")).await;
    let mut at_b = b.cluster.relayed();
    linked(&a, &mut at_b).await;
    let dropped = a.counter("dropped");

    // Bounded in count: the first four fit, the rest are dropped without waiting.
    for i in 0..100 {
        a.cluster.relay(Bytes::from(format!("m{i}")));
    }
    assert_eq!(a.counter("dropped") - dropped, 96);
    for i in 0..4 {
        assert_eq!(next(&mut at_b).await.payload, format!("m{i}").as_bytes());
    }
    relay_one(&a, &mut at_b, "fence 1").await;

    // Bounded in bytes: two messages of 30 bytes fit in 64, a third does not, and one
    // larger than the bound never does.
    for c in [b'x', b'y', b'z'] {
        a.cluster.relay(Bytes::from(vec![c; 30]));
    }
    assert_eq!(a.counter("dropped") - dropped, 97);
    assert_eq!(next(&mut at_b).await.payload, vec![b'x'; 30]);
    assert_eq!(next(&mut at_b).await.payload, vec![b'y'; 30]);
    a.cluster.relay(Bytes::from(vec![b'w'; 65]));
    assert_eq!(a.counter("dropped") - dropped, 98);
    relay_one(&a, &mut at_b, "fence 2").await;

    // A consumer that takes nothing while 12 arrive keeps the last 4 (its bound), and
    // the 8 it lost are counted.
    let received = b.counter("received");
    for round in 0..3 {
        for i in 0..4 {
            a.cluster
                .relay(Bytes::from(format!("late {}", round * 4 + i)));
        }
        let want = received + (round + 1) * 4;
        until("b received the round", || b.counter("received") >= want).await;
    }
    for i in 8..12 {
        assert_eq!(
            next(&mut at_b).await.payload,
            format!("late {i}").as_bytes()
        );
    }
    assert_eq!(b.counter("lost"), 8, "{}", b.counters());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_resume_once_a_restarted_peer_links_again() {
    let root = tempfile::tempdir().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let (a, b) = pair(root.path(), options("a", any), options("b", any)).await;
    let mut at_a = a.cluster.relayed();
    let mut at_b = b.cluster.relayed();
    linked(&a, &mut at_b).await;
    linked(&b, &mut at_a).await;
    relay_and_check(&a, &mut at_b, "before", 100).await;

    // B goes away (its links with A drop) and comes back on the same address.
    let b_addr = b.cluster.local_addr();
    b.stop().await;
    assert!(
        tokio::time::timeout(DEADLINE, at_b.recv())
            .await
            .unwrap()
            .is_none(),
        "the stopped node's consumer ends"
    );
    a.cluster.relay(Bytes::from_static(b"while b is down"));
    let b = Node::start(&root.path().join("b"), options("b", b_addr)).await;
    let mut at_b = b.cluster.relayed();
    // `linked` fails on anything but probes: what was relayed while B was down is gone.
    linked(&a, &mut at_b).await;
    linked(&b, &mut at_a).await;
    relay_and_check(&a, &mut at_b, "after", 100).await;
    relay_and_check(&b, &mut at_a, "after", 100).await;
    a.stop().await;
    b.stop().await;
}
