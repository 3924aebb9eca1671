//! The routes, driven over HTTP on 127.0.0.1 as an operator's tools would.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use actix_web::http::{StatusCode, header};
use common::*;
use serde_json::{Value, json};
use wsherd::config::{EndpointConfig, HerdConfig, HerdSettings, ServerSettings, Token};
use wsherd::prelude::*;
use wsherd_server::{PrometheusHandle, ServerOptions};
use wsherd_testkit::{Step, TestServer};

fn token(text: &str) -> Token {
    Token::new(text).unwrap()
}

#[actix_rt::test]
async fn health_and_readiness_follow_the_herd_and_its_required_endpoints() {
    let feed = TestServer::start(vec![]).unwrap();
    let mut endpoints = BTreeMap::new();
    endpoints.insert(
        EndpointName::new("feed").unwrap(),
        EndpointConfig::new(EndpointSpec::new(ConnectionConfig::new(feed.url("/")))).required(true),
    );
    let config = HerdConfig {
        settings: HerdSettings {
            workers: 1,
            ..HerdSettings::default()
        },
        endpoints,
        ..HerdConfig::default()
    };
    // Held until start: not healthy, not ready.
    let herd = Herd::from_config(config).unwrap();
    let states = states(&herd);
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerSettings::default()
    };
    // A token guards the API, never the probes.
    let options = ServerOptions::new().token(token("probe-t0ken"));
    let server = wsherd_server::serve(herd.clone(), &settings, options).unwrap();
    let client = awc::Client::default();
    let get = |path: &str| {
        let request = client.get(format!("{}{path}", server.url()));
        async move {
            let mut response = request.send().await.unwrap();
            let body: Value = response.json().await.unwrap();
            (response.status(), body)
        }
    };
    assert_eq!(
        get("/healthz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "not started"})
        )
    );
    assert_eq!(
        get("/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "not_live": ["feed"]})
        )
    );
    herd.start();
    wait_for_state(&states, "feed", "live", 1).await;
    assert_eq!(
        get("/healthz").await,
        (StatusCode::OK, json!({"status": "ok"}))
    );
    assert_eq!(
        get("/readyz").await,
        (StatusCode::OK, json!({"ready": true}))
    );
    // A required endpoint that cannot connect makes the herd unready, and only it is named.
    herd.add_endpoint(
        "spare",
        EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1:1/")),
    )
    .unwrap();
    assert_eq!(get("/readyz").await.0, StatusCode::OK, "not required yet");
    herd.set_required("spare", true).unwrap();
    assert_eq!(
        get("/readyz").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"ready": false, "not_live": ["spare"]})
        )
    );
    server.stop(false).await;
}

#[actix_rt::test]
async fn status_lists_every_endpoint_with_the_documented_fields_and_one_by_name() {
    let fixture = Fixture::start(
        vec![Step::stream(&["trade"], 3), Step::Echo(true)],
        ServerOptions::new(),
    )
    .await;
    fixture
        .herd
        .add_endpoint(
            // Every character an endpoint name may hold is at home in a path.
            "down_2-b",
            EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1:1/")).backoff(
                wsherd::BackoffPolicy {
                    initial: std::time::Duration::from_secs(3600),
                    max: std::time::Duration::from_secs(3600),
                    ..wsherd::BackoffPolicy::default()
                },
            ),
        )
        .unwrap();
    wait_for_state(&fixture.states, "down_2-b", "backoff", 1).await;
    // The three messages had no subscriber: dead letters, counted once the read turn ends.
    fixture.dead_letters.wait_for_count(3, WAIT).await.unwrap();
    let all = loop {
        let (status, all) = fixture.get("/api/status").await;
        assert_eq!(status, StatusCode::OK);
        if all[1]["dead_letters"] == 3 {
            break all;
        }
    };
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    let (down, feed) = (&all[0], &all[1]);
    assert_eq!(down["name"], "down_2-b");
    assert_eq!(down["state"], "backoff");
    assert!(
        down["last_error"].as_str().unwrap().contains("refused"),
        "{down}"
    );
    assert_eq!(feed["name"], "feed");
    assert_eq!(feed["state"], "live");
    assert_eq!(feed["messages_in"], 3);
    assert_eq!(feed["reconnects"], 0);
    assert_eq!(feed["attempt"], 0);
    assert_eq!(feed["last_error"], Value::Null);
    assert!(feed["since_ms"].is_u64() && feed["bytes_in"].as_u64().unwrap() > 0);
    for field in ["rtt_ms", "queue_depth", "messages_out"] {
        assert!(feed.get(field).is_some(), "{field}: {feed}");
    }
    let (status, one) = fixture.get("/api/status/feed").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["name"], "feed");
    assert_eq!(one["messages_in"], 3);
    let (status, one) = fixture.get("/api/status/down_2-b").await;
    assert_eq!((status, &one["state"]), (StatusCode::OK, &json!("backoff")));
    for unknown in [
        "/api/status/nope",
        "/api/status/UPPER",
        "/api/status/%2e%2e",
    ] {
        let (status, error) = fixture.get(unknown).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}");
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("no endpoint named"),
            "{error}"
        );
    }
}

