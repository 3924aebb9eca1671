//! The herd-wide handshake governor: caps concurrent handshakes, paces reconnects, and owns
//! the herd's outage mode ([`crate::outage`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;
use wsherd_protocol::EndpointName;

use crate::outage::{
    Attempt, NetworkEvent, OutageDetector, OutagePolicy, Outcome, ProbeDue, Verdict,
};

/// Limits of the governor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GovernorPolicy {
    /// Handshakes in flight at once; 0 means no cap.
    pub max_concurrent_handshakes: usize,
    /// Handshakes started per second (a burst of one second's worth is allowed); 0 means no
    /// limit.
    pub reconnects_per_second: f64,
    /// The herd-wide outage mode: when the network is gone, one probe per host instead of
    /// every endpoint retrying.
    pub outage: OutagePolicy,
}

impl Default for GovernorPolicy {
    fn default() -> Self {
        GovernorPolicy {
            max_concurrent_handshakes: 256,
            reconnects_per_second: 0.0,
            outage: OutagePolicy::default(),
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

    /// `rate` per second with bursts of `burst` (at least 1); a non-positive rate never
    /// limits.
    pub fn with_burst(rate: f64, burst: f64, now: Instant) -> Self {
        let capacity = burst.max(1.0);
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
    held: AtomicUsize,
    offline: AtomicBool,
    outages: AtomicU64,
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
    /// Endpoints whose attempts the outage mode holds (offline), or that wait for the first
    /// attempts of a herd that has not reached a server yet.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
    /// Whether the herd is offline ([`NetworkState::Offline`](crate::NetworkState)).
    pub fn offline(&self) -> bool {
        self.offline.load(Ordering::Relaxed)
    }
    /// Times the herd went offline.
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }
}

/// Permission to run one handshake; the slot is returned when this is dropped, with how the
/// attempt ended ([`Permit::ended`]) for the outage mode.
#[derive(Debug)]
pub struct Permit {
    governor: Addr<Governor>,
    endpoint: EndpointName,
    host: Arc<str>,
    attempt: Attempt,
    outcome: Outcome,
}

impl Permit {
    /// Records how the attempt ended (a server answered, or the network failed); a permit
    /// dropped without it counts as abandoned.
    pub fn ended(&mut self, outcome: Outcome) {
        self.outcome = outcome;
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // One message per permit, never driven by a peer: unbounded is fine here.
        self.governor.do_send(Release {
            endpoint: self.endpoint.clone(),
            host: Arc::clone(&self.host),
            attempt: self.attempt,
            outcome: self.outcome,
        });
    }
}

/// Asks for a handshake slot for `endpoint`, whose URL points at `host`
/// ([`host_key`](crate::host_key)); answered in request order, unless the outage mode holds it.
/// A newer request from the same endpoint replaces one still held.
#[derive(Debug)]
pub struct Acquire {
    /// Who asks.
    pub endpoint: EndpointName,
    /// `host:port` of its URL: one probe per host while the herd is offline.
    pub host: Arc<str>,
    /// Set while the outage mode holds this request (for the endpoint's status).
    pub held: Option<Arc<AtomicBool>>,
}

impl actix::Message for Acquire {
    type Result = Result<Permit, GovernorGone>;
}

/// The governor stopped before granting a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the handshake governor has stopped")]
pub struct GovernorGone;

#[derive(Debug, actix::Message)]
#[rtype(result = "()")]
struct Release {
    endpoint: EndpointName,
    host: Arc<str>,
    attempt: Attempt,
    outcome: Outcome,
}

/// A request not answered yet.
struct Waiter {
    endpoint: EndpointName,
    host: Arc<str>,
    held: Option<Arc<AtomicBool>>,
    /// Which request of its endpoint this is: a newer one replaces it.
    seq: u64,
    reply: oneshot::Sender<Permit>,
}

impl Waiter {
    fn hold(&self, held: bool) {
        if let Some(flag) = &self.held {
            flag.store(held, Ordering::Relaxed);
        }
    }
}

/// Something to tell whoever listens about the herd's network (the herd publishes it as an
/// event).
pub type OutageListener = Box<dyn FnMut(NetworkEvent, &EndpointName)>;

/// Grants handshake slots to supervisors, first come first served, within its policy; while
/// the herd is offline, holds every request but one probe per host.
pub struct Governor {
    policy: GovernorPolicy,
    rate: RateLimiter,
    /// Let go by the outage mode, waiting for the cap or the rate.
    waiting: VecDeque<(Waiter, Attempt)>,
    /// Waiting for an attempt of a herd that has not reached a server yet to end.
    pending: VecDeque<Waiter>,
    /// Held by the outage, by host, oldest first.
    held: HashMap<Arc<str>, VecDeque<Waiter>>,
    held_count: usize,
    /// The newest request of each endpoint that asked.
    latest: HashMap<EndpointName, u64>,
    next_seq: u64,
    detector: OutageDetector,
    in_flight: usize,
    stats: Arc<GovernorStats>,
    timer_armed: bool,
    /// The probe timer: when it fires, and its handle.
    probe_timer: Option<(Instant, SpawnHandle)>,
    listener: Option<OutageListener>,
}

impl Governor {
    /// A governor with `policy`.
    pub fn new(policy: GovernorPolicy) -> Self {
        Governor {
            policy,
            rate: RateLimiter::new(policy.reconnects_per_second, Instant::now()),
            waiting: VecDeque::new(),
            pending: VecDeque::new(),
            held: HashMap::new(),
            held_count: 0,
            latest: HashMap::new(),
            next_seq: 0,
            detector: OutageDetector::new(policy.outage),
            in_flight: 0,
            stats: Arc::new(GovernorStats::default()),
            timer_armed: false,
            probe_timer: None,
            listener: None,
        }
    }

    /// Calls `listener` when the herd goes offline or comes back, with the endpoint whose
    /// attempt decided it. Runs on the governor's arbiter: keep it short.
    pub fn with_listener(mut self, listener: OutageListener) -> Self {
        self.listener = Some(listener);
        self
    }

    /// Figures shared with whoever wants to watch.
    pub fn stats(&self) -> Arc<GovernorStats> {
        Arc::clone(&self.stats)
    }

    /// Whether `waiter` is still wanted: its endpoint did not ask again, and it still listens.
    fn current(&self, waiter: &Waiter) -> bool {
        !waiter.reply.is_closed() && self.latest.get(&waiter.endpoint) == Some(&waiter.seq)
    }

    /// Lets the outage mode decide on `waiter`; hands it back when it must wait for the first
    /// attempts of a herd that has not reached a server yet (the caller queues it).
    fn decide(&mut self, waiter: Waiter, now: Instant) -> Option<Waiter> {
        match self.detector.admit(&waiter.endpoint, &waiter.host, now) {
            Verdict::Go(attempt) | Verdict::Probe(attempt) => {
                waiter.hold(false);
                self.waiting.push_back((waiter, attempt));
            }
            Verdict::Wait => return Some(waiter),
            Verdict::Hold => {
                waiter.hold(true);
                let endpoints = self.latest.len();
                let queue = self.held.entry(Arc::clone(&waiter.host)).or_default();
                if queue.len() >= endpoints {
                    // More than one per endpoint: some were given up or asked again since.
                    // Forgetting them here keeps a queue within the herd's endpoints however
                    // often a caller pauses and resumes during an outage.
                    let before = queue.len();
                    let latest = &self.latest;
                    queue.retain(|w| {
                        !w.reply.is_closed() && latest.get(&w.endpoint) == Some(&w.seq)
                    });
                    self.held_count -= before - queue.len();
                }
                queue.push_back(waiter);
                self.held_count += 1;
            }
        }
        None
    }

    /// Lets the outage mode decide on `waiter`, queueing it behind the others when it must wait.
    fn admit(&mut self, waiter: Waiter, now: Instant) {
        if let Some(waiter) = self.decide(waiter, now) {
            self.queue_pending(waiter);
        }
    }

    /// Queues `waiter` behind those that wait for the first attempts, dropping stale ones once
    /// there are more than endpoints (each endpoint has at most one current request).
    fn queue_pending(&mut self, waiter: Waiter) {
        if self.pending.len() >= self.latest.len() {
            let latest = &self.latest;
            self.pending
                .retain(|w| !w.reply.is_closed() && latest.get(&w.endpoint) == Some(&w.seq));
        }
        self.pending.push_back(waiter);
    }

    /// After any change: pending and held requests go on as the outage mode now allows, and
    /// the next probe is scheduled.
    fn reconsider(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        if !self.detector.is_offline() && self.held_count > 0 {
            // Back online: every held request goes, oldest host queue first is as good as any.
            let held: Vec<Waiter> = self.held.drain().flat_map(|(_, queue)| queue).collect();
            self.held_count = 0;
            for waiter in held {
                if self.current(&waiter) {
                    self.admit(waiter, now);
                }
            }
        }
        while let Some(waiter) = self.pending.pop_front() {
            if !self.current(&waiter) {
                continue;
            }
            if self.detector.is_offline() {
                self.admit(waiter, now);
                continue;
            }
            if let Some(waiter) = self.decide(waiter, now) {
                self.pending.push_front(waiter);
                break;
            }
        }
        if self.detector.is_offline() {
            self.probe(now, ctx);
        }
        self.grant(ctx);
    }

    /// Starts each host's probe that is due, and arms the timer for the next one.
    fn probe(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let mut next: Option<Instant> = None;
        let hosts: Vec<Arc<str>> = self.held.keys().cloned().collect();
        for host in hosts {
            match self.detector.probe_due(&host, now) {
                ProbeDue::AfterCurrent => {}
                ProbeDue::At(at) => next = Some(next.map_or(at, |n| n.min(at))),
                ProbeDue::Now => {
                    let probe = loop {
                        let Some(queue) = self.held.get_mut(&host) else {
                            break None;
                        };
                        let Some(waiter) = queue.pop_front() else {
                            break None;
                        };
                        self.held_count = self.held_count.saturating_sub(1);
                        if self.current(&waiter) {
                            break Some(waiter);
                        }
                    };
                    if self.held.get(&host).is_some_and(VecDeque::is_empty) {
                        self.held.remove(&host);
                    }
                    if let Some(waiter) = probe {
                        self.admit(waiter, now);
                    }
                }
            }
        }
        if let Some(at) = next {
            let sooner = self
                .probe_timer
                .as_ref()
                .is_none_or(|(armed, _)| at < *armed);
            if sooner {
                if let Some((_, handle)) = self.probe_timer.take() {
                    ctx.cancel_future(handle);
                }
                let delay = at.saturating_duration_since(now);
                let handle = ctx.run_later(delay, |act, ctx| {
                    act.probe_timer = None;
                    act.reconsider(ctx);
                });
                self.probe_timer = Some((at, handle));
            }
        }
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
            let Some((waiter, attempt)) = self.waiting.pop_front() else {
                break;
            };
            self.in_flight += 1;
            self.stats.granted.fetch_add(1, Ordering::Relaxed);
            self.stats.peak.fetch_max(self.in_flight, Ordering::Relaxed);
            // If the requester went away the permit comes straight back through `Drop`.
            let _ = waiter.reply.send(Permit {
                governor: ctx.address(),
                endpoint: waiter.endpoint,
                host: waiter.host,
                attempt,
                outcome: Outcome::Inconclusive,
            });
        }
        self.stats
            .in_flight
            .store(self.in_flight, Ordering::Relaxed);
        self.stats
            .waiting
            .store(self.waiting.len(), Ordering::Relaxed);
        self.stats
            .held
            .store(self.held_count + self.pending.len(), Ordering::Relaxed);
        self.stats
            .offline
            .store(self.detector.is_offline(), Ordering::Relaxed);
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

    fn handle(&mut self, acquire: Acquire, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.next_seq += 1;
        // A request still held for this endpoint is stale now: it is skipped when its turn
        // comes (its asker moved on to this one).
        self.latest.insert(acquire.endpoint.clone(), self.next_seq);
        let waiter = Waiter {
            endpoint: acquire.endpoint,
            host: acquire.host,
            held: acquire.held,
            seq: self.next_seq,
            reply: tx,
        };
        if self.pending.is_empty() || self.detector.is_offline() {
            self.admit(waiter, Instant::now());
        } else {
            // Behind those that wait already.
            self.queue_pending(waiter);
        }
        self.reconsider(ctx);
        Box::pin(async move { rx.await.map_err(|_| GovernorGone) })
    }
}

impl Handler<Release> for Governor {
    type Result = ();

    fn handle(&mut self, release: Release, ctx: &mut Context<Self>) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let now = Instant::now();
        let change = self.detector.ended(
            &release.endpoint,
            &release.host,
            release.attempt,
            release.outcome,
            now,
        );
        if let Some(change) = change {
            match change {
                NetworkEvent::Offline { failed, cause } => {
                    self.stats.outages.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(failed, %cause, "the herd is offline: one probe per host");
                }
                NetworkEvent::Online { offline_for } => tracing::info!(
                    offline_ms = offline_for.as_millis() as u64,
                    endpoint = %release.endpoint,
                    "the herd is online again"
                ),
            }
            if let Some(listener) = &mut self.listener {
                listener(change, &release.endpoint);
            }
        }
        self.reconsider(ctx);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_burst_goes_at_once_and_then_tokens_come_at_the_rate() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::with_burst(10.0, 3.0, t0);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(t0), Ok(()));
        }
        let wait = limiter.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert_eq!(limiter.try_take(t0 + Duration::from_millis(100)), Ok(()));
        // A quiet spell refills at most the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.try_take(later), Ok(()));
        }
        assert!(limiter.try_take(later).is_err());
    }

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
            outage: OutagePolicy::disabled(),
        });
        let stats = governor.stats();
        let addr = governor.start();
        let first = addr.send(acquire(1)).await.unwrap().unwrap();
        let second = addr.send(acquire(2)).await.unwrap().unwrap();
        let third = addr.send(acquire(3));
        let mut third = Box::pin(third);
        // The third waits until a permit is dropped.
        assert!(futures_poll_once(&mut third).await.is_none());
        assert_eq!(stats.in_flight(), 2);
        drop(first);
        let third = third.await.unwrap().unwrap();
        assert_eq!(stats.peak(), 2);
        drop((second, third));
    }

    /// A governor whose outage mode needs two failures, after two attempts refused at the
    /// network level: offline, probing every `probe_interval`.
    async fn offline_governor(probe_interval: Duration) -> (Addr<Governor>, Arc<GovernorStats>) {
        use crate::outage::Outcome;
        use wsherd_connection::NetworkCause;
        let governor = Governor::new(GovernorPolicy {
            outage: OutagePolicy {
                min_endpoints: 2,
                probe_interval,
                ..OutagePolicy::default()
            },
            ..GovernorPolicy::default()
        });
        let stats = governor.stats();
        let addr = governor.start();
        let refused = Outcome::NetworkFailed(NetworkCause::Refused);
        let mut first = addr.send(acquire(1)).await.unwrap().unwrap();
        let mut second = addr.send(acquire(2)).await.unwrap().unwrap();
        first.ended(refused);
        second.ended(refused);
        drop((first, second));
        (addr, stats)
    }

    #[actix_rt::test]
    async fn an_offline_herd_holds_all_but_one_probe_per_host_and_a_probe_that_connects_releases_them()
     {
        use crate::outage::Outcome;
        let (addr, stats) = offline_governor(Duration::from_millis(50)).await;
        // The next two are held: one becomes the probe when the interval has passed.
        let held = [acquire(3), acquire(4)].map(|request| Box::pin(addr.send(request)));
        let [mut third, mut fourth] = held;
        assert!(futures_poll_once(&mut third).await.is_none());
        assert!(stats.offline(), "offline after two network failures");
        assert_eq!(stats.held(), 2);
        let mut probe = actix_rt::time::timeout(Duration::from_secs(10), &mut third)
            .await
            .expect("the probe is let go after the interval")
            .unwrap()
            .unwrap();
        assert!(
            futures_poll_once(&mut fourth).await.is_none(),
            "one probe per host"
        );
        probe.ended(Outcome::Reached);
        drop(probe);
        let released = actix_rt::time::timeout(Duration::from_secs(10), fourth)
            .await
            .expect("released when the probe connected");
        assert!(released.unwrap().is_ok());
        assert!(!stats.offline());
        assert_eq!(stats.outages(), 1);
    }

    #[actix_rt::test]
    async fn an_endpoint_that_asks_again_and_again_while_offline_is_held_once() {
        let (addr, stats) = offline_governor(Duration::from_secs(3600)).await;
        // A caller pausing and resuming during the outage: each request replaces the last,
        // whose asker gave it up.
        for _ in 0..1_000 {
            let mut request = Box::pin(addr.send(acquire(3)));
            assert!(futures_poll_once(&mut request).await.is_none());
        }
        let mut last = Box::pin(addr.send(acquire(3)));
        assert!(futures_poll_once(&mut last).await.is_none());
        assert!(stats.offline());
        assert!(
            stats.held() <= 3,
            "{} requests held for three endpoints",
            stats.held()
        );
    }

    fn acquire(n: usize) -> Acquire {
        Acquire {
            endpoint: EndpointName::new(&format!("e{n}")).unwrap(),
            host: Arc::from("127.0.0.1:1"),
            held: None,
        }
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
