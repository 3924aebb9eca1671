//! Which endpoints are needed: the subscriptions that name them, for endpoints that connect
//! only when needed.
//!
//! A subscription *names* an endpoint when its endpoint filter
//! ([`SubscribeOptions::endpoints`](crate::SubscribeOptions::endpoints)) lists it and it is not
//! [`passive`](crate::SubscribeOptions::passive). A subscription without a filter (a tap on
//! everything: a log, an event stream, a publisher) names none, so it never makes an endpoint
//! connect. An endpoint's watcher (its supervisor) is told each time the answer changes.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Message, Recipient};
use wsherd_protocol::EndpointName;

use crate::dispatch::{Subscriber, SubscriptionId};

/// Sent to an endpoint's watcher when it became needed, or stopped being needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Message)]
#[rtype(result = "()")]
pub struct DemandChanged {
    /// Some live subscription names the endpoint.
    pub needed: bool,
}

/// One watcher's registration, for [`Router::unwatch_demand`](crate::Router::unwatch_demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DemandWatch(u64);

/// A subscription that names endpoints, seen only as whether it can still receive.
pub(crate) trait Demander: Send + Sync {
    fn is_alive(&self) -> bool;
}

impl<T: Send + Sync + 'static> Demander for Subscriber<T> {
    fn is_alive(&self) -> bool {
        Subscriber::is_alive(self)
    }
}

/// The subscriptions that name one endpoint.
type Naming = Vec<(SubscriptionId, Arc<dyn Demander>)>;

struct Watcher {
    watch: DemandWatch,
    recipient: Recipient<DemandChanged>,
    /// What the watcher was last told (or answered).
    told: bool,
}

/// The subscriptions that name each endpoint, and who watches which endpoint.
#[derive(Default)]
pub(crate) struct Demand {
    by_endpoint: HashMap<EndpointName, Naming>,
    /// The endpoints each naming subscription names, to forget it.
    named: HashMap<SubscriptionId, Arc<[EndpointName]>>,
    watchers: HashMap<EndpointName, Watcher>,
    next_watch: u64,
}

impl Demand {
    /// Records that subscription `id` names `endpoints`.
    pub(crate) fn add(
        &mut self,
        id: SubscriptionId,
        endpoints: Arc<[EndpointName]>,
        who: Arc<dyn Demander>,
    ) {
        for endpoint in endpoints.iter() {
            let naming = self.by_endpoint.entry(endpoint.clone()).or_default();
            if naming.iter().all(|(other, _)| *other != id) {
                naming.push((id, Arc::clone(&who)));
            }
        }
        for endpoint in endpoints.iter() {
            self.tell(endpoint);
        }
        self.named.insert(id, endpoints);
    }

    /// Forgets subscription `id`, if it named any endpoint.
    pub(crate) fn remove(&mut self, id: SubscriptionId) {
        let Some(endpoints) = self.named.remove(&id) else {
            return;
        };
        for endpoint in endpoints.iter() {
            if let Some(naming) = self.by_endpoint.get_mut(endpoint) {
                naming.retain(|(other, _)| *other != id);
                if naming.is_empty() {
                    self.by_endpoint.remove(endpoint);
                }
            }
            self.tell(endpoint);
        }
    }

    /// Whether a live subscription names `endpoint` now.
    fn needed(&self, endpoint: &EndpointName) -> bool {
        self.by_endpoint
            .get(endpoint)
            .is_some_and(|naming| naming.iter().any(|(_, who)| who.is_alive()))
    }

    /// Whether `endpoint` is needed; its watcher's view is brought up to date without a
    /// message (it asked).
    pub(crate) fn check(&mut self, endpoint: &EndpointName) -> bool {
        let needed = self.needed(endpoint);
        if let Some(watcher) = self.watchers.get_mut(endpoint) {
            watcher.told = needed;
        }
        needed
    }

    /// Tells `endpoint`'s watcher, if it has one and the answer changed.
    fn tell(&mut self, endpoint: &EndpointName) {
        let needed = self.needed(endpoint);
        if let Some(watcher) = self.watchers.get_mut(endpoint)
            && watcher.told != needed
        {
            watcher.told = needed;
            watcher.recipient.do_send(DemandChanged { needed });
        }
    }

    /// `recipient` watches `endpoint` from now on, in place of any earlier watcher; returns
    /// its registration and whether the endpoint is needed now.
    pub(crate) fn watch(
        &mut self,
        endpoint: EndpointName,
        recipient: Recipient<DemandChanged>,
    ) -> (DemandWatch, bool) {
        self.next_watch += 1;
        let watch = DemandWatch(self.next_watch);
        let told = self.needed(&endpoint);
        self.watchers.insert(
            endpoint,
            Watcher {
                watch,
                recipient,
                told,
            },
        );
        (watch, told)
    }

    /// Ends `watch` of `endpoint`; a later watcher of the same endpoint is kept.
    pub(crate) fn unwatch(&mut self, endpoint: &EndpointName, watch: DemandWatch) {
        if self
            .watchers
            .get(endpoint)
            .is_some_and(|watcher| watcher.watch == watch)
        {
            self.watchers.remove(endpoint);
        }
    }
}
