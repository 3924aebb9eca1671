//! The write side: frames queue in the bounded outbox and go to the socket in batches.

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
use crate::event::EndReason;
use crate::stats::ConnectionStats;

/// Bytes a Close frame can take: code plus the longest reason.
const MAX_CLOSE_FRAME: usize = MAX_CLOSE_REASON + 2;

impl Connection {
    /// Queues a frame for the socket; refused when the socket is not there or the write
    /// buffer is full (a Close is queued whatever the buffer holds).
    pub(super) fn write_frame(
        &mut self,
        frame: WsMessage,
        ctx: &mut Context<Self>,
    ) -> Result<(), WsMessage> {
        self.write_frame_as(frame, false, ctx)
    }

    fn write_frame_as(
        &mut self,
        frame: WsMessage,
        returnable: bool,
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
        self.outbox
            .push((frame, returnable), len, always)
            .map_err(|(frame, _)| frame)?;
        self.pump(ctx);
        Ok(())
    }

    /// Hands everything queued to the socket in one batch, unless a batch is already on its way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.outbox.has_queued() {
            return;
        }
        let Some(mut sink) = self.sink.take() else {
            return;
        };
        let (batch, bytes) = self.outbox.take_batch();
        let frames = batch.len() as u64;
        let write = async move {
            for (frame, _) in batch {
                sink.feed(frame).await?;
            }
            sink.flush().await?;
            Ok::<_, WsProtocolError>(sink)
        };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.outbox.flushed(bytes);
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
                    act.end.get_or_insert(EndReason::Io {
                        reason: error.to_string(),
                    });
                    ctx.stop();
                }
            }
        }));
    }

    /// Whether everything queued reached the socket (and no batch is on its way).
    pub(super) fn is_flushed(&self) -> bool {
        self.sink.is_some() && self.outbox.buffered() == 0
    }

    /// The caller messages that never reached the socket, in order.
    pub(super) fn drain_unsent(&mut self) -> Vec<Outbound> {
        self.outbox
            .drain_unsent()
            .filter_map(|(frame, returnable)| match frame {
                WsMessage::Text(text) if returnable => Some(Outbound::Text(text.to_string())),
                WsMessage::Binary(bytes) if returnable => Some(Outbound::Binary(bytes)),
                _ => None,
            })
            .collect()
    }

    fn write_message(
        &mut self,
        message: Outbound,
        returnable: bool,
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
        match self.write_frame_as(frame, returnable, ctx) {
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

impl Handler<Write> for Connection {
    type Result = Result<(), WriteError>;

    fn handle(&mut self, Write(message): Write, ctx: &mut Context<Self>) -> Self::Result {
        self.write_message(message, true, ctx)
    }
}

impl Handler<WriteOnOpen> for Connection {
    type Result = Result<(), WriteError>;

    fn handle(
        &mut self,
        WriteOnOpen(message): WriteOnOpen,
        ctx: &mut Context<Self>,
    ) -> Self::Result {
        self.write_message(message, false, ctx)
    }
}
