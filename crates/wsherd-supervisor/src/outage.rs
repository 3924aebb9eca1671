//! The herd-wide outage mode, as plain code on explicit instants: when enough endpoints fail to
//! reach their hosts at the network level and none reaches one, the herd is offline, and only
//! one probe per host (at most every `probe_interval`) may try until one reaches its server.
//! The [`Governor`](crate::Governor) drives it; nothing here knows about actors or clocks.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use wsherd_connection::{EndReason, NetworkCause};
use wsherd_protocol::EndpointName;

/// When the herd counts as offline, and how it probes meanwhile (`[herd.outage]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutagePolicy {
    /// Whether the outage mode is on (default: on).
    pub enabled: bool,
    /// Endpoints that must fail at the network level within `window`, none reaching its server,
    /// for the herd to be offline (default 3). A herd with fewer endpoints needs all of them,
    /// but at least 2 unless this is 1: a lone endpoint is paced by its own backoff.
    pub min_endpoints: usize,
    /// How far back failures count (default 5 s).
    pub window: Duration,
    /// While offline, each host is probed at most this often (default 1 s). The first probes
    /// after the herd goes offline come sooner: an eighth of this after the failure that made
    /// it offline, then twice that, and so on up to this, so a server back after a short
    /// restart is found within a fraction of the interval while a long outage still costs one
    /// attempt per host per interval.
    pub probe_interval: Duration,
}

impl Default for OutagePolicy {
    fn default() -> Self {
        OutagePolicy {
            enabled: true,
            min_endpoints: 3,
            window: Duration::from_secs(5),
            probe_interval: Duration::from_secs(1),
        }
    }
}

impl OutagePolicy {
    /// The outage mode off: every attempt goes ahead, as without it.
    pub fn disabled() -> Self {
        OutagePolicy {
            enabled: false,
            ..OutagePolicy::default()
        }
    }
}

/// What the herd knows about the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkState {
    /// No attempt reached a server yet: at most the outage threshold of attempts are under way
    /// at once, so a herd started without a network does not send every endpoint at it.
    Unconfirmed,
    /// An attempt reached a server since the last outage: attempts go ahead.
    Online,
    /// Enough endpoints failed at the network level and none reached a server: one probe per
    /// host at a time, at most every `probe_interval`; the rest are held.
    Offline {
        /// Since when.
        since: Instant,
    },
}

impl fmt::Display for NetworkEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkEvent::Offline { failed, cause } => write!(
                f,
                "offline: {failed} endpoints could not reach their hosts ({cause})"
            ),
            NetworkEvent::Online { offline_for } => {
                write!(
                    f,
                    "online again after {}",
                    crate::human_duration(*offline_for)
                )
            }
        }
    }
}

impl fmt::Display for NetworkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkState::Unconfirmed => "unconfirmed",
            NetworkState::Online => "online",
            NetworkState::Offline { .. } => "offline",
        })
    }
}

/// How an attempt ended, as the outage mode sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A server answered (the socket opened, or an HTTP status or a certificate came back):
    /// the network works.
    Reached,
    /// The host could not be reached at all.
    NetworkFailed(NetworkCause),
    /// Neither: the attempt was abandoned, or failed before it touched the network.
    Inconclusive,
}

impl Outcome {
    /// The outcome of an attempt that ended with `reason` before it opened.
    pub fn of(reason: &EndReason) -> Self {
        if let Some(cause) = reason.network_cause() {
            Outcome::NetworkFailed(cause)
        } else if reason.server_answered() {
            Outcome::Reached
        } else {
            Outcome::Inconclusive
        }
    }
}

/// What an endpoint that asks to connect may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead (within the governor's own limits).
    Go(Attempt),
    /// Go ahead as its host's probe.
    Probe(Attempt),
    /// Wait until an attempt under way ends (the herd is unconfirmed and enough are under way).
    Wait,
    /// Held by the outage, until its host's probe is due or the herd is online again.
    Hold,
}

/// An attempt the detector let go: handed back to [`OutageDetector::ended`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// It is its host's probe.
    pub probe: bool,
}

