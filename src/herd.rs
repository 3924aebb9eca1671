//! The herd: named endpoints, subscriptions and sends in one handle.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use wsherd_connection::{Close, Connection, ConnectionConfig, ConnectionStats, StatsSnapshot};
use wsherd_protocol::{EncodeError, EndpointName, Inbound, Outbound};
use wsherd_router::{Delivery, Router, SubscribeOptions, SubscriptionId};

use crate::error::{HerdError, SendError};
use crate::status::EndpointStatus;

struct Endpoint {
    config: Arc<ConnectionConfig>,
    connection: Addr<Connection>,
    stats: Arc<ConnectionStats>,
}

struct Inner {
    router: Router,
    endpoints: Mutex<BTreeMap<EndpointName, Endpoint>>,
}

/// Many named WebSocket endpoints, their subscribers, and a way to send to each by name.
///
/// Cheap to clone: clones share the endpoints and subscriptions, so any actor can hold one.
/// Endpoints start on the arbiter that adds them; the herd must be used inside a running actix
/// system.
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
    /// A herd with no endpoints and no subscribers.
    pub fn new() -> Self {
        Self::with_router(Router::new())
    }

    /// A herd that routes through an existing router (to share subscribers with other parts).
    pub fn with_router(router: Router) -> Self {
        Herd {
            inner: Arc::new(Inner {
                router,
                endpoints: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// The router all endpoints deliver through.
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// Starts endpoint `name`; it connects at once.
    pub fn add_endpoint(
        &self,
        name: &str,
        config: ConnectionConfig,
    ) -> Result<EndpointName, HerdError> {
        let name = EndpointName::new(name)?;
        if actix::System::try_current().is_none() {
            return Err(HerdError::NoSystem);
        }
        let mut endpoints = self.lock();
        if let Some(existing) = endpoints.get(&name)
            && existing.connection.connected()
        {
            return Err(HerdError::DuplicateEndpoint(name));
        }
        let config = Arc::new(config);
        let stats = Arc::new(ConnectionStats::default());
        let connection = Connection::new(name.clone(), Arc::clone(&config), &self.inner.router)
            .with_stats(Arc::clone(&stats))
            .start();
        endpoints.insert(
            name.clone(),
            Endpoint {
                config,
                connection,
                stats,
            },
        );
        Ok(name)
    }

    /// Closes endpoint `name` gracefully and forgets it. Returns whether it existed.
    pub fn remove_endpoint(&self, name: &str, code: u16, reason: &str) -> bool {
        let Some(endpoint) = self.lock().remove(name) else {
            return false;
        };
        endpoint.connection.do_send(Close {
            code,
            reason: reason.to_owned(),
        });
        true
    }

    /// Sends a Close with `code` and `reason` to endpoint `name`'s peer.
    pub fn close(&self, name: &str, code: u16, reason: &str) -> Result<(), HerdError> {
        let connection = self.connection(name)?;
        connection.do_send(Close {
            code,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Closes every endpoint gracefully with 1000.
    pub fn close_all(&self, reason: &str) {
        for endpoint in self.lock().values() {
            endpoint.connection.do_send(Close {
                code: 1000,
                reason: reason.to_owned(),
            });
        }
    }

    /// Writes `message` to endpoint `name`. Messages sent to one endpoint are written in the
    /// order their sends were called.
    ///
    /// On error the message comes back inside the [`SendError`], except when the connection
    /// stopped while the message waited in its mailbox ([`SendError::Lost`]).
    pub async fn send(&self, name: &str, message: impl Into<Outbound>) -> Result<(), SendError> {
        let message = message.into();
        let connection = match self.connection(name) {
            Ok(connection) => connection,
            Err(_) => {
                return Err(SendError::UnknownEndpoint {
                    name: name.to_owned(),
                    message,
                });
            }
        };
        if !connection.connected() {
            return Err(SendError::NotOpen(message));
        }
        match connection.send(wsherd_connection::Send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(match error {
                wsherd_connection::SendError::NotOpen(message) => SendError::NotOpen(message),
                wsherd_connection::SendError::Closing(message) => SendError::Closing(message),
                wsherd_connection::SendError::Full(message) => SendError::Full(message),
            }),
            Err(_) => Err(SendError::Lost),
        }
    }

    /// Serializes `value` as JSON and sends it to endpoint `name`.
    pub async fn send_json<T: Serialize + ?Sized>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), SendError> {
        let message =
            Outbound::json(value).map_err(|error: EncodeError| SendError::Encode(error))?;
        self.send(name, message).await
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

    /// Delivers messages of kind `kind`, decoded as `T`.
    pub fn subscribe_kind<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        kind: &str,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_kind(kind, recipient, options)
    }

    /// Delivers events: [`ConnectionEvent`](crate::ConnectionEvent)s,
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
            .iter()
            .map(|(name, endpoint)| status_of(name, endpoint))
            .collect()
    }

    /// A snapshot of endpoint `name`.
    pub fn endpoint_status(&self, name: &str) -> Option<EndpointStatus> {
        self.lock()
            .get_key_value(name)
            .map(|(name, endpoint)| status_of(name, endpoint))
    }

    fn connection(&self, name: &str) -> Result<Addr<Connection>, HerdError> {
        self.lock()
            .get(name)
            .map(|endpoint| endpoint.connection.clone())
            .ok_or_else(|| HerdError::UnknownEndpoint(name.to_owned()))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<EndpointName, Endpoint>> {
        self.inner
            .endpoints
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn status_of(name: &EndpointName, endpoint: &Endpoint) -> EndpointStatus {
    let stats: StatsSnapshot = endpoint.stats.snapshot();
    EndpointStatus {
        name: name.clone(),
        url: endpoint.config.url.clone(),
        phase: endpoint.stats.phase(),
        last_end: endpoint.stats.last_end(),
        stats,
    }
}
