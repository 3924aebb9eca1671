//! `cargo run --release -p wsherd-bench -- <scenario> [--json] [--save]`, and
//! `wsherd-bench compare A.json B.json` (see `history.rs`).
//!
//! Scenarios: `throughput`, `fanout`, `latency`, `features`, `connections`, `storm`, `detect`,
//! `scaling`, `inbound`, `gateway`, `cluster`, `all`, or several joined by commas. Every figure is measured beside its baselines in the same run, as the median
//! of interleaved rounds (`latency`: percentiles of the rounds' latencies pooled); ratios and
//! differences are printed, never asserted.
#![forbid(unsafe_code)]
// Printing figures is what a benchmark is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod cluster;
mod fanout;
mod features;
mod fleet;
mod gateway;
mod history;
mod idle_server;
mod inbound;
mod instructions;
mod latency;
mod measure;
mod paced_server;
mod pin;
mod server;
mod throughput;

use std::process::ExitCode;

/// A scenario: prints its table and returns its figures.
type Scenario = fn() -> Result<serde_json::Value, String>;

/// Open files the fleet scenarios need in each process: 10,000 sockets and some to spare.
const FILES_NEEDED: u64 = 10_500;

/// Raises this process's open-file limit as far as the hard limit allows; the server children
/// inherit it (and raise their own too).
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < FILES_NEEDED => eprintln!(
            "note: open files are limited to {limit} (hard limit); connections and storm need about {FILES_NEEDED}"
        ),
        Ok(_) => {}
        Err(error) => eprintln!("note: cannot raise the open-file limit: {error}"),
    }
}

/// How many files this process has open now (0 where `/proc` is missing).
pub(crate) fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Files a scenario may leave open that are opened once per process, not per scenario.
pub(crate) const ONCE_PER_PROCESS_FILES: usize = 8;

/// Open files once they are down to `at_most`, or after `patience` of waiting for that.
pub(crate) fn files_settled(at_most: usize, patience: std::time::Duration) -> usize {
    let patience = std::time::Instant::now() + patience;
    loop {
        let now = open_files();
        if now <= at_most || std::time::Instant::now() > patience {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn main() -> ExitCode {
    raise_open_file_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        // Child processes: the servers the scenarios measure against.
        Some("serve") => return server::serve(&args[1..]),
        Some("serve-idle") => return idle_server::serve_idle(&args[1..]),
        Some("feature-client") => return features::client(&args[1..]),
        Some("connections-client") => return fleet::connections_client(&args[1..]),
        Some("inbound-client") => return inbound::client(&args[1..]),
        Some("gateway-clients") => return gateway::clients(&args[1..]),
        Some("serve-paced") => return paced_server::serve_paced(&args[1..]),
        Some("serve-cluster-feed") => return cluster::serve_feed(&args[1..]),
        Some("cluster-member") => return cluster::member(&args[1..]),
        // One client holding one point of `scaling`, in a process of its own.
        Some("scaling-point") => return fleet::scaling::serve_point(&args[1..]),
        Some("compare") => {
            let (Some(before), Some(after)) = (args.get(1), args.get(2)) else {
                eprintln!("usage: wsherd-bench compare A.json B.json");
                return ExitCode::from(2);
            };
            return match history::compare(before, after) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("compare: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        // For a heap profiler, not for figures: see `fleet::idle_heap`.
        Some("idle-heap") => {
            return match fleet::idle_heap(&args[1..]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("idle-heap: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        // For callgrind, not for figures of its own: see `instructions.rs`.
        Some("instructions") => {
            return match instructions::run(&args[1..]) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("instructions: {error}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let json = args.iter().any(|a| a == "--json");
    let save = args.iter().any(|a| a == "--save");
    // One scenario, `all`, or several joined by commas (`latency,cluster`): run in one process,
    // in the order below, so what one leaves behind shows in the next.
    let scenario = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("all", String::as_str);
    let wanted: Vec<&str> = scenario.split(',').collect();
    let run = |name: &str| wanted.contains(&name) || wanted.contains(&"all");
    let mut results = serde_json::Map::new();
    if wanted.contains(&"soak") {
        // Minutes long: never part of `all`.
        match fleet::soak(&args) {
            Ok(figures) => {
                results.insert("soak".into(), figures);
            }
            Err(error) => {
                eprintln!("soak: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    let scenarios: [(&str, Scenario); 11] = [
        ("throughput", throughput::run),
        ("fanout", fanout::run),
        ("features", features::run),
        ("latency", latency::run),
        ("connections", fleet::connections),
        ("storm", fleet::storm),
        ("detect", fleet::detect),
        ("scaling", fleet::scaling::run),
        ("inbound", inbound::run),
        ("gateway", gateway::run),
        ("cluster", cluster::run),
    ];
    for (name, scenario_fn) in scenarios {
        if run(name) {
            let files_before = open_files();
            match scenario_fn() {
                Ok(figures) => {
                    results.insert(name.into(), figures);
                }
                // `all` on a machine without nats-server still measures the rest.
                Err(error) if scenario == "all" && error.starts_with(cluster::NO_NATS) => {
                    eprintln!("{name}: skipped: {error}");
                }
                Err(error) => {
                    eprintln!("{name}: {error}");
                    return ExitCode::FAILURE;
                }
            }
            // A scenario must give back what it opened, or it skews the ones after it. Sockets
            // its servers' workers close as their peers go may take a moment.
            let files_after = files_settled(files_before, std::time::Duration::from_secs(10));
            // A few are opened once per process and kept (the signal driver's socket pair, an
            // eventfd and an epoll): only more than those is left behind.
            if files_after > files_before + ONCE_PER_PROCESS_FILES {
                eprintln!(
                    "note: {name} left {} files open ({files_before} before, {files_after} after)",
                    files_after - files_before
                );
            }
        }
    }
    if results.is_empty() {
        eprintln!(
            "unknown scenario {scenario:?}: use throughput, fanout, latency, features, connections, storm, detect, scaling, inbound, gateway, cluster, all, several joined by commas, or soak [--minutes N]"
        );
        return ExitCode::from(2);
    }
    let results = serde_json::Value::Object(results);
    if save {
        match history::save(&results) {
            Ok(path) => eprintln!("saved {}", path.display()),
            Err(error) => {
                eprintln!("--save: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if json {
        println!("{results}");
    }
    ExitCode::SUCCESS
}
