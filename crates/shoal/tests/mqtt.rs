//! The MQTT broker end to end: real `shoal` processes, the rumqttc client (3.1.1 and
//! 5.0) and Mosquitto's command-line clients (`mosquitto_pub`, `mosquitto_sub`,
//! installed by `.ci/run`). Topics that name records round-trip with REST; roles decide
//! who may subscribe and publish; a persistent session keeps its messages across a
//! restart; two nodes exchange messages both ways, also after one restarts.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use reqwest::Method;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::v5::mqttbytes::v5::{Packet as Packet5, SubscribeReasonCode};
use rumqttc::{Event, Packet, QoS};
use serde_json::{Value, json};
use shoal_testkit::cluster::{Member, exists, join, wait_links};
use shoal_testkit::{
    DEFAULT_ADMIN_PASSWORD, DEFAULT_ADMIN_USER, Node, add_role, add_user_with_role, admin,
    create_table_in, start, start_with, wait_until,
};

/// A bound on each wait; they end as soon as their condition holds.
const DEADLINE: Duration = Duration::from_secs(20);

fn mqtt(node: &Node) -> SocketAddr {
    node.mqtt_addr()
        .expect("the ready line names the MQTT port")
}

/// A 3.1.1 client of `node` logged in as `user`.
fn client4(
    node: &Node,
    id: &str,
    user: &str,
    password: &str,
) -> (rumqttc::AsyncClient, rumqttc::EventLoop) {
    let addr = mqtt(node);
    let mut options = rumqttc::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    rumqttc::AsyncClient::new(options, 100)
}

/// A 5.0 client of `node` logged in as `user`.
fn client5(
    node: &Node,
    id: &str,
    user: &str,
    password: &str,
) -> (rumqttc::v5::AsyncClient, rumqttc::v5::EventLoop) {
    let addr = mqtt(node);
    let mut options = rumqttc::v5::MqttOptions::new(id, addr.ip().to_string(), addr.port());
    options.set_credentials(user, password);
    options.set_keep_alive(Duration::from_secs(30));
    rumqttc::v5::AsyncClient::new(options, 100)
}

async fn next4<T>(
    events: &mut rumqttc::EventLoop,
    mut want: impl FnMut(&Event) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.poll().await?;
            if let Some(found) = want(&event) {
                return Ok(found);
            }
        }
    })
    .await
    .context("no such event in time")?
}

async fn next5<T>(
    events: &mut rumqttc::v5::EventLoop,
    mut want: impl FnMut(&rumqttc::v5::Event) -> Option<T>,
) -> anyhow::Result<T> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.poll().await?;
            if let Some(found) = want(&event) {
                return Ok(found);
            }
        }
    })
    .await
    .context("no such event in time")?
}

fn publish4(event: &Event) -> Option<rumqttc::Publish> {
    match event {
        Event::Incoming(Packet::Publish(p)) => Some(p.clone()),
        _ => None,
    }
}

fn publish5(event: &rumqttc::v5::Event) -> Option<rumqttc::v5::mqttbytes::v5::Publish> {
    match event {
        rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => Some(p.clone()),
        _ => None,
    }
}

fn suback4(event: &Event) -> Option<()> {
    matches!(event, Event::Incoming(Packet::SubAck(_))).then_some(())
}

fn puback4(event: &Event) -> Option<()> {
    matches!(event, Event::Incoming(Packet::PubAck(_))).then_some(())
}

