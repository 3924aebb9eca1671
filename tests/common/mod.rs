//! Helpers shared by the facade's integration tests: recorders of events and waits on them.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wsherd::prelude::*;
use wsherd_testkit::{Recorded, Recorder};

/// Generous: tests wait on events, and a loaded 2-core machine is slow, not broken.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Records every connection event of the herd.
pub(crate) fn events(herd: &Herd) -> Recorded<Delivery<ConnectionEvent>> {
    let (addr, recorded) = Recorder::<Delivery<ConnectionEvent>>::start();
    herd.subscribe_events(addr.recipient());
    recorded
}

/// Records every state event of the herd.
pub(crate) fn states(herd: &Herd) -> Recorded<Delivery<StateEvent>> {
    let (addr, recorded) = Recorder::<Delivery<StateEvent>>::start();
    herd.subscribe_events(addr.recipient());
    recorded
}

/// Waits for endpoint `name`'s first `Closed` event and returns its reason.
pub(crate) async fn closed(events: &Recorded<Delivery<ConnectionEvent>>, name: &str) -> EndReason {
    events
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|event| match &*event.message {
                ConnectionEvent::Closed { reason } if event.endpoint == name => {
                    Some(reason.clone())
                }
                _ => None,
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{name} never closed: {e}"))
}

/// Waits for endpoint `name`'s first `Open` event and returns the negotiated subprotocol.
pub(crate) async fn opened(
    events: &Recorded<Delivery<ConnectionEvent>>,
    name: &str,
) -> Option<String> {
    events
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|event| match &*event.message {
                ConnectionEvent::Open { protocol, .. } if event.endpoint == name => {
                    Some(protocol.clone())
                }
                _ => None,
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{name} never opened: {e}"))
}

/// States of `name` so far.
pub(crate) fn history(states: &Recorded<Delivery<StateEvent>>, name: &str) -> Vec<EndpointState> {
    states.with(|seen| {
        seen.iter()
            .filter(|d| d.endpoint == name)
            .map(|d| d.message.state.clone())
            .collect()
    })
}

/// The backoff delays `name` has announced so far, in order.
pub(crate) fn backoff_delays(states: &Recorded<Delivery<StateEvent>>, name: &str) -> Vec<Duration> {
    history(states, name)
        .iter()
        .filter_map(|s| match s {
            EndpointState::Backoff { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect()
}

/// Waits until `name` has entered a state matching `pred` `nth` times (1-based).
pub(crate) async fn reached(
    states: &Recorded<Delivery<StateEvent>>,
    name: &str,
    nth: usize,
    pred: impl Fn(&EndpointState) -> bool,
) -> EndpointState {
    states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .filter(|d| d.endpoint == name && pred(&d.message.state))
                .nth(nth - 1)
                .map(|d| d.message.state.clone())
        })
        .await
        .unwrap_or_else(|e| panic!("{name} never reached the state {nth} times: {e}"))
}

/// Waits until `name` gave up on an end that is not retried, and returns that end.
pub(crate) async fn not_retried(states: &Recorded<Delivery<StateEvent>>, name: &str) -> EndReason {
    match reached(states, name, 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await
    {
        EndpointState::Failed {
            reason: wsherd::FailReason::NotRetryable(reason),
        } => reason,
        other => panic!("{name}: {other:?}"),
    }
}

/// A port nothing listens on right now: bound, learnt, freed.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap()
}

/// Whether `state` is `Live`.
pub(crate) fn is_live(state: &EndpointState) -> bool {
    *state == EndpointState::Live
}

/// A config file in the temp directory, removed when dropped.
pub(crate) struct TempConfig(PathBuf);

impl TempConfig {
    pub(crate) fn new(extension: &str, contents: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "wsherd-test-{}-{}.{extension}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, contents).unwrap();
        TempConfig(path)
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub(crate) fn name(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
