//! The herd's figures through the [`metrics`] facade: the application's recorder (Prometheus
//! through `wsherd-server`, or its own) gets them.
//!
//! Counters already settle per read turn into each endpoint's atomics; publishing copies them
//! into the recorder (`absolute`) every `metrics_interval` and whenever
//! [`Herd::publish_metrics`] is called (a scrape does, for exact figures), so the path of a
//! message pays nothing for metrics, recorder or not. Events that happen once per socket life
//! or per ping (reconnects by reason, handshake durations, heartbeat round trips) are recorded
//! where they happen, in the supervisor and the connection's stats.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, UNIX_EPOCH};

use metrics::{Counter, Gauge, Unit};
use wsherd_protocol::EndpointName;
use wsherd_supervisor::{EndpointState, EndpointStatus, GovernorStats};

use super::{Herd, Inner};

/// The shortest period [`Herd::enable_metrics`] publishes at (a shorter one is raised to it):
/// publishing reads every endpoint, and runs on the arbiter that also hosts the governor.
pub const MIN_METRICS_INTERVAL: Duration = Duration::from_millis(100);

/// Every state an endpoint can be in, by the name its `wsherd_endpoint_state` series carries.
const STATES: [&str; 9] = [
    "connecting",
    "open",
    "live",
    "backoff",
    "disconnected",
    "paused",
    "idle",
    "failed",
    "stopped",
];

/// A counter fed from an endpoint's running total, which starts again at zero when the
/// endpoint is restarted (a new supervisor, new counters): what came before is kept as an
/// offset, so the exported counter never goes back (a recorder's `absolute` keeps the maximum,
/// and would otherwise stand still until the new total passed the old one).
struct Monotonic {
    counter: Counter,
    offset: u64,
    last: u64,
}

impl Monotonic {
    fn new(counter: Counter) -> Self {
        Monotonic {
            counter,
            offset: 0,
            last: 0,
        }
    }

    /// `total` of the current counters; `restarted`: they are not the ones seen last time.
    fn publish(&mut self, total: u64, restarted: bool) {
        if restarted || total < self.last {
            self.offset = self.offset.saturating_add(self.last);
        }
        self.last = total;
        self.counter.absolute(self.offset.saturating_add(total));
    }
}

/// One endpoint's series, registered once (at its first publication).
struct Series {
    /// Which counters were published last (an endpoint's shared state, by address): a
    /// restarted endpoint has new ones, starting at zero.
    source: usize,
    up: Gauge,
    states: [Gauge; STATES.len()],
    messages_received: Monotonic,
    bytes_received: Monotonic,
    messages_sent: Monotonic,
    bytes_sent: Monotonic,
    dead_letters_unrouted: Monotonic,
    dead_letters_undecodable: Monotonic,
    subscriber_dropped: Monotonic,
    queue_depth: Gauge,
    queue_dropped: Monotonic,
    queue_expired: Monotonic,
    queue_rejected: Monotonic,
    last_message: Gauge,
    /// Requests and sequence numbers: registered once the endpoint has any, so a herd that
    /// uses neither exports no series for them.
    conversation: Option<Box<Conversation>>,
}

/// The series of an endpoint's requests and sequence numbers.
struct Conversation {
    in_flight: Gauge,
    /// `wsherd_requests_total{outcome}`: sent, replied, timed_out, disconnected.
    requests: [Monotonic; 4],
    unmatched: Monotonic,
    /// `wsherd_sequence_events_total{what}`: gap, duplicate, reset, unsequenced, dropped.
    sequence: [Monotonic; 5],
}

