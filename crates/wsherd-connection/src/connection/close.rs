//! Ending a life gracefully: our Close, the peer's Close, and failing on a peer's fault.

use actix::prelude::*;
use awc::ws::{CloseReason, Message as WsMessage};
use wsherd_protocol::CloseCode;

use super::Connection;
use super::messages::Close;
use super::state::SocketState;
use crate::config::truncate_reason;
use crate::event::{ConnectionEvent, EndReason, Side};

impl Connection {
    pub(super) fn on_peer_close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        let (code, text) = match reason {
            Some(reason) => (
                CloseCode::from(u16::from(reason.code)),
                reason.description.unwrap_or_default(),
            ),
            None => (CloseCode::NO_STATUS, String::new()),
        };
        match self.state.closing_side() {
            Some(Side::Local) => {
                // The peer acknowledged our Close: our frame has arrived, nothing is left to flush.
                if let Some(EndReason::LocalClose { acknowledged, .. }) = self.end.as_deref_mut() {
                    *acknowledged = true;
                }
                ctx.stop();
            }
            Some(Side::Peer) => {}
            None => {
                self.unwatch();
                self.set_state(SocketState::Closing {
                    initiated_by: Side::Peer,
                    stop_when_flushed: false,
                });
                self.end = Some(Box::new(EndReason::PeerClosed {
                    code,
                    reason: text.clone(),
                }));
                // What the caller queued goes back rather than out after the peer's Close; the
                // echo goes first.
                self.take_back_at_peer_close();
                // Echo the code (1005 may not be sent on the wire, so answer it with none).
                let echo = code.may_be_sent().then(|| CloseReason {
                    code: code.as_u16().into(),
                    description: None,
                });
                let _ = self.write_frame(WsMessage::Close(echo), ctx);
                self.emit(
                    ConnectionEvent::Closing {
                        initiated_by: Side::Peer,
                        code,
                        reason: text,
                    },
                    ctx,
                );
                // The peer closes TCP after our echo; stopping now could drop the echo unsent.
                ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
            }
        }
    }

    /// Fails the connection because of something the peer did (RFC 6455 §7.1.7): send a Close
    /// with the reason's code, then wait up to the close timeout for the peer's answer.
    /// Stopping at once would close a socket with unread input, which makes the kernel send a
    /// reset that can destroy our Close before the peer reads it.
    pub(super) fn fail(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        self.close_after_failure(reason, false, ctx);
    }

    /// Like [`Connection::fail`], for a peer that is gone: stop once the Close is flushed.
    pub(super) fn abandon(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        self.close_after_failure(reason, true, ctx);
    }

    fn close_after_failure(&mut self, reason: EndReason, abandon: bool, ctx: &mut Context<Self>) {
        if self.end.is_none() {
            self.end = Some(Box::new(reason.clone()));
        }
        if self.state.is_closing() {
            return;
        }
        // Every failure has a code (`EndReason::close_code`); INTERNAL only guards a new one.
        let code = reason
            .close_code()
            .filter(|code| code.may_be_sent())
            .unwrap_or(CloseCode::INTERNAL);
        let queued = self.send_close(code, &reason.to_string(), abandon, ctx);
        if !queued || (abandon && self.is_flushed()) {
            ctx.stop();
        } else {
            ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
        }
    }

    /// Sends our Close (reason cut to fit) and announces `Closing`; returns whether the frame
    /// was queued.
    fn send_close(
        &mut self,
        code: CloseCode,
        reason: &str,
        stop_when_flushed: bool,
        ctx: &mut Context<Self>,
    ) -> bool {
        let can_write = self.state.can_write();
        // Silence is expected from here on: the close timeout bounds what is left.
        self.unwatch();
        // The peer's answer must be read, whoever held the reads.
        self.release_reads(ctx);
        let reason = truncate_reason(reason);
        self.set_state(SocketState::Closing {
            initiated_by: Side::Local,
            stop_when_flushed,
        });
        let frame = WsMessage::Close(Some(CloseReason {
            code: code.as_u16().into(),
            description: Some(reason.clone()),
        }));
        let queued = can_write && self.write_frame(frame, ctx).is_ok();
        self.emit(
            ConnectionEvent::Closing {
                initiated_by: Side::Local,
                code,
                reason,
            },
            ctx,
        );
        queued
    }
}

impl Handler<Close> for Connection {
    type Result = ();

    fn handle(&mut self, Close { code, reason }: Close, ctx: &mut Context<Self>) {
        if self.state.is_closing() {
            return;
        }
        if self.state == SocketState::Connecting {
            // Still in the handshake: there is no peer to tell.
            self.end = Some(Box::new(EndReason::LocalClose {
                code,
                reason,
                acknowledged: false,
            }));
            ctx.stop();
            return;
        }
        self.end = Some(Box::new(EndReason::LocalClose {
            code,
            reason: truncate_reason(&reason),
            acknowledged: false,
        }));
        self.send_close(code, &reason, false, ctx);
        ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
    }
}
