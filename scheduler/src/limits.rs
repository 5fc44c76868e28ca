//! Per-runner request rate limits: a token bucket for each runner, refilled at a steady
//! rate. A flagged runner (one whose digests disagreed with accepted results) gets a tenth
//! of the rate, so that a misbehaving machine cannot crowd out honest ones.
//!
//! Pure apart from the lock: the caller passes the time.

use std::collections::HashMap;
use std::sync::Mutex;

/// The buckets.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// The share of the rate a flagged runner gets.
pub const FLAGGED_SHARE: f64 = 0.1;

impl RateLimiter {
    /// Allows `per_second` requests a second on average and `2 × per_second` at once; a
    /// rate of 0 allows everything.
    pub fn new(per_second: f64) -> RateLimiter {
        RateLimiter {
            per_second,
            burst: (2.0 * per_second).max(1.0),
            buckets: Mutex::default(),
        }
    }

    /// Whether `runner` may make a request at `now_ms`; if not, how many milliseconds until
    /// it may.
    pub fn check(&self, runner: &str, flagged: bool, now_ms: i64) -> Result<(), u64> {
        if self.per_second <= 0.0 {
            return Ok(());
        }
        let share = if flagged { FLAGGED_SHARE } else { 1.0 };
        let rate = self.per_second * share;
        let burst = (self.burst * share).max(1.0);
        let mut buckets = self.buckets.lock().expect("rate limiter");
        if buckets.len() > 100_000 {
            // Forget runners whose buckets are full again: they lose nothing.
            let full_after = (1000.0 * self.burst / self.per_second) as i64;
            buckets.retain(|_, b| now_ms - b.at_ms < full_after);
        }
        let bucket = buckets.entry(runner.to_string()).or_insert(Bucket {
            tokens: burst,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_steady_rate() {
        let limits = RateLimiter::new(10.0);
        for i in 0..20 {
            assert_eq!(
                limits.check("a", false, 0),
                Ok(()),
                "request {i} of the burst"
            );
        }
        let wait = limits.check("a", false, 0).unwrap_err();
        assert_eq!(wait, 100, "one token comes back every 100 ms");
        assert!(limits.check("a", false, 99).is_err());
        assert_eq!(limits.check("a", false, 100), Ok(()));
        // Another runner has its own bucket.
        assert_eq!(limits.check("b", false, 100), Ok(()));
    }

    #[test]
    fn a_flagged_runner_gets_a_tenth() {
        let limits = RateLimiter::new(10.0);
        assert_eq!(limits.check("bad", true, 0), Ok(()));
        assert_eq!(limits.check("bad", true, 0), Ok(()));
        assert_eq!(limits.check("bad", true, 0), Err(1000));
        assert_eq!(limits.check("bad", true, 1000), Ok(()));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let limits = RateLimiter::new(0.0);
        for _ in 0..10_000 {
            assert_eq!(limits.check("a", false, 0), Ok(()));
        }
    }

    #[test]
    fn time_going_backwards_grants_nothing() {
        let limits = RateLimiter::new(1.0);
        assert_eq!(limits.check("a", false, 10_000), Ok(()));
        assert_eq!(limits.check("a", false, 10_000), Ok(()));
        assert!(limits.check("a", false, 0).is_err());
        assert!(limits.check("a", false, 10_000).is_err());
    }
}
