//! Bad input: huge and malformed bodies, long paths, a thousand scrapes at once, event clients
//! that never read. Each gets a clear 4xx answer or a cut; nothing panics, memory stays
//! bounded and the herd's endpoints do not notice.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use common::*;
use serde_json::Value;
use wsherd::prelude::*;
use wsherd_router::DispatchReport;
use wsherd_server::{EventLimits, ServerOptions};

/// The endpoint went on as if nothing happened: live, never reconnected.
fn untouched(fixture: &Fixture) {
    let status = fixture.herd.endpoint_status("feed").unwrap();
    assert_eq!(status.state, EndpointState::Live);
    assert_eq!(status.reconnects, 0);
    assert_eq!(fixture.feed.connections().len(), 1);
}

#[actix_rt::test]
async fn huge_and_malformed_bodies_are_refused_with_a_json_4xx_and_the_endpoint_is_untouched() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let path = "/api/endpoints/feed/pause";
    let refused = |status: StatusCode, error: &Value, expected: StatusCode, what: &str| {
        assert_eq!(status, expected, "{what}: {error}");
        assert!(error["error"].is_string(), "{what}: {error}");
    };
    let over = "x".repeat(8 << 10);
    let (status, error) = fixture.post(path, &over).await;
    refused(status, &error, StatusCode::PAYLOAD_TOO_LARGE, "8 KiB");
    assert_eq!(error["error"], "the body is larger than 4096 bytes");
    // Without a length, chunk by chunk: refused as soon as the cap is passed.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 2 << 10]))),
    );
    let mut response = awc::Client::default()
        .post(fixture.url(path))
        .send_stream(chunks)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let _ = response.body().await;
    for (body, what) in [
        ("not json", "not JSON"),
        ("[1, 2]", "a list"),
        ("{\"reason\": 5}", "a reason that is no string"),
        ("{\"nope\": 1}", "an unknown field"),
        ("{\"reason\": \"unterminated", "cut short"),
    ] {
        let (status, error) = fixture.post(path, body).await;
        refused(status, &error, StatusCode::BAD_REQUEST, what);
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("the body must be empty or a JSON object"),
            "{error}"
        );
    }
    // 16 MiB: a 413 at once, or the connection cut while the rest is still being sent.
    let huge = "y".repeat(16 << 20);
    match awc::Client::default()
        .post(fixture.url(path))
        .timeout(WAIT)
        .send_body(huge)
        .await
    {
        Ok(response) => assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
    // A path of 10,000 characters: a 404 that quotes only the start of it.
    let long = "a".repeat(10_000);
    let (status, error) = fixture.get(&format!("/api/status/{long}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error["error"].as_str().unwrap().len() < 100, "{error}");
    // None of it paused the endpoint, and the server still answers.
    assert_eq!(fixture.get("/healthz").await.0, StatusCode::OK);
    untouched(&fixture);
}

#[actix_rt::test]
async fn a_thousand_scrapes_at_once_over_fifty_connections_are_all_answered_and_the_endpoint_stays_live()
 {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(50))
        .timeout(WAIT)
        .finish();
    let scrapes = (0..1_000).map(|_| {
        let request = client.get(fixture.url("/metrics"));
        async move {
            let mut response = request.send().await.map_err(|e| e.to_string())?;
            let body = response.body().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((response.status(), body.len()))
        }
    });
    let answers = futures_util::future::join_all(scrapes).await;
    let failed: Vec<_> = answers
        .iter()
        .filter(|answer| !matches!(answer, Ok((StatusCode::OK, len)) if *len > 0))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(fixture.get("/healthz").await.0, StatusCode::OK);
    untouched(&fixture);
}

fn addr(fixture: &Fixture) -> SocketAddr {
    fixture.server.addrs()[0]
}

/// Runs blocking socket work on a thread of its own: this arbiter runs the server's start
/// and the herd's endpoint, which must not wait for it.
async fn off_this_thread<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    actix_rt::task::spawn_blocking(work).await.unwrap()
}

