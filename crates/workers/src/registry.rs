//! The registry, the context a worker reports through, and handles on running workers.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use tokio::task::AbortHandle;

use crate::backoff::Backoff;
use crate::status::{LastError, State, Totals, WorkerStatus};

/// Longest [`Workers::shutdown`] waits for the tasks it aborted to go (an aborted task
/// stops at its next await; only one stuck in blocking code takes longer).
const ABORT_GRACE: Duration = Duration::from_secs(1);

/// A node's workers. Cheap to clone: clones share one registry.
#[derive(Clone, Default)]
pub struct Workers(Arc<Registry>);

#[derive(Default)]
struct Registry {
    next_id: AtomicU64,
    live: Mutex<Live>,
    /// Woken when the last task leaves, for [`Workers::shutdown`].
    emptied: Notify,
    finished: AtomicU64,
    failed: AtomicU64,
}

#[derive(Default)]
struct Live {
    slots: HashMap<u64, Arc<Slot>>,
    /// Of the slots, those that are async tasks (not threads).
    tasks: usize,
    /// Set by shutdown: workers started from then on are asked to stop at once.
    stopping: bool,
}

impl Registry {
    /// Held only to insert, remove or copy out slots, never across an await.
    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where a worker is in its life; watched by its context (to stop) and its handles (to
/// await the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    Stopping,
    Done,
}

/// One worker's shared state.
struct Slot {
    id: u64,
    thread: bool,
    name: Mutex<Arc<str>>,
    started: u64,
    /// A [`State`] while running: 0 running, 1 idle, 2 back-off.
    state: AtomicU8,
    restarts: AtomicU64,
    items: AtomicU64,
    last_error: Mutex<Option<LastError>>,
    phase: watch::Sender<Phase>,
    abort: OnceLock<AbortHandle>,
}

impl Slot {
    fn new(id: u64, name: String, thread: bool) -> Self {
        Slot {
            id,
            thread,
            name: Mutex::new(name.into()),
            started: wall_ms(),
            state: AtomicU8::new(0),
            restarts: AtomicU64::new(0),
            items: AtomicU64::new(0),
            last_error: Mutex::new(None),
            phase: watch::channel(Phase::Running).0,
            abort: OnceLock::new(),
        }
    }

    fn name(&self) -> Arc<str> {
        self.name
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn stop(&self) {
        self.phase.send_if_modified(|phase| {
            let asked = *phase == Phase::Running;
            if asked {
                *phase = Phase::Stopping;
            }
            asked
        });
    }

    fn abort(&self) {
        self.stop();
        if let Some(task) = self.abort.get() {
            task.abort();
        }
    }

    fn error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(LastError {
            message,
            time: wall_ms(),
        });
    }