#[actix_rt::test]
async fn controls_pause_resume_reconnect_and_stop_an_endpoint() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let (status, answer) = fixture.post("/api/endpoints/feed/pause", "").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer, json!({"endpoint": "feed", "action": "pause"}));
    fixture.until_state_shows("paused").await;
    let (status, _) = fixture.post("/api/endpoints/feed/resume", "").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_state(&fixture.states, "feed", "live", 2).await;
    let (status, _) = fixture.post("/api/endpoints/feed/reconnect", "{}").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for_state(&fixture.states, "feed", "live", 3).await;
    assert_eq!(
        fixture.feed.connections().len(),
        3,
        "paused, resumed, reconnected"
    );
    let (status, answer) = fixture
        .post("/api/endpoints/feed/stop", r#"{"reason": "maintenance"}"#)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        answer,
        json!({"endpoint": "feed", "action": "stop", "unsent": 0})
    );
    assert_eq!(
        fixture.get("/api/status/feed").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(
        fixture.herd.endpoints().is_empty(),
        "stop removes it from the herd"
    );
    let (status, error) = fixture.post("/api/endpoints/feed/resume", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error, json!({"error": "no endpoint named \"feed\""}));
}

#[actix_rt::test]
async fn errors_are_json_with_a_4xx_status_and_say_what_is_wrong() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    let client = awc::Client::default();
    let cases: Vec<(awc::ClientRequest, StatusCode, &str)> = vec![
        (
            client.get(fixture.url("/nope")),
            StatusCode::NOT_FOUND,
            "no route \"/nope\"",
        ),
        (
            client.get(fixture.url("/api/nope")),
            StatusCode::NOT_FOUND,
            "no route \"/api/nope\"",
        ),
        (
            client.post(fixture.url("/healthz")),
            StatusCode::METHOD_NOT_ALLOWED,
            "\"/healthz\" takes GET, not \"POST\"",
        ),
        (
            client.delete(fixture.url("/api/status")),
            StatusCode::METHOD_NOT_ALLOWED,
            "takes GET",
        ),
        (
            client.get(fixture.url("/api/endpoints/feed/pause")),
            StatusCode::METHOD_NOT_ALLOWED,
            "takes POST",
        ),
        (
            client.post(fixture.url("/api/endpoints/feed/explode")),
            StatusCode::NOT_FOUND,
            "no action \"explode\"; the actions are reconnect, pause, resume, stop",
        ),
        (
            client.post(fixture.url("/api/endpoints/nope/pause")),
            StatusCode::NOT_FOUND,
            "no endpoint named \"nope\"",
        ),
        (
            client.get(fixture.url("/api/events")),
            StatusCode::BAD_REQUEST,
            "\"/api/events\" is a WebSocket",
        ),
    ];
    for (request, expected, message) in cases {
        let what = format!("{} {}", request.get_method(), request.get_uri());
        let (status, error) = fixture.request(request, None).await;
        assert_eq!(status, expected, "{what}: {error}");
        let text = error["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not JSON: {error}"));
        assert!(text.contains(message), "{what}: {text}");
    }
    let mut response = client.post(fixture.url("/metrics")).send().await.unwrap();
    assert_eq!(response.headers().get(header::ALLOW).unwrap(), "GET");
    let _ = response.body().await;
    assert_eq!(
        fixture.herd.endpoint_status("feed").unwrap().state,
        EndpointState::Live
    );
}

#[actix_rt::test]
async fn a_token_guards_metrics_and_the_api_and_events_also_take_it_as_a_query_parameter() {
    const SECRET: &str = "s3cret-t0ken";
    let fixture = Fixture::start(vec![], ServerOptions::new().token(token(SECRET))).await;
    let client = awc::Client::default();
    for path in ["/metrics", "/api/status", "/api/status/feed"] {
        for (header_value, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("Bearer wrong".to_owned()), StatusCode::UNAUTHORIZED),
            (Some(format!("Basic {SECRET}")), StatusCode::UNAUTHORIZED),
            (Some(format!("Bearer {SECRET}")), StatusCode::OK),
        ] {
            let mut request = client.get(fixture.url(path));
            if let Some(value) = &header_value {
                request = request.insert_header((header::AUTHORIZATION, value.as_str()));
            }
            let mut response = request.send().await.unwrap();
            assert_eq!(response.status(), expected, "{path} with {header_value:?}");
            let body = response.body().await.unwrap();
            if expected == StatusCode::UNAUTHORIZED {
                assert_eq!(
                    response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
                    "Bearer realm=\"wsherd\""
                );
                let error: Value = serde_json::from_slice(&body).unwrap();
                assert!(
                    error["error"].as_str().unwrap().contains("Bearer"),
                    "{error}"
                );
                assert!(!String::from_utf8_lossy(&body).contains(SECRET));
            }
        }
        // Only /api/events takes the token in the query.
        let (status, _) = fixture.get(&format!("{path}?token={SECRET}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}?token=");
    }
    let (status, _) = fixture.post("/api/endpoints/feed/pause", "").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "controls need it too");
    assert_eq!(
        fixture.herd.endpoint_status("feed").unwrap().state,
        EndpointState::Live
    );
    for probe in ["/healthz", "/readyz"] {
        assert_eq!(fixture.get(probe).await.0, StatusCode::OK, "{probe}");
    }
    // A browser's WebSocket cannot set a header: ?token= is accepted on /api/events.
    let refused = client
        .ws(fixture.url("/api/events?token=wrong"))
        .connect()
        .await;
    assert!(
        matches!(refused, Err(awc::error::WsClientError::InvalidResponseStatus(s)) if s == StatusCode::UNAUTHORIZED),
        "a wrong token is refused before the upgrade"
    );
    let (response, _socket) = client
        .ws(fixture.url(&format!("/api/events?token={SECRET}")))
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let (response, _socket) = client
        .ws(fixture.url("/api/events"))
        .bearer_auth(SECRET)
        .connect()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
}

