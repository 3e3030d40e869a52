//! Publishing and subscribing: where a message goes (a record write, local sessions,
//! peers), and what a subscription follows, may follow, and starts with.

use std::sync::Arc;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Filter, RetainForwardRule, SubscribeReasonCode};
use shoal_auth::Action;
use shoal_store::Pending;

use crate::codec::Refusal;
use crate::message::{Message, Relay};
use crate::session::{Session, SubOptions, Subscribed, Target};
use crate::topic::Subscription;
use crate::{Broker, records, retained};

impl Broker {
    /// Takes a message a client (or a will) published: a record write for a retained
    /// message on a table topic, a live delivery otherwise (and a durable copy for a
    /// retained one); peers get what they need. When a write was queued, the answer
    /// resolves once it is durable.
    pub(crate) async fn publish(
        &self,
        message: Message,
        username: Option<&str>,
    ) -> Result<Option<Pending>, Refusal> {
        if let Some(resolved) = records::resolve(&self.parts, &message.topic, false) {
            if message.retain {
                // Subscribers here and on every peer learn of it from the commit.
                let pending = records::submit(&self.access, username, &resolved, &message);
                return pending.await.map(Some);
            }
            let (database, table) = (resolved.db.name(), resolved.table.name.as_str());
            self.access
                .table(username, Action::Upsert, database, table)
                .ok_or(Refusal::NotAuthorized)?;
            let key = resolved.key().ok_or(Refusal::TopicInvalid)?;
            self.relay(&message);
            self.tables
                .deliver(database, &resolved.table, &key, None, Some(&message));
            return Ok(None);
        }
        if !self.access.plain(username) {
            return Err(Refusal::NotAuthorized);
        }
        let mut pending = None;
        if message.retain {
            let submitted = retained::submit(&self.parts.store, &message).await;
            pending = Some(submitted.map_err(|error| {
                tracing::warn!(%error, "MQTT retained message not kept");
                Refusal::Failed
            })?);
        }
        self.relay(&message);
        self.route(Arc::new(message));
        Ok(pending)
    }

    /// Delivers a plain-topic message to this node's subscribers.
    pub(crate) fn route(&self, message: Arc<Message>) {
        for (session, delivery) in self.router.route(&message) {
            session.push(delivery, &self.limits);
        }
    }

    /// Sends a live message to the cluster's other nodes.
    pub(crate) fn relay(&self, message: &Message) {
        if let Some(cluster) = &self.parts.cluster
            && cluster.relays_to_peers()
            && let Some(bytes) = Relay::encode(message)
        {
            cluster.relay(bytes.into());
        }
    }

    /// Delivers a message a peer relayed to this node's subscribers.
    pub(crate) fn relayed(&self, message: Message) {
        if let Some(resolved) = records::resolve(&self.parts, &message.topic, false) {
            if let Some(key) = resolved.key() {
                self.tables.deliver(
                    resolved.db.name(),
                    &resolved.table,
                    &key,
                    None,
                    Some(&message),
                );
            }
            return;
        }
        self.route(Arc::new(message));
    }

    /// What a subscription filter follows: a table (or a record of it), or plain topics;
    /// `None` if it is not a valid filter.
    pub(crate) fn target(&self, path: &str) -> Option<Target> {
        let subscription = Subscription::parse(path)?;
        let resolved = subscription
            .group
            .is_none()
            .then(|| records::resolve(&self.parts, &subscription.filter, true))
            .flatten();
        Some(match resolved {
            Some(resolved) => Target::Table(resolved.filter()),
            None => Target::Plain(subscription),
        })
    }

    /// Adds one subscription of a SUBSCRIBE: the QoS granted and the retained messages
    /// it starts with (at most `budget`, which they use up), or the reason it is refused.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        username: Option<&str>,
        filter: &Filter,
        id: Option<usize>,
        budget: &mut usize,
    ) -> Result<(QoS, Vec<Arc<Message>>), SubscribeReasonCode> {
        let target = self
            .target(&filter.path)
            .ok_or(SubscribeReasonCode::TopicFilterInvalid)?;
        let allowed = match &target {
            Target::Table(table) => self
                .access
                .table(username, Action::Read, &table.database, &table.table)
                .is_some(),
            Target::Plain(_) => self.access.plain(username),
        };
        if !allowed {
            return Err(SubscribeReasonCode::NotAuthorized);
        }
        {
            let state = session.state();
            if !state.subscriptions.contains_key(&filter.path)
                && state.subscriptions.len() >= self.options.max_subscriptions
            {
                return Err(SubscribeReasonCode::QuotaExceeded);
            }
        }
        let options = SubOptions {
            qos: filter.qos,
            no_local: filter.nolocal,
            retain_as_published: filter.preserve_retain,
            id,
        };
        let existed = self.index(
            session,
            &filter.path,
            &target,
            options,
            username.map(str::to_owned),
        );
        let send_retained = match filter.retain_forward_rule {
            RetainForwardRule::OnEverySubscribe => true,
            RetainForwardRule::OnNewSubscribe => !existed,
            RetainForwardRule::Never => false,
        } && *budget > 0;
        let retained = match (&target, send_retained) {
            (_, false) => Vec::new(),
            (Target::Plain(s), true) if s.group.is_some() => Vec::new(),
            (Target::Plain(s), true) => retained::matching(&self.parts.store, &s.filter, *budget),
            (Target::Table(table), true) => self
                .tables
                .current(table, username, &filter.path)
                .map(Arc::new)
                .into_iter()
                .collect(),
        };
        *budget = budget.saturating_sub(retained.len());
        Ok((filter.qos, retained))
    }

    /// Records a subscription in the session and its index; whether one existed for the
    /// same filter.
    pub(crate) fn index(
        &self,
        session: &Arc<Session>,
        path: &str,
        target: &Target,
        options: SubOptions,
        username: Option<String>,
    ) -> bool {
        let existed = self.remember(session, path, target.clone(), options.clone());
        match target {
            Target::Table(filter) => self.tables.add(session, filter, options, username),
            Target::Plain(subscription) => {
                self.router.add(subscription, session, options);
            }
        }
        existed
    }

    /// Records a subscription in the session; whether one existed for the same filter.
    pub(crate) fn remember(
        &self,
        session: &Arc<Session>,
        path: &str,
        target: Target,
        options: SubOptions,
    ) -> bool {
        let mut state = session.state();
        state.dirty = true;
        let previous = state
            .subscriptions
            .insert(path.to_owned(), Subscribed { target, options });
        drop(state);
        match previous {
            Some(previous) => {
                // The same filter resolving elsewhere now (a table created or dropped).
                self.unindex(&previous.target, &session.client_id);
                true
            }
            None => false,
        }
    }

    /// Removes a subscription; whether it existed.
    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, path: &str) -> bool {
        let removed = {
            let mut state = session.state();
            state.dirty = true;
            state.subscriptions.remove(path)
        };
        match removed {
            Some(subscribed) => {
                self.unindex(&subscribed.target, &session.client_id);
                true
            }
            None => false,
        }
    }
}
