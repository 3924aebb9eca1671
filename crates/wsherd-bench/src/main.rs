//! `cargo run --release -p wsherd-bench -- <scenario> [--json]`
//!
//! Scenarios: `throughput`, `fanout`, `all`. Every figure is measured beside its baselines in
//! the same run, as the median of interleaved rounds; ratios are printed, never asserted.
#![forbid(unsafe_code)]
// Printing figures is what a benchmark is for.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod fanout;
mod measure;
mod server;
mod throughput;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        // The child process: a raw WebSocket server writing pre-encoded frames.
        return server::serve(&args[1..]);
    }
    let json = args.iter().any(|a| a == "--json");
    let scenario = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("all", String::as_str);
    let mut results = serde_json::Map::new();
    let run = |name: &str| scenario == name || scenario == "all";
    if run("throughput") {
        match throughput::run() {
            Ok(figures) => {
                results.insert("throughput".into(), figures);
            }
            Err(error) => {
                eprintln!("throughput: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if run("fanout") {
        match fanout::run() {
            Ok(figures) => {
                results.insert("fanout".into(), figures);
            }
            Err(error) => {
                eprintln!("fanout: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    if results.is_empty() {
        eprintln!("unknown scenario {scenario:?}: use throughput, fanout or all");
        return ExitCode::from(2);
    }
    if json {
        println!("{}", serde_json::Value::Object(results));
    }
    ExitCode::SUCCESS
}
