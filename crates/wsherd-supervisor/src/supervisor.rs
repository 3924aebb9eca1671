//! The Supervisor actor: one per endpoint, outliving every socket.
//!
//! Split by concern: `messages` is what an owner may ask, `lifecycle` moves the endpoint
//! through its states across socket lives, `outbound` is the queue and the on-open replay,
//! and `control` handles pause, resume, reconnect and stop. This file holds the actor, its
//! published state, and what it hears from its connection.

mod control;
mod demand;
mod lifecycle;
mod messages;
mod outbound;
mod replay;
mod rotation;
mod session;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use wsherd_connection::{Close, Connection, ConnectionEvent, Notice, Observed, SharedConfig};
use wsherd_protocol::{CloseCode, EndpointName, Outbound};
use wsherd_router::{DispatchReport, RouteCache, Router};

use crate::backoff::{Random, XorShift};
use crate::governor::{Governor, Permit};
use crate::policy::{ReconnectPolicy, Uptime};
use crate::queue::OutboundQueue;
use crate::spec::{ConnectMode, EndpointSpec};
use crate::state::{EndpointState, StateEvent};
use crate::status::EndpointShared;

use control::Intent;
use demand::OnDemand;
pub use messages::{
    AddOnOpenHook, Control, MAX_REMEMBERED, OnOpenHook, Rejected, Remember, Stop, StopReceipt,
    Submit, Submitted,
};
pub use session::{Attach, AttachRefused, Unattached};

/// Keeps one endpoint connected: backoff, restart intensity, the close-code table, on-open
/// replay, the outbound queue, the live-after gate and state events.
pub struct Supervisor {
    name: EndpointName,
    /// `wsherd{endpoint=…}`: every log line of this endpoint is in it.
    span: tracing::Span,
    spec: Arc<EndpointSpec>,
    /// The settings each connection gets: the spec's own, unless a live-after reply needs
    /// them changed (then one copy, made here).
    connection_config: SharedConfig,
    router: Router,
    routes: RouteCache,
    /// Events on their way to full subscribers; `None` whenever nothing is held (an endpoint
    /// lives for long stretches without an event, and an empty report is ~270 bytes).
    report: Option<Box<DispatchReport>>,
    /// Shared by every endpoint of a herd: an `Addr` clone would allocate its own sender
    /// (72 bytes) per endpoint.
    governor: Option<Arc<Addr<Governor>>>,
    /// `host:port` of the URL ([`host_key`](crate::host_key)): the governor probes per host.
    host: Arc<str>,
    shared: Arc<EndpointShared>,
    policy: ReconnectPolicy,
    random: Box<dyn Random>,
    /// Where the endpoint is; written only by [`Supervisor::set_state`].
    state: EndpointState,
    /// What the owner asked for: decides what follows the end of the current socket.
    intent: Intent,
    queue: OutboundQueue,
    /// A queued message is on its way to the connection: later ones wait behind it.
    in_flight: bool,
    /// A stop waits for the message on its way to settle before it reports and ends.
    stop_when_settled: bool,
    connection: Option<Addr<Connection>>,
    /// Boxed: held only while a handshake is under way, and 80 bytes inline.
    permit: Option<Box<Permit>>,
    /// Bumped whenever a pending attempt (a governor answer, a backoff timer) is abandoned.
    attempt_token: u64,
    /// Socket lives started: every one after the first is a reconnect.
    lives_started: u64,
    /// The number of the attempt under way, as `Connecting` announced it.
    life_attempt: u32,
    /// When the endpoint was live, for each life's live time and a reconnect's downtime.
    uptime: Uptime,
    live_timer: Option<SpawnHandle>,
    /// This life was closed because it never finished opening (no live-after reply, or the
    /// on-open replay could not be written): a failed attempt, whatever the close code.
    open_failed: bool,
    /// What the owner added to the on-open replay at run time; most endpoints never do.
    added: Option<Box<AddedOnOpen>>,
    /// On-open messages still to write on this socket, oldest first.
    replay: VecDeque<Outbound>,
    /// One replayed message is on its way to the connection.
    replay_writing: bool,
    /// The replay must be written by then, or the open is a failed attempt.
    replay_deadline: Option<Instant>,
    /// Wakes the queue's expiry while the endpoint is down.
    expiry_timer: Option<SpawnHandle>,
    /// The events held for full subscribers are being driven.
    draining_events: bool,
    /// When the current socket life's connection started: the handshake's duration, at open.
    connect_started: Option<Instant>,
    /// The class ([`EndReason::class`](wsherd_connection::EndReason::class)) of the last
    /// socket's end: the reason label of the reconnect that follows it.
    last_end_class: &'static str,
    /// Who waits for a stop to finish; made by the first stop asked for (an endpoint spends
    /// its life without one, so it costs a pointer until then).
    stopping: Option<Box<Stopping>>,
    /// Connections started whose last deliveries are not known to be in yet
    /// ([`Notice::Delivered`]): a stop waits for them before it ends.
    unsettled_lives: u32,
    /// What an on-demand endpoint tracks of its need; `None` for one that always connects.
    on_demand: Option<Box<OnDemand>>,
    /// The current connection's id ([`Connection::id`]): notices of any other are its
    /// predecessors' last words.
    connection_id: u64,
    /// The socket being replaced by a planned rotation, while its successor comes up.
    rotation: Option<Box<rotation::Rotation>>,
    /// The rotations' own schedule: made only for an endpoint that rotates (`max_lifetime`).
    rotations: Option<Box<rotation::Schedule>>,
    /// The send-rate limiter, for an endpoint that is paced, and whether a wait for its next
    /// token is under way.
    pacer: Option<Box<(crate::governor::RateLimiter, bool)>>,
    /// An inbound session's next socket, accepted by the server and waiting for the current
    /// one (if any) to end, with its subprotocol.
    attachment: Option<Box<(wsherd_connection::AcceptedSocket, Option<String>)>>,
    /// Ends a disconnected session once its resume window passes.
    resume_timer: Option<SpawnHandle>,
    /// Told once the actor has stopped (the owner forgets the endpoint).
    on_stopped: Option<Box<dyn FnOnce() + Send>>,
}

