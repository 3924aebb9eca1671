//! The herd-wide outage mode: while every endpoint's host is unreachable, one probe per host
//! instead of every endpoint retrying; the first probe that connects releases the rest.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use wsherd::{NetworkEvent, OutagePolicy};
use wsherd_testkit::Recorded;

use super::*;

/// Records every network event of the herd.
pub(crate) fn network_events(herd: &Herd) -> Recorded<Delivery<NetworkEvent>> {
    let (addr, recorded) = Recorder::<Delivery<NetworkEvent>>::start();
    herd.subscribe_events(addr.recipient());
    recorded
}

/// A host that refuses every connection, counted where it is refused.
///
/// A port nobody listens on refuses in the kernel (an RST to the SYN), where no test can count
/// the attempts without capturing packets. So this listens, and answers every connection it
/// accepts with an RST at once (`SO_LINGER` 0, closed before reading a byte): the client's
/// request is reset before any answer, which wsherd classifies as `NetworkCause::Reset`, a
/// network-level failure like `Refused` (what a firewall or a load balancer without a backend
/// gives), and each attempt is one accept here. The count is the listening side's, not
/// wsherd's.
pub(crate) struct Refuser {
    accepted: Arc<AtomicUsize>,
    task: actix_rt::task::JoinHandle<()>,
}

impl Refuser {
    pub(crate) async fn start(port: u16) -> Refuser {
        let listener = actix_rt::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = actix_rt::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let _ = stream.set_zero_linger();
                drop(stream);
            }
        });
        Refuser { accepted, task }
    }

    /// Stops listening (the port is free when this returns) and says how many it refused.
    pub(crate) async fn stop(self) -> usize {
        self.task.abort();
        let _ = self.task.await;
        self.accepted.load(Ordering::SeqCst)
    }
}

#[actix_rt::test]
async fn two_hundred_endpoints_of_a_refusing_host_make_few_attempts_and_all_go_live_when_it_returns()
 {
    const ENDPOINTS: usize = 200;
    let port = free_port();
    let refuser = Refuser::start(port).await;
    let herd = Herd::new();
    let states = states(&herd);
    let network = network_events(&herd);
    // Each endpoint alone would retry every 100 ms to 1 s: about a thousand attempts in 5 s.
    let backoff = BackoffPolicy {
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
        ..BackoffPolicy::default()
    };
    for i in 0..ENDPOINTS {
        herd.add_endpoint(
            &format!("e{i}"),
            EndpointSpec::new(ConnectionConfig::new(format!(
                "ws://127.0.0.1:{port}/feed/{i}?token=secret"
            )))
            .backoff(backoff.clone()),
        )
        .unwrap();
    }
    let offline = network
        .wait_for(WAIT, |seen| {
            seen.iter()
                .find(|d| matches!(*d.message, NetworkEvent::Offline { .. }))
                .map(|d| *d.message)
        })
        .await
        .unwrap();
    assert!(
        matches!(offline, NetworkEvent::Offline { failed: 3.., .. }),
        "{offline:?}"
    );
    // The outage itself is the scenario: five seconds of a host that refuses.
    actix_rt::time::sleep(Duration::from_secs(5)).await;
    let governor = herd.governor_stats().unwrap();
    assert!(governor.offline(), "still offline");
    let held = herd.status().iter().filter(|s| s.held_by_outage).count();
    assert!(
        held >= ENDPOINTS - 10,
        "{held} endpoints held by the outage"
    );
    assert!(herd.status_table().contains("held (offline)"));
    // A held endpoint still answers: it stops at once.
    let removed = herd
        .remove_endpoint("e199", CloseCode::GOING_AWAY, "bye")
        .await;
    assert!(removed.is_ok(), "{removed:?}");
    // And pauses.
    herd.pause("e198").unwrap();
    reached(&states, "e198", 1, |s| *s == EndpointState::Paused).await;
    let attempts = refuser.stop().await;
    assert!(
        attempts <= 30,
        "{attempts} connect attempts reached the refusing host in 5 s (at most 30)"
    );
    let server = TestServer::builder(vec![]).port(port).start().unwrap();
    let returned = Instant::now();
    let live_before = states.with(|seen| seen.iter().filter(|d| is_live(&d.message.state)).count());
    assert_eq!(live_before, 0);
    states
        .wait_for(WAIT, |seen| {
            let live: std::collections::HashSet<&EndpointName> = seen
                .iter()
                .filter(|d| is_live(&d.message.state))
                .map(|d| &d.endpoint)
                .collect();
            (live.len() >= ENDPOINTS - 2).then_some(())
        })
        .await
        .unwrap();
    let took = returned.elapsed();
    network
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|d| matches!(*d.message, NetworkEvent::Online { .. }))
                .then_some(())
        })
        .await
        .unwrap();
    eprintln!(
        "outage: {attempts} attempts refused in 5 s; all {} live {took:?} after the server returned",
        ENDPOINTS - 2
    );
    assert!(
        took <= Duration::from_secs(2),
        "all live {took:?} after the server started listening (at most 2 s)"
    );
    assert!(!governor.offline());
    assert_eq!(
        herd.endpoint_status("e198").map(|s| s.state),
        Some(EndpointState::Paused),
        "a paused endpoint stays paused when the herd is online again"
    );
    drop(server);
}

#[actix_rt::test]
async fn a_forbidden_upgrade_or_a_refused_certificate_is_no_outage() {
    let forbidding = TestServer::builder_with(|_| Behaviour::Reject(403))
        .start()
        .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    let network = network_events(&herd);
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("forbidden{i}");
        herd.add_endpoint(&name, spec(forbidding.url("/"))).unwrap();
        names.push(name);
    }
    // A TLS server whose certificate no public root signed: refused by the Web PKI roots.
    let certs =
        wsherd_testkit::TestCerts::generate(&[std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)])
            .unwrap();
    let untrusted = TestServer::builder(vec![])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    for i in 0..5 {
        let name = format!("untrusted{i}");
        herd.add_endpoint(&name, spec(untrusted.url("/"))).unwrap();
        names.push(name);
    }
    for name in &names {
        let reason = closed(&events, name).await;
        assert!(reason.network_cause().is_none(), "{name}: {reason}");
    }
    let governor = herd.governor_stats().unwrap();
    assert!(!governor.offline());
    assert_eq!(governor.outages(), 0);
    assert!(network.with(|seen| seen.is_empty()));
}

#[actix_rt::test]
async fn with_the_outage_mode_off_every_endpoint_retries_on_its_own() {
    let port = free_port();
    let refuser = Refuser::start(port).await;
    let herd = Herd::with_governor(GovernorPolicy {
        outage: OutagePolicy::disabled(),
        ..GovernorPolicy::default()
    });
    let states = states(&herd);
    for i in 0..20 {
        herd.add_endpoint(&format!("e{i}"), spec(format!("ws://127.0.0.1:{port}/")))
            .unwrap();
    }
    // Each backs off on its own (20 ms): 20 endpoints twice each is 40 attempts.
    states
        .wait_for(WAIT, |seen| {
            let backoffs = seen
                .iter()
                .filter(|d| matches!(d.message.state, EndpointState::Backoff { .. }))
                .count();
            (backoffs >= 40).then_some(())
        })
        .await
        .unwrap();
    let attempts = refuser.stop().await;
    assert!(attempts >= 40, "{attempts}");
    assert!(!herd.governor_stats().unwrap().offline());
}