/// The herd went offline or came back online: what the outage mode announces. A herd publishes
/// it to event subscribers (`Herd::subscribe_events`) as a `Delivery<NetworkEvent>` whose
/// endpoint is the one whose attempt decided it (the last failure, or the probe that reached
/// its server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetworkEvent {
    /// The herd went offline: `failed` endpoints failed at the network level within the
    /// window, the last with `cause`.
    Offline {
        /// Endpoints counted.
        failed: usize,
        /// The last one's cause.
        cause: NetworkCause,
    },
    /// An attempt reached its server again after `offline_for`.
    Online {
        /// How long the herd was offline.
        offline_for: Duration,
    },
}

#[derive(Debug, Clone, Copy, Default)]
struct HostProbe {
    in_flight: bool,
    last_start: Option<Instant>,
    /// The wait after `last_start` before the next probe; zero: none since the herd went
    /// offline, so the first (shortest) wait.
    gap: Duration,
}

/// The shortest wait between probes of a host, whatever the interval.
const MIN_PROBE_GAP: Duration = Duration::from_millis(10);

/// When a host's next probe may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeDue {
    /// Now.
    Now,
    /// At this instant.
    At(Instant),
    /// When the probe under way ends.
    AfterCurrent,
}

/// Follows the outcomes of a herd's attempts and decides which may go while the network is
/// gone. Told of every attempt that asks ([`OutageDetector::admit`]) and how each ended
/// ([`OutageDetector::ended`]).
#[derive(Debug, Clone)]
pub struct OutageDetector {
    policy: OutagePolicy,
    state: NetworkState,
    known: HashSet<EndpointName>,
    /// Network-level failures since the last attempt that reached a server, by endpoint.
    failed: HashMap<EndpointName, Instant>,
    hosts: HashMap<String, HostProbe>,
    in_flight: usize,
}

impl OutageDetector {
    /// A detector for a herd that has not connected yet.
    pub fn new(policy: OutagePolicy) -> Self {
        OutageDetector {
            policy,
            state: if policy.enabled {
                NetworkState::Unconfirmed
            } else {
                NetworkState::Online
            },
            known: HashSet::new(),
            failed: HashMap::new(),
            hosts: HashMap::new(),
            in_flight: 0,
        }
    }

    /// The herd's network state.
    pub fn state(&self) -> NetworkState {
        self.state
    }

    /// Whether the herd is offline.
    pub fn is_offline(&self) -> bool {
        matches!(self.state, NetworkState::Offline { .. })
    }

    /// Endpoints that must fail for the herd to be offline, given how many asked so far.
    pub fn threshold(&self) -> usize {
        let wanted = self.policy.min_endpoints.max(1);
        wanted.min(self.known.len().max(2))
    }

    /// `endpoint`, whose host is `host`, asks to start an attempt at `now`.
    pub fn admit(&mut self, endpoint: &EndpointName, host: &str, now: Instant) -> Verdict {
        if !self.policy.enabled {
            return Verdict::Go(Attempt { probe: false });
        }
        if !self.known.contains(endpoint) {
            self.known.insert(endpoint.clone());
        }
        let verdict = match self.state {
            NetworkState::Online => Verdict::Go(Attempt { probe: false }),
            NetworkState::Unconfirmed if self.in_flight < self.threshold() => {
                Verdict::Go(Attempt { probe: false })
            }
            NetworkState::Unconfirmed => Verdict::Wait,
            NetworkState::Offline { .. } => match self.probe_due(host, now) {
                ProbeDue::Now => Verdict::Probe(Attempt { probe: true }),
                ProbeDue::At(_) | ProbeDue::AfterCurrent => Verdict::Hold,
            },
        };
        if let Verdict::Go(attempt) | Verdict::Probe(attempt) = verdict {
            self.in_flight += 1;
            let next_gap = attempt.probe.then(|| {
                let gap = self
                    .hosts
                    .get(host)
                    .map_or(self.first_gap(), |p| self.gap_of(p));
                gap.saturating_mul(2).min(self.policy.probe_interval)
            });
            let probe = self.hosts.entry(host.to_owned()).or_default();
            probe.last_start = Some(now);
            probe.in_flight |= attempt.probe;
            if let Some(gap) = next_gap {
                probe.gap = gap;
            }
        }
        verdict
    }

    /// The wait before the first probe of a host after the herd went offline.
    fn first_gap(&self) -> Duration {
        (self.policy.probe_interval / 8)
            .max(MIN_PROBE_GAP)
            .min(self.policy.probe_interval)
    }

