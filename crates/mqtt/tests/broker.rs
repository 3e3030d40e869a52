//! The broker over real TCP connections with rumqttc clients (3.1.1 and 5.0), against a
//! store in a temporary folder.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::Packet as Packet5;
use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};
use shoal_auth::Auth;
use shoal_components::Components;
use shoal_mqtt::{Broker, BrokerParts, MqttOptions, Peer};
use shoal_store::{Mode, Store, StoreOptions, TableSpec, Write};
use tokio::net::TcpListener;

struct Node {
    dir: tempfile::TempDir,
    store: Arc<Store>,
    broker: Arc<Broker>,
    port: u16,
    accept: tokio::task::JoinHandle<()>,
}

async fn node(options: MqttOptions) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = open(dir, options, 0).await;
    let data = node.store.create_database("data").await.expect("db");
    let spec = TableSpec {
        name: "dog".into(),
        primary_key: "id".into(),
        ..TableSpec::default()
    };
    data.write(Write::CreateTable(spec), None)
        .await
        .expect("table");
    node
}

/// Opens the node in `dir`, its broker listening on `port` (0: any).
async fn open(dir: tempfile::TempDir, options: MqttOptions, port: u16) -> Node {
    let store =
        Arc::new(Store::open(StoreOptions::new(dir.path().join("db"), "n1")).expect("store"));
    let auth = Arc::new(Auth::new(store.clone()));
    auth.bootstrap("admin", Some("secret"))
        .await
        .expect("bootstrap");
    let parts = BrokerParts {
        store: store.clone(),
        auth,
        components: Arc::new(Components::new(dir.path().join("components"))),
        cluster: None,
    };
    let broker = Broker::start(parts, options).await;
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let serving = broker.clone();
    let accept = tokio::spawn(async move {
        while let Ok((stream, address)) = listener.accept().await {
            let peer = Peer {
                address,
                secure: false,
                certificate_user: None,
            };
            tokio::spawn(serving.clone().connection(stream, peer));
        }
    });
    Node {
        dir,
        store,
        broker,
        port,
        accept,
    }
}

impl Node {
    /// Closes the broker and the store, and opens them again on the same port.
    async fn restart(self, options: MqttOptions) -> Node {
        self.broker.close().await;
        self.accept.abort();
        let _ = self.accept.await;
        self.store.workers().shutdown(Duration::from_secs(5)).await;
        self.store.close().await;
        drop(self.broker);
        drop(self.store);
        open(self.dir, options, self.port).await
    }
}

fn client4(node: &Node, id: &str, password: &str) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", node.port);
    options.set_credentials("admin", password);
    options.set_keep_alive(Duration::from_secs(30));
    rumqttc::AsyncClient::new(options, 100)
}

fn client5(node: &Node, id: &str) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = rumqttc::v5::MqttOptions::new(id, "127.0.0.1", node.port);
    options.set_credentials("admin", "secret");
    options.set_keep_alive(Duration::from_secs(30));
    rumqttc::v5::AsyncClient::new(options, 100)
}

/// Polls until `want` picks something out of an event, within a deadline.
async fn until4<T>(
    events: &mut rumqttc::EventLoop,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.poll().await.expect("connection");
            if let Some(found) = want(&event) {
                return found;
            }
        }
    })
    .await
    .expect("in time")
}

async fn until5<T>(
    events: &mut rumqttc::v5::EventLoop,
    mut want: impl FnMut(&rumqttc::v5::Event) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.poll().await.expect("connection");
            if let Some(found) = want(&event) {
                return found;
            }
        }
    })
    .await
    .expect("in time")
}

fn publish4(event: &Event) -> Option<rumqttc::Publish> {
    match event {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    }
}

fn suback4(event: &Event) -> Option<()> {
    matches!(event, Event::Incoming(Packet::SubAck(_))).then_some(())
}

