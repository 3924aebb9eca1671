//! The Supervisor actor: one per endpoint, outliving every socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use wsherd_connection::{
    Close, Connection, ConnectionConfig, ConnectionEvent, EndReason, Notice, Observed, Send,
    SendError, SendOnOpen,
};
use wsherd_protocol::{EndpointName, Outbound};
use wsherd_router::{DispatchReport, RouteCache, Router};

use crate::backoff::{Random, XorShift};
use crate::governor::{Acquire, Governor, Permit};
use crate::policy::{LifeEnd, Next, ReconnectPolicy};
use crate::queue::OutboundQueue;
use crate::spec::EndpointSpec;
use crate::state::{EndpointState, FailReason, QueueEvent, StateEvent};
use crate::status::EndpointShared;

/// How soon a message refused by a full write buffer is tried again.
const FULL_RETRY: Duration = Duration::from_millis(20);
/// Most messages [`Remember`] keeps for replay.
pub const MAX_REMEMBERED: usize = 10_000;

/// What happened to a submitted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Handed to the open socket.
    Written,
    /// Kept in the outbound queue; it goes out, in order, once the endpoint is live.
    Queued,
}

/// Why a message was refused; it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The queue is full and its policy is `reject` (or the message alone exceeds it).
    #[error("the outbound queue is full")]
    QueueFull(Outbound),
    /// The endpoint has failed or was stopped.
    #[error("the endpoint is {state}")]
    Down {
        /// The endpoint's state name.
        state: &'static str,
        /// The message.
        message: Outbound,
    },
    /// Too many messages are remembered for replay.
    #[error("more than {MAX_REMEMBERED} messages are remembered for replay")]
    TooManyRemembered(Outbound),
}

impl Rejected {
    /// The refused message.
    pub fn into_message(self) -> Outbound {
        match self {
            Rejected::QueueFull(message)
            | Rejected::Down { message, .. }
            | Rejected::TooManyRemembered(message) => message,
        }
    }
}

/// Sends a message now if live, else queues it per the queue policy.
#[derive(Debug)]
pub struct Submit(pub Outbound);

impl actix::Message for Submit {
    type Result = Result<Submitted, Rejected>;
}

/// Sends a message now (or queues it) and replays it after every future open, after the
/// configured on-open messages: a subscription made at run time.
#[derive(Debug)]
pub struct Remember(pub Outbound);

impl actix::Message for Remember {
    type Result = Result<Submitted, Rejected>;
}

/// A function asked for messages to send after every open (after the remembered ones).
pub type OnOpenHook = Arc<dyn Fn() -> Vec<Outbound> + std::marker::Send + Sync>;

/// Adds an [`OnOpenHook`].
pub struct AddOnOpenHook(pub OnOpenHook);

impl actix::Message for AddOnOpenHook {
    type Result = ();
}

impl std::fmt::Debug for AddOnOpenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddOnOpenHook(..)")
    }
}

/// Manual control of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Close the socket (if any) and connect again at once; from `Failed` this starts over.
    Reconnect,
    /// Close the socket and stay down until `Resume`.
    Pause,
    /// Connect again after `Pause`.
    Resume,
}

impl actix::Message for Control {
    type Result = ();
}

/// Closes the endpoint for good and hands back what was still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Close code sent to the peer.
    pub code: u16,
    /// Close reason sent to the peer.
    pub reason: String,
}

impl actix::Message for Stop {
    type Result = StopReceipt;
}

/// What [`Stop`] answers: the messages still queued, and a signal for the end of the close.
#[derive(Debug, actix::MessageResponse)]
pub struct StopReceipt {
    /// Messages that were queued and will never be sent, oldest first.
    pub unsent: Vec<Outbound>,
    /// Completes (with `Err`, the sender being dropped) once the supervisor has stopped, i.e.
    /// the peer answered the Close or the close timeout passed.
    pub closed: tokio::sync::oneshot::Receiver<()>,
}

