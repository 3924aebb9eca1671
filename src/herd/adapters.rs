//! Subscribers without actor boilerplate: a closure ([`Herd::on`]) or a bounded stream
//! ([`Herd::stream`]). Each is a small actor on the arbiter that subscribed, so a slow
//! closure or an unread stream is a slow subscriber like any other (reads of the feeding
//! socket pause, bounded by `max_stall`), never a frozen connection.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;
use tokio::sync::mpsc;
use wsherd_router::{Delivery, Router, SubscriptionId};

/// Deliveries a stream holds before its subscription counts as full (and, with the default
/// [`Overflow::Backpressure`](crate::Overflow::Backpressure), pauses the feeding sockets).
pub const STREAM_CAPACITY: usize = 256;

/// Runs a closure for every delivery, on the arbiter where it was subscribed.
pub(super) struct ClosureSubscriber<T> {
    // Boxed: an actor must be `Unpin`, and a closure need not be.
    call: Box<dyn FnMut(Delivery<T>)>,
}

impl<T> ClosureSubscriber<T> {
    pub(super) fn new(call: impl FnMut(Delivery<T>) + 'static) -> Self {
        ClosureSubscriber {
            call: Box::new(call),
        }
    }
}

impl<T: 'static> Actor for ClosureSubscriber<T> {
    type Context = Context<Self>;
}

impl<T: Send + Sync + 'static> Handler<Delivery<T>> for ClosureSubscriber<T> {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<T>, _: &mut Context<Self>) {
        (self.call)(delivery);
    }
}

/// Moves deliveries into a [`DeliveryStream`]'s bounded channel.
pub(super) struct StreamFeeder<T: Send + Sync + 'static> {
    pub(super) sender: mpsc::Sender<Delivery<T>>,
}

impl<T: Send + Sync + 'static> Actor for StreamFeeder<T> {
    type Context = Context<Self>;
}

impl<T: Send + Sync + 'static> Handler<Delivery<T>> for StreamFeeder<T> {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<T>, ctx: &mut Context<Self>) {
        match self.sender.try_send(delivery) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(delivery)) => {
                // Take nothing else until the reader makes room: this mailbox fills, and the
                // router treats the stream as the slow subscriber it is.
                let sender = self.sender.clone();
                ctx.wait(
                    async move { sender.send(delivery).await.is_ok() }
                        .into_actor(self)
                        .map(|open, _, ctx| {
                            if !open {
                                ctx.stop();
                            }
                        }),
                );
            }
            // The stream was dropped: end, and the router forgets the subscription.
            Err(mpsc::error::TrySendError::Closed(_)) => ctx.stop(),
        }
    }
}

/// The deliveries of one subscription as a [`futures_core::Stream`], bounded: while nobody
/// reads it, it fills and then holds back its feeding sockets like any slow subscriber.
/// Dropping it ends the subscription.
///
/// ```no_run
/// # use wsherd::prelude::*;
/// # #[derive(Debug, serde::Deserialize)] struct Trade { price: f64 }
/// # wsherd::inbound!(Trade => "trade");
/// # async fn demo(herd: Herd) -> Result<(), wsherd::HerdError> {
/// let mut trades = herd.stream::<Trade>()?;
/// while let Some(trade) = trades.next().await {
///     println!("{}: {}", trade.endpoint, trade.message.price);
/// }
/// # Ok(())
/// # }
/// ```
pub struct DeliveryStream<T> {
    receiver: mpsc::Receiver<Delivery<T>>,
    /// Unsubscribed on drop, so the router forgets the stream at once rather than at the next
    /// delivery that finds it gone.
    subscription: Option<(Router, SubscriptionId)>,
}

impl<T> DeliveryStream<T> {
    pub(super) fn new(receiver: mpsc::Receiver<Delivery<T>>) -> Self {
        DeliveryStream {
            receiver,
            subscription: None,
        }
    }

    pub(super) fn subscribed(mut self, router: Router, id: SubscriptionId) -> Self {
        self.subscription = Some((router, id));
        self
    }

    /// The subscription feeding this stream.
    pub fn subscription(&self) -> Option<SubscriptionId> {
        self.subscription.as_ref().map(|(_, id)| *id)
    }

    /// The next delivery. A stream does not end by itself when the herd shuts down (the
    /// subscription lives as long as the stream): stop reading it with your own stop
    /// condition (`tokio::select!` on it), and drop it.
    pub async fn next(&mut self) -> Option<Delivery<T>> {
        self.receiver.recv().await
    }

    /// The next delivery if one is waiting, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery<T>> {
        self.receiver.try_recv().ok()
    }
}

impl<T> Drop for DeliveryStream<T> {
    fn drop(&mut self) {
        if let Some((router, id)) = self.subscription.take() {
            router.unsubscribe(id);
        }
    }
}

impl<T> std::fmt::Debug for DeliveryStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryStream")
            .field("waiting", &self.receiver.len())
            .finish()
    }
}

impl<T> futures_core::Stream for DeliveryStream<T> {
    type Item = Delivery<T>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx)
    }
}
