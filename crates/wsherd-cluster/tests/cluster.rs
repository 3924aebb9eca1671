//! Members of one cluster against a real nats-server (Debian's package, installed by
//! `scripts/test`), each member in an actix system of its own thread, every endpoint a path
//! of one local WebSocket server that counts who is connected.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use wsherd::config::HerdConfig;
use wsherd::{Delivery, Inbound, Submitted};
use wsherd_cluster::{Cluster, ClusterError, HEADER_ENDPOINT, HEADER_KIND, HEADER_MEMBER};
use wsherd_testkit::{ConnectionLog, NatsServer, Step, TestServer};

const LEASE: &str = "2s";
const WAIT: Duration = Duration::from_secs(30);

/// The one message every endpoint sends when it opens.
#[derive(Debug, Clone, Deserialize)]
struct Hello {
    endpoint: String,
}

impl Inbound for Hello {
    const KIND: &'static str = "hello";
}

fn feed_server() -> TestServer {
    // Each connection says hello with its own path, then echoes what it is sent.
    TestServer::builder_with(|_| wsherd_testkit::Behaviour::Accept(vec![Step::Echo(true)]))
        .start()
        .expect("test server")
}

/// The config of `count` endpoints `e00`… on `server`, for member `member`.
fn config_text(
    nats: &NatsServer,
    server: &TestServer,
    member: &str,
    count: usize,
    extra: &str,
) -> String {
    let mut text = format!(
        "[herd]\nworkers = 1\n\n[cluster]\nnats = \"{}\"\nmember = \"{member}\"\nlease = \"{LEASE}\"\n{extra}\n",
        nats.url()
    );
    for i in 0..count {
        let name = format!("e{i:02}");
        text.push_str(&format!(
            "\n[endpoints.{name}]\nurl = \"{}\"\non_open = ['{{\"type\":\"hello\",\"endpoint\":\"{name}\"}}']\n",
            server.url(&format!("/{name}"))
        ));
    }
    text
}

fn load(text: &str) -> HerdConfig {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "wsherd-cluster-test-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, text).expect("write config");
    let config = HerdConfig::from_file(&path).expect("config");
    let _ = std::fs::remove_file(&path);
    config
}

