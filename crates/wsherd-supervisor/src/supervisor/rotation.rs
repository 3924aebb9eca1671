//! Planned rotation, make before break: after `max_lifetime` a live socket's successor is
//! opened, replayed and made live while the old one keeps delivering; only then is the old
//! one closed, and once it is gone the successor takes over reading and writing.
//!
//! While both exist, queued messages wait (nothing is written on either), so order holds:
//! what the old socket hands back unsent goes first on the new one. Without `live_after` the
//! new socket's reads are held until the old one is closed, so the two feeds never interleave;
//! with a sequence whose numbers go on across sockets, what both carried is delivered once
//! (per scope, up to the old socket's last number). A successor that fails before the old
//! socket is asked to close is given up and the old socket kept; the rotation is tried again
//! later, each failure doubling the wait (1 s at first, at most `max_lifetime`).
//! Subscribers see one `Live` event with `rotated` set, and no other state change. Requests
//! still waiting for replies on the old socket when it closes end as any socket end has them
//! end: `Disconnected`, or sent again with `resend_on_reconnect`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use wsherd_connection::{Close, Connection, ConnectionEvent, EndReason, Notice, ReleaseReads};
use wsherd_protocol::CloseCode;

use super::Supervisor;
use super::control::Intent;
use crate::state::{EndpointState, StateEvent};

/// The first wait before a failed rotation is tried again.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The socket being replaced, while its successor comes up.
pub(super) struct Rotation {
    old: Addr<Connection>,
    old_id: u64,
    /// The successor opened (its replay is being written).
    new_open: bool,
    /// The successor is live: the old one may be closed once the replay is written.
    new_live: bool,
    /// The old one was asked to close: from here the rotation cannot be given up.
    old_closing: bool,
    /// The successor's reads wait for the old one to be gone.
    reads_held: bool,
}

/// When the next rotation is due, how many were given up in a row, and an old socket closed
/// early whose end a stop waits for.
#[derive(Default)]
pub(super) struct Schedule {
    /// The next rotation's timer.
    timer: Option<SpawnHandle>,
    /// Rotations given up in a row: each doubles the wait before the next try (up to 2^20).
    failures: u8,
    /// An old socket closed early (a stop or pause during a rotation): a stop waits for its
    /// end, so what it hands back is in the stop's report.
    pub(super) retiring: Option<u64>,
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

    /// After a socket became live (or a rotation failed): the replacement is due after
    /// `after`, by default `max_lifetime`. One timer at a time.
    pub(super) fn schedule_rotation(&mut self, after: Option<Duration>, ctx: &mut Context<Self>) {
        let Some(lifetime) = after.or(self.spec.max_lifetime) else {
            return;
        };
        let schedule = self.rotations.get_or_insert_default();
        if let Some(timer) = schedule.timer.take() {
            ctx.cancel_future(timer);
        }
        let socket = self.connection_id;
        schedule.timer = Some(ctx.run_later(lifetime, move |act, ctx| {
            if let Some(schedule) = &mut act.rotations {
                schedule.timer = None;
            }
            if act.connection_id == socket
                && act.state == EndpointState::Live
                && act.intent == Intent::Run
                && act.rotation.is_none()
            {
                act.start_rotation(ctx);
            }
        }));
    }

    /// The socket ended: no rotation of it is due any more.
    pub(super) fn cancel_rotation_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.rotations.as_mut().and_then(|s| s.timer.take()) {
            ctx.cancel_future(timer);
        }
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
        // No socket is current until the successor starts: the old one's notices are its
        // last words from now on, whenever the governor lets the successor go.
        self.connection_id = 0;
        if self
            .spec
            .connection
            .sequence
            .as_ref()
            .is_some_and(|s| s.across_reconnects)
            && let Some(tracker) = self.sequence_tracker()
        {
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
            Notice::Event(ConnectionEvent::Closed { reason }) => {
                self.socket_requests_ended(id);
                if self.rotation.as_ref().is_some_and(|r| r.old_id == id) {
                    self.old_closed(reason, ctx);
                }
                if let Some(schedule) = &mut self.rotations
                    && schedule.retiring == Some(id)
                {
                    schedule.retiring = None;
                    if self.intent == Intent::Stop {
                        self.finish_stop(ctx);
                    }
                }
            }
            _ => {}
        }
    }

    /// The old socket of the rotation is gone.
    fn old_closed(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        let Some(rotation) = self.rotation.take() else {
            return;
        };
        if let Some(sequence) = &self.spec.connection.sequence
            && let Some(tracker) = self.sequence_tracker()
        {
            let mut tracker = tracker
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if sequence.across_reconnects {
                tracker.end_overlap_when_new();
            } else {
                // The new socket numbers afresh: it starts its own sequences.
                tracker.restart();
            }
        }
        if rotation.reads_held
            && let Some(connection) = &self.connection
        {
            connection.do_send(ReleaseReads);
        }
        if rotation.new_live {
            self.rotations.get_or_insert_default().failures = 0;
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

    /// The successor ended before the old socket was asked to close: the old socket stays,
    /// and the rotation is tried again later. Returns whether that was so.
    pub(super) fn successor_failed(&mut self, reason: &EndReason, ctx: &mut Context<Self>) -> bool {
        if self.intent != Intent::Run || self.rotation.as_ref().is_none_or(|r| r.old_closing) {
            return false;
        }
        let Some(rotation) = self.rotation.take() else {
            return false;
        };
        self.span.in_scope(|| {
            tracing::warn!(%reason, "rotation given up: the new socket failed; keeping the old one")
        });
        self.end_overlap();
        // What the successor's failed opening marked belongs to it, not to the old socket.
        self.open_failed = false;
        self.connection = Some(rotation.old);
        self.connection_id = rotation.old_id;
        let lifetime = self.spec.max_lifetime.unwrap_or(RETRY_FIRST);
        let schedule = self.rotations.get_or_insert_default();
        let retry = RETRY_FIRST
            .saturating_mul(1 << schedule.failures.min(20))
            .min(lifetime.max(RETRY_FIRST));
        schedule.failures = schedule.failures.saturating_add(1);
        self.schedule_rotation(Some(retry), ctx);
        self.pump(ctx);
        true
    }

    /// Closes the old socket of a rotation at once (a pause, a stop, a manual reconnect, going
    /// idle): what it hands back comes back to the queue, and a stop waits for its end.
    pub(super) fn close_retiring(&mut self, reason: &str) {
        if let Some(rotation) = self.rotation.take() {
            self.rotations.get_or_insert_default().retiring = Some(rotation.old_id);
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
