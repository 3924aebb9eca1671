//! Handing deliveries to subscriber mailboxes: each subscriber's sink, home arbiter and
//! overflow policy, the batches and relay parcels gathered during a connection turn, and the
//! [`DispatchReport`] of what happened.

use std::any::Any;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

use actix::Recipient;
use actix::prelude::SendError;
use wsherd_protocol::EndpointName;

use crate::delivery::{Batch, Delivery};

mod inbox;
mod relay;

use inbox::Offer;
pub(crate) use inbox::{Budgeted, DEFAULT_INBOX_CAPACITY, Inbox, InboxSender};
pub(crate) use relay::Home;
#[cfg(test)]
pub(crate) use relay::RELAY_CAP;
pub use relay::RelayCounters;
use relay::{Load, Outgoing, RelayPart, RelayWait, Tally};

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
    /// Deliveries gathered per connection turn into the subscriber's own [`Inbox`], which
    /// its context drains into `Handler<Delivery<T>>`: one handler call per message, no
    /// mailbox envelope per message. Never relayed: the inbox takes parcels from any thread.
    Inbox(InboxSender<T>),
}

pub(crate) struct Subscriber<T: Send + Sync + 'static> {
    pub(crate) id: SubscriptionId,
    sink: Sink<T>,
    endpoints: Option<Arc<[EndpointName]>>,
    overflow: Overflow,
    /// The arbiter the actor runs on, when known: deliveries from any other thread go through
    /// that thread's relay to it.
    home: Option<Home>,
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
        home: Option<Home>,
    ) -> Self {
        Subscriber {
            id,
            sink,
            endpoints,
            overflow,
            home,
            closed: AtomicBool::new(false),
        }
    }

    /// The subscriber's home arbiter and its thread, when that is not `report`'s thread.
    fn remote(&self, report: &mut DispatchReport) -> Option<(&Home, ThreadId)> {
        let home = self.home.as_ref()?;
        let thread = home.thread()?;
        (thread != report.here()).then_some((home, thread))
    }

    /// The subscription can still receive: its actor runs and no connection found it gone.
    pub(crate) fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
            && match &self.sink {
                Sink::Each(recipient) => recipient.connected(),
                Sink::Batched(recipient) => recipient.connected(),
                Sink::Inbox(inbox) => inbox.0.is_open(),
            }
    }

    /// Whether deliveries to it are gathered per turn (batched or into its inbox), not sent
    /// one by one.
    pub(crate) fn gathers(&self) -> bool {
        matches!(self.sink, Sink::Batched(_) | Sink::Inbox(_))
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
            Sink::Each(recipient) => match self.remote(report) {
                None => self.offer(recipient, delivery, 1, report),
                Some((home, thread))
                    if report.confirm && self.overflow == Overflow::Backpressure =>
                {
                    report.relay_confirmed(self, home, thread, delivery);
                }
                Some((home, thread)) => report.relay_each(self, home, thread, delivery),
            },
            Sink::Batched(_) | Sink::Inbox(_) => report.add_to_batch(self, delivery),
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
                report.hold(recipient.send(message), count);
            } else if !self.closed.swap(true, Ordering::Relaxed) {
                report.closed.push(self.id);
            }
            return;
        }
        if self.overflow == Overflow::Backpressure && !report.blocked.is_empty() {
            // Earlier deliveries wait for a full subscriber: this one waits behind them, or it
            // could reach a mailbox before them.
            report.delivered += count;
            report.hold(recipient.send(message), count);
            return;
        }
        match recipient.try_send(message) {
            Ok(()) => report.delivered += count,
            Err(SendError::Full(message)) => match self.overflow {
                Overflow::Drop => report.dropped_full += count,
                Overflow::Backpressure => {
                    report.delivered += count;
                    report.hold(recipient.send(message), count);
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

impl<T: Send + Sync + 'static> Subscriber<T> {
    /// Hands a turn's `parcel` to the subscriber's inbox under the overflow policy, as
    /// [`Subscriber::offer`] hands a message to a mailbox.
    fn offer_parcel(
        self: &Arc<Self>,
        inbox: &Arc<Inbox<T>>,
        parcel: Vec<Delivery<T>>,
        report: &mut DispatchReport,
    ) {
        let count = parcel.len() as u64;
        if self.overflow == Overflow::Backpressure && !report.blocked.is_empty() {
            // Behind earlier deliveries that wait for a full subscriber, as in `offer`.
            report.delivered += count;
            self.hold_parcel(inbox, parcel, count, report);
            return;
        }
        match inbox.offer(parcel) {
            Offer::Taken(spare) => {
                report.delivered += count;
                if let Some(spare) = spare {
                    Batch::keep_storage(spare);
                }
            }
            Offer::Full(parcel) => match self.overflow {
                Overflow::Drop => {
                    report.dropped_full += count;
                    Batch::keep_storage(parcel);
                }
                Overflow::Backpressure => {
                    report.delivered += count;
                    self.hold_parcel(inbox, parcel, count, report);
                }
            },
            Offer::Closed => {
                if !self.closed.swap(true, Ordering::Relaxed) {
                    report.closed.push(self.id);
                }
            }
        }
    }

    /// Holds `parcel` in `report` until the inbox has room for it. The subscription is kept
    /// meanwhile, so that its inbox does not end (and lose the parcel) while it waits.
    fn hold_parcel(
        self: &Arc<Self>,
        inbox: &Arc<Inbox<T>>,
        parcel: Vec<Delivery<T>>,
        count: u64,
        report: &mut DispatchReport,
    ) {
        let subscription = Arc::clone(self);
        let wait = Arc::clone(inbox).offer_when_room(parcel);
        report.hold(
            async move {
                let taken = wait.await;
                drop(subscription);
                taken
            },
            count,
        );
    }
}

/// Deliveries gathered for one batched subscriber during one connection turn.
trait PendingBatch {
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn flush(self: Box<Self>, report: &mut DispatchReport);
}

struct Pending<T: Send + Sync + 'static> {
    subscriber: Arc<Subscriber<T>>,
    deliveries: Vec<Delivery<T>>,
}

impl<T: Send + Sync + 'static> PendingBatch for Pending<T> {
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn flush(self: Box<Self>, report: &mut DispatchReport) {
        let Pending {
            subscriber,
            deliveries,
        } = *self;
        let recipient = match &subscriber.sink {
            Sink::Batched(recipient) => recipient,
            Sink::Inbox(inbox) => return subscriber.offer_parcel(&inbox.0, deliveries, report),
            Sink::Each(_) => return,
        };
        let batch = Batch { deliveries };
        match subscriber.remote(report) {
            None => {
                let count = batch.deliveries.len() as u64;
                subscriber.offer(recipient, batch, count, report);
            }
            Some((home, thread)) => {
                let Some(endpoint) = batch.deliveries.first().map(|d| d.endpoint.clone()) else {
                    return;
                };
                let index = report.outgoing(home, thread, &endpoint);
                if let Some(outgoing) = report.relays.get_mut(index) {
                    let part = RelayPart {
                        subscriber: Arc::clone(&subscriber),
                        load: Load::Batch(batch),
                    };
                    outgoing.push(subscriber.id, Box::new(part));
                }
            }
        }
    }
}

