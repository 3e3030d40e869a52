//! Failed-login limits per username and per client address.
//!
//! Each key counts its failed logins in a fixed window plus the checks still running for
//! it: counting those in flight is what stops a burst of concurrent guesses, which would
//! otherwise all start before the first failure is recorded. A key at its limit is refused
//! without hashing until its window ends; successful logins are never counted, so a client
//! that logs in correctly many times at once is not locked out (the login cache and
//! shared checks make those cheap anyway).
//!
//! Memory is bounded: at most [`MAX_TRACKED`] keys per kind. When full, expired keys are
//! swept (at most once a second); a key that still finds no room is not tracked, so a
//! flood of made-up usernames cannot evict the counters of the names under attack.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::error::AuthError;

/// Most usernames (and, separately, addresses) tracked at once.
const MAX_TRACKED: usize = 100_000;
/// Least time between two sweeps of a full table.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The limits and their counters.
#[derive(Debug)]
pub(crate) struct Limiter {
    per_user: u32,
    per_address: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    users: Counters<String>,
    addresses: Counters<IpAddr>,
}

#[derive(Debug)]
struct Counters<K> {
    map: HashMap<K, Counter>,
    last_sweep: Instant,
}

#[derive(Debug)]
struct Counter {
    since: Instant,
    failures: u32,
    in_flight: u32,
}

/// One password check under way; dropping it ends it, as a failure if [`Attempt::failed`]
/// was called (so a cancelled check counts as nothing).
#[derive(Debug)]
pub(crate) struct Attempt<'a> {
    limiter: &'a Limiter,
    user: Option<String>,
    address: Option<IpAddr>,
    failed: bool,
}

impl Limiter {
    /// Limits of `per_user` and `per_address` failures per `window` (0: no limit).
    pub(crate) fn new(per_user: u32, per_address: u32, window: Duration) -> Self {
        let now = Instant::now();
        Limiter {
            per_user,
            per_address,
            window,
            state: Mutex::new(State {
                users: Counters::new(now),
                addresses: Counters::new(now),
            }),
        }
    }

    /// Starts a password check for `username` from `address`, or refuses it if either is
    /// at its limit.
    pub(crate) fn begin(
        &self,
        username: &str,
        address: Option<IpAddr>,
    ) -> Result<Attempt<'_>, AuthError> {
        let now = Instant::now();
        let mut state = self.lock();
        let wait = state
            .users
            .blocked(username, self.per_user, self.window, now)
            .or_else(|| {
                address.and_then(|ip| {
                    state
                        .addresses
                        .blocked(&ip, self.per_address, self.window, now)
                })
            });
        if let Some(retry_after) = wait {
            return Err(AuthError::TooManyAttempts { retry_after });
        }
        let user = (self.per_user > 0)
            .then(|| state.users.enter(username, self.window, now))
            .flatten();
        let address = address
            .filter(|_| self.per_address > 0)
            .and_then(|ip| state.addresses.enter(&ip, self.window, now));
        Ok(Attempt {
            limiter: self,
            user,
            address,
            failed: false,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The counters are whole after every statement; a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Attempt<'_> {
    /// Marks the check as failed (a wrong password or an unknown user).
    pub(crate) fn failed(&mut self) {
        self.failed = true;
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let now = Instant::now();
        let window = self.limiter.window;
        let mut state = self.limiter.lock();
        if let Some(user) = &self.user {
            state.users.leave(user, self.failed, window, now);
        }
        if let Some(ip) = &self.address {
            state.addresses.leave(ip, self.failed, window, now);
        }
    }
}

impl<K: Hash + Eq + Clone> Counters<K> {
    fn new(now: Instant) -> Self {
        Counters {
            map: HashMap::new(),
            last_sweep: now,
        }
    }

    /// How long `key` must wait, if it is at `limit`.
    fn blocked<Q>(
        &mut self,
        key: &Q,
        limit: u32,
        window: Duration,
        now: Instant,
    ) -> Option<Duration>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if limit == 0 {
            return None;
        }
        let counter = self.map.get_mut(key)?;
        counter.refresh(window, now);
        (counter.failures.saturating_add(counter.in_flight) >= limit)
            .then(|| (counter.since + window).saturating_duration_since(now))
    }

    /// Counts a check in flight for `key`; returns the key if it is tracked.
    fn enter<Q>(&mut self, key: &Q, window: Duration, now: Instant) -> Option<K>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(counter) = self.map.get_mut(key) {
            counter.in_flight += 1;
            return Some(key.to_owned());
        }
        if self.map.len() >= MAX_TRACKED && now.duration_since(self.last_sweep) >= SWEEP_INTERVAL {
            self.last_sweep = now;
            self.map
                .retain(|_, c| c.in_flight > 0 || now.duration_since(c.since) < window);
        }
        if self.map.len() >= MAX_TRACKED {
            return None;
        }
        self.map.insert(
            key.to_owned(),
            Counter {
                since: now,
                failures: 0,
                in_flight: 1,
            },
        );
        Some(key.to_owned())
    }

