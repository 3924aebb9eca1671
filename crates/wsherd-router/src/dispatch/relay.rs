//! Deliveries to subscribers on another arbiter, handed over in parcels.
//!
//! A `Recipient` does not say which thread its actor runs on, and a message put into the mailbox
//! of an actor on another thread wakes that thread: one wake-up per message is what made a
//! plain subscriber on another arbiter four times slower than a batched one. So a subscriber
//! remembers its *home* (the arbiter of the thread that subscribed it, or one named in
//! [`SubscribeOptions`](crate::SubscribeOptions)), and what a thread delivers to subscribers of
//! another arbiter goes through one [`Relay`] per (this thread, that arbiter): a bounded queue
//! of parcels, each a connection turn's deliveries to that arbiter's subscribers. A drainer task
//! on the target arbiter takes the parcels in order and puts each delivery into its mailbox from
//! the same thread, which costs no wake-up.
//!
//! Every delivery from one thread to a subscriber of another arbiter takes the same relay, in
//! program order, whoever delivers it (a connection's messages, its supervisor's state
//! events): events stay in causal order with the messages around them.
//!
//! Overflow, end to end:
//!
//! - On the target arbiter, a subscriber's part of a parcel is admitted as a whole: if its
//!   mailbox takes the first delivery, the rest of the turn's deliveries follow it (a mailbox
//!   exceeds its capacity by at most one turn, like one [`Batch`] would); if not, an
//!   [`Overflow::Drop`] subscriber loses the part (counted), and the drainer waits for room in
//!   an [`Overflow::Backpressure`] subscriber's mailbox, holding the parcels behind it.
//! - The relay holds at most [`RELAY_CAP`] deliveries (plus the last parcel taken). When it is
//!   full, the deliverer drops the parts of `Drop` subscribers (counted) and holds the rest as a
//!   [`DispatchReport`] holds a delivery to a full mailbox: a connection pauses its reads, within
//!   `max_stall`. Held hand-overs go into the relay strictly in the order they were made.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use actix::prelude::SendError;
use actix::{Arbiter, ArbiterHandle, Recipient};

use super::{DispatchReport, Overflow, Sink, Subscriber, SubscriptionId};
use crate::delivery::{Batch, Delivery};

/// Deliveries one relay holds at most, queued or being put into mailboxes; a parcel is taken
/// while the relay holds fewer, so it may exceed this by one parcel.
pub(crate) const RELAY_CAP: usize = 8192;

/// Where deliveries handed to another arbiter are counted once their fate is known there.
///
/// A connection counts what it puts into mailboxes itself; what it hands to a relay is put into
/// mailboxes later, on the subscriber's arbiter, which tells these counters. Give them with
/// [`DispatchReport::gathering`]; a report made with `Default` counts relayed deliveries into
/// its own fields instead, when it next flushes or delivers.
pub trait RelayCounters: Send + Sync + 'static {
    /// `count` deliveries reached their subscriber's mailbox.
    fn delivered(&self, count: u64);
    /// `count` deliveries were dropped because an [`Overflow::Drop`] subscriber's mailbox (or
    /// the relay to its arbiter) was full.
    fn dropped_full(&self, count: u64);
}

/// The arbiter a subscriber's actor runs on, and that arbiter's thread once known.
#[derive(Debug)]
pub(crate) struct Home {
    arbiter: ArbiterHandle,
    thread: Arc<OnceLock<ThreadId>>,
}

impl Home {
    /// The arbiter of the calling thread, if it runs one.
    pub(crate) fn current() -> Option<Home> {
        let arbiter = Arbiter::try_current()?;
        let thread = OnceLock::new();
        let _ = thread.set(std::thread::current().id());
        Some(Home {
            arbiter,
            thread: Arc::new(thread),
        })
    }

    /// `arbiter`, whose thread is learned by asking it; until it answers, deliveries go
    /// straight to the mailbox as they would without a home.
    pub(crate) fn of(arbiter: ArbiterHandle) -> Home {
        let thread = Arc::new(OnceLock::new());
        let learn = Arc::clone(&thread);
        arbiter.spawn_fn(move || {
            let _ = learn.set(std::thread::current().id());
        });
        Home { arbiter, thread }
    }

