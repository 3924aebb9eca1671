//! wss:// against a testkit server with certificates made in the test.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{FailReason, TlsFiles};
use wsherd_testkit::{Recorder, Step, TestCerts, TestServer};

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
    match reached(&states, "secure", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await
    {
        EndpointState::Failed {
            reason: FailReason::NotRetryable(reason),
        } => reason,
        other => panic!("{other:?}"),
    }
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
