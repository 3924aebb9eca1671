//! The outbound side: the bounded queue that survives reconnects, the pump that drains it in
//! order while live, and the on-open replay (configured, remembered, hooks).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use wsherd_connection::{Connection, Write, WriteError, WriteOnOpen};
use wsherd_protocol::Outbound;

use super::Supervisor;
use super::control::Intent;
use super::messages::{AddOnOpenHook, MAX_REMEMBERED, Rejected, Remember, Submit, Submitted};
use crate::state::{EndpointState, QueueEvent};

/// How soon a message refused by a full write buffer is tried again.
const FULL_RETRY: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Writes the on-open messages, the remembered ones and the hooks' on a fresh socket.
    pub(super) fn replay_on_open(&mut self, connection: &Addr<Connection>) {
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
            connection.do_send(WriteOnOpen(message));
        }
    }

    /// Messages the connection accepted but never wrote: back to the front of the queue.
    pub(super) fn take_back(&mut self, messages: Vec<Outbound>) {
        let now = Instant::now();
        for message in messages.into_iter().rev() {
            self.queue.requeue_front(message, now);
        }
        self.sync_queue();
    }

    fn publish_queue_event(&mut self, event: QueueEvent, ctx: &mut Context<Self>) {
        let table = Arc::clone(self.routes.current());
        table.publish(&self.name, event, &mut self.report);
        self.settle_report(ctx);
    }

    pub(super) fn sync_queue(&self) {
        self.shared
            .queue_depth
            .store(self.queue.len(), Ordering::Relaxed);
        self.shared
            .queue_bytes
            .store(self.queue.bytes(), Ordering::Relaxed);
    }

    /// The state name to refuse messages with, when the endpoint takes none.
    fn is_down(&self) -> Option<&'static str> {
        match self.state {
            EndpointState::Failed { .. } => Some("failed"),
            EndpointState::Stopped => Some("stopped"),
            _ if self.intent == Intent::Stop => Some("stopping"),
            _ => None,
        }
    }

    /// Sends queued messages one at a time, in order, while live.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
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
        let write = connection.send(Write(message));
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            match result {
                Ok(Ok(())) => act.pump(ctx),
                Ok(Err(WriteError::Full(message))) => {
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
                .send(Write(message))
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
