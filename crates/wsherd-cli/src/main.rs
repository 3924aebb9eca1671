//! The `wsherd` command: `run`, `check` and `demo`.
#![forbid(unsafe_code)]
// This binary's output is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod demo;
mod output;
mod run;
mod stdout;

use std::process::ExitCode;

use args::{Command, USAGE};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&args) {
        Ok(command) => command,
        Err(message) => {
            eprintln!("wsherd: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Check { config } => run::check(&config),
        Command::Run {
            config,
            endpoints,
            kinds,
            format,
        } => run::run(&config, endpoints, kinds, format),
        Command::Demo { seconds } => demo::demo(seconds),
    }
}
