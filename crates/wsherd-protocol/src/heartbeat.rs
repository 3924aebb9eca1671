//! Heartbeat policy: when to ping, and when the peer counts as dead. Plain code on explicit
//! instants, so it is tested without sockets or clocks; the connection drives it from a timer.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::KindRule;

/// Default interval between pings (python websockets' choice).
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(20);
/// Default time a ping may go unanswered.
pub const DEFAULT_PONG_TIMEOUT: Duration = Duration::from_secs(20);

/// How to recognise the reply to an application ping (or a subscription acknowledgement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyMatcher {
    /// A JSON message of this kind (by the endpoint's kind rule).
    Kind(String),
    /// A text message exactly equal to this.
    Text(String),
}

impl ReplyMatcher {
    /// Whether `text` is the awaited reply.
    pub fn matches(&self, text: &str, rule: &KindRule) -> bool {
        match self {
            ReplyMatcher::Text(expected) => text == expected,
            ReplyMatcher::Kind(kind) => {
                matches!(rule.extract(text), Ok(Some(found)) if found == kind.as_str())
            }
        }
    }
}

/// What kind of heartbeat an endpoint uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HeartbeatMode {
    /// Protocol Pings; the peer's Pong (or any other frame) proves it alive.
    #[default]
    WsPing,
    /// A text message the server answers at the application level (for servers that ignore
    /// protocol pings): `payload` is sent, a message matching `reply` proves the peer alive.
    App {
        /// The text sent every interval.
        payload: String,
        /// How the reply is recognised.
        reply: ReplyMatcher,
    },
    /// No pings; only the idle watchdog, if set.
    Off,
}

/// Heartbeat settings of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSpec {
    /// Ping kind.
    pub mode: HeartbeatMode,
    /// Time between pings.
    pub interval: Duration,
    /// Time a ping may go unanswered before the peer is dead.
    pub timeout: Duration,
    /// No inbound data message for this long means the feed is stuck: reconnect. `None`: off.
    pub idle_timeout: Option<Duration>,
}

impl HeartbeatSpec {
    /// A checked spec with no idle watchdog: `interval` and `timeout` must each be at least
    /// [`MIN_HEARTBEAT_DURATION`].
    pub fn new(
        mode: HeartbeatMode,
        interval: Duration,
        timeout: Duration,
    ) -> Result<Self, InvalidHeartbeat> {
        let spec = HeartbeatSpec {
            mode,
            interval,
            timeout,
            idle_timeout: None,
        };
        spec.validate().map(|()| spec)
    }

    /// Sets the idle watchdog; it must be at least [`MIN_HEARTBEAT_DURATION`].
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Result<Self, InvalidHeartbeat> {
        self.idle_timeout = Some(idle_timeout);
        self.validate().map(|()| self)
    }

    /// Checks that every duration in use is at least [`MIN_HEARTBEAT_DURATION`]: the fields are
    /// public, so a spec built by hand is checked here (a herd checks every endpoint it adds).
    /// `interval` and `timeout` are not used, so not checked, with [`HeartbeatMode::Off`].
    pub fn validate(&self) -> Result<(), InvalidHeartbeat> {
        let pinging = self.mode != HeartbeatMode::Off;
        let durations = [
            ("interval", pinging.then_some(self.interval)),
            ("timeout", pinging.then_some(self.timeout)),
            ("idle_timeout", self.idle_timeout),
        ];
        match durations.into_iter().find_map(|(field, value)| {
            value
                .filter(|value| *value < MIN_HEARTBEAT_DURATION)
                .map(|value| InvalidHeartbeat { field, value })
        }) {
            Some(invalid) => Err(invalid),
            None => Ok(()),
        }
    }
}

/// A heartbeat duration too short to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "heartbeat {field} of {value:?} is shorter than the minimum of {min:?}: a timer that fires \
     that often keeps the connection busy doing nothing else",
    min = MIN_HEARTBEAT_DURATION
)]
pub struct InvalidHeartbeat {
    /// The field: `interval`, `timeout` or `idle_timeout`.
    pub field: &'static str,
    /// Its value.
    pub value: Duration,
}

impl Default for HeartbeatSpec {
    fn default() -> Self {
        HeartbeatSpec {
            mode: HeartbeatMode::WsPing,
            interval: DEFAULT_PING_INTERVAL,
            timeout: DEFAULT_PONG_TIMEOUT,
            idle_timeout: None,
        }
    }
}

