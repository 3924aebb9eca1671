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
    /// `max_attempts` consecutive attempts failed.
    AttemptsExhausted {
        /// Attempts made.
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
/// or `Stopped`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndpointState {
    /// Waiting for a handshake slot, or in the handshake.
    Connecting {
        /// Attempt number since the last stable connection (1 for a first try).
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
    /// Paused by the owner: no socket until resumed.
    Paused,
    /// Given up; will not reconnect by itself (a manual reconnect still can).
    Failed {
        /// Why.
        reason: FailReason,
    },
    /// Stopped by the owner.
    Stopped,
}

impl EndpointState {
    /// A short lower-case name: `connecting`, `open`, `live`, `backoff`, `paused`, `failed`,
    /// `stopped`.
    pub fn name(&self) -> &'static str {
        match self {
            EndpointState::Connecting { .. } => "connecting",
            EndpointState::Open => "open",
            EndpointState::Live => "live",
            EndpointState::Backoff { .. } => "backoff",
            EndpointState::Paused => "paused",
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
}
