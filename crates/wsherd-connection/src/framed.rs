//! The socket's framing: awc's WebSocket codec over buffers sized by the traffic.
//!
//! awc hands back an `actix_codec::Framed`, which keeps an 8 KiB read buffer and an 8 KiB write
//! buffer per socket for the socket's whole life, and reads at most 8 KiB per system call. For a
//! herd of mostly idle connections the buffers are most of what a connection costs; for one busy
//! feed the small reads are a system call every ~60 messages. This framing starts from the same
//! parts (the codec and any bytes read past the handshake) and
//! - while idle holds no buffer at all: a read lands in a small stack buffer first, and a read
//!   buffer that is empty when the socket has nothing more is given back;
//! - while busy reads straight into a buffer, asking for room that doubles (to 64 KiB) while
//!   reads fill it;
//! - gives the write buffer back whenever it has been flushed;
//! - rejects a frame as soon as more than the frame cap is buffered without it completing
//!   (actix-http's parser checks the cap only once the whole frame has arrived);
//! - after a protocol error reads and discards the rest, so the peer's bytes neither repeat
//!   the error nor pile up while our Close goes out.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_codec::{AsyncRead, AsyncWrite, Decoder, Encoder, Framed, ReadBuf};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::{Buf, BytesMut};
use futures_util::Sink;
#[cfg(test)]
use futures_util::Stream;

/// Bytes read into the stack while no read buffer is held; a read that fills it means traffic.
const PROBE: usize = 512;
/// First size of a read buffer, and the spare room below which it is grown before a read.
const CHUNK_MIN: usize = 4 * 1024;
/// Largest read asked of the socket.
const CHUNK_MAX: usize = 64 * 1024;
/// Encoded bytes beyond which the sink asks for a flush before taking more.
const WRITE_HIGH: usize = 64 * 1024;
/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
const MAX_HEADER: usize = 14;
/// Reads of discarded input in one poll before yielding to the rest of the actor.
const DISCARD_READS_PER_POLL: usize = 64;

/// A WebSocket client socket: frames in, messages out.
pub(crate) struct LeanFramed<T> {
    io: T,
    codec: Codec,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// Bytes asked of the socket per read while busy.
    chunk: usize,
    /// Bytes the last read returned: a small one means the connection is quiet.
    last_read: usize,
    /// `read_buf` may hold a whole frame: decode before reading.
    readable: bool,
    /// Bytes of `read_buf` taken by the last [`InFrame::Text`], dropped on the next poll.
    consumed: usize,
    /// A fragmented message is in progress.
    fragmenting: bool,
    eof: bool,
    /// The largest frame payload accepted.
    max_frame_size: usize,
    /// A frame was malformed: what follows it cannot be framed, so it is discarded.
    failed: bool,
}

impl<T> LeanFramed<T> {
    /// Takes over awc's framing, keeping bytes it read past the handshake. `max_frame_size` must
    /// be the codec's own cap.
    pub(crate) fn from_framed(framed: Framed<T, Codec>, max_frame_size: usize) -> Self {
        let parts = framed.into_parts();
        let keep = |buf: BytesMut| if buf.is_empty() { BytesMut::new() } else { buf };
        LeanFramed {
            io: parts.io,
            codec: parts.codec,
            read_buf: keep(parts.read_buf),
            write_buf: keep(parts.write_buf),
            chunk: CHUNK_MIN,
            last_read: 0,
            readable: true,
            consumed: 0,
            fragmenting: false,
            eof: false,
            max_frame_size,
            failed: false,
        }
    }

    /// Bytes held in buffers (capacity, not content): what an idle socket costs in memory.
    #[cfg(test)]
    pub(crate) fn buffered_capacity(&self) -> usize {
        self.read_buf.capacity() + self.write_buf.capacity()
    }
}

impl<T: AsyncRead + Unpin> LeanFramed<T> {
    /// Reads more bytes into `read_buf`; `Ok(0)` is the end of the stream.
    fn read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read_buf.capacity() == 0 {
            // No buffer held: probe through the stack, so waiting costs no heap.
            let mut probe = [0u8; PROBE];
            let mut buf = ReadBuf::new(&mut probe);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            let filled = buf.filled();
            self.read_buf.extend_from_slice(filled);
            self.last_read = filled.len();
            return Poll::Ready(Ok(filled.len()));
        }
        if self.read_buf.capacity() - self.read_buf.len() < CHUNK_MIN {
            self.read_buf.reserve(self.chunk);
        }
        let room = self.read_buf.capacity() - self.read_buf.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.read_buf
        ))?;
        if read == room {
            // The socket had at least as much as we asked: ask for more next time.
            self.chunk = (self.chunk * 2).min(CHUNK_MAX);
        }
        self.last_read = read;
        Poll::Ready(Ok(read))
    }
}

