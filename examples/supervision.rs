//! State events while servers drop, stall and refuse. Offline.
//!
//! `cargo run --example supervision`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use wsherd::prelude::*;
use wsherd::{BackoffPolicy, HeartbeatMode, HeartbeatSpec, Jitter};
use wsherd_testkit::{Behaviour, Recorder, Step, TestServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Drops every connection after a moment.
    let dropping = TestServer::start(vec![Step::Pause(Duration::from_millis(300)), Step::Drop])?;
    // Goes silent on its first connection (no pongs): the heartbeat notices.
    let stalling = TestServer::builder_with(|index| {
        Behaviour::Accept(if index == 0 {
            vec![Step::IgnorePings(true)]
        } else {
            vec![]
        })
    })
    .start()?;
    // Says 503 twice, then lets us in.
    let busy = TestServer::builder_with(|index| {
        if index < 2 {
            Behaviour::Reject(503)
        } else {
            Behaviour::Accept(vec![])
        }
    })
    .start()?;
    // Wrong credentials: 401 is not worth retrying.
    let denied = TestServer::builder_with(|_| Behaviour::Reject(401)).start()?;

    let system = System::new();
    system.block_on(async move {
        let herd = Herd::new();
        let (states, log) = Recorder::<Delivery<StateEvent>>::start();
        herd.subscribe_events(states.recipient());
        let backoff = BackoffPolicy {
            initial: Duration::from_millis(200),
            max: Duration::from_secs(1),
            jitter: Jitter::Equal,
            ..BackoffPolicy::default()
        };
        let heartbeat = HeartbeatSpec {
            mode: HeartbeatMode::WsPing,
            interval: Duration::from_millis(300),
            timeout: Duration::from_millis(500),
            idle_timeout: None,
        };
        for (name, server) in [
            ("dropping", &dropping),
            ("stalling", &stalling),
            ("busy", &busy),
            ("denied", &denied),
        ] {
            let spec = EndpointSpec::new(
                ConnectionConfig::new(server.url("/")).heartbeat(heartbeat.clone()),
            )
            .backoff(backoff.clone());
            herd.add_endpoint(name, spec)?;
        }
        // Watch until each endpoint has shown what it is here for.
        log.wait_for(Duration::from_secs(30), |seen| {
            let reached = |name: &str, pred: &dyn Fn(&EndpointState) -> bool| {
                seen.iter()
                    .any(|d| d.endpoint == name && pred(&d.message.state))
            };
            let lives = |name: &str| {
                seen.iter()
                    .filter(|d| d.endpoint == name && d.message.state == EndpointState::Live)
                    .count()
            };
            (lives("dropping") >= 2
                && lives("stalling") >= 2
                && lives("busy") >= 1
                && reached("denied", &|s| matches!(s, EndpointState::Failed { .. })))
            .then_some(())
        })
        .await?;
        for event in log.snapshot() {
            // A `live` after a reconnect also says which attempt and how long it was down.
            println!("{:>9}  {}", event.endpoint, *event.message);
        }
        println!();
        print!("{}", herd.status_table());
        herd.shutdown("done", Duration::from_secs(5)).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
