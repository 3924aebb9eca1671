//! Configuration files, environment overrides, validation messages, reload and workers.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use serde::Deserialize;
use wsherd::config::{ConfigLoader, HerdConfig};
use wsherd::prelude::*;
use wsherd::{HeartbeatMode, Jitter, OverflowPolicy, ProxyKind, ProxySetting, ReplyMatcher};
use wsherd_testkit::{Recorder, Step, TestServer};

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

fn load(file: &TempConfig) -> Result<HerdConfig, wsherd::config::ConfigError> {
    ConfigLoader::new()
        .file(file.path())
        .environment(no_env())
        .load()
}

/// The problems of a config that must fail, as `key: message` lines.
fn problems(file: &TempConfig) -> Vec<String> {
    let error = load(file).expect_err("the config should be refused");
    for problem in &error.problems {
        assert_eq!(
            problem.origin,
            file.name(),
            "every problem names its file: {problem}"
        );
    }
    error
        .problems
        .iter()
        .map(|p| format!("{}: {}", p.key, p.message))
        .collect()
}

fn name(s: &str) -> EndpointName {
    EndpointName::new(s).unwrap()
}

#[test]
fn a_full_endpoint_reads_every_key_with_defaults_merged_key_by_key() {
    let file = TempConfig::new(
        "toml",
        r#"
[herd]
workers = 3
max_concurrent_handshakes = 8
reconnects_per_second = 50

[defaults]
handshake_timeout = "5s"
backoff = { initial = "250ms", max = "1m 30s", factor = 3.0, jitter = "equal", reset_after = "10s" }
heartbeat = { interval = "15s", timeout = "10s" }

[endpoints.binance]
url = "ws://127.0.0.1:9001/ws"
kind = "e"
headers = { "X-Api-Key" = "k-1" }
subprotocols = ["v1", "v2"]
max_frame_size = "2MiB"
max_message_size = "4MiB"
idle_timeout = "1m"
on_open = ['{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}']
live_after = { kind = "subscribed", timeout = "3s" }
backoff = { max_attempts = 7 }
intensity = { max_restarts = 5, within = "1m" }
outbound = { max_messages = 10, max_bytes = "64KiB", overflow = "drop_oldest", ttl = "30s" }
on_close = { "4000" = "stop", "1008" = "backoff" }
on_status = { "404" = "backoff" }

[endpoints.kraken]
url = "ws://127.0.0.1:9002/"
kind = "/data/type"
enabled = false
heartbeat = { mode = "app", payload = '{"event":"ping"}', reply_kind = "pong" }
"#,
    );
    let config = load(&file).unwrap();
    assert_eq!(config.settings.workers, 3);
    assert_eq!(config.settings.governor.max_concurrent_handshakes, 8);
    assert_eq!(config.settings.governor.reconnects_per_second, 50.0);
    let binance = &config.endpoints[&name("binance")];
    assert!(binance.enabled);
    let spec = &binance.spec;
    let c = &spec.connection;
    assert_eq!(c.url, "ws://127.0.0.1:9001/ws");
    assert_eq!(format!("{:?}", c.kind), r#"KindRule::field("e")"#);
    assert_eq!(c.headers.len(), 1);
    assert_eq!(c.headers[0].1, "k-1");
    assert_eq!(c.subprotocols, ["v1", "v2"]);
    assert_eq!(
        c.handshake_timeout,
        Duration::from_secs(5),
        "from [defaults]"
    );
    assert_eq!(c.max_frame_size, 2 << 20);
    assert_eq!(c.max_message_size, 4 << 20);
    assert_eq!(c.heartbeat.interval, Duration::from_secs(15));
    assert_eq!(c.heartbeat.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(spec.on_open.len(), 1);
    let live = spec.live_after.as_ref().unwrap();
    assert_eq!(live.matcher, ReplyMatcher::Kind("subscribed".into()));
    assert_eq!(live.timeout, Duration::from_secs(3));
    // Nested tables merge key by key: max_attempts from the endpoint, the rest from defaults.
    assert_eq!(spec.backoff.max_attempts, 7);
    assert_eq!(spec.backoff.initial, Duration::from_millis(250));
    assert_eq!(spec.backoff.max, Duration::from_secs(90));
    assert_eq!(spec.backoff.factor, 3.0);
    assert_eq!(spec.backoff.jitter, Jitter::Equal);
    assert_eq!(spec.intensity.max_restarts, 5);
    assert_eq!(spec.queue.max_messages, 10);
    assert_eq!(spec.queue.max_bytes, 64 << 10);
    assert_eq!(spec.queue.overflow, OverflowPolicy::DropOldest);
    assert_eq!(spec.queue.ttl, Some(Duration::from_secs(30)));
    assert_eq!(
        spec.actions.on_close[&CloseCode::from(4000)],
        wsherd::Action::Stop
    );
    assert_eq!(
        spec.actions.on_close[&CloseCode::POLICY],
        wsherd::Action::Backoff
    );
    assert_eq!(spec.actions.on_status[&404], wsherd::Action::Backoff);

    let kraken = &config.endpoints[&name("kraken")];
    assert!(!kraken.enabled);
    assert_eq!(
        format!("{:?}", kraken.spec.connection.kind),
        r#"KindRule::pointer("/data/type")"#
    );
    assert_eq!(
        kraken.spec.connection.heartbeat.mode,
        HeartbeatMode::App {
            payload: r#"{"event":"ping"}"#.into(),
            reply: ReplyMatcher::Kind("pong".into())
        }
    );
    assert_eq!(
        kraken.spec.connection.heartbeat.interval,
        Duration::from_secs(15)
    );
}

#[test]
fn yaml_and_json_files_and_layering() {
    let yaml = TempConfig::new(
        "yaml",
        "endpoints:\n  feed:\n    url: ws://127.0.0.1:1/\n    handshake_timeout: 2s\n",
    );
    let json = TempConfig::new(
        "json",
        r#"{"endpoints": {"feed": {"handshake_timeout": "7s"}, "other": {"url": "ws://127.0.0.1:2/"}}}"#,
    );
    let config = ConfigLoader::new()
        .file(yaml.path())
        .file(json.path())
        .environment(no_env())
        .load()
        .unwrap();
    let feed = &config.endpoints[&name("feed")].spec.connection;
    assert_eq!(feed.url, "ws://127.0.0.1:1/", "from the first file");
    assert_eq!(
        feed.handshake_timeout,
        Duration::from_secs(7),
        "the second file wins"
    );
    assert!(config.endpoints.contains_key(&name("other")));
}

#[test]
fn environment_overrides_files_and_names_its_variable_in_errors() {
    let file = TempConfig::new("toml", "[endpoints.binance]\nurl = \"ws://127.0.0.1:1/\"\n");
    let env: HashMap<String, String> = [
        (
            "WSHERD__ENDPOINTS__BINANCE__URL",
            "ws://127.0.0.1:2/override",
        ),
        ("WSHERD__ENDPOINTS__BINANCE__HEARTBEAT__INTERVAL", "3s"),
        ("WSHERD__ENDPOINTS__NEWONE__URL", "ws://127.0.0.1:3/"),
        ("WSHERD__HERD__WORKERS", "2"),
        ("UNRELATED", "x"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    let binance = &config.endpoints[&name("binance")].spec.connection;
    assert_eq!(binance.url, "ws://127.0.0.1:2/override");
    assert_eq!(binance.heartbeat.interval, Duration::from_secs(3));
    assert_eq!(
        config.endpoints[&name("newone")].spec.connection.url,
        "ws://127.0.0.1:3/"
    );
    assert_eq!(config.settings.workers, 2);

    let env: HashMap<String, String> = [(
        "WSHERD__ENDPOINTS__BINANCE__URL".to_owned(),
        "htp://x".to_owned(),
    )]
    .into_iter()
    .collect();
    let error = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap_err();
    assert_eq!(
        error.problems[0].to_string(),
        r#"environment variable WSHERD__ENDPOINTS__BINANCE__URL: endpoints.binance.url: "htp://x" is not a ws:// or wss:// URL"#
    );
}

#[test]
fn secrets_come_from_the_environment_and_are_never_printed() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\nheaders = { Authorization = { env = \"FEED_TOKEN\" } }\n",
    );
    let env: HashMap<String, String> = [("FEED_TOKEN".to_owned(), "Bearer s3cr3t".to_owned())]
        .into_iter()
        .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    let feed = &config.endpoints[&name("feed")];
    assert_eq!(feed.spec.connection.headers[0].1, "Bearer s3cr3t");
    assert!(!format!("{config:?}").contains("s3cr3t"));
    let missing = problems(&file);
    assert_eq!(missing.len(), 1);
    // Header names are case-insensitive; the config crate may keep or lower their case.
    assert!(
        missing[0].eq_ignore_ascii_case(
            r#"endpoints.feed.headers.authorization: environment variable "FEED_TOKEN" is not set"#
        ),
        "{missing:?}"
    );
}

#[test]
fn bad_url_and_missing_url() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.binance]\nurl = \"htp://x\"\n[endpoints.nourl]\nkind = \"e\"\n",
    );
    let found = problems(&file);
    assert_eq!(
        found,
        [
            r#"endpoints.binance.url: "htp://x" is not a ws:// or wss:// URL"#,
            "endpoints.nourl.url: is required: the ws:// or wss:// URL to connect to",
        ]
    );
    let error = load(&file).unwrap_err();
    assert!(error.to_string().contains(&format!(
        "{}: endpoints.binance.url: \"htp://x\" is not a ws:// or wss:// URL",
        file.name()
    )));
}

#[test]
fn unknown_keys_suggest_the_closest_known_one() {
    let file = TempConfig::new(
        "toml",
        "[herd]\nworkrs = 2\n[endpoints.feed]\nulr = \"ws://127.0.0.1:1/\"\nurl = \"ws://127.0.0.1:1/\"\nheartbeat = { intervall = \"1s\" }\nzzzz = 1\n",
    );
    let found = problems(&file);
    assert!(
        found.contains(&r#"herd.workrs: unknown key "workrs"; did you mean "workers"?"#.to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&r#"endpoints.feed.ulr: unknown key "ulr"; did you mean "url"?"#.to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&r#"endpoints.feed.heartbeat.intervall: unknown key "intervall"; did you mean "interval"?"#.to_owned()),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p
                .starts_with(r#"endpoints.feed.zzzz: unknown key "zzzz"; expected one of: url, "#)),
        "{found:?}"
    );
}

#[test]
fn wrong_types_durations_sizes_and_choices() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
handshake_timeout = true
max_frame_size = "1 XB"
idle_timeout = "20x"
enabled = "maybe"
subprotocols = "v1"
backoff = { jitter = "fulll", factor = 0.5, initial = "10s", max = "1s" }
outbound = { overflow = "drop", max_messages = -1 }
"#,
    );
    let found = problems(&file);
    let expected = [
        r#"endpoints.feed.backoff: initial (10s) is larger than max (1s)"#,
        r#"endpoints.feed.backoff.factor: expected a number of at least 1, found 0.5"#,
        r#"endpoints.feed.backoff.jitter: expected one of "full", "equal", "none", found "fulll"; did you mean "full"?"#,
        r#"endpoints.feed.enabled: expected true or false, found "maybe""#,
        r#"endpoints.feed.handshake_timeout: expected a duration such as "20s", found true"#,
        r#"endpoints.feed.idle_timeout: "20x" is not a duration (use e.g. "500ms", "20s", "1m 30s")"#,
        r#"endpoints.feed.max_frame_size: "1 XB" is not a size (use e.g. "64KiB", "1MiB", "16MB")"#,
        r#"endpoints.feed.outbound.max_messages: expected a whole number from 0 to 4294967295, found -1"#,
        r#"endpoints.feed.outbound.overflow: expected one of "reject", "drop_oldest", found "drop""#,
        r#"endpoints.feed.subprotocols: expected a list of strings, found "v1""#,
    ];
    assert_eq!(found, expected, "all errors at once");
}

#[test]
fn endpoint_names_codes_and_heartbeat_modes() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.Binance]
url = "ws://127.0.0.1:1/"

