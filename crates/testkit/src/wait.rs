//! Polling helper used instead of sleeps for synchronisation.

use std::time::Duration;

use anyhow::bail;

/// Interval between two evaluations of a [`wait_until`] condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Ok(true)`; errors naming `what` after `deadline`.
///
/// An `Err` from `f` aborts the wait immediately and is returned as is (map
/// transient failures to `Ok(false)` inside `f` if they should be retried).
/// A call to `f` that hangs past the deadline is cancelled. Accepts both
/// `async || ...` closures and ordinary closures returning a future.
pub async fn wait_until<F>(deadline: Duration, what: &str, mut f: F) -> anyhow::Result<()>
where
    F: AsyncFnMut() -> anyhow::Result<bool>,
{
    let poll = async {
        loop {
            if f().await? {
                return anyhow::Ok(());
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    match tokio::time::timeout(deadline, poll).await {
        Ok(result) => result,
        Err(_) => bail!("timed out after {deadline:?} waiting until {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn succeeds_once_condition_holds() {
        let mut calls = 0;
        wait_until(Duration::from_secs(5), "three calls", async || {
            calls += 1;
            Ok(calls >= 3)
        })
        .await
        .unwrap();
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn times_out_with_description() {
        let err = wait_until(Duration::from_millis(50), "pigs fly", || async {
            Ok(false)
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("pigs fly"), "{err}");
    }

    #[tokio::test]
    async fn error_aborts_immediately() {
        let err = wait_until(Duration::from_secs(30), "never", || async {
            anyhow::bail!("boom")
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }
}
