//! Three fake exchanges, three message shapes, one consolidated subscriber. Offline.
//!
//! - `alpha` puts the kind in `e` (Binance style) and answers protocol pings;
//! - `beta` nests it at `/data/type` and wants an application ping `{"op":"ping"}`;
//! - `gamma` uses `channel` and a plain-text `ping`/`pong`.
//!
//! Each gets an on-open subscription; a single actor normalises their trades. `alpha` numbers
//! its trades (`u`) and skips one: wsherd reports the gap and, as configured, asks for a
//! snapshot (`on_gap = resync`), which the book would be rebuilt from.
//!
//! `cargo run --example market_feed`
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{HeartbeatMode, HeartbeatSpec, ReplyMatcher};
use wsherd_testkit::{Step, TestServer};

#[derive(Debug, Deserialize)]
struct AlphaTrade {
    s: String,
    p: f64,
    q: f64,
}

#[derive(Debug, Deserialize)]
struct BetaTrade {
    data: BetaData,
}

#[derive(Debug, Deserialize)]
struct BetaData {
    pair: String,
    price: f64,
    amount: f64,
}

#[derive(Debug, Deserialize)]
struct GammaTrade {
    symbol: String,
    px: f64,
    sz: f64,
}

/// `alpha`'s answer to a resync request: where its book stands.
#[derive(Debug, Deserialize)]
struct AlphaSnapshot {
    s: String,
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
}

wsherd::inbound!(
    AlphaTrade => "trade",
    AlphaSnapshot => "snapshot",
    BetaTrade => "match",
    GammaTrade => "trades"
);

/// What `alpha` is sent after a gap.
const RESYNC: &str = r#"{"method":"SNAPSHOT","symbol":"BTCUSDT"}"#;

/// Trades per exchange in this demo.
const TRADES: usize = 5;

/// Prints every exchange's trades in one shape; stops after all arrived.
struct Consolidated {
    herd: Herd,
    seen: usize,
}

impl Consolidated {
    fn trade(
        &mut self,
        venue: &EndpointName,
        symbol: &str,
        price: f64,
        size: f64,
        ctx: &mut Context<Self>,
    ) {
        println!("{venue:>6}  {symbol:<8} {size:>8.3} @ {price:>10.2}");
        self.seen += 1;
        if self.seen == 3 * TRADES {
            let herd = self.herd.clone();
            ctx.spawn(
                async move { herd.shutdown("done", Duration::from_secs(5)).await }
                    .into_actor(self)
                    .map(|_, _, _| System::current().stop()),
            );
        }
    }
}

impl Actor for Consolidated {
    type Context = Context<Self>;
}

impl Handler<Delivery<AlphaTrade>> for Consolidated {
    type Result = ();
    fn handle(&mut self, t: Delivery<AlphaTrade>, ctx: &mut Context<Self>) {
        self.trade(&t.endpoint, &t.message.s, t.message.p, t.message.q, ctx);
    }
}

impl Handler<Delivery<wsherd::GapEvent>> for Consolidated {
    type Result = ();
    fn handle(&mut self, gap: Delivery<wsherd::GapEvent>, _: &mut Context<Self>) {
        let g = &gap.message;
        println!(
            "{:>6}  {} in {} {}: expected {}, got {} (resync asked)",
            gap.endpoint,
            g.what.name(),
            g.kind,
            g.scope,
            g.expected,
            g.got
        );
    }
}

impl Handler<Delivery<AlphaSnapshot>> for Consolidated {
    type Result = ();
    fn handle(&mut self, snap: Delivery<AlphaSnapshot>, _: &mut Context<Self>) {
        println!(
            "{:>6}  snapshot of {} at update {}: the book restarts from here",
            snap.endpoint, snap.message.s, snap.message.last_update_id
        );
    }
}

impl Handler<Delivery<BetaTrade>> for Consolidated {
    type Result = ();
    fn handle(&mut self, t: Delivery<BetaTrade>, ctx: &mut Context<Self>) {
        let d = &t.message.data;
        self.trade(&t.endpoint, &d.pair, d.price, d.amount, ctx);
    }
}

impl Handler<Delivery<GammaTrade>> for Consolidated {
    type Result = ();
    fn handle(&mut self, t: Delivery<GammaTrade>, ctx: &mut Context<Self>) {
        self.trade(
            &t.endpoint,
            &t.message.symbol,
            t.message.px,
            t.message.sz,
            ctx,
        );
    }
}

