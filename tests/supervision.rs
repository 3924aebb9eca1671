//! The fault suite: supervised endpoints against servers and a proxy that drop, stall, refuse
//! and restart. Every test waits on events; none sleeps to let something happen, except where
//! the feature itself is about time passing (a TTL).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{
    ActionTable, BackoffPolicy, FailReason, GovernorPolicy, HeartbeatMode, HeartbeatSpec, Jitter,
    OverflowPolicy, QueueEvent, QueuePolicy, Rejected, ReplyMatcher, RestartIntensity, SendError,
};
use wsherd_testkit::{Behaviour, FaultProxy, ProxyMode, Recorder, Step, TestServer};

#[derive(Debug, Clone, Deserialize)]
struct Tick {
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(20),
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_secs(5),
        max_attempts: 0,
    }
}

fn spec(url: String) -> EndpointSpec {
    EndpointSpec::new(ConnectionConfig::new(url)).backoff(fast_backoff())
}

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
async fn backoff_grows_is_capped_and_resets_only_after_a_stable_uptime() {
    // Refused four times, then open long enough to count as stable, then a flap, then refused.
    let server = TestServer::builder_with(|index| match index {
        0..=3 => Behaviour::Reject(503),
        4 => Behaviour::Accept(vec![Step::Pause(Duration::from_millis(400)), Step::Drop]),
        5 => Behaviour::Accept(vec![Step::Drop]),
        _ => Behaviour::Reject(503),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(80),
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_millis(300),
        max_attempts: 0,
    };
    herd.add_endpoint(
        "flaky",
        EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff),
    )
    .unwrap();
    reached(&states, "flaky", 7, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let delays: Vec<u64> = backoff_delays(&states, "flaky")
        .iter()
        .map(|delay| delay.as_millis() as u64)
        .take(7)
        .collect();
    // 4 refusals: 20, 40, 80, 80 (capped); stable socket: reset to 20; flap: 40; refusal: 80.
    assert_eq!(
        delays,
        [20, 40, 80, 80, 20, 40, 80],
        "{:?}",
        history(&states, "flaky")
    );
}

#[actix_rt::test]
async fn jitter_spreads_delays_below_the_nominal_one() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(40),
        max: Duration::from_millis(40),
        jitter: Jitter::Full,
        ..fast_backoff()
    };
    herd.add_endpoint(
        "jittery",
        EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff),
    )
    .unwrap();
    reached(&states, "jittery", 10, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let delays = backoff_delays(&states, "jittery");
    assert!(delays.iter().all(|d| *d <= Duration::from_millis(40)));
    let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
    assert!(distinct.len() > 5, "{delays:?}");
}

#[actix_rt::test]
async fn auth_and_missing_resources_fail_at_once_while_throttling_retries() {
    for status in [401u16, 403, 404] {
        let server = TestServer::builder_with(move |_| Behaviour::Reject(status))
            .start()
            .unwrap();
        let herd = Herd::new();
        let states = states(&herd);
        herd.add_endpoint("denied", spec(server.url("/"))).unwrap();
        let failed = reached(&states, "denied", 1, |s| {
            matches!(s, EndpointState::Failed { .. })
        })
        .await;
        assert_eq!(
            failed,
            EndpointState::Failed {
                reason: FailReason::NotRetryable(EndReason::HandshakeRejected { status })
            }
        );
        assert_eq!(server.connections().len(), 1, "{status}: no retry");
        let error = herd.send("denied", "anything").await.unwrap_err();
        assert!(matches!(
            error,
            SendError::Rejected(Rejected::Down {
                state: "failed",
                ..
            })
        ));
    }
    for status in [429u16, 503] {
        let server = TestServer::builder_with(move |_| Behaviour::Reject(status))
            .start()
            .unwrap();
        let herd = Herd::new();
        let states = states(&herd);
        herd.add_endpoint("busy", spec(server.url("/"))).unwrap();
        reached(&states, "busy", 3, |s| {
            matches!(s, EndpointState::Backoff { .. })
        })
        .await;
        assert!(server.connections().len() >= 3, "{status}: retried");
        assert!(
            !history(&states, "busy")
                .iter()
                .any(|s| matches!(s, EndpointState::Failed { .. }))
        );
    }
}

