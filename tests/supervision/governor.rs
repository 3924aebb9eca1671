//! The herd-wide governor: a cap on concurrent handshakes through a mass drop.

use super::*;

#[actix_rt::test]
async fn a_thousand_endpoints_dropped_at_once_respect_the_handshake_cap() {
    const ENDPOINTS: usize = 1000;
    const CAP: usize = 16;
    let server = TestServer::start(vec![]).unwrap();
    let port = server.addr().port();
    let herd = Herd::with_governor(GovernorPolicy {
        max_concurrent_handshakes: CAP,
        reconnects_per_second: 0.0,
        ..GovernorPolicy::default()
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
    // Each upgrade is held a while, so that handshakes in progress pile up at the server.
    let restarted = TestServer::builder(vec![])
        .port(port)
        .handshake_delay(Duration::from_millis(20))
        .start()
        .unwrap();
    states
        .wait_for(WAIT, |seen| {
            (live_count(seen) >= 2 * ENDPOINTS).then_some(())
        })
        .await
        .unwrap();
    // Counted where it matters: upgrades the server was answering at once.
    let peak = restarted.peak_handshakes();
    assert!(peak <= CAP, "{peak} handshakes at once, over the cap {CAP}");
    assert!(peak > 1, "the cap was actually used: peak {peak}");
    let governor = herd.governor_stats().unwrap();
    assert!(governor.peak() <= CAP, "the governor's own count agrees");
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
