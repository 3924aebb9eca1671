//! What follows the end of a socket life: the supervisor's decision as plain code.
//!
//! Three counts, three jobs:
//!
//! - **Giving up** (`max_attempts`): attempts in a row that never became live. A socket that
//!   went live resets it, however short it lived: it connected, so the endpoint works.
//! - **Pacing** (the backoff delay): grows with every life shorter than `reset_after`, live or
//!   not, and resets only after a stable one, so a server that accepts and drops at once is
//!   paced like one that refuses.
//! - **Flapping** (the restart intensity): more than `max_restarts` ends within `within`
//!   fail the endpoint, whatever the ends were.
//!
//! A close that asks to come back at once (1001, 1012: [`Action::ReconnectNow`]) from a live
//! socket is honoured once, then paced like any other end until a stable life re-arms it: a
//! server restarting once is back at once, one that loops on 1012 is paced by the backoff.

use std::time::{Duration, Instant};

use wsherd_connection::EndReason;

use crate::backoff::{Backoff, BackoffPolicy, Random};
use crate::classify::{Action, ActionTable};
use crate::intensity::{IntensityWindow, RestartIntensity};
use crate::state::{FailReason, Reconnected};

/// How a socket life ended, as the policy needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifeEnd {
    /// Why it ended.
    pub reason: EndReason,
    /// How long the endpoint was live on this socket; `None` when it never became live (it
    /// never opened, or the live-after reply never came).
    pub live_for: Option<Duration>,
    /// It was closed because it never finished opening (the live-after reply did not come,
    /// or the on-open replay could not be written): a failed attempt whatever the close code
    /// says, and never live whatever `live_for` says.
    pub live_timed_out: bool,
}

impl LifeEnd {
    /// Whether the endpoint was live on this socket.
    pub fn was_live(&self) -> bool {
        self.live_for().is_some()
    }

    /// How long it was live, `None` when it never was (a live timeout included).
    fn live_for(&self) -> Option<Duration> {
        if self.live_timed_out {
            None
        } else {
            self.live_for
        }
    }
}

/// The policy's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Connect again now.
    ReconnectNow,
    /// Connect again after `delay`; the next attempt is number `attempt`.
    Backoff {
        /// Attempt number of the next try (1 after a socket that was live).
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
    /// The overrides, when there are any: three empty maps are 144 bytes an endpoint holds for
    /// its whole life, and most endpoints override nothing.
    actions: Option<Box<ActionTable>>,
    limit: RestartIntensity,
    /// Attempts in a row that never became live.
    failures: u32,
    /// The one immediate reconnect was used since the last stable life.
    quick_used: bool,
}

impl ReconnectPolicy {
    /// A fresh policy.
    pub fn new(backoff: BackoffPolicy, limit: RestartIntensity, actions: ActionTable) -> Self {
        ReconnectPolicy {
            backoff: Backoff::new(backoff),
            intensity: IntensityWindow::new(limit),
            actions: (!actions.is_empty()).then(|| Box::new(actions)),
            limit,
            failures: 0,
            quick_used: false,
        }
    }

    /// Forgets every failure (a manual reconnect starts over).
    pub fn reset(&mut self) {
        self.backoff = Backoff::new(self.backoff.policy().clone());
        self.intensity = IntensityWindow::new(self.limit);
        self.failures = 0;
        self.quick_used = false;
    }

    /// Attempts in a row that never became live, since the endpoint was last live: the
    /// current attempt is number `attempt() + 1`.
    pub fn attempt(&self) -> u32 {
        self.failures
    }

    /// The endpoint became live: the attempts that failed before no longer count.
    pub fn on_live(&mut self) {
        self.failures = 0;
    }

