//! Connecting through proxies (HTTP CONNECT, SOCKS5, real tinyproxy and microsocks), the
//! connect stage named when an attempt fails, and fresh credentials from `on_connect`.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{
    BackoffPolicy, ConnectHook, ConnectStage, ConnectTarget, Jitter, NetworkCause, ProxySetting,
    ProxyUrl, TlsFiles,
};
use wsherd_testkit::{
    ExternalProxy, Recorded, Recorder, Step, TestCerts, TestServer, TunnelBehaviour,
    TunnelProtocol, TunnelProxy,
};

#[derive(Debug, Deserialize)]
struct Tick {
    seq: u64,
}
wsherd::inbound!(Tick => "tick");

const PASSWORD: &str = "pr0xy-s3cret";

fn through(url: &str, proxy: &str) -> ConnectionConfig {
    ConnectionConfig::new(url).proxy(ProxySetting::Url(ProxyUrl::parse(proxy).unwrap()))
}

/// Quick retries, so a test sees the second attempt soon.
fn quick(config: ConnectionConfig) -> EndpointSpec {
    EndpointSpec::new(config).backoff(BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(50),
        jitter: Jitter::None,
        ..BackoffPolicy::default()
    })
}

fn ticks(herd: &Herd) -> Recorded<Delivery<Tick>> {
    let (addr, seen) = Recorder::<Delivery<Tick>>::start();
    herd.subscribe(addr.recipient());
    seen
}

async fn ticks_from(seen: &Recorded<Delivery<Tick>>, endpoint: &str, count: usize) -> Vec<u64> {
    seen.wait_for(WAIT, |all| {
        let mine: Vec<u64> = all
            .iter()
            .filter(|d| d.endpoint == endpoint)
            .map(|d| d.message.seq)
            .collect();
        (mine.len() >= count).then_some(mine)
    })
    .await
    .unwrap_or_else(|e| panic!("{endpoint} streamed too little: {e}"))
}

/// The reasons of `name`'s first `count` backoffs.
async fn backoffs(
    states: &Recorded<Delivery<StateEvent>>,
    name: &str,
    count: usize,
) -> Vec<EndReason> {
    reached(states, name, count, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    history(states, name)
        .into_iter()
        .filter_map(|s| match s {
            EndpointState::Backoff { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

#[actix_rt::test]
async fn a_ws_endpoint_behind_an_http_proxy_with_credentials_streams_through_the_tunnel() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 3)]).unwrap();
    let proxy = TunnelProxy::start(
        TunnelProtocol::HttpConnect,
        Some(("alice", PASSWORD)),
        TunnelBehaviour::Tunnel,
    )
    .unwrap();
    let herd = Herd::new();
    let seen = ticks(&herd);
    let config = through(
        &server.url("/feed"),
        &proxy.url("http", Some(("alice", PASSWORD))),
    );
    assert!(!format!("{config:?}").contains(PASSWORD));
    herd.add_endpoint("feed", config).unwrap();
    assert_eq!(ticks_from(&seen, "feed", 3).await, [0, 1, 2]);
    let requests = proxy.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].target, server.addr().to_string());
    assert!(requests[0].authorized);
    // The server saw the request as a direct client would send it.
    let log = &server.connections()[0];
    assert_eq!(log.path.as_deref(), Some("/feed"));
    assert_eq!(log.header("host"), Some(server.addr().to_string().as_str()));
}

