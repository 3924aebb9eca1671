//! A supervised endpoint's status, readable from any thread without a message.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wsherd_connection::{ConnectionStats, EndReason, StatsSnapshot};
use wsherd_protocol::{EndpointName, redact_url};

use crate::state::EndpointState;

#[derive(Debug)]
struct Cell {
    state: EndpointState,
    since: Instant,
    attempt: u32,
    last_error: Option<EndReason>,
}

/// Counters and state of one endpoint, shared between its supervisor and whoever asks.
#[derive(Debug)]
pub struct EndpointShared {
    name: EndpointName,
    /// Already redacted: status is for showing.
    url: String,
    stats: Arc<ConnectionStats>,
    cell: Mutex<Cell>,
    pub(crate) queue_depth: AtomicUsize,
    pub(crate) queue_bytes: AtomicUsize,
    pub(crate) reconnects: AtomicU64,
    pub(crate) queue_dropped: AtomicU64,
    pub(crate) queue_expired: AtomicU64,
    pub(crate) queue_rejected: AtomicU64,
    pub(crate) events_dropped: AtomicU64,
}

/// One endpoint's status at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorStatus {
    /// The endpoint's name.
    pub name: EndpointName,
    /// Its URL, with credentials hidden ([`redact_url`]).
    pub url: String,
    /// The current state.
    pub state: EndpointState,
    /// How long it has been in that state.
    pub time_in_state: Duration,
    /// Consecutive failed attempts since the last stable connection.
    pub attempt: u32,
    /// Why the last socket life ended.
    pub last_error: Option<EndReason>,
    /// The last heartbeat round trip.
    pub rtt: Option<Duration>,
    /// Messages waiting in the outbound queue.
    pub queue_depth: usize,
    /// Their payload bytes.
    pub queue_bytes: usize,
    /// Socket lives started after the first.
    pub reconnects: u64,
    /// Queued messages dropped by `drop_oldest`.
    pub queue_dropped: u64,
    /// Queued messages dropped by the TTL.
    pub queue_expired: u64,
    /// Messages refused because the queue was full (`reject`).
    pub queue_rejected: u64,
    /// State and queue events not delivered because a full subscriber held more than
    /// `MAX_HELD_EVENTS` of them.
    pub events_dropped: u64,
    /// Connection counters (messages and bytes in and out, deliveries, decode failures …).
    pub stats: StatsSnapshot,
}

impl EndpointShared {
    /// Fresh counters for endpoint `name` at `url`, in state `Connecting { attempt: 1 }`. The
    /// status shows `url` through [`redact_url`].
    pub fn new(name: EndpointName, url: String) -> Self {
        Self::with_state(name, url, EndpointState::Connecting { attempt: 1 })
    }

    pub(crate) fn with_state(name: EndpointName, url: String, initial: EndpointState) -> Self {
        EndpointShared {
            name,
            url: redact_url(&url),
            stats: Arc::new(ConnectionStats::default()),
            cell: Mutex::new(Cell {
                state: initial,
                since: Instant::now(),
                attempt: 0,
                last_error: None,
            }),
            queue_depth: AtomicUsize::new(0),
            queue_bytes: AtomicUsize::new(0),
            reconnects: AtomicU64::new(0),
            queue_dropped: AtomicU64::new(0),
            queue_expired: AtomicU64::new(0),
            queue_rejected: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
        }
    }

    /// The connection counters, shared by every socket life.
    pub fn connection_stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// The current state.
    pub fn state(&self) -> EndpointState {
        self.lock().state.clone()
    }

    /// Everything at once.
    pub fn snapshot(&self) -> SupervisorStatus {
        let cell = self.lock();
        let stats = self.stats.snapshot();
        SupervisorStatus {
            name: self.name.clone(),
            url: self.url.clone(),
            rtt: stats.rtt,
            state: cell.state.clone(),
            time_in_state: cell.since.elapsed(),
            attempt: cell.attempt,
            last_error: cell.last_error.clone(),
            queue_depth: self.queue_depth.load(Ordering::Relaxed),
            queue_bytes: self.queue_bytes.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
            queue_dropped: self.queue_dropped.load(Ordering::Relaxed),
            queue_expired: self.queue_expired.load(Ordering::Relaxed),
            queue_rejected: self.queue_rejected.load(Ordering::Relaxed),
            events_dropped: self.events_dropped.load(Ordering::Relaxed),
            stats,
        }
    }

    pub(crate) fn set_state(&self, state: EndpointState, attempt: u32) {
        let mut cell = self.lock();
        cell.state = state;
        cell.since = Instant::now();
        cell.attempt = attempt;
    }

    pub(crate) fn set_last_error(&self, reason: EndReason) {
        self.lock().last_error = Some(reason);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cell> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_debug_show_the_url_redacted() {
        let name = EndpointName::new("feed").unwrap();
        let shared = EndpointShared::new(name, "wss://u:pw9@h/ws?listenKey=k3y9".into());
        let status = shared.snapshot();
        assert_eq!(status.url, "wss://***@h/ws?listenKey=***");
        for shown in [format!("{status:?}"), format!("{shared:?}")] {
            assert!(!shown.contains("pw9") && !shown.contains("k3y9"), "{shown}");
        }
    }
}