impl Conversation {
    fn register(endpoint: &str) -> Box<Conversation> {
        let labelled = |metric: &'static str, label: &'static str, value: &'static str| {
            Monotonic::new(
                metrics::counter!(metric, "endpoint" => endpoint.to_owned(), label => value),
            )
        };
        Box::new(Conversation {
            in_flight: metrics::gauge!("wsherd_requests_in_flight", "endpoint" => endpoint.to_owned()),
            requests: ["sent", "replied", "timed_out", "disconnected"]
                .map(|outcome| labelled("wsherd_requests_total", "outcome", outcome)),
            unmatched: Monotonic::new(metrics::counter!(
                "wsherd_replies_unmatched_total",
                "endpoint" => endpoint.to_owned()
            )),
            sequence: ["gap", "duplicate", "reset", "unsequenced", "dropped"]
                .map(|what| labelled("wsherd_sequence_events_total", "what", what)),
        })
    }

    fn publish(&mut self, status: &EndpointStatus, restarted: bool) {
        let r = &status.requests;
        let q = &status.sequence;
        self.in_flight.set(r.in_flight as f64);
        let requests = [r.sent, r.replied, r.timed_out, r.disconnected];
        for (counter, total) in self.requests.iter_mut().zip(requests) {
            counter.publish(total, restarted);
        }
        self.unmatched.publish(r.unmatched, restarted);
        let sequence = [q.gaps, q.duplicates, q.resets, q.unsequenced, q.dropped];
        for (counter, total) in self.sequence.iter_mut().zip(sequence) {
            counter.publish(total, restarted);
        }
    }
}

impl Series {
    fn register(name: &EndpointName) -> Series {
        let endpoint = name.to_string();
        let counter = |metric: &'static str| {
            Monotonic::new(metrics::counter!(metric, "endpoint" => endpoint.clone()))
        };
        let gauge = |metric: &'static str| metrics::gauge!(metric, "endpoint" => endpoint.clone());
        let labelled = |metric: &'static str, label: &'static str, value: &'static str| {
            Monotonic::new(
                metrics::counter!(metric, "endpoint" => endpoint.clone(), label => value),
            )
        };
        Series {
            source: 0,
            up: gauge("wsherd_endpoint_up"),
            states: STATES.map(|state| {
                metrics::gauge!("wsherd_endpoint_state", "endpoint" => endpoint.clone(), "state" => state)
            }),
            messages_received: counter("wsherd_messages_received_total"),
            bytes_received: counter("wsherd_bytes_received_total"),
            messages_sent: counter("wsherd_messages_sent_total"),
            bytes_sent: counter("wsherd_bytes_sent_total"),
            dead_letters_unrouted: labelled("wsherd_dead_letters_total", "reason", "no_subscriber"),
            dead_letters_undecodable: labelled("wsherd_dead_letters_total", "reason", "undecodable"),
            subscriber_dropped: counter("wsherd_subscriber_dropped_total"),
            queue_depth: gauge("wsherd_outbound_queue_depth"),
            queue_dropped: labelled("wsherd_outbound_dropped_total", "why", "overflow"),
            queue_expired: labelled("wsherd_outbound_dropped_total", "why", "expired"),
            queue_rejected: labelled("wsherd_outbound_dropped_total", "why", "rejected"),
            last_message: gauge("wsherd_last_message_timestamp_seconds"),
            conversation: None,
        }
    }

    fn publish(&mut self, status: &EndpointStatus, source: usize) {
        let restarted = self.source != 0 && self.source != source;
        self.source = source;
        let stats = &status.stats;
        self.up
            .set(f64::from(u8::from(status.state == EndpointState::Live)));
        let current = status.state.name();
        for (gauge, state) in self.states.iter().zip(STATES) {
            gauge.set(f64::from(u8::from(state == current)));
        }
        let totals = [
            (&mut self.messages_received, stats.messages_in),
            (&mut self.bytes_received, stats.bytes_in),
            (&mut self.messages_sent, stats.messages_out),
            (&mut self.bytes_sent, stats.bytes_out),
            (&mut self.dead_letters_unrouted, stats.dead_letters),
            (&mut self.dead_letters_undecodable, stats.decode_failures),
            (&mut self.subscriber_dropped, stats.dropped_full),
            (&mut self.queue_dropped, status.queue_dropped),
            (&mut self.queue_expired, status.queue_expired),
            (&mut self.queue_rejected, status.queue_rejected),
        ];
        for (counter, total) in totals {
            counter.publish(total, restarted);
        }
        self.queue_depth.set(status.queue_depth as f64);
        let used = status.requests.sent > 0 || status.sequence != Default::default();
        if self.conversation.is_none() && used {
            self.conversation = Some(Conversation::register(status.name.as_str()));
        }
        if let Some(conversation) = &mut self.conversation {
            conversation.publish(status, restarted);
        }
        if let Some(at) = stats.last_message_at {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_message.set(seconds);
        }
    }

    /// A removed endpoint is down, and in no state.
    fn retire(&self) {
        self.up.set(0.0);
        for gauge in &self.states {
            gauge.set(0.0);
        }
        self.queue_depth.set(0.0);
    }
}

