//! `cluster`: three members of one cluster on this machine (this process and two children),
//! 3,000 endpoints on one feed server, a real nats-server between them.
//!
//! Two figures, in one run:
//! - **the hop**: messages per second delivered, typed, to one subscriber in this process, for
//!   bursts on the endpoints this process runs (local) against the same bursts on endpoints a
//!   child runs (remote: read there, published to NATS, decoded here); rounds interleaved, the
//!   median of three each, every round's count and checksum checked;
//! - **takeover**: the time from SIGKILL of a child member until the feed server has every
//!   endpoint connected again, the median of three kills (a fresh child joins after each and
//!   gets its share by hand-over before the next).
//!
//! The feed server (`serve-cluster-feed`, a child) holds every connection and writes a burst
//! of trades on the paths it is told on its stdin, so the local and the remote rounds start
//! the same way. Needs `nats-server` (`scripts/test` installs it).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wsherd::Delivery;
use wsherd::config::HerdConfig;

use crate::measure::median;
use crate::throughput::Trade;

/// How the run's error begins when nats-server is not installed.
pub(crate) const NO_NATS: &str = "nats-server:";

/// Endpoints of the cluster.
const ENDPOINTS: usize = 3_000;
/// Trades written on each endpoint of a round's set.
const BURST: u64 = 50;
/// Rounds of each kind (local, remote), interleaved.
const ROUNDS: usize = 3;
/// SIGKILLs measured.
const KILLS: usize = 3;
/// The members' lease: takeover is expected within it and two seconds.
const LEASE: Duration = Duration::from_secs(2);
/// How long the spread, a round or a takeover may take before the run gives up.
const PATIENCE: Duration = Duration::from_secs(120);
/// A round ends early when nothing more arrived for this long (NATS dropped some).
const STALLED: Duration = Duration::from_secs(5);

/// `serve-cluster-feed`: an async server for the cluster's endpoints. It prints its port,
/// then reads commands on stdin: `burst K PATH…` writes trades 0..K on each path's connection,
/// `count` prints `OPEN ACCEPTED`; end of stdin ends it.
pub(crate) fn serve_feed(_: &[String]) -> ExitCode {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    let feed = Arc::new(Feed::default());
    let commands = Arc::clone(&feed);
    let handle = runtime.handle().clone();
    let Ok(listener) = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")) else {
        return ExitCode::FAILURE;
    };
    let Ok(addr) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    println!("{}", addr.port());
    let _ = std::io::stdout().flush();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            commands.command(&line, &handle);
        }
        std::process::exit(0);
    });
    runtime.block_on(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(Arc::clone(&feed).connection(stream));
        }
    })
}

/// Where a connection takes its bursts, with the connection's number (a path connected again
/// replaces the entry, and the old connection's end must not remove the new one).
type Bursts = (u64, mpsc::Sender<Arc<Vec<u8>>>);

/// The feed server's connections, by path.
#[derive(Default)]
struct Feed {
    by_path: Mutex<HashMap<String, Bursts>>,
    open: AtomicU64,
    accepted: AtomicU64,
    bursts: Mutex<HashMap<u64, Arc<Vec<u8>>>>,
}

