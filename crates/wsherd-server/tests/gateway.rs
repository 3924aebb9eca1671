//! The fan-out gateway with real downstream clients: every protocol line, both overflow
//! policies, and its refusals (token, origin, sessions, topics).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::time::Instant;

use actix_codec::Decoder;
use awc::ws::{Frame, Message};
use bytes::BytesMut;
use common::{WAIT, states, wait_for_state};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsherd::config::{ConfigLoader, ServerSettings};
use wsherd::prelude::*;
use wsherd_server::{RunningServer, ServerOptions};
use wsherd_testkit::{Recorded, Script, Step, TestServer};

type Client = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

/// A herd with endpoint `feed` (running `script`) and `[gateway]` (`extra` keys on top of its
/// path), served on 127.0.0.1.
struct Gateway {
    herd: Herd,
    feed: TestServer,
    states: Recorded<Delivery<StateEvent>>,
    server: RunningServer,
    _file: TempFile,
}

struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Gateway {
    async fn start(script: Script, extra: &str) -> Gateway {
        let feed = TestServer::start(script).unwrap();
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = TempFile(
            std::env::temp_dir().join(format!("wsherd-gateway-{}-{n}.toml", std::process::id())),
        );
        std::fs::write(
            &file.0,
            format!(
                "[endpoints.feed]\nurl = \"{}\"\nkind = \"type\"\n\n[gateway]\npath = \"/feed\"\n{extra}\n",
                feed.url("/upstream")
            ),
        )
        .unwrap();
        let config = ConfigLoader::new()
            .file(&file.0)
            .environment(Default::default())
            .load()
            .unwrap();
        let gateway = config.gateway.clone().unwrap();
        let herd = Herd::from_config(config).unwrap();
        let states = states(&herd);
        herd.start();
        let settings = ServerSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerSettings::default()
        };
        let server = wsherd_server::serve(
            herd.clone(),
            &settings,
            ServerOptions::new().gateway(gateway),
        )
        .unwrap();
        Gateway {
            herd,
            feed,
            states,
            server,
            _file: file,
        }
    }

    fn url(&self, query: &str) -> String {
        format!("{}/feed{query}", self.server.url())
    }

    async fn connect(&self) -> Client {
        let (_, client) = awc::Client::default()
            .ws(self.url(""))
            .connect()
            .await
            .unwrap();
        client
    }

    /// A figure of the server's own in `/metrics`.
    async fn metric(&self, name: &str) -> u64 {
        let mut answer = awc::Client::default()
            .get(format!("{}/metrics", self.server.url()))
            .send()
            .await
            .unwrap();
        let body = answer.body().await.unwrap();
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|line| line.strip_prefix(&format!("{name} ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    }

    /// The upgrade's status with `header`.
    async fn refused(&self, query: &str, header: Option<(&str, &str)>) -> u16 {
        let mut request = awc::Client::default().ws(self.url(query));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        match request.connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
            Ok(_) => panic!("accepted"),
            Err(other) => panic!("{other}"),
        }
    }
}

async fn request(client: &mut Client, request: Value) {
    client
        .send(Message::Text(request.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame; `Err` with the close (code, reason) if the socket closed.
async fn next_json(client: &mut Client) -> Result<Value, Option<(u16, String)>> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "nothing in time");
        match client.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(serde_json::from_slice(&text).unwrap()),
            Some(Ok(Frame::Close(reason))) => {
                return Err(reason.map(|r| (u16::from(r.code), r.description.unwrap_or_default())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

/// The next text frame, as text.
async fn next_text(client: &mut Client) -> String {
    loop {
        match client.next().await {
            Some(Ok(Frame::Text(text))) => return String::from_utf8(text.to_vec()).unwrap(),
            Some(Ok(_)) => {}
            other => panic!("no text: {other:?}"),
        }
    }
}

async fn subscribe(client: &mut Client, topics: &[&str]) {
    request(
        client,
        json!({"op": "subscribe", "topics": topics, "id": 1}),
    )
    .await;
    assert_eq!(
        next_json(client).await.unwrap(),
        json!({"op": "ack", "id": 1, "topics": topics})
    );
}

/// Steps that send `texts` after the client subscribed (the feed waits for a message first:
/// the gateway client subscribes, then the test tells the feed to go by sending to it).
fn after_go(texts: &[&str]) -> Script {
    let mut script = vec![Step::WaitForMessages(1)];
    script.extend(texts.iter().map(|text| Step::text(*text)));
    script
}

#[actix_rt::test]
async fn a_subscriber_gets_its_topics_upstream_text_byte_for_byte_and_nothing_else() {
    let trade = r#"{ "type" : "trade", "p": 1.50 }"#;
    let gateway = Gateway::start(
        after_go(&[
            r#"{"type":"book","x":1}"#,
            trade,
            r#"{"type":"quote","bid":2}"#,
        ]),
        "allow_send = [\"feed\"]",
    )
    .await;
    wait_for_state(&gateway.states, "feed", "live", 1).await;
    let mut trades = gateway.connect().await;
    subscribe(&mut trades, &["feed/trade"]).await;
    let mut quotes = gateway.connect().await;
    subscribe(&mut quotes, &["*/quote"]).await;
    gateway.herd.send("feed", "go").await.unwrap();
    assert_eq!(
        next_text(&mut trades).await,
        format!(r#"{{"endpoint":"feed","kind":"trade","data":{trade}}}"#)
    );
    let quote = next_json(&mut quotes).await.unwrap();
    assert_eq!(quote["kind"], "quote");
    assert_eq!(quote["data"], json!({"type": "quote", "bid": 2}));
    // Unsubscribed, nothing more comes; the session still answers.
    request(
        &mut trades,
        json!({"op": "unsubscribe", "topics": ["feed/trade"], "id": "u"}),
    )
    .await;
    assert_eq!(
        next_json(&mut trades).await.unwrap(),
        json!({"op": "ack", "id": "u", "topics": ["feed/trade"]})
    );
}

#[actix_rt::test]
async fn state_topics_carry_the_state_lines_of_wsherd_run() {
    let gateway = Gateway::start(vec![], "").await;
    wait_for_state(&gateway.states, "feed", "live", 1).await;
    let mut client = gateway.connect().await;
    subscribe(&mut client, &["state/feed"]).await;
    gateway.herd.pause("feed").unwrap();
    let line = next_json(&mut client).await.unwrap();
    assert_eq!(line["endpoint"], "feed");
    assert_eq!(line["event"], "state");
    assert_eq!(line["state"], "paused");
}

#[actix_rt::test]
async fn a_send_to_an_allowed_endpoint_is_acknowledged_with_its_outcome_and_others_are_refused() {
    let gateway = Gateway::start(vec![], "allow_send = [\"feed\"]").await;
    wait_for_state(&gateway.states, "feed", "live", 1).await;
    let mut client = gateway.connect().await;
    request(
        &mut client,
        json!({"op": "send", "endpoint": "feed", "data": {"op": "subscribe"}, "id": 2}),
    )
    .await;
    let ack = next_json(&mut client).await.unwrap();
    assert_eq!(ack["op"], "ack", "{ack}");
    assert_eq!(ack["id"], 2);
    assert!(
        ["writing", "queued"].contains(&ack["status"].as_str().unwrap()),
        "{ack}"
    );
    let received = gateway.feed.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some(r#"{"op":"subscribe"}"#));
    request(
        &mut client,
        json!({"op": "send", "endpoint": "other", "data": "x", "id": 3}),
    )
    .await;
    let refused = next_json(&mut client).await.unwrap();
    assert_eq!(refused["op"], "error");
    assert_eq!(refused["id"], 3);
    assert!(refused["error"].as_str().unwrap().contains("allow_send"));
}

#[actix_rt::test]
async fn malformed_requests_get_errors_and_the_session_goes_on() {
    let gateway = Gateway::start(vec![], "max_topics = 2").await;
    let mut client = gateway.connect().await;
    let cases = [
        (
            json!("not an object"),
            Value::Null,
            "a request is a JSON object",
        ),
        (json!({"id": 4}), json!(4), "no \"op\""),
        (json!({"op": "dance", "id": 5}), json!(5), "unknown op"),
        (json!({"op": "subscribe", "id": 6}), json!(6), "\"topics\""),
        (
            json!({"op": "subscribe", "topics": ["a b/c"], "id": 7}),
            json!(7),
            "whitespace",
        ),
        (
            json!({"op": "subscribe", "topics": ["a/1", "a/2", "a/3"], "id": 8}),
            json!(8),
            "at most 2 topics",
        ),
    ];
    for (sent, id, says) in cases {
        request(&mut client, sent.clone()).await;
        let error = next_json(&mut client).await.unwrap();
        assert_eq!(error["op"], "error", "{sent}");
        assert_eq!(error["id"], id, "{sent}");
        assert!(
            error["error"].as_str().unwrap().contains(says),
            "{sent}: {error}"
        );
    }
    client
        .send(Message::Text("{not json".into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut client).await.unwrap()["op"], "error");
    // Nothing of the refused requests was applied; a good one still works.
    subscribe(&mut client, &["a/1", "a/2"]).await;
}

#[actix_rt::test]
async fn the_token_origins_and_max_sessions_refuse_before_the_upgrade() {
    let gateway = Gateway::start(
        vec![],
        "token = \"gate-token\"\nmax_sessions = 1\nallowed_origins = [\"http://app.local:8080\"]",
    )
    .await;
    assert_eq!(gateway.refused("", None).await, 401);
    assert_eq!(
        gateway
            .refused("?token=gate-token", Some(("origin", "http://evil.example")))
            .await,
        403
    );
    let (_, _first) = awc::Client::default()
        .ws(gateway.url("?token=gate-token"))
        .header("origin", "http://app.local:8080")
        .connect()
        .await
        .unwrap();
    assert_eq!(gateway.refused("?token=gate-token", None).await, 503);
}

/// A client that subscribes to `topic` by hand, reads the ack and then nothing more.
async fn stalled_client(gateway: &Gateway, topic: &str) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(gateway.server.addrs()[0])
        .await
        .unwrap();
    stream
        .write_all(
            b"GET /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
              Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    let request = json!({"op": "subscribe", "topics": [topic], "id": 1}).to_string();
    let mut frame = BytesMut::new();
    actix_codec::Encoder::encode(
        &mut awc::ws::Codec::new().client_mode(),
        Message::Text(request.into()),
        &mut frame,
    )
    .unwrap();
    stream.write_all(&frame).await.unwrap();
    // Read up to the ack, so the subscription is in place before the feed starts (sessions
    // run on the server's workers: without it, a loaded machine could subscribe it late).
    let mut codec = awc::ws::Codec::new().client_mode();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 1024];
    loop {
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Text(text)) => {
                let value: Value = serde_json::from_slice(&text).unwrap();
                assert_eq!(value["op"], "ack", "{value}");
                break;
            }
            Some(_) => {}
            None => {
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed before the ack");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
    stream
}

/// Counts the feed's messages at a reading client until `count` arrived.
async fn read_all(client: &mut Client, count: usize) {
    let mut seen = 0;
    while seen < count {
        let message = next_json(client).await.unwrap();
        if message["kind"] == "trade" {
            seen += 1;
        }
    }
}

/// Messages of about 2 KB each, 20 MB in all (more than the kernel's socket buffers hold for
/// a client that reads nothing, so the gateway's own bound is what holds), paced in bursts of
/// 20 KB a reading client takes at once.
const BURST: u64 = 10_000;

fn burst() -> Script {
    let mut script = vec![Step::WaitForMessages(1)];
    for chunk in 0..BURST / 10 {
        script.push(Step::Stream {
            kind_field: "type".into(),
            kinds: vec!["trade".into()],
            first_seq: chunk * 10,
            count: 10,
            padding: 2000,
        });
        script.push(Step::Pause(std::time::Duration::from_millis(5)));
    }
    script
}

#[actix_rt::test]
async fn a_client_that_stops_reading_loses_its_oldest_frames_is_told_so_and_slows_nobody() {
    let gateway =
        Gateway::start(burst(), "max_buffer = \"1MiB\"\noverflow = \"drop_oldest\"").await;
    wait_for_state(&gateway.states, "feed", "live", 1).await;
    let mut slow = stalled_client(&gateway, "feed/trade").await;
    let mut fast = gateway.connect().await;
    subscribe(&mut fast, &["feed/trade"]).await;
    gateway.herd.send("feed", "go").await.unwrap();
    // The reading client gets every message while the other reads nothing.
    read_all(&mut fast, BURST as usize).await;
    // Now the slow one reads: what fitted, then how much it missed.
    let mut codec = awc::ws::Codec::new().client_mode().max_size(1 << 20);
    let mut buf = BytesMut::new();
    let mut chunk = vec![0u8; 64 << 10];
    let deadline = Instant::now() + WAIT;
    let dropped = loop {
        assert!(Instant::now() < deadline, "never told what it missed");
        match codec.decode(&mut buf).unwrap() {
            Some(Frame::Text(text)) => {
                let value: Value = serde_json::from_slice(&text).unwrap();
                if value["op"] == "dropped" {
                    break value["count"].as_u64().unwrap();
                }
            }
            Some(_) => {}
            None => {
                let n = slow.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed");
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    };
    assert!(dropped > 0 && dropped < BURST, "{dropped}");
    assert!(gateway.metric("wsherd_gateway_dropped_total").await >= dropped);
    assert_eq!(gateway.metric("wsherd_gateway_sessions").await, 2);
}

#[actix_rt::test]
async fn with_overflow_disconnect_a_client_that_stops_reading_is_closed_and_slows_nobody() {
    let gateway = Gateway::start(burst(), "max_buffer = \"1MiB\"\noverflow = \"disconnect\"").await;
    wait_for_state(&gateway.states, "feed", "live", 1).await;
    let mut slow = stalled_client(&gateway, "feed/trade").await;
    let mut fast = gateway.connect().await;
    subscribe(&mut fast, &["feed/trade"]).await;
    gateway.herd.send("feed", "go").await.unwrap();
    read_all(&mut fast, BURST as usize).await;
    // The slow client's connection ends: a Close 1013 "slow consumer" if it got that far,
    // else the cut; either way its stream ends.
    let mut sink = vec![0u8; 64 << 10];
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "the slow client was never closed"
        );
        match slow.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    assert_eq!(
        gateway.herd.endpoint_status("feed").unwrap().state.name(),
        "live",
        "the feed went on"
    );
    assert_eq!(
        gateway.metric("wsherd_gateway_slow_consumers_total").await,
        1
    );
}

#[actix_rt::test]
async fn ten_thousand_requests_in_one_session_are_each_answered_in_order() {
    let gateway = Gateway::start(vec![], "").await;
    let client = gateway.connect().await;
    let (mut sink, mut stream) = client.split();
    const REQUESTS: u64 = 10_000;
    // Written while the answers are read: the session reads requests only as fast as its
    // answers go out.
    let writer = actix_rt::spawn(async move {
        for id in 0..REQUESTS {
            let request = json!({"op": "subscribe", "topics": ["feed/trade"], "id": id});
            sink.send(Message::Text(request.to_string().into()))
                .await
                .unwrap();
        }
        sink
    });
    let mut next = 0;
    let deadline = Instant::now() + WAIT;
    while next < REQUESTS {
        assert!(Instant::now() < deadline, "answered {next} of {REQUESTS}");
        match stream.next().await {
            Some(Ok(Frame::Text(text))) => {
                let answer: Value = serde_json::from_slice(&text).unwrap();
                assert_eq!(answer["op"], "ack", "{answer}");
                assert_eq!(answer["id"], next);
                next += 1;
            }
            Some(Ok(_)) => {}
            other => panic!("the session ended: {other:?}"),
        }
    }
    let _sink = writer.await.unwrap();
}

#[actix_rt::test]
async fn a_frame_over_64_kib_closes_the_session_with_1009() {
    let gateway = Gateway::start(vec![], "").await;
    let mut client = gateway.connect().await;
    let huge = json!({"op": "subscribe", "topics": ["x".repeat(100 << 10)], "id": 1});
    client
        .send(Message::Text(huge.to_string().into()))
        .await
        .unwrap();
    let closed = next_json(&mut client).await.unwrap_err().unwrap();
    assert_eq!(closed.0, 1009, "{closed:?}");
    // Others are untouched.
    let mut other = gateway.connect().await;
    subscribe(&mut other, &["feed/trade"]).await;
}
