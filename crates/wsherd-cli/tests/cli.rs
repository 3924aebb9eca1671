//! The `wsherd` binary, driven as a user would: files, stdin, stdout, stderr, signals.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use wsherd_testkit::{FaultProxy, Step, TestServer, TunnelBehaviour, TunnelProtocol, TunnelProxy};

const WAIT: Duration = Duration::from_secs(60);

fn wsherd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsherd"))
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(contents: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "wsherd-cli-{}-{}.toml",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A running `wsherd` whose output lines arrive on channels.
struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    seen: Vec<String>,
}

fn lines(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Running {
    fn start(command: &mut Command) -> Running {
        let (mut running, stdout) = Running::start_unread(command);
        running.read_stdout(stdout);
        running
    }

    /// Starts with stdout a pipe nobody reads (until [`Running::read_stdout`]): it fills.
    fn start_unread(command: &mut Command) -> (Running, ChildStdout) {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        let running = Running {
            stdin: child.stdin.take(),
            child,
            stdout: channel().1,
            stderr,
            seen: Vec::new(),
        };
        (running, stdout)
    }

    fn read_stdout(&mut self, stdout: ChildStdout) {
        self.stdout = lines(stdout);
    }

    /// Waits until one of the process's threads sleeps in a write to a full pipe (stdout is
    /// the only pipe it writes).
    fn until_blocked_writing_stdout(&mut self) {
        let deadline = Instant::now() + WAIT;
        while !blocked_writing_a_pipe(self.child.id()) {
            assert!(
                Instant::now() < deadline,
                "stdout never filled up; stderr: {:#?}",
                self.stderr.try_iter().collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Reads stdout until a line satisfies `pred`; returns it.
    fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    let stderr: Vec<String> = self.stderr.try_iter().collect();
                    panic!(
                        "never saw {what}; stdout: {:#?}; stderr: {stderr:#?}",
                        self.seen
                    );
                }
            }
        }
    }

    /// A line already read that satisfies `pred`, or else the next one that does: for events
    /// whose order between themselves is not given.
    fn json_seen_or_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let seen = self.seen.iter().find_map(|line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|value| pred(value))
        });
        match seen {
            Some(value) => value,
            None => self.json_until(what, pred),
        }
    }

    fn json_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.until(what, |line| {
            serde_json::from_str::<Value>(line).is_ok_and(|v| pred(&v))
        });
        serde_json::from_str(&line).unwrap()
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn stderr_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("stderr never showed the expected line"),
            }
        }
    }

    fn interrupt(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "wsherd did not exit after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether a thread of process `pid` sleeps writing to a full pipe: the kernel names the
/// function it waits in (`pipe_write`, `anon_pipe_write`), or, where that is hidden, the
/// system call it is in is a write to fd 1.
fn blocked_writing_a_pipe(pid: u32) -> bool {
    let write_to_stdout = if cfg!(target_arch = "aarch64") {
        "64 0x1 "
    } else {
        "1 0x1 "
    };
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|w| w.contains("pipe_write"))
            || std::fs::read_to_string(task.path().join("syscall"))
                .is_ok_and(|s| s.starts_with(write_to_stdout))
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn check_prints_resolved_endpoints_without_secrets_and_exit_codes_say_valid_or_not() {
    let good = TempFile::new(
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:9/\"\nheaders = { Authorization = { env = \"WSHERD_CLI_TEST_TOKEN\" } }\n",
    );
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&good.0)
        .env("WSHERD_CLI_TEST_TOKEN", "Bearer hush-42")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("[endpoints.feed]") && stdout.contains("url = \"ws://127.0.0.1:9/\""),
        "{stdout}"
    );
    assert!(stdout.contains("<redacted>"), "{stdout}");
    assert!(!stdout.contains("hush-42"));

    let bad = TempFile::new("[endpoints.feed]\nurl = \"htp://x\"\nulr = 1\n");
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(
        stderr.contains("endpoints.feed.url: \"htp://x\" is not a ws:// or wss:// URL"),
        "{stderr}"
    );
    assert!(
        stderr.contains("endpoints.feed.ulr: unknown key \"ulr\"; did you mean \"url\"?"),
        "{stderr}"
    );

    let output = wsherd().args(["check"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--config <FILE>"), "{stderr}");
}

#[test]
fn check_and_the_shutdown_report_never_print_secrets() {
    const IN_QUERY: &str = "q-cli-s3cr3t";
    const IN_USERINFO: &str = "u-cli-s3cr3t";
    const IN_HEADER: &str = "h-cli-s3cr3t";
    const IN_ON_OPEN: &str = "o-cli-s3cr3t";
    const IN_QUEUED: &str = "m-cli-s3cr3t";
    let shows_a_secret = |text: &str| {
        [IN_QUERY, IN_USERINFO, IN_HEADER, IN_ON_OPEN, IN_QUEUED]
            .into_iter()
            .find(|secret| text.contains(secret))
    };
    // A port nobody listens on: the endpoint stays down and queues what it is sent.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = TempFile::new(&format!(
        "[endpoints.feed]\n\
         url = \"ws://bot:{IN_USERINFO}@127.0.0.1:{port}/ws?listenKey={IN_QUERY}\"\n\
         headers = {{ Authorization = {{ env = \"WSHERD_CLI_SECRET\" }} }}\n\
         on_open = ['{{\"key\":\"{IN_ON_OPEN}\"}}']\n\
         backoff = {{ initial = \"1m\", max = \"1m\" }}\n"
    ));
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&config.0)
        .env("WSHERD_CLI_SECRET", IN_HEADER)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(shows_a_secret(&stdout), None, "{stdout}");
    assert_eq!(shows_a_secret(&stderr), None, "{stderr}");
    assert!(
        stdout.contains(&format!(
            "url = \"ws://***@127.0.0.1:{port}/ws?listenKey=***\""
        )),
        "{stdout}"
    );
    assert!(stdout.contains("on_open = [\"<redacted>\"]"), "{stdout}");

    let bad = TempFile::new(&format!(
        "[endpoints.feed]\nurl = \"htp://bot:{IN_USERINFO}@x/?listenKey={IN_QUERY}\"\n"
    ));
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&bad.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(shows_a_secret(&stderr), None, "{stderr}");
    assert!(
        stderr.contains("\"htp://***@x/?listenKey=***\""),
        "{stderr}"
    );

    // Logs at every level are in what is checked.
    let mut running = Running::start(
        wsherd()
            .args(["run", "--log-level", "trace", "--config"])
            .arg(&config.0)
            .env("WSHERD_CLI_SECRET", IN_HEADER),
    );
    running.send(&format!(r#"{{"endpoint":"feed","text":"{IN_QUEUED}"}}"#));
    // Lines are sent in order: once the second is refused, the first is queued.
    running.send(r#"{"endpoint":"nope","text":"x"}"#);
    let mut stderr = vec![running.stderr_until(|l| l.contains("not sent to \"nope\""))];
    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
    // The process has exited: reading to the end of its pipes misses no line.
    stderr.extend(running.stderr.iter());
    let stderr = stderr.join("\n");
    let stdout: Vec<String> = running
        .seen
        .drain(..)
        .chain(running.stdout.iter())
        .collect();
    let stdout = stdout.join("\n");
    assert!(
        stderr.contains("feed: 1 queued message(s) were not sent"),
        "the report says how many: {stderr}"
    );
    assert_eq!(shows_a_secret(&stderr), None, "{stderr}");
    assert_eq!(shows_a_secret(&stdout), None, "{stdout}");
}

#[actix_rt::test]
async fn run_prints_json_lines_sends_stdin_even_while_down_and_stops_gracefully() {
    let server = TestServer::start(vec![Step::stream(&["tick", "quote"], 4)]).unwrap();
    let port = server.addr().port();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[endpoints.feed]\nurl = \"ws://127.0.0.1:{port}/\"\nbackoff = {{ initial = \"100ms\", max = \"200ms\" }}\n"
    ));
    let mut running = Running::start(
        wsherd()
            .args(["run", "--config"])
            .arg(&config.0)
            .args(["--kind", "tick"]),
    );

    // State events and messages come from different actors: their relative order may vary.
    running.json_until("the second tick", |v| {
        v["event"] == "message" && v["data"]["seq"] == 2
    });
    if !running.seen.iter().any(|l| l.contains("\"live\"")) {
        running.json_until("the live state", |v| {
            v["event"] == "state" && v["state"] == "live"
        });
    }
    let seen: Vec<Value> = running
        .seen
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let live = seen.iter().find(|v| v["state"] == "live").unwrap();
    assert_eq!(live["endpoint"], "feed");
    assert!(live["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
    let message = seen.iter().find(|v| v["event"] == "message").unwrap();
    assert_eq!(message["endpoint"], "feed");
    assert_eq!(message["kind"], "tick");
    assert_eq!(
        message["data"],
        serde_json::json!({"type": "tick", "seq": 0, "data": "x".repeat(16)})
    );
    assert!(
        !running.seen.iter().any(|l| l.contains("\"quote\"")),
        "--kind tick filters quotes out: {:?}",
        running.seen
    );

    // Logs on stderr: one line per state change at info, in the endpoint's span; and the
    // progress summary, as a plain line (stderr is not a terminal here).
    running.stderr_until(|l| {
        l.contains("INFO") && l.contains("wsherd{endpoint=feed}") && l.contains("live")
    });
    running.stderr_until(|l| {
        l.starts_with("wsherd: 1 endpoint settled in") && l.ends_with("1 live, 0 failed")
    });

    running.send(r#"{"endpoint":"feed","data":{"op":"hello"}}"#);
    server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(
        server.connections()[0].received[0].as_text(),
        Some(r#"{"op":"hello"}"#)
    );

    // Down: the line is queued and sent after the reconnect.
    server.stop();
    running.json_until("backoff", |v| {
        v["event"] == "state" && v["state"] == "backoff" && v["delay_ms"].is_u64()
    });
    running.send(r#"{"endpoint":"feed","text":"while down"}"#);
    running.send("this is not json");
    running.stderr_until(|l| l.contains("stdin line 3") && l.contains("skipped"));
    let restarted = TestServer::builder(vec![]).port(port).start().unwrap();
    let received = restarted.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("while down"));
    // Back: the live line says it is a reconnect, which attempt and how long it was down.
    let back = running.json_until("the reconnect", |v| {
        v["event"] == "state" && v["state"] == "live" && v["reconnected"] == true
    });
    assert!(back["attempt"].as_u64().is_some_and(|a| a >= 1), "{back}");
    assert!(back["downtime_ms"].is_u64(), "{back}");

    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
    let close = restarted
        .wait_for(WAIT, |c| c[0].close.clone())
        .await
        .unwrap();
    assert_eq!(close.0, 1000, "a Close reached the peer");
}

#[test]
fn demo_shows_messages_and_a_reconnect_and_exits_cleanly_on_sigint() {
    let mut running = Running::start(wsherd().arg("demo"));
    running.until("the banner", |l| l.starts_with("wsherd demo"));
    running.until("a message", |l| l.contains("quote {"));
    running.until("a reconnect", |l| l.contains("[reconnecting in"));
    running.until("a recovery", |l| {
        l.contains("flaky") && l.contains("[live again after ")
    });
    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
}

#[actix_rt::test]
async fn demo_with_listen_serves_the_dashboard_and_the_api_of_its_herd() {
    let mut running = Running::start(wsherd().args(["demo", "--listen", "127.0.0.1:0"]));
    let line = running.until("the dashboard's address", |l| l.starts_with("dashboard: "));
    let url = line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    let client = awc::Client::default();
    let mut page = client.get(format!("{url}/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let body = page.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("wsherdDashboard"));
    let mut status = client
        .get(format!("{url}/api/status"))
        .send()
        .await
        .unwrap();
    let endpoints: serde_json::Value = status.json().await.unwrap();
    assert_eq!(endpoints.as_array().map(Vec::len), Some(4), "{endpoints}");
    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
}

#[actix_rt::test]
async fn sighup_reloads_the_config_and_keeps_unchanged_endpoints() {
    let server = TestServer::start(vec![]).unwrap();
    let first = format!(
        "[herd]\nworkers = 1\n[endpoints.keep]\nurl = \"{}\"\n",
        server.url("/keep")
    );
    let config = TempFile::new(&first);
    let mut running = Running::start(wsherd().args(["run", "--config"]).arg(&config.0));
    running.json_until("keep live", |v| {
        v["endpoint"] == "keep" && v["state"] == "live"
    });

    std::fs::write(
        &config.0,
        format!(
            "{first}[endpoints.added]\nurl = \"{}\"\n",
            server.url("/added")
        ),
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    running
        .stderr_until(|l| l.contains("reloaded: 1 started, 0 restarted, 0 stopped, 1 unchanged"));
    running.json_until("added live", |v| {
        v["endpoint"] == "added" && v["state"] == "live"
    });
    let paths: Vec<Option<String>> = server
        .connections()
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(
        paths,
        [Some("/keep".to_owned()), Some("/added".to_owned())],
        "keep was not reconnected"
    );

    // A broken file is refused and the running config stays.
    std::fs::write(&config.0, "[endpoints.keep]\nurl = \"htp://x\"\n").unwrap();
    Command::new("kill")
        .args(["-HUP", &running.child.id().to_string()])
        .status()
        .unwrap();
    running.stderr_until(|l| l.contains("reload refused"));
    assert!(running.interrupt().success());
}

#[actix_rt::test]
async fn a_stdout_nobody_reads_pauses_only_the_feeds_it_prints_and_other_endpoints_still_reconnect()
{
    const MESSAGES: u64 = 50_000;
    // The firehose streams once told to, so both endpoints are connected before stdout fills.
    let firehose = TestServer::start(vec![
        Step::WaitForMessages(1),
        Step::Stream {
            kind_field: "type".into(),
            kinds: vec!["tick".into()],
            first_seq: 0,
            count: MESSAGES,
            padding: 64,
        },
    ])
    .unwrap();
    let other = TestServer::start(vec![]).unwrap();
    let proxy = FaultProxy::start(other.addr()).unwrap();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n\
         [endpoints.firehose]\nurl = \"{}\"\n\
         [endpoints.other]\nurl = \"{}\"\nbackoff = {{ initial = \"50ms\", max = \"200ms\" }}\n",
        firehose.url("/"),
        proxy.url("/")
    ));
    let (mut running, stdout) =
        Running::start_unread(wsherd().args(["run", "--config"]).arg(&config.0));
    firehose
        .wait_for(WAIT, |c| (!c.is_empty()).then_some(()))
        .await
        .unwrap();
    other
        .wait_for(WAIT, |c| (!c.is_empty()).then_some(()))
        .await
        .unwrap();

    running.send(r#"{"endpoint":"firehose","text":"go"}"#);
    running.until_blocked_writing_stdout();

    // With stdout full, the other endpoint loses its socket and needs a new handshake (the
    // governor's slot, its state events printed or not).
    proxy.cut();
    other
        .wait_for(WAIT, |c| (c.len() >= 2).then_some(()))
        .await
        .unwrap_or_else(|e| panic!("the other endpoint never reconnected: {e}"));

    // Once stdout is read again everything arrives: a slow stdout slows the feed, it does
    // not drop messages.
    running.read_stdout(stdout);
    running.json_until("the firehose's last message", |v| {
        v["event"] == "message" && v["data"]["seq"] == MESSAGES - 1
    });
    let seqs: Vec<u64> = running
        .seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["event"] == "message")
        .filter_map(|v| v["data"]["seq"].as_u64())
        .collect();
    assert_eq!(seqs, (0..MESSAGES).collect::<Vec<_>>());
    // The other endpoint's state changes are printed too, late but in order.
    let other_live = |seen: &[String]| {
        seen.iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["endpoint"] == "other" && v["state"] == "live")
            .count()
    };
    if other_live(&running.seen) < 2 {
        running.json_until("the other endpoint live again", |v| {
            v["endpoint"] == "other" && v["state"] == "live"
        });
    }
    assert!(other_live(&running.seen) >= 2, "{:#?}", running.seen);
    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
}

#[actix_rt::test]
async fn run_closes_gracefully_when_stdout_is_closed() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1_000_000)]).unwrap();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[endpoints.feed]\nurl = \"{}\"\n",
        server.url("/")
    ));
    let (mut running, stdout) =
        Running::start_unread(wsherd().args(["run", "--config"]).arg(&config.0));
    // `wsherd run | head -n 1`: one line read, then the pipe's read end is gone.
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.contains("\"endpoint\":\"feed\""), "{first}");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "wsherd kept running without a stdout"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close.0, 1000, "a Close reached the peer");
}

