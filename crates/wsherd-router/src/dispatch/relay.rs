//! Deliveries to subscribers on another arbiter, handed over in parcels.
//!
//! A `Recipient` does not say which thread its actor runs on, and a message put into the mailbox
//! of an actor on another thread wakes that thread: one wake-up per message is what made a
//! plain subscriber on another arbiter four times slower than a batched one. So a subscriber
//! remembers its *home* (the arbiter of the thread that subscribed it, or one named in
//! [`SubscribeOptions`](crate::SubscribeOptions)), and what a thread delivers to the
//! subscribers of another arbiter travels through one [`Relay`] per (this thread, that
//! arbiter): a queue of parcels, each one report's deliveries for that arbiter (a connection's
//! whole turn, or one event), with one part per subscriber. A drainer task on the target
//! arbiter takes the parcels in order and puts each part into its subscriber's mailbox from that
//! thread, which wakes nobody across threads.
//!
//! Everything one thread delivers to subscribers of another arbiter takes the same relay, in
//! program order, whoever delivers it (a connection's messages, its supervisor's state
//! events), so events stay in order with the messages around them.
//!
//! Order and bounds are kept per *origin*, the endpoint the deliveries come from (its
//! connection and its supervisor alike), as the direct path keeps them per connection:
//!
//! - On the target arbiter a part is admitted as a whole: if the mailbox takes its first
//!   delivery, the rest of the part follows it (a mailbox exceeds its capacity by at most one
//!   turn's deliveries, as one [`Batch`] would). If not, an [`Overflow::Drop`] subscriber loses
//!   the part (counted); an [`Overflow::Backpressure`] subscriber's part waits in the origin's
//!   backlog there, fed in by a task as the mailbox makes room, and the origin's later parts
//!   for backpressure subscribers wait behind it (as later deliveries of a connection wait
//!   behind a held one), so a subscriber of both an endpoint's messages and its events still
//!   sees them in order. `Drop` parts go on, and so do other origins: the drainer never waits.
//! - At most [`RELAY_CAP`] deliveries of one origin are on their way to one arbiter (queued in
//!   the relay or waiting in the backlog), plus one part. Past that, a `Drop` subscriber's part
//!   is dropped (counted) and a `Backpressure` subscriber's part is held by the
//!   [`DispatchReport`], like a delivery to a full mailbox: a connection pauses its reads,
//!   within `max_stall`. Held parts go in, per origin, in the order they were made.

use std::any::Any;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::ThreadId;

use actix::prelude::SendError;
use actix::{Arbiter, ArbiterHandle};

use wsherd_protocol::EndpointName;

use super::{DispatchReport, Overflow, Sink, Subscriber, SubscriptionId};
use crate::delivery::{Batch, Delivery};

/// Deliveries of one origin (endpoint) on their way to one arbiter, at most: queued in its relay
/// or waiting there for room in a mailbox (a few busy turns of a feed with ten subscribers).
pub(crate) const RELAY_CAP: usize = 4096;

/// Where deliveries handed to another arbiter are counted once their fate is known there.
///
/// A connection counts what it puts into mailboxes itself; what it hands to a relay reaches
/// its mailbox later, on the subscriber's arbiter, which tells these counters. Give them with
/// [`DispatchReport::gathering`]; a report made with `Default` counts relayed deliveries into
/// its own fields instead, when it next flushes or hands something over.
pub trait RelayCounters: Send + Sync + 'static {
    /// `count` deliveries reached their subscriber's mailbox.
    fn delivered(&self, count: u64);
    /// `count` deliveries were dropped because an [`Overflow::Drop`] subscriber's mailbox (or
    /// the way to it) was full.
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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Moves what arrived since the last call into a report's fields.
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

/// What one part carries.
pub(crate) enum Load<T: Send + Sync + 'static> {
    /// Single deliveries, oldest first.
    Each(Vec<Delivery<T>>),
    /// One batch.
    Batch(Batch<T>),
}

impl<T: Send + Sync + 'static> Load<T> {
    fn deliveries(&self) -> usize {
        match self {
            Load::Each(deliveries) => deliveries.len(),
            Load::Batch(batch) => batch.deliveries.len(),
        }
    }
}

