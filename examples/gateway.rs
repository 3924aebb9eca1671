//! A fan-out gateway: one upstream feed (a local test server streaming trades), one herd
//! endpoint, and two local clients of the gateway at `/feed`. `ui` reads everything; `laggard`
//! stops reading for a while. The laggard's buffer fills and its oldest frames are dropped;
//! it is told how many once it catches up, while `ui` and the feed run at full speed.
//!
//! `cargo run --example gateway`
#![allow(clippy::print_stdout)]

use std::time::Duration;

use awc::ws::{Frame, Message};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use wsherd::config::{GatewayOverflow, GatewaySettings, ServerSettings};
use wsherd::prelude::*;
use wsherd_testkit::{Step, TestServer};

/// Trades the feed sends, about 2 KB each: 10 MB, more than a client that reads nothing can
/// take into its socket buffers, so the gateway's own bound shows.
const TRADES: u64 = 5_000;

type Client = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// The feed: waits for a subscription, then streams trades in bursts of ten.
fn feed() -> std::io::Result<TestServer> {
    let mut script = vec![Step::WaitForMessages(1)];
    for burst in 0..TRADES / 10 {
        script.push(Step::Stream {
            kind_field: "type".into(),
            kinds: vec!["trade".into()],
            first_seq: burst * 10,
            count: 10,
            padding: 2000,
        });
        script.push(Step::Pause(Duration::from_millis(5)));
    }
    TestServer::start(script)
}

async fn client(base: &str, topics: &[&str]) -> Result<Client, Box<dyn std::error::Error>> {
    let (_, mut client) = awc::Client::default()
        .ws(format!("{base}/feed"))
        .connect()
        .await?;
    let subscribe = json!({"op": "subscribe", "topics": topics, "id": 1});
    client
        .send(Message::Text(subscribe.to_string().into()))
        .await?;
    Ok(client)
}

/// The next JSON frame the gateway sends; `None` once it closed.
async fn next(client: &mut Client) -> Option<Value> {
    while let Some(frame) = client.next().await {
        if let Ok(Frame::Text(text)) = frame {
            return serde_json::from_slice(&text).ok();
        }
    }
    None
}

/// What the two clients saw: trades read by `ui`, and what `laggard` was told it missed.
#[derive(Debug)]
struct Seen {
    ui_trades: u64,
    laggard_trades: u64,
    laggard_dropped: u64,
}

async fn run() -> Result<Seen, Box<dyn std::error::Error>> {
    let upstream = feed()?;
    let herd = Herd::new();
    herd.add_endpoint(
        "exchange",
        EndpointSpec::new(ConnectionConfig::new(upstream.url("/ws")).kind(KindRule::field("type"))),
    )?;
    let mut gateway = GatewaySettings::new("/feed");
    gateway.max_buffer = 256 << 10;
    gateway.overflow = GatewayOverflow::DropOldest;
    gateway.allow_send = vec![EndpointName::new("exchange")?];
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse()?),
        ..ServerSettings::default()
    };
    let options = wsherd_server::ServerOptions::new().gateway(gateway);
    let server = wsherd_server::serve(herd.clone(), &settings, options)?;
    let base = server.url();
    let mut ui = client(&base, &["exchange/trade", "state"]).await?;
    let mut laggard = client(&base, &["exchange/*"]).await?;
    for client in [&mut ui, &mut laggard] {
        let ack = next(client).await.ok_or("no ack")?;
        println!("subscribed: {ack}");
    }
    // The feed starts once something is sent to it: a send through the gateway.
    let go = json!({"op": "send", "endpoint": "exchange", "data": {"op": "go"}, "id": 2});
    ui.send(Message::Text(go.to_string().into())).await?;
    let mut seen = Seen {
        ui_trades: 0,
        laggard_trades: 0,
        laggard_dropped: 0,
    };
    while seen.ui_trades < TRADES {
        let message = next(&mut ui).await.ok_or("ui: the gateway closed")?;
        match (message["op"].as_str(), message["kind"].as_str()) {
            (Some("ack"), _) => println!("ui: send {}", message["status"]),
            (_, Some("trade")) => seen.ui_trades += 1,
            _ => {}
        }
    }
    println!("ui: read all {TRADES} trades while the laggard read nothing");
    // Now the laggard catches up: what fitted in its buffer, then what it missed.
    while seen.laggard_dropped == 0 {
        let message = next(&mut laggard)
            .await
            .ok_or("laggard: the gateway closed")?;
        if message["op"] == "dropped" {
            seen.laggard_dropped = message["count"].as_u64().unwrap_or(0);
        } else if message["kind"] == "trade" {
            seen.laggard_trades += 1;
        }
    }
    println!(
        "laggard: read {} trades, then was told {} were dropped",
        seen.laggard_trades, seen.laggard_dropped
    );
    herd.shutdown("example over", Duration::from_secs(2)).await;
    server.stop(false).await;
    Ok(seen)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    wsherd::run(async {
        let seen = run().await?;
        println!("{seen:?}");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails loudly

    use super::*;

    #[test]
    fn the_reading_client_gets_every_trade_and_the_laggard_is_told_what_it_missed() {
        wsherd::run(async {
            let seen = run().await.unwrap();
            assert_eq!(seen.ui_trades, TRADES);
            assert!(seen.laggard_dropped > 0, "{seen:?}");
            assert!(seen.laggard_trades < TRADES, "{seen:?}");
        });
    }
}