/// The longest interval, timeout or idle timeout the heartbeat uses: a configured "100000d"
/// is cut to this, so instants never overflow.
pub const MAX_HEARTBEAT_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// The shortest interval, timeout or idle timeout accepted. Shorter ones are refused by
/// [`HeartbeatSpec::validate`] and by the configuration, and raised to this by
/// [`Heartbeat::new`]: a zero interval would re-arm the timer at once, forever.
pub const MIN_HEARTBEAT_DURATION: Duration = Duration::from_millis(10);

/// The least delay [`Heartbeat::poll`] asks for: the timer never re-arms at zero delay, even
/// when a deadline is due right now.
const MIN_WAKE: Duration = Duration::from_millis(1);

/// What the connection must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeartbeatAction {
    /// Send a protocol Ping with this payload.
    Ping(Bytes),
    /// Send this application ping text.
    AppPing(String),
    /// The peer is dead: drop the connection.
    Dead(DeadPeer),
}

/// Why the heartbeat gave up on the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadPeer {
    /// Nothing at all arrived within `timeout` of a ping.
    NoReply {
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// No data message for the idle timeout.
    Idle {
        /// The idle timeout that ran out.
        idle_timeout: Duration,
    },
}

impl std::fmt::Display for DeadPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeadPeer::NoReply { timeout } => write!(f, "no reply to a ping within {timeout:?}"),
            DeadPeer::Idle { idle_timeout } => write!(f, "no data for {idle_timeout:?}"),
        }
    }
}

/// The heartbeat of one socket life.
///
/// A ping is answered by its Pong (or the app reply), which also measures the round trip. Any
/// other frame that arrives while a ping is outstanding also proves the peer alive: under heavy
/// load a Pong can sit behind megabytes of data, and a peer that is sending is not half-open.
#[derive(Debug)]
pub struct Heartbeat {
    spec: HeartbeatSpec,
    next_ping: Instant,
    /// Sequence number and send time of the outstanding ping.
    outstanding: Option<(u64, Instant)>,
    sequence: u64,
    last_frame: Instant,
    last_data: Instant,
    rtt: Option<Duration>,
}

impl Heartbeat {
    /// A heartbeat for a socket that opened at `now`. Durations are brought within
    /// [`MIN_HEARTBEAT_DURATION`] and [`MAX_HEARTBEAT_DURATION`], so an unchecked spec can
    /// neither spin nor overflow an instant.
    pub fn new(mut spec: HeartbeatSpec, now: Instant) -> Self {
        let bound = |d: Duration| d.clamp(MIN_HEARTBEAT_DURATION, MAX_HEARTBEAT_DURATION);
        spec.interval = bound(spec.interval);
        spec.timeout = bound(spec.timeout);
        spec.idle_timeout = spec.idle_timeout.map(bound);
        Heartbeat {
            next_ping: now + spec.interval,
            spec,
            outstanding: None,
            sequence: 0,
            last_frame: now,
            last_data: now,
            rtt: None,
        }
    }

    /// The settings.
    pub fn spec(&self) -> &HeartbeatSpec {
        &self.spec
    }

    /// The last measured round trip.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Whether a ping is waiting for its reply (the connection only then checks replies).
    pub fn is_waiting_for_reply(&self) -> bool {
        self.outstanding.is_some()
    }

    /// Any frame arrived.
    pub fn on_frame(&mut self, now: Instant) {
        self.last_frame = now;
    }

    /// A data message (text or binary) arrived.
    pub fn on_data(&mut self, now: Instant) {
        self.last_frame = now;
        self.last_data = now;
    }

    /// A Pong arrived; returns the round trip when it answers our outstanding ping.
    pub fn on_pong(&mut self, payload: &[u8], now: Instant) -> Option<Duration> {
        self.last_frame = now;
        match self.outstanding {
            Some((sequence, sent)) if payload == sequence.to_be_bytes() => self.answered(sent, now),
            _ => None,
        }
    }

    /// The application-level reply arrived; returns the round trip.
    pub fn on_app_reply(&mut self, now: Instant) -> Option<Duration> {
        self.last_frame = now;
        self.outstanding
            .and_then(|(_, sent)| self.answered(sent, now))
    }

    fn answered(&mut self, sent: Instant, now: Instant) -> Option<Duration> {
        self.outstanding = None;
        let rtt = now.saturating_duration_since(sent);
        self.rtt = Some(rtt);
        Some(rtt)
    }

    /// What to do at `now`, and when to ask again: always later than `now`, so a timer re-armed
    /// on it never fires back to back.
    pub fn poll(&mut self, now: Instant) -> (Option<HeartbeatAction>, Instant) {
        let (action, wake) = self.decide(now);
        (action, wake.max(now + MIN_WAKE))
    }

