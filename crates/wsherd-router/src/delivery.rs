//! What subscribers receive.

use std::sync::Arc;

use bytes::Bytes;
use wsherd_protocol::{DecodeError, EndpointName};

/// One typed message (or event) from one endpoint, as a subscriber actor receives it.
///
/// The value is decoded once per message and shared between all subscribers of its type, hence
/// the `Arc`. Implement `Handler<Delivery<T>>` on your actor to receive `T`.
#[derive(Debug)]
pub struct Delivery<T> {
    /// The endpoint the message came from.
    pub endpoint: EndpointName,
    /// The decoded value.
    pub message: Arc<T>,
}

impl<T> Delivery<T> {
    /// The value, without a copy when this delivery holds the only reference to it.
    pub fn into_inner(self) -> T
    where
        T: Clone,
    {
        Arc::try_unwrap(self.message).unwrap_or_else(|shared| (*shared).clone())
    }
}

impl<T> Clone for Delivery<T> {
    fn clone(&self) -> Self {
        Delivery {
            endpoint: self.endpoint.clone(),
            message: Arc::clone(&self.message),
        }
    }
}

impl<T: 'static> actix::Message for Delivery<T> {
    type Result = ();
}

/// Several deliveries of `T` in one message, in arrival order; see
/// [`Router::subscribe_kind_batched`](crate::Router::subscribe_kind_batched).
#[derive(Debug)]
pub struct Batch<T> {
    /// The deliveries, oldest first (possibly from several endpoints).
    pub deliveries: Vec<Delivery<T>>,
}

impl<T: 'static> actix::Message for Batch<T> {
    type Result = ();
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
