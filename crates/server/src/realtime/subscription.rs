//! A subscription: the changes to one table (or one record of it), from a starting point
//! in the transaction log, then live, with no gap and no duplicate: the commits come from
//! the store's [`Follower`], which reads the log while it is behind the change feed.
//!
//! A consumer that falls more than `max_lag` entries behind the head, or lets more than
//! `max_buffer_bytes` of events pile up, is cut off with a reason, so a slow client costs
//! a bounded amount of memory and never slows writers. A consumer that goes away ends
//! its subscription at once, even on a table where nothing is committed.
//!
//! Permissions are asked again before a commit is delivered whenever users or roles
//! have changed since they were last asked (a [`Viewer`]): a dropped or deactivated
//! user, or a role that no longer reads the table, ends the subscription with the
//! refusal as its reason, and a role's attribute rules as they are now decide what each
//! event shows.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Value, json};
use shoal_auth::{Access, Action, Auth, AuthError, Grant, Via};
use shoal_store::{
    CREATED_TIME, ChangeKind, Committed, Database, FollowError, FollowOptions, Follower,
    UPDATED_TIME, key,
};
use shoal_workers::{Ctx, Workers};
use tokio::sync::{mpsc, oneshot, watch};

/// Where a subscription starts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Start {
    /// With the next commit.
    Now,
    /// With the first retained commit at or after this time (milliseconds).
    Time(f64),
    /// Right after this change (an SSE `Last-Event-ID`): the rest of commit `seq` after
    /// its change `index`, or the commit after `seq` when `index` is `None`.
    After {
        /// Log sequence.
        seq: u64,
        /// Index of the last change seen within that commit.
        index: Option<usize>,
    },
}

/// What a subscription watches.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    /// Table name.
    pub(crate) table: String,
    /// The table's primary key.
    pub(crate) primary_key: String,
    /// One record, or the whole table.
    pub(crate) key: Option<Value>,
}

/// Who a subscription delivers to: what the user may read is asked again before a
/// commit is delivered whenever `system` (users, roles) has changed since it was last
/// asked, so a dropped or deactivated user, or a role that no longer reads the table,
/// stops receiving at once, while a quiet `system` costs one atomic read per commit.
pub(crate) struct Viewer {
    /// Where users and roles are read.
    pub(crate) auth: Arc<Auth>,
    /// The subscribing user.
    pub(crate) username: String,
    /// The subscription's database.
    pub(crate) database: String,
    /// The `system` database's last commit.
    pub(crate) system: watch::Receiver<u64>,
    /// The grant last answered, and the `system` commit it was asked after.
    pub(crate) asked: Mutex<Option<(u64, Grant)>>,
}

impl Viewer {
    /// What the user may read of `table` now; the refusal, as the subscriber is told.
    fn grant(&self, table: &str) -> Result<Grant, Ended> {
        // Read before asking: a change landing meanwhile is asked about next time.
        let head = *self.system.borrow();
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, grant)) = asked.as_ref()
            && *seen == head
        {
            return Ok(grant.clone());
        }
        let refused = |e: AuthError| Ended(e.to_string());
        let user = self.auth.user_named(&self.username).map_err(refused)?;
        let access = Access {
            via: Via::Http,
            operation: "GET",
            action: Action::Read,
            database: Some(&self.database),
            table: Some(table),
        };
        let grant = self.auth.check(&user, &access).map_err(refused)?;
        *asked = Some((head, grant.clone()));
        Ok(grant)
    }
}

/// One change delivered to a subscriber.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    /// Log sequence of the commit.
    pub(crate) seq: u64,
    /// Index of the change within its commit.
    pub(crate) index: usize,
    /// Whether this is the commit's last change the subscription delivers.
    pub(crate) last: bool,
    /// `put`, `patch` or `delete`.
    pub(crate) kind: &'static str,
    /// Primary key of the record.
    pub(crate) id: Value,
    /// The record (put), the changed attributes (patch), nothing (delete).
    pub(crate) value: Option<Value>,
    /// Commit time in milliseconds.
    pub(crate) timestamp: f64,
    /// What the event counts against the subscriber's buffer: its JSON size.
    size: usize,
}

impl Event {
    /// The event as a WebSocket message.
    pub(crate) fn to_message(&self) -> Value {
        json!({"type": self.kind, "id": self.id, "value": self.value, "timestamp": self.timestamp})
    }

