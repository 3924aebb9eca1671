//! The write side: frames queue in the bounded outbox, go to the socket in batches, and stay
//! accounted for until the operating system has taken them whole.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use awc::error::WsProtocolError;
use awc::ws::Message as WsMessage;
use bytes::Bytes;
use futures_util::SinkExt;
use wsherd_protocol::Outbound;

use super::Connection;
use super::messages::{Write, WriteError, WriteOnOpen};
use super::state::SocketState;
use crate::config::MAX_CLOSE_REASON;
use crate::event::{EndReason, Unsent};
use crate::framed::FramesWritten;
use crate::stats::ConnectionStats;

/// Bytes a Close frame can take: code plus the longest reason.
const MAX_CLOSE_FRAME: usize = MAX_CLOSE_REASON + 2;

/// Whose frame it is, which decides what becomes of it if the socket ends first.
#[derive(Debug, Clone, Copy)]
pub(super) enum Origin {
    /// Pongs, Pings, Close, application pings: the connection's own; forgotten.
    Control,
    /// The owner's replay: counted when flushed, never handed back (the owner replays it).
    OnOpen,
    /// A caller message, accepted at this instant: handed back unless flushed.
    Caller(Instant),
}

/// A caller message kept until flushed: its payload's bytes shared with the frame's.
#[derive(Debug)]
enum Kept {
    Text(Bytes),
    Binary(Bytes),
}

impl Kept {
    fn of(frame: &WsMessage) -> Option<Kept> {
        match frame {
            WsMessage::Text(text) => Some(Kept::Text(text.as_bytes().clone())),
            WsMessage::Binary(bytes) => Some(Kept::Binary(bytes.clone())),
            _ => None,
        }
    }

    fn into_outbound(self) -> Outbound {
        match self {
            // The bytes came from a `String`, so they are UTF-8; lossy only guards the type.
            Kept::Text(bytes) => Outbound::Text(String::from_utf8_lossy(&bytes).into_owned()),
            Kept::Binary(bytes) => Outbound::Binary(bytes),
        }
    }
}

/// Data frames handed to the socket whose last byte the operating system has not yet taken.
#[derive(Debug, Default)]
pub(super) struct Unflushed {
    /// `(index of the frame on this socket, the message if it is a caller's)`, in order.
    frames: VecDeque<(u64, Option<(Kept, Instant)>)>,
    /// Frames of any kind handed to the socket so far: the next frame's index.
    taken: u64,
}

impl Unflushed {
    /// Numbers a frame on its way to the socket, keeping what must be accounted for.
    fn take(&mut self, frame: &WsMessage, origin: Origin) {
        let index = self.taken;
        self.taken += 1;
        match origin {
            Origin::Control => {}
            Origin::OnOpen => self.frames.push_back((index, None)),
            // A cheap copy: the payload's bytes are shared, not copied.
            Origin::Caller(at) => self
                .frames
                .push_back((index, Kept::of(frame).map(|kept| (kept, at)))),
        }
    }

    /// Forgets the frames the operating system took whole; returns how many data frames.
    fn settle(&mut self, written: &FramesWritten) -> u64 {
        let written = written.get();
        let mut flushed = 0;
        while self
            .frames
            .front()
            .is_some_and(|(index, _)| *index < written)
        {
            self.frames.pop_front();
            flushed += 1;
        }
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            // An idle socket holds no bookkeeping.
            self.frames = VecDeque::new();
        }
        flushed
    }

    /// The caller messages still unflushed, oldest first.
    fn drain_callers(&mut self) -> impl Iterator<Item = Unsent> + '_ {
        self.frames.drain(..).filter_map(|(_, kept)| {
            kept.map(|(kept, queued_at)| Unsent {
                message: kept.into_outbound(),
                queued_at,
            })
        })
    }
}

impl Connection {
    /// Queues a connection frame for the socket; refused when the socket is not there or the
    /// write buffer is full (a Close is queued whatever the buffer holds).
    pub(super) fn write_frame(
        &mut self,
        frame: WsMessage,
        ctx: &mut Context<Self>,
    ) -> Result<(), WsMessage> {
        self.write_frame_as(frame, Origin::Control, ctx)
    }

    fn write_frame_as(
        &mut self,
        frame: WsMessage,
        origin: Origin,
        ctx: &mut Context<Self>,
    ) -> Result<(), WsMessage> {
        if !self.state.can_write() {
            return Err(frame);
        }
        let (len, always) = match &frame {
            WsMessage::Text(text) => (text.len(), false),
            WsMessage::Binary(bytes) | WsMessage::Ping(bytes) | WsMessage::Pong(bytes) => {
                (bytes.len(), false)
            }
            WsMessage::Close(_) => (MAX_CLOSE_FRAME, true),
            WsMessage::Continuation(_) | WsMessage::Nop => (0, false),
        };
        if let Err((frame, _)) = self.outbox.push((frame, origin), len, always) {
            // The buffer is full behind a write on its way: watch that write.
            self.watch_pending_write(ctx);
            return Err(frame);
        }
        self.pump(ctx);
        Ok(())
    }

