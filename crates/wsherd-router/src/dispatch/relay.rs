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
//! Bounds and overflow, per subscriber, so that one slow subscriber holds up no other:
//!
//! - On the target arbiter a part is admitted as a whole: if the mailbox takes its first
//!   delivery, the rest of the part follows it (a mailbox exceeds its capacity by at most one
//!   turn's deliveries, as one [`Batch`] would). If not, an [`Overflow::Drop`] subscriber loses
//!   the part (counted), and an [`Overflow::Backpressure`] subscriber's parts wait in its own
//!   backlog there, fed in order by a task of its own as its mailbox makes room; the drainer
//!   goes on with the other subscribers.
//! - At most [`RELAY_CAP`] deliveries are on their way to one subscriber (in a relay or in its
//!   backlog), plus one part per thread that hands over at the same moment. Past that, a
//!   `Drop` subscriber's part is dropped (counted) and a `Backpressure` subscriber's part is
//!   held by the [`DispatchReport`], like a delivery to a full mailbox: a connection pauses its
//!   reads, within `max_stall`. Held parts go in, per subscriber, in the order they were made.

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

use super::{DispatchReport, Overflow, Sink, Subscriber, SubscriptionId};
use crate::delivery::{Batch, Delivery};

/// Deliveries on their way to one subscriber on another arbiter, at most: queued in relays or
/// waiting in its backlog for room in its mailbox (about four busy turns).
pub(crate) const RELAY_CAP: usize = 1024;

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

/// Deliveries on their way to one subscriber on another arbiter, and the hand-overs waiting
/// for them to make room.
#[derive(Default)]
pub(crate) struct Gate {
    in_transit: AtomicUsize,
    has_waiters: AtomicBool,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    /// Held hand-overs, oldest first.
    queue: VecDeque<(u64, Option<Waker>)>,
    next: u64,
}

/// What a gate says to a part.
pub(crate) enum Admission {
    /// In: it counts as in transit now.
    Admitted,
    /// No room, and the subscriber drops what does not fit.
    Full,
    /// No room, or others wait: held, as waiter `id`.
    Behind(u64),
}

impl Gate {
    fn admit(&self, deliveries: usize, overflow: Overflow) -> Admission {
        if !self.has_waiters.load(Ordering::Acquire)
            && self.in_transit.load(Ordering::Acquire) < RELAY_CAP
        {
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
            if !first || self.in_transit.load(Ordering::Acquire) >= RELAY_CAP {
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

    /// `deliveries` reached the mailbox (or were dropped, or the subscriber is gone).
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
        if self.in_transit.load(Ordering::Acquire) >= RELAY_CAP {
            return None;
        }
        waiters.queue.front_mut().and_then(|(_, waker)| waker.take())
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

/// A subscriber's parts that wait, on its arbiter, for room in its mailbox.
pub(crate) struct Backlog<T: Send + Sync + 'static> {
    /// A task feeds them in.
    pumping: bool,
    loads: VecDeque<(Load<T>, Arc<Tally>)>,
}

impl<T: Send + Sync + 'static> Default for Backlog<T> {
    fn default() -> Self {
        Backlog {
            pumping: false,
            loads: VecDeque::new(),
        }
    }
}

/// What became of a load offered to a mailbox.
enum HandedIn<T: Send + Sync + 'static> {
    Done,
    /// The mailbox was full: the whole load, to wait for room.
    Full(Load<T>),
}

impl<T: Send + Sync + 'static> Subscriber<T> {
    fn close_into(&self, tally: &Tally) {
        if !self.closed.swap(true, Ordering::Relaxed) {
            tally.closed(self.id);
        }
    }

