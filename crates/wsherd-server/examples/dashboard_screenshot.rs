//! Makes `docs/dashboard.png`, the README's picture of the dashboard: a herd of local feeds
//! (streaming at different rates, one refusing, one unreachable, one paused) served on
//! 127.0.0.1, opened in headless Chromium (`wsherd_testkit::Browser`; `scripts/test` installs
//! it) and photographed once the sparklines have filled a little. Run by hand, never by the
//! tests, so they never change the tree:
//!
//! ```text
//! cargo run -p wsherd-server --example dashboard_screenshot [-- path.png]
//! ```
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use wsherd::config::ServerSettings;
use wsherd::prelude::*;
use wsherd::{HeartbeatMode, HeartbeatSpec};
use wsherd_server::ServerOptions;
use wsherd_testkit::{Behaviour, Browser, Script, Step, TestServer};

/// How long the page watches before the picture: enough for a sparkline to show a shape.
const WATCH: Duration = Duration::from_secs(20);

/// Bursts of `burst` trades every `every`, for about ten minutes.
fn feed(burst: u64, every: Duration) -> Script {
    (0..(600_000 / every.as_millis().max(1) as u64))
        .flat_map(|n| {
            [
                Step::Stream {
                    kind_field: "type".into(),
                    kinds: vec!["trade".into()],
                    first_seq: n * burst,
                    count: burst + n % 3 * burst / 2,
                    padding: 32,
                },
                Step::Pause(every),
            ]
        })
        .collect()
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "docs/dashboard.png".to_owned());
    let servers = [
        (
            "binance",
            TestServer::start(feed(400, Duration::from_millis(100)))?,
        ),
        (
            "coinbase",
            TestServer::start(feed(120, Duration::from_millis(200)))?,
        ),
        (
            "kraken",
            TestServer::start(feed(30, Duration::from_millis(250)))?,
        ),
        (
            "bitstamp",
            TestServer::start(feed(10, Duration::from_millis(500)))?,
        ),
        (
            "okx",
            TestServer::builder_with(|_| Behaviour::Reject(503)).start()?,
        ),
        (
            "gemini",
            TestServer::start(feed(50, Duration::from_millis(300)))?,
        ),
    ];
    let herd = Herd::new();
    for (name, server) in &servers {
        herd.add_endpoint(
            name,
            EndpointSpec::new(
                ConnectionConfig::new(server.url("/ws"))
                    .kind(KindRule::field("type"))
                    .heartbeat(HeartbeatSpec {
                        mode: HeartbeatMode::WsPing,
                        interval: Duration::from_secs(2),
                        timeout: Duration::from_secs(2),
                        idle_timeout: None,
                    }),
            ),
        )?;
    }
    // Nothing listens there: it backs off, refused.
    herd.add_endpoint(
        "deribit",
        EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1:9/ws")),
    )?;
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse()?),
        ..ServerSettings::default()
    };
    let server = wsherd_server::serve(herd.clone(), &settings, ServerOptions::new())?;
    let browser = Browser::start(1280, 420).await?;
    browser.goto(&server.url()).await?;
    browser
        .until(
            "seven endpoints",
            "return document.querySelectorAll('tr[data-endpoint]').length === 7;",
            Duration::from_secs(30),
        )
        .await?;
    actix_rt::time::sleep(Duration::from_secs(3)).await;
    herd.pause("bitstamp")?;
    println!("watching for {WATCH:?}…");
    actix_rt::time::sleep(WATCH).await;
    let png = browser.screenshot().await?;
    std::fs::write(&out, &png)?;
    println!("wrote {out} ({} bytes)", png.len());
    drop(browser);
    herd.shutdown("screenshot taken", Duration::from_secs(2))
        .await;
    Ok(())
}