/// Keeps one endpoint connected: backoff, restart intensity, the close-code table, on-open
/// replay, the outbound queue, the live-after gate and state events.
pub struct Supervisor {
    name: EndpointName,
    /// `endpoint{name=…}`, shared in name with the connection's, to filter one endpoint's
    /// history.
    span: tracing::Span,
    spec: Arc<EndpointSpec>,
    connection_config: Arc<ConnectionConfig>,
    router: Router,
    routes: RouteCache,
    report: DispatchReport,
    governor: Option<Addr<Governor>>,
    shared: Arc<EndpointShared>,
    policy: ReconnectPolicy,
    random: Box<dyn Random>,
    queue: OutboundQueue,
    /// A queued message is on its way to the connection.
    in_flight: bool,
    connection: Option<Addr<Connection>>,
    permit: Option<Permit>,
    /// Bumped whenever a pending attempt (timer or slot request) is abandoned.
    attempt_token: u64,
    opened_at: Option<Instant>,
    live_timer: Option<SpawnHandle>,
    live_timed_out: bool,
    paused: bool,
    stopping: bool,
    manual_reconnect: bool,
    started_once: bool,
    remembered: Vec<Outbound>,
    hooks: Vec<OnOpenHook>,
    state: EndpointState,
    stopped_signals: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Supervisor {
    /// A supervisor for endpoint `name`; it connects when started.
    pub fn new(name: EndpointName, spec: EndpointSpec, router: Router) -> Self {
        let mut connection = spec.connection.clone();
        connection.live_after = spec.live_after.as_ref().map(|live| live.matcher.clone());
        Supervisor {
            span: tracing::info_span!("endpoint", name = %name),
            name: name.clone(),
            connection_config: Arc::new(connection),
            routes: router.cache(),
            report: DispatchReport::default(),
            router,
            governor: None,
            shared: Arc::new(EndpointShared::with_state(
                name.clone(),
                spec.connection.url.clone(),
                EndpointState::Connecting { attempt: 1 },
            )),
            policy: ReconnectPolicy::new(
                spec.backoff.clone(),
                spec.intensity,
                spec.actions.clone(),
            ),
            random: Box::new(XorShift::from_entropy()),
            queue: OutboundQueue::new(spec.queue),
            in_flight: false,
            connection: None,
            permit: None,
            attempt_token: 0,
            opened_at: None,
            live_timer: None,
            live_timed_out: false,
            paused: false,
            stopping: false,
            manual_reconnect: false,
            started_once: false,
            remembered: Vec::new(),
            hooks: Vec::new(),
            state: EndpointState::Connecting { attempt: 1 },
            stopped_signals: Vec::new(),
            spec: Arc::new(spec),
        }
    }

    /// Reports into `shared` (made with [`EndpointShared::new`]) instead of its own, so the
    /// owner can hold it before the supervisor starts on another arbiter.
    pub fn with_shared(mut self, shared: Arc<EndpointShared>) -> Self {
        self.shared = shared;
        self
    }

    /// Takes handshake slots from `governor`.
    pub fn with_governor(mut self, governor: Addr<Governor>) -> Self {
        self.governor = Some(governor);
        self
    }

    /// Uses `random` for jitter (tests make it exact).
    pub fn with_random(mut self, random: Box<dyn Random>) -> Self {
        self.random = random;
        self
    }

    /// State and counters, readable from any thread.
    pub fn shared(&self) -> Arc<EndpointShared> {
        Arc::clone(&self.shared)
    }

    fn set_state(&mut self, state: EndpointState, ctx: &mut Context<Self>) {
        self.span.in_scope(|| match &state {
            EndpointState::Backoff {
                attempt,
                delay,
                reason,
            } => {
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, %reason, "backing off")
            }
            EndpointState::Failed { reason } => tracing::error!(%reason, "failed"),
            other => tracing::info!(state = %other, "state"),
        });
        self.shared.set_state(state.clone(), self.policy.attempt());
        self.state = state.clone();
        let table = Arc::clone(self.routes.current());
        table.publish(&self.name, StateEvent { state }, &mut self.report);
        self.settle_report(ctx);
    }

