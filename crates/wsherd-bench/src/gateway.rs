//! `gateway`: one upstream feed fanned out to 1,000 downstream tokio-tungstenite clients,
//! through wsherd's gateway and through a baseline: a plain actix-web-actors broadcast (one
//! actor per client, a message per delivery, no buffering policy), fed by the same herd
//! subscription. Both count every delivered message at the clients, which run in a child
//! process ([`clients`]), and take each message's latency from the upstream's send stamp.
//!
//! The upstream offers more than this machine can deliver (RATE × CLIENTS deliveries a
//! second), so each side delivers what it can: the figure is deliveries a second, counted at
//! the clients over a 10 s window. The gateway drops what a client cannot take
//! in time (`drop_oldest`); the baseline queues it without bound, so its latency grows.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{App, HttpRequest, HttpServer, web};
use actix_web_actors::ws;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use wsherd::config::{GatewayOverflow, GatewaySettings, ServerSettings};
use wsherd::{ConnectionConfig, Delivery, EndpointSpec, Herd, KindRule, RawMessage};

use crate::measure::cpu_time;
use crate::paced_server::now_ns;
use crate::server::ServerProcess;

/// Downstream clients.
const CLIENTS: usize = 1_000;
/// Upstream messages a second: 4 M offered deliveries a second, more than two cores deliver.
const RATE: u64 = 4_000;
/// How long the clients count. The feed has more than this to send (it would close after
/// its last message, and the herd would connect again and get them all anew).
const WINDOW: Duration = Duration::from_secs(10);
const COUNT: u64 = RATE * 60;
/// One message in this many is timed at each client (every one is counted).
const SAMPLE: u64 = 16;
/// How long the baseline's leftovers are waited for after its round.
const BACKLOG_PATIENCE: Duration = Duration::from_secs(90);

/// The scenario: the gateway, then the baseline, each with its own herd and feed.
pub(crate) fn run() -> Result<Value, String> {
    let files_before = crate::open_files();
    let gateway = System::new().block_on(round(Side::Gateway))?;
    let baseline = System::new().block_on(round(Side::Baseline))?;
    // The baseline's client actors close their sockets only as what their unbounded mailboxes
    // took is dropped, which went on for ~20 s after the round on a 2-core machine, on the
    // cores the next scenario measures on: it is waited for here, and how long it took said.
    let stopped = Instant::now();
    let settled = files_before + crate::ONCE_PER_PROCESS_FILES;
    let files_after = crate::files_settled(settled, BACKLOG_PATIENCE);
    let backlog_s = stopped.elapsed().as_secs_f64();
    let backlog_closed = files_after <= settled;
    if !backlog_closed {
        eprintln!(
            "gateway: the baseline still held {} files {backlog_s:.1} s after its round",
            files_after - settled
        );
    }
    let ratio = gateway["deliveries_per_s"].as_f64().unwrap_or(0.0)
        / baseline["deliveries_per_s"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1.0);
    let figures = json!({
        "clients": CLIENTS,
        "rate": RATE,
        "window_s": WINDOW.as_secs(),
        "gateway": gateway,
        "baseline_actix_web_actors": baseline,
        "ratio": ratio,
        "baseline_backlog_dropped_s": backlog_s,
        "baseline_backlog_closed": backlog_closed,
    });
    print(&figures);
    Ok(figures)
}