    /// Decides what follows `end`, at `now`.
    pub fn after_end(&mut self, end: &LifeEnd, now: Instant, random: &mut dyn Random) -> Next {
        let live_for = end.live_for();
        let action = if end.live_timed_out {
            Action::Backoff
        } else {
            crate::classify::classify(self.actions.as_deref(), &end.reason)
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
        if self.backoff.on_closed(live_for) {
            self.quick_used = false;
        }
        if live_for.is_some() {
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
        }
        // "Come back now" is honoured once from a live socket, then paced until a stable
        // life: a server that accepts and closes with 1012 in a loop is still paced.
        if action == Action::ReconnectNow && live_for.is_some() && !self.quick_used {
            self.quick_used = true;
            return Next::ReconnectNow;
        }
        let max_attempts = self.backoff.policy().max_attempts;
        if max_attempts != 0 && self.failures >= max_attempts {
            return Next::Fail(FailReason::AttemptsExhausted {
                attempts: self.failures,
                last: end.reason.clone(),
            });
        }
        Next::Backoff {
            attempt: self.failures.saturating_add(1),
            delay: self.backoff.next_delay(random),
        }
    }
}

/// When the endpoint was live: how long each socket was live, and how long it was down when
/// it comes back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Uptime {
    /// The current socket became live then.
    live_since: Option<Instant>,
    /// The previous live socket ended then.
    down_since: Option<Instant>,
}

impl Uptime {
    /// The endpoint became live at `now` on attempt number `attempt`: a reconnect when it had
    /// been live before.
    pub(crate) fn live(&mut self, now: Instant, attempt: u32) -> Option<Reconnected> {
        self.live_since = Some(now);
        self.down_since
            .take()
            .map(|down| Reconnected::new(attempt, now.saturating_duration_since(down)))
    }

    /// The socket ended at `now`: how long it had been live, `None` when it never was.
    pub(crate) fn ended(&mut self, now: Instant) -> Option<Duration> {
        let live_since = self.live_since.take()?;
        self.down_since = Some(now);
        Some(now.saturating_duration_since(live_since))
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

    /// A life that ended for `reason` after being live `live_ms` (`None`: never live).
    fn end(reason: EndReason, live_ms: Option<u64>) -> LifeEnd {
        LifeEnd {
            reason,
            live_for: live_ms.map(Duration::from_millis),
            live_timed_out: false,
        }
    }

    fn closed(code: u16) -> EndReason {
        EndReason::PeerClosed {
            code: code.into(),
            reason: String::new(),
        }
    }

    fn backoff(attempt: u32, delay_ms: u32) -> Next {
        Next::Backoff {
            attempt,
            delay: delay_ms * MS,
        }
    }

    #[test]
    fn failures_back_off_and_a_stable_life_resets() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        let next: Vec<Next> = (0..3)
            .map(|_| p.after_end(&end(EndReason::StreamEnded, None), t0, &mut AlmostOne))
            .collect();
        assert_eq!(next, [backoff(2, 100), backoff(3, 200), backoff(4, 400)]);
        assert_eq!(
            p.after_end(&end(EndReason::StreamEnded, Some(5000)), t0, &mut AlmostOne),
            backoff(1, 100),
            "a stable life: attempt 1 again, and the first delay"
        );
    }

    #[test]
    fn a_socket_that_went_live_never_counts_toward_max_attempts() {
        let t0 = Instant::now();
        let mut p = policy(2, RestartIntensity::default());
        // Streams for 200 ms (shorter than reset_after) and drops, ten times over.
        let next: Vec<Next> = (0..10)
            .map(|_| p.after_end(&end(EndReason::StreamEnded, Some(200)), t0, &mut AlmostOne))
            .collect();
        assert!(
            next.iter()
                .all(|n| matches!(n, Next::Backoff { attempt: 1, .. })),
            "{next:?}"
        );
        // ...but the pace still grows: a flapping server is not hammered.
        assert_eq!(
            next[..4],
            [
                backoff(1, 100),
                backoff(1, 200),
                backoff(1, 400),
                backoff(1, 400)
            ]
        );
        assert_eq!(p.attempt(), 0);
    }

