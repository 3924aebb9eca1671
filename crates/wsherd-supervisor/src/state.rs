//! An endpoint's observable state and the events that announce each change.

use std::fmt;
use std::time::Duration;

use wsherd_connection::EndReason;

/// Why an endpoint gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// The action table says this end must not be retried (401, 403, 404, 1008, a bad URL…).
    NotRetryable(EndReason),
    /// `max_attempts` attempts in a row ended without the endpoint becoming live.
    AttemptsExhausted {
        /// Attempts made since the endpoint was last live (equal to `max_attempts`).
        attempts: u32,
        /// The last attempt's end.
        last: EndReason,
    },
    /// More than `max_restarts` restarts happened within `within`.
    IntensityExceeded {
        /// The configured limit.
        max_restarts: u32,
        /// The window.
        within: Duration,
        /// The last end.
        last: EndReason,
    },
}

impl FailReason {
    /// The end of the socket life that made the endpoint give up.
    pub fn last_end(&self) -> &EndReason {
        match self {
            FailReason::NotRetryable(reason) => reason,
            FailReason::AttemptsExhausted { last, .. }
            | FailReason::IntensityExceeded { last, .. } => last,
        }
    }
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::NotRetryable(reason) => write!(f, "not retryable: {reason}"),
            FailReason::AttemptsExhausted { attempts, last } => {
                write!(f, "gave up after {attempts} attempts; last: {last}")
            }
            FailReason::IntensityExceeded {
                max_restarts,
                within,
                last,
            } => write!(
                f,
                "more than {max_restarts} restarts within {within:?}; last: {last}"
            ),
        }
    }
}

/// Where an endpoint is: `Connecting → Open → Live → Backoff → Connecting …`, until `Failed`
/// or `Stopped`; an on-demand endpoint starts, and ends each need, `Idle`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// Waiting for a handshake slot, or in the handshake.
    Connecting {
        /// Attempt number since the endpoint was last live: 1 for the first try, and for the
        /// first try after a live socket ended; each attempt that never became live adds one.
        attempt: u32,
    },
    /// The socket is open; waiting for the live-after reply.
    Open,
    /// Open and ready: on-open messages were sent (and acknowledged if asked), the queue flows.
    Live,
    /// Waiting before the next attempt.
    Backoff {
        /// The attempt that will follow.
        attempt: u32,
        /// How long until then.
        delay: Duration,
        /// Why the last socket life ended.
        reason: EndReason,
    },
    /// An inbound session whose client went away: it waits for the same id to connect
    /// again within the resume window, queueing what is sent to it meanwhile.
    Disconnected {
        /// Why the last socket life ended.
        reason: EndReason,
    },
    /// Paused by the owner: no socket until resumed.
    Paused,
    /// An on-demand endpoint nobody needs: no socket until a subscription names it or a
    /// message is sent to it.
    Idle,
    /// Given up; will not reconnect by itself (a manual reconnect still can).
    Failed {
        /// Why.
        reason: FailReason,
    },
    /// Stopped by the owner.
    Stopped,
}

impl EndpointState {
    /// A short lower-case name: `connecting`, `open`, `live`, `backoff`, `disconnected`,
    /// `paused`, `idle`, `failed`, `stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            EndpointState::Connecting { .. } => "connecting",
            EndpointState::Open => "open",
            EndpointState::Live => "live",
            EndpointState::Backoff { .. } => "backoff",
            EndpointState::Disconnected { .. } => "disconnected",
            EndpointState::Paused => "paused",
            EndpointState::Idle => "idle",
            EndpointState::Failed { .. } => "failed",
            EndpointState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for EndpointState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointState::Connecting { attempt } => write!(f, "connecting (attempt {attempt})"),
            EndpointState::Backoff {
                attempt,
                delay,
                reason,
            } => write!(
                f,
                "backoff {} ms before attempt {attempt}: {reason}",
                delay.as_millis()
            ),
            EndpointState::Failed { reason } => write!(f, "failed: {reason}"),
            EndpointState::Disconnected { reason } => write!(f, "disconnected: {reason}"),
            other => f.write_str(other.name()),
        }
    }
}

/// A state change of one endpoint, delivered as `Delivery<StateEvent>` to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateEvent {
    /// The new state.
    pub state: EndpointState,
    /// Set on a [`EndpointState::Live`] event when the endpoint had been live before: which
    /// attempt brought it back and how long it was down. `None` on the first `Live` and on
    /// every other state.
    pub reconnected: Option<Reconnected>,
    /// Set on the `Live` event that announces a planned rotation (`max_lifetime`): a new
    /// socket took over, made before the old one was closed, with no gap in between.
    pub rotated: bool,
}

impl StateEvent {
    /// An event announcing `state`.
    pub fn new(state: EndpointState) -> Self {
        StateEvent {
            state,
            reconnected: None,
            rotated: false,
        }
    }

    /// A `Live` event after a reconnect.
    pub fn reconnected(reconnected: Reconnected) -> Self {
        StateEvent {
            state: EndpointState::Live,
            reconnected: Some(reconnected),
            rotated: false,
        }
    }

    /// The `Live` event of a planned rotation.
    pub fn rotated() -> Self {
        StateEvent {
            state: EndpointState::Live,
            reconnected: None,
            rotated: true,
        }
    }
}

impl fmt::Display for StateEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.reconnected {
            Some(reconnected) => write!(f, "{} ({reconnected})", self.state),
            None if self.rotated => write!(f, "{} (rotated)", self.state),
            None => write!(f, "{}", self.state),
        }
    }
}

/// An endpoint became live again after having been live before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reconnected {
    /// The attempt that succeeded, counted as [`EndpointState::Connecting`] counts it (1: the
    /// first try after the previous live socket ended).
    pub attempt: u32,
    /// Time from the end of the previous live socket to this one becoming live.
    pub downtime: Duration,
}

impl Reconnected {
    /// Attempt `attempt` brought the endpoint back after `downtime`.
    pub fn new(attempt: u32, downtime: Duration) -> Self {
        Reconnected { attempt, downtime }
    }
}

impl fmt::Display for Reconnected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reconnected at attempt {} after {} down",
            self.attempt,
            crate::status::human_duration(self.downtime)
        )
    }
}

/// Something the outbound queue dropped, delivered as `Delivery<QueueEvent>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueEvent {
    /// Oldest messages dropped to make room (`overflow = "drop_oldest"`).
    DroppedOldest {
        /// How many.
        count: usize,
    },
    /// Messages dropped because they waited longer than the TTL.
    Expired {
        /// How many.
        count: usize,
    },
    /// Messages an inbound session never sent: its client did not come back within the
    /// resume window, and the session ended.
    Unsent {
        /// How many.
        count: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_reads_as_the_attempt_and_the_downtime() {
        let event = StateEvent::reconnected(Reconnected::new(2, Duration::from_millis(3_240)));
        assert_eq!(
            event.to_string(),
            "live (reconnected at attempt 2 after 3.2s down)"
        );
        assert_eq!(StateEvent::new(EndpointState::Live).to_string(), "live");
    }
}
