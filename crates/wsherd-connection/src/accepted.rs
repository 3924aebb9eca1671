//! A socket a server accepted, as the connection reads and writes it: two bounded byte pipes
//! between the connection actor and whoever owns the HTTP connection.
//!
//! A server such as actix-web keeps the TCP stream to itself and lends a WebSocket handler
//! a request body to read and a response body to write, both polled on the HTTP worker's
//! thread. The response body is polled only while the HTTP connection's write buffer has
//! room: a client that stops reading stops it. Running the session's logic inside that body
//! would freeze its timers and mailbox with it. So the connection actor (on a herd arbiter)
//! talks to an [`AcceptedSocket`], and the HTTP side moves bytes with a [`SocketWire`]:
//! - what the client sent goes into the inbound pipe ([`SocketWire::poll_feed`]), which
//!   takes at most `capacity` bytes the connection has not read yet, so a connection that
//!   pauses its reads (a full subscriber) pushes back on the client's TCP stream;
//! - what the connection writes goes into the outbound pipe, at most `capacity` bytes; past
//!   that a write waits, and the connection's write timeout sees a client that stopped
//!   reading ([`EndReason::WriteStalled`](crate::EndReason::WriteStalled)).
//!
//! A frame counts as flushed ([`Unsent`](crate::Unsent)) once the outbound pipe took it
//! whole: past it are the HTTP connection's buffers and the operating system's, which a socket
//! that dies can lose, as with any WebSocket.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use actix_codec::{AsyncRead, AsyncWrite, ReadBuf};
use bytes::{Bytes, BytesMut};

/// The bytes each pipe of [`accepted_socket`] holds by default.
pub const DEFAULT_PIPE_CAPACITY: usize = 64 << 10;

/// A pair of pipes for one accepted WebSocket: the connection's end and the HTTP side's end.
///
/// `capacity` bounds each direction (at least 1 byte is let through, so a capacity of zero
/// cannot wedge it).
pub fn accepted_socket(capacity: usize) -> (AcceptedSocket, SocketWire) {
    let shared = Arc::new(Mutex::new(Pipes {
        capacity: capacity.max(1),
        inbound: VecDeque::new(),
        inbound_bytes: 0,
        client_done: false,
        reader: None,
        feeder: None,
        outbound: BytesMut::new(),
        server_done: false,
        writer: None,
        taker: None,
        gone: None,
        connection_gone: false,
        wire_gone: false,
    }));
    (AcceptedSocket(Arc::clone(&shared)), SocketWire(shared))
}

struct Pipes {
    capacity: usize,
    /// Client → connection: chunks as the server read them.
    inbound: VecDeque<Bytes>,
    inbound_bytes: usize,
    /// The client's stream ended.
    client_done: bool,
    reader: Option<Waker>,
    feeder: Option<Waker>,
    /// Connection → client.
    outbound: BytesMut,
    /// The connection shut its writing down: once `outbound` is taken, the body ends.
    server_done: bool,
    writer: Option<Waker>,
    taker: Option<Waker>,
    /// Woken when the connection drops its end.
    gone: Option<Waker>,
    connection_gone: bool,
    wire_gone: bool,
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

fn lock(shared: &Mutex<Pipes>) -> MutexGuard<'_, Pipes> {
    // Nothing in this module panics while it holds the lock; a poisoned lock still holds
    // consistent pipes.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The connection's end of an accepted socket: `AsyncRead` yields what the client sent,
/// `AsyncWrite` queues what goes to it. Dropping it ends both directions for the HTTP side.
pub struct AcceptedSocket(Arc<Mutex<Pipes>>);

impl std::fmt::Debug for AcceptedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AcceptedSocket")
    }
}

impl AsyncRead for AcceptedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut guard = lock(&self.0);
        let pipes = &mut *guard;
        if pipes.inbound.is_empty() {
            if pipes.client_done || pipes.wire_gone {
                return Poll::Ready(Ok(())); // end of stream
            }
            pipes.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        while buf.remaining() > 0 {
            let Some(chunk) = pipes.inbound.front_mut() else {
                break;
            };
            let take = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk.split_to(take));
            pipes.inbound_bytes -= take;
            if chunk.is_empty() {
                pipes.inbound.pop_front();
            }
        }
        wake(&mut pipes.feeder);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for AcceptedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut pipes = lock(&self.0);
        if pipes.wire_gone {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let room = pipes.capacity.saturating_sub(pipes.outbound.len());
        if room == 0 {
            pipes.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let take = room.min(buf.len());
        pipes
            .outbound
            .extend_from_slice(buf.get(..take).unwrap_or_default());
        wake(&mut pipes.taker);
        Poll::Ready(Ok(take))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // What the pipe holds is the HTTP side's to write, as the OS's send buffer is for a
        // socket of our own.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut pipes = lock(&self.0);
        pipes.server_done = true;
        wake(&mut pipes.taker);
        Poll::Ready(Ok(()))
    }
}

