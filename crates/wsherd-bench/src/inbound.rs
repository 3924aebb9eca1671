//! `inbound`: 10,000 devices connect at once to one inbound endpoint that holds at most
//! 8,192 sessions (its default): every connect is answered (`101`, or `503` past
//! `max_sessions`), every session's first message is delivered typed, and what a session
//! costs is measured while they are all connected.
//!
//! The devices are a child process ([`client`]): one process could not hold both ends under
//! the cap of open files (each session holds two on the server's side, its socket and the
//! duplicate that can cut it).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsherd::config::{InboundAuth, InboundConfig, ServerSettings};
use wsherd::{ConnectionConfig, Delivery, EndpointName, EndpointSpec, Herd, KindRule};

use crate::fleet::{Idle, LiveWatch, idle_cpu_percent, rss_bytes};
use crate::measure::median;

/// Devices that connect at once.
const DEVICES: usize = 10_000;
/// How long every connect may take to be answered, and every session to deliver.
const PATIENCE: Duration = Duration::from_secs(120);
/// Idle CPU with every session connected (default heartbeat, 20 s).
const IDLE: Idle = Idle {
    heartbeat: Duration::from_secs(20),
    window: Duration::from_secs(20),
    parts: 2,
};

#[derive(Debug, Deserialize)]
struct Reading {
    #[allow(dead_code)] // decoded, as a subscriber would
    n: u64,
}
wsherd::inbound!(Reading => "reading");

/// Counts typed deliveries.
struct Counter(Arc<AtomicU64>);

