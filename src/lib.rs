#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]

pub mod config;
mod error;
mod herd;

pub use error::{HerdError, SendError};
pub use herd::{Herd, ReloadReport, ShutdownReport};
/// One endpoint at one moment, as [`Herd::status`] reports it.
pub use wsherd_supervisor::SupervisorStatus as EndpointStatus;

pub use wsherd_connection::{
    Close, Connection, ConnectionConfig, ConnectionEvent, ConnectionStats, EndReason,
    InvalidConfig, InvalidUtf8Policy, Phase, Side, StatsSnapshot, TlsClass, TlsFiles,
};
pub use wsherd_protocol::{
    CloseCode, DeadPeer, HeartbeatMode, HeartbeatSpec, InvalidHeartbeat, MIN_HEARTBEAT_DURATION,
    ReplyMatcher, redact_url,
};
pub use wsherd_protocol::{
    DecodeError, DecodeStage, EncodeError, EndpointName, Inbound, KindRule, Outbound,
};
pub use wsherd_router::{
    Batch, Binary, DeadLetter, DeadLetterReason, Delivery, Overflow, RawMessage, Router, Shared,
    SubscribeOptions, SubscriptionId,
};
pub use wsherd_supervisor::{
    Action, ActionTable, BackoffPolicy, EndpointSpec, EndpointState, FailReason, GovernorPolicy,
    GovernorStats, Jitter, LiveAfter, OnOpenHook, OverflowPolicy, QueueEvent, QueuePolicy,
    Rejected, RestartIntensity, StateEvent, Submitted,
};

/// Declares which kind each type is decoded from, or which kinds:
/// `wsherd::inbound!(Trade => "trade", FeedEvent => ["trade", "quote"]);`
///
/// A type of several kinds (typically a `#[serde(tag = "type")]` enum) is decoded once per
/// message, whichever of its kinds the message has, and its subscribers receive every one.
#[macro_export]
macro_rules! inbound {
    () => {};
    ($ty:ty => [$($kind:expr),+ $(,)?] $(, $($rest:tt)*)?) => {
        impl $crate::Inbound for $ty {
            const KINDS: &'static [&'static str] = &[$($kind),+];
        }
        $($crate::inbound!($($rest)*);)?
    };
    ($ty:ty => $kind:expr $(, $($rest:tt)*)?) => {
        impl $crate::Inbound for $ty {
            const KIND: &'static str = $kind;
        }
        $($crate::inbound!($($rest)*);)?
    };
}

/// The names most programs need.
pub mod prelude {
    pub use crate::{
        CloseCode, ConnectionConfig, ConnectionEvent, DeadLetter, Delivery, EndReason,
        EndpointName, EndpointSpec, EndpointState, Herd, Inbound, KindRule, Outbound, Overflow,
        StateEvent, Submitted, SubscribeOptions,
    };
}

#[doc = include_str!("../docs/guarantees.md")]
pub mod guarantees {}

/// The README's code blocks, compiled as doctests so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
