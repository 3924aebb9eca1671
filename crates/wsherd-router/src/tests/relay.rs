//! Subscribers on another arbiter: relayed per turn, in order, overflow applied there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use tokio::sync::{Notify, oneshot};
use wsherd_protocol::{Inbound, KindRule};

use super::name;
use crate::dispatch::RELAY_CAP;
use crate::{
    Delivery, DispatchReport, Overflow, RelayCounters, Router, SubscribeOptions, SubscriptionId,
};

/// Generous: a loaded 2-core machine is slow, not broken.
pub(super) const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
pub(super) struct Tick {
    pub(super) seq: u64,
}

impl Inbound for Tick {
    const KIND: &'static str = "tick";
}

/// An event published beside the messages.
#[derive(Debug)]
struct Note(&'static str);

/// A log that tests wait on.
#[derive(Default)]
struct Seen {
    log: Mutex<Vec<String>>,
    changed: Notify,
}

impl Seen {
    fn push(&self, entry: String) {
        self.log.lock().unwrap().push(entry);
        self.changed.notify_waiters();
    }

    fn snapshot(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for `entries` entries from `endpoint` (not "ex"), and returns them as "tick N".
    async fn wait_for_from(&self, endpoint: &str, entries: usize) -> Vec<String> {
        let prefix = format!("{endpoint}: ");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut changed = std::pin::pin!(self.changed.notified());
            changed.as_mut().enable();
            let from: Vec<String> = self
                .snapshot()
                .iter()
                .filter_map(|entry| entry.strip_prefix(&prefix).map(str::to_owned))
                .collect();
            if from.len() >= entries {
                return from;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("{} of {entries} from {endpoint}", from.len());
            }
        }
    }

    async fn wait_for(&self, entries: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut changed = std::pin::pin!(self.changed.notified());
            changed.as_mut().enable();
            let log = self.snapshot();
            if log.len() >= entries {
                return log;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("{} of {entries} entries: {log:?}", log.len());
            }
        }
    }
}

/// Relay counters that tests wait on.
#[derive(Default)]
struct Counted {
    delivered: AtomicU64,
    dropped: AtomicU64,
    changed: Notify,
}

