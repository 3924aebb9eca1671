//! A value that tests wait on: every change wakes the waiters, who re-check their condition.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::Notify;

/// A condition on a watched value was not met in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitTimeout {
    /// How long it waited.
    pub waited: Duration,
    /// A summary of the value when it gave up.
    pub summary: String,
}

impl std::fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "condition not met after {:?}; last seen: {}",
            self.waited, self.summary
        )
    }
}

impl std::error::Error for WaitTimeout {}

/// A shared value plus a wake-up for everyone waiting on it.
#[derive(Debug, Default)]
pub struct Watched<T> {
    value: Mutex<T>,
    changed: Notify,
}

impl<T> Watched<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Watched {
            value: Mutex::new(value),
            changed: Notify::new(),
        }
    }

    /// Locks the value for reading.
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.value.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes the value and wakes the waiters.
    pub fn update<R>(&self, change: impl FnOnce(&mut T) -> R) -> R {
        let result = change(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    /// Waits until `check` returns `Some`, re-checking after every change; gives up after
    /// `timeout` with `summarize`'s view of the value.
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&T) -> Option<R>,
        summarize: impl Fn(&T) -> String,
    ) -> Result<R, WaitTimeout> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            if let Some(result) = check(&self.lock()) {
                return Ok(result);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(WaitTimeout {
                    waited: timeout,
                    summary: summarize(&self.lock()),
                });
            }
        }
    }
}

/// An actor that keeps every message of type `M` it receives, for tests to wait on.
pub struct Recorder<M> {
    seen: Arc<Watched<Vec<M>>>,
    capacity: Option<usize>,
}

/// The messages a [`Recorder`] received.
pub struct Recorded<M: Send + 'static> {
    seen: Arc<Watched<Vec<M>>>,
    recorder: Addr<Recorder<M>>,
}

impl<M: Send + 'static> Clone for Recorded<M> {
    fn clone(&self) -> Self {
        Recorded {
            seen: Arc::clone(&self.seen),
            recorder: self.recorder.clone(),
        }
    }
}

/// A barrier through a [`Recorder`]'s mailbox: see [`Recorded::flushed`].
struct Flush<M>(std::marker::PhantomData<fn() -> M>);

impl<M> actix::Message for Flush<M> {
    type Result = ();
}

impl<M: actix::Message<Result = ()> + Send + 'static> Recorder<M> {
    /// Starts a recorder; returns its address and its record.
    pub fn start() -> (Addr<Recorder<M>>, Recorded<M>) {
        Self::start_with_capacity(None)
    }

    /// Starts a recorder whose mailbox holds `capacity` messages (actix's default is 16).
    pub fn start_with_capacity(capacity: Option<usize>) -> (Addr<Recorder<M>>, Recorded<M>) {
        let seen = Arc::new(Watched::new(Vec::new()));
        let addr = Recorder {
            seen: Arc::clone(&seen),
            capacity,
        }
        .start();
        let recorded = Recorded {
            seen,
            recorder: addr.clone(),
        };
        (addr, recorded)
    }
}

impl<M: Send + 'static> Actor for Recorder<M> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some(capacity) = self.capacity {
            ctx.set_mailbox_capacity(capacity);
        }
    }
}

impl<M: actix::Message<Result = ()> + Send + 'static> Handler<M> for Recorder<M> {
    type Result = ();

    fn handle(&mut self, message: M, _: &mut Context<Self>) {
        self.seen.update(|seen| seen.push(message));
    }
}

impl<M: Send + 'static> Handler<Flush<M>> for Recorder<M> {
    type Result = ();

    fn handle(&mut self, _: Flush<M>, _: &mut Context<Self>) {}
}

/// Stops a [`Recorder`]: see [`Recorded::stop`].
struct StopRecorder<M>(std::marker::PhantomData<fn() -> M>);

impl<M> actix::Message for StopRecorder<M> {
    type Result = ();
}

impl<M: Send + 'static> Handler<StopRecorder<M>> for Recorder<M> {
    type Result = ();

    fn handle(&mut self, _: StopRecorder<M>, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl<M: Send + 'static> Recorded<M> {
    /// Returns once the recorder has handled every message that was in its mailbox when this
    /// was called (its mailbox is first in, first out): afterwards [`Recorded::with`] sees all
    /// of them. A barrier, not a wait for something to arrive: it proves that what a test
    /// expects had been delivered already, which a wait could not tell from arriving late.
    pub async fn flushed(&self) {
        // The recorder lives as long as this handle holds its address: it answers.
        let _ = self.recorder.send(Flush(std::marker::PhantomData)).await;
    }

    /// Stops the recorder, as a subscriber that ends without unsubscribing: its subscriptions
    /// lead nowhere from then on. What it recorded stays readable.
    pub async fn stop(&self) {
        let _ = self
            .recorder
            .send(StopRecorder(std::marker::PhantomData))
            .await;
    }

    /// How many messages arrived so far.
    pub fn len(&self) -> usize {
        self.seen.lock().len()
    }

    /// Whether none arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `read` over the messages so far.
    pub fn with<R>(&self, read: impl FnOnce(&[M]) -> R) -> R {
        read(&self.seen.lock())
    }

    /// Waits until `check` returns `Some` for the messages so far.
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[M]) -> Option<R>,
    ) -> Result<R, WaitTimeout> {
        self.seen
            .wait_for(
                timeout,
                |seen| check(seen),
                |seen| format!("{} messages", seen.len()),
            )
            .await
    }

    /// Waits until at least `count` messages arrived.
    pub async fn wait_for_count(&self, count: usize, timeout: Duration) -> Result<(), WaitTimeout> {
        self.wait_for(timeout, |seen| (seen.len() >= count).then_some(()))
            .await
    }
}

impl<M: Clone + Send + 'static> Recorded<M> {
    /// A copy of the messages so far.
    pub fn snapshot(&self) -> Vec<M> {
        self.seen.lock().clone()
    }
}