impl<T: Send + Sync + 'static> Subscriber<T> {
    fn close_into(&self, tally: &Tally) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            tally.closed(self.id);
        }
    }

    /// On the home arbiter: `load` into the mailbox if its first delivery fits, the rest
    /// after it. A full mailbox drops it (`Drop`) or hands it back to wait (`Backpressure`).
    fn hand_in(&self, load: Load<T>, tally: &Tally, spares: Option<&Spares>) -> Option<Load<T>> {
        let count = load.deliveries();
        let full = match (&self.sink, load) {
            (Sink::Each(recipient), Load::Each(mut storage)) => {
                let mut deliveries = storage.drain(..);
                let first = deliveries.next()?;
                match recipient.try_send(first) {
                    Ok(()) => {
                        // Same thread: no wake-up each, and bounded by the part (one turn).
                        deliveries.for_each(|delivery| recipient.do_send(delivery));
                        tally.delivered(count as u64);
                        if let Some(spares) = spares {
                            spares.give_back(storage);
                        }
                        return None;
                    }
                    Err(SendError::Full(first)) => {
                        let mut all = Vec::with_capacity(count);
                        all.push(first);
                        all.extend(deliveries);
                        Load::Each(all)
                    }
                    Err(SendError::Closed(_)) => {
                        self.close_into(tally);
                        return None;
                    }
                }
            }
            (Sink::Batched(recipient), Load::Batch(batch)) => match recipient.try_send(batch) {
                Ok(()) => {
                    tally.delivered(count as u64);
                    return None;
                }
                Err(SendError::Full(batch)) => Load::Batch(batch),
                Err(SendError::Closed(_)) => {
                    self.close_into(tally);
                    return None;
                }
            },
            // A part is made for its subscriber's sink; nothing else arrives.
            _ => return None,
        };
        match self.overflow {
            Overflow::Drop => {
                tally.dropped_full(count as u64);
                None
            }
            Overflow::Backpressure => Some(full),
        }
    }

    /// On the home arbiter: waits for room in the mailbox (and for the first delivery to be
    /// handled), then puts the rest of `load` after it.
    async fn wait_in(self: Arc<Self>, load: Load<T>, tally: Arc<Tally>) {
        let count = load.deliveries() as u64;
        let taken = match (&self.sink, load) {
            (Sink::Each(recipient), Load::Each(deliveries)) => {
                let mut deliveries = deliveries.into_iter();
                match deliveries.next() {
                    Some(first) => {
                        let taken = recipient.send(first).await.is_ok();
                        if taken {
                            deliveries.for_each(|delivery| recipient.do_send(delivery));
                        }
                        taken
                    }
                    None => true,
                }
            }
            (Sink::Batched(recipient), Load::Batch(batch)) => recipient.send(batch).await.is_ok(),
            _ => true,
        };
        if taken {
            tally.delivered(count);
        } else {
            self.close_into(&tally);
        }
    }
}

type LocalWait = Pin<Box<dyn Future<Output = ()>>>;

/// One subscriber's part of a parcel.
pub(crate) trait Part: Send {
    fn deliveries(&self) -> usize;
    fn overflow(&self) -> Overflow;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// On the target arbiter: into the mailbox, or back when it must wait for room; emptied
    /// storage goes to `spares`.
    fn hand_in(self: Box<Self>, tally: &Tally, spares: Option<&Spares>) -> Option<Box<dyn Part>>;
    /// On the target arbiter: waits for room, then in.
    fn wait_in(self: Box<Self>, tally: Arc<Tally>) -> LocalWait;
    /// The subscriber's arbiter is gone, and the subscriber with it.
    fn close(self: Box<Self>, tally: &Tally);
}

/// Deliveries for one subscriber.
pub(crate) struct RelayPart<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) load: Load<T>,
}