#[tokio::test]
async fn a_plain_message_reaches_a_wildcard_subscriber_at_every_qos() {
    let node = node(MqttOptions::default()).await;
    let (sub, mut sub_events) = client4(&node, "sub", "secret");
    sub.subscribe("sensors/+/temp", QoS::ExactlyOnce)
        .await
        .unwrap();
    until4(&mut sub_events, suback4).await;
    let (publisher, mut pub_events) = client4(&node, "pub", "secret");
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        publisher
            .publish("sensors/a/temp", qos, false, format!("{i}"))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = &qos;
        });
        let got = tokio::select! {
            got = until4(&mut sub_events, publish4) => got,
            () = async { loop { let _ = pub_events.poll().await; } } => unreachable!(),
        };
        assert_eq!(got.payload.as_ref(), format!("{i}").as_bytes());
        assert_eq!(got.qos, qos);
        assert_eq!(got.topic, "sensors/a/temp");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let node = node(MqttOptions::default()).await;
    let (_client, mut events) = client4(&node, "c", "wrong");
    let error = tokio::time::timeout(Duration::from_secs(10), events.poll())
        .await
        .expect("in time")
        .expect_err("refused");
    assert!(
        format!("{error:?}").contains("BadUserNamePassword"),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_retained_publish_to_a_record_topic_writes_the_record_and_subscribers_get_it() {
    let node = node(MqttOptions::default()).await;
    let (publisher, mut pub_events) = client5(&node, "pub5");
    publisher
        .publish(
            "dog/1",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            r#"{"name":"Rex"}"#,
        )
        .await
        .unwrap();
    until5(&mut pub_events, |e| {
        matches!(e, rumqttc::v5::Event::Incoming(Packet5::PubAck(_))).then_some(())
    })
    .await;
    let db = node.store.database("data").unwrap();
    let snapshot = db.snapshot().unwrap();
    let table = snapshot.table("dog").unwrap();
    let record = snapshot
        .get(&table, &json!(1))
        .unwrap()
        .expect("record")
        .value()
        .unwrap()
        .expect("live");
    assert_eq!(record["name"], "Rex");

    let (sub, mut sub_events) = client5(&node, "sub5");
    sub.subscribe("dog/1", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await
        .unwrap();
    let first = until5(&mut sub_events, |e| match e {
        rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert!(
        first.retain,
        "the current record comes as the retained message"
    );
    let body: Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(body["name"], "Rex");

    let write = Write::Records {
        table: "dog".into(),
        mode: Mode::Upsert,
        records: vec![json!({"id": 1, "name": "Max"}).as_object().unwrap().clone()],
    };
    db.write(write, None).await.unwrap();
    let next = until5(&mut sub_events, |e| match e {
        rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => Some(p.clone()),
        _ => None,
    })
    .await;
    let body: Value = serde_json::from_slice(&next.payload).unwrap();
    assert_eq!(body["name"], "Max");
    assert_eq!(next.topic.as_ref(), b"dog/1");
}

#[tokio::test]
async fn a_plain_retained_message_is_sent_to_later_subscribers() {
    let node = node(MqttOptions::default()).await;
    let (publisher, mut pub_events) = client4(&node, "pub", "secret");
    publisher
        .publish("status/door", QoS::AtLeastOnce, true, "open")
        .await
        .unwrap();
    until4(&mut pub_events, |e| {
        matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
    })
    .await;
    let (sub, mut sub_events) = client4(&node, "sub", "secret");
    sub.subscribe("status/#", QoS::AtLeastOnce).await.unwrap();
    let got = until4(&mut sub_events, publish4).await;
    assert!(got.retain);
    assert_eq!(got.payload.as_ref(), b"open");
}

fn publish5(event: &rumqttc::v5::Event) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
    match event {
        rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => Some(p.clone()),
        _ => None,
    }
}

fn suback5(event: &rumqttc::v5::Event) -> Option<()> {
    matches!(event, rumqttc::v5::Event::Incoming(Packet5::SubAck(_))).then_some(())
}

/// Drives an event loop in the background until it fails.
fn drive5(mut events: rumqttc::v5::EventLoop) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while events.poll().await.is_ok() {} })
}

#[tokio::test]
async fn a_persistent_session_gets_qos1_messages_published_while_away_even_across_a_restart() {
    let node = node(MqttOptions::default()).await;
    let persistent = |node: &Node| {
        let mut options = rumqttc::MqttOptions::new("keeper", "127.0.0.1", node.port);
        options.set_credentials("admin", "secret");
        options.set_clean_session(false);
        rumqttc::AsyncClient::new(options, 100)
    };
    let (sub, mut events) = persistent(&node);
    sub.subscribe("jobs/#", QoS::AtLeastOnce).await.unwrap();
    until4(&mut events, suback4).await;
    sub.disconnect().await.unwrap();
    until4(&mut events, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await;
    drop(events);

    let (publisher, mut pub_events) = client4(&node, "pub", "secret");
    publisher
        .publish("jobs/1", QoS::AtLeastOnce, false, "first")
        .await
        .unwrap();
    publisher
        .publish("jobs/2", QoS::AtLeastOnce, false, "second")
        .await
        .unwrap();
    // Both taken (acknowledged) before the restart.
    for _ in 0..2 {
        until4(&mut pub_events, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(())
        })
        .await;
    }
    drop(publisher);
    drop(pub_events);

    let node = node.restart(MqttOptions::default()).await;
    let (_sub, mut events) = persistent(&node);
    let connack = until4(&mut events, |e| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.clone()),
        _ => None,
    })
    .await;
    assert!(connack.session_present, "the session was restored");
    let first = until4(&mut events, publish4).await;
    let second = until4(&mut events, publish4).await;
    assert_eq!(
        (first.payload.as_ref(), second.payload.as_ref()),
        (&b"first"[..], &b"second"[..])
    );
}

