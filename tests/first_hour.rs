//! What a new user does in the first hour, from the README's order: load, subscribe, start,
//! run until a signal; closures and streams as subscribers.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::cell::RefCell;
use std::rc::Rc;

use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd_testkit::{Recorder, Step, TestServer};

#[derive(Debug, Deserialize)]
struct Tick {
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

fn seqs(deliveries: &[Delivery<Tick>]) -> Vec<u64> {
    deliveries.iter().map(|d| d.message.seq).collect()
}

#[actix_rt::test]
async fn a_server_that_pushes_on_connect_loses_nothing_to_a_subscriber_added_before_start() {
    // A snapshot of ten messages right after the handshake, then silence.
    let server = TestServer::start(vec![Step::stream(&["tick"], 10), Step::Pause(WAIT)]).unwrap();
    let file = TempConfig::new(
        "toml",
        &format!(
            "[herd]\nworkers = 2\n\n[endpoints.feed]\nurl = \"{}\"\n",
            server.url("/feed")
        ),
    );
    let herd = Herd::from_config_file(file.path()).unwrap();
    // Held: the status says so from the outset, and a send is queued.
    let status = herd.endpoint_status("feed").unwrap();
    assert_eq!(status.state, EndpointState::Paused);
    assert_eq!(herd.send("feed", "hello").await.unwrap(), Submitted::Queued);
    assert!(!herd.is_started());

    let (ticks, seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.start();
    seen.wait_for_count(10, WAIT).await.unwrap();
    assert_eq!(seen.with(seqs), (0..10).collect::<Vec<_>>());
    let stats = herd.endpoint_status("feed").unwrap().stats;
    assert_eq!(stats.dead_letters, 0);
    // What was sent while held went out after the open.
    let received = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("hello"));
    herd.shutdown("test over", WAIT).await;
}

#[actix_rt::test]
async fn an_endpoint_paused_before_start_stays_paused_even_across_a_restart() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let file = TempConfig::new(
        "toml",
        &format!(
            "[endpoints.kept]\nurl = \"{}\"\n[endpoints.later]\nurl = \"{}\"\n",
            server.url("/kept"),
            server.url("/later")
        ),
    );
    let herd = Herd::from_config_file(file.path()).unwrap();
    let states = states(&herd);
    herd.pause("later").unwrap();
    // A restart before the start keeps the owner's pause.
    herd.restart("later").await.unwrap();
    herd.start();
    states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|s| s.endpoint == "kept" && s.message.state == EndpointState::Live)
                .then_some(())
        })
        .await
        .unwrap();
    assert_eq!(
        herd.endpoint_status("later").unwrap().state,
        EndpointState::Paused
    );
    assert!(
        server
            .connections()
            .iter()
            .all(|c| c.path.as_deref() != Some("/later"))
    );
    herd.shutdown("test over", WAIT).await;
}

#[actix_rt::test]
async fn run_until_starts_the_herd_and_returns_the_shutdown_report() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 3), Step::Pause(WAIT)]).unwrap();
    let file = TempConfig::new(
        "toml",
        &format!("[endpoints.feed]\nurl = \"{}\"\n", server.url("/feed")),
    );
    let herd = Herd::from_config_file(file.path()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (third, third_seen) = tokio::sync::oneshot::channel::<()>();
    let mut third = Some(third);
    herd.on::<Tick, _>({
        let seen = Rc::clone(&seen);
        move |tick| {
            seen.borrow_mut().push(tick.message.seq);
            if tick.message.seq == 2
                && let Some(third) = third.take()
            {
                let _ = third.send(());
            }
        }
    })
    .unwrap();
    let running = actix_rt::spawn({
        let herd = herd.clone();
        async move {
            herd.run_until(
                async {
                    let _ = stopped.await;
                },
                WAIT,
            )
            .await
        }
    });
    third_seen.await.unwrap();
    assert_eq!(*seen.borrow(), [0, 1, 2]);
    stop.send(()).unwrap();
    let report = running.await.unwrap();
    assert!(report.timed_out.is_empty());
    assert_eq!(report.unsent_count(), 0);
    assert_eq!(report.to_string(), "nothing left unsent");
    assert!(herd.endpoints().is_empty());
    server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_closure_runs_for_every_delivery_and_may_keep_state() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 50), Step::Pause(WAIT)]).unwrap();
    let herd = Herd::new();
    let (done, all_seen) = tokio::sync::oneshot::channel::<u64>();
    let mut done = Some(done);
    let mut sum = 0;
    herd.on::<Tick, _>(move |tick| {
        sum += tick.message.seq;
        if tick.message.seq == 49
            && let Some(done) = done.take()
        {
            let _ = done.send(sum);
        }
    })
    .unwrap();
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    assert_eq!(all_seen.await.unwrap(), (0..50).sum::<u64>());
    herd.shutdown("test over", WAIT).await;
}

