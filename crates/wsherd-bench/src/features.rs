//! `features`: what a feature costs, as throughput with it on beside the same client with it
//! off, in one run: a `metrics` recorder installed (the herd publishing every
//! [`PUBLISH_EVERY`]) against none, and permessage-deflate (every message compressed by the
//! server, inflated by wsherd) against plain frames. The gateway's fan-out has a scenario of
//! its own (`gateway`).
//!
//! A `metrics` recorder is global to a process and cannot be taken out again, so each round
//! runs the client in a fresh child process (`feature-client`), with and without one; the
//! child times itself from connect to the last message, as every `throughput` client does,
//! and returns its tally, which is checked like theirs.

use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{Value, json};
use wsherd::{ConnectionConfig, Herd};

use crate::measure::median;
use crate::server::ServerProcess;
use crate::throughput::{Counter, Tally, Trade, all_in, check, expected};

const MESSAGES: u64 = 1_000_000;
const ROUNDS: usize = 3;
/// How often the herd publishes its figures into the recorder: the shortest interval a herd
/// accepts, so the figure is the most a recorder can cost.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// The clients compared: their names, the arguments their child gets, and whether they read
/// the compressing server.
const VARIANTS: [(&str, &[&str], bool); 3] = [
    ("plain", &[], false),
    ("metrics_on", &["--recorder"], false),
    ("deflate_on", &["--deflate"], true),
];

/// `feature-client URL COUNT [--recorder] [--deflate]`: one wsherd client with one
/// per-message subscriber, metrics published every [`PUBLISH_EVERY`] into a recorder when
/// `--recorder` is given, permessage-deflate offered with `--deflate`.
/// Prints `count checksum wall_ns`.
pub(crate) fn client(args: &[String]) -> ExitCode {
    match client_run(args) {
        Ok((tally, wall)) => {
            println!("{} {} {}", tally.count, tally.checksum, wall.as_nanos());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("feature-client: {error}");
            ExitCode::FAILURE
        }
    }
}

fn client_run(args: &[String]) -> Result<(Tally, Duration), String> {
    let (Some(url), Some(count)) = (args.first(), args.get(1)) else {
        return Err("usage: feature-client URL COUNT [--recorder]".into());
    };
    let count: u64 = count.parse().map_err(|e| format!("COUNT: {e}"))?;
    let recorder = args.iter().any(|a| a == "--recorder");
    let deflate = args.iter().any(|a| a == "--deflate");
    if recorder {
        metrics::set_global_recorder(crate::instructions::Atomics::default())
            .map_err(|e| e.to_string())?;
    }
    let system = System::new();
    system.block_on(async {
        let herd = Herd::new();
        if recorder {
            herd.enable_metrics(PUBLISH_EVERY)
                .map_err(|e| e.to_string())?;
        }
        let (counter, rx) = Counter::start(count, Tally::default());
        herd.subscribe::<Trade>(counter.recipient());
        let mut config = ConnectionConfig::new(url.as_str());
        config.heartbeat.interval = Duration::from_secs(3600);
        if deflate {
            config = config.compression(wsherd::DeflateOffer {
                no_context_takeover: true,
                ..wsherd::DeflateOffer::default()
            });
        }
        let started = Instant::now();
        herd.add_endpoint("bench", config)
            .map_err(|e| e.to_string())?;
        let tally = all_in(rx).await?;
        let wall = started.elapsed();
        herd.shutdown("done", Duration::from_secs(1)).await;
        Ok((tally, wall))
    })
}

/// Reads a child's `count checksum wall_ns` line.
fn parse_line(line: &str) -> Result<(Tally, Duration), String> {
    let fields: Vec<u64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the client said {line:?}: {e}"))?;
    match fields[..] {
        [count, checksum, wall_ns] => {
            Ok((Tally { count, checksum }, Duration::from_nanos(wall_ns)))
        }
        _ => Err(format!(
            "the client said {line:?}, not `count checksum wall_ns`"
        )),
    }
}

/// Runs one `feature-client` child, on core `cpu` alone if given.
fn run_child(url: &str, extra: &[&str], cpu: Option<usize>) -> Result<(Tally, Duration), String> {
    let output = crate::pin::this_executable_on(cpu)?
        .arg("feature-client")
        .arg(url)
        .arg(MESSAGES.to_string())
        .args(extra)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the client process: {e}"))?;
    if !output.status.success() {
        return Err(format!("the client process failed ({})", output.status));
    }
    parse_line(String::from_utf8_lossy(&output.stdout).trim())
}

pub(crate) fn run() -> Result<Value, String> {
    let want = expected(MESSAGES)?;
    // Pinned as `throughput` is (see `pin.rs`), so that where the scheduler puts a client
    // beside its server is not what the ratio measures.
    let pin = crate::pin::wanted();
    let (server_cpu, client_cpu) = if pin {
        (Some(crate::pin::SERVER_CPU), Some(crate::pin::CLIENT_CPU))
    } else {
        (None, None)
    };
    let server = ServerProcess::start_pinned(MESSAGES, false, server_cpu)?;
    let compressing = ServerProcess::start_pinned(MESSAGES, true, server_cpu)?;
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..ROUNDS {
        for (i, (name, extra, deflate)) in VARIANTS.iter().enumerate() {
            let url = if *deflate {
                compressing.url()
            } else {
                server.url()
            };
            let (tally, wall) = run_child(&url, extra, client_cpu)?;
            check(name, tally, want)?;
            walls[i].push(wall.as_secs_f64());
        }
    }
    println!(
        "features: wsherd per message, {MESSAGES} messages, each client in its own process, median of {ROUNDS} interleaved rounds, {}",
        if pin {
            "servers on core 0, clients on core 1"
        } else {
            "unpinned"
        }
    );
    println!("{:<20} {:>12} {:>10}", "client", "msgs/s", "wall s");
    let mut figures = serde_json::Map::new();
    figures.insert("pinned".into(), json!(pin));
    let mut rates = Vec::new();
    for ((name, _, _), runs) in VARIANTS.iter().zip(walls) {
        let wall = median(runs);
        let rate = MESSAGES as f64 / wall;
        println!("{name:<20} {rate:>12.0} {wall:>10.3}");
        figures.insert((*name).into(), json!({"msgs_per_s": rate, "wall_s": wall}));
        rates.push(rate);
    }
    let ratio = rates[1] / rates[0];
    println!(
        "metrics recorder on / off: {ratio:.3} (published every {} ms)",
        PUBLISH_EVERY.as_millis()
    );
    let deflate = rates[2] / rates[0];
    println!(
        "permessage-deflate on / off: {deflate:.3} (every message compressed on its own; the gateway's fan-out: see `gateway`)"
    );
    figures.insert("ratio_metrics_on_off".into(), json!(ratio));
    figures.insert("ratio_deflate_on_off".into(), json!(deflate));
    Ok(Value::Object(figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_line_reads_as_its_tally_and_time() -> Result<(), String> {
        let (tally, wall) = parse_line("3 42 1500000000")?;
        assert_eq!(
            tally,
            Tally {
                count: 3,
                checksum: 42
            }
        );
        assert_eq!(wall, Duration::from_millis(1500));
        Ok(())
    }

    #[test]
    fn a_short_or_garbled_child_line_is_an_error() {
        assert!(parse_line("3 42").is_err());
        assert!(parse_line("three 42 1").is_err());
        assert!(parse_line("").is_err());
    }
}
