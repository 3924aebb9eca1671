//! One connection, N messages decoded into an owned struct: raw awc, raw tokio-tungstenite,
//! fastwebsockets, ezsockets, raw awc plus one actor hop, and wsherd delivering to one
//! subscriber actor (per message and batched). Every client returns a checksum of the fields
//! it decoded, checked against the server's messages, so a figure is only printed for work done.

use std::sync::{Arc, Mutex};
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

/// The decoded message; every client builds one per message and folds it into a [`Tally`].
#[derive(Debug, Deserialize)]
pub(crate) struct Trade {
    pub(crate) seq: u64,
    symbol: String,
    venue: String,
    price: f64,
    qty: f64,
    side: String,
    /// The latency scenario's server puts its send time here, in nanoseconds since the epoch.
    pub(crate) ts: u64,
}
wsherd::inbound!(Trade => "trade");

impl Trade {
    /// A number that depends on every decoded field, so a client cannot match the expected
    /// checksum without decoding each message in full. `seq` is spread by a large odd factor
    /// so that a lost message and a repeated one do not cancel out in the sum.
    pub(crate) fn digest(&self) -> u64 {
        let text = self.symbol.len() + self.venue.len() + self.side.len();
        self.seq
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(self.price.to_bits())
            .wrapping_add(self.qty.to_bits().rotate_left(17))
            .wrapping_add(self.ts.rotate_left(31))
            .wrapping_add(text as u64)
    }
}

/// What a client took: how many trades, and the wrapping sum of their digests.
///
/// Every client returns one, and the run compares it with [`expected`]: a client that counts
/// frames without decoding them, or decodes less than the whole message, fails the run
/// instead of posting a rate it did not earn.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Tally {
    pub(crate) count: u64,
    pub(crate) checksum: u64,
}

impl Tally {
    fn add(&mut self, trade: &Trade) {
        self.count += 1;
        self.checksum = self.checksum.wrapping_add(trade.digest());
    }
}

/// What a client does with each decoded trade: this scenario tallies it ([`Tally`]), the
/// latency scenario times it. The clients are generic over it so that both scenarios run the
/// very same loops; each is compiled for its sink, so the tally costs what it did by hand.
pub(crate) trait TradeSink: Default + Unpin + 'static {
    /// One decoded trade, as the client's loop or handler sees it.
    fn take(&mut self, trade: &Trade);
    /// Trades taken so far.
    fn count(&self) -> u64;
}

impl TradeSink for Tally {
    #[inline]
    fn take(&mut self, trade: &Trade) {
        self.add(trade);
    }

    #[inline]
    fn count(&self) -> u64 {
        self.count
    }
}

/// The tally the server's `count` messages imply, from the very text it sends
/// ([`crate::server::message`]), decoded once here before any client runs.
pub(crate) fn expected(count: u64) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for seq in 0..count {
        let trade: Trade = serde_json::from_str(&crate::server::message(seq))
            .map_err(|e| format!("the server's own message {seq} does not decode: {e}"))?;
        tally.add(&trade);
    }
    Ok(tally)
}

/// Fails unless `name` took exactly the trades the server sent, decoded in full.
pub(crate) fn check(name: &str, got: Tally, want: Tally) -> Result<(), String> {
    if got.count != want.count {
        return Err(format!(
            "{name} received {} of {} messages",
            got.count, want.count
        ));
    }
    if got.checksum != want.checksum {
        return Err(format!(
            "{name} took all {} messages but its checksum of decoded fields is {:#x}, not the \
             {:#x} the server's messages imply: it skipped or garbled decoding",
            got.count, got.checksum, want.checksum
        ));
    }
    Ok(())
}

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

/// The raw awc loop: each text frame decoded and handed to `sink`, until the server's Close.
pub(crate) fn raw_awc<S: TradeSink>(url: &str, mut sink: S) -> Result<(S, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let started = Instant::now();
        let mut framed = awc_socket(url).await?;
        while let Some(frame) = framed.next().await {
            match frame.map_err(|e| e.to_string())? {
                awc::ws::Frame::Text(bytes) => {
                    let trade: Trade = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
                    sink.take(&trade);
                }
                awc::ws::Frame::Close(_) => break,
                _ => {}
            }
        }
        Ok((sink, started.elapsed()))
    })
}

/// A decoded trade handed to an actor by hand, as a raw awc application would.
struct Forwarded(Trade);

impl actix::Message for Forwarded {
    type Result = ();
}

