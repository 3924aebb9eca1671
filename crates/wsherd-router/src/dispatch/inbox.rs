//! An inbox that the subscriber actor's own context drains: per-message handler calls at the
//! cost of a batch.
//!
//! A `Delivery<T>` sent into an actix mailbox is one envelope and one queue node (two
//! allocations) and four or five atomic read-modify-writes (the message count, the queue, the
//! receiver's wake-up, both ways), per message: measured, that is most of what per-message
//! delivery costs beyond decoding. An inbox takes a connection's whole turn for a subscriber
//! as one parcel under one lock, and a stream added to the actor's context
//! ([`AsyncContext::add_message_stream`](actix::AsyncContext::add_message_stream)) hands the
//! deliveries to the actor's `Handler<Delivery<T>>` one by one, with no envelope at all.
//!
//! The inbox is bounded: it takes a parcel while the deliveries waiting in it (those in parcels
//! and the whole parcel being handled, until its last delivery was) stay within its capacity,
//! or when it is empty (a turn larger than the capacity still goes, one at a time). A full
//! inbox is the overflow policy's business, as a full mailbox is: a parcel that must wait for
//! room waits its turn behind those that came before it (first come, first in), so a large
//! turn is never overtaken for good by small ones.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};

use actix::prelude::Stream;

use crate::delivery::Delivery;

/// Deliveries that may wait in an inbox unless the subscription says otherwise.
pub(crate) const DEFAULT_INBOX_CAPACITY: usize = 1024;

/// Deliveries handed to the actor in one poll of its context before the drain yields, so that
/// the actor's mailbox and the other actors of its arbiter get their turn under a flood from
/// another thread.
const HANDLED_PER_POLL: usize = 256;

/// Emptied parcels kept for the producers' next turns.
const SPARES: usize = 2;

struct State<T> {
    /// Handed-over parcels, oldest first.
    parcels: VecDeque<Vec<Delivery<T>>>,
    /// Deliveries handed over and not yet all handled: those in `parcels` and those of the
    /// parcel the drain is on.
    waiting: usize,
    /// The actor's context, while its drain waits for a parcel.
    consumer: Option<Waker>,
    /// Producers waiting for room, first come first in: each one's ticket, and its waker once
    /// it waits.
    waiters: VecDeque<(u64, Option<Waker>)>,
    next_ticket: u64,
    /// Emptied parcel storage, for a producer's next turn.
    spares: Vec<Vec<Delivery<T>>>,
    /// The drain was dropped: the actor stopped.
    closed: bool,
    /// The subscription is gone: no parcel will come any more.
    ended: bool,
}

/// The shared half: producers (connections on any thread) put parcels in, the drain takes
/// them out.
pub(crate) struct Inbox<T> {
    state: Mutex<State<T>>,
    capacity: usize,
}

/// What [`Inbox::offer`] made of a parcel.
pub(crate) enum Offer<T> {
    /// Taken; with emptied storage for the producer's next turn, when the inbox had some.
    Taken(Option<Vec<Delivery<T>>>),
    /// No room: the parcel, handed back.
    Full(Vec<Delivery<T>>),
    /// The actor stopped.
    Closed,
}

impl<T> Inbox<T> {
    /// An empty inbox of `capacity` deliveries (at least one), and the drain for the actor's
    /// context.
    pub(crate) fn new(capacity: usize) -> (Arc<Inbox<T>>, Drain<T>) {
        let inbox = Arc::new(Inbox {
            state: Mutex::new(State {
                parcels: VecDeque::new(),
                waiting: 0,
                consumer: None,
                waiters: VecDeque::new(),
                next_ticket: 0,
                spares: Vec::new(),
                closed: false,
                ended: false,
            }),
            capacity: capacity.max(1),
        });
        let drain = Drain {
            inbox: Arc::clone(&inbox),
            current: VecDeque::new(),
            taken: 0,
        };
        (inbox, drain)
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing panics while the lock is held; a poisoned lock still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the actor still drains this inbox.
    pub(crate) fn is_open(&self) -> bool {
        !self.lock().closed
    }

    /// Puts `parcel` in when there is room and nobody waits for room before it, waking the
    /// drain if it waits.
    pub(crate) fn offer(&self, parcel: Vec<Delivery<T>>) -> Offer<T> {
        if parcel.is_empty() {
            return Offer::Taken(None);
        }
        let mut state = self.lock();
        if state.closed {
            drop(state);
            return Offer::Closed;
        }
        if !state.waiters.is_empty() || !self.fits(&state, parcel.len()) {
            return Offer::Full(parcel);
        }
        let consumer = self.put(&mut state, parcel);
        let spare = state.spares.pop();
        drop(state);
        if let Some(consumer) = consumer {
            consumer.wake();
        }
        Offer::Taken(spare)
    }

    /// Whether `deliveries` more may go in now.
    fn fits(&self, state: &State<T>, deliveries: usize) -> bool {
        state.waiting == 0 || state.waiting + deliveries <= self.capacity
    }

    /// Puts `parcel` in; returns the drain's waker, to wake once the lock is let go.
    fn put(&self, state: &mut State<T>, parcel: Vec<Delivery<T>>) -> Option<Waker> {
        state.waiting += parcel.len();
        state.parcels.push_back(parcel);
        state.consumer.take()
    }

    /// Puts `parcel` in once there is room, after the parcels that waited for room before it;
    /// resolves to `false` when the actor stopped first (the deliveries are lost with it).
    /// Dropped before, it gives its turn up.
    pub(crate) fn offer_when_room(self: Arc<Self>, parcel: Vec<Delivery<T>>) -> RoomWait<T> {
        RoomWait {
            inbox: self,
            parcel: Some(parcel),
            ticket: None,
        }
    }

    /// The subscription is gone: the drain ends once it has handed over what it holds.
    fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        let consumer = state.consumer.take();
        drop(state);
        if let Some(consumer) = consumer {
            consumer.wake();
        }
    }
}