impl<T: AsyncRead + Unpin> LeanFramed<T> {
    /// Reads and drops input until the end of the stream.
    fn discard<F>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<F, ProtocolError>>> {
        self.read_buf = BytesMut::new();
        for _ in 0..DISCARD_READS_PER_POLL {
            let mut probe = [0u8; PROBE];
            let mut buf = ReadBuf::new(&mut probe);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(None),
                Ok(()) => {}
                // The error that failed the stream was already reported.
                Err(_) => return Poll::Ready(None),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The first error ends framing: everything after it is discarded.
    fn fail<F>(&mut self, error: ProtocolError) -> Poll<Option<Result<F, ProtocolError>>> {
        self.failed = true;
        self.readable = false;
        Poll::Ready(Some(Err(error)))
    }
}

/// One frame read from the socket.
#[derive(Debug)]
pub(crate) enum InFrame<'a> {
    /// A whole (unfragmented) text frame's payload, still in the read buffer: the common
    /// frame is routed from where it was read, without a `Bytes` of its own.
    Text(&'a [u8]),
    /// Any other frame, as awc's codec decoded it.
    Other(Frame),
}

impl<T> LeanFramed<T> {
    /// The payload range of a whole, valid, unfragmented text frame at the start of
    /// `read_buf`; `None` for anything else, which awc's codec then decodes and checks.
    fn whole_text_frame(&self) -> Option<(usize, usize)> {
        let buf = &self.read_buf[..];
        // FIN and the text opcode, no reserved bits; no mask bit (servers must not mask).
        if self.fragmenting || *buf.first()? != 0x81 || *buf.get(1)? & 0x80 != 0 {
            return None;
        }
        let (header, len) = match *buf.get(1)? {
            126 => (
                4,
                usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            ),
            127 => return None,
            len => (2, usize::from(len)),
        };
        let end = header + len;
        (len <= self.max_frame_size && buf.len() >= end).then_some((header, end))
    }

    /// Notes where a fragmented message starts and ends, so that a whole text frame in the
    /// middle of one goes to the codec (which rejects it) rather than the fast path.
    fn track_fragments(&mut self, frame: &Frame) {
        if let Frame::Continuation(item) = frame {
            self.fragmenting = !matches!(item, actix_http::ws::Item::Last(_));
        }
    }
}

impl<T: AsyncRead + Unpin> LeanFramed<T> {
    /// The next frame. A [`InFrame::Text`] borrows the read buffer; it is consumed on the
    /// next call.
    pub(crate) fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<InFrame<'_>, ProtocolError>>> {
        if self.consumed > 0 {
            self.read_buf.advance(std::mem::take(&mut self.consumed));
        }
        if self.failed {
            return self.discard(cx);
        }
        loop {
            if self.readable {
                if let Some((start, end)) = self.whole_text_frame() {
                    self.consumed = end;
                    let payload = self.read_buf.get(start..end).unwrap_or_default();
                    return Poll::Ready(Some(Ok(InFrame::Text(payload))));
                }
                let decoded = if self.eof {
                    self.codec.decode_eof(&mut self.read_buf)
                } else {
                    self.codec.decode(&mut self.read_buf)
                };
                match decoded {
                    Ok(Some(frame)) => {
                        self.track_fragments(&frame);
                        return Poll::Ready(Some(Ok(InFrame::Other(frame))));
                    }
                    Ok(None) if self.eof => {
                        // Frames may remain after the end of the stream; then it ends.
                        self.readable = false;
                        return Poll::Ready(None);
                    }
                    Ok(None) if self.read_buf.len() > self.max_frame_size + MAX_HEADER => {
                        // More than any acceptable frame is buffered and it is still not whole.
                        return self.fail(ProtocolError::Overflow);
                    }
                    Ok(None) => self.readable = false,
                    Err(error) => return self.fail(error),
                }
            } else if self.eof {
                return Poll::Ready(None);
            }
            match self.read_more(cx) {
                Poll::Ready(Ok(read)) => {
                    self.eof = read == 0;
                    self.readable = true;
                }
                Poll::Ready(Err(error)) => return self.fail(error.into()),
                Poll::Pending => {
                    if self.read_buf.is_empty() {
                        // Nothing more for now: hold no buffer until the peer sends again.
                        self.read_buf = BytesMut::new();
                        if self.last_read < PROBE {
                            self.chunk = CHUNK_MIN;
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> crate::reader::FrameSource for LeanFramed<T> {
    type Frame<'a>
        = Result<InFrame<'a>, ProtocolError>
    where
        T: 'a;

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Frame<'_>>> {
        self.next_frame(cx)
    }
}

/// Owned frames, for tests that read the socket as a stream.
#[cfg(test)]
impl<T: AsyncRead + Unpin> Stream for LeanFramed<T> {
    type Item = Result<Frame, ProtocolError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().next_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame {
                    InFrame::Text(payload) => Frame::Text(bytes::Bytes::copy_from_slice(payload)),
                    InFrame::Other(frame) => frame,
                })
            })
        })
    }
}

impl<T: AsyncWrite + Unpin> Sink<Message> for LeanFramed<T> {
    type Error = ProtocolError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        if self.write_buf.len() < WRITE_HIGH {
            Poll::Ready(Ok(()))
        } else {
            self.poll_flush(cx)
        }
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), ProtocolError> {
        let this = self.get_mut();
        this.codec.encode(message, &mut this.write_buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        let this = self.get_mut();
        while !this.write_buf.is_empty() {
            let written = ready!(Pin::new(&mut this.io).poll_write(cx, &this.write_buf))?;
            if written == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                )
                .into()));
            }
            this.write_buf.advance(written);
        }
        if this.write_buf.capacity() > 0 {
            this.write_buf = BytesMut::new();
        }
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        ready!(self.as_mut().poll_flush(cx))?;
        ready!(Pin::new(&mut self.get_mut().io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::{FutureExt, SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

    use super::*;

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

    use actix_http::ws::Item;

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
            framed.chunk, CHUNK_MAX,
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
}
