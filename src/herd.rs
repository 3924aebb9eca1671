//! The herd: named, supervised endpoints, subscriptions and sends in one handle.
//!
//! Split by concern: [`lifecycle`] adds, removes, restarts, reloads, pauses and shuts down
//! endpoints, and [`messaging`] sends to them and subscribes to what they deliver. This file
//! holds the handle itself, its construction, where each endpoint's supervisor runs, the
//! shared governor, and the lookups the other two build on.

mod adapters;
mod lifecycle;
mod membership;
mod messaging;
mod metrics;
mod remote;
mod requests;
mod sessions;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use wsherd_protocol::EndpointName;
use wsherd_router::Router;
use wsherd_supervisor::{
    EndpointShared, EndpointSpec, Governor, GovernorPolicy, GovernorStats, Supervisor,
};

use crate::EndpointStatus;
use crate::config::{EndpointConfig, HerdConfig, HerdSettings};
use crate::error::HerdError;

pub use adapters::{DeliveryStream, STREAM_CAPACITY};
pub use lifecycle::{ReloadReport, SHUTDOWN_TIMEOUT, ShutdownReport, shutdown_signal};
pub use membership::{Membership, MembershipFigure, Ownership};
pub use messaging::MAX_STREAM_CAPACITY;
pub use metrics::MIN_METRICS_INTERVAL;
pub use remote::{RemoteRemember, RemoteSend, RemoteSender};
pub use sessions::{InboundEndpoint, SessionRefused};

/// An endpoint's settings as it runs: the spec, shared with its supervisor (one copy per
/// endpoint, however many hold it: at ten thousand endpoints a copy is megabytes), and the
/// digest a reload compares.
#[derive(Clone, Debug)]
pub(super) struct Settings {
    spec: Arc<EndpointSpec>,
    fingerprint: u64,
    /// Whether the herd is ready only while this endpoint is live.
    required: bool,
}

impl From<EndpointConfig> for Settings {
    fn from(config: EndpointConfig) -> Self {
        Settings {
            fingerprint: config.fingerprint(),
            required: config.required,
            spec: Arc::new(config.spec),
        }
    }
}

impl Settings {
    /// Whether `config` would run this endpoint exactly as it runs now.
    pub(super) fn same_as(&self, config: &EndpointConfig) -> bool {
        config.enabled && config.fingerprint() == self.fingerprint
    }
}

struct Endpoint {
    settings: Settings,
    supervisor: Addr<Supervisor>,
    shared: Arc<EndpointShared>,
    /// Created paused because the herd was not started yet; [`Herd::start`] resumes it.
    held: bool,
    /// The owner paused it ([`Herd::pause`]) and has not resumed it since.
    owner_paused: bool,
}

struct GovernorHandle {
    /// One `Addr` shared by every supervisor: a clone each would allocate its own sender.
    addr: Arc<Addr<Governor>>,
    stats: Arc<GovernorStats>,
}

struct Inner {
    router: Router,
    governor_policy: GovernorPolicy,
    governor: Mutex<Option<GovernorHandle>>,
    /// Guarded by this lock as well: whether new endpoints connect at once or wait, held,
    /// for [`Herd::start`].
    endpoints: Mutex<Endpoints>,
    /// Worker arbiters; empty means "the arbiter that adds the endpoint".
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
    /// The `metrics` series published so far.
    metrics: Mutex<metrics::Publisher>,
    /// Inbound endpoints, whose sessions are in `endpoints` as `<inbound>:<id>`.
    inbound: Mutex<BTreeMap<EndpointName, Arc<sessions::InboundEndpoint>>>,
    /// Where sends to endpoints run elsewhere go (a cluster's other members).
    remote: std::sync::RwLock<Option<Arc<dyn remote::RemoteSender>>>,
    /// The cluster this herd is a member of.
    membership: std::sync::RwLock<Option<Arc<dyn membership::Membership>>>,
}

#[derive(Default)]
struct Endpoints {
    started: bool,
    /// Set by [`Herd::shutdown`]: inbound endpoints take no new sessions.
    shut_down: bool,
    by_name: BTreeMap<EndpointName, Endpoint>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
    }
}

