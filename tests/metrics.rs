//! The herd's figures through the `metrics` facade, as an application's recorder sees them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{HeartbeatMode, HeartbeatSpec};
use wsherd_testkit::{Behaviour, Recorder as Recording, Step, TestServer};

/// A recorder that keeps every value, by `name{label="value",…}` with labels sorted.
#[derive(Default)]
struct Kept {
    counters: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<BTreeMap<String, Arc<Samples>>>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn render(key: &Key) -> String {
    let mut labels: Vec<String> = key
        .labels()
        .map(|l| format!("{}={:?}", l.key(), l.value()))
        .collect();
    labels.sort();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

impl Recorder for &'static Kept {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = self
            .counters
            .lock()
            .unwrap()
            .entry(render(key))
            .or_default()
            .clone();
        Counter::from_arc(cell)
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let cell = self
            .gauges
            .lock()
            .unwrap()
            .entry(render(key))
            .or_default()
            .clone();
        Gauge::from_arc(cell)
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let cell = self
            .histograms
            .lock()
            .unwrap()
            .entry(render(key))
            .or_default()
            .clone();
        Histogram::from_arc(cell)
    }
}

fn kept() -> &'static Kept {
    static KEPT: std::sync::OnceLock<&'static Kept> = std::sync::OnceLock::new();
    KEPT.get_or_init(|| {
        let kept: &'static Kept = Box::leak(Box::default());
        metrics::set_global_recorder(kept).expect("the only recorder of this test binary");
        kept
    })
}

