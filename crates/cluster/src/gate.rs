//! Keeping links within membership. A database may flow from one node to another only
//! while both are members and the route allows it ([`nodes::may_send`]). Each sending
//! stream checks its [`Gate`] before every frame of data it sends (database list, copy
//! chunk, run of log entries), and each receiving link before applying each frame, so a
//! `remove_node` or a narrowed route stops what flows next as soon as this node knows of
//! it; the manager also revokes open sending streams through [`Streams`] whenever
//! membership changes, which ends idle streams (and a copy waiting on its socket) at
//! once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use shoal_store::SYSTEM_DATABASE;
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use crate::cluster::Shared;
use crate::error::ClusterError;
use crate::nodes;
use crate::proto;

/// The membership check of one link.
pub(crate) struct Gate {
    shared: Arc<Shared>,
    from: String,
    to: String,
    database: String,
    /// The system database's last commit: membership changes only when it moves.
    system: watch::Receiver<u64>,
    /// The last verdict and the system commit it was made at.
    verdict: Option<(u64, Result<(), String>)>,
}

impl Gate {
    /// The check for a stream of `database` from this node to `node`.
    pub(crate) fn sending(
        shared: Arc<Shared>,
        node: &str,
        database: &str,
    ) -> Result<Self, ClusterError> {
        let me = shared.name.clone();
        Self::new(shared, me, node.to_owned(), database)
    }

    /// The check for a link taking `database` from `node` to this node.
    pub(crate) fn receiving(
        shared: Arc<Shared>,
        node: &str,
        database: &str,
    ) -> Result<Self, ClusterError> {
        let me = shared.name.clone();
        Self::new(shared, node.to_owned(), me, database)
    }

    fn new(
        shared: Arc<Shared>,
        from: String,
        to: String,
        database: &str,
    ) -> Result<Self, ClusterError> {
        let system = shared.store.database(SYSTEM_DATABASE)?.watch_commits();
        Ok(Gate {
            shared,
            from,
            to,
            database: database.to_owned(),
            system,
            verdict: None,
        })
    }

    /// Whether the link may go on; why not otherwise. Reads membership again only when
    /// the system database has changed since the last check.
    pub(crate) fn check(&mut self) -> Result<(), ClusterError> {
        let head = *self.system.borrow();
        let verdict = match &self.verdict {
            Some((at, verdict)) if *at == head => verdict.clone(),
            _ => {
                let members = nodes::members(&self.shared.store)?;
                let verdict = nodes::may_send(&members, &self.from, &self.to, &self.database);
                self.verdict = Some((head, verdict.clone()));
                verdict
            }
        };
        verdict.map_err(ClusterError::Refused)
    }

    /// [`Gate::check`] for a sending stream, telling the receiver why when it must end.
    pub(crate) async fn enforce<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
    ) -> Result<(), ClusterError> {
        let refused = self.check();
        if let Err(ClusterError::Refused(reason)) = &refused {
            tracing::info!(to = %self.to, database = %self.database, %reason, "sending stream ended");
            proto::refuse(wr, reason).await;
        }
        refused
    }
}

/// The sending streams peers have open with this node, so that the manager can end those
/// membership no longer allows.
#[derive(Debug, Default)]
pub(crate) struct Streams {
    open: Arc<Mutex<Vec<Open>>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Open {
    id: u64,
    node: String,
    database: String,
    revoke: watch::Sender<bool>,
}

/// A registered stream; dropping it unregisters.
pub(crate) struct Registered {
    open: Arc<Mutex<Vec<Open>>>,
    id: u64,
    revoked: watch::Receiver<bool>,
}

impl Streams {
    /// Registers a stream of `database` to `node`.
    pub(crate) fn register(&self, node: &str, database: &str) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (revoke, revoked) = watch::channel(false);
        lock(&self.open).push(Open {
            id,
            node: node.to_owned(),
            database: database.to_owned(),
            revoke,
        });
        Registered {
            open: self.open.clone(),
            id,
            revoked,
        }
    }

    /// Revokes every stream `allowed(node, database)` refuses; returns how many.
    pub(crate) fn revoke(&self, allowed: impl Fn(&str, &str) -> Result<(), String>) -> usize {
        let mut revoked = 0;
        for stream in lock(&self.open).iter() {
            if let Err(reason) = allowed(&stream.node, &stream.database)
                && !*stream.revoke.borrow()
            {
                tracing::info!(peer = %stream.node, database = %stream.database, %reason, "closing a sending stream");
                stream.revoke.send_replace(true);
                revoked += 1;
            }
        }
        revoked
    }
}

impl Registered {
    /// Resolves once the stream has been revoked.
    pub(crate) async fn revoked(&mut self) {
        // The sender lives in the registry until this handle drops, so this cannot fail.
        let _ = self.revoked.wait_for(|r| *r).await;
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.open).retain(|s| s.id != self.id);
    }
}

fn lock(open: &Mutex<Vec<Open>>) -> std::sync::MutexGuard<'_, Vec<Open>> {
    open.lock().unwrap_or_else(PoisonError::into_inner)
}
