//! wss:// against a testkit server with certificates made in the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{ActionTable, BackoffPolicy, FailReason, TlsFiles};
use wsherd_testkit::Recorded;
use wsherd_testkit::{RawServer, Recorder, Step, TestCerts, TestServer};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Deserialize)]
struct Tick {
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

/// A directory for one test's PEM files, removed afterwards.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wsherd-tls-{}-{name}", std::process::id()));
        Dir(dir)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(certs: &TestCerts, dir: &Dir, with_client: bool) -> TlsFiles {
    let (ca, cert, key) = certs.write_client_files(&dir.0).unwrap();
    TlsFiles {
        ca_file: Some(ca),
        client_cert: with_client.then_some(cert),
        client_key: with_client.then_some(key),
    }
}

async fn fails_with(url: String, tls: Option<TlsFiles>) -> EndReason {
    let herd = Herd::new();
    let states = states(&herd);
    let mut config = ConnectionConfig::new(url);
    config.tls = tls;
    herd.add_endpoint("secure", config).unwrap();
    not_retried(&states, "secure").await
}

#[actix_rt::test]
async fn a_trusted_ca_connects_and_streams() {
    let certs = TestCerts::generate(&[LOOPBACK]).unwrap();
    let server = TestServer::builder(vec![Step::stream(&["tick"], 100)])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    assert!(server.url("/").starts_with("wss://127.0.0.1:"));
    let dir = Dir::new("trusted");
    let herd = Herd::new();
    let (ticks, seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.add_endpoint(
        "secure",
        ConnectionConfig::new(server.url("/")).tls(files(&certs, &dir, false)),
    )
    .unwrap();
    seen.wait_for_count(100, WAIT).await.unwrap();
    assert_eq!(
        seen.with(|s| s.iter().map(|d| d.message.seq).collect::<Vec<_>>()),
        (0..100).collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn an_unknown_ca_fails_at_once_and_says_why() {
    let certs = TestCerts::generate(&[LOOPBACK]).unwrap();
    let server = TestServer::builder(vec![])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    // Only the public Web PKI roots: the test CA is unknown.
    let reason = fails_with(server.url("/"), None).await;
    let EndReason::Tls { reason } = reason else {
        panic!("{reason:?}")
    };
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert_eq!(
        server.connections().len(),
        0,
        "no upgrade request was ever sent"
    );
}

#[actix_rt::test]
async fn a_certificate_for_another_host_fails() {
    let certs = TestCerts::generate(&[IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))]).unwrap();
    let server = TestServer::builder(vec![])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    let dir = Dir::new("wrong-host");
    let reason = fails_with(server.url("/"), Some(files(&certs, &dir, false))).await;
    let EndReason::Tls { reason } = reason else {
        panic!("{reason:?}")
    };
    assert!(
        reason.contains("not valid for name") || reason.contains("NotValidForName"),
        "{reason}"
    );
}

#[actix_rt::test]
async fn mutual_tls_works_with_the_client_certificate_and_fails_without() {
    let certs = TestCerts::generate(&[LOOPBACK]).unwrap();
    let server = TestServer::builder(vec![Step::stream(&["tick"], 3)])
        .tls(certs.server_config(true).unwrap())
        .start()
        .unwrap();
    let dir = Dir::new("mtls");
    let herd = Herd::new();
    let (ticks, seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(ticks.recipient());
    herd.add_endpoint(
        "with-cert",
        ConnectionConfig::new(server.url("/")).tls(files(&certs, &dir, true)),
    )
    .unwrap();
    seen.wait_for_count(3, WAIT).await.unwrap();

    let reason = fails_with(server.url("/"), Some(files(&certs, &dir, false))).await;
    let EndReason::Tls { reason } = reason else {
        panic!("{reason:?}")
    };
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
}

#[actix_rt::test]
async fn tls_files_are_checked_when_the_config_loads() {
    let file = std::env::temp_dir().join(format!("wsherd-tls-config-{}.toml", std::process::id()));
    std::fs::write(
        &file,
        "[endpoints.secure]\nurl = \"wss://127.0.0.1:1/\"\ntls = { ca_file = \"/nonexistent/ca.pem\", client_cert = \"/x.pem\" }\n",
    )
    .unwrap();
    let error = wsherd::config::ConfigLoader::new()
        .file(&file)
        .environment(Default::default())
        .load()
        .unwrap_err();
    let _ = std::fs::remove_file(&file);
    let shown = error.to_string();
    assert!(
        shown.contains("endpoints.secure.tls: /nonexistent/ca.pem: cannot read certificates"),
        "{shown}"
    );
}

/// Gives `path` a modification time no earlier write had, whatever the clock's granularity.
fn touch(path: &Path) {
    static LATER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let ahead = LATER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(ahead))
        .unwrap();
}

fn quick_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        ..BackoffPolicy::default()
    }
}