    fn publish_queue_event(&mut self, event: QueueEvent, ctx: &mut Context<Self>) {
        let table = Arc::clone(self.routes.current());
        table.publish(&self.name, event, &mut self.report);
        self.settle_report(ctx);
    }

    fn settle_report(&mut self, ctx: &mut Context<Self>) {
        for id in self.report.closed.drain(..) {
            self.router.unsubscribe(id);
        }
        if let Some(wait) = self.report.take_backpressure() {
            ctx.wait(wait.into_actor(self));
        }
    }

    fn sync_queue(&self) {
        self.shared
            .queue_depth
            .store(self.queue.len(), Ordering::Relaxed);
        self.shared
            .queue_bytes
            .store(self.queue.bytes(), Ordering::Relaxed);
    }

    fn is_down(&self) -> Option<&'static str> {
        match self.state {
            EndpointState::Failed { .. } => Some("failed"),
            EndpointState::Stopped => Some("stopped"),
            _ if self.stopping => Some("stopping"),
            _ => None,
        }
    }

    /// Starts attempt number `backoff.attempt() + 1`, through the governor when there is one.
    fn begin_attempt(&mut self, ctx: &mut Context<Self>) {
        self.attempt_token += 1;
        let token = self.attempt_token;
        let attempt = self.policy.attempt() + 1;
        self.set_state(EndpointState::Connecting { attempt }, ctx);
        match &self.governor {
            None => self.start_connection(ctx),
            Some(governor) => {
                let request = governor.send(Acquire);
                ctx.spawn(request.into_actor(self).map(move |granted, act, ctx| {
                    if token != act.attempt_token || act.connection.is_some() {
                        return; // abandoned meanwhile; the permit, if any, goes back on drop
                    }
                    // Without a governor answer (it stopped) connecting is still right.
                    act.permit = granted.ok().and_then(Result::ok);
                    act.start_connection(ctx);
                }));
            }
        }
    }

    fn start_connection(&mut self, ctx: &mut Context<Self>) {
        if self.started_once {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.started_once = true;
        self.live_timed_out = false;
        let connection = Connection::new(
            self.name.clone(),
            Arc::clone(&self.connection_config),
            &self.router,
        )
        .with_stats(Arc::clone(self.shared.connection_stats()))
        .with_observer(ctx.address().recipient())
        .start();
        self.connection = Some(connection);
    }

    fn on_open(&mut self, ctx: &mut Context<Self>) {
        self.permit = None;
        self.opened_at = Some(Instant::now());
        self.set_state(EndpointState::Open, ctx);
        let Some(connection) = self.connection.clone() else {
            return;
        };
        let replay = self
            .spec
            .on_open
            .iter()
            .chain(&self.remembered)
            .cloned()
            .chain(self.hooks.iter().flat_map(|hook| hook()));
        for message in replay {
            // Bounded by the configuration, never by a peer; and ahead of every queued message
            // because the pump only starts once live.
            connection.do_send(SendOnOpen(message));
        }
        match &self.spec.live_after {
            None => self.become_live(ctx),
            Some(live) => {
                let timeout = live.timeout;
                self.live_timer = Some(ctx.run_later(timeout, move |act, _| {
                    act.live_timer = None;
                    if act.state == EndpointState::Open
                        && let Some(connection) = &act.connection
                    {
                        act.live_timed_out = true;
                        connection.do_send(Close {
                            code: 1000,
                            reason: format!("no live-after reply within {timeout:?}"),
                        });
                    }
                }));
            }
        }
    }

    fn become_live(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.live_timer.take() {
            ctx.cancel_future(timer);
        }
        self.set_state(EndpointState::Live, ctx);
        self.pump(ctx);
    }

    fn on_closed(&mut self, reason: EndReason, ctx: &mut Context<Self>) {
        self.connection = None;
        self.permit = None;
        if let Some(timer) = self.live_timer.take() {
            ctx.cancel_future(timer);
        }
        let uptime = self.opened_at.take().map(|opened| opened.elapsed());
        self.shared.set_last_error(reason.clone());
        if self.stopping {
            self.set_state(EndpointState::Stopped, ctx);
            ctx.stop();
            return;
        }
        if self.paused {
            self.set_state(EndpointState::Paused, ctx);
            return;
        }
        if std::mem::take(&mut self.manual_reconnect) {
            self.begin_attempt(ctx);
            return;
        }
        let end = LifeEnd {
            reason: reason.clone(),
            uptime,
            live_timed_out: self.live_timed_out,
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
    }

    /// Sends queued messages one at a time, in order, while live.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.state != EndpointState::Live {
            return;
        }
        let expired = self.queue.expire(Instant::now());
        if expired > 0 {
            self.shared
                .queue_expired
                .fetch_add(expired as u64, Ordering::Relaxed);
            self.publish_queue_event(QueueEvent::Expired { count: expired }, ctx);
        }
        let Some(connection) = self.connection.clone() else {
            return;
        };
        let Some((message, queued_at)) = self.queue.pop() else {
            self.sync_queue();
            return;
        };
        self.sync_queue();
        self.in_flight = true;
        let copy = message.clone();
        let write = connection.send(Send(message));
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            match result {
                Ok(Ok(())) => act.pump(ctx),
                Ok(Err(SendError::Full(message))) => {
                    act.queue.requeue_front(message, queued_at);
                    act.sync_queue();
                    ctx.run_later(FULL_RETRY, |act, ctx| act.pump(ctx));
                }
                Ok(Err(error)) => {
                    act.queue.requeue_front(error.into_message(), queued_at);
                    act.sync_queue();
                }
                // The connection stopped with the message in its mailbox: it never left.
                Err(_) => {
                    act.queue.requeue_front(copy, queued_at);
                    act.sync_queue();
                }
            }
        }));
    }

    fn enqueue(
        &mut self,
        message: Outbound,
        ctx: &mut Context<Self>,
    ) -> Result<Submitted, Rejected> {
        match self.queue.push(message, Instant::now()) {
            Ok(dropped) => {
                if dropped > 0 {
                    self.shared
                        .queue_dropped
                        .fetch_add(dropped as u64, Ordering::Relaxed);
                    self.publish_queue_event(QueueEvent::DroppedOldest { count: dropped }, ctx);
                }
                self.sync_queue();
                self.pump(ctx);
                Ok(Submitted::Queued)
            }
            Err(message) => {
                self.shared.queue_rejected.fetch_add(1, Ordering::Relaxed);
                Err(Rejected::QueueFull(message))
            }
        }
    }

    fn submit(
        &mut self,
        message: Outbound,
        ctx: &mut Context<Self>,
    ) -> ResponseActFuture<Self, Result<Submitted, Rejected>> {
        if let Some(state) = self.is_down() {
            return Box::pin(fut::ready(Err(Rejected::Down { state, message })));
        }
        let direct = self.state == EndpointState::Live && self.queue.is_empty() && !self.in_flight;
        let Some(connection) = self.connection.clone().filter(|_| direct) else {
            return Box::pin(fut::ready(self.enqueue(message, ctx)));
        };
        // Nothing is waiting: write straight through, and let later messages queue behind
        // this one until it is settled, so order holds.
        self.in_flight = true;
        let queued_at = Instant::now();
        let copy = message.clone();
        Box::pin(
            connection
                .send(Send(message))
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.in_flight = false;
                    let outcome = match result {
                        Ok(Ok(())) => Submitted::Written,
                        Ok(Err(error)) => {
                            act.queue.requeue_front(error.into_message(), queued_at);
                            Submitted::Queued
                        }
                        Err(_) => {
                            act.queue.requeue_front(copy, queued_at);
                            Submitted::Queued
                        }
                    };
                    act.sync_queue();
                    if outcome == Submitted::Queued {
                        ctx.run_later(FULL_RETRY, |act, ctx| act.pump(ctx));
                    } else {
                        act.pump(ctx);
                    }
                    Ok(outcome)
                }),
        )
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.begin_attempt(ctx);
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        if let Some(connection) = &self.connection {
            connection.do_send(Close {
                code: 1001,
                reason: "supervisor stopped".to_owned(),
            });
        }
        Running::Stop
    }
}

