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
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    port: u16,
}

async fn node(options: MqttOptions) -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(Store::open(StoreOptions::new(dir.path().join("db"), "n1")).expect("store"));
    let auth = Arc::new(Auth::new(store.clone()));
    auth.bootstrap("admin", Some("secret"))
        .await
        .expect("bootstrap");
    let data = store.create_database("data").await.expect("db");
    let spec = TableSpec {
        name: "dog".into(),
        primary_key: "id".into(),
        ..TableSpec::default()
    };
    data.write(Write::CreateTable(spec), None)
        .await
        .expect("table");
    let parts = BrokerParts {
        store: store.clone(),
        auth,
        components: Arc::new(Components::new(dir.path().join("components"))),
        cluster: None,
    };
    let broker = Broker::start(parts, options).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, address)) = listener.accept().await {
            let peer = Peer {
                address,
                secure: false,
                certificate_user: None,
            };
            tokio::spawn(broker.clone().connection(stream, peer));
        }
    });
    Node {
        _dir: dir,
        store,
        port,
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