#[tokio::test]
async fn a_will_is_published_when_a_client_vanishes_but_not_when_it_says_goodbye() {
    let node = node(MqttOptions::default()).await;
    let (watcher, mut watching) = client4(&node, "watcher", "secret");
    watcher
        .subscribe("wills/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    until4(&mut watching, suback4).await;
    for (id, vanish) in [("polite", false), ("vanishing", true)] {
        let mut options = rumqttc::MqttOptions::new(id, "127.0.0.1", node.port);
        options.set_credentials("admin", "secret");
        options.set_last_will(rumqttc::LastWill::new(
            format!("wills/{id}"),
            "gone",
            QoS::AtLeastOnce,
            false,
        ));
        let (client, mut events) = rumqttc::AsyncClient::new(options, 10);
        until4(&mut events, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_))).then_some(())
        })
        .await;
        if vanish {
            // The socket closes without DISCONNECT.
            drop(events);
        } else {
            client.disconnect().await.unwrap();
            until4(&mut events, |e| {
                matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
            })
            .await;
        }
    }
    let will = until4(&mut watching, publish4).await;
    assert_eq!(
        will.topic, "wills/vanishing",
        "only the vanished client's will"
    );
    assert_eq!(will.payload.as_ref(), b"gone");
}

/// Sends raw bytes on a new connection and returns what the broker answers until it
/// closes the connection.
async fn raw(node: &Node, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the broker closes the connection")
        .ok();
    answer
}

/// A 5.0 CONNECT for `admin:secret`.
fn connect5() -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b1100_0010, 0, 60, 0];
    body.extend([0, 1, b'r']);
    body.extend([0, 5]);
    body.extend(b"admin");
    body.extend([0, 6]);
    body.extend(b"secret");
    let mut packet = vec![0x10, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn malformed_and_oversized_packets_close_the_connection_with_a_reason() {
    let options = MqttOptions {
        max_packet_bytes: 64,
        ..MqttOptions::default()
    };
    let node = node(options).await;
    // A first packet that is not CONNECT: closed without an answer.
    assert!(raw(&node, &[0x30, 3, 0, 1, b'a']).await.is_empty());
    // A protocol level this broker does not speak: CONNACK 0x01 (3.1.1's form).
    let mut old = vec![
        0x10, 0, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 1, b'c',
    ];
    old[1] = (old.len() - 2) as u8;
    assert_eq!(raw(&node, &old).await, vec![0x20, 2, 0, 1]);

    // After a good CONNECT: a SUBSCRIBE with wrong reserved flags is malformed (0x81)...
    let mut bytes = connect5();
    bytes.extend([0x80, 7, 0, 1, 0, 0, 1, b'a', 0]);
    let answer = raw(&node, &bytes).await;
    assert_eq!(answer[0], 0x20, "CONNACK first: {answer:?}");
    assert_eq!(&answer[answer.len() - 3..], &[0xe0, 1, 0x81], "{answer:?}");
    // ...and a PUBLISH over the size limit is too large (0x95).
    let mut bytes = connect5();
    bytes.extend([0x30, 100]);
    bytes.extend([0u8; 100]);
    let answer = raw(&node, &bytes).await;
    assert_eq!(&answer[answer.len() - 3..], &[0xe0, 1, 0x95], "{answer:?}");

    // A will whose topic no one could publish to: CONNACK 0x90 (topic name invalid).
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0b1100_0110, 0, 60, 0];
    body.extend([0, 1, b'w', 0, 0, 3, b'a', b'/', b'#', 0, 1, b'x']);
    body.extend([0, 5]);
    body.extend(b"admin");
    body.extend([0, 6]);
    body.extend(b"secret");
    let mut bytes = vec![0x10, body.len() as u8];
    bytes.extend(body);
    assert_eq!(raw(&node, &bytes).await, vec![0x20, 3, 0, 0x90, 0]);

    // The broker still serves.
    let (client, mut events) = client5(&node, "after");
    client
        .subscribe("x", rumqttc::v5::mqttbytes::QoS::AtMostOnce)
        .await
        .unwrap();
    until5(&mut events, suback5).await;
}

