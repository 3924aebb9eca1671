//! One connection, N messages decoded into an owned struct: raw awc, raw tokio-tungstenite,
//! and wsherd delivering to one subscriber actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use wsherd::{ConnectionConfig, Delivery, Herd};

use crate::measure::{Sample, median, sample};
use crate::server::ServerProcess;

const MESSAGES: u64 = 1_000_000;
const ROUNDS: usize = 3;

/// The decoded message; every client builds one per message.
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // read by decoding, which is the point
pub(crate) struct Trade {
    seq: u64,
    symbol: String,
    venue: String,
    price: f64,
    qty: f64,
    side: String,
    ts: u64,
}
wsherd::inbound!(Trade => "trade");

/// A plain awc WebSocket to `url`, as the raw loops use it.
async fn awc_socket(
    url: &str,
) -> Result<actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>, String> {
    let (_, framed) = awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(framed)
}

fn raw_awc(url: &str) -> Result<(u64, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let started = Instant::now();
        let mut framed = awc_socket(url).await?;
        let mut count = 0u64;
        while let Some(frame) = framed.next().await {
            match frame.map_err(|e| e.to_string())? {
                awc::ws::Frame::Text(bytes) => {
                    let trade: Trade = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                    std::hint::black_box(trade);
                    count += 1;
                }
                awc::ws::Frame::Close(_) => break,
                _ => {}
            }
        }
        Ok((count, started.elapsed()))
    })
}

/// A decoded trade handed to an actor by hand, as a raw awc application would.
struct Forwarded(Trade);

impl actix::Message for Forwarded {
    type Result = ();
}

/// The raw awc loop plus one actix mailbox hop per message to a counting actor: what an
/// application gets by writing the loop itself, and the floor for any per-message delivery.
fn raw_awc_actor(url: &str) -> Result<(u64, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let (counter, rx) = Counter::start();
        let started = Instant::now();
        let mut framed = awc_socket(url).await?;
        while let Some(frame) = framed.next().await {
            match frame.map_err(|e| e.to_string())? {
                awc::ws::Frame::Text(bytes) => {
                    let trade: Trade = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                    match counter.try_send(Forwarded(trade)) {
                        Ok(()) => {}
                        Err(SendError::Full(message)) => {
                            counter.send(message).await.map_err(|e| e.to_string())?
                        }
                        Err(SendError::Closed(_)) => return Err("the counter stopped".into()),
                    }
                }
                awc::ws::Frame::Close(_) => break,
                _ => {}
            }
        }
        let count = rx.await.map_err(|e| e.to_string())?;
        Ok((count, started.elapsed()))
    })
}

fn raw_tungstenite(url: &str) -> Result<(u64, Duration), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let mut count = 0u64;
        while let Some(message) = ws.next().await {
            match message.map_err(|e| e.to_string())? {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    let trade: Trade =
                        serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                    std::hint::black_box(trade);
                    count += 1;
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        Ok((count, started.elapsed()))
    })
}

/// The ezsockets client handler: decodes every text message into a `Trade`.
struct EzClient {
    count: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl ezsockets::ClientExt for EzClient {
    type Call = ();

    async fn on_text(&mut self, text: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        let trade: Trade = serde_json::from_str(text.as_str())?;
        std::hint::black_box(trade);
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn on_binary(&mut self, _: ezsockets::Bytes) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_call(&mut self, (): ()) -> Result<(), ezsockets::Error> {
        Ok(())
    }

    async fn on_close(
        &mut self,
        _: Option<ezsockets::CloseFrame>,
    ) -> Result<ezsockets::client::ClientCloseMode, ezsockets::Error> {
        // The server closes after the last message: that is the end of the run.
        Ok(ezsockets::client::ClientCloseMode::Close)
    }
}

fn ezsockets_client(url: &str) -> Result<(u64, Duration), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let count = Arc::new(AtomicU64::new(0));
    let config = ezsockets::ClientConfig::new(url).max_initial_connect_attempts(1);
    let handler_count = Arc::clone(&count);
    runtime.block_on(async move {
        let started = Instant::now();
        let (_client, run) = ezsockets::connect(
            move |_| EzClient {
                count: handler_count,
            },
            config,
        )
        .await;
        run.await.map_err(|e| e.to_string())?;
        Ok((count.load(Ordering::Relaxed), started.elapsed()))
    })
}

/// Counts deliveries; says when the last one arrived.
pub(crate) struct Counter {
    count: u64,
    target: u64,
    done: Option<tokio::sync::oneshot::Sender<u64>>,
}

impl Counter {
    /// A counter of [`MESSAGES`] deliveries, and the channel that says when they all came.
    fn start() -> (Addr<Counter>, tokio::sync::oneshot::Receiver<u64>) {
        Self::start_for(MESSAGES)
    }

    /// A counter of `target` deliveries.
    pub(crate) fn start_for(target: u64) -> (Addr<Counter>, tokio::sync::oneshot::Receiver<u64>) {
        let (done, all_in) = tokio::sync::oneshot::channel();
        let counter = Counter {
            count: 0,
            target,
            done: Some(done),
        };
        (Actor::start(counter), all_in)
    }

    fn add(&mut self, deliveries: usize) {
        self.count += deliveries as u64;
        if self.count >= self.target
            && let Some(done) = self.done.take()
        {
            let _ = done.send(self.count);
        }
    }
}

impl Actor for Counter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl Handler<Delivery<Trade>> for Counter {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
        std::hint::black_box(&trade.message);
        self.add(1);
    }
}

