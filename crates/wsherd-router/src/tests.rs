use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use actix::prelude::*;
use serde::{Deserialize, Deserializer};
use wsherd_protocol::{DecodeStage, EndpointName, Inbound, KindRule};

use super::*;
use crate::Batch;

struct Collector<T: Send + Sync + 'static> {
    seen: Arc<Mutex<Vec<Delivery<T>>>>,
}

impl<T: Send + Sync + 'static> Actor for Collector<T> {
    type Context = Context<Self>;
}

impl<T: Send + Sync + 'static> Handler<Delivery<T>> for Collector<T> {
    type Result = ();
    fn handle(&mut self, delivery: Delivery<T>, _: &mut Context<Self>) {
        self.seen.lock().unwrap().push(delivery);
    }
}

type Seen<T> = Arc<Mutex<Vec<Delivery<T>>>>;

fn collector<T: Send + Sync + 'static>() -> (Recipient<Delivery<T>>, Seen<T>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = Collector { seen: seen.clone() }.start();
    (addr.recipient(), seen)
}

/// Lets every started actor drain its mailbox.
async fn settle() {
    for _ in 0..10 {
        actix_rt::task::yield_now().await;
    }
}

thread_local! {
    /// Decodes of `Trade` on this thread: each test runs on its own, so tests decoding
    /// `Trade` in parallel do not disturb each other's count.
    static TRADE_DECODES: AtomicUsize = const { AtomicUsize::new(0) };
}

#[derive(Debug, PartialEq)]
struct Trade {
    seq: u64,
}

impl<'de> Deserialize<'de> for Trade {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            seq: u64,
        }
        TRADE_DECODES.with(|count| count.fetch_add(1, Ordering::SeqCst));
        Raw::deserialize(deserializer).map(|raw| Trade { seq: raw.seq })
    }
}

impl Inbound for Trade {
    const KIND: &'static str = "trade";
}

#[derive(Debug, Deserialize, PartialEq)]
struct Quote {
    bid: f64,
}

fn name(s: &str) -> EndpointName {
    EndpointName::new(s).unwrap()
}

fn route(router: &Router, endpoint: &str, text: &str) -> DispatchReport {
    let mut report = DispatchReport::default();
    router.table().route_text(
        &name(endpoint),
        &KindRule::default(),
        text.as_bytes(),
        &mut report,
    );
    report
}

