//! The herd: named, supervised endpoints, subscriptions and sends in one handle.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use actix::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wsherd_protocol::{CloseCode, EndpointName, Inbound, Outbound};
use wsherd_router::{Delivery, Router, SubscribeOptions, SubscriptionId};
use wsherd_supervisor::{
    AddOnOpenHook, Control, EndpointShared, EndpointSpec, Governor, GovernorPolicy, GovernorStats,
    OnOpenHook, Rejected, Remember, Stop, Submit, Submitted, Supervisor,
};

use crate::EndpointStatus;
use crate::config::{EndpointConfig, HerdConfig, HerdSettings};
use crate::error::{HerdError, SendError};

struct Endpoint {
    config: EndpointConfig,
    supervisor: Addr<Supervisor>,
    shared: Arc<EndpointShared>,
}

/// What a [`Herd::reload`] did, by endpoint name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// New endpoints, started.
    pub started: Vec<EndpointName>,
    /// Changed endpoints, restarted with their new settings.
    pub restarted: Vec<EndpointName>,
    /// Removed (or disabled) endpoints, stopped.
    pub stopped: Vec<EndpointName>,
    /// Endpoints whose settings did not change: their sockets were not touched.
    pub unchanged: Vec<EndpointName>,
}

/// What [`Herd::shutdown`] leaves behind.
#[derive(Debug, Default)]
pub struct ShutdownReport {
    /// Messages that were still queued, by endpoint.
    pub unsent: BTreeMap<EndpointName, Vec<Outbound>>,
    /// Endpoints whose close did not finish within the timeout.
    pub timed_out: Vec<EndpointName>,
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
                herd.start_endpoint(name, endpoint)?;
            }
        }
        Ok(herd)
    }

    /// Loads `path` (plus `WSHERD__…` environment overrides) and starts the herd it describes.
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<Self, HerdError> {
        Self::start(HerdConfig::from_file(path)?)
    }

    /// Applies a new configuration: unchanged endpoints keep their sockets, changed ones
    /// restart, removed or disabled ones stop, new ones start. Herd settings (workers,
    /// governor) stay as they were started.
    pub async fn reload(&self, config: HerdConfig) -> Result<ReloadReport, HerdError> {
        let mut report = ReloadReport::default();
        let current: Vec<EndpointName> = self.endpoints();
        for name in current {
            let keep = config.endpoints.get(&name).is_some_and(|e| e.enabled);
            if !keep {
                self.remove_endpoint(
                    name.as_str(),
                    CloseCode::NORMAL,
                    "removed from the configuration",
                )
                .await?;
                report.stopped.push(name);
            }
        }
        for (name, endpoint) in config.endpoints {
            if !endpoint.enabled {
                continue;
            }
            let existing = self.lock().get(&name).map(|e| e.config.same_as(&endpoint));
            match existing {
                Some(true) => report.unchanged.push(name),
                Some(false) => {
                    self.remove_endpoint(
                        name.as_str(),
                        CloseCode::RESTART,
                        "configuration changed",
                    )
                    .await?;
                    self.start_endpoint(name.clone(), endpoint)?;
                    report.restarted.push(name);
                }
                None => {
                    self.start_endpoint(name.clone(), endpoint)?;
                    report.started.push(name);
                }
            }
        }
        Ok(report)
    }

    /// Stops endpoint `name` and starts it afresh with the same settings (new backoff, new
    /// counters, empty queue). Returns what was queued.
    pub async fn restart(&self, name: &str) -> Result<Vec<Outbound>, HerdError> {
        let config = self
            .lock()
            .get(name)
            .map(|e| e.config.clone())
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        let name = EndpointName::new(name)?;
        let unsent = self
            .remove_endpoint(name.as_str(), CloseCode::RESTART, "restart requested")
            .await?;
        self.start_endpoint(name, config)?;
        Ok(unsent)
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

    /// Starts endpoint `name` under supervision; it connects at once (through the governor).
    pub fn add_endpoint(
        &self,
        name: &str,
        spec: impl Into<EndpointSpec>,
    ) -> Result<EndpointName, HerdError> {
        let name = EndpointName::new(name)?;
        self.start_endpoint(name.clone(), EndpointConfig::new(spec.into()))?;
        Ok(name)
    }

    fn start_endpoint(&self, name: EndpointName, config: EndpointConfig) -> Result<(), HerdError> {
        if actix::System::try_current().is_none() {
            return Err(HerdError::NoSystem);
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

    /// Closes endpoint `name` gracefully (Close with `code` and `reason`), forgets it, and
    /// hands back the messages that were still queued for it.
    pub async fn remove_endpoint(
        &self,
        name: &str,
        code: impl Into<CloseCode>,
        reason: &str,
    ) -> Result<Vec<Outbound>, HerdError> {
        let endpoint = self
            .lock()
            .remove(name)
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))?;
        let stop = Stop {
            code: code.into(),
            reason: reason.to_owned(),
        };
        Ok(endpoint
            .supervisor
            .send(stop)
            .await
            .map(|receipt| receipt.unsent)
            .unwrap_or_default())
    }

    /// Closes the socket of endpoint `name` and connects again at once; from `Failed` this
    /// starts over.
    pub fn reconnect(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Reconnect)
    }

    /// Closes the socket of endpoint `name` and keeps it down until [`Herd::resume`]; sends
    /// queue meanwhile.
    pub fn pause(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Pause)
    }

    /// Connects a paused endpoint again.
    pub fn resume(&self, name: &str) -> Result<(), HerdError> {
        self.control(name, Control::Resume)
    }

    fn control(&self, name: &str, control: Control) -> Result<(), HerdError> {
        // Control messages come from the owner, a handful at a time.
        self.supervisor(name)?.do_send(control);
        Ok(())
    }

    /// Closes every endpoint gracefully (Close 1000 with `reason`) and forgets them; waits up
    /// to `timeout` for the peers to answer. Returns what was still queued and which closes
    /// did not finish in time.
    pub async fn shutdown(&self, reason: &str, timeout: Duration) -> ShutdownReport {
        let endpoints = std::mem::take(&mut *self.lock());
        let mut report = ShutdownReport::default();
        let mut pending = Vec::new();
        for (name, endpoint) in endpoints {
            let stop = Stop {
                code: CloseCode::NORMAL,
                reason: reason.to_owned(),
            };
            if let Ok(receipt) = endpoint.supervisor.send(stop).await {
                if !receipt.unsent.is_empty() {
                    report.unsent.insert(name.clone(), receipt.unsent);
                }
                pending.push((name, receipt.closed));
            }
        }
        // `timeout` measures the whole shutdown, not each close (tokio caps huge timeouts).
        let all = async {
            for (_, closed) in pending.iter_mut() {
                let _ = closed.await;
            }
        };
        if tokio::time::timeout(timeout, all).await.is_err() {
            for (name, closed) in &mut pending {
                if closed.try_recv() == Err(tokio::sync::oneshot::error::TryRecvError::Empty) {
                    report.timed_out.push(name.clone());
                }
            }
        }
        report
    }

    /// Sends `message` to endpoint `name`: written at once when the endpoint is live and
    /// nothing is queued, else queued (per its queue policy) and sent, in order, after the
    /// on-open messages of the next open.
    pub async fn send(
        &self,
        name: &str,
        message: impl Into<Outbound>,
    ) -> Result<Submitted, SendError> {
        self.submit(name, message.into(), Submit).await
    }

    /// Hands `message` to endpoint `name`'s supervisor, wrapped by `wrap`.
    async fn submit<M>(
        &self,
        name: &str,
        message: Outbound,
        wrap: fn(Outbound) -> M,
    ) -> Result<Submitted, SendError>
    where
        M: actix::Message<Result = Result<Submitted, Rejected>> + Send + 'static,
        Supervisor: Handler<M>,
    {
        let supervisor = match self.supervisor(name) {
            Ok(supervisor) => supervisor,
            Err(_) => {
                return Err(SendError::UnknownEndpoint {
                    name: name.to_owned(),
                    message,
                });
            }
        };
        match supervisor.send(wrap(message)).await {
            Ok(result) => result.map_err(SendError::Rejected),
            Err(_) => Err(SendError::Lost),
        }
    }

    /// Serializes `value` as JSON and sends it to endpoint `name`.
    pub async fn send_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<Submitted, SendError> {
        self.send(name, Outbound::json(value)?).await
    }

    /// Sends `message` to endpoint `name` now (or queues it) and again after every reconnect:
    /// a subscription made at run time.
    pub async fn remember(
        &self,
        name: &str,
        message: impl Into<Outbound>,
    ) -> Result<Submitted, SendError> {
        self.submit(name, message.into(), Remember).await
    }

    /// Asks `hook` for messages to send after every open of endpoint `name`.
    pub fn on_open_hook(&self, name: &str, hook: OnOpenHook) -> Result<(), HerdError> {
        self.supervisor(name)?.do_send(AddOnOpenHook(hook));
        Ok(())
    }

    /// Delivers every `T` (messages of kind `T::KIND`) from every endpoint to `recipient`.
    pub fn subscribe<T: Inbound>(&self, recipient: Recipient<Delivery<T>>) -> SubscriptionId {
        self.inner.router.subscribe(recipient)
    }

    /// Delivers `T` per `options` (only some endpoints, overflow policy).
    pub fn subscribe_with<T: Inbound>(
        &self,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner
            .router
            .subscribe_kind(T::KIND, recipient, options)
    }

    /// Delivers every `T` in [`Batch`](crate::Batch)es: what a connection decodes while its
    /// socket has frames to read (up to 256) travels as one message. Best for a subscriber on
    /// another arbiter than the endpoints.
    pub fn subscribe_batched<T: Inbound>(
        &self,
        recipient: Recipient<wsherd_router::Batch<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner
            .router
            .subscribe_kind_batched(T::KIND, recipient, options)
    }

    /// Delivers messages of kind `kind`, decoded as `T`.
    pub fn subscribe_kind<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        kind: &str,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_kind(kind, recipient, options)
    }

    /// Delivers events: [`StateEvent`](crate::StateEvent)s,
    /// [`ConnectionEvent`](crate::ConnectionEvent)s, [`QueueEvent`](crate::QueueEvent)s,
    /// [`DeadLetter`](crate::DeadLetter)s or [`Binary`](crate::Binary) frames.
    pub fn subscribe_events<E: Send + Sync + 'static>(
        &self,
        recipient: Recipient<Delivery<E>>,
    ) -> SubscriptionId {
        self.inner
            .router
            .subscribe_event(recipient, SubscribeOptions::new())
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.router.unsubscribe(id)
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