#[tokio::test]
async fn a_slow_subscriber_never_slows_a_publisher_and_keeps_only_the_newest_messages() {
    let options = MqttOptions {
        max_queued_messages: 10,
        max_inflight: 5,
        ..MqttOptions::default()
    };
    let node = node(options).await;
    // A subscriber that connects, subscribes, then reads nothing.
    let mut bytes = connect5();
    bytes.extend([0x82, 9, 0, 1, 0, 0, 3, b'f', b'/', b'#', 1]);
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stalled, &bytes)
        .await
        .unwrap();

    let (publisher, mut events) = client4(&node, "fast", "secret");
    let payload = vec![7u8; 8 << 10];
    let count = 4000;
    let send = async {
        for i in 0..count {
            publisher
                .publish(format!("f/{i}"), QoS::AtLeastOnce, false, payload.clone())
                .await
                .unwrap();
        }
    };
    let acks = async {
        let mut acked = 0;
        while acked < count {
            acked += until4(&mut events, |e| {
                matches!(e, Event::Incoming(Packet::PubAck(_))).then_some(1)
            })
            .await;
        }
    };
    // 32 MiB published to a subscriber that reads none of it: every publish is taken.
    tokio::join!(send, acks);

    // What the subscriber gets once it reads: its window, then the newest queued ones.
    let mut received = Vec::new();
    let mut buf = bytes::BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut pkids = Vec::new();
    while received.len() < 15 && tokio::time::Instant::now() < deadline {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        match rumqttc::v5::mqttbytes::v5::Packet::read(&mut buf, None) {
            Ok(Packet5::Publish(p)) => {
                pkids.push(p.pkid);
                received.push(String::from_utf8_lossy(&p.topic).into_owned());
                // Acknowledge, so that the window moves on.
                let ack = [0x40, 2, (p.pkid >> 8) as u8, p.pkid as u8];
                stalled.write_all(&ack).await.unwrap();
            }
            Ok(_) => {}
            Err(_) => {
                let mut chunk = vec![0u8; 1 << 16];
                let n = tokio::time::timeout_at(deadline, stalled.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    assert_eq!(
        received.len(),
        15,
        "five in flight, then the ten newest: {received:?}"
    );
    let newest: Vec<String> = (count - 10..count).map(|i| format!("f/{i}")).collect();
    assert_eq!(&received[5..], &newest[..]);
}

#[tokio::test]
async fn five_point_o_properties_and_subscription_options_are_honoured() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    use rumqttc::v5::mqttbytes::v5::{
        Filter, PublishProperties, RetainForwardRule, SubscribeProperties,
    };
    let node = node(MqttOptions::default()).await;
    // A retained message that exists before the subscriptions.
    let (early, mut early_events) = client5(&node, "early");
    early
        .publish("opts/kept", Q::AtLeastOnce, true, "old")
        .await
        .unwrap();
    until5(&mut early_events, |e| {
        matches!(e, rumqttc::v5::Event::Incoming(Packet5::PubAck(_))).then_some(())
    })
    .await;
    let _early = drive5(early_events);

    let (sub, mut events) = client5(&node, "sub");
    let filter = |path: &str, nolocal: bool, rap: bool, rule: RetainForwardRule| Filter {
        path: path.into(),
        qos: Q::AtLeastOnce,
        nolocal,
        preserve_retain: rap,
        retain_forward_rule: rule,
    };
    let id = SubscribeProperties {
        id: Some(7),
        user_properties: Vec::new(),
    };
    sub.subscribe_many_with_properties(
        [
            filter("props/#", false, false, RetainForwardRule::OnEverySubscribe),
            filter("mine/#", true, false, RetainForwardRule::OnEverySubscribe),
            filter("opts/#", false, true, RetainForwardRule::Never),
        ],
        id,
    )
    .await
    .unwrap();
    until5(&mut events, suback5).await;

    // Properties travel from publisher to subscriber.
    let properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(3600),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(bytes::Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into()), ("k".into(), "w".into())],
        ..PublishProperties::default()
    };
    early
        .publish_with_properties("props/a", Q::AtLeastOnce, false, "hello", properties)
        .await
        .unwrap();
    let got = until5(&mut events, publish5).await;
    let p = got.properties.expect("properties");
    assert_eq!(p.content_type.as_deref(), Some("text/plain"));
    assert_eq!(p.response_topic.as_deref(), Some("replies/1"));
    assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
    assert_eq!(
        p.user_properties,
        vec![
            ("k".to_owned(), "v".to_owned()),
            ("k".to_owned(), "w".to_owned())
        ]
    );
    assert_eq!(p.payload_format_indicator, Some(1));
    assert!(
        p.message_expiry_interval
            .is_some_and(|s| s <= 3600 && s > 3500)
    );
    assert_eq!(p.subscription_identifiers, vec![7]);

    // No-local: the subscriber's own message on `mine/#` does not come back; a retained
    // live message keeps its flag only on the retain-as-published subscription; the
    // message already retained was never sent (retain handling 2).
    sub.publish("mine/x", Q::AtLeastOnce, false, "own")
        .await
        .unwrap();
    early
        .publish("opts/live", Q::AtLeastOnce, true, "new")
        .await
        .unwrap();
    early
        .publish("props/b", Q::AtLeastOnce, true, "plain")
        .await
        .unwrap();
    let first = until5(&mut events, publish5).await;
    let second = until5(&mut events, publish5).await;
    assert_eq!(
        first.topic.as_ref(),
        b"opts/live",
        "own message and old retained one skipped"
    );
    assert!(first.retain, "retain as published");
    assert_eq!(second.topic.as_ref(), b"props/b");
    assert!(!second.retain, "live delivery clears the flag");
}

