//! Packets on the wire: framing within a size limit, the checks rumqttc's codecs leave to
//! the broker (fixed-header flags, the protocol level of CONNECT), and one model for both
//! versions. The broker works on 5.0 packets; a 3.1.1 connection's packets are turned
//! into them on the way in and back on the way out.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{self as mb4, v4};
use rumqttc::v5::mqttbytes::v5::{
    self, ConnAck, ConnectReturnCode, Disconnect, DisconnectReasonCode, Filter, Packet, PubAck,
    PubAckReason, PubComp, PubCompReason, PubRec, PubRecReason, PubRel, PubRelReason,
    RetainForwardRule, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::v5::mqttbytes::{self as mb5, QoS};

/// The protocol a connection speaks, from its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// MQTT 3.1.1 (protocol level 4).
    V4,
    /// MQTT 5.0 (protocol level 5).
    V5,
}

/// Why the bytes from a client are not a packet; each closes the connection, 5.0
/// clients being told the reason code first.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    /// The packet is larger than the broker accepts.
    #[error("packet of {0} bytes is over the size limit")]
    TooLarge(usize),
    /// The bytes do not follow the protocol.
    #[error("malformed packet: {0}")]
    Malformed(String),
    /// CONNECT names a protocol this broker does not speak.
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocol(u8),
}

impl CodecError {
    /// The 5.0 reason code a DISCONNECT (or a refusing CONNACK) carries for this error.
    pub(crate) fn reason(&self) -> DisconnectReasonCode {
        match self {
            CodecError::TooLarge(_) => DisconnectReasonCode::PacketTooLarge,
            CodecError::Malformed(_) | CodecError::UnsupportedProtocol(_) => {
                DisconnectReasonCode::MalformedPacket
            }
        }
    }
}

/// The remaining length of the packet at the start of `buf` and the bytes its fixed
/// header takes: `None` while more bytes are needed.
fn fixed_header(buf: &[u8]) -> Result<Option<(usize, usize)>, CodecError> {
    let mut length = 0usize;
    for (i, byte) in buf.iter().skip(1).take(4).enumerate() {
        length |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((length, i + 2)));
        }
    }
    if buf.len() >= 5 {
        return Err(CodecError::Malformed(
            "remaining length over four bytes".into(),
        ));
    }
    Ok(None)
}

/// Flags the specification fixes for each packet type (PUBLISH's are checked apart).
fn check_flags(byte1: u8) -> Result<(), CodecError> {
    let (kind, flags) = (byte1 >> 4, byte1 & 0x0f);
    let expected = match kind {
        // PUBREL, SUBSCRIBE, UNSUBSCRIBE.
        6 | 8 | 10 => 0b0010,
        3 => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(CodecError::Malformed("PUBLISH with QoS 3".into()));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                return Err(CodecError::Malformed("DUP set on a QoS 0 PUBLISH".into()));
            }
            return Ok(());
        }
        1..=15 => 0,
        _ => return Err(CodecError::Malformed("packet type 0".into())),
    };
    if flags != expected {
        return Err(CodecError::Malformed(format!(
            "reserved flags {flags:#06b} on packet type {kind}"
        )));
    }
    Ok(())
}

/// Reads the first packet of a connection, which must be CONNECT: its protocol level
/// picks the version. `None` while more bytes are needed.
pub(crate) fn read_connect(
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<(Version, Packet)>, CodecError> {
    let Some((length, header)) = fixed_header(buf)? else {
        return Ok(None);
    };
    if buf[0] != 0x10 {
        return Err(CodecError::Malformed(
            "the first packet is not CONNECT".into(),
        ));
    }
    if length > max {
        return Err(CodecError::TooLarge(length));
    }
    if buf.len() < header + length {
        return Ok(None);
    }
    // Protocol name (two-byte length, "MQTT"), then the level.
    let level = *buf
        .get(header + 6)
        .ok_or_else(|| CodecError::Malformed("CONNECT too short".into()))?;
    let version = match level {
        4 => Version::V4,
        5 => Version::V5,
        other => return Err(CodecError::UnsupportedProtocol(other)),
    };
    let packet = read(buf, version, max)?.ok_or_else(|| CodecError::Malformed("CONNECT".into()))?;
    if !matches!(packet, Packet::Connect(..)) {
        return Err(CodecError::Malformed(
            "the first packet is not CONNECT".into(),
        ));
    }
    Ok(Some((version, packet)))
}

/// Reads the next whole packet from `buf`, as a 5.0 packet; `None` while more bytes are
/// needed.
pub(crate) fn read(
    buf: &mut BytesMut,
    version: Version,
    max: usize,
) -> Result<Option<Packet>, CodecError> {
    let Some((length, header)) = fixed_header(buf)? else {
        return Ok(None);
    };
    check_flags(buf[0])?;
    if length > max {
        return Err(CodecError::TooLarge(length));
    }
    if buf.len() < header + length {
        return Ok(None);
    }
    // rumqttc's 5.0 reader wants a reason code in DISCONNECT; an empty one means 0x00.
    if version == Version::V5 && buf[0] == 0xe0 && length == 0 {
        let _ = buf.split_to(header);
        return Ok(Some(Packet::Disconnect(Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
            properties: None,
        })));
    }
    let packet = match version {
        Version::V5 => v5::Packet::read(buf, None)
            .map_err(|e: mb5::Error| CodecError::Malformed(e.to_string()))?,
        Version::V4 => from_v4(
            v4::Packet::read(buf, usize::MAX)
                .map_err(|e: mb4::Error| CodecError::Malformed(e.to_string()))?,
        ),
    };
    Ok(Some(packet))
}

