//! What `Herd::status` reports.

use std::time::Duration;

use wsherd_connection::{EndReason, StatsSnapshot};
use wsherd_protocol::EndpointName;
use wsherd_supervisor::EndpointState;

/// One endpoint at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub name: EndpointName,
    /// Its URL.
    pub url: String,
    /// Its state.
    pub state: EndpointState,
    /// How long it has been in that state.
    pub time_in_state: Duration,
    /// Consecutive failed attempts since the last stable connection.
    pub attempt: u32,
    /// Why its last socket life ended.
    pub last_error: Option<EndReason>,
    /// The last heartbeat round trip.
    pub rtt: Option<Duration>,
    /// Messages waiting in its outbound queue.
    pub queue_depth: usize,
    /// Their payload bytes.
    pub queue_bytes: usize,
    /// Socket lives started after the first.
    pub reconnects: u64,
    /// Queued messages dropped by `drop_oldest`.
    pub queue_dropped: u64,
    /// Queued messages dropped by the TTL.
    pub queue_expired: u64,
    /// Messages refused because the queue was full.
    pub queue_rejected: u64,
    /// Message, byte, delivery and decode counters.
    pub stats: StatsSnapshot,
}