    fn status(&self) -> WorkerStatus {
        let state = match *self.phase.borrow() {
            Phase::Running => State::from_u8(self.state.load(Ordering::Relaxed)),
            Phase::Stopping => State::Stopping,
            Phase::Done => State::Stopped,
        };
        WorkerStatus {
            name: self.name().to_string(),
            state,
            started: self.started,
            restarts: self.restarts.load(Ordering::Relaxed),
            items: self.items.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

/// What a worker's body may return: nothing, or a result whose error is reported.
pub trait Exit {
    /// The failure to report, if the worker failed.
    fn failure(self) -> Option<String>;
}

impl Exit for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<E: fmt::Display> Exit for Result<(), E> {
    fn failure(self) -> Option<String> {
        self.err().map(|e| e.to_string())
    }
}

impl Workers {
    /// An empty registry.
    pub fn new() -> Self {
        Workers::default()
    }

    /// Starts `work` as a task named `name`. However it ends (returns, fails, panics, is
    /// aborted) it leaves the registry and counts in [`Workers::totals`].
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, work: F) -> WorkerHandle
    where
        F: FnOnce(Ctx) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Exit,
    {
        let slot = self.register(name.into(), false);
        // Made first, so that the slot leaves the registry even if `work` or the spawn
        // panics.
        let finish = Finish {
            registry: self.0.clone(),
            slot: slot.clone(),
        };
        let future = work(Ctx::new(&slot));
        let task = tokio::spawn(async move {
            let ended = AssertUnwindSafe(future).catch_unwind().await;
            finish.report(ended.map(Exit::failure));
        });
        let _ = slot.abort.set(task.abort_handle());
        WorkerHandle { slot }
    }

    /// Starts `work` on an OS thread named `name`, for blocking work. [`Workers::shutdown`]
    /// asks it to stop but does not wait for it: its owner stops it (the store's writers
    /// finish their queue once nothing else can write).
    pub fn spawn_thread<F, R>(
        &self,
        name: impl Into<String>,
        work: F,
    ) -> std::io::Result<WorkerHandle>
    where
        F: FnOnce(Ctx) -> R + Send + 'static,
        R: Exit,
    {
        let name = name.into();
        let slot = self.register(name.clone(), true);
        let finish = Finish {
            registry: self.0.clone(),
            slot: slot.clone(),
        };
        let ctx = Ctx::new(&slot);
        std::thread::Builder::new().name(name).spawn(move || {
            let ended = std::panic::catch_unwind(AssertUnwindSafe(|| work(ctx)));
            finish.report(ended.map(Exit::failure));
        })?;
        Ok(WorkerHandle { slot })
    }

    fn register(&self, name: String, thread: bool) -> Arc<Slot> {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let slot = Arc::new(Slot::new(id, name, thread));
        let mut live = self.0.lock();
        if live.stopping {
            slot.stop();
        }
        live.slots.insert(id, slot.clone());
        if !thread {
            live.tasks += 1;
        }
        slot
    }

    /// The workers running now, by name.
    pub fn list(&self) -> Vec<WorkerStatus> {
        let slots: Vec<Arc<Slot>> = self.0.lock().slots.values().cloned().collect();
        let mut list: Vec<WorkerStatus> = slots.iter().map(|s| s.status()).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.started.cmp(&b.started)));
        list
    }

    /// How many run now, and how many finished (and failed) since the registry was made.
    pub fn totals(&self) -> Totals {
        Totals {
            running: self.0.lock().slots.len(),
            finished: self.0.finished.load(Ordering::Relaxed),
            failed: self.0.failed.load(Ordering::Relaxed),
        }
    }

    /// Asks every worker to stop (and those started later, at once) and waits up to
    /// `deadline` for the tasks to finish; aborts those still running then and returns
    /// what they were doing. Threads are asked too, but are left to their owners.
    pub async fn shutdown(&self, deadline: Duration) -> Vec<WorkerStatus> {
        let slots: Vec<Arc<Slot>> = {
            let mut live = self.0.lock();
            live.stopping = true;
            live.slots.values().cloned().collect()
        };
        for slot in &slots {
            slot.stop();
        }
        if tokio::time::timeout(deadline, self.tasks_gone())
            .await
            .is_ok()
        {
            return Vec::new();
        }
        let left: Vec<Arc<Slot>> = {
            let live = self.0.lock();
            live.slots.values().filter(|s| !s.thread).cloned().collect()
        };
        let mut overdue: Vec<WorkerStatus> = left.iter().map(|s| s.status()).collect();
        overdue.sort_by(|a, b| a.name.cmp(&b.name));
        for slot in &left {
            tracing::warn!(worker = %slot.name(), "worker did not stop in time; aborted");
            slot.abort();
        }
        let _ = tokio::time::timeout(ABORT_GRACE, self.tasks_gone()).await;
        overdue
    }

