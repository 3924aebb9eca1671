//! What subscribers receive.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use wsherd_protocol::{DecodeError, EndpointName};

mod pool;

/// One typed message (or event) from one endpoint, as a subscriber actor receives it.
///
/// The value is decoded once per message. When one subscriber receives it, it travels inline;
/// when several do, they share it (see [`Shared`]). Implement `Handler<Delivery<T>>` on your
/// actor to receive `T`.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The endpoint the message came from.
    pub endpoint: EndpointName,
    /// The decoded value; derefs to `T`.
    pub message: Shared<T>,
}

impl<T> Delivery<T> {
    /// The value, without a copy when this delivery holds the only reference to it.
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        self.message.into_inner()
    }
}

impl<T: Clone> Clone for Delivery<T> {
    fn clone(&self) -> Self {
        Delivery {
            endpoint: self.endpoint.clone(),
            message: self.message.clone(),
        }
    }
}

/// A delivered value: held inline when it went to one subscriber, behind an [`Arc`] shared by
/// all of them when it went to several. Derefs to `T`.
///
/// Inline delivery saves an allocation and two reference-count updates per message, which is
/// measurable on a busy feed with one subscriber (the common case).
pub struct Shared<T>(Holder<T>);

enum Holder<T> {
    Alone(T),
    Many(Arc<T>),
}

impl<T> Shared<T> {
    /// A value for one subscriber.
    pub fn alone(value: T) -> Self {
        Shared(Holder::Alone(value))
    }

    /// A value shared with other subscribers.
    pub fn from_arc(value: Arc<T>) -> Self {
        Shared(Holder::Many(value))
    }

    /// Whether other deliveries hold the same value.
    pub fn is_shared(&self) -> bool {
        matches!(&self.0, Holder::Many(value) if Arc::strong_count(value) > 1)
    }

    /// Whether `a` and `b` are the same shared value (never true for inline values).
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        match (&a.0, &b.0) {
            (Holder::Many(a), Holder::Many(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// The value, cloned only when other deliveries still share it.
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        match self.0 {
            Holder::Alone(value) => value,
            Holder::Many(value) => {
                Arc::try_unwrap(value).unwrap_or_else(|shared| (*shared).clone())
            }
        }
    }

    /// The value behind an [`Arc`] (allocated here for an inline value).
    pub fn into_arc(self) -> Arc<T> {
        match self.0 {
            Holder::Alone(value) => Arc::new(value),
            Holder::Many(value) => value,
        }
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.0 {
            Holder::Alone(value) => value,
            Holder::Many(value) => value,
        }
    }
}

impl<T> AsRef<T> for Shared<T> {
    fn as_ref(&self) -> &T {
        self
    }
}

impl<T: Clone> Clone for Shared<T> {
    fn clone(&self) -> Self {
        match &self.0 {
            Holder::Alone(value) => Shared::alone(value.clone()),
            Holder::Many(value) => Shared::from_arc(Arc::clone(value)),
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        T::fmt(self, f)
    }
}

impl<T: PartialEq> PartialEq<T> for Shared<T> {
    fn eq(&self, other: &T) -> bool {
        **self == *other
    }
}

impl<T: 'static> actix::Message for Delivery<T> {
    type Result = ();
}

/// Several deliveries of `T` in one message, in arrival order; see
/// [`Router::subscribe_kind_batched`](crate::Router::subscribe_kind_batched).
///
/// Read the deliveries through `&batch.deliveries`, or take them with
/// `batch.deliveries.drain(..)`. When a batch is dropped on the thread of the connection that
/// sent it, its emptied storage is kept for that connection's next batch (up to four per type
/// and thread), which spares a large allocation per batch.
#[derive(Debug)]
pub struct Batch<T: 'static> {
    /// The deliveries, oldest first, all from the same endpoint.
    pub deliveries: Vec<Delivery<T>>,
}

impl<T: 'static> Batch<T> {
    /// Storage for the deliveries of a new batch: emptied storage of an earlier batch of `T`
    /// dropped on this thread when there is one, else room for `capacity` deliveries.
    pub(crate) fn storage(capacity: usize) -> Vec<Delivery<T>> {
        pool::take(capacity)
    }

    /// Keeps emptied (or emptied here) batch storage for the next batch of `T` on this thread.
    pub(crate) fn keep_storage(storage: Vec<Delivery<T>>) {
        pool::give_back(storage);
    }
}

impl<T: 'static> Drop for Batch<T> {
    fn drop(&mut self) {
        pool::give_back(std::mem::take(&mut self.deliveries));
    }
}

impl<T: 'static> actix::Message for Batch<T> {
    type Result = ();
}

/// One text message of a kind, undecoded: what [`Router::subscribe_raw`](crate::Router::subscribe_raw)
/// delivers, for recording, forwarding or decoding by hand.
///
/// The text is copied once out of the connection's read buffer, only when someone subscribed
/// to its kind raw, and shared by every raw subscriber of that kind; cloning a `RawMessage`
/// copies two reference-counted pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The message's kind (shared with its route: no allocation per message).
    pub kind: Arc<str>,
    /// The whole message, exactly as the peer sent it.
    pub text: Arc<str>,
    /// When wsherd routed it, right after reading it from the socket (wall clock, so it can be
    /// compared with a feed's own timestamps).
    pub received_at: SystemTime,
}

/// A binary frame (or reassembled binary message) from an endpoint.
///
/// Subscribe with [`Router::subscribe_event::<Binary>`](crate::Router::subscribe_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binary(pub Bytes);

/// An inbound message that reached no subscriber.
///
/// The connection keeps going; subscribe with
/// [`Router::subscribe_event::<DeadLetter>`](crate::Router::subscribe_event) to see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The kind, when one was found.
    pub kind: Option<String>,
    /// Why it was not delivered.
    pub reason: DeadLetterReason,
}

/// Why a message became a dead letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterReason {
    /// Nobody subscribed to its kind (for its endpoint).
    NoSubscriber {
        /// A bounded excerpt of the payload.
        excerpt: String,
        /// The payload's length in bytes.
        payload_len: usize,
    },
    /// It could not be decoded (not UTF-8, not JSON, no kind, or not the subscribed type).
    Rejected(DecodeError),
}

impl std::fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.reason, &self.kind) {
            (
                DeadLetterReason::NoSubscriber {
                    excerpt,
                    payload_len,
                },
                Some(kind),
            ) => write!(
                f,
                "no subscriber for kind {kind:?} (payload {payload_len} bytes: {excerpt:?})"
            ),
            (
                DeadLetterReason::NoSubscriber {
                    excerpt,
                    payload_len,
                },
                None,
            ) => {
                write!(
                    f,
                    "no subscriber (payload {payload_len} bytes: {excerpt:?})"
                )
            }
            (DeadLetterReason::Rejected(error), _) => error.fmt(f),
        }
    }
}
