//! `wsherd run` and `wsherd check`.

use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use wsherd::config::HerdConfig;
use wsherd::{Herd, Outbound};

use crate::args::Format;
use crate::logs::Stderr;
use crate::output::{Filter, KindRules, Printed, Printers, request_line};
use crate::stdout::Stdout;

/// How long a graceful shutdown waits for peers to answer the Close.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Validates `path`; prints the resolved configuration as TOML in the config's own keys and
/// units (every default explicit, secrets redacted), or every problem on stderr.
pub(crate) fn check(path: &Path) -> ExitCode {
    match HerdConfig::from_file(path) {
        Ok(config) => {
            // A comment, so that the whole output is a config file that loads again.
            println!(
                "# {}: valid; {} endpoint(s), {} worker(s)",
                path.display(),
                config.endpoints.len(),
                config.settings.workers
            );
            print!("{}", config.to_toml());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprint!("{error}");
            ExitCode::from(2)
        }
    }
}

/// How long a stdin request waits for its reply without `timeout_ms`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One line of stdin, parsed.
#[derive(Debug, PartialEq)]
struct Outgoing {
    endpoint: String,
    what: What,
}

#[derive(Debug, PartialEq)]
enum What {
    /// `"data"` or `"text"`: sent.
    Send(Outbound),
    /// `"request"`: sent with an id; its reply (or failure) is printed.
    Request { message: Value, timeout: Duration },
}

fn parse_stdin_line(line: &str) -> Result<Outgoing, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let endpoint = value
        .get("endpoint")
        .and_then(Value::as_str)
        .ok_or("needs \"endpoint\": NAME")?
        .to_owned();
    let what = match (value.get("data"), value.get("text"), value.get("request")) {
        (Some(data), None, None) => What::Send(Outbound::Text(data.to_string())),
        (None, Some(Value::String(text)), None) => What::Send(Outbound::Text(text.clone())),
        (None, Some(_), None) => return Err("\"text\" must be a string".to_owned()),
        (None, None, Some(message)) => {
            let timeout = match value.get("timeout_ms") {
                None => REQUEST_TIMEOUT,
                Some(ms) => Duration::from_millis(
                    ms.as_u64()
                        .ok_or("\"timeout_ms\" must be a whole number of milliseconds")?,
                ),
            };
            What::Request {
                message: message.clone(),
                timeout,
            }
        }
        _ => {
            return Err("needs exactly one of \"data\", \"text\" or \"request\"".to_owned());
        }
    };
    Ok(Outgoing { endpoint, what })
}

/// Each endpoint's kind rule by name; an inbound endpoint's serves its sessions.
fn kind_rules(config: &HerdConfig) -> HashMap<String, wsherd::KindRule> {
    let outbound = config
        .endpoints
        .iter()
        .map(|(name, e)| (name.to_string(), e.spec.connection.kind.clone()));
    let inbound = config
        .inbound
        .iter()
        .map(|(name, e)| (name.to_string(), e.spec.connection.kind.clone()));
    outbound.chain(inbound).collect()
}

/// Where `run` reports its endpoints coming up.
pub(crate) struct Progress {
    pub(crate) stderr: crate::logs::Stderr,
    /// A live line redrawn in place, rather than plain lines.
    pub(crate) terminal: bool,
}

