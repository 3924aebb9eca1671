#![doc = include_str!("../docs/crate.md")]
#![forbid(unsafe_code)]

pub mod config;
mod error;
mod events;
mod herd;

/// The actix this crate is built on, for applications that do not name it themselves.
pub use actix;

/// Runs `app` to completion on a new actix system on this thread, the way `#[actix::main]`
/// does, for a `main` that does not depend on actix itself:
///
/// ```no_run
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     wsherd::run(async {
///         let herd = wsherd::Herd::from_config_file("wsherd.toml")?;
///         println!("{}", herd.run_until_signal().await);
///         Ok(())
///     })
/// }
/// ```
pub fn run<F: std::future::Future>(app: F) -> F::Output {
    actix::System::new().block_on(app)
}

pub use error::{HerdError, RequestError, SendError};
pub use events::Event;
pub use herd::{
    DeliveryStream, Herd, InboundEndpoint, MAX_STREAM_CAPACITY, MIN_METRICS_INTERVAL, Membership,
    MembershipFigure, Ownership, ReloadReport, RemoteRemember, RemoteSend, RemoteSender,
    SHUTDOWN_TIMEOUT, STREAM_CAPACITY, SessionRefused, ShutdownReport, shutdown_signal,
};

pub use wsherd_connection::{
    AcceptedSocket, DEFAULT_PIPE_CAPACITY, Feed, SocketWire, accepted_socket,
};
pub use wsherd_connection::{
    Close, ConnectHook, ConnectStage, ConnectTarget, Connection, ConnectionConfig, ConnectionEvent,
    ConnectionStats, Decompress, DeflateOffer, EndReason, GapEvent, GapKind, InvalidConfig,
    InvalidProxy, InvalidUtf8Policy, Negotiated, NetworkCause, Phase, ProxyCredentials, ProxyKind,
    ProxySetting, ProxyUrl, Side, StatsSnapshot, TlsClass, TlsFiles,
};
pub use wsherd_protocol::{
    CloseCode, DeadPeer, HeartbeatMode, HeartbeatSpec, InvalidHeartbeat, MIN_HEARTBEAT_DURATION,
    ReplyMatcher, redact_url,
};
pub use wsherd_protocol::{
    DecodeError, DecodeStage, EncodeError, EndpointName, Inbound, KindRule, MessageId, OnGap,
    Outbound, SequenceSpec, SequenceStats,
};
pub use wsherd_router::{
    Batch, Binary, DeadLetter, DeadLetterReason, Delivery, DemandChanged, DemandWatch, Overflow,
    RawMessage, Router, Shared, SubscribeOptions, SubscriptionId,
};
pub use wsherd_supervisor::{
    Action, ActionTable, BackoffPolicy, ConnectMode, DEFAULT_LINGER, EndpointSpec, EndpointState,
    EndpointStatus, FailReason, GovernorPolicy, GovernorStats, Jitter, LiveAfter, NetworkEvent,
    NetworkState, OnOpenHook, OutagePolicy, OverflowPolicy, QueueEvent, QueuePolicy, Reconnected,
    Rejected, RestartIntensity, SendRate, StateEvent, StatusTable, Submitted, human_duration,
};
/// The supervisor actor and what it answers, for applications that run connection actors on
/// their own, without a [`Herd`]: `Supervisor::new(name, spec, router).start()`.
pub use wsherd_supervisor::{
    AddOnOpenHook, Control, EndpointShared, Remember, Stop, StopReceipt, Submit, Supervisor,
};
pub use wsherd_supervisor::{
    Answer, DEFAULT_MAX_IN_FLIGHT, RequestCounters, RequestPolicy, RequestRefused, RequestStats,
    Requests,
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
        CloseCode, ConnectionConfig, ConnectionEvent, DeadLetter, Delivery, DeliveryStream,
        EndReason, EndpointName, EndpointSpec, EndpointState, Event, Herd, Inbound, KindRule,
        Outbound, Overflow, StateEvent, Submitted, SubscribeOptions,
    };
}

#[doc = include_str!("../docs/guarantees.md")]
pub mod guarantees {}

/// The README's code blocks, compiled as doctests so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
