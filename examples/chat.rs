//! Send and receive through an echoing chat server, and keep sending while it restarts: the
//! messages wait in the endpoint's outbound queue and go out, in order, after the reconnect.
//!
//! `cargo run --example chat`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd_testkit::{Recorder, Step, TestServer};

#[derive(Debug, Clone, Deserialize)]
struct Said {
    from: String,
    text: String,
}
wsherd::inbound!(Said => "said");

fn said(text: &str) -> String {
    serde_json::json!({"type": "said", "from": "me", "text": text}).to_string()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = TestServer::start(vec![Step::Echo(true)])?;
    let port = server.addr().port();
    let system = System::new();
    system.block_on(async move {
        let herd = Herd::new();
        let (echoes, heard) = Recorder::<Delivery<Said>>::start();
        let (states, state_log) = Recorder::<Delivery<StateEvent>>::start();
        herd.subscribe(echoes.recipient());
        herd.subscribe_events(states.recipient());
        let spec = EndpointSpec::new(ConnectionConfig::new(server.url("/room")))
            .on_open(said("(joined)"))
            .backoff(wsherd::BackoffPolicy {
                initial: Duration::from_millis(200),
                ..Default::default()
            });
        herd.add_endpoint("chat", spec)?;
        let live = |n: usize| {
            let log = state_log.clone();
            async move {
                log.wait_for(Duration::from_secs(30), |s| {
                    (s.iter()
                        .filter(|d| d.message.state == EndpointState::Live)
                        .count()
                        >= n)
                        .then_some(())
                })
                .await
            }
        };
        live(1).await?;
        for text in ["hello", "anyone here?"] {
            let outcome = herd.send("chat", said(text)).await?;
            println!("sent {text:?}: {outcome:?}");
        }
        heard.wait_for_count(3, Duration::from_secs(30)).await?;

        println!("-- the server restarts --");
        server.stop();
        state_log
            .wait_for(Duration::from_secs(30), |s| {
                s.iter()
                    .any(|d| matches!(d.message.state, EndpointState::Backoff { .. }))
                    .then_some(())
            })
            .await?;
        for text in ["are you back?", "still typing"] {
            let outcome = herd.send("chat", said(text)).await?;
            println!("sent {text:?} while down: {outcome:?}");
        }
        let _restarted = TestServer::builder(vec![Step::Echo(true)])
            .port(port)
            .start()?;
        live(2).await?;
        heard.wait_for_count(6, Duration::from_secs(30)).await?;
        for echo in heard.snapshot() {
            println!("heard {}: {}", echo.message.from, echo.message.text);
        }
        herd.shutdown("bye", Duration::from_secs(5)).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