[endpoints.feed]
url = "ws://127.0.0.1:1/"
on_close = { "999" = "stop", "4000" = "explode" }
on_status = { "700" = "stop" }
heartbeat = { mode = "app", reply_text = "pong" }
live_after = { timeout = "1s" }
"#,
    );
    let found = problems(&file);
    let expected = [
        "endpoints.Binance: only a-z, 0-9, '_' and '-' are allowed (environment keys are lower-cased)",
        r#"endpoints.feed.heartbeat.payload: is required with mode "app""#,
        "endpoints.feed.live_after: needs exactly one of kind or text",
        r#"endpoints.feed.on_close.4000: expected one of "reconnect", "backoff", "stop", found "explode""#,
        r#"endpoints.feed.on_close.999: "999" is not a code from 1000 to 4999"#,
        r#"endpoints.feed.on_status.700: "700" is not a code from 100 to 599"#,
    ];
    assert_eq!(found, expected);
}

#[test]
fn unreadable_sources_are_clear() {
    let wrong = TempConfig::new("ini", "x=1");
    let error = ConfigLoader::new()
        .file(wrong.path())
        .environment(no_env())
        .load()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unsupported file extension \"ini\""),
        "{error}"
    );
    let missing = ConfigLoader::new()
        .file("/nonexistent/wsherd.toml")
        .environment(no_env())
        .load()
        .unwrap_err();
    assert_eq!(
        missing.problems[0].to_string(),
        "/nonexistent/wsherd.toml: no such file"
    );
    let broken = TempConfig::new("toml", "[endpoints.feed\nurl = 1");
    let error = load(&broken).unwrap_err();
    assert!(error.problems[0].origin.contains(&broken.name()), "{error}");
}

