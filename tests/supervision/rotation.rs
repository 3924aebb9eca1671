//! Planned rotation, make before break: a socket past `max_lifetime` is replaced by one that is
//! live before the old one closes; subscribers see no gap and no state change but one `Live`
//! marked `rotated`.

use wsherd::SequenceSpec;

use super::*;

#[derive(Debug, Clone, Deserialize)]
struct Numbered {
    seq: u64,
}
wsherd::inbound!(Numbered => "tick");

fn ticks(range: std::ops::RangeInclusive<u64>) -> Vec<Step> {
    range
        .map(|n| Step::Text(format!(r#"{{"type":"tick","seq":{n}}}"#)))
        .collect()
}

/// Each socket waits for the on-open subscription, then sends its part of one stream: the
/// first 1..=10, the next 8..=20 (its first three the old one already delivered), any later
/// nothing.
fn feed() -> TestServer {
    TestServer::builder_with(|index| {
        let mut script = vec![Step::WaitForMessages(1)];
        match index {
            0 => script.extend(ticks(1..=10)),
            1 => script.extend(ticks(8..=20)),
            _ => {}
        }
        Behaviour::Accept(script)
    })
    .start()
    .unwrap()
}

/// A herd with endpoint `feed` on `server`, rotated every `lifetime`, once it is live.
async fn live_rotating(
    server: &TestServer,
    lifetime: Duration,
) -> (Herd, wsherd_testkit::Recorded<Delivery<StateEvent>>) {
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("feed", spec(server.url("/")).rotate_after(lifetime))
        .unwrap();
    reached(&states, "feed", 1, is_live).await;
    (herd, states)
}

/// Waits until a socket after the first received `text`.
async fn sent_on_a_later_socket(server: &TestServer, text: &str) {
    server
        .wait_for(WAIT, |c| {
            c.iter()
                .skip(1)
                .any(|c| c.received.iter().any(|r| r.as_text() == Some(text)))
                .then_some(())
        })
        .await
        .unwrap();
}

fn rotating(url: String, lifetime: Duration) -> EndpointSpec {
    let mut spec = spec(url).on_open("sub").rotate_after(lifetime);
    // One stream over both sockets: its numbers go on across them.
    spec.connection.sequence = Some(Box::new(SequenceSpec {
        across_reconnects: true,
        ..SequenceSpec::new("seq")
    }));
    spec
}

#[actix_rt::test]
async fn a_socket_past_its_lifetime_is_replaced_before_it_closes_and_every_message_arrives_once() {
    let server = feed();
    let herd = Herd::new();
    let states = states(&herd);
    let (numbers, seen) = Recorder::<Delivery<Numbered>>::start();
    herd.subscribe(numbers.recipient());
    herd.add_endpoint(
        "feed",
        rotating(server.url("/"), Duration::from_millis(300)),
    )
    .unwrap();
    seen.wait_for(WAIT, |s| {
        s.iter().any(|d| d.message.seq == 20).then_some(())
    })
    .await
    .unwrap();
    let got: Vec<u64> = seen.with(|s| s.iter().map(|d| d.message.seq).collect());
    assert_eq!(got, (1..=20).collect::<Vec<_>>(), "no gap, no repeat");
    // The old socket closed only once the new one was live, and said why.
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1000, "rotated: a new socket took over".to_owned()));
    assert_eq!(server.connections()[1].received[0].as_text(), Some("sub"));
    let events = states.with(|s| {
        s.iter()
            .filter(|d| d.endpoint == "feed")
            .map(|d| (d.message.state.clone(), d.message.rotated))
            .collect::<Vec<_>>()
    });
    let first_live = events
        .iter()
        .position(|(state, _)| *state == EndpointState::Live)
        .unwrap();
    assert!(
        events[first_live + 1..]
            .iter()
            .all(|(state, rotated)| *state == EndpointState::Live && *rotated),
        "after the first live only rotated lives: {events:?}"
    );
    assert!(events.len() > first_live + 1, "a rotated live: {events:?}");
    let status = herd.endpoint_status("feed").unwrap();
    assert!(status.rotations >= 1);
    assert_eq!(status.reconnects, 0, "a rotation is no reconnect");
    // Sends after the rotation go out on the new socket.
    herd.send("feed", "after").await.unwrap();
    sent_on_a_later_socket(&server, "after").await;
    assert!(
        !server.connections()[0]
            .received
            .iter()
            .any(|r| r.as_text() == Some("after"))
    );
}

#[actix_rt::test]
async fn a_new_socket_that_fails_is_given_up_and_the_old_one_keeps_serving() {
    let server = TestServer::builder_with(|index| match index {
        1 => Behaviour::Reject(503),
        _ => Behaviour::Accept(vec![]),
    })
    .start()
    .unwrap();
    let (herd, states) = live_rotating(&server, Duration::from_millis(200)).await;
    // The failed successor, then (a second later) one that works.
    server
        .wait_for(WAIT, |c| (c.len() >= 3).then_some(()))
        .await
        .unwrap();
    states
        .wait_for(WAIT, |s| s.iter().any(|d| d.message.rotated).then_some(()))
        .await
        .unwrap();
    let history = history(&states, "feed");
    assert!(
        !history.iter().any(|s| matches!(
            s,
            EndpointState::Backoff { .. } | EndpointState::Connecting { attempt: 2.. }
        )),
        "the endpoint never went down: {history:?}"
    );
    assert_eq!(herd.endpoint_status("feed").unwrap().reconnects, 0);
    // The old socket served until the working successor was live.
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close.0, 1000);
}

#[actix_rt::test]
async fn a_pause_during_a_rotation_closes_both_sockets_and_loses_nothing_queued() {
    // The successor's handshake is slow: the pause comes while both exist.
    let server = TestServer::builder_with(|_| Behaviour::Accept(vec![]))
        .handshake_delay(Duration::from_millis(300))
        .start()
        .unwrap();
    let (herd, states) = live_rotating(&server, Duration::from_millis(100)).await;
    server
        .wait_for(WAIT, |c| (c.len() >= 2).then_some(()))
        .await
        .ok();
    herd.send("feed", "queued while rotating").await.unwrap();
    herd.pause("feed").unwrap();
    reached(&states, "feed", 1, |s| *s == EndpointState::Paused).await;
    herd.resume("feed").unwrap();
    server
        .wait_for(WAIT, |c| {
            c.iter()
                .any(|c| {
                    c.received
                        .iter()
                        .any(|r| r.as_text() == Some("queued while rotating"))
                })
                .then_some(())
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn an_old_socket_that_dies_while_its_successor_opens_is_an_ordinary_end_and_the_successor_takes_over()
 {
    // Every handshake takes 400 ms; the first socket is cut 200 ms into its life, while its
    // successor (started 100 ms in) is still in its handshake.
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::Pause(Duration::from_millis(200)), Step::Cut]),
        _ => Behaviour::Accept(vec![]),
    })
    .handshake_delay(Duration::from_millis(400))
    .start()
    .unwrap();
    let (herd, states) = live_rotating(&server, Duration::from_millis(100)).await;
    let again = reached(&states, "feed", 2, is_live).await;
    assert_eq!(again, EndpointState::Live);
    herd.send("feed", "after").await.unwrap();
    sent_on_a_later_socket(&server, "after").await;
    assert!(
        !history(&states, "feed")
            .iter()
            .any(|s| matches!(s, EndpointState::Failed { .. })),
        "{:?}",
        history(&states, "feed")
    );
}
