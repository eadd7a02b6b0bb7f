//! A provider outage must degrade to offline analysis, not stall every incident: retries with
//! backoff for the passing fault, a circuit breaker for the lasting one.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use crate::config::{CircuitSettings, RetryPolicy};

/// Open after `failures` consecutive failed requests; while open, callers go straight to the
/// fallback. After the cool-down requests are let through again: one success closes it, one
/// more failure opens it for another cool-down.
#[derive(Debug)]
pub struct CircuitBreaker {
    settings: CircuitSettings,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    times_opened: u64,
}

/// What the breaker looks like from outside (for the record and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitStatus {
    pub open: bool,
    pub consecutive_failures: u32,
    pub times_opened: u64,
}

impl CircuitBreaker {
    pub fn new(settings: CircuitSettings) -> Self {
        CircuitBreaker {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    /// Time left before requests are allowed again, if the circuit is open.
    pub fn open_for(&self) -> Option<Duration> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        s.open_until.filter(|t| *t > now).map(|t| t - now)
    }

    pub fn success(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.consecutive_failures = 0;
        s.open_until = None;
    }

    /// Returns true when this failure opened the circuit.
    pub fn failure(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.consecutive_failures = s.consecutive_failures.saturating_add(1);
        let now = Instant::now();
        let already_open = s.open_until.is_some_and(|t| t > now);
        if s.consecutive_failures >= self.settings.failures && !already_open {
            s.open_until = Some(now + self.settings.cooldown);
            s.times_opened += 1;
            return true;
        }
        false
    }

    pub fn status(&self) -> CircuitStatus {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        CircuitStatus {
            open: s.open_until.is_some_and(|t| t > Instant::now()),
            consecutive_failures: s.consecutive_failures,
            times_opened: s.times_opened,
        }
    }
}

/// The most jitter added to a wait, as a fraction of it.
const MAX_JITTER: f64 = 0.25;

/// The wait before retry number `retry` (0-based): doubling from the base, capped, with up to
/// 25% jitter so that many Lambdas do not retry in step.
pub fn backoff(policy: &RetryPolicy, retry: u32) -> Duration {
    // backon's own jitter adds up to 100% of the wait, so it gives the schedule and we the 25%.
    let capped = ExponentialBuilder::new()
        .with_min_delay(policy.base_delay.min(policy.max_delay))
        .with_max_delay(policy.max_delay)
        .without_max_times()
        .build()
        .nth(retry.min(64) as usize)
        .unwrap_or(policy.max_delay);
    capped + capped.mul_f64(fastrand::f64() * MAX_JITTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(failures: u32, cooldown_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(CircuitSettings {
            failures,
            cooldown: Duration::from_millis(cooldown_ms),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets() {
        let b = breaker(3, 60_000);
        assert!(!b.failure());
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.open_for().is_none());
        assert!(b.failure(), "third consecutive failure opens it");
        assert!(b.open_for().is_some());
        assert_eq!(b.status().times_opened, 1);
    }

    #[test]
    fn after_the_cooldown_one_more_failure_reopens_and_a_success_closes() {
        let b = breaker(2, 20);
        b.failure();
        b.failure();
        assert!(b.status().open);
        std::thread::sleep(Duration::from_millis(30));
        assert!(!b.status().open, "cool-down over: requests may probe");
        assert!(b.failure(), "a failed probe reopens at once");
        std::thread::sleep(Duration::from_millis(30));
        b.success();
        assert!(!b.status().open);
        assert_eq!(b.status().consecutive_failures, 0);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(400),
            max_retry_after: Duration::from_secs(1),
        };
        let d0 = backoff(&p, 0);
        let d1 = backoff(&p, 1);
        let d5 = backoff(&p, 5);
        assert!(d0 >= Duration::from_millis(100) && d0 < Duration::from_millis(126));
        assert!(d1 >= Duration::from_millis(200) && d1 < Duration::from_millis(251));
        assert!(d5 >= Duration::from_millis(400) && d5 < Duration::from_millis(501));
        let far = backoff(&p, u32::MAX);
        assert!(far >= Duration::from_millis(400) && far < Duration::from_millis(501));
    }

    #[test]
    fn a_base_above_the_cap_waits_the_cap() {
        let p = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_secs(10),
            max_delay: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(1),
        };
        let d = backoff(&p, 0);
        assert!(
            d >= Duration::from_secs(2) && d < Duration::from_millis(2501),
            "{d:?}"
        );
    }

    #[test]
    fn jitter_spreads_waits_over_a_quarter_of_the_delay() {
        let p = RetryPolicy {
            max_retries: 2,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(1),
        };
        let waits: Vec<Duration> = (0..200).map(|_| backoff(&p, 0)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(1) && *w < Duration::from_millis(1250)));
        // Lambdas retrying in the same instant must not wait the same: both ends of the range occur.
        assert!(waits.iter().any(|w| *w < Duration::from_millis(1060)));
        assert!(waits.iter().any(|w| *w > Duration::from_millis(1190)));
    }
}