/// Writes `packet` for a client speaking `version`. Packets 3.1.1 has no form for (a
/// server's DISCONNECT, AUTH) are left out: the connection just closes.
pub(crate) fn write(packet: &Packet, version: Version, buf: &mut BytesMut) -> Result<(), String> {
    match version {
        // rumqttc writes a property length past the remaining length it declares.
        Version::V5 => match packet {
            Packet::Disconnect(Disconnect {
                reason_code,
                properties: None,
            }) => {
                buf.extend_from_slice(&[0xe0, 1, *reason_code as u8]);
                Ok(())
            }
            _ => packet.write(buf, None).map(drop).map_err(|e| e.to_string()),
        },
        Version::V4 => match to_v4(packet) {
            Some(packet) => packet
                .write(buf, usize::MAX)
                .map(drop)
                .map_err(|e| e.to_string()),
            None => Ok(()),
        },
    }
}

fn qos5(qos: mb4::QoS) -> QoS {
    match qos {
        mb4::QoS::AtMostOnce => QoS::AtMostOnce,
        mb4::QoS::AtLeastOnce => QoS::AtLeastOnce,
        mb4::QoS::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn qos4(qos: QoS) -> mb4::QoS {
    match qos {
        QoS::AtMostOnce => mb4::QoS::AtMostOnce,
        QoS::AtLeastOnce => mb4::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mb4::QoS::ExactlyOnce,
    }
}

/// A 3.1.1 packet as its 5.0 equivalent, without properties.
fn from_v4(packet: v4::Packet) -> Packet {
    match packet {
        v4::Packet::Connect(c) => Packet::Connect(
            v5::Connect {
                keep_alive: c.keep_alive,
                client_id: c.client_id,
                clean_start: c.clean_session,
                properties: None,
            },
            c.last_will.map(|w| v5::LastWill {
                topic: Bytes::from(w.topic),
                message: w.message,
                qos: qos5(w.qos),
                retain: w.retain,
                properties: None,
            }),
            c.login.map(|l| v5::Login {
                username: l.username,
                password: l.password,
            }),
        ),
        v4::Packet::Publish(p) => Packet::Publish(v5::Publish {
            dup: p.dup,
            qos: qos5(p.qos),
            retain: p.retain,
            topic: Bytes::from(p.topic),
            pkid: p.pkid,
            payload: p.payload,
            properties: None,
        }),
        v4::Packet::PubAck(a) => Packet::PubAck(PubAck::new(a.pkid, None)),
        v4::Packet::PubRec(a) => Packet::PubRec(PubRec::new(a.pkid, None)),
        v4::Packet::PubRel(a) => Packet::PubRel(PubRel::new(a.pkid, None)),
        v4::Packet::PubComp(a) => Packet::PubComp(PubComp::new(a.pkid, None)),
        v4::Packet::Subscribe(s) => Packet::Subscribe(v5::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| Filter {
                    path: f.path,
                    qos: qos5(f.qos),
                    nolocal: false,
                    preserve_retain: false,
                    retain_forward_rule: RetainForwardRule::OnEverySubscribe,
                })
                .collect(),
            properties: None,
        }),
        v4::Packet::Unsubscribe(u) => Packet::Unsubscribe(v5::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
            properties: None,
        }),
        v4::Packet::PingReq => Packet::PingReq(v5::PingReq),
        v4::Packet::PingResp => Packet::PingResp(v5::PingResp),
        v4::Packet::Disconnect => Packet::Disconnect(Disconnect {
            reason_code: DisconnectReasonCode::NormalDisconnection,
            properties: None,
        }),
        // Packets only a server sends; the broker treats them as protocol errors.
        v4::Packet::ConnAck(_) => Packet::ConnAck(ConnAck {
            session_present: false,
            code: ConnectReturnCode::ProtocolError,
            properties: None,
        }),
        v4::Packet::SubAck(a) => Packet::SubAck(SubAck {
            pkid: a.pkid,
            return_codes: Vec::new(),
            properties: None,
        }),
        v4::Packet::UnsubAck(a) => Packet::UnsubAck(UnsubAck {
            pkid: a.pkid,
            reasons: Vec::new(),
            properties: None,
        }),
    }
}