    /// On the home arbiter: `load` into the mailbox if its first delivery fits, the rest
    /// after it.
    fn hand_in(&self, load: Load<T>, tally: &Tally) -> HandedIn<T> {
        let count = load.deliveries();
        match (&self.sink, load) {
            (Sink::Each(recipient), Load::Each(deliveries)) => {
                let mut deliveries = deliveries.into_iter();
                let Some(first) = deliveries.next() else {
                    return HandedIn::Done;
                };
                match recipient.try_send(first) {
                    Ok(()) => {
                        // Same thread: no wake-up each, and bounded by the part (one turn).
                        deliveries.for_each(|delivery| recipient.do_send(delivery));
                        tally.delivered(count as u64);
                    }
                    Err(SendError::Full(first)) => {
                        let mut all = Vec::with_capacity(count);
                        all.push(first);
                        all.extend(deliveries);
                        return self.full(Load::Each(all), tally);
                    }
                    Err(SendError::Closed(_)) => self.close_into(tally),
                }
            }
            (Sink::Batched(recipient), Load::Batch(batch)) => match recipient.try_send(batch) {
                Ok(()) => tally.delivered(count as u64),
                Err(SendError::Full(batch)) => return self.full(Load::Batch(batch), tally),
                Err(SendError::Closed(_)) => self.close_into(tally),
            },
            // A part is made for its subscriber's sink; nothing else can arrive.
            _ => {}
        }
        HandedIn::Done
    }

    fn full(&self, load: Load<T>, tally: &Tally) -> HandedIn<T> {
        match self.overflow {
            Overflow::Drop => {
                tally.dropped_full(load.deliveries() as u64);
                HandedIn::Done
            }
            Overflow::Backpressure => HandedIn::Full(load),
        }
    }

    /// On the home arbiter: `load` arrived from a relay.
    fn arrive(self: &Arc<Self>, load: Load<T>, tally: &Arc<Tally>) {
        let count = load.deliveries();
        {
            let mut backlog = lock(&self.backlog);
            if backlog.pumping {
                // Behind what waits already, in order.
                backlog.loads.push_back((load, Arc::clone(tally)));
                return;
            }
        }
        match self.hand_in(load, tally) {
            HandedIn::Done => self.gate.release(count),
            HandedIn::Full(load) => {
                let mut backlog = lock(&self.backlog);
                backlog.loads.push_back((load, Arc::clone(tally)));
                backlog.pumping = true;
                drop(backlog);
                // On the home arbiter (the drainer runs there), so a local task may start.
                actix::spawn(pump(Arc::clone(self)));
            }
        }
    }
}

/// On the home arbiter: feeds a backpressure subscriber's backlog into its mailbox as it
/// makes room, oldest first.
async fn pump<T: Send + Sync + 'static>(subscriber: Arc<Subscriber<T>>) {
    loop {
        let next = {
            let mut backlog = lock(&subscriber.backlog);
            let next = backlog.loads.pop_front();
            if next.is_none() {
                backlog.pumping = false;
            }
            next
        };
        let Some((load, tally)) = next else {
            return;
        };
        let count = load.deliveries();
        let taken = match (&subscriber.sink, load) {
            (Sink::Each(recipient), Load::Each(deliveries)) => {
                let mut deliveries = deliveries.into_iter();
                match deliveries.next() {
                    // Waits for room, then for the first to be handled: the rest follow it.
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
            tally.delivered(count as u64);
            subscriber.gate.release(count);
            continue;
        }
        // The actor stopped: nothing more reaches it.
        subscriber.close_into(&tally);
        let rest: Vec<_> = {
            let mut backlog = lock(&subscriber.backlog);
            backlog.pumping = false;
            backlog.loads.drain(..).collect()
        };
        let left: usize = rest.iter().map(|(load, _)| load.deliveries()).sum();
        subscriber.gate.release(count + left);
        return;
    }
}

/// One subscriber's part of a parcel.
pub(crate) trait Part: Send {
    fn id(&self) -> SubscriptionId;
    fn deliveries(&self) -> usize;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// At the source: whether it may go now.
    fn admit(&self) -> Admission;
    fn take_turn(&self, id: u64, waker: &Waker) -> bool;
    fn forget(&self, id: u64);
    /// On the target arbiter.
    fn arrive(self: Box<Self>, tally: &Arc<Tally>);
    /// The subscriber's arbiter is gone, and the subscriber with it.
    fn close(self: Box<Self>, tally: &Tally);
}

/// Deliveries for one subscriber.
pub(crate) struct RelayPart<T: Send + Sync + 'static> {
    pub(crate) subscriber: Arc<Subscriber<T>>,
    pub(crate) load: Load<T>,
}