#[derive(Debug, Deserialize)]
struct Tick {
    #[allow(dead_code)]
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

#[actix_rt::test]
async fn fifty_endpoints_from_a_file_all_start() {
    let servers: Vec<TestServer> = (0..3)
        .map(|_| TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap())
        .collect();
    let mut toml =
        String::from("[herd]\nworkers = 2\n\n[defaults]\nbackoff = { initial = \"50ms\" }\n");
    for i in 0..50 {
        toml.push_str(&format!(
            "\n[endpoints.feed-{i:02}]\nurl = \"{}\"\n",
            servers[i % 3].url(&format!("/{i}"))
        ));
    }
    let file = TempConfig::new("toml", &toml);
    let herd = Herd::from_config_file(file.path()).unwrap();
    let states = states(&herd);
    let (ticks, ticks_seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.start();
    ticks_seen.wait_for_count(50, WAIT).await.unwrap();
    let endpoints: std::collections::BTreeSet<String> =
        ticks_seen.with(|s| s.iter().map(|d| d.endpoint.to_string()).collect());
    assert_eq!(endpoints.len(), 50);
    states
        .wait_for(WAIT, |_| {
            herd.status()
                .iter()
                .all(|s| s.state == EndpointState::Live)
                .then_some(())
        })
        .await
        .ok();
    assert_eq!(herd.status().len(), 50);
    let total: usize = servers.iter().map(|s| s.connections().len()).sum();
    assert_eq!(total, 50);
}

#[actix_rt::test]
async fn reload_keeps_unchanged_sockets_and_restarts_only_what_changed() {
    let server = TestServer::start(vec![]).unwrap();
    let config = |extra: &str| {
        format!(
            "[herd]\nworkers = 1\n[endpoints.keep]\nurl = \"{}\"\n[endpoints.change]\nurl = \"{}\"\n{extra}",
            server.url("/keep"),
            server.url("/change")
        )
    };
    let first = TempConfig::new(
        "toml",
        &(config("handshake_timeout = \"5s\"\n")
            + &format!("[endpoints.gone]\nurl = \"{}\"\n", server.url("/gone"))),
    );
    let herd = Herd::from_config(load(&first).unwrap()).unwrap();
    let states = states(&herd);
    herd.start();
    // Wait until all three are connected.
    server
        .wait_for(WAIT, |c| (c.len() >= 3).then_some(()))
        .await
        .unwrap();
    let second = TempConfig::new(
        "toml",
        &(config("handshake_timeout = \"6s\"\n")
            + &format!("[endpoints.fresh]\nurl = \"{}\"\n", server.url("/fresh"))),
    );
    let report = herd.reload(load(&second).unwrap()).await.unwrap();
    assert_eq!(report.unchanged, [name("keep")]);
    assert_eq!(report.restarted, [name("change")]);
    assert_eq!(report.stopped, [name("gone")]);
    assert_eq!(report.started, [name("fresh")]);
    server
        .wait_for(WAIT, |c| (c.len() >= 5).then_some(()))
        .await
        .unwrap();
    let paths = |path: &str| {
        server
            .connections()
            .iter()
            .filter(|c| c.path.as_deref() == Some(path))
            .count()
    };
    assert_eq!(
        paths("/keep"),
        1,
        "the unchanged endpoint was not reconnected"
    );
    assert_eq!(paths("/change"), 2);
    assert_eq!(paths("/fresh"), 1);
    assert_eq!(
        herd.endpoints(),
        [name("change"), name("fresh"), name("keep")]
    );
    let _ = states;
    // Reloading the same file again changes nothing.
    let report = herd.reload(load(&second).unwrap()).await.unwrap();
    assert_eq!(report.unchanged.len(), 3);
    assert!(report.restarted.is_empty() && report.started.is_empty() && report.stopped.is_empty());
}

#[actix_rt::test]
async fn a_thousand_endpoints_over_two_arbiters_all_open_and_receive() {
    const ENDPOINTS: usize = 1000;
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let mut toml = String::from(
        "[herd]\nworkers = 2\nmax_concurrent_handshakes = 64\n\n[defaults]\nbackoff = { initial = \"50ms\" }\n",
    );
    for i in 0..ENDPOINTS {
        toml.push_str(&format!(
            "[endpoints.e{i}]\nurl = \"{}\"\n",
            server.url("/")
        ));
    }
    let file = TempConfig::new("toml", &toml);
    let herd = Herd::from_config(load(&file).unwrap()).unwrap();
    let (ticks, ticks_seen) = Recorder::<Delivery<Tick>>::start_with_capacity(Some(4096));
    herd.subscribe(ticks.recipient());
    herd.start();
    ticks_seen.wait_for_count(ENDPOINTS, WAIT).await.unwrap();
    let endpoints: std::collections::BTreeSet<String> =
        ticks_seen.with(|s| s.iter().map(|d| d.endpoint.to_string()).collect());
    assert_eq!(endpoints.len(), ENDPOINTS, "every endpoint delivered");
    assert_eq!(server.connections().len(), ENDPOINTS);
    let report = herd.shutdown("test over", Duration::from_secs(30)).await;
    assert!(report.timed_out.is_empty(), "{:?}", report.timed_out);
    server
        .wait_for(WAIT, |c| {
            (c.iter().filter(|c| c.close.is_some()).count() == ENDPOINTS).then_some(())
        })
        .await
        .unwrap();
}

#[derive(Debug, Deserialize)]
struct Trade {
    seq: u64,
}
wsherd::inbound!(Trade => "trade");

#[actix_rt::test]
async fn a_subscriber_on_another_arbiter_receives_batches_in_order() {
    const COUNT: u64 = 10_000;
    let server = TestServer::start(vec![Step::stream(&["trade"], COUNT)]).unwrap();
    let settings = wsherd::config::HerdSettings {
        workers: 2,
        ..Default::default()
    };
    let herd = Herd::with_settings(&settings).unwrap();
    // The subscriber lives on an arbiter of its own, apart from both workers.
    let arbiter = actix::Arbiter::new();
    let (batches, seen) = {
        let (tx, rx) = std::sync::mpsc::channel();
        arbiter.spawn(async move {
            let _ = tx.send(Recorder::<wsherd::Batch<Trade>>::start());
        });
        rx.recv().unwrap()
    };
    herd.subscribe_batched::<Trade>(batches.recipient());
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    seen.wait_for(WAIT, |b| {
        (b.iter().map(|b| b.deliveries.len()).sum::<usize>() as u64 >= COUNT).then_some(())
    })
    .await
    .unwrap();
    let seqs: Vec<u64> = seen.with(|b| {
        b.iter()
            .flat_map(|b| b.deliveries.iter().map(|d| d.message.seq))
            .collect()
    });
    assert_eq!(
        seqs,
        (0..COUNT).collect::<Vec<_>>(),
        "every message once, in order"
    );
    let batches = seen.len();
    assert!(
        batches * 4 <= COUNT as usize,
        "{batches} batches for {COUNT} messages"
    );
    let largest = seen.with(|b| b.iter().map(|b| b.deliveries.len()).max().unwrap_or(0));
    assert!(
        largest <= 256,
        "a batch of {largest} is over the cap of 256"
    );
    arbiter.stop();
}

#[actix_rt::test]
async fn restart_starts_an_endpoint_afresh_and_errors_name_the_problem() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("feed", ConnectionConfig::new(server.url("/")))
        .unwrap();
    reached(&states, "feed", 1, is_live).await;
    let unsent = herd.restart("feed").await.unwrap();
    assert!(unsent.is_empty());
    reached(&states, "feed", 2, is_live).await;
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1012, "restart requested".to_owned()));
    assert_eq!(
        herd.endpoint_status("feed").unwrap().reconnects,
        0,
        "fresh counters"
    );
    assert!(matches!(
        herd.restart("nope").await,
        Err(wsherd::HerdError::UnknownEndpoint(_))
    ));
    let bad = TempConfig::new("toml", "[endpoints.x]\nurl = 5\n");
    let error = Herd::from_config_file(bad.path()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains(r#"endpoints.x.url: expected a string, { env = "VARIABLE" } or { file = "PATH" }, found a number"#),
        "{error}"
    );
}

#[test]
fn the_reference_example_config_is_valid() {
    let reference = include_str!("../docs/configuration.md");
    let example = reference
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the reference has a TOML example");
    let file = TempConfig::new("toml", example);
    let env: HashMap<String, String> = [("BINANCE_KEY".to_owned(), "k".to_owned())]
        .into_iter()
        .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    assert_eq!(config.endpoints.len(), 3);
    assert_eq!(config.settings.workers, 2);
    assert!(!config.endpoints[&name("chat")].enabled);
    // The reference documents every key the parser accepts, and nothing else.
    let documented: Vec<String> = reference
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(str::to_owned)
        .collect();
    let mut accepted = wsherd::config::endpoint_keys();
    accepted.extend(wsherd::config::herd_keys().iter().map(|k| (*k).to_owned()));
    accepted.extend(wsherd::config::server_keys());
    // An inbound table's own keys; the ones it shares with endpoints are documented there.
    let shared = wsherd::config::endpoint_keys();
    accepted.extend(
        wsherd::config::inbound_keys()
            .into_iter()
            .filter(|key| {
                !shared
                    .iter()
                    .any(|k| k == key || k.starts_with(&format!("{key}.")))
            })
            .map(str::to_owned),
    );
    accepted.extend(
        wsherd::config::gateway_keys()
            .into_iter()
            .map(str::to_owned),
    );
    accepted.extend(wsherd::config::cluster_keys());
    accepted.sort();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    assert_eq!(documented_sorted, accepted);
}

#[actix_rt::test]
async fn reload_hands_back_what_removed_endpoints_had_not_sent() {
    let refusing = TestServer::builder_with(|_| wsherd_testkit::Behaviour::Reject(503))
        .start()
        .unwrap();
    let first = TempConfig::new(
        "toml",
        &format!(
            "[endpoints.gone]\nurl = \"{}\"\nbackoff = {{ initial = \"1h\", max = \"1h\" }}\n",
            refusing.url("/")
        ),
    );
    let herd = Herd::from_config(load(&first).unwrap()).unwrap();
    herd.start();
    for text in ["one", "two"] {
        assert_eq!(herd.send("gone", text).await.unwrap(), Submitted::Queued);
    }
    let empty = TempConfig::new("toml", "[endpoints]\n");
    let report = herd.reload(load(&empty).unwrap()).await.unwrap();
    assert_eq!(report.stopped, [name("gone")]);
    assert_eq!(
        report.unsent.get(&name("gone")).map(Vec::as_slice),
        Some(&[Outbound::from("one"), Outbound::from("two")][..])
    );
}
#[test]
fn zero_or_tiny_heartbeat_durations_are_refused_naming_key_and_file() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
idle_timeout = "0s"
heartbeat = { interval = "1ms", timeout = "0s" }
"#,
    );
    let found = problems(&file);
    assert_eq!(
        found,
        [
            "endpoints.feed.heartbeat.interval: 1ms is too short: the minimum is 10ms",
            "endpoints.feed.heartbeat.timeout: 0ns is too short: the minimum is 10ms",
            "endpoints.feed.idle_timeout: 0ns is too short: the minimum is 10ms",
        ]
    );
    let shown = load(&file).unwrap_err().to_string();
    assert!(
        shown.contains(&format!("{}: endpoints.feed.idle_timeout:", file.name())),
        "{shown}"
    );
}

#[actix_rt::test]
async fn a_herd_refuses_an_endpoint_whose_heartbeat_would_spin() {
    let herd = Herd::new();
    let zero_interval = wsherd::HeartbeatSpec {
        interval: Duration::ZERO,
        ..Default::default()
    };
    let error = herd
        .add_endpoint(
            "spin",
            ConnectionConfig::new("ws://127.0.0.1:1/").heartbeat(zero_interval),
        )
        .unwrap_err();
    assert!(
        matches!(&error, wsherd::HerdError::InvalidSpec { name, .. } if name.as_str() == "spin"),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .starts_with("endpoint spin: heartbeat interval of 0ns"),
        "{error}"
    );
    let zero_idle = wsherd::HeartbeatSpec {
        idle_timeout: Some(Duration::ZERO),
        ..Default::default()
    };
    let spec =
        EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1:1/")).heartbeat_spec(zero_idle);
    assert!(matches!(
        herd.add_endpoint("idle", spec),
        Err(wsherd::HerdError::InvalidSpec { .. })
    ));
    assert!(herd.endpoints().is_empty(), "nothing was started");
    // The checked constructors refuse the same values up front.
    assert!(
        wsherd::HeartbeatSpec::new(
            HeartbeatMode::WsPing,
            Duration::ZERO,
            Duration::from_secs(1)
        )
        .is_err()
    );
}

