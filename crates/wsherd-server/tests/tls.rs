//! HTTPS: the server presents its certificate (rustls, ring); a mismatched key is refused.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use actix_web::http::StatusCode;
use common::*;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use wsherd::config::{ServerSettings, ServerTlsFiles};
use wsherd::prelude::*;
use wsherd_server::{ServeError, ServerOptions};
use wsherd_testkit::TestCerts;

fn client_trusting(certs: &TestCerts) -> awc::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    awc::Client::builder()
        .connector(awc::Connector::new().rustls_0_23(Arc::new(config)))
        .timeout(WAIT)
        .finish()
}

#[actix_rt::test]
async fn the_server_speaks_https_with_its_certificate_and_refuses_a_key_that_does_not_fit() {
    let certs = TestCerts::generate(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
    let dir = std::env::temp_dir().join(format!("wsherd-server-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key, other_key) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("client.key"),
    );
    std::fs::write(&cert, &certs.server_cert_pem).unwrap();
    std::fs::write(&key, &certs.server_key_pem).unwrap();
    std::fs::write(&other_key, &certs.client_key_pem).unwrap();

    let herd = Herd::new();
    let mut settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        tls: Some(ServerTlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        ..ServerSettings::default()
    };
    let server = wsherd_server::serve(herd.clone(), &settings, ServerOptions::new()).unwrap();
    assert!(
        server.url().starts_with("https://127.0.0.1:"),
        "{}",
        server.url()
    );
    let client = client_trusting(&certs);
    let mut response = client
        .get(format!("{}/healthz", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let _ = response.body().await;
    // The event stream over wss, through the TLS branch of `on_connect`.
    let (response, _socket) = client
        .ws(format!("{}/api/events", server.url()))
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    // A client that does not trust the CA is refused by TLS, not answered.
    assert!(
        awc::Client::builder()
            .connector(
                awc::Connector::new().rustls_0_23(Arc::new(
                    rustls::ClientConfig::builder_with_provider(Arc::new(
                        rustls::crypto::ring::default_provider()
                    ))
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
                ))
            )
            .finish()
            .get(format!("{}/healthz", server.url()))
            .send()
            .await
            .is_err()
    );
    server.stop(false).await;

    settings.tls = Some(ServerTlsFiles {
        cert,
        key: other_key,
    });
    match wsherd_server::serve(herd, &settings, ServerOptions::new()) {
        Err(ServeError::Tls(why)) => assert!(why.contains("do not fit together"), "{why}"),
        other => panic!("{other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn serve_refuses_an_address_beyond_loopback_without_a_token() {
    let settings = ServerSettings {
        listen: Some("0.0.0.0:0".parse().unwrap()),
        ..ServerSettings::default()
    };
    match wsherd_server::serve(Herd::new(), &settings, ServerOptions::new()) {
        Err(ServeError::Exposed(why)) => {
            assert!(why.contains("is not a loopback address"), "{why}")
        }
        other => panic!("nothing may be bound: {other:?}"),
    }
    match wsherd_server::serve(
        Herd::new(),
        &ServerSettings::default(),
        ServerOptions::new(),
    ) {
        Err(ServeError::NoListen) => {}
        other => panic!("{other:?}"),
    }
}
