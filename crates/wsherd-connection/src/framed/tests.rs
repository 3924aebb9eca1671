//! Tests of [`LeanFramed`] through a socket: frames whole however the bytes are cut, buffers
//! given back while idle and grown while busy, the frame cap, and the end of framing after an
//! error. The header parsing of the fast path is tested on its own in `header`.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{AsyncRead, Decoder, Encoder, Framed, ReadBuf};
use actix_http::ws::{Codec, Frame, Item, Message, ProtocolError};
use bytes::{Bytes, BytesMut};
use futures_util::{FutureExt, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::read::CHUNK_MAX;
use super::{InFrame, LeanFramed};

impl<T> LeanFramed<T> {
    /// Bytes held in buffers (capacity, not content): what an idle socket costs in memory.
    fn buffered_capacity(&self) -> usize {
        self.read.buf.capacity() + self.write.buf.capacity()
    }
}

/// Owned frames, for tests that read the socket as a stream.
impl<T: AsyncRead + Unpin> Stream for LeanFramed<T> {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().next_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame {
                    InFrame::Text(payload) => Frame::Text(Bytes::copy_from_slice(payload)),
                    InFrame::Other(frame) | InFrame::Compressed(frame) => frame,
                })
            })
        })
    }
}

fn client(io: DuplexStream) -> LeanFramed<DuplexStream> {
    LeanFramed::from_framed(
        Framed::new(io, Codec::new().client_mode().max_size(1 << 20)),
        1 << 20,
    )
}

/// What a test server sends (`Message` is not `Clone`).
enum Sent {
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    /// One fragment of a text message: first, middle or last.
    Fragment(Item),
}

impl Sent {
    fn message(&self) -> Message {
        match self {
            Sent::Text(text) => Message::Text(text.clone().into()),
            Sent::Binary(bytes) => Message::Binary(bytes.clone()),
            Sent::Ping(bytes) => Message::Ping(bytes.clone()),
            Sent::Fragment(item) => Message::Continuation(match item {
                Item::FirstText(b) => Item::FirstText(b.clone()),
                Item::FirstBinary(b) => Item::FirstBinary(b.clone()),
                Item::Continue(b) => Item::Continue(b.clone()),
                Item::Last(b) => Item::Last(b.clone()),
            }),
        }
    }
}

/// Frames as a server writes them (unmasked).
fn server_bytes(messages: &[Sent]) -> Vec<u8> {
    let mut codec = Codec::new().max_size(1 << 20);
    let mut out = BytesMut::new();
    for message in messages {
        codec.encode(message.message(), &mut out).unwrap();
    }
    out.to_vec()
}

fn texts(count: usize) -> Vec<Sent> {
    (0..count)
        .map(|i| Sent::Text(format!("{{\"seq\":{i}}}")))
        .collect()
}

fn as_text(frame: Frame) -> String {
    match frame {
        Frame::Text(bytes) => String::from_utf8(bytes.to_vec()).unwrap(),
        other => panic!("expected text, got {other:?}"),
    }
}

#[actix_rt::test]
async fn frames_arrive_whole_whatever_the_read_boundaries() {
    let big = Bytes::from(vec![7u8; 200_000]);
    let mut messages = texts(300);
    messages.insert(150, Sent::Binary(big.clone()));
    let wire = server_bytes(&messages);
    // A 61-byte pipe cuts every frame somewhere, and the big one into thousands of reads.
    for pipe in [61, 1 << 20] {
        let (ours, mut theirs) = duplex(pipe);
        let mut framed = client(ours);
        let wire = wire.clone();
        let writer = actix_rt::spawn(async move { theirs.write_all(&wire).await });
        for (i, expected) in messages.iter().enumerate() {
            let frame = framed.next().await.unwrap().unwrap();
            match (expected, frame) {
                (Sent::Binary(bytes), Frame::Binary(got)) => assert_eq!(got, *bytes),
                (Sent::Text(text), got) => assert_eq!(as_text(got), *text, "#{i}"),
                (_, got) => panic!("#{i}: {got:?}"),
            }
        }
        writer.await.unwrap().unwrap();
    }
}

