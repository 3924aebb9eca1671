//! `/api/events` as a dashboard reads it: stats first, then every state change, Ping answered.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::time::Instant;

use awc::ws::{Frame, Message};
use bytes::Bytes;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use wsherd_server::ServerOptions;

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// The next text frame that parses as JSON and satisfies `wanted`; other frames are skipped.
async fn line_until(socket: &mut Socket, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "never saw {what}");
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => {
                let line: Value = serde_json::from_slice(&text).unwrap();
                if wanted(&line) {
                    return line;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the stream ended before {what}: {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn the_event_stream_starts_with_stats_and_then_sends_every_state_change_as_it_happens() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let (_, mut socket) = awc::Client::default()
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    let first = line_until(&mut socket, "the first stats line", |_| true).await;
    assert_eq!(first["event"], "stats", "{first}");
    assert_eq!(first["endpoint"], "feed");
    assert_eq!(first["state"], "live");
    for field in [
        "ts",
        "attempt",
        "rtt_ms",
        "queue_depth",
        "messages_in",
        "bytes_in",
        "messages_out",
        "dead_letters",
        "reconnects",
    ] {
        assert!(first.get(field).is_some(), "{field}: {first}");
    }
    fixture.post("/api/endpoints/feed/pause", "").await;
    let paused = line_until(&mut socket, "paused", |l| l["event"] == "state").await;
    assert_eq!(paused["endpoint"], "feed");
    assert_eq!(paused["state"], "paused");
    assert!(paused["ts"].as_str().unwrap().ends_with('Z'));
    // Within a second, the figures that changed: one stats line.
    let stats = line_until(&mut socket, "stats while paused", |l| l["event"] == "stats").await;
    assert_eq!(stats["state"], "paused", "{stats}");
    fixture.post("/api/endpoints/feed/resume", "").await;
    let connecting = line_until(&mut socket, "connecting", |l| l["event"] == "state").await;
    assert_eq!(connecting["state"], "connecting");
    assert_eq!(connecting["attempt"], 1);
    line_until(&mut socket, "live again", |l| {
        l["event"] == "state" && l["state"] == "live"
    })
    .await;
    // A Ping is answered with its payload; a Close ends the stream.
    socket
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline);
        match socket.next().await {
            Some(Ok(Frame::Pong(data))) => {
                assert_eq!(&data[..], b"hi");
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("no Pong: {other:?}"),
        }
    }
    socket.send(Message::Close(None)).await.unwrap();
    loop {
        match socket.next().await {
            Some(Ok(Frame::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(error)) => panic!("{error}"),
        }
    }
}

#[actix_rt::test]
async fn a_client_frame_over_the_cap_closes_the_stream_with_1009() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let (_, mut socket) = awc::Client::default()
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    socket
        .send(Message::Text("x".repeat(64 << 10).into()))
        .await
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline);
        match socket.next().await {
            Some(Ok(Frame::Close(Some(reason)))) => {
                assert_eq!(u16::from(reason.code), 1009);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("no Close: {other:?}"),
        }
    }
    assert_eq!(
        fixture.herd.endpoint_status("feed").unwrap().state,
        wsherd::EndpointState::Live
    );
}

#[actix_rt::test]
async fn stats_of_many_endpoints_changing_at_once_never_spend_a_clients_budget() {
    use wsherd::prelude::*;
    use wsherd_server::EventLimits;
    use wsherd_testkit::{Step, TestServer};
    const ENDPOINTS: usize = 50;
    // A budget that holds not even two state lines: stats lines must not count against it.
    let limits = EventLimits {
        buffer: 256,
        ..EventLimits::default()
    };
    let fixture = Fixture::start(vec![], ServerOptions::new().event_limits(limits)).await;
    let echo = TestServer::start(vec![Step::Echo(true)]).unwrap();
    for i in 0..ENDPOINTS {
        fixture
            .herd
            .add_endpoint(
                &format!("e{i}"),
                EndpointSpec::new(ConnectionConfig::new(echo.url("/"))),
            )
            .unwrap();
    }
    for i in 0..ENDPOINTS {
        wait_for_state(&fixture.states, &format!("e{i}"), "live", 1).await;
    }
    let (_, mut socket) = awc::Client::default()
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    // Every endpoint receives one message: all their figures change in the same second.
    for i in 0..ENDPOINTS {
        fixture.herd.send(&format!("e{i}"), "ping").await.unwrap();
    }
    let mut echoed = std::collections::BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while echoed.len() < ENDPOINTS {
        assert!(Instant::now() < deadline, "stats seen for {echoed:?}");
        let line = line_until(&mut socket, "a stats line", |l| l["event"] == "stats").await;
        if line["messages_in"] == 1 {
            echoed.insert(line["endpoint"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(fixture.options.event_clients_cut(), 0);
}