impl Feed {
    fn command(&self, line: &str, handle: &tokio::runtime::Handle) {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("count") => {
                println!(
                    "{} {}",
                    self.open.load(Ordering::SeqCst),
                    self.accepted.load(Ordering::SeqCst)
                );
                let _ = std::io::stdout().flush();
            }
            Some("burst") => {
                let count: u64 = words.next().and_then(|k| k.parse().ok()).unwrap_or(0);
                let frames = self.burst(count);
                let targets: Vec<_> = {
                    let by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
                    words
                        .filter_map(|path| by_path.get(path).map(|(_, tx)| tx.clone()))
                        .collect()
                };
                handle.spawn(async move {
                    for target in targets {
                        let _ = target.send(Arc::clone(&frames)).await;
                    }
                });
            }
            _ => {}
        }
    }

    /// Trades `0..count` as server frames, made once per count.
    fn burst(&self, count: u64) -> Arc<Vec<u8>> {
        let mut bursts = self.bursts.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(bursts.entry(count).or_insert_with(|| {
            let mut out = Vec::new();
            for seq in 0..count {
                crate::server::frame(crate::server::message(seq).as_bytes(), &mut out);
            }
            Arc::new(out)
        }))
    }

    async fn connection(self: Arc<Self>, mut stream: tokio::net::TcpStream) {
        let _ = stream.set_nodelay(true);
        let Some(path) = handshake(&mut stream).await else {
            return;
        };
        let id = self.accepted.fetch_add(1, Ordering::SeqCst);
        self.open.fetch_add(1, Ordering::SeqCst);
        let (tx, mut bursts) = mpsc::channel::<Arc<Vec<u8>>>(4);
        self.by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone(), (id, tx));
        let (mut reader, mut writer) = stream.into_split();
        let (control_tx, mut control) = mpsc::channel::<Vec<u8>>(4);
        let read = async move {
            // Client frames are masked; Ping is answered, Close ends it, the rest is ignored.
            let mut header = [0u8; 2];
            loop {
                if reader.read_exact(&mut header).await.is_err() {
                    return;
                }
                let opcode = header[0] & 0x0F;
                let len = match header[1] & 0x7F {
                    126 => u64::from(reader.read_u16().await.unwrap_or(0)),
                    127 => reader.read_u64().await.unwrap_or(0),
                    n => u64::from(n),
                };
                let mut mask = [0u8; 4];
                if len > 1 << 20 || reader.read_exact(&mut mask).await.is_err() {
                    return;
                }
                let mut payload = vec![0u8; len as usize];
                if reader.read_exact(&mut payload).await.is_err() {
                    return;
                }
                for (i, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[i % 4];
                }
                match opcode {
                    0x9 => {
                        let _ = control_tx
                            .send(wsherd_testkit::frame_with(0x8A, None, &payload))
                            .await;
                    }
                    0x8 => {
                        let _ = control_tx.send(vec![0x88, 0x00]).await;
                        return;
                    }
                    _ => {}
                }
            }
        };
        let write = async move {
            loop {
                tokio::select! {
                    frames = bursts.recv() => match frames {
                        Some(frames) => if writer.write_all(&frames).await.is_err() { return },
                        None => return,
                    },
                    frame = control.recv() => match frame {
                        Some(frame) => if writer.write_all(&frame).await.is_err() { return },
                        None => return,
                    },
                }
            }
        };
        // The connection ends when the client closes or goes.
        tokio::select! {
            () = read => {}
            () = write => {}
        }
        self.open.fetch_sub(1, Ordering::SeqCst);
        let mut by_path = self.by_path.lock().unwrap_or_else(PoisonError::into_inner);
        if by_path.get(&path).is_some_and(|(held, _)| *held == id) {
            by_path.remove(&path);
        }
    }
}

/// Answers the upgrade; the request's path.
async fn handshake(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.lines().next()?.split_whitespace().nth(1)?.to_owned();
    stream
        .write_all(&wsherd_testkit::accept_response(&head))
        .await
        .ok()?;
    Some(path)
}