/// A held delivery (or batch), or a relay hand-over waiting for room.
enum Held {
    /// Waiting for room in a mailbox; giving it up loses `deliveries`.
    Mailbox { wait: Blocked, deliveries: u64 },
    /// Waiting for room on the way to another arbiter.
    Relay(Box<RelayWait>),
}

impl Held {
    fn poll(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        match self {
            Held::Mailbox { wait, .. } => wait.as_mut().poll(cx),
            Held::Relay(wait) => Pin::new(&mut **wait).poll(cx),
        }
    }

    /// Gives it up; returns how many deliveries that loses.
    fn give_up(self) -> u64 {
        match self {
            Held::Mailbox { deliveries, .. } => deliveries,
            Held::Relay(wait) => (*wait).give_up() as u64,
        }
    }

    async fn finish(mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
    }
}

/// What happened to one or more dispatched messages; a connection keeps one and drains it.
///
/// Counting here instead of in shared atomics keeps the per-message path free of contention.
///
/// Deliveries to a subscriber whose actor runs on another arbiter than this report's thread go
/// through this thread's relay to that arbiter (see [`crate::SubscribeOptions`]): a report made
/// with [`DispatchReport::gathering`] gathers them per turn, like batches, and hands each
/// arbiter its share in one cross-thread message on [`DispatchReport::flush_batches`]; a
/// `Default` report hands each over at once. Either way they stay in order with everything
/// else this thread delivers to that subscriber.
#[derive(Default)]
pub struct DispatchReport {
    /// Deliveries handed to subscriber mailboxes (one message to three subscribers is three).
    /// Deliveries relayed to another arbiter are counted there, once in the mailbox: into the
    /// [`RelayCounters`] of [`DispatchReport::gathering`], or else into this field when the
    /// report next flushes or hands something over.
    pub delivered: u64,
    /// Deliveries dropped because an [`Overflow::Drop`] subscriber was full (or, on another
    /// arbiter, the relay to it was; counted as [`Self::delivered`] is).
    pub dropped_full: u64,
    /// Messages that had no subscriber (they went to dead letters).
    pub unrouted: u64,
    /// Messages, or one subscribed type's decode of one, that failed to decode.
    pub decode_failures: u64,
    /// Subscriptions whose actor has stopped; tell the router with
    /// [`Router::unsubscribe`](crate::Router::unsubscribe).
    pub closed: Vec<SubscriptionId>,
    /// Deliveries waiting for room in a full subscriber's mailbox (or relay), in the order they
    /// were made.
    blocked: VecDeque<Held>,
    /// Batches gathered this turn, each beside its subscription, so finding a subscriber's
    /// batch for each delivery costs no call through the trait object.
    pending: Vec<(SubscriptionId, Box<dyn PendingBatch>)>,
    pending_deliveries: usize,
    largest_batch: usize,
    /// Room the next new batch starts with.
    batch_start: usize,
    /// Deliveries to backpressure subscribers are held until handled (a last word).
    pub(crate) confirm: bool,
    /// The thread this report delivers from, once asked.
    here: Option<ThreadId>,
    /// Gather relayed deliveries until [`Self::flush_batches`] instead of handing each over.
    gather: bool,
    /// Deliveries gathered for other arbiters, one entry per arbiter.
    relays: Vec<Outgoing>,
    /// Where relayed deliveries are counted, and stopped subscribers reported.
    tally: Arc<Tally>,
    relayed_parcels: u64,
    /// The kind the last message routed with this report had, for the next one (boxed: a
    /// connection's task stays within its memory cell).
    pub(crate) last_kind: Option<Box<crate::table::KindMemo>>,
}

