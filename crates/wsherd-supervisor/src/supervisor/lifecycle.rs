//! An endpoint's way through its states across socket lives: attempt, open, live, end, and
//! what the policy makes of each end.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use wsherd_connection::{Close, Connection, EndReason, ReleaseReads};
use wsherd_protocol::CloseCode;

use super::Supervisor;
use super::control::Intent;
use crate::governor::Acquire;
use crate::outage::Outcome;
use crate::policy::{LifeEnd, Next};
use crate::state::{EndpointState, FailReason, StateEvent};

impl Supervisor {
    /// Starts attempt number `policy.attempt() + 1`, through the governor when there is one.
    pub(super) fn begin_attempt(&mut self, ctx: &mut Context<Self>) {
        if self.is_inbound() && self.attachment.is_none() {
            // Nothing to dial: the client comes back, or the resume window ends the session.
            return self.await_client(ctx);
        }
        let attempt = self.policy.attempt().saturating_add(1);
        self.life_attempt = attempt;
        self.set_state(EndpointState::Connecting { attempt }, ctx);
        self.request_socket(ctx);
    }

    /// Starts a connection, through the governor when there is one (an attempt, or the
    /// successor of a rotation).
    pub(super) fn request_socket(&mut self, ctx: &mut Context<Self>) {
        self.attempt_token += 1;
        let token = self.attempt_token;
        match &self.governor {
            // An accepted socket has no handshake left to govern.
            _ if self.is_inbound() => self.start_connection(ctx),
            None => self.start_connection(ctx),
            Some(governor) => {
                let request = governor.send(Acquire {
                    endpoint: self.name.clone(),
                    host: Arc::clone(&self.host),
                    held: Some(Arc::clone(&self.shared.held_by_outage)),
                });
                ctx.spawn(request.into_actor(self).map(move |granted, act, ctx| {
                    if token != act.attempt_token || act.connection.is_some() {
                        return; // abandoned meanwhile; the permit, if any, goes back on drop
                    }
                    // Without a governor answer (it stopped) connecting is still right.
                    act.permit = granted.ok().and_then(Result::ok).map(Box::new);
                    act.start_connection(ctx);
                }));
            }
        }
    }

    fn start_connection(&mut self, ctx: &mut Context<Self>) {
        // A rotation's successor is no reconnect: the endpoint never went down.
        if self.lives_started > 0 && !self.is_rotating() {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            // Once per reconnect: looked up each time, so a recorder installed late counts.
            metrics::counter!(
                "wsherd_reconnects_total",
                "endpoint" => self.name.family().to_owned(),
                "reason" => self.last_end_class,
            )
            .increment(1);
        }
        self.connect_started = Some(Instant::now());
        self.lives_started += 1;
        // Until its `Delivered` notice: a stop waits for its last deliveries.
        self.unsettled_lives += 1;
        self.open_failed = false;
        let mut connection = match self.attachment.take().map(|a| *a) {
            Some((socket, protocol)) => Connection::accepted(
                self.name.clone(),
                self.connection_config.clone(),
                &self.router,
                socket,
                protocol,
            ),
            None => Connection::new(
                self.name.clone(),
                self.connection_config.clone(),
                &self.router,
            ),
        };
        if let Some(sequence) = &self.spec.connection.sequence {
            // Kept across lives (and shown in the status); each socket starts afresh unless
            // the feed numbers continue across reconnects.
            let tracker = self.shared.sequences(sequence);
            // A rotation's successor continues the old socket's numbers (the overlap).
            if !sequence.across_reconnects && !self.is_rotating() {
                tracker
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .restart();
            }
            connection = connection.with_sequences(tracker);
        }
        let connection = connection
            // Released once the open is announced: subscribers see `Open` (and `Live`) before the
            // socket's first message.
            .hold_reads()
            .with_stats(Arc::clone(self.shared.connection_stats()))
            .with_replies(Arc::clone(self.shared.requests()) as _)
            .with_observer(ctx.address().recipient());
        self.connection_id = connection.id();
        self.connection = Some(connection.start());
    }

    pub(super) fn on_open(&mut self, ctx: &mut Context<Self>) {
        if let Some(mut permit) = self.permit.take() {
            permit.ended(Outcome::Reached);
        }
        if let Some(started) = self.connect_started.take() {
            metrics::histogram!(
                "wsherd_handshake_duration_seconds",
                "endpoint" => self.name.family().to_owned(),
            )
            .record(started.elapsed().as_secs_f64());
        }
        // A rotation's successor opens unannounced: the endpoint stays live throughout.
        let rotating = self.is_rotating();
        let hold_reads = rotating && self.successor_opened();
        if !rotating {
            self.set_state(EndpointState::Open, ctx);
        }
        let Some(connection) = self.connection.clone() else {
            return;
        };
        self.start_replay(ctx);
        match &self.spec.live_after {
            None => self.become_live(ctx),
            Some(live) => {
                let timeout = live.timeout;
                self.live_timer = Some(ctx.run_later(timeout, move |act, _| {
                    act.live_timer = None;
                    if (act.state == EndpointState::Open || act.successor_awaits_live())
                        && let Some(connection) = &act.connection
                    {
                        act.open_failed = true;
                        connection.do_send(Close {
                            code: CloseCode::NORMAL,
                            reason: format!("no live-after reply within {timeout:?}"),
                        });
                    }
                }));
            }
        }
        if !hold_reads {
            connection.do_send(ReleaseReads);
        }
    }

    pub(super) fn become_live(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.live_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.is_rotating() {
            return self.successor_live(ctx);
        }
        let reconnected = self.uptime.live(Instant::now(), self.life_attempt);
        self.policy.on_live();
        self.announce(
            StateEvent {
                state: EndpointState::Live,
                reconnected,
                rotated: false,
            },
            ctx,
        );
        self.schedule_rotation(None, ctx);
        self.pump(ctx);
    }