#[tokio::test]
async fn a_share_group_splits_messages_among_its_members() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    let node = node(MqttOptions::default()).await;
    let counts = Arc::new([
        std::sync::atomic::AtomicUsize::new(0),
        std::sync::atomic::AtomicUsize::new(0),
    ]);
    let mut members = Vec::new();
    for i in 0..2 {
        let (member, mut events) = client5(&node, &format!("member{i}"));
        member
            .subscribe("$share/workers/tasks/+", Q::AtLeastOnce)
            .await
            .unwrap();
        until5(&mut events, suback5).await;
        let counts = counts.clone();
        members.push((
            member,
            tokio::spawn(async move {
                while let Ok(event) = events.poll().await {
                    if publish5(&event).is_some() {
                        counts[i].fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }),
        ));
    }
    let (publisher, events) = client5(&node, "boss");
    let _driving = drive5(events);
    for i in 0..20 {
        publisher
            .publish(format!("tasks/{i}"), Q::AtLeastOnce, false, "t")
            .await
            .unwrap();
    }
    let total = || {
        counts
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::SeqCst))
            .sum::<usize>()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while total() < 20 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("all delivered");
    assert_eq!(total(), 20, "each message to one member");
    assert!(
        counts
            .iter()
            .all(|c| c.load(std::sync::atomic::Ordering::SeqCst) > 0),
        "both members get some"
    );
}

/// A 5.0 PUBLISH at QoS 2 with packet id `pkid`, its topic or a topic alias.
fn publish_qos2(topic: &str, alias: Option<u16>, pkid: u16, dup: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = vec![0, topic.len() as u8];
    body.extend(topic.as_bytes());
    body.extend(pkid.to_be_bytes());
    match alias {
        Some(alias) => body.extend([3, 0x23, (alias >> 8) as u8, alias as u8]),
        None => body.push(0),
    }
    body.extend(payload);
    let mut packet = vec![0x34 | if dup { 0x08 } else { 0 }, body.len() as u8];
    packet.extend(body);
    packet
}