/// The raw awc loop plus one actix mailbox hop per message to a counting actor: what an
/// application gets by writing the loop itself, and the floor for any per-message delivery.
fn raw_awc_actor(url: &str, tally: Tally) -> Result<(Tally, Duration), String> {
    raw_awc_actor_for(url, MESSAGES, tally)
}

/// [`raw_awc_actor`] for `count` messages into `sink`.
pub(crate) fn raw_awc_actor_for<S: TradeSink>(
    url: &str,
    count: u64,
    sink: S,
) -> Result<(S, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let (counter, rx) = Counter::start(count, sink);
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
        let sink = all_in(rx).await?;
        Ok((sink, started.elapsed()))
    })
}

/// The raw tokio-tungstenite loop, on a current-thread runtime like actix's.
pub(crate) fn raw_tungstenite<S: TradeSink>(
    url: &str,
    mut sink: S,
) -> Result<(S, Duration), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        while let Some(message) = ws.next().await {
            match message.map_err(|e| e.to_string())? {
                tokio_tungstenite::tungstenite::Message::Text(text) => {
                    let trade: Trade =
                        serde_json::from_str(text.as_str()).map_err(|e| e.to_string())?;
                    sink.take(&trade);
                }
                tokio_tungstenite::tungstenite::Message::Close(_) => break,
                _ => {}
            }
        }
        Ok((sink, started.elapsed()))
    })
}

/// fastwebsockets over hyper 1's client handshake, as its docs show it: the upgraded stream
/// read frame by frame and each text frame decoded, like the raw awc loop. The server sends
/// every message as one final frame, so no frames need joining; were one split, its parts
/// would not decode and the checksum would fail the run rather than flatter it.
pub(crate) fn fastwebsockets_client<S: TradeSink>(
    url: &str,
    mut sink: S,
) -> Result<(S, Duration), String> {
    use fastwebsockets::OpCode;
    use hyper::header::{CONNECTION, HOST, UPGRADE};

    let (authority, path) = url
        .strip_prefix("ws://")
        .and_then(|rest| rest.split_once('/'))
        .ok_or_else(|| format!("fastwebsockets: {url:?} is not ws://host:port/path"))?;
    let request = hyper::Request::builder()
        .uri(format!("/{path}"))
        .header(HOST, authority)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let started = Instant::now();
        let stream = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(|e| e.to_string())?;
        // hyper drives the HTTP/1 handshake on a task of its own, spawned on this runtime.
        let executor = hyper_util::rt::TokioExecutor::new();
        let (mut ws, _) = fastwebsockets::handshake::client(&executor, request, stream)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let frame = ws.read_frame().await.map_err(|e| e.to_string())?;
            match frame.opcode {
                OpCode::Text => {
                    let trade: Trade =
                        serde_json::from_slice(&frame.payload).map_err(|e| e.to_string())?;
                    sink.take(&trade);
                }
                // Answered by fastwebsockets itself (auto-close is on by default).
                OpCode::Close => break,
                _ => {}
            }
        }
        Ok((sink, started.elapsed()))
    })
}

/// The ezsockets client handler: decodes every text message into a `Trade`.
struct EzClient {
    tally: Tally,
    /// Where the tally goes at the Close that ends the run: ezsockets owns the handler, so
    /// the caller reads it from here, locked once rather than per message.
    out: Arc<Mutex<Tally>>,
}

#[async_trait::async_trait]
impl ezsockets::ClientExt for EzClient {
    type Call = ();

    async fn on_text(&mut self, text: ezsockets::Utf8Bytes) -> Result<(), ezsockets::Error> {
        let trade: Trade = serde_json::from_str(text.as_str())?;
        self.tally.add(&trade);
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
        // Only this handler locks it before `run` returns, so it cannot be poisoned; were it,
        // the caller would read an empty tally and fail the run, which is the safe way round.
        if let Ok(mut out) = self.out.lock() {
            *out = self.tally;
        }
        Ok(ezsockets::client::ClientCloseMode::Close)
    }
}

fn ezsockets_client(url: &str, tally: Tally) -> Result<(Tally, Duration), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let out = Arc::new(Mutex::new(Tally::default()));
    let config = ezsockets::ClientConfig::new(url).max_initial_connect_attempts(1);
    let handler_out = Arc::clone(&out);
    runtime.block_on(async move {
        let started = Instant::now();
        let (_client, run) = ezsockets::connect(
            move |_| EzClient {
                tally,
                out: handler_out,
            },
            config,
        )
        .await;
        run.await.map_err(|e| e.to_string())?;
        let elapsed = started.elapsed();
        let tally = *out.lock().map_err(|_| "the ezsockets tally is poisoned")?;
        Ok((tally, elapsed))
    })
}

