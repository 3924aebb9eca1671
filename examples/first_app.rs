//! The README's first application, run against a local server it starts: load a config,
//! subscribe, start, run until Ctrl-C, close gracefully.
//!
//! `cargo run --example first_app` (Ctrl-C to stop). Only the server comes from the
//! testkit; the application part is what you write against your real endpoints.
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::path::{Path, PathBuf};

use serde::Deserialize;
use wsherd::prelude::*;
use wsherd_testkit::{Behaviour, Step, TestServer};

#[derive(Debug, Deserialize)]
struct Trade {
    seq: u64,
    data: String,
}
wsherd::inbound!(Trade => "trade");

/// The application: a herd from `config` with its subscribers in place, not started yet.
fn app(config: &Path) -> Result<Herd, wsherd::HerdError> {
    // Nothing connects yet: subscribe first, so the first message finds its subscriber.
    let herd = Herd::from_config_file(config)?;
    herd.on::<Trade, _>(|trade| {
        println!(
            "{}: trade #{} ({})",
            trade.endpoint, trade.message.seq, trade.message.data
        )
    })?;
    herd.on_event::<StateEvent, _>(|event| {
        println!("{}: [{}]", event.endpoint, event.message.state)
    })?;
    Ok(herd)
}

/// A local stand-in for an exchange: after the subscription, a trade every 200 ms; every
/// third connection drops after ten, to show a reconnect.
fn local_exchange() -> std::io::Result<TestServer> {
    TestServer::builder_with(|index| {
        let mut script = vec![Step::WaitForMessages(1)];
        for seq in 0..10 {
            script.push(Step::text(wsherd_testkit::stream_message(
                "type", "trade", seq, 8,
            )));
            script.push(Step::Pause(std::time::Duration::from_millis(200)));
        }
        script.push(if index % 3 == 0 {
            Step::Drop
        } else {
            Step::Pause(std::time::Duration::from_secs(3600))
        });
        Behaviour::Accept(script)
    })
    .start()
}

/// The config a user would keep in `wsherd.toml`, pointing at the local server.
fn write_config(server: &TestServer) -> std::io::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("wsherd-first-app-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[endpoints.exchange]\nurl = \"{}\"\non_open = ['{{\"op\":\"subscribe\",\"channel\":\"trades\"}}']\nbackoff = {{ initial = \"200ms\" }}\n",
            server.url("/stream")
        ),
    )?;
    Ok(path)
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = local_exchange()?;
    let config = write_config(&server)?;
    wsherd::run(async {
        let herd = app(&config)?;
        println!("running; Ctrl-C to stop");
        // Starts every endpoint, runs until SIGINT/SIGTERM, closes them gracefully.
        let report = herd.run_until_signal().await;
        println!("stopped: {report}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let _ = std::fs::remove_file(config);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a test fails loudly

    use super::*;

    #[test]
    fn the_first_app_receives_trades_and_stops_cleanly() {
        let server = local_exchange().unwrap();
        let config = write_config(&server).unwrap();
        wsherd::run(async {
            let herd = app(&config).unwrap();
            let mut trades = herd.stream::<Trade>().unwrap();
            let report = herd
                .run_until(
                    async {
                        for seq in 0..3 {
                            let trade = trades.next().await.unwrap();
                            assert_eq!(trade.message.seq, seq);
                        }
                    },
                    wsherd::SHUTDOWN_TIMEOUT,
                )
                .await;
            assert!(report.timed_out.is_empty());
            assert_eq!(report.unsent_count(), 0);
        });
        let _ = std::fs::remove_file(config);
    }
}