impl RelayCounters for Counted {
    fn delivered(&self, count: u64) {
        self.delivered.fetch_add(count, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn dropped_full(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

impl Counted {
    fn get(&self) -> (u64, u64) {
        (
            self.delivered.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
        )
    }

    async fn wait_until(&self, done: impl Fn(u64, u64) -> bool) -> (u64, u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut changed = std::pin::pin!(self.changed.notified());
            changed.as_mut().enable();
            let (delivered, dropped) = self.get();
            if done(delivered, dropped) {
                return (delivered, dropped);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("delivered {delivered}, dropped {dropped}");
            }
        }
    }
}

/// A subscriber on another arbiter; it can start with a small mailbox, closed until a gate
/// opens, and stop after its first delivery.
struct Remote {
    seen: Arc<Seen>,
    capacity: Option<usize>,
    gate: Option<oneshot::Receiver<()>>,
    stop_on_first: bool,
}

impl Actor for Remote {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(capacity) = self.capacity {
            ctx.set_mailbox_capacity(capacity);
        }
        if let Some(gate) = self.gate.take() {
            // Takes nothing from its mailbox until the gate opens.
            ctx.wait(
                async move {
                    let _ = gate.await;
                }
                .into_actor(self),
            );
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.seen.push("stopped".to_owned());
    }
}

impl Handler<Delivery<Tick>> for Remote {
    type Result = ();
    fn handle(&mut self, tick: Delivery<Tick>, ctx: &mut Context<Self>) {
        let seq = tick.message.seq;
        self.seen.push(match tick.endpoint.as_str() {
            "ex" => format!("tick {seq}"),
            other => format!("{other}: tick {seq}"),
        });
        if self.stop_on_first {
            ctx.stop();
        }
    }
}

impl Handler<Delivery<Note>> for Remote {
    type Result = ();
    fn handle(&mut self, note: Delivery<Note>, _: &mut Context<Self>) {
        self.seen.push(format!("note {}", note.message.0));
    }
}

struct RemoteSpec {
    capacity: Option<usize>,
    gate: Option<oneshot::Receiver<()>>,
    overflow: Overflow,
    notes: bool,
    stop_on_first: bool,
    only_from: Option<&'static str>,
}

impl Default for RemoteSpec {
    fn default() -> Self {
        RemoteSpec {
            capacity: None,
            gate: None,
            overflow: Overflow::Backpressure,
            notes: false,
            stop_on_first: false,
            only_from: None,
        }
    }
}

/// Starts a [`Remote`] on `arbiter` and subscribes it from there, as a subscriber should.
async fn remote(
    router: &Router,
    arbiter: &Arbiter,
    spec: RemoteSpec,
) -> (SubscriptionId, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let (tx, rx) = oneshot::channel();
    let router = router.clone();
    let log = Arc::clone(&seen);
    arbiter.spawn_fn(move || {
        let addr = Remote {
            seen: log,
            capacity: spec.capacity,
            gate: spec.gate,
            stop_on_first: spec.stop_on_first,
        }
        .start();
        let mut options = SubscribeOptions::new().overflow(spec.overflow);
        if let Some(endpoint) = spec.only_from {
            options = options.endpoints([name(endpoint)]);
        }
        let id = router.subscribe_with::<Tick>(addr.clone().recipient(), options.clone());
        if spec.notes {
            router.subscribe_event::<Note>(addr.recipient(), options);
        }
        let _ = tx.send(id);
    });
    (rx.await.unwrap(), seen)
}

fn tick(router: &Router, seq: u64, report: &mut DispatchReport) {
    tick_from("ex", router, seq, report);
}

fn tick_from(endpoint: &str, router: &Router, seq: u64, report: &mut DispatchReport) {
    let text = format!(r#"{{"type":"tick","seq":{seq}}}"#);
    router.table().route_text(
        &name(endpoint),
        &KindRule::default(),
        text.as_bytes(),
        report,
    );
}

fn ticks(range: std::ops::Range<u64>) -> Vec<String> {
    range.map(|seq| format!("tick {seq}")).collect()
}

#[actix_rt::test]
async fn each_turn_reaches_a_subscriber_on_another_arbiter_as_one_hand_over_in_order_exactly_once()
{
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (_, seen) = remote(&router, &arbiter, RemoteSpec::default()).await;
    let counted = Arc::new(Counted::default());
    let mut report = DispatchReport::gathering(counted.clone());

    for turn in 0..3 {
        for seq in turn * 50..(turn + 1) * 50 {
            tick(&router, seq, &mut report);
        }
        assert_eq!(report.pending_deliveries(), 50, "gathered for the turn");
        report.flush_batches();
    }
    assert_eq!(report.relayed_parcels(), 3, "one hand-over per turn");
    assert_eq!(report.delivered, 0, "counted where they land, not here");

    assert_eq!(seen.wait_for(150).await, ticks(0..150));
    assert_eq!(counted.wait_until(|d, _| d >= 150).await, (150, 0));
    settle_and_check_exactly(&seen, 150).await;
    arbiter.stop();
}

/// Nothing more arrives after `count` (checked after the arbiter had a chance to run).
async fn settle_and_check_exactly(seen: &Seen, count: usize) {
    for _ in 0..10 {
        actix_rt::task::yield_now().await;
    }
    assert_eq!(seen.snapshot().len(), count, "exactly once");
}

#[actix_rt::test]
async fn a_report_without_turns_hands_each_delivery_over_at_once_and_counts_it_itself() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (_, seen) = remote(&router, &arbiter, RemoteSpec::default()).await;
    let mut report = DispatchReport::default();
    for seq in 0..5 {
        tick(&router, seq, &mut report);
    }
    assert_eq!(report.pending_deliveries(), 0, "nothing waits for a flush");
    assert_eq!(report.relayed_parcels(), 5);
    assert_eq!(seen.wait_for(5).await, ticks(0..5));
    // The drainer counts a parcel before the subscriber can take it.
    report.flush_batches();
    assert_eq!(report.delivered, 5);
    arbiter.stop();
}

#[actix_rt::test]
async fn a_subscriber_named_with_its_arbiter_is_relayed_once_that_arbiter_answers() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let seen = Arc::new(Seen::default());
    let log = Arc::clone(&seen);
    let addr = Remote::start_in_arbiter(&arbiter.handle(), move |_| Remote {
        seen: log,
        capacity: None,
        gate: None,
        stop_on_first: false,
    });
    // Subscribed from this thread, with the arbiter named.
    router.subscribe_with::<Tick>(
        addr.recipient(),
        SubscribeOptions::new().arbiter(arbiter.handle()),
    );
    // The arbiter runs what it is sent in order: once this answers, it has said which thread
    // it is.
    let (tx, rx) = oneshot::channel();
    arbiter.spawn_fn(move || {
        let _ = tx.send(());
    });
    rx.await.unwrap();

    let counted = Arc::new(Counted::default());
    let mut report = DispatchReport::gathering(counted.clone());
    for seq in 0..10 {
        tick(&router, seq, &mut report);
    }
    report.flush_batches();
    assert_eq!(report.relayed_parcels(), 1);
    assert_eq!(seen.wait_for(10).await, ticks(0..10));
    arbiter.stop();
}

#[actix_rt::test]
async fn a_full_drop_subscriber_on_another_arbiter_loses_whole_turns_and_they_are_counted() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (open, gate) = oneshot::channel();
    let spec = RemoteSpec {
        capacity: Some(1),
        gate: Some(gate),
        overflow: Overflow::Drop,
        ..RemoteSpec::default()
    };
    let (_, seen) = remote(&router, &arbiter, spec).await;
    let counted = Arc::new(Counted::default());
    let mut report = DispatchReport::gathering(counted.clone());

    for turn in 0..3 {
        for seq in turn * 10..(turn + 1) * 10 {
            tick(&router, seq, &mut report);
        }
        report.flush_batches();
    }
    // The closed mailbox takes the first turn whole (it had room for its first delivery) and
    // is full for the next two.
    assert_eq!(counted.wait_until(|d, r| d + r >= 30).await, (10, 20));
    assert!(
        !report.has_blocked(),
        "a Drop subscriber never holds the connection"
    );
    assert_eq!(report.dropped_full, 0, "counted where they were dropped");
    open.send(()).unwrap();
    assert_eq!(seen.wait_for(10).await, ticks(0..10));
    settle_and_check_exactly(&seen, 10).await;
    arbiter.stop();
}

#[actix_rt::test]
async fn a_full_backpressure_subscriber_on_another_arbiter_is_held_past_its_bound_and_loses_nothing()
 {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (open, gate) = oneshot::channel();
    let spec = RemoteSpec {
        capacity: Some(1),
        gate: Some(gate),
        ..RemoteSpec::default()
    };
    let (_, seen) = remote(&router, &arbiter, spec).await;
    let counted = Arc::new(Counted::default());
    let mut report = DispatchReport::gathering(counted.clone());

    let mut sent = 0;
    let mut turns = 0;
    while !report.has_blocked() {
        assert!(turns < 100, "never held: {report:?}");
        for _ in 0..256 {
            tick(&router, sent, &mut report);
            sent += 1;
        }
        report.flush_batches();
        turns += 1;
    }
    assert!(
        sent as usize > RELAY_CAP,
        "bounded, and not tiny: held after {sent}"
    );
    // Later turns wait behind the held one.
    for _ in 0..256 {
        tick(&router, sent, &mut report);
        sent += 1;
    }
    report.flush_batches();
    assert_eq!(report.held(), 2, "{report:?}");

    open.send(()).unwrap();
    std::future::poll_fn(|cx| report.poll_unblocked(cx)).await;
    let total = sent as usize;
    assert_eq!(
        seen.wait_for(total).await,
        ticks(0..sent),
        "in order, all of it"
    );
    assert_eq!(counted.wait_until(|d, _| d >= sent).await, (sent, 0));
    settle_and_check_exactly(&seen, total).await;
    arbiter.stop();
}

#[actix_rt::test]
async fn a_stuck_subscriber_on_another_arbiter_holds_up_only_the_endpoint_that_feeds_it() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (_never_opened, gate) = oneshot::channel();
    let stuck = RemoteSpec {
        capacity: Some(1),
        gate: Some(gate),
        only_from: Some("stuck"),
        ..RemoteSpec::default()
    };
    let (_, stuck_seen) = remote(&router, &arbiter, stuck).await;
    let (_, seen) = remote(&router, &arbiter, RemoteSpec::default()).await;
    let counted = Arc::new(Counted::default());
    // Two connections on this thread: one feeds both subscribers, one only the healthy one.
    let mut feeding_it = DispatchReport::gathering(counted.clone());
    let mut other = DispatchReport::gathering(counted.clone());