/// Many named, supervised WebSocket endpoints, their subscribers, and a way to send to each
/// by name.
///
/// Cheap to clone: clones share the endpoints and subscriptions, so any actor can hold one.
/// A herd made from a config ([`Herd::from_config_file`], [`Herd::from_config`]) spreads its
/// endpoints over `workers` arbiters (threads), each with its own awc client, and holds them
/// until [`Herd::start`]: subscribe first, then start, and no message arrives before its
/// subscriber. One made by [`Herd::new`] is started from the outset and starts each endpoint,
/// on the arbiter that adds it, as it is added. Either must be used inside a running actix
/// system. One [`Governor`] per herd caps concurrent handshakes and runs the outage mode
/// ([`OutagePolicy`](crate::OutagePolicy)): while the network is gone, one probe per host.
#[derive(Clone)]
pub struct Herd {
    inner: Arc<Inner>,
}

impl Default for Herd {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Herd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<EndpointName> = self.lock().by_name.keys().cloned().collect();
        f.debug_struct("Herd")
            .field("endpoints", &names)
            .field("router", &self.inner.router)
            .finish()
    }
}

impl Herd {
    /// A started herd with no endpoints, no subscribers and the default governor: each
    /// endpoint connects as soon as it is added.
    pub fn new() -> Self {
        Self::with_governor(GovernorPolicy::default())
    }

    /// A started herd whose handshakes are governed by `policy`.
    pub fn with_governor(policy: GovernorPolicy) -> Self {
        Self::build(policy, Vec::new(), true)
    }

    fn build(policy: GovernorPolicy, arbiters: Vec<Arbiter>, started: bool) -> Self {
        Herd {
            inner: Arc::new(Inner {
                router: Router::new(),
                governor_policy: policy,
                governor: Mutex::new(None),
                endpoints: Mutex::new(Endpoints {
                    started,
                    shut_down: false,
                    by_name: BTreeMap::new(),
                }),
                arbiters,
                next_arbiter: AtomicUsize::new(0),
                metrics: Mutex::new(metrics::Publisher::default()),
                inbound: Mutex::new(BTreeMap::new()),
                remote: std::sync::RwLock::new(None),
                membership: std::sync::RwLock::new(None),
            }),
        }
    }

    /// A started herd with `settings.workers` arbiters and its governor, and no endpoints yet.
    pub fn with_settings(settings: &HerdSettings) -> Result<Self, HerdError> {
        Self::with_workers(settings, true)
    }

