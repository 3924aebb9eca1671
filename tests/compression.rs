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