    /// Ends a check for `key`, counting it as a failure if it failed.
    fn leave(&mut self, key: &K, failed: bool, window: Duration, now: Instant) {
        let Some(counter) = self.map.get_mut(key) else {
            return;
        };
        counter.in_flight = counter.in_flight.saturating_sub(1);
        if failed {
            counter.refresh(window, now);
            counter.failures = counter.failures.saturating_add(1);
        }
        if counter.in_flight == 0 && counter.failures == 0 {
            self.map.remove(key);
        }
    }
}

impl Counter {
    /// Starts a new window once the current one has passed.
    fn refresh(&mut self, window: Duration, now: Instant) {
        if now.duration_since(self.since) >= window {
            self.since = now;
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn failures_per_user_then_refused() {
        let limiter = Limiter::new(3, 0, WINDOW);
        for _ in 0..3 {
            limiter.begin("bob", ip(1)).unwrap().failed();
        }
        assert!(matches!(
            limiter.begin("bob", ip(2)),
            Err(AuthError::TooManyAttempts { retry_after }) if retry_after <= WINDOW
        ));
        assert!(
            limiter.begin("alice", ip(1)).is_ok(),
            "other users unaffected"
        );
    }

    #[test]
    fn successes_are_not_counted() {
        let limiter = Limiter::new(2, 2, WINDOW);
        for _ in 0..10 {
            drop(limiter.begin("bob", ip(1)).unwrap());
        }
        assert!(
            limiter.lock().users.map.is_empty(),
            "nothing kept for successes"
        );
        assert!(limiter.lock().addresses.map.is_empty());
    }

    #[test]
    fn checks_in_flight_count_toward_the_limit() {
        let limiter = Limiter::new(0, 2, WINDOW);
        let first = limiter.begin("a", ip(9)).unwrap();
        let _second = limiter.begin("b", ip(9)).unwrap();
        assert!(limiter.begin("c", ip(9)).is_err(), "two in flight from .9");
        assert!(limiter.begin("c", ip(8)).is_ok(), "another address is free");
        drop(first);
        assert!(
            limiter.begin("c", ip(9)).is_ok(),
            "a finished success frees its place"
        );
    }

    #[test]
    fn unknown_address_is_limited_per_user_only() {
        let limiter = Limiter::new(1, 1, WINDOW);
        limiter.begin("bob", None).unwrap().failed();
        assert!(limiter.begin("bob", None).is_err());
        assert!(limiter.begin("carol", None).is_ok());
    }

    #[test]
    fn a_new_window_forgets_failures() {
        let limiter = Limiter::new(1, 0, Duration::ZERO);
        limiter.begin("bob", None).unwrap().failed();
        assert!(
            limiter.begin("bob", None).is_ok(),
            "a zero window has passed"
        );
    }
}
