//! A supervised endpoint's status, readable from any thread without a message, and printed as
//! people read it: one line per endpoint, or a table of the whole herd.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use wsherd_connection::{ConnectionStats, EndReason, StatsSnapshot};
use wsherd_protocol::{EndpointName, SequenceSpec, SequenceStats, SequenceTracker, redact_url};

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
    pub(crate) rotations: AtomicU64,
    /// Set by the governor while the herd's outage mode holds this endpoint's attempt.
    pub(crate) held_by_outage: Arc<std::sync::atomic::AtomicBool>,
    requests: Arc<crate::requests::Requests>,
    /// The sequence numbers seen, for an endpoint that checks them.
    sequences: Mutex<Option<Arc<Mutex<SequenceTracker>>>>,
}

/// One endpoint's status at one moment.
///
/// `Display` prints it on one line (see [`EndpointStatus::table`] for many):
///
/// ```text
/// feed: live for 4m12s, 0 failed attempts, 3 reconnects, rtt 12ms, queue 0, last error: closed by peer with 1012 "restart"
/// ```
///
/// Neither `Display` nor `Debug` shows a secret: the URL is redacted and the last error never
/// holds one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub name: EndpointName,
    /// Its URL, with credentials hidden ([`redact_url`]).
    pub url: String,
    /// The current state.
    pub state: EndpointState,
    /// How long it has been in that state.
    pub time_in_state: Duration,
    /// Attempts in a row that never became live, since the endpoint was last live (0 while
    /// live); `max_attempts` of them fail the endpoint.
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
    /// The herd is offline and its outage mode holds this endpoint's next attempt (while
    /// another endpoint probes its host); the state says `connecting` meanwhile.
    pub held_by_outage: bool,
    /// Requests by id: waiting, answered, timed out, disconnected, unmatched replies.
    pub requests: crate::requests::RequestStats,
    /// Sequence numbers: gaps, duplicates, resets, … (zeros for an endpoint that checks none).
    pub sequence: SequenceStats,
    /// Planned rotations done (`max_lifetime`): sockets replaced make before break.
    pub rotations: u64,
}

impl EndpointShared {
    /// The tracker of this endpoint's sequence numbers per `spec`: the one kept so far, unless
    /// it reads them elsewhere (a reload changed `field` or `scope`).
    pub fn sequences(&self, spec: &SequenceSpec) -> Arc<Mutex<SequenceTracker>> {
        let mut slot = self
            .sequences
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match &*slot {
            Some(tracker)
                if tracker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .reads_as(spec) =>
            {
                Arc::clone(tracker)
            }
            _ => {
                let tracker = Arc::new(Mutex::new(SequenceTracker::new(spec)));
                *slot = Some(Arc::clone(&tracker));
                tracker
            }
        }
    }

    fn sequence_stats(&self) -> SequenceStats {
        self.sequences
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(|tracker| tracker.lock().unwrap_or_else(PoisonError::into_inner).stats)
            .unwrap_or_default()
    }

    /// The endpoint's requests waiting for replies.
    pub fn requests(&self) -> &Arc<crate::requests::Requests> {
        &self.requests
    }

    /// Fresh counters for endpoint `name` at `url`, in state `Connecting { attempt: 1 }`. The
    /// status shows `url` through [`redact_url`].
    pub fn new(name: EndpointName, url: String) -> Self {
        Self::with_state(name, url, EndpointState::Connecting { attempt: 1 })
    }

