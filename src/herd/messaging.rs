//! Traffic through the herd: sends (plain, JSON, remembered for every reconnect), on-open
//! hooks, and subscriptions to what the endpoints deliver.

use actix::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use wsherd_protocol::{Inbound, Outbound};
use wsherd_router::{Delivery, SubscribeOptions, SubscriptionId};
use wsherd_supervisor::{
    AddOnOpenHook, OnOpenHook, Rejected, Remember, Submit, Submitted, Supervisor,
};

use super::Herd;
use super::adapters::{ClosureSubscriber, DeliveryStream, STREAM_CAPACITY, StreamFeeder};
use crate::error::{HerdError, SendError};
use crate::events::Event;

impl Herd {
    /// Sends `message` to endpoint `name`: into the socket's write buffer at once
    /// ([`Submitted::Writing`]) when the endpoint is live and nothing waits, else into its
    /// queue ([`Submitted::Queued`], per its queue policy) and out, in order, after the on-open
    /// messages of the next open. What each outcome promises: `docs/guarantees.md`.
    ///
    /// In a cluster, an endpoint another member runs is sent to through its owner, and the
    /// owner's outcome is the answer ([`SendError::NoOwner`] while nobody holds it).
    pub async fn send(
        &self,
        name: &str,
        message: impl Into<Outbound>,
    ) -> Result<Submitted, SendError> {
        let message = message.into();
        if self.supervisor(name).is_err()
            && let Some(remote) = self.remote_for(name)
        {
            return remote.send(name, message).await;
        }
        self.submit(name, message, Submit).await
    }

    /// Hands `message` to endpoint `name`'s supervisor, wrapped by `wrap`.
    async fn submit<M, R>(
        &self,
        name: &str,
        message: Outbound,
        wrap: fn(Outbound) -> M,
    ) -> Result<R, SendError>
    where
        M: actix::Message<Result = Result<R, Rejected>> + Send + 'static,
        R: Send + 'static,
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

    /// Keeps `message` for endpoint `name` and writes it after every open (after the
    /// configured on-open messages), and on the open socket now if there is one: a
    /// subscription made at run time. It is written once per socket, never also queued.
    /// Refused when the endpoint failed or is stopping; kept across [`Herd::restart`] and
    /// [`Herd::reload`].
    ///
    /// In a cluster, the message is kept for the endpoint wherever it runs, and every later
    /// owner writes it after each open too.
    pub async fn remember(
        &self,
        name: &str,
        message: impl Into<Outbound>,
    ) -> Result<(), SendError> {
        let message = message.into();
        if let Some(remote) = self.remote_for(name) {
            return remote.remember(name, message).await;
        }
        self.submit(name, message, Remember).await
    }

    /// [`Herd::remember`] on this process's own endpoint only: what a cluster member does once
    /// the cluster has kept the message.
    pub async fn remember_here(
        &self,
        name: &str,
        message: impl Into<Outbound>,
    ) -> Result<(), SendError> {
        self.submit(name, message.into(), Remember).await
    }

    /// Asks `hook` for messages to send after every open of endpoint `name`.
    pub fn on_open_hook(&self, name: &str, hook: OnOpenHook) -> Result<(), HerdError> {
        self.supervisor(name)?.do_send(AddOnOpenHook(hook));
        Ok(())
    }

    /// Delivers every `T` (messages of kind `T::KIND`, or of each kind in `T::KINDS`) from
    /// every endpoint to `recipient`.
    ///
    /// A subscriber on another arbiter than an endpoint gets that endpoint's messages relayed:
    /// each read turn's deliveries for its arbiter cross threads as one message. The subscriber
    /// is taken to live on the arbiter of the thread calling this, so call it from the
    /// subscriber's own arbiter (e.g. in its `started`), or name the arbiter with
    /// [`SubscribeOptions::arbiter`] and [`Herd::subscribe_with`].
    pub fn subscribe<T: Inbound>(&self, recipient: Recipient<Delivery<T>>) -> SubscriptionId {
        self.inner.router.subscribe(recipient)
    }