#[test]
fn init_writes_a_config_that_check_accepts_and_that_names_every_key() {
    let dir = std::env::temp_dir().join(format!("wsherd-cli-init-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wsherd.toml");
    let _ = std::fs::remove_file(&file);
    let output = wsherd().arg("init").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every key the reader knows is in the template, set or shown commented out.
    let template = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = template
        .lines()
        .map(|line| line.trim_start_matches("# "))
        .collect();
    let present = |key: &str| match key.split_once('.') {
        // `outbound.rate.per_second`: `outbound = {` holding ` rate = ` and ` per_second = `.
        Some((table, leaves)) => lines.iter().any(|line| {
            line.starts_with(&format!("{table} = {{"))
                && leaves
                    .split('.')
                    .all(|leaf| line.contains(&format!(" {leaf} = ")))
        }),
        None => lines
            .iter()
            .any(|line| line.starts_with(&format!("{key} = "))),
    };
    let missing: Vec<String> = wsherd::config::endpoint_keys()
        .into_iter()
        .chain(wsherd::config::herd_keys().iter().map(|k| (*k).to_owned()))
        .chain(wsherd::config::server_keys())
        .filter(|key| !present(key))
        .collect();
    assert!(missing.is_empty(), "init leaves out {missing:?}");
    for section in ["[herd]", "[server]", "[defaults]", "[endpoints."] {
        assert!(template.contains(section), "{section}");
    }

    // It does not overwrite by accident.
    let output = wsherd().arg("init").arg(&file).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--force"));
    let output = wsherd()
        .args(["init", "--force"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let output = wsherd().args(["init", "-"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), template);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn help_version_suggestions_and_completions_are_what_a_rust_cli_gives() {
    let output = wsherd().arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("docs/configuration.md"), "{help}");
    for command in ["run", "check", "status", "demo", "init", "completions"] {
        assert!(help.contains(&format!("  {command} ")), "{help}");
        let output = wsherd().args([command, "--help"]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{command} --help");
    }
    let output = wsherd().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("wsherd {}", env!("CARGO_PKG_VERSION"))
    );
    let output = wsherd()
        .args(["run", "--confg", "x.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a similar argument exists: '--config'"),
        "{stderr}"
    );
    for shell in ["bash", "zsh", "fish"] {
        let output = wsherd().args(["completions", shell]).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{shell}");
        let script = String::from_utf8_lossy(&output.stdout);
        assert!(
            script.contains("wsherd") && script.contains("config"),
            "{shell}: {script}"
        );
    }
    let output = wsherd()
        .args(["check", "--log-level", "[bad"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}

#[actix_rt::test]
async fn json_logs_carry_the_endpoint_span() {
    let server = TestServer::start(vec![Step::Pause(WAIT)]).unwrap();
    let config = TempFile::new(&format!(
        "[endpoints.feed]\nurl = \"{}\"\n",
        server.url("/")
    ));
    let mut running = Running::start(
        wsherd()
            .args(["run", "--log-format", "json", "--config"])
            .arg(&config.0),
    );
    let line = running.stderr_until(|l| l.contains("\"live\"") && l.starts_with('{'));
    let log: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(log["level"], "INFO", "{line}");
    assert_eq!(log["span"]["endpoint"], "feed", "{line}");
    assert_eq!(log["span"]["name"], "wsherd", "{line}");
    assert_eq!(log["fields"]["state"], "live", "{line}");
    let status = running.interrupt();
    assert!(status.success(), "{status:?}");
}

#[actix_rt::test]
async fn run_with_listen_serves_what_status_prints_as_a_table_and_as_json() {
    const TOKEN: &str = "cli-t0ken-s3cret";
    let feed = TestServer::start(vec![]).unwrap();
    let config = TempFile::new(&format!(
        "[server]\ntoken = {{ env = \"WSHERD_CLI_SERVER_TOKEN\" }}\n\n[endpoints.feed]\nurl = \"{}\"\nrequired = true\n",
        feed.url("/feed")
    ));
    let mut running = Running::start(
        wsherd()
            .args(["run", "--config"])
            .arg(&config.0)
            .args(["--listen", "127.0.0.1:0"])
            .env("WSHERD_CLI_SERVER_TOKEN", TOKEN),
    );
    let serving = running.stderr_until(|line| line.contains("wsherd: serving http://"));
    assert!(
        serving.contains("need the token") && !serving.contains(TOKEN),
        "{serving}"
    );
    let url = serving
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .to_owned();
    running.json_until("feed live", |v| {
        v["event"] == "state" && v["state"] == "live"
    });

    let status = |args: &[&str], token: Option<&str>| {
        let mut command = wsherd();
        command.args(["status", "--url", &url]).args(args);
        command.env_remove("WSHERD_TOKEN");
        if let Some(token) = token {
            command.env("WSHERD_TOKEN", token);
        }
        command.output().unwrap()
    };
    let table = status(&[], Some(TOKEN));
    let stdout = String::from_utf8_lossy(&table.stdout);
    assert_eq!(table.status.code(), Some(0), "{table:?}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("ENDPOINT  STATE") && lines[0].ends_with("LAST ERROR"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("feed      live"), "{stdout}");
    let json = status(&["--json", "--token", TOKEN], None);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let array: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(array[0]["name"], "feed");
    assert_eq!(array[0]["state"], "live");
    for (token, says) in [
        (Some("wrong"), "refused the token"),
        (None, "wants a token: pass --token or set WSHERD_TOKEN"),
    ] {
        let refused = status(&[], token);
        assert_eq!(refused.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{stderr}");
    }
    // The probes need no token; the required endpoint is live, so the herd is ready.
    let mut ready = awc::Client::default()
        .get(format!("{url}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let _ = ready.body().await;
    assert!(running.interrupt().success());
    let rest: Vec<String> = running.stderr.try_iter().collect();
    assert!(!rest.iter().any(|line| line.contains(TOKEN)), "{rest:#?}");
}

#[test]
fn run_refuses_to_listen_beyond_loopback_without_a_token_and_status_says_when_nothing_answers() {
    let config = TempFile::new("[endpoints.feed]\nurl = \"ws://127.0.0.1:9/\"\n");
    let output = wsherd()
        .args(["run", "--config"])
        .arg(&config.0)
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--listen: 0.0.0.0:0 is not a loopback address")
            && stderr.contains("server.token"),
        "{stderr}"
    );
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = wsherd()
        .args(["status", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach http://127.0.0.1:"),
        "{stderr}"
    );
    let output = wsherd()
        .args(["status", "--url", "ftp://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[actix_rt::test]
async fn run_with_endpoint_wakes_that_on_demand_endpoint_and_a_plain_run_leaves_it_idle() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 2)]).unwrap();
    let port = server.addr().port();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[endpoints.lazy]\nurl = \"ws://127.0.0.1:{port}/lazy\"\nconnect = \"on_demand\"\n[endpoints.other]\nurl = \"ws://127.0.0.1:{port}/other\"\nconnect = \"on_demand\"\n"
    ));
    // Without a filter `run` is a tap on everything: both stay idle (in either order).
    let mut plain = Running::start(wsherd().args(["run", "--config"]).arg(&config.0));
    plain.json_seen_or_until("lazy idle", |v| {
        v["event"] == "state" && v["endpoint"] == "lazy" && v["state"] == "idle"
    });
    plain.json_seen_or_until("other idle", |v| {
        v["event"] == "state" && v["endpoint"] == "other" && v["state"] == "idle"
    });
    assert!(plain.interrupt().success());
    assert!(server.connections().is_empty(), "a tap woke an endpoint");

    let mut named = Running::start(
        wsherd()
            .args(["run", "--config"])
            .arg(&config.0)
            .args(["--endpoint", "lazy"]),
    );
    named.json_until("a tick from lazy", |v| {
        v["event"] == "message" && v["endpoint"] == "lazy" && v["data"]["seq"] == 1
    });
    assert!(named.interrupt().success());
    let paths: Vec<Option<String>> = server
        .connections()
        .iter()
        .map(|c| c.path.clone())
        .collect();
    assert_eq!(
        paths,
        [Some("/lazy".to_owned())],
        "only the named one connected"
    );
}

#[actix_rt::test]
async fn a_request_on_stdin_prints_its_reply_and_one_that_gets_none_prints_why() {
    let answering = TestServer::start(vec![Step::ReplyById {
        field: "id".into(),
        reply: r#"{"type":"ack","id":{id},"ok":true}"#.into(),
    }])
    .unwrap();
    let silent = TestServer::start(vec![]).unwrap();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[endpoints.feed]\nurl = \"{}\"\n[endpoints.quiet]\nurl = \"{}\"\n",
        answering.url("/"),
        silent.url("/")
    ));
    let mut running = Running::start(wsherd().args(["run", "--config"]).arg(&config.0));
    // Two live lines, in whichever order the endpoints get there.
    for _ in 0..2 {
        running.json_until("live", |v| v["event"] == "state" && v["state"] == "live");
    }
    running.send(r#"{"endpoint":"feed","request":{"op":"subscribe"}}"#);
    let reply = running.json_until("the reply", |v| v["event"] == "reply");
    assert_eq!(reply["endpoint"], "feed");
    assert_eq!(reply["id"], 1);
    assert_eq!(
        reply["data"],
        serde_json::json!({"type": "ack", "id": 1, "ok": true})
    );
    running.send(r#"{"endpoint":"quiet","request":{"id":"q1","op":"x"},"timeout_ms":200}"#);
    let failed = running.json_until("the failure", |v| v["event"] == "request_failed");
    assert_eq!(failed["endpoint"], "quiet");
    assert_eq!(failed["id"], "q1");
    assert_eq!(failed["error"], "timeout");
    assert_eq!(
        silent.connections()[0].received[0].as_text(),
        Some(r#"{"id":"q1","op":"x"}"#)
    );
    assert!(running.interrupt().success());
}

#[actix_rt::test]
async fn run_prints_a_gap_line_when_a_sequence_skips() {
    let server = TestServer::start(vec![
        Step::Text(r#"{"type":"trade","s":"BTC","seq":1}"#.into()),
        Step::Text(r#"{"type":"trade","s":"BTC","seq":4}"#.into()),
    ])
    .unwrap();
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[endpoints.feed]\nurl = \"{}\"\nsequence = {{ field = \"seq\", scope = \"s\" }}\n",
        server.url("/")
    ));
    let mut running = Running::start(wsherd().args(["run", "--config"]).arg(&config.0));
    let gap = running.json_until("the gap", |v| v["event"] == "gap");
    assert_eq!(gap["endpoint"], "feed");
    assert_eq!(gap["what"], "gap");
    assert_eq!(gap["kind"], "trade");
    assert_eq!(gap["scope"], "BTC");
    assert_eq!(
        (gap["expected"].as_u64(), gap["got"].as_u64()),
        (Some(2), Some(4))
    );
    assert!(running.interrupt().success());
}

#[actix_rt::test]
async fn proxy_env_follows_http_proxy_and_no_proxy_and_check_hides_the_credentials() {
    const PASSWORD: &str = "env-pr0xy-s3cret";
    let server = TestServer::start(vec![Step::stream(&["tick"], 2)]).unwrap();
    let port = server.addr().port();
    let proxy = TunnelProxy::start(
        TunnelProtocol::HttpConnect,
        Some(("bob", PASSWORD)),
        TunnelBehaviour::Tunnel,
    )
    .unwrap();
    // `proxied` goes through HTTP_PROXY; `bypassed` is named by NO_PROXY by its host.
    let config = TempFile::new(&format!(
        "[herd]\nworkers = 1\n[defaults]\nproxy = \"env\"\n\
         [endpoints.proxied]\nurl = \"ws://127.0.0.1:{port}/proxied\"\n\
         [endpoints.bypassed]\nurl = \"ws://localhost:{port}/bypassed\"\n"
    ));
    let proxy_url = format!("http://bob:{PASSWORD}@{}", proxy.addr());
    let mut run = Running::start(
        wsherd()
            .args(["run", "--config"])
            .arg(&config.0)
            .env("HTTP_PROXY", &proxy_url)
            .env("NO_PROXY", "localhost")
            .env_remove("http_proxy")
            .env_remove("no_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy"),
    );
    // Lines of the two come in any order: note each one's last tick as it passes.
    let done = std::cell::RefCell::new(std::collections::BTreeSet::new());
    run.json_until("the last tick of both", |v| {
        if v["event"] == "message" && v["data"]["seq"] == 1 {
            done.borrow_mut().insert(v["endpoint"].to_string());
        }
        done.borrow().len() == 2
    });
    assert!(run.interrupt().success());
    let targets: Vec<String> = proxy.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [format!("127.0.0.1:{port}")],
        "only `proxied` used it"
    );

    let inline = TempFile::new(&format!(
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:{port}/\"\nproxy = \"{proxy_url}\"\n"
    ));
    let output = wsherd()
        .args(["check", "--config"])
        .arg(&inline.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");
    assert!(
        stdout.contains(&format!("proxy = \"http://***@{}\"", proxy.addr())),
        "{stdout}"
    );
}

#[actix_rt::test]
async fn run_serves_inbound_sessions_prints_their_messages_and_sends_them_stdin_lines() {
    use futures_util::{SinkExt, StreamExt};
    let config = TempFile::new(
        "[inbound.devices]\npath = \"/ws/devices/{id}\"\nkind = \"type\"\n\
         auth = { token = { env = \"WSHERD_CLI_DEVICE_TOKEN\" } }\n",
    );
    let mut running = Running::start(
        wsherd()
            .args(["run", "--config"])
            .arg(&config.0)
            .args(["--listen", "127.0.0.1:0"])
            .env("WSHERD_CLI_DEVICE_TOKEN", "dev1ce-s3cret"),
    );
    let serving = running.stderr_until(|line| line.contains("wsherd: serving http://"));
    let url = serving
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap()
        .trim_end_matches([',', ';', ':'])
        .to_owned();
    let (_, mut device) = awc::Client::default()
        .ws(format!("{url}/ws/devices/42?token=dev1ce-s3cret"))
        .connect()
        .await
        .unwrap();
    running.json_until("the session live", |v| {
        v["event"] == "state" && v["endpoint"] == "devices:42" && v["state"] == "live"
    });
    device
        .send(awc::ws::Message::Text(
            r#"{"type":"reading","celsius":20.5}"#.into(),
        ))
        .await
        .unwrap();
    let message = running.json_until("the reading", |v| v["event"] == "message");
    assert_eq!(message["endpoint"], "devices:42");
    assert_eq!(message["kind"], "reading");
    assert_eq!(message["data"]["celsius"], 20.5);
    running.send(r#"{"endpoint":"devices:42","data":{"cmd":"reboot"}}"#);
    let deadline = Instant::now() + WAIT;
    let command = loop {
        assert!(Instant::now() < deadline, "no command reached the device");
        match device.next().await {
            Some(Ok(awc::ws::Frame::Text(text))) => break text,
            Some(Ok(_)) => {}
            other => panic!("the session ended: {other:?}"),
        }
    };
    assert_eq!(&command[..], br#"{"cmd":"reboot"}"#);
    assert!(running.interrupt().success());
    let rest: Vec<String> = running.stderr.try_iter().collect();
    assert!(
        !running
            .seen
            .iter()
            .chain(&rest)
            .any(|l| l.contains("dev1ce-s3cret")),
        "the token was printed"
    );
}

/// `[cluster]` with six endpoints of `server`, for member `member`.
fn cluster_config(nats: &wsherd_testkit::NatsServer, server: &TestServer, member: &str) -> String {
    let mut text = format!(
        "[herd]\nworkers = 1\n[cluster]\nnats = \"{}\"\nmember = \"{member}\"\nlease = \"2s\"\n",
        nats.url()
    );
    for i in 0..6 {
        text.push_str(&format!(
            "[endpoints.e{i}]\nurl = \"{}\"\non_open = ['{{\"type\":\"hello\",\"n\":{i}}}']\n",
            server.url(&format!("/e{i}"))
        ));
    }
    text
}

/// Open connections by path, and whether any path is open twice.
fn open_paths(server: &TestServer) -> (std::collections::BTreeMap<String, usize>, bool) {
    let mut open = std::collections::BTreeMap::new();
    for c in server
        .connections()
        .iter()
        .filter(|c| !c.ended && c.status == 101)
    {
        *open.entry(c.path.clone().unwrap_or_default()).or_insert(0) += 1;
    }
    let twice = open.values().any(|n| *n > 1);
    (open, twice)
}

#[actix_rt::test]
async fn two_cluster_members_print_every_endpoints_messages_and_state_changes_once_and_one_takes_over_when_the_other_is_killed()
 {
    let nats = wsherd_testkit::NatsServer::start().unwrap();
    // Every connection echoes what it is sent: the on-open hello, then one more line, after
    // which the server closes it.
    let server = TestServer::builder_with(|_| {
        wsherd_testkit::Behaviour::Accept(vec![
            Step::Echo(true),
            Step::WaitForMessages(2),
            Step::close(1001, "bye"),
        ])
    })
    .start()
    .unwrap();
    let a_config = TempFile::new(&cluster_config(&nats, &server, "a"));
    let b_config = TempFile::new(&cluster_config(&nats, &server, "b"));
    let mut a = Running::start(wsherd().args(["run", "--config"]).arg(&a_config.0));
    let b = Running::start(wsherd().args(["run", "--config"]).arg(&b_config.0));
    a.stderr_until(|l| l.contains("member a of the cluster"));

    // a prints the hello of all six endpoints, its own and b's.
    let mut hellos = std::collections::BTreeMap::new();
    while hellos.len() < 6 {
        let line = a.json_until("a hello", |v| {
            v["event"] == "message" && v["kind"] == "hello"
        });
        *hellos
            .entry(line["endpoint"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    assert!(hellos.values().all(|n| *n == 1), "{hellos:?}");

    // Each endpoint's owner writes a line (b's by request through NATS); the server closes
    // every one, and each comes back. a prints every return once: its own endpoints' from its
    // herd, b's from NATS, naming b.
    for i in 0..6 {
        a.send(&format!(r#"{{"endpoint":"e{i}","text":"bye"}}"#));
    }
    let mut back: std::collections::BTreeMap<String, Vec<Option<String>>> = Default::default();
    while back.len() < 6 {
        let line = a.json_until("a live-again line", |v| {
            v["event"] == "state" && v["state"] == "live" && v["reconnected"] == true
        });
        back.entry(line["endpoint"].as_str().unwrap().to_owned())
            .or_default()
            .push(line["member"].as_str().map(str::to_owned));
    }
    assert!(back.values().all(|m| m.len() == 1), "{back:?}");
    let members: std::collections::BTreeSet<Option<String>> =
        back.values().map(|m| m[0].clone()).collect();
    assert_eq!(
        members,
        [None, Some("b".to_owned())].into_iter().collect(),
        "a's own lines and b's, through NATS: {back:?}"
    );
    let deadline = Instant::now() + WAIT;
    loop {
        let (open, twice) = open_paths(&server);
        assert!(!twice, "{open:?}");
        if open.len() == 6 {
            break;
        }
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }

    // SIGKILL b: a takes its endpoints within the lease and two seconds.
    let status = Command::new("kill")
        .args(["-KILL", &b.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let killed = Instant::now();
    // The kernel closes b's sockets at once; wait until all six are open again.
    loop {
        let (open, twice) = open_paths(&server);
        assert!(!twice, "{open:?}");
        if open.len() == 6 && killed.elapsed() > Duration::from_millis(50) {
            let ended = server.connections().iter().filter(|c| c.ended).count();
            if ended > 0 {
                break;
            }
        }
        assert!(Instant::now() < killed + WAIT, "no takeover: {open:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // How fast is the bench's to measure (`wsherd-bench cluster`), not a test's to assert.
    eprintln!("takeover after SIGKILL: {:?}", killed.elapsed());
    drop(b);
}