/// An `/api/events` client with a tiny receive buffer that reads the upgrade and then nothing.
fn client_that_never_reads(addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(
            b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    // The answer's head, byte by byte, so that nothing after it is read.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Publishes state events for `feed` until the server has cut a client.
async fn flood_until_cut(fixture: &Fixture) -> u64 {
    let name = EndpointName::new("feed").unwrap();
    let deadline = Instant::now() + WAIT;
    let mut published = 0u64;
    while fixture.options.event_clients_cut() == 0 {
        assert!(
            Instant::now() < deadline,
            "no client was cut after {published} events"
        );
        let table = fixture.herd.router().table();
        let mut report = DispatchReport::default();
        for _ in 0..200 {
            table.publish(&name, StateEvent::new(EndpointState::Live), &mut report);
        }
        published += 200;
        // Let this arbiter's own work (the endpoint, the recorders) run between bursts.
        actix_rt::task::yield_now().await;
    }
    published
}

/// Reads what the cut client's socket still holds: it ends (EOF or reset), it does not hang.
fn ends(mut stream: TcpStream) -> usize {
    let mut total = 0;
    let mut buffer = [0u8; 64 << 10];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return total,
            Ok(n) => total += n,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the cut connection stayed open after {total} bytes")
            }
            Err(_) => return total,
        }
    }
}

/// Waits until the server counts no event client any more (it counts the one it cut until
/// its connection is gone).
async fn until_no_event_clients(fixture: &Fixture) {
    let deadline = Instant::now() + WAIT;
    while fixture.options.event_clients() > 0 {
        assert!(Instant::now() < deadline, "the cut client is still counted");
        // Each answer is a round trip through the server's worker, where the count drops.
        let _ = fixture.get("/healthz").await;
    }
}

async fn a_new_events_client_gets_events(fixture: &Fixture) {
    use futures_util::StreamExt;
    let (_, mut socket) = awc::Client::default()
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    // The first line is a stats line for every endpoint.
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline);
        match socket.next().await {
            Some(Ok(awc::ws::Frame::Text(text))) => {
                let line: Value = serde_json::from_slice(&text).unwrap();
                if line["event"] == "stats" && line["endpoint"] == "feed" {
                    return;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the stream ended: {other:?}"),
        }
    }
}

#[actix_rt::test]
async fn an_events_client_that_never_reads_is_cut_when_its_buffer_is_full_and_nobody_else_notices()
{
    let limits = EventLimits {
        buffer: 64 << 10,
        stall_timeout: Duration::from_secs(3600),
        ..EventLimits::default()
    };
    let fixture = Fixture::start(vec![], ServerOptions::new().event_limits(limits)).await;
    let at = addr(&fixture);
    let silent = off_this_thread(move || client_that_never_reads(at)).await;
    let published = flood_until_cut(&fixture).await;
    assert_eq!(
        fixture.options.event_clients_cut(),
        1,
        "after {published} events"
    );
    let held = off_this_thread(move || ends(silent)).await;
    assert!(held < 16 << 20, "{held} bytes were on their way");
    until_no_event_clients(&fixture).await;
    a_new_events_client_gets_events(&fixture).await;
    assert_eq!(fixture.get("/healthz").await.0, StatusCode::OK);
    untouched(&fixture);
}

#[actix_rt::test]
async fn an_events_client_whose_lines_wait_past_the_stall_timeout_is_cut() {
    let limits = EventLimits {
        buffer: 256 << 20,
        stall_timeout: Duration::from_millis(300),
        ..EventLimits::default()
    };
    let fixture = Fixture::start(vec![], ServerOptions::new().event_limits(limits)).await;
    let at = addr(&fixture);
    let silent = off_this_thread(move || client_that_never_reads(at)).await;
    let published = flood_until_cut(&fixture).await;
    let held = off_this_thread(move || ends(silent)).await;
    // The kernel's buffers held what the client never read; the server dropped the rest.
    assert!(
        held < 16 << 20,
        "{held} bytes were on their way after {published} events"
    );
    until_no_event_clients(&fixture).await;
    let (_, metrics) = fixture.get("/metrics").await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wsherd_events_clients_cut_total 1"),
        "{metrics}"
    );
    untouched(&fixture);
}

#[actix_rt::test]
async fn more_event_clients_than_the_limit_are_answered_503() {
    let limits = EventLimits {
        max_clients: 2,
        ..EventLimits::default()
    };
    let fixture = Fixture::start(vec![], ServerOptions::new().event_limits(limits)).await;
    let client = awc::Client::default();
    let first = client
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    let second = client
        .ws(fixture.url("/api/events"))
        .connect()
        .await
        .unwrap();
    let third = client.ws(fixture.url("/api/events")).connect().await;
    assert!(
        matches!(third, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s == StatusCode::SERVICE_UNAVAILABLE)
    );
    drop((first, second));
    until_no_event_clients(&fixture).await;
    let again = client.ws(fixture.url("/api/events")).connect().await;
    assert!(again.is_ok(), "a slot is free again");
}