    let mut turns = 0;
    while !feeding_it.has_blocked() {
        assert!(turns < 200, "never held: {feeding_it:?}");
        for seq in turns * 128..(turns + 1) * 128 {
            tick_from("stuck", &router, seq, &mut feeding_it);
        }
        feeding_it.flush_batches();
        turns += 1;
    }
    // The healthy subscriber waits for the stuck one only for the endpoint they share, as
    // with a connection paused by a full subscriber.
    const TURNS: u64 = 20;
    for turn in 0..TURNS {
        for seq in turn * 128..(turn + 1) * 128 {
            tick_from("free", &router, seq, &mut other);
        }
        other.flush_batches();
    }
    assert!(!other.has_blocked());
    let total = TURNS * 128;
    let got = seen.wait_for_from("free", total as usize).await;
    assert_eq!(
        got,
        ticks(0..total),
        "every turn of the other endpoint, in order"
    );
    assert!(stuck_seen.snapshot().is_empty());

    // Giving up what was held (a connection does after `max_stall`, and counts the result as
    // dropped) says how many deliveries that was, and counts nothing twice.
    let held = feeding_it.held();
    assert_eq!(
        feeding_it.drop_held(),
        held * 256,
        "{held} hand-overs of two parts of 128"
    );
    assert!(!feeding_it.has_blocked());
    assert_eq!(counted.get().1, 0, "not also counted by the relay");
    arbiter.stop();
}