impl DispatchReport {
    /// A report for an owner that ends each turn with [`Self::flush_batches`] (a connection):
    /// deliveries to subscribers on other arbiters are gathered per turn and handed over as
    /// one parcel per arbiter, and counted into `counters` once they reach (or miss) their
    /// mailboxes there.
    pub fn gathering(counters: Arc<dyn RelayCounters>) -> Self {
        DispatchReport {
            gather: true,
            tally: Arc::new(Tally::counting_into(counters)),
            ..DispatchReport::default()
        }
    }

    /// Parcels handed to relays so far: each is at most one cross-thread message, however
    /// many deliveries it carries.
    pub fn relayed_parcels(&self) -> u64 {
        self.relayed_parcels
    }

    fn here(&mut self) -> ThreadId {
        *self.here.get_or_insert_with(|| std::thread::current().id())
    }

    fn hold<R>(&mut self, request: R, deliveries: u64)
    where
        R: Future + 'static,
    {
        self.blocked.push_back(Held::Mailbox {
            wait: Box::pin(async move {
                // A subscriber that stops while we wait is pruned on the next message.
                let _ = request.await;
            }),
            deliveries,
        });
    }

    fn hold_relayed(&mut self, wait: RelayWait) {
        self.blocked.push_back(Held::Relay(Box::new(wait)));
    }