/// The on-open messages an owner added while the endpoint runs.
#[derive(Default)]
struct AddedOnOpen {
    /// Remembered messages ([`Remember`]), in order.
    remembered: Vec<Outbound>,
    /// Hooks ([`AddOnOpenHook`]) asked at every open.
    hooks: Vec<OnOpenHook>,
}

/// What waits for a stop to finish.
#[derive(Default)]
struct Stopping {
    /// Told, once the last socket is closed, what it handed back while closing.
    closed: Vec<tokio::sync::oneshot::Sender<Vec<Outbound>>>,
    /// Told, when the actor stops, that the last events are in their subscribers' mailboxes.
    settled: Vec<tokio::sync::oneshot::Sender<()>>,
    /// The endpoint gives up waiting for full subscribers then.
    deadline: Option<SpawnHandle>,
}

impl Supervisor {
    /// A supervisor for endpoint `name`; it connects when started.
    ///
    /// `spec` may be shared (an `Arc`) with whoever keeps it for a restart: one copy per
    /// endpoint, however many hold it.
    pub fn new(name: EndpointName, spec: impl Into<Arc<EndpointSpec>>, router: Router) -> Self {
        let spec: Arc<EndpointSpec> = spec.into();
        // The connection's live-after matcher is the spec's (`EndpointSpec::live_after`);
        // without one on either side the spec's settings serve as they are, saving a copy of
        // them per endpoint.
        let connection_config = if spec.live_after.is_none() && spec.connection.live_after.is_none()
        {
            SharedConfig::within(Arc::clone(&spec))
        } else {
            let mut connection = spec.connection.clone();
            connection.live_after = spec.live_after.as_ref().map(|live| live.matcher.clone());
            SharedConfig::from(connection)
        };
        let shared = Arc::new(EndpointShared::with_state(
            name.clone(),
            spec.connection.url.clone(),
            EndpointState::Connecting { attempt: 1 },
        ));
        shared.requests().configure(&spec.request);
        Supervisor {
            span: tracing::info_span!("wsherd", endpoint = %name),
            name: name.clone(),
            connection_config,
            routes: router.cache(),
            report: None,
            router,
            governor: None,
            host: Arc::from(crate::outage::host_key(&spec.connection.url)),
            shared,
            policy: ReconnectPolicy::new(
                spec.backoff.clone(),
                spec.intensity,
                spec.actions.clone(),
            ),
            random: Box::new(XorShift::from_entropy()),
            queue: OutboundQueue::new(spec.queue),
            in_flight: false,
            stop_when_settled: false,
            connection: None,
            permit: None,
            attempt_token: 0,
            life_attempt: 1,
            uptime: Uptime::default(),
            live_timer: None,
            open_failed: false,
            lives_started: 0,
            added: None,
            replay: VecDeque::new(),
            replay_writing: false,
            replay_deadline: None,
            expiry_timer: None,
            draining_events: false,
            state: EndpointState::Connecting { attempt: 1 },
            intent: Intent::Run,
            connect_started: None,
            last_end_class: "closed",
            unsettled_lives: 0,
            stopping: None,
            on_demand: match spec.connect {
                ConnectMode::Always | ConnectMode::Inbound { .. } => None,
                ConnectMode::OnDemand { linger } => Some(OnDemand::new(linger)),
            },
            connection_id: 0,
            rotation: None,
            rotations: None,
            attachment: None,
            resume_timer: None,
            on_stopped: None,
            pacer: spec.send_rate.map(|rate| {
                Box::new((
                    crate::governor::RateLimiter::with_burst(
                        f64::from(rate.per_second),
                        f64::from(rate.burst),
                        Instant::now(),
                    ),
                    false,
                ))
            }),
            spec,
        }
    }

