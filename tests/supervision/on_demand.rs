//! On-demand endpoints: idle until a subscription names them or a message is sent to them,
//! closed gracefully once nobody needed them for `linger`.

use super::outage::{Refuser, network_events};
use super::*;
use wsherd::NetworkEvent;

const LINGER: Duration = Duration::from_millis(300);

fn on_demand(url: String) -> EndpointSpec {
    spec(url).on_demand(LINGER)
}

fn is_idle(state: &EndpointState) -> bool {
    *state == EndpointState::Idle
}

/// A herd with one on-demand endpoint `od` at `url`, once it is idle, and its state events.
async fn idle_herd(url: String) -> (Herd, wsherd_testkit::Recorded<Delivery<StateEvent>>) {
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("od", on_demand(url)).unwrap();
    reached(&states, "od", 1, is_idle).await;
    (herd, states)
}

/// [`idle_herd`] at a port nothing listens on (yet), giving up after two attempts.
async fn idle_herd_giving_up_after_two(
    port: u16,
) -> (Herd, wsherd_testkit::Recorded<Delivery<StateEvent>>) {
    let herd = Herd::new();
    let states = states(&herd);
    let backoff = BackoffPolicy {
        max_attempts: 2,
        ..fast_backoff()
    };
    herd.add_endpoint(
        "od",
        on_demand(format!("ws://127.0.0.1:{port}/")).backoff(backoff),
    )
    .unwrap();
    reached(&states, "od", 1, is_idle).await;
    (herd, states)
}

fn od() -> EndpointName {
    EndpointName::new("od").unwrap()
}

#[actix_rt::test]
async fn an_on_demand_endpoint_stays_idle_for_taps_and_connects_for_a_subscription_that_names_it() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 3)]).unwrap();
    let (herd, states) = idle_herd(server.url("/")).await;
    assert_eq!(
        herd.endpoint_status("od").map(|s| s.state),
        Some(EndpointState::Idle)
    );
    // Taps on every endpoint, and a passive watcher of this one, need nothing.
    let (tap, _) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe::<Tick>(tap.recipient());
    let (everything, _) = Recorder::<Delivery<serde_json::Value>>::start();
    herd.subscribe_kind::<serde_json::Value>(
        "tick",
        everything.recipient(),
        SubscribeOptions::new(),
    );
    let (monitor, _) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe_with::<Tick>(
        monitor.recipient(),
        SubscribeOptions::new().endpoints([od()]).passive(),
    );
    // Had any of them woken the endpoint, its supervisor would have heard before this pause.
    herd.pause("od").unwrap();
    reached(&states, "od", 1, |s| *s == EndpointState::Paused).await;
    assert!(
        !history(&states, "od")
            .iter()
            .any(|s| matches!(s, EndpointState::Connecting { .. })),
        "{:?}",
        history(&states, "od")
    );
    herd.resume("od").unwrap();
    reached(&states, "od", 2, is_idle).await;
    assert!(server.connections().is_empty(), "no socket while idle");

    let (named, ticks) = Recorder::<Delivery<Tick>>::start();
    let id =
        herd.subscribe_with::<Tick>(named.recipient(), SubscribeOptions::new().endpoints([od()]));
    reached(&states, "od", 1, is_live).await;
    ticks.wait_for_count(3, WAIT).await.unwrap();
    assert_eq!(server.connections().len(), 1);

    herd.unsubscribe(id);
    let unneeded = Instant::now();
    reached(&states, "od", 3, is_idle).await;
    assert!(
        unneeded.elapsed() >= LINGER,
        "idle {:?} after the last need ended, before its linger",
        unneeded.elapsed()
    );
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1000, "idle: no longer needed".to_owned()));
    assert_eq!(
        herd.endpoint_status("od").map(|s| s.state),
        Some(EndpointState::Idle)
    );
}

#[actix_rt::test]
async fn a_message_sent_to_an_idle_endpoint_connects_it_goes_out_and_the_endpoint_idles_after() {
    let server = TestServer::start(vec![]).unwrap();
    let (herd, states) = idle_herd(server.url("/")).await;
    assert_eq!(herd.send("od", "hello").await.unwrap(), Submitted::Queued);
    reached(&states, "od", 1, is_live).await;
    let received = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("hello"));
    reached(&states, "od", 2, is_idle).await;
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close.0, 1000);
    // Idle again, the next message wakes it again, from attempt 1.
    herd.send("od", "again").await.unwrap();
    reached(&states, "od", 2, is_live).await;
    let attempts: Vec<EndpointState> = history(&states, "od")
        .into_iter()
        .filter(|s| matches!(s, EndpointState::Connecting { .. }))
        .collect();
    assert_eq!(
        attempts,
        [
            EndpointState::Connecting { attempt: 1 },
            EndpointState::Connecting { attempt: 1 }
        ]
    );
    let received = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("again"));
}

#[actix_rt::test]
async fn a_need_that_returns_within_the_linger_keeps_the_socket() {
    let server = TestServer::start(vec![]).unwrap();
    let (herd, states) = idle_herd(server.url("/")).await;
    let (first, _) = Recorder::<Delivery<Tick>>::start();
    let id =
        herd.subscribe_with::<Tick>(first.recipient(), SubscribeOptions::new().endpoints([od()]));
    reached(&states, "od", 1, is_live).await;
    herd.unsubscribe(id);
    let (second, _) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe_with::<Tick>(
        second.recipient(),
        SubscribeOptions::new().endpoints([od()]),
    );
    // The feature is about time passing: three lingers with a need all along.
    actix_rt::time::sleep(LINGER * 3).await;
    assert_eq!(
        herd.endpoint_status("od").map(|s| s.state),
        Some(EndpointState::Live)
    );
    assert_eq!(server.connections().len(), 1);
    assert!(server.connections()[0].close.is_none());
}