/// The series published so far, by endpoint, and the herd-wide ones.
#[derive(Default)]
pub(super) struct Publisher {
    series: HashMap<EndpointName, Series>,
    /// Inbound endpoints' series, summed over their sessions.
    inbound: HashMap<EndpointName, InboundSeries>,
    governor: Option<[Gauge; 4]>,
    described: bool,
    /// The periodic publication runs.
    ticking: bool,
}

/// One inbound endpoint's sessions, summed: how many are in each state, and their counters
/// (those of ended sessions included).
struct InboundFigures {
    name: EndpointName,
    states: [usize; STATES.len()],
    totals: super::sessions::Totals,
}

/// One inbound endpoint's series: `wsherd_inbound_sessions{state}` and its sessions' counters.
struct InboundSeries {
    states: [Gauge; STATES.len()],
    messages_received: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
    dead_letters: Counter,
}

impl InboundSeries {
    fn register(name: &EndpointName) -> Self {
        let endpoint = name.to_string();
        let counter =
            |metric: &'static str| metrics::counter!(metric, "endpoint" => endpoint.clone());
        InboundSeries {
            states: STATES.map(|state| {
                metrics::gauge!("wsherd_inbound_sessions", "endpoint" => endpoint.clone(), "state" => state)
            }),
            messages_received: counter("wsherd_inbound_messages_received_total"),
            bytes_received: counter("wsherd_inbound_bytes_received_total"),
            messages_sent: counter("wsherd_inbound_messages_sent_total"),
            bytes_sent: counter("wsherd_inbound_bytes_sent_total"),
            dead_letters: counter("wsherd_inbound_dead_letters_total"),
        }
    }
}

impl Publisher {
    fn publish_inbound(&mut self, figures: &[InboundFigures]) {
        for figures in figures {
            let series = self
                .inbound
                .entry(figures.name.clone())
                .or_insert_with(|| InboundSeries::register(&figures.name));
            for (gauge, count) in series.states.iter().zip(figures.states) {
                gauge.set(count as f64);
            }
            // Ended sessions' counts are kept in the totals, so these never go back.
            series
                .messages_received
                .absolute(figures.totals.messages_in);
            series.bytes_received.absolute(figures.totals.bytes_in);
            series.messages_sent.absolute(figures.totals.messages_out);
            series.bytes_sent.absolute(figures.totals.bytes_out);
            series.dead_letters.absolute(figures.totals.dead_letters);
        }
    }

    fn publish(&mut self, endpoints: &[(EndpointStatus, usize)], governor: Option<&GovernorStats>) {
        if !self.described {
            describe();
            self.described = true;
        }
        let mut seen = std::collections::HashSet::with_capacity(endpoints.len());
        for (status, source) in endpoints {
            seen.insert(&status.name);
            self.series
                .entry(status.name.clone())
                .or_insert_with(|| Series::register(&status.name))
                .publish(status, *source);
        }
        // A removed endpoint's series stay (retired): one added again under the same name
        // carries its counters on from where they were.
        for (name, series) in self.series.iter_mut() {
            if !seen.contains(name) && series.source != 0 {
                series.retire();
                series.source = usize::MAX;
            }
        }
        if let Some(stats) = governor {
            let [in_flight, waiting, offline, held] = self.governor.get_or_insert_with(|| {
                [
                    metrics::gauge!("wsherd_governor_handshakes_in_flight"),
                    metrics::gauge!("wsherd_governor_waiting"),
                    metrics::gauge!("wsherd_herd_offline"),
                    metrics::gauge!("wsherd_herd_held_endpoints"),
                ]
            });
            in_flight.set(stats.in_flight() as f64);
            waiting.set(stats.waiting() as f64);
            offline.set(if stats.offline() { 1.0 } else { 0.0 });
            held.set(stats.held() as f64);
        }
    }
}