    /// The event's SSE `id:` — what a client sends back as `Last-Event-ID` to resume
    /// right after it: the sequence alone once a commit is complete.
    pub(crate) fn sse_id(&self) -> String {
        if self.last {
            self.seq.to_string()
        } else {
            format!("{}.{}", self.seq, self.index)
        }
    }

    /// The event's SSE `data:` payload: the value, or the id of a deleted record.
    pub(crate) fn data(&self) -> Value {
        self.value
            .clone()
            .unwrap_or_else(|| json!({ "id": self.id }))
    }
}

/// Why a subscription ended on the server's side.
#[derive(Debug, Clone)]
pub(crate) struct Ended(pub(crate) String);

/// How far a subscriber may fall behind before it is cut off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Log entries behind the head.
    pub(crate) max_lag: u64,
    /// Bytes of events buffered and not yet taken by the connection.
    pub(crate) max_buffer_bytes: usize,
}

/// The receiving end of a subscription: its events, then why it ended. Dropping it ends
/// the subscription.
pub(crate) struct Subscriber {
    events: mpsc::Receiver<Event>,
    /// The reason, sent past the queue so that a cut-off is seen (and the queue freed)
    /// without waiting for the events before it.
    ended: oneshot::Receiver<Ended>,
    buffered: Arc<AtomicUsize>,
    done: bool,
}

impl Subscriber {
    /// The next event, the reason the subscription ended, or `None` after that.
    pub(crate) async fn recv(&mut self) -> Option<Result<Event, Ended>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Event, Ended>>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(ended) = Pin::new(&mut self.ended).poll(cx) {
            self.done = true;
            return Poll::Ready(ended.ok().map(Err));
        }
        match self.events.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                self.buffered.fetch_sub(event.size, Ordering::AcqRel);
                Poll::Ready(Some(Ok(event)))
            }
            // The task ended; its reason, if any, is already on its way.
            Poll::Ready(None) => Pin::new(&mut self.ended).poll(cx).map(|ended| {
                self.done = true;
                ended.ok().map(Err)
            }),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio_stream::Stream for Subscriber {
    type Item = Result<Event, Ended>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_recv(cx)
    }
}

/// Events buffered between the subscription and its connection.
const BUFFER: usize = 256;
/// How often a subscription whose consumer is not reading checks its lag.
const LAG_CHECK: Duration = Duration::from_millis(100);

/// Starts a subscription as worker `subscription/<database>/<table>`; events (or the
/// reason it ended) arrive on the [`Subscriber`], which ends the subscription when
/// dropped, as does the worker being asked to stop. "Now" is fixed before this returns,
/// so a write acknowledged after the subscription was answered is never missed.
pub(crate) fn subscribe(
    db: Arc<Database>,
    filter: Filter,
    viewer: Viewer,
    start: Start,
    limits: Limits,
    workers: &Workers,
) -> Subscriber {
    let (from, skip) = match start {
        Start::Now => (shoal_store::Start::Now, None),
        Start::Time(ms) => (shoal_store::Start::Time(ms), None),
        Start::After { seq, index: None } => (shoal_store::Start::Seq(seq + 1), None),
        Start::After {
            seq,
            index: Some(i),
        } => (shoal_store::Start::Seq(seq), Some((seq, i))),
    };
    let options = FollowOptions {
        max_lag: limits.max_lag,
    };
    let follower = db.follow(from, options);
    let (tx, events) = mpsc::channel(BUFFER);
    let (end_tx, ended) = oneshot::channel();
    let buffered = Arc::new(AtomicUsize::new(0));
    let queue = Queue {
        tx,
        buffered: buffered.clone(),
    };
    let name = format!("subscription/{}/{}", db.name(), filter.table);
    workers.spawn(name, move |ctx| async move {
        // A consumer that went away is noticed at once, not at the next commit.
        tokio::select! {
            result = run(follower, filter, viewer, skip, limits, &queue, &ctx) => {
                if let Err(ended) = result {
                    let _ = end_tx.send(ended);
                }
            }
            () = queue.tx.closed() => {}
            () = ctx.stopping() => {
                let _ = end_tx.send(Ended("the node is shutting down".into()));
            }
        }
    });
    Subscriber {
        events,
        ended,
        buffered,
        done: false,
    }
}

