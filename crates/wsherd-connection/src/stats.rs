//! Counters a connection keeps, readable from any thread without a message.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::event::EndReason;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Not started yet.
    Idle,
    /// Handshake in progress.
    Connecting,
    /// Open: frames flow.
    Open,
    /// A Close was sent or received.
    Closing,
    /// The socket life is over.
    Closed,
}

impl Phase {
    fn from_u8(value: u8) -> Phase {
        match value {
            1 => Phase::Connecting,
            2 => Phase::Open,
            3 => Phase::Closing,
            4 => Phase::Closed,
            _ => Phase::Idle,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Phase::Idle => 0,
            Phase::Connecting => 1,
            Phase::Open => 2,
            Phase::Closing => 3,
            Phase::Closed => 4,
        }
    }
}

/// Monotonic counters of one endpoint; shared by every socket life of that endpoint.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_flushed: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped_full: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
    pub(crate) pings_answered: AtomicU64,
    pub(crate) pongs_skipped: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) pongs_received: AtomicU64,
    pub(crate) opens: AtomicU64,
    rtt_micros: AtomicU64,
    /// Wall-clock time of the last turn that brought a message, in ms since the Unix epoch.
    last_message_unix_ms: AtomicU64,
    /// The endpoint these count for, once known: the label of the heartbeat RTT histogram.
    endpoint: std::sync::OnceLock<wsherd_protocol::EndpointName>,
    phase: AtomicU8,
    last_end: Mutex<Option<EndReason>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Whole messages received (after reassembly).
    pub messages_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Messages accepted into the socket's write buffer (see `messages_flushed`).
    pub messages_out: u64,
    /// Payload bytes written.
    pub bytes_out: u64,
    /// Messages (caller and on-open) whose last byte the operating system took: past this
    /// point nothing in wsherd holds them, and only a reply from the peer proves they arrived.
    pub messages_flushed: u64,
    /// Deliveries to subscribers.
    pub delivered: u64,
    /// Deliveries dropped because a subscriber with `Overflow::Drop` was full.
    pub dropped_full: u64,
    /// Messages with no subscriber (the live-after acknowledgement and heartbeat replies,
    /// which wsherd consumes itself, never count).
    pub dead_letters: u64,
    /// Messages (or one type's decode of one) that failed to decode.
    pub decode_failures: u64,
    /// Server Pings answered with a Pong.
    pub pings_answered: u64,
    /// Server Pings left unanswered because the write buffer was full.
    pub pongs_skipped: u64,
    /// Frames of any type flushed to the socket.
    pub frames_out: u64,
    /// Heartbeat replies received: protocol Pongs, and the application ping's replies (an
    /// `app` heartbeat's `reply`, which is consumed, never routed).
    pub pongs_received: u64,
    /// Successful handshakes.
    pub opens: u64,
    /// The last heartbeat round trip, if one was measured.
    pub rtt: Option<std::time::Duration>,
    /// When the last message arrived (wall clock, to the millisecond; settled per read turn),
    /// if one has.
    pub last_message_at: Option<std::time::SystemTime>,
}

impl ConnectionStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StatsSnapshot {
            messages_in: read(&self.messages_in),
            bytes_in: read(&self.bytes_in),
            messages_out: read(&self.messages_out),
            bytes_out: read(&self.bytes_out),
            messages_flushed: read(&self.messages_flushed),
            delivered: read(&self.delivered),
            dropped_full: read(&self.dropped_full),
            dead_letters: read(&self.dead_letters),
            decode_failures: read(&self.decode_failures),
            pings_answered: read(&self.pings_answered),
            pongs_skipped: read(&self.pongs_skipped),
            frames_out: read(&self.frames_out),
            pongs_received: read(&self.pongs_received),
            opens: read(&self.opens),
            rtt: match read(&self.rtt_micros) {
                0 => None,
                micros => Some(std::time::Duration::from_micros(micros)),
            },
            last_message_at: match read(&self.last_message_unix_ms) {
                0 => None,
                ms => std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_millis(ms)),
            },
        }
    }

    /// The current phase of the newest socket life.
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Why the last socket life ended, if one has.
    pub fn last_end(&self) -> Option<EndReason> {
        self.last_end
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Names the endpoint these counters belong to (the first name given stays).
    pub fn set_endpoint(&self, name: wsherd_protocol::EndpointName) {
        let _ = self.endpoint.set(name);
    }

    pub(crate) fn set_rtt(&self, rtt: std::time::Duration) {
        let micros = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.rtt_micros.store(micros, Ordering::Relaxed);
        if let Some(name) = self.endpoint.get() {
            // One round trip per heartbeat interval: cheap enough to look up each time, and so
            // a recorder installed later is used from then on.
            metrics::histogram!("wsherd_heartbeat_rtt_seconds", "endpoint" => name.family().to_owned())
                .record(rtt.as_secs_f64());
        }
    }

    /// Stamps the arrival of a turn's messages.
    pub(crate) fn set_last_message_now(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            });
        self.last_message_unix_ms
            .store(now.max(1), Ordering::Relaxed);
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase.as_u8(), Ordering::Release);
    }

    pub(crate) fn set_last_end(&self, reason: EndReason) {
        *self.last_end.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
    }

    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        if amount != 0 {
            counter.fetch_add(amount, Ordering::Relaxed);
        }
    }
}

/// Deliveries relayed to a subscriber on another arbiter are counted there, when they reach
/// (or miss) its mailbox.
impl wsherd_router::RelayCounters for ConnectionStats {
    fn delivered(&self, count: u64) {
        ConnectionStats::add(&self.delivered, count);
    }

    fn dropped_full(&self, count: u64) {
        ConnectionStats::add(&self.dropped_full, count);
    }
}
