//! Binary messages a server compresses itself (`decompress`): inflated under the message cap,
//! then routed as text; bombs and garbage end the socket with the right code.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::io::Write;

use bytes::Bytes;
use common::*;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Deserialize;
use wsherd::Decompress;
use wsherd::prelude::*;
use wsherd_testkit::{Recorded, Recorder, Step, TestServer};

#[derive(Debug, Deserialize)]
struct Trade {
    price: String,
}
wsherd::inbound!(Trade => "trade");

fn trade(price: u32) -> String {
    format!(r#"{{"type":"trade","price":"{price}"}}"#)
}

fn gzip(data: &[u8]) -> Bytes {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    Bytes::from(encoder.finish().unwrap())
}

/// `texts` as one zlib stream, each ending with a sync flush.
fn zlib_stream(texts: &[String]) -> Vec<Bytes> {
    let mut compress = flate2::Compress::new(Compression::default(), true);
    texts
        .iter()
        .map(|text| {
            let mut out = Vec::with_capacity(text.len() + 64);
            compress
                .compress_vec(text.as_bytes(), &mut out, flate2::FlushCompress::Sync)
                .unwrap();
            Bytes::from(out)
        })
        .collect()
}

fn trades(herd: &Herd) -> Recorded<Delivery<Trade>> {
    let (addr, seen) = Recorder::<Delivery<Trade>>::start();
    herd.subscribe(addr.recipient());
    seen
}

async fn prices(seen: &Recorded<Delivery<Trade>>, count: usize) -> Vec<String> {
    seen.wait_for(WAIT, |all| {
        (all.len() >= count).then(|| all.iter().map(|d| d.message.price.clone()).collect())
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn gzip_messages_are_inflated_and_delivered_as_typed_values() {
    let server = TestServer::start(vec![
        Step::Binary(gzip(trade(1).as_bytes())),
        Step::Binary(gzip(trade(2).as_bytes())),
    ])
    .unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    herd.add_endpoint(
        "gzip",
        ConnectionConfig::new(server.url("/")).decompress(Decompress::Gzip),
    )
    .unwrap();
    assert_eq!(prices(&seen, 2).await, ["1", "2"]);
    let status = herd.status();
    let wire: u64 = [trade(1), trade(2)]
        .iter()
        .map(|t| gzip(t.as_bytes()).len() as u64)
        .sum();
    assert_eq!(status[0].stats.bytes_in, wire, "bytes_in counts the wire");
}

#[actix_rt::test]
async fn a_zlib_stream_split_over_binary_messages_is_delivered_in_order() {
    let texts: Vec<String> = (1..=3).map(trade).collect();
    let frames = zlib_stream(&texts);
    // The second message arrives in two parts; only the second part ends with the flush.
    let (head, tail) = frames[1].split_at(2);
    let server = TestServer::start(vec![
        Step::Binary(frames[0].clone()),
        Step::Binary(Bytes::copy_from_slice(head)),
        Step::Binary(Bytes::copy_from_slice(tail)),
        Step::Binary(frames[2].clone()),
    ])
    .unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    herd.add_endpoint(
        "chat",
        ConnectionConfig::new(server.url("/")).decompress(Decompress::ZlibStream),
    )
    .unwrap();
    assert_eq!(prices(&seen, 3).await, ["1", "2", "3"]);
}

#[actix_rt::test]
async fn a_compression_bomb_ends_the_socket_with_1009_after_at_most_the_cap() {
    // 50 MB of zeros, about 50 KB on the wire.
    let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
    let server = TestServer::start(vec![Step::Binary(bomb)]).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint(
        "bomb",
        ConnectionConfig::new(server.url("/"))
            .decompress(Decompress::Gzip)
            .max_message_size(1024 * 1024),
    )
    .unwrap();
    match closed(&events, "bomb").await {
        EndReason::LocalClose { code, .. } => panic!("ended as a plain close {code}"),
        EndReason::MessageTooLarge { size, limit } => {
            assert_eq!(limit, 1024 * 1024);
            assert!(size <= limit + 1, "inflated {size}");
        }
        other => panic!("{other:?}"),
    }
    let close = server
        .wait_for(WAIT, |logs| logs.first().and_then(|log| log.close.clone()))
        .await
        .unwrap();
    assert_eq!(close.0, 1009);
}

#[actix_rt::test]
async fn garbage_in_a_compressed_endpoint_ends_the_socket_with_1007() {
    let server =
        TestServer::start(vec![Step::Binary(Bytes::from_static(b"plain, not gzip"))]).unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint(
        "broken",
        ConnectionConfig::new(server.url("/")).decompress(Decompress::Gzip),
    )
    .unwrap();
    let reason = closed(&events, "broken").await;
    assert!(
        matches!(&reason, EndReason::InvalidCompression { reason } if reason.starts_with("gzip")),
        "{reason:?}"
    );
    assert_eq!(reason.close_code(), Some(CloseCode::INVALID_PAYLOAD));
}

// ---- permessage-deflate (RFC 7692) ----

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

use wsherd::{DeflateOffer, FailReason};
use wsherd_testkit::{RawServer, RawStep, deflated, frame, frame_with};

#[derive(Debug, Deserialize)]
struct Seq {
    seq: u64,
}
wsherd::inbound!(Seq => "trade");

const AGREED: &str = "Sec-WebSocket-Extensions: permessage-deflate";

fn offering(url: String) -> ConnectionConfig {
    ConnectionConfig::new(url).compression(DeflateOffer::default())
}

#[actix_rt::test]
async fn compressed_frames_whole_and_fragmented_are_inflated_and_the_offer_keeps_no_client_context()
{
    let two = deflated(trade(8).as_bytes());
    let (head, tail) = two.split_at(two.len() / 2);
    let server = RawServer::start(vec![
        RawStep::HandshakeWithHeaders(vec![AGREED.into()]),
        // FIN | RSV1 | text.
        RawStep::WriteDeflated(trade(7)),
        // RSV1 | text without FIN, then a continuation (RSV1 clear) with FIN.
        RawStep::Write(frame_with(0x41, None, head)),
        // A control frame may come between the fragments of a compressed message.
        RawStep::Write(frame(0x9, b"ping")),
        RawStep::Write(frame_with(0x80, None, tail)),
        // An uncompressed message between compressed ones is fine too.
        RawStep::Write(frame(0x1, trade(9).as_bytes())),
        RawStep::Drain,
    ])
    .unwrap();
    let herd = Herd::new();
    let seen = trades(&herd);
    herd.add_endpoint("deflate", offering(server.url()))
        .unwrap();
    assert_eq!(prices(&seen, 3).await, ["7", "8", "9"]);
    let request = server.connections()[0].request.to_ascii_lowercase();
    assert!(
        request.contains(
            "sec-websocket-extensions: permessage-deflate; client_no_context_takeover; client_max_window_bits"
        ),
        "{request}"
    );
}

#[actix_rt::test]
async fn a_deflate_bomb_ends_the_socket_with_1009_and_rsv1_unnegotiated_is_a_protocol_error() {
    let bomb = deflated(&vec![0u8; 50 * 1024 * 1024]);
    assert!(bomb.len() < 100 * 1024);
    let bombing = RawServer::start(vec![
        RawStep::HandshakeWithHeaders(vec![AGREED.into()]),
        RawStep::Write(frame_with(0xC2, None, &bomb)),
        RawStep::Drain,
    ])
    .unwrap();
    // The server sets RSV1 though nothing was negotiated.
    let unasked = RawServer::start(vec![
        RawStep::Handshake,
        RawStep::Write(frame_with(0xC1, None, &deflated(b"{}"))),
        RawStep::Drain,
    ])
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("bomb", offering(bombing.url()).max_message_size(1 << 20))
        .unwrap();
    herd.add_endpoint("unasked", ConnectionConfig::new(unasked.url()))
        .unwrap();
    match closed(&events, "bomb").await {
        EndReason::MessageTooLarge { size, limit } => {
            assert_eq!(limit, 1 << 20);
            assert!(size <= limit + 1, "inflated {size}");
        }
        other => panic!("{other:?}"),
    }
    let reason = closed(&events, "unasked").await;
    assert_eq!(reason.close_code(), Some(CloseCode::PROTOCOL), "{reason:?}");
}

#[actix_rt::test]
async fn an_answer_the_offer_does_not_allow_fails_the_endpoint_without_retrying() {
    let herd = Herd::new();
    let states = states(&herd);
    let mut servers = Vec::new();
    for (name, answer, offer) in [
        (
            "unoffered",
            "Sec-WebSocket-Extensions: x-webkit-deflate-frame",
            true,
        ),
        (
            "window",
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=99",
            true,
        ),
        ("uninvited", AGREED, false),
    ] {
        let server = RawServer::start(vec![
            RawStep::HandshakeWithHeaders(vec![answer.into()]),
            RawStep::Drain,
        ])
        .unwrap();
        let config = if offer {
            offering(server.url())
        } else {
            ConnectionConfig::new(server.url())
        };
        herd.add_endpoint(name, config).unwrap();
        servers.push(server);
    }
    for name in ["unoffered", "window", "uninvited"] {
        match reached(&states, name, 1, |s| {
            matches!(s, EndpointState::Failed { .. })
        })
        .await
        {
            EndpointState::Failed {
                reason: FailReason::NotRetryable(EndReason::ExtensionInvalid { reason }),
            } => assert!(!reason.is_empty()),
            other => panic!("{name}: {other:?}"),
        }
    }
    for server in &servers {
        assert_eq!(server.connections().len(), 1, "not retried");
    }
}

/// python websockets (Debian's python3-websockets, installed by scripts/test) serving
/// permessage-deflate: a compressor that is not ours.
struct PythonServer {
    child: Child,
    port: u16,
    lines: BufReader<ChildStdout>,
}

impl PythonServer {
    fn start(args: &[&str]) -> PythonServer {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/deflate_server.py"
        );
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("/usr/bin/python3 runs: run the tests with scripts/test");
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        lines.read_line(&mut first).unwrap();
        let port = first.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the python server did not start ({first:?}): scripts/test installs python3-websockets"
            )
        });
        PythonServer { child, port, lines }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    /// The extensions the server says it negotiated for its first connection.
    fn negotiated(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        line
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn seqs(seen: &Recorded<Delivery<Seq>>, count: usize) -> Vec<u64> {
    seen.wait_for(WAIT, |all| {
        (all.len() >= count).then(|| all.iter().map(|d| d.message.seq).collect())
    })
    .await
    .unwrap()
}

#[actix_rt::test]
async fn python_websockets_compressing_with_context_takeover_is_read_message_for_message() {
    let mut python = PythonServer::start(&["50"]);
    let herd = Herd::new();
    let (addr, seen) = Recorder::<Delivery<Seq>>::start();
    herd.subscribe(addr.recipient());
    herd.add_endpoint("python", offering(python.url())).unwrap();
    assert_eq!(seqs(&seen, 50).await, (0..50).collect::<Vec<_>>());
    assert!(python.negotiated().contains("PerMessageDeflate"));
    // Compressed, the 50 messages took far fewer bytes than their text.
    let status = herd.status();
    assert!(
        status[0].stats.bytes_in < 50 * 150 / 4,
        "bytes in: {}",
        status[0].stats.bytes_in
    );
}

#[actix_rt::test]
async fn python_websockets_without_context_takeover_and_with_a_small_window_is_read_too() {
    let mut python = PythonServer::start(&["30", "no_context_takeover", "max_window_bits=10"]);
    let herd = Herd::new();
    let (addr, seen) = Recorder::<Delivery<Seq>>::start();
    herd.subscribe(addr.recipient());
    let offer = DeflateOffer {
        no_context_takeover: true,
        server_max_window_bits: Some(10),
        ..DeflateOffer::default()
    };
    let events = events(&herd);
    herd.add_endpoint(
        "python",
        ConnectionConfig::new(python.url()).compression(offer),
    )
    .unwrap();
    let agreed = events
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|event| match &*event.message {
                ConnectionEvent::Open { compression, .. } => Some(*compression),
                _ => None,
            })
        })
        .await
        .unwrap()
        .expect("python agreed to permessage-deflate");
    assert!(agreed.server_no_context_takeover);
    assert_eq!(agreed.server_max_window_bits, 10);
    assert_eq!(seqs(&seen, 30).await, (0..30).collect::<Vec<_>>());
    assert!(python.negotiated().contains("PerMessageDeflate"));
}

