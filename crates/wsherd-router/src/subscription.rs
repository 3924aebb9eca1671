//! Subscription options and the per-type group of subscribers.

use std::sync::Arc;

use wsherd_protocol::EndpointName;

use crate::delivery::{Delivery, Shared};
use crate::dispatch::{DispatchReport, Overflow, Subscriber};

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
