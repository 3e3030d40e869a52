//! Hybrid logical clock: 48 bits of wall-clock milliseconds, 16 bits of counter.

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
            let next = wall.max(last + 1);
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

/// Milliseconds since the Unix epoch, as the wall clock says.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The timestamp as Harper shows times: milliseconds since the epoch, with the counter as
/// a fraction so that distinct versions show distinct times.
pub fn to_ms(hlc: u64) -> f64 {
    (hlc >> 16) as f64 + (hlc & 0xFFFF) as f64 / 65536.0
}

/// The first timestamp at or after `ms` milliseconds since the epoch.
pub fn from_ms(ms: f64) -> u64 {
    if ms <= 0.0 {
        return 0;
    }
    let whole = ms.trunc() as u64;
    let counter = ((ms.fract() * 65536.0).ceil() as u64).min(0xFFFF);
    (whole << 16) | counter
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        fn ms_view_keeps_order(a in 0u64..(1 << 60), b in 0u64..(1 << 60)) {
            if a <= b {
                prop_assert!(to_ms(a) <= to_ms(b));
            }
            prop_assert_eq!(from_ms((a >> 16) as f64), a & !0xFFFF);
        }
    }
}