    pub(crate) fn thread(&self) -> Option<ThreadId> {
        self.thread.get().copied()
    }
}

thread_local! {
    /// The relays from this thread, by target thread.
    static RELAYS: RefCell<Vec<(ThreadId, Arc<Relay>)>> = const { RefCell::new(Vec::new()) };
}

/// This thread's relay to `home`'s arbiter (running on `thread`).
pub(crate) fn relay_to(home: &Home, thread: ThreadId) -> Arc<Relay> {
    let found = RELAYS.try_with(|relays| {
        let mut relays = relays.try_borrow_mut().ok()?;
        if let Some((_, relay)) = relays.iter().find(|(t, r)| *t == thread && !r.is_dead()) {
            return Some(Arc::clone(relay));
        }
        relays.retain(|(_, relay)| !relay.is_dead());
        let relay = Arc::new(Relay::new(home.arbiter.clone()));
        relays.push((thread, Arc::clone(&relay)));
        Some(relay)
    });
    // Only while this thread's locals are being destroyed: a relay of its own still delivers.
    found
        .ok()
        .flatten()
        .unwrap_or_else(|| Arc::new(Relay::new(home.arbiter.clone())))
}

/// What a report counts relayed deliveries into, and learns stopped subscribers from.
#[derive(Default)]
pub(crate) struct Tally {
    counters: Option<Arc<dyn RelayCounters>>,
    delivered: AtomicU64,
    dropped_full: AtomicU64,
    any_closed: AtomicBool,
    closed: Mutex<Vec<SubscriptionId>>,
}

impl Tally {
    pub(crate) fn counting_into(counters: Arc<dyn RelayCounters>) -> Self {
        Tally {
            counters: Some(counters),
            ..Tally::default()
        }
    }