impl<T: Send + Sync + 'static> Part for RelayPart<T> {
    fn deliveries(&self) -> usize {
        self.load.deliveries()
    }

    fn overflow(&self) -> Overflow {
        self.subscriber.overflow
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn hand_in(self: Box<Self>, tally: &Tally, spares: Option<&Spares>) -> Option<Box<dyn Part>> {
        let RelayPart { subscriber, load } = *self;
        let load = subscriber.hand_in(load, tally, spares)?;
        Some(Box::new(RelayPart { subscriber, load }))
    }

    fn wait_in(self: Box<Self>, tally: Arc<Tally>) -> LocalWait {
        let RelayPart { subscriber, load } = *self;
        Box::pin(subscriber.wait_in(load, tally))
    }

    fn close(self: Box<Self>, tally: &Tally) {
        self.subscriber.close_into(tally);
    }
}

/// A last word for one subscriber (see `RouteTable::publish_confirmed`): it always waits its
/// turn on the target arbiter, is sent with `send`, and says so once its handler has run.
pub(crate) struct ConfirmedPart<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) delivery: Delivery<T>,
    pub(crate) handled: tokio::sync::oneshot::Sender<()>,
}

impl<T: Send + Sync + 'static> Part for ConfirmedPart<T> {
    fn deliveries(&self) -> usize {
        1
    }

    fn overflow(&self) -> Overflow {
        Overflow::Backpressure
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn hand_in(self: Box<Self>, _: &Tally, _: Option<&Spares>) -> Option<Box<dyn Part>> {
        // Never only into the mailbox: its sender waits until it was handled.
        Some(self)
    }

    fn wait_in(self: Box<Self>, tally: Arc<Tally>) -> LocalWait {
        let ConfirmedPart {
            subscriber,
            delivery,
            handled,
        } = *self;
        Box::pin(async move {
            let taken = match &subscriber.sink {
                Sink::Each(recipient) => recipient.send(delivery).await.is_ok(),
                Sink::Batched(_) | Sink::Inbox(_) => true,
            };
            if taken {
                tally.delivered(1);
            } else {
                subscriber.close_into(&tally);
            }
            let _ = handled.send(());
        })
    }

    fn close(self: Box<Self>, tally: &Tally) {
        self.subscriber.close_into(tally);
    }
}

#[derive(Default)]
struct Waiters {
    /// Held hand-overs, oldest first.
    queue: VecDeque<(u64, Option<Waker>)>,
    next: u64,
}

/// Parts waiting on the target arbiter for room in a backpressure subscriber's mailbox, in
/// order, and whether a task feeds them in.
#[derive(Default)]
struct Backlog {
    pumping: bool,
    parts: VecDeque<(Box<dyn Part>, Arc<Tally>)>,
}

/// What an origin says to a part at the source.
pub(crate) enum Admission {
    /// In: it counts as on its way now.
    Admitted,
    /// No room, and the subscriber drops what does not fit.
    Full,
    /// No room, or others wait: held, as waiter `id`.
    Behind(u64),
}

/// The deliveries of one endpoint on their way through one relay: bounded at the source, kept
/// in order at the target.
pub(crate) struct Origin {
    endpoint: EndpointName,
    in_transit: AtomicUsize,
    has_waiters: AtomicBool,
    waiters: Mutex<Waiters>,
    backlog: Mutex<Backlog>,
}

impl Origin {
    fn new(endpoint: EndpointName) -> Self {
        Origin {
            endpoint,
            in_transit: AtomicUsize::new(0),
            has_waiters: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
            backlog: Mutex::new(Backlog::default()),
        }
    }

    fn has_room(&self) -> bool {
        self.in_transit.load(Ordering::Acquire) < RELAY_CAP
    }

    /// Nothing of it is on its way, waits, or is held.
    fn is_idle(&self) -> bool {
        self.in_transit.load(Ordering::Acquire) == 0
            && !self.has_waiters.load(Ordering::Acquire)
            && !lock(&self.backlog).pumping
    }

    fn admit(&self, deliveries: usize, overflow: Overflow) -> Admission {
        let admitted = match overflow {
            // Never held, so nothing of its own waits: only room matters.
            Overflow::Drop => self.has_room(),
            Overflow::Backpressure => !self.has_waiters.load(Ordering::Acquire) && self.has_room(),
        };
        if admitted {
            self.in_transit.fetch_add(deliveries, Ordering::AcqRel);
            return Admission::Admitted;
        }
        match overflow {
            Overflow::Drop => Admission::Full,
            Overflow::Backpressure => {
                let mut waiters = lock(&self.waiters);
                waiters.next += 1;
                let id = waiters.next;
                waiters.queue.push_back((id, None));
                self.has_waiters.store(true, Ordering::Release);
                Admission::Behind(id)
            }
        }
    }

