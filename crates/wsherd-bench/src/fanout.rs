//! One endpoint to 10 subscribers of one type: on the endpoint's arbiter, and on another
//! arbiter one message at a time (the naive hop, `SubscribeOptions::direct`), through the
//! relay a plain subscription on another arbiter gets by itself, or in batches.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{Value, json};
use wsherd::{Batch, ConnectionConfig, Delivery, Herd, SubscribeOptions};

use crate::measure::median;
use crate::server::ServerProcess;
use crate::throughput::Trade;

const MESSAGES: u64 = 200_000;
const SUBSCRIBERS: usize = 10;
const ROUNDS: usize = 3;

/// Counts deliveries (single or batched) into a shared total; the last one says so.
struct Sink {
    total: Arc<AtomicU64>,
    target: u64,
    done: Arc<tokio::sync::Notify>,
}

impl Sink {
    fn add(&self, n: u64) {
        if self.total.fetch_add(n, Ordering::Relaxed) + n == self.target {
            self.done.notify_one();
        }
    }
}

impl Actor for Sink {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Delivery<Trade>> for Sink {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
        std::hint::black_box(&trade.message);
        self.add(1);
    }
}

impl Handler<Batch<Trade>> for Sink {
    type Result = ();
    fn handle(&mut self, batch: Batch<Trade>, _: &mut Context<Self>) {
        std::hint::black_box(&batch.deliveries);
        self.add(batch.deliveries.len() as u64);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Placement {
    SameArbiter,
    OtherArbiterEach,
    OtherArbiterRelayed,
    OtherArbiterBatched,
}

fn one(url: &str, placement: Placement) -> Result<f64, String> {
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let total = Arc::new(AtomicU64::new(0));
        let done = Arc::new(tokio::sync::Notify::new());
        let target = MESSAGES * SUBSCRIBERS as u64;
        let other = Arbiter::new();
        for _ in 0..SUBSCRIBERS {
            let sink = {
                let (total, done) = (Arc::clone(&total), Arc::clone(&done));
                move |_: &mut Context<Sink>| Sink {
                    total,
                    target,
                    done,
                }
            };
            match placement {
                Placement::SameArbiter => {
                    herd.subscribe::<Trade>(Sink::create(sink).recipient());
                }
                Placement::OtherArbiterEach => {
                    herd.subscribe_with::<Trade>(
                        Sink::start_in_arbiter(&other.handle(), sink).recipient(),
                        SubscribeOptions::new().direct(),
                    );
                }
                Placement::OtherArbiterRelayed => {
                    herd.subscribe_with::<Trade>(
                        Sink::start_in_arbiter(&other.handle(), sink).recipient(),
                        SubscribeOptions::new().arbiter(other.handle()),
                    );
                }
                Placement::OtherArbiterBatched => {
                    let addr = Sink::start_in_arbiter(&other.handle(), sink);
                    herd.subscribe_batched::<Trade>(addr.recipient());
                }
            }
        }
        let mut config = ConnectionConfig::new(url);
        config.heartbeat.interval = Duration::from_secs(3600);
        let started = Instant::now();
        herd.add_endpoint("bench", config)
            .map_err(|e| e.to_string())?;
        let notified = done.notified();
        if total.load(Ordering::Relaxed) < target {
            notified.await;
        }
        let elapsed = started.elapsed();
        herd.shutdown("done", Duration::from_secs(1)).await;
        other.stop();
        Ok(target as f64 / elapsed.as_secs_f64())
    })
}

pub(crate) fn run() -> Result<Value, String> {
    let server = ServerProcess::start(MESSAGES)?;
    let url = server.url();
    let placements = [
        ("same_arbiter", Placement::SameArbiter),
        ("other_arbiter_per_message", Placement::OtherArbiterEach),
        ("other_arbiter_auto_relay", Placement::OtherArbiterRelayed),
        ("other_arbiter_batched", Placement::OtherArbiterBatched),
    ];
    // `WSHERD_BENCH_ONLY=<placement>` runs one placement alone: for profiling, not for figures.
    if let Ok(only) = std::env::var("WSHERD_BENCH_ONLY") {
        let Some((name, placement)) = placements.iter().find(|(n, _)| *n == only) else {
            return Err(format!("no placement {only:?} in fanout"));
        };
        let rates = (0..ROUNDS * 2)
            .map(|_| one(&url, *placement))
            .collect::<Result<Vec<f64>, String>>()?;
        let rate = median(rates);
        println!(
            "{name}: {rate:.0} deliveries/s (median of {} runs)",
            ROUNDS * 2
        );
        return Ok(json!({ *name: rate }));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); placements.len()];
    for _ in 0..ROUNDS {
        for (i, (_, placement)) in placements.iter().enumerate() {
            rates[i].push(one(&url, *placement)?);
        }
    }
    println!(
        "fanout: {MESSAGES} messages to {SUBSCRIBERS} subscribers of one type, median of {ROUNDS} rounds"
    );
    let mut figures = serde_json::Map::new();
    let mut medians = Vec::new();
    for ((name, _), runs) in placements.iter().zip(rates) {
        let rate = median(runs);
        println!("{name:<28} {rate:>14.0} deliveries/s");
        figures.insert((*name).into(), json!(rate));
        medians.push(rate);
    }
    let relayed = medians[2] / medians[1];
    let batched = medians[3] / medians[1];
    println!("ratio auto relay/per-message across arbiters = {relayed:.2}");
    println!("ratio batched/per-message across arbiters = {batched:.2}");
    figures.insert("ratio_auto_relay_vs_per_message".into(), json!(relayed));
    figures.insert("ratio_batched_vs_per_message".into(), json!(batched));
    Ok(Value::Object(figures))
}
