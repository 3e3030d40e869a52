//! One client connection: CONNECT and login, then a reader (packets from the client)
//! and a writer (acknowledgements first, then the session's queued messages within the
//! in-flight window) until either side ends it. The writer is apart from the reader so
//! that a client slow to read never stops the broker from reading its acknowledgements.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnAck, ConnAckProperties, ConnectReturnCode, Disconnect, DisconnectReasonCode, LastWill,
    Packet, PingResp, Publish, SubAck, Subscribe, SubscribeReasonCode, UnsubAck, UnsubAckReason,
    Unsubscribe,
};
use shoal_store::Pending;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::codec::{self, CodecError, Refusal, Version};
use crate::message::Message;
use crate::session::{Delivery, Session};
use crate::{Broker, Peer};

/// Topic aliases a 5.0 client may set.
const TOPIC_ALIAS_MAX: u16 = 64;
/// Bytes gathered before a write to the socket.
const WRITE_BATCH: usize = 64 << 10;
/// Packets the reader may queue for the writer before it waits.
const CONTROL_QUEUE: usize = 256;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum End {
    /// The client sent DISCONNECT: no will.
    Normal,
    /// The client sent DISCONNECT asking for its will.
    WithWill,
    /// The socket closed or failed.
    Closed,
    /// The broker closes it, telling a 5.0 client why.
    Refused(DisconnectReasonCode),
}

/// What the reader hands the writer.
enum Out {
    /// A packet to send.
    Packet(Box<Packet>),
    /// A retained message a new subscription is sent, after its SUBACK.
    Retained(Delivery),
    /// Send DISCONNECT with this reason (5.0) and close.
    Close(DisconnectReasonCode),
}

