#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]

pub mod config;
mod error;
mod herd;

pub use error::{HerdError, SendError};
pub use herd::{Herd, ReloadReport, ShutdownReport};

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
    Batch, Binary, DeadLetter, DeadLetterReason, Delivery, Overflow, Router, Shared,
    SubscribeOptions, SubscriptionId,
};
pub use wsherd_supervisor::{
    Action, ActionTable, BackoffPolicy, EndpointSpec, EndpointState, EndpointStatus, FailReason,
    GovernorPolicy, GovernorStats, Jitter, LiveAfter, OnOpenHook, OverflowPolicy, QueueEvent,
    QueuePolicy, Reconnected, Rejected, RestartIntensity, StateEvent, StatusTable, Submitted,
};

/// Declares which kind each type is decoded from: `wsherd::inbound!(Trade => "trade", Quote => "quote");`
#[macro_export]
macro_rules! inbound {
    ($($ty:ty => $kind:expr),+ $(,)?) => {
        $(impl $crate::Inbound for $ty {
            const KIND: &'static str = $kind;
        })+
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
