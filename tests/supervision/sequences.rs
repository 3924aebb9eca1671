//! Sequence numbers: gaps, duplicates and resets per scope, as events and counts, and what a
//! gap leads to (an event, a reconnect, a resync request).

use wsherd::{GapEvent, GapKind, OnGap, SequenceSpec};
use wsherd_testkit::Recorded;

use super::*;

#[derive(Debug, Clone, Deserialize)]
struct Trade {
    #[serde(default)]
    seq: serde_json::Value,
}
wsherd::inbound!(Trade => "trade");

fn trade(symbol: &str, seq: &str) -> Step {
    Step::Text(format!(r#"{{"type":"trade","s":"{symbol}","seq":{seq}}}"#))
}

fn gaps(herd: &Herd) -> Recorded<Delivery<GapEvent>> {
    let (addr, recorded) = Recorder::<Delivery<GapEvent>>::start();
    herd.subscribe_events(addr.recipient());
    recorded
}

fn trades(herd: &Herd) -> Recorded<Delivery<Trade>> {
    let (addr, recorded) = Recorder::<Delivery<Trade>>::start();
    herd.subscribe(addr.recipient());
    recorded
}

fn sequenced(url: String, sequence: SequenceSpec) -> EndpointSpec {
    let mut spec = spec(url);
    spec.connection.sequence = Some(Box::new(sequence));
    spec
}

fn per_symbol() -> SequenceSpec {
    SequenceSpec {
        scope: Some("s".into()),
        kinds: vec!["trade".into()],
        event_interval: Duration::ZERO,
        ..SequenceSpec::new("seq")
    }
}

#[actix_rt::test]
async fn gaps_duplicates_and_resets_are_events_per_scope_and_every_message_is_still_delivered() {
    let server = TestServer::start(vec![
        trade("BTC", "1"),
        trade("BTC", "2"),
        trade("ETH", "10"),
        trade("BTC", "4"),
        trade("ETH", "11"),
        trade("ETH", "11"),
        trade("ETH", "1"),
        // Bad numbers: delivered, counted, no event.
        trade("BTC", r#""5""#),
        trade("BTC", "-1"),
        trade("BTC", "123456789012345678901234567890"),
        Step::Text(r#"{"type":"trade","s":"BTC"}"#.into()),
    ])
    .unwrap();
    let herd = Herd::new();
    let events = gaps(&herd);
    let seen = trades(&herd);
    herd.add_endpoint("feed", sequenced(server.url("/"), per_symbol()))
        .unwrap();
    seen.wait_for_count(11, WAIT).await.unwrap();
    events.wait_for_count(3, WAIT).await.unwrap();
    let reported: Vec<(String, GapKind, u64, u64)> = events.with(|seen| {
        seen.iter()
            .map(|d| {
                (
                    d.message.scope.clone(),
                    d.message.what,
                    d.message.expected,
                    d.message.got,
                )
            })
            .collect()
    });
    assert_eq!(
        reported,
        [
            ("BTC".to_owned(), GapKind::Gap, 3, 4),
            ("ETH".to_owned(), GapKind::Duplicate, 12, 11),
            ("ETH".to_owned(), GapKind::Reset, 12, 1),
        ]
    );
    assert!(events.with(|s| {
        s.iter()
            .all(|d| d.endpoint == "feed" && d.message.kind == "trade")
    }));
    let stats = herd.endpoint_status("feed").unwrap().sequence;
    assert_eq!(
        (
            stats.gaps,
            stats.duplicates,
            stats.resets,
            stats.unsequenced
        ),
        (1, 1, 1, 4)
    );
}

#[actix_rt::test]
async fn across_reconnects_a_replayed_overlap_is_dropped_once_and_nothing_is_missed() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![
            trade("BTC", "1"),
            trade("BTC", "2"),
            trade("BTC", "3"),
            Step::Drop,
        ]),
        // The feed replays from a little before where the last socket ended.
        _ => Behaviour::Accept(vec![
            trade("BTC", "2"),
            trade("BTC", "3"),
            trade("BTC", "4"),
        ]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    let sequence = SequenceSpec {
        drop_duplicates: true,
        across_reconnects: true,
        ..per_symbol()
    };
    herd.add_endpoint("feed", sequenced(server.url("/"), sequence))
        .unwrap();
    seen.wait_for(WAIT, |s| {
        s.iter()
            .any(|d| d.message.seq == serde_json::json!(4))
            .then_some(())
    })
    .await
    .unwrap();
    let numbers: Vec<serde_json::Value> =
        seen.with(|s| s.iter().map(|d| d.message.seq.clone()).collect());
    assert_eq!(numbers, [1, 2, 3, 4].map(|n| serde_json::json!(n)));
    let stats = herd.endpoint_status("feed").unwrap().sequence;
    assert_eq!((stats.duplicates, stats.dropped, stats.gaps), (2, 2, 0));
}

#[actix_rt::test]
async fn each_socket_starts_its_numbers_afresh_unless_told_otherwise() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![trade("BTC", "7"), trade("BTC", "8"), Step::Drop]),
        _ => Behaviour::Accept(vec![trade("BTC", "1"), trade("BTC", "2")]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    herd.add_endpoint("feed", sequenced(server.url("/"), per_symbol()))
        .unwrap();
    seen.wait_for_count(4, WAIT).await.unwrap();
    let stats = herd.endpoint_status("feed").unwrap().sequence;
    assert_eq!((stats.gaps, stats.duplicates, stats.resets), (0, 0, 0));
}

#[actix_rt::test]
async fn on_gap_reconnect_closes_the_socket_after_delivering_the_message_and_comes_back() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![trade("BTC", "1"), trade("BTC", "5")]),
        _ => Behaviour::Accept(vec![trade("BTC", "6")]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let seen = trades(&herd);
    let sequence = SequenceSpec {
        on_gap: OnGap::Reconnect,
        ..per_symbol()
    };
    herd.add_endpoint("feed", sequenced(server.url("/"), sequence))
        .unwrap();
    reached(&states, "feed", 2, is_live).await;
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1000, "sequence gap: expected 2, got 5".to_owned()));
    seen.wait_for_count(3, WAIT).await.unwrap();
    let backoff = history(&states, "feed")
        .into_iter()
        .find_map(|s| match s {
            EndpointState::Backoff { reason, .. } => Some(reason),
            _ => None,
        })
        .unwrap();
    assert_eq!(backoff.class(), "gap");
}

