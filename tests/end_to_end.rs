//! The facade against real WebSocket servers on 127.0.0.1.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{Binary, ConnectStage, DeadLetterReason, DecodeStage, Side};
use wsherd_testkit::{Behaviour, Recorder, Step, TestServer};

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Trade {
    seq: u64,
}
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct Quote {
    seq: u64,
}
#[derive(Debug, Clone, Deserialize, PartialEq)]
struct News {
    seq: u64,
}
wsherd::inbound!(Trade => "trade", Quote => "quote", News => "news");

fn seqs_by_endpoint<T>(
    seen: &[Delivery<T>],
    seq: impl Fn(&T) -> u64,
) -> BTreeMap<String, Vec<u64>> {
    let mut by_endpoint: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for delivery in seen {
        by_endpoint
            .entry(delivery.endpoint.to_string())
            .or_default()
            .push(seq(&delivery.message));
    }
    by_endpoint
}

#[actix_rt::test]
async fn two_endpoints_stream_three_kinds_to_two_subscribers_once_in_order() {
    const COUNT: u64 = 10_000;
    let server = TestServer::start(vec![Step::stream(&["trade", "quote", "news"], COUNT)]).unwrap();
    let herd = Herd::new();
    // Subscriber one takes all three kinds; subscriber two takes trades and news.
    let (one_trades, one_trades_seen) = Recorder::<Delivery<Trade>>::start();
    let (one_quotes, one_quotes_seen) = Recorder::<Delivery<Quote>>::start();
    let (one_news, one_news_seen) = Recorder::<Delivery<News>>::start();
    let (two_trades, two_trades_seen) = Recorder::<Delivery<Trade>>::start();
    let (two_news, two_news_seen) = Recorder::<Delivery<News>>::start();
    herd.subscribe(one_trades.recipient());
    herd.subscribe(one_quotes.recipient());
    herd.subscribe(one_news.recipient());
    herd.subscribe(two_trades.recipient());
    herd.subscribe(two_news.recipient());
    herd.add_endpoint("alpha", ConnectionConfig::new(server.url("/a")))
        .unwrap();
    herd.add_endpoint("beta", ConnectionConfig::new(server.url("/b")))
        .unwrap();

    let expected =
        |remainder: u64| -> Vec<u64> { (0..COUNT).filter(|s| s % 3 == remainder).collect() };
    let per_kind = |r: u64| expected(r).len();
    for (recorded_len, remainder) in [
        (
            one_trades_seen
                .clone()
                .wait_for_count(2 * per_kind(0), WAIT)
                .await,
            0,
        ),
        (
            two_trades_seen
                .clone()
                .wait_for_count(2 * per_kind(0), WAIT)
                .await,
            0,
        ),
        (
            one_quotes_seen
                .clone()
                .wait_for_count(2 * per_kind(1), WAIT)
                .await,
            1,
        ),
        (
            one_news_seen
                .clone()
                .wait_for_count(2 * per_kind(2), WAIT)
                .await,
            2,
        ),
        (
            two_news_seen
                .clone()
                .wait_for_count(2 * per_kind(2), WAIT)
                .await,
            2,
        ),
    ] {
        recorded_len.unwrap_or_else(|e| panic!("kind {remainder}: {e}"));
    }

    for seen in [&one_trades_seen, &two_trades_seen] {
        let by_endpoint = seen.with(|s| seqs_by_endpoint(s, |t: &Trade| t.seq));
        assert_eq!(by_endpoint.keys().collect::<Vec<_>>(), ["alpha", "beta"]);
        for seqs in by_endpoint.values() {
            assert_eq!(*seqs, expected(0), "every trade once, in order");
        }
    }
    let quotes = one_quotes_seen.with(|s| seqs_by_endpoint(s, |q: &Quote| q.seq));
    for seqs in quotes.values() {
        assert_eq!(*seqs, expected(1));
    }
    for seen in [&one_news_seen, &two_news_seen] {
        for seqs in seen
            .with(|s| seqs_by_endpoint(s, |n: &News| n.seq))
            .values()
        {
            assert_eq!(*seqs, expected(2));
        }
    }

    let status = herd.status();
    assert_eq!(status.len(), 2);
    for endpoint in &status {
        assert_eq!(endpoint.state, EndpointState::Live);
        assert_eq!(endpoint.stats.messages_in, COUNT);
        assert_eq!(endpoint.stats.dead_letters, 0);
        assert_eq!(endpoint.stats.decode_failures, 0);
        // quotes go to one subscriber, trades and news to two each
        assert_eq!(endpoint.stats.delivered, 2 * COUNT - per_kind(1) as u64);
    }
}

