//! The broker's sessions: giving one to a new connection (and taking it from an old
//! one), ending or keeping it when its connection ends, expiring it, publishing a will,
//! and saving and restoring the kept ones.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{DisconnectReasonCode, LastWill};
use tokio::sync::watch;

use crate::connection::End;
use crate::message::Message;
use crate::persist;
use crate::session::{Session, State, Subscribed, Target};
use crate::{Attached, Broker};

impl Broker {
    /// Gives `client_id`'s session to a new connection: the existing one (whose
    /// connection, if live, is told it was taken over) unless `clean` asks for a new one.
    /// `None` when a new session would pass `max_sessions`.
    pub(crate) fn attach(
        &self,
        client_id: &str,
        clean: bool,
        set: impl FnOnce(&mut State),
    ) -> Option<Attached> {
        let mut sessions = self.sessions();
        let existing = sessions.get(client_id).cloned();
        if existing.is_none() && sessions.len() >= self.options.max_sessions {
            return None;
        }
        if let Some(existing) = &existing
            && let Some((_, close)) = existing.state().connection.take()
        {
            close.send_replace(Some(DisconnectReasonCode::SessionTakenOver));
        }
        let (session, present) = match existing {
            Some(existing) if !clean => (existing, true),
            existing => {
                if let Some(old) = existing {
                    self.discard(&old);
                    self.ended(&old);
                }
                let session = Arc::new(Session::new(client_id.to_owned()));
                sessions.insert(client_id.to_owned(), session.clone());
                (session, false)
            }
        };
        let connection = self.next_connection();
        let (close_tx, close) = watch::channel(None);
        {
            let mut state = session.state();
            set(&mut state);
            state.connection = Some((connection, close_tx));
            state.generation += 1;
            // Saved (if it is kept) even when nothing else about it changes.
            state.dirty = true;
        }
        Some(Attached {
            session,
            present,
            connection,
            close,
        })
    }

    /// A connection ended: its session ends too unless it is kept (then it expires
    /// later, unless a connection takes it first).
    pub(crate) fn detach(self: &Arc<Self>, session: &Arc<Session>, connection: u64, end: &End) {
        let (expiry, generation) = {
            let mut state = session.state();
            if state.connection.as_ref().map(|c| c.0) != Some(connection) {
                // Taken over: the session is the new connection's now.
                return;
            }
            state.connection = None;
            state.generation += 1;
            // QoS 0 messages are not kept for an absent client.
            let mut freed = 0;
            state.queue.retain(|d| {
                let keep = d.qos != QoS::AtMostOnce;
                if !keep {
                    freed += d.message.size();
                }
                keep
            });
            state.queued_bytes = state.queued_bytes.saturating_sub(freed);
            (state.expiry, state.generation)
        };
        tracing::debug!(client = %session.client_id, ?end, "MQTT connection ended");
        if expiry.is_zero() {
            self.forget(session);
            return;
        }
        self.expire(session, expiry, generation);
    }

    /// Forgets `session` after `after`, unless a connection takes it first.
    pub(crate) fn expire(
        self: &Arc<Self>,
        session: &Arc<Session>,
        after: Duration,
        generation: u64,
    ) {
        let (broker, session) = (self.clone(), session.clone());
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let current = session.state().generation == generation;
            if current {
                broker.forget(&session);
            }
        });
    }

    /// Removes a session and its subscriptions.
    pub(crate) fn forget(&self, session: &Arc<Session>) {
        let mut sessions = self.sessions();
        if sessions
            .get(&session.client_id)
            .is_some_and(|s| Arc::ptr_eq(s, session))
        {
            sessions.remove(&session.client_id);
        }
        drop(sessions);
        self.ended(session);
        self.discard(session);
    }

    /// Notes that a session that may have been saved is gone, so that the next save
    /// removes it.
    fn ended(&self, session: &Session) {
        if !session.state().expiry.is_zero() {
            self.ended
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(session.client_id.clone());
        }
    }

    /// Removes a session's subscriptions from the indexes.
    pub(crate) fn discard(&self, session: &Arc<Session>) {
        let subscriptions: Vec<Subscribed> = session
            .state()
            .subscriptions
            .drain()
            .map(|(_, s)| s)
            .collect();
        for subscribed in subscriptions {
            self.unindex(&subscribed.target, &session.client_id);
        }
    }

    pub(crate) fn unindex(&self, target: &Target, client: &str) -> bool {
        match target {
            Target::Plain(subscription) => self.router.remove(subscription, client),
            Target::Table(filter) => self.tables.remove(filter, client),
        }
    }

    /// Publishes a client's will: now, or after its delay unless the client is back.
    pub(crate) fn will(
        self: &Arc<Self>,
        session: &Arc<Session>,
        will: LastWill,
        username: Option<String>,
    ) {
        let message = Message::will(&will, &session.client_id);
        let delay = will
            .properties
            .as_ref()
            .and_then(|p| p.delay_interval)
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or_default();
        let (delay, generation) = {
            let state = session.state();
            // The will waits no longer than the session lives.
            (delay.min(state.expiry), state.generation)
        };
        let (broker, session) = (self.clone(), session.clone());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                if session.state().generation != generation {
                    return;
                }
            }
            let published = match broker.publish(message, username.as_deref()).await {
                Ok(Some(pending)) => pending.await.map(drop).map_err(|error| error.to_string()),
                Ok(None) => Ok(()),
                Err(refusal) => Err(format!("{refusal:?}")),
            };
            if let Err(why) = published {
                tracing::debug!(client = %session.client_id, why, "MQTT will not published");
            }
        });
    }

    /// Restores the saved sessions, each expiring when it would have.
    pub(crate) fn restore(self: &Arc<Self>) {
        let saved = match persist::load(&self.parts.store) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(%error, "MQTT sessions not restored");
                return;
            }
        };
        let count = saved.len();
        for saved in saved {
            let (session, left, subscriptions) = saved.restore();
            let username = session.state().username.clone();
            for saved in subscriptions {
                if let Some(target) = self.target(&saved.path) {
                    let options = saved.options();
                    self.index(&session, &saved.path, &target, options, username.clone());
                }
            }
            self.sessions()
                .insert(session.client_id.clone(), session.clone());
            self.expire(&session, left, session.state().generation);
        }
        if count > 0 {
            tracing::info!(sessions = count, "MQTT sessions restored");
        }
    }

    /// Saves the sessions that changed and forgets those that ended.
    pub(crate) async fn save(&self) {
        let (sessions, ended) = {
            let sessions = self.sessions();
            let mut ended =
                std::mem::take(&mut *self.ended.lock().unwrap_or_else(PoisonError::into_inner));
            // A new session kept under the same identifier is saved over the old one.
            ended.retain(|id| {
                sessions
                    .get(id)
                    .is_none_or(|live| live.state().expiry.is_zero())
            });
            let live: Vec<Arc<Session>> = sessions.values().cloned().collect();
            (live, ended)
        };
        let mut changed = Vec::new();
        for session in sessions {
            let mut state = session.state();
            if state.dirty && !state.expiry.is_zero() {
                state.dirty = false;
                changed.push(persist::save(&session.client_id, &state));
            }
        }
        if changed.is_empty() && ended.is_empty() {
            return;
        }
        if let Err(error) = persist::write(&self.parts.store, changed, ended).await {
            tracing::warn!(%error, "MQTT sessions not saved");
        }
    }
}