#[tokio::test]
async fn a_resent_qos2_message_is_delivered_once_and_topic_aliases_name_topics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = node(MqttOptions::default()).await;
    let (sub, mut events) = client4(&node, "sub", "secret");
    sub.subscribe("q2/#", QoS::ExactlyOnce).await.unwrap();
    until4(&mut events, suback4).await;

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", node.port))
        .await
        .unwrap();
    let mut bytes = connect5();
    // The same message twice (the second marked DUP) before PUBREL, then PUBREL.
    bytes.extend(publish_qos2("q2/a", Some(1), 9, false, b"once"));
    bytes.extend(publish_qos2("q2/a", Some(1), 9, true, b"once"));
    bytes.extend([0x62, 2, 0, 9]);
    // The alias now names q2/a: a PUBLISH with an empty topic goes there.
    bytes.extend(publish_qos2("", Some(1), 10, false, b"aliased"));
    bytes.extend([0x62, 2, 0, 10]);
    stream.write_all(&bytes).await.unwrap();

    let first = until4(&mut events, publish4).await;
    let second = until4(&mut events, publish4).await;
    assert_eq!(
        (first.topic.as_str(), first.payload.as_ref()),
        ("q2/a", &b"once"[..])
    );
    assert_eq!(
        (second.topic.as_str(), second.payload.as_ref()),
        ("q2/a", &b"aliased"[..])
    );

    // The publisher got PUBREC, PUBREC, PUBCOMP, PUBREC, PUBCOMP after its CONNACK.
    let mut answer = vec![0u8; 1024];
    let mut got = Vec::new();
    while got.iter().filter(|b: &&u8| **b == 0x70).count() < 2 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0);
        got.extend(&answer[..n]);
    }
    let kinds: Vec<u8> = packets(&got).iter().map(|p| p[0]).collect();
    assert_eq!(kinds, vec![0x20, 0x50, 0x50, 0x70, 0x50, 0x70], "{got:?}");
    // An alias beyond the maximum the broker announced is a protocol error (0x94).
    let mut bytes = connect5();
    bytes.extend(publish_qos2("q2/b", Some(1000), 1, false, b"x"));
    let answer = raw(&node, &bytes).await;
    assert_eq!(&answer[answer.len() - 3..], &[0xe0, 1, 0x94], "{answer:?}");
}

/// Splits bytes into whole packets (lengths under 128 bytes).
fn packets(bytes: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let end = at + 2 + bytes[at + 1] as usize;
        out.push(&bytes[at..end.min(bytes.len())]);
        at = end;
    }
    out
}

#[tokio::test]
async fn a_clean_start_forgets_the_saved_session_for_good() {
    let node = node(MqttOptions::default()).await;
    let connect = |node: &Node, clean: bool| {
        let mut options = rumqttc::MqttOptions::new("forgetful", "127.0.0.1", node.port);
        options.set_credentials("admin", "secret");
        options.set_clean_session(clean);
        rumqttc::AsyncClient::new(options, 10)
    };
    let connack = |e: &Event| match e {
        Event::Incoming(Packet::ConnAck(ack)) => Some(ack.session_present),
        _ => None,
    };
    // A kept session with a subscription, saved when the broker closes...
    let (client, mut events) = connect(&node, false);
    client.subscribe("kept/#", QoS::AtLeastOnce).await.unwrap();
    until4(&mut events, suback4).await;
    drop(events);
    let node = node.restart(MqttOptions::default()).await;
    let (_client, mut events) = connect(&node, false);
    assert!(until4(&mut events, connack).await, "restored");
    drop(events);
    // ...then the client starts clean: after a restart nothing of it is left.
    let (client, mut events) = connect(&node, true);
    assert!(!until4(&mut events, connack).await);
    client.disconnect().await.unwrap();
    until4(&mut events, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await;
    drop(events);
    let node = node.restart(MqttOptions::default()).await;
    let (_client, mut events) = connect(&node, false);
    assert!(
        !until4(&mut events, connack).await,
        "the clean start forgot it"
    );
}

#[tokio::test]
async fn sessions_and_subscriptions_are_bounded() {
    use rumqttc::v5::mqttbytes::QoS as Q;
    let options = MqttOptions {
        max_sessions: 1,
        max_subscriptions: 2,
        ..MqttOptions::default()
    };
    let node = node(options).await;
    let (first, mut events) = client5(&node, "first");
    for topic in ["a", "b", "c", "a"] {
        first.subscribe(topic, Q::AtMostOnce).await.unwrap();
    }
    let mut codes = Vec::new();
    while codes.len() < 4 {
        let ack = until5(&mut events, |e| match e {
            rumqttc::v5::Event::Incoming(Packet5::SubAck(ack)) => Some(ack.return_codes.clone()),
            _ => None,
        })
        .await;
        codes.extend(ack);
    }
    use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as R;
    let granted = R::Success(Q::AtMostOnce);
    // A third filter is one too many; subscribing again to one it has is not.
    assert_eq!(codes, vec![granted, granted, R::QuotaExceeded, granted]);

    // A second session is one too many while the first lives.
    let (_second, mut refused) = client5(&node, "second");
    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Err(error) = refused.poll().await {
                return error;
            }
        }
    })
    .await
    .expect("refused in time");
    assert!(format!("{error:?}").contains("QuotaExceeded"), "{error:?}");
}