/// Serves a connection from its first byte to its end.
pub(crate) async fn serve<S>(broker: Arc<Broker>, stream: S, peer: Peer)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(4096);
    let max = broker.options.max_packet_bytes;
    let first = tokio::time::timeout(
        broker.options.connect_timeout,
        read_first(&mut reader, &mut buf, max),
    )
    .await;
    let (version, packet) = match first {
        Ok(Ok(Some(first))) => first,
        Ok(Err(error)) => {
            tracing::debug!(peer = %peer.address, %error, "MQTT CONNECT refused");
            // A client of a protocol level we do not speak is told so in 3.1.1's terms.
            if matches!(error, CodecError::UnsupportedProtocol(_)) {
                let connack = connack(ConnectReturnCode::UnsupportedProtocolVersion, false, None);
                let _ = send(&mut writer, &connack, Version::V4, &broker).await;
            }
            return;
        }
        _ => return,
    };
    let Packet::Connect(connect, will, login) = packet else {
        return;
    };
    // A will is published like any message, so its topic must be one a client could
    // publish to.
    if let Some(will) = &will
        && !std::str::from_utf8(&will.topic).is_ok_and(crate::topic::valid_name)
    {
        let refused = connack(ConnectReturnCode::TopicNameInvalid, false, None);
        let _ = send(&mut writer, &refused, version, &broker).await;
        return;
    }
    let user = match broker.login(login.as_ref(), &peer).await {
        Ok(user) => user,
        Err(code) => {
            tracing::debug!(peer = %peer.address, client = %connect.client_id, "MQTT login refused");
            let _ = send(&mut writer, &connack(code, false, None), version, &broker).await;
            return;
        }
    };
    let properties = connect.properties.as_ref();
    let mut client_id = connect.client_id.clone();
    let mut assigned = None;
    if client_id.is_empty() {
        // 3.1.1 gives an identifier only to a client that keeps no session.
        if version == Version::V4 && !connect.clean_start {
            let refused = connack(ConnectReturnCode::ClientIdentifierNotValid, false, None);
            let _ = send(&mut writer, &refused, version, &broker).await;
            return;
        }
        client_id = format!("shoal-{}", broker.next_connection());
        assigned = Some(client_id.clone());
    }
    let asked_expiry = match version {
        Version::V4 if !connect.clean_start => broker.options.max_session_expiry,
        Version::V4 => Duration::ZERO,
        Version::V5 => Duration::from_secs(
            properties
                .and_then(|p| p.session_expiry_interval)
                .unwrap_or(0)
                .into(),
        ),
    };
    let expiry = asked_expiry.min(broker.options.max_session_expiry);
    let attached = broker.attach(&client_id, connect.clean_start, |state| {
        state.expiry = expiry;
        state.username = user.as_ref().map(|u| u.username.clone());
        state.receive_maximum = properties
            .and_then(|p| p.receive_maximum)
            .unwrap_or(u16::MAX)
            .max(1);
        state.max_packet = properties.and_then(|p| p.max_packet_size);
    });
    let Some(attached) = attached else {
        tracing::warn!(client = %client_id, "MQTT session refused: mqtt.max_sessions reached");
        let refused = connack(ConnectReturnCode::QuotaExceeded, false, None);
        let _ = send(&mut writer, &refused, version, &broker).await;
        return;
    };
    let mut ack_properties = None;
    if version == Version::V5 {
        ack_properties = Some(ConnAckProperties {
            session_expiry_interval: (expiry != asked_expiry)
                .then(|| u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX)),
            receive_max: Some(broker.options.max_inflight.max(1)),
            max_packet_size: Some(u32::try_from(max).unwrap_or(u32::MAX)),
            assigned_client_identifier: assigned,
            topic_alias_max: Some(TOPIC_ALIAS_MAX),
            max_qos: None,
            retain_available: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        });
    }
    let ack = connack(ConnectReturnCode::Success, attached.present, ack_properties);
    if send(&mut writer, &ack, version, &broker).await.is_err() {
        broker.detach(&attached.session, attached.connection, &End::Closed);
        return;
    }
    tracing::debug!(
        client = %client_id,
        peer = %peer.address,
        secure = peer.secure,
        ?version,
        resumed = attached.present,
        "MQTT client connected"
    );
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    let (control, outgoing) = mpsc::channel(CONTROL_QUEUE);
    let (acks, owed) = mpsc::channel(CONTROL_QUEUE);
    let mut conn = Conn {
        broker: broker.clone(),
        session: attached.session.clone(),
        version,
        username: user.as_ref().map(|u| u.username.clone()),
        will,
        aliases: HashMap::new(),
        control: control.clone(),
        acks,
    };
    let mut acking = std::pin::pin!(ack_loop(owed, control.clone(), &attached.session));
    let mut writing = std::pin::pin!(write_loop(
        &broker,
        &attached.session,
        version,
        writer,
        outgoing,
        attached.close,
        attached.present,
    ));
    let end = tokio::select! {
        end = conn.read_loop(reader, buf, keep_alive) => {
            if let End::Refused(reason) = &end {
                // The writer sends what is queued, the DISCONNECT last, within its timeout.
                let _ = control.send(Out::Close(*reason)).await;
                let _ = tokio::time::timeout(broker.options.write_timeout, &mut writing).await;
            }
            end
        }
        end = &mut writing => end,
        end = &mut acking => end,
    };
    let will = conn.will.take();
    broker.detach(&attached.session, attached.connection, &end);
    if let Some(will) = will
        && matches!(end, End::WithWill | End::Closed | End::Refused(_))
        && end != End::Refused(DisconnectReasonCode::ServerShuttingDown)
    {
        broker.will(&attached.session, will, conn.username.clone());
    }
}

