//! One gateway session's frames waiting to go out, bounded by `max_buffer` bytes.
//!
//! The relay pushes (a frame made once and shared by every session it goes to), the session's
//! response body takes. actix-http polls a body only while the connection's write buffer has
//! room, so a client that stops reading stops taking, and what waits for it is bounded here:
//! past `max_buffer` the oldest frames are dropped and counted (`drop_oldest`; the client is
//! told `{"op":"dropped","count":N}` once it has taken what waits), or the session is closed
//! (`disconnect`: 1013 "slow consumer"), its frames freed at once.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use wsherd::config::GatewayOverflow;

/// What one waiting frame costs beyond its bytes (the queue slot, the shared pointer).
pub(crate) const FRAME_OVERHEAD: usize = 32;

/// Why a session ends from the relay's side.
pub(crate) const SLOW_CONSUMER: &str = "slow consumer";

/// What became of a frame pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued, after `dropped` older frames (or this one, if alone it exceeds the buffer)
    /// were dropped to make room.
    Queued { dropped: u64 },
    /// The buffer overflowed under `disconnect`: the session closes (said once).
    Overflowed,
    /// The session is closing or gone: nothing is kept.
    Closed,
}

impl Pushed {
    /// Whether the session still takes frames.
    #[cfg(test)]
    pub(crate) fn kept(self) -> bool {
        matches!(self, Pushed::Queued { .. })
    }
}

/// What the body takes next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// A frame, ready to write.
    Frame(Bytes),
    /// `count` frames were dropped since the client last caught up.
    Dropped(u64),
    /// Close with 1013 "slow consumer": the buffer overflowed with `disconnect`.
    SlowConsumer,
}

#[derive(Default)]
struct Inner {
    frames: VecDeque<Bytes>,
    /// Since when frames have waited without the body taking any.
    waiting_since: Option<std::time::Instant>,
    bytes: usize,
    dropped: u64,
    dropped_total: u64,
    overflowed: bool,
    gone: bool,
    waker: Option<Waker>,
}

/// See the module docs.
pub(crate) struct SessionQueue {
    max_buffer: usize,
    overflow: GatewayOverflow,
    inner: Mutex<Inner>,
}

