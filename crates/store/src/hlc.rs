//! Hybrid logical clock: 48 bits of wall-clock milliseconds, 16 bits of counter.
//!
//! The counter stays below [`COUNTER_LIMIT`]; past it the clock moves to the next
//! millisecond. That keeps the millisecond view ([`to_ms`]: milliseconds plus
//! counter / 1000) exact enough in an `f64` that distinct timestamps stay distinct and
//! ordered, which Harper's clients see as `__updatedtime__` and `txn_time`.
//!
//! Bounds: the clock never wraps. Its millisecond part stops at [`MAX_MS`] (the year
//! 10889), where it no longer advances rather than overflow. A timestamp from elsewhere
//! is trusted only up to the local wall clock plus a maximum offset
//! ([`Hlc::beyond_offset`]): one further ahead would drag every later local timestamp
//! with it (the clock never goes back), so the store refuses it wherever a peer's time
//! comes in ([`Hlc::check_remote`]: log entries, copied rows, drops, creations) and
//! replication holds it back until the wall clock has caught up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Result, StoreError};

/// The largest millisecond a timestamp can carry: 48 bits.
pub const MAX_MS: u64 = (1 << 48) - 1;

/// How far ahead of the local wall clock a remote timestamp may be, by default.
pub const DEFAULT_MAX_OFFSET_MS: u64 = 60_000;

/// A node's hybrid logical clock. Never goes backwards; always above anything it has seen.
#[derive(Debug)]
pub struct Hlc {
    last: AtomicU64,
    /// Added to the system clock (a setting for tests that need a node whose clock is off).
    offset_ms: i64,
    /// Remote timestamps further ahead of the wall clock than this are not accepted.
    max_offset_ms: u64,
}

impl Default for Hlc {
    fn default() -> Self {
        Self::with_clock(0, DEFAULT_MAX_OFFSET_MS)
    }
}

impl Hlc {
    /// A clock that starts at the current wall time.
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock whose wall time is the system clock shifted by `offset_ms`, accepting remote
    /// timestamps up to `max_offset_ms` ahead of it.
    pub fn with_clock(offset_ms: i64, max_offset_ms: u64) -> Self {
        Hlc {
            last: AtomicU64::new(0),
            offset_ms,
            max_offset_ms,
        }
    }

    /// This clock's wall time in milliseconds since the epoch.
    pub fn wall(&self) -> u64 {
        wall_ms().saturating_add_signed(self.offset_ms).min(MAX_MS)
    }