    /// Resolves once no task is left in the registry.
    async fn tasks_gone(&self) {
        loop {
            let emptied = self.0.emptied.notified();
            tokio::pin!(emptied);
            // Registered before the check, so a last task leaving in between wakes us.
            emptied.as_mut().enable();
            if self.0.lock().tasks == 0 {
                return;
            }
            emptied.await;
        }
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("running", &self.0.lock().slots.len())
            .finish()
    }
}

/// Takes a worker out of the registry when its body ends, or is dropped unfinished
/// (aborted, or its runtime shut down).
struct Finish {
    registry: Arc<Registry>,
    slot: Arc<Slot>,
}

impl Finish {
    /// Reports how the body ended: `Err` with a panic's payload, `Ok(Some)` with an error.
    fn report(self, ended: std::thread::Result<Option<String>>) {
        let name = self.slot.name();
        let failure = match ended {
            Ok(None) => None,
            Ok(Some(error)) => {
                tracing::warn!(worker = %name, %error, "worker failed");
                Some(error)
            }
            Err(panic) => {
                let message = format!("panicked: {}", panic_message(panic.as_ref()));
                tracing::error!(worker = %name, "worker {message}");
                Some(message)
            }
        };
        if let Some(message) = failure {
            self.slot.error(message);
            self.registry.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.registry.finished.fetch_add(1, Ordering::Relaxed);
        let emptied = {
            let mut live = self.registry.lock();
            live.slots.remove(&self.slot.id);
            if !self.slot.thread {
                live.tasks -= 1;
            }
            !self.slot.thread && live.tasks == 0
        };
        // After leaving the registry: whoever awaits the end sees it gone from the list.
        self.slot.phase.send_replace(Phase::Done);
        if emptied {
            self.registry.emptied.notify_waiters();
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// A worker's view of itself: how it learns to stop, and how it reports.
pub struct Ctx {
    slot: Arc<Slot>,
    phase: watch::Receiver<Phase>,
}

impl Ctx {
    fn new(slot: &Arc<Slot>) -> Self {
        Ctx {
            slot: slot.clone(),
            phase: slot.phase.subscribe(),
        }
    }

    /// Resolves once the worker is asked to stop (by its handle or by shutdown).
    pub async fn stopping(&self) {
        let mut phase = self.phase.clone();
        let _ = phase.wait_for(|p| *p >= Phase::Stopping).await;
    }

    /// Whether the worker was asked to stop.
    pub fn is_stopping(&self) -> bool {
        *self.phase.borrow() >= Phase::Stopping
    }

    /// Reports the worker waiting for work.
    pub fn set_idle(&self) {
        self.slot.state.store(1, Ordering::Relaxed);
    }

    /// Reports the worker working.
    pub fn set_running(&self) {
        self.slot.state.store(0, Ordering::Relaxed);
    }

    /// Counts `n` items processed.
    pub fn count(&self, n: u64) {
        self.slot.items.fetch_add(n, Ordering::Relaxed);
    }

    /// Records `error` as the last error, with the time.
    pub fn error(&self, error: impl fmt::Display) {
        self.slot.error(error.to_string());
    }

    /// Renames the worker, once it knows what it is (a connection that turns out to be a
    /// peer's subscription).
    pub fn rename(&self, name: impl Into<String>) {
        *self
            .slot
            .name
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = name.into().into();
    }

    /// Waits out the next step of `backoff` (shown as `backoff`, counted as a restart);
    /// false if the worker was asked to stop meanwhile.
    pub async fn backoff(&self, backoff: &mut Backoff) -> bool {
        let wait = backoff.next_wait();
        self.slot.restarts.fetch_add(1, Ordering::Relaxed);
        self.slot.state.store(2, Ordering::Relaxed);
        let waited = tokio::select! {
            () = tokio::time::sleep(wait) => true,
            () = self.stopping() => false,
        };
        self.set_running();
        waited
    }
}

/// A handle on a worker. Dropping it leaves the worker running (and registered).
pub struct WorkerHandle {
    slot: Arc<Slot>,
}

impl WorkerHandle {
    /// Asks the worker to stop.
    pub fn stop(&self) {
        self.slot.stop();
    }

    /// Asks the worker to stop and aborts it at its next await (a thread is only asked).
    pub fn abort(&self) {
        self.slot.abort();
    }

    /// Whether the worker has finished.
    pub fn is_finished(&self) -> bool {
        *self.slot.phase.borrow() == Phase::Done
    }

    /// Resolves once the worker has finished (and left the registry).
    pub async fn finished(&self) {
        let mut phase = self.slot.phase.subscribe();
        let _ = phase.wait_for(|p| *p == Phase::Done).await;
    }

    /// The worker's status (`stopped` once finished).
    pub fn status(&self) -> WorkerStatus {
        self.slot.status()
    }

    /// A guard that aborts the worker when dropped, for a helper that must not outlive
    /// the one that started it, however that one ends.
    pub fn abort_on_drop(&self) -> AbortOnDrop {
        AbortOnDrop(self.slot.clone())
    }
}

/// Aborts its worker when dropped.
pub struct AbortOnDrop(Arc<Slot>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