#[actix_rt::test]
async fn a_stream_with_room_for_four_yields_every_one_of_thousands_of_deliveries_in_order() {
    const COUNT: u64 = 2_000;
    let server =
        TestServer::start(vec![Step::stream(&["tick"], COUNT), Step::Pause(WAIT)]).unwrap();
    let file = TempConfig::new(
        "toml",
        &format!(
            "[herd]\nworkers = 2\n\n[endpoints.feed]\nurl = \"{}\"\n",
            server.url("/feed")
        ),
    );
    let herd = Herd::from_config_file(file.path()).unwrap();
    // Room for 4: the rest wait in the socket, the feed's reads paused.
    let mut ticks = herd
        .stream_with::<Tick>(SubscribeOptions::new(), 4)
        .unwrap();
    herd.start();
    let mut seen = Vec::new();
    while seen.len() < COUNT as usize {
        let tick = tokio::time::timeout(WAIT, ticks.next())
            .await
            .expect("a tick in time")
            .expect("the stream stays open");
        seen.push(tick.message.seq);
    }
    assert_eq!(seen, (0..COUNT).collect::<Vec<_>>());
    let stats = herd.endpoint_status("feed").unwrap().stats;
    assert_eq!(stats.dropped_full, 0);
    assert_eq!(stats.dead_letters, 0);
    herd.shutdown("test over", WAIT).await;
}

#[actix_rt::test]
async fn dropping_a_stream_ends_its_subscription() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1), Step::Pause(WAIT)]).unwrap();
    let herd = Herd::new();
    let mut ticks = herd.stream::<Tick>().unwrap();
    let (kept, kept_seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(kept.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    let first = tokio::time::timeout(WAIT, ticks.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.message.seq, 0);
    assert_eq!(herd.router().subscription_count(), 2);
    drop(ticks);
    assert_eq!(
        herd.router().subscription_count(),
        1,
        "only the recorder is left"
    );
    kept_seen.wait_for_count(1, WAIT).await.unwrap();
    herd.shutdown("test over", WAIT).await;
}

#[actix_rt::test]
async fn events_can_be_taken_by_a_closure_or_a_stream() {
    let server = TestServer::start(vec![Step::Pause(WAIT)]).unwrap();
    let herd = Herd::new();
    let mut states = herd.event_stream::<StateEvent>().unwrap();
    let (live, closure_saw_live) = tokio::sync::oneshot::channel::<()>();
    let mut live = Some(live);
    herd.on_event::<StateEvent, _>(move |event| {
        if event.message.state == EndpointState::Live
            && let Some(live) = live.take()
        {
            let _ = live.send(());
        }
    })
    .unwrap();
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    loop {
        let event = tokio::time::timeout(WAIT, states.next())
            .await
            .unwrap()
            .unwrap();
        if event.message.state == EndpointState::Live {
            break;
        }
    }
    tokio::time::timeout(WAIT, closure_saw_live)
        .await
        .unwrap()
        .unwrap();
    herd.shutdown("test over", WAIT).await;
}
