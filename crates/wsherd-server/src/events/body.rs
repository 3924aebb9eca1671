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

use actix_http::ws::{CloseCode, Frame, Message, ProtocolError};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use wsherd::EndpointStatus;

use super::lines::stats_line;
use super::outbox::Outbox;
use crate::keepalive::Framing;
use crate::options::Counters;

/// The largest frame a client may send (it has nothing to say but Ping, Pong and Close).
const MAX_CLIENT_FRAME: usize = 4 << 10;

/// What is read from the client before its frames are decoded.
const READ_LIMIT: usize = MAX_CLIENT_FRAME + 16;

/// See the module docs.
pub(crate) struct EventsBody {
    payload: web::Payload,
    read: BytesMut,
    outbox: Arc<Outbox>,
    /// A stats line for every endpoint, sent first, rendered as they go out.
    initial: std::vec::IntoIter<EndpointStatus>,
    counters: Arc<Counters>,
    framing: Framing,
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
            outbox,
            initial: initial.into_iter(),
            counters,
            framing: Framing::new(MAX_CLIENT_FRAME),
        }
    }

    /// Reads what the client sent; `Some(close)` when the conversation is over.
    fn read_client(&mut self, cx: &mut Context<'_>) -> Option<(CloseCode, &'static str)> {
        while self.read.len() < READ_LIMIT {
            match Pin::new(&mut self.payload).poll_next(cx) {
                Poll::Ready(Some(Ok(chunk))) => {
                    self.framing.heard();
                    self.read.extend_from_slice(&chunk);
                }
                // The client went away: nothing to say to it.
                Poll::Ready(Some(Err(_)) | None) => return Some((CloseCode::Away, "")),
                Poll::Pending => break,
            }
        }
        loop {
            match self.framing.decode(&mut self.read) {
                Ok(Some(Frame::Ping(data))) => self.framing.pinged(data),
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
        if this.framing.is_done() {
            return Poll::Ready(None);
        }
        if let Some((code, why)) = this.read_client(cx) {
            return this.framing.finish(code, why);
        }
        if let Some(chunk) = this.framing.poll_keepalive(cx) {
            return chunk;
        }
        if let Some(status) = this.initial.next() {
            return this
                .framing
                .frame(Message::Text(stats_line(&status).to_string().into()));
        }
        match this.outbox.poll_next(cx) {
            Poll::Ready(Some(line)) => this.framing.frame(Message::Text((&*line).into())),
            Poll::Ready(None) => this
                .framing
                .close(CloseCode::Policy, "too slow: events were not read"),
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
