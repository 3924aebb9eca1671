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