impl Handler<Forwarded> for Counter {
    type Result = ();
    fn handle(&mut self, trade: Forwarded, _: &mut Context<Self>) {
        std::hint::black_box(&trade.0);
        self.add(1);
    }
}

impl Handler<wsherd::Batch<Trade>> for Counter {
    type Result = ();
    fn handle(&mut self, batch: wsherd::Batch<Trade>, _: &mut Context<Self>) {
        std::hint::black_box(&batch.deliveries);
        self.add(batch.deliveries.len());
    }
}

fn wsherd_one_subscriber(url: &str) -> Result<(u64, Duration), String> {
    wsherd_client(url, false)
}

fn wsherd_batched(url: &str) -> Result<(u64, Duration), String> {
    wsherd_client(url, true)
}

fn wsherd_client(url: &str, batched: bool) -> Result<(u64, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let (counter, rx) = Counter::start();
        if batched {
            herd.subscribe_batched::<Trade>(counter.recipient());
        } else {
            herd.subscribe::<Trade>(counter.recipient());
        }
        let mut config = ConnectionConfig::new(url);
        config.heartbeat.interval = Duration::from_secs(3600);
        let started = Instant::now();
        herd.add_endpoint("bench", config)
            .map_err(|e| e.to_string())?;
        let count = rx.await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        herd.shutdown("done", Duration::from_secs(1)).await;
        Ok((count, elapsed))
    })
}

/// A client: messages received and the time from connect to the last one.
type Client = fn(&str) -> Result<(u64, Duration), String>;

const CLIENTS: [(&str, Client); 6] = [
    ("raw_awc", raw_awc),
    ("tokio_tungstenite", raw_tungstenite),
    ("ezsockets", ezsockets_client),
    ("raw_awc_actor", raw_awc_actor),
    ("wsherd", wsherd_one_subscriber),
    ("wsherd_batched", wsherd_batched),
];

/// Runs one client for a few rounds and prints its rate.
fn run_alone(name: &str) -> Result<Value, String> {
    let Some((_, client)) = CLIENTS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("no client {name:?} in throughput"));
    };
    let server = ServerProcess::start(MESSAGES)?;
    let mut rates = Vec::new();
    for _ in 0..ROUNDS * 2 {
        let (count, wall) = client(&server.url())?;
        rates.push(count as f64 / wall.as_secs_f64());
    }
    let rate = median(rates);
    println!("{name}: {rate:.0} msgs/s (median of {} runs)", ROUNDS * 2);
    Ok(json!({ name: rate }))
}

pub(crate) fn run() -> Result<Value, String> {
    // `WSHERD_BENCH_ONLY=wsherd` runs one client alone: for profiling, not for figures.
    if let Ok(only) = std::env::var("WSHERD_BENCH_ONLY") {
        return run_alone(&only);
    }
    let server = ServerProcess::start(MESSAGES)?;
    let url = server.url();
    let clients = CLIENTS;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); clients.len()];
    for _ in 0..ROUNDS {
        for (i, (name, client)) in clients.iter().enumerate() {
            let (measured, outcome) = sample(|| client(&url));
            let (count, wall) = outcome?;
            if count != MESSAGES {
                return Err(format!("{name} received {count} of {MESSAGES}"));
            }
            // Wall time from connect to the last message; CPU time of the whole call.
            samples[i].push(Sample {
                wall,
                cpu: measured.cpu,
            });
        }
    }
    println!(
        "throughput: {MESSAGES} messages of ~{} bytes, one connection, median of {ROUNDS} interleaved rounds",
        crate::server::message(0).len()
    );
    println!(
        "{:<20} {:>12} {:>10} {:>14}",
        "client", "msgs/s", "wall s", "CPU s"
    );
    let mut figures = serde_json::Map::new();
    let mut rates = Vec::new();
    for ((name, _), runs) in clients.iter().zip(&samples) {
        let wall = median(runs.iter().map(|s| s.wall.as_secs_f64()).collect());
        let cpu = median(runs.iter().map(|s| s.cpu.as_secs_f64()).collect());
        let rate = MESSAGES as f64 / wall;
        println!("{name:<20} {rate:>12.0} {wall:>10.3} {cpu:>14.3}");
        figures.insert(
            (*name).into(),
            json!({"msgs_per_s": rate, "wall_s": wall, "cpu_s": cpu}),
        );
        rates.push(rate);
    }
    let wsherd = rates[4];
    let ratios = [
        ("ratio_wsherd_raw_awc", wsherd / rates[0]),
        ("ratio_wsherd_tokio_tungstenite", wsherd / rates[1]),
        ("ratio_wsherd_ezsockets", wsherd / rates[2]),
        ("ratio_wsherd_raw_awc_actor", wsherd / rates[3]),
        ("ratio_wsherd_batched_raw_awc", rates[5] / rates[0]),
        (
            "ratio_wsherd_batched_tokio_tungstenite",
            rates[5] / rates[1],
        ),
    ];
    for (name, ratio) in ratios {
        println!("{:<32} {ratio:.3}", name.trim_start_matches("ratio_"));
        figures.insert(name.into(), json!(ratio));
    }
    Ok(Value::Object(figures))
}