/// Hands deliveries to its sink; says when the last one arrived, with the sink.
pub(crate) struct Counter<S> {
    sink: S,
    target: u64,
    done: Option<tokio::sync::oneshot::Sender<S>>,
}

/// Longer than any run takes: a client that loses a message fails the run instead of
/// waiting for it forever.
const ALL_IN_WITHIN: Duration = Duration::from_secs(120);

/// What a [`Counter`] took, once it has taken all it was started for.
pub(crate) async fn all_in<S>(rx: tokio::sync::oneshot::Receiver<S>) -> Result<S, String> {
    match tokio::time::timeout(ALL_IN_WITHIN, rx).await {
        Ok(Ok(sink)) => Ok(sink),
        Ok(Err(_)) => Err("the counter stopped before all messages came".into()),
        Err(_) => Err(format!(
            "not all messages came within {} s",
            ALL_IN_WITHIN.as_secs()
        )),
    }
}

impl<S: TradeSink> Counter<S> {
    /// A counter of `target` deliveries into `sink`, and the channel that says when they all
    /// came.
    pub(crate) fn start(target: u64, sink: S) -> (Addr<Self>, tokio::sync::oneshot::Receiver<S>) {
        let (done, all_in) = tokio::sync::oneshot::channel();
        let counter = Counter {
            sink,
            target,
            done: Some(done),
        };
        (Actor::start(counter), all_in)
    }

    /// A counter as [`Counter::start`] makes one, subscribed to `herd`'s trades `via` the
    /// given path before it starts.
    pub(crate) fn start_subscribed(
        target: u64,
        sink: S,
        herd: &Herd,
        via: Via,
    ) -> (Addr<Self>, tokio::sync::oneshot::Receiver<S>) {
        let (done, all_in) = tokio::sync::oneshot::channel();
        let counter = Counter::create(|ctx| {
            via.subscribe(herd, ctx);
            Counter {
                sink,
                target,
                done: Some(done),
            }
        });
        (counter, all_in)
    }

    fn add(&mut self, trade: &Trade) {
        self.sink.take(trade);
        if self.sink.count() >= self.target
            && let Some(done) = self.done.take()
        {
            let _ = done.send(std::mem::take(&mut self.sink));
        }
    }
}

impl<S: TradeSink> Actor for Counter<S> {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
    }
}

impl<S: TradeSink> Handler<Delivery<Trade>> for Counter<S> {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
        self.add(&trade.message);
    }
}

impl<S: TradeSink> Handler<Forwarded> for Counter<S> {
    type Result = ();
    fn handle(&mut self, trade: Forwarded, _: &mut Context<Self>) {
        self.add(&trade.0);
    }
}

impl<S: TradeSink> Handler<wsherd::Batch<Trade>> for Counter<S> {
    type Result = ();
    fn handle(&mut self, batch: wsherd::Batch<Trade>, _: &mut Context<Self>) {
        for delivery in &batch.deliveries {
            self.add(&delivery.message);
        }
    }
}

fn wsherd_one_subscriber(url: &str, tally: Tally) -> Result<(Tally, Duration), String> {
    wsherd_client(url, Via::Mailbox, MESSAGES, tally)
}

fn wsherd_inbox(url: &str, tally: Tally) -> Result<(Tally, Duration), String> {
    wsherd_client(url, Via::Inbox, MESSAGES, tally)
}

fn wsherd_batched(url: &str, tally: Tally) -> Result<(Tally, Duration), String> {
    wsherd_client(url, Via::Batches, MESSAGES, tally)
}

/// How the wsherd client's subscriber actor takes its trades.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// `Herd::subscribe`: one `Delivery` per message through the actor's mailbox.
    Mailbox,
    /// `Herd::subscribe_in`: one `Delivery` per message through the inbox its context drains.
    Inbox,
    /// `Herd::subscribe_batched`: one `Batch` per read turn through the mailbox.
    Batches,
}

impl Via {
    /// Subscribes the counter whose context `ctx` is (before it starts) to the trades.
    fn subscribe<S: TradeSink>(self, herd: &Herd, ctx: &mut Context<Counter<S>>) {
        match self {
            Via::Mailbox => {
                herd.subscribe::<Trade>(ctx.address().recipient());
            }
            Via::Inbox => {
                herd.subscribe_in::<Trade, _>(ctx);
            }
            Via::Batches => {
                herd.subscribe_batched::<Trade>(ctx.address().recipient());
            }
        }
    }
}