#[actix_rt::test]
async fn on_gap_resync_sends_the_resync_messages_and_keeps_the_socket() {
    let server = TestServer::start(vec![trade("BTC", "1"), trade("BTC", "3")]).unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    let sequence = SequenceSpec {
        on_gap: OnGap::Resync,
        resync: vec![r#"{"op":"snapshot","channel":"trades"}"#.into()],
        ..per_symbol()
    };
    herd.add_endpoint("feed", sequenced(server.url("/"), sequence))
        .unwrap();
    seen.wait_for_count(2, WAIT).await.unwrap();
    let received = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(
        received[0].as_text(),
        Some(r#"{"op":"snapshot","channel":"trades"}"#)
    );
    assert_eq!(server.connections().len(), 1);
    assert!(server.connections()[0].close.is_none());
}

#[actix_rt::test]
async fn events_of_one_scope_come_at_most_once_per_interval_and_the_rest_are_counted() {
    let mut script = vec![trade("BTC", "1")];
    // Every other number skipped: ten gaps in a burst.
    for n in 1..=10 {
        script.push(trade("BTC", &(n * 2 + 1).to_string()));
    }
    script.push(trade("ETH", "1"));
    let server = TestServer::start(script).unwrap();
    let herd = Herd::new();
    let events = gaps(&herd);
    let seen = trades(&herd);
    let sequence = SequenceSpec {
        event_interval: Duration::from_secs(3600),
        ..per_symbol()
    };
    herd.add_endpoint("feed", sequenced(server.url("/"), sequence))
        .unwrap();
    seen.wait_for_count(12, WAIT).await.unwrap();
    events.flushed().await;
    assert_eq!(events.len(), 1);
    let stats = herd.endpoint_status("feed").unwrap().sequence;
    assert_eq!((stats.gaps, stats.suppressed), (10, 9));
}