#[test]
fn sizes_reach_usize_max_and_2_pow_64_is_refused() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
max_frame_size = "18446744073709551615"
max_message_size = "16 EiB"
[endpoints.over]
url = "ws://127.0.0.1:1/"
max_frame_size = "18446744073709551616"
"#,
    );
    let found = problems(&file);
    assert_eq!(
        found,
        [
            r#"endpoints.feed.max_message_size: "16 EiB" is not a size (use e.g. "64KiB", "1MiB", "16MB")"#,
            r#"endpoints.over.max_frame_size: "18446744073709551616" is larger than the largest size, 18446744073709551615 bytes"#,
        ]
    );
    let fits = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\nmax_frame_size = \"18446744073709551615\"\nmax_message_size = \"17179869183GiB\"\n",
    );
    let config = load(&fits).unwrap();
    let c = &config.endpoints[&name("feed")].spec.connection;
    assert_eq!(c.max_frame_size, usize::MAX);
    assert_eq!(c.max_message_size, usize::MAX - (1 << 30) + 1);
}

#[test]
fn invalid_utf8_fails_by_default_and_is_a_dead_letter_on_request() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.strict]
url = "ws://127.0.0.1:1/"
[endpoints.lenient]
url = "ws://127.0.0.1:1/"
invalid_utf8 = "dead_letter"
"#,
    );
    let config = load(&file).unwrap();
    let policy = |n: &str| config.endpoints[&name(n)].spec.connection.invalid_utf8;
    assert_eq!(policy("strict"), wsherd::InvalidUtf8Policy::Fail);
    assert_eq!(policy("lenient"), wsherd::InvalidUtf8Policy::DeadLetter);
    let bad = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\ninvalid_utf8 = \"ignore\"\n",
    );
    assert_eq!(
        problems(&bad),
        [r#"endpoints.feed.invalid_utf8: expected one of "fail", "dead_letter", found "ignore""#]
    );
}