    #[test]
    fn attempts_that_never_go_live_fail_after_exactly_max_attempts() {
        let t0 = Instant::now();
        let refused = || end(EndReason::HandshakeRejected { status: 503 }, None);
        let mut p = policy(2, RestartIntensity::default());
        assert_eq!(p.after_end(&refused(), t0, &mut AlmostOne), backoff(2, 100));
        assert_eq!(p.attempt(), 1);
        assert_eq!(
            p.after_end(&refused(), t0, &mut AlmostOne),
            Next::Fail(FailReason::AttemptsExhausted {
                attempts: 2,
                last: EndReason::HandshakeRejected { status: 503 },
            })
        );
        // A live socket between two refusals starts the count over.
        let mut p = policy(2, RestartIntensity::default());
        for _ in 0..5 {
            assert!(matches!(
                p.after_end(&refused(), t0, &mut AlmostOne),
                Next::Backoff { attempt: 2, .. }
            ));
            assert!(matches!(
                p.after_end(&end(EndReason::StreamEnded, Some(10)), t0, &mut AlmostOne),
                Next::Backoff { attempt: 1, .. }
            ));
        }
        // So does becoming live, before the socket even ends.
        p.after_end(&refused(), t0, &mut AlmostOne);
        p.on_live();
        assert_eq!(p.attempt(), 0);
    }

    #[test]
    fn going_away_from_a_live_socket_comes_back_at_once_the_first_time_then_is_paced() {
        let t0 = Instant::now();
        let mut p = policy(0, RestartIntensity::default());
        let next: Vec<Next> = (0..4)
            .map(|_| p.after_end(&end(closed(1012), Some(10)), t0, &mut AlmostOne))
            .collect();
        assert_eq!(
            next,
            [
                Next::ReconnectNow,
                backoff(1, 100),
                backoff(1, 200),
                backoff(1, 400)
            ]
        );
        // A stable life re-arms the immediate reconnect and resets the pace.
        assert_eq!(
            p.after_end(&end(closed(1001), Some(5000)), t0, &mut AlmostOne),
            Next::ReconnectNow
        );
        assert_eq!(
            p.after_end(&end(closed(1012), Some(10)), t0, &mut AlmostOne),
            backoff(1, 100)
        );
        // From a socket that never became live it is a failed attempt like any other.
        let mut p = policy(0, RestartIntensity::default());
        assert_eq!(
            p.after_end(&end(closed(1012), None), t0, &mut AlmostOne),
            backoff(2, 100)
        );
    }

    #[test]
    fn stop_codes_and_intensity_fail() {
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
        assert!(
            matches!(
                p.after_end(
                    &end(EndReason::StreamEnded, Some(5000)),
                    t0 + 2000 * MS,
                    &mut AlmostOne
                ),
                Next::Fail(FailReason::IntensityExceeded {
                    max_restarts: 2,
                    ..
                })
            ),
            "live sockets that flap are the intensity's to stop"
        );
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
            live_for: Some(Duration::from_secs(60)),
            live_timed_out: true,
        };
        assert!(!timed_out.was_live());
        assert_eq!(p.after_end(&timed_out, t0, &mut AlmostOne), backoff(2, 100));
        assert_eq!(
            p.after_end(&timed_out, t0, &mut AlmostOne),
            backoff(3, 200),
            "no reset: it never became live"
        );
    }

    #[test]
    fn uptime_measures_each_live_socket_and_the_downtime_a_reconnect_ends() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut uptime = Uptime::default();
        assert_eq!(uptime.live(t0, 1), None, "the first live is no reconnect");
        assert_eq!(uptime.ended(t0 + 2 * s), Some(2 * s));
        assert_eq!(
            uptime.ended(t0 + 3 * s),
            None,
            "a failed attempt was never live"
        );
        assert_eq!(
            uptime.live(t0 + 5 * s, 3),
            Some(Reconnected::new(3, 3 * s)),
            "down since the live socket ended, not since the failed attempt"
        );
        assert_eq!(uptime.ended(t0 + 6 * s), Some(s));
        assert_eq!(
            uptime.live(t0 + 6 * s, 1),
            Some(Reconnected::new(1, Duration::ZERO))
        );
    }
}
