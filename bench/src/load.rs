//! Closed-loop load: `connections` workers, each with its own connection, send one
//! request, wait for the whole answer, and send the next, until a deadline.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::sync::Barrier;

use crate::client::{Conn, Endpoint};

/// One request a worker sends.
pub(crate) struct Req {
    /// HTTP method.
    pub(crate) method: Method,
    /// Path and query.
    pub(crate) path: String,
    /// Body (empty for GET).
    pub(crate) body: Bytes,
    /// Whether the body is JSON.
    pub(crate) json: bool,
    /// The status that counts as success.
    pub(crate) expect: u16,
    /// Items the request carries (records for a batch insert), for throughput.
    pub(crate) items: u64,
}

/// Makes the next request of a worker from its random generator and a global counter.
pub(crate) type MakeReq = Arc<dyn Fn(&mut SmallRng, &AtomicU64) -> Req + Send + Sync>;

/// Checks a successful answer's body; an `Err` counts as an error.
pub(crate) type CheckBody = Arc<dyn Fn(&Bytes) -> Result<(), String> + Send + Sync>;

/// What one timed run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunStats {
    /// Successful requests completed inside the window.
    pub(crate) requests: u64,
    /// Items (records) those requests carried.
    pub(crate) items: u64,
    /// Failed requests (transport errors, unexpected status, failed body check).
    pub(crate) errors: u64,
    /// Length of the measured window.
    pub(crate) elapsed: Duration,
    /// Latency of every successful request in the window, in microseconds.
    pub(crate) latencies_us: Vec<u32>,
    /// Successful requests in all, including those that finished after the window.
    pub(crate) acked_items_total: u64,
    /// The first error seen, for the report.
    pub(crate) first_error: Option<String>,
}

impl RunStats {
    /// Requests per second.
    pub(crate) fn request_rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// Items per second.
    pub(crate) fn item_rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile in milliseconds (`q` in 0..=1).
    pub(crate) fn latency_ms(&mut self, q: f64) -> Option<f64> {
        percentile_us(&mut self.latencies_us, q).map(|us| us / 1000.0)
    }
}

/// The `q` percentile (nearest rank) of `values`, reordering them; `None` if empty.
pub(crate) fn percentile_us(values: &mut [u32], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
    let (_, v, _) = values.select_nth_unstable(rank);
    Some(f64::from(*v))
}

/// The `q` percentile (nearest rank) of `values` (any order).
pub(crate) fn percentile_f64(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[rank])
}

/// The load shape of one workload.
#[derive(Clone)]
pub(crate) struct Load {
    /// Where the workers connect.
    pub(crate) endpoint: Endpoint,
    /// Worker count (= connections).
    pub(crate) connections: usize,
    /// Request factory.
    pub(crate) make: MakeReq,
    /// Optional body check.
    pub(crate) check: Option<CheckBody>,
    /// Seed for the workers' generators (worker i uses `seed + i`).
    pub(crate) seed: u64,
    /// Shared counter handed to the request factory (e.g. for fresh ids).
    pub(crate) counter: Arc<AtomicU64>,
}

/// Runs the load for `duration` and measures it.
///
/// Every worker connects first; the window opens when all are connected. Only requests
/// that complete inside the window count; each worker stops after its first request
/// that completes past the deadline.
pub(crate) async fn run(load: &Load, duration: Duration) -> anyhow::Result<RunStats> {
    let barrier = Arc::new(Barrier::new(load.connections + 1));
    let start_cell = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::with_capacity(load.connections);
    for worker in 0..load.connections {
        let mut conn = Conn::connect(&load.endpoint).await?;
        let barrier = barrier.clone();
        let start_cell = start_cell.clone();
        let load = load.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = SmallRng::seed_from_u64(load.seed.wrapping_add(worker as u64));
            let mut stats = RunStats::default();
            barrier.wait().await;
            let start = *start_cell
                .get()
                .expect("start set before the barrier opens");
            let deadline = start + duration;
            stats.latencies_us.reserve(16 * 1024);
            loop {
                let req = (load.make)(&mut rng, &load.counter);
                let sent = Instant::now();
                let outcome = conn.send(req.method, &req.path, req.body, req.json).await;
                let done = Instant::now();
                let in_window = done <= deadline;
                let failure = match outcome {
                    Ok((status, body)) if status == req.expect => match &load.check {
                        Some(check) => check(&body).err(),
                        None => None,
                    },
                    Ok((status, body)) => Some(format!(
                        "status {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    )),
                    Err(e) => Some(format!("{e:#}")),
                };
                match failure {
                    None => {
                        stats.acked_items_total += req.items;
                        if in_window {
                            stats.requests += 1;
                            stats.items += req.items;
                            let us = (done - sent).as_micros().min(u128::from(u32::MAX));
                            stats.latencies_us.push(us as u32);
                        }
                    }
                    Some(message) => {
                        if in_window {
                            stats.errors += 1;
                        }
                        stats.first_error.get_or_insert(message);
                        // Do not spin on a refused connection.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                if !in_window {
                    break;
                }
            }
            stats
        }));
    }
    let _ = start_cell.set(Instant::now());
    barrier.wait().await;
    let mut total = RunStats {
        elapsed: duration,
        ..RunStats::default()
    };
    for task in tasks {
        let stats = task.await?;
        total.requests += stats.requests;
        total.items += stats.items;
        total.errors += stats.errors;
        total.acked_items_total += stats.acked_items_total;
        total.latencies_us.extend_from_slice(&stats.latencies_us);
        if total.first_error.is_none() {
            total.first_error = stats.first_error;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentile_us(&mut v, 0.5), Some(50.0));
        assert_eq!(percentile_us(&mut v, 0.99), Some(99.0));
        assert_eq!(percentile_us(&mut v, 1.0), Some(100.0));
        assert_eq!(percentile_us(&mut [], 0.5), None);
        assert_eq!(percentile_f64(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
    }
}
