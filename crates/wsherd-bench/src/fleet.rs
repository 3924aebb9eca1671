//! Many connections: `connections` (idle cost) and `storm` (a server restart under the
//! governor), plus `detect` (a half-open peer through the fault proxy), and [`scaling`] (the
//! idle cost along a curve of connection counts).
//!
//! This file holds the scenarios and what they share (the idle server child, the live
//! counter, the memory and CPU probes); [`baselines`] holds the hand-written clients
//! `connections` and `scaling` measure wsherd against.

mod baselines;
pub(crate) mod scaling;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{Value, json};
use wsherd::config::{EndpointConfig, HerdConfig, HerdSettings};
use wsherd::{
    ConnectionConfig, Delivery, EndpointName, EndpointSpec, EndpointState, GovernorPolicy,
    HeartbeatMode, HeartbeatSpec, Herd, StateEvent,
};

use crate::measure::{cpu_time, least_squares, median, threads_cpu_time};

const CONNECTIONS: usize = 10_000;
/// Idle CPU is measured over this window, as the median of three equal parts of it.
const IDLE_WINDOW: Duration = Duration::from_secs(30);
/// Heartbeat interval of every idle connection that has one.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How `connections` holds its idle connections and measures them.
const CONNECTIONS_IDLE: Idle = Idle {
    heartbeat: HEARTBEAT,
    window: IDLE_WINDOW,
    parts: 3,
};
const CAP: usize = 64;
/// Server restarts in `storm`; the recovery time is their median.
const RESTARTS: usize = 3;

/// How idle connections ping and how their idle CPU is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Idle {
    /// Every connection pings this often.
    pub(crate) heartbeat: Duration,
    /// Idle CPU is measured over this window...
    pub(crate) window: Duration,
    /// ...as the median of this many equal parts of it.
    pub(crate) parts: u32,
}

/// Resident memory of this process, from `/proc/self/status`.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The idle server child process.
struct IdleServer {
    child: std::process::Child,
    port: u16,
    /// The server's stdin: it exits when this closes, so a bench killed before it could kill
    /// its servers leaves none behind holding thousands of sockets.
    _lifeline: Option<std::process::ChildStdin>,
}

impl IdleServer {
    fn start(port: u16) -> Result<IdleServer, String> {
        Self::start_churning(port, 0)
    }

    /// A server that drops each connection after a lifetime spread over `0..max_lifetime_s`
    /// seconds (`0`: never).
    fn start_churning(port: u16, max_lifetime_s: u64) -> Result<IdleServer, String> {
        use std::io::BufRead;
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .args([
                "serve-idle",
                &port.to_string(),
                &max_lifetime_s.to_string(),
                "lifeline",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        let lifeline = child.stdin.take();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .trim()
            .parse()
            .map_err(|_| format!("idle server said {line:?}"))?;
        Ok(IdleServer {
            child,
            port,
            _lifeline: lifeline,
        })
    }
}

impl Drop for IdleServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Counts `Live` states; wakes whoever waits for a number of them.
struct LiveCounter {
    live: Arc<AtomicU64>,
    changed: Arc<tokio::sync::Notify>,
}

impl Actor for LiveCounter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Handler<Delivery<StateEvent>> for LiveCounter {
    type Result = ();
    fn handle(&mut self, event: Delivery<StateEvent>, _: &mut Context<Self>) {
        if event.message.state == EndpointState::Live {
            self.live.fetch_add(1, Ordering::Relaxed);
            self.changed.notify_waiters();
        }
    }
}

/// Counts the `Live` states of a herd's endpoints and waits for a number of them.
pub(crate) struct LiveWatch {
    live: Arc<AtomicU64>,
    changed: Arc<tokio::sync::Notify>,
    counter: Addr<LiveCounter>,
}

impl LiveWatch {
    pub(crate) fn start() -> LiveWatch {
        let live = Arc::new(AtomicU64::new(0));
        let changed = Arc::new(tokio::sync::Notify::new());
        let counter = LiveCounter {
            live: Arc::clone(&live),
            changed: Arc::clone(&changed),
        }
        .start();
        LiveWatch {
            live,
            changed,
            counter,
        }
    }

    /// Counts `herd`'s state events from now on.
    pub(crate) fn watch(&self, herd: &Herd) {
        herd.subscribe_events::<StateEvent>(self.counter.clone().recipient());
    }

    /// Waits (two minutes at most) until `target` lives have begun.
    pub(crate) async fn until(&self, target: u64) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let notified = self.changed.notified();
            let live = self.live.load(Ordering::Relaxed);
            if live >= target {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(format!("only {live} of {target} lives began"));
            }
        }
    }
}

