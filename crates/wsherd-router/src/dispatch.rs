//! Handing deliveries to subscriber mailboxes: each subscriber's sink and overflow policy, the
//! batches gathered during a connection turn, and the [`DispatchReport`] of what happened.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::Recipient;
use actix::prelude::SendError;
use wsherd_protocol::EndpointName;

use crate::delivery::{Batch, Delivery};

/// Room a new batch starts with, at least and at most: a batch starts as large as the largest
/// one of the previous flush, so a steady feed fills batches without ever copying them to grow.
const BATCH_START_MIN: usize = 16;
const BATCH_START_MAX: usize = 256;

/// Identifies one subscription, for [`Router::unsubscribe`](crate::Router::unsubscribe).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(pub(crate) u64);

/// What a connection does when a subscriber's mailbox is full.
///
/// A subscriber that is slower than its feed must either slow the feed down or lose messages;
/// wsherd never queues without bound. Set the subscriber's capacity with
/// `ctx.set_mailbox_capacity(n)` in its `started` to absorb bursts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Stop reading the socket until the subscriber has room: nothing is lost, and the peer
    /// sees TCP back-pressure. Other subscribers of the same connection wait too.
    #[default]
    Backpressure,
    /// Drop the message for this subscriber and count it (`dropped_full` in the endpoint's
    /// counters); the connection never waits.
    Drop,
}

type Blocked = Pin<Box<dyn Future<Output = ()>>>;

/// Where a subscriber's deliveries go.
pub(crate) enum Sink<T: Send + Sync + 'static> {
    /// One message per delivery.
    Each(Recipient<Delivery<T>>),
    /// Deliveries gathered per connection turn into one [`Batch`]: one channel hop for many
    /// messages, which is what a subscriber on another arbiter wants.
    Batched(Recipient<Batch<T>>),
}

pub(crate) struct Subscriber<T: Send + Sync + 'static> {
    pub(crate) id: SubscriptionId,
    sink: Sink<T>,
    endpoints: Option<Arc<[EndpointName]>>,
    overflow: Overflow,
    /// Set once by the first connection that finds the actor gone, so only one asks the
    /// router to forget it.
    closed: AtomicBool,
}

impl<T: Send + Sync + 'static> Subscriber<T> {
    pub(crate) fn new(
        id: SubscriptionId,
        sink: Sink<T>,
        endpoints: Option<Arc<[EndpointName]>>,
        overflow: Overflow,
    ) -> Self {
        Subscriber {
            id,
            sink,
            endpoints,
            overflow,
            closed: AtomicBool::new(false),
        }
    }

    pub(crate) fn wants(&self, endpoint: &EndpointName) -> bool {
        !self.closed.load(Ordering::Relaxed)
            && self
                .endpoints
                .as_ref()
                .is_none_or(|names| names.iter().any(|name| name == endpoint))
    }

    pub(crate) fn send(self: &Arc<Self>, delivery: Delivery<T>, report: &mut DispatchReport) {
        match &self.sink {
            Sink::Each(recipient) => self.offer(recipient, delivery, 1, report),
            Sink::Batched(_) => report.add_to_batch(self, delivery),
        }
    }

    /// Hands `message` (carrying `count` deliveries) to `recipient` under the overflow policy.
    fn offer<M>(
        &self,
        recipient: &Recipient<M>,
        message: M,
        count: u64,
        report: &mut DispatchReport,
    ) where
        M: actix::Message<Result = ()> + Send + 'static,
    {
        if self.overflow == Overflow::Backpressure && report.confirm {
            // A last word (see `RouteTable::publish_confirmed`): held until it was handled.
            if recipient.connected() {
                report.delivered += count;
                report.hold(recipient.send(message));
            } else if !self.closed.swap(true, Ordering::Relaxed) {
                report.closed.push(self.id);
            }
            return;
        }
        if self.overflow == Overflow::Backpressure && !report.blocked.is_empty() {
            // Earlier deliveries wait for a full subscriber: this one waits behind them, or it
            // could reach a mailbox before them.
            report.delivered += count;
            report.hold(recipient.send(message));
            return;
        }
        match recipient.try_send(message) {
            Ok(()) => report.delivered += count,
            Err(SendError::Full(message)) => match self.overflow {
                Overflow::Drop => report.dropped_full += count,
                Overflow::Backpressure => {
                    report.delivered += count;
                    report.hold(recipient.send(message));
                }
            },
            Err(SendError::Closed(_)) => {
                if !self.closed.swap(true, Ordering::Relaxed) {
                    report.closed.push(self.id);
                }
            }
        }
    }
}

/// Deliveries gathered for one batched subscriber during one connection turn.
trait PendingBatch {
    fn id(&self) -> SubscriptionId;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush(self: Box<Self>, report: &mut DispatchReport);
}

struct Pending<T: Send + Sync + 'static> {
    subscriber: Arc<Subscriber<T>>,
    deliveries: Vec<Delivery<T>>,
}

impl<T: Send + Sync + 'static> PendingBatch for Pending<T> {
    fn id(&self) -> SubscriptionId {
        self.subscriber.id
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn flush(self: Box<Self>, report: &mut DispatchReport) {
        let Pending {
            subscriber,
            deliveries,
        } = *self;
        if let Sink::Batched(recipient) = &subscriber.sink {
            let count = deliveries.len() as u64;
            subscriber.offer(recipient, Batch { deliveries }, count, report);
        }
    }
}