/// One recorder per test process: `metrics` takes a single global one.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| wsherd_server::install_prometheus().unwrap())
        .clone()
}

#[actix_rt::test]
async fn metrics_render_the_installed_recorder_and_the_herd_wide_gauges() {
    let options = ServerOptions::new()
        .prometheus(prometheus())
        .metrics_cache(std::time::Duration::ZERO);
    let fixture = Fixture::start(vec![], options).await;
    metrics::counter!("wsherd_server_test_scrapes_total").increment(2);
    let mut response = awc::Client::default()
        .get(fixture.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    for line in [
        "wsherd_server_test_scrapes_total 2",
        "# TYPE wsherd_governor_handshakes_in_flight gauge",
        "wsherd_governor_handshakes_in_flight 0",
        "wsherd_governor_waiting 0",
        // The herd's own figures, published fresh for the scrape.
        r#"wsherd_endpoint_up{endpoint="feed"} 1"#,
        r#"wsherd_endpoint_state{endpoint="feed",state="live"} 1"#,
        "wsherd_events_clients 0",
        "# TYPE wsherd_events_clients_cut_total counter",
        "wsherd_events_clients_cut_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    // Without a recorder, the server's own figures still show.
    let bare = Fixture::start(vec![], ServerOptions::new()).await;
    let text = String::from_utf8(
        awc::Client::default()
            .get(bare.url("/metrics"))
            .send()
            .await
            .unwrap()
            .body()
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    assert!(text.starts_with("# HELP wsherd_events_clients"), "{text}");
}

#[actix_rt::test]
async fn in_a_cluster_status_names_each_owner_and_api_cluster_and_metrics_show_who_owns_what() {
    let fixture = Fixture::start(vec![], ServerOptions::new()).await;
    // Outside a cluster: no owner field, and /api/cluster says there is none.
    let (_, all) = fixture.get("/api/status").await;
    assert!(all[0].get("owner").is_none(), "{all}");
    let (status, error) = fixture.get("/api/cluster").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "this herd is not in a cluster");

    fixture
        .herd
        .set_membership(Some(std::sync::Arc::new(FakeMembership)));
    let (_, all) = fixture.get("/api/status").await;
    assert_eq!(all[0]["name"], "feed");
    assert_eq!(all[0]["owner"], "m1");
    let (_, one) = fixture.get("/api/status/feed").await;
    assert_eq!(one["owner"], "m1");
    // Another member's endpoint is not here, and the answer says where it is.
    let (status, error) = fixture.get("/api/status/far").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        error["error"],
        "endpoint \"far\" runs on member \"m2\", not here"
    );
    let (status, error) = fixture.get("/api/status/loose").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["error"], "endpoint \"loose\" has no owner now");

    let (status, cluster) = fixture.get("/api/cluster").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        cluster,
        json!({
            "member": "m1",
            "members": ["m1", "m2"],
            "endpoints": [
                {"name": "far", "owner": "m2", "local": false},
                {"name": "feed", "owner": "m1", "local": true},
                {"name": "loose", "owner": null, "local": false},
            ],
            "counters": {"published": 7},
        })
    );

    let mut response = awc::Client::default()
        .get(fixture.url("/metrics"))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(response.body().await.unwrap().to_vec()).unwrap();
    for line in [
        "# TYPE wsherd_cluster_published_total counter",
        r#"wsherd_cluster_published_total{member="m1"} 7"#,
        r#"wsherd_cluster_members{member="m1"} 2"#,
        r#"wsherd_cluster_endpoints_local{member="m1"} 1"#,
        r#"wsherd_cluster_endpoints_unowned{member="m1"} 1"#,
        r#"wsherd_cluster_owner{endpoint="far",member="m2"} 1"#,
        r#"wsherd_cluster_owner{endpoint="feed",member="m1"} 1"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "no line {line:?} in\n{text}"
        );
    }
    assert!(!text.contains(r#"endpoint="loose""#), "{text}");
}
