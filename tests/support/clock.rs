//! A retry environment on a test-controlled clock (include with `#[path = "support/clock.rs"] mod clock;`).
//!
//! [`ManualClock`] never waits: `sleep` records the wait and moves its clock forward by it, and
//! [`ManualClock::advance`] moves it by hand, so token lifetimes and backoffs are tested without
//! real sleeps, and the backoffs a client took can be checked exactly.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Mutex;
use std::time::{Duration, Instant};

use vpc_cni::aws::retry::RetryEnv;

/// A clock that only moves when told to (or when slept on), with a fixed jitter draw.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
    slept: Mutex<Vec<Duration>>,
    unit: f64,
}

impl ManualClock {
    /// A clock at the current instant whose jitter draw is always `unit` (in `[0, 1)`).
    pub fn new(unit: f64) -> ManualClock {
        ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            slept: Mutex::new(Vec::new()),
            unit,
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }

    /// Every wait asked for so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.slept.lock().unwrap().clone()
    }
}

impl RetryEnv for ManualClock {
    fn random_unit(&self) -> f64 {
        self.unit
    }
    fn sleep(&self, d: Duration) {
        self.slept.lock().unwrap().push(d);
        self.advance(d);
    }
    fn now(&self) -> Instant {
        self.start + *self.offset.lock().unwrap()
    }
}