#[actix_rt::test]
async fn a_wss_endpoint_behind_an_http_proxy_checks_the_servers_own_name_inside_the_tunnel() {
    // Valid for the name `localhost` only: a client that checked the proxy's address, or
    // sent no name, would be refused.
    let certs = TestCerts::generate_for(&[], &["localhost"]).unwrap();
    let server = TestServer::builder(vec![Step::stream(&["tick"], 2)])
        .tls(certs.server_config(false).unwrap())
        .start()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("wsherd-proxy-tls-{}", std::process::id()));
    let (ca, _, _) = certs.write_client_files(&dir).unwrap();
    let proxy = TunnelProxy::http().unwrap();
    let herd = Herd::new();
    let seen = ticks(&herd);
    let url = format!("wss://localhost:{}/secure", server.addr().port());
    let config = through(&url, &proxy.url("http", None)).tls(TlsFiles {
        ca_file: Some(ca),
        ..TlsFiles::default()
    });
    herd.add_endpoint("secure", config).unwrap();
    assert_eq!(ticks_from(&seen, "secure", 2).await, [0, 1]);
    assert_eq!(
        proxy.requests()[0].target,
        format!("localhost:{}", server.addr().port()),
        "the proxy was asked for the server by name"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[actix_rt::test]
async fn socks5h_hands_the_proxy_the_name_and_socks5_an_address_resolved_here() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let proxy = TunnelProxy::socks5().unwrap();
    let herd = Herd::new();
    let seen = ticks(&herd);
    let url = format!("ws://localhost:{}/", server.addr().port());
    herd.add_endpoint("remote", through(&url, &proxy.url("socks5h", None)))
        .unwrap();
    ticks_from(&seen, "remote", 1).await;
    herd.add_endpoint("local", through(&url, &proxy.url("socks5", None)))
        .unwrap();
    ticks_from(&seen, "local", 1).await;
    let requests = proxy.requests();
    assert_eq!(
        requests[0].target,
        format!("localhost:{}", server.addr().port())
    );
    assert!(requests[0].by_name);
    // `localhost` may resolve to ::1 first, where nothing listens: the proxy refuses that
    // address and the next one is asked for; the last request is the one that worked.
    let last = requests.last().unwrap();
    assert!(!last.by_name, "{requests:?}");
    assert_eq!(last.target, server.addr().to_string());
}

#[actix_rt::test]
async fn a_proxy_that_refuses_the_credentials_fails_the_endpoint_at_once_without_showing_them() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let http = TunnelProxy::start(
        TunnelProtocol::HttpConnect,
        Some(("alice", "right")),
        TunnelBehaviour::Tunnel,
    )
    .unwrap();
    let socks = TunnelProxy::start(
        TunnelProtocol::Socks5,
        Some(("alice", "right")),
        TunnelBehaviour::Tunnel,
    )
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let wrong = Some(("alice", PASSWORD));
    herd.add_endpoint(
        "http",
        quick(through(&server.url("/"), &http.url("http", wrong))),
    )
    .unwrap();
    herd.add_endpoint(
        "socks",
        quick(through(&server.url("/"), &socks.url("socks5h", wrong))),
    )
    .unwrap();
    herd.add_endpoint(
        "anonymous",
        quick(through(&server.url("/"), &http.url("http", None))),
    )
    .unwrap();
    for name in ["http", "socks", "anonymous"] {
        let reason = not_retried(&states, name).await;
        assert!(
            matches!(reason, EndReason::ProxyAuth { .. }),
            "{name}: {reason:?}"
        );
        assert_eq!(reason.stage(), Some(ConnectStage::Proxy));
        assert_eq!(reason.class(), "proxy");
        let shown = format!("{reason} {reason:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
    assert!(
        not_retried(&states, "anonymous")
            .await
            .to_string()
            .contains("no credentials")
    );
    assert_eq!(http.accepted(), 2, "one attempt each: a 407 is not retried");
    assert_eq!(socks.accepted(), 1);
    assert!(server.connections().is_empty());
    let status = format!("{:?} {}", herd.status(), herd.status_table());
    assert!(!status.contains(PASSWORD), "{status}");
}

#[actix_rt::test]
async fn a_proxy_that_answers_garbage_or_nothing_backs_off_and_says_so() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let garbage = TunnelProxy::start(
        TunnelProtocol::HttpConnect,
        None,
        TunnelBehaviour::Answer(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()),
    )
    .unwrap();
    let silent = TunnelProxy::start(TunnelProtocol::Socks5, None, TunnelBehaviour::Silent).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "garbage",
        quick(through(&server.url("/"), &garbage.url("http", None))),
    )
    .unwrap();
    // The proxy's silence is cut by the connect timeout, well before the handshake timeout.
    herd.add_endpoint(
        "silent",
        quick(
            through(&server.url("/"), &silent.url("socks5h", None))
                .connect_timeout(Duration::from_millis(200))
                .handshake_timeout(Duration::from_secs(30)),
        ),
    )
    .unwrap();
    let reasons = backoffs(&states, "garbage", 2).await;
    for reason in &reasons[..2] {
        assert!(
            matches!(reason, EndReason::ProxyFailed { reason, .. } if reason.contains("not HTTP")),
            "{reason:?}"
        );
    }
    let reasons = backoffs(&states, "silent", 2).await;
    assert!(
        matches!(&reasons[0], EndReason::ProxyFailed { reason, .. } if reason.contains("did not answer")),
        "{reasons:?}"
    );
    assert_eq!(reasons[0].stage(), Some(ConnectStage::Proxy));
}

