//! Command-line arguments, by `clap` (derive): subcommands, flags, `--help` for each,
//! `--version`, and errors that suggest the flag that was meant.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// wsherd: keep many WebSocket connections alive, typed and supervised.
#[derive(Debug, Parser)]
#[command(
    name = "wsherd",
    version,
    propagate_version = true,
    after_help = concat!(
        "Every config key, its default and meaning: docs/configuration.md in the wsherd ",
        "repository; `wsherd init` writes a commented config with every section.\n",
        "Logs go to stderr (RUST_LOG or --log-level); stdout is the data stream."
    )
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Log filter for stderr, in RUST_LOG syntax ("info", "wsherd=debug,warn").
    ///
    /// Overrides RUST_LOG. Default: info for `run`, warn otherwise.
    #[arg(long, global = true, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// How log lines are written to stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// The subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub(crate) enum Command {
    /// Start the herd of a config; print what it receives as JSON lines, send what stdin says.
    ///
    /// Every message, state change and dead letter is one JSON object per line on stdout;
    /// the JSON lines read on stdin are sent
    /// ({"endpoint": NAME, "data": ANY} or {"endpoint": NAME, "text": STR}). SIGINT/SIGTERM
    /// close gracefully, SIGHUP reloads the config.
    Run {
        /// The config file (TOML, YAML or JSON).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Print only this endpoint's messages (repeatable); every endpoint by default.
        #[arg(long = "endpoint", value_name = "NAME")]
        endpoints: Vec<String>,
        /// Print only messages of this kind (repeatable); every kind by default.
        #[arg(long = "kind", value_name = "KIND")]
        kinds: Vec<String>,
        /// How stdout lines are written.
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
        /// Serve /healthz, /readyz, /metrics and /api on this address beside the herd
        /// (overrides server.listen); "127.0.0.1:0" picks a free port, printed on stderr.
        ///
        /// An address other than loopback needs server.token (or
        /// server.allow_unauthenticated = true) in the config.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Validate a config and print it resolved, secrets redacted.
    ///
    /// The output is TOML in the config's own keys and units, every default explicit; an
    /// invalid config exits 2 with every problem on stderr.
    Check {
        /// The config file (TOML, YAML or JSON).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Watch a herd stream, drop, stall and recover against a local demo server (offline).
    ///
    /// Plain words on stdout; Ctrl-C stops it.
    Demo {
        /// Stop after this many seconds.
        #[arg(long, value_name = "N")]
        seconds: Option<u64>,
        /// Also serve the dashboard and the API on this loopback address (127.0.0.1:9090;
        /// port 0 picks one): open the printed URL in a browser to watch the herd.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// Print the endpoints of a running herd (`wsherd run --listen`) as a table.
    ///
    /// Asks URL/api/status; --json prints the server's JSON array as it is, for scripts.
    /// Exits 1 when the server cannot be reached or refuses.
    Status {
        /// The server's base URL, such as http://127.0.0.1:9090.
        #[arg(long, value_name = "URL")]
        url: String,
        /// The server's token (default: the WSHERD_TOKEN environment variable, which other
        /// users of the machine cannot read from the process list).
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        /// PEM CA certificates to trust for an https:// URL instead of the Web PKI roots.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Print the JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a commented config with every section to start from.
    ///
    /// `wsherd check` accepts it as written.
    Init {
        /// Where to write it; `-` for stdout.
        #[arg(default_value = "wsherd.toml", value_name = "FILE")]
        file: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a shell completion script.
    ///
    /// For example `wsherd completions bash > /etc/bash_completion.d/wsherd`.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One JSON object per line.
    Json,
    /// For people.
    Pretty,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event, with its endpoint span.
    Text,
    /// One JSON object per event.
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("wsherd").chain(text.split_whitespace()))
    }

    #[test]
    fn commands_and_flags_parse_as_before() {
        let cli = parse("run --config a.toml --endpoint x --endpoint y --kind t --format pretty")
            .unwrap();
        assert_eq!(
            cli.command,
            Command::Run {
                config: "a.toml".into(),
                endpoints: vec!["x".into(), "y".into()],
                kinds: vec!["t".into()],
                format: Format::Pretty,
                listen: None,
            }
        );
        let run = parse("run -c a.toml --listen 127.0.0.1:9090").unwrap();
        assert!(
            matches!(run.command, Command::Run { listen: Some(addr), .. } if addr.port() == 9090)
        );
        assert_eq!(
            parse("status --url http://127.0.0.1:9090 --json")
                .unwrap()
                .command,
            Command::Status {
                url: "http://127.0.0.1:9090".into(),
                token: None,
                ca_file: None,
                json: true,
            }
        );
        assert_eq!(
            parse("check -c a.toml").unwrap().command,
            Command::Check {
                config: "a.toml".into()
            }
        );
        assert_eq!(
            parse("demo --seconds 5").unwrap().command,
            Command::Demo {
                seconds: Some(5),
                listen: None
            }
        );
        let init = parse("init --log-level debug").unwrap();
        assert_eq!(init.log_level.as_deref(), Some("debug"));
        assert_eq!(
            init.command,
            Command::Init {
                file: "wsherd.toml".into(),
                force: false
            }
        );
    }

    #[test]
    fn mistakes_are_refused_with_a_suggestion() {
        assert!(parse("run").is_err(), "--config is required");
        assert!(parse("run --config a --format xml").is_err());
        let error = parse("run --confg a.toml").unwrap_err().to_string();
        assert!(error.contains("--config"), "{error}");
        let error = parse("chek --config a").unwrap_err().to_string();
        assert!(error.contains("check"), "{error}");
        assert!(
            parse("run -c a.toml --listen localhost").is_err(),
            "needs an address and a port"
        );
        assert!(parse("status").is_err(), "--url is required");
    }
}
