//! The immutable route table that connections read on every message.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use wsherd_protocol::{
    DecodeError, DecodeStage, EndpointName, KindRule, decode, excerpt, validate_text,
};

use crate::delivery::{Binary, DeadLetter, DeadLetterReason, RawMessage};
use crate::dispatch::DispatchReport;
use crate::subscription::Group;

pub(crate) enum RouteOutcome {
    NotWanted,
    Delivered,
    Rejected(DecodeError),
}

/// One subscribed Rust type on a JSON route: decodes a message once for all its subscribers.
pub(crate) trait JsonRoute: Send + Sync {
    fn route(
        &self,
        endpoint: &EndpointName,
        kind: &str,
        text: &str,
        report: &mut DispatchReport,
    ) -> RouteOutcome;
}

impl<T: DeserializeOwned + Send + Sync + 'static> JsonRoute for Group<T> {
    fn route(
        &self,
        endpoint: &EndpointName,
        kind: &str,
        text: &str,
        report: &mut DispatchReport,
    ) -> RouteOutcome {
        if !self.wanted_by_any(endpoint) {
            return RouteOutcome::NotWanted;
        }
        match decode::<T>(kind, text) {
            Ok(value) => {
                self.deliver(endpoint, value, report);
                RouteOutcome::Delivered
            }
            Err(error) => RouteOutcome::Rejected(error),
        }
    }
}

/// The raw subscribers of one kind: the text, copied once, shared by all of them.
pub(crate) struct RawRoute {
    /// The kind it is subscribed to (shared by its messages); `None` for every kind.
    pub(crate) kind: Option<Arc<str>>,
    pub(crate) group: Group<RawMessage>,
}

impl JsonRoute for RawRoute {
    fn route(
        &self,
        endpoint: &EndpointName,
        kind: &str,
        text: &str,
        report: &mut DispatchReport,
    ) -> RouteOutcome {
        if !self.group.wanted_by_any(endpoint) {
            return RouteOutcome::NotWanted;
        }
        let raw = RawMessage {
            kind: self.kind.clone().unwrap_or_else(|| Arc::from(kind)),
            text: Arc::from(text),
            received_at: std::time::SystemTime::now(),
        };
        self.group.deliver(endpoint, raw, report);
        RouteOutcome::Delivered
    }
}

/// The routes of one kind, in subscription order.
type Routes = Vec<Arc<dyn JsonRoute>>;

/// Subscribed kinds scanned in a list up to this many; a map beyond.
const FEW_KINDS: usize = 16;

/// The routes of each subscribed kind, looked up once per message.
///
/// Hashing a kind (SipHash) costs more than comparing it with a handful of short strings, and
/// most connections route only a few kinds; a map takes over when there are many.
#[derive(Default)]
pub(crate) struct KindIndex {
    few: Vec<(Box<str>, Routes)>,
    many: HashMap<Box<str>, Routes>,
}

impl KindIndex {
    pub(crate) fn insert(&mut self, kind: &str, route: Arc<dyn JsonRoute>) {
        if !self.many.is_empty() {
            return self.many.entry(kind.into()).or_default().push(route);
        }
        if let Some((_, routes)) = self.few.iter_mut().find(|(k, _)| &**k == kind) {
            return routes.push(route);
        }
        if self.few.len() < FEW_KINDS {
            self.few.push((kind.into(), vec![route]));
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(kind.into(), vec![route]);
        }
    }

    pub(crate) fn get(&self, kind: &str) -> &[Arc<dyn JsonRoute>] {
        let found = if self.many.is_empty() {
            self.few
                .iter()
                .find(|(k, _)| k.len() == kind.len() && &**k == kind)
                .map(|(_, routes)| routes)
        } else {
            self.many.get(kind)
        };
        found.map_or(&[][..], Vec::as_slice)
    }

    fn kinds(&self) -> impl Iterator<Item = &str> {
        self.few
            .iter()
            .map(|(k, _)| &**k)
            .chain(self.many.keys().map(|k| &**k))
    }
}