impl Handler<Observed> for Supervisor {
    type Result = ();

    fn handle(&mut self, observed: Observed, ctx: &mut Context<Self>) {
        match observed.notice {
            Notice::Event(ConnectionEvent::Open { .. }) => self.on_open(ctx),
            Notice::Event(ConnectionEvent::Closed { reason }) => self.on_closed(reason, ctx),
            Notice::Event(_) => {}
            Notice::LiveReply => {
                if self.state == EndpointState::Open {
                    self.become_live(ctx);
                }
            }
            Notice::Unsent(messages) => {
                let now = Instant::now();
                for message in messages.into_iter().rev() {
                    self.queue.requeue_front(message, now);
                }
                self.sync_queue();
            }
        }
    }
}

impl Handler<Submit> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Submitted, Rejected>>;

    fn handle(&mut self, Submit(message): Submit, ctx: &mut Context<Self>) -> Self::Result {
        self.submit(message, ctx)
    }
}

impl Handler<Remember> for Supervisor {
    type Result = ResponseActFuture<Self, Result<Submitted, Rejected>>;

    fn handle(&mut self, Remember(message): Remember, ctx: &mut Context<Self>) -> Self::Result {
        if self.remembered.len() >= MAX_REMEMBERED {
            return Box::pin(fut::ready(Err(Rejected::TooManyRemembered(message))));
        }
        self.remembered.push(message.clone());
        // Now, if there is a socket: it was opened before this was remembered.
        if matches!(self.state, EndpointState::Open | EndpointState::Live) {
            self.submit(message, ctx)
        } else {
            Box::pin(fut::ready(Ok(Submitted::Queued)))
        }
    }
}

