//! The outbound side: the bounded queue that survives reconnects, the pump that drains it in
//! order while live, and the on-open replay (configured, remembered, hooks).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use actix::prelude::*;
use wsherd_connection::{Unsent, Write, WriteError};
use wsherd_protocol::Outbound;

use super::Supervisor;
use super::control::Intent;
use super::messages::{AddOnOpenHook, MAX_REMEMBERED, Rejected, Remember, Submit, Submitted};
use crate::state::{EndpointState, QueueEvent};

use super::replay::FULL_RETRY;

impl Supervisor {
    /// Messages the socket accepted but the operating system never took whole: back to the
    /// front of the queue, ahead of newer ones, with their first enqueue time (for the TTL).
    pub(super) fn take_back(&mut self, messages: Vec<Unsent>, ctx: &mut Context<Self>) {
        for unsent in messages.into_iter().rev() {
            if let Outbound::Text(text) = &unsent.message {
                self.shared.requests().unwritten(text);
            }
            self.queue.requeue_front(unsent.message, unsent.queued_at);
        }
        self.sync_queue();
        self.schedule_expiry(ctx);
        self.wake(ctx);
    }

    /// Drops what outlived its TTL, counted and announced.
    fn expire(&mut self, ctx: &mut Context<Self>) {
        let expired = self.queue.expire(Instant::now());
        if expired > 0 {
            self.shared
                .queue_expired
                .fetch_add(expired as u64, Ordering::Relaxed);
            self.sync_queue();
            self.publish_queue_event(QueueEvent::Expired { count: expired }, ctx);
            // What expired was perhaps all that kept an on-demand endpoint up.
            self.review_demand(ctx);
        }
    }

    /// While the endpoint is not live, wakes when the oldest message outlives its TTL, so that
    /// stale messages neither count in the status nor hold room that fresh ones need.
    pub(super) fn schedule_expiry(&mut self, ctx: &mut Context<Self>) {
        if let Some(timer) = self.expiry_timer.take() {
            ctx.cancel_future(timer);
        }
        if self.state == EndpointState::Live {
            return; // the pump expires as it goes
        }
        let Some(at) = self.queue.next_expiry() else {
            return;
        };
        let wait = at.saturating_duration_since(Instant::now());
        self.expiry_timer = Some(ctx.run_later(wait, |act, ctx| {
            act.expiry_timer = None;
            act.expire(ctx);
            act.schedule_expiry(ctx);
        }));
    }

    pub(super) fn publish_queue_event(&mut self, event: QueueEvent, ctx: &mut Context<Self>) {
        let table = Arc::clone(self.routes.current());
        table.publish(
            &self.name,
            event,
            self.report.get_or_insert_with(Box::default),
        );
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

    /// Sends queued messages one at a time, in order, while live and once the on-open replay
    /// is written.
    pub(super) fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.is_rotating() {
            // Nothing is written while two sockets exist; the replay may just be done.
            return self.close_old_when_ready(ctx);
        }
        if self.in_flight || self.state != EndpointState::Live || self.is_replaying() {
            return;
        }
        self.expire(ctx);
        let Some(connection) = self.connection.clone() else {
            return;
        };
        if !self.queue.is_empty() && !self.paced(ctx, Self::pump) {
            return;
        }
        let Some((message, queued_at)) = self.queue.pop() else {
            self.sync_queue();
            // Nothing left to send: an on-demand endpoint nobody names may linger now.
            self.review_demand(ctx);
            return;
        };
        self.sync_queue();
        self.in_flight = true;
        let life = self.lives_started;
        let copy = message.clone();
        let write = connection.send(Write { message, queued_at });
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = false;
            if act.stop_when_settled {
                if let Ok(Err(error)) = result {
                    act.queue.requeue_front(error.into_message(), queued_at);
                } else if result.is_err() {
                    act.queue.requeue_front(copy, queued_at);
                }
                return act.finish_stop(ctx);
            }
            let refused = match result {
                Ok(Ok(())) => return act.pump(ctx),
                Ok(Err(WriteError::Full(message))) => {
                    act.queue.requeue_front(message, queued_at);
                    act.sync_queue();
                    ctx.run_later(FULL_RETRY, |act, ctx| act.pump(ctx));
                    return;
                }
                Ok(Err(error)) => error.into_message(),
                // The connection stopped with the message in its mailbox: it never left.
                Err(_) => copy,
            };
            act.queue.requeue_front(refused, queued_at);
            act.sync_queue();
            // Refused by a socket that is ending: the next one's opening pumps again, unless
            // it already opened while this write was on its way.
            if life != act.lives_started {
                act.pump(ctx);
            }
        }));
    }

    fn enqueue(
        &mut self,
        message: Outbound,
        ctx: &mut Context<Self>,
    ) -> Result<Submitted, Rejected> {
        // Stale messages must not hold room that would refuse this one.
        self.expire(ctx);
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
                self.schedule_expiry(ctx);
                self.wake(ctx);
                self.review_demand(ctx);
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
        let direct = self.state == EndpointState::Live
            && self.queue.is_empty()
            && !self.in_flight
            && !self.is_replaying()
            && !self.is_rotating()
            && self.pacer.is_none();
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
                .send(Write { message, queued_at })
                .into_actor(self)
                .map(move |result, act, ctx| {
                    act.in_flight = false;
                    let outcome = match result {
                        Ok(Ok(())) => Submitted::Writing,
                        Ok(Err(error)) => {
                            act.queue.requeue_front(error.into_message(), queued_at);
                            Submitted::Queued
                        }
                        Err(_) => {
                            act.queue.requeue_front(copy, queued_at);
                            Submitted::Queued
                        }
                    };
                    if act.stop_when_settled {
                        // Stopping: a refused message goes into the stop's report.
                        act.finish_stop(ctx);
                        return Ok(outcome);
                    }
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
    type Result = Result<(), Rejected>;

    fn handle(&mut self, Remember(message): Remember, ctx: &mut Context<Self>) -> Self::Result {
        if let Some(state) = self.is_down() {
            return Err(Rejected::Down { state, message });
        }
        let added = self.added.get_or_insert_default();
        if added.remembered.len() >= MAX_REMEMBERED {
            return Err(Rejected::TooManyRemembered(message));
        }
        added.remembered.push(message.clone());
        // Written once on this socket as part of its replay (never also queued, so never
        // twice), and again after every later open.
        if matches!(self.state, EndpointState::Open | EndpointState::Live) {
            self.replay_now(message, ctx);
        }
        Ok(())
    }
}

impl Handler<AddOnOpenHook> for Supervisor {
    type Result = ();

    fn handle(&mut self, AddOnOpenHook(hook): AddOnOpenHook, _: &mut Context<Self>) {
        self.added.get_or_insert_default().hooks.push(hook);
    }
}
