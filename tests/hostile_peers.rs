//! Peers that break the protocol: every one ends in a clear reason, never a panic, and memory
//! stays bounded.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::time::Duration;

use common::*;
use wsherd::prelude::*;
use wsherd::{DeadLetterReason, DecodeStage, InvalidUtf8Policy, Rejected, SendError};
use wsherd_testkit::{RawServer, RawStep, Recorder, Watched, frame, frame_with};

#[derive(Debug, serde::Deserialize)]
struct Trade {
    seq: u64,
}
wsherd::inbound!(Trade => "trade");

async fn end_reason_for(
    script: Vec<RawStep>,
    config: impl Fn(String) -> ConnectionConfig,
) -> EndReason {
    let server = RawServer::start(script).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    // The scripted peers never answer our Close: do not wait the default 5 s for it.
    let config = config(server.url()).close_timeout(Duration::from_millis(200));
    herd.add_endpoint("hostile", config).unwrap();
    closed(&events, "hostile").await
}

#[actix_rt::test]
async fn invalid_utf8_fails_the_connection_with_1007_by_default() {
    // RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection; a valid frame after
    // it is never delivered. The broken one is reassembled from fragments the second time.
    let mut fragmented = frame_with(0x01, None, &[b'"', 0xE2, 0x82]);
    fragmented.extend(frame_with(0x80, None, b"x\""));
    for broken in [frame(0x1, &[b'"', 0xFF, 0xFE, b'"']), fragmented] {
        let server = RawServer::start(vec![
            RawStep::Handshake,
            RawStep::Write(broken),
            RawStep::Write(frame(0x1, br#"{"type":"trade","seq":1}"#)),
            RawStep::Drain,
        ])
        .unwrap();
        let herd = Herd::new();
        let events = events(&herd);
        let (trades, trades_seen) = Recorder::<Delivery<Trade>>::start();
        herd.subscribe(trades.recipient());
        herd.add_endpoint(
            "strict",
            ConnectionConfig::new(server.url()).close_timeout(Duration::from_millis(200)),
        )
        .unwrap();
        let reason = closed(&events, "strict").await;
        assert!(
            matches!(reason, EndReason::InvalidUtf8 { valid_up_to: 1, .. }),
            "{reason:?}"
        );
        assert_eq!(reason.close_code(), Some(CloseCode::INVALID_PAYLOAD));
        let told = server
            .wait_for(WAIT, |logs| logs.first().and_then(|log| log.close_code()))
            .await
            .unwrap();
        assert_eq!(told, 1007, "the peer is told why");
        assert_eq!(
            trades_seen.len(),
            0,
            "nothing after the broken frame is delivered"
        );
        herd.remove_endpoint("strict", CloseCode::NORMAL, "done")
            .await
            .unwrap();
    }
}

#[actix_rt::test]
async fn invalid_utf8_is_a_dead_letter_and_the_stream_goes_on_when_the_endpoint_opts_in() {
    let server = RawServer::start(vec![
        RawStep::Handshake,
        RawStep::Write(frame(0x1, &[b'"', 0xFF, 0xFE, b'"'])),
        RawStep::Write(frame(0x1, br#"{"type":"trade","seq":1}"#)),
        RawStep::Hold,
    ])
    .unwrap();
    let herd = Herd::new();
    let (trades, trades_seen) = Recorder::<Delivery<Trade>>::start();
    let (dead, dead_seen) = Recorder::<Delivery<DeadLetter>>::start();
    herd.subscribe(trades.recipient());
    herd.subscribe_events(dead.recipient());
    herd.add_endpoint(
        "raw",
        ConnectionConfig::new(server.url()).invalid_utf8(InvalidUtf8Policy::DeadLetter),
    )
    .unwrap();
    trades_seen.wait_for_count(1, WAIT).await.unwrap();
    dead_seen.wait_for_count(1, WAIT).await.unwrap();
    assert_eq!(trades_seen.with(|s| s[0].message.seq), 1);
    assert!(dead_seen.with(|s| matches!(
        &s[0].message.reason,
        DeadLetterReason::Rejected(error) if error.stage == DecodeStage::Utf8
    )));
    assert_eq!(
        herd.endpoint_status("raw").unwrap().state,
        EndpointState::Live
    );
}

#[actix_rt::test]
async fn with_usize_max_caps_every_frame_still_arrives() {
    // A 3 MiB frame (64-bit length) over the 1 MiB the codec reserves ahead, cut into slow
    // pieces, and a fragmented message: no cap arithmetic may overflow.
    let big = format!(
        r#"{{"type":"trade","seq":2,"pad":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let mut fragmented = frame_with(0x01, None, br#"{"type":"trade","#);
    fragmented.extend(frame_with(0x80, None, br#""seq":3}"#));
    let server = RawServer::start(vec![
        RawStep::Handshake,
        RawStep::Write(frame(0x1, br#"{"type":"trade","seq":1}"#)),
        RawStep::Write(frame(0x1, big.as_bytes())),
        RawStep::Write(fragmented),
        RawStep::Hold,
    ])
    .unwrap();
    let herd = Herd::new();
    let (trades, seen) = Recorder::<Delivery<Trade>>::start();
    herd.subscribe(trades.recipient());
    herd.add_endpoint(
        "uncapped",
        ConnectionConfig::new(server.url())
            .max_frame_size(usize::MAX)
            .max_message_size(usize::MAX),
    )
    .unwrap();
    seen.wait_for_count(3, WAIT).await.unwrap();
    assert_eq!(
        seen.with(|s| s.iter().map(|d| d.message.seq).collect::<Vec<_>>()),
        [1, 2, 3]
    );
    assert_eq!(
        herd.endpoint_status("uncapped").unwrap().state,
        EndpointState::Live
    );
}

#[actix_rt::test]
async fn masked_server_frame_is_a_protocol_error() {
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(frame_with(0x81, Some([9, 8, 7, 6]), b"{}")),
            RawStep::Drain,
        ],
        ConnectionConfig::new,
    )
    .await;
    assert!(matches!(reason, EndReason::Protocol { .. }), "{reason:?}");
    assert_eq!(reason.close_code(), Some(CloseCode::PROTOCOL));
}

#[actix_rt::test]
async fn reserved_opcode_is_a_protocol_error() {
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(frame_with(0x83, None, b"x")),
            RawStep::Drain,
        ],
        ConnectionConfig::new,
    )
    .await;
    assert!(matches!(reason, EndReason::Protocol { .. }), "{reason:?}");
}

#[actix_rt::test]
async fn a_2_pow_63_length_header_is_refused_before_any_allocation() {
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(1u64 << 63).to_be_bytes());
    let reason = end_reason_for(
        vec![RawStep::Handshake, RawStep::Write(header), RawStep::Drain],
        ConnectionConfig::new,
    )
    .await;
    assert!(
        matches!(
            reason,
            EndReason::FrameTooLarge { .. } | EndReason::Protocol { .. }
        ),
        "{reason:?}"
    );
}

#[actix_rt::test]
async fn a_frame_announced_over_the_cap_fails_before_it_arrives_whole() {
    // 4 MiB announced against the 1 MiB cap, then 2 MiB of it: the frame never completes, so
    // only the buffered size can tell, and it must, long before the peer stops sending.
    let mut header = vec![0x82, 127];
    header.extend_from_slice(&(4u64 << 20).to_be_bytes());
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(header),
            RawStep::Write(vec![0u8; 2 << 20]),
            RawStep::Drain,
        ],
        ConnectionConfig::new,
    )
    .await;
    assert!(
        matches!(reason, EndReason::FrameTooLarge { .. }),
        "{reason:?}"
    );
    assert_eq!(reason.close_code(), Some(CloseCode::TOO_BIG));
}

#[actix_rt::test]
async fn an_endless_fragmented_message_hits_the_message_cap() {
    let mut fragments = frame_with(0x01, None, &[b'x'; 1000]);
    for _ in 0..200 {
        fragments.extend(frame_with(0x00, None, &[b'x'; 1000]));
    }
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(fragments),
            RawStep::Drain,
        ],
        |url| ConnectionConfig::new(url).max_message_size(50_000),
    )
    .await;
    assert!(
        matches!(reason, EndReason::MessageTooLarge { limit: 50_000, .. }),
        "{reason:?}"
    );
}

