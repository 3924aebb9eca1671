//! Subscription options and the per-type group of subscribers.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix::Recipient;
use actix::prelude::SendError;
use wsherd_protocol::EndpointName;

use crate::delivery::{Batch, Delivery, Shared};
use crate::table::DispatchReport;

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

/// How a subscription is made.
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    pub(crate) endpoints: Option<Arc<[EndpointName]>>,
    pub(crate) overflow: Overflow,
}

impl SubscribeOptions {
    /// Every endpoint, [`Overflow::Backpressure`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Receive only from these endpoints.
    pub fn endpoints<I>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = EndpointName>,
    {
        self.endpoints = Some(endpoints.into_iter().collect());
        self
    }

    /// What to do when this subscriber's mailbox is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }
}

pub(crate) type Blocked = Pin<Box<dyn Future<Output = ()>>>;

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
    pub(crate) fn new(id: SubscriptionId, sink: Sink<T>, options: SubscribeOptions) -> Self {
        Subscriber {
            id,
            sink,
            endpoints: options.endpoints,
            overflow: options.overflow,
            closed: AtomicBool::new(false),
        }
    }

    fn wants(&self, endpoint: &EndpointName) -> bool {
        !self.closed.load(Ordering::Relaxed)
            && self
                .endpoints
                .as_ref()
                .is_none_or(|names| names.iter().any(|name| name == endpoint))
    }

    fn send(self: &Arc<Self>, delivery: Delivery<T>, report: &mut DispatchReport) {
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
        match recipient.try_send(message) {
            Ok(()) => report.delivered += count,
            Err(SendError::Full(message)) => match self.overflow {
                Overflow::Drop => report.dropped_full += count,
                Overflow::Backpressure => {
                    report.delivered += count;
                    let request = recipient.send(message);
                    report.blocked.push(Box::pin(async move {
                        // A subscriber that stops while we wait is pruned on the next message.
                        let _ = request.await;
                    }));
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
pub(crate) trait PendingBatch {
    fn id(&self) -> SubscriptionId;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush(self: Box<Self>, report: &mut DispatchReport);
}

pub(crate) struct Pending<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) deliveries: Vec<Delivery<T>>,
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

/// All subscribers of one Rust type on one route; shared by the route tables that include it.
pub(crate) struct Group<T: Send + Sync + 'static> {
    pub(crate) subscribers: Vec<Arc<Subscriber<T>>>,
}

impl<T: Send + Sync + 'static> Clone for Group<T> {
    fn clone(&self) -> Self {
        Group {
            subscribers: self.subscribers.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Group<T> {
    pub(crate) fn wanted_by_any(&self, endpoint: &EndpointName) -> bool {
        self.subscribers.iter().any(|s| s.wants(endpoint))
    }

    /// Hands `value` to every subscriber that wants `endpoint`; returns whether any did.
    pub(crate) fn deliver(
        &self,
        endpoint: &EndpointName,
        value: T,
        report: &mut DispatchReport,
    ) -> bool {
        let mut wanted = self.subscribers.iter().filter(|s| s.wants(endpoint));
        let Some(first) = wanted.next() else {
            return false;
        };
        let Some(mut next) = wanted.next() else {
            // One subscriber (the common case): the value travels inline, no allocation.
            let delivery = Delivery {
                endpoint: endpoint.clone(),
                message: Shared::alone(value),
            };
            first.send(delivery, report);
            return true;
        };
        let message = Arc::new(value);
        let mut subscriber = first;
        loop {
            let delivery = Delivery {
                endpoint: endpoint.clone(),
                message: Shared::from_arc(Arc::clone(&message)),
            };
            subscriber.send(delivery, report);
            subscriber = next;
            match wanted.next() {
                Some(after) => next = after,
                None => break,
            }
        }
        // The last subscriber takes the reference the loop kept.
        let delivery = Delivery {
            endpoint: endpoint.clone(),
            message: Shared::from_arc(message),
        };
        subscriber.send(delivery, report);
        true
    }
}