#[actix_rt::test]
async fn per_endpoint_overrides_change_the_table() {
    let server = TestServer::builder_with(|_| Behaviour::Accept(vec![Step::close(4001, "banned")]))
        .start()
        .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let mut actions = ActionTable::default();
    actions.on_close.insert(4001.into(), wsherd::Action::Stop);
    herd.add_endpoint("strict", spec(server.url("/")).actions(actions))
        .unwrap();
    let failed = reached(&states, "strict", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert!(matches!(
        failed,
        EndpointState::Failed {
            reason: FailReason::NotRetryable(EndReason::PeerClosed { code, .. })
        } if code == 4001
    ));
    assert_eq!(server.connections().len(), 1);
}

#[actix_rt::test]
async fn restart_intensity_gives_up_after_n_restarts_in_t() {
    let server = TestServer::start(vec![Step::Drop]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "flapper",
        spec(server.url("/")).intensity(RestartIntensity {
            max_restarts: 3,
            within: Duration::from_secs(60),
        }),
    )
    .unwrap();
    let failed = reached(&states, "flapper", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert!(matches!(
        failed,
        EndpointState::Failed {
            reason: FailReason::IntensityExceeded {
                max_restarts: 3,
                ..
            }
        }
    ));
    assert_eq!(
        server.connections().len(),
        4,
        "three restarts allowed, the fourth end gives up"
    );
    // A manual reconnect starts over.
    herd.reconnect("flapper").unwrap();
    reached(&states, "flapper", 2, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert_eq!(server.connections().len(), 8);
}

#[actix_rt::test]
async fn pause_resume_and_stop_do_what_they_say() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("ctl", spec(server.url("/"))).unwrap();
    reached(&states, "ctl", 1, is_live).await;
    herd.pause("ctl").unwrap();
    reached(&states, "ctl", 1, |s| *s == EndpointState::Paused).await;
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1000, "paused".to_owned()));
    assert_eq!(
        herd.send("ctl", "while paused").await.unwrap(),
        Submitted::Queued
    );
    assert_eq!(herd.endpoint_status("ctl").unwrap().queue_depth, 1);
    assert_eq!(server.connections().len(), 1, "no reconnect while paused");

    herd.resume("ctl").unwrap();
    reached(&states, "ctl", 2, is_live).await;
    let received = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("while paused"));

    herd.pause("ctl").unwrap();
    reached(&states, "ctl", 2, |s| *s == EndpointState::Paused).await;
    herd.send("ctl", "never sent").await.unwrap();
    let unsent = herd.remove_endpoint("ctl", 1000, "bye").await.unwrap();
    assert_eq!(unsent, [Outbound::from("never sent")]);
    reached(&states, "ctl", 1, |s| *s == EndpointState::Stopped).await;
    assert_eq!(server.connections().len(), 2);
}

#[actix_rt::test]
async fn a_server_that_is_down_costs_bounded_attempts() {
    // Bind a port, learn it, free it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(100),
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_secs(5),
        max_attempts: 0,
    };
    let started = Instant::now();
    herd.add_endpoint(
        "down",
        EndpointSpec::new(ConnectionConfig::new(format!("ws://127.0.0.1:{port}/")))
            .backoff(backoff),
    )
    .unwrap();
    reached(&states, "down", 8, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    // Eight attempts must wait at least the nominal delays between them: 10 + 20 + 40 + 80 +
    // 100 + 100 + 100 ms. A spinning loop would be done in a few milliseconds.
    assert!(
        started.elapsed() >= Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    let attempts = history(&states, "down")
        .iter()
        .filter(|s| matches!(s, EndpointState::Connecting { .. }))
        .count();
    assert!(attempts <= 9, "{attempts}");
}

#[actix_rt::test]
async fn a_thousand_endpoints_dropped_at_once_respect_the_handshake_cap() {
    const ENDPOINTS: usize = 1000;
    const CAP: usize = 16;
    let server = TestServer::start(vec![]).unwrap();
    let port = server.addr().port();
    let herd = Herd::with_governor(GovernorPolicy {
        max_concurrent_handshakes: CAP,
        reconnects_per_second: 0.0,
    });
    let states = states(&herd);
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    };
    for i in 0..ENDPOINTS {
        herd.add_endpoint(
            &format!("e{i}"),
            EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff.clone()),
        )
        .unwrap();
    }
    let live_count =
        |seen: &[Delivery<StateEvent>]| seen.iter().filter(|d| is_live(&d.message.state)).count();
    states
        .wait_for(WAIT, |seen| (live_count(seen) >= ENDPOINTS).then_some(()))
        .await
        .unwrap();
    server.stop();
    let restarted = TestServer::builder(vec![]).port(port).start().unwrap();
    states
        .wait_for(WAIT, |seen| {
            (live_count(seen) >= 2 * ENDPOINTS).then_some(())
        })
        .await
        .unwrap();
    let governor = herd.governor_stats().unwrap();
    assert!(
        governor.peak() <= CAP,
        "peak {} over the cap {CAP}",
        governor.peak()
    );
    assert!(governor.peak() > 1, "the cap was actually used");
    restarted
        .wait_for(WAIT, |c| (c.len() >= ENDPOINTS).then_some(()))
        .await
        .unwrap();
    assert_eq!(
        restarted.connections().len(),
        ENDPOINTS,
        "no duplicate connections"
    );
    assert!(herd.status().iter().all(|s| s.state == EndpointState::Live));
}