/// What a broker sends, in 3.1.1's form.
fn to_v4(packet: &Packet) -> Option<v4::Packet> {
    Some(match packet {
        Packet::ConnAck(a) => v4::Packet::ConnAck(v4::ConnAck::new(
            match a.code {
                ConnectReturnCode::Success => v4::ConnectReturnCode::Success,
                ConnectReturnCode::UnsupportedProtocolVersion
                | ConnectReturnCode::RefusedProtocolVersion => {
                    v4::ConnectReturnCode::RefusedProtocolVersion
                }
                ConnectReturnCode::ClientIdentifierNotValid | ConnectReturnCode::BadClientId => {
                    v4::ConnectReturnCode::BadClientId
                }
                ConnectReturnCode::BadUserNamePassword => {
                    v4::ConnectReturnCode::BadUserNamePassword
                }
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::Banned => {
                    v4::ConnectReturnCode::NotAuthorized
                }
                _ => v4::ConnectReturnCode::ServiceUnavailable,
            },
            a.session_present,
        )),
        Packet::Publish(p) => v4::Packet::Publish(v4::Publish {
            dup: p.dup,
            qos: qos4(p.qos),
            retain: p.retain,
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            pkid: p.pkid,
            payload: p.payload.clone(),
        }),
        Packet::PubAck(a) => v4::Packet::PubAck(v4::PubAck::new(a.pkid)),
        Packet::PubRec(a) => v4::Packet::PubRec(v4::PubRec::new(a.pkid)),
        Packet::PubRel(a) => v4::Packet::PubRel(v4::PubRel::new(a.pkid)),
        Packet::PubComp(a) => v4::Packet::PubComp(v4::PubComp::new(a.pkid)),
        Packet::SubAck(a) => v4::Packet::SubAck(v4::SubAck::new(
            a.pkid,
            a.return_codes
                .iter()
                .map(|code| match code {
                    SubscribeReasonCode::Success(qos) => {
                        v4::SubscribeReasonCode::Success(qos4(*qos))
                    }
                    _ => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Packet::UnsubAck(a) => v4::Packet::UnsubAck(v4::UnsubAck::new(a.pkid)),
        Packet::PingResp(_) => v4::Packet::PingResp,
        _ => return None,
    })
}

/// An acknowledgement of a client's QoS 1 or 2 PUBLISH, with a 5.0 reason.
pub(crate) fn publish_ack(qos: QoS, pkid: u16, refused: Option<Refusal>) -> Option<Packet> {
    match qos {
        QoS::AtMostOnce => None,
        QoS::AtLeastOnce => Some(Packet::PubAck(PubAck {
            pkid,
            reason: match refused {
                None => PubAckReason::Success,
                Some(Refusal::NotAuthorized) => PubAckReason::NotAuthorized,
                Some(Refusal::TopicInvalid) => PubAckReason::TopicNameInvalid,
                Some(Refusal::Failed) => PubAckReason::UnspecifiedError,
            },
            properties: None,
        })),
        QoS::ExactlyOnce => Some(Packet::PubRec(PubRec {
            pkid,
            reason: match refused {
                None => PubRecReason::Success,
                Some(Refusal::NotAuthorized) => PubRecReason::NotAuthorized,
                Some(Refusal::TopicInvalid) => PubRecReason::TopicNameInvalid,
                Some(Refusal::Failed) => PubRecReason::UnspecifiedError,
            },
            properties: None,
        })),
    }
}

/// Why a publish was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The user may not publish there.
    NotAuthorized,
    /// The topic is not a valid topic name.
    TopicInvalid,
    /// The record could not be written.
    Failed,
}

/// PUBREL for an outgoing QoS 2 message the client has received.
pub(crate) fn pubrel(pkid: u16) -> Packet {
    Packet::PubRel(PubRel {
        pkid,
        reason: PubRelReason::Success,
        properties: None,
    })
}

/// PUBCOMP for a client's PUBREL; `known` is whether its packet id was awaiting release.
pub(crate) fn pubcomp(pkid: u16, known: bool) -> Packet {
    Packet::PubComp(PubComp {
        pkid,
        reason: if known {
            PubCompReason::Success
        } else {
            PubCompReason::PacketIdentifierNotFound
        },
        properties: None,
    })
}

#[cfg(test)]
mod tests;