#[actix_rt::test]
async fn an_unreachable_proxy_backs_off_with_its_network_cause() {
    let port = free_port();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "feed",
        quick(through(
            "ws://127.0.0.1:9/",
            &format!("http://bob:{PASSWORD}@127.0.0.1:{port}"),
        )),
    )
    .unwrap();
    let reasons = backoffs(&states, "feed", 2).await;
    assert!(
        matches!(
            &reasons[0],
            EndReason::ProxyFailed {
                cause: Some(NetworkCause::Refused),
                ..
            }
        ),
        "{reasons:?}"
    );
    let shown = reasons[0].to_string();
    assert!(
        shown.contains("http://***@127.0.0.1") && !shown.contains(PASSWORD),
        "{shown}"
    );
}

#[actix_rt::test]
async fn tinyproxy_and_microsocks_carry_endpoints_to_the_server() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 2)]).unwrap();
    let tinyproxy = ExternalProxy::tinyproxy(Some(("alice", "tiny-pass"))).unwrap();
    let microsocks = ExternalProxy::microsocks(Some(("alice", "socks-pass"))).unwrap();
    let herd = Herd::new();
    let seen = ticks(&herd);
    let states = states(&herd);
    herd.add_endpoint(
        "tinyproxy",
        through(
            &server.url("/"),
            &format!("http://alice:tiny-pass@{}", tinyproxy.addr()),
        ),
    )
    .unwrap();
    herd.add_endpoint(
        "microsocks",
        through(
            &server.url("/"),
            &format!("socks5h://alice:socks-pass@{}", microsocks.addr()),
        ),
    )
    .unwrap();
    assert_eq!(ticks_from(&seen, "tinyproxy", 2).await, [0, 1]);
    assert_eq!(ticks_from(&seen, "microsocks", 2).await, [0, 1]);
    // And a real proxy's refusal of wrong credentials stops the endpoint.
    herd.add_endpoint(
        "wrong",
        through(
            &server.url("/"),
            &format!("http://alice:nope@{}", tinyproxy.addr()),
        ),
    )
    .unwrap();
    let reason = not_retried(&states, "wrong").await;
    assert!(matches!(reason, EndReason::ProxyAuth { .. }), "{reason:?}");
}