#[test]
fn url_headers_and_on_open_may_come_from_the_environment_or_a_file() {
    let dir = std::env::temp_dir();
    let secret_file = |what: &str, contents: &str| {
        let path = dir.join(format!("wsherd-secret-{}-{what}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    };
    let url_file = secret_file("url", "ws://127.0.0.1:1/feed?token=from-file\n");
    let header_file = secret_file("header", "Bearer file-token\r\n");
    let open_file = secret_file("open", "{\"op\":\"login\",\"key\":\"file-key\"}\n");
    let file = TempConfig::new(
        "toml",
        &format!(
            r#"
[endpoints.env]
url = {{ env = "FEED_URL" }}
headers = {{ Authorization = {{ env = "FEED_TOKEN" }} }}
on_open = [{{ env = "FEED_LOGIN" }}, '{{"op":"subscribe"}}']
[endpoints.file]
url = {{ file = "{}" }}
headers = {{ Authorization = {{ file = "{}" }} }}
on_open = [{{ file = "{}" }}]
"#,
            url_file.display(),
            header_file.display(),
            open_file.display()
        ),
    );
    let env: HashMap<String, String> = [
        ("FEED_URL", "ws://127.0.0.1:1/?listenKey=from-env"),
        ("FEED_TOKEN", "Bearer env-token"),
        ("FEED_LOGIN", r#"{"op":"login","key":"env-key"}"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    let from_env = &config.endpoints[&name("env")].spec;
    assert_eq!(
        from_env.connection.url,
        "ws://127.0.0.1:1/?listenKey=from-env"
    );
    assert_eq!(from_env.connection.headers[0].1, "Bearer env-token");
    assert_eq!(
        from_env.on_open,
        [
            Outbound::from(r#"{"op":"login","key":"env-key"}"#),
            Outbound::from(r#"{"op":"subscribe"}"#)
        ]
    );
    let from_file = &config.endpoints[&name("file")].spec;
    assert_eq!(
        from_file.connection.url,
        "ws://127.0.0.1:1/feed?token=from-file"
    );
    assert_eq!(from_file.connection.headers[0].1, "Bearer file-token");
    assert_eq!(
        from_file.on_open,
        [Outbound::from(r#"{"op":"login","key":"file-key"}"#)]
    );
    let shown = format!("{config:?}");
    for secret in [
        "from-env",
        "env-token",
        "env-key",
        "from-file",
        "file-token",
        "file-key",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }

    // Problems name the variable or the file, never a value.
    let missing = std::env::temp_dir().join("wsherd-no-such-secret");
    let broken = TempConfig::new(
        "toml",
        &format!(
            r#"
[endpoints.feed]
url = {{ env = "NOPE" }}
headers = {{ Authorization = 12345, X-Key = {{ file = "{}" }}, X-Other = {{ vault = "x" }} }}
on_open = ["fine", 67890, {{ env = "NOPE" }}]
"#,
            missing.display()
        ),
    );
    let found = problems(&broken);
    let accepted = r#"expected a string, { env = "VARIABLE" } or { file = "PATH" }"#;
    let expected = [
        format!("endpoints.feed.headers.authorization: {accepted}, found a number"),
        format!(
            "endpoints.feed.headers.x-key: cannot read file {:?}: No such file or directory (os error 2)",
            missing.display().to_string()
        ),
        format!("endpoints.feed.headers.x-other: {accepted}, found a table of another shape"),
        format!("endpoints.feed.on_open[1]: {accepted}, found a number"),
        r#"endpoints.feed.on_open[2]: environment variable "NOPE" is not set"#.to_owned(),
        r#"endpoints.feed.url: environment variable "NOPE" is not set"#.to_owned(),
    ];
    let lower = |v: &[String]| v.iter().map(|p| p.to_lowercase()).collect::<Vec<_>>();
    assert_eq!(lower(&found), lower(&expected));
    for file in [url_file, header_file, open_file] {
        let _ = std::fs::remove_file(file);
    }
}

#[test]
fn the_resolved_config_is_written_back_as_toml_that_loads_to_the_same_settings() {
    let reference = include_str!("../docs/configuration.md");
    let example = reference
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the reference has a TOML example");
    let env: HashMap<String, String> = [("BINANCE_KEY".to_owned(), "k-secret".to_owned())]
        .into_iter()
        .collect();
    let load_with = |text: &str| {
        let file = TempConfig::new("toml", text);
        ConfigLoader::new()
            .file(file.path())
            .environment(env.clone())
            .load()
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    };
    let first = load_with(example).to_toml();
    assert!(!first.contains("k-secret"), "{first}");
    assert!(first.contains("max_message_size = \"4MiB\""), "{first}");
    assert!(first.contains("idle_timeout = \"1m\""), "{first}");
    assert!(
        first.contains(r#"on_close = { "4001" = "stop" }"#),
        "{first}"
    );
    // Every key it writes is one the loader takes, in units it reads back to the same values.
    let second = load_with(&first).to_toml();
    assert_eq!(first, second);
}

#[actix_rt::test]
async fn secrets_kept_in_files_are_read_again_by_the_next_attempt_when_the_files_change() {
    let server = TestServer::start(vec![]).unwrap();
    let token = TempConfig::new("token", "Bearer first\n");
    let subscription = TempConfig::new("sub", "sub-first\n");
    let config = TempConfig::new(
        "toml",
        &format!(
            "[endpoints.feed]\nurl = \"{}\"\nheaders = {{ Authorization = {{ file = \"{}\" }} }}\non_open = [{{ file = \"{}\" }}]\nbackoff = {{ initial = \"20ms\", max = \"20ms\" }}\n",
            server.url("/"),
            token.name(),
            subscription.name()
        ),
    );
    let herd = Herd::from_config(load(&config).unwrap()).unwrap();
    let states = states(&herd);
    herd.start();
    let first = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(first[0].as_text(), Some("sub-first"));
    assert_eq!(
        server.connections()[0].header("authorization"),
        Some("Bearer first")
    );

    // Rotated in place; no reload, no restart: the next attempt reads them again.
    std::fs::write(token.path(), "Bearer second-token\n").unwrap();
    std::fs::write(subscription.path(), "sub-second-message\n").unwrap();
    reached(&states, "feed", 1, is_live).await;
    herd.reconnect("feed").unwrap();
    let second = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(second[0].as_text(), Some("sub-second-message"));
    assert_eq!(
        server.connections()[1].header("authorization"),
        Some("Bearer second-token")
    );
}

#[test]
fn a_mistake_in_defaults_is_reported_once_at_its_own_key() {
    let file = TempConfig::new(
        "toml",
        "[defaults]\nbackoff = { jitter = \"fulll\" }\nheartbeat = { intervall = \"5s\" }\n\n\
         [endpoints.a]\nurl = \"ws://127.0.0.1:1/a\"\n\
         [endpoints.b]\nurl = \"ws://127.0.0.1:1/b\"\n\
         [endpoints.c]\nurl = \"ws://127.0.0.1:1/c\"\nbackoff = { jitter = \"none\" }\n",
    );
    assert_eq!(
        problems(&file),
        [
            r#"defaults.backoff.jitter: expected one of "full", "equal", "none", found "fulll"; did you mean "full"?"#,
            r#"defaults.heartbeat.intervall: unknown key "intervall"; did you mean "interval"?"#,
        ]
    );
}

#[test]
fn a_bad_endpoint_name_does_not_hide_the_endpoints_other_problems() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.\"Bad Name\"]\nurl = \"htp://x\"\nbackoff = { jitter = \"fulll\" }\n",
    );
    let found = problems(&file);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("endpoints.Bad Name: "), "{found:#?}");
    assert!(
        found[1].starts_with("endpoints.Bad Name.backoff.jitter: "),
        "{found:#?}"
    );
    assert!(
        found[2].starts_with(r#"endpoints.Bad Name.url: "htp://x""#),
        "{found:#?}"
    );
}

#[test]
fn errors_returned_from_main_print_the_list_not_the_structs() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"htp://x\"\nhandshake_timeout = \"soon\"\n",
    );
    let error = wsherd::HerdError::from(load(&file).unwrap_err());
    // What `main() -> Result<(), Box<dyn Error>>` prints is the error's Debug.
    let printed = format!("{:?}", Box::<dyn std::error::Error>::from(error.clone()));
    assert_eq!(printed, error.to_string());
    assert!(
        printed.starts_with("2 problems in the configuration:\n"),
        "{printed}"
    );
    assert!(!printed.contains("Problem {"), "{printed}");
    let send = wsherd::SendError::UnknownEndpoint {
        name: "feed".to_owned(),
        message: Outbound::from("secret-login"),
    };
    assert_eq!(format!("{send:?}"), r#"no endpoint named "feed""#);
}

#[test]
fn a_default_valid_only_with_each_endpoints_own_keys_is_accepted() {
    let file = TempConfig::new(
        "toml",
        "[defaults]\nlive_after = { timeout = \"5s\" }\nbackoff = { initial = \"45s\" }\n\
         heartbeat = { mode = \"app\", reply_kind = \"pong\" }\n\n\
         [endpoints.a]\nurl = \"ws://127.0.0.1:1/a\"\nlive_after = { kind = \"subscribed\" }\n\
         backoff = { max = \"2m\" }\nheartbeat = { payload = \"ping\" }\n",
    );
    let config = load(&file).unwrap();
    let a = &config.endpoints[&name("a")].spec;
    assert_eq!(a.backoff.initial, Duration::from_secs(45));
    assert_eq!(
        a.live_after.as_ref().unwrap().timeout,
        Duration::from_secs(5)
    );
}

#[test]
fn server_settings_are_read_and_the_token_comes_from_the_environment_without_being_shown() {
    let file = TempConfig::new(
        "toml",
        r#"
[server]
listen = "0.0.0.0:9090"
token = { env = "WSHERD_TEST_TOKEN" }

[endpoints.feed]
url = "ws://127.0.0.1:1/"
required = true
"#,
    );
    let env: HashMap<String, String> =
        [("WSHERD_TEST_TOKEN".to_owned(), "t0k3n-s3cret".to_owned())]
            .into_iter()
            .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    let server = &config.settings.server;
    assert_eq!(server.listen, Some("0.0.0.0:9090".parse().unwrap()));
    assert_eq!(
        server.token.as_ref().map(|t| t.expose()),
        Some("t0k3n-s3cret")
    );
    assert!(!server.allow_unauthenticated);
    assert!(config.endpoints[&name("feed")].required);
    let shown = config.to_toml();
    for text in [shown.clone(), format!("{config:?}")] {
        assert!(!text.contains("t0k3n-s3cret"), "{text}");
    }
    assert!(
        shown.contains("token = { env = \"WSHERD_TEST_TOKEN\" }"),
        "{shown}"
    );
    assert!(shown.contains("listen = \"0.0.0.0:9090\""), "{shown}");
    assert!(shown.contains("required = true"), "{shown}");
}

#[test]
fn a_server_beyond_loopback_without_a_token_is_refused_unless_allowed() {
    let exposed = TempConfig::new("toml", "[server]\nlisten = \"0.0.0.0:9090\"\n");
    let found = problems(&exposed);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("server.listen: 0.0.0.0:9090 is not a loopback address")
            && found[0].contains("server.token")
            && found[0].contains("allow_unauthenticated = true"),
        "{found:?}"
    );
    let allowed = TempConfig::new(
        "toml",
        "[server]\nlisten = \"0.0.0.0:9090\"\nallow_unauthenticated = true\n",
    );
    assert!(
        load(&allowed)
            .unwrap()
            .settings
            .server
            .allow_unauthenticated
    );
    for loopback in ["127.0.0.1:9090", "[::1]:0"] {
        let file = TempConfig::new("toml", &format!("[server]\nlisten = \"{loopback}\"\n"));
        assert!(load(&file).is_ok(), "{loopback}");
    }
    // No listen, no server: nothing to refuse.
    assert_eq!(
        load(&TempConfig::new("toml", ""))
            .unwrap()
            .settings
            .server
            .listen,
        None
    );
}

#[test]
fn server_mistakes_are_reported_with_key_path_file_and_a_suggestion() {
    let file = TempConfig::new(
        "toml",
        r#"
[server]
listne = "127.0.0.1:1"
listen = "localhost"
token = ""
tls = { cert = "/nonexistent/wsherd-cert.pem" }
allow_unauthenticated = "maybe"
"#,
    );
    let found = problems(&file);
    let expect = |prefix: &str| {
        assert!(
            found.iter().any(|p| p.starts_with(prefix)),
            "no problem starting {prefix:?} in {found:#?}"
        );
    };
    expect("server.allow_unauthenticated: expected true or false");
    expect("server.listen: expected an address with a port such as \"127.0.0.1:9090\"");
    expect("server.listne: unknown key \"listne\"; did you mean \"listen\"?");
    expect("server.tls.key: is required with server.tls");
    expect("server.token: is empty");
    let tls_files = TempConfig::new(
        "toml",
        "[server]\nlisten = \"127.0.0.1:0\"\ntls = { cert = \"/nonexistent/c.pem\", key = \"/nonexistent/k.pem\" }\n",
    );
    let found = problems(&tls_files);
    assert!(
        found.len() == 1 && found[0].starts_with("server.tls: /nonexistent/c.pem: cannot read"),
        "{found:?}"
    );
}

#[actix_rt::test]
async fn a_reload_that_changes_only_required_keeps_the_socket_and_changes_readiness() {
    let server = TestServer::start(vec![]).unwrap();
    let config = |required: bool| {
        TempConfig::new(
            "toml",
            &format!(
                "[herd]\nworkers = 1\n[endpoints.feed]\nurl = \"{}\"\nrequired = {required}\n[endpoints.spare]\nurl = \"ws://127.0.0.1:1/\"\nrequired = {required}\nbackoff = {{ initial = \"1h\", max = \"1h\" }}\n",
                server.url("/feed")
            ),
        )
    };
    let herd = Herd::from_config(load(&config(false)).unwrap()).unwrap();
    let states = states(&herd);
    herd.start();
    reached(&states, "feed", 1, is_live).await;
    assert!(herd.not_ready().is_empty(), "nothing is required yet");
    let report = herd.reload(load(&config(true)).unwrap()).await.unwrap();
    assert_eq!(report.unchanged, [name("feed"), name("spare")]);
    assert_eq!(
        herd.not_ready(),
        [name("spare")],
        "feed is live, spare is not"
    );
    assert_eq!(server.connections().len(), 1, "the socket was kept");
    herd.set_required("spare", false).unwrap();
    assert!(herd.not_ready().is_empty());
    assert!(herd.set_required("nope", true).is_err());
}

#[test]
fn the_outage_mode_is_read_from_herd_outage_with_its_defaults() {
    let file = TempConfig::new(
        "toml",
        "[herd.outage]\nmin_endpoints = 5\nwindow = \"10s\"\nprobe_interval = \"250ms\"\n[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let outage = load(&file).unwrap().settings.governor.outage;
    assert_eq!(
        outage,
        wsherd::OutagePolicy {
            enabled: true,
            min_endpoints: 5,
            window: Duration::from_secs(10),
            probe_interval: Duration::from_millis(250),
        }
    );
    let off = TempConfig::new(
        "toml",
        "[herd]\noutage = { enabled = false }\n[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let outage = load(&off).unwrap().settings.governor.outage;
    assert!(!outage.enabled);
    assert_eq!(
        outage.probe_interval,
        Duration::from_secs(1),
        "defaults kept"
    );
    let config = load(&file).unwrap();
    let again = TempConfig::new("toml", &config.to_toml());
    assert_eq!(
        load(&again).unwrap().settings,
        config.settings,
        "to_toml round-trips it"
    );
}

#[test]
fn bad_outage_values_name_their_key_and_file() {
    let file = TempConfig::new(
        "toml",
        "[herd.outage]\nmin_endpoints = 0\nwindow = \"0s\"\nprobe_interval = \"soon\"\nenable = false\n[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let found = problems(&file);
    for key in [
        "herd.outage.min_endpoints: expected a whole number from 1",
        "herd.outage.window: expected a duration above zero",
        "herd.outage.probe_interval: ",
        r#"herd.outage.enable: unknown key "enable"; did you mean "enabled"?"#,
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(key)),
            "{key} in {found:?}"
        );
    }
}

#[actix_rt::test]
async fn connect_on_demand_from_a_file_keeps_the_endpoint_idle_until_a_subscription_names_it() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let file = TempConfig::new(
        "toml",
        &format!(
            r#"
[defaults]
linger = "2s"

[endpoints.lazy]
url = "{url}"
connect = "on_demand"

[endpoints.eager]
url = "{url}"
"#,
            url = server.url("/")
        ),
    );
    let config = load(&file).unwrap();
    let shown = config.to_toml();
    assert!(
        shown.contains("connect = \"on_demand\"\nlinger = \"2s\""),
        "{shown}"
    );
    assert!(shown.contains("connect = \"always\""), "{shown}");
    let herd = Herd::from_config(config).unwrap();
    let states = states(&herd);
    herd.start();
    reached(&states, "eager", 1, |s| *s == EndpointState::Live).await;
    reached(&states, "lazy", 1, |s| *s == EndpointState::Idle).await;
    assert_eq!(
        server.connections().len(),
        1,
        "only the eager one connected"
    );
    let (ticks, seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe_with::<Tick>(
        ticks.recipient(),
        SubscribeOptions::new().endpoints([name("lazy")]),
    );
    seen.wait_for_count(1, WAIT).await.unwrap();
    assert_eq!(seen.with(|s| s[0].endpoint.to_string()), "lazy");
}

#[test]
fn a_misspelt_connect_mode_is_refused_with_a_suggestion() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
connect = "ondemand"
linger = "soon"
"#,
    );
    assert_eq!(
        problems(&file),
        [
            r#"endpoints.feed.connect: expected one of "always", "on_demand", found "ondemand"; did you mean "on_demand"?"#,
            r#"endpoints.feed.linger: "soon" is not a duration (use e.g. "500ms", "20s", "1m 30s")"#,
        ]
    );
}

#[test]
fn request_settings_are_read_written_back_and_checked_where_they_are() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
request = { id_field = "/params/req", reply_id_field = "rid", resend_on_reconnect = true, route_replies = false, max_in_flight = 8 }
"#,
    );
    let config = load(&file).unwrap();
    let request = &config.endpoints[&name("feed")].spec.request;
    assert_eq!(request.id_field, "/params/req");
    assert_eq!(request.reply_id_field.as_deref(), Some("rid"));
    assert!(request.resend_on_reconnect && !request.route_replies);
    assert_eq!(request.max_in_flight, 8);
    let shown = config.to_toml();
    assert!(
        shown.contains(r#"request = { id_field = "/params/req", reply_id_field = "rid", resend_on_reconnect = true, route_replies = false, max_in_flight = 8 }"#),
        "{shown}"
    );

    let bad = TempConfig::new(
        "toml",
        r#"
[endpoints.feed]
url = "ws://127.0.0.1:1/"
request = { id_field = "", max_in_flight = 0, route_reply = false }
"#,
    );
    assert_eq!(
        problems(&bad),
        [
            r#"endpoints.feed.request.id_field: must name a field, or a JSON pointer such as "/params/id""#,
            r#"endpoints.feed.request.max_in_flight: expected a whole number from 1 to 4294967295, found 0"#,
            r#"endpoints.feed.request.route_reply: unknown key "route_reply"; did you mean "route_replies"?"#,
        ]
    );
}

#[actix_rt::test]
async fn a_new_default_linger_restarts_only_the_endpoints_that_connect_on_demand() {
    let server = TestServer::start(vec![]).unwrap();
    let config = |linger: &str| {
        TempConfig::new(
            "toml",
            &format!(
                "[defaults]\nlinger = \"{linger}\"\n[endpoints.eager]\nurl = \"{}\"\n[endpoints.lazy]\nurl = \"{}\"\nconnect = \"on_demand\"\n",
                server.url("/eager"),
                server.url("/lazy")
            ),
        )
    };
    let herd = Herd::from_config(load(&config("30s")).unwrap()).unwrap();
    let states = states(&herd);
    herd.start();
    reached(&states, "eager", 1, |s| *s == EndpointState::Live).await;
    let report = herd.reload(load(&config("5s")).unwrap()).await.unwrap();
    assert_eq!(report.unchanged, [name("eager")]);
    assert_eq!(report.restarted, [name("lazy")]);
    assert_eq!(server.connections().len(), 1, "the eager socket was kept");
}

#[test]
fn sequence_settings_are_read_written_back_and_their_mistakes_named() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.book]
url = "ws://127.0.0.1:1/"
sequence = { field = "/data/u", kinds = ["depth"], scope = "s", on_gap = "resync", resync = ['{"op":"snapshot"}'], drop_duplicates = true, across_reconnects = true, event_interval = "5s", max_scopes = 500 }
"#,
    );
    let config = load(&file).unwrap();
    let sequence = config.endpoints[&name("book")]
        .spec
        .connection
        .sequence
        .clone()
        .unwrap();
    assert_eq!(sequence.field, "/data/u");
    assert_eq!(sequence.kinds, ["depth"]);
    assert_eq!(sequence.scope.as_deref(), Some("s"));
    assert_eq!(sequence.on_gap, wsherd::OnGap::Resync);
    assert_eq!(sequence.resync, [r#"{"op":"snapshot"}"#]);
    assert!(sequence.drop_duplicates && sequence.across_reconnects);
    assert_eq!(sequence.event_interval, Duration::from_secs(5));
    assert_eq!(sequence.max_scopes, 500);
    let shown = config.to_toml();
    assert!(shown.contains(r#"sequence = { field = "/data/u", kinds = ["depth"], scope = "s", on_gap = "resync", resync = ["<redacted>"], drop_duplicates = true, across_reconnects = true, event_interval = "5s", max_scopes = 500 }"#), "{shown}");
    assert!(
        !shown.contains("snapshot"),
        "resync messages are not shown: {shown}"
    );

    let bad = TempConfig::new(
        "toml",
        r#"
[endpoints.a]
url = "ws://127.0.0.1:1/"
sequence = { kinds = ["x"] }

[endpoints.b]
url = "ws://127.0.0.1:1/"
sequence = { field = "seq", on_gap = "resync", event_intervall = "1s" }
"#,
    );
    assert_eq!(
        problems(&bad),
        [
            r#"endpoints.a.sequence.field: is required: the field or JSON pointer of the sequence number"#,
            r#"endpoints.b.sequence.event_intervall: unknown key "event_intervall"; did you mean "event_interval"?"#,
            r#"endpoints.b.sequence.resync: on_gap = "resync" needs the messages to send (such as a snapshot request)"#,
        ]
    );
}

#[test]
fn max_lifetime_is_read_shown_and_refused_below_a_second() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\nmax_lifetime = \"23h\"\n",
    );
    let config = load(&file).unwrap();
    assert_eq!(
        config.endpoints[&name("feed")].spec.max_lifetime,
        Some(Duration::from_secs(23 * 3600))
    );
    assert!(
        config.to_toml().contains("max_lifetime = \"23h\""),
        "{}",
        config.to_toml()
    );
    let bad = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\nmax_lifetime = \"10ms\"\n",
    );
    assert_eq!(
        problems(&bad),
        [r#"endpoints.feed.max_lifetime: must be at least "1s": each rotation opens a new socket"#]
    );
}

#[test]
fn a_send_rate_is_read_shown_and_a_rate_of_zero_is_refused() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\noutbound = { rate = { per_second = 5, burst = 10 } }\n",
    );
    let config = load(&file).unwrap();
    assert_eq!(
        config.endpoints[&name("feed")].spec.send_rate,
        Some(wsherd::SendRate {
            per_second: 5,
            burst: 10
        })
    );
    let shown = config.to_toml();
    assert!(
        shown.contains(", rate = { per_second = 5, burst = 10 } }"),
        "{shown}"
    );
    let bad = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\noutbound = { rate = { per_second = 0 } }\n",
    );
    assert_eq!(
        problems(&bad),
        [
            r#"endpoints.feed.outbound.rate.per_second: expected a whole number from 1 to 4294967295, found 0"#
        ]
    );
}