#[actix_rt::test]
async fn events_from_another_report_on_the_same_thread_stay_in_order_with_relayed_messages() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let spec = RemoteSpec {
        notes: true,
        ..RemoteSpec::default()
    };
    let (_, seen) = remote(&router, &arbiter, spec).await;
    let counted = Arc::new(Counted::default());
    // A connection's report and, beside it on the same thread, its supervisor's.
    let mut connection = DispatchReport::gathering(counted);
    let mut supervisor = DispatchReport::default();

    let table = router.table();
    table.publish(&name("ex"), Note("live"), &mut supervisor);
    for seq in 0..20 {
        tick(&router, seq, &mut connection);
    }
    connection.flush_batches();
    table.publish(&name("ex"), Note("backoff"), &mut supervisor);

    let mut expected = vec!["note live".to_owned()];
    expected.extend(ticks(0..20));
    expected.push("note backoff".to_owned());
    assert_eq!(seen.wait_for(22).await, expected);
    arbiter.stop();
}

#[actix_rt::test]
async fn a_subscriber_of_messages_and_events_sees_them_in_order_while_its_mailbox_is_full() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let (open, gate) = oneshot::channel();
    let spec = RemoteSpec {
        capacity: Some(1),
        gate: Some(gate),
        notes: true,
        ..RemoteSpec::default()
    };
    let (_, seen) = remote(&router, &arbiter, spec).await;
    let counted = Arc::new(Counted::default());
    let mut connection = DispatchReport::gathering(counted.clone());
    let mut supervisor = DispatchReport::default();

    // The first turn fills the closed mailbox; the next ones wait on its arbiter.
    for turn in 0..4 {
        for seq in turn * 32..(turn + 1) * 32 {
            tick(&router, seq, &mut connection);
        }
        connection.flush_batches();
    }
    router
        .table()
        .publish(&name("ex"), Note("closed"), &mut supervisor);
    // The note reached the arbiter after every tick; let it get there before the gate opens.
    counted.wait_until(|d, _| d >= 32).await;
    open.send(()).unwrap();

    let mut expected = ticks(0..128);
    expected.push("note closed".to_owned());
    assert_eq!(seen.wait_for(129).await, expected);
    arbiter.stop();
}

#[actix_rt::test]
async fn a_subscriber_that_stopped_on_another_arbiter_is_reported_closed_once() {
    let router = Router::new();
    let arbiter = Arbiter::new();
    let stopping = RemoteSpec {
        stop_on_first: true,
        ..RemoteSpec::default()
    };
    let (gone, gone_seen) = remote(&router, &arbiter, stopping).await;
    let (_, seen) = remote(&router, &arbiter, RemoteSpec::default()).await;
    let counted = Arc::new(Counted::default());
    let mut report = DispatchReport::gathering(counted.clone());

    tick(&router, 0, &mut report);
    report.flush_batches();
    assert_eq!(gone_seen.wait_for(2).await, ["tick 0", "stopped"]);
    tick(&router, 1, &mut report);
    report.flush_batches();
    // Both parts travelled in one parcel, the stopped subscriber's first.
    assert_eq!(seen.wait_for(2).await, ticks(0..2));
    report.flush_batches();
    assert_eq!(report.closed, vec![gone]);
    report.closed.clear();

    tick(&router, 2, &mut report);
    report.flush_batches();
    assert_eq!(seen.wait_for(3).await, ticks(0..3));
    report.flush_batches();
    assert!(report.closed.is_empty(), "reported once");
    assert_eq!(
        counted.get().0,
        4,
        "three to the live one, one to the stopped one"
    );
    arbiter.stop();
}
