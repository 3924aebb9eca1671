//! Errors of the facade.

use wsherd_connection::InvalidConfig;
use wsherd_protocol::{
    DecodeError, EncodeError, EndpointName, InvalidEndpointName, MessageId, Outbound,
};
use wsherd_supervisor::{Rejected, RequestRefused};

/// Managing endpoints failed.
///
/// `Debug` prints what `Display` does (a config error is its list of problems), so a
/// `main() -> Result<(), Box<dyn Error>>` that returns it with `?` prints something readable.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum HerdError {
    /// The name breaks the naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidEndpointName),
    /// An endpoint of that name is already running.
    #[error("endpoint {0} already exists")]
    DuplicateEndpoint(EndpointName),
    /// No endpoint has that name.
    #[error("no endpoint named {0:?}")]
    UnknownEndpoint(String),
    /// The configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// An endpoint's spec has a setting it cannot run with (a heartbeat duration too short).
    #[error("endpoint {name}: {error}")]
    InvalidSpec {
        /// The endpoint.
        name: EndpointName,
        /// What is wrong.
        error: InvalidConfig,
    },
    /// Called outside a running actix system.
    #[error(
        "no actix system is running on this thread: start the herd inside one (e.g. #[actix::main])"
    )]
    NoSystem,
}

/// A message was not accepted; where possible it is handed back.
///
/// `Debug` prints what `Display` does, never the message itself.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No endpoint has that name.
    #[error("no endpoint named {name:?}")]
    UnknownEndpoint {
        /// The name asked for.
        name: String,
        /// The unsent message.
        message: Outbound,
    },
    /// The endpoint refused it (queue full, endpoint failed or stopped).
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The value could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The endpoint's supervisor stopped while the message waited in its mailbox.
    #[error("the endpoint stopped before the message was taken")]
    Lost,
    /// A cluster endpoint no member runs right now (between a member's end and a takeover),
    /// or whose owner did not answer in time.
    #[error("no member of the cluster runs endpoint {name:?} now")]
    NoOwner {
        /// The endpoint.
        name: String,
        /// The unsent message.
        message: Outbound,
    },
    /// The member that runs the endpoint refused the message, or the request to it failed.
    #[error("endpoint {name:?} on another member: {error}")]
    Remote {
        /// The endpoint.
        name: String,
        /// What the owner (or NATS) said.
        error: String,
    },
}

impl SendError {
    /// The unsent message, when it could be kept.
    pub fn into_message(self) -> Option<Outbound> {
        match self {
            SendError::UnknownEndpoint { message, .. } | SendError::NoOwner { message, .. } => {
                Some(message)
            }
            SendError::Rejected(rejected) => Some(rejected.into_message()),
            SendError::Encode(_) | SendError::Lost | SendError::Remote { .. } => None,
        }
    }
}

/// `Debug` as `Display`: what `main` prints for an error returned with `?`.
macro_rules! debug_as_display {
    ($($ty:ty),+) => {
        $(impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Display::fmt(self, f)
            }
        })+
    };
}

debug_as_display!(HerdError, SendError);

/// A request got no usable reply; see [`Herd::request`](crate::Herd::request).
///
/// `Debug` prints what `Display` does: the id, never the message.
#[derive(Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply within the timeout. The request is forgotten; if it was still queued it goes
    /// out later anyway, and a late reply reaches subscribers like any message.
    #[error("no reply to request {id} within {timeout:?}")]
    Timeout {
        /// The request's id.
        id: MessageId,
        /// How long it waited.
        timeout: std::time::Duration,
    },
    /// The socket it was written on ended before the reply: the peer may or may not have
    /// received it. Not sent again unless `request.resend_on_reconnect` is set.
    #[error("the socket request {id} was written on ended before its reply")]
    Disconnected {
        /// The request's id.
        id: MessageId,
    },
    /// The endpoint stopped before the reply (an unsent request is handed back by the stop).
    #[error("the endpoint stopped before request {id} was answered")]
    Stopped {
        /// The request's id.
        id: MessageId,
    },
    /// The reply came and does not decode into the type asked for.
    #[error("the reply to request {id} does not decode: {error}")]
    Decode {
        /// The request's id.
        id: MessageId,
        /// Why, with an excerpt of the reply.
        error: DecodeError,
    },
    /// The endpoint did not take the request (unknown, queue full, failed, stopped); the
    /// message is handed back in it.
    #[error(transparent)]
    Rejected(SendError),
    /// The request was refused before it was sent (not an object, an id that is no integer or
    /// string, an id still waiting, `max_in_flight` reached); the message is handed back in it.
    #[error(transparent)]
    Refused(RequestRefused),
    /// The message could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl std::fmt::Debug for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