#[test]
fn proxies_and_connect_timeouts_load_and_bad_ones_name_key_and_file_without_credentials() {
    let file = TempConfig::new(
        "toml",
        "[defaults]\nproxy = \"env\"\nconnect_timeout = \"2s\"\n\
         [endpoints.env]\nurl = \"ws://127.0.0.1:1/\"\n\
         [endpoints.direct]\nurl = \"ws://127.0.0.1:1/\"\nproxy = \"none\"\n\
         [endpoints.http]\nurl = \"wss://127.0.0.1:1/\"\nproxy = \"http://bob:pw-s3cret@proxy.local:3128\"\n\
         [endpoints.socks]\nurl = \"ws://127.0.0.1:1/\"\nproxy = { env = \"SOCKS_PROXY_URL\" }\n",
    );
    let env: HashMap<String, String> = [(
        "SOCKS_PROXY_URL".to_owned(),
        "socks5h://127.0.0.1:1080".to_owned(),
    )]
    .into_iter()
    .collect();
    let config = ConfigLoader::new()
        .file(file.path())
        .environment(env)
        .load()
        .unwrap();
    let proxy = |endpoint: &str| {
        config.endpoints[&name(endpoint)]
            .spec
            .connection
            .proxy
            .as_deref()
            .cloned()
    };
    assert_eq!(proxy("env"), Some(ProxySetting::Environment));
    assert_eq!(proxy("direct"), None);
    let Some(ProxySetting::Url(http)) = proxy("http") else {
        panic!("{:?}", proxy("http"));
    };
    assert_eq!((http.kind, http.port), (ProxyKind::Http, 3128));
    assert_eq!(http.credentials.unwrap().password, "pw-s3cret");
    let Some(ProxySetting::Url(socks)) = proxy("socks") else {
        panic!("{:?}", proxy("socks"));
    };
    assert_eq!(socks.kind, ProxyKind::Socks5h);
    let timeout = config.endpoints[&name("env")]
        .spec
        .connection
        .connect_timeout;
    assert_eq!(timeout, Duration::from_secs(2));
    let shown = format!("{config:?}\n{}", config.to_toml());
    assert!(!shown.contains("pw-s3cret"), "{shown}");
    assert!(
        config
            .to_toml()
            .contains("proxy = \"http://***@proxy.local:3128\""),
        "{}",
        config.to_toml()
    );

    let bad = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:1/\"\nproxy = \"https://bob:pw-s3cret@p:1\"\nconnect_timeout = \"0s\"\n\
         [endpoints.other]\nurl = \"ws://127.0.0.1:1/\"\nproxy = \"socks4://p:1\"\n",
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        found[0].starts_with("endpoints.feed.connect_timeout: must be more than"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("endpoints.feed.proxy: invalid proxy https://***@p:1")
            && found[1].contains("not supported"),
        "{found:?}"
    );
    assert!(
        found[2].starts_with("endpoints.other.proxy:") && found[2].contains("socks5h://"),
        "{found:?}"
    );
    assert!(!found.join("\n").contains("pw-s3cret"));
}

