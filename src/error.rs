//! Errors of the facade.

use wsherd_protocol::{EncodeError, EndpointName, InvalidEndpointName, Outbound};

/// Managing endpoints failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
    /// Called outside a running actix system.
    #[error(
        "no actix system is running on this thread: start the herd inside one (e.g. #[actix::main])"
    )]
    NoSystem,
}

/// A message was not written; where possible it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No endpoint has that name.
    #[error("no endpoint named {name:?}")]
    UnknownEndpoint {
        /// The name asked for.
        name: String,
        /// The unsent message.
        message: Outbound,
    },
    /// The endpoint's socket is not open.
    #[error("the endpoint is not open")]
    NotOpen(Outbound),
    /// The endpoint's socket is closing.
    #[error("the endpoint is closing")]
    Closing(Outbound),
    /// The endpoint's write buffer is full: its peer reads slower than we write.
    #[error("the endpoint's write buffer is full")]
    Full(Outbound),
    /// The value could not be serialized.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The connection stopped while the message waited in its mailbox; the message is gone.
    #[error("the connection stopped before the message was written")]
    Lost,
}

impl SendError {
    /// The unsent message, when it could be kept.
    pub fn into_message(self) -> Option<Outbound> {
        match self {
            SendError::UnknownEndpoint { message, .. }
            | SendError::NotOpen(message)
            | SendError::Closing(message)
            | SendError::Full(message) => Some(message),
            SendError::Encode(_) | SendError::Lost => None,
        }
    }
}
