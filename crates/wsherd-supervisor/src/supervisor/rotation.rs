//! Planned rotation, make before break: after `max_lifetime` a live socket's successor is
//! opened, replayed and made live while the old one keeps delivering; only then is the old
//! one closed, and once it is gone the successor takes over reading and writing.
//!
//! While both exist, queued messages wait (nothing is written on either), so order holds:
//! what the old socket hands back unsent goes first on the new one. Without `live_after` the
//! new socket's reads are held until the old one is closed, so the two feeds never interleave;
//! with a sequence configured, what both carried is delivered once. A successor that fails
//! before it is live is given up and the old socket kept; the rotation is tried again later.
//! Subscribers see one `Live` event with `rotated` set, and no other state change.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use wsherd_connection::{Close, Connection, EndReason, Notice, ReleaseReads};
use wsherd_protocol::CloseCode;

use super::Supervisor;
use super::control::Intent;
use crate::state::{EndpointState, StateEvent};

/// The shortest wait before a failed rotation is tried again.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// The socket being replaced, while its successor comes up.
pub(super) struct Rotation {
    old: Addr<Connection>,
    old_id: u64,
    /// The successor opened (its replay is being written).
    new_open: bool,
    /// The successor is live: the old one may be closed once the replay is written.
    new_live: bool,
    /// The old one was asked to close.
    old_closing: bool,
    /// The successor's reads wait for the old one to be gone.
    reads_held: bool,
}

impl Supervisor {
    /// Whether a rotation is under way.
    pub(super) fn is_rotating(&self) -> bool {
        self.rotation.is_some()
    }

    /// Whether the successor of a rotation is waiting for its live-after reply.
    pub(super) fn successor_awaits_live(&self) -> bool {
        self.rotation
            .as_ref()
            .is_some_and(|rotation| rotation.new_open && !rotation.new_live)
    }

    /// After a socket became live: its replacement is due after `max_lifetime`.
    pub(super) fn schedule_rotation(&mut self, after: Option<Duration>, ctx: &mut Context<Self>) {
        let Some(lifetime) = after.or(self.spec.max_lifetime) else {
            return;
        };
        let socket = self.connection_id;
        ctx.run_later(lifetime, move |act, ctx| {
            if act.connection_id == socket
                && act.state == EndpointState::Live
                && act.intent == Intent::Run
                && act.rotation.is_none()
            {
                act.start_rotation(ctx);
            }
        });
    }

    fn start_rotation(&mut self, ctx: &mut Context<Self>) {
        let Some(old) = self.connection.take() else {
            return;
        };
        self.span.in_scope(|| {
            tracing::info!("rotating: a new socket before the old one reaches its lifetime")
        });
        self.rotation = Some(Box::new(Rotation {
            old,
            old_id: self.connection_id,
            new_open: false,
            new_live: false,
            old_closing: false,
            reads_held: false,
        }));
        if let Some(tracker) = self.sequence_tracker() {
            tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_overlap(true);
        }
        self.request_socket(ctx);
    }

    /// The successor opened: `true` when its reads are to stay held for now.
    pub(super) fn successor_opened(&mut self) -> bool {
        let hold = self.spec.live_after.is_none();
        if let Some(rotation) = self.rotation.as_mut() {
            rotation.new_open = true;
            rotation.reads_held = hold;
        }
        hold
    }

    /// The successor is live: the old socket goes once the replay is written.
    pub(super) fn successor_live(&mut self, ctx: &mut Context<Self>) {
        if let Some(rotation) = self.rotation.as_mut() {
            rotation.new_live = true;
        }
        self.close_old_when_ready(ctx);
    }

    /// Closes the old socket when the successor is live and its replay written.
    pub(super) fn close_old_when_ready(&mut self, _: &mut Context<Self>) {
        let replaying = self.is_replaying();
        let Some(rotation) = self.rotation.as_mut() else {
            return;
        };
        if rotation.new_live && !replaying && !rotation.old_closing {
            rotation.old_closing = true;
            rotation.old.do_send(Close {
                code: CloseCode::NORMAL,
                reason: "rotated: a new socket took over".to_owned(),
            });
        }
    }

    /// A notice of a connection that is no longer the current one (the old socket of a
    /// rotation, or the last words of any ended socket).
    pub(super) fn on_retired(&mut self, id: u64, notice: Notice, ctx: &mut Context<Self>) {
        match notice {
            Notice::Unsent(messages) => self.take_back(messages, ctx),
            Notice::Delivered => {
                self.unsettled_lives = self.unsettled_lives.saturating_sub(1);
                self.settle_stop(ctx);
            }
            Notice::Event(wsherd_connection::ConnectionEvent::Closed { reason })
                if self.rotation.as_ref().is_some_and(|r| r.old_id == id) =>
            {
                self.old_closed(id, reason, ctx);
            }
            _ => {}
        }
    }

    /// The old socket of the rotation is gone.
    fn old_closed(&mut self, id: u64, reason: EndReason, ctx: &mut Context<Self>) {
        let Some(rotation) = self.rotation.take() else {
            return;
        };
        self.socket_requests_ended(id);
        if let Some(tracker) = self.sequence_tracker() {
            tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .end_overlap_when_new();
        }
        if rotation.reads_held
            && let Some(connection) = &self.connection
        {
            connection.do_send(ReleaseReads);
        }
        if rotation.new_live {
            self.shared.rotations.fetch_add(1, Ordering::Relaxed);
            self.announce(StateEvent::rotated(), ctx);
            self.schedule_rotation(None, ctx);
            self.pump(ctx);
            return;
        }
        // The old socket died first: an ordinary end, with its successor already under way.
        let _ = self.uptime.ended(std::time::Instant::now());
        self.last_end_class = reason.class();
        self.shared.set_last_error(reason);
        if rotation.new_open {
            self.set_state(EndpointState::Open, ctx);
        } else {
            self.set_state(
                EndpointState::Connecting {
                    attempt: self.life_attempt,
                },
                ctx,
            );
        }
    }

    /// The successor ended before it was live: the old socket stays, and the rotation is tried
    /// again after the backoff's initial delay (at least a second). Returns whether that was so.
    pub(super) fn successor_failed(&mut self, reason: &EndReason, ctx: &mut Context<Self>) -> bool {
        if self.rotation.as_ref().is_none_or(|r| r.new_live) {
            return false;
        }
        let Some(rotation) = self.rotation.take() else {
            return false;
        };
        self.span.in_scope(|| {
            tracing::warn!(%reason, "rotation given up: the new socket failed; keeping the old one")
        });
        self.end_overlap();
        self.connection = Some(rotation.old);
        self.connection_id = rotation.old_id;
        self.schedule_rotation(Some(self.spec.backoff.initial.max(RETRY_MIN)), ctx);
        self.pump(ctx);
        true
    }

    /// Closes the old socket of a rotation at once (a pause, a stop, a manual reconnect): what
    /// it hands back comes back to the queue.
    pub(super) fn close_retiring(&mut self, reason: &str) {
        if let Some(rotation) = self.rotation.take() {
            rotation.old.do_send(Close {
                code: CloseCode::NORMAL,
                reason: reason.to_owned(),
            });
            self.end_overlap();
        }
    }

    fn end_overlap(&self) {
        if let Some(tracker) = self.sequence_tracker() {
            tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .set_overlap(false);
        }
    }
}
