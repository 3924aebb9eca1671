//! Subscribers through their inbox: one handler call per message, parcels per turn, bounded.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use tokio::sync::{Notify, oneshot};
use wsherd_protocol::KindRule;

use super::name;
use super::relay::{Tick, WAIT};
use crate::{Delivery, DispatchReport, Overflow, Router, SubscribeOptions, SubscriptionId};

/// The sequence numbers an actor handled, in order, and a way to wait for more.
#[derive(Default)]
struct Handled {
    seqs: Mutex<Vec<u64>>,
    changed: Notify,
}

impl Handled {
    fn seqs(&self) -> Vec<u64> {
        self.seqs.lock().unwrap().clone()
    }

    async fn until(&self, count: usize) -> Vec<u64> {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                let changed = self.changed.notified();
                if self.seqs.lock().unwrap().len() >= count {
                    return;
                }
                changed.await;
            }
        })
        .await;
        assert!(waited.is_ok(), "only {:?} handled", self.seqs());
        self.seqs()
    }
}

/// Subscribes through its inbox when it starts; records each delivery's `seq`.
struct Taker {
    router: Router,
    options: SubscribeOptions,
    handled: Arc<Handled>,
    id: Option<oneshot::Sender<SubscriptionId>>,
    stopped: Option<oneshot::Sender<()>>,
    stop_at_once: bool,
}

impl Actor for Taker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let id = self
            .router
            .subscribe_in::<Tick, _>(ctx, self.options.clone());
        if let Some(tell) = self.id.take() {
            let _ = tell.send(id);
        }
        if self.stop_at_once {
            ctx.stop();
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(tell) = self.stopped.take() {
            let _ = tell.send(());
        }
    }
}

impl Handler<Delivery<Tick>> for Taker {
    type Result = ();
    fn handle(&mut self, tick: Delivery<Tick>, _: &mut Context<Self>) {
        assert_eq!(tick.endpoint, "ex");
        self.handled.seqs.lock().unwrap().push(tick.message.seq);
        self.handled.changed.notify_waiters();
    }
}

struct Started {
    addr: Addr<Taker>,
    handled: Arc<Handled>,
    id: SubscriptionId,
    stopped: oneshot::Receiver<()>,
}

async fn start(router: &Router, options: SubscribeOptions, stop_at_once: bool) -> Started {
    let handled = Arc::new(Handled::default());
    let (tell_id, id) = oneshot::channel();
    let (tell_stopped, stopped) = oneshot::channel();
    let addr = Taker {
        router: router.clone(),
        options,
        handled: Arc::clone(&handled),
        id: Some(tell_id),
        stopped: Some(tell_stopped),
        stop_at_once,
    }
    .start();
    let id = tokio::time::timeout(WAIT, id)
        .await
        .expect("the taker starts")
        .expect("the taker subscribes");
    Started {
        addr,
        handled,
        id,
        stopped,
    }
}