    /// Hands everything queued to the socket in one batch, unless a batch is already on its way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.outbox.has_queued() {
            return;
        }
        let Some(mut sink) = self.sink.take() else {
            // A batch is still on its way and more waits behind it.
            self.watch_pending_write(ctx);
            return;
        };
        let (batch, bytes) = self.outbox.take_batch();
        let frames = batch.len() as u64;
        let mut out = Vec::with_capacity(batch.len());
        for (frame, origin) in batch {
            self.unflushed.take(&frame, origin);
            out.push(frame);
        }
        let write = async move {
            for frame in out {
                sink.feed(frame).await?;
            }
            sink.flush().await?;
            Ok::<_, WsProtocolError>(sink)
        };
        self.write_started();
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.write_done();
            act.outbox.flushed(bytes);
            act.settle_flushed();
            match result {
                Ok(sink) => {
                    ConnectionStats::add(&act.stats.frames_out, frames);
                    act.sink = Some(sink);
                    act.pump(ctx);
                    if act.state.stops_when_flushed() && act.is_flushed() {
                        ctx.stop();
                    }
                }
                Err(error) => {
                    act.end.get_or_insert_with(|| {
                        Box::new(EndReason::Io {
                            reason: error.to_string(),
                        })
                    });
                    ctx.stop();
                }
            }
        }));
    }

    /// Counts what the operating system took whole since the last look.
    pub(super) fn settle_flushed(&mut self) {
        if let Some(written) = &self.frames_written {
            let flushed = self.unflushed.settle(written);
            ConnectionStats::add(&self.stats.messages_flushed, flushed);
        }
    }

    /// Whether everything queued reached the socket (and no batch is on its way).
    pub(super) fn is_flushed(&self) -> bool {
        self.sink.is_some() && self.outbox.buffered() == 0
    }

    /// The caller messages whose last byte never reached the operating system, in order:
    /// first those a cut-short write held, then those taken back at the peer's Close, then
    /// those still queued.
    pub(super) fn drain_unsent(&mut self) -> Vec<Unsent> {
        self.settle_flushed();
        let mut unsent: Vec<Unsent> = self.unflushed.drain_callers().collect();
        unsent.append(&mut self.taken_back);
        unsent.extend(self.take_back_queued());
        unsent
    }

    /// Takes the caller messages not yet handed to the socket out of the outbox (the peer
    /// closed: they would go out after its Close, where a peer may drop them unread).
    pub(super) fn take_back_at_peer_close(&mut self) {
        let queued = self.take_back_queued();
        self.taken_back.extend(queued);
    }

    fn take_back_queued(&mut self) -> Vec<Unsent> {
        self.outbox
            .drain_unsent()
            .filter_map(|(frame, origin)| match (frame, origin) {
                (WsMessage::Text(text), Origin::Caller(queued_at)) => Some(Unsent {
                    message: Outbound::Text(text.to_string()),
                    queued_at,
                }),
                (WsMessage::Binary(bytes), Origin::Caller(queued_at)) => Some(Unsent {
                    message: Outbound::Binary(bytes),
                    queued_at,
                }),
                _ => None,
            })
            .collect()
    }

    fn write_message(
        &mut self,
        message: Outbound,
        origin: Origin,
        ctx: &mut Context<Self>,
    ) -> Result<(), WriteError> {
        if !self.state.accepts_messages() {
            return Err(match self.state {
                SocketState::Connecting => WriteError::NotOpen(message),
                _ => WriteError::Closing(message),
            });
        }
        let len = message.len() as u64;
        let frame = match message {
            Outbound::Text(text) => WsMessage::Text(text.into()),
            Outbound::Binary(bytes) => WsMessage::Binary(bytes),
        };
        match self.write_frame_as(frame, origin, ctx) {
            Ok(()) => {
                ConnectionStats::add(&self.stats.messages_out, 1);
                ConnectionStats::add(&self.stats.bytes_out, len);
                Ok(())
            }
            Err(WsMessage::Text(text)) => Err(WriteError::Full(Outbound::Text(text.to_string()))),
            Err(WsMessage::Binary(bytes)) => Err(WriteError::Full(Outbound::Binary(bytes))),
            Err(_) => Err(WriteError::Full(Outbound::Binary(Bytes::new()))),
        }
    }
}

impl Connection {
    /// Writes a resync message after a sequence gap: the connection's own, like the on-open
    /// replay, so it is never handed back.
    pub(super) fn write_resync(
        &mut self,
        text: String,
        ctx: &mut Context<Self>,
    ) -> Result<(), WriteError> {
        self.write_message(Outbound::Text(text), Origin::OnOpen, ctx)
    }
}

impl Handler<Write> for Connection {
    type Result = Result<(), WriteError>;

    fn handle(&mut self, write: Write, ctx: &mut Context<Self>) -> Self::Result {
        let request = match (&self.replies, &write.message) {
            (Some(replies), Outbound::Text(text)) if replies.awaiting() => {
                Some((Arc::clone(replies), text.clone()))
            }
            _ => None,
        };
        self.write_message(write.message, Origin::Caller(write.queued_at), ctx)?;
        if let Some((replies, text)) = request {
            replies.written(&text, self.id);
        }
        Ok(())
    }
}

impl Handler<WriteOnOpen> for Connection {
    type Result = Result<(), WriteError>;

    fn handle(
        &mut self,
        WriteOnOpen(message): WriteOnOpen,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.write_message(message, Origin::OnOpen, ctx)
    }
}