/// CPU use of this process while idle, in percent of one core: the median of `idle.parts`
/// equal parts of `idle.window`. Counted in nanoseconds per thread where the kernel keeps
/// schedstat (no thread ends while idle), else in the process's 10 ms ticks.
pub(crate) async fn idle_cpu_percent(idle: Idle) -> f64 {
    let part = idle.window / idle.parts.max(1);
    let mut parts = Vec::new();
    for _ in 0..idle.parts.max(1) {
        let (threads, ticks) = (threads_cpu_time(), cpu_time());
        tokio::time::sleep(part).await;
        let spent = match (threads, threads_cpu_time()) {
            (Some(before), Some(after)) => after.saturating_sub(before),
            _ => cpu_time().saturating_sub(ticks),
        };
        parts.push(spent.as_secs_f64() / part.as_secs_f64() * 100.0);
    }
    median(parts)
}

fn herd_config(port: u16, heartbeat: Duration) -> HerdConfig {
    herd_config_of(CONNECTIONS, &[port], heartbeat)
}

/// The server port of the `i`th connection: connections are dealt to `ports` round-robin, so
/// each server holds its share to within one.
fn port_of(i: usize, ports: &[u16]) -> u16 {
    ports.get(i % ports.len().max(1)).copied().unwrap_or(0)
}

/// `count` supervised endpoints spread over the servers on `ports` (see [`port_of`]), each
/// pinging every `heartbeat`, behind the governor's handshake cap.
fn herd_config_of(count: usize, ports: &[u16], heartbeat: Duration) -> HerdConfig {
    herd_config_with(count, ports, heartbeat, None)
}