impl SessionQueue {
    pub(crate) fn new(max_buffer: usize, overflow: GatewayOverflow) -> Self {
        SessionQueue {
            max_buffer,
            overflow,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing here panics while holding the lock; a poisoned one still holds a
        // consistent queue.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame` (dropping the oldest to make room, under `drop_oldest`), and says what
    /// became of it.
    pub(crate) fn push(&self, frame: &Bytes) -> Pushed {
        let mut inner = self.lock();
        if inner.overflowed || inner.gone {
            return Pushed::Closed;
        }
        let cost = frame.len() + FRAME_OVERHEAD;
        let mut dropped = 0;
        if cost > self.max_buffer {
            // Alone bigger than the whole buffer: it is the one dropped, whatever the policy
            // (no client could take it, however fast it reads).
            inner.dropped += 1;
            inner.dropped_total += 1;
            wake(&mut inner);
            return Pushed::Queued { dropped: 1 };
        }
        if inner.bytes + cost > self.max_buffer {
            match self.overflow {
                GatewayOverflow::Disconnect => {
                    inner.overflowed = true;
                    inner.frames = VecDeque::new();
                    inner.bytes = 0;
                    wake(&mut inner);
                    return Pushed::Overflowed;
                }
                GatewayOverflow::DropOldest => {
                    while inner.bytes + cost > self.max_buffer {
                        let Some(oldest) = inner.frames.pop_front() else {
                            break;
                        };
                        inner.bytes -= oldest.len() + FRAME_OVERHEAD;
                        dropped += 1;
                    }
                    inner.dropped += dropped;
                    inner.dropped_total += dropped;
                }
            }
        }
        inner.bytes += cost;
        inner.frames.push_back(frame.clone());
        if inner.waiting_since.is_none() {
            inner.waiting_since = Some(std::time::Instant::now());
        }
        wake(&mut inner);
        Pushed::Queued { dropped }
    }

    /// The next thing to write; pending (woken by the next push) when nothing waits.
    #[cfg(test)]
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        self.poll_batch(cx, 0)
    }

    /// Like `poll_next`, but the frames waiting are taken together, up to `max_bytes` (at
    /// least one): one write for many small frames, one poll of the body instead of one per
    /// frame.
    pub(crate) fn poll_batch(&self, cx: &mut Context<'_>, max_bytes: usize) -> Poll<Next> {
        let mut inner = self.lock();
        if inner.overflowed {
            return Poll::Ready(Next::SlowConsumer);
        }
        if let Some(frame) = inner.frames.pop_front() {
            inner.bytes -= frame.len() + FRAME_OVERHEAD;
            // Taken: whatever still waits, waits from now.
            inner.waiting_since = Some(std::time::Instant::now());
            let fits = |inner: &Inner, taken: usize| {
                inner
                    .frames
                    .front()
                    .is_some_and(|next| taken + next.len() <= max_bytes)
            };
            if !fits(&inner, frame.len()) {
                return Poll::Ready(Next::Frame(frame));
            }
            let mut batch =
                bytes::BytesMut::with_capacity(max_bytes.min(inner.bytes + frame.len()));
            batch.extend_from_slice(&frame);
            while fits(&inner, batch.len()) {
                let Some(next) = inner.frames.pop_front() else {
                    break;
                };
                inner.bytes -= next.len() + FRAME_OVERHEAD;
                batch.extend_from_slice(&next);
            }
            return Poll::Ready(Next::Frame(batch.freeze()));
        }
        inner.waiting_since = None;
        if inner.dropped > 0 {
            // Caught up: told how much it missed.
            return Poll::Ready(Next::Dropped(std::mem::take(&mut inner.dropped)));
        }
        inner.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Bytes waiting (each frame with [`FRAME_OVERHEAD`]).
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.lock().bytes
    }

    /// Frames dropped over the session's life.
    #[cfg(test)]
    pub(crate) fn dropped_total(&self) -> u64 {
        self.lock().dropped_total
    }

    /// Whether frames have waited longer than `limit` without the body taking one: the
    /// client stopped reading (its body is no longer even polled). Such a session is closed
    /// as a slow consumer, its frames freed; returns `true` the once it happens.
    pub(crate) fn close_if_stalled(
        &self,
        now: std::time::Instant,
        limit: std::time::Duration,
    ) -> bool {
        let mut inner = self.lock();
        let stalled = !inner.overflowed
            && !inner.gone
            && inner
                .waiting_since
                .is_some_and(|since| now.saturating_duration_since(since) > limit);
        if stalled {
            inner.overflowed = true;
            inner.frames = VecDeque::new();
            inner.bytes = 0;
            wake(&mut inner);
        }
        stalled
    }

    /// The body is gone: what waits is freed and nothing more is kept.
    pub(crate) fn set_gone(&self) {
        let mut inner = self.lock();
        inner.gone = true;
        inner.frames = VecDeque::new();
        inner.bytes = 0;
    }
}

fn wake(inner: &mut Inner) {
    if let Some(waker) = inner.waker.take() {
        waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Bytes {
        Bytes::from(vec![b'x'; n])
    }

    fn take(queue: &SessionQueue) -> Poll<Next> {
        let waker = futures_util::task::noop_waker();
        queue.poll_next(&mut Context::from_waker(&waker))
    }

    #[test]
    fn frames_go_out_in_order_and_an_empty_queue_is_pending() {
        let queue = SessionQueue::new(1 << 20, GatewayOverflow::DropOldest);
        assert!(queue.push(&frame(10)).kept());
        assert!(queue.push(&frame(20)).kept());
        assert_eq!(take(&queue), Poll::Ready(Next::Frame(frame(10))));
        assert_eq!(take(&queue), Poll::Ready(Next::Frame(frame(20))));
        assert!(take(&queue).is_pending());
        assert_eq!(queue.buffered(), 0);
    }

    #[test]
    fn drop_oldest_keeps_the_newest_within_the_budget_and_says_how_many_went() {
        // Room for two 100-byte frames with their overhead.
        let queue = SessionQueue::new(2 * (100 + FRAME_OVERHEAD), GatewayOverflow::DropOldest);
        for n in 1..=5u8 {
            assert!(queue.push(&Bytes::from(vec![n; 100])).kept());
        }
        assert!(queue.buffered() <= 2 * (100 + FRAME_OVERHEAD));
        assert_eq!(
            take(&queue),
            Poll::Ready(Next::Frame(Bytes::from(vec![4; 100])))
        );
        assert_eq!(
            take(&queue),
            Poll::Ready(Next::Frame(Bytes::from(vec![5; 100])))
        );
        assert_eq!(
            take(&queue),
            Poll::Ready(Next::Dropped(3)),
            "once caught up"
        );
        assert!(take(&queue).is_pending(), "said once");
        assert_eq!(queue.dropped_total(), 3);
    }

    #[test]
    fn a_frame_bigger_than_the_whole_buffer_is_dropped_alone() {
        let queue = SessionQueue::new(100, GatewayOverflow::DropOldest);
        assert!(queue.push(&frame(10)).kept());
        assert_eq!(queue.push(&frame(500)), Pushed::Queued { dropped: 1 });
        assert_eq!(take(&queue), Poll::Ready(Next::Frame(frame(10))));
        assert_eq!(take(&queue), Poll::Ready(Next::Dropped(1)));
    }

    #[test]
    fn disconnect_frees_everything_and_closes_the_session() {
        let queue = SessionQueue::new(200, GatewayOverflow::Disconnect);
        assert!(queue.push(&frame(100)).kept());
        assert_eq!(
            queue.push(&frame(100)),
            Pushed::Overflowed,
            "over the budget"
        );
        assert_eq!(queue.buffered(), 0);
        assert_eq!(take(&queue), Poll::Ready(Next::SlowConsumer));
        assert_eq!(
            queue.push(&frame(1)),
            Pushed::Closed,
            "closing: nothing more is kept"
        );
        assert_eq!(queue.buffered(), 0);
    }

    #[test]
    fn frames_waiting_are_taken_together_up_to_the_batch_size() {
        let queue = SessionQueue::new(1 << 20, GatewayOverflow::DropOldest);
        for n in 0..5u8 {
            queue.push(&Bytes::from(vec![n; 10]));
        }
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Next::Frame(batch)) = queue.poll_batch(&mut cx, 35) else {
            panic!("a batch");
        };
        assert_eq!(&batch[..], &[[0u8; 10], [1; 10], [2; 10]].concat()[..]);
        let Poll::Ready(Next::Frame(rest)) = queue.poll_batch(&mut cx, 35) else {
            panic!("the rest");
        };
        assert_eq!(rest.len(), 20);
        assert!(queue.poll_batch(&mut cx, 35).is_pending());
        assert_eq!(queue.buffered(), 0);
    }

    #[test]
    fn frames_left_untaken_past_the_limit_close_the_session_once() {
        use std::time::{Duration, Instant};
        let limit = Duration::from_secs(60);
        let queue = SessionQueue::new(1 << 20, GatewayOverflow::DropOldest);
        let later = Instant::now() + Duration::from_secs(61);
        assert!(!queue.close_if_stalled(later, limit), "nothing waits");
        queue.push(&frame(10));
        assert!(!queue.close_if_stalled(Instant::now(), limit));
        let later = Instant::now() + Duration::from_secs(61);
        assert!(queue.close_if_stalled(later, limit));
        assert!(!queue.close_if_stalled(later, limit), "once");
        assert_eq!(take(&queue), Poll::Ready(Next::SlowConsumer));
        assert_eq!(queue.buffered(), 0);
    }

    #[test]
    fn a_gone_session_keeps_nothing() {
        let queue = SessionQueue::new(1 << 20, GatewayOverflow::DropOldest);
        queue.push(&frame(100));
        queue.set_gone();
        assert_eq!(queue.push(&frame(100)), Pushed::Closed);
        assert_eq!(queue.buffered(), 0);
    }
}
