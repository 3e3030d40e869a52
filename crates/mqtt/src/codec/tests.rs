use proptest::prelude::*;

use super::*;

fn bytes(raw: &[u8]) -> BytesMut {
    BytesMut::from(raw)
}

#[test]
fn connect_picks_the_version_from_the_protocol_level() {
    for (level, version) in [(4u8, Version::V4), (5, Version::V5)] {
        // CONNECT, "MQTT", level, clean start, keep-alive 60, client id "c" (and for 5.0
        // an empty property list).
        let mut raw = vec![0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 60];
        if level == 5 {
            raw.push(0);
        }
        raw.extend([0, 1, b'c']);
        raw[1] = (raw.len() - 2) as u8;
        let (found, packet) = read_connect(&mut bytes(&raw), 1024).unwrap().unwrap();
        assert_eq!(found, version);
        let Packet::Connect(connect, ..) = packet else {
            panic!("not a CONNECT: {packet:?}");
        };
        assert_eq!(connect.client_id, "c");
        assert!(connect.clean_start);
    }
    let mut raw = vec![
        0x10, 0, 0, 4, b'M', b'Q', b'T', b'T', 3, 0x02, 0, 60, 0, 1, b'c',
    ];
    raw[1] = (raw.len() - 2) as u8;
    assert!(matches!(
        read_connect(&mut bytes(&raw), 1024),
        Err(CodecError::UnsupportedProtocol(3))
    ));
}

#[test]
fn a_packet_waits_for_its_last_byte_and_larger_ones_are_refused() {
    // PUBLISH QoS 0, topic "a", payload "xyz".
    let raw = [0x30, 6, 0, 1, b'a', b'x', b'y', b'z'];
    assert!(
        read(&mut bytes(&raw[..5]), Version::V4, 1024)
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        read(&mut bytes(&raw), Version::V4, 5),
        Err(CodecError::TooLarge(6))
    ));
    let packet = read(&mut bytes(&raw), Version::V4, 1024).unwrap().unwrap();
    let Packet::Publish(publish) = packet else {
        panic!("not a PUBLISH");
    };
    assert_eq!(publish.payload.as_ref(), b"xyz");
}

#[test]
fn reserved_flags_and_qos_three_are_malformed() {
    // SUBSCRIBE must carry flags 0b0010.
    let subscribe = [0x80, 6, 0, 1, 0, 1, b'a', 0];
    assert!(matches!(
        read(&mut bytes(&subscribe), Version::V4, 1024),
        Err(CodecError::Malformed(_))
    ));
    let qos3 = [0x36, 5, 0, 1, b'a', 0, 1];
    assert!(matches!(
        read(&mut bytes(&qos3), Version::V4, 1024),
        Err(CodecError::Malformed(_))
    ));
    let dup_qos0 = [0x38, 3, 0, 1, b'a'];
    assert!(read(&mut bytes(&dup_qos0), Version::V5, 1024).is_err());
    let long_length = [0x30, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert!(read(&mut bytes(&long_length), Version::V5, usize::MAX).is_err());
}

#[test]
fn an_empty_disconnect_is_a_normal_one_in_both_versions() {
    for version in [Version::V4, Version::V5] {
        let packet = read(&mut bytes(&[0xe0, 0]), version, 1024)
            .unwrap()
            .unwrap();
        let Packet::Disconnect(disconnect) = packet else {
            panic!("not a DISCONNECT");
        };
        assert_eq!(
            disconnect.reason_code,
            DisconnectReasonCode::NormalDisconnection
        );
    }
}

#[test]
fn a_server_disconnect_has_no_3_1_1_form() {
    let packet = Packet::Disconnect(Disconnect {
        reason_code: DisconnectReasonCode::ServerShuttingDown,
        properties: None,
    });
    let mut buf = BytesMut::new();
    write(&packet, Version::V4, &mut buf).unwrap();
    assert!(buf.is_empty());
    write(&packet, Version::V5, &mut buf).unwrap();
    assert_eq!(&buf[..], &[0xe0, 1, 0x8b]);
}

proptest! {
    /// Whatever a client sends, reading gives a packet, asks for more, or refuses: it
    /// never panics and never reads past what it was given.
    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..300), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V4 };
        let mut buf = bytes(&raw);
        for _ in 0..raw.len() + 1 {
            match read(&mut buf, version, 1 << 16) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let _ = read_connect(&mut bytes(&raw), 1 << 16);
    }

    /// Packets shaped like real ones, with random contents after a valid fixed header.
    #[test]
    fn arbitrary_bodies_never_panic(kind in 1u8..16, body in proptest::collection::vec(any::<u8>(), 0..120), v5 in any::<bool>()) {
        let version = if v5 { Version::V5 } else { Version::V4 };
        let flags = match kind { 6 | 8 | 10 => 2, _ => 0 };
        let mut raw = vec![(kind << 4) | flags, body.len() as u8];
        raw.extend(&body);
        let _ = read(&mut bytes(&raw), version, 1 << 16);
    }
}
