//! `instructions [--recorder] [--batched | --inbox] [--messages N]`: one wsherd client taking N
//! messages (100,000 by default; `--batched`: through `subscribe_batched`, `--inbox`: through
//! `subscribe_in`) from the bench server, with the herd publishing its metrics every 100 ms, and with
//! or without a `metrics` recorder installed. Run it under callgrind twice and compare the
//! instruction counts: what a recorder adds, per message, without wall-clock noise.
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/wsherd-bench instructions --client tokio_tungstenite
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/wsherd-bench instructions
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/wsherd-bench instructions --recorder
//! ```
//! (the server is a child process, not traced: only the client's instructions are counted).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use wsherd::prelude::*;

use crate::server::ServerProcess;
use crate::throughput::{Counter as Deliveries, Tally, Via, all_in};

/// A recorder that does real work for every update (atomics behind a registry), as an
/// exporter's would, without exporting anything.
#[derive(Default)]
pub(crate) struct Atomics {
    cells: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

struct Sum(AtomicU64);

impl HistogramFn for Sum {
    fn record(&self, value: f64) {
        self.0.fetch_add(value.to_bits() & 0xff, Ordering::Relaxed);
    }
}

impl Atomics {
    fn cell(&self, key: &Key) -> Arc<AtomicU64> {
        let mut cells = self.cells.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(cells.entry(format!("{key:?}")).or_default())
    }
}

impl Recorder for Atomics {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.cell(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.cell(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Arc::new(Sum(AtomicU64::new(0))))
    }
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let recorder = args.iter().any(|a| a == "--recorder");
    let batched = args.iter().any(|a| a == "--batched");
    let via = match (batched, args.iter().any(|a| a == "--inbox")) {
        (true, _) => Via::Batches,
        (false, true) => Via::Inbox,
        (false, false) => Via::Mailbox,
    };
    let messages = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(100_000), |n| {
            n.parse::<u64>().map_err(|e| format!("--messages: {e}"))
        })?;
    if let Some(name) = args
        .iter()
        .position(|a| a == "--client")
        .and_then(|i| args.get(i + 1))
    {
        return baseline(name, messages);
    }
    if recorder {
        metrics::set_global_recorder(Atomics::default()).map_err(|e| e.to_string())?;
    }
    let server = ServerProcess::start(messages)?;
    let url = server.url();
    let system = System::new();
    let count = system.block_on(async move {
        let herd = Herd::new();
        herd.enable_metrics(Duration::from_millis(100))
            .map_err(|e| e.to_string())?;
        let (_deliveries, rx) =
            Deliveries::start_subscribed(messages, Tally::default(), &herd, via);
        let mut config = ConnectionConfig::new(url);
        config.heartbeat.interval = Duration::from_secs(3600);
        herd.add_endpoint("bench", config)
            .map_err(|e| e.to_string())?;
        let count = all_in(rx).await?.count;
        herd.publish_metrics();
        herd.shutdown("done", Duration::from_secs(1)).await;
        Ok::<_, String>(count)
    })?;
    println!(
        "instructions: {count} messages taken{}, recorder {}",
        match via {
            Via::Batches => " in batches",
            Via::Inbox => " through the inbox",
            Via::Mailbox => "",
        },
        if recorder { "installed" } else { "absent" }
    );
    Ok(())
}

/// `--client NAME`: one of `throughput`'s baseline clients (they read until the server's Close,
/// so they take any count), for its instruction count beside wsherd's.
fn baseline(name: &str, messages: u64) -> Result<(), String> {
    let Some((_, client)) = crate::throughput::CLIENTS
        .iter()
        .find(|(n, _)| *n == name && !n.starts_with("wsherd"))
    else {
        return Err(format!(
            "--client {name:?}: name a baseline of throughput (wsherd itself runs without --client)"
        ));
    };
    let server = ServerProcess::start(messages)?;
    let (tally, _) = client(&server.url(), Tally::default())?;
    println!("instructions: {} messages taken by {name}", tally.count);
    Ok(())
}