#[actix_rt::test]
async fn a_handshake_sent_one_byte_at_a_time_still_opens() {
    let server = RawServer::start(vec![
        RawStep::HandshakeSlowly(Duration::from_millis(1)),
        RawStep::WriteSlowly(
            frame(0x1, br#"{"type":"trade","seq":5}"#),
            Duration::from_millis(1),
        ),
        RawStep::Hold,
    ])
    .unwrap();
    let herd = Herd::new();
    let (trades, seen) = Recorder::<Delivery<Trade>>::start();
    herd.subscribe(trades.recipient());
    herd.add_endpoint("slow", ConnectionConfig::new(server.url()))
        .unwrap();
    seen.wait_for_count(1, WAIT).await.unwrap();
    assert_eq!(seen.with(|s| s[0].message.seq), 5);
}

#[actix_rt::test]
async fn garbage_after_the_101_ends_the_connection_with_a_reason() {
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(b"\xF3\x00garbage that is not a frame at all".to_vec()),
            RawStep::Drain,
        ],
        ConnectionConfig::new,
    )
    .await;
    assert!(matches!(reason, EndReason::Protocol { .. }), "{reason:?}");
}

#[actix_rt::test]
async fn a_peer_that_never_reads_fills_a_bounded_write_buffer() {
    let server = RawServer::start(vec![RawStep::Handshake, RawStep::Hold]).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint(
        "sink",
        ConnectionConfig::new(server.url()).write_buffer(256 * 1024),
    )
    .unwrap();
    events
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|e| matches!(&*e.message, ConnectionEvent::Open { .. }))
                .then_some(())
        })
        .await
        .unwrap();
    let chunk = bytes::Bytes::from(vec![7u8; 64 * 1024]);
    let (mut written, mut queued) = (0usize, 0usize);
    let mut refused = None;
    // The kernel's socket buffers absorb some megabytes; then the connection's write buffer
    // fills, then the endpoint's queue (1 MiB by default), then sends are refused.
    for _ in 0..4000 {
        match herd.send("sink", chunk.clone()).await {
            Ok(Submitted::Writing) => written += 1,
            Ok(Submitted::Queued) => queued += 1,
            Err(error) => {
                refused = Some(error);
                break;
            }
        }
    }
    let refused = refused.expect("memory grew without bound");
    assert!(
        matches!(&refused, SendError::Rejected(Rejected::QueueFull(_))),
        "{refused:?}"
    );
    assert_eq!(
        refused.into_message().map(|m| m.len()),
        Some(64 * 1024),
        "the message comes back"
    );
    assert!(
        written > 0 && queued > 0,
        "written {written}, queued {queued}"
    );
    let status = herd.endpoint_status("sink").unwrap();
    assert!(status.queue_bytes <= 1024 * 1024, "{status:?}");
    assert_eq!(status.queue_rejected, 1);
}