#[actix_rt::test]
async fn decodes_once_per_type_and_delivers_to_every_subscriber() {
    let router = Router::new();
    let (a, seen_a) = collector::<Trade>();
    let (b, seen_b) = collector::<Trade>();
    let (v, seen_v) = collector::<serde_json::Value>();
    router.subscribe::<Trade>(a);
    router.subscribe::<Trade>(b);
    router.subscribe_kind::<serde_json::Value>("trade", v, SubscribeOptions::new());

    let before = TRADE_DECODES.with(|count| count.load(Ordering::SeqCst));
    let report = route(&router, "ex", r#"{"type":"trade","seq":7}"#);
    assert_eq!(
        TRADE_DECODES.with(|count| count.load(Ordering::SeqCst)) - before,
        1,
        "one decode for two subscribers"
    );
    assert_eq!(report.delivered, 3);
    settle().await;

    let a = seen_a.lock().unwrap();
    let b = seen_b.lock().unwrap();
    assert_eq!(*a[0].message, Trade { seq: 7 });
    assert_eq!(a[0].endpoint, "ex");
    assert!(
        Shared::ptr_eq(&a[0].message, &b[0].message),
        "the value is shared, not copied"
    );
    assert_eq!(seen_v.lock().unwrap()[0].message["seq"], 7);
}

#[actix_rt::test]
async fn endpoint_filter_limits_delivery() {
    let router = Router::new();
    let (a, seen) = collector::<Quote>();
    router.subscribe_kind::<Quote>(
        "quote",
        a,
        SubscribeOptions::new().endpoints([name("left")]),
    );
    let (dead, dead_seen) = collector::<DeadLetter>();
    router.subscribe_event::<DeadLetter>(dead, SubscribeOptions::new());

    assert_eq!(
        route(&router, "left", r#"{"type":"quote","bid":1.0}"#).delivered,
        1
    );
    let report = route(&router, "right", r#"{"type":"quote","bid":2.0}"#);
    assert_eq!(report.unrouted, 1);
    settle().await;
    assert_eq!(seen.lock().unwrap().len(), 1);
    let dead = dead_seen.lock().unwrap();
    assert_eq!(dead[0].endpoint, "right");
    assert_eq!(dead[0].message.kind.as_deref(), Some("quote"));
}

#[actix_rt::test]
async fn a_message_reaches_each_subscriber_that_wants_its_endpoint_whatever_comes_first() {
    let router = Router::new();
    let (left, left_seen) = collector::<Quote>();
    let (right, right_seen) = collector::<Quote>();
    let (every, every_seen) = collector::<Quote>();
    let only = |endpoint| SubscribeOptions::new().endpoints([name(endpoint)]);
    router.subscribe_kind::<Quote>("quote", left, only("left"));
    router.subscribe_kind::<Quote>("quote", right, only("right"));
    router.subscribe_kind::<Quote>("quote", every, SubscribeOptions::new());

    // The first subscriber that wants "right" is the second of three.
    let report = route(&router, "right", r#"{"type":"quote","bid":2.0}"#);
    assert_eq!(report.delivered, 2);
    let report = route(&router, "left", r#"{"type":"quote","bid":1.0}"#);
    assert_eq!(report.delivered, 2);
    settle().await;
    let bids = |seen: &std::sync::Mutex<Vec<Delivery<Quote>>>| -> Vec<(String, f64)> {
        let seen = seen.lock().unwrap();
        seen.iter()
            .map(|d| (d.endpoint.to_string(), d.message.bid))
            .collect()
    };
    assert_eq!(bids(&left_seen), [("left".to_owned(), 1.0)]);
    assert_eq!(bids(&right_seen), [("right".to_owned(), 2.0)]);
    assert_eq!(
        bids(&every_seen),
        [("right".to_owned(), 2.0), ("left".to_owned(), 1.0)]
    );
    let right = &right_seen.lock().unwrap()[0];
    let every = &every_seen.lock().unwrap()[0];
    assert!(
        Shared::ptr_eq(&right.message, &every.message),
        "one decoded value shared by the two that wanted it"
    );
}

#[actix_rt::test]
async fn bad_messages_become_dead_letters_with_reasons() {
    let router = Router::new();
    let (q, _) = collector::<Quote>();
    router.subscribe_kind::<Quote>("quote", q, SubscribeOptions::new());
    let (dead, dead_seen) = collector::<DeadLetter>();
    router.subscribe_event::<DeadLetter>(dead, SubscribeOptions::new());

    let cases = [
        (r#"{"type":"quote","bid":"high"}"#, 1, 0),
        (r#"{"bid":1,"type":"quote""#, 1, 0),
        (r#"{"seq":1}"#, 1, 0),
        (r#"{"type":"nobody"}"#, 0, 1),
    ];
    for (text, failures, unrouted) in cases {
        let report = route(&router, "ex", text);
        assert_eq!(
            (report.decode_failures, report.unrouted),
            (failures, unrouted),
            "{text}"
        );
    }
    let mut report = DispatchReport::default();
    router.table().route_text(
        &name("ex"),
        &KindRule::default(),
        &[b'"', 0xC3, 0x28, b'"'],
        &mut report,
    );
    assert_eq!(report.decode_failures, 1);
    settle().await;

    let dead = dead_seen.lock().unwrap();
    let stages: Vec<Option<DecodeStage>> = dead
        .iter()
        .map(|d| match &d.message.reason {
            DeadLetterReason::Rejected(error) => Some(error.stage.clone()),
            DeadLetterReason::NoSubscriber { .. } => None,
        })
        .collect();
    assert!(matches!(&stages[0], Some(DecodeStage::Typed { kind, .. }) if kind == "quote"));
    assert_eq!(stages[1], Some(DecodeStage::Json));
    assert_eq!(stages[2], Some(DecodeStage::MissingKind));
    assert_eq!(stages[3], None);
    assert_eq!(stages[4], Some(DecodeStage::Utf8));
    assert!(dead[3].message.to_string().contains("nobody"));
}

#[actix_rt::test]
async fn subscribe_all_sees_every_message_and_binary_is_an_event() {
    let router = Router::new();
    let (all, seen) = collector::<serde_json::Value>();
    router.subscribe_all::<serde_json::Value>(all, SubscribeOptions::new());
    assert_eq!(route(&router, "ex", r#"{"type":"x"}"#).delivered, 1);
    assert_eq!(route(&router, "ex", r#"{"no":"kind"}"#).delivered, 1);

    let mut report = DispatchReport::default();
    router
        .table()
        .route_binary(&name("ex"), bytes::Bytes::from_static(b"\x01"), &mut report);
    assert_eq!(report.unrouted, 1);
    let (bin, bin_seen) = collector::<Binary>();
    router.subscribe_event::<Binary>(bin, SubscribeOptions::new());
    let mut report = DispatchReport::default();
    router
        .table()
        .route_binary(&name("ex"), bytes::Bytes::from_static(b"\x02"), &mut report);
    assert_eq!(report.delivered, 1);
    settle().await;
    assert_eq!(seen.lock().unwrap().len(), 2);
    assert_eq!(bin_seen.lock().unwrap()[0].message.0.as_ref(), b"\x02");
}

#[actix_rt::test]
async fn cache_follows_versions_and_unsubscribe_works() {
    let router = Router::new();
    let mut cache = router.cache();
    let v0 = cache.current().version();
    let (a, _) = collector::<Quote>();
    let id = router.subscribe_kind::<Quote>("quote", a, SubscribeOptions::new());
    assert!(cache.current().version() > v0);
    assert_eq!(router.subscription_count(), 1);
    assert!(router.unsubscribe(id));
    assert!(!router.unsubscribe(id));
    assert_eq!(router.subscription_count(), 0);
    assert_eq!(
        route(&router, "ex", r#"{"type":"quote","bid":1}"#).unrouted,
        1
    );
}

#[actix_rt::test]
async fn messages_are_wanted_by_typed_and_raw_subscriptions_but_not_by_events_or_those_set_aside() {
    let router = Router::new();
    let (events, _) = collector::<DeadLetter>();
    router.subscribe_event(events, SubscribeOptions::new());
    assert!(!router.wants_messages_besides(&[]));
    let (raw, _) = collector::<RawMessage>();
    let own = router.subscribe_raw_all(raw, SubscribeOptions::new());
    assert!(router.wants_messages_besides(&[]));
    assert!(!router.wants_messages_besides(&[own]));
    let (typed, _) = collector::<Quote>();
    let id = router.subscribe_kind::<Quote>("quote", typed, SubscribeOptions::new());
    assert!(router.wants_messages_besides(&[own]));
    router.unsubscribe(id);
    assert!(!router.wants_messages_besides(&[own]));
}

struct Stopper;
impl Actor for Stopper {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
impl Handler<Delivery<Quote>> for Stopper {
    type Result = ();
    fn handle(&mut self, _: Delivery<Quote>, _: &mut Context<Self>) {}
}

#[actix_rt::test]
async fn stopped_subscriber_is_reported_once() {
    let router = Router::new();
    let addr = Stopper.start();
    let id = router.subscribe_kind::<Quote>("quote", addr.recipient(), SubscribeOptions::new());
    settle().await;
    let first = route(&router, "ex", r#"{"type":"quote","bid":1}"#);
    assert_eq!(first.closed, vec![id]);
    let second = route(&router, "ex", r#"{"type":"quote","bid":1}"#);
    assert!(second.closed.is_empty());
    assert_eq!(second.unrouted, 1, "a dead subscriber wants nothing");
}

#[actix_rt::test]
async fn full_mailbox_drops_or_applies_backpressure() {
    let router = Router::new();
    let (dropper, dropped_seen) = collector::<Quote>();
    router.subscribe_kind::<Quote>(
        "quote",
        dropper,
        SubscribeOptions::new().overflow(Overflow::Drop),
    );
    let mut total = DispatchReport::default();
    for _ in 0..100 {
        router.table().route_text(
            &name("ex"),
            &KindRule::default(),
            br#"{"type":"quote","bid":1}"#,
            &mut total,
        );
    }
    assert!(total.dropped_full > 0, "{total:?}");
    assert_eq!(total.delivered + total.dropped_full, 100);
    assert!(total.take_backpressure().is_none());
    settle().await;
    assert_eq!(dropped_seen.lock().unwrap().len() as u64, total.delivered);

    let router = Router::new();
    let (waiter, waited_seen) = collector::<Quote>();
    router.subscribe_kind::<Quote>("quote", waiter, SubscribeOptions::new());
    let mut sent = 0;
    let mut waits = 0;
    for _ in 0..100 {
        let mut report = DispatchReport::default();
        router.table().route_text(
            &name("ex"),
            &KindRule::default(),
            br#"{"type":"quote","bid":1}"#,
            &mut report,
        );
        sent += report.delivered;
        if let Some(wait) = report.take_backpressure() {
            waits += 1;
            wait.await;
        }
    }
    assert!(waits > 0);
    assert_eq!(sent, 100);
    settle().await;
    assert_eq!(
        waited_seen.lock().unwrap().len(),
        100,
        "backpressure loses nothing"
    );
}

struct BatchCollector {
    seen: Arc<Mutex<Vec<Vec<u64>>>>,
}

impl Actor for BatchCollector {
    type Context = Context<Self>;
}

impl Handler<Batch<Trade>> for BatchCollector {
    type Result = ();
    fn handle(&mut self, batch: Batch<Trade>, _: &mut Context<Self>) {
        let seqs = batch.deliveries.iter().map(|d| d.message.seq).collect();
        self.seen.lock().unwrap().push(seqs);
    }
}

#[actix_rt::test]
async fn batched_subscribers_get_one_message_per_flush_in_order() {
    let router = Router::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = BatchCollector { seen: seen.clone() }.start();
    router.subscribe_kind_batched::<Trade>("trade", addr.recipient(), SubscribeOptions::new());
    let (each, each_seen) = collector::<Trade>();
    router.subscribe::<Trade>(each);
    let mut report = DispatchReport::default();
    for seq in 0..10 {
        let text = format!(r#"{{"type":"trade","seq":{seq}}}"#);
        router.table().route_text(
            &name("ex"),
            &KindRule::default(),
            text.as_bytes(),
            &mut report,
        );
    }
    assert_eq!(report.pending_deliveries(), 10);
    assert_eq!(
        report.delivered, 10,
        "the plain subscriber got each one at once"
    );
    report.flush_batches();
    assert_eq!(report.pending_deliveries(), 0);
    assert_eq!(report.delivered, 20);
    settle().await;
    assert_eq!(*seen.lock().unwrap(), vec![(0..10).collect::<Vec<u64>>()]);
    assert_eq!(each_seen.lock().unwrap().len(), 10);
}

#[actix_rt::test]
async fn each_batched_subscriber_gathers_its_own_batch_and_the_fullest_is_counted() {
    let router = Router::new();
    let only = |endpoint| SubscribeOptions::new().endpoints([name(endpoint)]);
    let seen_a = Arc::new(Mutex::new(Vec::new()));
    let a = BatchCollector {
        seen: seen_a.clone(),
    }
    .start();
    router.subscribe_kind_batched::<Trade>("trade", a.recipient(), only("a"));
    let seen_b = Arc::new(Mutex::new(Vec::new()));
    let b = BatchCollector {
        seen: seen_b.clone(),
    }
    .start();
    router.subscribe_kind_batched::<Trade>("trade", b.recipient(), only("b"));
    let mut report = DispatchReport::default();
    // Seven for "a" and three for "b", interleaved within one turn.
    for seq in 0..10u64 {
        let endpoint = if seq % 3 == 1 { "b" } else { "a" };
        let text = format!(r#"{{"type":"trade","seq":{seq}}}"#);
        router.table().route_text(
            &name(endpoint),
            &KindRule::default(),
            text.as_bytes(),
            &mut report,
        );
    }
    assert_eq!(report.pending_deliveries(), 10);
    assert_eq!(report.largest_batch(), 7, "a's batch is the fullest");
    report.flush_batches();
    assert_eq!(report.pending_deliveries(), 0);
    assert_eq!(report.largest_batch(), 0);
    settle().await;
    assert_eq!(*seen_a.lock().unwrap(), vec![vec![0, 2, 3, 5, 6, 8, 9]]);
    assert_eq!(*seen_b.lock().unwrap(), vec![vec![1, 4, 7]]);
}

#[actix_rt::test]
async fn many_kinds_route_alike_before_and_after_the_index_becomes_a_map() {
    let router = Router::new();
    let mut seen = Vec::new();
    let mut expected = [0usize; 40];
    // 40 kinds cross the point where the kind list becomes a map; "k1" and "k10" share a
    // prefix and "k" is a prefix of all, so a lookup must compare whole kinds.
    for i in 0..40 {
        let (recipient, collected) = collector::<serde_json::Value>();
        router.subscribe_kind::<serde_json::Value>(
            &format!("k{i}"),
            recipient,
            SubscribeOptions::new(),
        );
        seen.push(collected);
        for j in [0, i / 2, i] {
            let report = route(&router, "ex", &format!(r#"{{"type":"k{j}","n":{i}}}"#));
            assert_eq!(report.delivered, 1, "k{j} with {} kinds subscribed", i + 1);
            expected[j] += 1;
        }
        let report = route(&router, "ex", r#"{"type":"k","n":0}"#);
        assert_eq!((report.delivered, report.unrouted), (0, 1));
        // Collectors hold 16 messages; let them drain before k0 gets more.
        settle().await;
    }
    settle().await;
    let got: Vec<usize> = seen.iter().map(|s| s.lock().unwrap().len()).collect();
    assert_eq!(got, expected);
}

#[actix_rt::test]
async fn one_subscriber_gets_the_value_inline_and_several_share_one() {
    let router = Router::new();
    let (only, seen_only) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("solo", only, SubscribeOptions::new());
    let (a, seen_a) = collector::<serde_json::Value>();
    let (b, seen_b) = collector::<serde_json::Value>();
    let (c, seen_c) = collector::<serde_json::Value>();
    for recipient in [a, b, c] {
        router.subscribe_kind::<serde_json::Value>("trio", recipient, SubscribeOptions::new());
    }
    route(&router, "ex", r#"{"type":"solo","n":1}"#);
    route(&router, "ex", r#"{"type":"trio","n":3}"#);
    settle().await;

    let solo = seen_only.lock().unwrap().pop().unwrap();
    assert!(!solo.message.is_shared());
    assert_eq!(solo.message["n"], 1);
    assert_eq!(solo.message, serde_json::json!({"type": "solo", "n": 1}));
    assert_eq!(solo.message.as_ref()["type"], "solo");
    assert_eq!(
        format!("{:?}", solo.message),
        format!("{:?}", *solo.message)
    );
    assert_eq!(solo.into_inner()["n"], 1);

    let mut trio: Vec<_> = [seen_a, seen_b, seen_c]
        .iter()
        .map(|seen| seen.lock().unwrap().pop().unwrap())
        .collect();
    assert!(
        trio.iter()
            .all(|d| d.message.is_shared() && d.message["n"] == 3)
    );
    assert!(Shared::ptr_eq(&trio[0].message, &trio[2].message));
    let arc = trio.remove(0).message.into_arc();
    assert_eq!(
        std::sync::Arc::strong_count(&arc),
        3,
        "one value for three deliveries"
    );
}

#[actix_rt::test]
async fn a_reply_wsherd_consumed_reaches_its_subscribers_but_is_never_a_dead_letter() {
    let router = Router::new();
    let (dead, dead_seen) = collector::<DeadLetter>();
    router.subscribe_event::<DeadLetter>(dead, SubscribeOptions::new());
    let table = router.table();
    let mut report = DispatchReport::default();
    let rule = KindRule::default();
    // Nobody subscribed to acknowledgements; one is JSON, one plain text.
    for reply in [r#"{"type":"subscribed","id":1}"#, "ack"] {
        assert!(!table.route_wanted(&name("ex"), &rule, reply, &mut report));
    }
    assert_eq!((report.unrouted, report.decode_failures), (0, 0));

    let (acks, acks_seen) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("subscribed", acks, SubscribeOptions::new());
    let table = router.table();
    assert!(table.route_wanted(
        &name("ex"),
        &rule,
        r#"{"type":"subscribed","id":2}"#,
        &mut report
    ));
    assert_eq!(report.delivered, 1);
    settle().await;
    assert_eq!(acks_seen.lock().unwrap()[0].message["id"], 2);
    assert!(dead_seen.lock().unwrap().is_empty());
}

mod demand;
mod inbox;
mod kinds;
mod relay;