/// Units and help texts, once per process is enough (a recorder keeps the first).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "wsherd_inbound_sessions",
        Unit::Count,
        "an inbound endpoint's sessions in each state"
    );
    describe_counter!(
        "wsherd_inbound_messages_received_total",
        Unit::Count,
        "whole messages an inbound endpoint's sessions received"
    );
    describe_counter!(
        "wsherd_inbound_bytes_received_total",
        Unit::Bytes,
        "payload bytes an inbound endpoint's sessions received"
    );
    describe_counter!(
        "wsherd_inbound_messages_sent_total",
        Unit::Count,
        "messages an inbound endpoint's sessions wrote"
    );
    describe_counter!(
        "wsherd_inbound_bytes_sent_total",
        Unit::Bytes,
        "payload bytes an inbound endpoint's sessions wrote"
    );
    describe_counter!(
        "wsherd_inbound_dead_letters_total",
        Unit::Count,
        "an inbound endpoint's sessions' messages no subscriber took"
    );
    describe_counter!(
        "wsherd_inbound_refused_total",
        Unit::Count,
        "clients an inbound endpoint turned away, by reason"
    );
    describe_counter!(
        "wsherd_session_unsent_total",
        Unit::Count,
        "messages dropped when a session's resume window passed"
    );
    describe_gauge!("wsherd_endpoint_up", "1 while the endpoint is live, else 0");
    describe_gauge!(
        "wsherd_requests_in_flight",
        Unit::Count,
        "requests waiting for their replies"
    );
    describe_counter!(
        "wsherd_requests_total",
        Unit::Count,
        "requests by outcome: sent, replied, timed_out, disconnected"
    );
    describe_counter!(
        "wsherd_replies_unmatched_total",
        Unit::Count,
        "messages with an id, seen while requests waited, that answered none"
    );
    describe_counter!(
        "wsherd_sequence_events_total",
        Unit::Count,
        "sequence numbers by what they said: gap, duplicate, reset, unsequenced, dropped"
    );
    describe_gauge!(
        "wsherd_endpoint_state",
        "1 for the endpoint's current state"
    );
    describe_counter!(
        "wsherd_messages_received_total",
        Unit::Count,
        "whole messages received"
    );
    describe_counter!(
        "wsherd_bytes_received_total",
        Unit::Bytes,
        "payload bytes received"
    );
    describe_counter!(
        "wsherd_messages_sent_total",
        Unit::Count,
        "messages written to the socket"
    );
    describe_counter!(
        "wsherd_bytes_sent_total",
        Unit::Bytes,
        "payload bytes written"
    );
    describe_counter!(
        "wsherd_dead_letters_total",
        Unit::Count,
        "messages nobody took, by reason"
    );
    describe_counter!(
        "wsherd_reconnects_total",
        Unit::Count,
        "reconnects, by the class of the end before"
    );
    describe_gauge!(
        "wsherd_outbound_queue_depth",
        Unit::Count,
        "messages waiting for the endpoint to be live"
    );
    describe_counter!(
        "wsherd_outbound_dropped_total",
        Unit::Count,
        "queued messages not sent, by why"
    );
    describe_counter!(
        "wsherd_subscriber_dropped_total",
        Unit::Count,
        "deliveries dropped for a full Overflow::Drop subscriber"
    );
    describe_histogram!(
        "wsherd_heartbeat_rtt_seconds",
        Unit::Seconds,
        "heartbeat round trips"
    );
    describe_histogram!(
        "wsherd_handshake_duration_seconds",
        Unit::Seconds,
        "TCP connect, TLS and upgrade"
    );
    describe_gauge!(
        "wsherd_last_message_timestamp_seconds",
        Unit::Seconds,
        "Unix time of the last message received"
    );
    describe_gauge!(
        "wsherd_governor_handshakes_in_flight",
        Unit::Count,
        "handshakes in flight across the herd"
    );
    describe_gauge!(
        "wsherd_governor_waiting",
        Unit::Count,
        "attempts waiting for a handshake slot"
    );
    describe_gauge!(
        "wsherd_herd_offline",
        "1 while the herd's outage mode holds it offline (one probe per host), else 0"
    );
    describe_gauge!(
        "wsherd_herd_held_endpoints",
        Unit::Count,
        "attempts held by the outage mode"
    );
}