    /// Waiter `id` goes in if it is first and there is room; else it is woken when that may
    /// have changed.
    fn take_turn(&self, id: u64, deliveries: usize, waker: &Waker) -> bool {
        let next = {
            let mut waiters = lock(&self.waiters);
            let first = waiters.queue.front().map(|(first, _)| *first) == Some(id);
            if !first || !self.has_room() {
                if let Some((_, slot)) = waiters.queue.iter_mut().find(|(w, _)| *w == id) {
                    *slot = Some(waker.clone());
                }
                return false;
            }
            waiters.queue.pop_front();
            self.in_transit.fetch_add(deliveries, Ordering::AcqRel);
            self.next_waker(&mut waiters)
        };
        next.into_iter().for_each(Waker::wake);
        true
    }

    /// Waiter `id` gives up.
    fn forget(&self, id: u64) {
        let next = {
            let mut waiters = lock(&self.waiters);
            waiters.queue.retain(|(waiter, _)| *waiter != id);
            self.next_waker(&mut waiters)
        };
        next.into_iter().for_each(Waker::wake);
    }

    /// `deliveries` reached a mailbox (or were dropped, or their subscriber is gone).
    fn release(&self, deliveries: usize) {
        let _ = self
            .in_transit
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(deliveries))
            });
        if self.has_waiters.load(Ordering::Acquire) {
            let next = self.next_waker(&mut lock(&self.waiters));
            next.into_iter().for_each(Waker::wake);
        }
    }

    /// The first waiter's waker, when there is room for it.
    fn next_waker(&self, waiters: &mut Waiters) -> Option<Waker> {
        if waiters.queue.is_empty() {
            self.has_waiters.store(false, Ordering::Release);
            return None;
        }
        if !self.has_room() {
            return None;
        }
        waiters
            .queue
            .front_mut()
            .and_then(|(_, waker)| waker.take())
    }

    /// On the target arbiter: `part` arrived. It goes into its mailbox unless it must wait
    /// (behind this origin's waiting parts, or for room).
    fn arrive(self: &Arc<Self>, part: Box<dyn Part>, tally: &Arc<Tally>, spares: &Spares) {
        let deliveries = part.deliveries();
        if part.overflow() == Overflow::Backpressure {
            let mut backlog = lock(&self.backlog);
            if backlog.pumping {
                backlog.parts.push_back((part, Arc::clone(tally)));
                return;
            }
        }
        let Some(part) = part.hand_in(tally, Some(spares)) else {
            self.release(deliveries);
            return;
        };
        lock(&self.backlog)
            .parts
            .push_back((part, Arc::clone(tally)));
        self.pump();
    }

    /// Starts feeding the backlog in, on this (the target) arbiter, unless that runs already.
    fn pump(self: &Arc<Self>) {
        let start = !std::mem::replace(&mut lock(&self.backlog).pumping, true);
        if start {
            // The drainer runs on the target arbiter, so a local task may start here.
            actix::spawn(pump(Arc::clone(self)));
        }
    }
}

/// On the target arbiter: the origin's waiting parts into their mailboxes, oldest first, each
/// as soon as its mailbox has room.
async fn pump(origin: Arc<Origin>) {
    loop {
        let next = {
            let mut backlog = lock(&origin.backlog);
            let next = backlog.parts.pop_front();
            if next.is_none() {
                backlog.pumping = false;
            }
            next
        };
        let Some((part, tally)) = next else {
            return;
        };
        let deliveries = part.deliveries();
        if let Some(part) = part.hand_in(&tally, None) {
            part.wait_in(tally).await;
        }
        origin.release(deliveries);
    }
}

/// One hand-over: one report's admitted parts of one origin for the subscribers of one
/// arbiter.
struct Parcel {
    origin: Arc<Origin>,
    parts: Vec<Box<dyn Part>>,
    tally: Arc<Tally>,
}

