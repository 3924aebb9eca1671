//! Command-line arguments, parsed by hand: three subcommands and a few flags.

use std::path::PathBuf;

/// How events are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// One JSON object per line.
    Json,
    /// For people; coloured on a terminal.
    Pretty,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Run {
        config: PathBuf,
        endpoints: Vec<String>,
        kinds: Vec<String>,
        format: Format,
    },
    Check {
        config: PathBuf,
    },
    Demo {
        seconds: Option<u64>,
    },
    Help,
}

pub(crate) const USAGE: &str = "\
wsherd: keep many WebSocket connections alive, typed and supervised

USAGE:
    wsherd run --config FILE [--endpoint NAME]... [--kind KIND]... [--format json|pretty]
    wsherd check --config FILE
    wsherd demo [--seconds N]

run     starts the herd and prints every message, state change and dead letter, one JSON
        object per line; reads {\"endpoint\": NAME, \"data\": ANY} or {\"endpoint\": NAME,
        \"text\": STR} lines on stdin and sends them. SIGINT/SIGTERM close gracefully, SIGHUP
        reloads the config.
check   validates the config and prints the resolved endpoints (secrets redacted); exits 2
        with every problem on stderr when it is invalid.
demo    starts a local demo server and a herd on it whose endpoints stream, drop, stall and
        recover, with plain-words progress (offline). Ctrl-C stops it.
";

/// Parses `args` (without the program name).
pub(crate) fn parse(args: &[String]) -> Result<Command, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    let mut config = None;
    let mut endpoints = Vec::new();
    let mut kinds = Vec::new();
    let mut format = Format::Json;
    let mut seconds = None;
    let mut iter = rest.iter();
    while let Some(flag) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--config" | "-c" => config = Some(PathBuf::from(value("--config")?)),
            "--endpoint" => endpoints.push(value("--endpoint")?),
            "--kind" => kinds.push(value("--kind")?),
            "--format" => {
                format = match value("--format")?.as_str() {
                    "json" => Format::Json,
                    "pretty" => Format::Pretty,
                    other => return Err(format!("--format must be json or pretty, not {other:?}")),
                }
            }
            "--seconds" => {
                let text = value("--seconds")?;
                seconds = Some(
                    text.parse()
                        .map_err(|_| format!("--seconds must be a whole number, not {text:?}"))?,
                );
            }
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need_config =
        |config: Option<PathBuf>| config.ok_or_else(|| "--config FILE is required".to_owned());
    match command.as_str() {
        "run" => Ok(Command::Run {
            config: need_config(config)?,
            endpoints,
            kinds,
            format,
        }),
        "check" => Ok(Command::Check {
            config: need_config(config)?,
        }),
        "demo" => Ok(Command::Demo { seconds }),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn commands_and_flags() {
        assert_eq!(
            parse(&args(
                "run --config a.toml --endpoint x --endpoint y --kind t --format pretty"
            )),
            Ok(Command::Run {
                config: "a.toml".into(),
                endpoints: vec!["x".into(), "y".into()],
                kinds: vec!["t".into()],
                format: Format::Pretty,
            })
        );
        assert_eq!(
            parse(&args("check -c a.toml")),
            Ok(Command::Check {
                config: "a.toml".into()
            })
        );
        assert_eq!(
            parse(&args("demo --seconds 5")),
            Ok(Command::Demo { seconds: Some(5) })
        );
        assert_eq!(parse(&[]), Ok(Command::Help));
        assert_eq!(parse(&args("run")), Err("--config FILE is required".into()));
        assert_eq!(
            parse(&args("run --config")),
            Err("--config needs a value".into())
        );
        assert_eq!(parse(&args("fly")), Err("unknown command \"fly\"".into()));
        assert!(parse(&args("run --config a --format xml")).is_err());
        assert!(parse(&args("run --config a --bogus")).is_err());
    }
}
