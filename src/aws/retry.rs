//! Retry policy: exponential backoff with full jitter inside a bounded budget of attempts and time.
//!
//! The policy arithmetic is pure ([`RetryPolicy::backoff`]); randomness, sleeping and the clock
//! come from a [`RetryEnv`], so the loop ([`RetryPolicy::run`]) is unit-testable without waiting.

use std::time::{Duration, Instant};

/// Where the retry loop gets randomness, sleep and time from.
pub trait RetryEnv: Send + Sync {
    /// A uniformly distributed number in `[0, 1)`.
    fn random_unit(&self) -> f64;
    /// Waits for `d`.
    fn sleep(&self, d: Duration);
    /// The current monotonic time.
    fn now(&self) -> Instant;
}

/// The real environment: OS randomness (ring), `thread::sleep`, `Instant::now`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRetryEnv;

impl RetryEnv for SystemRetryEnv {
    fn random_unit(&self) -> f64 {
        use ring::rand::SecureRandom;
        let mut bytes = [0u8; 8];
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // No OS randomness: fall back to the clock's low bits, good enough for jitter.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            return f64::from(nanos % 1_000_000) / 1_000_000.0;
        }
        // 53 random bits make an exactly representable fraction in [0, 1).
        (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// How often and how long to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff cap for the first retry; doubled for each further retry.
    pub base_delay: Duration,
    /// Upper bound of one backoff.
    pub max_delay: Duration,
    /// Upper bound of the whole call including waits: no retry is started that would end
    /// its backoff after this much time since the first attempt.
    pub budget: Duration,
}

impl RetryPolicy {
    /// EC2 API calls from ipamd: 5 attempts, 250 ms doubling up to 20 s, 45 s in total.
    /// (The Go SDK's standard retryer makes 3 attempts with up to 20 s backoff; ipamd is the
    /// biggest EC2 caller on a node and throttling is its most common error, hence 5.)
    pub const EC2: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(20),
        budget: Duration::from_secs(45),
    };

    /// IMDS: short backoff; the deadline given per call bounds the total.
    pub const IMDS: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        budget: Duration::from_secs(60),
    };

    /// No retries at all.
    pub const NONE: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::ZERO,
        max_delay: Duration::ZERO,
        budget: Duration::ZERO,
    };

    /// The wait before retry number `retry` (1 = first retry), given a uniform `unit` in [0, 1):
    /// full jitter, `unit * min(max_delay, base_delay * 2^(retry-1))`.
    pub fn backoff(&self, retry: u32, unit: f64) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        let ceiling = self
            .base_delay
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        ceiling.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Runs `op` until it succeeds, fails for good, or the budget is spent.
    ///
    /// `op` gets the attempt number (1-based) and returns `Err(Attempt::Retry(e))` for a
    /// retryable failure or `Err(Attempt::Fail(e))` for a final one. The last error is returned
    /// together with the number of attempts made.
    pub fn run<T, E>(
        &self,
        env: &dyn RetryEnv,
        mut op: impl FnMut(u32) -> Result<T, Attempt<E>>,
    ) -> Result<T, Exhausted<E>> {
        let started = env.now();
        let mut attempt = 1;
        loop {
            match op(attempt) {
                Ok(v) => return Ok(v),
                Err(Attempt::Fail(error)) => {
                    return Err(Exhausted {
                        error,
                        attempts: attempt,
                        gave_up: false,
                    })
                }
                Err(Attempt::Retry(error)) => {
                    if attempt >= self.max_attempts {
                        return Err(Exhausted {
                            error,
                            attempts: attempt,
                            gave_up: true,
                        });
                    }
                    let wait = self.backoff(attempt, env.random_unit());
                    let elapsed = env.now().saturating_duration_since(started);
                    if elapsed + wait > self.budget {
                        return Err(Exhausted {
                            error,
                            attempts: attempt,
                            gave_up: true,
                        });
                    }
                    env.sleep(wait);
                    attempt += 1;
                }
            }
        }
    }
}