/// wsherd delivering `count` trades into `sink` through one subscriber actor, `via` its
/// mailbox (per message or batched) or its inbox, on the same thread as the connection (a
/// herd from [`Herd::new`] has no workers).
pub(crate) fn wsherd_client<S: TradeSink>(
    url: &str,
    via: Via,
    count: u64,
    sink: S,
) -> Result<(S, Duration), String> {
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        let (_counter, rx) = Counter::start_subscribed(count, sink, &herd, via);
        let mut config = ConnectionConfig::new(url);
        config.heartbeat.interval = Duration::from_secs(3600);
        let started = Instant::now();
        herd.add_endpoint("bench", config)
            .map_err(|e| e.to_string())?;
        let sink = all_in(rx).await;
        let elapsed = started.elapsed();
        herd.shutdown("done", Duration::from_secs(1)).await;
        Ok((sink?, elapsed))
    })
}

/// Messages per second of decoding the server's [`MESSAGES`] messages from memory into
/// [`Trade`]s (the median of [`ROUNDS`] passes); fails unless the tally is `want`'s.
fn decode_only(want: Tally) -> Result<f64, String> {
    let texts: Vec<String> = (0..MESSAGES).map(crate::server::message).collect();
    let mut rates = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let mut tally = Tally::default();
        for text in &texts {
            let trade: Trade = serde_json::from_str(text).map_err(|e| e.to_string())?;
            tally.add(&trade);
        }
        let elapsed = started.elapsed();
        check("decode_only", tally, want)?;
        rates.push(MESSAGES as f64 / elapsed.as_secs_f64());
    }
    Ok(median(rates))
}

/// A client: given a fresh sink, the sink holding what it decoded and the time from connect
/// to the last message.
pub(crate) type Client<S> = fn(&str, S) -> Result<(S, Duration), String>;

pub(crate) const CLIENTS: [(&str, Client<Tally>); 8] = [
    ("raw_awc", raw_awc),
    ("tokio_tungstenite", raw_tungstenite),
    ("ezsockets", ezsockets_client),
    ("raw_awc_actor", raw_awc_actor),
    ("wsherd", wsherd_one_subscriber),
    ("wsherd_batched", wsherd_batched),
    ("fastwebsockets", fastwebsockets_client),
    ("wsherd_inbox", wsherd_inbox),
];

