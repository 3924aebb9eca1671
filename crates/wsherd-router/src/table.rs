//! The immutable route table that connections read on every message.

use std::any::{Any, TypeId};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::de::DeserializeOwned;
use wsherd_protocol::{
    DecodeError, DecodeStage, EndpointName, KindRule, decode, excerpt, same_kind, validate_text,
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
        let Some(first) = self.first_wanting(endpoint) else {
            return RouteOutcome::NotWanted;
        };
        match decode::<T>(kind, text) {
            Ok(value) => {
                self.deliver_from(first, endpoint, value, report);
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
        let Some(first) = self.group.first_wanting(endpoint) else {
            return RouteOutcome::NotWanted;
        };
        let raw = RawMessage {
            kind: self.kind.clone().unwrap_or_else(|| Arc::from(kind)),
            text: Arc::from(text),
            received_at: std::time::SystemTime::now(),
        };
        self.group.deliver_from(first, endpoint, raw, report);
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
        self.find(kind).1
    }

    /// The routes of `kind`, and where they are in the list while there is one.
    fn find(&self, kind: &str) -> (Option<usize>, &[Arc<dyn JsonRoute>]) {
        if !self.many.is_empty() {
            return (None, self.many.get(kind).map_or(&[][..], Vec::as_slice));
        }
        match self.few.iter().position(|(k, _)| same_kind(k, kind)) {
            Some(at) => (
                Some(at),
                self.few.get(at).map_or(&[][..], |(_, r)| r.as_slice()),
            ),
            None => (None, &[]),
        }
    }

    /// The routes at `at` in the list (none past its end, or once a map took over).
    fn at(&self, at: usize) -> &[Arc<dyn JsonRoute>] {
        if !self.many.is_empty() {
            return &[];
        }
        self.few
            .get(at)
            .map_or(&[][..], |(_, routes)| routes.as_slice())
    }

    fn kinds(&self) -> impl Iterator<Item = &str> {
        self.few
            .iter()
            .map(|(k, _)| &**k)
            .chain(self.many.keys().map(|k| &**k))
    }
}

/// A stamp no other published table has.
pub(crate) fn next_stamp() -> u64 {
    static STAMPS: AtomicU64 = AtomicU64::new(1);
    STAMPS.fetch_add(1, Ordering::Relaxed)
}

/// The last kind one report (one connection) routed: consecutive messages of a feed nearly
/// always share their kind, and a message that starts with the very bytes the last one's kind
/// was read from (`{"type":"trade"`, closing quote included) has that kind. Checking that
/// prefix costs a third of reading the kind and looking its routes up again.
#[derive(Default)]
pub(crate) struct KindMemo {
    /// The stamp of the table the routes' place was found in (never 0, a default table's).
    stamp: u64,
    /// `{"field":"kind"`; empty when nothing is remembered.
    prefix: String,
    /// Where the kind starts in `prefix`.
    kind_at: usize,
    /// The place of the kind's routes in the table's list.
    routes_at: usize,
}

impl KindMemo {
    /// The kind of `text` and the place of its routes, when `text` starts as the remembered
    /// message did, under the same single-field `rule`, in the table of `stamp`.
    fn recall<'t>(&self, stamp: u64, rule: &KindRule, text: &'t str) -> Option<(&'t str, usize)> {
        if self.prefix.is_empty() || self.stamp != stamp {
            return None;
        }
        let KindRule::Path(segments) = rule else {
            return None;
        };
        let [field] = &segments[..] else {
            return None;
        };
        let remembered_field = self.prefix.get(2..self.kind_at.checked_sub(3)?)?;
        if !same_kind(remembered_field, field)
            || !same_kind(text.get(..self.prefix.len())?, &self.prefix)
        {
            return None;
        }
        let kind = text.get(self.kind_at..self.prefix.len() - 1)?;
        Some((kind, self.routes_at))
    }

    /// Remembers that `text`'s kind, read from its compact leading `field` (`kind` borrows
    /// from `text` there), has its routes at `routes_at` in table `stamp`.
    fn remember(&mut self, stamp: u64, field: &str, text: &str, kind: &str, routes_at: usize) {
        let kind_at = (kind.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
        let end = kind_at + kind.len() + 1;
        // Only the compact form `{"field":"kind"` is remembered, checked byte for byte.
        let compact = stamp != 0
            && kind_at == 2 + field.len() + 3
            && text
                .get(2..2 + field.len())
                .is_some_and(|f| same_kind(f, field))
            && text.as_bytes().get(..2) == Some(b"{\"")
            && text.as_bytes().get(kind_at - 3..kind_at) == Some(b"\":\"")
            && text.as_bytes().get(end - 1) == Some(&b'"');
        match text.get(..end) {
            Some(prefix) if compact && end <= 64 => {
                self.prefix.clear();
                self.prefix.push_str(prefix);
                self.stamp = stamp;
                self.kind_at = kind_at;
                self.routes_at = routes_at;
            }
            _ => self.prefix.clear(),
        }
    }
}

/// A snapshot of every subscription, published by the [`Router`](crate::Router) on each change.
#[derive(Default)]
pub struct RouteTable {
    pub(crate) version: u64,
    /// Unique in the process (versions are only unique per router): what a report remembers
    /// a place in this table's lists by.
    pub(crate) stamp: u64,
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
        let recalled = report
            .last_kind
            .as_deref()
            .and_then(|memo| memo.recall(self.stamp, rule, text));
        let (kind, by_kind) = match recalled {
            Some((kind, at)) => (Some(Cow::Borrowed(kind)), self.kinds.at(at)),
            None => {
                let kind = match rule.extract(text) {
                    Ok(kind) => kind,
                    Err(error) => {
                        let error = DecodeError::new(DecodeStage::Json, error.to_string(), payload);
                        return self.reject(endpoint, None, error, report);
                    }
                };
                let (at, by_kind) = kind
                    .as_deref()
                    .map_or((None, &[][..]), |k| self.kinds.find(k));
                let field = match rule {
                    KindRule::Path(segments) => match &segments[..] {
                        [field] => Some(field.as_str()),
                        _ => None,
                    },
                    KindRule::Custom(_) => None,
                };
                match (&kind, at, field) {
                    (Some(Cow::Borrowed(borrowed)), Some(at), Some(field)) => report
                        .last_kind
                        .get_or_insert_with(Box::default)
                        .remember(self.stamp, field, text, borrowed, at),
                    _ => {
                        if let Some(memo) = &mut report.last_kind {
                            memo.prefix.clear();
                        }
                    }
                }
                (kind, by_kind)
            }
        };
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
