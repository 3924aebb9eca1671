//! Errors of the facade.

use wsherd_connection::InvalidConfig;
use wsherd_protocol::{EncodeError, EndpointName, InvalidEndpointName, Outbound};
use wsherd_supervisor::Rejected;

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
}

impl SendError {
    /// The unsent message, when it could be kept.
    pub fn into_message(self) -> Option<Outbound> {
        match self {
            SendError::UnknownEndpoint { message, .. } => Some(message),
            SendError::Rejected(rejected) => Some(rejected.into_message()),
            SendError::Encode(_) | SendError::Lost => None,
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