#[test]
fn decompress_names_a_format_and_anything_else_is_refused_with_the_choices() {
    let file = TempConfig::new(
        "toml",
        "[endpoints.chat]\nurl = \"ws://127.0.0.1:1/\"\ndecompress = \"zlib-stream\"\n\
         [endpoints.plain]\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let config = load(&file).unwrap();
    assert_eq!(
        config.endpoints[&name("chat")].spec.connection.decompress,
        Some(wsherd::Decompress::ZlibStream)
    );
    assert_eq!(
        config.endpoints[&name("plain")].spec.connection.decompress,
        None
    );
    assert!(config.to_toml().contains("decompress = \"zlib-stream\""));
    let bad = TempConfig::new(
        "toml",
        "[endpoints.chat]\nurl = \"ws://127.0.0.1:1/\"\ndecompress = \"brotli\"\n",
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("endpoints.chat.decompress: expected one of")
            && found[0].contains("zlib-stream"),
        "{found:?}"
    );
}

#[test]
fn compression_offers_permessage_deflate_with_its_options_and_refuses_bad_windows() {
    let file = TempConfig::new(
        "toml",
        "[defaults]\ndeflate = { no_context_takeover = true, server_max_window_bits = 10 }\n\
         [endpoints.deflate]\nurl = \"ws://127.0.0.1:1/\"\ncompression = \"deflate\"\n\
         [endpoints.plain]\nurl = \"ws://127.0.0.1:1/\"\n",
    );
    let config = load(&file).unwrap();
    let offer = config.endpoints[&name("deflate")]
        .spec
        .connection
        .compression
        .unwrap();
    assert!(offer.no_context_takeover);
    assert_eq!(offer.server_max_window_bits, Some(10));
    assert_eq!(offer.client_max_window_bits, None);
    assert_eq!(
        config.endpoints[&name("plain")].spec.connection.compression,
        None
    );
    let shown = config.to_toml();
    assert!(
        shown.contains("compression = \"deflate\"")
            && shown.contains(
                "deflate = { no_context_takeover = true, server_max_window_bits = 10, \
                 min_compress_size = \"1KiB\" }"
            ),
        "{shown}"
    );
    let bad = TempConfig::new(
        "toml",
        "[endpoints.deflate]\nurl = \"ws://127.0.0.1:1/\"\ncompression = \"brotli\"\n\
         deflate = { server_max_window_bits = 16 }\n",
    );
    let found = problems(&bad);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("endpoints.deflate.deflate.server_max_window_bits:")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("endpoints.deflate.compression: expected one of")),
        "{found:?}"
    );
}

#[test]
fn an_inbound_table_reads_its_own_keys_and_the_shared_ones() {
    let file = TempConfig::new(
        "toml",
        r#"
[inbound.devices]
path = "/ws/devices/{id}"
kind = "type"
auth = { token = "t0ken-of-devices" }
max_sessions = 500
on_duplicate = "refuse"
resume_window = "2m"
heartbeat = { interval = "15s", timeout = "10s" }
idle_timeout = "90s"
invalid_utf8 = "dead_letter"
live_after = { kind = "hello", timeout = "5s" }
request = { id_field = "rid" }
sequence = { field = "seq" }
outbound = { max_messages = 100, ttl = "30s" }
"#,
    );
    let config = load(&file).unwrap();
    let devices = &config.inbound[&name("devices")];
    assert_eq!(devices.path, "/ws/devices/{id}");
    assert_eq!(devices.max_sessions, 500);
    assert_eq!(devices.on_duplicate, wsherd::config::OnDuplicate::Refuse);
    assert_eq!(devices.resume_window(), Duration::from_secs(120));
    assert_eq!(
        devices.spec.connection.heartbeat.interval,
        Duration::from_secs(15)
    );
    assert_eq!(devices.spec.queue.max_messages, 100);
    let shown = format!("{devices:?}");
    assert!(!shown.contains("t0ken"), "{shown}");
    assert!(config.endpoints.is_empty());
    // What `wsherd check` prints loads again to the same settings, the token redacted.
    let toml = config.to_toml();
    assert!(!toml.contains("t0ken"), "{toml}");
    let again = TempConfig::new(
        "toml",
        &toml.replace("\"<redacted>\"", "\"t0ken-of-devices\""),
    );
    let again = load(&again).unwrap();
    let reread = &again.inbound[&name("devices")];
    assert_eq!(reread.path, devices.path);
    assert_eq!(reread.auth, devices.auth);
    assert_eq!(reread.max_sessions, 500);
    assert_eq!(reread.resume_window(), Duration::from_secs(120));
    assert_eq!(
        reread.spec.connection.heartbeat,
        devices.spec.connection.heartbeat
    );
    assert!(reread.same_as(devices), "every shared key is shown: {toml}");
}

#[actix_rt::test]
async fn a_reload_says_which_inbound_endpoints_it_left_as_they_run() {
    let table = |max: u32| {
        format!(
            "[inbound.devices]\npath = \"/ws/devices/{{id}}\"\nauth = \"none\"\nmax_sessions = {max}\n"
        )
    };
    let file = TempConfig::new("toml", &table(10));
    let herd = Herd::from_config(load(&file).unwrap()).unwrap();
    let same = herd.reload(load(&file).unwrap()).await.unwrap();
    assert!(same.inbound_not_applied.is_empty(), "{same:?}");
    let changed = TempConfig::new("toml", &table(20));
    let report = herd.reload(load(&changed).unwrap()).await.unwrap();
    assert_eq!(report.inbound_not_applied, vec![name("devices")]);
    assert_eq!(herd.inbound_endpoint("devices").unwrap().max_sessions(), 10);
    let gone = TempConfig::new("toml", "");
    let report = herd.reload(load(&gone).unwrap()).await.unwrap();
    assert_eq!(report.inbound_not_applied, vec![name("devices")]);
}