    /// Shared state for endpoint `name` whose status starts at `initial` (a held endpoint's
    /// is `Paused` from the outset).
    pub fn with_state(name: EndpointName, url: String, initial: EndpointState) -> Self {
        let stats = ConnectionStats::default();
        stats.set_endpoint(name.clone());
        EndpointShared {
            name,
            url: redact_url(&url),
            stats: Arc::new(stats),
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
            rotations: AtomicU64::new(0),
            held_by_outage: Arc::default(),
            requests: Arc::default(),
            sequences: Mutex::new(None),
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
    pub fn snapshot(&self) -> EndpointStatus {
        let cell = self.lock();
        let stats = self.stats.snapshot();
        EndpointStatus {
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
            held_by_outage: self.held_by_outage.load(Ordering::Relaxed)
                && matches!(cell.state, EndpointState::Connecting { .. }),
            requests: self.requests.stats(),
            sequence: self.sequence_stats(),
            rotations: self.rotations.load(Ordering::Relaxed),
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

    pub(crate) fn last_error(&self) -> Option<EndReason> {
        self.lock().last_error.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cell> {
        self.cell.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EndpointStatus {
    /// A table of `statuses`, one aligned row each under a header; print it with `{}`.
    pub fn table(statuses: &[EndpointStatus]) -> StatusTable<'_> {
        StatusTable(statuses)
    }

    /// The cells of this endpoint's row, in [`COLUMNS`] order.
    fn cells(&self) -> [String; 8] {
        [
            self.name.to_string(),
            if self.held_by_outage {
                "held (offline)".to_owned()
            } else {
                self.state.name().to_owned()
            },
            human_duration(self.time_in_state),
            self.attempt.to_string(),
            self.reconnects.to_string(),
            self.rtt.map_or_else(|| "-".to_owned(), human_duration),
            self.queue_depth.to_string(),
            self.error_text().unwrap_or_else(|| "-".to_owned()),
        ]
    }

    /// What went wrong last, on one line: why a failed endpoint gave up, else the last end.
    fn error_text(&self) -> Option<String> {
        let text = match (&self.state, &self.last_error) {
            (EndpointState::Failed { reason }, _) => reason.to_string(),
            (_, Some(last)) => last.to_string(),
            (_, None) => return None,
        };
        // A peer's close reason or an OS message could hold a line break: one line it stays.
        Some(
            text.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect(),
        )
    }
}

impl fmt::Display for EndpointStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [name, state, time, _, _, rtt, _, _] = self.cells();
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{name}: {state} for {time}, {} failed attempt{}, {} reconnect{}, rtt {rtt}, queue {}, last error: {}",
            self.attempt,
            plural(u64::from(self.attempt)),
            self.reconnects,
            plural(self.reconnects),
            self.queue_depth,
            self.error_text().as_deref().unwrap_or("none"),
        )
    }
}

/// The header of a [`StatusTable`], and whether each column is right-aligned (numbers).
const COLUMNS: [(&str, bool); 8] = [
    ("ENDPOINT", false),
    ("STATE", false),
    ("FOR", true),
    ("FAILED", true),
    ("RECONNECTS", true),
    ("RTT", true),
    ("QUEUE", true),
    ("LAST ERROR", false),
];

/// Many endpoints' status as an aligned table, one row each, from [`EndpointStatus::table`]:
///
/// ```text
/// ENDPOINT  STATE      FOR  FAILED  RECONNECTS   RTT  QUEUE  LAST ERROR
/// binance   live     4m12s       0           3  12ms      0  closed by peer with 1012 "restart"
/// kraken    backoff   1.5s       2           0     -     14  handshake rejected with HTTP 503
/// ```
///
/// `FAILED` counts attempts in a row that never became live ([`EndpointStatus::attempt`]);
/// `FOR` is the time in the current state; the last column is why a failed endpoint gave up,
/// or how its last socket ended.
#[derive(Debug, Clone, Copy)]
pub struct StatusTable<'a>(pub &'a [EndpointStatus]);

impl fmt::Display for StatusTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rows: Vec<[String; 8]> = self.0.iter().map(EndpointStatus::cells).collect();
        let mut widths = COLUMNS.map(|(header, _)| header.chars().count());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let header = COLUMNS.map(|(header, _)| header.to_owned());
        for row in std::iter::once(&header).chain(&rows) {
            let last = row.len() - 1;
            for (column, cell) in row.iter().enumerate() {
                let right = COLUMNS[column].1;
                let width = widths[column];
                if column == last {
                    // Not padded: no trailing spaces.
                    write!(f, "{cell}")?;
                } else if right {
                    write!(f, "{cell:>width$}  ")?;
                } else {
                    write!(f, "{cell:<width$}  ")?;
                }
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A duration as people read it, rounded to what matters at its size: `0.4ms`, `850ms`,
/// `3.2s`, `4m12s`, `2h05m`, `3d04h` (what [`StatusTable`] and `Display` print).
pub fn human_duration(duration: Duration) -> String {
    let micros = duration.as_micros();
    if micros < 9_950 {
        // Round to a tenth of a millisecond, half up.
        let tenths = (micros + 50) / 100;
        return format!("{}.{}ms", tenths / 10, tenths % 10);
    }
    let millis = (micros + 500) / 1_000;
    if millis < 1_000 {
        return format!("{millis}ms");
    }
    let tenths = (millis + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (millis + 500) / 1_000;
    if secs < 3_600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let minutes = (secs + 30) / 60;
    if minutes < 24 * 60 {
        return format!("{}h{:02}m", minutes / 60, minutes % 60);
    }
    let hours = (minutes + 30) / 60;
    format!("{}d{:02}h", hours / 24, hours % 24)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::FailReason;

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

    fn status(name: &str, state: EndpointState) -> EndpointStatus {
        let shared = EndpointShared::new(EndpointName::new(name).unwrap(), "ws://h/".into());
        EndpointStatus {
            state,
            time_in_state: Duration::from_millis(252_400),
            ..shared.snapshot()
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_are_rounded_to_what_matters_at_their_size() {
        let cases = [
            (Duration::from_micros(420), "0.4ms"),
            (Duration::from_micros(9_949), "9.9ms"),
            (ms(12), "12ms"),
            (ms(999), "999ms"),
            (ms(3_240), "3.2s"),
            (ms(3_250), "3.3s"),
            (ms(59_960), "1m00s"),
            (ms(252_400), "4m12s"),
            (Duration::from_secs(2 * 3_600 + 5 * 60 + 10), "2h05m"),
            (Duration::from_secs(3 * 86_400 + 4 * 3_600), "3d04h"),
            (Duration::MAX, "213503982334601d07h"),
        ];
        for (duration, shown) in cases {
            assert_eq!(human_duration(duration), shown, "{duration:?}");
        }
    }

    #[test]
    fn a_status_reads_as_one_line_with_state_time_attempts_rtt_queue_and_last_error() {
        let mut live = status("feed", EndpointState::Live);
        live.reconnects = 3;
        live.rtt = Some(ms(12));
        live.last_error = Some(EndReason::PeerClosed {
            code: 1012.into(),
            reason: "restart".into(),
        });
        assert_eq!(
            live.to_string(),
            r#"feed: live for 4m12s, 0 failed attempts, 3 reconnects, rtt 12ms, queue 0, last error: closed by peer with 1012 "restart""#
        );
        let mut fresh = status("new", EndpointState::Connecting { attempt: 2 });
        fresh.attempt = 1;
        fresh.reconnects = 1;
        fresh.queue_depth = 5;
        fresh.time_in_state = ms(850);
        assert_eq!(
            fresh.to_string(),
            "new: connecting for 850ms, 1 failed attempt, 1 reconnect, rtt -, queue 5, last error: none"
        );
    }

    #[test]
    fn a_failed_status_says_why_it_gave_up_on_one_line() {
        let last = EndReason::PeerClosed {
            code: 4000.into(),
            reason: "line\nbreak".into(),
        };
        let mut failed = status(
            "feed",
            EndpointState::Failed {
                reason: FailReason::AttemptsExhausted {
                    attempts: 3,
                    last: EndReason::HandshakeRejected { status: 503 },
                },
            },
        );
        failed.attempt = 3;
        failed.last_error = Some(last);
        let shown = failed.to_string();
        assert!(
            shown.ends_with(
                "last error: gave up after 3 attempts; last: handshake rejected with HTTP 503"
            ),
            "{shown}"
        );
        let mut broken = status("feed", EndpointState::Live);
        broken.last_error = Some(EndReason::Io {
            reason: "reset\nby peer".into(),
        });
        assert!(!broken.to_string().contains('\n'), "{broken}");
        let table = EndpointStatus::table(&[broken]).to_string();
        assert_eq!(table.lines().count(), 2, "a header and one row:\n{table}");
    }

    #[test]
    fn the_table_aligns_every_column_under_its_header() {
        let mut binance = status("binance", EndpointState::Live);
        binance.reconnects = 3;
        binance.rtt = Some(ms(12));
        binance.last_error = Some(EndReason::PeerClosed {
            code: 1012.into(),
            reason: "restart".into(),
        });
        let mut kraken = status(
            "kraken",
            EndpointState::Backoff {
                attempt: 3,
                delay: ms(500),
                reason: EndReason::HandshakeRejected { status: 503 },
            },
        );
        kraken.time_in_state = ms(1_500);
        kraken.attempt = 2;
        kraken.queue_depth = 14;
        kraken.last_error = Some(EndReason::HandshakeRejected { status: 503 });
        let table = EndpointStatus::table(&[binance, kraken]).to_string();
        let expected = [
            "ENDPOINT  STATE      FOR  FAILED  RECONNECTS   RTT  QUEUE  LAST ERROR",
            r#"binance   live     4m12s       0           3  12ms      0  closed by peer with 1012 "restart""#,
            "kraken    backoff   1.5s       2           0     -     14  handshake rejected with HTTP 503",
        ];
        assert_eq!(table.lines().collect::<Vec<_>>(), expected, "\n{table}");
        // Every row starts each column at the same offset as the header.
        let starts = |line: &str, cell: &str| line.find(cell).unwrap();
        assert_eq!(starts(expected[1], "live"), starts(expected[0], "STATE"));
        assert_eq!(
            starts(expected[2], "handshake"),
            starts(expected[0], "LAST ERROR")
        );
        assert_eq!(EndpointStatus::table(&[]).to_string().lines().count(), 1);
    }
}