fn route_tick(router: &Router, seq: u64, report: &mut DispatchReport) {
    let text = format!(r#"{{"type":"tick","seq":{seq}}}"#);
    router
        .table()
        .route_text(&name("ex"), &KindRule::default(), text.as_bytes(), report);
}

#[actix_rt::test]
async fn an_inbox_subscriber_handles_each_message_in_order_once_the_turn_is_handed_over() {
    let router = Router::new();
    let taker = start(&router, SubscribeOptions::new(), false).await;
    let mut report = DispatchReport::default();
    for seq in 0..10 {
        route_tick(&router, seq, &mut report);
    }
    assert_eq!(report.pending_deliveries(), 10, "gathered for the turn");
    assert_eq!(report.delivered, 0);
    report.flush_batches();
    assert_eq!(report.delivered, 10, "{report:?}");
    assert_eq!(taker.handled.until(10).await, (0..10).collect::<Vec<_>>());

    // The next turn comes after it, in order.
    for seq in 10..15 {
        route_tick(&router, seq, &mut report);
    }
    report.flush_batches();
    assert_eq!(taker.handled.until(15).await, (0..15).collect::<Vec<_>>());
    assert_eq!(report.delivered, 15);
}

#[actix_rt::test]
async fn a_full_inbox_drops_under_the_drop_policy_and_counts_what_it_dropped() {
    let router = Router::new();
    let options = SubscribeOptions::new()
        .overflow(Overflow::Drop)
        .inbox_capacity(4);
    let taker = start(&router, options, false).await;
    let mut report = DispatchReport::default();
    // One turn per message, without letting the actor run: the fifth finds the inbox full.
    for seq in 0..10 {
        route_tick(&router, seq, &mut report);
        report.flush_batches();
    }
    assert_eq!(report.delivered, 4, "{report:?}");
    assert_eq!(report.dropped_full, 6);
    assert!(!report.has_blocked(), "dropping never waits");
    assert_eq!(taker.handled.until(4).await, vec![0, 1, 2, 3]);

    // Handled, they leave room: a turn larger than the capacity still goes into the emptied
    // inbox, whole.
    for seq in 10..20 {
        route_tick(&router, seq, &mut report);
    }
    report.flush_batches();
    assert_eq!(report.delivered, 14, "{report:?}");
    assert_eq!(
        taker.handled.until(14).await,
        [0, 1, 2, 3].into_iter().chain(10..20).collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn a_full_inbox_holds_its_connection_under_backpressure_and_loses_nothing() {
    let router = Router::new();
    let options = SubscribeOptions::new().inbox_capacity(4);
    let taker = start(&router, options, false).await;
    let mut waits = 0;
    let mut delivered = 0;
    for seq in 0..100 {
        let mut report = DispatchReport::default();
        route_tick(&router, seq, &mut report);
        report.flush_batches();
        delivered += report.delivered;
        // What a connection does: reads nothing more until the held parcel went in.
        if let Some(wait) = report.take_backpressure() {
            waits += 1;
            tokio::time::timeout(WAIT, wait)
                .await
                .expect("the inbox makes room");
        }
    }
    assert!(waits > 0, "a capacity of 4 must fill up");
    assert_eq!(delivered, 100);
    assert_eq!(taker.handled.until(100).await, (0..100).collect::<Vec<_>>());
}

#[actix_rt::test]
async fn a_stopped_actor_closes_its_inbox_and_is_reported_once() {
    let router = Router::new();
    let mut taker = start(&router, SubscribeOptions::new(), true).await;
    tokio::time::timeout(WAIT, &mut taker.stopped)
        .await
        .expect("the taker stops")
        .expect("it says so");
    let mut first = DispatchReport::default();
    route_tick(&router, 0, &mut first);
    first.flush_batches();
    assert_eq!(first.closed, vec![taker.id]);
    assert_eq!(first.delivered, 0);

    let mut second = DispatchReport::default();
    route_tick(&router, 1, &mut second);
    second.flush_batches();
    assert!(second.closed.is_empty(), "{second:?}");
    assert_eq!(second.unrouted, 1, "a closed inbox wants nothing");
}

#[actix_rt::test]
async fn an_unsubscribed_inbox_ends_so_its_actor_can_stop() {
    let router = Router::new();
    let mut taker = start(&router, SubscribeOptions::new(), false).await;
    let mut report = DispatchReport::default();
    route_tick(&router, 0, &mut report);
    report.flush_batches();
    assert_eq!(taker.handled.until(1).await, vec![0]);

    // With no address left, only the inbox's stream keeps the actor running.
    drop(taker.addr);
    assert!(router.unsubscribe(taker.id));
    drop(report);
    tokio::time::timeout(WAIT, &mut taker.stopped)
        .await
        .expect("the actor stops once its inbox ended")
        .expect("it says so");
}

#[actix_rt::test]
async fn a_connection_on_another_thread_hands_its_turns_over_and_waits_for_room() {
    let router = Router::new();
    let options = SubscribeOptions::new().inbox_capacity(16);
    let taker = start(&router, options, false).await;
    let producer = router.clone();
    let (done, finished) = oneshot::channel();
    let (second_flushed, second_turn) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let system = actix_rt::System::new();
        let outcome = system.block_on(async move {
            let mut delivered = 0;
            let mut waits = 0;
            for turn in 0..100u64 {
                let mut report = DispatchReport::default();
                for seq in turn * 10..turn * 10 + 10 {
                    route_tick(&producer, seq, &mut report);
                }
                report.flush_batches();
                delivered += report.delivered;
                if turn == 1 {
                    let _ = second_flushed.send(());
                }
                if let Some(wait) = report.take_backpressure() {
                    waits += 1;
                    if tokio::time::timeout(WAIT, wait).await.is_err() {
                        return Err(format!("no room after {delivered} deliveries"));
                    }
                }
            }
            Ok((delivered, waits))
        });
        let _ = done.send(outcome);
    });
    // The actor's thread (this one) is held until the second turn was flushed, so the first
    // turn is still in the inbox then: the second must wait for room.
    second_turn
        .recv_timeout(WAIT)
        .expect("the producer flushes its second turn");
    let (delivered, waits) = tokio::time::timeout(WAIT, finished)
        .await
        .expect("the producer finishes")
        .expect("it reports")
        .expect("it never waits forever");
    assert_eq!(delivered, 1000);
    // The first turn of ten went into the empty inbox of 16; the second would have made 20.
    assert!(waits > 0, "turns of 10 into an inbox of 16 must wait");
    assert_eq!(
        taker.handled.until(1000).await,
        (0..1000).collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn a_parcel_held_for_room_still_arrives_when_its_subscription_ends_meanwhile() {
    let router = Router::new();
    let taker = start(&router, SubscribeOptions::new().inbox_capacity(1), false).await;
    let mut report = DispatchReport::default();
    route_tick(&router, 0, &mut report);
    report.flush_batches();
    route_tick(&router, 1, &mut report);
    report.flush_batches();
    assert_eq!(report.delivered, 2, "one in, one held: both counted");
    let wait = report
        .take_backpressure()
        .expect("the second waits for room");
    // The subscription ends while its second parcel waits: it was counted, so it must come.
    assert!(router.unsubscribe(taker.id));
    drop(report);
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("the inbox makes room");
    assert_eq!(taker.handled.until(2).await, vec![0, 1]);
}
