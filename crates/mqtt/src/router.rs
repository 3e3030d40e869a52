//! Plain-topic subscriptions, in a tree of topic levels, so that finding who a message
//! goes to costs the depth of its topic, not the number of subscriptions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rumqttc::v5::mqttbytes::QoS;

use crate::message::Message;
use crate::session::{Delivery, Session, SubOptions};
use crate::topic::Subscription;

/// One subscriber at one filter.
#[derive(Debug, Clone)]
struct Entry {
    session: Arc<Session>,
    options: SubOptions,
}

/// A level of the tree.
#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    /// Subscriptions ending at this level, by client id; shared ones by group then client.
    here: HashMap<String, Entry>,
    shared: HashMap<String, HashMap<String, Entry>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.here.is_empty() && self.shared.is_empty()
    }
}

/// Plain-topic subscriptions of every session.
#[derive(Debug, Default)]
pub(crate) struct Router {
    root: RwLock<Node>,
    /// Spreads shared-subscription messages over a group's members.
    turn: AtomicUsize,
}

impl Router {
    /// Adds (or replaces) `session`'s subscription; whether it existed before.
    pub(crate) fn add(
        &self,
        subscription: &Subscription,
        session: &Arc<Session>,
        options: SubOptions,
    ) -> bool {
        let mut root = self.root.write().unwrap_or_else(PoisonError::into_inner);
        let mut node = &mut *root;
        for level in subscription.filter.split('/') {
            node = node.children.entry(level.to_owned()).or_default();
        }
        let entry = Entry {
            session: session.clone(),
            options,
        };
        let slot = match &subscription.group {
            Some(group) => node.shared.entry(group.clone()).or_default(),
            None => &mut node.here,
        };
        slot.insert(session.client_id.clone(), entry).is_some()
    }

    /// Removes `client`'s subscription; whether it existed.
    pub(crate) fn remove(&self, subscription: &Subscription, client: &str) -> bool {
        let mut root = self.root.write().unwrap_or_else(PoisonError::into_inner);
        let levels: Vec<&str> = subscription.filter.split('/').collect();
        remove(&mut root, &levels, subscription.group.as_deref(), client)
    }

    /// The deliveries of `message`: one per client, with the highest QoS and every
    /// subscription id of the filters it matched; one member per share group.
    pub(crate) fn route(&self, message: &Arc<Message>) -> Vec<(Arc<Session>, Delivery)> {
        let root = self.root.read().unwrap_or_else(PoisonError::into_inner);
        let levels: Vec<&str> = message.topic.split('/').collect();
        let mut found: HashMap<&str, (Arc<Session>, Delivery)> = HashMap::new();
        let mut groups: Vec<&HashMap<String, Entry>> = Vec::new();
        let system = message.topic.starts_with('$');
        collect(&root, &levels, 0, system, &mut |node| {
            for entry in node.here.values() {
                offer(&mut found, entry, message);
            }
            groups.extend(node.shared.values());
        });
        for group in groups {
            // Prefer a member that is connected; any member otherwise.
            let members: Vec<&Entry> = group.values().collect();
            let connected: Vec<&&Entry> = members
                .iter()
                .filter(|e| e.session.state().connection.is_some())
                .collect();
            let turn = self.turn.fetch_add(1, Ordering::Relaxed);
            let chosen = if connected.is_empty() {
                members.get(turn % members.len().max(1)).copied()
            } else {
                connected.get(turn % connected.len()).map(|e| **e)
            };
            if let Some(entry) = chosen {
                offer(&mut found, entry, message);
            }
        }
        found.into_values().collect()
    }
}

/// Adds `entry`'s delivery of `message` to `found`, merging with one for the same client.
fn offer<'a>(
    found: &mut HashMap<&'a str, (Arc<Session>, Delivery)>,
    entry: &'a Entry,
    message: &Arc<Message>,
) {
    let options = &entry.options;
    if options.no_local && message.publisher.as_deref() == Some(&entry.session.client_id) {
        return;
    }
    let qos = min_qos(options.qos, message.qos);
    let retain = options.retain_as_published && message.retain;
    match found.get_mut(entry.session.client_id.as_str()) {
        Some((_, delivery)) => {
            if qos as u8 > delivery.qos as u8 {
                delivery.qos = qos;
            }
            delivery.retain |= retain;
            delivery.ids.extend(options.id);
        }
        None => {
            found.insert(
                &entry.session.client_id,
                (
                    entry.session.clone(),
                    Delivery {
                        message: message.clone(),
                        qos,
                        retain,
                        ids: options.id.into_iter().collect(),
                    },
                ),
            );
        }
    }
}