thread_local! {
    /// The relays from this thread, by target thread.
    static RELAYS: RefCell<Vec<(ThreadId, Arc<Relay>)>> = const { RefCell::new(Vec::new()) };
}

/// This thread's relay to `home`'s arbiter (running on `thread`).
fn relay_to(home: &Home, thread: ThreadId) -> Arc<Relay> {
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

#[derive(Default)]
struct RelayState {
    /// Parcels not yet taken by the drainer; what they hold counts against their origin's
    /// [`RELAY_CAP`], so the queue is bounded by its origins.
    queue: VecDeque<Parcel>,
    /// A drainer is scheduled or running on the target arbiter.
    draining: bool,
    /// The target arbiter is gone.
    dead: bool,
}

/// The hand-over from one thread to the subscribers of one other arbiter.
pub(crate) struct Relay {
    target: ArbiterHandle,
    state: Mutex<RelayState>,
    /// One per endpoint that delivered through it.
    origins: Mutex<Vec<Arc<Origin>>>,
    spares: Spares,
}

/// Emptied storage of parts, handed back by the target arbiter for the next turns' parts.
///
/// A part of a busy turn is one allocation of kilobytes, freed on the target arbiter's thread;
/// glibc frees a chunk of another thread's arena under that arena's lock, which the
/// connection's thread wants for its next allocation. Measured: after a run that had filled
/// the connection's arena from the other thread, the relay delivered a third less.
#[derive(Default)]
pub(crate) struct Spares {
    kept: Mutex<Vec<Box<dyn Any + Send>>>,
}

/// Storages a relay keeps at most (about four turns of a feed with sixteen subscribers).
const SPARES: usize = 64;

impl Spares {
    fn take<T: Send + Sync + 'static>(&self) -> Option<Vec<Delivery<T>>> {
        let mut kept = lock(&self.kept);
        let index = kept
            .iter()
            .rposition(|storage| storage.is::<Vec<Delivery<T>>>())?;
        let storage = kept.swap_remove(index);
        drop(kept);
        storage
            .downcast::<Vec<Delivery<T>>>()
            .ok()
            .map(|storage| *storage)
    }

    fn give_back<T: Send + Sync + 'static>(&self, storage: Vec<Delivery<T>>) {
        if storage.capacity() == 0 {
            return;
        }
        let mut kept = lock(&self.kept);
        if kept.len() < SPARES {
            kept.push(Box::new(storage));
            return;
        }
        drop(kept);
        // Freed outside the lock.
        drop(storage);
    }
}

impl Relay {
    fn new(target: ArbiterHandle) -> Self {
        Relay {
            target,
            state: Mutex::new(RelayState::default()),
            origins: Mutex::new(Vec::new()),
            spares: Spares::default(),
        }
    }

    fn is_dead(&self) -> bool {
        lock(&self.state).dead
    }

    fn origin(&self, endpoint: &EndpointName) -> Arc<Origin> {
        let mut origins = lock(&self.origins);
        if let Some(origin) = origins.iter().find(|o| o.endpoint == *endpoint) {
            return Arc::clone(origin);
        }
        // Endpoints come and go (and sessions with them): forget those nobody uses any more,
        // which is safe when nothing of theirs is on its way.
        origins.retain(|origin| Arc::strong_count(origin) > 1 || !origin.is_idle());
        let origin = Arc::new(Origin::new(endpoint.clone()));
        origins.push(Arc::clone(&origin));
        origin
    }

    /// Queues `parcel`, starting a drainer on the target arbiter if none is on its way.
    fn push(self: &Arc<Self>, parcel: Parcel) {
        let mut state = lock(&self.state);
        if state.dead {
            drop(state);
            close(parcel);
            return;
        }
        state.queue.push_back(parcel);
        let start = !std::mem::replace(&mut state.draining, true);
        drop(state);
        if start && !self.target.spawn(drain(Arc::clone(self))) {
            self.die();
        }
    }

