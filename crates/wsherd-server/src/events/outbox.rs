//! One event client's lines waiting to be written: bounded by bytes, cut from outside.
//!
//! The hub pushes, the client's response body takes. A body is only polled while the
//! connection's write buffer has room, so a client that stops reading stops taking: its lines
//! pile up here until the budget is spent or they waited too long, and then the hub cuts it:
//! the lines are freed at once, whether or not the body is ever polled again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// What one waiting line costs beyond its text (the queue slot, the shared pointer).
pub(crate) const LINE_OVERHEAD: usize = 64;

/// The budget is spent: this client must be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

struct Inner {
    lines: VecDeque<Arc<str>>,
    bytes: usize,
    /// Since when lines have waited without the body taking one.
    waiting_since: Option<Instant>,
    /// Cut by the hub: the body ends.
    cut: bool,
    /// The body is gone: the hub forgets this client.
    gone: bool,
    waker: Option<Waker>,
}

/// A bounded queue of lines for one client.
pub(crate) struct Outbox {
    budget: usize,
    inner: Mutex<Inner>,
}

impl Outbox {
    /// An empty outbox holding at most `budget` bytes (lines counted with [`LINE_OVERHEAD`]).
    pub(crate) fn new(budget: usize) -> Self {
        Outbox {
            budget,
            inner: Mutex::new(Inner {
                lines: VecDeque::new(),
                bytes: 0,
                waiting_since: None,
                cut: false,
                gone: false,
                waker: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `line`, or says the budget is spent (nothing is queued then).
    pub(crate) fn push(&self, line: &Arc<str>) -> Result<(), Full> {
        let mut inner = self.lock();
        if inner.cut || inner.gone {
            return Ok(());
        }
        let cost = line.len() + LINE_OVERHEAD;
        if inner.bytes + cost > self.budget {
            return Err(Full);
        }
        inner.bytes += cost;
        inner.lines.push_back(Arc::clone(line));
        if inner.waiting_since.is_none() {
            inner.waiting_since = Some(Instant::now());
        }
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Frees every waiting line and ends the body (when it is next polled).
    pub(crate) fn cut(&self) {
        let mut inner = self.lock();
        inner.cut = true;
        inner.lines = VecDeque::new();
        inner.bytes = 0;
        inner.waiting_since = None;
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    /// The next line; `None` once cut; pending (woken by the next push or the cut) when empty.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<str>>> {
        let mut inner = self.lock();
        if inner.cut {
            return Poll::Ready(None);
        }
        match inner.lines.pop_front() {
            Some(line) => {
                inner.bytes -= line.len() + LINE_OVERHEAD;
                inner.waiting_since = (!inner.lines.is_empty()).then(Instant::now);
                Poll::Ready(Some(line))
            }
            None => {
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// How long lines have waited without the body taking one (zero when none wait).
    pub(crate) fn stalled_for(&self, now: Instant) -> Duration {
        self.lock()
            .waiting_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// Bytes waiting, overhead included.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The body went away (the client left, or the connection ended).
    pub(crate) fn set_gone(&self) {
        let mut inner = self.lock();
        inner.gone = true;
        inner.lines = VecDeque::new();
        inner.bytes = 0;
        inner.waiting_since = None;
    }

    /// Whether the body went away.
    pub(crate) fn is_gone(&self) -> bool {
        self.lock().gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn line(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn lines_beyond_the_budget_are_refused_and_a_cut_frees_them() {
        let outbox = Outbox::new(3 * (10 + LINE_OVERHEAD));
        for _ in 0..3 {
            outbox.push(&line("0123456789")).unwrap();
        }
        assert_eq!(outbox.push(&line("0123456789")), Err(Full));
        assert_eq!(outbox.queued_bytes(), 3 * (10 + LINE_OVERHEAD));
        outbox.cut();
        assert_eq!(outbox.queued_bytes(), 0);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(None));
        // Pushing to a cut outbox keeps nothing.
        outbox.push(&line("x")).unwrap();
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn lines_come_out_in_order_and_the_stall_clock_runs_only_while_lines_wait() {
        let outbox = Outbox::new(1 << 20);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.poll_next(&mut cx), Poll::Pending);
        let start = Instant::now();
        assert_eq!(outbox.stalled_for(start), Duration::ZERO);
        outbox.push(&line("a")).unwrap();
        outbox.push(&line("b")).unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        assert!(outbox.stalled_for(later) >= Duration::from_secs(4));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("a"))));
        assert!(outbox.stalled_for(Instant::now()) < Duration::from_secs(1));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("b"))));
        assert_eq!(outbox.stalled_for(later), Duration::ZERO);
        outbox.set_gone();
        assert!(outbox.is_gone());
    }
}