#[actix_rt::test]
async fn overflow_policies_and_ttl_behave_as_documented() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (queue_events, queue_seen) = Recorder::<Delivery<QueueEvent>>::start();
    herd.subscribe_events(queue_events.recipient());
    let small = |overflow, ttl| QueuePolicy {
        max_messages: 3,
        max_bytes: 1024,
        overflow,
        ttl,
    };
    herd.add_endpoint(
        "rej",
        spec(server.url("/")).queue(small(OverflowPolicy::Reject, None)),
    )
    .unwrap();
    herd.add_endpoint(
        "old",
        spec(server.url("/")).queue(small(OverflowPolicy::DropOldest, None)),
    )
    .unwrap();
    let ttl = Duration::from_millis(100);
    herd.add_endpoint(
        "ttl",
        spec(server.url("/")).queue(small(OverflowPolicy::Reject, Some(ttl))),
    )
    .unwrap();
    for name in ["rej", "old", "ttl"] {
        reached(&states, name, 1, is_live).await;
        herd.pause(name).unwrap();
        reached(&states, name, 1, |s| *s == EndpointState::Paused).await;
    }

    let mut refused = Vec::new();
    for i in 0..5 {
        match herd.send("rej", format!("r{i}")).await {
            Ok(outcome) => assert_eq!(outcome, Submitted::Queued),
            Err(error) => refused.push(error.into_message().unwrap()),
        }
    }
    assert_eq!(
        refused,
        [Outbound::from("r3"), Outbound::from("r4")],
        "the newest come back"
    );
    for i in 0..5 {
        assert_eq!(
            herd.send("old", format!("o{i}")).await.unwrap(),
            Submitted::Queued
        );
    }
    queue_seen
        .wait_for(WAIT, |seen| {
            let dropped: usize = seen
                .iter()
                .filter(|d| d.endpoint == "old")
                .map(|d| match *d.message {
                    QueueEvent::DroppedOldest { count } => count,
                    _ => 0,
                })
                .sum();
            (dropped == 2).then_some(())
        })
        .await
        .unwrap();
    herd.send("ttl", "stale").await.unwrap();
    // The TTL is about time passing: let it pass.
    tokio::time::sleep(ttl * 2).await;
    herd.send("ttl", "fresh").await.unwrap();

    for name in ["rej", "old", "ttl"] {
        herd.resume(name).unwrap();
        reached(&states, name, 2, is_live).await;
    }
    // Connections 0..2 were the first lives, 3..5 the resumed ones (in some order).
    let texts = |first: &str| -> Vec<String> {
        let logs = server.connections();
        logs.iter()
            .skip(3)
            .flat_map(|c| c.texts().map(str::to_owned).collect::<Vec<_>>())
            .filter(|t| t.starts_with(first))
            .collect()
    };
    server
        .wait_for(WAIT, |c| {
            let total: usize = c.iter().skip(3).map(|c| c.received.len()).sum();
            // three from "rej", three from "old", one fresh from "ttl"
            (total >= 7).then_some(())
        })
        .await
        .unwrap();
    assert_eq!(texts("r"), ["r0", "r1", "r2"]);
    assert_eq!(texts("o"), ["o2", "o3", "o4"]);
    assert_eq!(texts("fresh"), ["fresh"]);
    assert!(texts("stale").is_empty());
    let status = |name: &str| herd.endpoint_status(name).unwrap();
    assert_eq!(status("rej").queue_rejected, 2);
    assert_eq!(status("old").queue_dropped, 2);
    assert_eq!(status("ttl").queue_expired, 1);
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
    assert!(server.connections()[0].pongs.is_empty() || server.connections()[0].pings > 0);
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
async fn max_attempts_gives_up_with_the_last_reason() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        max_attempts: 3,
        ..fast_backoff()
    };
    herd.add_endpoint(
        "limited",
        EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff),
    )
    .unwrap();
    let failed = reached(&states, "limited", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert_eq!(
        failed,
        EndpointState::Failed {
            reason: FailReason::AttemptsExhausted {
                attempts: 3,
                last: EndReason::HandshakeRejected { status: 503 }
            }
        }
    );
    assert_eq!(
        server.connections().len(),
        4,
        "the first try and three retries"
    );
}