impl AcceptedSocket {
    /// Closes the socket without a connection ever running on it: a Close frame with `code`
    /// and `reason` (cut to the 123 bytes a Close frame holds, at a character boundary) goes
    /// to the client, and the socket ends. For a client that was taken and then turned away
    /// (its session stopped or paused while it waited), so it hears why instead of an end of
    /// stream.
    pub fn close(self, code: wsherd_protocol::CloseCode, reason: &str) {
        use actix_codec::Encoder;
        let mut reason_len = reason.len().min(123);
        while !reason.is_char_boundary(reason_len) {
            reason_len -= 1;
        }
        let close = actix_http::ws::CloseReason {
            code: code.as_u16().into(),
            description: reason
                .get(..reason_len)
                .filter(|text| !text.is_empty())
                .map(str::to_owned),
        };
        let mut frame = BytesMut::new();
        // The server's codec writes unmasked frames, as a server must.
        let encoded = actix_http::ws::Codec::new()
            .encode(actix_http::ws::Message::Close(Some(close)), &mut frame);
        let mut pipes = lock(&self.0);
        // At most 125 bytes: let through even past `capacity`, as nothing follows it.
        if encoded.is_ok() && !pipes.wire_gone {
            pipes.outbound.extend_from_slice(&frame);
        }
        drop(pipes);
        // Dropping ends the body once the frame is taken.
    }
}

impl Drop for AcceptedSocket {
    fn drop(&mut self) {
        let mut pipes = lock(&self.0);
        pipes.connection_gone = true;
        pipes.server_done = true;
        // Nobody reads what the client sends any more.
        pipes.inbound.clear();
        pipes.inbound_bytes = 0;
        wake(&mut pipes.taker);
        wake(&mut pipes.feeder);
        wake(&mut pipes.gone);
    }
}

/// The HTTP side's end of an accepted socket: feed it what the client sends, take from it
/// what goes to the client. Dropping it ends the connection's stream (it reads the end).
pub struct SocketWire(Arc<Mutex<Pipes>>);

impl std::fmt::Debug for SocketWire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SocketWire")
    }
}

/// What [`SocketWire::poll_feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// The pipe has room: push the next chunk.
    Ready,
    /// The connection is gone: stop reading the client.
    Gone,
}

