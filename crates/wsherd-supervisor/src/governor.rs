//! The herd-wide handshake governor: caps concurrent handshakes and paces reconnects.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

/// Limits of the governor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GovernorPolicy {
    /// Handshakes in flight at once; 0 means no cap.
    pub max_concurrent_handshakes: usize,
    /// Handshakes started per second (a burst of one second's worth is allowed); 0 means no
    /// limit.
    pub reconnects_per_second: f64,
}

impl Default for GovernorPolicy {
    fn default() -> Self {
        GovernorPolicy {
            max_concurrent_handshakes: 256,
            reconnects_per_second: 0.0,
        }
    }
}

/// Token bucket for the start rate: plain code on explicit instants.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    capacity: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `rate` starts per second, bursts of `max(1, rate)`; a non-positive rate never limits.
    pub fn new(rate: f64, now: Instant) -> Self {
        let capacity = rate.max(1.0);
        RateLimiter {
            rate,
            capacity,
            tokens: capacity,
            refilled: now,
        }
    }

    /// Takes a token at `now`, or says how long until one is there.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate.is_nan() || self.rate <= 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.rate;
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_millis(1)))
        }
    }
}

/// Live figures of a governor, readable from any thread.
#[derive(Debug, Default)]
pub struct GovernorStats {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    waiting: AtomicUsize,
    granted: AtomicU64,
}

impl GovernorStats {
    /// Handshakes in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    /// The most handshakes ever in flight at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
    /// Endpoints waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
    /// Slots granted in total.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }
}

/// Permission to run one handshake; the slot is returned when this is dropped.
#[derive(Debug)]
pub struct Permit {
    governor: Addr<Governor>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        // One message per permit, never driven by a peer: unbounded is fine here.
        self.governor.do_send(Release);
    }
}

/// Asks for a handshake slot; answered in request order.
#[derive(Debug)]
pub struct Acquire;

impl actix::Message for Acquire {
    type Result = Result<Permit, GovernorGone>;
}

/// The governor stopped before granting a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handshake governor has stopped")]
pub struct GovernorGone;

#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
struct Release;

/// Grants handshake slots to supervisors, first come first served, within its policy.
pub struct Governor {
    policy: GovernorPolicy,
    rate: RateLimiter,
    waiting: VecDeque<oneshot::Sender<Permit>>,
    in_flight: usize,
    stats: Arc<GovernorStats>,
    timer_armed: bool,
}

impl Governor {
    /// A governor with `policy`.
    pub fn new(policy: GovernorPolicy) -> Self {
        Governor {
            policy,
            rate: RateLimiter::new(policy.reconnects_per_second, Instant::now()),
            waiting: VecDeque::new(),
            in_flight: 0,
            stats: Arc::new(GovernorStats::default()),
            timer_armed: false,
        }
    }

    /// Figures shared with whoever wants to watch.
    pub fn stats(&self) -> Arc<GovernorStats> {
        Arc::clone(&self.stats)
    }

    fn grant(&mut self, ctx: &mut Context<Self>) {
        while !self.waiting.is_empty() {
            if self.policy.max_concurrent_handshakes != 0
                && self.in_flight >= self.policy.max_concurrent_handshakes
            {
                break;
            }
            if let Err(wait) = self.rate.try_take(Instant::now()) {
                if !self.timer_armed {
                    self.timer_armed = true;
                    ctx.run_later(wait, |act, ctx| {
                        act.timer_armed = false;
                        act.grant(ctx);
                    });
                }
                break;
            }
            let Some(requester) = self.waiting.pop_front() else {
                break;
            };
            self.in_flight += 1;
            self.stats.granted.fetch_add(1, Ordering::Relaxed);
            self.stats.peak.fetch_max(self.in_flight, Ordering::Relaxed);
            // If the requester went away the permit comes straight back through `Drop`.
            let _ = requester.send(Permit {
                governor: ctx.address(),
            });
        }
        self.stats
            .in_flight
            .store(self.in_flight, Ordering::Relaxed);
        self.stats
            .waiting
            .store(self.waiting.len(), Ordering::Relaxed);
    }
}

impl Actor for Governor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every endpoint of a herd may ask at once; a small mailbox would only make them wait
        // for the mailbox instead of the queue.
        ctx.set_mailbox_capacity(65_536);
    }
}

impl Handler<Acquire> for Governor {
    type Result = ResponseFuture<Result<Permit, GovernorGone>>;

    fn handle(&mut self, _: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.waiting.push_back(tx);
        self.grant(ctx);
        Box::pin(async move { rx.await.map_err(|_| GovernorGone) })
    }
}

impl Handler<Release> for Governor {
    type Result = ();

    fn handle(&mut self, _: Release, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.grant(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_allows_a_burst_then_paces() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(10.0, t0);
        for _ in 0..10 {
            assert!(limiter.try_take(t0).is_ok());
        }
        let wait = limiter.try_take(t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(100) && wait > Duration::from_millis(90),
            "{wait:?}"
        );
        assert!(limiter.try_take(t0 + Duration::from_millis(100)).is_ok());
        assert!(limiter.try_take(t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(0.0, t0);
        assert!((0..10_000).all(|_| limiter.try_take(t0).is_ok()));
    }

    #[actix_rt::test]
    async fn grants_in_order_within_the_cap() {
        let governor = Governor::new(GovernorPolicy {
            max_concurrent_handshakes: 2,
            reconnects_per_second: 0.0,
        });
        let stats = governor.stats();
        let addr = governor.start();
        let first = addr.send(Acquire).await.unwrap().unwrap();
        let second = addr.send(Acquire).await.unwrap().unwrap();
        let third = addr.send(Acquire);
        let mut third = Box::pin(third);
        // The third waits until a permit is dropped.
        assert!(futures_poll_once(&mut third).await.is_none());
        assert_eq!(stats.in_flight(), 2);
        drop(first);
        let third = third.await.unwrap().unwrap();
        assert_eq!(stats.peak(), 2);
        drop((second, third));
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        let mut polled = None;
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(value) = std::pin::Pin::new(&mut *future).poll(cx) {
                polled = Some(value);
            }
            std::task::Poll::Ready(())
        })
        .await;
        // Give the governor a turn, then look once more.
        actix_rt::task::yield_now().await;
        if polled.is_none() {
            std::future::poll_fn(|cx| {
                if let std::task::Poll::Ready(value) = std::pin::Pin::new(&mut *future).poll(cx) {
                    polled = Some(value);
                }
                std::task::Poll::Ready(())
            })
            .await;
        }
        polled
    }
}