    fn decide(&mut self, now: Instant) -> (Option<HeartbeatAction>, Instant) {
        if let Some(idle_timeout) = self.spec.idle_timeout
            && now.saturating_duration_since(self.last_data) >= idle_timeout
        {
            return (
                Some(HeartbeatAction::Dead(DeadPeer::Idle { idle_timeout })),
                now,
            );
        }
        if let Some((_, sent)) = self.outstanding {
            if self.last_frame > sent {
                // The peer is talking: alive, even if its Pong has not come through yet.
                self.outstanding = None;
            } else if now.saturating_duration_since(sent) >= self.spec.timeout {
                let timeout = self.spec.timeout;
                return (
                    Some(HeartbeatAction::Dead(DeadPeer::NoReply { timeout })),
                    now,
                );
            }
        }
        let mut action = None;
        if self.spec.mode != HeartbeatMode::Off && now >= self.next_ping {
            self.next_ping = now + self.spec.interval;
            if self.outstanding.is_none() {
                self.sequence += 1;
                self.outstanding = Some((self.sequence, now));
                action = Some(match &self.spec.mode {
                    HeartbeatMode::App { payload, .. } => HeartbeatAction::AppPing(payload.clone()),
                    _ => {
                        HeartbeatAction::Ping(Bytes::copy_from_slice(&self.sequence.to_be_bytes()))
                    }
                });
            }
        }
        (action, self.next_wakeup(now))
    }

    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut wake = now + Duration::from_secs(3600);
        if self.spec.mode != HeartbeatMode::Off {
            wake = wake.min(self.next_ping);
        }
        if let Some((_, sent)) = self.outstanding {
            wake = wake.min(sent + self.spec.timeout);
        }
        if let Some(idle_timeout) = self.spec.idle_timeout {
            wake = wake.min(self.last_data + idle_timeout);
        }
        wake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn spec(mode: HeartbeatMode) -> HeartbeatSpec {
        HeartbeatSpec {
            mode,
            interval: 10 * S,
            timeout: 5 * S,
            idle_timeout: None,
        }
    }