    /// Next timestamp: the wall clock if it moved on, else one tick above the last one.
    pub fn now(&self) -> u64 {
        let wall = self.wall() << 16;
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
    /// later local timestamps order after it. A remote timestamp is checked first (the store
    /// refuses one beyond the maximum offset; replication holds it back).
    pub fn observe(&self, seen: u64) {
        self.last.fetch_max(seen, Ordering::AcqRel);
    }

    /// How many milliseconds `hlc` is ahead of this clock's wall time, if that is more
    /// than the maximum offset: such a timestamp must not be accepted (yet).
    pub fn beyond_offset(&self, hlc: u64) -> Option<u64> {
        let ahead = (hlc >> 16).saturating_sub(self.wall());
        (ahead > self.max_offset_ms).then_some(ahead)
    }

    /// Refuses a timestamp from elsewhere (a peer's entry, row, drop or creation) that is
    /// further ahead of this clock's wall time than the maximum offset: taking it in would
    /// drag this clock, which never goes back, and every later local write along with it.
    pub(crate) fn check_remote(&self, hlc: u64) -> Result<()> {
        match self.beyond_offset(hlc) {
            Some(ahead_ms) => Err(StoreError::ClockAhead {
                ahead_ms,
                max_ms: self.max_offset_ms,
            }),
            None => Ok(()),
        }
    }

    /// How far ahead of the wall clock a remote timestamp may be, in milliseconds.
    pub fn max_offset_ms(&self) -> u64 {
        self.max_offset_ms
    }
}

/// Counter values per millisecond.
pub(crate) const COUNTER_LIMIT: u64 = 1000;

/// The smallest timestamp after `t`; `t` itself at the end of the clock's range, which
/// it never wraps past.
fn tick(t: u64) -> u64 {
    if (t & 0xFFFF) + 1 < COUNTER_LIMIT {
        t + 1
    } else if t >> 16 < MAX_MS {
        ((t >> 16) + 1) << 16
    } else {
        t
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

    #[test]
    fn the_clock_stops_at_the_end_of_its_range_instead_of_wrapping() {
        let end = (MAX_MS << 16) | (COUNTER_LIMIT - 1);
        assert_eq!(tick(end), end);
        assert_eq!(tick(u64::MAX), u64::MAX);
        assert_eq!(tick((MAX_MS - 1) << 16 | (COUNTER_LIMIT - 1)), MAX_MS << 16);
        // A counter beyond the limit (from a foreign clock) rolls over too.
        assert_eq!(tick((7 << 16) | 0xFFFF), 8 << 16);

        let hlc = Hlc::new();
        hlc.observe(u64::MAX);
        assert_eq!(hlc.now(), u64::MAX);
        assert_eq!(hlc.now(), u64::MAX, "stays at the end, no overflow");

        let far = Hlc::with_clock(i64::MAX, DEFAULT_MAX_OFFSET_MS);
        assert_eq!(far.wall(), MAX_MS);
        assert_eq!(far.now() >> 16, MAX_MS);
        let before_epoch = Hlc::with_clock(i64::MIN, DEFAULT_MAX_OFFSET_MS);
        assert_eq!(before_epoch.wall(), 0);
        let first = before_epoch.now();
        assert!(before_epoch.now() > first);
    }

    #[test]
    fn an_offset_shifts_the_wall_time() {
        const DAY: u64 = 86_400_000;
        let ahead = Hlc::with_clock(DAY as i64, DEFAULT_MAX_OFFSET_MS);
        let (before, ts, after) = (wall_ms(), ahead.now() >> 16, wall_ms());
        assert!((before + DAY..=after + DAY).contains(&ts), "{ts}");
        // A normal clock refuses what the shifted one stamps, and accepts its own.
        let normal = Hlc::new();
        let refused = normal
            .beyond_offset(ahead.now())
            .expect("a day ahead is refused");
        assert!(refused >= DAY - 1000, "{refused}");
        assert_eq!(normal.beyond_offset(normal.now()), None);
        assert_eq!(
            ahead.beyond_offset(normal.now()),
            None,
            "the past is always accepted"
        );
        assert_eq!(normal.beyond_offset(u64::MAX).map(|a| a > DAY), Some(true));
    }

    proptest! {
        #[test]
        fn never_decreases_whatever_it_observes(
            seen in proptest::collection::vec(prop_oneof![
                Just(u64::MAX),
                Just(0u64),
                any::<u64>(),
                (0u64..4_000_000_000_000).prop_map(|ms| ms << 16),
            ], 1..20),
        ) {
            let hlc = Hlc::new();
            let mut last = hlc.now();
            for s in seen {
                hlc.observe(s);
                let next = hlc.now();
                prop_assert!(next >= last && next >= s);
                // Strictly above what it saw, unless that was the very end of the range.
                prop_assert!(next > s || tick(s) == s);
                last = next;
            }
        }

        #[test]
        fn accepts_exactly_up_to_the_maximum_offset(
            max in 0u64..10_000_000,
            delta in 0u64..10_000_000,
            counter in 0u64..COUNTER_LIMIT,
        ) {
            // The wall clock moves while the test runs: stay a second clear of the bound.
            prop_assume!(delta.abs_diff(max) > 1000);
            let hlc = Hlc::with_clock(0, max);
            let ts = ((wall_ms() + delta) << 16) | counter;
            match hlc.beyond_offset(ts) {
                None => prop_assert!(delta < max),
                Some(ahead) => {
                    prop_assert!(delta > max);
                    prop_assert!(ahead > max && ahead <= delta);
                }
            }
        }

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