/// Delivers the followed commits' matching changes, skipping those of commit `skip.0`
/// up to change `skip.1`, until the subscription ends; counts the events delivered on
/// its worker's `ctx`.
async fn run(
    mut follower: Follower,
    filter: Filter,
    viewer: Viewer,
    mut skip: Option<(u64, usize)>,
    limits: Limits,
    queue: &Queue,
    ctx: &Ctx,
) -> Result<(), Ended> {
    let sink = Sink {
        filter: &filter,
        viewer: &viewer,
        limits,
        queue,
        ctx,
    };
    loop {
        let committed = follower.next().await.map_err(ended)?;
        sink.deliver(&committed, skip.take(), &follower).await?;
    }
}

/// Why following ended, as the subscriber is told.
fn ended(error: FollowError) -> Ended {
    Ended(match error {
        FollowError::TooSlow { behind } => format!("subscriber too slow: {behind} changes behind"),
        FollowError::Gap { .. } | FollowError::Closed => error.to_string(),
        other => format!("subscription failed: {other}"),
    })
}

/// Where a subscription's events go.
struct Sink<'a> {
    filter: &'a Filter,
    viewer: &'a Viewer,
    limits: Limits,
    queue: &'a Queue,
    /// The subscription's worker, which counts the events delivered.
    ctx: &'a Ctx,
}

/// The sending end of a subscriber's buffer.
struct Queue {
    tx: mpsc::Sender<Event>,
    /// Bytes of events sent and not yet received (shared with the [`Subscriber`]).
    buffered: Arc<AtomicUsize>,
}

impl Sink<'_> {
    /// Sends the changes of one commit that match (after change `skip.1` when resuming
    /// inside it); cuts the consumer off when its buffer would pass `max_buffer_bytes`
    /// (an event always fits an empty buffer), and while it is not taking events, checks
    /// how far behind the head it is and cuts it off past `max_lag`.
    async fn deliver(
        &self,
        committed: &Committed,
        skip: Option<(u64, usize)>,
        follower: &Follower,
    ) -> Result<(), Ended> {
        let entry = &committed.entry;
        let seen = skip
            .filter(|(seq, _)| *seq == committed.seq)
            .map(|(_, i)| i);
        let matching: Vec<(usize, &shoal_store::Change)> = entry
            .changes
            .iter()
            .enumerate()
            .filter(|(i, change)| {
                change.table == self.filter.table
                    && seen.is_none_or(|s| *i > s)
                    && self
                        .filter
                        .key
                        .as_ref()
                        .is_none_or(|k| key::same(k, &change.key))
            })
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        let grant = self.viewer.grant(&self.filter.table)?;
        let events: Vec<(usize, &shoal_store::Change, Option<Value>)> = matching
            .into_iter()
            .filter_map(|(index, change)| {
                let value = change.value.clone().map(|mut value| {
                    if let Value::Object(record) = &mut value {
                        grant.filter(record);
                    }
                    value
                });
                // A patch of hidden attributes only would tell nothing but that they
                // changed: it is not told.
                let hidden = change.kind == ChangeKind::Patch
                    && value.as_ref().and_then(Value::as_object).is_some_and(|v| {
                        v.keys().all(|name| {
                            *name == self.filter.primary_key
                                || name == CREATED_TIME
                                || name == UPDATED_TIME
                        })
                    });
                (!hidden).then_some((index, change, value))
            })
            .collect();
        let count = events.len();
        for (n, (index, change, value)) in events.into_iter().enumerate() {
            let size = json_size(&change.key) + value.as_ref().map_or(0, json_size);
            let mut event = Event {
                seq: committed.seq,
                index,
                last: n + 1 == count,
                kind: match change.kind {
                    ChangeKind::Put => "put",
                    ChangeKind::Patch => "patch",
                    ChangeKind::Delete => "delete",
                },
                id: change.key.clone(),
                value,
                timestamp: entry.timestamp(),
                size,
            };
            let before = self.queue.buffered.fetch_add(size, Ordering::AcqRel);
            if before > 0 && before + size > self.limits.max_buffer_bytes {
                return Err(Ended(format!(
                    "subscriber too slow: {before} bytes of changes not yet delivered"
                )));
            }
            loop {
                match self.queue.tx.send_timeout(event, LAG_CHECK).await {
                    Ok(()) => {
                        self.ctx.count(1);
                        break;
                    }
                    Err(mpsc::error::SendTimeoutError::Timeout(back)) => {
                        follower.check_lag().map_err(ended)?;
                        event = back;
                    }
                    Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                        return Err(Ended("subscriber gone".into()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The length of `value` as JSON, without building it.
fn json_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail; a value that could not be written counts as its
    // size so far.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}
