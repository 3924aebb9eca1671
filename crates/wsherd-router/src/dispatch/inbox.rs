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
//! and those of the parcel being handled) stay within its capacity, or when it is empty (a turn
//! larger than the capacity still goes, one at a time). A full inbox is the overflow policy's
//! business, as a full mailbox is.

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
    /// Producers waiting for room.
    room: Vec<Waker>,
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
                room: Vec::new(),
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

    /// Puts `parcel` in when there is room, waking the drain if it waits.
    pub(crate) fn offer(&self, parcel: Vec<Delivery<T>>) -> Offer<T> {
        if parcel.is_empty() {
            return Offer::Taken(None);
        }
        let mut state = self.lock();
        if state.closed {
            drop(state);
            return Offer::Closed;
        }
        if state.waiting > 0 && state.waiting + parcel.len() > self.capacity {
            return Offer::Full(parcel);
        }
        state.waiting += parcel.len();
        state.parcels.push_back(parcel);
        let spare = state.spares.pop();
        let consumer = state.consumer.take();
        drop(state);
        if let Some(consumer) = consumer {
            consumer.wake();
        }
        Offer::Taken(spare)
    }

    /// Puts `parcel` in once there is room; `false` when the actor stopped first (the
    /// deliveries are lost with it).
    pub(crate) async fn offer_when_room(self: Arc<Self>, parcel: Vec<Delivery<T>>) -> bool {
        let mut parcel = Some(parcel);
        std::future::poll_fn(|cx| {
            let Some(waiting) = parcel.take() else {
                return Poll::Ready(true);
            };
            match self.offer(waiting) {
                Offer::Taken(_) => Poll::Ready(true),
                Offer::Closed => Poll::Ready(false),
                Offer::Full(back) => {
                    parcel = Some(back);
                    let mut state = self.lock();
                    // The drain may have made room between the offer and this lock: it wakes
                    // only the wakers it finds, so look again before waiting.
                    if state.closed
                        || state.waiting == 0
                        || state.waiting + parcel.as_ref().map_or(0, Vec::len) <= self.capacity
                    {
                        drop(state);
                        cx.waker().wake_by_ref();
                    } else {
                        state.room.push(cx.waker().clone());
                    }
                    Poll::Pending
                }
            }
        })
        .await
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
        let room = std::mem::take(&mut state.room);
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
        for producer in room {
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
        let room = std::mem::take(&mut state.room);
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

    #[actix_rt::test]
    async fn a_producer_waiting_for_room_gives_up_when_the_actor_stops() {
        let (inbox, drain) = Inbox::new(1);
        assert!(matches!(inbox.offer(parcel(0..1)), Offer::Taken(_)));
        let waiting = tokio::spawn(Arc::clone(&inbox).offer_when_room(parcel(1..2)));
        tokio::task::yield_now().await;
        drop(drain);
        let taken = tokio::time::timeout(std::time::Duration::from_secs(60), waiting)
            .await
            .expect("woken when the drain goes")
            .expect("the task runs");
        assert!(!taken, "nobody took it");
        assert!(!inbox.is_open());
        assert!(matches!(inbox.offer(parcel(2..3)), Offer::Closed));
    }
}
