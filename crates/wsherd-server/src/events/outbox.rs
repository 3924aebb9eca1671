//! One event client's lines waiting to be written: bounded, cut from outside.
//!
//! The hub pushes, the client's response body takes. A body is only polled while the
//! connection's write buffer has room, so a client that stops reading stops taking: its lines
//! pile up here until the budget is spent or they waited too long, and then the hub cuts it:
//! the lines are freed at once, whether or not the body is ever polled again.
//!
//! Two kinds wait. State lines, each of which matters, count against the byte budget. Stats
//! lines are coalesced: at most one waits per endpoint, a newer one replacing it (only the
//! latest figures matter), so what they hold is bounded by the herd's size, and a herd of
//! twenty thousand busy endpoints does not spend a client's budget every second.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use wsherd::EndpointName;

/// What one waiting line costs beyond its text (the queue slot, the shared pointer).
pub(crate) const LINE_OVERHEAD: usize = 64;

/// The budget is spent: this client must be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

#[derive(Default)]
struct Inner {
    lines: VecDeque<Arc<str>>,
    bytes: usize,
    /// The latest stats line of each endpoint that has one waiting, and their order.
    stats: HashMap<EndpointName, Arc<str>>,
    stats_order: VecDeque<EndpointName>,
    stats_bytes: usize,
    /// Since when lines have waited without the body taking one.
    waiting_since: Option<Instant>,
    /// Cut by the hub: the body ends.
    cut: bool,
    /// The body is gone: the hub forgets this client.
    gone: bool,
    waker: Option<Waker>,
}

impl Inner {
    fn clear(&mut self) {
        self.lines = VecDeque::new();
        self.bytes = 0;
        self.stats = HashMap::new();
        self.stats_order = VecDeque::new();
        self.stats_bytes = 0;
        self.waiting_since = None;
    }

    fn queued(&mut self) {
        if self.waiting_since.is_none() {
            self.waiting_since = Some(Instant::now());
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.stats_order.is_empty()
    }
}

/// A bounded queue of lines for one client.
pub(crate) struct Outbox {
    budget: usize,
    inner: Mutex<Inner>,
}

impl Outbox {
    /// An empty outbox whose state lines may hold at most `budget` bytes (each counted with
    /// [`LINE_OVERHEAD`]).
    pub(crate) fn new(budget: usize) -> Self {
        Outbox {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a state line, or says the budget is spent (nothing is queued then).
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
        inner.queued();
        Ok(())
    }

    /// Queues `endpoint`'s stats line, replacing the one that still waits, if any.
    pub(crate) fn push_stats(&self, endpoint: &EndpointName, line: &Arc<str>) {
        let mut inner = self.lock();
        if inner.cut || inner.gone {
            return;
        }
        let cost = line.len() + LINE_OVERHEAD;
        match inner.stats.insert(endpoint.clone(), Arc::clone(line)) {
            Some(replaced) => {
                inner.stats_bytes = inner.stats_bytes + cost - (replaced.len() + LINE_OVERHEAD);
            }
            None => {
                inner.stats_bytes += cost;
                inner.stats_order.push_back(endpoint.clone());
            }
        }
        inner.queued();
    }

    /// Frees every waiting line and ends the body (when it is next polled).
    pub(crate) fn cut(&self) {
        let mut inner = self.lock();
        inner.cut = true;
        inner.clear();
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    /// The next line, state lines first; `None` once cut; pending (woken by the next push or
    /// the cut) when none waits.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Arc<str>>> {
        let mut inner = self.lock();
        if inner.cut {
            return Poll::Ready(None);
        }
        let line = match inner.lines.pop_front() {
            Some(line) => {
                inner.bytes -= line.len() + LINE_OVERHEAD;
                Some(line)
            }
            None => loop {
                let Some(endpoint) = inner.stats_order.pop_front() else {
                    break None;
                };
                if let Some(line) = inner.stats.remove(&endpoint) {
                    inner.stats_bytes -= line.len() + LINE_OVERHEAD;
                    break Some(line);
                }
            },
        };
        match line {
            Some(line) => {
                inner.waiting_since = (!inner.is_empty()).then(Instant::now);
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

    /// Bytes waiting, stats lines and overhead included.
    pub(crate) fn queued_bytes(&self) -> usize {
        let inner = self.lock();
        inner.bytes + inner.stats_bytes
    }

    /// The body went away (the client left, or the connection ended).
    pub(crate) fn set_gone(&self) {
        let mut inner = self.lock();
        inner.gone = true;
        inner.clear();
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

    fn name(text: &str) -> EndpointName {
        EndpointName::new(text).unwrap()
    }

    #[test]
    fn state_lines_beyond_the_budget_are_refused_and_a_cut_frees_everything() {
        let outbox = Outbox::new(3 * (10 + LINE_OVERHEAD));
        for _ in 0..3 {
            outbox.push(&line("0123456789")).unwrap();
        }
        assert_eq!(outbox.push(&line("0123456789")), Err(Full));
        outbox.push_stats(&name("feed"), &line("stats"));
        assert_eq!(
            outbox.queued_bytes(),
            3 * (10 + LINE_OVERHEAD) + 5 + LINE_OVERHEAD
        );
        outbox.cut();
        assert_eq!(outbox.queued_bytes(), 0);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(None));
        // Pushing to a cut outbox keeps nothing.
        outbox.push(&line("x")).unwrap();
        outbox.push_stats(&name("feed"), &line("y"));
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn a_newer_stats_line_replaces_the_waiting_one_and_never_spends_the_budget() {
        let outbox = Outbox::new(0);
        for n in 0..10_000 {
            outbox.push_stats(&name("a"), &line(&format!("a{n}")));
            outbox.push_stats(&name("b"), &line(&format!("b{n}")));
        }
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("a9999"))));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("b9999"))));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Pending);
        assert_eq!(outbox.queued_bytes(), 0);
    }

    #[test]
    fn state_lines_come_first_in_order_and_the_stall_clock_runs_only_while_lines_wait() {
        let outbox = Outbox::new(1 << 20);
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(outbox.poll_next(&mut cx), Poll::Pending);
        let start = Instant::now();
        assert_eq!(outbox.stalled_for(start), Duration::ZERO);
        outbox.push_stats(&name("feed"), &line("s"));
        outbox.push(&line("a")).unwrap();
        outbox.push(&line("b")).unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        assert!(outbox.stalled_for(later) >= Duration::from_secs(4));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("a"))));
        assert!(outbox.stalled_for(Instant::now()) < Duration::from_secs(1));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("b"))));
        assert_eq!(outbox.poll_next(&mut cx), Poll::Ready(Some(line("s"))));
        assert_eq!(outbox.stalled_for(later), Duration::ZERO);
        outbox.set_gone();
        assert!(outbox.is_gone());
    }
}
