//! The herd: named, supervised endpoints, subscriptions and sends in one handle.
//!
//! Split by concern: [`lifecycle`] adds, removes, restarts, reloads, pauses and shuts down
//! endpoints, and [`messaging`] sends to them and subscribes to what they deliver. This file
//! holds the handle itself, its construction, where each endpoint's supervisor runs, the
//! shared governor, and the lookups the other two build on.

mod lifecycle;
mod messaging;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use wsherd_protocol::EndpointName;
use wsherd_router::Router;
use wsherd_supervisor::{EndpointShared, Governor, GovernorPolicy, GovernorStats, Supervisor};

use crate::EndpointStatus;
use crate::config::{EndpointConfig, HerdConfig, HerdSettings};
use crate::error::HerdError;

pub use lifecycle::{ReloadReport, ShutdownReport};

struct Endpoint {
    config: EndpointConfig,
    supervisor: Addr<Supervisor>,
    shared: Arc<EndpointShared>,
}

struct GovernorHandle {
    addr: Addr<Governor>,
    stats: Arc<GovernorStats>,
}

struct Inner {
    router: Router,
    governor_policy: GovernorPolicy,
    governor: Mutex<Option<GovernorHandle>>,
    endpoints: Mutex<BTreeMap<EndpointName, Endpoint>>,
    /// Worker arbiters; empty means "the arbiter that adds the endpoint".
    arbiters: Vec<Arbiter>,
    next_arbiter: AtomicUsize,
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
/// A herd made by [`Herd::start`] spreads its endpoints over `workers` arbiters (threads), each
/// with its own awc client; one made by [`Herd::new`] starts them on the arbiter that adds
/// them. Either must be used inside a running actix system. One [`Governor`] per herd caps
/// concurrent handshakes.
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
        let names: Vec<EndpointName> = self.lock().keys().cloned().collect();
        f.debug_struct("Herd")
            .field("endpoints", &names)
            .field("router", &self.inner.router)
            .finish()
    }
}

impl Herd {
    /// A herd with no endpoints, no subscribers and the default governor.
    pub fn new() -> Self {
        Self::with_governor(GovernorPolicy::default())
    }

    /// A herd whose handshakes are governed by `policy`.
    pub fn with_governor(policy: GovernorPolicy) -> Self {
        Self::build(policy, Vec::new())
    }

    fn build(policy: GovernorPolicy, arbiters: Vec<Arbiter>) -> Self {
        Herd {
            inner: Arc::new(Inner {
                router: Router::new(),
                governor_policy: policy,
                governor: Mutex::new(None),
                endpoints: Mutex::new(BTreeMap::new()),
                arbiters,
                next_arbiter: AtomicUsize::new(0),
            }),
        }
    }

    /// A herd with `settings.workers` arbiters and its governor, and no endpoints yet.
    pub fn with_settings(settings: &HerdSettings) -> Result<Self, HerdError> {
        if actix::System::try_current().is_none() {
            return Err(HerdError::NoSystem);
        }
        let arbiters = (0..settings.workers.max(1))
            .map(|_| Arbiter::new())
            .collect();
        Ok(Self::build(settings.governor, arbiters))
    }

    /// Starts every enabled endpoint of `config` over its workers.
    pub fn start(config: HerdConfig) -> Result<Self, HerdError> {
        let herd = Self::with_settings(&config.settings)?;
        for (name, endpoint) in config.endpoints {
            if endpoint.enabled {
                herd.start_endpoint(name, endpoint, lifecycle::Replay::default())?;
            }
        }
        Ok(herd)
    }

    /// Loads `path` (plus `WSHERD__…` environment overrides) and starts the herd it describes.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self, HerdError> {
        Self::start(HerdConfig::from_file(path)?)
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
        config: EndpointConfig,
        replay: lifecycle::Replay,
    ) -> Result<(), HerdError> {
        if actix::System::try_current().is_none() {
            return Err(HerdError::NoSystem);
        }
        if let Err(error) = config.spec.validate() {
            return Err(HerdError::InvalidSpec { name, error });
        }
        let mut endpoints = self.lock();
        if endpoints
            .get(&name)
            .is_some_and(|e| e.supervisor.connected())
        {
            return Err(HerdError::DuplicateEndpoint(name));
        }
        let shared = Arc::new(EndpointShared::new(
            name.clone(),
            config.spec.connection.url.clone(),
        ));
        let governor = self.governor();
        let router = self.inner.router.clone();
        let spec = config.spec.clone();
        let build = {
            let name = name.clone();
            let shared = Arc::clone(&shared);
            move |_: &mut Context<Supervisor>| {
                Supervisor::new(name, spec, router)
                    .with_governor(governor)
                    .with_shared(shared)
                    .with_replay(replay.remembered, replay.hooks)
            }
        };
        let supervisor = match self.next_arbiter() {
            Some(arbiter) => Supervisor::start_in_arbiter(&arbiter, build),
            None => Supervisor::create(build),
        };
        endpoints.insert(
            name,
            Endpoint {
                config,
                supervisor,
                shared,
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
        self.lock().keys().cloned().collect()
    }

    /// A snapshot of every endpoint, sorted by name.
    pub fn status(&self) -> Vec<EndpointStatus> {
        self.lock()
            .values()
            .map(|endpoint| endpoint.shared.snapshot())
            .collect()
    }

    /// Every endpoint's status as an aligned table, one row each, sorted by name (see
    /// [`StatusTable`](crate::StatusTable)): what a person wants to read.
    pub fn status_table(&self) -> String {
        EndpointStatus::table(&self.status()).to_string()
    }

    /// A snapshot of endpoint `name`.
    pub fn endpoint_status(&self, name: &str) -> Option<EndpointStatus> {
        self.lock()
            .get(name)
            .map(|endpoint| endpoint.shared.snapshot())
    }

    fn supervisor(&self, name: &str) -> Result<Addr<Supervisor>, HerdError> {
        self.lock()
            .get(name)
            .map(|endpoint| endpoint.supervisor.clone())
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))
    }

    fn governor(&self) -> Addr<Governor> {
        let mut governor = self.governor_lock();
        match &*governor {
            Some(handle) if handle.addr.connected() => handle.addr.clone(),
            _ => {
                let actor = Governor::new(self.inner.governor_policy);
                let stats = actor.stats();
                let addr = actor.start();
                *governor = Some(GovernorHandle {
                    addr: addr.clone(),
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

    fn lock(&self) -> MutexGuard<'_, BTreeMap<EndpointName, Endpoint>> {
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
