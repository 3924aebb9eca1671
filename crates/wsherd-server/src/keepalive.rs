//! What the server's WebSocket bodies (`/api/events`, the gateway) share ([`Framing`]): frames
//! read and written with the server's codec, the end of the conversation, and keeping a client
//! honest: its Pings answered, a Ping of ours every [`PING_EVERY`], and a client silent for
//! [`SILENT_LIMIT`] closed.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::{Decoder, Encoder};
use actix_http::ws::{CloseCode, CloseReason, Codec, Frame, Message, ProtocolError};
use bytes::{Bytes, BytesMut};

/// How often the server pings a client.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(20);

/// A client that sends nothing (not even a Pong) for this long is closed.
pub(crate) const SILENT_LIMIT: Duration = Duration::from_secs(60);

/// What a body's `poll_next` returns.
pub(crate) type Chunk = Poll<Option<Result<Bytes, actix_web::Error>>>;

/// One server-side WebSocket conversation as a response body writes it: the codec (frames
/// from the client at most its `max_size`), the keepalive, and whether it is over.
pub(crate) struct Framing {
    codec: Codec,
    keepalive: Keepalive,
    done: bool,
}

impl Framing {
    /// Frames from the client are at most `max_client_frame` bytes.
    pub(crate) fn new(max_client_frame: usize) -> Self {
        Framing {
            codec: Codec::new().max_size(max_client_frame),
            keepalive: Keepalive::new(),
            done: false,
        }
    }

    /// Whether the conversation is over: the body ends.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The next whole frame the client sent, out of `read`.
    pub(crate) fn decode(&mut self, read: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        self.codec.decode(read)
    }

    /// The client sent something.
    pub(crate) fn heard(&mut self) {
        self.keepalive.heard();
    }

    /// The client pinged with `data`: the next [`Framing::poll_keepalive`] answers it.
    pub(crate) fn pinged(&mut self, data: Bytes) {
        self.keepalive.pinged(data);
    }

    /// `message` as the body's next chunk; the end if the codec refuses it.
    pub(crate) fn frame(&mut self, message: Message) -> Chunk {
        match encode(&mut self.codec, message) {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    /// A Close with `code` and `why`, the conversation's last frame.
    pub(crate) fn close(&mut self, code: CloseCode, why: &str) -> Chunk {
        self.done = true;
        self.frame(close(code, why))
    }

    /// The conversation is over because of the client: with [`CloseCode::Away`] it left, and
    /// the body just ends; otherwise it is told why.
    pub(crate) fn finish(&mut self, code: CloseCode, why: &str) -> Chunk {
        if code == CloseCode::Away {
            self.done = true;
            return Poll::Ready(None);
        }
        self.close(code, why)
    }

    /// A Pong, our Ping, or the Close of a client silent too long, when one is due.
    pub(crate) fn poll_keepalive(&mut self, cx: &mut Context<'_>) -> Option<Chunk> {
        match self.keepalive.poll_due(cx) {
            Poll::Ready(Ok(control)) => Some(self.frame(control)),
            Poll::Ready(Err(close)) => {
                self.done = true;
                Some(self.frame(close))
            }
            Poll::Pending => None,
        }
    }
}

/// A client's Pings to answer, our Pings to send, and when it was last heard.
struct Keepalive {
    ping: tokio::time::Interval,
    heard: Instant,
    pong: Option<Bytes>,
}

impl Keepalive {
    fn new() -> Self {
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Keepalive {
            ping,
            heard: Instant::now(),
            pong: None,
        }
    }

    /// The client sent something.
    fn heard(&mut self) {
        self.heard = Instant::now();
    }

    /// The client pinged with `data`: the next [`Keepalive::poll_due`] answers it.
    fn pinged(&mut self, data: Bytes) {
        self.pong = Some(data);
    }

    /// The control frame due now: a Pong, our Ping, or (`Err`) the close of a client that
    /// has been silent too long. Pending (woken by the ping timer) when none is.
    fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Message>> {
        if let Some(data) = self.pong.take() {
            return Poll::Ready(Ok(Message::Pong(data)));
        }
        if self.ping.poll_tick(cx).is_ready() {
            if self.heard.elapsed() > SILENT_LIMIT {
                return Poll::Ready(Err(close(CloseCode::Away, "no answer to pings")));
            }
            return Poll::Ready(Ok(Message::Ping(Bytes::new())));
        }
        Poll::Pending
    }
}

/// A Close frame's message: `code` and `why`.
fn close(code: CloseCode, why: &str) -> Message {
    Message::Close(Some(CloseReason {
        code,
        description: Some(why.to_owned()),
    }))
}

/// `message` as the bytes of one frame; `None` if the codec refuses it (too big for it).
fn encode(codec: &mut Codec, message: Message) -> Option<Bytes> {
    let mut out = BytesMut::new();
    codec.encode(message, &mut out).ok().map(|()| out.freeze())
}