impl Herd {
    /// Copies every endpoint's figures, and the governor's, into the installed `metrics`
    /// recorder now: `wsherd_endpoint_up`, `wsherd_endpoint_state{state}`,
    /// `wsherd_messages_received_total`, `wsherd_bytes_received_total`,
    /// `wsherd_messages_sent_total`, `wsherd_bytes_sent_total`,
    /// `wsherd_dead_letters_total{reason}`, `wsherd_outbound_queue_depth`,
    /// `wsherd_outbound_dropped_total{why}`, `wsherd_subscriber_dropped_total`,
    /// `wsherd_last_message_timestamp_seconds`, each labelled `endpoint`, and
    /// `wsherd_governor_handshakes_in_flight`, `wsherd_governor_waiting`, `wsherd_herd_offline`,
    /// `wsherd_herd_held_endpoints`. A scrape calls it for
    /// exact figures; [`Herd::enable_metrics`] calls it periodically. Install the recorder
    /// before the herd is made: each endpoint's series are registered once, at its first
    /// publication. A restarted endpoint's counters carry on from where they were.
    pub fn publish_metrics(&self) {
        let inbound = self.inbound_endpoints();
        let mut sessions: Vec<InboundFigures> = inbound
            .iter()
            .map(|endpoint| InboundFigures {
                name: endpoint.name().clone(),
                states: [0; STATES.len()],
                totals: super::sessions::Totals::default(),
            })
            .collect();
        let endpoints: Vec<(EndpointStatus, usize)> = {
            let endpoints = self.lock();
            for (figures, endpoint) in sessions.iter_mut().zip(&inbound) {
                figures.totals = *endpoint
                    .retired
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            endpoints
                .by_name
                .values()
                .filter_map(|endpoint| {
                    let status = endpoint.shared.snapshot();
                    if status.name.session_id().is_none() {
                        let source = Arc::as_ptr(&endpoint.shared) as usize;
                        return Some((status, source));
                    }
                    // A session adds to its inbound endpoint's figures: a series per session
                    // would be a series per device.
                    if let Some(figures) = sessions
                        .iter_mut()
                        .find(|figures| figures.name.as_str() == status.name.family())
                    {
                        figures.totals.add(&status.stats);
                        if let Some(index) = STATES.iter().position(|s| *s == status.state.name())
                            && let Some(count) = figures.states.get_mut(index)
                        {
                            *count += 1;
                        }
                    }
                    None
                })
                .collect()
        };
        let governor = self.governor_stats();
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .publish(&endpoints, governor.as_deref());
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .publish_inbound(&sessions);
    }

    /// Publishes the figures every `interval` (at least [`MIN_METRICS_INTERVAL`]; see
    /// [`Herd::publish_metrics`]) from a task on the current arbiter, for as long as the herd
    /// exists, the first time one interval from now; a second call does nothing. Outside a
    /// running actix system: [`HerdError::NoSystem`](crate::HerdError::NoSystem).
    /// `[herd] metrics_interval` does this for a herd from a config.
    pub fn enable_metrics(&self, interval: Duration) -> Result<(), crate::HerdError> {
        super::in_a_system()?;
        let interval = interval.max(MIN_METRICS_INTERVAL);
        {
            let mut publisher = self
                .inner
                .metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if publisher.ticking {
                return Ok(());
            }
            publisher.ticking = true;
        }
        let herd: Weak<Inner> = Arc::downgrade(&self.inner);
        actix::spawn(async move {
            // The first publication one interval from now: a recorder installed right after
            // the herd was made is still the one the series are registered with.
            let mut ticks =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = herd.upgrade() else {
                    return;
                };
                Herd { inner }.publish_metrics();
            }
        });
        Ok(())
    }
}
