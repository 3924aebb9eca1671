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

/// Every state an endpoint can be in, by the name its `wsherd_endpoint_state` series carries.
const STATES: [&str; 7] = [
    "connecting",
    "open",
    "live",
    "backoff",
    "paused",
    "failed",
    "stopped",
];

/// One endpoint's series, registered once (at its first publication).
struct Series {
    up: Gauge,
    states: [Gauge; STATES.len()],
    messages_received: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
    dead_letters_unrouted: Counter,
    dead_letters_undecodable: Counter,
    subscriber_dropped: Counter,
    queue_depth: Gauge,
    queue_dropped: Counter,
    queue_expired: Counter,
    queue_rejected: Counter,
    last_message: Gauge,
}

impl Series {
    fn register(name: &EndpointName) -> Series {
        let endpoint = name.to_string();
        let counter =
            |metric: &'static str| metrics::counter!(metric, "endpoint" => endpoint.clone());
        let gauge = |metric: &'static str| metrics::gauge!(metric, "endpoint" => endpoint.clone());
        let labelled = |metric: &'static str, label: &'static str, value: &'static str| metrics::counter!(metric, "endpoint" => endpoint.clone(), label => value);
        Series {
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
        }
    }

    fn publish(&self, status: &EndpointStatus) {
        let stats = &status.stats;
        self.up
            .set(f64::from(u8::from(status.state == EndpointState::Live)));
        let current = status.state.name();
        for (gauge, state) in self.states.iter().zip(STATES) {
            gauge.set(f64::from(u8::from(state == current)));
        }
        self.messages_received.absolute(stats.messages_in);
        self.bytes_received.absolute(stats.bytes_in);
        self.messages_sent.absolute(stats.messages_out);
        self.bytes_sent.absolute(stats.bytes_out);
        self.dead_letters_unrouted.absolute(stats.dead_letters);
        self.dead_letters_undecodable
            .absolute(stats.decode_failures);
        self.subscriber_dropped.absolute(stats.dropped_full);
        self.queue_depth.set(status.queue_depth as f64);
        self.queue_dropped.absolute(status.queue_dropped);
        self.queue_expired.absolute(status.queue_expired);
        self.queue_rejected.absolute(status.queue_rejected);
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
    governor: Option<(Gauge, Gauge)>,
    /// The periodic publication runs.
    ticking: bool,
}

impl Publisher {
    fn publish(&mut self, statuses: &[EndpointStatus], governor: Option<&GovernorStats>) {
        if self.series.is_empty() && self.governor.is_none() {
            describe();
        }
        let mut seen = std::collections::HashSet::with_capacity(statuses.len());
        for status in statuses {
            seen.insert(&status.name);
            self.series
                .entry(status.name.clone())
                .or_insert_with(|| Series::register(&status.name))
                .publish(status);
        }
        self.series.retain(|name, series| {
            let kept = seen.contains(name);
            if !kept {
                series.retire();
            }
            kept
        });
        if let Some(stats) = governor {
            let (in_flight, waiting) = self.governor.get_or_insert_with(|| {
                (
                    metrics::gauge!("wsherd_governor_handshakes_in_flight"),
                    metrics::gauge!("wsherd_governor_waiting"),
                )
            });
            in_flight.set(stats.in_flight() as f64);
            waiting.set(stats.waiting() as f64);
        }
    }
}

/// Units and help texts, once per process is enough (a recorder keeps the first).
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("wsherd_endpoint_up", "1 while the endpoint is live, else 0");
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
}

impl Herd {
    /// Copies every endpoint's figures, and the governor's, into the installed `metrics`
    /// recorder now: `wsherd_endpoint_up`, `wsherd_endpoint_state{state}`,
    /// `wsherd_messages_received_total`, `wsherd_bytes_received_total`,
    /// `wsherd_messages_sent_total`, `wsherd_bytes_sent_total`,
    /// `wsherd_dead_letters_total{reason}`, `wsherd_outbound_queue_depth`,
    /// `wsherd_outbound_dropped_total{why}`, `wsherd_subscriber_dropped_total`,
    /// `wsherd_last_message_timestamp_seconds`, each labelled `endpoint`, and
    /// `wsherd_governor_handshakes_in_flight`, `wsherd_governor_waiting`. A scrape calls it for
    /// exact figures; [`Herd::enable_metrics`] calls it periodically. Install the recorder
    /// before the first publication: the series are registered once per endpoint.
    pub fn publish_metrics(&self) {
        let statuses = self.status();
        let governor = self.governor_stats();
        self.inner
            .metrics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .publish(&statuses, governor.as_deref());
    }

    /// Publishes the figures every `interval` (see [`Herd::publish_metrics`]) from a task on
    /// the current arbiter, for as long as the herd exists; a second call does nothing. Must be
    /// called inside a running actix system. `[herd] metrics_interval` does this for a herd
    /// from a config.
    pub fn enable_metrics(&self, interval: Duration) {
        {
            let mut publisher = self
                .inner
                .metrics
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if publisher.ticking || interval.is_zero() {
                return;
            }
            publisher.ticking = true;
        }
        let herd: Weak<Inner> = Arc::downgrade(&self.inner);
        actix::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                let Some(inner) = herd.upgrade() else {
                    return;
                };
                Herd { inner }.publish_metrics();
            }
        });
    }
}