fn print(figures: &Value) {
    println!(
        "\ngateway: one feed at {RATE} msgs/s for {} s fanned out to {CLIENTS} tokio-tungstenite clients",
        WINDOW.as_secs()
    );
    for (name, side) in [
        ("wsherd gateway", &figures["gateway"]),
        (
            "actix-web-actors broadcast",
            &figures["baseline_actix_web_actors"],
        ),
    ] {
        println!(
            "  {name:<28} {:>10.0} deliveries/s  p50 {:>8.1} ms  p99 {:>8.1} ms  CPU {:>5.1} % (server process)  delivered {} of {}",
            side["deliveries_per_s"].as_f64().unwrap_or(0.0),
            side["p50_ms"].as_f64().unwrap_or(0.0),
            side["p99_ms"].as_f64().unwrap_or(0.0),
            side["cpu_percent"].as_f64().unwrap_or(0.0),
            side["delivered"],
            RATE * WINDOW.as_secs() * CLIENTS as u64,
        );
    }
    println!(
        "  ratio gateway / baseline: {:.2}× (goal ≥ 2×)",
        figures["ratio"].as_f64().unwrap_or(0.0)
    );
    let backlog_s = figures["baseline_backlog_dropped_s"]
        .as_f64()
        .unwrap_or(0.0);
    if figures["baseline_backlog_closed"].as_bool() == Some(true) {
        println!(
            "  the baseline's sockets closed {backlog_s:.1} s after its round (its mailboxes' backlog dropped)"
        );
    } else {
        println!("  the baseline's sockets were not all closed {backlog_s:.1} s after its round");
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Gateway,
    Baseline,
}

async fn round(side: Side) -> Result<Value, String> {
    let herd = Herd::new();
    let mut served = None;
    let mut baseline = None;
    let server_url = match side {
        Side::Gateway => {
            let mut settings = GatewaySettings::new("/feed");
            settings.max_sessions = CLIENTS + 16;
            settings.overflow = GatewayOverflow::DropOldest;
            let listen = ServerSettings {
                listen: Some("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?),
                ..ServerSettings::default()
            };
            let options = wsherd_server::ServerOptions::new()
                .gateway(settings)
                .dashboard(false);
            let server =
                wsherd_server::serve(herd.clone(), &listen, options).map_err(|e| e.to_string())?;
            let url = format!("ws://{}/feed", server.addrs()[0]);
            served = Some(server);
            url
        }
        Side::Baseline => {
            let server = baseline_server(&herd)?;
            let url = server.url.clone();
            baseline = Some(server);
            url
        }
    };
    let mut child = std::process::Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args([
            "gateway-clients",
            &server_url,
            &CLIENTS.to_string(),
            &(side == Side::Gateway).to_string(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the clients' process: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = lines
        .recv()
        .await
        .ok_or("the clients' process said nothing")?;
    if ready != "ready" {
        return Err(format!("the clients' process said {ready:?}"));
    }
    // The feed starts when the herd connects to it: every client is subscribed by now.
    let feed = ServerProcess::start_paced(RATE, COUNT)?;
    let cpu_before = cpu_time();
    let started = Instant::now();
    herd.add_endpoint(
        "feed",
        EndpointSpec::new(ConnectionConfig::new(feed.url()).kind(KindRule::field("type"))),
    )
    .map_err(|e| e.to_string())?;
    actix_rt::time::sleep(WINDOW).await;
    let cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64() / started.elapsed().as_secs_f64()
        * 100.0;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"stop\n");
    }
    let answer = lines
        .recv()
        .await
        .ok_or("the clients' process gave no figures")?;
    let _ = child.wait();
    drop(feed);
    let mut figures: Value =
        serde_json::from_str(&answer).map_err(|_| format!("the clients said {answer:?}"))?;
    if let Some(error) = figures.get("error") {
        return Err(format!("clients: {error}"));
    }
    figures["cpu_percent"] = json!(cpu);
    let _ = herd.shutdown("bench over", Duration::from_secs(1)).await;
    if let Some(server) = served {
        server.stop(false).await;
    }
    // Its workers would go on writing the backlog its unbounded mailboxes hold, on a core the
    // next scenario measures on, and keep their sockets open.
    if let Some(server) = baseline {
        server.over.store(true, Ordering::Relaxed);
        server.handle.stop(false).await;
    }
    Ok(figures)
}

/// The baseline: actix-web with one actix-web-actors session actor per client, and one
/// broadcaster that sends each message to every client actor, unbounded.
fn baseline_server(herd: &Herd) -> Result<BaselineServer, String> {
    let clients: Arc<Mutex<Vec<Addr<BaselineClient>>>> = Arc::default();
    let over = Arc::new(AtomicBool::new(false));
    let broadcaster = Broadcaster {
        clients: Arc::clone(&clients),
        over: Arc::clone(&over),
    }
    .start();
    herd.subscribe_raw_all(broadcaster.recipient(), wsherd::SubscribeOptions::new());
    let app_over = Arc::clone(&over);
    let server = HttpServer::new(move || {
        let clients = Arc::clone(&clients);
        let over = Arc::clone(&app_over);
        App::new().route(
            "/base",
            web::get().to(move |req: HttpRequest, stream: web::Payload| {
                let client = BaselineClient {
                    clients: Arc::clone(&clients),
                    over: Arc::clone(&over),
                };
                async move { ws::start(client, &req, stream) }
            }),
        )
    })
    .workers(1)
    .max_connections(CLIENTS + 64)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .map_err(|e| e.to_string())?;
    let addr = server.addrs()[0];
    let running = server.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    Ok(BaselineServer {
        url: format!("ws://{addr}/base"),
        handle,
        over,
    })
}

/// The baseline, running.
struct BaselineServer {
    url: String,
    handle: actix_web::dev::ServerHandle,
    /// Set when the round is over. The client actors' unbounded mailboxes hold what they were
    /// too slow to write (most of the feed); without it they would go on writing it for
    /// seconds after the round, on the cores the next scenario measures, holding their sockets
    /// (the server's stop does not end them).
    over: Arc<AtomicBool>,
}

/// One message for every client, as the gateway would frame it.
#[derive(Message, Clone)]
#[rtype(result = "()")]
struct Broadcast(Arc<str>);

struct Broadcaster {
    clients: Arc<Mutex<Vec<Addr<BaselineClient>>>>,
    over: Arc<AtomicBool>,
}

impl Actor for Broadcaster {
    type Context = Context<Self>;
}

impl Handler<Delivery<RawMessage>> for Broadcaster {
    type Result = ();
    fn handle(&mut self, delivery: Delivery<RawMessage>, _: &mut Context<Self>) {
        if self.over.load(Ordering::Relaxed) {
            return;
        }
        let text: Arc<str> = format!(
            r#"{{"endpoint":"{}","kind":"{}","data":{}}}"#,
            delivery.endpoint, delivery.message.kind, delivery.message.text
        )
        .into();
        let clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        for client in clients.iter() {
            client.do_send(Broadcast(Arc::clone(&text)));
        }
    }
}

struct BaselineClient {
    clients: Arc<Mutex<Vec<Addr<BaselineClient>>>>,
    over: Arc<AtomicBool>,
}

impl Actor for BaselineClient {
    type Context = ws::WebsocketContext<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        // The plain way: no mailbox limit, no buffering policy.
        ctx.set_mailbox_capacity(usize::MAX);
        self.clients
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ctx.address());
    }
}

impl Handler<Broadcast> for BaselineClient {
    type Result = ();
    fn handle(&mut self, message: Broadcast, ctx: &mut Self::Context) {
        if self.over.load(Ordering::Relaxed) {
            ctx.stop();
            return;
        }
        ctx.text(&*message.0);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for BaselineClient {
    fn handle(&mut self, message: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match message {
            Ok(ws::Message::Ping(data)) => ctx.pong(&data),
            Ok(ws::Message::Close(reason)) => ctx.close(reason),
            _ => {}
        }
    }
}

/// `gateway-clients URL N SUBSCRIBE`: N tokio-tungstenite clients of URL (subscribing to
/// `feed/trade` when SUBSCRIBE is `true`), on one thread. Says `ready` once all are connected,
/// counts every trade until a line arrives on stdin, then prints one JSON line: deliveries,
/// deliveries a second from the first to the last, and latency percentiles from the stamps.
pub(crate) fn clients(args: &[String]) -> std::process::ExitCode {
    let (Some(url), Some(count), Some(subscribe)) = (
        args.first().cloned(),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
        args.get(2).map(|s| s == "true"),
    ) else {
        println!(
            "{}",
            json!({"error": "usage: gateway-clients URL N SUBSCRIBE"})
        );
        return std::process::ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("{}", json!({"error": error.to_string()}));
            return std::process::ExitCode::FAILURE;
        }
    };
    let figures = runtime.block_on(count_all(url, count, subscribe));
    println!("{figures}");
    let _ = std::io::stdout().flush();
    std::process::ExitCode::SUCCESS
}

/// What the clients saw, shared on their one thread.
#[derive(Default)]
struct Tally {
    first: Option<Instant>,
    last: Option<Instant>,
    /// Latencies in microseconds, counted by value (a bounded histogram).
    latency_us: HashMap<u64, u64>,
}

async fn count_all(url: String, count: usize, subscribe: bool) -> Value {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let delivered = Arc::new(AtomicU64::new(0));
    let (connected_tx, mut connected) = tokio::sync::mpsc::channel::<Result<(), String>>(count);
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (url, tally, connected_tx) = (url.clone(), Arc::clone(&tally), connected_tx.clone());
        let delivered = Arc::clone(&delivered);
        tasks.push(tokio::spawn(async move {
            let mut socket = match tokio_tungstenite::connect_async(url.as_str()).await {
                Ok((socket, _)) => socket,
                Err(error) => {
                    let _ = connected_tx.send(Err(error.to_string())).await;
                    return;
                }
            };
            if subscribe {
                let request = r#"{"op":"subscribe","topics":["feed/trade"],"id":1}"#;
                if socket
                    .send(tokio_tungstenite::tungstenite::Message::Text(
                        request.into(),
                    ))
                    .await
                    .is_err()
                {
                    return;
                }
                // The ack.
                let _ = socket.next().await;
            }
            let _ = connected_tx.send(Ok(())).await;
            let mut seen = 0u64;
            while let Some(Ok(message)) = socket.next().await {
                if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
                    // Deliveries only: not an ack or a `dropped` notice.
                    if !text.as_str().starts_with("{\"endpoint\"") {
                        continue;
                    }
                    seen += 1;
                    delivered.fetch_add(1, Ordering::Relaxed);
                    // Every message is counted; one in SAMPLE is timed and tallied, so the
                    // clients' own cost stays small beside what they measure.
                    if seen % SAMPLE != 1 {
                        continue;
                    }
                    let now = now_ns();
                    let Some(ts) = stamp(text.as_str()) else {
                        continue;
                    };
                    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
                    let at = Instant::now();
                    tally.first.get_or_insert(at);
                    tally.last = Some(at);
                    *tally
                        .latency_us
                        .entry(now.saturating_sub(ts) / 1_000)
                        .or_default() += 1;
                }
            }
        }));
    }
    drop(connected_tx);
    for _ in 0..count {
        match connected.recv().await {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                return json!({"error": format!("a client could not connect: {error}")});
            }
            None => return json!({"error": "the clients ended before connecting"}),
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    // Until the parent says stop (its window is over).
    let _ =
        tokio::task::spawn_blocking(|| std::io::stdin().lock().read_line(&mut String::new())).await;
    for task in &tasks {
        task.abort();
    }
    let tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    let span = match (tally.first, tally.last) {
        (Some(first), Some(last)) => last.duration_since(first).as_secs_f64().max(1e-3),
        _ => 1.0,
    };
    let delivered = delivered.load(Ordering::Relaxed);
    json!({
        "delivered": delivered,
        "deliveries_per_s": delivered as f64 / span,
        "p50_ms": percentile(&tally.latency_us, 0.50) as f64 / 1000.0,
        "p99_ms": percentile(&tally.latency_us, 0.99) as f64 / 1000.0,
    })
}

/// The upstream's send stamp: the number after the last `"ts":`.
fn stamp(text: &str) -> Option<u64> {
    let at = text.rfind("\"ts\":")? + 5;
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn percentile(histogram: &HashMap<u64, u64>, q: f64) -> u64 {
    let total: u64 = histogram.values().sum();
    if total == 0 {
        return 0;
    }
    let mut values: Vec<(&u64, &u64)> = histogram.iter().collect();
    values.sort();
    let target = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (value, count) in values {
        seen += count;
        if seen >= target {
            return *value;
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stamp_is_the_last_ts_of_the_text() {
        let text =
            r#"{"endpoint":"feed","kind":"trade","data":{"type":"trade","ts":1764000000000123}}"#;
        assert_eq!(stamp(text), Some(1_764_000_000_000_123));
        assert_eq!(stamp("{}"), None);
    }

    #[test]
    fn percentiles_come_from_the_counts() {
        let histogram: HashMap<u64, u64> = [(1, 50), (2, 49), (100, 1)].into_iter().collect();
        assert_eq!(percentile(&histogram, 0.5), 1);
        assert_eq!(percentile(&histogram, 0.99), 2);
        assert_eq!(percentile(&histogram, 1.0), 100);
    }
}