impl Actor for Counter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Handler<Delivery<Reading>> for Counter {
    type Result = ();
    fn handle(&mut self, _: Delivery<Reading>, _: &mut Context<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The scenario: a herd serving `[inbound.devices]`, and the devices' process.
pub(crate) fn run() -> Result<Value, String> {
    let system = System::new();
    let figures = system.block_on(measure())?;
    print(&figures);
    Ok(figures)
}

async fn measure() -> Result<Value, String> {
    let herd = Herd::new();
    let spec = EndpointSpec::new(
        ConnectionConfig::new("ws://127.0.0.1/unused").kind(KindRule::field("type")),
    );
    let devices = InboundConfig::new("/ws/devices/{id}", InboundAuth::None, spec);
    let max_sessions = devices.max_sessions;
    let name = EndpointName::new("devices").map_err(|e| e.to_string())?;
    herd.add_inbound(name, devices).map_err(|e| e.to_string())?;
    let delivered = Arc::new(AtomicU64::new(0));
    herd.subscribe::<Reading>(Counter(Arc::clone(&delivered)).start().recipient());
    let live = LiveWatch::start();
    live.watch(&herd);
    herd.start();
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse().map_err(|e| format!("{e}"))?),
        ..ServerSettings::default()
    };
    let server = wsherd_server::serve(herd.clone(), &settings, wsherd_server::ServerOptions::new())
        .map_err(|e| e.to_string())?;
    let port = server.addrs().first().map(|a| a.port()).ok_or("no port")?;
    let rss_before = rss_bytes();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(exe)
        .args(["inbound-client", &port.to_string(), &DEVICES.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the devices' process: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    // The child's answer is a blocking read: off the arbiter.
    let answer = actix_rt::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let answered: Value = serde_json::from_str(&answer)
        .map_err(|_| format!("the devices' process said {answer:?}"))?;
    if let Some(error) = answered.get("error") {
        return Err(format!("devices: {error}"));
    }
    let taken = answered["taken"].as_u64().unwrap_or(0);
    let started = Instant::now();
    live.until(taken).await?;
    while delivered.load(Ordering::Relaxed) < taken {
        if started.elapsed() > PATIENCE {
            return Err(format!(
                "{} of {taken} sessions' messages delivered",
                delivered.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sessions = herd
        .inbound_endpoint("devices")
        .map_or(0, |inbound| inbound.sessions());
    let rss_after = rss_bytes();
    let idle_cpu = idle_cpu_percent(IDLE).await;
    // The devices leave.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"done\n");
    }
    let _ = actix_rt::task::spawn_blocking(move || child.wait()).await;
    let _ = herd.shutdown("bench over", Duration::from_secs(5)).await;
    server.stop(false).await;
    let per_session = rss_after.saturating_sub(rss_before) as f64 / taken.max(1) as f64;
    Ok(json!({
        "devices": DEVICES,
        "max_sessions": max_sessions,
        "taken": taken,
        "refused_503": answered["refused"],
        "other_answers": answered["other"],
        "answer_p50_s": answered["p50_s"],
        "answer_p99_s": answered["p99_s"],
        "all_answered_s": answered["all_s"],
        "sessions_held": sessions,
        "delivered": delivered.load(Ordering::Relaxed),
        "bytes_per_session": per_session,
        "idle_cpu_percent_per_1000": idle_cpu / (taken.max(1) as f64 / 1000.0),
    }))
}

fn print(figures: &Value) {
    println!("\ninbound: {DEVICES} devices connect at once to one inbound endpoint");
    println!(
        "  answered: {} taken (max_sessions {}), {} refused 503, {} other",
        figures["taken"], figures["max_sessions"], figures["refused_503"], figures["other_answers"]
    );
    println!(
        "  time to answer: p50 {:.3} s, p99 {:.3} s, all {:.3} s",
        figures["answer_p50_s"].as_f64().unwrap_or(0.0),
        figures["answer_p99_s"].as_f64().unwrap_or(0.0),
        figures["all_answered_s"].as_f64().unwrap_or(0.0),
    );
    println!(
        "  sessions held {}, first messages delivered {}",
        figures["sessions_held"], figures["delivered"]
    );
    println!(
        "  server memory per session {:.0} B (RSS growth / sessions), idle CPU {:.3} % of a core per 1,000 sessions (20 s heartbeat)",
        figures["bytes_per_session"].as_f64().unwrap_or(0.0),
        figures["idle_cpu_percent_per_1000"].as_f64().unwrap_or(0.0),
    );
}

/// `inbound-client PORT N`: N devices connect at once to `/ws/devices/<i>` on 127.0.0.1:PORT;
/// each one taken sends one reading. Prints one JSON line (how the connects were answered,
/// and how fast), then holds the sessions until a line arrives on stdin.
pub(crate) fn client(args: &[String]) -> std::process::ExitCode {
    let parsed = match (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1).and_then(|n| n.parse::<usize>().ok()),
    ) {
        (Some(port), Some(count)) => Ok((port, count)),
        _ => Err("usage: inbound-client PORT N".to_owned()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let (line, held) = match (parsed, runtime) {
        (Err(error), _) => (json!({ "error": error }), Vec::new()),
        (_, Err(error)) => (json!({ "error": error.to_string() }), Vec::new()),
        (Ok((port, count)), Ok(runtime)) => runtime.block_on(connect_all(port, count)),
    };
    let failed = line.get("error").is_some();
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    if !failed {
        // Connected until the parent has measured.
        let _ = std::io::stdin().lock().read_line(&mut String::new());
    }
    drop(held);
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

async fn connect_all(port: u16, count: usize) -> (Value, Vec<tokio::net::TcpStream>) {
    let start = Instant::now();
    let tasks: Vec<_> = (0..count)
        .map(|i| tokio::spawn(device(port, i, start)))
        .collect();
    let mut held = Vec::new();
    let (mut refused, mut other) = (0u64, 0u64);
    let mut times = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok((101, stream, at))) => {
                held.push(stream);
                times.push(at);
            }
            Ok(Ok((503, _, at))) => {
                refused += 1;
                times.push(at);
            }
            Ok(Ok((_, _, at))) => {
                other += 1;
                times.push(at);
            }
            Ok(Err(error)) => return (json!({ "error": error }), held),
            Err(error) => return (json!({ "error": error.to_string() }), held),
        }
    }
    let all = times.iter().copied().fold(0.0, f64::max);
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted
        .get((sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0.0);
    (
        json!({
            "taken": held.len(),
            "refused": refused,
            "other": other,
            "p50_s": median(times),
            "p99_s": p99,
            "all_s": all,
        }),
        held,
    )
}

/// Device `i`: the upgrade's status, the stream, and seconds from `start` to the answer.
async fn device(
    port: u16,
    i: usize,
    start: Instant,
) -> Result<(u16, tokio::net::TcpStream, f64), String> {
    let work = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(
                format!(
                    "GET /ws/devices/{i} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                     Sec-WebSocket-Version: 13\r\n\r\n"
                )
                .as_bytes(),
            )
            .await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).await? == 0 {
                break;
            }
            head.push(byte[0]);
        }
        let at = start.elapsed().as_secs_f64();
        let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status == 101 {
            stream
                .write_all(&masked_text(
                    format!(r#"{{"type":"reading","n":{i}}}"#).as_bytes(),
                ))
                .await?;
        }
        Ok::<_, std::io::Error>((status, stream, at))
    };
    tokio::time::timeout(PATIENCE, work)
        .await
        .map_err(|_| format!("device {i}: no answer within {PATIENCE:?}"))?
        .map_err(|e| format!("device {i}: {e}"))
}

/// One text frame as a client sends it (masked; payloads under 126 bytes).
fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81, 0x80 | payload.len().min(125) as u8];
    frame.extend_from_slice(&mask);
    frame.extend(
        payload
            .iter()
            .take(125)
            .zip(mask.iter().cycle())
            .map(|(b, m)| b ^ m),
    );
    frame
}