    /// Relays `delivery` to `subscriber` on `home`'s arbiter: gathered for the end of the turn,
    /// or handed over now.
    fn relay_each<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        home: &Home,
        thread: ThreadId,
        delivery: Delivery<T>,
    ) {
        let index = self.outgoing(home, thread, &delivery.endpoint);
        if self.gather {
            let capacity = self.batch_start.max(BATCH_START_MIN);
            if let Some(outgoing) = self.relays.get_mut(index) {
                let gathered = outgoing.add_each(subscriber, delivery, capacity);
                self.pending_deliveries += 1;
                self.largest_batch = self.largest_batch.max(gathered);
            }
        } else {
            let part = RelayPart {
                subscriber: Arc::clone(subscriber),
                load: Load::Each(vec![delivery]),
            };
            self.hand_over(index, vec![Box::new(part)]);
            self.collect_relayed();
        }
    }

    /// Relays a last word to `subscriber` on `home`'s arbiter behind everything gathered so
    /// far, and holds this report until the subscriber handled it.
    fn relay_confirmed<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        home: &Home,
        thread: ThreadId,
        delivery: Delivery<T>,
    ) {
        if self.pending_deliveries > 0 {
            // What the turn gathered goes first: the last word must not overtake it.
            self.flush_batches();
        }
        let index = self.outgoing(home, thread, &delivery.endpoint);
        let (handled, was_handled) = tokio::sync::oneshot::channel();
        let part = relay::ConfirmedPart {
            subscriber: Arc::clone(subscriber),
            delivery,
            handled,
        };
        self.hand_over(index, vec![Box::new(part)]);
        self.collect_relayed();
        // Counted by the relay when it lands; here only waited for (and not given up as a
        // delivery by `drop_held`, which it is not this report's to give up).
        // Sender dropped: the relay gave it up (its arbiter is gone); nothing more to wait for.
        self.hold(was_handled, 0);
    }

    /// Moves what relays reported since the last call (counts, stopped subscribers) into this
    /// report's fields.
    fn collect_relayed(&mut self) {
        self.tally.collect_into(
            &mut self.delivered,
            &mut self.dropped_full,
            &mut self.closed,
        );
    }

    /// Makes progress on the deliveries held for full subscribers, oldest first; `Ready` once
    /// every one of them was taken. While any is held, later deliveries to backpressure
    /// subscribers queue behind it, so a subscriber never sees them out of order.
    pub fn poll_unblocked(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        while let Some(front) = self.blocked.front_mut() {
            match front.poll(cx) {
                std::task::Poll::Ready(()) => {
                    self.blocked.pop_front();
                }
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
        std::task::Poll::Ready(())
    }

    /// Deliveries (messages, batches or relay hand-overs) held for full subscribers.
    pub fn held(&self) -> usize {
        self.blocked.len()
    }

    /// Gives up the held deliveries (their subscribers never get them); returns how many
    /// deliveries that loses (a batch or a relay hand-over counts its deliveries). A held
    /// relay hand-over dropped any other way (say with [`Self::take_backpressure`]'s future)
    /// counts itself as dropped where relayed deliveries are counted.
    pub fn drop_held(&mut self) -> usize {
        let lost: u64 = self.blocked.drain(..).map(Held::give_up).sum();
        usize::try_from(lost).unwrap_or(usize::MAX)
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

    /// Sends every gathered batch (one message per batched subscriber) and hands each other
    /// arbiter its gathered deliveries (one parcel per arbiter).
    pub fn flush_batches(&mut self) {
        self.pending_deliveries = 0;
        self.batch_start = self.largest_batch.clamp(BATCH_START_MIN, BATCH_START_MAX);
        self.largest_batch = 0;
        for (_, pending) in std::mem::take(&mut self.pending) {
            pending.flush(self);
        }
        for index in 0..self.relays.len() {
            let parts = match self.relays.get_mut(index) {
                Some(outgoing) if !outgoing.is_empty() => outgoing.take(),
                _ => continue,
            };
            self.hand_over(index, parts);
        }
        self.collect_relayed();
    }

    /// Gathers `delivery` into `subscriber`'s batch for this turn.
    ///
    /// The batch is looked up before the delivery moves, so that on the hot path (a batch
    /// already started this turn) the delivery is moved once, straight into its place: moved
    /// through the lookup's branches it was copied three times (136 bytes each for the bench's
    /// trade), a measurable share of a batched feed's time.
    #[inline]
    pub(crate) fn add_to_batch<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        delivery: Delivery<T>,
    ) {
        match self.started_batch(subscriber) {
            Some(batch) => batch.push(delivery),
            None => self.start_batch(subscriber, delivery),
        }
    }

    /// The batch `subscriber` started this turn, if it did, counting the delivery the caller
    /// adds to it.
    fn started_batch<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Subscriber<T>,
    ) -> Option<&mut Vec<Delivery<T>>> {
        let (_, pending) = self
            .pending
            .iter_mut()
            .find(|(id, _)| *id == subscriber.id)?;
        let pending = pending.as_any_mut().downcast_mut::<Pending<T>>()?;
        self.pending_deliveries += 1;
        self.largest_batch = self.largest_batch.max(pending.deliveries.len() + 1);
        Some(&mut pending.deliveries)
    }

    /// Starts `subscriber`'s batch for this turn with `delivery`.
    #[inline(never)]
    fn start_batch<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        delivery: Delivery<T>,
    ) {
        self.pending_deliveries += 1;
        self.largest_batch = self.largest_batch.max(1);
        let mut deliveries = Batch::storage(self.batch_start.max(BATCH_START_MIN));
        deliveries.push(delivery);
        self.pending.push((
            subscriber.id,
            Box::new(Pending {
                subscriber: Arc::clone(subscriber),
                deliveries,
            }),
        ));
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
            for held in blocked {
                held.finish().await;
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
            .field("relayed_parcels", &self.relayed_parcels)
            .finish()
    }
}
