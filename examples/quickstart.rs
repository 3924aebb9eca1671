//! Two supervised endpoints against a local demo server, typed subscribers, offline.
//!
//! The server drops each endpoint's first connection after a few messages; watch the
//! supervisor back off, reconnect, replay the on-open subscription and resume the stream.
//!
//! `cargo run --example quickstart`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd_testkit::{Behaviour, Step, TestServer};

#[derive(Debug, Deserialize)]
struct Trade {
    seq: u64,
}

#[derive(Debug, Deserialize)]
struct Quote {
    seq: u64,
}

wsherd::inbound!(Trade => "trade", Quote => "quote");

/// Messages each endpoint must see (two socket lives of five) before the demo ends.
const EXPECTED: u64 = 10;

/// Prints what it receives and shuts the herd down once both endpoints delivered enough.
struct Printer {
    herd: Herd,
    received: std::collections::BTreeMap<String, u64>,
}

impl Printer {
    fn count(&mut self, endpoint: &EndpointName, ctx: &mut Context<Self>) {
        let seen = self.received.entry(endpoint.to_string()).or_default();
        *seen += 1;
        if self.received.len() == 2 && self.received.values().all(|n| *n >= EXPECTED) {
            let herd = self.herd.clone();
            ctx.spawn(
                async move {
                    herd.shutdown("demo finished", Duration::from_secs(5)).await;
                }
                .into_actor(self)
                .map(|(), act, _| {
                    println!("received {:?}; closed every endpoint", act.received);
                    System::current().stop();
                }),
            );
        }
    }
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<Delivery<Trade>> for Printer {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, ctx: &mut Context<Self>) {
        println!("{:>6}  trade #{}", trade.endpoint, trade.message.seq);
        self.count(&trade.endpoint, ctx);
    }
}

impl Handler<Delivery<Quote>> for Printer {
    type Result = ();
    fn handle(&mut self, quote: Delivery<Quote>, ctx: &mut Context<Self>) {
        println!("{:>6}  quote #{}", quote.endpoint, quote.message.seq);
        self.count(&quote.endpoint, ctx);
    }
}

impl Handler<Delivery<StateEvent>> for Printer {
    type Result = ();
    fn handle(&mut self, event: Delivery<StateEvent>, _: &mut Context<Self>) {
        println!("{:>6}  [{}]", event.endpoint, event.message.state);
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Every connection waits for the subscription, streams five messages; the first two
    // connections (one per endpoint) are then dropped, later ones stay up.
    let server = TestServer::builder_with(|index| {
        let mut script = vec![
            Step::WaitForMessages(1),
            Step::stream(&["trade", "quote"], 5),
        ];
        if index < 2 {
            script.push(Step::Drop);
        }
        Behaviour::Accept(script)
    })
    .start()?;
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let printer = Printer {
            herd: herd.clone(),
            received: Default::default(),
        }
        .start();
        herd.subscribe::<Trade>(printer.clone().recipient());
        herd.subscribe::<Quote>(printer.clone().recipient());
        herd.subscribe_events::<StateEvent>(printer.recipient());
        let backoff = wsherd::BackoffPolicy {
            initial: Duration::from_millis(200),
            ..Default::default()
        };
        for name in ["left", "right"] {
            let spec = EndpointSpec::new(ConnectionConfig::new(server.url(name)))
                .on_open(r#"{"op":"subscribe","channels":["trade","quote"]}"#)
                .backoff(backoff.clone());
            herd.add_endpoint(name, spec)?;
        }
        Ok::<_, wsherd::HerdError>(())
    })?;
    system.run()?;
    Ok(())
}