#[actix_rt::test]
async fn an_idle_socket_holds_no_buffer() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    theirs
        .write_all(&server_bytes(&[Sent::Ping(Bytes::from_static(b"hb"))]))
        .await
        .unwrap();
    assert!(matches!(framed.next().await, Some(Ok(Frame::Ping(_)))));
    // Nothing more to read: the poll that finds the socket empty gives the buffer back.
    assert!(framed.next().now_or_never().is_none());
    assert_eq!(framed.buffered_capacity(), 0);

    // A written and flushed message leaves no write buffer behind either.
    framed
        .send(Message::Pong(Bytes::from_static(b"hb")))
        .await
        .unwrap();
    assert_eq!(framed.buffered_capacity(), 0);
    let mut wire = [0u8; 64];
    let read = theirs.read(&mut wire).await.unwrap();
    let mut server = Codec::new();
    let mut got = BytesMut::from(&wire[..read]);
    assert!(matches!(server.decode(&mut got), Ok(Some(Frame::Pong(p))) if p == "hb"));
}

#[actix_rt::test]
async fn a_busy_socket_is_read_in_growing_chunks() {
    let messages = texts(20_000);
    let wire = server_bytes(&messages);
    let (ours, mut theirs) = duplex(1 << 20);
    let mut framed = client(ours);
    theirs.write_all(&wire).await.unwrap();
    for expected in &messages {
        let Sent::Text(text) = expected else {
            unreachable!()
        };
        assert_eq!(as_text(framed.next().await.unwrap().unwrap()), *text);
    }
    assert_eq!(
        framed.read.chunk, CHUNK_MAX,
        "reads that fill the buffer grow it"
    );
}

#[actix_rt::test]
async fn frames_before_the_end_of_stream_are_delivered_and_a_cut_frame_is_an_error() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    let mut wire = server_bytes(&texts(2));
    let cut = server_bytes(&[Sent::Text("cut short".into())]);
    wire.extend_from_slice(&cut[..cut.len() - 3]);
    theirs.write_all(&wire).await.unwrap();
    drop(theirs);
    assert_eq!(
        as_text(framed.next().await.unwrap().unwrap()),
        r#"{"seq":0}"#
    );
    assert_eq!(
        as_text(framed.next().await.unwrap().unwrap()),
        r#"{"seq":1}"#
    );
    assert!(matches!(framed.next().await, Some(Err(_))));
    assert!(framed.next().await.is_none());

    // A clean end after whole frames is just the end.
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    theirs.write_all(&server_bytes(&texts(1))).await.unwrap();
    drop(theirs);
    assert!(framed.next().await.unwrap().is_ok());
    assert!(framed.next().await.is_none());
}

#[actix_rt::test]
async fn messages_written_reach_the_peer_in_order_and_masked() {
    let (ours, mut theirs) = duplex(1 << 20);
    let mut framed = client(ours);
    for message in texts(1000) {
        framed.feed(message.message()).await.unwrap();
    }
    framed.flush().await.unwrap();
    drop(framed);
    let mut wire = Vec::new();
    theirs.read_to_end(&mut wire).await.unwrap();
    // The server codec rejects unmasked frames, so decoding proves the masking.
    let mut server = Codec::new();
    let mut wire = BytesMut::from(&wire[..]);
    for i in 0..1000 {
        let frame = server.decode(&mut wire).unwrap().unwrap();
        assert_eq!(as_text(frame), format!("{{\"seq\":{i}}}"));
    }
    assert!(wire.is_empty());
}