impl<T: Send + Sync + 'static> Part for RelayPart<T> {
    fn id(&self) -> SubscriptionId {
        self.subscriber.id
    }

    fn deliveries(&self) -> usize {
        self.load.deliveries()
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn admit(&self) -> Admission {
        self.subscriber
            .gate
            .admit(self.deliveries(), self.subscriber.overflow)
    }

    fn take_turn(&self, id: u64, waker: &Waker) -> bool {
        self.subscriber
            .gate
            .take_turn(id, self.deliveries(), waker)
    }

    fn forget(&self, id: u64) {
        self.subscriber.gate.forget(id);
    }

    fn arrive(self: Box<Self>, tally: &Arc<Tally>) {
        let RelayPart { subscriber, load } = *self;
        subscriber.arrive(load, tally);
    }

    fn close(self: Box<Self>, tally: &Tally) {
        self.subscriber.close_into(tally);
        self.subscriber.gate.release(self.deliveries());
    }
}

/// One hand-over: one report's admitted parts for the subscribers of one arbiter.
struct Parcel {
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
    /// Parcels not yet taken by the drainer; what they hold counts against each
    /// subscriber's [`RELAY_CAP`], so the queue is bounded by its subscribers.
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
    let Parcel { parts, tally } = parcel;
    for part in parts {
        part.close(&tally);
    }
}

/// The drainer, on the target arbiter: parcels in order, each part into its subscriber's
/// mailbox (or backlog), yielding between parcels so the subscribers run. It never waits for
/// a subscriber.
async fn drain(relay: Arc<Relay>) {
    while let Some(Parcel { parts, tally }) = relay.next_parcel() {
        for part in parts {
            part.arrive(&tally);
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

/// A part held until its subscriber has room for it, in turn. Dropped before it went, its
/// deliveries count as dropped.
pub(crate) struct RelayWait {
    relay: Arc<Relay>,
    tally: Arc<Tally>,
    waiter: u64,
    part: Option<Box<dyn Part>>,
}

impl Future for RelayWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let Some(part) = this.part.take() else {
            return Poll::Ready(());
        };
        if !part.take_turn(this.waiter, cx.waker()) {
            this.part = Some(part);
            return Poll::Pending;
        }
        this.relay.push(Parcel {
            parts: vec![part],
            tally: Arc::clone(&this.tally),
        });
        Poll::Ready(())
    }
}

impl Drop for RelayWait {
    fn drop(&mut self) {
        if let Some(part) = self.part.take() {
            part.forget(self.waiter);
            self.tally.dropped_full(part.deliveries() as u64);
        }
    }
}

/// A report's deliveries for one arbiter, gathered during a turn.
pub(crate) struct Outgoing {
    pub(crate) thread: ThreadId,
    relay: Arc<Relay>,
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
            .find(|part| part.id() == subscriber.id)
            .and_then(|part| part.as_any_mut().downcast_mut::<RelayPart<T>>());
        if let Some(RelayPart {
            load: Load::Each(deliveries),
            ..
        }) = existing
        {
            deliveries.push(delivery);
            return deliveries.len();
        }
        let mut deliveries = Vec::with_capacity(capacity);
        deliveries.push(delivery);
        self.parts.push(Box::new(RelayPart {
            subscriber: Arc::clone(subscriber),
            load: Load::Each(deliveries),
        }));
        1
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

    /// Hands `parts` to the relay of `self.relays[index]`: what its subscribers have room for
    /// goes as one parcel, a `Drop` subscriber's part without room is dropped (counted), and a
    /// `Backpressure` subscriber's part without room is held.
    pub(super) fn hand_over(&mut self, index: usize, parts: Vec<Box<dyn Part>>) {
        let Some(relay) = self.relays.get(index).map(|o| Arc::clone(&o.relay)) else {
            return;
        };
        let mut going = Vec::with_capacity(parts.len());
        for part in parts {
            match part.admit() {
                Admission::Admitted => going.push(part),
                Admission::Full => self.tally.dropped_full(part.deliveries() as u64),
                Admission::Behind(waiter) => {
                    self.relayed_parcels += 1;
                    self.hold_relayed(RelayWait {
                        relay: Arc::clone(&relay),
                        tally: Arc::clone(&self.tally),
                        waiter,
                        part: Some(part),
                    });
                }
            }
        }
        if !going.is_empty() {
            self.relayed_parcels += 1;
            relay.push(Parcel {
                parts: going,
                tally: Arc::clone(&self.tally),
            });
        }
    }
}
