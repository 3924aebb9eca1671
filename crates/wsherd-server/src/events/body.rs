//! One event client's WebSocket, as a response body: frames out of its [`Outbox`], Pongs for
//! its Pings, a Ping of our own every [`PING_EVERY`](crate::keepalive::PING_EVERY), and its
//! frames read (and ignored, but for Ping and Close) under a small size cap.
//!
//! No actor and no unbounded queue: the only lines that wait are the outbox's, and whatever
//! the client sends is read into a buffer of at most [`READ_LIMIT`] bytes.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_codec::Decoder;
use actix_http::ws::{CloseCode, Codec, Frame, Message, ProtocolError};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use wsherd::EndpointStatus;

use super::lines::stats_line;
use super::outbox::Outbox;
use crate::keepalive::{Keepalive, close, encode};
use crate::options::Counters;

/// The largest frame a client may send (it has nothing to say but Ping, Pong and Close).
const MAX_CLIENT_FRAME: usize = 4 << 10;

/// What is read from the client before its frames are decoded.
const READ_LIMIT: usize = MAX_CLIENT_FRAME + 16;

/// See the module docs.
pub(crate) struct EventsBody {
    payload: web::Payload,
    read: BytesMut,
    codec: Codec,
    outbox: Arc<Outbox>,
    /// A stats line for every endpoint, sent first, rendered as they go out.
    initial: std::vec::IntoIter<EndpointStatus>,
    keepalive: Keepalive,
    counters: Arc<Counters>,
    done: bool,
}

impl EventsBody {
    /// The body of a client who holds one of `counters`' event client slots (given back
    /// when the body is dropped).
    pub(crate) fn new(
        payload: web::Payload,
        outbox: Arc<Outbox>,
        initial: Vec<EndpointStatus>,
        counters: Arc<Counters>,
    ) -> Self {
        EventsBody {
            payload,
            read: BytesMut::new(),
            codec: Codec::new().max_size(MAX_CLIENT_FRAME),
            outbox,
            initial: initial.into_iter(),
            keepalive: Keepalive::new(),
            counters,
            done: false,
        }
    }

    fn frame(&mut self, message: Message) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        match encode(&mut self.codec, message) {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }

    fn close(
        &mut self,
        code: CloseCode,
        why: &str,
    ) -> Poll<Option<Result<Bytes, actix_web::Error>>> {
        self.done = true;
        self.frame(close(code, why))
    }

    /// Reads what the client sent; `Some(close)` when the conversation is over.
    fn read_client(&mut self, cx: &mut Context<'_>) -> Option<(CloseCode, &'static str)> {
        while self.read.len() < READ_LIMIT {
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.keepalive.heard();
                    self.read.extend_from_slice(&chunk);
                }
                // The client went away: nothing to say to it.
                Poll::Ready(Some(Err(_)) | None) => return Some((CloseCode::Away, "")),
                Poll::Pending => break,
            }
        }
        loop {
            match self.codec.decode(&mut self.read) {
                Ok(Some(Frame::Ping(data))) => self.keepalive.pinged(data),
                Ok(Some(Frame::Close(_))) => return Some((CloseCode::Normal, "bye")),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(ProtocolError::Overflow) => {
                    return Some((CloseCode::Size, "frames to /api/events are at most 4 KiB"));
                }
                Err(_) => return Some((CloseCode::Protocol, "not a WebSocket frame")),
            }
        }
    }
}

impl Stream for EventsBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some((code, why)) = this.read_client(cx) {
            if code == CloseCode::Away {
                this.done = true;
                return Poll::Ready(None);
            }
            return this.close(code, why);
        }
        match this.keepalive.poll_due(cx) {
            Poll::Ready(Ok(control)) => return this.frame(control),
            Poll::Ready(Err(close)) => {
                this.done = true;
                return this.frame(close);
            }
            Poll::Pending => {}
        }
        if let Some(status) = this.initial.next() {
            return this.frame(Message::Text(stats_line(&status).to_string().into()));
        }
        match this.outbox.poll_next(cx) {
            Poll::Ready(Some(line)) => this.frame(Message::Text((&*line).into())),
            Poll::Ready(None) => this.close(CloseCode::Policy, "too slow: events were not read"),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for EventsBody {
    fn drop(&mut self) {
        self.outbox.set_gone();
        self.counters.event_clients.fetch_sub(1, Ordering::Relaxed);
    }
}
