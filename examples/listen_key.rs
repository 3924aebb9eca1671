//! A fresh credential for every connect, fetched over HTTP first, through a proxy: what an
//! exchange's user-data stream needs (a listen key that expires), behind a corporate proxy.
//!
//! A local key service hands out a new key per call; the `on_connect` hook asks it before
//! every attempt and puts the key in the URL; the feed closes every socket after two
//! messages (1012, a restart), so each reconnect shows a new key. Everything runs on
//! 127.0.0.1.
//!
//! `cargo run --example listen_key`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{ConnectHook, ConnectTarget, ProxySetting, ProxyUrl};
use wsherd_testkit::{Step, TestServer, TunnelProxy};

#[derive(Debug, Deserialize)]
struct Tick {
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

#[derive(Deserialize)]
struct ListenKey {
    #[serde(rename = "listenKey")]
    listen_key: String,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let feed = TestServer::start(vec![
        Step::stream(&["tick"], 2),
        Step::Close {
            code: 1012,
            reason: "restart".into(),
        },
    ])?;
    let proxy = TunnelProxy::http()?;
    System::new().block_on(async move {
        // The key service: every POST gives a new key.
        let issued = web::Data::new(AtomicUsize::new(0));
        let keys = HttpServer::new(move || {
            App::new().app_data(issued.clone()).route(
                "/api/v3/userDataStream",
                web::post().to(|issued: web::Data<AtomicUsize>| async move {
                    let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
                    HttpResponse::Ok().json(serde_json::json!({ "listenKey": format!("key-{n}") }))
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))?;
        let keys_url = format!("http://{}/api/v3/userDataStream", keys.addrs()[0]);
        actix_rt::spawn(keys.run());

        // Asked before every attempt; its future runs on the endpoint's arbiter, so awc works.
        let hook: ConnectHook = Arc::new(move |mut target: ConnectTarget| {
            let keys_url = keys_url.clone();
            Box::pin(async move {
                let mut response = awc::Client::default()
                    .post(&keys_url)
                    .send()
                    .await
                    .map_err(|error| format!("the key service: {error}"))?;
                let key: ListenKey = response
                    .json()
                    .await
                    .map_err(|error| format!("the key service's answer: {error}"))?;
                target.url = format!("{}?listenKey={}", target.url, key.listen_key);
                Ok(target)
            })
        });
        let herd = Herd::new();
        herd.on::<Tick, _>(|tick| println!("{}: tick {}", tick.endpoint, tick.message.seq))?;
        let proxy_url = ProxyUrl::parse(&format!("http://{}", proxy.addr()))?;
        herd.add_endpoint(
            "user_data",
            EndpointSpec::new(
                ConnectionConfig::new(feed.url("/ws")).proxy(ProxySetting::Url(proxy_url)),
            )
            .on_connect(hook),
        )?;
        feed.wait_for(Duration::from_secs(30), |connections| {
            (connections.len() >= 3).then_some(())
        })
        .await?;
        for connection in feed.connections().iter().take(3) {
            println!(
                "connection {} asked for {}",
                connection.index,
                connection.path.as_deref().unwrap_or("?")
            );
        }
        println!("tunnels through the proxy: {}", proxy.requests().len());
        herd.shutdown("done", Duration::from_secs(5)).await;
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