    /// Delivers `T` per `options` (only some endpoints, overflow policy, the subscriber's
    /// arbiter).
    pub fn subscribe_with<T: Inbound>(
        &self,
        recipient: Recipient<Delivery<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_with(recipient, options)
    }

    /// Delivers every `T` from every endpoint to the actor whose context `ctx` is, one
    /// `Handler<Delivery<T>>` call per message as with [`Herd::subscribe`], through an inbox
    /// the actor's own context drains instead of its mailbox: each read turn's deliveries
    /// arrive as one parcel, without an envelope per message. The fastest per-message
    /// delivery; call it in the actor's `started`.
    ///
    /// The inbox holds up to 1,024 deliveries ([`SubscribeOptions::inbox_capacity`]); the
    /// order of deliveries through it is kept, but not relative to the actor's mailbox (state
    /// events included) or its other inbox subscriptions. See
    /// [`Router::subscribe_in`](crate::Router::subscribe_in).
    pub fn subscribe_in<T: Inbound, A>(&self, ctx: &mut Context<A>) -> SubscriptionId
    where
        A: Actor<Context = Context<A>> + Handler<Delivery<T>>,
    {
        self.subscribe_in_with(ctx, SubscribeOptions::new())
    }

    /// Delivers `T` through the actor's inbox per `options` (only some endpoints, overflow
    /// policy, inbox capacity); see [`Herd::subscribe_in`].
    pub fn subscribe_in_with<T: Inbound, A>(
        &self,
        ctx: &mut Context<A>,
        options: SubscribeOptions,
    ) -> SubscriptionId
    where
        A: Actor<Context = Context<A>> + Handler<Delivery<T>>,
    {
        self.inner.router.subscribe_in(ctx, options)
    }

    /// Delivers every `T` in [`Batch`](crate::Batch)es: what a connection decodes while its
    /// socket has frames to read (up to 256) travels as one message. The fastest way to take a
    /// busy feed, on any arbiter.
    pub fn subscribe_batched<T: Inbound>(
        &self,
        recipient: Recipient<wsherd_router::Batch<T>>,
    ) -> SubscriptionId {
        self.subscribe_batched_with(recipient, SubscribeOptions::new())
    }

    /// Delivers `T` in [`Batch`](crate::Batch)es per `options`.
    pub fn subscribe_batched_with<T: Inbound>(
        &self,
        recipient: Recipient<wsherd_router::Batch<T>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_batched(recipient, options)
    }

    /// Delivers the text of every message of kind `kind`, undecoded, with the time it was
    /// received, as a [`RawMessage`](crate::RawMessage).
    pub fn subscribe_raw(
        &self,
        kind: &str,
        recipient: Recipient<Delivery<wsherd_router::RawMessage>>,
    ) -> SubscriptionId {
        self.inner
            .router
            .subscribe_raw(kind, recipient, SubscribeOptions::new())
    }