/// Waits until `name` is live for the `nth` time; fails at once if it fails instead.
async fn live_again(states: &Recorded<Delivery<StateEvent>>, name: &str, nth: usize) {
    let outcome = states
        .wait_for(WAIT, |seen| {
            let mine = || seen.iter().filter(|d| d.endpoint == name);
            if let Some(failed) =
                mine().find(|d| matches!(d.message.state, EndpointState::Failed { .. }))
            {
                return Some(Err(failed.message.state.clone()));
            }
            (mine().filter(|d| is_live(&d.message.state)).count() >= nth).then_some(Ok(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{name} was not live {nth} times: {e}"));
    if let Err(failed) = outcome {
        panic!("{name} failed instead: {failed:?}");
    }
}

#[actix_rt::test]
async fn a_ca_file_rotated_in_place_is_used_by_the_next_attempt_without_a_restart() {
    let before = TestCerts::generate(&[LOOPBACK]).unwrap();
    let server = TestServer::builder(vec![Step::stream(&["tick"], 1)])
        .tls(before.server_config(false).unwrap())
        .start()
        .unwrap();
    let port = server.addr().port();
    let dir = Dir::new("rotated");
    let tls = files(&before, &dir, false);
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "secure",
        EndpointSpec::new(ConnectionConfig::new(server.url("/")).tls(tls.clone()))
            .backoff(quick_backoff()),
    )
    .unwrap();
    live_again(&states, "secure", 1).await;

    // A new CA and a server certificate it signed; the CA file keeps its path.
    let after = TestCerts::generate(&[LOOPBACK]).unwrap();
    let ca_file = tls.ca_file.clone().unwrap();
    std::fs::write(&ca_file, &after.ca_pem).unwrap();
    touch(&ca_file);
    server.stop();
    let server = TestServer::builder(vec![Step::stream(&["tick"], 1)])
        .tls(after.server_config(false).unwrap())
        .port(port)
        .start()
        .unwrap();

    live_again(&states, "secure", 2).await;
    assert_eq!(server.connections().len(), 1);
}

#[actix_rt::test]
async fn on_tls_can_make_a_refused_certificate_back_off_instead_of_failing() {
    let certs = TestCerts::generate(&[LOOPBACK]).unwrap();
    let server = TestServer::builder(vec![])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    let file = std::env::temp_dir().join(format!("wsherd-tls-on-tls-{}.toml", std::process::id()));
    // Only the Web PKI roots: the test CA is unknown, on every attempt.
    std::fs::write(
        &file,
        format!(
            "[endpoints.secure]\nurl = \"{}\"\nbackoff = {{ initial = \"50ms\", max = \"100ms\" }}\non_tls = {{ certificate = \"backoff\" }}\n",
            server.url("/")
        ),
    )
    .unwrap();
    let loaded = wsherd::config::ConfigLoader::new()
        .file(&file)
        .environment(Default::default())
        .load();
    let _ = std::fs::remove_file(&file);
    let config = loaded.unwrap_or_else(|e| panic!("{e}"));
    let (_, endpoint) = config.endpoints.into_iter().next().unwrap();

    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("secure", endpoint.spec).unwrap();
    let third = reached(&states, "secure", 3, |s| {
        matches!(
            s,
            EndpointState::Backoff { .. } | EndpointState::Failed { .. }
        )
    })
    .await;
    let EndpointState::Backoff {
        reason: EndReason::Tls { reason },
        ..
    } = third
    else {
        panic!("{:?}", history(&states, "secure"))
    };
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    assert!(
        !history(&states, "secure")
            .iter()
            .any(|s| matches!(s, EndpointState::Failed { .. })),
        "{:?}",
        history(&states, "secure")
    );
}

#[actix_rt::test]
async fn a_connection_ended_during_the_tls_handshake_backs_off_and_on_tls_can_stop_it_instead() {
    // Accepts TCP and closes it at once: the TLS handshake breaks off.
    let raw = RawServer::start(vec![]).unwrap();
    let url = format!("wss://{}/", raw.addr());
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "flaky",
        EndpointSpec::new(ConnectionConfig::new(url.clone())).backoff(quick_backoff()),
    )
    .unwrap();
    let backoff = reached(&states, "flaky", 2, |s| {
        matches!(
            s,
            EndpointState::Backoff { .. } | EndpointState::Failed { .. }
        )
    })
    .await;
    assert!(
        matches!(
            backoff,
            EndpointState::Backoff {
                reason: EndReason::TlsTransient { .. },
                ..
            }
        ),
        "{backoff:?}"
    );

    let mut actions = ActionTable::default();
    actions
        .on_tls
        .insert(wsherd::TlsClass::Transient, wsherd::Action::Stop);
    herd.add_endpoint(
        "strict",
        EndpointSpec::new(ConnectionConfig::new(url)).actions(actions),
    )
    .unwrap();
    let failed = reached(&states, "strict", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;
    assert!(
        matches!(
            failed,
            EndpointState::Failed {
                reason: FailReason::NotRetryable(EndReason::TlsTransient { .. })
            }
        ),
        "{failed:?}"
    );
}