impl Handler<AddOnOpenHook> for Supervisor {
    type Result = ();

    fn handle(&mut self, AddOnOpenHook(hook): AddOnOpenHook, _: &mut Context<Self>) {
        self.hooks.push(hook);
    }
}

impl Handler<Control> for Supervisor {
    type Result = ();

    fn handle(&mut self, control: Control, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        match control {
            Control::Reconnect => {
                self.paused = false;
                if let Some(connection) = &self.connection {
                    self.manual_reconnect = true;
                    connection.do_send(Close {
                        code: 1000,
                        reason: "reconnect requested".to_owned(),
                    });
                } else {
                    // From backoff, failure or pause: start over with a clean slate.
                    self.policy.reset();
                    self.begin_attempt(ctx);
                }
            }
            Control::Pause => {
                if self.paused {
                    return;
                }
                self.paused = true;
                self.attempt_token += 1;
                match &self.connection {
                    Some(connection) => connection.do_send(Close {
                        code: 1000,
                        reason: "paused".to_owned(),
                    }),
                    None => self.set_state(EndpointState::Paused, ctx),
                }
            }
            Control::Resume => {
                if self.paused {
                    self.paused = false;
                    if self.connection.is_none() {
                        self.begin_attempt(ctx);
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
        // Dropped with the actor: the receiver then completes.
        self.stopped_signals.push(done);
        let queued = self.queue.drain();
        self.sync_queue();
        if !self.stopping {
            self.stopping = true;
            self.attempt_token += 1;
            match &self.connection {
                Some(connection) => connection.do_send(Close { code, reason }),
                None => {
                    self.set_state(EndpointState::Stopped, ctx);
                    ctx.stop();
                }
            }
        }
        StopReceipt {
            unsent: queued,
            closed,
        }
    }
}