#[actix_rt::test]
async fn a_frame_over_the_cap_fails_before_it_is_buffered_whole() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = LeanFramed::from_framed(
        Framed::new(ours, Codec::new().client_mode().max_size(1024)),
        1024,
    );
    // A text frame announcing 1 MiB, then the payload, which a peer may send forever.
    let mut header = vec![0x81, 127];
    header.extend_from_slice(&(1u64 << 20).to_be_bytes());
    let writer = actix_rt::spawn(async move {
        theirs.write_all(&header).await?;
        let chunk = vec![b'x'; 4096];
        for _ in 0..256 {
            theirs.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    assert!(matches!(
        framed.next().await,
        Some(Err(ProtocolError::Overflow))
    ));
    assert!(
        framed.buffered_capacity() < 64 * 1024,
        "{} bytes buffered for a 1 KiB cap",
        framed.buffered_capacity()
    );
    // The rest is read and dropped, not reported again, until the stream ends.
    assert!(framed.next().await.is_none());
    writer.await.unwrap().unwrap();
}

#[actix_rt::test]
async fn after_a_malformed_frame_nothing_more_is_framed() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    // RSV1 set on an otherwise empty text frame, then frames that would be valid.
    let mut wire = vec![0xC1, 0x00];
    wire.extend_from_slice(&server_bytes(&texts(3)));
    theirs.write_all(&wire).await.unwrap();
    assert!(matches!(framed.next().await, Some(Err(_))));
    // The error is not repeated, and what follows it is not taken for frames.
    assert!(framed.next().now_or_never().is_none());
    drop(theirs);
    assert!(framed.next().await.is_none());
}

#[actix_rt::test]
async fn with_deflate_rsv1_marks_the_first_frame_of_a_message_and_nowhere_else() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    framed.accept_compressed();
    // A whole compressed text frame, a compressed first fragment and its continuation, a
    // plain text frame; then RSV1 on a Ping, which no extension allows.
    let wire = [
        &[0xC1, 2, b'h', b'i'][..],
        &[0x42, 1, b'a'],
        &[0x80, 1, b'b'],
        &[0x81, 1, b'c'],
        &[0xC9, 0],
    ]
    .concat();
    theirs.write_all(&wire).await.unwrap();
    let mut shown = Vec::new();
    for _ in 0..5 {
        let frame = std::future::poll_fn(|cx| {
            framed.next_frame(cx).map(|frame| {
                frame.map(|frame| match frame {
                    Ok(InFrame::Text(payload)) => format!("text {payload:?}"),
                    Ok(InFrame::Other(frame)) => format!("other {frame:?}"),
                    Ok(InFrame::Compressed(frame)) => format!("compressed {frame:?}"),
                    Err(error) => format!("Err {error}"),
                })
            })
        })
        .await;
        shown.push(frame.unwrap_or_default());
    }
    assert!(shown[0].contains("compressed Text"), "{shown:?}");
    assert!(
        shown[1].contains("compressed Continuation(FirstBinary"),
        "{shown:?}"
    );
    assert!(shown[2].contains("other Continuation(Last"), "{shown:?}");
    assert!(shown[3].contains("text [99]"), "{shown:?}");
    assert!(
        shown[4].contains("Err"),
        "RSV1 on a Ping is refused: {shown:?}"
    );
}

