//! `wsherd demo`: a local server whose endpoints stream, drop, stall and refuse, and a herd
//! that rides it out, narrated.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::signal::unix::{SignalKind, signal};
use wsherd::{
    BackoffPolicy, ConnectionConfig, EndpointSpec, HeartbeatMode, HeartbeatSpec, Herd, KindRule,
};
use wsherd_testkit::{Behaviour, Script, Step, TestServer};

use crate::args::Format;
use crate::output::{Filter, Printers};
use crate::stdout::Stdout;

const TICK: Duration = Duration::from_millis(400);

/// `count` ticks of `kind`, numbered from `first`, one every [`TICK`].
fn ticks(kind: &str, first: u64, count: u64) -> Script {
    (first..first + count)
        .flat_map(|seq| {
            [
                Step::Stream {
                    kind_field: "type".into(),
                    kinds: vec![kind.into()],
                    first_seq: seq,
                    count: 1,
                    padding: 0,
                },
                Step::Pause(TICK),
            ]
        })
        .collect()
}

struct DemoServers {
    steady: TestServer,
    flaky: TestServer,
    stalling: TestServer,
    picky: TestServer,
}

fn servers() -> std::io::Result<DemoServers> {
    Ok(DemoServers {
        steady: TestServer::start(ticks("quote", 0, 10_000))?,
        // Drops the first connection after five ticks; later ones stay.
        flaky: TestServer::builder_with(|index| {
            let mut script = ticks("trade", 0, if index == 0 { 5 } else { 10_000 });
            if index == 0 {
                script.push(Step::Drop);
            }
            Behaviour::Accept(script)
        })
        .start()?,
        // Goes silent after three ticks on its first connection: no data, no pongs.
        stalling: TestServer::builder_with(|index| {
            let mut script = ticks("news", 0, if index == 0 { 3 } else { 10_000 });
            if index == 0 {
                script.insert(0, Step::IgnorePings(true));
            }
            Behaviour::Accept(script)
        })
        .start()?,
        // Refuses the first handshake with 503.
        picky: TestServer::builder_with(|index| {
            if index == 0 {
                Behaviour::Reject(503)
            } else {
                Behaviour::Accept(ticks("status", 0, 10_000))
            }
        })
        .start()?,
    })
}

fn spec(url: String) -> EndpointSpec {
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        idle_timeout: None,
    };
    EndpointSpec::new(
        ConnectionConfig::new(url)
            .kind(KindRule::default())
            .heartbeat(heartbeat),
    )
    .on_open(r#"{"op":"subscribe"}"#)
    .backoff(BackoffPolicy {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(4),
        ..BackoffPolicy::default()
    })
}

/// Runs the demo for `seconds` (or until SIGINT/SIGTERM), serving the dashboard on `listen`.
pub(crate) fn demo(seconds: Option<u64>, listen: Option<std::net::SocketAddr>) -> ExitCode {
    let settings = wsherd::config::ServerSettings {
        listen,
        ..Default::default()
    };
    if let Some(listen) = listen
        && let Err(why) = settings.check_exposure(listen)
    {
        // The demo has no token: it serves the loopback only.
        eprintln!("wsherd: --listen: {why}");
        return ExitCode::from(2);
    }
    let servers = match servers() {
        Ok(servers) => servers,
        Err(error) => {
            eprintln!("wsherd: cannot start the demo server: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = match Stdout::start() {
        Ok(stdout) => stdout,
        Err(error) => {
            eprintln!("wsherd: cannot start the stdout writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let lines = stdout.lines();
    let banner = [
        "wsherd demo: four endpoints against a local server on 127.0.0.1 (no internet).",
        "  steady    streams quotes and never fails",
        "  flaky     is dropped after five trades: watch the backoff and the resubscribe",
        "  stalling  goes silent after three news items: the heartbeat notices the dead peer",
        "  picky     refuses the first handshake with HTTP 503, then accepts",
        "Ctrl-C closes every connection gracefully.\n",
    ];
    let system = System::new();
    let served = system.block_on(async {
        // Through the stdout thread like everything else, so lines keep their order.
        let say = |line: &str| {
            let lines = lines.clone();
            let line = line.to_owned();
            async move {
                let _ = lines.send(line).await;
            }
        };
        for line in banner {
            say(line).await;
        }
        let herd = Herd::new();
        let rules = Arc::new(Mutex::new(Default::default()));
        Printers::start(
            Format::Pretty,
            Filter::default(),
            Arc::clone(&rules),
            &stdout,
        )
        .subscribe(&herd);
        for (name, server) in [
            ("steady", &servers.steady),
            ("flaky", &servers.flaky),
            ("stalling", &servers.stalling),
            ("picky", &servers.picky),
        ] {
            if let Ok(mut rules) = rules.lock() {
                rules.insert(name.to_owned(), KindRule::default());
            }
            if let Err(error) = herd.add_endpoint(name, spec(server.url(name))) {
                eprintln!("wsherd: {error}");
            }
        }
        let _server = match settings.listen {
            Some(_) => match wsherd_server::serve(
                herd.clone(),
                &settings,
                wsherd_server::ServerOptions::new(),
            ) {
                Ok(server) => {
                    say(&format!("dashboard: {}/  (API under /api)\n", server.url())).await;
                    Some(server)
                }
                Err(error) => {
                    eprintln!("wsherd: {error}");
                    return false;
                }
            },
            None => None,
        };
        let deadline = async {
            match seconds {
                Some(seconds) => tokio::time::sleep(Duration::from_secs(seconds)).await,
                None => std::future::pending().await,
            }
        };
        let stdout_closed = stdout.closed();
        let (interrupt, terminate) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        );
        match (interrupt, terminate) {
            (Ok(mut interrupt), Ok(mut terminate)) => tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
                () = deadline => {}
                () = stdout_closed => {}
            },
            _ => tokio::select! {
                () = deadline => {}
                () = stdout_closed => {}
            },
        }
        say(&format!("\n{}", herd.status_table().trim_end())).await;
        say("\nclosing every connection…").await;
        let report = herd.shutdown("demo over", Duration::from_secs(5)).await;
        match report.timed_out.len() {
            0 => say("every peer answered the Close; bye").await,
            n => {
                say(&format!(
                    "{n} peer(s) did not answer the Close in time; bye"
                ))
                .await
            }
        }
        true
    });
    drop(lines);
    drop(system);
    stdout.finish();
    if served {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