    fn with_workers(settings: &HerdSettings, started: bool) -> Result<Self, HerdError> {
        in_a_system()?;
        let arbiters = (0..settings.workers.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let herd = Self::build(settings.governor, arbiters, started);
        if let Some(interval) = settings.metrics_interval {
            herd.enable_metrics(interval)?;
        }
        Ok(herd)
    }

    /// The herd `config` describes, its endpoints spread over its workers and held until
    /// [`Herd::start`]: subscribe first, then start. Sends to a held endpoint are queued
    /// and go out after its first open; its status says `paused`.
    pub fn from_config(config: HerdConfig) -> Result<Self, HerdError> {
        let herd = Self::with_workers(&config.settings, false)?;
        for (name, endpoint) in config.endpoints {
            if endpoint.enabled {
                herd.start_endpoint(name, endpoint.into(), lifecycle::Replay::default())?;
            }
        }
        for (name, inbound) in config.inbound {
            herd.add_inbound(name, inbound)?;
        }
        Ok(herd)
    }

    /// Loads `path` (plus `WSHERD__…` environment overrides) into a herd held until
    /// [`Herd::start`], as [`Herd::from_config`].
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self, HerdError> {
        Self::from_config(HerdConfig::from_file(path)?)
    }

    /// Lets every held endpoint connect (through the governor), and every
    /// endpoint added from now on connect at once. Call it once the subscribers are in place;
    /// calling it again does nothing. An endpoint paused with [`Herd::pause`] before the start
    /// stays paused.
    pub fn start(&self) {
        let mut endpoints = self.lock();
        endpoints.started = true;
        for endpoint in endpoints.by_name.values_mut() {
            if std::mem::take(&mut endpoint.held) {
                endpoint
                    .supervisor
                    .do_send(wsherd_supervisor::Control::Resume);
            }
        }
    }

    /// Whether [`Herd::start`] was called (always true for a herd made by [`Herd::new`]).
    pub fn is_started(&self) -> bool {
        self.lock().started
    }

    /// The router all endpoints deliver through.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The governor's live figures (handshakes in flight, peak, waiting), once an endpoint
    /// has started it.
    pub fn governor_stats(&self) -> Option<Arc<GovernorStats>> {
        self.governor_lock().as_ref().map(|g| Arc::clone(&g.stats))
    }

    fn start_endpoint(
        &self,
        name: EndpointName,
        settings: Settings,
        replay: lifecycle::Replay,
    ) -> Result<(), HerdError> {
        in_a_system()?;
        if name.session_id().is_some() {
            return Err(HerdError::InvalidName(
                wsherd_protocol::InvalidEndpointName {
                    name: name.to_string(),
                    why: "':' is kept for the sessions of inbound endpoints (`<inbound>:<id>`)",
                },
            ));
        }
        if let Err(error) = settings.spec.validate() {
            return Err(HerdError::InvalidSpec { name, error });
        }
        let mut endpoints = self.lock();
        if endpoints
            .by_name
            .get(&name)
            .is_some_and(|e| e.supervisor.connected())
        {
            return Err(HerdError::DuplicateEndpoint(name));
        }
        let held = !endpoints.started;
        let shared = Arc::new(EndpointShared::with_state(
            name.clone(),
            settings.spec.connection.url.clone(),
            if held {
                wsherd_supervisor::EndpointState::Paused
            } else {
                wsherd_supervisor::EndpointState::Connecting { attempt: 1 }
            },
        ));
        // Before the supervisor starts (on its arbiter): a request may come first.
        shared.requests().configure(&settings.spec.request);
        let governor = self.governor();
        let router = self.inner.router.clone();
        let spec = Arc::clone(&settings.spec);
        let build = {
            let name = name.clone();
            let shared = Arc::clone(&shared);
            move |_: &mut Context<Supervisor>| {
                let supervisor = Supervisor::new(name, spec, router)
                    .with_governor(governor)
                    .with_shared(shared)
                    .with_replay(replay.remembered, replay.hooks);
                if held {
                    supervisor.paused()
                } else {
                    supervisor
                }
            }
        };
        let supervisor = match self.next_arbiter() {
            Some(arbiter) => Supervisor::start_in_arbiter(&arbiter, build),
            None => Supervisor::create(build),
        };
        endpoints.by_name.insert(
            name,
            Endpoint {
                settings,
                supervisor,
                shared,
                held,
                owner_paused: false,
            },
        );
        Ok(())
    }

    /// The worker arbiter for the next endpoint, round robin.
    fn next_arbiter(&self) -> Option<ArbiterHandle> {
        let arbiters = &self.inner.arbiters;
        if arbiters.is_empty() {
            return None;
        }
        let index = self.inner.next_arbiter.fetch_add(1, Ordering::Relaxed) % arbiters.len();
        arbiters.get(index).map(Arbiter::handle)
    }

    /// Names of all endpoints, sorted.
    pub fn endpoints(&self) -> Vec<EndpointName> {
        self.lock().by_name.keys().cloned().collect()
    }

    /// A snapshot of every endpoint, sorted by name.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.lock()
            .by_name
            .values()
            .map(|endpoint| endpoint.shared.snapshot())
            .collect()
    }

    /// Every endpoint's status as an aligned table, one row each, sorted by name (see
    /// [`StatusTable`](crate::StatusTable)): what a person wants to read.
    pub fn status_table(&self) -> String {
        EndpointStatus::table(&self.status()).to_string()
    }

