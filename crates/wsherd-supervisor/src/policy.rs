//! What follows the end of a socket life: the supervisor's decision as plain code.

use std::time::{Duration, Instant};

use wsherd_connection::EndReason;

use crate::backoff::{Backoff, BackoffPolicy, Random};
use crate::classify::{Action, ActionTable};
use crate::intensity::{IntensityWindow, RestartIntensity};
use crate::state::FailReason;

/// How a socket life ended, as the policy needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifeEnd {
    /// Why it ended.
    pub reason: EndReason,
    /// How long it was open; `None` when it never opened (or never became live in time).
    pub uptime: Option<Duration>,
    /// It was closed because it never finished opening (the live-after reply did not come,
    /// or the on-open replay could not be written): a failed attempt whatever the close code
    /// says.
    pub live_timed_out: bool,
}

/// The policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Connect again now.
    ReconnectNow,
    /// Connect again after `delay`; the next attempt is number `attempt`.
    Backoff {
        /// Attempt number of the next try.
        attempt: u32,
        /// Delay before it.
        delay: Duration,
    },
    /// Give up.
    Fail(FailReason),
}

/// Backoff, restart intensity and the action table together.
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    backoff: Backoff,
    intensity: IntensityWindow,
    actions: ActionTable,
    limit: RestartIntensity,
}

impl ReconnectPolicy {
    /// A fresh policy.
    pub fn new(backoff: BackoffPolicy, limit: RestartIntensity, actions: ActionTable) -> Self {
        ReconnectPolicy {
            backoff: Backoff::new(backoff),
            intensity: IntensityWindow::new(limit),
            actions,
            limit,
        }
    }

    /// Forgets every failure (a manual reconnect starts over).
    pub fn reset(&mut self) {
        self.backoff = Backoff::new(self.backoff.policy().clone());
        self.intensity = IntensityWindow::new(self.limit);
    }

    /// Consecutive failed attempts since the last stable connection.
    pub fn attempt(&self) -> u32 {
        self.backoff.attempt()
    }