    #[test]
    fn pings_every_interval_and_measures_rtt() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(spec(HeartbeatMode::WsPing), t0);
        let (action, wake) = hb.poll(t0 + 3 * S);
        assert_eq!(action, None);
        assert_eq!(wake, t0 + 10 * S);
        let (action, wake) = hb.poll(t0 + 10 * S);
        let Some(HeartbeatAction::Ping(payload)) = action else {
            panic!("{action:?}")
        };
        assert_eq!(wake, t0 + 15 * S, "the pong deadline comes first");
        assert_eq!(hb.on_pong(b"other", t0 + 11 * S), None, "not our payload");
        assert_eq!(hb.on_pong(&payload, t0 + 12 * S), Some(2 * S));
        assert_eq!(hb.rtt(), Some(2 * S));
        assert_eq!(hb.poll(t0 + 16 * S).0, None, "answered: not dead");
        assert!(matches!(
            hb.poll(t0 + 20 * S).0,
            Some(HeartbeatAction::Ping(_))
        ));
    }

    #[test]
    fn silent_peer_is_dead_after_the_timeout() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(spec(HeartbeatMode::WsPing), t0);
        assert!(matches!(
            hb.poll(t0 + 10 * S).0,
            Some(HeartbeatAction::Ping(_))
        ));
        assert_eq!(hb.poll(t0 + 14 * S).0, None);
        assert_eq!(
            hb.poll(t0 + 15 * S).0,
            Some(HeartbeatAction::Dead(DeadPeer::NoReply { timeout: 5 * S }))
        );
    }

    #[test]
    fn any_frame_after_the_ping_proves_the_peer_alive() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(spec(HeartbeatMode::WsPing), t0);
        hb.poll(t0 + 10 * S);
        hb.on_data(t0 + 11 * S);
        assert_eq!(hb.poll(t0 + 16 * S).0, None);
        assert!(!hb.is_waiting_for_reply());
    }

    #[test]
    fn app_ping_and_reply() {
        let t0 = Instant::now();
        let mode = HeartbeatMode::App {
            payload: "ping".into(),
            reply: ReplyMatcher::Text("pong".into()),
        };
        let mut hb = Heartbeat::new(spec(mode), t0);
        assert_eq!(
            hb.poll(t0 + 10 * S).0,
            Some(HeartbeatAction::AppPing("ping".into()))
        );
        assert!(hb.is_waiting_for_reply());
        assert_eq!(
            hb.on_app_reply(t0 + 10 * S + Duration::from_millis(30)),
            Some(Duration::from_millis(30))
        );
    }

    #[test]
    fn idle_watchdog_is_separate_from_pongs() {
        let t0 = Instant::now();
        let mut spec = spec(HeartbeatMode::WsPing);
        spec.idle_timeout = Some(30 * S);
        let mut hb = Heartbeat::new(spec, t0);
        for tick in [10, 20] {
            let (action, _) = hb.poll(t0 + tick * S);
            let Some(HeartbeatAction::Ping(payload)) = action else {
                panic!()
            };
            hb.on_pong(&payload, t0 + tick * S);
        }
        let (action, _) = hb.poll(t0 + 30 * S);
        assert_eq!(
            action,
            Some(HeartbeatAction::Dead(DeadPeer::Idle {
                idle_timeout: 30 * S
            }))
        );
    }

    #[test]
    fn absurd_durations_do_not_overflow() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(
            HeartbeatSpec {
                mode: HeartbeatMode::WsPing,
                interval: Duration::MAX,
                timeout: Duration::MAX,
                idle_timeout: Some(Duration::MAX),
            },
            t0,
        );
        let (action, wake) = hb.poll(t0 + S);
        assert_eq!(action, None);
        assert!(wake > t0);
    }

    #[test]
    fn a_zero_interval_never_re_arms_the_timer_at_zero_delay() {
        let t0 = Instant::now();
        let mut spec = spec(HeartbeatMode::WsPing);
        spec.interval = Duration::ZERO;
        spec.timeout = Duration::ZERO;
        let mut hb = Heartbeat::new(spec, t0);
        let mut now = t0;
        for _ in 0..100 {
            let (action, wake) = hb.poll(now);
            assert!(wake > now, "re-armed at zero delay after {action:?}");
            if let Some(HeartbeatAction::Ping(payload)) = action {
                hb.on_pong(&payload, now);
            }
            now = wake;
        }
        assert!(
            now >= t0 + 100 * MIN_HEARTBEAT_DURATION / 2,
            "{:?}",
            now - t0
        );
    }

    #[test]
    fn a_due_idle_deadline_still_wakes_later_than_now() {
        let t0 = Instant::now();
        let mut spec = spec(HeartbeatMode::Off);
        spec.idle_timeout = Some(Duration::ZERO);
        let mut hb = Heartbeat::new(spec, t0);
        let (action, wake) = hb.poll(t0);
        assert_eq!(action, None, "raised to the minimum, not due at once");
        assert!(wake > t0);
        let (action, wake) = hb.poll(t0 + MIN_HEARTBEAT_DURATION);
        assert!(matches!(action, Some(HeartbeatAction::Dead(_))));
        assert!(wake > t0 + MIN_HEARTBEAT_DURATION);
    }

    #[test]
    fn specs_with_zero_or_tiny_durations_are_refused() {
        let tiny = Duration::from_millis(1);
        let error = HeartbeatSpec::new(HeartbeatMode::WsPing, Duration::ZERO, 5 * S).unwrap_err();
        assert_eq!(error.field, "interval");
        assert!(
            error.to_string().contains("heartbeat interval of 0ns"),
            "{error}"
        );
        assert_eq!(
            HeartbeatSpec::new(HeartbeatMode::WsPing, S, tiny)
                .unwrap_err()
                .field,
            "timeout"
        );
        let spec = HeartbeatSpec::new(HeartbeatMode::WsPing, S, S).unwrap();
        assert_eq!(
            spec.clone()
                .with_idle_timeout(Duration::ZERO)
                .unwrap_err()
                .field,
            "idle_timeout"
        );
        assert!(spec.with_idle_timeout(MIN_HEARTBEAT_DURATION).is_ok());
        // Unused durations are not checked.
        assert!(HeartbeatSpec::new(HeartbeatMode::Off, Duration::ZERO, Duration::ZERO).is_ok());
        assert!(HeartbeatSpec::default().validate().is_ok());
    }

    #[test]
    fn off_mode_never_pings() {
        let t0 = Instant::now();
        let mut hb = Heartbeat::new(spec(HeartbeatMode::Off), t0);
        assert_eq!(hb.poll(t0 + 1000 * S).0, None);
    }

    #[test]
    fn reply_matchers() {
        let rule = KindRule::default();
        assert!(ReplyMatcher::Kind("pong".into()).matches(r#"{"type":"pong"}"#, &rule));
        assert!(!ReplyMatcher::Kind("pong".into()).matches(r#"{"type":"trade"}"#, &rule));
        assert!(!ReplyMatcher::Kind("pong".into()).matches("pong", &rule));
        assert!(ReplyMatcher::Text("pong".into()).matches("pong", &rule));
    }
}