/// A socket that hands out its bytes in given pieces, with a `Pending` before each one.
struct Trickle {
    pieces: std::collections::VecDeque<Vec<u8>>,
    ready: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let ready = self.ready;
        self.ready = !ready;
        if !ready {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let Some(mut piece) = self.pieces.pop_front() else {
            return Poll::Ready(Ok(()));
        };
        let taken = piece.len().min(buf.remaining());
        buf.put_slice(&piece[..taken]);
        if taken < piece.len() {
            self.pieces.push_front(piece.split_off(taken));
        }
        Poll::Ready(Ok(()))
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever a peer sends once permessage-deflate is agreed (RSV1 anywhere, any opcode,
    /// any length), the framing never panics and ends: frames, then an error or the end.
    #[test]
    fn with_deflate_arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(async {
            let (ours, mut theirs) = duplex(1 << 16);
            let mut framed = client(ours);
            framed.accept_compressed();
            theirs.write_all(&bytes).await.unwrap();
            drop(theirs);
            let mut frames = 0;
            while let Some(frame) = framed.next().await {
                frames += 1;
                if frame.is_err() || frames > bytes.len() + 1 {
                    break;
                }
            }
            assert!(frames <= bytes.len() + 1);
        });
    }

    /// Whatever the frame sizes and however the bytes are cut, with the socket going
    /// quiet between every two pieces (which is when buffers are given back), every frame
    /// arrives whole and in order, then the stream ends.
    #[test]
    fn frames_survive_any_cutting(
        sizes in proptest::collection::vec(0usize..70_000, 1..12),
        cuts in proptest::collection::vec(1usize..5_000, 1..64),
    ) {
        let sent: Vec<Sent> = sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| match i % 4 {
                0 => vec![Sent::Text("t".repeat(n))],
                1 => vec![Sent::Binary(Bytes::from(vec![i as u8; n]))],
                2 => vec![Sent::Ping(Bytes::from(vec![7u8; n % 126]))],
                // A fragmented text message with a Ping between its fragments.
                _ => vec![
                    Sent::Fragment(Item::FirstText(Bytes::from("f".repeat(n % 300)))),
                    Sent::Ping(Bytes::from_static(b"p")),
                    Sent::Fragment(Item::Continue(Bytes::from("c".repeat(n % 70)))),
                    Sent::Fragment(Item::Last(Bytes::from("l".repeat(n % 200)))),
                ],
            })
            .collect();
        let mut wire = server_bytes(&sent);
        let mut pieces = std::collections::VecDeque::new();
        let mut cut = cuts.iter().cycle();
        while !wire.is_empty() {
            let rest = wire.split_off(cut.next().copied().unwrap_or(1).min(wire.len()));
            pieces.push_back(std::mem::replace(&mut wire, rest));
        }
        let mut framed = LeanFramed::from_framed(
            Framed::new(
                Trickle { pieces, ready: false },
                Codec::new().client_mode().max_size(1 << 20),
            ),
            1 << 20,
        );
        let got: Vec<Frame> = actix_rt::System::new().block_on(async {
            let mut got = Vec::new();
            while let Some(frame) = framed.next().await {
                got.push(frame.unwrap());
            }
            got
        });
        proptest::prop_assert_eq!(got.len(), sent.len());
        for (frame, sent) in got.into_iter().zip(&sent) {
            match (frame, sent) {
                (Frame::Text(got), Sent::Text(text)) => {
                    proptest::prop_assert_eq!(&got[..], text.as_bytes())
                }
                (Frame::Binary(got), Sent::Binary(bytes)) => proptest::prop_assert_eq!(got, bytes.clone()),
                (Frame::Ping(got), Sent::Ping(bytes)) => proptest::prop_assert_eq!(got, bytes.clone()),
                (Frame::Continuation(got), Sent::Fragment(sent)) => {
                    let same = match (got, sent) {
                        (Item::FirstText(a), Item::FirstText(b))
                        | (Item::Continue(a), Item::Continue(b))
                        | (Item::Last(a), Item::Last(b)) => a == *b,
                        _ => false,
                    };
                    proptest::prop_assert!(same);
                }
                (frame, _) => proptest::prop_assert!(false, "unexpected {:?}", frame),
            }
        }
    }
}

#[actix_rt::test]
async fn a_whole_text_frame_inside_a_fragmented_message_is_refused() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    let wire = server_bytes(&[
        Sent::Fragment(Item::FirstText(Bytes::from_static(b"half"))),
        Sent::Text("interloper".into()),
    ]);
    theirs.write_all(&wire).await.unwrap();
    assert!(matches!(
        framed.next().await,
        Some(Ok(Frame::Continuation(Item::FirstText(_))))
    ));
    assert!(matches!(
        framed.next().await,
        Some(Err(ProtocolError::ContinuationStarted))
    ));

    // Once the fragmented message ends, whole text frames are fine again.
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = client(ours);
    let wire = server_bytes(&[
        Sent::Fragment(Item::FirstText(Bytes::from_static(b"a"))),
        Sent::Fragment(Item::Last(Bytes::from_static(b"b"))),
        Sent::Text("whole".into()),
    ]);
    theirs.write_all(&wire).await.unwrap();
    assert!(framed.next().await.unwrap().is_ok());
    assert!(framed.next().await.unwrap().is_ok());
    assert_eq!(as_text(framed.next().await.unwrap().unwrap()), "whole");
}

