//! A message on its way through the broker, and how one travels to a peer.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Publish, PublishProperties};
use serde::{Deserialize, Serialize};

/// A published message, shared by every delivery of it.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// Its topic name.
    pub(crate) topic: String,
    /// Its payload.
    pub(crate) payload: Bytes,
    /// The QoS it was published with.
    pub(crate) qos: QoS,
    /// Whether it was published retained.
    pub(crate) retain: bool,
    /// The 5.0 properties that travel with it (topic alias and subscription ids left out).
    pub(crate) properties: Properties,
    /// When it expires (5.0 message expiry), measured from its arrival.
    pub(crate) expires: Option<Instant>,
    /// The client that published it here, for no-local subscriptions.
    pub(crate) publisher: Option<String>,
}

/// The 5.0 publish properties a message keeps from publisher to subscribers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Properties {
    /// 1 when the payload is UTF-8 text.
    pub(crate) payload_format: Option<u8>,
    /// The payload's MIME type.
    pub(crate) content_type: Option<String>,
    /// Where a request wants its response.
    pub(crate) response_topic: Option<String>,
    /// What ties a response to its request.
    pub(crate) correlation_data: Option<Vec<u8>>,
    /// Name-value pairs, in order.
    pub(crate) user_properties: Vec<(String, String)>,
}

impl Properties {
    /// The properties of a received PUBLISH.
    pub(crate) fn of(properties: Option<&PublishProperties>) -> Properties {
        let Some(p) = properties else {
            return Properties::default();
        };
        Properties {
            payload_format: p.payload_format_indicator,
            content_type: p.content_type.clone(),
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
            user_properties: p.user_properties.clone(),
        }
    }

    /// Bytes these properties take, for queue accounting.
    pub(crate) fn size(&self) -> usize {
        self.content_type.as_ref().map_or(0, String::len)
            + self.response_topic.as_ref().map_or(0, String::len)
            + self.correlation_data.as_ref().map_or(0, Vec::len)
            + self
                .user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>()
    }
}

impl Message {
    /// A message from a client's PUBLISH (its topic already resolved from an alias).
    pub(crate) fn published(publish: &Publish, topic: String, publisher: &str) -> Message {
        let expiry = publish
            .properties
            .as_ref()
            .and_then(|p| p.message_expiry_interval);
        Message {
            topic,
            payload: publish.payload.clone(),
            qos: publish.qos,
            retain: publish.retain,
            properties: Properties::of(publish.properties.as_ref()),
            expires: expiry.map(|s| Instant::now() + Duration::from_secs(s.into())),
            publisher: Some(publisher.to_owned()),
        }
    }

    /// The message a client's will publishes.
    pub(crate) fn will(will: &LastWill, publisher: &str) -> Message {
        let p = will.properties.as_ref();
        Message {
            topic: String::from_utf8_lossy(&will.topic).into_owned(),
            payload: will.message.clone(),
            qos: will.qos,
            retain: will.retain,
            properties: Properties {
                payload_format: p.and_then(|p| p.payload_format_indicator),
                content_type: p.and_then(|p| p.content_type.clone()),
                response_topic: p.and_then(|p| p.response_topic.clone()),
                correlation_data: p.and_then(|p| p.correlation_data.as_ref().map(|d| d.to_vec())),
                user_properties: p.map(|p| p.user_properties.clone()).unwrap_or_default(),
            },
            expires: p
                .and_then(|p| p.message_expiry_interval)
                .map(|s| Instant::now() + Duration::from_secs(s.into())),
            publisher: Some(publisher.to_owned()),
        }
    }

    /// Bytes the message holds, for queue accounting.
    pub(crate) fn size(&self) -> usize {
        self.topic.len() + self.payload.len() + self.properties.size() + 64
    }

    /// Whether it has expired.
    pub(crate) fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|at| at <= now)
    }

    /// The PUBLISH that delivers it: `qos`, `retain` and the subscription ids as the
    /// subscription decides, the expiry as what is left of it.
    pub(crate) fn publish(
        &self,
        qos: QoS,
        pkid: u16,
        retain: bool,
        subscription_ids: &[usize],
        now: Instant,
    ) -> Publish {
        let p = &self.properties;
        let expiry = self.expires.map(|at| {
            u32::try_from(at.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
        });
        let properties = (p != &Properties::default()
            || expiry.is_some()
            || !subscription_ids.is_empty())
        .then(|| PublishProperties {
            payload_format_indicator: p.payload_format,
            message_expiry_interval: expiry,
            topic_alias: None,
            response_topic: p.response_topic.clone(),
            correlation_data: p.correlation_data.clone().map(Bytes::from),
            user_properties: p.user_properties.clone(),
            subscription_identifiers: subscription_ids.to_vec(),
            content_type: p.content_type.clone(),
        });
        Publish {
            dup: false,
            qos,
            retain,
            topic: Bytes::from(self.topic.clone()),
            pkid,
            payload: self.payload.clone(),
            properties,
        }
    }
}

/// A message as it travels to a peer broker (MessagePack), for its live subscribers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Relay {
    /// Topic name.
    pub(crate) topic: String,
    /// Payload.
    #[serde(with = "serde_bytes")]
    pub(crate) payload: Vec<u8>,
    /// QoS as published (0, 1, 2).
    pub(crate) qos: u8,
    /// Whether it was published retained (kept on every node as a replicated record;
    /// the flag matters to retain-as-published subscriptions).
    #[serde(default)]
    pub(crate) retain: bool,
    /// Seconds left before it expires.
    pub(crate) expiry: Option<u32>,
    /// Its properties.
    pub(crate) properties: Properties,
}

impl Relay {
    /// What to send to peers for `message`.
    pub(crate) fn encode(message: &Message) -> Option<Vec<u8>> {
        let now = Instant::now();
        let relay = Relay {
            topic: message.topic.clone(),
            payload: message.payload.to_vec(),
            qos: message.qos as u8,
            retain: message.retain,
            expiry: message.expires.map(|at| {
                u32::try_from(at.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
            }),
            properties: message.properties.clone(),
        };
        rmp_serde::to_vec(&relay).ok()
    }

    /// The message a peer relayed; `None` if the bytes are not one.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Message> {
        let relay: Relay = rmp_serde::from_slice(bytes).ok()?;
        Some(Message {
            topic: relay.topic,
            payload: Bytes::from(relay.payload),
            qos: match relay.qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => QoS::ExactlyOnce,
            },
            retain: relay.retain,
            properties: relay.properties,
            expires: relay
                .expiry
                .map(|s| Instant::now() + Duration::from_secs(s.into())),
            publisher: None,
        })
    }
}