/// Reads bytes until the first packet (CONNECT) is whole.
async fn read_first<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(Version, Packet)>, CodecError> {
    loop {
        if let Some(first) = codec::read_connect(buf, max)? {
            return Ok(Some(first));
        }
        match reader.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

fn connack(
    code: ConnectReturnCode,
    session_present: bool,
    properties: Option<ConnAckProperties>,
) -> Packet {
    Packet::ConnAck(ConnAck {
        session_present,
        code,
        properties,
    })
}

async fn send<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet: &Packet,
    version: Version,
    broker: &Broker,
) -> Result<(), ()> {
    let mut buf = BytesMut::new();
    codec::write(packet, version, &mut buf).map_err(drop)?;
    match tokio::time::timeout(broker.options.write_timeout, writer.write_all(&buf)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// The reader's side of a connection.
struct Conn {
    broker: Arc<Broker>,
    session: Arc<Session>,
    version: Version,
    /// The user the client logged in as; `None` for an anonymous client.
    username: Option<String>,
    will: Option<LastWill>,
    aliases: HashMap<u16, String>,
    control: mpsc::Sender<Out>,
    acks: mpsc::Sender<Owed>,
}

/// An answer owed to the client, sent in order.
enum Owed {
    /// PUBACK or PUBREC.
    Publish(Ack),
    /// PUBCOMP for a PUBREL: its packet id, and whether that id awaited release.
    Release(u16, bool),
}

/// The acknowledgement a QoS 1 or 2 PUBLISH is owed.
struct Ack {
    qos: QoS,
    pkid: u16,
    /// The write it made, if any: acknowledged once durable.
    pending: Option<Pending>,
    /// Why it was not taken.
    refused: Option<Refusal>,
}

/// Sends acknowledgements in the order the packets came (as the specification asks),
/// each once its write is durable; writes queued meanwhile commit together, so one
/// client's retained publishes are not one fsync each.
async fn ack_loop(
    mut owed: mpsc::Receiver<Owed>,
    control: mpsc::Sender<Out>,
    session: &Session,
) -> End {
    while let Some(owed) = owed.recv().await {
        let ack = match owed {
            Owed::Publish(ack) => ack,
            Owed::Release(pkid, known) => {
                let packet = codec::pubcomp(pkid, known);
                if control.send(Out::Packet(Box::new(packet))).await.is_err() {
                    return End::Closed;
                }
                continue;
            }
        };
        let mut refused = ack.refused;
        if let Some(pending) = ack.pending
            && let Err(error) = pending.await
        {
            tracing::debug!(client = %session.client_id, %error, "MQTT publish not written");
            refused = Some(Refusal::Failed);
        }
        if refused.is_some() && ack.qos == QoS::ExactlyOnce {
            session.state().incoming.remove(&ack.pkid);
        }
        if let Some(packet) = codec::publish_ack(ack.qos, ack.pkid, refused)
            && control.send(Out::Packet(Box::new(packet))).await.is_err()
        {
            return End::Closed;
        }
    }
    End::Closed
}

impl Conn {
    async fn read_loop<R: AsyncRead + Unpin>(
        &mut self,
        mut reader: R,
        mut buf: BytesMut,
        keep_alive: Option<Duration>,
    ) -> End {
        let max = self.broker.options.max_packet_bytes;
        loop {
            loop {
                let packet = match codec::read(&mut buf, self.version, max) {
                    Ok(Some(packet)) => packet,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(client = %self.session.client_id, %error, "MQTT connection closed");
                        return End::Refused(error.reason());
                    }
                };
                if let Some(end) = self.handle(packet).await {
                    return end;
                }
            }
            let read = reader.read_buf(&mut buf);
            let read = match keep_alive {
                Some(limit) => match tokio::time::timeout(limit, read).await {
                    Ok(read) => read,
                    Err(_) => return End::Refused(DisconnectReasonCode::KeepAliveTimeout),
                },
                None => read.await,
            };
            match read {
                Ok(0) | Err(_) => return End::Closed,
                Ok(_) => {}
            }
        }
    }

    async fn out(&self, packet: Packet) -> Option<End> {
        self.control
            .send(Out::Packet(Box::new(packet)))
            .await
            .err()
            .map(|_| End::Closed)
    }

    /// Handles one packet; `Some` ends the connection.
    async fn handle(&mut self, packet: Packet) -> Option<End> {
        match packet {
            Packet::Publish(publish) => self.publish(publish).await,
            Packet::PubAck(ack) => {
                let mut state = self.session.state();
                if state
                    .inflight
                    .get(&ack.pkid)
                    .is_some_and(|i| i.delivery.qos == QoS::AtLeastOnce)
                {
                    state.inflight.remove(&ack.pkid);
                    state.dirty = true;
                }
                drop(state);
                self.session.wake.notify_one();
                None
            }
            Packet::PubRec(rec) => {
                let known = {
                    let mut state = self.session.state();
                    state.dirty = true;
                    match state.inflight.get_mut(&rec.pkid) {
                        Some(inflight) if (rec.reason as u8) < 0x80 => {
                            inflight.released = true;
                            true
                        }
                        Some(_) => {
                            state.inflight.remove(&rec.pkid);
                            false
                        }
                        None => false,
                    }
                };
                self.session.wake.notify_one();
                if known {
                    return self.out(codec::pubrel(rec.pkid)).await;
                }
                None
            }
            Packet::PubComp(comp) => {
                let mut state = self.session.state();
                state.inflight.remove(&comp.pkid);
                state.dirty = true;
                drop(state);
                self.session.wake.notify_one();
                None
            }
            Packet::PubRel(rel) => {
                let known = self.session.state().incoming.remove(&rel.pkid);
                // After the PUBREC it answers, which may still await its write.
                self.ack(Owed::Release(rel.pkid, known)).await
            }
            Packet::Subscribe(subscribe) => self.subscribe(subscribe).await,
            Packet::Unsubscribe(unsubscribe) => self.unsubscribe(unsubscribe).await,
            Packet::PingReq(_) => self.out(Packet::PingResp(PingResp)).await,
            Packet::Disconnect(disconnect) => {
                if let Some(expiry) = disconnect
                    .properties
                    .as_ref()
                    .and_then(|p| p.session_expiry_interval)
                {
                    let mut state = self.session.state();
                    // A session that was to end with its connection may not be kept now.
                    if !state.expiry.is_zero() {
                        state.expiry = Duration::from_secs(expiry.into())
                            .min(self.broker.options.max_session_expiry);
                    }
                }
                Some(match disconnect.reason_code {
                    DisconnectReasonCode::DisconnectWithWillMessage => End::WithWill,
                    _ => End::Normal,
                })
            }
            // A second CONNECT, AUTH, or a packet only servers send.
            _ => Some(End::Refused(DisconnectReasonCode::ProtocolError)),
        }
    }

    async fn publish(&mut self, publish: Publish) -> Option<End> {
        let alias = publish.properties.as_ref().and_then(|p| p.topic_alias);
        let topic = match std::str::from_utf8(&publish.topic) {
            Ok(topic) => topic.to_owned(),
            Err(_) => return Some(End::Refused(DisconnectReasonCode::MalformedPacket)),
        };
        let topic = match alias {
            Some(0) => return Some(End::Refused(DisconnectReasonCode::TopicAliasInvalid)),
            Some(alias) if alias > TOPIC_ALIAS_MAX => {
                return Some(End::Refused(DisconnectReasonCode::TopicAliasInvalid));
            }
            Some(alias) if topic.is_empty() => match self.aliases.get(&alias) {
                Some(topic) => topic.clone(),
                None => return Some(End::Refused(DisconnectReasonCode::ProtocolError)),
            },
            Some(alias) => {
                self.aliases.insert(alias, topic.clone());
                topic
            }
            None => topic,
        };
        if !crate::topic::valid_name(&topic) {
            return Some(End::Refused(DisconnectReasonCode::TopicNameInvalid));
        }
        if publish.qos == QoS::ExactlyOnce {
            let (taken, window_full) = {
                let state = self.session.state();
                let window = usize::from(self.broker.options.max_inflight.max(1));
                (
                    state.incoming.contains(&publish.pkid),
                    state.incoming.len() >= window,
                )
            };
            if taken {
                // A resent message already taken: acknowledge it again, deliver it once.
                let ack = Ack {
                    qos: publish.qos,
                    pkid: publish.pkid,
                    pending: None,
                    refused: None,
                };
                return self.ack(Owed::Publish(ack)).await;
            }
            if window_full {
                return Some(End::Refused(DisconnectReasonCode::ReceiveMaximumExceeded));
            }
        }
        let message = Message::published(&publish, topic, &self.session.client_id);
        let (pending, refused) = match self.broker.publish(message, self.username.as_deref()).await
        {
            Ok(pending) => (pending, None),
            Err(refusal) => {
                tracing::debug!(client = %self.session.client_id, ?refusal, "MQTT publish refused");
                (None, Some(refusal))
            }
        };
        if publish.qos == QoS::AtMostOnce {
            // Nothing to answer: a write queued goes on without anyone awaiting it.
            return None;
        }
        if refused.is_none() && publish.qos == QoS::ExactlyOnce {
            self.session.state().incoming.insert(publish.pkid);
        }
        self.ack(Owed::Publish(Ack {
            qos: publish.qos,
            pkid: publish.pkid,
            pending,
            refused,
        }))
        .await
    }

    /// Hands an acknowledgement to the acker, which sends them in the order the
    /// packets came, each PUBLISH's once its write (if any) is durable.
    async fn ack(&self, ack: Owed) -> Option<End> {
        self.acks.send(ack).await.err().map(|_| End::Closed)
    }

    async fn subscribe(&mut self, subscribe: Subscribe) -> Option<End> {
        let id = subscribe.properties.as_ref().and_then(|p| p.id);
        let mut codes = Vec::with_capacity(subscribe.filters.len());
        let mut retained = Vec::new();
        let mut budget = crate::retained::MAX_SENT;
        for filter in &subscribe.filters {
            let code = match self.broker.subscribe(
                &self.session,
                self.username.as_deref(),
                filter,
                id,
                &mut budget,
            ) {
                Ok((qos, messages)) => {
                    retained.extend(messages.into_iter().map(|m| (m, filter.clone())));
                    SubscribeReasonCode::Success(qos)
                }
                Err(code) => code,
            };
            codes.push(code);
        }
        let ack = Packet::SubAck(SubAck {
            pkid: subscribe.pkid,
            return_codes: codes,
            properties: None,
        });
        if let Some(end) = self.out(ack).await {
            return Some(end);
        }
        for (message, filter) in retained {
            let delivery = Delivery {
                qos: crate::router::min_qos(filter.qos, message.qos),
                message,
                retain: true,
                ids: id.into_iter().collect(),
            };
            if self.control.send(Out::Retained(delivery)).await.is_err() {
                return Some(End::Closed);
            }
        }
        None
    }

    async fn unsubscribe(&mut self, unsubscribe: Unsubscribe) -> Option<End> {
        let reasons = unsubscribe
            .filters
            .iter()
            .map(|filter| {
                if self.broker.unsubscribe(&self.session, filter) {
                    UnsubAckReason::Success
                } else {
                    UnsubAckReason::NoSubscriptionExisted
                }
            })
            .collect();
        let ack = Packet::UnsubAck(UnsubAck {
            pkid: unsubscribe.pkid,
            reasons,
            properties: None,
        });
        self.out(ack).await
    }
}

/// The writer's side: sends what the reader hands it, then the session's queue within
/// the in-flight window; after a reconnect, resends what was in flight first.
async fn write_loop<W: AsyncWrite + Unpin>(
    broker: &Broker,
    session: &Session,
    version: Version,
    mut writer: W,
    mut outgoing: mpsc::Receiver<Out>,
    mut close: watch::Receiver<Option<DisconnectReasonCode>>,
    resume: bool,
) -> End {
    let mut out = Writer {
        session,
        version,
        buf: BytesMut::with_capacity(WRITE_BATCH),
        max_packet: session.state().max_packet.map(|m| m as usize),
    };
    if resume {
        let inflight: Vec<(u16, crate::session::Inflight)> = session
            .state()
            .inflight
            .iter()
            .map(|(pkid, i)| (*pkid, i.clone()))
            .collect();
        let now = Instant::now();
        for (pkid, inflight) in inflight {
            if inflight.released {
                out.packet(&codec::pubrel(pkid));
            } else {
                out.delivery(&inflight.delivery, pkid, true, now);
            }
        }
    }
    let max_inflight = broker.options.max_inflight;
    loop {
        let now = Instant::now();
        // Acknowledgements and retained messages first, in the order the reader made them.
        let mut closing = None;
        while out.buf.len() < WRITE_BATCH && closing.is_none() {
            closing = match outgoing.try_recv() {
                Ok(taken) => out.take(taken, now),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => Some(None),
            };
        }
        if let Some(reason) = closing {
            let _ = flush(&mut writer, &out.buf, broker).await;
            return match reason {
                Some(reason) => disconnect(&mut writer, version, reason, broker).await,
                None => End::Closed,
            };
        }
        while out.buf.len() < WRITE_BATCH {
            let Some((delivery, pkid)) = session.next(max_inflight, now) else {
                break;
            };
            out.delivery(&delivery, pkid, false, now);
        }
        if !out.buf.is_empty() {
            if flush(&mut writer, &out.buf, broker).await.is_err() {
                return End::Closed;
            }
            out.buf.clear();
            continue;
        }
        let reason = tokio::select! {
            taken = outgoing.recv() => match taken {
                Some(taken) => match out.take(taken, Instant::now()) {
                    None => continue,
                    Some(reason) => reason,
                },
                None => None,
            },
            () = session.wake.notified() => continue,
            changed = close.changed() => match changed {
                Ok(()) => *close.borrow(),
                Err(_) => None,
            },
        };
        return match reason {
            Some(reason) => disconnect(&mut writer, version, reason, broker).await,
            None => End::Closed,
        };
    }
}

/// What the writer gathers before a write to the socket.
struct Writer<'a> {
    session: &'a Session,
    version: Version,
    buf: BytesMut,
    /// The largest packet the client takes.
    max_packet: Option<usize>,
}

impl Writer<'_> {
    /// Takes what the reader handed over; `Some` when the connection is to close (with a
    /// DISCONNECT of that reason, or none).
    fn take(&mut self, out: Out, now: Instant) -> Option<Option<DisconnectReasonCode>> {
        match out {
            Out::Packet(packet) => self.packet(&packet),
            Out::Retained(delivery) => {
                let pkid = match delivery.qos {
                    QoS::AtMostOnce => Some(0),
                    _ => self.session.state().track(&delivery),
                };
                // With every packet id in flight, a retained message is skipped.
                if let Some(pkid) = pkid {
                    self.delivery(&delivery, pkid, false, now);
                }
            }
            Out::Close(reason) => return Some(Some(reason)),
        }
        None
    }

    fn packet(&mut self, packet: &Packet) {
        encode(packet, self.version, &mut self.buf, self.max_packet);
    }

    /// Encodes a delivery as PUBLISH; one larger than the client takes is dropped (and
    /// leaves the in-flight window), as the specification says.
    fn delivery(&mut self, d: &Delivery, pkid: u16, dup: bool, now: Instant) {
        let mut publish = d.message.publish(d.qos, pkid, d.retain, &d.ids, now);
        publish.dup = dup;
        let packet = Packet::Publish(publish);
        if !encode(&packet, self.version, &mut self.buf, self.max_packet) && pkid != 0 {
            self.session.state().inflight.remove(&pkid);
        }
    }
}

/// Encodes `packet` unless it is larger than the client takes; whether it was.
fn encode(packet: &Packet, version: Version, buf: &mut BytesMut, max: Option<usize>) -> bool {
    let start = buf.len();
    if codec::write(packet, version, buf).is_err() {
        buf.truncate(start);
        return false;
    }
    if max.is_some_and(|max| buf.len() - start > max) {
        buf.truncate(start);
        return false;
    }
    true
}

async fn flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    buf: &[u8],
    broker: &Broker,
) -> Result<(), ()> {
    if buf.is_empty() {
        return Ok(());
    }
    match tokio::time::timeout(broker.options.write_timeout, writer.write_all(buf)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}

/// Tells a 5.0 client why the broker closes the connection, and closes it.
async fn disconnect<W: AsyncWrite + Unpin>(
    writer: &mut W,
    version: Version,
    reason: DisconnectReasonCode,
    broker: &Broker,
) -> End {
    let packet = Packet::Disconnect(Disconnect {
        reason_code: reason,
        properties: None,
    });
    let _ = send(writer, &packet, version, broker).await;
    let _ = tokio::time::timeout(broker.options.write_timeout, writer.shutdown()).await;
    End::Refused(reason)
}