#[actix_rt::test]
async fn the_on_connect_hook_gives_every_attempt_its_own_token() {
    // Each connection streams one tick and is closed for a restart (1012): reconnected at
    // once, with a new token.
    let server = TestServer::start(vec![
        Step::stream(&["tick"], 1),
        Step::Close {
            code: 1012,
            reason: "restart".into(),
        },
    ])
    .unwrap();
    let issued = Arc::new(AtomicUsize::new(0));
    let hook: ConnectHook = {
        let issued = Arc::clone(&issued);
        Arc::new(move |mut target: ConnectTarget| {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                // What a real hook does first: ask a key service, here after a pause.
                actix_rt::time::sleep(Duration::from_millis(5)).await;
                target.url.push_str(&format!("?listenKey=key-{n}"));
                target.set_header("Authorization", format!("Bearer token-{n}"));
                Ok(target)
            })
        })
    };
    let herd = Herd::new();
    let seen = ticks(&herd);
    herd.add_endpoint(
        "feed",
        quick(ConnectionConfig::new(server.url("/stream")).header("Authorization", "stale"))
            .on_connect(hook),
    )
    .unwrap();
    ticks_from(&seen, "feed", 3).await;
    let logs = server.connections();
    for (i, log) in logs.iter().take(3).enumerate() {
        let n = i + 1;
        assert_eq!(
            log.path.as_deref(),
            Some(format!("/stream?listenKey=key-{n}").as_str())
        );
        assert_eq!(
            log.header("authorization"),
            Some(format!("Bearer token-{n}").as_str())
        );
    }
}

#[actix_rt::test]
async fn a_failing_hook_backs_off_and_a_hanging_one_is_cut_by_the_handshake_timeout() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 1)]).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let failing: ConnectHook = {
        let calls = Arc::clone(&calls);
        Arc::new(move |target| {
            // Fails twice, then lets the attempt through.
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                if n < 2 {
                    Err(format!("the key service answered 503 (call {n})"))
                } else {
                    Ok(target)
                }
            })
        })
    };
    let hanging: ConnectHook = Arc::new(|_| Box::pin(std::future::pending()));
    let herd = Herd::new();
    let states = states(&herd);
    let seen = ticks(&herd);
    herd.add_endpoint(
        "failing",
        quick(ConnectionConfig::new(server.url("/"))).on_connect(failing),
    )
    .unwrap();
    herd.add_endpoint(
        "hanging",
        quick(ConnectionConfig::new(server.url("/")).handshake_timeout(Duration::from_millis(200)))
            .on_connect(hanging),
    )
    .unwrap();
    ticks_from(&seen, "failing", 1).await;
    let reasons = backoffs(&states, "failing", 2).await;
    assert_eq!(
        reasons[..2],
        [
            EndReason::HookFailed {
                reason: "the key service answered 503 (call 0)".into()
            },
            EndReason::HookFailed {
                reason: "the key service answered 503 (call 1)".into()
            },
        ]
    );
    let reasons = backoffs(&states, "hanging", 1).await;
    assert_eq!(
        reasons[0],
        EndReason::HandshakeTimeout {
            after: Duration::from_millis(200),
            stage: ConnectStage::Prepare,
        }
    );
    // A hook that hangs is not a network outage.
    assert_eq!(reasons[0].network_cause(), None);
}

#[actix_rt::test]
async fn a_connect_to_a_port_nobody_listens_on_names_the_tcp_stage() {
    let port = free_port();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "feed",
        quick(ConnectionConfig::new(format!("ws://127.0.0.1:{port}/"))),
    )
    .unwrap();
    let reasons = backoffs(&states, "feed", 1).await;
    assert_eq!(reasons[0].stage(), Some(ConnectStage::Tcp));
    assert_eq!(reasons[0].network_cause(), Some(NetworkCause::Refused));
}

#[actix_rt::test]
async fn a_server_that_takes_the_connection_and_closes_it_unanswered_fails_the_upgrade_stage() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Reads the upgrade request, then closes without a word.
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
        }
    });
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "feed",
        quick(ConnectionConfig::new(format!("ws://{addr}/"))),
    )
    .unwrap();
    let reasons = backoffs(&states, "feed", 1).await;
    assert!(
        matches!(reasons[0], EndReason::UpgradeFailed { .. }),
        "{reasons:?}"
    );
    assert_eq!(reasons[0].stage(), Some(ConnectStage::Upgrade));
}