/// Drives a client in the background, handing over the messages it receives.
fn drive4(mut events: rumqttc::EventLoop) -> tokio::sync::mpsc::Receiver<rumqttc::Publish> {
    let (tx, rx) = tokio::sync::mpsc::channel(1000);
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Some(p) = publish4(&event)
                && tx.send(p).await.is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Runs a Mosquitto command-line client; its exit code, stdout and stderr.
async fn mosquitto(program: &str, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = tokio::time::timeout(
        DEADLINE,
        tokio::process::Command::new(program).args(args).output(),
    )
    .await
    .context("mosquitto client in time")?
    .with_context(|| format!("running {program} (installed by .ci/run)"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The arguments that point a Mosquitto client at `node` as the admin.
fn target(node: &Node, version: &str) -> Vec<String> {
    let addr = mqtt(node);
    [
        "-h",
        &addr.ip().to_string(),
        "-p",
        &addr.port().to_string(),
        "-V",
        version,
        "-u",
        DEFAULT_ADMIN_USER,
        "-P",
        DEFAULT_ADMIN_PASSWORD,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn mosquitto_clients_publish_and_subscribe_with_wildcards_in_both_versions()
-> anyhow::Result<()> {
    let node = start("mq-mosquitto").await?;
    for version in ["mqttv311", "mqttv5"] {
        let base = target(&node, version);
        let topic = format!("{version}/room/1/temp");
        // The retained message is there before the subscriber, which takes it and stops.
        let mut publish = strs(&base);
        publish.extend(["-t", &topic, "-m", "21.5", "-q", "1", "-r"]);
        let (code, _, err) = mosquitto("mosquitto_pub", &publish).await?;
        assert_eq!(code, 0, "{err}");
        let filter = format!("{version}/+/+/temp");
        let mut subscribe = strs(&base);
        subscribe.extend(["-t", &filter, "-q", "2", "-C", "1", "-v"]);
        let (code, out, err) = mosquitto("mosquitto_sub", &subscribe).await?;
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), format!("{topic} 21.5"));
        // Clear it: an empty retained message forgets the topic.
        let mut clear = strs(&base);
        clear.extend(["-t", &topic, "-n", "-r"]);
        assert_eq!(mosquitto("mosquitto_pub", &clear).await?.0, 0);
    }
    // A wrong password and no credentials at all are refused.
    let addr = mqtt(&node);
    let (port, host) = (addr.port().to_string(), addr.ip().to_string());
    let (code, _, err) = mosquitto(
        "mosquitto_pub",
        &[
            "-h", &host, "-p", &port, "-u", "admin", "-P", "wrong", "-t", "x", "-m", "1",
        ],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(
        err.to_lowercase().contains("password") || err.contains("refused"),
        "{err}"
    );
    let (code, _, err) = mosquitto(
        "mosquitto_pub",
        &["-h", &host, "-p", &port, "-t", "x", "-m", "1"],
    )
    .await?;
    assert_ne!(code, 0, "anonymous clients are refused by default: {err}");
    Ok(())
}

#[tokio::test]
async fn anonymous_clients_may_use_plain_topics_when_authentication_is_not_required()
-> anyhow::Result<()> {
    let node = start_with("mq-anon", &["--mqtt-require-authentication", "false"]).await?;
    let addr = mqtt(&node);
    let (port, host) = (addr.port().to_string(), addr.ip().to_string());
    let (code, _, err) = mosquitto(
        "mosquitto_pub",
        &[
            "-h", &host, "-p", &port, "-t", "open/x", "-m", "1", "-q", "1",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    Ok(())
}

#[tokio::test]
async fn a_record_topic_round_trips_with_rest() -> anyhow::Result<()> {
    let node = start("mq-records").await?;
    create_table_in(&node, "data", "dog").await?;
    let (sub, mut events) = client5(&node, "watcher", DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
    sub.subscribe("dog/1", Q5::AtLeastOnce).await?;
    next5(&mut events, |e| {
        matches!(e, rumqttc::v5::Event::Incoming(Packet5::SubAck(_))).then_some(())
    })
    .await?;

    // PUT over REST reaches the MQTT subscriber...
    let response = admin(&node, Method::PUT, "/data/dog/1")
        .json(&json!({"id": 1, "name": "Penny"}))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.text().await?);
    let got = next5(&mut events, publish5).await?;
    assert_eq!(got.topic.as_ref(), b"dog/1");
    let record: Value = serde_json::from_slice(&got.payload)?;
    assert_eq!(record["name"], "Penny");

    // ...a retained publish over MQTT writes the record REST reads...
    let (publisher, mut pub_events) =
        client4(&node, "device", DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
    publisher
        .publish("dog/2", QoS::AtLeastOnce, true, r#"{"name":"Rex","age":3}"#)
        .await?;
    next4(&mut pub_events, puback4).await?;
    let body: Value = admin(&node, Method::GET, "/data/dog/2")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(
        (body["name"].clone(), body["age"].clone()),
        (json!("Rex"), json!(3))
    );

    // ...a new subscriber gets the record as the retained message...
    let (late, mut late_events) =
        client4(&node, "late", DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
    late.subscribe("dog/2", QoS::AtLeastOnce).await?;
    let retained = next4(&mut late_events, publish4).await?;
    assert!(retained.retain);
    assert_eq!(
        serde_json::from_slice::<Value>(&retained.payload)?["name"],
        "Rex"
    );

    // ...a payload that is not JSON is kept as a value and comes back as it was sent...
    publisher
        .publish("dog/3", QoS::AtLeastOnce, true, "plain words")
        .await?;
    next4(&mut pub_events, puback4).await?;
    let body: Value = admin(&node, Method::GET, "/data/dog/3")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["value"], "plain words");

    // ...and an empty retained payload deletes the record.
    publisher
        .publish("dog/2", QoS::AtLeastOnce, true, Vec::<u8>::new())
        .await?;
    next4(&mut pub_events, puback4).await?;
    let status = admin(&node, Method::GET, "/data/dog/2")
        .send()
        .await?
        .status();
    assert_eq!(status.as_u16(), 404);
    Ok(())
}

#[tokio::test]
async fn roles_decide_who_subscribes_and_publishes_and_what_records_show() -> anyhow::Result<()> {
    let node = start_with("mq-roles", &["--mqtt-plain-topics", "super_user"]).await?;
    create_table_in(&node, "data", "dog").await?;
    node.op_ok(
        json!({"operation": "insert", "database": "data", "table": "dog",
        "records": [{"id": 1, "name": "Penny", "owner": "Kyle"}]}),
    )
    .await?;
    let attribute = |name: &str, read: bool| json!({"attribute_name": name, "read": read, "insert": false, "update": false});
    add_role(
        &node,
        "reader",
        json!({
            "data": {"tables": {"dog": {
                "read": true, "insert": false, "update": false, "delete": false,
                "attribute_permissions": [attribute("name", true), attribute("owner", false)]
            }}}
        }),
    )
    .await?;
    add_user_with_role(&node, "rita", "pw-rita", "reader").await?;

    let (client, mut events) = client5(&node, "rita-1", "rita", "pw-rita");
    client.subscribe("dog/1", Q5::AtLeastOnce).await?;
    client.subscribe("elsewhere/#", Q5::AtLeastOnce).await?;
    let mut codes = Vec::new();
    let mut retained = None;
    while codes.len() < 2 || retained.is_none() {
        let event = tokio::time::timeout(DEADLINE, events.poll()).await??;
        match event {
            rumqttc::v5::Event::Incoming(Packet5::SubAck(ack)) => codes.extend(ack.return_codes),
            rumqttc::v5::Event::Incoming(Packet5::Publish(p)) => retained = Some(p),
            _ => {}
        }
    }
    assert_eq!(
        codes,
        vec![
            SubscribeReasonCode::Success(Q5::AtLeastOnce),
            SubscribeReasonCode::NotAuthorized
        ]
    );
    // The record shows only what the role may read.
    let record: Value = serde_json::from_slice(&retained.expect("record").payload)?;
    assert_eq!(record["name"], "Penny");
    assert!(record.get("owner").is_none(), "{record}");

    // Reading is not writing: a retained publish is refused, and the record is unchanged.
    client
        .publish("dog/1", Q5::AtLeastOnce, true, r#"{"name":"Hacked"}"#)
        .await?;
    let ack = next5(&mut events, |e| match e {
        rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) => Some(ack.clone()),
        _ => None,
    })
    .await?;
    assert_eq!(
        ack.reason,
        rumqttc::v5::mqttbytes::v5::PubAckReason::NotAuthorized
    );
    let body: Value = admin(&node, Method::GET, "/data/dog/1")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(body["name"], "Penny");
    Ok(())
}

#[tokio::test]
async fn a_persistent_session_gets_what_was_published_across_a_node_restart() -> anyhow::Result<()>
{
    let mut node = start("mq-restart").await?;
    let persistent = |node: &Node| {
        let addr = mqtt(node);
        let mut options = rumqttc::MqttOptions::new("keeper", addr.ip().to_string(), addr.port());
        options.set_credentials(DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
        options.set_clean_session(false);
        rumqttc::AsyncClient::new(options, 100)
    };
    let (sub, mut events) = persistent(&node);
    sub.subscribe("orders/#", QoS::ExactlyOnce).await?;
    next4(&mut events, suback4).await?;
    sub.disconnect().await?;
    next4(&mut events, |e| {
        matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)).then_some(())
    })
    .await?;
    drop(events);

    let (publisher, mut pub_events) =
        client4(&node, "shop", DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
    for i in 0..3 {
        publisher
            .publish(
                format!("orders/{i}"),
                QoS::AtLeastOnce,
                false,
                format!("order {i}"),
            )
            .await?;
    }
    for _ in 0..3 {
        next4(&mut pub_events, puback4).await?;
    }
    drop(pub_events);
    node.terminate().await?;
    node.restart().await?;
    let info = node
        .op_ok(json!({"operation": "system_information", "attributes": ["mqtt"]}))
        .await?;
    assert_eq!(info["mqtt"]["sessions"], 1, "restored: {info}");
    assert_eq!(info["mqtt"]["connected"], 0, "{info}");
    assert_eq!(info["mqtt"]["queued_messages"], 3, "{info}");

    let (_sub, mut events) = persistent(&node);
    let mut got = Vec::new();
    while got.len() < 3 {
        let p = next4(&mut events, publish4).await?;
        got.push(String::from_utf8_lossy(&p.payload).into_owned());
    }
    assert_eq!(got, vec!["order 0", "order 1", "order 2"]);
    Ok(())
}

#[tokio::test]
async fn two_nodes_exchange_messages_both_ways_also_after_one_restarts() -> anyhow::Result<()> {
    let a = Member::start("mq-a", "127.0.0.1", false, &[]).await?;
    let mut b = Member::start("mq-b", "127.0.0.1", false, &[]).await?;
    join(&a, &b).await?;
    wait_links(&[&a, &b], &["system"]).await?;

    // A retained publish to a record on A reaches B's subscriber through replication.
    create_table_in(&a.node, "data", "dog").await?;
    wait_until(DEADLINE, "the table on B", || {
        exists(&b.node, "data", Some("dog"))
    })
    .await?;
    let (watcher, mut watching) = client5(
        &b.node,
        "watcher",
        DEFAULT_ADMIN_USER,
        DEFAULT_ADMIN_PASSWORD,
    );
    watcher.subscribe("dog/7", Q5::AtLeastOnce).await?;
    next5(&mut watching, |e| {
        matches!(e, rumqttc::v5::Event::Incoming(Packet5::SubAck(_))).then_some(())
    })
    .await?;
    let (collar, mut collar_events) = client4(
        &a.node,
        "collar",
        DEFAULT_ADMIN_USER,
        DEFAULT_ADMIN_PASSWORD,
    );
    collar
        .publish("dog/7", QoS::AtLeastOnce, true, r#"{"where":"park"}"#)
        .await?;
    next4(&mut collar_events, puback4).await?;
    let seen = next5(&mut watching, publish5).await?;
    assert_eq!(
        serde_json::from_slice::<Value>(&seen.payload)?["where"],
        "park"
    );
    drop((watcher, watching, collar, collar_events));

    for round in 0..2 {
        // A device on A, an application on B, QoS 1 both ways.
        let admin = (DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD);
        let (device, mut device_events) =
            client4(&a.node, &format!("device{round}"), admin.0, admin.1);
        let (app, mut app_events) = client4(&b.node, &format!("app{round}"), admin.0, admin.1);
        device.subscribe("commands/#", QoS::AtLeastOnce).await?;
        next4(&mut device_events, suback4).await?;
        app.subscribe("telemetry/#", QoS::AtLeastOnce).await?;
        next4(&mut app_events, suback4).await?;
        let mut at_device = drive4(device_events);
        let mut at_app = drive4(app_events);
        // Links come up after a restart: publish until a message crosses, then each
        // one does, in order.
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "no message from A reached B"
            );
            device
                .publish("telemetry/probe", QoS::AtLeastOnce, false, "probe")
                .await?;
            if let Ok(Some(_)) =
                tokio::time::timeout(Duration::from_millis(300), at_app.recv()).await
            {
                break;
            }
        }
        for i in 0..20 {
            device
                .publish(
                    format!("telemetry/{i}"),
                    QoS::AtLeastOnce,
                    false,
                    format!("{round}.{i}"),
                )
                .await?;
        }
        let mut got = Vec::new();
        while got.len() < 20 {
            let p = tokio::time::timeout(DEADLINE, at_app.recv())
                .await?
                .context("app gone")?;
            if p.topic != "telemetry/probe" {
                got.push(String::from_utf8_lossy(&p.payload).into_owned());
            }
        }
        let sent: Vec<String> = (0..20).map(|i| format!("{round}.{i}")).collect();
        assert_eq!(got, sent, "each once, in order");
        app.publish("commands/reboot", QoS::AtLeastOnce, false, "now")
            .await?;
        let command = tokio::time::timeout(DEADLINE, at_device.recv())
            .await?
            .context("device gone")?;
        assert_eq!(command.topic, "commands/reboot");
        assert_eq!(command.payload.as_ref(), b"now");
        if round == 0 {
            drop((device, app));
            b.node.terminate().await?;
            b.node.restart().await?;
            wait_links(&[&a, &b], &["system"]).await?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn websocket_clients_and_tls_clients_with_certificates_share_the_broker() -> anyhow::Result<()>
{
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    // A CA of the test's own, the node's certificate from it, mTLS on.
    let dir = tempfile::tempdir()?;
    let ca = shoal_testkit::TestCa::new("MQTT test CA")?;
    let server = ca.server(&["127.0.0.1", "localhost"])?;
    let client = ca.client(DEFAULT_ADMIN_USER)?;
    let path = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.cert_pem.clone()),
        ("server.key", server.key_pem.clone()),
        ("client.pem", client.cert_pem.clone()),
        ("client.key", client.key_pem.clone()),
    ] {
        std::fs::write(path(name), pem)?;
    }
    let node = start_with(
        "mq-secure",
        &[
            "--mqtt-secure-port",
            "0",
            "--tls-certificate",
            &path("server.pem"),
            "--tls-private-key",
            &path("server.key"),
            "--tls-certificate-authority",
            &path("ca.pem"),
            "--mtls",
            "true",
        ],
    )
    .await?;

    // A WebSocket client (subprotocol `mqtt`) logs in with a password and leaves a
    // retained message.
    let mut request = format!("ws://{}/mqtt", node.http_addr()).into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse()?);
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let mut connect = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        4,
        0b1100_0010,
        0,
        60,
        0,
        2,
        b'w',
        b's',
    ];
    for field in [DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD] {
        connect.extend((field.len() as u16).to_be_bytes());
        connect.extend(field.as_bytes());
    }
    let mut packet = vec![0x10, connect.len() as u8];
    packet.extend(connect);
    // PUBLISH, QoS 1, retained: topic "cert/x", packet id 1, payload "over-ws".
    packet.extend([0x33, 17, 0, 6]);
    packet.extend(b"cert/x");
    packet.extend([0, 1]);
    packet.extend(b"over-ws");
    ws.send(Message::Binary(packet.into())).await?;
    let mut answer = Vec::new();
    while answer.len() < 8 {
        match tokio::time::timeout(DEADLINE, ws.next()).await? {
            Some(Ok(Message::Binary(bytes))) => answer.extend_from_slice(&bytes),
            Some(Ok(_)) => {}
            other => anyhow::bail!("the WebSocket ended: {other:?}"),
        }
    }
    assert_eq!(
        answer,
        vec![0x20, 2, 0, 0, 0x40, 2, 0, 1],
        "CONNACK accepted, then PUBACK"
    );

    // Mosquitto over TLS, logged in by its certificate alone, gets it.
    let mqtts = node.mqtts_addr().context("mqtts= in the ready line")?;
    let (code, out, err) = mosquitto(
        "mosquitto_sub",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &mqtts.port().to_string(),
            "--cafile",
            &path("ca.pem"),
            "--cert",
            &path("client.pem"),
            "--key",
            &path("client.key"),
            "-t",
            "cert/#",
            "-C",
            "1",
            "-v",
        ],
    )
    .await?;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "cert/x over-ws");
    Ok(())
}

#[tokio::test]
async fn malformed_and_oversized_packets_end_only_their_own_connection() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = start_with("mq-malformed", &["--mqtt-max-packet-bytes", "1024"]).await?;
    let send = |bytes: Vec<u8>| {
        let addr = mqtt(&node);
        async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream.write_all(&bytes).await?;
            let mut answer = Vec::new();
            tokio::time::timeout(DEADLINE, stream.read_to_end(&mut answer))
                .await
                .context("the node closes the connection")?
                .ok();
            anyhow::Ok(answer)
        }
    };
    // Noise instead of CONNECT: closed without an answer.
    assert!(send(b"GET / HTTP/1.1\r\n\r\n".to_vec()).await?.is_empty());
    // A 5.0 client that logs in, then sends a PUBLISH larger than the node takes: told
    // why (DISCONNECT 0x95, packet too large).
    let mut connect = vec![
        0,
        4,
        b'M',
        b'Q',
        b'T',
        b'T',
        5,
        0b1100_0010,
        0,
        60,
        0,
        0,
        1,
        b'z',
    ];
    for field in [DEFAULT_ADMIN_USER, DEFAULT_ADMIN_PASSWORD] {
        connect.extend((field.len() as u16).to_be_bytes());
        connect.extend(field.as_bytes());
    }
    let mut bytes = vec![0x10, connect.len() as u8];
    bytes.extend(connect);
    bytes.extend([0x30, 0x80, 0x10]); // remaining length 2048
    bytes.extend(vec![0u8; 2048]);
    let answer = send(bytes).await?;
    assert_eq!(answer.first(), Some(&0x20), "CONNACK first: {answer:?}");
    assert_eq!(&answer[answer.len() - 3..], &[0xe0, 1, 0x95], "{answer:?}");
    // Everyone else is still served.
    let base = target(&node, "mqttv5");
    let mut publish = strs(&base);
    publish.extend(["-t", "still/here", "-m", "yes", "-q", "1"]);
    let (code, _, err) = mosquitto("mosquitto_pub", &publish).await?;
    assert_eq!(code, 0, "{err}");
    Ok(())
}