#[actix_rt::test]
async fn a_subscriber_that_stopped_without_unsubscribing_lets_the_endpoint_idle() {
    let server = TestServer::start(vec![]).unwrap();
    let (herd, states) = idle_herd(server.url("/")).await;
    let (subscriber, recorded) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe_with::<Tick>(
        subscriber.recipient(),
        SubscribeOptions::new().endpoints([od()]),
    );
    reached(&states, "od", 1, is_live).await;
    // No message ever reaches it to find it gone: the re-check every linger does.
    recorded.stop().await;
    reached(&states, "od", 2, is_idle).await;
}

#[actix_rt::test]
async fn an_on_demand_endpoint_that_exhausted_its_attempts_idles_once_unneeded_and_starts_over() {
    let port = free_port();
    let (herd, states) = idle_herd_giving_up_after_two(port).await;
    let (subscriber, _) = Recorder::<Delivery<Tick>>::start();
    let id = herd.subscribe_with::<Tick>(
        subscriber.recipient(),
        SubscribeOptions::new().endpoints([od()]),
    );
    let failed = reached(&states, "od", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert!(
        matches!(
            failed,
            EndpointState::Failed {
                reason: FailReason::AttemptsExhausted { attempts: 2, .. }
            }
        ),
        "{failed:?}"
    );
    // Failed while needed: it stays failed (a send is refused, as for any failed endpoint).
    assert!(matches!(
        herd.send("od", "x").await,
        Err(SendError::Rejected(Rejected::Down {
            state: "failed",
            ..
        }))
    ));
    herd.unsubscribe(id);
    reached(&states, "od", 2, is_idle).await;
    // The next need starts over from attempt 1, and a server is there now.
    let server = TestServer::builder(vec![]).port(port).start().unwrap();
    let (again, _) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe_with::<Tick>(again.recipient(), SubscribeOptions::new().endpoints([od()]));
    reached(&states, "od", 1, is_live).await;
    let attempts: Vec<u32> = history(&states, "od")
        .iter()
        .filter_map(|s| match s {
            EndpointState::Connecting { attempt } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts, [1, 2, 1]);
    drop(server);
}

#[actix_rt::test]
async fn idle_endpoints_make_no_attempt_during_an_outage_and_one_woken_then_goes_live_when_it_ends()
{
    let port = free_port();
    let refuser = Refuser::start(port).await;
    let herd = Herd::new();
    let states = states(&herd);
    let network = network_events(&herd);
    for i in 0..4 {
        herd.add_endpoint(
            &format!("always{i}"),
            spec(format!("ws://127.0.0.1:{port}/a")),
        )
        .unwrap();
    }
    for name in ["od", "sleeper"] {
        herd.add_endpoint(name, on_demand(format!("ws://127.0.0.1:{port}/od")))
            .unwrap();
    }
    network
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|d| matches!(*d.message, NetworkEvent::Offline { .. }))
                .then_some(())
        })
        .await
        .unwrap();
    // Woken while offline: held like the others, no attempt of its own beyond the probes.
    herd.send("od", "queued in the outage").await.unwrap();
    reached(&states, "od", 1, |s| {
        matches!(s, EndpointState::Connecting { .. })
    })
    .await;
    refuser.stop().await;
    let server = TestServer::builder(vec![]).port(port).start().unwrap();
    reached(&states, "od", 1, is_live).await;
    for i in 0..4 {
        reached(&states, &format!("always{i}"), 1, is_live).await;
    }
    let to_od: Vec<String> = server
        .connections()
        .iter()
        .filter(|c| c.path.as_deref() == Some("/od"))
        .flat_map(|c| {
            c.received
                .iter()
                .filter_map(|r| r.as_text().map(str::to_owned))
        })
        .collect();
    assert!(
        to_od.is_empty() || to_od == ["queued in the outage"],
        "{to_od:?}"
    );
    server
        .wait_for(WAIT, |connections| {
            connections
                .iter()
                .any(|c| {
                    c.received
                        .iter()
                        .any(|r| r.as_text() == Some("queued in the outage"))
                })
                .then_some(())
        })
        .await
        .unwrap();
    assert_eq!(
        history(&states, "sleeper"),
        [EndpointState::Idle],
        "an endpoint nobody needs never tried"
    );
    assert_eq!(
        server
            .connections()
            .iter()
            .filter(|c| c.path.as_deref() == Some("/od"))
            .count(),
        1,
        "only the woken endpoint connected"
    );
}

#[actix_rt::test]
async fn a_failed_endpoint_still_holding_a_message_idles_and_the_next_send_delivers_both_in_order()
{
    let port = free_port();
    let (herd, states) = idle_herd_giving_up_after_two(port).await;
    herd.send("od", "first").await.unwrap();
    reached(&states, "od", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    // The message it keeps is no need of a failed endpoint: idle after the linger.
    reached(&states, "od", 2, is_idle).await;
    assert_eq!(herd.endpoint_status("od").unwrap().queue_depth, 1);
    let server = TestServer::builder(vec![]).port(port).start().unwrap();
    herd.send("od", "second").await.unwrap();
    let received = server.wait_for_received(0, 2, WAIT).await.unwrap();
    let texts: Vec<&str> = received.iter().filter_map(|r| r.as_text()).collect();
    assert_eq!(texts, ["first", "second"]);
}
