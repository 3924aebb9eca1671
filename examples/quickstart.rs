//! Two endpoints against a local demo server, typed subscribers, offline.
//!
//! `cargo run --example quickstart`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd_testkit::{Step, TestServer};

#[derive(Debug, Deserialize)]
struct Trade {
    seq: u64,
}

#[derive(Debug, Deserialize)]
struct Quote {
    seq: u64,
}

wsherd::inbound!(Trade => "trade", Quote => "quote");

/// Prints what it receives and stops the system once both endpoints have closed.
struct Printer {
    trades: u64,
    quotes: u64,
    closed: usize,
}

impl Actor for Printer {
    type Context = Context<Self>;
}

impl Handler<Delivery<Trade>> for Printer {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
        self.trades += 1;
        println!("{:>6} trade #{}", trade.endpoint, trade.message.seq);
    }
}

impl Handler<Delivery<Quote>> for Printer {
    type Result = ();
    fn handle(&mut self, quote: Delivery<Quote>, _: &mut Context<Self>) {
        self.quotes += 1;
        println!("{:>6} quote #{}", quote.endpoint, quote.message.seq);
    }
}

impl Handler<Delivery<ConnectionEvent>> for Printer {
    type Result = ();
    fn handle(&mut self, event: Delivery<ConnectionEvent>, _: &mut Context<Self>) {
        println!("{:>6} {:?}", event.endpoint, event.message);
        if let ConnectionEvent::Closed { .. } = *event.message {
            self.closed += 1;
            if self.closed == 2 {
                println!("received {} trades and {} quotes", self.trades, self.quotes);
                System::current().stop();
            }
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The demo server streams ten messages, says goodbye with close code 1000 and waits.
    let server = TestServer::start(vec![
        Step::stream(&["trade", "quote"], 10),
        Step::Pause(Duration::from_millis(200)),
        Step::close(1000, "that was the demo"),
    ])?;
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let printer = Printer {
            trades: 0,
            quotes: 0,
            closed: 0,
        }
        .start();
        herd.subscribe::<Trade>(printer.clone().recipient());
        herd.subscribe::<Quote>(printer.clone().recipient());
        herd.subscribe_events::<ConnectionEvent>(printer.recipient());
        herd.add_endpoint("left", ConnectionConfig::new(server.url("/left")))?;
        herd.add_endpoint("right", ConnectionConfig::new(server.url("/right")))?;
        Ok::<_, wsherd::HerdError>(())
    })?;
    system.run()?;
    Ok(())
}