#[actix_rt::test]
async fn an_oversized_close_reason_is_a_protocol_error() {
    // A close frame may carry at most 125 bytes; this one carries 200.
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend(std::iter::repeat_n(b'x', 198));
    let reason = end_reason_for(
        vec![
            RawStep::Handshake,
            RawStep::Write(frame(0x8, &payload)),
            RawStep::Drain,
        ],
        ConnectionConfig::new,
    )
    .await;
    assert!(matches!(reason, EndReason::Protocol { .. }), "{reason:?}");
}

/// A subscriber that takes its time: it blocks its own arbiter for a moment per message.
struct Slow {
    seen: std::sync::Arc<Watched<Vec<u64>>>,
}

impl actix::Actor for Slow {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Delivery<Trade>> for Slow {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut actix::Context<Self>) {
        // Blocking is fine here: this actor has an arbiter to itself.
        std::thread::sleep(Duration::from_micros(200));
        self.seen.update(|seen| seen.push(trade.message.seq));
    }
}

type Seen = std::sync::Arc<Watched<Vec<u64>>>;

fn start_slow_on_its_own_arbiter(arbiter: &actix::Arbiter) -> (actix::Addr<Slow>, Seen) {
    let seen: Seen = std::sync::Arc::new(Watched::new(Vec::new()));
    let state = seen.clone();
    let addr =
        <Slow as actix::Actor>::start_in_arbiter(&arbiter.handle(), move |_| Slow { seen: state });
    (addr, seen)
}

#[actix_rt::test]
async fn a_flood_into_a_slow_subscriber_is_throttled_or_dropped_as_chosen() {
    use wsherd_testkit::{Step, TestServer};
    const COUNT: u64 = 3000;
    // The server floods, then says goodbye: by the Close, every message has been read.
    let server = TestServer::start(vec![
        Step::stream(&["trade"], COUNT),
        Step::close(1000, "done"),
    ])
    .unwrap();
    let arbiter = actix::Arbiter::new();

    // Backpressure (the default): the socket is read only as fast as the subscriber takes.
    let herd = Herd::new();
    let (slow, seen) = start_slow_on_its_own_arbiter(&arbiter);
    herd.subscribe_with(
        slow.recipient(),
        SubscribeOptions::new().overflow(Overflow::Backpressure),
    );
    herd.add_endpoint("paced", ConnectionConfig::new(server.url("/")))
        .unwrap();
    seen.wait_for(
        WAIT,
        |s| (s.len() as u64 >= COUNT).then_some(()),
        |s| format!("{} seen", s.len()),
    )
    .await
    .unwrap();
    assert_eq!(
        *seen.lock(),
        (0..COUNT).collect::<Vec<_>>(),
        "nothing lost, in order"
    );
    assert_eq!(herd.endpoint_status("paced").unwrap().stats.dropped_full, 0);

    // Drop: the connection never waits; what the subscriber cannot take is counted.
    let herd = Herd::new();
    // State events are counted by the supervisor, not in the connection's delivery counters.
    let states = states(&herd);
    let (slow, seen) = start_slow_on_its_own_arbiter(&arbiter);
    herd.subscribe_with(
        slow.recipient(),
        SubscribeOptions::new().overflow(Overflow::Drop),
    );
    herd.add_endpoint("lossy", ConnectionConfig::new(server.url("/")))
        .unwrap();
    reached(&states, "lossy", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let status = herd.endpoint_status("lossy").unwrap();
    assert_eq!(status.stats.messages_in, COUNT);
    assert!(status.stats.dropped_full > 0, "{status:?}");
    assert_eq!(status.stats.delivered + status.stats.dropped_full, COUNT);
    let received = seen.lock().clone();
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "what arrives is still in order"
    );
    arbiter.stop();
}