/// A script: wait for the subscription, then `TRADES` messages made by `message`.
fn exchange(message: impl Fn(usize) -> String, answer: Option<(&str, &str)>) -> Vec<Step> {
    let mut script = Vec::new();
    if let Some((request, reply)) = answer {
        script.push(Step::IgnorePings(true));
        script.push(Step::Answer {
            request: request.into(),
            reply: reply.into(),
        });
    }
    script.push(Step::WaitForMessages(1));
    for i in 0..TRADES {
        script.push(Step::Text(message(i)));
        script.push(Step::Pause(Duration::from_millis(150)));
    }
    script
}

fn app_heartbeat(payload: &str, reply: ReplyMatcher) -> HeartbeatSpec {
    HeartbeatSpec {
        mode: HeartbeatMode::App {
            payload: payload.into(),
            reply,
        },
        interval: Duration::from_millis(300),
        timeout: Duration::from_secs(2),
        idle_timeout: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Update ids 1, 2, 4, 5, 6: number 3 never comes.
    let mut alpha_script = vec![Step::Answer {
        request: RESYNC.into(),
        reply: r#"{"e":"snapshot","s":"BTCUSDT","lastUpdateId":4}"#.into(),
    }];
    alpha_script.extend(exchange(
        |i| {
            format!(
                r#"{{"e":"trade","s":"BTCUSDT","u":{},"p":{},"q":0.{}}}"#,
                if i < 2 { i + 1 } else { i + 2 },
                64_000 + i * 7,
                i + 1
            )
        },
        None,
    ));
    let alpha = TestServer::start(alpha_script)?;
    let beta = TestServer::start(exchange(
        |i| {
            format!(
                r#"{{"data":{{"type":"match","pair":"ETH-EUR","price":{},"amount":{}}}}}"#,
                3_100 + i,
                i + 2
            )
        },
        Some((r#"{"op":"ping"}"#, r#"{"data":{"type":"pong"}}"#)),
    ))?;
    let gamma = TestServer::start(exchange(
        |i| {
            format!(
                r#"{{"channel":"trades","symbol":"SOL/USD","px":{}.5,"sz":{}}}"#,
                140 + i,
                10 * (i + 1)
            )
        },
        Some(("ping", "pong")),
    ))?;

    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let consolidated = Consolidated {
            herd: herd.clone(),
            seen: 0,
        }
        .start();
        herd.subscribe::<AlphaTrade>(consolidated.clone().recipient());
        herd.subscribe::<AlphaSnapshot>(consolidated.clone().recipient());
        herd.subscribe_events::<wsherd::GapEvent>(consolidated.clone().recipient());
        herd.subscribe::<BetaTrade>(consolidated.clone().recipient());
        herd.subscribe::<GammaTrade>(consolidated.recipient());

        let alpha_spec = EndpointSpec::new(
            ConnectionConfig::new(alpha.url("/ws"))
                .kind(KindRule::field("e"))
                .sequence(wsherd::SequenceSpec {
                    kinds: vec!["trade".into()],
                    scope: Some("s".into()),
                    on_gap: wsherd::OnGap::Resync,
                    resync: vec![RESYNC.into()],
                    ..wsherd::SequenceSpec::new("u")
                }),
        )
        .on_open(r#"{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}"#);
        let beta_spec = EndpointSpec::new(
            ConnectionConfig::new(beta.url("/feed"))
                .kind(KindRule::pointer("/data/type"))
                .heartbeat(app_heartbeat(
                    r#"{"op":"ping"}"#,
                    ReplyMatcher::Kind("pong".into()),
                )),
        )
        .on_open(r#"{"type":"subscribe","channels":["matches"]}"#);
        let gamma_spec = EndpointSpec::new(
            ConnectionConfig::new(gamma.url("/"))
                .kind(KindRule::field("channel"))
                .heartbeat(app_heartbeat("ping", ReplyMatcher::Text("pong".into()))),
        )
        .on_open(r#"{"op":"subscribe","args":["trades:SOL/USD"]}"#);
        herd.add_endpoint("alpha", alpha_spec)?;
        herd.add_endpoint("beta", beta_spec)?;
        herd.add_endpoint("gamma", gamma_spec)?;
        Ok::<_, wsherd::HerdError>(())
    })?;
    system.run()?;
    Ok(())
}
