//! Rate limits in the store: the generic cell rate algorithm (GCRA), with
//! one key per (rule, caller) holding one number.
//!
//! A limit of `limit` requests per `window` lets one request through every
//! `interval = window / limit` on average, and up to `limit` at once after
//! a quiet spell (the burst is the whole limit). The state is the caller's
//! *backlog*: how far ahead of now their allowance is used up (the
//! "theoretical arrival time" minus now; zero when absent or past). A
//! request adds `interval` to it and is allowed while the result stays
//! within `limit × interval`. So, starting from nothing, exactly `limit`
//! requests pass at once, and afterwards one more each `interval`.
//!
//! Times are whole microseconds. The interval is rounded down and the
//! capacity is `limit × interval` (not `window`), so a burst is exactly
//! `limit` whatever the rounding; the long-run rate is at most one
//! microsecond per interval faster than `limit / window`.
//!
//! Every backend runs [`Gcra::step`] atomically on its key: the memory
//! store under its lock, Redis in one Lua script (`redis::scripts`) that
//! reads the time from the Redis server itself, so replicas with skewed
//! clocks agree. The stored value is the time the backlog runs out, which
//! is also when the key expires.

use std::time::Duration;

/// The answer to one rate-limited request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether this request is within the limit (and was counted).
    pub allowed: bool,
    /// The limit it was counted against.
    pub limit: u64,
    /// Requests the caller could still make at once, after this one.
    pub remaining: u64,
    /// Until the caller's whole allowance is back (the backlog runs out).
    pub reset: Duration,
    /// Refused: until one more request would be allowed. Zero when allowed.
    pub retry_after: Duration,
}

/// One limit in microseconds: the interval between requests and the
/// capacity (`limit` intervals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    limit: u64,
    interval_us: u64,
    capacity_us: u64,
}

/// What one step decided, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Allowed (and counted).
    pub allowed: bool,
    /// The backlog after this request: the new one when allowed (to be
    /// stored), the unchanged one when refused.
    pub backlog_us: u64,
    /// Refused: until one more request fits.
    pub retry_after_us: u64,
}

impl Gcra {
    /// `limit` requests per `window`; a zero limit counts as 1 and an
    /// interval is at least one microsecond (configuration refuses both
    /// long before a store sees them).
    pub fn new(limit: u64, window: Duration) -> Gcra {
        let limit = limit.max(1);
        let window_us = u64::try_from(window.as_micros()).unwrap_or(u64::MAX);
        let interval_us = (window_us / limit).max(1);
        Gcra {
            limit,
            interval_us,
            capacity_us: interval_us.saturating_mul(limit),
        }
    }

    /// The limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Microseconds between requests on average.
    pub fn interval_us(&self) -> u64 {
        self.interval_us
    }

    /// The largest backlog: `limit` intervals.
    pub fn capacity_us(&self) -> u64 {
        self.capacity_us
    }

    /// One request against a caller whose backlog is `backlog_us`.
    pub fn step(&self, backlog_us: u64) -> Step {
        let next = backlog_us.saturating_add(self.interval_us);
        if next > self.capacity_us {
            Step {
                allowed: false,
                backlog_us,
                retry_after_us: next - self.capacity_us,
            }
        } else {
            Step {
                allowed: true,
                backlog_us: next,
                retry_after_us: 0,
            }
        }
    }

    /// The decision a step (from any backend) stands for.
    pub fn decision(&self, step: Step) -> RateDecision {
        let backlog = step.backlog_us.min(self.capacity_us);
        RateDecision {
            allowed: step.allowed,
            limit: self.limit,
            remaining: (self.capacity_us - backlog) / self.interval_us,
            reset: Duration::from_micros(step.backlog_us),
            retry_after: Duration::from_micros(step.retry_after_us),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    /// Runs `n` requests at one instant from `backlog`; returns the
    /// allowed count and the final backlog.
    fn burst(g: &Gcra, mut backlog: u64, n: u64) -> (u64, u64) {
        let mut allowed = 0;
        for _ in 0..n {
            let s = g.step(backlog);
            if s.allowed {
                allowed += 1;
            }
            backlog = s.backlog_us;
        }
        (allowed, backlog)
    }

    #[test]
    fn a_burst_is_exactly_the_limit() {
        for (limit, window) in [
            (1, MINUTE),
            (5, MINUTE),
            (7, MINUTE),
            (100, MINUTE),
            (3, Duration::from_secs(1)),
            (999_999, Duration::from_secs(1)),
            (1_000_000, Duration::from_secs(1)),
        ] {
            let g = Gcra::new(limit, window);
            let (allowed, _) = burst(&g, 0, limit + 3);
            assert_eq!(allowed, limit, "{limit} per {window:?}");
        }
    }

    #[test]
    fn remaining_counts_down_and_refusals_say_when_to_retry() {
        let g = Gcra::new(5, MINUTE);
        let mut backlog = 0;
        for expected in [4, 3, 2, 1, 0] {
            let s = g.step(backlog);
            let d = g.decision(s);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected);
            assert_eq!(d.retry_after, Duration::ZERO);
            backlog = s.backlog_us;
        }
        assert_eq!(Duration::from_micros(backlog), MINUTE, "fully used");
        let refused = g.decision(g.step(backlog));
        assert!(!refused.allowed);
        assert_eq!(refused.remaining, 0);
        // One interval (12 s) until one more fits; a minute until all do.
        assert_eq!(refused.retry_after, Duration::from_secs(12));
        assert_eq!(refused.reset, MINUTE);
    }

    #[test]
    fn the_allowance_refills_one_request_per_interval() {
        let g = Gcra::new(5, MINUTE);
        let (_, full) = burst(&g, 0, 5);
        let interval = g.interval_us();
        assert_eq!(interval, 12_000_000);
        // Just short of one interval later: still refused, retry in 1 µs.
        let s = g.step(full - (interval - 1));
        assert!(!s.allowed);
        assert_eq!(s.retry_after_us, 1);
        // One interval later: exactly one more.
        let (allowed, _) = burst(&g, full - interval, 3);
        assert_eq!(allowed, 1);
        // 2.5 intervals later: two more.
        let (allowed, _) = burst(&g, full - 5 * interval / 2, 4);
        assert_eq!(allowed, 2);
        // A whole window later (backlog gone): the whole burst again.
        assert_eq!(burst(&g, 0, 9).0, 5);
    }

    #[test]
    fn a_refusal_does_not_count() {
        let g = Gcra::new(2, Duration::from_secs(10));
        let (_, full) = burst(&g, 0, 2);
        let (allowed, after) = burst(&g, full, 50);
        assert_eq!(allowed, 0);
        assert_eq!(after, full, "refused requests leave the backlog alone");
    }

    #[test]
    fn degenerate_limits_are_clamped() {
        let g = Gcra::new(0, Duration::ZERO);
        assert_eq!((g.limit(), g.interval_us(), g.capacity_us()), (1, 1, 1));
        assert!(g.step(0).allowed);
        assert!(!g.step(1).allowed);
        let huge = Gcra::new(u64::MAX, Duration::from_secs(1));
        assert_eq!(huge.interval_us(), 1);
        assert!(huge.step(0).allowed);
    }
}
