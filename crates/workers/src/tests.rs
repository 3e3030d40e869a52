use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::{Backoff, State, Totals, Workers};

fn only(workers: &Workers) -> crate::WorkerStatus {
    let list = workers.list();
    assert_eq!(list.len(), 1, "{list:?}");
    list.into_iter().next().unwrap()
}

#[tokio::test]
async fn a_worker_reports_its_state_and_counts_then_leaves_the_registry() {
    let workers = Workers::new();
    let (idle_tx, idle_rx) = oneshot::channel();
    let handle = workers.spawn("pump", |ctx| async move {
        ctx.count(3);
        ctx.error("a hiccup");
        ctx.set_idle();
        let _ = idle_tx.send(());
        ctx.stopping().await;
        // Still listed, as stopping, until the body returns.
        tokio::task::yield_now().await;
    });
    idle_rx.await.unwrap();
    let status = only(&workers);
    assert_eq!(status.name, "pump");
    assert_eq!(status.state, State::Idle);
    assert_eq!(status.items, 3);
    assert_eq!(status.last_error.unwrap().message, "a hiccup");
    assert!(!handle.is_finished());

    handle.stop();
    handle.finished().await;
    assert_eq!(handle.status().state, State::Stopped);
    assert!(workers.list().is_empty(), "a finished worker leaves");
    assert_eq!(
        workers.totals(),
        Totals {
            running: 0,
            finished: 1,
            failed: 0
        }
    );
}

#[tokio::test]
async fn a_renamed_worker_is_listed_under_its_new_name() {
    let workers = Workers::new();
    let (renamed_tx, renamed_rx) = oneshot::channel();
    let handle = workers.spawn("incoming", |ctx| async move {
        ctx.rename("sender/b/dev");
        let _ = renamed_tx.send(());
        ctx.stopping().await;
    });
    renamed_rx.await.unwrap();
    assert_eq!(only(&workers).name, "sender/b/dev");
    handle.stop();
    handle.finished().await;
}

#[tokio::test]
async fn a_panicking_worker_is_reported_not_lost() {
    let workers = Workers::new();
    let handle = workers.spawn("fragile", |_ctx| async move {
        tokio::task::yield_now().await;
        if true {
            panic!("boom");
        }
    });
    handle.finished().await;
    let status = handle.status();
    assert_eq!(status.state, State::Stopped);
    assert_eq!(status.last_error.unwrap().message, "panicked: boom");
    assert!(workers.list().is_empty());
    assert_eq!(workers.totals().failed, 1);
}