/// The producers' handle, held by the subscription: when the last route table that holds the
/// subscription is gone, the drain ends and the actor's context forgets it.
pub(crate) struct InboxSender<T>(pub(crate) Arc<Inbox<T>>);

impl<T> Drop for InboxSender<T> {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// A parcel waiting for room in an inbox, in its turn: see [`Inbox::offer_when_room`].
pub(crate) struct RoomWait<T> {
    inbox: Arc<Inbox<T>>,
    parcel: Option<Vec<Delivery<T>>>,
    /// Its place among the waiters, once it has one.
    ticket: Option<u64>,
}

// The parcel is moved in and out, never pinned.
impl<T> Unpin for RoomWait<T> {}

impl<T> std::future::Future for RoomWait<T> {
    type Output = bool;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<bool> {
        let this = self.get_mut();
        let Some(parcel) = this.parcel.take() else {
            return Poll::Ready(true);
        };
        let inbox = Arc::clone(&this.inbox);
        let mut state = inbox.lock();
        if state.closed {
            if let Some(ticket) = this.ticket.take() {
                state.waiters.retain(|(t, _)| *t != ticket);
            }
            drop(state);
            drop(parcel);
            return Poll::Ready(false);
        }
        let ticket = match this.ticket {
            Some(ticket) => ticket,
            None => {
                let ticket = state.next_ticket;
                state.next_ticket += 1;
                state.waiters.push_back((ticket, None));
                this.ticket = Some(ticket);
                ticket
            }
        };
        let first = state.waiters.front().map(|(t, _)| *t) == Some(ticket);
        if first && inbox.fits(&state, parcel.len()) {
            state.waiters.pop_front();
            this.ticket = None;
            let consumer = inbox.put(&mut state, parcel);
            // The next waiter may fit as well.
            let next = state.waiters.front_mut().and_then(|(_, w)| w.take());
            drop(state);
            consumer.into_iter().chain(next).for_each(Waker::wake);
            return Poll::Ready(true);
        }
        if let Some((_, slot)) = state.waiters.iter_mut().find(|(t, _)| *t == ticket)
            && !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker()))
        {
            *slot = Some(cx.waker().clone());
        }
        drop(state);
        this.parcel = Some(parcel);
        Poll::Pending
    }
}

impl<T> Drop for RoomWait<T> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let mut state = self.inbox.lock();
        let was_first = state.waiters.front().map(|(t, _)| *t) == Some(ticket);
        state.waiters.retain(|(t, _)| *t != ticket);
        let next = if was_first {
            state.waiters.front_mut().and_then(|(_, w)| w.take())
        } else {
            None
        };
        drop(state);
        // Its parcel is given up (dropped with it, outside the lock).
        if let Some(next) = next {
            next.wake();
        }
    }
}

/// The stream the actor's context polls: yields the inbox's deliveries in order.
pub(crate) struct Drain<T> {
    inbox: Arc<Inbox<T>>,
    /// The parcel being handed over.
    current: VecDeque<Delivery<T>>,
    /// Deliveries of `current` when it was taken: counted out of `waiting` once all are handled.
    taken: usize,
}

// The deliveries are moved in and out, never pinned: the drain can move whatever `T` is.
impl<T> Unpin for Drain<T> {}