/// A snapshot of every subscription, published by the [`Router`](crate::Router) on each change.
#[derive(Default)]
pub struct RouteTable {
    pub(crate) version: u64,
    pub(crate) kinds: KindIndex,
    pub(crate) any_kind: Vec<Arc<dyn JsonRoute>>,
    pub(crate) events: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl RouteTable {
    /// The version this snapshot was published as.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Routes one text message: UTF-8 check, kind extraction, one decode per subscribed type,
    /// delivery; anything undeliverable becomes a [`DeadLetter`] (text that is not UTF-8
    /// included).
    pub fn route_text(
        &self,
        endpoint: &EndpointName,
        rule: &KindRule,
        payload: &[u8],
        report: &mut DispatchReport,
    ) {
        match validate_text(payload) {
            Ok(text) => self.route_str(endpoint, rule, text, report),
            Err(error) => self.reject(endpoint, None, error, report),
        }
    }

    /// Routes one text message already known to be UTF-8, as [`RouteTable::route_text`] does
    /// after its check: for a caller that validated it anyway (a connection must, to fail on
    /// invalid text), so no message is validated twice.
    pub fn route_str(
        &self,
        endpoint: &EndpointName,
        rule: &KindRule,
        text: &str,
        report: &mut DispatchReport,
    ) {
        let payload = text.as_bytes();
        let kind = match rule.extract(text) {
            Ok(kind) => kind,
            Err(error) => {
                let error = DecodeError::new(DecodeStage::Json, error.to_string(), payload);
                return self.reject(endpoint, None, error, report);
            }
        };
        let by_kind = kind.as_deref().map_or(&[][..], |kind| self.kinds.get(kind));
        let mut delivered = false;
        let mut rejected = false;
        for route in by_kind.iter().chain(&self.any_kind) {
            match route.route(endpoint, kind.as_deref().unwrap_or(""), text, report) {
                RouteOutcome::NotWanted => {}
                RouteOutcome::Delivered => delivered = true,
                RouteOutcome::Rejected(error) => {
                    rejected = true;
                    self.reject(endpoint, kind.as_deref(), error, report);
                }
            }
        }
        if delivered || rejected {
            return;
        }
        match kind {
            None => {
                let error = DecodeError::new(
                    DecodeStage::MissingKind,
                    format!("no kind at {rule:?}"),
                    payload,
                );
                self.reject(endpoint, None, error, report);
            }
            Some(kind) => self.unrouted(endpoint, Some(kind.into_owned()), payload, report),
        }
    }

    /// Routes one text message (known to be UTF-8) that wsherd consumed itself, such as a
    /// subscription acknowledgement awaited before going live, to whoever subscribed to its
    /// kind or to every kind. Nobody wanting it is fine: it never becomes a dead letter, and text
    /// that is not JSON (a plain `"ack"`) is simply not routed. Only a
    /// subscriber's type that fails to decode it is reported, as anywhere. Returns whether it
    /// was delivered.
    pub fn route_wanted(
        &self,
        endpoint: &EndpointName,
        rule: &KindRule,
        text: &str,
        report: &mut DispatchReport,
    ) -> bool {
        let Ok(kind) = rule.extract(text) else {
            return false; // not JSON: a plain-text reply, nobody's to decode
        };
        let by_kind = kind.as_deref().map_or(&[][..], |kind| self.kinds.get(kind));
        let mut delivered = false;
        for route in by_kind.iter().chain(&self.any_kind) {
            match route.route(endpoint, kind.as_deref().unwrap_or(""), text, report) {
                RouteOutcome::NotWanted => {}
                RouteOutcome::Delivered => delivered = true,
                RouteOutcome::Rejected(error) => {
                    self.reject(endpoint, kind.as_deref(), error, report)
                }
            }
        }
        delivered
    }

    /// Routes one binary message to [`Binary`] subscribers, or to dead letters.
    pub fn route_binary(
        &self,
        endpoint: &EndpointName,
        payload: Bytes,
        report: &mut DispatchReport,
    ) {
        if !self.publish(endpoint, Binary(payload.clone()), report) {
            self.unrouted(endpoint, None, &payload, report);
        }
    }

    /// Delivers an event (a state change, a dead letter, anything `'static`) to its subscribers.
    /// Returns whether anyone wanted it.
    pub fn publish<E: Send + Sync + 'static>(
        &self,
        endpoint: &EndpointName,
        event: E,
        report: &mut DispatchReport,
    ) -> bool {
        self.event_group::<E>()
            .is_some_and(|group| group.deliver(endpoint, event, report))
    }

    /// Delivers an event as [`RouteTable::publish`] does, but as a last word: to every
    /// [`Overflow::Backpressure`](crate::Overflow) subscriber it is sent with a reply and held
    /// in `report` ([`DispatchReport::held`]) until that subscriber's handler has run, so that
    /// whoever drives the held deliveries to the end ([`DispatchReport::poll_unblocked`]) knows
    /// it was handled, not just queued. An [`Overflow::Drop`](crate::Overflow) subscriber gets
    /// it as usual, into its mailbox or dropped when full. For the few events after which an
    /// owner reports that it is done (a socket's `Closed`, an endpoint's `Stopped`).
    pub fn publish_confirmed<E: Send + Sync + 'static>(
        &self,
        endpoint: &EndpointName,
        event: E,
        report: &mut DispatchReport,
    ) -> bool {
        report.confirm = true;
        let wanted = self.publish(endpoint, event, report);
        report.confirm = false;
        wanted
    }

    /// Whether anyone subscribed to events of type `E` (from any endpoint).
    pub fn has_event_subscribers<E: Send + Sync + 'static>(&self) -> bool {
        self.event_group::<E>().is_some()
    }

    fn event_group<E: Send + Sync + 'static>(&self) -> Option<&Group<E>> {
        self.events
            .get(&TypeId::of::<E>())
            .and_then(|group| group.downcast_ref::<Group<E>>())
    }

    fn reject(
        &self,
        endpoint: &EndpointName,
        kind: Option<&str>,
        error: DecodeError,
        report: &mut DispatchReport,
    ) {
        report.decode_failures += 1;
        let letter = DeadLetter {
            kind: kind.map(str::to_owned),
            reason: DeadLetterReason::Rejected(error),
        };
        self.publish(endpoint, letter, report);
    }

    fn unrouted(
        &self,
        endpoint: &EndpointName,
        kind: Option<String>,
        payload: &[u8],
        report: &mut DispatchReport,
    ) {
        report.unrouted += 1;
        // The excerpt costs an allocation: build it only for someone who listens.
        if let Some(group) = self.event_group::<DeadLetter>() {
            let letter = DeadLetter {
                kind,
                reason: DeadLetterReason::NoSubscriber {
                    excerpt: excerpt(payload),
                    payload_len: payload.len(),
                },
            };
            group.deliver(endpoint, letter, report);
        }
    }
}

impl std::fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<&str> = self.kinds.kinds().collect();
        kinds.sort_unstable();
        f.debug_struct("RouteTable")
            .field("version", &self.version)
            .field("kinds", &kinds)
            .field("any_kind", &self.any_kind.len())
            .field("events", &self.events.len())
            .finish()
    }
}
