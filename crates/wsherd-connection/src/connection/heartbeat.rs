//! Keeping the peer honest: the heartbeat tick, and the replies the connection consumes itself
//! (application pongs, the live-after answer) instead of routing them.

use std::time::Instant;

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use wsherd_protocol::{HeartbeatAction, HeartbeatMode};

use super::Connection;
use crate::event::{EndReason, Notice};

impl Connection {
    /// Runs the heartbeat policy and schedules the next tick.
    pub(super) fn heartbeat_tick(&mut self, ctx: &mut Context<Self>) {
        if self.state.is_closing() {
            return;
        }
        let now = Instant::now();
        // While wsherd holds the reads, the peer's answers sit unread: its clock stands still.
        let held = self.reads_paused();
        let Some(hb) = &mut self.heartbeat else {
            return;
        };
        if std::mem::take(&mut self.saw_data) || held {
            hb.on_data(now);
        }
        if std::mem::take(&mut self.saw_frame) || held {
            hb.on_frame(now);
        }
        let (action, wake) = hb.poll(now);
        match action {
            None => {}
            Some(HeartbeatAction::Ping(payload)) => {
                let _ = self.write_frame(WsMessage::Ping(payload), ctx);
            }
            Some(HeartbeatAction::AppPing(text)) => {
                let _ = self.write_frame(WsMessage::Text(text.into()), ctx);
            }
            Some(HeartbeatAction::Dead(why)) => {
                // A dead peer will not answer a Close: send one for the record, and go.
                self.abandon(EndReason::Unresponsive { why }, ctx);
                return;
            }
        }
        ctx.run_later(wake.saturating_duration_since(now), |act, ctx| {
            act.heartbeat_tick(ctx)
        });
    }

    pub(super) fn awaiting_app_reply(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|hb| {
            hb.is_waiting_for_reply() && matches!(hb.spec().mode, HeartbeatMode::App { .. })
        })
    }

    /// Checks a text message against the replies the connection waits for; returns true when
    /// it was an application heartbeat reply, which is consumed rather than routed.
    pub(super) fn is_owner_reply(&mut self, text: &str) -> bool {
        if self.awaiting_live_reply
            && let Some(matcher) = &self.config.live_after
            && matcher.matches(text, &self.config.kind)
        {
            self.awaiting_live_reply = false;
            self.notify_owner(Notice::LiveReply);
        }
        if let Some(hb) = &mut self.heartbeat
            && hb.is_waiting_for_reply()
            && let HeartbeatMode::App { reply, .. } = &hb.spec().mode
            && reply.matches(text, &self.config.kind)
        {
            if let Some(rtt) = hb.on_app_reply(Instant::now()) {
                self.stats.set_rtt(rtt);
            }
            return true;
        }
        false
    }
}