/// The outcome of one failed attempt.
#[derive(Debug)]
pub enum Attempt<E> {
    /// Worth retrying (throttling, 5xx, connection error).
    Retry(E),
    /// Final (bad request, permissions, capacity).
    Fail(E),
}

/// The error of the last attempt and how many attempts were made.
#[derive(Debug)]
pub struct Exhausted<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made, the first one included.
    pub attempts: u32,
    /// Whether the loop stopped because the attempt or time budget ran out.
    pub gave_up: bool,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A fake environment: fixed randomness, sleeps recorded and added to the clock.
    pub(crate) struct FakeEnv {
        pub unit: f64,
        pub start: Instant,
        pub slept: Mutex<Vec<Duration>>,
    }

    impl FakeEnv {
        pub(crate) fn new(unit: f64) -> Self {
            FakeEnv {
                unit,
                start: Instant::now(),
                slept: Mutex::new(Vec::new()),
            }
        }
    }

    impl RetryEnv for FakeEnv {
        fn random_unit(&self) -> f64 {
            self.unit
        }
        fn sleep(&self, d: Duration) {
            self.slept.lock().unwrap().push(d);
        }
        fn now(&self) -> Instant {
            self.start + self.slept.lock().unwrap().iter().sum::<Duration>()
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_scales_by_jitter() {
        let p = RetryPolicy::EC2;
        assert_eq!(p.backoff(1, 0.999_999).as_millis(), 249);
        assert_eq!(p.backoff(2, 1.0), Duration::from_millis(500));
        assert_eq!(p.backoff(3, 1.0), Duration::from_secs(1));
        assert_eq!(p.backoff(20, 1.0), Duration::from_secs(20));
        assert_eq!(p.backoff(1000, 1.0), Duration::from_secs(20));
        assert_eq!(p.backoff(3, 0.0), Duration::ZERO);
        assert_eq!(p.backoff(3, 0.5), Duration::from_millis(500));
    }

    #[test]
    fn retries_stop_at_max_attempts() {
        let env = FakeEnv::new(1.0);
        let mut calls = 0;
        let r: Result<(), _> = RetryPolicy::EC2.run(&env, |_| {
            calls += 1;
            Err(Attempt::Retry("throttled"))
        });
        let e = r.unwrap_err();
        assert_eq!((calls, e.attempts, e.gave_up), (5, 5, true));
        let slept = env.slept.lock().unwrap().clone();
        assert_eq!(
            slept,
            vec![250, 500, 1000, 2000]
                .into_iter()
                .map(Duration::from_millis)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn time_budget_stops_retries_before_attempts_run_out() {
        let env = FakeEnv::new(1.0);
        let policy = RetryPolicy {
            max_attempts: 100,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
            budget: Duration::from_secs(10),
        };
        let r: Result<(), _> = policy.run(&env, |_| Err(Attempt::Retry(())));
        let e = r.unwrap_err();
        // waits 1 + 2 + 4 = 7 s; the next 4 s wait would end at 11 s > 10 s.
        assert_eq!(e.attempts, 4);
        assert!(env.slept.lock().unwrap().iter().sum::<Duration>() <= policy.budget);
    }

    #[test]
    fn final_errors_are_not_retried_and_success_ends_the_loop() {
        let env = FakeEnv::new(0.5);
        let r: Result<(), _> = RetryPolicy::EC2.run(&env, |_| Err(Attempt::Fail("denied")));
        let e = r.unwrap_err();
        assert_eq!((e.attempts, e.gave_up, e.error), (1, false, "denied"));
        let r = RetryPolicy::EC2.run(&env, |n| if n < 3 { Err(Attempt::Retry(n)) } else { Ok(n) });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn system_randomness_is_in_the_unit_interval() {
        for _ in 0..100 {
            let u = SystemRetryEnv.random_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