/// The lower of two QoS levels.
pub(crate) fn min_qos(a: QoS, b: QoS) -> QoS {
    if (a as u8) <= (b as u8) { a } else { b }
}

/// Calls `visit` on every node whose subscriptions match the topic `levels[depth..]`.
fn collect<'a>(
    node: &'a Node,
    levels: &[&str],
    depth: usize,
    system: bool,
    visit: &mut impl FnMut(&'a Node),
) {
    // A `$` topic is not matched by a wildcard at its first level.
    let wildcards = !(system && depth == 0);
    if wildcards && let Some(hash) = node.children.get("#") {
        visit(hash);
    }
    let Some(level) = levels.get(depth) else {
        visit(node);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, depth + 1, system, visit);
    }
    if wildcards && let Some(plus) = node.children.get("+") {
        collect(plus, levels, depth + 1, system, visit);
    }
}

fn remove(node: &mut Node, levels: &[&str], group: Option<&str>, client: &str) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return match group {
            Some(group) => {
                let Some(members) = node.shared.get_mut(group) else {
                    return false;
                };
                let removed = members.remove(client).is_some();
                if members.is_empty() {
                    node.shared.remove(group);
                }
                removed
            }
            None => node.here.remove(client).is_some(),
        };
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove(child, rest, group, client);
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Properties;

    fn message(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: topic.into(),
            payload: bytes::Bytes::new(),
            qos: QoS::ExactlyOnce,
            retain: false,
            properties: Properties::default(),
            expires: None,
            publisher: Some("pub".into()),
        })
    }

    fn options(qos: QoS, id: Option<usize>) -> SubOptions {
        SubOptions {
            qos,
            no_local: false,
            retain_as_published: false,
            id,
        }
    }

    #[test]
    fn a_message_reaches_each_matching_client_once_with_the_highest_qos() {
        let router = Router::default();
        let a = Arc::new(Session::new("a".into()));
        let b = Arc::new(Session::new("b".into()));
        let sub = |f: &str| Subscription::parse(f).expect("filter");
        router.add(&sub("x/+"), &a, options(QoS::AtMostOnce, Some(1)));
        router.add(&sub("x/#"), &a, options(QoS::AtLeastOnce, Some(2)));
        router.add(&sub("x/y"), &b, options(QoS::ExactlyOnce, None));
        router.add(&sub("z"), &b, options(QoS::ExactlyOnce, None));
        let mut routed = router.route(&message("x/y"));
        routed.sort_by(|l, r| l.0.client_id.cmp(&r.0.client_id));
        assert_eq!(routed.len(), 2);
        assert_eq!(routed[0].1.qos, QoS::AtLeastOnce);
        let mut ids = routed[0].1.ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, vec![1, 2]);
        assert_eq!(routed[1].1.qos, QoS::ExactlyOnce);
        assert!(router.remove(&sub("x/y"), "b"));
        assert!(!router.remove(&sub("x/y"), "b"));
        assert_eq!(router.route(&message("x/y")).len(), 1);
        assert!(router.route(&message("$x/y")).is_empty());
    }

    #[test]
    fn a_share_group_gets_each_message_once() {
        let router = Router::default();
        let sessions: Vec<_> = (0..3)
            .map(|i| Arc::new(Session::new(format!("s{i}"))))
            .collect();
        let shared = Subscription::parse("$share/g/t/#").expect("filter");
        for s in &sessions {
            router.add(&shared, s, options(QoS::AtLeastOnce, None));
        }
        let mut seen = HashMap::new();
        for _ in 0..30 {
            let routed = router.route(&message("t/1"));
            assert_eq!(routed.len(), 1);
            *seen.entry(routed[0].0.client_id.clone()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), 3, "members share the messages: {seen:?}");
    }
}
