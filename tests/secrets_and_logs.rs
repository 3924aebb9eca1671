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
        logs.contains("endpoint{name=ok}"),
        "one span per endpoint:\n{logs}"
    );
    assert!(logs.contains("endpoint{name=denied}"), "{logs}");
    assert!(logs.contains("handshake rejected with HTTP 401"), "{logs}");
}