#[actix_rt::test]
async fn large_messages_go_out_compressed_and_small_ones_as_they_are() {
    let server = RawServer::start(vec![
        RawStep::HandshakeWithHeaders(vec![AGREED.into()]),
        RawStep::Drain,
    ])
    .unwrap();
    let herd = Herd::new();
    let events = events(&herd);
    herd.add_endpoint("out", offering(server.url())).unwrap();
    opened(&events, "out").await;
    let large = format!(
        r#"{{"op":"subscribe","args":[{}]}}"#,
        "\"trades\",".repeat(300)
    );
    herd.send("out", Outbound::Text(large.clone()))
        .await
        .unwrap();
    herd.send("out", Outbound::Text("small".into()))
        .await
        .unwrap();
    let frames = server
        .wait_for(WAIT, |logs| {
            let frames = logs.first()?.client_frames();
            (frames.len() >= 2).then_some(frames)
        })
        .await
        .unwrap();
    let (first, payload) = &frames[0];
    assert_eq!(*first, 0xC1, "FIN | RSV1 | text");
    assert!(payload.len() < large.len() / 4, "{} bytes", payload.len());
    let mut inflate = flate2::Decompress::new(false);
    let mut text = Vec::with_capacity(large.len() + 16);
    let input = [payload.as_slice(), &[0, 0, 0xff, 0xff]].concat();
    inflate
        .decompress_vec(&input, &mut text, flate2::FlushDecompress::Sync)
        .unwrap();
    assert_eq!(text, large.as_bytes());
    assert_eq!(
        frames[1],
        (0x81, b"small".to_vec()),
        "below the threshold: plain"
    );
}

#[derive(Debug, Deserialize)]
struct Echo {
    text: String,
}
wsherd::inbound!(Echo => "echo");

#[actix_rt::test]
async fn python_websockets_reads_what_wsherd_compressed() {
    let python = PythonServer::start(&["0"]);
    let herd = Herd::new();
    let events = events(&herd);
    let (addr, seen) = Recorder::<Delivery<Echo>>::start();
    herd.subscribe(addr.recipient());
    herd.add_endpoint("python", offering(python.url())).unwrap();
    opened(&events, "python").await;
    let large = "compress me please ".repeat(200);
    herd.send("python", Outbound::Text(large.clone()))
        .await
        .unwrap();
    let echoed = seen
        .wait_for(WAIT, |all| all.first().map(|d| d.message.text.clone()))
        .await
        .unwrap();
    assert_eq!(echoed, large);
    let status = herd.status();
    assert!(status[0].stats.messages_out >= 1);
}