/// Runs one client for a few rounds and prints its rate.
fn run_alone(name: &str) -> Result<Value, String> {
    let Some((_, client)) = CLIENTS.iter().find(|(n, _)| *n == name) else {
        return Err(format!("no client {name:?} in throughput"));
    };
    let want = expected(MESSAGES)?;
    let server = ServerProcess::start(MESSAGES)?;
    let mut rates = Vec::new();
    for _ in 0..ROUNDS * 2 {
        let (tally, wall) = client(&server.url(), Tally::default())?;
        check(name, tally, want)?;
        rates.push(tally.count as f64 / wall.as_secs_f64());
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
    let want = expected(MESSAGES)?;
    // Pinned where it can be (`WSHERD_BENCH_PIN=0` to run unpinned): see `pin.rs`.
    let pin = crate::pin::wanted();
    let server =
        ServerProcess::start_pinned(MESSAGES, false, pin.then_some(crate::pin::SERVER_CPU))?;
    let _pinned = if pin {
        Some(crate::pin::ClientPin::new()?)
    } else {
        None
    };
    let url = server.url();
    let clients = CLIENTS;
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); clients.len()];
    for _ in 0..ROUNDS {
        for (i, (name, client)) in clients.iter().enumerate() {
            let (measured, outcome) = sample(|| client(&url, Tally::default()));
            let (tally, wall) = outcome?;
            check(name, tally, want)?;
            // Wall time from connect to the last message; CPU time of the whole call.
            samples[i].push(Sample {
                wall,
                cpu: measured.cpu,
            });
        }
    }
    // The ceiling of every client: the same messages decoded from memory into the same struct,
    // with no socket, framing or delivery (pinned like the clients).
    let ceiling = decode_only(want)?;
    let decode_ns = 1e9 / ceiling;
    println!(
        "throughput: {MESSAGES} messages of ~{} bytes, one connection, median of {ROUNDS} interleaved rounds, {}",
        crate::server::message(0).len(),
        if pin {
            "server on core 0, every client thread on core 1"
        } else {
            "unpinned"
        }
    );
    println!(
        "{:<20} {:>12} {:>10} {:>14} {:>18}",
        "client", "msgs/s", "wall s", "CPU s", "ns beside decode"
    );
    let mut figures = serde_json::Map::new();
    figures.insert("pinned".into(), json!(pin));
    let mut rates = Vec::new();
    for ((name, _), runs) in clients.iter().zip(&samples) {
        let wall = median(runs.iter().map(|s| s.wall.as_secs_f64()).collect());
        let cpu = median(runs.iter().map(|s| s.cpu.as_secs_f64()).collect());
        let rate = MESSAGES as f64 / wall;
        // A client's wall time per message beyond the decode: socket, framing, UTF-8, routing,
        // delivery, and any wait for the server (a run on a quiet machine has next to none).
        let beside = 1e9 / rate - decode_ns;
        println!("{name:<20} {rate:>12.0} {wall:>10.3} {cpu:>14.3} {beside:>18.0}");
        figures.insert(
            (*name).into(),
            json!({"msgs_per_s": rate, "wall_s": wall, "cpu_s": cpu, "ns_beside_decode": beside}),
        );
        rates.push(rate);
    }
    println!(
        "{:<20} {ceiling:>12.0}   (decode alone, no socket: the ceiling of every client)",
        "decode_only"
    );
    // Not a ratio of wsherd's (`compare` judges those): how far above tokio-tungstenite the
    // ceiling is, which bounds what any client's ratio can reach.
    figures.insert(
        "decode_only".into(),
        json!({"msgs_per_s": ceiling, "over_tokio_tungstenite": ceiling / rates[1]}),
    );
    println!(
        "{:<32} {:.3}",
        "decode_only_over_tokio_tungstenite",
        ceiling / rates[1]
    );
    // What a client may spend beside the decode to reach 1.2x tokio-tungstenite (#25's goal for
    // batched delivery): printed so that every run shows how far the goal is.
    let allowance = 1e9 / (1.2 * rates[1]) - decode_ns;
    println!(
        "{:<32} {allowance:.0} ns a message beside the decode (tokio-tungstenite spends {:.0})",
        "at_1.2x_tokio_tungstenite",
        1e9 / rates[1] - decode_ns
    );
    let wsherd = rates[4];
    let ratios = [
        ("ratio_wsherd_raw_awc", wsherd / rates[0]),
        ("ratio_wsherd_tokio_tungstenite", wsherd / rates[1]),
        ("ratio_wsherd_ezsockets", wsherd / rates[2]),
        ("ratio_wsherd_raw_awc_actor", wsherd / rates[3]),
        ("ratio_wsherd_fastwebsockets", wsherd / rates[6]),
        ("ratio_wsherd_batched_raw_awc", rates[5] / rates[0]),
        (
            "ratio_wsherd_batched_tokio_tungstenite",
            rates[5] / rates[1],
        ),
        ("ratio_wsherd_batched_fastwebsockets", rates[5] / rates[6]),
        ("ratio_wsherd_inbox_raw_awc", rates[7] / rates[0]),
        ("ratio_wsherd_inbox_tokio_tungstenite", rates[7] / rates[1]),
        ("ratio_wsherd_inbox_raw_awc_actor", rates[7] / rates[3]),
        ("ratio_wsherd_inbox_fastwebsockets", rates[7] / rates[6]),
    ];
    for (name, ratio) in ratios {
        println!("{:<32} {ratio:.3}", name.trim_start_matches("ratio_"));
        figures.insert(name.into(), json!(ratio));
    }
    Ok(Value::Object(figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(seq: u64) -> Result<Trade, String> {
        serde_json::from_str(&crate::server::message(seq)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_full_decode_of_every_message_passes() -> Result<(), String> {
        let mut tally = Tally::default();
        for seq in 0..5 {
            tally.add(&decode(seq)?);
        }
        check("full", tally, expected(5)?)
    }

    #[test]
    fn a_repeated_message_in_place_of_another_fails() -> Result<(), String> {
        let mut tally = Tally::default();
        for seq in [0, 1, 1, 3, 4] {
            tally.add(&decode(seq)?);
        }
        match check("repeat", tally, expected(5)?) {
            Err(e) if e.contains("checksum") => Ok(()),
            other => Err(format!("expected a checksum failure, got {other:?}")),
        }
    }

    #[test]
    fn a_field_left_undecoded_fails() -> Result<(), String> {
        let mut tally = Tally::default();
        for seq in 0..5 {
            // What a client that skipped the price would hold.
            let trade = Trade {
                price: 0.0,
                ..decode(seq)?
            };
            tally.add(&trade);
        }
        match check("skip", tally, expected(5)?) {
            Err(e) if e.contains("checksum") => Ok(()),
            other => Err(format!("expected a checksum failure, got {other:?}")),
        }
    }
}
