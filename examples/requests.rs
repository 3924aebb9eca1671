//! Requests by id against a local exchange-like server: a subscription acknowledged by its id,
//! a request the server never answers (it times out), and one cut off by a dropped socket.
//!
//! `cargo run --example requests`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use serde_json::json;
use wsherd::RequestError;
use wsherd::prelude::*;
use wsherd_testkit::{Behaviour, Step, TestServer};

/// What the server answers a request with.
#[derive(Debug, Deserialize)]
struct Ack {
    id: u64,
    result: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The first socket answers "subscribe" requests, ignores the rest, and is cut after the
    // third message; the next one answers everything.
    let server = TestServer::builder_with(|index| {
        let answer = Step::ReplyById {
            field: "id".into(),
            reply: r#"{"type":"ack","id":{id},"result":"ok"}"#.into(),
        };
        match index {
            0 => Behaviour::Accept(vec![
                Step::WaitForMessages(1),
                Step::Text(r#"{"type":"ack","id":1,"result":"subscribed"}"#.into()),
                Step::WaitForMessages(3),
                Step::Cut,
            ]),
            _ => Behaviour::Accept(vec![answer]),
        }
    })
    .start()?;
    System::new().block_on(async move {
        let herd = Herd::new();
        herd.add_endpoint(
            "exchange",
            EndpointSpec::new(ConnectionConfig::new(server.url("/ws"))),
        )?;

        let ack: Ack = herd
            .request(
                "exchange",
                json!({"op": "subscribe", "channel": "trades"}),
                Duration::from_secs(10),
            )
            .await?;
        println!("request {} acknowledged: {}", ack.id, ack.result);

        match herd
            .request::<Ack>(
                "exchange",
                json!({"op": "ping"}),
                Duration::from_millis(300),
            )
            .await
        {
            Err(RequestError::Timeout { id, timeout }) => {
                println!("request {id}: no reply within {timeout:?}")
            }
            other => println!("unexpected: {other:?}"),
        }

        // The server cuts the socket after this one arrives: written, never answered.
        match herd
            .request::<Ack>("exchange", json!({"op": "order"}), Duration::from_secs(10))
            .await
        {
            Err(error @ RequestError::Disconnected { .. }) => {
                println!("{error}; the peer may or may not have it: ask before resending")
            }
            other => println!("unexpected: {other:?}"),
        }

        let ack: Ack = herd
            .request("exchange", json!({"op": "status"}), Duration::from_secs(10))
            .await?;
        println!(
            "after the reconnect, request {} answered: {}",
            ack.id, ack.result
        );
        let status = herd.endpoint_status("exchange").ok_or("no status")?;
        println!(
            "requests: {} sent, {} replied, {} timed out, {} disconnected",
            status.requests.sent,
            status.requests.replied,
            status.requests.timed_out,
            status.requests.disconnected
        );
        herd.shutdown("done", Duration::from_secs(5)).await;
        Ok(())
    })
}
