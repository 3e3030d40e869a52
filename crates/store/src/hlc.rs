//! Hybrid logical clock: 48 bits of wall-clock milliseconds, 16 bits of counter.
//!
//! The counter stays below [`COUNTER_LIMIT`]; past it the clock moves to the next
//! millisecond. That keeps the millisecond view ([`to_ms`]: milliseconds plus
//! counter / 1000) exact enough in an `f64` that distinct timestamps stay distinct and
//! ordered, which Harper's clients see as `__updatedtime__` and `txn_time`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A node's hybrid logical clock. Never goes backwards; always above anything it has seen.
#[derive(Debug, Default)]
pub struct Hlc {
    last: AtomicU64,
}

impl Hlc {
    /// A clock that starts at the current wall time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Next timestamp: the wall clock if it moved on, else one tick above the last one.
    pub fn now(&self) -> u64 {
        let wall = wall_ms() << 16;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = wall.max(tick(last));
            match self
                .last
                .compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return next,
                Err(seen) => last = seen,
            }
        }
    }

    /// Records a timestamp seen elsewhere (a stored version, a peer's commit), so that
    /// later local timestamps order after it.
    pub fn observe(&self, seen: u64) {
        self.last.fetch_max(seen, Ordering::AcqRel);
    }
}

/// Counter values per millisecond.
pub(crate) const COUNTER_LIMIT: u64 = 1000;

/// The smallest timestamp after `t`.
fn tick(t: u64) -> u64 {
    if (t & 0xFFFF) + 1 < COUNTER_LIMIT {
        t + 1
    } else {
        ((t >> 16) + 1) << 16
    }
}

/// Milliseconds since the Unix epoch, as the wall clock says.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The timestamp as Harper shows times: milliseconds since the epoch, with the counter as
/// thousandths, so that distinct versions show distinct, ordered times.
pub fn to_ms(hlc: u64) -> f64 {
    (hlc >> 16) as f64 + (hlc & 0xFFFF) as f64 / COUNTER_LIMIT as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn counter_rolls_into_the_next_millisecond() {
        let t = (5 << 16) | (COUNTER_LIMIT - 1);
        assert_eq!(tick(t), 6 << 16);
        assert_eq!(tick(5 << 16), (5 << 16) | 1);
    }

    #[test]
    fn strictly_increasing_across_threads() {
        let hlc = std::sync::Arc::new(Hlc::new());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let hlc = hlc.clone();
                std::thread::spawn(move || (0..10_000).map(|_| hlc.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let seq = h.join().unwrap();
            assert!(seq.windows(2).all(|w| w[0] < w[1]));
            all.extend(seq);
        }
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n, "no timestamp handed out twice");
    }

    proptest! {
        #[test]
        fn never_below_what_it_observed(ahead_ms in 0u64..10_000_000, counter in 0u64..0xFFFF) {
            let hlc = Hlc::new();
            let seen = ((wall_ms() + ahead_ms) << 16) | counter;
            hlc.observe(seen);
            let next = hlc.now();
            prop_assert!(next > seen);
            prop_assert!(hlc.now() > next);
        }

        #[test]
        fn ms_view_is_exact_and_ordered(
            ms_a in 1_500_000_000_000u64..4_000_000_000_000,
            ms_b in 1_500_000_000_000u64..4_000_000_000_000,
            ca in 0..COUNTER_LIMIT,
            cb in 0..COUNTER_LIMIT,
        ) {
            let (a, b) = ((ms_a << 16) | ca, (ms_b << 16) | cb);
            prop_assert_eq!(a.cmp(&b), to_ms(a).partial_cmp(&to_ms(b)).unwrap());
        }
    }
}