impl Kept {
    fn counter(&self, key: &str) -> Option<u64> {
        self.counters
            .lock()
            .unwrap()
            .get(key)
            .map(|c| c.load(Ordering::Relaxed))
    }
    fn gauge(&self, key: &str) -> Option<f64> {
        self.gauges
            .lock()
            .unwrap()
            .get(key)
            .map(|g| f64::from_bits(g.load(Ordering::Relaxed)))
    }
    fn samples(&self, key: &str) -> usize {
        self.histograms
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |h| h.0.lock().unwrap().len())
    }
    fn counters_named(&self, prefix: &str) -> Vec<(String, u64)> {
        self.counters
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct Tick {
    #[allow(dead_code)]
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

#[actix_rt::test]
async fn an_application_recorder_sees_traffic_states_reconnects_and_timings_per_endpoint() {
    let kept = kept();
    // First life: five ticks and a drop; later lives: five ticks and stay.
    let server = TestServer::builder_with(|index| {
        let mut script = vec![Step::stream(&["tick"], 5)];
        script.push(if index == 0 {
            Step::Drop
        } else {
            Step::Pause(WAIT)
        });
        Behaviour::Accept(script)
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (ticks, seen) = Recording::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_millis(50),
        ..HeartbeatSpec::default()
    };
    let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/")).heartbeat(heartbeat))
        .backoff(wsherd::BackoffPolicy {
            initial: Duration::from_millis(10),
            ..Default::default()
        });
    herd.add_endpoint("feed", spec).unwrap();
    seen.wait_for_count(10, WAIT).await.unwrap();
    states
        .wait_for(WAIT, |seen| {
            (seen
                .iter()
                .filter(|s| s.message.state == EndpointState::Live)
                .count()
                >= 2)
                .then_some(())
        })
        .await
        .unwrap();
    // A heartbeat round trip on the second life.
    server
        .wait_for(WAIT, |c| c.get(1).filter(|c| c.pings > 0).map(|_| ()))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while kept.samples(r#"wsherd_heartbeat_rtt_seconds{endpoint="feed"}"#) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no round trip recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    herd.publish_metrics();
    let feed = |name: &str| format!(r#"{name}{{endpoint="feed"}}"#);
    assert_eq!(
        kept.counter(&feed("wsherd_messages_received_total")),
        Some(10)
    );
    assert!(kept.counter(&feed("wsherd_bytes_received_total")).unwrap() > 10 * 20);
    assert_eq!(kept.gauge(&feed("wsherd_endpoint_up")), Some(1.0));
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_state{endpoint="feed",state="live"}"#),
        Some(1.0)
    );
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_state{endpoint="feed",state="backoff"}"#),
        Some(0.0)
    );
    assert_eq!(
        kept.counter(r#"wsherd_dead_letters_total{endpoint="feed",reason="no_subscriber"}"#),
        Some(0)
    );
    assert_eq!(kept.gauge(&feed("wsherd_outbound_queue_depth")), Some(0.0));
    let last = kept
        .gauge(&feed("wsherd_last_message_timestamp_seconds"))
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(last > now - 600.0 && last <= now + 1.0, "{last} vs {now}");
    // The drop was a reconnect, labelled by its class.
    let reconnects = kept.counters_named("wsherd_reconnects_total");
    assert_eq!(
        reconnects.iter().map(|(_, n)| n).sum::<u64>(),
        1,
        "{reconnects:?}"
    );
    assert!(
        reconnects[0].0.contains(r#"endpoint="feed""#),
        "{reconnects:?}"
    );
    assert_eq!(kept.samples(&feed("wsherd_handshake_duration_seconds")), 2);
    assert!(
        kept.gauge("wsherd_governor_handshakes_in_flight{}")
            .is_some()
    );

    // Restarted: new counters underneath, and the exported one carries on from 10.
    herd.restart("feed").await.unwrap();
    seen.wait_for_count(15, WAIT).await.unwrap();
    herd.publish_metrics();
    assert_eq!(
        kept.counter(&feed("wsherd_messages_received_total")),
        Some(15)
    );

    // Removed: down, in no state.
    herd.remove_endpoint("feed", CloseCode::NORMAL, "bye")
        .await
        .unwrap();
    herd.publish_metrics();
    assert_eq!(kept.gauge(&feed("wsherd_endpoint_up")), Some(0.0));
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_state{endpoint="feed",state="live"}"#),
        Some(0.0)
    );
}

#[actix_rt::test]
async fn an_idle_on_demand_endpoint_shows_as_idle_and_down() {
    let kept = kept();
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "lazy",
        EndpointSpec::new(ConnectionConfig::new(server.url("/")))
            .on_demand(Duration::from_secs(30)),
    )
    .unwrap();
    reached(&states, "lazy", 1, |s| *s == EndpointState::Idle).await;
    herd.publish_metrics();
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_state{endpoint="lazy",state="idle"}"#),
        Some(1.0)
    );
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_state{endpoint="lazy",state="connecting"}"#),
        Some(0.0)
    );
    assert_eq!(
        kept.gauge(r#"wsherd_endpoint_up{endpoint="lazy"}"#),
        Some(0.0)
    );
    assert!(herd.status_table().contains("idle"));
    herd.set_required("lazy", true).unwrap();
    assert!(herd.not_ready().is_empty(), "idle on demand is ready");
}

#[actix_rt::test]
async fn requests_and_sequence_numbers_have_series_only_where_they_are_used() {
    let kept = kept();
    let server = TestServer::start(vec![
        Step::Text(r#"{"type":"tick","seq":1}"#.into()),
        Step::Text(r#"{"type":"tick","seq":3}"#.into()),
        Step::ReplyById {
            field: "id".into(),
            reply: r#"{"type":"ack","id":{id}}"#.into(),
        },
    ])
    .unwrap();
    let plain = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let mut config = ConnectionConfig::new(server.url("/"));
    config.sequence = Some(Box::new(wsherd::SequenceSpec::new("seq")));
    herd.add_endpoint("talker", EndpointSpec::new(config))
        .unwrap();
    herd.add_endpoint(
        "plain",
        EndpointSpec::new(ConnectionConfig::new(plain.url("/"))),
    )
    .unwrap();
    reached(&states, "talker", 1, |s| *s == EndpointState::Live).await;
    reached(&states, "plain", 1, |s| *s == EndpointState::Live).await;
    let _: serde_json::Value = herd
        .request("talker", serde_json::json!({"op": "x"}), WAIT)
        .await
        .unwrap();
    // The gap came before the reply on the same socket: counted by now.
    herd.publish_metrics();
    assert_eq!(
        kept.counter(r#"wsherd_requests_total{endpoint="talker",outcome="replied"}"#),
        Some(1)
    );
    assert_eq!(
        kept.counter(r#"wsherd_sequence_events_total{endpoint="talker",what="gap"}"#),
        Some(1)
    );
    assert_eq!(
        kept.gauge(r#"wsherd_requests_in_flight{endpoint="talker"}"#),
        Some(0.0)
    );
    assert_eq!(
        kept.counter(r#"wsherd_requests_total{endpoint="plain",outcome="sent"}"#),
        None,
        "no series for an endpoint that uses neither"
    );
}

/// A masked text frame, as a client sends it.
fn client_frame(text: &str) -> bytes::Bytes {
    use actix_codec::Encoder;
    let mut codec = awc::ws::Codec::new().client_mode();
    let mut out = bytes::BytesMut::new();
    codec
        .encode(awc::ws::Message::Text(text.to_owned().into()), &mut out)
        .unwrap();
    out.freeze()
}

#[actix_rt::test]
async fn inbound_sessions_add_up_per_inbound_endpoint_never_a_series_per_device() {
    use wsherd::config::{InboundAuth, InboundConfig};
    let kept = kept();
    let herd = Herd::new();
    let spec = EndpointSpec::new(
        ConnectionConfig::new("ws://127.0.0.1/unused").kind(KindRule::field("type")),
    );
    herd.add_inbound(
        EndpointName::new("meters").unwrap(),
        InboundConfig::new("/meters/{id}", InboundAuth::None, spec),
    )
    .unwrap();
    let mut wires = Vec::new();
    for id in ["m1", "m2", "m3"] {
        let (socket, wire) = wsherd::accepted_socket(64 << 10);
        herd.accept_session("meters", id, socket, None)
            .await
            .unwrap();
        wires.push(wire);
    }
    until_true("all live", &|| {
        herd.status()
            .iter()
            .filter(|s| s.state.name() == "live")
            .count()
            == 3
    })
    .await;
    for wire in &wires[..2] {
        wire.feed(client_frame(r#"{"type":"tick","seq":1}"#));
    }
    until_true("both ticks counted", &|| {
        herd.status()
            .iter()
            .map(|s| s.stats.messages_in)
            .sum::<u64>()
            == 2
    })
    .await;
    herd.send("meters:m1", "calibrate").await.unwrap();
    let (socket, _refused_wire) = wsherd::accepted_socket(1024);
    let refused = herd.accept_session("meters", "a b", socket, None).await;
    assert!(refused.is_err());
    assert_eq!(
        kept.counter(r#"wsherd_inbound_refused_total{endpoint="meters",reason="invalid_id"}"#),
        Some(1)
    );
    until_true("the command written", &|| {
        herd.endpoint_status("meters:m1")
            .is_some_and(|s| s.stats.bytes_out == 9)
    })
    .await;
    // One session ends for good: its count stays in the endpoint's total.
    herd.remove_endpoint("meters:m1", CloseCode::NORMAL, "done")
        .await
        .unwrap();
    herd.publish_metrics();
    let live = kept.gauge(r#"wsherd_inbound_sessions{endpoint="meters",state="live"}"#);
    assert_eq!(live, Some(2.0));
    until_true("the removed session's counts retired", &|| {
        herd.publish_metrics();
        kept.counter(r#"wsherd_inbound_messages_received_total{endpoint="meters"}"#) == Some(2)
            && kept.counter(r#"wsherd_inbound_bytes_sent_total{endpoint="meters"}"#) == Some(9)
    })
    .await;
    let per_session: Vec<String> = kept
        .counters
        .lock()
        .unwrap()
        .keys()
        .chain(kept.gauges.lock().unwrap().keys())
        .filter(|key| key.contains("meters:"))
        .cloned()
        .collect();
    assert!(per_session.is_empty(), "{per_session:?}");
}

/// Waits until `check` holds (checked every 10 ms: these figures change without an event).
async fn until_true(what: &str, check: &dyn Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "never {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}
