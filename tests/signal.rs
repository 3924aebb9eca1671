//! `Herd::run_until_signal` ends on SIGTERM with a graceful shutdown. Its own test binary: a
//! signal goes to the whole process.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use common::*;
use wsherd::prelude::*;
use wsherd_testkit::{Step, TestServer};

#[cfg(unix)]
#[actix_rt::test]
async fn run_until_signal_closes_every_endpoint_gracefully_on_sigterm() {
    use tokio::signal::unix::{SignalKind, signal};
    // Listening here too means the process no longer dies of SIGTERM, whatever the timing.
    let mut guard = signal(SignalKind::terminate()).unwrap();
    let server = TestServer::start(vec![Step::Pause(WAIT)]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    let running = actix_rt::spawn({
        let herd = herd.clone();
        async move { herd.run_until_signal().await }
    });
    // By the time the endpoint is live, `run_until_signal` has been polled and listens.
    states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|s| s.message.state == EndpointState::Live)
                .then_some(())
        })
        .await
        .unwrap();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    guard.recv().await;
    let report = tokio::time::timeout(WAIT, running).await.unwrap().unwrap();
    assert!(report.timed_out.is_empty());
    let close = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(close.0, 1000, "{close:?}");
}
