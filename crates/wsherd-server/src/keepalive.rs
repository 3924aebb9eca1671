//! What the server's WebSocket bodies (`/api/events`, the gateway) share: frames written with
//! the server's codec, and keeping a client honest: its Pings answered, a Ping of ours every
//! [`PING_EVERY`], and a client silent for [`SILENT_LIMIT`] closed.

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_codec::Encoder;
use actix_http::ws::{CloseCode, CloseReason, Codec, Message};
use bytes::{Bytes, BytesMut};

/// How often the server pings a client.
pub(crate) const PING_EVERY: Duration = Duration::from_secs(20);

/// A client that sends nothing (not even a Pong) for this long is closed.
pub(crate) const SILENT_LIMIT: Duration = Duration::from_secs(60);

/// A client's Pings to answer, our Pings to send, and when it was last heard.
pub(crate) struct Keepalive {
    ping: tokio::time::Interval,
    heard: Instant,
    pong: Option<Bytes>,
}

impl Keepalive {
    pub(crate) fn new() -> Self {
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
    pub(crate) fn heard(&mut self) {
        self.heard = Instant::now();
    }

    /// The client pinged with `data`: the next [`Keepalive::poll_due`] answers it.
    pub(crate) fn pinged(&mut self, data: Bytes) {
        self.pong = Some(data);
    }

    /// The control frame due now: a Pong, our Ping, or (`Err`) the close of a client that
    /// has been silent too long. Pending (woken by the ping timer) when none is.
    pub(crate) fn poll_due(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message, Message>> {
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
pub(crate) fn close(code: CloseCode, why: &str) -> Message {
    Message::Close(Some(CloseReason {
        code,
        description: Some(why.to_owned()),
    }))
}

/// `message` as the bytes of one frame; `None` if the codec refuses it (too big for it).
pub(crate) fn encode(codec: &mut Codec, message: Message) -> Option<Bytes> {
    let mut out = BytesMut::new();
    codec.encode(message, &mut out).ok().map(|()| out.freeze())
}