impl<T> Drain<T> {
    /// Counts the finished parcel out, keeps its storage and takes the next parcel; `None`
    /// when there is none (the waker is kept, unless no parcel will ever come).
    fn refill(&mut self, cx: &TaskContext<'_>) -> Poll<Option<()>> {
        let emptied = Vec::from(std::mem::take(&mut self.current));
        let mut state = self.inbox.lock();
        state.waiting = state
            .waiting
            .saturating_sub(std::mem::take(&mut self.taken));
        if emptied.capacity() > 0 && state.spares.len() < SPARES {
            state.spares.push(emptied);
        }
        // Room was made: the first waiter may fit now (it wakes the next once it is in).
        let room = state
            .waiters
            .front_mut()
            .and_then(|(_, waker)| waker.take());
        let next = state.parcels.pop_front();
        let polled = match next {
            Some(parcel) => {
                self.taken = parcel.len();
                self.current = VecDeque::from(parcel);
                Poll::Ready(Some(()))
            }
            None if state.ended => Poll::Ready(None),
            None => {
                if !state
                    .consumer
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
                {
                    state.consumer = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        };
        drop(state);
        if let Some(producer) = room {
            producer.wake();
        }
        polled
    }
}

impl<T> Stream for Drain<T> {
    type Item = Delivery<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery<T>>> {
        let this = self.get_mut();
        loop {
            if let Some(delivery) = this.current.pop_front() {
                return Poll::Ready(Some(delivery));
            }
            match this.refill(cx) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<T> Drop for Drain<T> {
    fn drop(&mut self) {
        let mut state = self.inbox.lock();
        state.closed = true;
        let parcels = std::mem::take(&mut state.parcels);
        // Every waiter learns that the actor stopped.
        let room: Vec<Waker> = state
            .waiters
            .iter_mut()
            .filter_map(|(_, w)| w.take())
            .collect();
        drop(state);
        // The deliveries' values are dropped outside the lock.
        drop(parcels);
        for producer in room {
            producer.wake();
        }
    }
}

/// The drain as the actor's context takes it: yields after [`HANDLED_PER_POLL`] deliveries.
pub(crate) struct Budgeted<T> {
    drain: Drain<T>,
    handed: usize,
}

impl<T> Budgeted<T> {
    pub(crate) fn new(drain: Drain<T>) -> Self {
        Budgeted { drain, handed: 0 }
    }
}

impl<T> Stream for Budgeted<T> {
    type Item = Delivery<T>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery<T>>> {
        let this = self.get_mut();
        if this.handed == HANDLED_PER_POLL {
            // actix's stream item hands deliveries over for as long as the stream has them:
            // end this poll, and be polled again right after the mailbox's turn.
            this.handed = 0;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match Pin::new(&mut this.drain).poll_next(cx) {
            Poll::Ready(Some(delivery)) => {
                this.handed += 1;
                Poll::Ready(Some(delivery))
            }
            other => {
                this.handed = 0;
                other
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;
    use crate::delivery::Shared;

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn parcel(seqs: std::ops::Range<u64>) -> Vec<Delivery<u64>> {
        let endpoint = wsherd_protocol::EndpointName::new("ex").unwrap();
        seqs.map(|seq| Delivery {
            endpoint: endpoint.clone(),
            message: Shared::alone(seq),
        })
        .collect()
    }

    #[test]
    fn the_drain_yields_to_its_context_after_a_budget_of_deliveries_and_keeps_their_order() {
        let (inbox, drain) = Inbox::new(1_000);
        assert!(matches!(inbox.offer(parcel(0..300)), Offer::Taken(_)));
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = TaskContext::from_waker(&waker);
        let mut stream = Budgeted::new(drain);
        let mut seen = Vec::new();
        let mut poll = |seen: &mut Vec<u64>| match Pin::new(&mut stream).poll_next(&mut cx) {
            Poll::Ready(Some(delivery)) => {
                seen.push(*delivery.message);
                true
            }
            _ => false,
        };
        while poll(&mut seen) {}
        assert_eq!(seen.len(), HANDLED_PER_POLL);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "woken to go on");
        while poll(&mut seen) {}
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "waiting for more, not woken"
        );
        // A parcel wakes the waiting drain.
        assert!(matches!(inbox.offer(parcel(300..301)), Offer::Taken(_)));
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn handled_deliveries_leave_room_and_hand_their_storage_back() {
        let (inbox, mut drain) = Inbox::new(2);
        assert!(matches!(inbox.offer(parcel(0..2)), Offer::Taken(None)));
        assert!(matches!(inbox.offer(parcel(2..3)), Offer::Full(_)));
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = TaskContext::from_waker(&waker);
        for _ in 0..2 {
            assert!(matches!(
                Pin::new(&mut drain).poll_next(&mut cx),
                Poll::Ready(Some(_))
            ));
        }
        // Both were handed out, but the second is still being handled: no room yet.
        assert!(matches!(inbox.offer(parcel(2..3)), Offer::Full(_)));
        assert!(Pin::new(&mut drain).poll_next(&mut cx).is_pending());
        match inbox.offer(parcel(2..3)) {
            Offer::Taken(Some(spare)) => {
                assert!(
                    spare.is_empty() && spare.capacity() >= 2,
                    "the first parcel's storage"
                )
            }
            _ => panic!("room, and the emptied storage comes back"),
        }
    }

    fn poll_wait(wait: &mut RoomWait<u64>, waker: &Waker) -> Poll<bool> {
        Pin::new(wait).poll(&mut TaskContext::from_waker(waker))
    }

    fn take_all(drain: &mut Drain<u64>, waker: &Waker) -> Vec<u64> {
        let mut cx = TaskContext::from_waker(waker);
        let mut seen = Vec::new();
        while let Poll::Ready(Some(delivery)) = Pin::new(&mut *drain).poll_next(&mut cx) {
            seen.push(*delivery.message);
        }
        seen
    }

    #[test]
    fn a_producer_waiting_for_room_is_woken_and_gives_up_when_the_actor_stops() {
        let (inbox, drain) = Inbox::new(1);
        assert!(matches!(inbox.offer(parcel(0..1)), Offer::Taken(_)));
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut wait = Arc::clone(&inbox).offer_when_room(parcel(1..2));
        assert!(poll_wait(&mut wait, &waker).is_pending(), "no room");
        drop(drain);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "woken when the drain goes"
        );
        assert_eq!(
            poll_wait(&mut wait, &waker),
            Poll::Ready(false),
            "nobody took it"
        );
        assert!(!inbox.is_open());
        assert!(matches!(inbox.offer(parcel(2..3)), Offer::Closed));
    }

    #[test]
    fn parcels_waiting_for_room_go_in_first_come_first_in_and_a_fresh_one_waits_behind() {
        let (inbox, mut drain) = Inbox::new(4);
        assert!(matches!(inbox.offer(parcel(0..4)), Offer::Taken(_)));
        let (a_woken, b_woken) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        let (a_waker, b_waker) = (
            Waker::from(Arc::clone(&a_woken)),
            Waker::from(Arc::clone(&b_woken)),
        );
        // A large parcel waits first; a small one would fit sooner, but comes after it.
        let mut large = Arc::clone(&inbox).offer_when_room(parcel(4..8));
        assert!(poll_wait(&mut large, &a_waker).is_pending());
        assert!(
            matches!(inbox.offer(parcel(8..9)), Offer::Full(_)),
            "behind the waiter"
        );
        let mut small = Arc::clone(&inbox).offer_when_room(parcel(8..9));
        assert!(poll_wait(&mut small, &b_waker).is_pending());

        let drain_waker = Waker::from(Arc::new(CountingWaker::default()));
        assert_eq!(take_all(&mut drain, &drain_waker), vec![0, 1, 2, 3]);
        assert_eq!(
            a_woken.0.load(Ordering::SeqCst),
            1,
            "the first waiter is told"
        );
        assert_eq!(
            b_woken.0.load(Ordering::SeqCst),
            0,
            "the second is not, yet"
        );
        assert!(poll_wait(&mut small, &b_waker).is_pending(), "not its turn");
        assert_eq!(poll_wait(&mut large, &a_waker), Poll::Ready(true));
        assert_eq!(b_woken.0.load(Ordering::SeqCst), 1, "its turn now");
        assert!(
            poll_wait(&mut small, &b_waker).is_pending(),
            "the inbox is full again"
        );
        assert_eq!(take_all(&mut drain, &drain_waker), vec![4, 5, 6, 7]);
        assert_eq!(poll_wait(&mut small, &b_waker), Poll::Ready(true));
        assert_eq!(take_all(&mut drain, &drain_waker), vec![8]);
    }

    #[test]
    fn a_waiter_that_gives_up_hands_its_turn_to_the_next() {
        let (inbox, mut drain) = Inbox::new(1);
        assert!(matches!(inbox.offer(parcel(0..1)), Offer::Taken(_)));
        let woken = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&woken));
        let mut first = Arc::clone(&inbox).offer_when_room(parcel(1..2));
        assert!(poll_wait(&mut first, &waker).is_pending());
        let mut second = Arc::clone(&inbox).offer_when_room(parcel(2..3));
        assert!(poll_wait(&mut second, &waker).is_pending());
        drop(first);
        let drain_waker = Waker::from(Arc::new(CountingWaker::default()));
        assert_eq!(take_all(&mut drain, &drain_waker), vec![0]);
        assert_eq!(poll_wait(&mut second, &waker), Poll::Ready(true));
        assert_eq!(
            take_all(&mut drain, &drain_waker),
            vec![2],
            "the given-up parcel never came"
        );
    }
}
