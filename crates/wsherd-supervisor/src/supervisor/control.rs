//! What an owner asks of a running endpoint: pause, resume, reconnect, stop.

use actix::prelude::*;
use wsherd_connection::Close;
use wsherd_protocol::CloseCode;

use super::Supervisor;
use super::messages::{Control, Stop, StopReceipt};
use crate::state::EndpointState;

/// What the owner last asked for; it decides what follows the end of the current socket.
///
/// | intent | when the socket ends | a new request |
/// | --- | --- | --- |
/// | `Run` | the reconnect policy decides | any |
/// | `ReconnectNow` | connect again at once, then `Run` | any |
/// | `Pause` | `Paused` until `Resume` | `Resume`, `Reconnect`, `Stop` |
/// | `Idle` | `Idle` (an on-demand endpoint nobody needs), or at once again if needed | any |
/// | `Stop` | `Stopped`, the actor ends | ignored |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Intent {
    /// Stay connected, by policy.
    Run,
    /// A manual reconnect is under way: skip the policy once.
    ReconnectNow,
    /// Stay down until resumed.
    Pause,
    /// Closing because nobody needs this on-demand endpoint: then `Idle`.
    Idle,
    /// Stop for good.
    Stop,
}

impl Handler<Control> for Supervisor {
    type Result = ();

    fn handle(&mut self, control: Control, ctx: &mut Context<Self>) {
        if self.intent == Intent::Stop {
            return;
        }
        if !matches!(control, Control::Resume) {
            self.close_retiring("the rotation was interrupted");
        }
        match control {
            Control::Reconnect => {
                if let Some(connection) = &self.connection {
                    self.intent = Intent::ReconnectNow;
                    connection.do_send(Close {
                        code: CloseCode::NORMAL,
                        reason: "reconnect requested".to_owned(),
                    });
                } else {
                    // From backoff, failure or pause: start over with a clean slate.
                    self.intent = Intent::Run;
                    self.policy.reset();
                    self.begin_attempt(ctx);
                }
            }
            Control::Pause => {
                if self.intent == Intent::Pause {
                    return;
                }
                self.intent = Intent::Pause;
                self.attempt_token += 1;
                self.turn_away_waiting(CloseCode::TRY_AGAIN, "paused");
                match &self.connection {
                    Some(connection) => connection.do_send(Close {
                        code: CloseCode::NORMAL,
                        reason: "paused".to_owned(),
                    }),
                    None => self.set_state(EndpointState::Paused, ctx),
                }
            }
            Control::Resume => {
                if self.intent == Intent::Pause {
                    self.intent = Intent::Run;
                    if self.connection.is_none() {
                        if self.stays_idle() {
                            self.become_idle(ctx);
                        } else {
                            self.begin_attempt(ctx);
                        }
                    }
                }
            }
        }
    }
}

impl Handler<Stop> for Supervisor {
    type Result = StopReceipt;

    fn handle(&mut self, Stop { code, reason }: Stop, ctx: &mut Context<Self>) -> StopReceipt {
        let (done, closed) = tokio::sync::oneshot::channel();
        let (settled_signal, settled) = tokio::sync::oneshot::channel();
        // Dropped with the actor: the receivers then complete.
        if self.state == EndpointState::Stopped {
            // Already closed, only waiting for its last events to be taken.
            let _ = done.send(Vec::new());
        } else {
            self.stopping.get_or_insert_default().closed.push(done);
        }
        self.stopping
            .get_or_insert_default()
            .settled
            .push(settled_signal);
        self.close_retiring(&reason);
        let queued = self.queue.drain();
        self.sync_queue();
        if self.intent != Intent::Stop {
            self.intent = Intent::Stop;
            self.attempt_token += 1;
            self.turn_away_waiting(code, &reason);
            match &self.connection {
                Some(connection) => connection.do_send(Close { code, reason }),
                None => self.finish_stop(ctx),
            }
        }
        StopReceipt {
            unsent: queued,
            remembered: self
                .added
                .as_ref()
                .map_or_else(Vec::new, |a| a.remembered.clone()),
            hooks: self
                .added
                .as_ref()
                .map_or_else(Vec::new, |a| a.hooks.clone()),
            closed,
            settled,
        }
    }
}
