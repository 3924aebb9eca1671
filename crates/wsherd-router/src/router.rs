//! The router: owns subscriptions and publishes route tables.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use actix::{Actor, AsyncContext, Context, Handler, Recipient};
use serde::de::DeserializeOwned;
use wsherd_protocol::{EndpointName, Inbound};

use crate::delivery::{Batch, Delivery, RawMessage};
use crate::demand::{Demand, DemandChanged, DemandWatch, Demander};
use crate::dispatch::{
    Budgeted, DEFAULT_INBOX_CAPACITY, Inbox, InboxSender, Sink, Subscriber, SubscriptionId,
};
use crate::subscription::{Group, SubscribeOptions};
use crate::table::{JsonRoute, RawRoute, RouteTable};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RouteKey {
    Kind(Box<str>, TypeId),
    AnyKind(TypeId),
    Event(TypeId),
    Raw(Box<str>),
    /// Raw text of every JSON message, whatever its kind.
    RawAny,
}

/// One key per distinct kind of `kinds`, for type `T`.
fn kind_keys<T: 'static>(kinds: &[&str]) -> Vec<RouteKey> {
    let mut keys: Vec<RouteKey> = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let key = RouteKey::Kind((*kind).into(), TypeId::of::<T>());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Type-erased subscribers of one Rust type on one route, as the router keeps them.
trait Entry: Send {
    fn remove(&mut self, id: SubscriptionId) -> bool;
    fn is_empty(&self) -> bool;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    fn publish_into(&self, key: &RouteKey, table: &mut RouteTable);
}

struct JsonEntry<T: Send + Sync + 'static>(Group<T>);
struct EventEntry<T: Send + Sync + 'static>(Group<T>);
struct RawEntry(Group<RawMessage>);

fn remove_from<T: Send + Sync + 'static>(group: &mut Group<T>, id: SubscriptionId) -> bool {
    let before = group.subscribers.len();
    group.subscribers.retain(|s| s.id != id);
    group.subscribers.len() != before
}

impl<T: DeserializeOwned + Send + Sync + 'static> Entry for JsonEntry<T> {
    fn remove(&mut self, id: SubscriptionId) -> bool {
        remove_from(&mut self.0, id)
    }
    fn is_empty(&self) -> bool {
        self.0.subscribers.is_empty()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn publish_into(&self, key: &RouteKey, table: &mut RouteTable) {
        let route: Arc<dyn JsonRoute> = Arc::new(self.0.clone());
        match key {
            RouteKey::Kind(kind, _) | RouteKey::Raw(kind) => table.kinds.insert(kind, route),
            RouteKey::AnyKind(_) | RouteKey::Event(_) | RouteKey::RawAny => {
                table.any_kind.push(route)
            }
        }
    }
}

impl Entry for RawEntry {
    fn remove(&mut self, id: SubscriptionId) -> bool {
        remove_from(&mut self.0, id)
    }
    fn is_empty(&self) -> bool {
        self.0.subscribers.is_empty()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn publish_into(&self, key: &RouteKey, table: &mut RouteTable) {
        match key {
            RouteKey::Raw(kind) => {
                let route = RawRoute {
                    kind: Some(Arc::from(&**kind)),
                    group: self.0.clone(),
                };
                table.kinds.insert(kind, Arc::new(route));
            }
            RouteKey::RawAny => {
                let route = RawRoute {
                    kind: None,
                    group: self.0.clone(),
                };
                table.any_kind.push(Arc::new(route));
            }
            _ => {}
        }
    }
}

impl<T: Send + Sync + 'static> Entry for EventEntry<T> {
    fn remove(&mut self, id: SubscriptionId) -> bool {
        remove_from(&mut self.0, id)
    }
    fn is_empty(&self) -> bool {
        self.0.subscribers.is_empty()
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn publish_into(&self, _: &RouteKey, table: &mut RouteTable) {
        table
            .events
            .insert(TypeId::of::<T>(), Arc::new(self.0.clone()));
    }
}

#[derive(Default)]
struct State {
    next_id: u64,
    version: u64,
    entries: BTreeMap<RouteKey, Box<dyn Entry>>,
    /// The routes of each subscription (a type of several kinds has one per kind).
    keys: HashMap<SubscriptionId, Vec<RouteKey>>,
    demand: Demand,
}

struct Inner {
    state: Mutex<State>,
    version: AtomicU64,
    table: RwLock<Arc<RouteTable>>,
}

/// Owns subscriptions and publishes the route table every connection reads.
///
/// The router is not an actor: subscribing is a short critical section that rebuilds an
/// immutable [`RouteTable`], and connections deliver from their cached snapshot, so no message
/// ever waits in a router mailbox. Clone it freely; clones share the subscriptions.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl Default for Router {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("version", &self.inner.version.load(Ordering::Acquire))
            .field("subscriptions", &self.subscription_count())
            .finish()
    }
}

