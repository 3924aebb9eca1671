//! One `Supervisor` against the testkit's servers, with no herd above it: a failure here is the
//! supervision layer's (lives, replay, queue, control), not the socket's or the facade's.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::time::Duration;

use actix::prelude::*;
use wsherd_connection::{ConnectionConfig, EndReason};
use wsherd_protocol::{CloseCode, EndpointName, Outbound};
use wsherd_router::{Delivery, Router, SubscribeOptions};
use wsherd_supervisor::{
    BackoffPolicy, Control, EndpointSpec, EndpointState, FailReason, Jitter, Rejected, Stop,
    Submit, Submitted, Supervisor,
};
use wsherd_testkit::{Behaviour, Recorded, Recorder, Step, TestServer};

/// Generous: tests wait on events, and a loaded 2-core machine is slow, not broken.
const WAIT: Duration = Duration::from_secs(60);

fn backoff(delay: Duration) -> BackoffPolicy {
    BackoffPolicy {
        initial: delay,
        max: delay,
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_secs(5),
        max_attempts: 0,
    }
}

/// Starts a supervisor for `spec` and records its state events.
fn start(
    spec: EndpointSpec,
) -> (
    Addr<Supervisor>,
    Recorded<Delivery<wsherd_supervisor::StateEvent>>,
) {
    let router = Router::new();
    let (recorder, states) = Recorder::start();
    router.subscribe_event(recorder.recipient(), SubscribeOptions::new());
    let name = EndpointName::new("feed").unwrap();
    (Supervisor::new(name, spec, router).start(), states)
}

fn names(states: &Recorded<Delivery<wsherd_supervisor::StateEvent>>) -> Vec<String> {
    states.with(|seen| {
        seen.iter()
            .map(|event| match &event.message.state {
                EndpointState::Connecting { attempt } => format!("connecting {attempt}"),
                other => other.to_string(),
            })
            .collect()
    })
}

async fn reached(
    states: &Recorded<Delivery<wsherd_supervisor::StateEvent>>,
    count: usize,
    want: impl Fn(&EndpointState) -> bool,
) -> EndpointState {
    states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .filter(|event| want(&event.message.state))
                .nth(count - 1)
                .map(|event| event.message.state.clone())
        })
        .await
        .unwrap()
}

fn is_live(state: &EndpointState) -> bool {
    *state == EndpointState::Live
}

#[actix_rt::test]
async fn every_life_replays_on_open_ahead_of_queued_messages_and_states_follow_the_path() {
    // The first life takes two messages and drops; the second stays.
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::WaitForMessages(2), Step::Drop]),
        _ => Behaviour::Accept(vec![]),
    })
    .start()
    .unwrap();
    let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/")))
        .backoff(backoff(Duration::from_millis(20)))
        .on_open(r#"{"op":"subscribe"}"#);
    let (supervisor, states) = start(spec);

    // Sent before the socket is live: queued, and written after the on-open message.
    let first = supervisor.send(Submit("queued".into())).await.unwrap();
    assert_eq!(first, Ok(Submitted::Queued));
    reached(&states, 2, is_live).await;

    let first_life = server.wait_for_received(0, 2, WAIT).await.unwrap();
    let texts: Vec<_> = first_life.iter().filter_map(|m| m.as_text()).collect();
    assert_eq!(texts, [r#"{"op":"subscribe"}"#, "queued"]);
    let second_life = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(second_life[0].as_text(), Some(r#"{"op":"subscribe"}"#));

    let path = names(&states);
    assert_eq!(path[..3], ["connecting 1", "open", "live"]);
    assert!(path[3].starts_with("backoff"), "{path:?}");
    // The first life went live: however short it was, the next try is attempt 1 again.
    assert_eq!(path[4..7], ["connecting 1", "open", "live"]);
}

#[actix_rt::test]
async fn stop_hands_back_what_was_queued_and_ends_stopped() {
    // Refused with a status that backs off: the endpoint waits in backoff, queueing.
    let server = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/")))
        .backoff(backoff(Duration::from_secs(3600)));
    let (supervisor, states) = start(spec);
    reached(&states, 1, |s| matches!(s, EndpointState::Backoff { .. })).await;

    for text in ["one", "two"] {
        let queued = supervisor.send(Submit(text.into())).await.unwrap();
        assert_eq!(queued, Ok(Submitted::Queued));
    }
    let receipt = supervisor
        .send(Stop {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        receipt.unsent,
        [Outbound::from("one"), Outbound::from("two")]
    );
    let late = closed_within(receipt.closed).await;
    assert_eq!(late, Ok(Vec::new()), "no socket, nothing handed back late");
    reached(&states, 1, |s| *s == EndpointState::Stopped).await;
    assert!(!supervisor.connected(), "the actor has stopped");
}

/// Waits for the stop signal, within the tests' patience.
async fn closed_within(
    closed: tokio::sync::oneshot::Receiver<Vec<Outbound>>,
) -> Result<Vec<Outbound>, ()> {
    match actix_rt::time::timeout(WAIT, closed).await {
        Ok(Ok(late)) => Ok(late),
        _ => Err(()),
    }
}

#[actix_rt::test]
async fn a_refusal_that_retrying_cannot_fix_fails_at_once_and_hands_sends_back() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(401))
        .start()
        .unwrap();
    let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/")))
        .backoff(backoff(Duration::from_millis(20)));
    let (supervisor, states) = start(spec);

    let failed = reached(&states, 1, |s| matches!(s, EndpointState::Failed { .. })).await;
    assert_eq!(
        failed,
        EndpointState::Failed {
            reason: FailReason::NotRetryable(EndReason::HandshakeRejected { status: 401 })
        }
    );
    assert_eq!(server.connections().len(), 1, "no second attempt");
    let refused = supervisor.send(Submit("late".into())).await.unwrap();
    assert_eq!(
        refused,
        Err(Rejected::Down {
            state: "failed",
            message: Outbound::from("late"),
        })
    );
}

#[actix_rt::test]
async fn pause_closes_the_socket_and_resume_connects_again() {
    let server = TestServer::start(vec![]).unwrap();
    let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/")))
        .backoff(backoff(Duration::from_millis(20)));
    let (supervisor, states) = start(spec);
    reached(&states, 1, is_live).await;

    supervisor.do_send(Control::Pause);
    reached(&states, 1, |s| *s == EndpointState::Paused).await;
    let close = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(close, (1000, "paused".to_owned()));

    supervisor.do_send(Control::Resume);
    reached(&states, 2, is_live).await;
    assert_eq!(server.connections().len(), 2);
}