/// A client whose frame cap is `usize::MAX`: no cap at all.
fn uncapped(io: DuplexStream) -> LeanFramed<DuplexStream> {
    LeanFramed::from_framed(
        Framed::new(io, Codec::new().client_mode().max_size(usize::MAX)),
        usize::MAX,
    )
}

#[actix_rt::test]
async fn with_a_usize_max_cap_frames_of_every_size_still_pass() {
    // Small text, a 64-bit length over the codec's reservation limit, and a fragmented
    // message, cut by a small pipe so that every frame is seen incomplete first.
    let big = Bytes::from(vec![3u8; 3 << 20]);
    let messages = vec![
        Sent::Text("small".into()),
        Sent::Binary(big.clone()),
        Sent::Fragment(Item::FirstText(Bytes::from_static(b"fir"))),
        Sent::Fragment(Item::Last(Bytes::from_static(b"st"))),
        Sent::Text("t".repeat(70_000)),
    ];
    let wire = server_bytes(&messages);
    for pipe in [61, 1 << 16] {
        let (ours, mut theirs) = duplex(pipe);
        let mut framed = uncapped(ours);
        let wire = wire.clone();
        let writer = actix_rt::spawn(async move { theirs.write_all(&wire).await });
        assert_eq!(as_text(framed.next().await.unwrap().unwrap()), "small");
        assert!(matches!(framed.next().await, Some(Ok(Frame::Binary(got))) if got == big));
        assert!(matches!(
            framed.next().await,
            Some(Ok(Frame::Continuation(Item::FirstText(_))))
        ));
        assert!(matches!(
            framed.next().await,
            Some(Ok(Frame::Continuation(Item::Last(_))))
        ));
        assert_eq!(as_text(framed.next().await.unwrap().unwrap()).len(), 70_000);
        writer.await.unwrap().unwrap();
    }
}

#[actix_rt::test]
async fn with_a_usize_max_cap_a_huge_claim_is_not_allocated_before_its_bytes() {
    let (ours, mut theirs) = duplex(1 << 16);
    let mut framed = uncapped(ours);
    // A binary frame claiming 1 PiB, 64 KiB of it, then the end of the stream.
    let mut wire = vec![0x82, 127];
    wire.extend_from_slice(&(1u64 << 50).to_be_bytes());
    wire.extend_from_slice(&[0u8; 64 * 1024]);
    let writer = actix_rt::spawn(async move {
        theirs.write_all(&wire).await?;
        theirs.shutdown().await
    });
    assert!(matches!(
        framed.next().await,
        Some(Err(ProtocolError::Io(_)))
    ));
    assert!(framed.next().await.is_none());
    writer.await.unwrap().unwrap();
}

#[actix_rt::test]
async fn a_servers_side_unmasks_what_a_client_sends_and_refuses_an_unmasked_frame() {
    let (io, mut peer) = duplex(4096);
    let mut server = LeanFramed::server(io, 1 << 20);
    let mut codec = Codec::new().client_mode();
    let mut out = BytesMut::new();
    codec
        .encode(Message::Text("masked".into()), &mut out)
        .unwrap();
    peer.write_all(&out).await.unwrap();
    match server.next().await {
        Some(Ok(Frame::Text(text))) => assert_eq!(&text[..], b"masked"),
        other => panic!("{other:?}"),
    }
    // Unmasked, as only a server may send: the fast path must not take it.
    peer.write_all(&server_bytes(&[Sent::Text("bare".into())]))
        .await
        .unwrap();
    match server.next().await {
        Some(Err(ProtocolError::UnmaskedFrame)) => {}
        other => panic!("{other:?}"),
    }
}