/// What happened to one or more dispatched messages; a connection keeps one and drains it.
///
/// Counting here instead of in shared atomics keeps the per-message path free of contention.
#[derive(Default)]
pub struct DispatchReport {
    /// Deliveries handed to subscriber mailboxes (one message to three subscribers is three).
    pub delivered: u64,
    /// Deliveries dropped because an [`Overflow::Drop`] subscriber was full.
    pub dropped_full: u64,
    /// Messages that had no subscriber (they went to dead letters).
    pub unrouted: u64,
    /// Messages, or one subscribed type's decode of one, that failed to decode.
    pub decode_failures: u64,
    /// Subscriptions whose actor has stopped; tell the router with
    /// [`Router::unsubscribe`](crate::Router::unsubscribe).
    pub closed: Vec<SubscriptionId>,
    /// Deliveries waiting for room in a full subscriber's mailbox, in the order they were made.
    blocked: VecDeque<Blocked>,
    pending: Vec<Box<dyn PendingBatch>>,
    pending_deliveries: usize,
    largest_batch: usize,
    /// Room the next new batch starts with.
    batch_start: usize,
    /// Deliveries to backpressure subscribers are held until handled (a last word).
    pub(crate) confirm: bool,
}

impl DispatchReport {
    fn hold<R>(&mut self, request: R)
    where
        R: Future + 'static,
    {
        self.blocked.push_back(Box::pin(async move {
            // A subscriber that stops while we wait is pruned on the next message.
            let _ = request.await;
        }));
    }

    /// Makes progress on the deliveries held for full subscribers, oldest first; `Ready` once
    /// every one of them was taken. While any is held, later deliveries to backpressure
    /// subscribers queue behind it, so a subscriber never sees them out of order.
    pub fn poll_unblocked(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        while let Some(front) = self.blocked.front_mut() {
            match front.as_mut().poll(cx) {
                std::task::Poll::Ready(()) => {
                    self.blocked.pop_front();
                }
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
        std::task::Poll::Ready(())
    }

    /// Deliveries (messages or batches) held for full subscribers.
    pub fn held(&self) -> usize {
        self.blocked.len()
    }

    /// Gives up the held deliveries (their subscribers never get them); returns how many.
    pub fn drop_held(&mut self) -> usize {
        let held = self.blocked.len();
        self.blocked.clear();
        held
    }

    /// Deliveries gathered for batched subscribers and not yet sent.
    pub fn pending_deliveries(&self) -> usize {
        self.pending_deliveries
    }

    /// Deliveries in the fullest gathered batch: a connection sends its batches when this
    /// reaches its cap, or when the socket has nothing more for now.
    pub fn largest_batch(&self) -> usize {
        self.largest_batch
    }

    /// Sends every gathered batch (one message per batched subscriber).
    pub fn flush_batches(&mut self) {
        self.pending_deliveries = 0;
        self.batch_start = self.largest_batch.clamp(BATCH_START_MIN, BATCH_START_MAX);
        self.largest_batch = 0;
        for pending in std::mem::take(&mut self.pending) {
            pending.flush(self);
        }
    }

    fn add_to_batch<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        delivery: Delivery<T>,
    ) {
        self.pending_deliveries += 1;
        let existing = self
            .pending
            .iter_mut()
            .find(|p| p.id() == subscriber.id)
            .and_then(|p| p.as_any_mut().downcast_mut::<Pending<T>>());
        match existing {
            Some(pending) => {
                pending.deliveries.push(delivery);
                self.largest_batch = self.largest_batch.max(pending.deliveries.len());
            }
            None => {
                self.largest_batch = self.largest_batch.max(1);
                let mut deliveries = Batch::storage(self.batch_start.max(BATCH_START_MIN));
                deliveries.push(delivery);
                self.pending.push(Box::new(Pending {
                    subscriber: Arc::clone(subscriber),
                    deliveries,
                }));
            }
        }
    }

    /// Whether a full [`Overflow::Backpressure`](crate::Overflow) subscriber is waited for;
    /// see [`Self::take_backpressure`].
    pub fn has_blocked(&self) -> bool {
        !self.blocked.is_empty()
    }

    /// A future that completes once every full [`Overflow::Backpressure`](crate::Overflow)
    /// subscriber has accepted its delivery, or `None` when nobody was full. Until it completes
    /// the connection must not read further messages.
    pub fn take_backpressure(&mut self) -> Option<impl Future<Output = ()> + 'static> {
        if self.blocked.is_empty() {
            return None;
        }
        let blocked = std::mem::take(&mut self.blocked);
        Some(async move {
            for wait in blocked {
                wait.await;
            }
        })
    }
}

impl std::fmt::Debug for DispatchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatchReport")
            .field("delivered", &self.delivered)
            .field("dropped_full", &self.dropped_full)
            .field("unrouted", &self.unrouted)
            .field("decode_failures", &self.decode_failures)
            .field("closed", &self.closed)
            .field("blocked", &self.blocked.len())
            .field("pending_deliveries", &self.pending_deliveries)
            .finish()
    }
}