#[actix_rt::test]
async fn endpoint_filter_delivers_only_the_chosen_endpoints() {
    let server = TestServer::start(vec![Step::stream(&["trade"], 50)]).unwrap();
    let herd = Herd::new();
    let (left_only, left_seen) = Recorder::<Delivery<Trade>>::start();
    let (everything, all_seen) = Recorder::<Delivery<Trade>>::start();
    herd.subscribe_with(
        left_only.recipient(),
        SubscribeOptions::new().endpoints([EndpointName::new("left").unwrap()]),
    );
    herd.subscribe(everything.recipient());
    herd.add_endpoint("left", ConnectionConfig::new(server.url("/")))
        .unwrap();
    herd.add_endpoint("right", ConnectionConfig::new(server.url("/")))
        .unwrap();

    all_seen.wait_for_count(100, WAIT).await.unwrap();
    left_seen.wait_for_count(50, WAIT).await.unwrap();
    assert!(left_seen.with(|s| s.iter().all(|d| d.endpoint == "left")));
    assert_eq!(left_seen.len(), 50);
}

#[actix_rt::test]
async fn malformed_and_unknown_messages_become_dead_letters_while_the_stream_continues() {
    let server = TestServer::start(vec![
        Step::text(r#"{"type":"trade","seq":0}"#),
        Step::text("{not json"),
        Step::text(r#"{"type":"mystery","seq":1}"#),
        Step::text(r#"{"type":"trade","seq":"two"}"#),
        Step::text(r#"{"no_kind":true}"#),
        Step::Binary(Bytes::from_static(b"\x00\x01")),
        Step::text(r#"{"type":"trade","seq":3}"#),
    ])
    .unwrap();
    let herd = Herd::new();
    let (trades, trades_seen) = Recorder::<Delivery<Trade>>::start();
    let (dead, dead_seen) = Recorder::<Delivery<DeadLetter>>::start();
    herd.subscribe(trades.recipient());
    herd.subscribe_events(dead.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();

    trades_seen.wait_for_count(2, WAIT).await.unwrap();
    dead_seen.wait_for_count(5, WAIT).await.unwrap();
    assert_eq!(
        trades_seen.with(|s| s.iter().map(|d| d.message.seq).collect::<Vec<_>>()),
        [0, 3]
    );
    let letters: Vec<DeadLetter> =
        dead_seen.with(|s| s.iter().map(|d| (*d.message).clone()).collect());
    let stage = |letter: &DeadLetter| match &letter.reason {
        DeadLetterReason::Rejected(error) => Some(error.stage.clone()),
        DeadLetterReason::NoSubscriber { .. } => None,
    };
    assert_eq!(stage(&letters[0]), Some(DecodeStage::Json));
    assert!(
        matches!(&letters[0].reason, DeadLetterReason::Rejected(e) if e.excerpt == "{not json")
    );
    assert_eq!(letters[1].kind.as_deref(), Some("mystery"));
    assert_eq!(stage(&letters[1]), None);
    assert!(matches!(stage(&letters[2]), Some(DecodeStage::Typed { kind, .. }) if kind == "trade"));
    assert_eq!(stage(&letters[3]), Some(DecodeStage::MissingKind));
    assert!(matches!(
        &letters[4].reason,
        DeadLetterReason::NoSubscriber { payload_len: 2, .. }
    ));

    let status = herd.endpoint_status("feed").unwrap();
    assert_eq!(
        status.state,
        EndpointState::Live,
        "bad input does not end the connection"
    );
    assert_eq!(status.stats.decode_failures, 3);
    assert_eq!(status.stats.dead_letters, 2);
    assert_eq!(status.stats.messages_in, 7);
}

#[actix_rt::test]
async fn server_pings_are_answered_with_their_payload() {
    let server = TestServer::start(vec![
        Step::Ping(Bytes::from_static(b"hb-1")),
        Step::Ping(Bytes::from_static(b"hb-2")),
    ])
    .unwrap();
    let herd = Herd::new();
    herd.add_endpoint("pinged", ConnectionConfig::new(server.url("/")))
        .unwrap();
    let pongs = server
        .wait_for(WAIT, |c| {
            c.first()
                .filter(|c| c.pongs.len() >= 2)
                .map(|c| c.pongs.clone())
        })
        .await
        .unwrap();
    assert_eq!(
        pongs,
        [Bytes::from_static(b"hb-1"), Bytes::from_static(b"hb-2")]
    );
    assert_eq!(
        herd.endpoint_status("pinged").unwrap().stats.pings_answered,
        2
    );
}

#[actix_rt::test]
async fn fragmented_messages_are_reassembled() {
    let big = format!(
        r#"{{"type":"news","seq":42,"body":"{}"}}"#,
        "ü".repeat(3000)
    );
    let server = TestServer::start(vec![
        Step::Fragmented {
            text: big,
            fragment_size: 7,
        },
        Step::Binary(Bytes::from_static(b"after")),
    ])
    .unwrap();
    let herd = Herd::new();
    let (news, news_seen) = Recorder::<Delivery<News>>::start();
    let (binary, binary_seen) = Recorder::<Delivery<Binary>>::start();
    herd.subscribe(news.recipient());
    herd.subscribe_events(binary.recipient());
    herd.add_endpoint("frag", ConnectionConfig::new(server.url("/")))
        .unwrap();
    news_seen.wait_for_count(1, WAIT).await.unwrap();
    binary_seen.wait_for_count(1, WAIT).await.unwrap();
    assert_eq!(news_seen.with(|s| s[0].message.seq), 42);
    assert_eq!(
        binary_seen.with(|s| s[0].message.0.clone()),
        Bytes::from_static(b"after")
    );
    assert_eq!(herd.endpoint_status("frag").unwrap().stats.messages_in, 2);
}

#[actix_rt::test]
async fn oversized_frame_closes_with_1009_and_the_herd_keeps_going() {
    let server = TestServer::builder_with(|index| {
        Behaviour::Accept(if index == 0 {
            vec![Step::text(format!(
                r#"{{"type":"news","seq":0,"x":"{}"}}"#,
                "x".repeat(4096)
            ))]
        } else {
            vec![Step::stream(&["news"], 3)]
        })
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    let (news, news_seen) = Recorder::<Delivery<News>>::start();
    herd.subscribe(news.recipient());
    herd.add_endpoint(
        "small",
        ConnectionConfig::new(server.url("/")).max_frame_size(1024),
    )
    .unwrap();
    assert_eq!(
        closed(&events, "small").await,
        EndReason::FrameTooLarge { limit: 1024 }
    );
    let (code, _) = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(code, 1009, "the peer is told why");

    herd.add_endpoint("other", ConnectionConfig::new(server.url("/")))
        .unwrap();
    news_seen.wait_for_count(3, WAIT).await.unwrap();
    let status = herd.endpoint_status("small").unwrap();
    assert_eq!(
        status.last_error,
        Some(EndReason::FrameTooLarge { limit: 1024 })
    );
}

#[actix_rt::test]
async fn oversized_fragmented_message_closes_with_1009() {
    let server = TestServer::start(vec![Step::Fragmented {
        text: "y".repeat(10_000),
        fragment_size: 100,
    }])
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint(
        "frag",
        ConnectionConfig::new(server.url("/")).max_message_size(5_000),
    )
    .unwrap();
    let reason = closed(&events, "frag").await;
    assert_eq!(
        reason,
        EndReason::MessageTooLarge {
            size: 5_100,
            limit: 5_000
        }
    );
    assert_eq!(reason.close_code(), Some(CloseCode::TOO_BIG));
}

#[actix_rt::test]
async fn client_close_reaches_the_server_with_code_and_reason() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("closer", ConnectionConfig::new(server.url("/")))
        .unwrap();
    opened(&events, "closer").await;
    let unsent = herd
        .remove_endpoint("closer", 4000, "maintenance window")
        .await
        .unwrap();
    assert!(unsent.is_empty());
    let close = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(close, (4000, "maintenance window".to_owned()));
    assert_eq!(
        closed(&events, "closer").await,
        EndReason::LocalClose {
            code: 4000.into(),
            reason: "maintenance window".into(),
            acknowledged: true
        }
    );
    let closing = events.with(|seen| {
        seen.iter().any(|e| {
            matches!(
                &*e.message,
                ConnectionEvent::Closing {
                    initiated_by: Side::Local,
                    code,
                    ..
                } if *code == 4000
            )
        })
    });
    assert!(closing);
}

#[actix_rt::test]
async fn peer_close_and_dropped_stream_end_with_their_reasons() {
    let server = TestServer::builder_with(|index| {
        Behaviour::Accept(if index == 0 {
            vec![Step::close(4001, "go away")]
        } else {
            vec![Step::Drop]
        })
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("closed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    assert_eq!(
        closed(&events, "closed").await,
        EndReason::PeerClosed {
            code: 4001.into(),
            reason: "go away".into()
        }
    );
    herd.add_endpoint("dropped", ConnectionConfig::new(server.url("/")))
        .unwrap();
    let reason = closed(&events, "dropped").await;
    assert!(
        matches!(reason, EndReason::StreamEnded | EndReason::Io { .. }),
        "{reason:?}"
    );
    assert_eq!(reason.close_code(), Some(CloseCode::ABNORMAL));
}

#[actix_rt::test]
async fn messages_sent_by_name_reach_the_server_in_order() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("out", ConnectionConfig::new(server.url("/")))
        .unwrap();
    opened(&events, "out").await;
    for seq in 0..1000 {
        herd.send_json("out", &serde_json::json!({"type": "order", "seq": seq}))
            .await
            .unwrap();
    }
    herd.send("out", Bytes::from_static(b"\xffbinary"))
        .await
        .unwrap();
    let received = server.wait_for_received(0, 1001, WAIT).await.unwrap();
    let seqs: Vec<u64> = received[..1000]
        .iter()
        .map(|r| {
            let value: serde_json::Value = serde_json::from_str(r.as_text().unwrap()).unwrap();
            value["seq"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(seqs, (0..1000).collect::<Vec<_>>());
    assert_eq!(
        received[1000],
        wsherd_testkit::Received::Binary(Bytes::from_static(b"\xffbinary"))
    );
    let stats = herd.endpoint_status("out").unwrap().stats;
    assert_eq!(stats.messages_out, 1001);
}

#[actix_rt::test]
async fn sending_to_an_unknown_endpoint_hands_the_message_back_and_removal_returns_the_queue() {
    let herd = Herd::new();
    let error = herd.send("nobody", "hello").await.unwrap_err();
    assert_eq!(error.into_message(), Some(Outbound::from("hello")));
    // A listener that never answers the upgrade keeps the endpoint in its handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    herd.add_endpoint("pending", ConnectionConfig::new(url))
        .unwrap();
    // Not open yet: the message waits in the endpoint's queue, and comes back on removal.
    assert_eq!(
        herd.send("pending", "early").await.unwrap(),
        Submitted::Queued
    );
    assert!(matches!(
        herd.add_endpoint("pending", ConnectionConfig::new("ws://127.0.0.1:1/")),
        Err(wsherd::HerdError::DuplicateEndpoint(_))
    ));
    assert!(matches!(
        herd.add_endpoint("Bad Name", ConnectionConfig::new("ws://127.0.0.1:1/")),
        Err(wsherd::HerdError::InvalidName(_))
    ));
    let unsent = herd.remove_endpoint("pending", 1000, "bye").await.unwrap();
    assert_eq!(unsent, [Outbound::from("early")]);
    let error = herd.send("pending", "late").await.unwrap_err();
    assert!(matches!(error, wsherd::SendError::UnknownEndpoint { .. }));
}

#[actix_rt::test]
async fn handshake_sends_headers_and_negotiates_a_subprotocol() {
    let server = TestServer::builder(vec![])
        .protocols(["feed.v2"])
        .start()
        .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint(
        "hs",
        ConnectionConfig::new(server.url("/stream?x=1"))
            .header("X-Api-Key", "k-123")
            .subprotocol("feed.v1")
            .subprotocol("feed.v2"),
    )
    .unwrap();
    assert_eq!(opened(&events, "hs").await.as_deref(), Some("feed.v2"));
    let connection = server.connections().remove(0);
    assert_eq!(connection.header("x-api-key"), Some("k-123"));
    assert_eq!(
        connection.header("sec-websocket-protocol"),
        Some("feed.v1,feed.v2")
    );
}

#[actix_rt::test]
async fn handshake_rejection_timeout_and_refusal_have_exact_reasons() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(403))
        .start()
        .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("rejected", ConnectionConfig::new(server.url("/")))
        .unwrap();
    let reason = closed(&events, "rejected").await;
    assert_eq!(reason, EndReason::HandshakeRejected { status: 403 });
    assert_eq!(reason.handshake_status(), Some(403));

    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    herd.add_endpoint(
        "silent",
        ConnectionConfig::new(url).handshake_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    assert_eq!(
        closed(&events, "silent").await,
        EndReason::HandshakeTimeout {
            after: Duration::from_millis(300),
            stage: ConnectStage::Upgrade,
        }
    );

    // A port nobody listens on: bind one, learn its number, free it.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    herd.add_endpoint(
        "refused",
        ConnectionConfig::new(format!("ws://127.0.0.1:{port}/")),
    )
    .unwrap();
    let reason = closed(&events, "refused").await;
    assert!(
        matches!(reason, EndReason::ConnectFailed { .. }),
        "{reason:?}"
    );
    assert!(!reason.was_open());
    // A network-level failure, as the herd's outage mode counts them.
    assert_eq!(
        reason.network_cause(),
        Some(wsherd::NetworkCause::Refused),
        "{reason:?}"
    );

    herd.add_endpoint("badurl", ConnectionConfig::new("not a url"))
        .unwrap();
    let reason = closed(&events, "badurl").await;
    assert!(
        matches!(reason, EndReason::InvalidRequest { .. }),
        "{reason:?}"
    );
}

/// Takes one trade, then stops.
struct QuitAfterOne {
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl actix::Actor for QuitAfterOne {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Delivery<Trade>> for QuitAfterOne {
    type Result = ();
    fn handle(&mut self, _: Delivery<Trade>, ctx: &mut actix::Context<Self>) {
        use actix::ActorContext;
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ctx.stop();
    }
}

#[actix_rt::test]
async fn stopped_subscribers_are_dropped_quietly() {
    use actix::Actor;
    let server = TestServer::start(vec![
        Step::text(r#"{"type":"trade","seq":0}"#),
        Step::WaitForMessages(1),
        Step::text(r#"{"type":"trade","seq":1}"#),
        Step::WaitForMessages(2),
        Step::text(r#"{"type":"trade","seq":2}"#),
    ])
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    let (keeper, kept) = Recorder::<Delivery<Trade>>::start();
    let quitter_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let quitter = QuitAfterOne {
        seen: quitter_seen.clone(),
    }
    .start();
    herd.subscribe(keeper.recipient());
    let before = herd.router().subscription_count();
    herd.subscribe(quitter.clone().recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    opened(&events, "feed").await;
    kept.wait_for_count(1, WAIT).await.unwrap();
    // Ask for the second and third trades once the quitter has had time to stop; both must
    // reach the keeper, and the quitter's subscription must be forgotten on the way.
    herd.send("feed", "next").await.unwrap();
    kept.wait_for_count(2, WAIT).await.unwrap();
    herd.send("feed", "next").await.unwrap();
    kept.wait_for_count(3, WAIT).await.unwrap();
    assert_eq!(quitter_seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(!quitter.connected());
    assert_eq!(
        herd.router().subscription_count(),
        before,
        "the stopped subscriber was pruned"
    );
    assert_eq!(
        herd.endpoint_status("feed").unwrap().state,
        EndpointState::Live
    );
}

#[actix_rt::test]
async fn the_herd_s_status_reads_as_one_line_per_endpoint_and_as_an_aligned_table() {
    let server = TestServer::start(vec![]).unwrap();
    let refusing = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("up", ConnectionConfig::new(server.url("/")))
        .unwrap();
    herd.add_endpoint(
        "a-longer-name",
        EndpointSpec::new(ConnectionConfig::new(refusing.url("/"))).backoff(
            wsherd::BackoffPolicy {
                initial: Duration::from_secs(3600),
                max: Duration::from_secs(3600),
                ..Default::default()
            },
        ),
    )
    .unwrap();
    reached(&states, "up", 1, is_live).await;
    reached(&states, "a-longer-name", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;

    let up = herd.endpoint_status("up").unwrap().to_string();
    assert!(up.starts_with("up: live for "), "{up}");
    assert!(
        up.contains(", 0 failed attempts, 0 reconnects, rtt ")
            && up.ends_with(", queue 0, last error: none"),
        "{up}"
    );
    let refused = herd.endpoint_status("a-longer-name").unwrap().to_string();
    assert!(
        refused.starts_with("a-longer-name: backoff for "),
        "{refused}"
    );
    assert!(
        refused.ends_with("1 failed attempt, 0 reconnects, rtt -, queue 0, last error: handshake rejected with HTTP 503"),
        "{refused}"
    );

    let table = herd.status_table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with("a-longer-name  backoff  "), "{table}");
    assert!(lines[2].starts_with("up             live     "), "{table}");
    // Each column starts where its header does, on every row.
    let at = |line: &str, cell: &str| line.find(cell).unwrap();
    assert_eq!(at(lines[1], "backoff"), at(lines[0], "STATE"));
    assert_eq!(at(lines[2], "live"), at(lines[0], "STATE"));
    assert_eq!(at(lines[1], "handshake"), at(lines[0], "LAST ERROR"));
    assert!(lines[2].ends_with("  -"), "no error yet: {table}");
}