/// Like [`herd_config_of`], each endpoint offering `compression`.
fn herd_config_with(
    count: usize,
    ports: &[u16],
    heartbeat: Duration,
    compression: Option<wsherd::DeflateOffer>,
) -> HerdConfig {
    let mut endpoints = BTreeMap::new();
    for i in 0..count {
        let port = port_of(i, ports);
        let mut connection = ConnectionConfig::new(format!("ws://127.0.0.1:{port}/{i}"));
        connection.compression = compression;
        connection.heartbeat = HeartbeatSpec {
            mode: HeartbeatMode::WsPing,
            interval: heartbeat,
            timeout: heartbeat,
            idle_timeout: None,
        };
        let spec = EndpointSpec::new(connection)
            .on_open(r#"{"op":"subscribe"}"#)
            .backoff(wsherd::BackoffPolicy {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(2),
                ..Default::default()
            });
        if let Ok(name) = EndpointName::new(&format!("c{i}")) {
            endpoints.insert(name, EndpointConfig::new(spec));
        }
    }
    HerdConfig {
        settings: HerdSettings {
            workers: 2,
            governor: GovernorPolicy {
                max_concurrent_handshakes: CAP,
                reconnects_per_second: 0.0,
                // The default outage mode: a restart that outlasts three refused attempts
                // is waited out with one probe per second.
                ..GovernorPolicy::default()
            },
            ..HerdSettings::default()
        },
        endpoints,
        ..HerdConfig::default()
    }
}

/// `storm`: all connected, the server restarts, time until all are live again.
pub(crate) fn storm() -> Result<Value, String> {
    let server = IdleServer::start(0)?;
    let port = server.port;
    let system = System::new();
    let result = system.block_on(async move {
        let mut server = Some(server);
        let lives = LiveWatch::start();
        let started = Instant::now();
        let herd = Herd::from_config(herd_config(port, HEARTBEAT)).map_err(|e| e.to_string())?;
        lives.watch(&herd);
        herd.start();
        lives.until(CONNECTIONS as u64).await?;
        let first_open = started.elapsed();
        let mut recoveries = Vec::new();
        for restart in 1..=RESTARTS {
            drop(server.take());
            let restarted_at = Instant::now();
            server = Some(IdleServer::start(port)?);
            let target = (restart as u64 + 1) * CONNECTIONS as u64;
            lives
                .until(target)
                .await
                .map_err(|e| format!("restart {restart}: {e}"))?;
            recoveries.push(restarted_at.elapsed().as_secs_f64());
        }
        let recovery = median(recoveries.clone());
        let governor = herd.governor_stats().ok_or("no governor")?;
        let status = herd.status();
        let opens: u64 = status.iter().map(|s| s.stats.opens).sum();
        let most_opens = status.iter().map(|s| s.stats.opens).max().unwrap_or(0);
        herd.shutdown("done", Duration::from_secs(10)).await;
        Ok::<_, String>(json!({
            "connections": CONNECTIONS,
            "first_open_s": first_open.as_secs_f64(),
            "restarts": RESTARTS,
            "recovery_s": recovery,
            "recoveries_s": recoveries,
            "handshake_cap": CAP,
            "peak_handshakes": governor.peak(),
            "total_opens": opens,
            "most_opens_per_endpoint": most_opens,
        }))
    })?;
    println!(
        "storm: {CONNECTIONS} supervised connections, server restarted {RESTARTS} times, handshake cap {CAP}"
    );
    println!(
        "  first open {:.2} s; all live again {:.2} s after a restart (median); peak handshakes {} (cap {CAP}); {} opens in total, at most {} per endpoint (1 + restarts)",
        result["first_open_s"].as_f64().unwrap_or(0.0),
        result["recovery_s"].as_f64().unwrap_or(0.0),
        result["peak_handshakes"],
        result["total_opens"],
        result["most_opens_per_endpoint"],
    );
    Ok(result)
}

/// The clients `connections` measures, each in a process of its own.
const CONNECTIONS_CLIENTS: [&str; 6] = [
    "wsherd_supervised",
    "wsherd_deflate",
    "wsherd_deflate_no_takeover",
    "raw_awc_actor",
    "tokio_tungstenite_default",
    "tokio_tungstenite_4kib",
];

/// `connections`: memory and idle CPU of supervised connections against raw awc and
/// tokio-tungstenite ones. Each client runs in a fresh child process (`connections-client`):
/// measured one after another in one process, a later client was partly served from heap an
/// earlier one (or an earlier scenario of `all`) had freed, and its bytes came out low.
pub(crate) fn connections() -> Result<Value, String> {
    let server = IdleServer::start(0)?;
    let port = server.port;
    let mut figures = serde_json::Map::new();
    println!(
        "connections: {CONNECTIONS} idle connections, {} s heartbeat, idle CPU: median of three thirds of {} s, each client in its own process",
        HEARTBEAT.as_secs(),
        IDLE_WINDOW.as_secs()
    );
    println!(
        "{:<28} {:>14} {:>12} {:>14}",
        "client", "bytes/conn", "open s", "idle CPU %"
    );
    for name in CONNECTIONS_CLIENTS {
        report(&mut figures, name, connections_child(name, port)?);
    }
    drop(server);
    Ok(Value::Object(figures))
}

/// Runs one `connections` client in a child process against the idle server on `port`.
fn connections_child(name: &str, port: u16) -> Result<(f64, f64, f64), String> {
    let line = ask_child(&["connections-client", name, &port.to_string()])?;
    let figure = |key: &str| {
        line.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("the {name} client gave no {key}"))
    };
    Ok((
        figure("bytes_per_connection")?,
        figure("open_s")?,
        figure("idle_cpu_percent")?,
    ))
}

/// `connections-client NAME PORT`: one client of `connections`, in this (fresh) process;
/// prints its figures as one JSON line.
pub(crate) fn connections_client(args: &[String]) -> std::process::ExitCode {
    let result = match (args.first(), args.get(1).and_then(|p| p.parse::<u16>().ok())) {
        (Some(name), Some(port)) => connections_measure(name, port).map(|(per, open, idle)| {
            json!({"bytes_per_connection": per, "open_s": open, "idle_cpu_percent": idle})
        }),
        _ => Err("usage: connections-client NAME PORT".to_owned()),
    };
    reply_to_parent(result)
}

/// Runs this executable with `args` as a child that measures in a fresh process, and reads
/// the JSON line it ends with ([`reply_to_parent`]).
fn ask_child(args: &[&str]) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let output = std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the client process: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let reply = text
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str::<Value>(line).ok());
    match reply {
        Some(reply) => match reply.get("error") {
            Some(error) => Err(error.as_str().unwrap_or("failed").to_owned()),
            None if output.status.success() => Ok(reply),
            None => Err(format!("the client process ended with {}", output.status)),
        },
        // Killed (out of memory, say) before it could say why.
        None => Err(format!(
            "the client process ended with {} and no figures",
            output.status
        )),
    }
}