    /// The target arbiter is gone, and its subscribers with it.
    fn die(&self) {
        let queue = {
            let mut state = lock(&self.state);
            state.dead = true;
            state.draining = false;
            std::mem::take(&mut state.queue)
        };
        queue.into_iter().for_each(close);
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
}

fn close(parcel: Parcel) {
    let Parcel {
        origin,
        parts,
        tally,
    } = parcel;
    for part in parts {
        let deliveries = part.deliveries();
        part.close(&tally);
        origin.release(deliveries);
    }
}

/// The drainer, on the target arbiter: parcels in order, each part into its subscriber's
/// mailbox (or its origin's backlog), yielding between parcels so the subscribers run. It
/// never waits for a subscriber.
async fn drain(relay: Arc<Relay>) {
    while let Some(Parcel {
        origin,
        parts,
        tally,
    }) = relay.next_parcel()
    {
        for part in parts {
            origin.arrive(part, &tally, &relay.spares);
        }
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

/// The parts of one hand-over held until their origin has room for them, in turn; they go
/// together, as one parcel. Dropped before they went, their deliveries count as dropped.
pub(crate) struct RelayWait {
    relay: Arc<Relay>,
    origin: Arc<Origin>,
    tally: Arc<Tally>,
    waiter: u64,
    /// Empty once gone (or given up).
    parts: Vec<Box<dyn Part>>,
}

impl RelayWait {
    fn deliveries(&self) -> usize {
        self.parts.iter().map(|part| part.deliveries()).sum()
    }

    /// Gives up the parts uncounted (the caller counts them); returns their deliveries.
    pub(crate) fn give_up(mut self) -> usize {
        let deliveries = self.deliveries();
        if !self.parts.is_empty() {
            self.parts.clear();
            self.origin.forget(self.waiter);
        }
        deliveries
    }
}

impl Future for RelayWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.parts.is_empty() {
            return Poll::Ready(());
        }
        let deliveries = self.deliveries();
        if !self.origin.take_turn(self.waiter, deliveries, cx.waker()) {
            return Poll::Pending;
        }
        let parcel = Parcel {
            origin: Arc::clone(&self.origin),
            parts: std::mem::take(&mut self.parts),
            tally: Arc::clone(&self.tally),
        };
        self.relay.push(parcel);
        Poll::Ready(())
    }
}

impl Drop for RelayWait {
    fn drop(&mut self) {
        if !self.parts.is_empty() {
            self.origin.forget(self.waiter);
            self.tally.dropped_full(self.deliveries() as u64);
        }
    }
}

/// A report's deliveries of one endpoint for one arbiter, gathered during a turn.
pub(crate) struct Outgoing {
    thread: ThreadId,
    relay: Arc<Relay>,
    origin: Arc<Origin>,
    parts: Vec<Box<dyn Part>>,
    /// The subscriber of each part, and where the next delivery's part probably is: a message
    /// visits its subscribers in the same order every time.
    ids: Vec<SubscriptionId>,
    cursor: usize,
}

impl Outgoing {
    /// Adds `delivery` to `subscriber`'s part; returns how many that part holds now.
    pub(crate) fn add_each<T: Send + Sync + 'static>(
        &mut self,
        subscriber: &Arc<Subscriber<T>>,
        delivery: Delivery<T>,
        capacity: usize,
    ) -> usize {
        let index = if self.ids.get(self.cursor) == Some(&subscriber.id) {
            Some(self.cursor)
        } else {
            self.ids.iter().position(|id| *id == subscriber.id)
        };
        let existing = index.and_then(|index| {
            self.cursor = index + 1;
            self.parts
                .get_mut(index)?
                .as_any_mut()
                .downcast_mut::<RelayPart<T>>()
        });
        if let Some(RelayPart {
            load: Load::Each(deliveries),
            ..
        }) = existing
        {
            deliveries.push(delivery);
            return deliveries.len();
        }
        let mut deliveries = self
            .relay
            .spares
            .take::<T>()
            .unwrap_or_else(|| Vec::with_capacity(capacity));
        deliveries.push(delivery);
        self.push(
            subscriber.id,
            Box::new(RelayPart {
                subscriber: Arc::clone(subscriber),
                load: Load::Each(deliveries),
            }),
        );
        self.cursor = self.parts.len();
        1
    }

