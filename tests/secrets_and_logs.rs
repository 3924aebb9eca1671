//! Secrets from the environment reach the server and nothing else: not Debug output, logs,
//! status or errors. Logs carry one span per endpoint.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use wsherd::config::ConfigLoader;
use wsherd::prelude::*;
use wsherd_testkit::{Behaviour, TestServer};

const SECRET: &str = "Bearer s3cr3t-7f1d";

/// Everything the fmt subscriber writes, kept for inspection.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

#[actix_rt::test]
async fn secrets_stay_out_of_logs_status_debug_and_errors() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The herd runs on this thread, so a thread-local subscriber sees all of it.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::builder_with(|index| {
        if index == 0 {
            Behaviour::Accept(vec![])
        } else {
            Behaviour::Reject(401)
        }
    })
    .start()
    .unwrap();
    let dir = std::env::temp_dir().join(format!("wsherd-secrets-{}.toml", std::process::id()));
    std::fs::write(
        &dir,
        format!(
            "[defaults]\nheaders = {{ Authorization = {{ env = \"FEED_TOKEN\" }} }}\n\
             [endpoints.ok]\nurl = \"{url}\"\n[endpoints.denied]\nurl = \"{url}\"\n",
            url = server.url("/")
        ),
    )
    .unwrap();
    let env: HashMap<String, String> = [("FEED_TOKEN".to_owned(), SECRET.to_owned())]
        .into_iter()
        .collect();
    let config = ConfigLoader::new()
        .file(&dir)
        .environment(env.clone())
        .load()
        .unwrap();

    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("ok", config.endpoints.values().nth(1).unwrap().spec.clone())
        .unwrap();
    reached(&states, "ok", 1, is_live).await;
    herd.add_endpoint(
        "denied",
        config.endpoints.values().next().unwrap().spec.clone(),
    )
    .unwrap();
    reached(&states, "denied", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    // The secret did reach the server, where it belongs.
    assert_eq!(
        server.connections()[0].header("authorization"),
        Some(SECRET)
    );

    // A config that fails for another reason does not echo the secret either.
    std::fs::write(&dir, "[defaults]\nheaders = { Authorization = { env = \"FEED_TOKEN\" } }\n[endpoints.bad]\nurl = \"htp://x\"\n").unwrap();
    let error = ConfigLoader::new()
        .file(&dir)
        .environment(env)
        .load()
        .unwrap_err();
    let _ = std::fs::remove_file(&dir);

    let shown = [
        capture.text(),
        format!("{config:?}"),
        format!("{:?}", herd.status()),
        herd.status().iter().map(ToString::to_string).collect(),
        herd.status_table(),
        format!("{error}"),
        format!("{error:?}"),
        format!("{herd:?}"),
    ];
    for (i, text) in shown.iter().enumerate() {
        assert!(
            !text.contains("s3cr3t"),
            "output {i} leaks the secret:\n{text}"
        );
    }
    let logs = capture.text();
    assert!(
        logs.contains("wsherd{endpoint=ok}"),
        "one span per endpoint:\n{logs}"
    );
    assert!(logs.contains("wsherd{endpoint=denied}"), "{logs}");
    assert!(logs.contains("handshake rejected with HTTP 401"), "{logs}");
}

/// One secret per place a secret can sit; every output is searched for each of them.
const IN_QUERY: &str = "q-s3cr3t-4711";
const IN_USERINFO: &str = "u-s3cr3t-4712";
const IN_HEADER: &str = "h-s3cr3t-4713";
const IN_ON_OPEN: &str = "o-s3cr3t-4714";
const PLANTED: [&str; 4] = [IN_QUERY, IN_USERINFO, IN_HEADER, IN_ON_OPEN];

/// Every `(output, secret)` pair where the output shows the secret.
fn leaks(outputs: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (name, text) in outputs {
        for secret in PLANTED {
            if text.contains(secret) {
                found.push(format!("{name} shows {secret}"));
            }
        }
    }
    found
}

