//! What survives a reconnect: on-open replay, remembered subscriptions, the live-after gate,
//! and nothing lost or duplicated across forced drops.

use super::*;

#[actix_rt::test]
async fn server_restart_reconnects_replays_on_open_and_the_stream_resumes() {
    let script = vec![Step::WaitForMessages(1), Step::stream(&["tick"], 5)];
    let server = TestServer::start(script.clone()).unwrap();
    let port = server.addr().port();
    let herd = Herd::new();
    let states = states(&herd);
    let (ticks, ticks_seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.add_endpoint(
        "feed",
        spec(server.url("/")).on_open(r#"{"op":"subscribe"}"#),
    )
    .unwrap();
    ticks_seen.wait_for_count(5, WAIT).await.unwrap();
    let first_log = server.connections();
    server.stop();
    reached(&states, "feed", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let restarted = TestServer::builder(script).port(port).start().unwrap();
    ticks_seen.wait_for_count(10, WAIT).await.unwrap();
    reached(&states, "feed", 2, is_live).await;
    let second_log = restarted.connections();
    for log in [&first_log[0], &second_log[0]] {
        assert_eq!(
            log.texts().next(),
            Some(r#"{"op":"subscribe"}"#),
            "on-open first, every time"
        );
    }
    let seqs: Vec<u64> = ticks_seen.with(|s| s.iter().map(|d| d.message.seq).collect());
    assert_eq!(seqs, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
    let status = herd.endpoint_status("feed").unwrap();
    assert_eq!(status.reconnects, 1);
}

#[actix_rt::test]
async fn a_hundred_forced_drops_lose_and_duplicate_nothing_in_either_direction() {
    const CYCLES: u64 = 100;
    const PER_CYCLE: u64 = 5;
    const TICKS: u64 = 3;
    // Each connection: stream three ticks, take the on-open hello and one batch, then drop.
    let server = TestServer::start(vec![
        Step::stream(&["tick"], TICKS),
        Step::WaitForMessages(1 + PER_CYCLE as usize),
        Step::Drop,
    ])
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (ticks, ticks_seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.add_endpoint("feed", spec(server.url("/")).on_open("hello"))
        .unwrap();
    let mut queued = 0;
    for cycle in 0..CYCLES {
        for i in 0..PER_CYCLE {
            let seq = cycle * PER_CYCLE + i;
            if herd.send("feed", format!("out-{seq}")).await.unwrap() == Submitted::Queued {
                queued += 1;
            }
        }
        // Wait for this cycle's drop before sending the next batch, so no message is ever on
        // the wire when the socket dies.
        let waited = server
            .wait_for(WAIT, |c| {
                (c.len() as u64 > cycle && c[cycle as usize].ended).then_some(())
            })
            .await;
        if let Err(error) = waited {
            panic!(
                "cycle {cycle}: {error}; client: {:?}",
                herd.endpoint_status("feed")
            );
        }
        // The server has gone; wait until the client knows, or the next batch could be written
        // into the dead socket, where no protocol can save it.
        reached(&states, "feed", cycle as usize + 1, |s| {
            matches!(s, EndpointState::Backoff { .. })
        })
        .await;
    }
    let logs = server.connections();
    let sent: Vec<String> = logs
        .iter()
        .take(CYCLES as usize)
        .flat_map(|log| {
            log.texts()
                .filter(|t| *t != "hello")
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let expected: Vec<String> = (0..CYCLES * PER_CYCLE)
        .map(|seq| format!("out-{seq}"))
        .collect();
    assert_eq!(
        sent, expected,
        "every outbound message exactly once, in order"
    );
    assert!(
        logs.iter()
            .take(CYCLES as usize)
            .all(|log| log.texts().next() == Some("hello"))
    );
    assert!(
        queued > 0,
        "some messages waited in the queue across a drop"
    );
    ticks_seen
        .wait_for_count((CYCLES * TICKS) as usize, WAIT)
        .await
        .unwrap();
    let status = herd.endpoint_status("feed").unwrap();
    assert!(status.reconnects >= CYCLES - 1);
    assert_eq!(status.queue_depth, 0);
}

#[actix_rt::test]
async fn live_after_waits_for_the_subscription_ack_and_times_out_as_a_failed_attempt() {
    let server = TestServer::builder_with(|index| {
        Behaviour::Accept(if index == 0 {
            vec![Step::Answer {
                request: r#"{"op":"subscribe"}"#.into(),
                reply: r#"{"type":"subscribed"}"#.into(),
            }]
        } else {
            vec![] // never acknowledges
        })
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "gated",
        spec(server.url("/"))
            .on_open(r#"{"op":"subscribe"}"#)
            .live_after(
                ReplyMatcher::Kind("subscribed".into()),
                Duration::from_millis(300),
            ),
    )
    .unwrap();
    reached(&states, "gated", 1, is_live).await;
    let before_live: Vec<EndpointState> = history(&states, "gated");
    assert_eq!(
        before_live[before_live.len() - 2],
        EndpointState::Open,
        "open, then live"
    );
    herd.send("gated", "after ack").await.unwrap();
    let received = server.wait_for_received(0, 2, WAIT).await.unwrap();
    assert_eq!(received[1].as_text(), Some("after ack"));

    herd.reconnect("gated").unwrap();
    let backoff = reached(&states, "gated", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(&backoff, EndpointState::Backoff { reason: EndReason::LocalClose { reason, .. }, .. } if reason.contains("live-after")),
        "{backoff:?}"
    );
}

#[actix_rt::test]
async fn remembered_subscriptions_are_replayed_on_every_reconnect() {
    let server = TestServer::builder_with(|index| {
        Behaviour::Accept(match index {
            0 => vec![Step::WaitForMessages(2), Step::Drop],
            1 => vec![Step::WaitForMessages(3), Step::Drop],
            _ => vec![],
        })
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("subs", spec(server.url("/")).on_open("static"))
        .unwrap();
    reached(&states, "subs", 1, is_live).await;
    herd.remember("subs", "dynamic").await.unwrap();
    herd.on_open_hook(
        "subs",
        std::sync::Arc::new(|| vec![Outbound::from("hooked")]),
    )
    .unwrap();
    reached(&states, "subs", 3, is_live).await;
    server.wait_for_received(2, 3, WAIT).await.unwrap();
    let logs = server.connections();
    assert_eq!(logs[0].texts().collect::<Vec<_>>(), ["static", "dynamic"]);
    for log in &logs[1..3] {
        assert_eq!(
            log.texts().take(3).collect::<Vec<_>>(),
            ["static", "dynamic", "hooked"]
        );
    }
}

#[actix_rt::test]
async fn the_live_after_acknowledgement_is_never_a_dead_letter() {
    // Each server acknowledges the subscription, then sends a tick: TCP order proves the
    // client read the acknowledgement first.
    let script = |reply: &str| {
        vec![
            Step::Answer {
                request: "subscribe".into(),
                reply: reply.into(),
            },
            Step::WaitForMessages(1),
            Step::text(r#"{"type":"tick","seq":1}"#),
        ]
    };
    let json_ack = TestServer::start(script(r#"{"type":"subscribed","id":7}"#)).unwrap();
    let text_ack = TestServer::start(script("ack")).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (ticks, ticked) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe::<Tick>(ticks.recipient());
    let (dead, dead_seen) = Recorder::<Delivery<DeadLetter>>::start();
    herd.subscribe_events(dead.recipient());
    let gated = |url: String, matcher| {
        spec(url)
            .on_open("subscribe")
            .live_after(matcher, Duration::from_secs(10))
    };
    // Nobody subscribes to "subscribed", and "ack" is not even JSON.
    herd.add_endpoint(
        "json",
        gated(json_ack.url("/"), ReplyMatcher::Kind("subscribed".into())),
    )
    .unwrap();
    herd.add_endpoint(
        "text",
        gated(text_ack.url("/"), ReplyMatcher::Text("ack".into())),
    )
    .unwrap();
    for name in ["json", "text"] {
        reached(&states, name, 1, is_live).await;
    }
    ticked.wait_for_count(2, WAIT).await.unwrap();
    dead_seen.flushed().await;
    assert!(dead_seen.is_empty(), "{:?}", dead_seen.snapshot());
    for name in ["json", "text"] {
        let stats = herd.endpoint_status(name).unwrap().stats;
        assert_eq!(
            (stats.dead_letters, stats.decode_failures),
            (0, 0),
            "{name}: {stats:?}"
        );
    }
}
