//! When and how soon an endpoint reconnects: backoff, jitter, the action table, restart
//! intensity, attempt limits.

use super::*;

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
async fn attempts_that_never_connect_fail_after_exactly_max_attempts() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    // Bind a port, learn it, free it: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let herd = Herd::new();
    let states = states(&herd);
    let limited = |url: String, max_attempts| {
        EndpointSpec::new(ConnectionConfig::new(url)).backoff(BackoffPolicy {
            max_attempts,
            ..fast_backoff()
        })
    };
    herd.add_endpoint("refused", limited(server.url("/"), 3))
        .unwrap();
    herd.add_endpoint("nobody", limited(format!("ws://127.0.0.1:{port}/"), 2))
        .unwrap();
    let failed = reached(&states, "refused", 1, |s| {
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
        3,
        "max_attempts = 3: three tries"
    );
    let failed = reached(&states, "nobody", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert!(
        matches!(
            &failed,
            EndpointState::Failed {
                reason: FailReason::AttemptsExhausted {
                    attempts: 2,
                    last: EndReason::ConnectFailed { .. }
                }
            }
        ),
        "{failed:?}"
    );
    let tries: Vec<u32> = history(&states, "nobody")
        .iter()
        .filter_map(|s| match s {
            EndpointState::Connecting { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(tries, [1, 2]);
    assert!(
        failed.to_string().contains("gave up after 2 attempts"),
        "{failed}"
    );
}

#[actix_rt::test]
async fn a_server_that_streams_and_drops_is_never_given_up_while_every_attempt_connects() {
    // Every socket goes live, streams 200 messages and is dropped: short lives, all connected.
    let server = TestServer::start(vec![Step::stream(&["tick"], 200), Step::Drop]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (ticks, ticked) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe::<Tick>(ticks.recipient());
    let backoff = BackoffPolicy {
        max_attempts: 2,
        ..fast_backoff()
    };
    herd.add_endpoint(
        "streamer",
        EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff),
    )
    .unwrap();
    // Six lives: five reconnects, each after a life far shorter than `reset_after` (5 s).
    reached(&states, "streamer", 6, is_live).await;
    ticked.wait_for_count(200, WAIT).await.unwrap();
    let path = history(&states, "streamer");
    assert!(
        !path
            .iter()
            .any(|s| matches!(s, EndpointState::Failed { .. })),
        "{path:?}"
    );
    for state in &path {
        match state {
            EndpointState::Connecting { attempt } | EndpointState::Backoff { attempt, .. } => {
                assert_eq!(*attempt, 1, "every attempt connected: {path:?}")
            }
            _ => {}
        }
    }
    let status = herd.endpoint_status("streamer").unwrap();
    assert!(status.reconnects >= 5);
}

#[actix_rt::test]
async fn a_server_looping_on_1012_gets_one_immediate_reconnect_then_backoff_paces_it() {
    // Accepts, goes live, says "service restart" at once, every time.
    let server = TestServer::start(vec![Step::close(1012, "restarting")]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(160),
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_secs(5),
        max_attempts: 2,
    };
    herd.add_endpoint(
        "restarting",
        EndpointSpec::new(ConnectionConfig::new(server.url("/"))).backoff(backoff),
    )
    .unwrap();
    reached(&states, "restarting", 5, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let path = history(&states, "restarting");
    let shown: Vec<String> = path
        .iter()
        .map(|s| match s {
            EndpointState::Backoff { attempt, delay, .. } => {
                format!("backoff {attempt} {}ms", delay.as_millis())
            }
            EndpointState::Connecting { attempt } => format!("connecting {attempt}"),
            other => other.name().to_owned(),
        })
        .collect();
    assert_eq!(
        shown[..16],
        [
            "connecting 1",
            "open",
            "live",
            // The first 1012 from a live socket: back at once, no backoff.
            "connecting 1",
            "open",
            "live",
            // From then on, paced, the delay growing; every attempt connected (attempt 1).
            "backoff 1 20ms",
            "connecting 1",
            "open",
            "live",
            "backoff 1 40ms",
            "connecting 1",
            "open",
            "live",
            "backoff 1 80ms",
            "connecting 1",
        ],
        "{shown:?}"
    );
}

#[actix_rt::test]
async fn a_reconnect_says_which_attempt_brought_the_endpoint_back_and_how_long_it_was_down() {
    // Live and dropped, refused twice, then live again.
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::Drop]),
        1 | 2 => Behaviour::Reject(503),
        _ => Behaviour::Accept(vec![]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("back", spec(server.url("/"))).unwrap();
    reached(&states, "back", 2, is_live).await;
    let (lives, delays): (Vec<StateEvent>, Vec<Duration>) = states.with(|seen| {
        let events: Vec<StateEvent> = seen
            .iter()
            .filter(|d| d.endpoint == "back")
            .map(|d| (*d.message).clone())
            .collect();
        let lives = events
            .iter()
            .filter(|e| e.state == EndpointState::Live)
            .cloned()
            .collect();
        let delays = events
            .iter()
            .filter_map(|e| match e.state {
                EndpointState::Backoff { delay, .. } => Some(delay),
                _ => None,
            })
            .collect();
        (lives, delays)
    });
    assert_eq!(lives[0].reconnected, None, "the first live is no reconnect");
    let again = lives[1]
        .reconnected
        .expect("the second live is a reconnect");
    assert_eq!(again.attempt, 3, "two refusals, then the third attempt");
    assert_eq!(delays.len(), 3);
    // Down for at least the three backoff delays it waited.
    let waited: Duration = delays.iter().sum();
    assert!(again.downtime >= waited, "{again:?} after {delays:?}");
    assert!(
        lives[1]
            .to_string()
            .starts_with("live (reconnected at attempt 3 after "),
        "{}",
        lives[1]
    );
}