#[tokio::test]
async fn a_worker_that_returns_an_error_is_reported() {
    let workers = Workers::new();
    let handle = workers.spawn(
        "failing",
        |_ctx| async move { Err::<(), _>("disk on fire") },
    );
    handle.finished().await;
    assert_eq!(handle.status().last_error.unwrap().message, "disk on fire");
    assert_eq!(workers.totals().failed, 1);
    assert_eq!(workers.totals().finished, 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_up_to_its_cap_and_resets_after_a_success() {
    let workers = Workers::new();
    let (done_tx, done_rx) = oneshot::channel();
    let handle = workers.spawn("retrying", |ctx| async move {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let mut attempts = vec![Instant::now()];
        for attempt in 0..7 {
            if attempt == 5 {
                // A success: the next failure waits the shortest time again.
                backoff.reset();
            }
            ctx.error("accept failed: too many open files");
            assert!(ctx.backoff(&mut backoff).await);
            attempts.push(Instant::now());
        }
        let _ = done_tx.send(attempts);
        ctx.stopping().await;
    });
    let attempts = done_rx.await.unwrap();
    let waits: Vec<u64> = attempts
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(waits, [100, 200, 400, 800, 800, 100, 200]);
    assert_eq!(only(&workers).restarts, 7);
    handle.stop();
    handle.finished().await;
}

#[tokio::test(start_paused = true)]
async fn a_backoff_ends_early_when_the_worker_is_asked_to_stop() {
    let workers = Workers::new();
    let (waited_tx, waited_rx) = oneshot::channel();
    let handle = workers.spawn("retrying", |ctx| async move {
        let mut backoff = Backoff::new(Duration::from_secs(3600), Duration::from_secs(3600));
        let started = Instant::now();
        let waited = ctx.backoff(&mut backoff).await;
        let _ = waited_tx.send((waited, started.elapsed()));
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(only(&workers).state, State::Backoff);
    handle.stop();
    let (waited, elapsed) = waited_rx.await.unwrap();
    assert!(!waited);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    handle.finished().await;
}

#[test]
fn jittered_waits_stay_between_half_and_all_of_the_step() {
    let mut backoff =
        Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter();
    for step in [100, 200, 400, 800, 1000, 1000] {
        let wait = backoff.next_wait().as_secs_f64() * 1000.0;
        let step = step as f64;
        assert!(
            wait > step / 2.0 && wait <= step,
            "{wait} for a step of {step}"
        );
    }
}

#[tokio::test]
async fn shutdown_awaits_every_task_and_stops_those_started_later() {
    let workers = Workers::new();
    let cleaned = Arc::new(AtomicBool::new(false));
    for i in 0..3 {
        let cleaned = cleaned.clone();
        workers.spawn(format!("worker/{i}"), |ctx| async move {
            ctx.stopping().await;
            // Some cleanup that takes a while, which shutdown must wait for.
            tokio::time::sleep(Duration::from_millis(20)).await;
            if i == 2 {
                cleaned.store(true, Ordering::Release);
            }
        });
    }
    assert_eq!(workers.list().len(), 3);
    let overdue = workers.shutdown(Duration::from_secs(10)).await;
    assert!(overdue.is_empty(), "{overdue:?}");
    assert!(
        cleaned.load(Ordering::Acquire),
        "shutdown returned before cleanup"
    );
    assert_eq!(workers.totals().finished, 3);

    let late = workers.spawn("late", |ctx| async move { ctx.stopping().await });
    tokio::time::timeout(Duration::from_secs(10), late.finished())
        .await
        .expect("a worker started after shutdown stops at once");
}

#[tokio::test(start_paused = true)]
async fn shutdown_aborts_a_worker_that_overstays_the_deadline() {
    let workers = Workers::new();
    workers.spawn("stubborn", |_ctx| std::future::pending::<()>());
    workers.spawn("polite", |ctx| async move { ctx.stopping().await });
    let started = Instant::now();
    let overdue = workers.shutdown(Duration::from_secs(5)).await;
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert_eq!(overdue[0].name, "stubborn");
    assert_eq!(overdue[0].state, State::Stopping);
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(workers.list().is_empty(), "the aborted task is gone too");
}

#[tokio::test]
async fn thread_workers_are_listed_left_to_their_owner_and_reported_when_they_panic() {
    let workers = Workers::new();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
    let handle = workers
        .spawn_thread("writer/dev", move |ctx| {
            ctx.set_idle();
            if go_rx.recv().unwrap() {
                panic!("writer broke");
            }
        })
        .unwrap();
    assert_eq!(only(&workers).name, "writer/dev");
    // Shutdown does not wait for a thread: its owner stops it.
    let overdue = tokio::time::timeout(
        Duration::from_secs(10),
        workers.shutdown(Duration::from_secs(60)),
    )
    .await
    .expect("shutdown does not wait for threads");
    assert!(overdue.is_empty());
    assert_eq!(only(&workers).state, State::Stopping);

    go_tx.send(true).unwrap();
    handle.finished().await;
    assert_eq!(
        handle.status().last_error.unwrap().message,
        "panicked: writer broke"
    );
    assert!(workers.list().is_empty());
    assert_eq!(workers.totals().failed, 1);
}

#[tokio::test]
async fn an_abort_on_drop_guard_ends_its_worker() {
    let workers = Workers::new();
    let handle = workers.spawn("reader", |_ctx| std::future::pending::<()>());
    let guard = handle.abort_on_drop();
    drop(guard);
    tokio::time::timeout(Duration::from_secs(10), handle.finished())
        .await
        .expect("aborted");
    assert!(workers.list().is_empty());
}