impl Router {
    /// A router with no subscriptions.
    pub fn new() -> Self {
        Router {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                version: AtomicU64::new(0),
                table: RwLock::new(Arc::new(RouteTable::default())),
            }),
        }
    }

    /// Delivers every message of the kinds `T::KINDS` (usually the one kind `T::KIND`) to
    /// `recipient`, decoded as `T`.
    pub fn subscribe<T: Inbound>(&self, recipient: Recipient<Delivery<T>>) -> SubscriptionId {
        self.subscribe_with(recipient, SubscribeOptions::new())
    }

    /// Delivers every message of the kinds `T::KINDS` to `recipient`, decoded as `T`, per
    /// `options`. Each message is decoded once, whichever of the kinds it has.
    pub fn subscribe_with<T: Inbound>(
        &self,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_json(kind_keys::<T>(T::KINDS), Sink::Each(recipient), options)
    }

    /// Delivers the messages of the kinds `T::KINDS`, decoded as `T`, in [`Batch`]es; see
    /// [`Router::subscribe_kind_batched`].
    pub fn subscribe_batched<T: Inbound>(
        &self,
        recipient: Recipient<Batch<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_json(kind_keys::<T>(T::KINDS), Sink::Batched(recipient), options)
    }

    /// Delivers every message of the kinds `T::KINDS`, decoded as `T`, to the actor whose
    /// context `ctx` is, through an inbox that context drains: the actor's
    /// `Handler<Delivery<T>>` runs once per message, as with [`Router::subscribe`], without a
    /// mailbox envelope per message. Call it from the actor's `started` (or a handler).
    ///
    /// A connection hands each read turn's deliveries for the actor to its inbox as one
    /// parcel, from whichever thread it runs on, and the actor's context hands them to the
    /// handler in order, up to 256 per poll before its mailbox gets a turn. The inbox holds up
    /// to [`SubscribeOptions::inbox_capacity`] deliveries; beyond that it is full and
    /// `options`' overflow policy applies, as for a full mailbox. Deliveries through the inbox
    /// keep their order among themselves, but not with another inbox subscription of the same
    /// actor nor with the messages of its mailbox (its other subscriptions, state events, its
    /// own messages): do not rely on an order across them.
    /// The subscription ends, like any other, when the actor stops or with
    /// [`Router::unsubscribe`]; the arbiter options of `options` do not apply (nothing is
    /// relayed).
    pub fn subscribe_in<T: Inbound, A>(
        &self,
        ctx: &mut Context<A>,
        options: SubscribeOptions,
    ) -> SubscriptionId
    where
        A: Actor<Context = Context<A>> + Handler<Delivery<T>>,
    {
        self.subscribe_kinds_in(kind_keys::<T>(T::KINDS), ctx, options)
    }

    /// Delivers every message of kind `kind`, decoded as `T`, through the actor's inbox; see
    /// [`Router::subscribe_in`].
    pub fn subscribe_kind_in<T, A>(
        &self,
        kind: &str,
        ctx: &mut Context<A>,
        options: SubscribeOptions,
    ) -> SubscriptionId
    where
        T: DeserializeOwned + Send + Sync + 'static,
        A: Actor<Context = Context<A>> + Handler<Delivery<T>>,
    {
        self.subscribe_kinds_in(kind_keys::<T>(&[kind]), ctx, options)
    }

    fn subscribe_kinds_in<T, A>(
        &self,
        keys: Vec<RouteKey>,
        ctx: &mut Context<A>,
        options: SubscribeOptions,
    ) -> SubscriptionId
    where
        T: DeserializeOwned + Send + Sync + 'static,
        A: Actor<Context = Context<A>> + Handler<Delivery<T>>,
    {
        let capacity = options.inbox_capacity.unwrap_or(DEFAULT_INBOX_CAPACITY);
        let (inbox, drain) = Inbox::new(capacity);
        // A stopped actor's context drops the stream at once: the inbox is closed then, and
        // the subscription is forgotten at its first delivery.
        ctx.add_message_stream(Budgeted::new(drain));
        self.add_json(keys, Sink::Inbox(InboxSender(inbox)), options)
    }

    /// Delivers every message of kind `kind` to `recipient`, decoded as `T`, per `options`.
    pub fn subscribe_kind<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        kind: &str,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_json(kind_keys::<T>(&[kind]), Sink::Each(recipient), options)
    }

    /// Delivers messages of kind `kind`, decoded as `T`, in [`Batch`]es: a connection gathers
    /// deliveries while its socket has frames to read and sends them when the socket has
    /// nothing more for now or a batch holds 256. One message per batch is the cheapest way to
    /// take a busy feed, on any arbiter; a plain subscriber on another arbiter is relayed in
    /// parcels per turn anyway (see [`SubscribeOptions`]).
    pub fn subscribe_kind_batched<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        kind: &str,
        recipient: Recipient<Batch<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_json(kind_keys::<T>(&[kind]), Sink::Batched(recipient), options)
    }

    /// Delivers every JSON text message, whatever its kind (or none), decoded as `T`.
    ///
    /// With `T = serde_json::Value` this sees the whole stream. Messages it receives are not
    /// dead letters, even when no kind subscriber wanted them.
    pub fn subscribe_all<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_json(
            vec![RouteKey::AnyKind(TypeId::of::<T>())],
            Sink::Each(recipient),
            options,
        )
    }

    /// Delivers the text of every message of kind `kind` as a [`RawMessage`], undecoded,
    /// with the time it was received. Messages it receives are not dead letters.
    pub fn subscribe_raw(
        &self,
        kind: &str,
        recipient: Recipient<Delivery<RawMessage>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_raw(RouteKey::Raw(kind.into()), recipient, options)
    }

    /// Delivers the text of every JSON text message, whatever its kind (`""` for a message
    /// without one), undecoded, as a [`RawMessage`]: for relaying messages on as they came.
    /// Messages it receives are not dead letters.
    pub fn subscribe_raw_all(
        &self,
        recipient: Recipient<Delivery<RawMessage>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add_raw(RouteKey::RawAny, recipient, options)
    }

    fn add_raw(
        &self,
        key: RouteKey,
        recipient: Recipient<Delivery<RawMessage>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add(
            vec![key],
            |group| Box::new(RawEntry(group)),
            |entry| {
                entry
                    .as_any_mut()
                    .downcast_mut::<RawEntry>()
                    .map(|e| &mut e.0)
            },
            Sink::Each(recipient),
            options,
        )
    }

    /// Delivers events of type `E`: [`DeadLetter`](crate::DeadLetter),
    /// [`Binary`](crate::Binary), a connection's state events, or anything published with
    /// [`RouteTable::publish`].
    pub fn subscribe_event<E: Send + Sync + 'static>(
        &self,
        recipient: Recipient<Delivery<E>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add(
            vec![RouteKey::Event(TypeId::of::<E>())],
            |group| Box::new(EventEntry::<E>(group)),
            |entry| {
                entry
                    .as_any_mut()
                    .downcast_mut::<EventEntry<E>>()
                    .map(|e| &mut e.0)
            },
            Sink::Each(recipient),
            options,
        )
    }

    /// Ends a subscription; returns whether it existed.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut state = self.lock();
        let Some(keys) = state.keys.remove(&id) else {
            return false;
        };
        state.demand.remove(id);
        for key in keys {
            let now_empty = match state.entries.get_mut(&key) {
                Some(entry) => {
                    entry.remove(id);
                    entry.is_empty()
                }
                None => false,
            };
            if now_empty {
                state.entries.remove(&key);
            }
        }
        self.publish(&mut state);
        true
    }

    /// Whether a live subscription names `endpoint` (see [`SubscribeOptions::passive`]).
    pub fn is_demanded(&self, endpoint: &EndpointName) -> bool {
        self.lock().demand.check(endpoint)
    }

    /// `recipient` is told, with [`DemandChanged`], each time `endpoint` becomes needed or
    /// stops being needed, in place of any earlier watcher of `endpoint`. Returns the
    /// registration (for [`Router::unwatch_demand`]) and whether it is needed now.
    pub fn watch_demand(
        &self,
        endpoint: EndpointName,
        recipient: Recipient<DemandChanged>,
    ) -> (DemandWatch, bool) {
        self.lock().demand.watch(endpoint, recipient)
    }

    /// Ends a [`Router::watch_demand`] registration (a later one of the same endpoint stays).
    pub fn unwatch_demand(&self, endpoint: &EndpointName, watch: DemandWatch) {
        self.lock().demand.unwatch(endpoint, watch);
    }

    /// Whether a subscription other than those in `besides` takes messages (typed or raw,
    /// of any kind; events do not count): a cluster asks this before it takes other members'
    /// messages off the wire for nobody.
    pub fn wants_messages_besides(&self, besides: &[SubscriptionId]) -> bool {
        self.lock().keys.iter().any(|(id, keys)| {
            !besides.contains(id) && keys.iter().any(|key| !matches!(key, RouteKey::Event(_)))
        })
    }

    /// How many subscriptions exist.
    pub fn subscription_count(&self) -> usize {
        self.lock().keys.len()
    }

    /// The current route table.
    pub fn table(&self) -> Arc<RouteTable> {
        Arc::clone(
            &self
                .inner
                .table
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// A cache of the route table for one connection: it re-reads the table only when the
    /// version moved, so the per-message cost is one atomic load.
    pub fn cache(&self) -> RouteCache {
        RouteCache {
            router: self.clone(),
            table: self.table(),
        }
    }

    fn add_json<T: DeserializeOwned + Send + Sync + 'static>(
        &self,
        keys: Vec<RouteKey>,
        sink: Sink<T>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.add(
            keys,
            |group| Box::new(JsonEntry::<T>(group)),
            |entry| {
                entry
                    .as_any_mut()
                    .downcast_mut::<JsonEntry<T>>()
                    .map(|e| &mut e.0)
            },
            sink,
            options,
        )
    }

    /// Adds one subscriber under every key of `keys` (one per kind it is decoded from).
    fn add<T: Send + Sync + 'static>(
        &self,
        keys: Vec<RouteKey>,
        make: impl Fn(Group<T>) -> Box<dyn Entry>,
        group_of: impl Fn(&mut Box<dyn Entry>) -> Option<&mut Group<T>>,
        sink: Sink<T>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        // Where the subscriber lives is the calling thread's business: found before the lock.
        let home = options.home.resolve();
        let mut state = self.lock();
        state.next_id += 1;
        let id = SubscriptionId(state.next_id);
        let names = options.endpoints.clone().filter(|_| !options.passive);
        let subscriber = Arc::new(Subscriber::new(
            id,
            sink,
            options.endpoints,
            options.overflow,
            home,
        ));
        if let Some(names) = names {
            let who: Arc<dyn Demander> = subscriber.clone();
            state.demand.add(id, names, who);
        }
        for key in &keys {
            let entry = state.entries.entry(key.clone()).or_insert_with(|| {
                make(Group {
                    subscribers: Vec::new(),
                })
            });
            match group_of(entry) {
                Some(group) => group.subscribers.push(Arc::clone(&subscriber)),
                // The key carries the TypeId of `T`, so the entry is always of `T`; were it
                // ever not, a fresh entry is better than a lost subscription or a panic.
                None => {
                    *entry = make(Group {
                        subscribers: vec![Arc::clone(&subscriber)],
                    })
                }
            }
        }
        state.keys.insert(id, keys);
        self.publish(&mut state);
        id
    }

    fn publish(&self, state: &mut State) {
        state.version += 1;
        let mut table = RouteTable {
            version: state.version,
            stamp: crate::table::next_stamp(),
            ..RouteTable::default()
        };
        for (key, entry) in &state.entries {
            entry.publish_into(key, &mut table);
        }
        *self
            .inner
            .table
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(table);
        self.inner.version.store(state.version, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's view of the route table; see [`Router::cache`].
#[derive(Debug)]
pub struct RouteCache {
    router: Router,
    table: Arc<RouteTable>,
}

impl RouteCache {
    /// The newest route table, re-read only when a subscription changed.
    pub fn current(&mut self) -> &Arc<RouteTable> {
        if self.router.inner.version.load(Ordering::Acquire) != self.table.version {
            self.table = self.router.table();
        }
        &self.table
    }

    /// The router this cache reads from.
    pub fn router(&self) -> &Router {
        &self.router
    }
}