/// A member in a system of its own; dropping it (or [`Member::crash`]) stops that system
/// at once, without leaving: to NATS and the others it is a process that died.
struct Member {
    cluster: Cluster,
    stop: Option<tokio::sync::oneshot::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn join(config: HerdConfig) -> Result<Member, ClusterError> {
        let (ready, joined) = mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<bool>();
        let thread = std::thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(async move {
                match Cluster::join(config).await {
                    Ok(cluster) => {
                        let _ = ready.send(Ok(cluster.clone()));
                        if let Ok(true) = stopped.await {
                            cluster.leave().await;
                        }
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            });
        });
        let cluster = joined.recv().expect("member thread")?;
        Ok(Member {
            cluster,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Ends the member's system without leaving (what SIGKILL does to a process).
    fn crash(mut self) {
        self.end(false);
    }

    fn end(&mut self, leave: bool) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(leave);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.end(false);
    }
}

/// Open connections by path.
fn open_by_path(connections: &[ConnectionLog]) -> BTreeMap<String, usize> {
    let mut open = BTreeMap::new();
    for connection in connections.iter().filter(|c| !c.ended && c.status == 101) {
        if let Some(path) = &connection.path {
            *open.entry(path.clone()).or_insert(0) += 1;
        }
    }
    open
}

/// Waits until each of `count` endpoints is connected exactly once; panics, with what was
/// seen, if a path is ever open twice.
async fn wait_each_once(server: &TestServer, count: usize) {
    server
        .wait_for(WAIT, |connections| {
            let open = open_by_path(connections);
            if let Some((path, n)) = open.iter().find(|(_, n)| **n > 1) {
                panic!("{path} is connected {n} times at once");
            }
            (open.len() == count).then_some(())
        })
        .await
        .expect("every endpoint connected once");
}

async fn wait_until(mut check: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn spread(members: &[&Member]) -> Vec<usize> {
    members
        .iter()
        .map(|m| m.cluster.local_endpoints().len())
        .collect()
}

#[actix_rt::test]
async fn three_members_connect_each_of_thirty_endpoints_once_and_evenly_and_serve_the_whole_cluster()
 {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let mut hellos = plain.subscribe("wsherd.msg.*.hello").await.unwrap();

    let a = Member::join(load(&config_text(&nats, &server, "a", 30, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 30, ""))).unwrap();
    let c = Member::join(load(&config_text(&nats, &server, "c", 30, ""))).unwrap();
    // Member a's herd subscribes to every endpoint of the cluster.
    let mut stream = a.cluster.herd().stream::<Hello>().unwrap();

    wait_each_once(&server, 30).await;
    wait_until(
        || spread(&[&a, &b, &c]).iter().sum::<usize>() == 30,
        "the members report 30 endpoints",
    )
    .await;
    let spread = spread(&[&a, &b, &c]);
    assert!(
        spread.iter().all(|n| (9..=11).contains(n)),
        "spread evenly: {spread:?}"
    );

    // A plain NATS subscriber reads every endpoint's hello, as the upstream wrote it, with
    // the headers naming endpoint, kind and member.
    let mut seen = BTreeSet::new();
    while seen.len() < 30 {
        let message = tokio::time::timeout(WAIT, hellos.next())
            .await
            .expect("a hello on NATS")
            .unwrap();
        let headers = message.headers.clone().expect("headers");
        let endpoint = headers.get(HEADER_ENDPOINT).unwrap().as_str().to_owned();
        assert_eq!(headers.get(HEADER_KIND).unwrap().as_str(), "hello");
        let member = headers.get(HEADER_MEMBER).unwrap().as_str().to_owned();
        assert!(["a", "b", "c"].contains(&member.as_str()));
        assert_eq!(
            std::str::from_utf8(&message.payload).unwrap(),
            format!("{{\"type\":\"hello\",\"endpoint\":\"{endpoint}\"}}")
        );
        assert_eq!(
            message.subject.as_str(),
            format!("wsherd.msg.{endpoint}.hello")
        );
        seen.insert(endpoint);
    }

    // A typed subscriber on one member sees the hellos of all thirty, local or remote, once.
    let mut typed = BTreeMap::new();
    while typed.len() < 30 {
        let delivery: Delivery<Hello> = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a typed hello")
            .unwrap();
        assert_eq!(delivery.endpoint.as_str(), delivery.message.endpoint);
        *typed.entry(delivery.endpoint.to_string()).or_insert(0) += 1;
    }
    assert!(typed.values().all(|n| *n == 1), "{typed:?}");

    // A send from a to an endpoint b runs goes through b and reaches the upstream.
    let remote = b.cluster.local_endpoints()[0].clone();
    let outcome = a
        .cluster
        .herd()
        .send(remote.as_str(), r#"{"type":"ping"}"#)
        .await
        .expect("sent through its owner");
    assert!(matches!(outcome, Submitted::Writing | Submitted::Queued));
    let path = format!("/{remote}");
    server
        .wait_for(WAIT, |connections| {
            connections
                .iter()
                .find(|c| !c.ended && c.path.as_deref() == Some(path.as_str()))
                .filter(|c| c.texts().any(|t| t == r#"{"type":"ping"}"#))
                .map(|_| ())
        })
        .await
        .expect("the upstream got the send");

    // Everyone answers the status request: thirty endpoints in all, each once.
    let status = a.cluster.cluster_status(Duration::from_secs(2)).await;
    let members: Vec<&str> = status.iter().filter_map(|s| s["member"].as_str()).collect();
    assert_eq!(members, ["a", "b", "c"]);
    let listed: usize = status
        .iter()
        .map(|s| s["endpoints"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(listed, 30);
    // Each answer carries that member's counters: what it took and published.
    for answer in &status {
        let taken = answer["counters"]["taken"].as_u64().unwrap_or(0);
        assert!((9..=11).contains(&taken), "{answer}");
        assert!(
            answer["counters"]["published"].as_u64().unwrap_or(0) >= taken,
            "{answer}"
        );
    }
    let owners = a.cluster.ownership();
    assert_eq!(owners.len(), 30);
    assert!(owners.iter().all(|o| o.owner.is_some()));

    // What the server's status, metrics and dashboard read: the herd's membership.
    let membership = a
        .cluster
        .herd()
        .membership()
        .expect("a member's herd knows it");
    assert_eq!(membership.member(), "a");
    wait_until(
        || membership.members() == ["a", "b", "c"],
        "a sees three live members",
    )
    .await;
    for seen in membership.ownership() {
        let runs = |m: &Member| m.cluster.local_endpoints().contains(&seen.endpoint);
        let owner = [("a", &a), ("b", &b), ("c", &c)]
            .into_iter()
            .find(|(_, m)| runs(m))
            .map(|(name, _)| name.to_owned());
        assert_eq!(seen.owner, owner, "{}", seen.endpoint);
        assert_eq!(seen.local, runs(&a));
    }
    let taken = membership
        .figures()
        .into_iter()
        .find(|f| f.name == "taken")
        .expect("a taken counter");
    assert_eq!(taken.value as usize, a.cluster.local_endpoints().len());
}

#[actix_rt::test]
async fn a_crashed_members_endpoints_are_taken_over_within_a_lease_and_two_seconds() {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let a = Member::join(load(&config_text(&nats, &server, "a", 12, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 12, ""))).unwrap();
    let c = Member::join(load(&config_text(&nats, &server, "c", 12, ""))).unwrap();
    wait_each_once(&server, 12).await;
    wait_until(|| spread(&[&a, &b, &c]) == [4, 4, 4], "4 endpoints each").await;
    let victims: Vec<String> = c
        .cluster
        .local_endpoints()
        .iter()
        .map(|e| format!("/{e}"))
        .collect();
    let crashed = Instant::now();
    c.crash();
    server
        .wait_for(WAIT, |connections| {
            let open = open_by_path(connections);
            if let Some((path, n)) = open.iter().find(|(_, n)| **n > 1) {
                panic!("{path} is connected {n} times at once");
            }
            victims.iter().all(|v| open.contains_key(v)).then_some(())
        })
        .await
        .expect("the crashed member's endpoints connected again");
    let takeover = crashed.elapsed();
    assert!(
        takeover < Duration::from_secs(2 + 2) + Duration::from_millis(500),
        "taken over in {takeover:?} (lease {LEASE} + 2 s, and the crash's own close)"
    );
    wait_until(|| spread(&[&a, &b]) == [6, 6], "6 each").await;
}

#[actix_rt::test]
async fn a_joining_member_gets_its_share_by_hand_over_and_no_endpoint_is_ever_open_twice() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let a = Member::join(load(&config_text(&nats, &server, "a", 12, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 12, ""))).unwrap();
    wait_each_once(&server, 12).await;
    wait_until(|| spread(&[&a, &b]) == [6, 6], "6 each").await;
    let c = Member::join(load(&config_text(&nats, &server, "c", 12, ""))).unwrap();
    // Every change of the server's log is checked: never two connections on one path.
    let deadline = Instant::now() + WAIT;
    loop {
        let open = open_by_path(&server.connections());
        assert!(open.values().all(|n| *n == 1), "open twice: {open:?}");
        if spread(&[&a, &b, &c]) == [4, 4, 4] && open.len() == 12 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rebalance: {:?}",
            spread(&[&a, &b, &c])
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        a.cluster
            .counters()
            .released
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[actix_rt::test]
async fn after_a_nats_restart_every_endpoint_is_still_connected_once_and_messages_flow() {
    let mut nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let a = Member::join(load(&config_text(&nats, &server, "a", 6, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 6, ""))).unwrap();
    wait_each_once(&server, 6).await;
    wait_until(|| spread(&[&a, &b]) == [3, 3], "3 each").await;
    nats.restart().expect("nats-server again");
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let mut echoes = plain.subscribe("wsherd.msg.*.echo").await.unwrap();
    // Wait until the members renew again, then everything is owned once.
    wait_until(
        || spread(&[&a, &b]).iter().sum::<usize>() == 6,
        "six endpoints run",
    )
    .await;
    wait_each_once(&server, 6).await;
    // A send through b to one of a's endpoints: its echo is published again.
    let target = a.cluster.local_endpoints()[0].clone();
    let deadline = Instant::now() + WAIT;
    loop {
        if b.cluster
            .herd()
            .send(target.as_str(), r#"{"type":"echo"}"#)
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sends never went through after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let echo = tokio::time::timeout(WAIT, echoes.next())
        .await
        .expect("the echo on NATS")
        .unwrap();
    assert_eq!(
        echo.headers.unwrap().get(HEADER_ENDPOINT).unwrap().as_str(),
        target.as_str()
    );
}

#[actix_rt::test]
async fn without_nats_a_stop_member_closes_its_endpoints_and_a_keep_member_keeps_them() {
    let mut nats = NatsServer::start().expect("nats-server");
    let stopping_server = feed_server();
    let keeping_server = feed_server();
    let stopping = Member::join(load(&config_text(
        &nats,
        &stopping_server,
        "s",
        3,
        "subject_prefix = \"stopping\"\non_cluster_loss = \"stop\"",
    )))
    .unwrap();
    let keeping = Member::join(load(&config_text(
        &nats,
        &keeping_server,
        "k",
        3,
        "subject_prefix = \"keeping\"\non_cluster_loss = \"keep\"",
    )))
    .unwrap();
    wait_each_once(&stopping_server, 3).await;
    wait_each_once(&keeping_server, 3).await;
    nats.kill();
    stopping_server
        .wait_for(WAIT, |connections| {
            open_by_path(connections).is_empty().then_some(())
        })
        .await
        .expect("the stop member closed its endpoints");
    assert!(stopping.cluster.local_endpoints().is_empty());
    // Both fence at the same age of their last renewal; the keep member did not.
    assert_eq!(open_by_path(&keeping_server.connections()).len(), 3);
    assert_eq!(keeping.cluster.local_endpoints().len(), 3);
    // NATS back: the stop member takes its endpoints again.
    nats.restart().expect("nats-server again");
    wait_each_once(&stopping_server, 3).await;
}

#[actix_rt::test]
async fn a_member_with_another_config_is_refused_while_the_first_is_alive() {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let _a = Member::join(load(&config_text(&nats, &server, "a", 3, ""))).unwrap();
    let refused = Member::join(load(&config_text(&nats, &server, "b", 4, "")));
    match refused {
        Err(ClusterError::ConfigMismatch { member, .. }) => assert_eq!(member, "a"),
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a member with another config joined"),
    }
    let message = ClusterError::ConfigMismatch {
        member: "a".into(),
        theirs: "1".into(),
        ours: "2".into(),
    }
    .to_string();
    assert!(message.contains("same endpoints"), "{message}");
}

#[actix_rt::test]
async fn a_lease_written_by_hand_closes_the_endpoint_and_it_is_taken_again_once() {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let a = Member::join(load(&config_text(&nats, &server, "a", 2, ""))).unwrap();
    wait_each_once(&server, 2).await;
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let leases = async_nats::jetstream::new(plain.clone())
        .get_key_value("wsherd_leases")
        .await
        .unwrap();
    let before = server.connections().len();
    leases.put("e00", "not a lease".into()).await.unwrap();
    // a closes e00 (its lease no longer names it), and after a lease of grace for the
    // unknown writer takes it back: a new connection, and never two at once.
    server
        .wait_for(WAIT, |connections| {
            let open = open_by_path(connections);
            assert!(open.values().all(|n| *n == 1), "{open:?}");
            (connections.len() > before && open.len() == 2).then_some(())
        })
        .await
        .expect("e00 closed and connected again");
    assert_eq!(a.cluster.local_endpoints().len(), 2);

    // A send request that is not UTF-8 is refused, with a reason.
    let answer = plain
        .request("wsherd.send.e01", vec![0xff, 0xfe].into())
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&answer.payload).unwrap();
    assert_eq!(answer["status"], "rejected");
    assert!(answer["error"].as_str().unwrap().contains("UTF-8"));
}

#[actix_rt::test]
async fn a_remembered_message_is_written_by_the_owner_now_and_by_the_next_owner_after_a_takeover() {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let a = Member::join(load(&config_text(&nats, &server, "a", 2, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 2, ""))).unwrap();
    wait_each_once(&server, 2).await;
    wait_until(|| spread(&[&a, &b]) == [1, 1], "one each").await;
    let theirs = b.cluster.local_endpoints()[0].clone();
    let path = format!("/{theirs}");
    let subscribe = r#"{"type":"subscribe","channel":"trades"}"#;
    a.cluster
        .herd()
        .remember(theirs.as_str(), subscribe)
        .await
        .expect("kept in the cluster");
    let got_it = |connections: &[ConnectionLog], newer_than: usize| {
        connections
            .iter()
            .filter(|c| c.index >= newer_than && !c.ended)
            .find(|c| c.path.as_deref() == Some(path.as_str()))
            .filter(|c| c.texts().any(|t| t == subscribe))
            .map(|c| c.index)
    };
    let first = server
        .wait_for(WAIT, |connections| got_it(connections, 0))
        .await
        .expect("b wrote it on the open socket");
    b.crash();
    let second = server
        .wait_for(WAIT, |connections| got_it(connections, first + 1))
        .await
        .expect("a wrote it after taking the endpoint over");
    assert!(second > first);
    assert_eq!(a.cluster.local_endpoints().len(), 2);
}

#[actix_rt::test]
async fn a_member_takes_other_members_messages_off_nats_only_while_something_here_wants_them() {
    let nats = NatsServer::start().expect("nats-server");
    let server = feed_server();
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let mut echoes = plain.subscribe("wsherd.msg.*.echo").await.unwrap();
    plain.flush().await.unwrap();
    let a = Member::join(load(&config_text(&nats, &server, "a", 6, ""))).unwrap();
    let b = Member::join(load(&config_text(&nats, &server, "b", 6, ""))).unwrap();
    wait_each_once(&server, 6).await;
    wait_until(
        || spread(&[&a, &b]) == [3, 3],
        "the members hold three endpoints each",
    )
    .await;
    let remote = b.cluster.local_endpoints()[0].clone();
    let routed = || a.cluster.counters().remote_routed.load(Ordering::Relaxed);
    // b's endpoint echoes what b sends it; a plain subscriber sees it on NATS; a has been
    // told everything NATS had for it once its own round trip is back.
    let mut n = 0;
    let mut echo_through_b = async || {
        n += 1;
        let text = format!(r#"{{"type":"echo","n":{n}}}"#);
        b.cluster
            .herd()
            .send(remote.as_str(), text.clone())
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(WAIT, echoes.next())
                .await
                .expect("the echo on NATS")
                .unwrap();
            if message.payload == text.as_bytes() {
                break;
            }
        }
        a.cluster.client().flush().await.unwrap();
    };
    for _ in 0..20 {
        echo_through_b().await;
    }
    assert_eq!(
        routed(),
        0,
        "nothing on a wants messages: none taken off NATS"
    );

    // A subscription on a: from then on b's messages reach it.
    let mut stream = a.cluster.herd().stream::<Echo>().unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "b's echo never reached a's subscriber"
        );
        echo_through_b().await;
        if let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_millis(500), stream.next()).await
        {
            assert_eq!(delivery.endpoint, remote);
            break;
        }
    }
    assert!(routed() > 0);

    // Without it, a stops taking them again.
    drop(stream);
    let deadline = Instant::now() + WAIT;
    let mut unchanged = 0;
    while unchanged < 3 {
        assert!(Instant::now() < deadline, "a kept taking b's messages");
        let before = routed();
        echo_through_b().await;
        unchanged = if routed() == before { unchanged + 1 } else { 0 };
    }
}

/// What the feed server echoes back when a member sends it.
#[derive(Debug, Clone, Deserialize)]
struct Echo {
    #[allow(dead_code)] // decoded to prove the type takes it
    n: u64,
}

impl Inbound for Echo {
    const KIND: &'static str = "echo";
}

#[actix_rt::test]
async fn sends_queued_at_a_member_that_hands_an_endpoint_over_go_first_from_its_next_owner() {
    let nats = NatsServer::start().expect("nats-server");
    // The upstream refuses (503, retried) until the test opens it: sends queue meanwhile.
    let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gate = std::sync::Arc::clone(&open);
    let server = TestServer::builder_with(move |_| {
        if gate.load(Ordering::SeqCst) {
            wsherd_testkit::Behaviour::Accept(vec![Step::Echo(true)])
        } else {
            wsherd_testkit::Behaviour::Reject(503)
        }
    })
    .start()
    .expect("test server");
    let plain = async_nats::connect(nats.url()).await.unwrap();
    let a = Member::join(load(&config_text(&nats, &server, "a", 2, ""))).unwrap();
    wait_until(|| spread(&[&a]) == [2], "a runs both endpoints").await;
    let text = |n: u64| format!(r#"{{"type":"echo","n":{n}}}"#);
    for n in 1..=4 {
        let endpoint = if n % 2 == 1 { "e00" } else { "e01" };
        let outcome = a.cluster.herd().send(endpoint, text(n)).await.unwrap();
        assert_eq!(outcome, Submitted::Queued, "the upstream is down");
    }
    // The hand-over's list is in the bucket before the lease is released.
    let handover = async_nats::jetstream::new(plain.clone())
        .get_key_value("wsherd_handover")
        .await
        .unwrap();
    let mut written = handover.watch_all().await.unwrap();

    let b = Member::join(load(&config_text(&nats, &server, "b", 2, ""))).unwrap();
    wait_until(|| spread(&[&a, &b]) == [1, 1], "one endpoint each").await;
    let moved = b.cluster.local_endpoints()[0].clone();
    let entry = tokio::time::timeout(WAIT, written.next())
        .await
        .expect("a hand-over written")
        .unwrap()
        .unwrap();
    assert_eq!(entry.key, moved.as_str());
    let list: serde_json::Value = serde_json::from_slice(&entry.value).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    // A send through the member that stayed, by request to the new owner, comes after them.
    let later = a
        .cluster
        .herd()
        .send(moved.as_str(), text(9))
        .await
        .unwrap();
    assert_eq!(later, Submitted::Queued);
    open.store(true, Ordering::SeqCst);
    let first = if moved.as_str() == "e00" { 1 } else { 2 };
    // After the on-open hello, as on any open: the queued sends in the order they were made.
    let hello = format!(r#"{{"type":"hello","endpoint":"{moved}"}}"#);
    let expected = vec![hello, text(first), text(first + 2), text(9)];
    let path = format!("/{moved}");
    server
        .wait_for(WAIT, |connections| {
            connections
                .iter()
                .filter(|c| c.path.as_deref() == Some(path.as_str()))
                .map(|c| c.texts().map(str::to_owned).collect::<Vec<_>>())
                .find(|texts| texts.len() >= 4)
        })
        .await
        .map(|texts| assert_eq!(texts, expected))
        .expect("the moved endpoint's upstream got the sends");
    assert_eq!(
        handover.get(moved.as_str()).await.unwrap(),
        None,
        "the list is gone once sent"
    );

    // A member that left is no longer shown as one.
    let mut b = b;
    b.end(true);
    assert!(b.cluster.herd().membership().is_none());
}

/// One message of the streamed burst.
#[derive(Debug, Clone, Deserialize)]
struct Tick {
    seq: u64,
}

impl Inbound for Tick {
    const KIND: &'static str = "tick";
}

#[actix_rt::test]
async fn with_nats_gone_a_members_endpoints_run_at_full_speed_and_what_it_cannot_publish_is_counted()
 {
    const TICKS: u64 = 100_000;
    let mut nats = NatsServer::start().expect("nats-server");
    // The burst starts once the endpoint said hello (on open) and the test said go.
    let server = TestServer::builder_with(|_| {
        wsherd_testkit::Behaviour::Accept(vec![
            Step::WaitForMessages(2),
            Step::stream(&["tick"], TICKS),
        ])
    })
    .start()
    .expect("test server");
    let a = Member::join(load(&config_text(
        &nats,
        &server,
        "a",
        1,
        "on_cluster_loss = \"keep\"",
    )))
    .unwrap();
    wait_until(|| spread(&[&a]) == [1], "a runs the endpoint").await;
    let mut ticks = a.cluster.herd().stream::<Tick>().unwrap();
    nats.kill();
    a.cluster.herd().send("e00", "go").await.unwrap();
    // Every tick reaches the local subscriber, in order: NATS being gone slows nothing here.
    for expected in 0..TICKS {
        let tick = tokio::time::timeout(WAIT, ticks.next())
            .await
            .expect("the next tick")
            .unwrap();
        assert_eq!(tick.message.seq, expected);
    }
    // What could not go to NATS was dropped and counted: by the publisher (its queue for the
    // NATS client full) or, before it, by the herd (the publisher's mailbox full).
    let counters = a.cluster.counters();
    let dropped = || {
        let full = a
            .cluster
            .herd()
            .endpoint_status("e00")
            .map_or(0, |status| status.stats.dropped_full);
        counters.publish_dropped.load(Ordering::Relaxed) + full
    };
    wait_until(|| dropped() > 0, "what could not be published is counted").await;
    assert!(
        counters.published.load(Ordering::Relaxed) < TICKS,
        "a NATS that is gone took everything"
    );
}
