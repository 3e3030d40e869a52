//! Helper tasks tied to the session that spawned them.

use tokio::task::{AbortHandle, JoinHandle};

/// Aborts a task when dropped: however a session ends, the tasks it spawned (a reader
/// holding its connection open) end with it.
pub(crate) struct AbortOnDrop(AbortHandle);

impl AbortOnDrop {
    /// Guards `task`; the handle stays usable for awaiting it.
    pub(crate) fn new<T>(task: &JoinHandle<T>) -> Self {
        AbortOnDrop(task.abort_handle())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