/// A child's answer to [`ask_child`]: its figures, or `{"error": …}`, as one JSON line.
fn reply_to_parent(result: Result<Value, String>) -> std::process::ExitCode {
    use std::io::Write;
    let (line, code) = match result {
        Ok(figures) => (figures, std::process::ExitCode::SUCCESS),
        Err(error) => (json!({ "error": error }), std::process::ExitCode::FAILURE),
    };
    // A parent that died stops reading; nothing is left to tell then.
    let _ = writeln!(std::io::stdout().lock(), "{line}");
    code
}

fn connections_measure(name: &str, port: u16) -> Result<(f64, f64, f64), String> {
    // permessage-deflate negotiated, one compressed message received: with context takeover
    // (a 15-bit window kept), and without (nothing kept between messages).
    let compression = match name {
        "wsherd_deflate" => Some(wsherd::DeflateOffer::default()),
        "wsherd_deflate_no_takeover" => Some(wsherd::DeflateOffer {
            no_context_takeover: true,
            ..wsherd::DeflateOffer::default()
        }),
        _ => None,
    };
    match name {
        "wsherd_supervised" | "wsherd_deflate" | "wsherd_deflate_no_takeover" => {
            let system = System::new();
            system.block_on(async {
                let lives = LiveWatch::start();
                let before = rss_bytes();
                let started = Instant::now();
                let config = herd_config_with(CONNECTIONS, &[port], HEARTBEAT, compression);
                let herd = Herd::from_config(config).map_err(|e| e.to_string())?;
                lives.watch(&herd);
                herd.start();
                lives.until(CONNECTIONS as u64).await?;
                let open = started.elapsed();
                let per = rss_bytes().saturating_sub(before) as f64 / CONNECTIONS as f64;
                let idle = idle_cpu_percent(CONNECTIONS_IDLE).await;
                herd.shutdown("done", Duration::from_secs(10)).await;
                Ok::<_, String>((per, open.as_secs_f64(), idle))
            })
        }
        "raw_awc_actor" => baselines::raw_awc_actors(CONNECTIONS, &[port], CONNECTIONS_IDLE),
        "tokio_tungstenite_default" => {
            baselines::tokio_tungstenite(CONNECTIONS, &[port], CONNECTIONS_IDLE, None)
        }
        "tokio_tungstenite_4kib" => {
            baselines::tokio_tungstenite(CONNECTIONS, &[port], CONNECTIONS_IDLE, Some(4096))
        }
        other => Err(format!("no client {other:?} in connections")),
    }
}

fn report(
    figures: &mut serde_json::Map<String, Value>,
    name: &str,
    (per, open, idle): (f64, f64, f64),
) {
    println!("{name:<28} {per:>14.0} {open:>12.2} {idle:>14.2}");
    figures.insert(
        name.into(),
        json!({"bytes_per_connection": per, "open_s": open, "idle_cpu_percent": idle}),
    );
}

/// `detect`: a black-holed path; time until the heartbeat reconnects, against interval +
/// timeout.
pub(crate) fn detect() -> Result<Value, String> {
    let interval = Duration::from_millis(500);
    let timeout = Duration::from_millis(500);
    let mut samples = Vec::new();
    for _ in 0..3 {
        let server = wsherd_testkit::TestServer::start(vec![]).map_err(|e| e.to_string())?;
        let proxy = wsherd_testkit::FaultProxy::start(server.addr()).map_err(|e| e.to_string())?;
        let system = System::new();
        let detected = system.block_on(async {
            let (states, seen) = wsherd_testkit::Recorder::<Delivery<StateEvent>>::start();
            let herd = Herd::new();
            herd.subscribe_events(states.recipient());
            let mut config = ConnectionConfig::new(proxy.url("/"));
            config.heartbeat = HeartbeatSpec {
                mode: HeartbeatMode::WsPing,
                interval,
                timeout,
                idle_timeout: None,
            };
            herd.add_endpoint("watched", config)
                .map_err(|e| e.to_string())?;
            let wait = Duration::from_secs(30);
            seen.wait_for(wait, |s| {
                s.iter()
                    .any(|d| d.message.state == EndpointState::Live)
                    .then_some(())
            })
            .await
            .map_err(|e| e.to_string())?;
            proxy.set_mode(wsherd_testkit::ProxyMode::BlackHole);
            let cut = Instant::now();
            seen.wait_for(wait, |s| {
                s.iter()
                    .any(|d| matches!(d.message.state, EndpointState::Backoff { .. }))
                    .then_some(())
            })
            .await
            .map_err(|e| e.to_string())?;
            Ok::<_, String>(cut.elapsed())
        })?;
        samples.push(detected.as_secs_f64());
    }
    let median_s = median(samples);
    let bound = (interval + timeout).as_secs_f64();
    println!("detect: half-open peer, interval {interval:?} + timeout {timeout:?}");
    println!(
        "  detected after {median_s:.3} s (median of 3); ratio to interval + timeout = {:.2}",
        median_s / bound
    );
    Ok(json!({"detect_s": median_s, "interval_plus_timeout_s": bound, "ratio": median_s / bound}))
}