    pub(super) fn on_closed(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        self.connection = None;
        // Requests this socket carried and never answered: failed, or sent again first (a
        // stop answers every request `Stopped`).
        if self.intent == Intent::Stop {
            self.shared.requests().stop_all();
        } else {
            self.socket_requests_ended(self.connection_id);
        }
        if let Some(mut permit) = self.permit.take() {
            // Still held: the socket never opened. The outage mode counts network failures.
            permit.ended(Outcome::of(&reason));
        }
        if let Some(timer) = self.live_timer.take() {
            ctx.cancel_future(timer);
        }
        self.end_replay();
        self.cancel_rotation_timer(ctx);
        if self.successor_failed(&reason, ctx) {
            return;
        }
        // The successor of a rotation ended after it was live: the old one goes too, and this
        // is an ordinary end.
        self.close_retiring("the new socket ended");
        let live_for = self.uptime.ended(Instant::now());
        self.connect_started = None;
        self.last_end_class = reason.class();
        self.shared.set_last_error(reason.clone());
        match self.intent {
            Intent::Stop => {
                self.finish_stop(ctx);
                return;
            }
            Intent::Pause => {
                self.set_state(EndpointState::Paused, ctx);
                self.schedule_expiry(ctx);
                return;
            }
            Intent::ReconnectNow => {
                self.intent = Intent::Run;
                self.begin_attempt(ctx);
                return;
            }
            Intent::Idle => {
                self.intent = Intent::Run;
                // What the socket handed back while closing is a need of its own.
                if self.stays_idle() {
                    self.become_idle(ctx);
                } else {
                    self.begin_attempt(ctx);
                }
                return;
            }
            Intent::Run if self.is_inbound() => {
                // A replacement waits in `attachment`; else the client may come back.
                self.begin_attempt(ctx);
                return;
            }
            Intent::Run => {}
        }
        let end = LifeEnd {
            reason: reason.clone(),
            live_for,
            live_timed_out: self.open_failed,
        };
        match self
            .policy
            .after_end(&end, Instant::now(), self.random.as_mut())
        {
            Next::Fail(why) => self.fail(why, ctx),
            Next::ReconnectNow => self.begin_attempt(ctx),
            Next::Backoff { attempt, delay } => {
                self.set_state(
                    EndpointState::Backoff {
                        attempt,
                        delay,
                        reason,
                    },
                    ctx,
                );
                self.schedule_expiry(ctx);
                self.attempt_token += 1;
                let token = self.attempt_token;
                ctx.run_later(delay, move |act, ctx| {
                    if token == act.attempt_token
                        && matches!(act.state, EndpointState::Backoff { .. })
                    {
                        act.begin_attempt(ctx);
                    }
                });
            }
        }
    }

    fn fail(&mut self, reason: FailReason, ctx: &mut Context<Self>) {
        self.attempt_token += 1;
        self.set_state(EndpointState::Failed { reason }, ctx);
        self.schedule_expiry(ctx);
    }

    /// The last socket is gone after a stop: report what it handed back, announce `Stopped`,
    /// and end once the last events are delivered ([`Self::settle_stop`]). A write still on
    /// its way to the socket settles first (the socket refused it or took it), so that message
    /// is reported too.
    pub(super) fn finish_stop(&mut self, ctx: &mut Context<Self>) {
        // The old socket of an interrupted rotation hands back what it held first.
        if self
            .rotations
            .as_ref()
            .is_some_and(|s| s.retiring.is_some())
        {
            return;
        }
        if self.in_flight {
            self.stop_when_settled = true;
            return;
        }
        if self.state != EndpointState::Stopped {
            let mut late = Some(self.queue.drain());
            self.sync_queue();
            // Announced first: whoever hears that the socket is closed can count on `Stopped`
            // being on its way to every subscriber already.
            self.set_state(EndpointState::Stopped, ctx);
            self.shared.requests().stop_all();
            let waiting = self
                .stopping
                .as_mut()
                .map(|s| std::mem::take(&mut s.closed));
            for signal in waiting.into_iter().flatten() {
                // The first stop asked for is told; any later one has nothing new to hear.
                let _ = signal.send(late.take().unwrap_or_default());
            }
        }
        self.settle_stop(ctx);
    }

    /// After `Stopped` was announced: ends the actor once subscribers handled the last events
    /// (`Stopped`, published confirmed, and the last connection's `Closed`, which its
    /// `Delivered` notice vouches for) and everything held before them went out, or once full
    /// subscribers kept them waiting for `max_stall`, whichever comes first. A shutdown hears
    /// of it and returns only then (within its own timeout), so its caller's subscribers
    /// already handled the endpoint's last events.
    pub(super) fn settle_stop(&mut self, ctx: &mut Context<Self>) {
        if self.intent != Intent::Stop || self.state != EndpointState::Stopped {
            return;
        }
        if self.unsettled_lives > 0 || self.held_events() > 0 {
            let stopping = self.stopping.get_or_insert_default();
            if stopping.deadline.is_none() {
                let limit = self.connection_config.max_stall;
                stopping.deadline = Some(ctx.run_later(limit, |act, ctx| {
                    let dropped = act.drop_held_events();
                    act.shared
                        .events_dropped
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    act.unsettled_lives = 0;
                    act.settle_stop(ctx);
                }));
            }
            return;
        }
        let waiting = self.stopping.take().map(|s| s.settled);
        for signal in waiting.into_iter().flatten() {
            let _ = signal.send(());
        }
        ctx.stop();
    }
}