#[actix_rt::test]
async fn secrets_in_the_url_a_header_and_on_open_messages_are_never_printed() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = TestServer::start(vec![]).unwrap();
    let url = format!(
        "ws://feeder:{IN_USERINFO}@{}/feed?listenKey={IN_QUERY}&depth=10",
        server.addr()
    );
    let path = std::env::temp_dir().join(format!("wsherd-secrets-all-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[endpoints.feed]\nurl = \"{url}\"\n\
             headers = {{ Authorization = {{ env = \"FEED_TOKEN\" }} }}\n\
             on_open = ['{{\"op\":\"login\",\"key\":\"{IN_ON_OPEN}\"}}']\n"
        ),
    )
    .unwrap();
    let env: HashMap<String, String> = [("FEED_TOKEN".to_owned(), IN_HEADER.to_owned())]
        .into_iter()
        .collect();
    let config = ConfigLoader::new()
        .file(&path)
        .environment(env.clone())
        .load()
        .unwrap();
    let spec = config.endpoints.values().next().unwrap().spec.clone();

    let herd = Herd::new();
    let events = events(&herd);
    let states = states(&herd);
    herd.add_endpoint("feed", spec.clone()).unwrap();
    reached(&states, "feed", 1, is_live).await;
    // The same secrets in the URL of a port nothing listens on: its status shows an error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut down = spec.clone();
    down.connection.url =
        format!("ws://feeder:{IN_USERINFO}@127.0.0.1:{port}/feed?listenKey={IN_QUERY}");
    herd.add_endpoint("down", down).unwrap();
    reached(&states, "down", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    let down_status = herd.endpoint_status("down").unwrap();
    assert!(down_status.last_error.is_some(), "{down_status}");
    // Every secret did reach the server, where it belongs.
    let received = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert!(received[0].as_text().unwrap().contains(IN_ON_OPEN));
    let log = &server.connections()[0];
    assert_eq!(log.header("authorization"), Some(IN_HEADER));
    assert!(
        log.path.as_deref().unwrap_or("").contains(IN_QUERY),
        "{log:?}"
    );

    // Config errors: a URL that is refused, and a file that does not parse on the line that
    // holds the secret.
    std::fs::write(
        &path,
        format!("[endpoints.bad]\nurl = \"htp://feeder:{IN_USERINFO}@x/?token={IN_QUERY}\"\n"),
    )
    .unwrap();
    let refused = ConfigLoader::new()
        .file(&path)
        .environment(env.clone())
        .load()
        .unwrap_err();
    std::fs::write(
        &path,
        format!("[endpoints.bad]\nurl = \"ws://x/?token={IN_QUERY}\n"),
    )
    .unwrap();
    let unparsable = ConfigLoader::new()
        .file(&path)
        .environment(env)
        .load()
        .unwrap_err();
    let _ = std::fs::remove_file(&path);

    let status = herd.endpoint_status("feed").unwrap();
    let outputs = [
        ("trace logs", capture.text()),
        ("config Debug", format!("{config:?}")),
        ("spec Debug", format!("{spec:?}")),
        ("connection config Debug", format!("{:?}", spec.connection)),
        (
            "connection events",
            format!("{:?}", events.with(|e| e.to_vec())),
        ),
        ("state events", format!("{:?}", states.with(|e| e.to_vec()))),
        ("status Debug", format!("{:?}", herd.status())),
        ("status Display", format!("{status}\n{down_status}")),
        ("status table", herd.status_table()),
        ("status url", status.url.clone()),
        ("herd Debug", format!("{herd:?}")),
        ("refused config error", format!("{refused}\n{refused:?}")),
        (
            "unparsable config error",
            format!("{unparsable}\n{unparsable:?}"),
        ),
    ];
    let found = leaks(&outputs);
    assert!(found.is_empty(), "secrets printed:\n{}", found.join("\n"));
    assert_eq!(
        status.url,
        format!("ws://***@{}/feed?listenKey=***&depth=***", server.addr())
    );
    // What is shown still says where and what went wrong.
    assert!(
        capture.text().contains("connecting"),
        "the Connecting line is logged"
    );
    assert!(
        refused
            .to_string()
            .contains(r#""htp://***@x/?token=***" is not a ws:// or wss:// URL"#),
        "{refused}"
    );
    assert!(unparsable.to_string().contains("line 2"), "{unparsable}");
}
