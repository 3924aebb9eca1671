//! Tokens never reach the logs, at any level, wherever a request carries them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use actix_web::http::{StatusCode, header};
use common::*;
use wsherd::config::Token;
use wsherd_server::ServerOptions;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[actix_rt::test]
async fn tokens_in_headers_and_queries_never_reach_the_logs_at_any_level() {
    const RIGHT: &str = "r1ght-t0ken-9f3";
    const WRONG_HEADER: &str = "wr0ng-h3ader-7c1";
    const IN_QUERY: &str = "qu3ry-t0ken-5d2";
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let options = ServerOptions::new().token(Token::new(RIGHT).unwrap());
    assert!(!format!("{options:?}").contains(RIGHT), "{options:?}");
    let fixture = Fixture::start(vec![], options).await;
    let client = awc::Client::default();
    let mut statuses = Vec::new();
    for (path, bearer) in [
        (format!("/api/status?token={IN_QUERY}"), None),
        (format!("/api/status/feed?token={RIGHT}"), None),
        ("/api/status".to_owned(), Some(WRONG_HEADER)),
        ("/api/status".to_owned(), Some(RIGHT)),
        (format!("/metrics?token={IN_QUERY}"), Some(RIGHT)),
        (format!("/nope?token={IN_QUERY}"), Some(RIGHT)),
    ] {
        let mut request = client.get(fixture.url(&path));
        if let Some(token) = bearer {
            request = request.insert_header((header::AUTHORIZATION, format!("Bearer {token}")));
        }
        let mut response = request.send().await.unwrap();
        let _ = response.body().await;
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::NOT_FOUND
        ]
    );
    let refused = client
        .ws(fixture.url(&format!("/api/events?token={IN_QUERY}")))
        .connect()
        .await;
    assert!(refused.is_err());
    let (_, socket) = client
        .ws(fixture.url(&format!("/api/events?token={RIGHT}")))
        .connect()
        .await
        .unwrap();
    drop(socket);
    let (status, _) = fixture
        .request(
            client
                .post(fixture.url(&format!("/api/endpoints/feed/pause?token={IN_QUERY}")))
                .insert_header((header::AUTHORIZATION, format!("Bearer {RIGHT}"))),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    fixture.server.stop(true).await;

    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    for secret in [RIGHT, WRONG_HEADER, IN_QUERY] {
        assert!(!logs.contains(secret), "{secret} was logged:\n{logs}");
    }
    // The logs are there, and say what happened without the secrets.
    assert!(logs.contains("refused: wrong token"), "{logs}");
    assert!(logs.contains("GET \"/api/status\" -> 401"), "{logs}");
    assert!(logs.contains("pause requested over HTTP"), "{logs}");
}