impl SocketWire {
    /// Whether the pipe to the connection has room for another chunk (`Ready`), or the
    /// connection is gone; `Pending` (woken when it reads) while it holds `capacity` bytes.
    pub fn poll_feed(&self, cx: &mut Context<'_>) -> Poll<Feed> {
        let mut pipes = lock(&self.0);
        if pipes.connection_gone {
            return Poll::Ready(Feed::Gone);
        }
        if pipes.inbound_bytes >= pipes.capacity {
            pipes.feeder = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(Feed::Ready)
    }

    /// Hands the connection `chunk`, as read from the client (call after `poll_feed` said
    /// `Ready`: a chunk may take the pipe past its capacity once).
    pub fn feed(&self, chunk: Bytes) {
        let mut pipes = lock(&self.0);
        if pipes.connection_gone || chunk.is_empty() {
            return;
        }
        pipes.inbound_bytes += chunk.len();
        pipes.inbound.push_back(chunk);
        wake(&mut pipes.reader);
    }

    /// The client's stream ended (or failed): the connection reads the end.
    pub fn client_done(&self) {
        let mut pipes = lock(&self.0);
        pipes.client_done = true;
        wake(&mut pipes.reader);
    }

    /// What the connection wrote since the last call; `None` once it shut its writing down
    /// (or is gone) and everything was taken.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut pipes = lock(&self.0);
        if !pipes.outbound.is_empty() {
            let bytes = pipes.outbound.split().freeze();
            wake(&mut pipes.writer);
            return Poll::Ready(Some(bytes));
        }
        if pipes.server_done {
            return Poll::Ready(None);
        }
        pipes.taker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once the connection dropped its end.
    pub fn poll_gone(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut pipes = lock(&self.0);
        if pipes.connection_gone {
            return Poll::Ready(());
        }
        pipes.gone = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether the connection dropped its end.
    pub fn connection_gone(&self) -> bool {
        lock(&self.0).connection_gone
    }

    /// Bytes waiting in both pipes (what one session holds here).
    pub fn buffered(&self) -> usize {
        let pipes = lock(&self.0);
        pipes.inbound_bytes + pipes.outbound.len()
    }
}

impl Drop for SocketWire {
    fn drop(&mut self) {
        let mut pipes = lock(&self.0);
        pipes.wire_gone = true;
        pipes.outbound.clear();
        wake(&mut pipes.reader);
        wake(&mut pipes.writer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[actix_rt::test]
    async fn what_the_client_sends_is_read_in_order_and_its_end_is_an_end_of_stream() {
        let (mut socket, wire) = accepted_socket(16);
        wire.feed(Bytes::from_static(b"hello "));
        wire.feed(Bytes::from_static(b"world"));
        wire.client_done();
        let mut read = String::new();
        socket.read_to_string(&mut read).await.unwrap();
        assert_eq!(read, "hello world");
    }

    #[actix_rt::test]
    async fn a_full_inbound_pipe_holds_the_feeder_until_the_connection_reads() {
        let (mut socket, wire) = accepted_socket(4);
        assert_eq!(poll_fn(|cx| wire.poll_feed(cx)).await, Feed::Ready);
        wire.feed(Bytes::from_static(b"12345"));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(
            wire.poll_feed(&mut cx).is_pending(),
            "5 bytes held, capacity 4"
        );
        let mut buf = [0u8; 8];
        let n = socket.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"12345");
        assert_eq!(wire.poll_feed(&mut cx), Poll::Ready(Feed::Ready));
    }

    #[actix_rt::test]
    async fn writes_wait_while_the_outbound_pipe_is_full_and_go_on_once_it_is_taken() {
        let (mut socket, wire) = accepted_socket(4);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(matches!(
            Pin::new(&mut socket).poll_write(&mut cx, b"abcdef"),
            Poll::Ready(Ok(4))
        ));
        assert!(
            Pin::new(&mut socket)
                .poll_write(&mut cx, b"ef")
                .is_pending()
        );
        assert_eq!(
            wire.poll_take(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"abcd")))
        );
        socket.write_all(b"ef").await.unwrap();
        socket.shutdown().await.unwrap();
        assert_eq!(
            wire.poll_take(&mut cx),
            Poll::Ready(Some(Bytes::from_static(b"ef")))
        );
        assert_eq!(wire.poll_take(&mut cx), Poll::Ready(None), "shut down");
    }

    #[actix_rt::test]
    async fn a_dropped_connection_frees_what_waits_and_stops_the_feeder() {
        let (socket, wire) = accepted_socket(1024);
        wire.feed(Bytes::from(vec![0u8; 1000]));
        assert_eq!(wire.buffered(), 1000);
        drop(socket);
        assert_eq!(wire.buffered(), 0);
        assert!(wire.connection_gone());
        assert_eq!(poll_fn(|cx| wire.poll_feed(cx)).await, Feed::Gone);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert_eq!(wire.poll_take(&mut cx), Poll::Ready(None));
    }

    #[actix_rt::test]
    async fn a_dropped_wire_ends_reads_and_fails_writes() {
        let (mut socket, wire) = accepted_socket(1024);
        drop(wire);
        let mut buf = [0u8; 4];
        assert_eq!(socket.read(&mut buf).await.unwrap(), 0);
        let error = socket.write(b"x").await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[actix_rt::test]
    async fn a_socket_closed_unused_sends_a_close_frame_with_its_reason_then_ends() {
        let (socket, wire) = accepted_socket(1024);
        socket.close(wsherd_protocol::CloseCode::TRY_AGAIN, "paused");
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Some(frame)) = wire.poll_take(&mut cx) else {
            panic!("a Close frame");
        };
        // FIN + Close, unmasked, 2 + 6 bytes: code 1013, "paused".
        assert_eq!(&frame[..], b"\x88\x08\x03\xf5paused");
        assert_eq!(wire.poll_take(&mut cx), Poll::Ready(None));
        assert!(wire.connection_gone());
    }

    #[actix_rt::test]
    async fn a_close_reason_too_long_for_a_frame_is_cut_at_a_character() {
        let (socket, wire) = accepted_socket(16);
        socket.close(wsherd_protocol::CloseCode::NORMAL, &"é".repeat(100));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Some(frame)) = wire.poll_take(&mut cx) else {
            panic!("a Close frame");
        };
        assert_eq!(frame[1] as usize, 2 + 122, "61 two-byte characters");
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