    /// Adds a part of its own (a batch) for subscriber `id`.
    pub(crate) fn push(&mut self, id: SubscriptionId, part: Box<dyn Part>) {
        self.ids.push(id);
        self.parts.push(part);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// What was gathered, to hand over.
    pub(crate) fn take(&mut self) -> Vec<Box<dyn Part>> {
        self.ids.clear();
        self.cursor = 0;
        std::mem::replace(&mut self.parts, Vec::with_capacity(self.ids.capacity()))
    }
}

impl DispatchReport {
    /// Where deliveries of `endpoint` for `home`'s arbiter (on `thread`) gather in this report.
    pub(super) fn outgoing(
        &mut self,
        home: &Home,
        thread: ThreadId,
        endpoint: &EndpointName,
    ) -> usize {
        if let Some(index) = self
            .relays
            .iter()
            .position(|o| o.thread == thread && o.origin.endpoint == *endpoint)
        {
            return index;
        }
        let relay = match self.relays.iter().find(|o| o.thread == thread) {
            Some(outgoing) => Arc::clone(&outgoing.relay),
            None => relay_to(home, thread),
        };
        let origin = relay.origin(endpoint);
        // Most reports relay to one arbiter for ever: room for exactly that one, not the four
        // a first push would reserve (this Vec lives as long as the connection).
        self.relays.reserve_exact(1);
        self.relays.push(Outgoing {
            thread,
            relay,
            origin,
            parts: Vec::new(),
            ids: Vec::new(),
            cursor: 0,
        });
        self.relays.len() - 1
    }

    /// Hands `parts` to the relay of `self.relays[index]`: what its origin has room for goes
    /// as one parcel, a `Drop` subscriber's part without room is dropped (counted), and a
    /// `Backpressure` subscriber's part without room (or behind a held one) is held.
    pub(super) fn hand_over(&mut self, index: usize, parts: Vec<Box<dyn Part>>) {
        let Some((relay, origin)) = self
            .relays
            .get(index)
            .map(|o| (Arc::clone(&o.relay), Arc::clone(&o.origin)))
        else {
            return;
        };
        let mut going = Vec::with_capacity(parts.len());
        let mut held: Option<(u64, Vec<Box<dyn Part>>)> = None;
        for part in parts {
            if part.overflow() == Overflow::Backpressure
                && let Some((_, waiting)) = held.as_mut()
            {
                // Behind the first held part of this hand-over, and going with it.
                waiting.push(part);
                continue;
            }
            match origin.admit(part.deliveries(), part.overflow()) {
                Admission::Admitted => going.push(part),
                Admission::Full => self.tally.dropped_full(part.deliveries() as u64),
                Admission::Behind(waiter) => held = Some((waiter, vec![part])),
            }
        }
        if !going.is_empty() {
            self.relayed_parcels += 1;
            relay.push(Parcel {
                origin: Arc::clone(&origin),
                parts: going,
                tally: Arc::clone(&self.tally),
            });
        }
        if let Some((waiter, parts)) = held {
            self.relayed_parcels += 1;
            self.hold_relayed(RelayWait {
                relay,
                origin,
                tally: Arc::clone(&self.tally),
                waiter,
                parts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: u64) -> Delivery<u64> {
        Delivery {
            endpoint: EndpointName::new("ex").unwrap(),
            message: crate::Shared::alone(seq),
        }
    }

    #[test]
    fn spare_storage_comes_back_empty_for_its_own_type_only_and_is_bounded() {
        let spares = Spares::default();
        let mut storage = Vec::with_capacity(8);
        storage.push(delivery(1));
        storage.clear();
        let pointer = storage.as_ptr();
        spares.give_back(storage);
        assert!(spares.take::<u32>().is_none(), "another type never gets it");
        let again = spares.take::<u64>().unwrap();
        assert!(again.is_empty() && again.capacity() >= 8);
        assert_eq!(again.as_ptr(), pointer, "the same storage");
        assert!(spares.take::<u64>().is_none());

        spares.give_back(Vec::<Delivery<u64>>::new());
        assert!(spares.take::<u64>().is_none(), "no capacity, nothing kept");
        for _ in 0..SPARES + 5 {
            spares.give_back(Vec::<Delivery<u64>>::with_capacity(1));
        }
        let kept = std::iter::from_fn(|| spares.take::<u64>()).count();
        assert_eq!(kept, SPARES);
    }
}
