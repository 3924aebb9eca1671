//! Subscription options and the per-type group of subscribers.

use std::sync::Arc;

use actix::ArbiterHandle;
use wsherd_protocol::EndpointName;

use crate::delivery::{Delivery, Shared};
use crate::dispatch::{DispatchReport, Home, Overflow, Subscriber};

/// How a subscription is made.
///
/// # Subscribers on another arbiter
///
/// A subscriber whose actor runs on another arbiter (thread) than a connection gets that
/// connection's deliveries through a relay: each read turn's deliveries for that arbiter travel
/// as one cross-thread message, and are put into the subscriber mailboxes there, one by one,
/// from that arbiter's own thread. The subscriber still receives one `Delivery<T>` per message,
/// in order, with its overflow policy applied there.
///
/// A `Recipient` does not say where its actor runs, so by default the subscriber is taken to
/// live on the arbiter of the thread that subscribes it: subscribe from the subscriber's own
/// arbiter (in its `started`, or where it was started), or name it with
/// [`SubscribeOptions::arbiter`]. Subscribed from a thread without an arbiter, or with
/// [`SubscribeOptions::direct`], every delivery goes straight into the mailbox from the
/// connection's thread (a cross-thread wake-up per message when that is another thread).
#[derive(Debug, Clone, Default)]
pub struct SubscribeOptions {
    pub(crate) endpoints: Option<Arc<[EndpointName]>>,
    pub(crate) overflow: Overflow,
    pub(crate) home: HomeChoice,
    pub(crate) passive: bool,
    pub(crate) inbox_capacity: Option<usize>,
}

/// Where a subscriber's actor is taken to run.
#[derive(Debug, Clone, Default)]
pub(crate) enum HomeChoice {
    /// On the arbiter of the subscribing thread.
    #[default]
    Caller,
    /// On this arbiter.
    Arbiter(ArbiterHandle),
    /// Nowhere in particular: no relay.
    Direct,
}

impl HomeChoice {
    /// The home this choice names, found now.
    pub(crate) fn resolve(self) -> Option<Home> {
        match self {
            HomeChoice::Caller => Home::current(),
            HomeChoice::Arbiter(arbiter) => Some(Home::of(arbiter)),
            HomeChoice::Direct => None,
        }
    }
}

impl SubscribeOptions {
    /// Every endpoint, [`Overflow::Backpressure`], the subscriber on the subscribing thread's
    /// arbiter.
    pub fn new() -> Self {
        Self::default()
    }

    /// The subscriber's actor runs on `arbiter` (for example the one it was started in with
    /// `start_in_arbiter`): connections on other arbiters relay their deliveries to it there.
    pub fn arbiter(mut self, arbiter: ArbiterHandle) -> Self {
        self.home = HomeChoice::Arbiter(arbiter);
        self
    }

    /// Every delivery goes straight into the subscriber's mailbox from the connection's thread,
    /// never through a relay: the least latency under a flood, and a cross-thread wake-up per
    /// message for a subscriber on another arbiter.
    pub fn direct(mut self) -> Self {
        self.home = HomeChoice::Direct;
        self
    }

    /// Receive only from these endpoints.
    ///
    /// Naming an endpoint also says it is needed: an endpoint that connects only on demand
    /// connects while a subscription names it, unless the subscription is
    /// [`passive`](Self::passive). A subscription without this filter names no endpoint.
    pub fn endpoints<I>(mut self, endpoints: I) -> Self
    where
        I: IntoIterator<Item = EndpointName>,
    {
        self.endpoints = Some(endpoints.into_iter().collect());
        self
    }

    /// Watches without needing: the endpoints named by [`endpoints`](Self::endpoints) do not
    /// connect on this subscription's account (a state monitor, a log of a few endpoints).
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }

    /// What to do when this subscriber's mailbox is full.
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many deliveries may wait in the inbox of a subscription made with
    /// [`Router::subscribe_in`](crate::Router::subscribe_in) (1,024 unless set; at least one):
    /// beyond it the inbox is full, and [`overflow`](Self::overflow) says what happens to a
    /// connection's turn that does not fit (dropped whole, or held until it fits, in turn).
    /// A turn counts until the actor has handled its last delivery; an empty inbox takes a
    /// turn larger than the capacity. Other subscriptions are bounded by their actor's mailbox
    /// (`ctx.set_mailbox_capacity`) instead.
    pub fn inbox_capacity(mut self, capacity: usize) -> Self {
        self.inbox_capacity = Some(capacity);
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
    /// Where the first subscriber that wants `endpoint` is, if any does: found before a
    /// message is decoded (nobody wanting it, it is not), and handed to
    /// [`Self::deliver_from`] so that subscriber is not asked twice.
    pub(crate) fn first_wanting(&self, endpoint: &EndpointName) -> Option<usize> {
        self.subscribers.iter().position(|s| s.wants(endpoint))
    }

    /// Hands `value` to every subscriber that wants `endpoint`; returns whether any did.
    pub(crate) fn deliver(
        &self,
        endpoint: &EndpointName,
        value: T,
        report: &mut DispatchReport,
    ) -> bool {
        match self.first_wanting(endpoint) {
            Some(first) => self.deliver_from(first, endpoint, value, report),
            None => false,
        }
    }

    /// [`Self::deliver`], given where the first subscriber that wants `endpoint` is (from
    /// [`Self::first_wanting`]); the later ones are asked here.
    pub(crate) fn deliver_from(
        &self,
        first_at: usize,
        endpoint: &EndpointName,
        value: T,
        report: &mut DispatchReport,
    ) -> bool {
        let Some((first, later)) = self
            .subscribers
            .get(first_at..)
            .and_then(<[Arc<Subscriber<T>>]>::split_first)
        else {
            return false;
        };
        let mut wanted = later.iter().filter(|s| s.wants(endpoint));
        let Some(mut next) = wanted.next() else {
            // One subscriber (the common case): the value travels inline, no allocation. A
            // gathering one's delivery goes straight to its batch: handed down through `send`
            // it was copied on the way (three times 136 bytes for the bench's trade).
            let delivery = Delivery {
                endpoint: endpoint.clone(),
                message: Shared::alone(value),
            };
            if first.gathers() {
                report.add_to_batch(first, delivery);
            } else {
                first.send(delivery, report);
            }
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
