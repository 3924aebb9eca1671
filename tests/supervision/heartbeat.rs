//! Dead-peer detection: protocol and application heartbeats, the idle watchdog, RTT.

use super::*;

#[actix_rt::test]
async fn half_open_peer_is_detected_within_interval_plus_timeout() {
    let server = TestServer::start(vec![]).unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let events = {
        let (addr, recorded) = Recorder::<Delivery<ConnectionEvent>>::start();
        herd.subscribe_events(addr.recipient());
        recorded
    };
    let interval = Duration::from_millis(200);
    let timeout = Duration::from_millis(300);
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval,
        timeout,
        idle_timeout: None,
    };
    herd.add_endpoint("feed", spec(proxy.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    reached(&states, "feed", 1, is_live).await;
    // Pongs flow while the path is clean: the RTT is measured.
    let rtt = loop {
        server
            .wait_for(WAIT, |c| {
                c.first()
                    .filter(|c| !c.received.is_empty() || c.pings > 0)
                    .map(|_| ())
            })
            .await
            .unwrap();
        if let Some(rtt) = herd.endpoint_status("feed").unwrap().rtt {
            break rtt;
        }
        states
            .wait_for(Duration::from_millis(50), |_| None::<()>)
            .await
            .ok();
    };
    assert!(rtt < Duration::from_secs(5));

    proxy.set_mode(ProxyMode::BlackHole);
    let cut_at = Instant::now();
    let reason = events
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|e| match &*e.message {
                ConnectionEvent::Closed {
                    reason: reason @ EndReason::Unresponsive { .. },
                } => Some(reason.clone()),
                _ => None,
            })
        })
        .await
        .unwrap();
    let detected_after = cut_at.elapsed();
    assert!(
        matches!(reason, EndReason::Unresponsive { .. }),
        "{reason:?}"
    );
    // Detection can take at most one interval to send the next ping plus the timeout; the
    // slack absorbs a loaded machine's scheduling.
    assert!(
        detected_after < interval + timeout + Duration::from_secs(2),
        "detected after {detected_after:?}"
    );
    // And it reconnects once the path is clean again.
    proxy.set_mode(ProxyMode::Pass);
    reached(&states, "feed", 2, is_live).await;
}

#[actix_rt::test]
async fn application_heartbeat_measures_rtt_and_catches_a_server_that_stops_answering() {
    // The first connection answers application pings; later ones are silent.
    let server = TestServer::builder_with(|index| {
        Behaviour::Accept(if index == 0 {
            vec![
                Step::IgnorePings(true),
                Step::Answer {
                    request: "ping".into(),
                    reply: "pong".into(),
                },
            ]
        } else {
            vec![Step::IgnorePings(true)]
        })
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let events = {
        let (addr, recorded) = Recorder::<Delivery<ConnectionEvent>>::start();
        herd.subscribe_events(addr.recipient());
        recorded
    };
    let (dead, dead_seen) = Recorder::<Delivery<DeadLetter>>::start();
    herd.subscribe_events(dead.recipient());
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::App {
            payload: "ping".into(),
            reply: ReplyMatcher::Text("pong".into()),
        },
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        idle_timeout: None,
    };
    // Wait for 3 pings at a 100 ms interval: with a 300 ms timeout, an unanswered first ping
    // would have ended the connection by the time the third is sent.
    herd.add_endpoint("app", spec(server.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    // Several answered pings on the first connection, none of them a dead letter.
    server
        .wait_for(WAIT, |c| {
            c.first()
                .filter(|c| c.texts().filter(|t| *t == "ping").count() >= 3)
                .map(|_| ())
        })
        .await
        .unwrap();
    // Three pings answered, several timeouts' worth of time: the answering peer is alive.
    let closed_so_far = events.with(|seen| {
        seen.iter()
            .any(|e| matches!(&*e.message, ConnectionEvent::Closed { .. }))
    });
    assert!(!closed_so_far, "an answering peer was declared dead");
    assert_eq!(server.connections().len(), 1);
    assert!(herd.endpoint_status("app").unwrap().rtt.is_some());
    assert!(dead_seen.is_empty(), "pongs are consumed, not dead letters");
    // ...but the second one never answers: force a reconnect and watch it die of silence.
    herd.reconnect("app").unwrap();
    let reason = events
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|e| match &*e.message {
                ConnectionEvent::Closed {
                    reason: reason @ EndReason::Unresponsive { .. },
                } => Some(reason.clone()),
                _ => None,
            })
        })
        .await
        .unwrap();
    assert!(matches!(reason, EndReason::Unresponsive { .. }));
}