    /// Delivers the text of every JSON message of every endpoint, whatever its kind (`""`
    /// for one without), undecoded, as a [`RawMessage`](crate::RawMessage): for relaying
    /// messages on as they came (a gateway, a recorder). Per `options`.
    pub fn subscribe_raw_all(
        &self,
        recipient: Recipient<Delivery<wsherd_router::RawMessage>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_raw_all(recipient, options)
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
    /// [`NetworkEvent`](crate::NetworkEvent)s (the herd went offline or came back),
    /// [`DeadLetter`](crate::DeadLetter)s or [`Binary`](crate::Binary) frames (the
    /// [`Event`] types; nothing else compiles).
    pub fn subscribe_events<E: Event>(&self, recipient: Recipient<Delivery<E>>) -> SubscriptionId {
        self.subscribe_events_with(recipient, SubscribeOptions::new())
    }

    /// Delivers events per `options` (only some endpoints, overflow policy).
    pub fn subscribe_events_with<E: Event>(
        &self,
        recipient: Recipient<Delivery<E>>,
        options: SubscribeOptions,
    ) -> SubscriptionId {
        self.inner.router.subscribe_event(recipient, options)
    }

    /// Calls `call` with every `T` from every endpoint: a subscriber without an actor. It runs
    /// on the arbiter that calls `on` (in `main`, the main thread), one delivery at a time, in
    /// each endpoint's order; a slow closure is a slow subscriber (backpressure by default,
    /// see [`Overflow`](crate::Overflow)), so keep it short or hand work off. Outside a running actix
    /// system: [`HerdError::NoSystem`].
    pub fn on<T, F>(&self, call: F) -> Result<SubscriptionId, HerdError>
    where
        T: Inbound,
        F: FnMut(Delivery<T>) + 'static,
    {
        self.on_with(SubscribeOptions::new(), call)
    }

    /// [`Herd::on`] per `options`.
    pub fn on_with<T, F>(
        &self,
        options: SubscribeOptions,
        call: F,
    ) -> Result<SubscriptionId, HerdError>
    where
        T: Inbound,
        F: FnMut(Delivery<T>) + 'static,
    {
        super::in_a_system()?;
        let subscriber = ClosureSubscriber::new(call).start();
        Ok(self.subscribe_with(subscriber.recipient(), options))
    }

    /// Calls `call` with every event of type `E`, as [`Herd::on`] does for messages.
    pub fn on_event<E, F>(&self, call: F) -> Result<SubscriptionId, HerdError>
    where
        E: Event,
        F: FnMut(Delivery<E>) + 'static,
    {
        super::in_a_system()?;
        let subscriber = ClosureSubscriber::new(call).start();
        Ok(self.subscribe_events(subscriber.recipient()))
    }

    /// Every `T` from every endpoint as a bounded stream, for async code (`while let
    /// Some(trade) = trades.next().await`). It holds up to [`STREAM_CAPACITY`] deliveries;
    /// unread beyond that, it is a slow subscriber (backpressure by default). Dropping the
    /// stream ends the subscription. Outside a running actix system: [`HerdError::NoSystem`].
    pub fn stream<T: Inbound>(&self) -> Result<DeliveryStream<T>, HerdError> {
        self.stream_with(SubscribeOptions::new(), STREAM_CAPACITY)
    }

    /// [`Herd::stream`] per `options`, holding up to `capacity` deliveries (at least one, at
    /// most [`MAX_STREAM_CAPACITY`]).
    pub fn stream_with<T: Inbound>(
        &self,
        options: SubscribeOptions,
        capacity: usize,
    ) -> Result<DeliveryStream<T>, HerdError> {
        super::in_a_system()?;
        let (sender, receiver) = mpsc::channel(capacity.clamp(1, MAX_STREAM_CAPACITY));
        let feeder = StreamFeeder { sender }.start();
        let id = self.subscribe_with(feeder.recipient(), options);
        Ok(DeliveryStream::new(receiver).subscribed(self.inner.router.clone(), id))
    }

    /// Every event of type `E` as a bounded stream, as [`Herd::stream`] does for messages.
    pub fn event_stream<E: Event>(&self) -> Result<DeliveryStream<E>, HerdError> {
        super::in_a_system()?;
        let (sender, receiver) = mpsc::channel(STREAM_CAPACITY);
        let feeder = StreamFeeder { sender }.start();
        let id = self.subscribe_events(feeder.recipient());
        Ok(DeliveryStream::new(receiver).subscribed(self.inner.router.clone(), id))
    }

    /// Ends a subscription.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        self.inner.router.unsubscribe(id)
    }
}

/// The most deliveries one stream holds; a larger capacity is lowered to it.
pub const MAX_STREAM_CAPACITY: usize = 1 << 20;