    fn delivered(&self, count: u64) {
        match &self.counters {
            Some(counters) => counters.delivered(count),
            None => {
                self.delivered.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    fn dropped_full(&self, count: u64) {
        if count == 0 {
            return;
        }
        match &self.counters {
            Some(counters) => counters.dropped_full(count),
            None => {
                self.dropped_full.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    fn closed(&self, id: SubscriptionId) {
        lock(&self.closed).push(id);
        self.any_closed.store(true, Ordering::Release);
    }

    /// Moves what arrived since the last call into `report`'s fields.
    pub(crate) fn collect_into(
        &self,
        delivered: &mut u64,
        dropped_full: &mut u64,
        closed: &mut Vec<SubscriptionId>,
    ) {
        if self.counters.is_none() {
            *delivered += self.delivered.swap(0, Ordering::Relaxed);
            *dropped_full += self.dropped_full.swap(0, Ordering::Relaxed);
        }
        if self.any_closed.swap(false, Ordering::Acquire) {
            closed.append(&mut lock(&self.closed));
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One subscriber's deliveries in one parcel.
pub(crate) trait Part: Send {
    fn id(&self) -> SubscriptionId;
    fn deliveries(&self) -> usize;
    fn overflow(&self) -> Overflow;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// On the target arbiter: into the mailbox, or a wait for room in it.
    fn deliver(self: Box<Self>, tally: &Arc<Tally>) -> Option<Wait>;
    /// The subscriber's arbiter is gone, and the subscriber with it.
    fn close(&self, tally: &Tally);
}

/// Deliveries for a subscriber of single deliveries.
pub(crate) struct EachPart<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) deliveries: Vec<Delivery<T>>,
}

/// A batch for a batched subscriber.
pub(crate) struct BatchPart<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) batch: Batch<T>,
}

impl<T: Send + Sync + 'static> Subscriber<T> {
    fn close_into(&self, tally: &Tally) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            tally.closed(self.id);
        }
    }

    /// On the target arbiter: `messages` (carrying `deliveries`) into `recipient`'s mailbox,
    /// admitted as a whole by the first of them.
    fn hand_in<M>(
        self: &Arc<Self>,
        recipient: &Recipient<M>,
        messages: Vec<M>,
        deliveries: u64,
        tally: &Arc<Tally>,
    ) -> Option<Wait>
    where
        M: actix::Message<Result = ()> + Send + 'static,
    {
        let mut messages = messages.into_iter();
        let first = messages.next()?;
        match recipient.try_send(first) {
            Ok(()) => {
                // Same thread, so no wake-up each; bounded by the part, i.e. one turn.
                messages.for_each(|message| recipient.do_send(message));
                tally.delivered(deliveries);
                None
            }
            Err(SendError::Full(first)) => match self.overflow {
                Overflow::Drop => {
                    tally.dropped_full(deliveries);
                    None
                }
                Overflow::Backpressure => {
                    let request = recipient.send(first);
                    let recipient = recipient.clone();
                    let rest: Vec<M> = messages.collect();
                    let subscriber = Arc::clone(self);
                    let tally = Arc::clone(tally);
                    Some(Box::pin(async move {
                        match request.await {
                            Ok(()) => {
                                rest.into_iter()
                                    .for_each(|message| recipient.do_send(message));
                                tally.delivered(deliveries);
                            }
                            Err(_) => subscriber.close_into(&tally),
                        }
                    }))
                }
            },
            Err(SendError::Closed(_)) => {
                self.close_into(tally);
                None
            }
        }
    }
}

impl<T: Send + Sync + 'static> Part for EachPart<T> {
    fn id(&self) -> SubscriptionId {
        self.subscriber.id
    }

    fn deliveries(&self) -> usize {
        self.deliveries.len()
    }

    fn overflow(&self) -> Overflow {
        self.subscriber.overflow
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn deliver(self: Box<Self>, tally: &Arc<Tally>) -> Option<Wait> {
        let EachPart {
            subscriber,
            deliveries,
        } = *self;
        match &subscriber.sink {
            Sink::Each(recipient) => {
                let count = deliveries.len() as u64;
                subscriber.hand_in(recipient, deliveries, count, tally)
            }
            Sink::Batched(_) => None,
        }
    }

    fn close(&self, tally: &Tally) {
        self.subscriber.close_into(tally);
    }
}

impl<T: Send + Sync + 'static> Part for BatchPart<T> {
    fn id(&self) -> SubscriptionId {
        self.subscriber.id
    }

    fn deliveries(&self) -> usize {
        self.batch.deliveries.len()
    }

    fn overflow(&self) -> Overflow {
        self.subscriber.overflow
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn deliver(self: Box<Self>, tally: &Arc<Tally>) -> Option<Wait> {
        let BatchPart { subscriber, batch } = *self;
        match &subscriber.sink {
            Sink::Batched(recipient) => {
                let count = batch.deliveries.len() as u64;
                subscriber.hand_in(recipient, vec![batch], count, tally)
            }
            Sink::Each(_) => None,
        }
    }

    fn close(&self, tally: &Tally) {
        self.subscriber.close_into(tally);
    }
}

/// One hand-over: the deliveries of one report (one connection turn, or one event) to the
/// subscribers of one arbiter.
pub(crate) struct Parcel {
    parts: Vec<Box<dyn Part>>,
    deliveries: usize,
    tally: Arc<Tally>,
}

impl Parcel {
    pub(crate) fn new(parts: Vec<Box<dyn Part>>, tally: Arc<Tally>) -> Self {
        let deliveries = parts.iter().map(|part| part.deliveries()).sum();
        Parcel {
            parts,
            deliveries,
            tally,
        }
    }

    /// Drops the parts of [`Overflow::Drop`] subscribers, counted; whether any part is left.
    fn drop_droppable(&mut self) -> bool {
        let mut dropped = 0;
        self.parts.retain(|part| {
            let keep = part.overflow() == Overflow::Backpressure;
            if !keep {
                dropped += part.deliveries();
            }
            keep
        });
        self.deliveries -= dropped;
        self.tally.dropped_full(dropped as u64);
        !self.parts.is_empty()
    }

    fn close(self) {
        for part in &self.parts {
            part.close(&self.tally);
        }
    }

    /// On the target arbiter: every part into its mailbox, in order.
    async fn deliver(self) {
        let Parcel { parts, tally, .. } = self;
        for part in parts {
            if let Some(wait) = part.deliver(&tally) {
                wait.await;
            }
        }
    }
}

#[derive(Default)]
struct RelayState {
    queue: VecDeque<Parcel>,
    /// Deliveries queued or being put into mailboxes.
    in_flight: usize,
    /// A drainer is scheduled or running on the target arbiter.
    draining: bool,
    /// The target arbiter is gone.
    dead: bool,
    /// Hand-overs waiting for room, oldest first.
    waiters: VecDeque<(u64, Option<Waker>)>,
    next_waiter: u64,
}

impl RelayState {
    fn has_room(&self) -> bool {
        self.in_flight < RELAY_CAP
    }

    /// Queues `parcel`; whether a drainer must be started.
    fn push(&mut self, parcel: Parcel) -> bool {
        self.in_flight += parcel.deliveries;
        self.queue.push_back(parcel);
        !std::mem::replace(&mut self.draining, true)
    }

    /// The first waiter, to be woken when there is room for it.
    fn front_waker(&mut self) -> Option<Waker> {
        if !self.has_room() {
            return None;
        }
        self.waiters.front_mut().and_then(|(_, waker)| waker.take())
    }

    fn forget_waiter(&mut self, id: u64) {
        self.waiters.retain(|(waiter, _)| *waiter != id);
    }
}

/// The bounded hand-over from one thread to the subscribers of one other arbiter.
pub(crate) struct Relay {
    target: ArbiterHandle,
    state: Mutex<RelayState>,
}

/// What became of a parcel offered to a relay.
pub(crate) enum Offered {
    /// Queued, or nothing was left to queue (dropped parts are counted).
    Done,
    /// Waiting for room, behind earlier hand-overs: drive it to completion.
    Held(RelayWait),
}

impl Relay {
    fn new(target: ArbiterHandle) -> Self {
        Relay {
            target,
            state: Mutex::new(RelayState::default()),
        }
    }

    fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }

    /// Hands `parcel` over: queued when there is room and nobody waits; when the relay is
    /// full, the parts of `Drop` subscribers are dropped; what is left waits its turn.
    pub(crate) fn offer(self: &Arc<Self>, mut parcel: Parcel) -> Offered {
        let mut state = lock(&self.state);
        if state.dead {
            drop(state);
            parcel.close();
            return Offered::Done;
        }
        if !state.has_room() && !parcel.drop_droppable() {
            return Offered::Done;
        }
        if state.has_room() && state.waiters.is_empty() {
            let start = state.push(parcel);
            drop(state);
            if start {
                self.start_drainer();
            }
            return Offered::Done;
        }
        state.next_waiter += 1;
        let id = state.next_waiter;
        state.waiters.push_back((id, None));
        Offered::Held(RelayWait {
            relay: Arc::clone(self),
            id,
            parcel: Some(parcel),
        })
    }

    fn start_drainer(self: &Arc<Self>) {
        if !self.target.spawn(drain(Arc::clone(self))) {
            self.die();
        }
    }

    /// The target arbiter is gone, and its subscribers with it.
    fn die(&self) {
        let (queue, waiters) = {
            let mut state = lock(&self.state);
            state.dead = true;
            state.draining = false;
            state.in_flight = 0;
            (
                std::mem::take(&mut state.queue),
                state
                    .waiters
                    .iter_mut()
                    .filter_map(|(_, waker)| waker.take())
                    .collect::<Vec<_>>(),
            )
        };
        queue.into_iter().for_each(Parcel::close);
        waiters.into_iter().for_each(Waker::wake);
    }

    /// The next parcel for the drainer, or `None` (and the drainer ends) when there is none.
    fn next_parcel(&self) -> Option<Parcel> {
        let mut state = lock(&self.state);
        let next = state.queue.pop_front();
        if next.is_none() {
            state.draining = false;
        }
        next
    }

    /// A parcel of `deliveries` is in its mailboxes: room for a waiting hand-over.
    fn parcel_done(&self, deliveries: usize) {
        let waker = {
            let mut state = lock(&self.state);
            state.in_flight = state.in_flight.saturating_sub(deliveries);
            state.front_waker()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The drainer, on the target arbiter: parcels in order, each into its mailboxes, yielding
/// between parcels so the subscribers run.
async fn drain(relay: Arc<Relay>) {
    while let Some(parcel) = relay.next_parcel() {
        let deliveries = parcel.deliveries;
        parcel.deliver().await;
        relay.parcel_done(deliveries);
        YieldNow(false).await;
    }
}

/// Lets the rest of the arbiter run once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// A hand-over waiting for room in its relay, in turn. Dropped before it got in, its
/// deliveries count as dropped.
pub(crate) struct RelayWait {
    relay: Arc<Relay>,
    id: u64,
    parcel: Option<Parcel>,
}

impl RelayWait {
    pub(crate) fn deliveries(&self) -> usize {
        self.parcel.as_ref().map_or(0, |parcel| parcel.deliveries)
    }
}

impl Future for RelayWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(mut parcel) = this.parcel.take() else {
            return Poll::Ready(());
        };
        let relay = Arc::clone(&this.relay);
        let mut state = lock(&relay.state);
        if state.dead {
            state.forget_waiter(this.id);
            drop(state);
            parcel.close();
            return Poll::Ready(());
        }
        let full = !state.has_room();
        if full && !parcel.drop_droppable() {
            state.forget_waiter(this.id);
            let next = state.front_waker();
            drop(state);
            next.into_iter().for_each(Waker::wake);
            return Poll::Ready(());
        }
        let first = state.waiters.front().map(|(id, _)| *id) == Some(this.id);
        if first && !full {
            state.waiters.pop_front();
            let start = state.push(parcel);
            let next = state.front_waker();
            drop(state);
            if start {
                relay.start_drainer();
            }
            next.into_iter().for_each(Waker::wake);
            return Poll::Ready(());
        }
        if let Some((_, waker)) = state.waiters.iter_mut().find(|(id, _)| *id == this.id) {
            *waker = Some(cx.waker().clone());
        }
        drop(state);
        this.parcel = Some(parcel);
        Poll::Pending
    }
}

impl Drop for RelayWait {
    fn drop(&mut self) {
        let Some(parcel) = self.parcel.take() else {
            return;
        };
        parcel.tally.dropped_full(parcel.deliveries as u64);
        let next = {
            let mut state = lock(&self.relay.state);
            state.forget_waiter(self.id);
            state.front_waker()
        };
        next.into_iter().for_each(Waker::wake);
    }
}

/// A report's deliveries for one arbiter, gathered during a turn.
pub(crate) struct Outgoing {
    pub(crate) thread: ThreadId,
    pub(crate) relay: Arc<Relay>,
    pub(crate) parts: Vec<Box<dyn Part>>,
}

impl Outgoing {
    /// Adds `delivery` to `subscriber`'s part; returns how many that part holds now.
    pub(crate) fn add_each<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        delivery: Delivery<T>,
        capacity: usize,
    ) -> usize {
        let existing = self
            .parts
            .iter_mut()
            .rev()
            .find(|part| part.id() == subscriber.id)
            .and_then(|part| part.as_any_mut().downcast_mut::<EachPart<T>>());
        match existing {
            Some(part) => {
                part.deliveries.push(delivery);
                part.deliveries.len()
            }
            None => {
                let mut deliveries = Vec::with_capacity(capacity);
                deliveries.push(delivery);
                self.parts.push(Box::new(EachPart {
                    subscriber: Arc::clone(subscriber),
                    deliveries,
                }));
                1
            }
        }
    }
}

impl DispatchReport {
    /// Where deliveries for `home`'s arbiter (on `thread`) gather in this report.
    pub(super) fn outgoing(&mut self, home: &Home, thread: ThreadId) -> usize {
        if let Some(index) = self.relays.iter().position(|o| o.thread == thread) {
            return index;
        }
        self.relays.push(Outgoing {
            thread,
            relay: relay_to(home, thread),
            parts: Vec::new(),
        });
        self.relays.len() - 1
    }

    /// Hands `parts` to the relay of `self.relays[index]`.
    pub(super) fn hand_over(&mut self, index: usize, parts: Vec<Box<dyn Part>>) {
        let Some(outgoing) = self.relays.get(index) else {
            return;
        };
        let relay = Arc::clone(&outgoing.relay);
        self.relayed_parcels += 1;
        match relay.offer(Parcel::new(parts, Arc::clone(&self.tally))) {
            Offered::Done => {}
            Offered::Held(wait) => self.hold_relayed(wait),
        }
    }
}
