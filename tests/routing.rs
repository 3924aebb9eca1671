//! Routing without thinking about it: plain subscribers on another arbiter than their endpoints
//! (relayed, overflow policy and all), one type for several kinds, and raw text by kind.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use common::*;
use serde::{Deserialize, Deserializer};
use tokio::sync::oneshot;
use wsherd::config::HerdSettings;
use wsherd::prelude::*;
use wsherd::{DeadLetterReason, RawMessage};
use wsherd_testkit::{Recorder, Step, TestServer, Watched};

#[derive(Debug, Clone, Deserialize)]
struct Tick {
    seq: u64,
}

/// What a server sends after its stream: everything before it has been routed.
#[derive(Debug, Clone, Deserialize)]
struct End {}

wsherd::inbound!(Tick => "tick", End => "end");

fn end() -> Step {
    Step::text(r#"{"type":"end"}"#)
}

fn workers(count: usize) -> Herd {
    let settings = HerdSettings {
        workers: count,
        ..Default::default()
    };
    Herd::with_settings(&settings).unwrap()
}

/// (endpoint, tick seq or `None` for the end), in arrival order.
type Seen = Arc<Watched<Vec<(String, Option<u64>)>>>;

/// A subscriber on the calling thread: every tick and end it takes, by endpoint, optionally
/// with a small mailbox (or inbox) that stays closed until a gate opens.
struct Feed {
    seen: Seen,
    capacity: Option<usize>,
    gate: Option<oneshot::Receiver<()>>,
    /// Takes ticks and ends through its inbox (`subscribe_in`) from this herd, not through its
    /// mailbox; `capacity` is then the inbox's.
    inbox_of: Option<Herd>,
}

impl Actor for Feed {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(herd) = &self.inbox_of {
            let mut options = SubscribeOptions::new();
            if let Some(capacity) = self.capacity {
                options = options.inbox_capacity(capacity);
            }
            herd.subscribe_in_with::<Tick, _>(ctx, options.clone());
            herd.subscribe_in_with::<End, _>(ctx, options);
        } else if let Some(capacity) = self.capacity {
            ctx.set_mailbox_capacity(capacity);
        }
        if let Some(gate) = self.gate.take() {
            ctx.wait(
                async move {
                    let _ = gate.await;
                }
                .into_actor(self),
            );
        }
    }
}

impl Handler<Delivery<Tick>> for Feed {
    type Result = ();
    fn handle(&mut self, tick: Delivery<Tick>, _: &mut Context<Self>) {
        let entry = (tick.endpoint.to_string(), Some(tick.message.seq));
        self.seen.update(|seen| seen.push(entry));
    }
}

impl Handler<Delivery<End>> for Feed {
    type Result = ();
    fn handle(&mut self, end: Delivery<End>, _: &mut Context<Self>) {
        let entry = (end.endpoint.to_string(), None);
        self.seen.update(|seen| seen.push(entry));
    }
}

fn feed(capacity: Option<usize>, gate: Option<oneshot::Receiver<()>>) -> (Addr<Feed>, Seen) {
    start_feed(capacity, gate, None)
}

/// A [`Feed`] that subscribes itself to `herd` through its inbox when it starts.
fn inbox_feed(
    herd: &Herd,
    capacity: Option<usize>,
    gate: Option<oneshot::Receiver<()>>,
) -> (Addr<Feed>, Seen) {
    start_feed(capacity, gate, Some(herd.clone()))
}

fn start_feed(
    capacity: Option<usize>,
    gate: Option<oneshot::Receiver<()>>,
    inbox_of: Option<Herd>,
) -> (Addr<Feed>, Seen) {
    let seen: Seen = Arc::new(Watched::new(Vec::new()));
    let addr = Feed {
        seen: Arc::clone(&seen),
        capacity,
        gate,
        inbox_of,
    }
    .start();
    (addr, seen)
}

fn ticks_of(seen: &[(String, Option<u64>)], endpoint: &str) -> Vec<u64> {
    seen.iter()
        .filter(|(name, _)| name == endpoint)
        .filter_map(|(_, seq)| *seq)
        .collect()
}