    /// Reports into `shared` (made with [`EndpointShared::new`]) instead of its own, so the
    /// owner can hold it before the supervisor starts on another arbiter.
    pub fn with_shared(mut self, shared: Arc<EndpointShared>) -> Self {
        shared.requests().configure(&self.spec.request);
        self.shared = shared;
        self
    }

    /// Takes handshake slots from `governor`: an `Addr`, or an `Arc` of one shared by many
    /// endpoints (which saves each its own sender).
    pub fn with_governor(mut self, governor: impl Into<Arc<Addr<Governor>>>) -> Self {
        self.governor = Some(governor.into());
        self
    }

    /// Uses `random` for jitter (tests make it exact).
    pub fn with_random(mut self, random: Box<dyn Random>) -> Self {
        self.random = random;
        self
    }

    /// Starts with what a predecessor kept ([`StopReceipt::remembered`] and
    /// [`StopReceipt::hooks`]): a restart does not forget run-time subscriptions.
    pub fn with_replay(mut self, remembered: Vec<Outbound>, hooks: Vec<OnOpenHook>) -> Self {
        self.added = (!remembered.is_empty() || !hooks.is_empty())
            .then(|| Box::new(AddedOnOpen { remembered, hooks }));
        self
    }

    /// Starts paused: no attempt until [`Control::Resume`] (or [`Control::Reconnect`]). Sends
    /// meanwhile are queued per the queue policy, as while the endpoint is down. A herd loaded
    /// from a config holds its endpoints this way until it is started, so subscribers can be
    /// in place before the first message arrives. The status says `Paused` from the start;
    /// no `StateEvent` announces it.
    pub fn paused(mut self) -> Self {
        self.intent = Intent::Pause;
        self
    }