    /// The wait `probe` is at: the first one until a probe was let go since going offline.
    fn gap_of(&self, probe: &HostProbe) -> Duration {
        if probe.gap.is_zero() {
            self.first_gap()
        } else {
            probe.gap
        }
    }

    /// When `host` may be probed next.
    pub fn probe_due(&self, host: &str, now: Instant) -> ProbeDue {
        match self.hosts.get(host) {
            Some(probe) if probe.in_flight => ProbeDue::AfterCurrent,
            Some(
                probe @ HostProbe {
                    last_start: Some(last),
                    ..
                },
            ) => {
                let due = *last + self.gap_of(probe);
                if due <= now {
                    ProbeDue::Now
                } else {
                    ProbeDue::At(due)
                }
            }
            _ => ProbeDue::Now,
        }
    }

    /// The attempt `attempt` of `endpoint` to `host` ended at `now` with `outcome`.
    pub fn ended(
        &mut self,
        endpoint: &EndpointName,
        host: &str,
        attempt: Attempt,
        outcome: Outcome,
        now: Instant,
    ) -> Option<NetworkEvent> {
        if !self.policy.enabled {
            return None;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        if attempt.probe
            && let Some(probe) = self.hosts.get_mut(host)
        {
            probe.in_flight = false;
        }
        match outcome {
            Outcome::Reached => {
                self.failed.clear();
                let was = std::mem::replace(&mut self.state, NetworkState::Online);
                match was {
                    NetworkState::Offline { since } => Some(NetworkEvent::Online {
                        offline_for: now.saturating_duration_since(since),
                    }),
                    _ => None,
                }
            }
            Outcome::NetworkFailed(cause) => {
                self.failed.insert(endpoint.clone(), now);
                let window = self.policy.window;
                self.failed
                    .retain(|_, at| now.saturating_duration_since(*at) <= window);
                if !self.is_offline() && self.failed.len() >= self.threshold() {
                    self.state = NetworkState::Offline { since: now };
                    // Each outage starts probing with the shortest wait again.
                    for probe in self.hosts.values_mut() {
                        probe.gap = Duration::ZERO;
                    }
                    Some(NetworkEvent::Offline {
                        failed: self.failed.len(),
                        cause,
                    })
                } else {
                    None
                }
            }
            Outcome::Inconclusive => None,
        }
    }
}

/// The host an endpoint URL points at, as `host:port` (the scheme's port when the URL names
/// none), lower case: what one probe stands for. Never the URL's userinfo, path or query.
pub fn host_key(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let has_port = match authority.rfind(']') {
        // An IPv6 literal: a port follows the bracket.
        Some(bracket) => authority[bracket..].contains(':'),
        None => authority.contains(':'),
    };
    if has_port {
        return authority;
    }
    let port = if scheme.eq_ignore_ascii_case("wss") || scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    format!("{authority}:{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "127.0.0.1:9000";

    fn name(n: usize) -> EndpointName {
        EndpointName::new(&format!("e{n}")).unwrap()
    }

    fn refused() -> Outcome {
        Outcome::NetworkFailed(NetworkCause::Refused)
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Lets `count` endpoints ask at `at`, all at once, then ends each with `outcome`.
    fn attempts(
        detector: &mut OutageDetector,
        count: usize,
        outcome: Outcome,
        at: Instant,
    ) -> Vec<Option<NetworkEvent>> {
        let started: Vec<Attempt> = (0..count)
            .map(|n| match detector.admit(&name(n), HOST, at) {
                Verdict::Go(attempt) | Verdict::Probe(attempt) => attempt,
                other => panic!("endpoint {n} was not let go: {other:?}"),
            })
            .collect();
        started
            .into_iter()
            .enumerate()
            .map(|(n, attempt)| detector.ended(&name(n), HOST, attempt, outcome, at))
            .collect()
    }

    /// Lets `count` endpoints ask at `at` one after the other, each ending before the next.
    fn one_by_one(
        detector: &mut OutageDetector,
        count: usize,
        outcome: Outcome,
        at: Instant,
    ) -> Vec<Option<NetworkEvent>> {
        (0..count)
            .map(|n| attempts_of(detector, n, outcome, at))
            .collect()
    }

    fn attempts_of(
        detector: &mut OutageDetector,
        n: usize,
        outcome: Outcome,
        at: Instant,
    ) -> Option<NetworkEvent> {
        match detector.admit(&name(n), HOST, at) {
            Verdict::Go(attempt) | Verdict::Probe(attempt) => {
                detector.ended(&name(n), HOST, attempt, outcome, at)
            }
            other => panic!("endpoint {n} was not let go: {other:?}"),
        }
    }

    #[test]
    fn three_network_failures_without_a_connect_make_the_herd_offline() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        let changes = attempts(&mut detector, 3, refused(), t0);
        assert_eq!(changes[..2], [None, None]);
        assert_eq!(
            changes[2],
            Some(NetworkEvent::Offline {
                failed: 3,
                cause: NetworkCause::Refused
            })
        );
        assert!(detector.is_offline());
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, Outcome::Inconclusive, t0);
        attempts(&mut detector, 2, refused(), t0);
        let later = t0 + secs(6.0);
        let verdict = detector.admit(&name(2), HOST, later);
        let Verdict::Go(attempt) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(
            detector.ended(&name(2), HOST, attempt, refused(), later),
            None
        );
        assert!(!detector.is_offline());
    }

    #[test]
    fn a_connect_in_between_starts_the_count_again() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, Outcome::Inconclusive, t0);
        attempts(&mut detector, 2, refused(), t0);
        attempts_of(&mut detector, 7, Outcome::Reached, t0);
        let changes = one_by_one(&mut detector, 2, refused(), t0);
        assert_eq!(changes, [None, None]);
        assert_eq!(detector.state(), NetworkState::Online);
    }

    #[test]
    fn an_http_status_or_a_certificate_is_an_answer_not_an_outage() {
        for reason in [
            EndReason::HandshakeRejected { status: 403 },
            EndReason::Tls {
                reason: "invalid peer certificate: UnknownIssuer".into(),
            },
        ] {
            assert_eq!(Outcome::of(&reason), Outcome::Reached, "{reason}");
        }
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        let rejected = Outcome::of(&EndReason::HandshakeRejected { status: 403 });
        assert!(
            one_by_one(&mut detector, 10, rejected, t0)
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(detector.state(), NetworkState::Online);
    }

    #[test]
    fn a_dropped_live_socket_or_a_missing_file_is_no_network_failure() {
        assert_eq!(Outcome::of(&EndReason::StreamEnded), Outcome::Reached);
        assert_eq!(
            Outcome::of(&EndReason::SecretUnavailable { reason: "x".into() }),
            Outcome::Inconclusive
        );
        assert_eq!(
            Outcome::of(&EndReason::ConnectFailed {
                reason: "x".into(),
                cause: None
            }),
            Outcome::Inconclusive
        );
        assert_eq!(
            Outcome::of(&EndReason::HandshakeTimeout {
                after: secs(1.0),
                stage: wsherd_connection::ConnectStage::Tcp,
            }),
            Outcome::NetworkFailed(NetworkCause::Timeout)
        );
    }

    #[test]
    fn an_unconfirmed_herd_lets_only_the_threshold_go_at_once() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        let verdicts: Vec<Verdict> = (0..5).map(|n| detector.admit(&name(n), HOST, t0)).collect();
        assert!(matches!(verdicts[2], Verdict::Go(_)), "{verdicts:?}");
        assert_eq!(verdicts[3..], [Verdict::Wait, Verdict::Wait]);
    }

    #[test]
    fn an_offline_herd_probes_each_host_one_at_a_time_and_holds_the_rest() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, refused(), t0);
        assert_eq!(
            detector.admit(&name(3), HOST, t0 + secs(0.05)),
            Verdict::Hold
        );
        // The first probe comes an eighth of the interval after the failure.
        assert_eq!(
            detector.probe_due(HOST, t0 + secs(0.05)),
            ProbeDue::At(t0 + secs(0.125))
        );
        let probe = detector.admit(&name(4), HOST, t0 + secs(0.125));
        assert_eq!(probe, Verdict::Probe(Attempt { probe: true }));
        // Another host has its own probe.
        assert!(matches!(
            detector.admit(&name(5), "other:80", t0 + secs(0.125)),
            Verdict::Probe(_)
        ));
        assert_eq!(
            detector.admit(&name(6), HOST, t0 + secs(5.0)),
            Verdict::Hold
        );
        assert_eq!(
            detector.probe_due(HOST, t0 + secs(5.0)),
            ProbeDue::AfterCurrent
        );
        let Verdict::Probe(attempt) = probe else {
            unreachable!()
        };
        detector.ended(&name(4), HOST, attempt, refused(), t0 + secs(0.2));
        assert_eq!(detector.probe_due(HOST, t0 + secs(0.5)), ProbeDue::Now);
    }

    #[test]
    fn probes_start_at_an_eighth_of_the_interval_and_double_up_to_it() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, refused(), t0);
        let mut starts = Vec::new();
        let mut at = t0;
        for n in 0..7 {
            let ProbeDue::At(due) = detector.probe_due(HOST, at) else {
                panic!("probe {n} is not scheduled")
            };
            at = due;
            let Verdict::Probe(attempt) = detector.admit(&name(10 + n), HOST, at) else {
                panic!("probe {n} was not let go at its time")
            };
            detector.ended(&name(10 + n), HOST, attempt, refused(), at);
            starts.push(at.duration_since(t0).as_secs_f64());
        }
        assert_eq!(starts, [0.125, 0.375, 0.875, 1.875, 2.875, 3.875, 4.875]);
    }

    #[test]
    fn a_new_outage_starts_probing_with_the_shortest_wait_again() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, refused(), t0);
        for (n, at) in [(10, 0.125), (11, 0.375), (12, 0.875)] {
            let Verdict::Probe(attempt) = detector.admit(&name(n), HOST, t0 + secs(at)) else {
                panic!("no probe at {at}")
            };
            detector.ended(&name(n), HOST, attempt, refused(), t0 + secs(at));
        }
        let Verdict::Probe(attempt) = detector.admit(&name(13), HOST, t0 + secs(1.875)) else {
            panic!("no probe")
        };
        detector.ended(&name(13), HOST, attempt, Outcome::Reached, t0 + secs(1.9));
        let t1 = t0 + secs(10.0);
        attempts(&mut detector, 3, refused(), t1);
        assert!(detector.is_offline());
        assert_eq!(detector.probe_due(HOST, t1), ProbeDue::At(t1 + secs(0.125)));
    }

    #[test]
    fn the_first_probe_that_reaches_its_server_brings_the_herd_online() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        attempts(&mut detector, 3, refused(), t0);
        let at = t0 + secs(2.0);
        let Verdict::Probe(attempt) = detector.admit(&name(9), HOST, at) else {
            panic!("no probe")
        };
        assert_eq!(
            detector.ended(&name(9), HOST, attempt, Outcome::Reached, at),
            Some(NetworkEvent::Online {
                offline_for: secs(2.0)
            })
        );
        assert!(matches!(detector.admit(&name(1), HOST, at), Verdict::Go(_)));
    }

    #[test]
    fn a_lone_endpoint_never_makes_a_herd_offline() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        for n in 0..10 {
            let at = t0 + secs(n as f64 * 0.1);
            let Verdict::Go(attempt) = detector.admit(&name(0), HOST, at) else {
                panic!("held")
            };
            assert_eq!(detector.ended(&name(0), HOST, attempt, refused(), at), None);
        }
    }

    #[test]
    fn two_endpoints_are_all_of_a_small_herd() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::default());
        let changes = attempts(&mut detector, 2, refused(), t0);
        assert!(matches!(
            changes[1],
            Some(NetworkEvent::Offline { failed: 2, .. })
        ));
    }

    #[test]
    fn a_disabled_policy_lets_everything_go() {
        let t0 = Instant::now();
        let mut detector = OutageDetector::new(OutagePolicy::disabled());
        assert!(
            attempts(&mut detector, 50, refused(), t0)
                .iter()
                .all(Option::is_none)
        );
        assert_eq!(detector.state(), NetworkState::Online);
    }

    #[test]
    fn a_host_key_is_host_and_port_without_credentials_or_query() {
        assert_eq!(host_key("ws://127.0.0.1:9000/a?token=x"), "127.0.0.1:9000");
        assert_eq!(
            host_key("wss://user:pw@Example.COM/feed"),
            "example.com:443"
        );
        assert_eq!(host_key("ws://example.com?k=v"), "example.com:80");
        assert_eq!(host_key("ws://[::1]/x"), "[::1]:80");
        assert_eq!(host_key("ws://[::1]:81/x"), "[::1]:81");
    }
}
