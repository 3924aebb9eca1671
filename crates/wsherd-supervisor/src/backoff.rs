//! Reconnect delays: exponential, capped, jittered, reset only after a stable uptime.
//!
//! The delay's growth is about pacing, not about giving up: it grows with every socket life
//! that ends before `reset_after` (live or not, so a server that accepts and drops at once is
//! paced like one that refuses), while `max_attempts` counts only attempts that never became
//! live ([`ReconnectPolicy`](crate::ReconnectPolicy) keeps that count).

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
    /// The delay goes back to `initial` only after a socket stayed live this long, so a server
    /// that accepts and drops at once cannot cause a reconnect storm. It also re-arms the one
    /// immediate reconnect that `1001`/`1012` (`Action::ReconnectNow`) get.
    pub reset_after: Duration,
    /// Give up (`Failed`, [`FailReason::AttemptsExhausted`](crate::FailReason)) once this many
    /// attempts in a row ended without the endpoint becoming live: refused, timed out, dropped
    /// during the handshake or before the live-after reply, or unable to take the on-open
    /// messages. An attempt that became live, however briefly, resets the count to zero, so a
    /// server that streams and drops is never given up on here (the restart intensity is the
    /// guard against flapping). `max_attempts = 3` makes at most 3 attempts in a row that
    /// fail; 0 retries forever.
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

/// The delay state of one endpoint: how far the delay has grown since the last stable life.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    /// Delays handed out since the last stable life.
    step: u32,
}

impl Backoff {
    /// Fresh state.
    pub fn new(policy: BackoffPolicy) -> Self {
        Backoff { policy, step: 0 }
    }

    /// The policy.
    pub fn policy(&self) -> &BackoffPolicy {
        &self.policy
    }

    /// Delays handed out since the last stable life: the next one is `nominal(step() + 1)`
    /// before jitter.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// Whether a socket live for `live_for` (`None`: it never became live) was stable.
    pub fn is_stable(&self, live_for: Option<Duration>) -> bool {
        live_for.is_some_and(|live_for| live_for >= self.policy.reset_after)
    }

    /// A socket life ended after being live for `live_for` (`None`: it never became live).
    /// Resets the delay when the socket was stable; returns whether it was.
    pub fn on_closed(&mut self, live_for: Option<Duration>) -> bool {
        let stable = self.is_stable(live_for);
        if stable {
            self.step = 0;
        }
        stable
    }

    /// The nominal (un-jittered) delay before retry number `attempt` (1-based).
    pub fn nominal(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(1000) as i32;
        let factor = self.policy.factor.max(1.0);
        let secs = self.policy.initial.as_secs_f64() * factor.powi(exponent);
        let capped = secs.min(self.policy.max.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.policy.max)
    }

    /// The next delay, one step longer than the last (up to `max`), jittered. Never gives up:
    /// `max_attempts` is the reconnect policy's.
    pub fn next_delay(&mut self, random: &mut dyn Random) -> Duration {
        self.step = self.step.saturating_add(1);
        let nominal = self.nominal(self.step);
        // A NaN from a custom source would make `mul_f64` panic.
        let unit = match random.next_unit() {
            unit if unit.is_nan() => 0.0,
            unit => unit.clamp(0.0, 1.0),
        };
        match self.policy.jitter {
            Jitter::None => nominal,
            Jitter::Full => nominal.mul_f64(unit),
            Jitter::Equal => nominal / 2 + (nominal / 2).mul_f64(unit),
        }
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
            .map(|_| backoff.next_delay(&mut Fixed(0.5)))
            .collect();
        assert_eq!(
            delays,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        assert_eq!(backoff.step(), 6);
    }

    #[test]
    fn jitter_modes_bound_the_delay() {
        let mut full = Backoff::new(policy(Jitter::Full));
        assert_eq!(full.next_delay(&mut Fixed(0.0)), ms(0));
        assert_eq!(full.next_delay(&mut Fixed(0.5)), ms(100));
        let mut equal = Backoff::new(policy(Jitter::Equal));
        assert_eq!(equal.next_delay(&mut Fixed(0.0)), ms(50));
        assert_eq!(equal.next_delay(&mut Fixed(0.5)), ms(150));
        let mut rng = XorShift::new(7);
        let mut spread = Backoff::new(policy(Jitter::Full));
        let samples: Vec<Duration> = (0..50)
            .map(|_| {
                let d = spread.next_delay(&mut rng);
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
        assert!(!backoff.on_closed(Some(Duration::from_secs(1))));
        assert_eq!(
            backoff.step(),
            2,
            "a flapping socket keeps the delay growing"
        );
        assert!(!backoff.on_closed(None));
        assert_eq!(backoff.step(), 2);
        assert!(backoff.on_closed(Some(Duration::from_secs(5))));
        assert_eq!(backoff.step(), 0);
        assert_eq!(backoff.next_delay(&mut Fixed(0.0)), ms(100));
    }

    #[test]
    fn the_delay_never_gives_up_by_itself_whatever_max_attempts_says() {
        let mut backoff = Backoff::new(BackoffPolicy {
            max_attempts: 2,
            ..policy(Jitter::None)
        });
        let delays: Vec<Duration> = (0..4)
            .map(|_| backoff.next_delay(&mut Fixed(0.0)))
            .collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800)]);
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
        assert_eq!(backoff.next_delay(&mut Nan), ms(0));
        let mut rng = XorShift::new(0);
        let unit = rng.next_unit();
        assert!((0.0..1.0).contains(&unit));
    }
}