    /// Calls `on_stopped` once the actor has stopped (whoever keeps the endpoint by name
    /// forgets it: an inbound session ends by itself when its resume window passes).
    pub fn on_stopped(mut self, on_stopped: impl FnOnce() + Send + 'static) -> Self {
        self.on_stopped = Some(Box::new(on_stopped));
        self
    }

    /// State and counters, readable from any thread.
    pub fn shared(&self) -> Arc<EndpointShared> {
        Arc::clone(&self.shared)
    }

    /// Moves the endpoint to `state` and announces it: the one writer of the published state.
    fn set_state(&mut self, state: EndpointState, ctx: &mut Context<Self>) {
        self.announce(StateEvent::new(state), ctx);
    }

    /// Moves the endpoint to `event.state` and publishes `event`.
    fn announce(&mut self, event: StateEvent, ctx: &mut Context<Self>) {
        self.span.in_scope(|| match (&event.state, &event.reconnected) {
            (
                EndpointState::Backoff {
                    attempt,
                    delay,
                    reason,
                },
                _,
            ) => {
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "backing off")
            }
            (EndpointState::Failed { reason }, _) => tracing::error!(%reason, "failed"),
            (_, Some(again)) => tracing::info!(
                attempt = again.attempt,
                downtime_ms = again.downtime.as_millis() as u64,
                "live again"
            ),
            (other, None) => tracing::info!(state = %other, "state"),
        });
        self.shared
            .set_state(event.state.clone(), self.policy.attempt());
        self.state = event.state.clone();
        self.review_demand(ctx);
        let table = Arc::clone(self.routes.current());
        if event.state == EndpointState::Stopped {
            // The last word: a stop ends once subscribers handled it (`settle_stop`).
            table.publish_confirmed(
                &self.name,
                event,
                self.report.get_or_insert_with(Box::default),
            );
        } else {
            table.publish(
                &self.name,
                event,
                self.report.get_or_insert_with(Box::default),
            );
        }
        self.settle_report(ctx);
    }

    /// The tracker of this endpoint's sequence numbers, when it checks them.
    pub(super) fn sequence_tracker(
        &self,
    ) -> Option<Arc<std::sync::Mutex<wsherd_protocol::SequenceTracker>>> {
        self.spec
            .connection
            .sequence
            .as_ref()
            .map(|sequence| self.shared.sequences(sequence))
    }

    /// Socket `id` ended: the requests it carried and never answered fail `Disconnected`, or
    /// are queued again first with `resend_on_reconnect`.
    pub(super) fn socket_requests_ended(&mut self, id: u64) {
        let resend = self.shared.requests().socket_ended(id);
        if !resend.is_empty() {
            let now = Instant::now();
            for text in resend.into_iter().rev() {
                self.queue
                    .requeue_front(Outbound::Text(text.to_string()), now);
            }
            self.sync_queue();
        }
    }

    /// Takes a send token; without one, `then` runs when the next is due (one wait at a time)
    /// and this says no.
    pub(super) fn paced(
        &mut self,
        ctx: &mut Context<Self>,
        then: fn(&mut Self, &mut Context<Self>),
    ) -> bool {
        let Some(pacer) = self.pacer.as_mut() else {
            return true;
        };
        match pacer.0.try_take(Instant::now()) {
            Ok(()) => true,
            Err(wait) => {
                if !pacer.1 {
                    pacer.1 = true;
                    ctx.run_later(wait, move |act, ctx| {
                        if let Some(pacer) = act.pacer.as_mut() {
                            pacer.1 = false;
                        }
                        then(act, ctx);
                    });
                }
                false
            }
        }
    }

    /// Events held for full subscribers.
    pub(super) fn held_events(&self) -> usize {
        self.report.as_ref().map_or(0, |report| report.held())
    }

    /// Gives up the events held for full subscribers; returns how many.
    pub(super) fn drop_held_events(&mut self) -> usize {
        self.report
            .take()
            .map_or(0, |mut report| report.drop_held())
    }

    /// Forgets stopped subscribers, and lets events held for full ones go out in the
    /// background: the supervisor never waits for a subscriber (it must keep reconnecting,
    /// stopping and answering), and holds at most [`MAX_HELD_EVENTS`] for one.
    fn settle_report(&mut self, ctx: &mut Context<Self>) {
        let Some(report) = self.report.as_mut() else {
            return;
        };
        for id in report.closed.drain(..) {
            self.router.unsubscribe(id);
        }
        let held = report.held();
        if held == 0 && report.pending_deliveries() == 0 {
            self.report = None;
            return;
        }
        if held > MAX_HELD_EVENTS {
            let dropped = report.drop_held();
            self.shared
                .events_dropped
                .fetch_add(dropped as u64, std::sync::atomic::Ordering::Relaxed);
            self.span
                .in_scope(|| tracing::warn!(dropped, "events dropped for a full subscriber"));
        } else if held > 0 && !self.draining_events {
            self.draining_events = true;
            ctx.spawn(DrainEvents);
        }
    }
}

