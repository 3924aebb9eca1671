//! The `wsherd` command: `run`, `check`, `status`, `demo`, `init` and `completions`.
#![forbid(unsafe_code)]
// This binary's output is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod args;
mod demo;
mod init;
mod logs;
mod output;
mod progress;
mod run;
mod status;
mod stdout;

use std::io::IsTerminal;
use std::process::ExitCode;

use args::{Cli, Command};
use clap::{CommandFactory, Parser};

fn main() -> ExitCode {
    // Usage mistakes exit 2 with a suggestion; --help and --version exit 0.
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Run { .. } => "info",
        _ => "warn",
    };
    let filter = match logs::filter(cli.log_level.as_deref(), default_filter) {
        Ok(filter) => filter,
        Err(error) => {
            eprintln!("wsherd: bad log filter: {error}");
            return ExitCode::from(2);
        }
    };
    let (_guard, stderr) = match logs::install(filter, cli.log_format) {
        Ok(installed) => installed,
        Err(error) => {
            eprintln!("wsherd: cannot set up logging: {error}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Check { config } => run::check(&config),
        Command::Run {
            config,
            endpoints,
            kinds,
            format,
            listen,
        } => {
            let progress = run::Progress {
                stderr,
                terminal: std::io::stderr().is_terminal(),
            };
            run::run(&config, endpoints, kinds, format, listen, progress)
        }
        Command::Status {
            url,
            token,
            ca_file,
            json,
        } => status::status(&url, token, ca_file, json),
        Command::Demo { seconds, listen } => demo::demo(seconds, listen),
        Command::Init { file, force } => init::init(&file, force),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "wsherd",
                &mut std::io::stdout().lock(),
            );
            ExitCode::SUCCESS
        }
    }
}
