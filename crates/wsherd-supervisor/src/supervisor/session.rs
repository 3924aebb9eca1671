//! An inbound session: an endpoint whose sockets a server accepts instead of this supervisor
//! dialing them (`ConnectMode::Inbound`).
//!
//! The supervisor keeps what it keeps for any endpoint across socket lives (the outbound
//! queue, on-open messages, counters, requests), and where an outbound endpoint would back
//! off and dial, a session waits, `Disconnected`, for its client to come back: what is sent
//! meanwhile is queued and goes out in order when the same id reconnects within the resume
//! window. Once the window passes the session ends: what is still queued is reported unsent
//! ([`QueueEvent::Unsent`]) and the endpoint stops.

use actix::prelude::*;
use wsherd_connection::{AcceptedSocket, Close, EndReason};
use wsherd_protocol::CloseCode;

use super::Supervisor;
use super::control::Intent;
use crate::state::{EndpointState, QueueEvent};

/// A client connected to an inbound session: its socket (its upgrade answered) and the
/// subprotocol agreed. With `replace`, a client already connected under the same id is
/// closed (1008, "replaced") and this one takes over; without, this one is refused.
#[derive(Message)]
#[rtype(result = "Result<(), Unattached>")]
pub struct Attach {
    /// The accepted socket.
    pub socket: AcceptedSocket,
    /// The subprotocol the server agreed to.
    pub protocol: Option<String>,
    /// Replace a client already connected under the same id.
    pub replace: bool,
}

/// An [`Attach`] refused: why, and the socket handed back.
#[derive(Debug)]
pub struct Unattached {
    /// Why.
    pub why: AttachRefused,
    /// The socket, untouched.
    pub socket: AcceptedSocket,
    /// The subprotocol that came with it.
    pub protocol: Option<String>,
}

/// Why an [`Attach`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AttachRefused {
    /// A client is connected under this id and duplicates are refused.
    #[error("a client is connected under this id already")]
    Connected,
    /// The owner paused the session.
    #[error("the session is paused")]
    Paused,
    /// The session is stopping or stopped.
    #[error("the session is stopped")]
    Stopped,
    /// The endpoint is not an inbound one: its sockets are dialed.
    #[error("the endpoint dials its own sockets")]
    NotInbound,
}

/// The close a replaced client gets.
const REPLACED: &str = "replaced";

impl Supervisor {
    /// Whether this endpoint's sockets are accepted by a server.
    pub(super) fn is_inbound(&self) -> bool {
        self.spec.connect.resume_window().is_some()
    }

    /// Starts with a client already attached (the one that made the session).
    pub fn with_attached(mut self, socket: AcceptedSocket, protocol: Option<String>) -> Self {
        self.attachment = Some(Box::new((socket, protocol)));
        self
    }

    /// Waits for the client to come back: `Disconnected` for the resume window (kept running
    /// when it already is), then the end.
    pub(super) fn await_client(&mut self, ctx: &mut Context<Self>) {
        let reason = self.shared.last_error().unwrap_or(EndReason::Stopped);
        self.set_state(EndpointState::Disconnected { reason }, ctx);
        self.schedule_expiry(ctx);
        if self.resume_timer.is_none()
            && let Some(window) = self.spec.connect.resume_window()
        {
            self.resume_timer = Some(ctx.run_later(window, |act, ctx| {
                act.resume_timer = None;
                if matches!(act.state, EndpointState::Disconnected { .. }) {
                    act.resume_window_passed(ctx);
                }
            }));
        }
    }

    /// The client did not come back in time: what waits for it is reported unsent, and the
    /// session ends.
    fn resume_window_passed(&mut self, ctx: &mut Context<Self>) {
        let unsent = self.queue.drain();
        self.sync_queue();
        let count = unsent.len();
        self.span.in_scope(|| {
            tracing::info!(
                unsent = count,
                "the client did not come back within the resume window: the session ends"
            )
        });
        if count > 0 {
            metrics::counter!(
                "wsherd_session_unsent_total",
                "endpoint" => self.name.family().to_owned(),
            )
            .increment(count as u64);
            self.publish_queue_event(QueueEvent::Unsent { count }, ctx);
        }
        self.intent = Intent::Stop;
        self.finish_stop(ctx);
    }

    /// Turns away a client that waits to replace the connected one (`Attach` with
    /// `replace`): it hears why in a Close frame instead of an end of stream.
    pub(super) fn turn_away_waiting(&mut self, code: CloseCode, reason: &str) {
        if let Some(attachment) = self.attachment.take() {
            attachment.0.close(code, reason);
        }
    }

    fn cancel_resume_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.resume_timer.take() {
            ctx.cancel_future(timer);
        }
    }
}

impl Supervisor {
    /// Why a client attaching now would be refused (`replace`: it may replace a connected
    /// one).
    fn refusal(&self, replace: bool) -> Option<AttachRefused> {
        if !self.is_inbound() {
            Some(AttachRefused::NotInbound)
        } else if self.intent == Intent::Stop || self.state == EndpointState::Stopped {
            Some(AttachRefused::Stopped)
        } else if self.intent == Intent::Pause || self.state == EndpointState::Paused {
            Some(AttachRefused::Paused)
        } else if self.connection.is_some() && !replace {
            Some(AttachRefused::Connected)
        } else {
            None
        }
    }
}

impl Handler<Attach> for Supervisor {
    type Result = Result<(), Unattached>;

    fn handle(&mut self, attach: Attach, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(why) = self.refusal(attach.replace) {
            return Err(Unattached {
                why,
                socket: attach.socket,
                protocol: attach.protocol,
            });
        }
        if let Some(connection) = self.connection.clone() {
            // The newcomer waits for the old socket's end (`on_closed` starts it); one that
            // waited already is replaced by the latest.
            self.turn_away_waiting(CloseCode::POLICY, REPLACED);
            self.attachment = Some(Box::new((attach.socket, attach.protocol)));
            connection.do_send(Close {
                code: CloseCode::POLICY,
                reason: REPLACED.to_owned(),
            });
            return Ok(());
        }
        self.attachment = Some(Box::new((attach.socket, attach.protocol)));
        self.cancel_resume_timer(ctx);
        self.begin_attempt(ctx);
        Ok(())
    }
}