    /// Decides what follows `end`, at `now`.
    pub fn after_end(&mut self, end: &LifeEnd, now: Instant, random: &mut dyn Random) -> Next {
        let action = if end.live_timed_out {
            Action::Backoff
        } else {
            self.actions.classify(&end.reason)
        };
        if action == Action::Stop {
            return Next::Fail(FailReason::NotRetryable(end.reason.clone()));
        }
        if self.intensity.record(now) {
            return Next::Fail(FailReason::IntensityExceeded {
                max_restarts: self.limit.max_restarts,
                within: self.limit.within,
                last: end.reason.clone(),
            });
        }
        let uptime = if end.live_timed_out { None } else { end.uptime };
        self.backoff.on_closed(uptime);
        // "Come back now" is honoured from a stable socket only: a server that accepts and
        // closes with 1012 in a loop is paced like any other failure.
        let stable = uptime.is_some_and(|up| up >= self.backoff.policy().reset_after);
        if action == Action::ReconnectNow && stable {
            return Next::ReconnectNow;
        }
        let attempts = self.backoff.attempt();
        match self.backoff.next_delay(random) {
            None => Next::Fail(FailReason::AttemptsExhausted {
                attempts,
                last: end.reason.clone(),
            }),
            Some(delay) => Next::Backoff {
                attempt: self.backoff.attempt() + 1,
                delay,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AlmostOne;
    impl Random for AlmostOne {
        fn next_unit(&mut self) -> f64 {
            0.999_999
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn policy(max_attempts: u32, limit: RestartIntensity) -> ReconnectPolicy {
        ReconnectPolicy::new(
            BackoffPolicy {
                initial: 100 * MS,
                max: 400 * MS,
                factor: 2.0,
                jitter: crate::Jitter::None,
                reset_after: 1000 * MS,
                max_attempts,
            },
            limit,
            ActionTable::default(),
        )
    }

    fn end(reason: EndReason, uptime_ms: Option<u64>) -> LifeEnd {
        LifeEnd {
            reason,
            uptime: uptime_ms.map(Duration::from_millis),
            live_timed_out: false,
        }
    }

    fn closed(code: u16) -> EndReason {
        EndReason::PeerClosed {
            code: code.into(),
            reason: String::new(),
        }
    }

    #[test]
    fn failures_back_off_and_a_stable_life_resets() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        let next: Vec<Next> = (0..3)
            .map(|_| p.after_end(&end(EndReason::StreamEnded, None), t0, &mut AlmostOne))
            .collect();
        assert_eq!(
            next,
            [
                Next::Backoff {
                    attempt: 2,
                    delay: 100 * MS
                },
                Next::Backoff {
                    attempt: 3,
                    delay: 200 * MS
                },
                Next::Backoff {
                    attempt: 4,
                    delay: 400 * MS
                },
            ]
        );
        assert_eq!(
            p.after_end(&end(EndReason::StreamEnded, Some(5000)), t0, &mut AlmostOne),
            Next::Backoff {
                attempt: 2,
                delay: 100 * MS
            }
        );
    }

    #[test]
    fn reconnect_now_only_from_a_stable_socket() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        assert_eq!(
            p.after_end(&end(closed(1012), Some(5000)), t0, &mut AlmostOne),
            Next::ReconnectNow
        );
        assert!(matches!(
            p.after_end(&end(closed(1012), Some(10)), t0, &mut AlmostOne),
            Next::Backoff { .. }
        ));
    }

    #[test]
    fn stop_codes_attempts_and_intensity_fail() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        assert_eq!(
            p.after_end(
                &end(EndReason::HandshakeRejected { status: 401 }, None),
                t0,
                &mut AlmostOne
            ),
            Next::Fail(FailReason::NotRetryable(EndReason::HandshakeRejected {
                status: 401
            }))
        );
        let mut p = policy(2, RestartIntensity::default());
        p.after_end(&end(EndReason::StreamEnded, None), t0, &mut AlmostOne);
        p.after_end(&end(EndReason::StreamEnded, None), t0, &mut AlmostOne);
        assert!(matches!(
            p.after_end(&end(EndReason::StreamEnded, None), t0, &mut AlmostOne),
            Next::Fail(FailReason::AttemptsExhausted { attempts: 2, .. })
        ));
        let limit = RestartIntensity {
            max_restarts: 2,
            within: Duration::from_secs(10),
        };
        let mut p = policy(0, limit);
        assert!(matches!(
            p.after_end(&end(EndReason::StreamEnded, Some(5000)), t0, &mut AlmostOne),
            Next::Backoff { .. }
        ));
        assert!(matches!(
            p.after_end(
                &end(EndReason::StreamEnded, Some(5000)),
                t0 + 1000 * MS,
                &mut AlmostOne
            ),
            Next::Backoff { .. }
        ));
        assert!(matches!(
            p.after_end(
                &end(EndReason::StreamEnded, Some(5000)),
                t0 + 2000 * MS,
                &mut AlmostOne
            ),
            Next::Fail(FailReason::IntensityExceeded {
                max_restarts: 2,
                ..
            })
        ));
        p.reset();
        assert!(matches!(
            p.after_end(
                &end(EndReason::StreamEnded, None),
                t0 + 3000 * MS,
                &mut AlmostOne
            ),
            Next::Backoff { attempt: 2, .. }
        ));
    }

    #[test]
    fn a_live_timeout_is_a_failed_attempt_whatever_the_close_code() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        let timed_out = LifeEnd {
            reason: closed(1001),
            uptime: Some(Duration::from_secs(60)),
            live_timed_out: true,
        };
        assert_eq!(
            p.after_end(&timed_out, t0, &mut AlmostOne),
            Next::Backoff {
                attempt: 2,
                delay: 100 * MS
            }
        );
        assert_eq!(
            p.after_end(&timed_out, t0, &mut AlmostOne),
            Next::Backoff {
                attempt: 3,
                delay: 200 * MS
            },
            "no reset: it never became live"
        );
    }
}
