//! Capped exponential back-off, optionally jittered.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

/// Waits that double after each failure, from `min` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
    jitter: bool,
}

impl Backoff {
    /// Starts at `min` and doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            failures: 0,
            jitter: false,
        }
    }

    /// Each wait is drawn from (half of it, all of it], so that peers that failed
    /// together do not all retry at once.
    pub fn with_jitter(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// The wait before the next attempt; the one after is twice as long, up to the cap.
    pub fn next_wait(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        if self.jitter {
            base.mul_f64(1.0 - 0.5 * unit())
        } else {
            base
        }
    }

    /// Starts again from `min` (after a success).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A number in [0, 1): std's hasher keys are random per process and per call, which is
/// all the randomness jitter needs.
fn unit() -> f64 {
    let bits = RandomState::new().hash_one(0u8) >> 11;
    bits as f64 / (1u64 << 53) as f64
}
