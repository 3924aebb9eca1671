//! Reconnect delays: exponential, capped, jittered, reset only after a stable uptime.

use std::time::Duration;

/// How a delay is randomised, so many clients dropped together do not return together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// Uniform in `[0, delay]` (AWS's "full jitter": the best spread).
    #[default]
    Full,
    /// Uniform in `[delay/2, delay]`: spread, but never much shorter than the nominal delay.
    Equal,
    /// Exactly the nominal delay.
    None,
}

/// Reconnect backoff settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The nominal delay before the first retry.
    pub initial: Duration,
    /// The largest nominal delay.
    pub max: Duration,
    /// Growth per attempt.
    pub factor: f64,
    /// Randomisation.
    pub jitter: Jitter,
    /// The attempt counter resets only after a socket stayed open this long, so a server that
    /// accepts and drops at once cannot cause a reconnect storm.
    pub reset_after: Duration,
    /// Give up after this many consecutive failed attempts; 0 retries forever.
    pub max_attempts: u32,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
            jitter: Jitter::Full,
            reset_after: Duration::from_secs(5),
            max_attempts: 0,
        }
    }
}

/// A source of uniform numbers in `[0, 1)`; injectable so tests are exact.
pub trait Random: Send {
    /// The next number in `[0, 1)`.
    fn next_unit(&mut self) -> f64;
}

/// A small xorshift generator: plenty for jitter, no dependency.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (0 is replaced by a fixed odd constant).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A generator seeded from the clock and a per-call counter, different for every endpoint.
    pub fn from_entropy() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self::new(nanos ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }
}

impl Random for XorShift {
    fn next_unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The backoff state of one endpoint.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Consecutive failed attempts since the last stable connection.
    attempt: u32,
}

impl Backoff {
    /// Fresh state.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Consecutive failed attempts so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A socket life ended after being open for `uptime` (`None`: it never opened). Resets
    /// the counter when the socket was stable.
    pub fn on_closed(&mut self, uptime: Option<Duration>) {
        if uptime.is_some_and(|uptime| uptime >= self.policy.reset_after) {
            self.attempt = 0;
        }
    }

    /// The nominal (un-jittered) delay before retry number `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1000) as i32;
        let factor = self.policy.factor.max(1.0);
        let secs = self.policy.initial.as_secs_f64() * factor.powi(exponent);
        let capped = secs.min(self.policy.max.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.policy.max)
    }

    /// Counts one more failed attempt and returns its delay, or `None` when `max_attempts`
    /// is used up.
    pub fn next_delay(&mut self, random: &mut dyn Random) -> Option<Duration> {
        if self.policy.max_attempts != 0 && self.attempt >= self.policy.max_attempts {
            return None;
        }
        self.attempt += 1;
        let nominal = self.nominal(self.attempt);
        // A NaN from a custom source would make `mul_f64` panic.
        let unit = match random.next_unit() {
            unit if unit.is_nan() => 0.0,
            unit => unit.clamp(0.0, 1.0),
        };
        Some(match self.policy.jitter {
            Jitter::None => nominal,
            Jitter::Full => nominal.mul_f64(unit),
            Jitter::Equal => nominal / 2 + (nominal / 2).mul_f64(unit),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Random for Fixed {
        fn next_unit(&mut self) -> f64 {
            self.0
        }
    }

    fn policy(jitter: Jitter) -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            factor: 2.0,
            jitter,
            reset_after: Duration::from_secs(5),
            max_attempts: 0,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_and_are_capped() {
        let mut backoff = Backoff::new(policy(Jitter::None));
        let delays: Vec<Duration> = (0..6)
            .map(|_| backoff.next_delay(&mut Fixed(0.5)).unwrap())
            .collect();
        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff.attempt(), 6);
    }

    #[test]
    fn jitter_modes_bound_the_delay() {
        let mut full = Backoff::new(policy(Jitter::Full));
        assert_eq!(full.next_delay(&mut Fixed(0.0)), Some(ms(0)));
        assert_eq!(full.next_delay(&mut Fixed(0.5)), Some(ms(100)));
        let mut equal = Backoff::new(policy(Jitter::Equal));
        assert_eq!(equal.next_delay(&mut Fixed(0.0)), Some(ms(50)));
        assert_eq!(equal.next_delay(&mut Fixed(0.5)), Some(ms(150)));
        let mut rng = XorShift::new(7);
        let mut spread = Backoff::new(policy(Jitter::Full));
        let samples: Vec<Duration> = (0..50)
            .map(|_| {
                let d = spread.next_delay(&mut rng).unwrap();
                spread = Backoff::new(policy(Jitter::Full));
                d
            })
            .collect();
        assert!(samples.iter().all(|d| *d <= ms(100)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 40, "jitter spreads: {distinct:?}");
    }

    #[test]
    fn resets_only_after_a_stable_uptime() {
        let mut backoff = Backoff::new(policy(Jitter::None));
        backoff.next_delay(&mut Fixed(0.0));
        backoff.next_delay(&mut Fixed(0.0));
        backoff.on_closed(Some(Duration::from_secs(1)));
        assert_eq!(backoff.attempt(), 2, "a flapping socket keeps the count");
        backoff.on_closed(None);
        assert_eq!(backoff.attempt(), 2);
        backoff.on_closed(Some(Duration::from_secs(5)));
        assert_eq!(backoff.attempt(), 0);
        assert_eq!(backoff.next_delay(&mut Fixed(0.0)), Some(ms(100)));
    }

    #[test]
    fn max_attempts_gives_up() {
        let mut backoff = Backoff::new(BackoffPolicy {
            max_attempts: 2,
            ..policy(Jitter::None)
        });
        assert!(backoff.next_delay(&mut Fixed(0.0)).is_some());
        assert!(backoff.next_delay(&mut Fixed(0.0)).is_some());
        assert_eq!(backoff.next_delay(&mut Fixed(0.0)), None);
    }

    #[test]
    fn silly_policies_do_not_panic() {
        let mut backoff = Backoff::new(BackoffPolicy {
            initial: Duration::MAX,
            max: Duration::MAX,
            factor: f64::NAN,
            ..policy(Jitter::Full)
        });
        for _ in 0..100 {
            let _ = backoff.next_delay(&mut Fixed(0.99));
        }
        struct Nan;
        impl Random for Nan {
            fn next_unit(&mut self) -> f64 {
                f64::NAN
            }
        }
        let mut backoff = Backoff::new(policy(Jitter::Full));
        assert_eq!(backoff.next_delay(&mut Nan), Some(ms(0)));
        let mut rng = XorShift::new(0);
        let unit = rng.next_unit();
        assert!((0.0..1.0).contains(&unit));
    }
}