/// Endpoints in `soak`.
const SOAK_ENDPOINTS: usize = 1_000;

/// `soak --minutes N` (not in `all`): 1,000 endpoints against a server that drops one of them
/// about every second, for N minutes (10 by default); this process's RSS is sampled each
/// minute and its slope after the first minute (warm-up) reported. A leak shows as a slope that
/// does not flatten.
pub(crate) fn soak(args: &[String]) -> Result<Value, String> {
    let minutes: u64 = args
        .iter()
        .position(|a| a == "--minutes")
        .and_then(|i| args.get(i + 1))
        .map_or(Ok(10), |n| n.parse().map_err(|e| format!("--minutes: {e}")))?;
    let server = IdleServer::start_churning(0, SOAK_ENDPOINTS as u64)?;
    let port = server.port;
    let system = System::new();
    let result = system.block_on(async move {
        let lives = LiveWatch::start();
        let herd = Herd::from_config(herd_config_of(
            SOAK_ENDPOINTS,
            &[port],
            Duration::from_secs(5),
        ))
        .map_err(|e| e.to_string())?;
        lives.watch(&herd);
        herd.start();
        lives.until(SOAK_ENDPOINTS as u64).await?;
        let mut samples = vec![rss_bytes()];
        println!("soak: {SOAK_ENDPOINTS} endpoints, one dropped about every second, {minutes} min");
        println!("minute        rss KiB   reconnects");
        for minute in 1..=minutes {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let rss = rss_bytes();
            samples.push(rss);
            let reconnects: u64 = herd.status().iter().map(|s| s.reconnects).sum();
            println!("{minute:>6} {:>14} {reconnects:>12}", rss / 1024);
        }
        let reconnects: u64 = herd.status().iter().map(|s| s.reconnects).sum();
        herd.shutdown("done", Duration::from_secs(10)).await;
        // Least squares over the samples after the first minute.
        let tail: Vec<(f64, f64)> = samples
            .iter()
            .enumerate()
            .skip(1)
            .map(|(minute, rss)| (minute as f64, *rss as f64))
            .collect();
        let slope = least_squares(&tail).map_or(0.0, |line| line.slope);
        println!(
            "rss slope after the first minute: {:.1} KiB/min ({reconnects} reconnects in all)",
            slope / 1024.0
        );
        Ok::<_, String>(json!({
            "endpoints": SOAK_ENDPOINTS,
            "minutes": minutes,
            "rss_bytes": samples,
            "rss_slope_bytes_per_minute": slope,
            "reconnects": reconnects,
        }))
    });
    drop(server);
    result
}

/// `idle-heap N` (for a heap profiler, not for figures): N supervised connections to one idle
/// server, all live, then idle for two seconds, then the process exits without a shutdown, so
/// the profiler's peak is the idle herd itself:
///
/// ```text
/// valgrind --tool=dhat --dhat-out-file=/tmp/dhat.json target/release/wsherd-bench idle-heap 1000
/// ```
pub(crate) fn idle_heap(args: &[String]) -> Result<(), String> {
    let count: usize = args
        .first()
        .map_or(Ok(1_000), |n| n.parse().map_err(|e| format!("N: {e}")))?;
    let server = IdleServer::start(0)?;
    let ports = [server.port];
    let system = System::new();
    system.block_on(async {
        let lives = LiveWatch::start();
        let herd = Herd::from_config(herd_config_of(count, &ports, Duration::from_secs(20)))
            .map_err(|e| e.to_string())?;
        lives.watch(&herd);
        herd.start();
        lives.until(count as u64).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!("idle-heap: {count} connections live and idle");
        Ok::<_, String>(())
    })?;
    drop(server);
    std::process::exit(0)
}