/// Most state and queue events held for full subscribers; past it they are dropped and counted
/// (`events_dropped`), so a stuck subscriber of a flapping endpoint cannot grow memory.
pub const MAX_HELD_EVENTS: usize = 1024;

/// Drives the events held for full subscribers, oldest first.
struct DrainEvents;

impl ActorFuture<Supervisor> for DrainEvents {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        act: &mut Supervisor,
        ctx: &mut Context<Supervisor>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let done = match act.report.as_mut() {
            Some(report) => report.poll_unblocked(task),
            None => std::task::Poll::Ready(()),
        };
        if done.is_ready() {
            act.draining_events = false;
            if act
                .report
                .as_ref()
                .is_some_and(|r| r.closed.is_empty() && r.pending_deliveries() == 0)
            {
                act.report = None;
            }
            act.settle_stop(ctx);
        }
        done
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.watch_demand(ctx);
        if self.intent == Intent::Pause {
            // Held from the start: the status says so, but nothing happened to announce (a
            // subscriber's first event for the endpoint is its first `Connecting`).
            self.shared
                .set_state(EndpointState::Paused, self.policy.attempt());
            self.state = EndpointState::Paused;
        } else if self.stays_idle() {
            self.become_idle(ctx);
        } else {
            self.begin_attempt(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.unwatch_demand();
        if let Some(on_stopped) = self.on_stopped.take() {
            on_stopped();
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.close_retiring("supervisor stopped");
        self.turn_away_waiting(CloseCode::GOING_AWAY, "supervisor stopped");
        if let Some(connection) = &self.connection {
            connection.do_send(Close {
                code: CloseCode::GOING_AWAY,
                reason: "supervisor stopped".to_owned(),
            });
        }
        Running::Stop
    }
}

impl Handler<Observed> for Supervisor {
    type Result = ();

    fn handle(&mut self, observed: Observed, ctx: &mut Context<Self>) {
        if observed.connection != self.connection_id {
            return self.on_retired(observed.connection, observed.notice, ctx);
        }
        match observed.notice {
            Notice::Event(ConnectionEvent::Open { .. }) => self.on_open(ctx),
            Notice::Event(ConnectionEvent::Closed { reason }) => self.on_closed(reason, ctx),
            Notice::LiveReply
                if self.state == EndpointState::Open || self.successor_awaits_live() =>
            {
                self.become_live(ctx)
            }
            Notice::Unsent(messages) => self.take_back(messages, ctx),
            Notice::Delivered => {
                self.unsettled_lives = self.unsettled_lives.saturating_sub(1);
                self.settle_stop(ctx);
            }
            // Connecting, Closing, a late live reply, and whatever later versions announce.
            _ => {}
        }
    }
}
