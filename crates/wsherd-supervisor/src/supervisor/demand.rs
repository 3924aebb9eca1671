//! On-demand endpoints: `Idle` while nobody needs them, connected and supervised as always
//! while someone does, and closed gracefully once nobody did for `linger`.
//!
//! Needed means: a live subscription names the endpoint (the router watches that for us and
//! says when it changes), or a message waits to be sent. While the endpoint is up and not
//! needed, a linger clock runs; a need that comes back stops it, and the clock starts over
//! the next time the need ends. A subscriber whose actor stopped without unsubscribing is
//! noticed by its first failed delivery, or at the latest by a re-check every `linger`.

use std::time::{Duration, Instant};

use actix::prelude::*;
use wsherd_connection::Close;
use wsherd_protocol::CloseCode;
use wsherd_router::{DemandChanged, DemandWatch};

use super::Supervisor;
use super::control::Intent;
use crate::state::EndpointState;

/// The shortest and longest period of the re-check for subscribers that stopped without
/// unsubscribing.
const MIN_RECHECK: Duration = Duration::from_secs(1);
const MAX_RECHECK: Duration = Duration::from_secs(3600);

/// What an on-demand endpoint keeps beside the supervisor's own state.
pub(super) struct OnDemand {
    linger: Duration,
    watch: Option<DemandWatch>,
    /// A live subscription names the endpoint, as the router last said.
    named: bool,
    /// Since when nothing needs the endpoint while it is up.
    unneeded_since: Option<Instant>,
    timer: Option<SpawnHandle>,
}

impl OnDemand {
    pub(super) fn new(linger: Duration) -> Box<Self> {
        Box::new(OnDemand {
            linger,
            watch: None,
            named: false,
            unneeded_since: None,
            timer: None,
        })
    }
}

impl Supervisor {
    /// Whether the endpoint is needed now: named by a subscription, or with a message to send
    /// (one a failed endpoint will not send: what it keeps queued waits for the next need).
    fn needed(&self) -> bool {
        self.on_demand.as_ref().is_none_or(|demand| demand.named)
            || self.in_flight
            || (!self.queue.is_empty() && !matches!(self.state, EndpointState::Failed { .. }))
    }

    /// Whether an on-demand endpoint nobody needs would be `Idle` now instead of connecting.
    pub(super) fn stays_idle(&self) -> bool {
        self.on_demand.is_some() && !self.needed()
    }

    /// Registers with the router for changes of the endpoint's demand, and re-checks it every
    /// `linger`; called once, when the actor starts.
    pub(super) fn watch_demand(&mut self, ctx: &mut Context<Self>) {
        let Some(demand) = self.on_demand.as_mut() else {
            return;
        };
        let (watch, named) = self
            .router
            .watch_demand(self.name.clone(), ctx.address().recipient());
        demand.watch = Some(watch);
        demand.named = named;
        let every = demand.linger.clamp(MIN_RECHECK, MAX_RECHECK);
        ctx.run_interval(every, |act, ctx| {
            // Only a need can end unannounced (its subscriber's actor stopped); a need that
            // begins always comes as a `DemandChanged`.
            if !act.on_demand.as_ref().is_some_and(|demand| demand.named) {
                return;
            }
            let named = act.router.is_demanded(&act.name);
            if let Some(demand) = act.on_demand.as_mut()
                && demand.named != named
            {
                demand.named = named;
                act.review_demand(ctx);
            }
        });
    }

    /// Ends the router registration; called when the actor stops.
    pub(super) fn unwatch_demand(&mut self) {
        if let Some(watch) = self
            .on_demand
            .as_mut()
            .and_then(|demand| demand.watch.take())
        {
            self.router.unwatch_demand(&self.name, watch);
        }
    }

    /// After anything that may start or end the need: runs or stops the linger clock.
    pub(super) fn review_demand(&mut self, ctx: &mut Context<Self>) {
        let needed = self.needed();
        let up = self.intent == Intent::Run
            && !matches!(
                self.state,
                EndpointState::Idle | EndpointState::Paused | EndpointState::Stopped
            );
        let Some(demand) = self.on_demand.as_mut() else {
            return;
        };
        if needed || !up {
            demand.unneeded_since = None;
            if let Some(timer) = demand.timer.take() {
                ctx.cancel_future(timer);
            }
            return;
        }
        let since = *demand.unneeded_since.get_or_insert_with(Instant::now);
        // A linger past what an `Instant` holds never ends: no timer.
        if demand.timer.is_none()
            && let Some(due) = since.checked_add(demand.linger)
        {
            let wait = due.saturating_duration_since(Instant::now());
            demand.timer = Some(ctx.run_later(wait, Self::linger_over));
        }
    }

    /// The linger clock rang: idle if the need did not come back meanwhile.
    fn linger_over(&mut self, ctx: &mut Context<Self>) {
        let named = self.router.is_demanded(&self.name);
        let Some(demand) = self.on_demand.as_mut() else {
            return;
        };
        demand.timer = None;
        demand.named = named;
        let lingered = demand
            .unneeded_since
            .is_some_and(|since| since.elapsed() >= demand.linger);
        if lingered && !self.needed() {
            self.go_idle(ctx);
        } else {
            self.review_demand(ctx);
        }
    }

    /// Closes the socket gracefully (then `Idle`), or, without one, gives up the attempt under
    /// way or the wait before the next, and is `Idle` at once.
    fn go_idle(&mut self, ctx: &mut Context<Self>) {
        self.close_retiring("idle: no longer needed");
        self.attempt_token += 1;
        match &self.connection {
            Some(connection) => {
                self.intent = Intent::Idle;
                connection.do_send(Close {
                    code: CloseCode::NORMAL,
                    reason: "idle: no longer needed".to_owned(),
                });
            }
            None => self.become_idle(ctx),
        }
    }

    /// `Idle`: no socket, and the next need starts from attempt 1.
    pub(super) fn become_idle(&mut self, ctx: &mut Context<Self>) {
        self.policy.reset();
        self.set_state(EndpointState::Idle, ctx);
        self.schedule_expiry(ctx);
    }

    /// A need arose: an idle endpoint connects.
    pub(super) fn wake(&mut self, ctx: &mut Context<Self>) {
        if self.state == EndpointState::Idle && self.intent == Intent::Run && self.needed() {
            self.begin_attempt(ctx);
        }
    }
}

impl Handler<DemandChanged> for Supervisor {
    type Result = ();

    fn handle(&mut self, changed: DemandChanged, ctx: &mut Context<Self>) {
        let Some(demand) = self.on_demand.as_mut() else {
            return;
        };
        demand.named = changed.needed;
        self.wake(ctx);
        self.review_demand(ctx);
    }
}