#[actix_rt::test]
async fn idle_watchdog_reconnects_a_feed_that_went_quiet_while_pongs_still_flow() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 2)]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        idle_timeout: Some(Duration::from_millis(300)),
    };
    herd.add_endpoint("quiet", spec(server.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    let backoff = reached(&states, "quiet", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(
            backoff,
            EndpointState::Backoff {
                reason: EndReason::Unresponsive {
                    why: wsherd::DeadPeer::Idle { .. }
                },
                ..
            }
        ),
        "{backoff:?}"
    );
    // Pongs flowed all along: the server answered the pings (an RTT was measured) and the
    // 5 s pong timeout never fired; only the silence of data ended the socket.
    assert!(
        server.connections()[0].pings >= 2,
        "the client kept pinging"
    );
    assert!(herd.endpoint_status("quiet").unwrap().rtt.is_some());
}

#[actix_rt::test]
async fn proxy_cut_reconnects_and_proxy_delay_shows_in_the_rtt() {
    let server = TestServer::start(vec![]).unwrap();
    let proxy = FaultProxy::start(server.addr()).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_millis(100),
        timeout: Duration::from_secs(10),
        idle_timeout: None,
    };
    herd.add_endpoint("cut", spec(proxy.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    reached(&states, "cut", 1, is_live).await;
    proxy.cut();
    let backoff = reached(&states, "cut", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(
            &backoff,
            EndpointState::Backoff {
                reason: EndReason::StreamEnded | EndReason::Io { .. },
                ..
            }
        ),
        "{backoff:?}"
    );
    reached(&states, "cut", 2, is_live).await;
    assert_eq!(proxy.accepted(), 2);

    // 100 ms each way. A ping is sent only when the previous one was answered, so once the
    // server has seen three more pings, the second of them travelled both ways under the
    // delay and its round trip (or a later one) is the RTT on record.
    let pings_before = server.connections()[1].pings;
    proxy.set_delay(Duration::from_millis(100));
    server
        .wait_for(WAIT, |c| {
            c.get(1).filter(|c| c.pings >= pings_before + 3).map(|_| ())
        })
        .await
        .unwrap();
    let rtt = herd.endpoint_status("cut").unwrap().rtt.unwrap();
    assert!(rtt >= Duration::from_millis(200), "{rtt:?}");
}

#[actix_rt::test]
async fn application_pong_replies_count_as_pongs_received_and_never_as_dead_letters() {
    // Every "ping" is answered with "pong", and each answer is followed by a tick: TCP order
    // then proves the client read the pong before it delivered the tick.
    let server = TestServer::start(vec![
        Step::Answer {
            request: "ping".into(),
            reply: "pong".into(),
        },
        Step::WaitForMessages(1),
        Step::text(r#"{"type":"tick","seq":1}"#),
        Step::WaitForMessages(2),
        Step::text(r#"{"type":"tick","seq":2}"#),
    ])
    .unwrap();
    let herd = Herd::new();
    let (ticks, ticked) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe::<Tick>(ticks.recipient());
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::App {
            payload: "ping".into(),
            reply: ReplyMatcher::Text("pong".into()),
        },
        // Far longer than a loopback round trip: each pong is read before the next ping.
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(10),
        idle_timeout: None,
    };
    herd.add_endpoint("app", spec(server.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    ticked.wait_for_count(2, WAIT).await.unwrap();
    let stats = herd.endpoint_status("app").unwrap().stats;
    assert!(stats.pongs_received >= 2, "{stats:?}");
    assert_eq!(
        (stats.dead_letters, stats.decode_failures),
        (0, 0),
        "{stats:?}"
    );
}
