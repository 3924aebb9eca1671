//! Keeping the peer honest: the socket's side of the arbiter's heartbeat actor
//! ([`Heartbeats`]), and the replies the connection consumes itself (application pongs, the
//! live-after answer) instead of routing them.

use std::sync::Arc;

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use bytes::Bytes;
use wsherd_protocol::HeartbeatMode;

use super::Connection;
use crate::event::{EndReason, Notice};
use crate::heartbeats::{Beat, Heartbeats, Liveness, Watch, WatchId};
use crate::stats::ConnectionStats;

/// A socket's registration with its arbiter's heartbeat (found again by
/// [`Heartbeats::unwatch_here`]: the connection never leaves its arbiter, and an `Addr` kept
/// here would allocate a sender per socket).
pub(super) struct Watching {
    id: WatchId,
    liveness: Arc<Liveness>,
}

impl Connection {
    /// Asks the arbiter's heartbeat to watch this socket, now open.
    pub(super) fn watch(&mut self, ctx: &mut Context<Self>) {
        let heartbeats = Heartbeats::for_this_arbiter();
        let id = WatchId::next();
        let liveness = Arc::new(Liveness::default());
        // Reads may already be held (the open's own event went to a full subscriber).
        liveness.set_held(self.reads_paused());
        // One registration per socket life, never driven by a peer.
        heartbeats.do_send(Watch {
            id,
            spec: self.config.heartbeat.clone(),
            liveness: Arc::clone(&liveness),
            stats: Arc::clone(&self.stats),
            to: ctx.address().recipient(),
        });
        self.watch = Some(Watching { id, liveness });
    }

    /// Stops the watch: the socket is closing (a Close is on its way, silence is expected) or
    /// gone.
    pub(super) fn unwatch(&mut self) {
        if let Some(watching) = self.watch.take() {
            Heartbeats::unwatch_here(watching.id);
        }
    }

    /// Tells the heartbeat what this read turn saw (once per turn, not per frame).
    pub(super) fn report_liveness(&mut self) {
        let Some(watching) = &self.watch else {
            return;
        };
        if std::mem::take(&mut self.saw_frame) {
            watching.liveness.saw_frame();
        }
        if std::mem::take(&mut self.saw_data) {
            watching.liveness.saw_data();
        }
    }

    /// Tells the heartbeat whether wsherd holds this socket's reads.
    pub(super) fn report_held(&self, held: bool) {
        if let Some(watching) = &self.watch {
            watching.liveness.set_held(held);
        }
    }

    /// A Pong arrived: the heartbeat measures the round trip when it next looks.
    pub(super) fn report_pong(&self, payload: Bytes) {
        if let Some(watching) = &self.watch {
            watching.liveness.pong(payload);
        }
    }

    pub(super) fn awaiting_app_reply(&self) -> bool {
        self.awaiting_app_reply
    }

    /// Checks a text message against the replies the connection waits for.
    pub(super) fn owner_reply(&mut self, text: &str) -> OwnerReply {
        if self.awaiting_live_reply
            && let Some(matcher) = &self.config.live_after
            && matcher.matches(text, &self.config.kind)
        {
            self.awaiting_live_reply = false;
            self.notify_owner(Notice::LiveReply);
            return OwnerReply::LiveAfter;
        }
        if self.awaiting_app_reply
            && let HeartbeatMode::App { reply, .. } = &self.config.heartbeat.mode
            && reply.matches(text, &self.config.kind)
        {
            self.awaiting_app_reply = false;
            // An application pong is a pong: counted with the protocol ones.
            ConnectionStats::add(&self.stats.pongs_received, 1);
            if let Some(watching) = &self.watch {
                watching.liveness.app_reply();
            }
            return OwnerReply::Heartbeat;
        }
        OwnerReply::None
    }
}

/// What a text message was to the connection itself.
pub(super) enum OwnerReply {
    /// Nothing: route it.
    None,
    /// The application heartbeat's reply: consumed, never routed.
    Heartbeat,
    /// The live-after acknowledgement: the owner was told; subscribers of its kind still get
    /// it, but nobody's wanting it does not make it a dead letter.
    LiveAfter,
}

impl Handler<Beat> for Connection {
    type Result = ();

    fn handle(&mut self, beat: Beat, ctx: &mut Context<Self>) {
        if self.state.is_closing() {
            return;
        }
        match beat {
            Beat::Ping(payload) => {
                let _ = self.write_frame(WsMessage::Ping(payload), ctx);
            }
            Beat::AppPing(text) => {
                self.awaiting_app_reply = true;
                let _ = self.write_frame(WsMessage::Text(text.into()), ctx);
            }
            Beat::Dead(why) => {
                self.watch = None; // the heartbeat forgot us already
                // A dead peer will not answer a Close: send one for the record, and go.
                self.abandon(EndReason::Unresponsive { why }, ctx);
            }
        }
    }
}