/// Runs the herd of `path` until SIGINT or SIGTERM, with the server beside it when `listen`
/// (or the config's `server.listen`) says where.
pub(crate) fn run(
    path: &Path,
    endpoints: Vec<String>,
    kinds: Vec<String>,
    format: Format,
    listen: Option<SocketAddr>,
    progress: Progress,
) -> ExitCode {
    let mut config = match HerdConfig::from_file(path) {
        Ok(config) => config,
        Err(error) => {
            eprint!("{error}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = listen {
        let server = &mut config.settings.server;
        server.listen = Some(listen);
        if let Err(why) = server.check_exposure(listen) {
            eprintln!("wsherd: --listen: {why}");
            return ExitCode::from(2);
        }
    }
    let server_settings = config.settings.server.clone();
    let gateway = config.gateway.clone();
    let mut stdout = match Stdout::start() {
        Ok(stdout) => stdout,
        Err(error) => {
            eprintln!("wsherd: cannot start the stdout writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let system = System::new();
    let outcome = system.block_on(async {
        let rules: KindRules = Arc::new(Mutex::new(kind_rules(&config)));
        let filter = Filter {
            endpoints: endpoints.into_iter().collect(),
            kinds: kinds.into_iter().collect(),
        };
        // With `[cluster]`, this process is one member: it runs its share of the endpoints
        // and prints every endpoint's messages, its own and the other members'.
        let cluster = match config.cluster {
            Some(_) => Some(
                wsherd_cluster::Cluster::join(config.clone())
                    .await
                    .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        // Subscribed before this process says it is a member: every state change of another
        // member's endpoint after that line is printed here too.
        let remote_states = match &cluster {
            Some(cluster) => Some(
                cluster
                    .client()
                    .subscribe(cluster.subjects().all_states())
                    .await
                    .map_err(|e| format!("cannot subscribe to the cluster's state lines: {e}"))?,
            ),
            None => None,
        };
        let herd = match &cluster {
            Some(cluster) => {
                eprintln!(
                    "wsherd: member {} of the cluster; taking its share of {} endpoint(s)",
                    cluster.member(),
                    config.endpoints.values().filter(|e| e.enabled).count()
                );
                cluster.herd().clone()
            }
            None => Herd::from_config(config).map_err(|e| e.to_string())?,
        };
        let printers = Printers::start(format, filter, Arc::clone(&rules), &stdout);
        printers.subscribe(&herd);
        if let (Some(cluster), Some(states)) = (&cluster, remote_states) {
            actix_rt::spawn(print_remote_states(
                states,
                cluster.member().to_owned(),
                printers.remote_states(),
            ));
        }
        herd.start();
        let server = match server_settings.listen {
            Some(_) => Some(start_server(&herd, &server_settings, gateway)?),
            None => None,
        };
        // On this arbiter (the governor's) nothing writes stderr itself: a stderr nobody
        // reads must not hold up handshakes. Lines go through the logs' writer thread.
        let stderr = progress.stderr.clone();
        crate::progress::spawn(herd.clone(), progress.stderr, progress.terminal);
        forward_stdin(herd.clone(), printers.lines(), stderr.clone());
        let stdout_closed = stdout.closed();
        tokio::select! {
            () = wait_for_signals(&herd, cluster.is_some(), path, &rules, &stderr) => {}
            // `wsherd run | head`: nobody will read what comes next; close gracefully.
            () = stdout_closed => {}
        }
        if let Some(cluster) = &cluster {
            // Hand every endpoint over now: the others take them at once, not a lease later.
            cluster.leave().await;
        }
        let report = herd.shutdown("shutting down", SHUTDOWN_TIMEOUT).await;
        if let Some(server) = &server {
            server.stop(true).await;
        }
        // How many, not what: messages (subscriptions, logins) often carry credentials.
        for (endpoint, unsent) in &report.unsent {
            stderr.write(format!(
                "{endpoint}: {} queued message(s) were not sent\n",
                unsent.len()
            ));
        }
        for endpoint in &report.timed_out {
            stderr.write(format!(
                "{endpoint}: the peer did not answer the Close in time\n"
            ));
        }
        for endpoint in &report.events_pending {
            stderr.write(format!(
                "{endpoint}: its last state events were not printed in time\n"
            ));
        }
        Ok::<_, String>(())
    });
    // The printers go with the system; then every line they handed over is written.
    drop(system);
    stdout.finish();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("wsherd: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Starts the server beside `herd`, with a Prometheus recorder installed for `/metrics`.
fn start_server(
    herd: &Herd,
    settings: &wsherd::config::ServerSettings,
    gateway: Option<wsherd::config::GatewaySettings>,
) -> Result<wsherd_server::RunningServer, String> {
    let prometheus = match wsherd_server::install_prometheus() {
        Ok(handle) => Some(handle),
        Err(error) => {
            eprintln!("wsherd: {error}; /metrics shows only the herd-wide gauges");
            None
        }
    };
    let mut options = wsherd_server::ServerOptions::from_settings(settings).prometheus(prometheus);
    if let Some(gateway) = gateway {
        eprintln!("wsherd: the gateway is at {}", gateway.path);
        options = options.gateway(gateway);
    }
    let server =
        wsherd_server::serve(herd.clone(), settings, options).map_err(|e| e.to_string())?;
    eprintln!(
        "wsherd: serving {} (the dashboard at /; /healthz, /readyz, /metrics, /api/status, /api/events){}",
        server.url(),
        if settings.token.is_some() {
            "; /metrics and /api need the token"
        } else {
            ""
        }
    );
    Ok(server)
}

/// Reads the config at `path` on a blocking thread: a slow disk must not hold the arbiter.
async fn read_config(path: &Path) -> Result<HerdConfig, String> {
    let path = path.to_owned();
    match actix_rt::task::spawn_blocking(move || HerdConfig::from_file(path)).await {
        Ok(read) => read.map_err(|error| error.to_string()),
        Err(error) => Err(format!("reading the config failed: {error}\n")),
    }
}

/// SIGHUP reloads; SIGINT or SIGTERM return.
async fn wait_for_signals(
    herd: &Herd,
    clustered: bool,
    path: &Path,
    rules: &KindRules,
    stderr: &Stderr,
) {
    let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        stderr.write("wsherd: cannot listen for signals; stop with SIGKILL\n".to_owned());
        std::future::pending::<()>().await;
        return;
    };
    loop {
        tokio::select! {
            _ = interrupt.recv() => return,
            _ = terminate.recv() => return,
            // A member's endpoints are the cluster's: a reload here would start all of them.
            _ = hangup.recv() => match read_config(path).await {
                Ok(_) if clustered => stderr.write(
                    "wsherd: reload is not supported with [cluster]: restart the members one at a time with the new config\n".to_owned(),
                ),
                Ok(config) => {
                    *rules.lock().unwrap_or_else(PoisonError::into_inner) = kind_rules(&config);
                    match herd.reload(config).await {
                        Ok(report) => {
                            stderr.write(format!(
                                "wsherd: reloaded: {} started, {} restarted, {} stopped, {} unchanged\n",
                                report.started.len(),
                                report.restarted.len(),
                                report.stopped.len(),
                                report.unchanged.len()
                            ));
                            for name in &report.inbound_not_applied {
                                stderr.write(format!(
                                    "wsherd: [inbound.{name}] changed; inbound endpoints take their settings when wsherd starts: restart it to apply\n"
                                ));
                            }
                        }
                        Err(error) => stderr.write(format!("wsherd: reload failed: {error}\n")),
                    }
                }
                Err(error) => stderr.write(format!("wsherd: reload refused, keeping the running config:\n{error}")),
            },
        }
    }
}

/// Reads JSON lines from stdin on a thread of its own (reading blocks) and sends them; the
/// outcome of each request is printed to `printed`, when it comes (requests run side by
/// side, each bounded by its endpoint's `max_in_flight` and its timeout).
fn forward_stdin(herd: Herd, printed: Recipient<Printed>, stderr: Stderr) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Outgoing>(64);
    let reader = std::thread::Builder::new()
        .name("wsherd-stdin".into())
        .spawn(move || {
            for (number, line) in std::io::stdin().lock().lines().enumerate() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                match parse_stdin_line(&line) {
                    // The bounded channel makes a fast writer wait for the herd.
                    Ok(outgoing) => {
                        if tx.blocking_send(outgoing).is_err() {
                            break;
                        }
                    }
                    Err(why) => eprintln!("wsherd: stdin line {}: {why}; skipped", number + 1),
                }
            }
        });
    if let Err(error) = reader {
        stderr.write(format!("wsherd: cannot read stdin: {error}\n"));
        return;
    }
    actix_rt::spawn(async move {
        while let Some(Outgoing { endpoint, what }) = rx.recv().await {
            match what {
                What::Send(message) => {
                    if let Err(error) = herd.send(&endpoint, message).await {
                        stderr.write(format!("wsherd: not sent to {endpoint:?}: {error}\n"));
                    }
                }
                What::Request { message, timeout } => {
                    let herd = herd.clone();
                    let printed = printed.clone();
                    actix_rt::spawn(async move {
                        let outcome = herd
                            .request_with_id::<Value>(&endpoint, message, timeout)
                            .await;
                        printed.do_send(Printed(request_line(&endpoint, outcome)));
                    });
                }
            }
        }
    });
}

/// Prints the state lines other members publish (this member's own are printed from its herd),
/// each with the member that runs the endpoint.
async fn print_remote_states(
    mut states: wsherd_cluster::async_nats::Subscriber,
    me: String,
    printer: Recipient<crate::output::RemoteState>,
) {
    use futures_util::StreamExt as _;
    while let Some(message) = states.next().await {
        let Some(line) = remote_state_line(&message.payload, &me) else {
            continue;
        };
        // A full or gone printer skips it, as the printer skips past its own backlog.
        let _ = printer.try_send(crate::output::RemoteState(line));
    }
}

/// The line to print for `payload` from `<prefix>.state.*`, if it is another member's state
/// line. Anyone who may publish on NATS could write one: only JSON objects with
/// `"event":"state"` are taken, and control characters in their text are blanked before a
/// terminal sees them.
fn remote_state_line(payload: &[u8], me: &str) -> Option<serde_json::Value> {
    let serde_json::Value::Object(mut line) = serde_json::from_slice(payload).ok()? else {
        return None;
    };
    if line.get("event").and_then(serde_json::Value::as_str) != Some("state")
        || line.get("member").and_then(serde_json::Value::as_str) == Some(me)
        || !line
            .get("endpoint")
            .is_some_and(serde_json::Value::is_string)
    {
        return None;
    }
    for value in line.values_mut() {
        if let serde_json::Value::String(text) = value
            && text.chars().any(char::is_control)
        {
            *text = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
        }
    }
    Some(serde_json::Value::Object(line))
}

#[cfg(test)]
mod tests {
    #[test]
    fn another_members_state_line_is_printed_with_control_characters_blanked_and_nothing_else_is() {
        let line = remote_state_line(
            br#"{"event":"state","endpoint":"e1","state":"backoff","member":"b","reason":"bad\u001b[2Jpeer"}"#,
            "a",
        )
        .unwrap();
        assert_eq!(line["reason"], "bad [2Jpeer");
        assert_eq!(line["member"], "b");
        // This member's own (printed from its herd), other events, and what is not a line.
        assert!(
            remote_state_line(br#"{"event":"state","endpoint":"e1","member":"a"}"#, "a").is_none()
        );
        assert!(
            remote_state_line(br#"{"event":"message","endpoint":"e1","member":"b"}"#, "a")
                .is_none()
        );
        assert!(remote_state_line(br#"{"event":"state","member":"b"}"#, "a").is_none());
        assert!(remote_state_line(b"not json", "a").is_none());
        assert!(remote_state_line(b"[1,2]", "a").is_none());
    }

    use super::*;

    #[test]
    fn stdin_lines() {
        assert_eq!(
            parse_stdin_line(r#"{"endpoint":"a","data":{"op":"sub"}}"#),
            Ok(Outgoing {
                endpoint: "a".into(),
                what: What::Send(Outbound::from(r#"{"op":"sub"}"#))
            })
        );
        assert_eq!(
            parse_stdin_line(r#"{"endpoint":"a","text":"hi"}"#).map(|o| o.what),
            Ok(What::Send(Outbound::from("hi")))
        );
        assert_eq!(
            parse_stdin_line(r#"{"endpoint":"a","request":{"op":"x"},"timeout_ms":250}"#)
                .map(|o| o.what),
            Ok(What::Request {
                message: serde_json::json!({"op": "x"}),
                timeout: Duration::from_millis(250)
            })
        );
        for bad in [
            "nope",
            r#"{"data":1}"#,
            r#"{"endpoint":"a"}"#,
            r#"{"endpoint":"a","text":1}"#,
            r#"{"endpoint":"a","request":{},"data":1}"#,
            r#"{"endpoint":"a","request":{},"timeout_ms":-1}"#,
        ] {
            assert!(parse_stdin_line(bad).is_err(), "{bad}");
        }
    }
}