/// `cluster-member CONFIG MEMBER`: joins the cluster of CONFIG as MEMBER, prints `joined`,
/// and runs until its stdin closes (or it is killed, which is the point).
pub(crate) fn member(args: &[String]) -> ExitCode {
    let (Some(path), Some(name)) = (args.first(), args.get(1)) else {
        eprintln!("usage: cluster-member CONFIG MEMBER");
        return ExitCode::from(2);
    };
    let mut config = match HerdConfig::from_file(path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("cluster-member: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(cluster) = config.cluster.as_mut() {
        cluster.member = Some(name.clone());
    }
    std::thread::spawn(|| {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        std::process::exit(0);
    });
    actix::System::new().block_on(async move {
        match wsherd_cluster::Cluster::join(config).await {
            Ok(cluster) => {
                println!("joined");
                let _ = std::io::stdout().flush();
                // Held until the process ends (its stdin closes, or it is killed).
                let _member = cluster;
                std::future::pending::<ExitCode>().await
            }
            Err(error) => {
                eprintln!("cluster-member: {error}");
                ExitCode::FAILURE
            }
        }
    })
}

/// A child process of this executable, killed on drop.
struct Process {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Process {
    fn start(args: &[&str]) -> Result<Process, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", args[0]))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        Ok(Process {
            child,
            stdin,
            stdout,
        })
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.stdout.read_line(&mut line) {
            Ok(0) => Err("the child ended".to_owned()),
            Ok(_) => Ok(line.trim().to_owned()),
            Err(error) => Err(error.to_string()),
        }
    }

    fn say(&mut self, line: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("no stdin")?;
        stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("the child stopped listening: {e}"))
    }

    /// SIGKILL, and the time it was sent.
    fn kill(&mut self) -> Instant {
        let at = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The feed server child.
struct FeedServer(Process);

impl FeedServer {
    fn start() -> Result<(FeedServer, u16), String> {
        let mut child = Process::start(&["serve-cluster-feed"])?;
        let port = child
            .line()?
            .parse()
            .map_err(|_| "the feed server printed no port".to_owned())?;
        Ok((FeedServer(child), port))
    }

    /// (open connections, connections accepted so far).
    fn count(&mut self) -> Result<(u64, u64), String> {
        self.0.say("count")?;
        let line = self.0.line()?;
        let mut words = line.split_whitespace().map(str::parse::<u64>);
        match (words.next(), words.next()) {
            (Some(Ok(open)), Some(Ok(accepted))) => Ok((open, accepted)),
            _ => Err(format!("the feed server said {line:?}")),
        }
    }

    fn burst(&mut self, paths: &[String]) -> Result<(), String> {
        self.0.say(&format!("burst {BURST} {}", paths.join(" ")))
    }
}

/// The config every member loads (each sets its own member name).
fn config_text(nats: &str, port: u16) -> String {
    let mut text = format!(
        "[cluster]\nnats = \"{nats}\"\nmember = \"a\"\nlease = \"{}ms\"\n",
        LEASE.as_millis()
    );
    for i in 0..ENDPOINTS {
        text.push_str(&format!(
            "\n[endpoints.e{i:04}]\nurl = \"ws://127.0.0.1:{port}/e{i:04}\"\nkind = \"type\"\n"
        ));
    }
    text
}

/// What this process's subscriber took: trades and the sum of their digests.
#[derive(Default)]
struct Taken {
    count: AtomicU64,
    checksum: AtomicU64,
}

/// The digest sum of one burst (trades 0..BURST), as every client decodes them.
fn burst_checksum() -> Result<u64, String> {
    let mut sum = 0u64;
    for seq in 0..BURST {
        let trade: Trade = serde_json::from_str(&crate::server::message(seq))
            .map_err(|e| format!("the bench's own trade does not decode: {e}"))?;
        sum = sum.wrapping_add(trade.digest());
    }
    Ok(sum)
}

/// Polls `check` every 20 ms until it answers, for at most [`PATIENCE`].
async fn until<T>(
    what: &str,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(answer) = check()? {
            return Ok(answer);
        }
        if Instant::now() > deadline {
            return Err(format!("{what}: not within {PATIENCE:?}"));
        }
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The endpoints each member runs, as this member sees the leases.
fn owners(cluster: &wsherd_cluster::Cluster) -> HashMap<String, Vec<String>> {
    let mut by_member: HashMap<String, Vec<String>> = HashMap::new();
    for seen in cluster.ownership() {
        if let Some(owner) = seen.owner {
            by_member
                .entry(owner)
                .or_default()
                .push(format!("/{}", seen.endpoint));
        }
    }
    by_member
}

/// Waits until every endpoint is connected once and each of `members` holds its share.
async fn settled(
    feed: &mut FeedServer,
    cluster: &wsherd_cluster::Cluster,
    members: &BTreeSet<String>,
) -> Result<(), String> {
    let share = ENDPOINTS.div_ceil(members.len());
    until("every endpoint connected and spread", || {
        let (open, _) = feed.count()?;
        let by_member = owners(cluster);
        let spread = members
            .iter()
            .all(|m| by_member.get(m).is_some_and(|e| e.len() + 1 >= share));
        Ok((open == ENDPOINTS as u64 && spread).then_some(()))
    })
    .await
}

/// One round: a burst on each of `paths`, and the rate this process's subscriber took it at.
async fn round(
    feed: &mut FeedServer,
    taken: &Taken,
    paths: &[String],
    expected_sum: u64,
) -> Result<Value, String> {
    let expected = paths.len() as u64 * BURST;
    let (count0, sum0) = (
        taken.count.load(Ordering::SeqCst),
        taken.checksum.load(Ordering::SeqCst),
    );
    let start = Instant::now();
    feed.burst(paths)?;
    let (mut last, mut last_at) = (0, Instant::now());
    let elapsed = loop {
        let got = taken.count.load(Ordering::SeqCst) - count0;
        if got >= expected {
            break start.elapsed();
        }
        if got != last {
            (last, last_at) = (got, Instant::now());
        } else if last_at.elapsed() > STALLED {
            break last_at.duration_since(start);
        }
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    };
    // Let a late duplicate show before the count is read.
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    let got = taken.count.load(Ordering::SeqCst) - count0;
    let sum = taken.checksum.load(Ordering::SeqCst).wrapping_sub(sum0);
    let whole = got == expected && sum == expected_sum.wrapping_mul(paths.len() as u64);
    Ok(json!({
        "messages": got,
        "expected": expected,
        "checksum_ok": whole,
        "msgs_per_s": got as f64 / elapsed.as_secs_f64().max(1e-9),
    }))
}

/// Runs the scenario.
pub(crate) fn run() -> Result<Value, String> {
    // Inside `all` the spread has taken ten times as long as alone: the files this process
    // holds when it starts (earlier scenarios' sockets, against the cap of 20,000) are one
    // suspect, so they are reported.
    let open_files_at_start = crate::open_files();
    let nats = wsherd_testkit::NatsServer::start()
        .map_err(|e| format!("{NO_NATS} {e} (scripts/test installs it)"))?;
    let (mut feed, port) = FeedServer::start()?;
    let path =
        std::env::temp_dir().join(format!("wsherd-bench-cluster-{}.toml", std::process::id()));
    std::fs::write(&path, config_text(&nats.url(), port)).map_err(|e| e.to_string())?;
    let config = HerdConfig::from_file(&path).map_err(|e| e.to_string())?;
    let path_text = path.to_string_lossy().into_owned();
    let result = actix::System::new().block_on(async move {
        let mut children = Vec::new();
        let mut next = 0;
        let mut spawn = |children: &mut Vec<(String, Process)>| -> Result<(), String> {
            let name = format!("m{next}");
            next += 1;
            let mut child = Process::start(&["cluster-member", &path_text, &name])?;
            match child.line()?.as_str() {
                "joined" => {}
                other => return Err(format!("member {name} said {other:?}")),
            }
            children.push((name, child));
            Ok(())
        };
        spawn(&mut children)?;
        spawn(&mut children)?;
        let cluster = wsherd_cluster::Cluster::join(config)
            .await
            .map_err(|e| e.to_string())?;
        let taken = Arc::new(Taken::default());
        let into = Arc::clone(&taken);
        cluster
            .herd()
            .on(move |trade: Delivery<Trade>| {
                into.checksum
                    .fetch_add(trade.message.digest(), Ordering::SeqCst);
                into.count.fetch_add(1, Ordering::SeqCst);
            })
            .map_err(|e| e.to_string())?;
        let members = |children: &Vec<(String, Process)>| -> BTreeSet<String> {
            std::iter::once("a".to_owned())
                .chain(children.iter().map(|(name, _)| name.clone()))
                .collect()
        };
        let spread_start = Instant::now();
        settled(&mut feed, &cluster, &members(&children)).await?;
        let spread_s = spread_start.elapsed().as_secs_f64();

        // The hop: equal sets of local and remote endpoints, the same bursts.
        let by_member = owners(&cluster);
        let mut local = by_member.get("a").cloned().unwrap_or_default();
        let mut remote = by_member.get(&children[0].0).cloned().unwrap_or_default();
        let n = local.len().min(remote.len());
        local.truncate(n);
        remote.truncate(n);
        let expected_sum = burst_checksum()?;
        let (mut local_rounds, mut remote_rounds) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            local_rounds.push(round(&mut feed, &taken, &local, expected_sum).await?);
            remote_rounds.push(round(&mut feed, &taken, &remote, expected_sum).await?);
        }
        let rate = |rounds: &[Value]| {
            median(
                rounds
                    .iter()
                    .filter_map(|r| r["msgs_per_s"].as_f64())
                    .collect(),
            )
        };
        let whole = |rounds: &[Value]| rounds.iter().all(|r| r["checksum_ok"] == true);
        let (local_rate, remote_rate) = (rate(&local_rounds), rate(&remote_rounds));
        let slow_consumer = cluster.counters().slow_consumer.load(Ordering::Relaxed);
        // Each member's own counts: where a message that did not arrive was dropped.
        let counters: serde_json::Map<String, Value> = cluster
            .cluster_status(Duration::from_secs(2))
            .await
            .into_iter()
            .filter_map(|answer| {
                Some((
                    answer["member"].as_str()?.to_owned(),
                    answer["counters"].clone(),
                ))
            })
            .collect();

        // Takeover: SIGKILL a child, time until the feed has every endpoint again.
        let mut takeovers = Vec::new();
        for _ in 0..KILLS {
            let (_, accepted_before) = feed.count()?;
            let (name, mut victim) = children.remove(0);
            let held = owners(&cluster).get(&name).map_or(0, Vec::len) as u64;
            let killed_at = victim.kill();
            drop(victim);
            until("the killed member's endpoints taken over", || {
                let (open, accepted) = feed.count()?;
                Ok((open == ENDPOINTS as u64 && accepted >= accepted_before + held).then_some(()))
            })
            .await?;
            takeovers.push(killed_at.elapsed().as_secs_f64());
            spawn(&mut children)?;
            settled(&mut feed, &cluster, &members(&children)).await?;
        }
        let takeover = median(takeovers.clone());
        cluster.leave().await;
        Ok::<Value, String>(json!({
            "endpoints": ENDPOINTS,
            "members": 3,
            "lease_s": LEASE.as_secs_f64(),
            "spread_s": spread_s,
            "open_files_at_start": open_files_at_start,
            "hop": {
                "endpoints_per_round": n,
                "burst": BURST,
                "local_msgs_per_s": local_rate,
                "remote_msgs_per_s": remote_rate,
                "ratio_remote_over_local": remote_rate / local_rate.max(1e-9),
                "every_round_whole": whole(&local_rounds) && whole(&remote_rounds),
                "slow_consumer_events": slow_consumer,
                "member_counters": counters,
                "local_rounds": local_rounds,
                "remote_rounds": remote_rounds,
            },
            "takeover_s": takeover,
            "takeover_over_lease": takeover / LEASE.as_secs_f64(),
            "takeovers_s": takeovers,
        }))
    });
    let _ = std::fs::remove_file(&path);
    let figures = result?;
    print(&figures);
    Ok(figures)
}

fn print(figures: &Value) {
    let hop = &figures["hop"];
    println!(
        "cluster: {} endpoints over 3 members (this process + 2 children), lease {} s, spread in {:.1} s",
        figures["endpoints"],
        figures["lease_s"],
        figures["spread_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "  this process held {} open files when the scenario started",
        figures["open_files_at_start"]
    );
    println!(
        "  typed deliveries to one subscriber here, bursts of {} on {} endpoints, median of {ROUNDS}:",
        hop["burst"], hop["endpoints_per_round"]
    );
    println!(
        "    local endpoints   {:>10.0} msgs/s",
        hop["local_msgs_per_s"].as_f64().unwrap_or(0.0)
    );
    println!(
        "    remote endpoints  {:>10.0} msgs/s   ({:.2}x local; through NATS){}",
        hop["remote_msgs_per_s"].as_f64().unwrap_or(0.0),
        hop["ratio_remote_over_local"].as_f64().unwrap_or(0.0),
        if hop["every_round_whole"] == true {
            String::new()
        } else {
            format!(
                "   NOT WHOLE: some round lost or repeated messages (slow-consumer events: {}; members' counters: {})",
                hop["slow_consumer_events"], hop["member_counters"]
            )
        }
    );
    println!(
        "  takeover after SIGKILL (every endpoint connected again), median of {KILLS}: {:.2} s  {:?}",
        figures["takeover_s"].as_f64().unwrap_or(0.0),
        figures["takeovers_s"]
            .as_array()
            .map(|all| all
                .iter()
                .filter_map(Value::as_f64)
                .map(|s| format!("{s:.2}"))
                .collect::<Vec<_>>())
            .unwrap_or_default()
    );
}
