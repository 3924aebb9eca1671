//! Devices connect *in*: each one is a session `devices:<id>` of the herd, whose readings reach
//! a typed subscriber like any feed's, and which is sent commands by name. One device drops
//! off and comes back within the resume window: the command sent while it was away reaches it.
//!
//! Everything is local: the server listens on 127.0.0.1, and the devices are awc clients in
//! the same process. `cargo run --example iot_ingest`.
#![allow(clippy::print_stdout, clippy::print_stderr)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use wsherd::config::{InboundAuth, InboundConfig, ServerSettings, Token};
use wsherd::prelude::*;

/// What a device reports.
#[derive(Debug, Clone, Deserialize)]
struct Reading {
    sensor: String,
    celsius: f64,
}
wsherd::inbound!(Reading => "reading");

/// Keeps the latest reading per device; a hot one gets a command back.
struct Thermostat {
    herd: Herd,
    seen: usize,
}

impl Actor for Thermostat {
    type Context = Context<Self>;
}

impl Handler<Delivery<Reading>> for Thermostat {
    type Result = ();

    fn handle(&mut self, reading: Delivery<Reading>, ctx: &mut Context<Self>) {
        self.seen += 1;
        println!(
            "{}: {} reads {:.1} °C",
            reading.endpoint, reading.message.sensor, reading.message.celsius
        );
        if reading.message.celsius > 30.0 {
            // Commands go by the session's name, as to any endpoint.
            let herd = self.herd.clone();
            let device = reading.endpoint.to_string();
            ctx.spawn(
                async move {
                    if let Err(error) = herd.send(&device, r#"{"cmd":"fan","on":true}"#).await {
                        eprintln!("{device}: {error}");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

const TOKEN: &str = "device-fleet-token";

/// The herd with `[inbound.devices]` (as a config file would say it: path, token, a short
/// resume window), served on 127.0.0.1, and its readings going to a [`Thermostat`].
fn start() -> Result<(Herd, wsherd_server::RunningServer), Box<dyn std::error::Error>> {
    let herd = Herd::new();
    let spec = EndpointSpec::new(
        ConnectionConfig::new("ws://127.0.0.1/unused").kind(KindRule::field("type")),
    );
    let mut devices = InboundConfig::new(
        "/ws/devices/{id}",
        InboundAuth::Token(Token::new(TOKEN)?),
        spec,
    );
    devices.spec.connect = wsherd::ConnectMode::Inbound {
        resume_window: Duration::from_secs(30),
    };
    herd.add_inbound(EndpointName::new("devices")?, devices)?;
    let thermostat = Thermostat {
        herd: herd.clone(),
        seen: 0,
    }
    .start();
    herd.subscribe::<Reading>(thermostat.recipient());
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse()?),
        ..ServerSettings::default()
    };
    let server =
        wsherd_server::serve(herd.clone(), &settings, wsherd_server::ServerOptions::new())?;
    Ok((herd, server))
}

type Device = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// Device `id` connecting with the fleet's token.
async fn connect(base: &str, id: &str) -> Result<Device, Box<dyn std::error::Error>> {
    let (_, socket) = awc::Client::default()
        .ws(format!("{base}/ws/devices/{id}"))
        .bearer_auth(TOKEN)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(socket)
}

/// The next text the device is sent.
async fn command(device: &mut Device) -> Option<String> {
    while let Some(Ok(frame)) = device.next().await {
        if let awc::ws::Frame::Text(text) = frame {
            return String::from_utf8(text.to_vec()).ok();
        }
    }
    None
}

/// Two devices report; the one that is too hot gets a command, which is returned.
async fn demo(base: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut hot = connect(base, "boiler-1").await?;
    let mut cool = connect(base, "cellar-7").await?;
    hot.send(awc::ws::Message::Text(
        r#"{"type":"reading","sensor":"water","celsius":71.5}"#.into(),
    ))
    .await?;
    cool.send(awc::ws::Message::Text(
        r#"{"type":"reading","sensor":"air","celsius":12.0}"#.into(),
    ))
    .await?;
    let to_hot = command(&mut hot).await.ok_or("boiler-1 got no command")?;
    println!("boiler-1 was told {to_hot}");
    Ok(to_hot)
}

/// The cellar device drops off; a command sent meanwhile waits in its session and reaches it
/// when it reconnects within the window.
async fn resume(herd: &Herd, base: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut cellar = connect(base, "cellar-7").await?;
    // Wait until the herd knows the device is there before it leaves.
    let mut events = herd.event_stream::<StateEvent>()?;
    cellar.send(awc::ws::Message::Close(None)).await?;
    drop(cellar);
    while let Some(event) = events.next().await {
        if event.endpoint == "devices:cellar-7" && event.message.state.name() == "disconnected" {
            break;
        }
    }
    let outcome = herd
        .send("devices:cellar-7", r#"{"cmd":"calibrate"}"#)
        .await?;
    println!("devices:cellar-7 is away; the command is {outcome:?}");
    let mut cellar = connect(base, "cellar-7").await?;
    let got = command(&mut cellar).await.ok_or("cellar-7 got nothing")?;
    println!("cellar-7 is back and was told {got}");
    Ok(got)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    wsherd::run(async {
        let (herd, server) = start()?;
        let base = server.url();
        demo(&base).await?;
        resume(&herd, &base).await?;
        println!("{}", herd.status_table());
        let report = herd.shutdown("demo over", wsherd::SHUTDOWN_TIMEOUT).await;
        println!("stopped: {report}");
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails loudly

    use super::*;

    #[test]
    fn devices_report_get_commands_and_one_resumes_within_its_window() {
        wsherd::run(async {
            let (herd, server) = start().unwrap();
            let base = server.url();
            let to_hot = demo(&base).await.unwrap();
            assert_eq!(to_hot, r#"{"cmd":"fan","on":true}"#);
            assert_eq!(
                resume(&herd, &base).await.unwrap(),
                r#"{"cmd":"calibrate"}"#
            );
            let names: Vec<String> = herd.endpoints().iter().map(|n| n.to_string()).collect();
            assert_eq!(names, ["devices:boiler-1", "devices:cellar-7"]);
        });
    }
}