#[test]
fn inbound_tables_say_what_is_wrong_and_where() {
    let file = TempConfig::new(
        "toml",
        r#"
[inbound.nopath]
auth = "none"
[inbound.twoids]
path = "/d/{id}/{id}"
auth = "none"
[inbound.api]
path = "/api/{id}"
auth = "none"
[inbound.noauth]
path = "/n/{id}"
[inbound.dialing]
path = "/x/{id}"
auth = "none"
url = "ws://127.0.0.1/"
[inbound.first]
path = "/same/{id}"
auth = "none"
[inbound.second]
path = "/same/{id}"
auth = "nobody"
[inbound.rooted]
path = "/{id}"
auth = "s3"
[endpoints."feed:1"]
url = "ws://127.0.0.1/"
[endpoints.first]
url = "ws://127.0.0.1/"
"#,
    );
    let found = problems(&file).join("\n");
    assert!(
        !found.contains("\"s3\""),
        "a mistaken token is never shown: {found}"
    );
    for expected in [
        "inbound.nopath.path: is required",
        "inbound.twoids.path: expected exactly one whole `{id}` segment",
        "inbound.api.path: /api is the server's own",
        "inbound.noauth.auth: is required",
        "inbound.dialing.url: unknown key",
        "inbound.second.auth: expected \"none\", \"hook\" or { token = … }",
        "endpoints.feed:1: ':' is kept for the sessions of inbound endpoints",
        "inbound.first: endpoints.first has the same name",
        "inbound.rooted.path: the first segment cannot be `{id}`",
        "inbound.rooted.auth: expected \"none\", \"hook\" or { token = … }, found another string",
    ] {
        assert!(found.contains(expected), "{expected}\nin:\n{found}");
    }
    let file = TempConfig::new(
        "toml",
        "[inbound.first]\npath = \"/same/{id}\"\nauth = \"none\"\n\
         [inbound.second]\npath = \"/same/{id}\"\nauth = \"none\"\n",
    );
    let found = problems(&file).join("\n");
    assert!(
        found.contains("inbound.second.path: inbound.first is served at \"/same/{id}\" already"),
        "{found}"
    );
}

#[test]
fn a_gateway_table_reads_every_key_and_check_shows_it_without_its_token() {
    let file = TempConfig::new(
        "toml",
        r#"
[endpoints.binance]
url = "ws://127.0.0.1:9/ws"

[gateway]
path = "/feed"
max_buffer = "256KiB"
overflow = "disconnect"
allow_send = ["binance"]
token = "gate-t0ken"
allowed_origins = ["http://app.local:8080"]
max_sessions = 100
max_topics = 16
"#,
    );
    let config = load(&file).unwrap();
    let gateway = config.gateway.clone().unwrap();
    assert_eq!(gateway.path, "/feed");
    assert_eq!(gateway.max_buffer, 256 << 10);
    assert_eq!(
        gateway.overflow,
        wsherd::config::GatewayOverflow::Disconnect
    );
    assert_eq!(gateway.allow_send, vec![name("binance")]);
    assert_eq!(gateway.token.as_ref().unwrap().expose(), "gate-t0ken");
    assert_eq!(gateway.allowed_origins, vec!["http://app.local:8080"]);
    assert_eq!((gateway.max_sessions, gateway.max_topics), (100, 16));
    assert!(!format!("{gateway:?}").contains("gate-t0ken"));
    let toml = config.to_toml();
    assert!(!toml.contains("gate-t0ken"), "{toml}");
    let again = TempConfig::new("toml", &toml.replace("\"<redacted>\"", "\"gate-t0ken\""));
    assert_eq!(load(&again).unwrap().gateway, Some(gateway));
}

#[test]
fn a_gateway_table_says_what_is_wrong_and_where() {
    let file = TempConfig::new(
        "toml",
        r#"
[inbound.devices]
path = "/ws/devices/{id}"
auth = "none"

[gateway]
path = "/api/feed"
allowed_origins = ["app.example", "https://ok.example"]
overflow = "block"
allow_send = ["nowhere"]
token = ""
max_buffer = "10B"
"#,
    );
    let found = problems(&file).join("\n");
    for expected in [
        "gateway.path: \"/api/feed\" is under /api",
        "gateway.overflow: expected one of \"drop_oldest\", \"disconnect\"",
        "gateway.token: is empty",
        "gateway.max_buffer: is at least 1 KiB",
        "gateway.allowed_origins: \"app.example\" is no origin",
    ] {
        assert!(found.contains(expected), "{expected} in:\n{found}");
    }
    let file = TempConfig::new(
        "toml",
        "[gateway]\npath = \"/feed\"\nallow_send = [\"nowhere\"]\n",
    );
    let found = problems(&file).join("\n");
    assert!(
        found.contains("gateway.allow_send: names nowhere, which is no [endpoints] table"),
        "{found}"
    );
    let file = TempConfig::new("toml", "[gateway]\nmax_topics = 3\n");
    assert!(
        problems(&file)
            .join("\n")
            .contains("gateway.path: is required")
    );
}

#[test]
fn a_cluster_table_reads_every_key_and_its_debug_hides_credentials() {
    let file = TempConfig::new(
        "toml",
        r#"
[herd]
metrics_interval = "1s"

[cluster]
nats = ["nats://herd:s3cret@127.0.0.1:4222", "127.0.0.1:4223"]
member = "ingest-1"
lease = "3s"
subject_prefix = "acme.herd"
on_cluster_loss = "keep"
token = "t0ken"

[endpoints.feed]
url = "ws://127.0.0.1:9/feed"
"#,
    );
    let config = load(&file).unwrap();
    let cluster = config.cluster.as_ref().expect("[cluster] read");
    assert_eq!(cluster.nats.len(), 2);
    assert_eq!(
        cluster.nats[0].expose(),
        "nats://herd:s3cret@127.0.0.1:4222"
    );
    assert_eq!(cluster.member.as_deref(), Some("ingest-1"));
    assert_eq!(cluster.lease, Duration::from_secs(3));
    assert_eq!(cluster.subject_prefix, "acme.herd");
    assert_eq!(cluster.on_cluster_loss, wsherd::config::OnClusterLoss::Keep);
    assert!(matches!(&cluster.auth, wsherd::config::NatsAuth::Token(t) if t.expose() == "t0ken"));
    let shown = format!("{cluster:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("t0ken"),
        "{shown}"
    );
    // `wsherd check` shows the table, its secrets hidden.
    let checked = config.to_toml();
    assert!(checked.contains("\n[cluster]\n"), "{checked}");
    assert!(checked.contains("on_cluster_loss = \"keep\"") && checked.contains("lease = \"3s\""));
    // A duration in [herd] is written as one TOML string too (it was quoted twice).
    assert!(checked.contains("metrics_interval = \"1s\"\n"), "{checked}");
    assert!(
        !checked.contains("s3cret") && !checked.contains("t0ken"),
        "{checked}"
    );
    // The digest members compare leaves secrets out and follows the endpoints.
    let digest = config.shared_digest();
    assert_eq!(digest, load(&file).unwrap().shared_digest());
    let other = TempConfig::new(
        "toml",
        "[endpoints.feed]\nurl = \"ws://127.0.0.1:9/other\"\n",
    );
    assert_ne!(digest, load(&other).unwrap().shared_digest());
}

#[test]
fn a_cluster_table_says_what_is_wrong_and_where() {
    let file = TempConfig::new(
        "toml",
        r#"
[cluster]
nats = "http://127.0.0.1:4222"
member = "two words"
lease = "100ms"
subject_prefix = "a..b"
on_cluster_loss = "stpo"
token = "x"
user = "u"
"#,
    );
    let found = problems(&file).join("\n");
    for expected in [
        "cluster.nats: http://127.0.0.1:4222 is not a NATS address",
        "cluster.member: holds ' '",
        "cluster.lease: is 100ms; at least 300ms",
        "cluster.subject_prefix: \"a..b\" has an empty token",
        "cluster.on_cluster_loss: expected one of \"stop\", \"keep\"",
        "cluster: sets token and user",
    ] {
        assert!(found.contains(expected), "{expected} in:\n{found}");
    }
    let file = TempConfig::new("toml", "[cluster]\nlease = \"5s\"\n");
    assert!(
        problems(&file)
            .join("\n")
            .contains("cluster.nats: is required with [cluster]"),
        "a cluster needs its NATS"
    );
}