#[actix_rt::test]
async fn a_plain_subscriber_on_the_main_thread_gets_every_message_from_the_workers_in_order_exactly_once()
 {
    const COUNT: u64 = 5_000;
    let server = TestServer::start(vec![Step::stream(&["tick"], COUNT), end()]).unwrap();
    let herd = workers(2);
    // Subscribed here, on the main thread: the endpoints live on the two workers.
    let (addr, seen) = feed(None, None);
    herd.subscribe::<Tick>(addr.clone().recipient());
    herd.subscribe::<End>(addr.recipient());
    for name in ["left", "right"] {
        herd.add_endpoint(name, ConnectionConfig::new(server.url("/")))
            .unwrap();
    }
    // Each end comes after its endpoint's ticks, through the same relay.
    let seen = seen
        .wait_for(
            WAIT,
            |s| (s.iter().filter(|(_, seq)| seq.is_none()).count() == 2).then(|| s.clone()),
            |s| format!("{} entries", s.len()),
        )
        .await
        .unwrap();
    for name in ["left", "right"] {
        let of_it: Vec<&Option<u64>> = seen
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, seq)| seq)
            .collect();
        assert_eq!(of_it.len() as u64, COUNT + 1, "{name}: exactly once");
        assert_eq!(
            ticks_of(&seen, name),
            (0..COUNT).collect::<Vec<_>>(),
            "{name}: every tick, in order, before its end"
        );
        let stats = herd.endpoint_status(name).unwrap().stats;
        assert_eq!(
            (stats.delivered, stats.dropped_full),
            (COUNT + 1, 0),
            "{name}"
        );
    }
    herd.shutdown("done", Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_drop_subscriber_on_the_main_thread_counts_what_its_full_mailbox_could_not_take() {
    const COUNT: u64 = 3_000;
    let server = TestServer::start(vec![Step::stream(&["tick"], COUNT), end()]).unwrap();
    let herd = workers(1);
    let (open, gate) = oneshot::channel();
    let (lossy, lossy_seen) = feed(Some(1), Some(gate));
    herd.subscribe_with::<Tick>(
        lossy.recipient(),
        SubscribeOptions::new().overflow(Overflow::Drop),
    );
    let (marker, marker_seen) = feed(None, None);
    herd.subscribe::<End>(marker.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();

    // The end went through the same relay after every tick: each tick's fate is counted.
    marker_seen
        .wait_for(
            WAIT,
            |s| (!s.is_empty()).then_some(()),
            |s| format!("{s:?}"),
        )
        .await
        .unwrap();
    let stats = herd.endpoint_status("feed").unwrap().stats;
    assert!(stats.dropped_full > 0, "{stats:?}");
    assert_eq!(stats.delivered + stats.dropped_full, COUNT + 1, "{stats:?}");

    open.send(()).unwrap();
    let taken = (stats.delivered - 1) as usize;
    let seen = lossy_seen
        .wait_for(
            WAIT,
            |s| (s.len() >= taken).then(|| s.clone()),
            |s| format!("{} of {taken}", s.len()),
        )
        .await
        .unwrap();
    let seqs = ticks_of(&seen, "feed");
    assert_eq!(seqs.len(), taken, "what was counted delivered arrived");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "what arrives is in order"
    );
    herd.shutdown("done", Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_backpressure_subscriber_on_the_main_thread_with_a_tiny_mailbox_loses_nothing() {
    const COUNT: u64 = 20_000;
    let server = TestServer::start(vec![Step::stream(&["tick"], COUNT), end()]).unwrap();
    let herd = workers(1);
    let (open, gate) = oneshot::channel();
    let (slow, seen) = feed(Some(1), Some(gate));
    herd.subscribe::<Tick>(slow.clone().recipient());
    herd.subscribe::<End>(slow.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();

    // With its mailbox closed, thousands of messages wait for it (in its mailbox, on its
    // arbiter, and held by the connection) before it takes one.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = herd.endpoint_status("feed").unwrap().stats;
        if stats.messages_in >= stats.delivered + 1_000 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{stats:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    open.send(()).unwrap();
    let seen = seen
        .wait_for(
            WAIT,
            |s| s.iter().any(|(_, seq)| seq.is_none()).then(|| s.clone()),
            |s| format!("{} entries", s.len()),
        )
        .await
        .unwrap();
    assert_eq!(seen.len() as u64, COUNT + 1);
    assert_eq!(
        ticks_of(&seen, "feed"),
        (0..COUNT).collect::<Vec<_>>(),
        "nothing lost, in order"
    );
    let stats = herd.endpoint_status("feed").unwrap().stats;
    assert_eq!((stats.delivered, stats.dropped_full), (COUNT + 1, 0));
    herd.shutdown("done", Duration::from_secs(5)).await;
}

/// `name`'s counters once they account for `handled` deliveries: a connection settles its
/// counts at the end of its read turn, which its subscriber on another thread may outrun.
async fn settled_stats(herd: &Herd, name: &str, handled: u64) -> wsherd::StatsSnapshot {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stats = herd.endpoint_status(name).unwrap().stats;
        if stats.delivered + stats.dropped_full >= handled || std::time::Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[actix_rt::test]
async fn an_inbox_subscriber_on_the_main_thread_gets_every_message_from_the_workers_in_order_exactly_once()
 {
    const COUNT: u64 = 5_000;
    let server = TestServer::start(vec![Step::stream(&["tick"], COUNT), end()]).unwrap();
    let herd = workers(2);
    let (_addr, seen) = inbox_feed(&herd, None, None);
    // Subscribed from the actor's `started`, before any endpoint exists.
    tokio::task::yield_now().await;
    for name in ["left", "right"] {
        herd.add_endpoint(name, ConnectionConfig::new(server.url("/")))
            .unwrap();
    }
    // Ticks and ends come through two inboxes, each in order, but not in order with each
    // other: wait for every one of both.
    let seen = seen
        .wait_for(
            WAIT,
            |s| (s.len() as u64 == 2 * (COUNT + 1)).then(|| s.clone()),
            |s| format!("{} entries", s.len()),
        )
        .await
        .unwrap();
    assert_eq!(seen.iter().filter(|(_, seq)| seq.is_none()).count(), 2);
    for name in ["left", "right"] {
        assert_eq!(
            ticks_of(&seen, name),
            (0..COUNT).collect::<Vec<_>>(),
            "{name}: every tick once, in order"
        );
        let stats = settled_stats(&herd, name, COUNT + 1).await;
        assert_eq!(
            (stats.delivered, stats.dropped_full),
            (COUNT + 1, 0),
            "{name}"
        );
    }
    herd.shutdown("done", Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn a_backpressure_subscriber_with_a_tiny_inbox_holds_its_endpoint_and_loses_nothing() {
    const COUNT: u64 = 20_000;
    let server = TestServer::start(vec![Step::stream(&["tick"], COUNT), end()]).unwrap();
    let herd = workers(1);
    let (open, gate) = oneshot::channel();
    let (_addr, seen) = inbox_feed(&herd, Some(1), Some(gate));
    tokio::task::yield_now().await;
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();

    // The inbox takes one parcel and is full; the next parcel is held and the connection
    // stops reading: the rest waits in the socket, not in memory. Reading has stopped once
    // two looks 50 ms apart find the same count.
    let deadline = std::time::Instant::now() + WAIT;
    let mut last = 0;
    let read = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = herd.endpoint_status("feed").unwrap().stats.messages_in;
        if now > 0 && now == last {
            break now;
        }
        last = now;
        assert!(std::time::Instant::now() < deadline, "still reading: {now}");
    };
    // One parcel in the inbox and one held, each at most a turn's batch of 256.
    assert!(
        read <= 2 * 256,
        "{read} messages read with a shut inbox of one"
    );
    assert!(seen.lock().is_empty(), "the gate is shut");
    open.send(()).unwrap();
    let seen = seen
        .wait_for(
            WAIT,
            |s| (s.len() as u64 == COUNT + 1).then(|| s.clone()),
            |s| format!("{} entries", s.len()),
        )
        .await
        .unwrap();
    assert_eq!(seen.iter().filter(|(_, seq)| seq.is_none()).count(), 1);
    assert_eq!(
        ticks_of(&seen, "feed"),
        (0..COUNT).collect::<Vec<_>>(),
        "nothing lost, in order"
    );
    let stats = settled_stats(&herd, "feed", COUNT + 1).await;
    assert_eq!((stats.delivered, stats.dropped_full), (COUNT + 1, 0));
    herd.shutdown("done", Duration::from_secs(5)).await;
}

static FEED_DECODES: AtomicUsize = AtomicUsize::new(0);

/// A feed modelled as one tagged enum; counts its decodes.
#[derive(Debug, Clone, PartialEq)]
enum FeedEvent {
    Trade { seq: u64 },
    Quote { seq: u64 },
}

impl<'de> Deserialize<'de> for FeedEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        enum Tagged {
            Trade { seq: u64 },
            Quote { seq: u64 },
        }
        FEED_DECODES.fetch_add(1, Ordering::SeqCst);
        Ok(match Tagged::deserialize(deserializer)? {
            Tagged::Trade { seq } => FeedEvent::Trade { seq },
            Tagged::Quote { seq } => FeedEvent::Quote { seq },
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Cancel {}

// Both forms in one invocation.
wsherd::inbound!(FeedEvent => ["trade", "quote"], Cancel => "cancel",);

#[actix_rt::test]
async fn one_enum_over_two_kinds_gets_both_decoded_once_and_not_a_kind_it_does_not_list() {
    assert_eq!(<FeedEvent as Inbound>::KINDS, ["trade", "quote"]);
    assert_eq!(<Cancel as Inbound>::KINDS, ["cancel"]);
    let server = TestServer::start(vec![
        Step::text(r#"{"type":"trade","seq":1}"#),
        Step::text(r#"{"type":"cancel","seq":2}"#),
        Step::text(r#"{"type":"quote","seq":3}"#),
        Step::text(r#"{"type":"trade","seq":4}"#),
    ])
    .unwrap();
    let herd = Herd::new();
    let (a, a_seen) = Recorder::<Delivery<FeedEvent>>::start();
    let (b, b_seen) = Recorder::<Delivery<FeedEvent>>::start();
    herd.subscribe::<FeedEvent>(a.recipient());
    herd.subscribe::<FeedEvent>(b.recipient());
    let (dead, dead_seen) = Recorder::<Delivery<DeadLetter>>::start();
    herd.subscribe_events(dead.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();

    a_seen.wait_for_count(3, WAIT).await.unwrap();
    b_seen.wait_for_count(3, WAIT).await.unwrap();
    dead_seen.wait_for_count(1, WAIT).await.unwrap();
    let expected = [
        FeedEvent::Trade { seq: 1 },
        FeedEvent::Quote { seq: 3 },
        FeedEvent::Trade { seq: 4 },
    ];
    for seen in [&a_seen, &b_seen] {
        let got: Vec<FeedEvent> = seen.with(|s| s.iter().map(|d| (*d.message).clone()).collect());
        assert_eq!(got, expected);
    }
    assert_eq!(
        FEED_DECODES.load(Ordering::SeqCst),
        3,
        "once per message, for two subscribers"
    );
    let letter = dead_seen.with(|s| s[0].message.clone());
    assert_eq!(letter.kind.as_deref(), Some("cancel"));
    assert!(matches!(
        letter.reason,
        DeadLetterReason::NoSubscriber { .. }
    ));
    herd.shutdown("done", Duration::from_secs(5)).await;
}

#[actix_rt::test]
async fn subscribe_raw_gets_the_exact_text_of_its_kind_and_when_it_arrived() {
    // Spacing, key order, escapes and non-ASCII text, exactly as sent.
    let text = "{ \"px\" : 1.50,\n \"type\":\"book\", \"venue\":\"Z\\u00fcrich – ü\" }";
    let server = TestServer::start(vec![
        Step::text(r#"{"type":"tick","seq":0}"#),
        Step::text(text),
        end(),
    ])
    .unwrap();
    let herd = Herd::new();
    let (raw, raw_seen) = Recorder::<Delivery<RawMessage>>::start();
    herd.subscribe_raw("book", raw.recipient());
    let (marker, marker_seen) = feed(None, None);
    herd.subscribe::<End>(marker.recipient());
    let before = SystemTime::now();
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    marker_seen
        .wait_for(
            WAIT,
            |s| (!s.is_empty()).then_some(()),
            |s| format!("{s:?}"),
        )
        .await
        .unwrap();
    let after = SystemTime::now();
    let got = raw_seen.snapshot();
    assert_eq!(got.len(), 1, "only its kind");
    assert_eq!(got[0].endpoint, "feed");
    assert_eq!(&*got[0].message.text, text);
    assert_eq!(&*got[0].message.kind, "book");
    let at = got[0].message.received_at;
    assert!(before <= at && at <= after, "{at:?}");
    let stats = herd.endpoint_status("feed").unwrap().stats;
    assert_eq!(
        stats.dead_letters, 1,
        "the tick nobody wanted; the raw one is delivered"
    );
    herd.shutdown("done", Duration::from_secs(5)).await;
}