    /// The endpoints marked `required` (in the config, or by [`Herd::set_required`]) that
    /// are not live now (an on-demand endpoint idle for want of a need counts as ready), sorted by name: the herd is ready when this is empty. An endpoint
    /// that was removed is not required any more.
    pub fn not_ready(&self) -> Vec<EndpointName> {
        self.lock()
            .by_name
            .iter()
            .filter(|(_, endpoint)| endpoint.settings.required)
            // An idle on-demand endpoint is where it should be while nobody needs it.
            .filter(|(_, endpoint)| {
                !matches!(
                    endpoint.shared.state(),
                    wsherd_supervisor::EndpointState::Live | wsherd_supervisor::EndpointState::Idle
                )
            })
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Marks endpoint `name` required (or not) for readiness ([`Herd::not_ready`]), as
    /// `required = true` does in the config; it does not touch the socket. A reload applies
    /// the config's value again.
    pub fn set_required(&self, name: &str, required: bool) -> Result<(), HerdError> {
        let mut endpoints = self.lock();
        let endpoint = endpoints
            .by_name
            .get_mut(name)
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        endpoint.settings.required = required;
        Ok(())
    }

    /// A snapshot of endpoint `name`.
    pub fn endpoint_status(&self, name: &str) -> Option<EndpointStatus> {
        self.lock()
            .by_name
            .get(name)
            .map(|endpoint| endpoint.shared.snapshot())
    }

    fn supervisor(&self, name: &str) -> Result<Addr<Supervisor>, HerdError> {
        self.lock()
            .by_name
            .get(name)
            .map(|endpoint| endpoint.supervisor.clone())
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))
    }

    fn governor(&self) -> Arc<Addr<Governor>> {
        let mut governor = self.governor_lock();
        match &*governor {
            Some(handle) if handle.addr.connected() => Arc::clone(&handle.addr),
            _ => {
                let actor = Governor::new(self.inner.governor_policy)
                    .with_listener(network_publisher(self.inner.router.clone()));
                let stats = actor.stats();
                let addr = Arc::new(actor.start());
                *governor = Some(GovernorHandle {
                    addr: Arc::clone(&addr),
                    stats,
                });
                addr
            }
        }
    }

    fn governor_lock(&self) -> MutexGuard<'_, Option<GovernorHandle>> {
        self.inner
            .governor
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn inbound_lock(
        &self,
    ) -> MutexGuard<'_, BTreeMap<EndpointName, Arc<sessions::InboundEndpoint>>> {
        self.inner
            .inbound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn lock(&self) -> MutexGuard<'_, Endpoints> {
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Most deliveries of [`NetworkEvent`](wsherd_supervisor::NetworkEvent)s held at once for full
/// subscribers; past it they are dropped (they are rare: one per outage and one per recovery).
const MAX_HELD_NETWORK_EVENTS: usize = 16;

/// Publishes the governor's outage announcements to the herd's event subscribers, as an
/// endpoint's supervisor publishes its states: into each subscriber's mailbox, a full
/// backpressure subscriber's in the background (a few at most), never blocking the governor.
fn network_publisher(router: Router) -> wsherd_supervisor::OutageListener {
    let mut cache = router.cache();
    let held = Arc::new(AtomicUsize::new(0));
    Box::new(move |event, endpoint| {
        let mut report = wsherd_router::DispatchReport::default();
        let table = Arc::clone(cache.current());
        table.publish(endpoint, event, &mut report);
        for id in report.closed.drain(..) {
            router.unsubscribe(id);
        }
        if report.held() == 0 {
            return;
        }
        if held.load(Ordering::Relaxed) >= MAX_HELD_NETWORK_EVENTS {
            let dropped = report.drop_held();
            tracing::warn!(dropped, "network events dropped for a full subscriber");
            return;
        }
        held.fetch_add(1, Ordering::Relaxed);
        let held = Arc::clone(&held);
        actix::spawn(async move {
            std::future::poll_fn(|cx| report.poll_unblocked(cx)).await;
            held.fetch_sub(1, Ordering::Relaxed);
        });
    })
}

/// Endpoints, closure and stream subscribers and the metrics task are actors or tasks: they
/// need a running actix system on this thread.
fn in_a_system() -> Result<(), HerdError> {
    match actix::System::try_current() {
        Some(_) => Ok(()),
        None => Err(HerdError::NoSystem),
    }
}
