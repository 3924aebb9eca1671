//! Reconnect supervision for wsherd.
//!
//! A [`Supervisor`] keeps one endpoint connected across any number of socket lives. Its policy
//! is plain code, unit tested on explicit instants: [`Backoff`] (exponential, capped, jittered,
//! reset only after a stable uptime), [`IntensityWindow`] (N restarts in T), [`ActionTable`]
//! (close codes, handshake statuses and kinds of TLS failure to actions), [`OutboundQueue`] (bounded by count and
//! bytes, with an overflow policy and a TTL). A herd-wide [`Governor`] caps concurrent
//! handshakes and paces reconnects so a mass drop does not stampede back, and owns the herd's
//! [`outage`] mode: when the network is gone, one probe per host instead of every endpoint.
//!
//! ```no_run
//! use actix::prelude::*;
//! use wsherd_connection::ConnectionConfig;
//! use wsherd_protocol::EndpointName;
//! use wsherd_router::Router;
//! use wsherd_supervisor::{EndpointSpec, Submit, Supervisor};
//!
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1:9001/feed"))
//!     .on_open(r#"{"op":"subscribe","channel":"trades"}"#);
//! let supervisor = Supervisor::new(EndpointName::new("feed")?, spec, Router::new()).start();
//! // Written now if live, else queued and sent after the on-open messages of the next open.
//! supervisor.send(Submit(r#"{"op":"hello"}"#.into())).await??;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod backoff;
mod classify;
mod governor;
mod intensity;
pub mod outage;
mod policy;
mod queue;
mod requests;
mod spec;
mod state;
mod status;
mod supervisor;

pub use backoff::{Backoff, BackoffPolicy, Jitter, Random, XorShift};
pub use classify::{Action, ActionTable, default_for_close, default_for_status, default_for_tls};
pub use governor::{
    Acquire, Governor, GovernorGone, GovernorPolicy, GovernorStats, OutageListener, Permit,
    RateLimiter,
};
pub use intensity::{IntensityWindow, RestartIntensity};
pub use outage::{NetworkEvent, NetworkState, OutageDetector, OutagePolicy, host_key};
pub use policy::{LifeEnd, Next, ReconnectPolicy};
pub use queue::{OutboundQueue, OverflowPolicy, QueuePolicy};
pub use requests::{
    Answer, DEFAULT_MAX_IN_FLIGHT, RequestCounters, RequestPolicy, RequestRefused, RequestStats,
    Requests,
};
pub use spec::{ConnectMode, DEFAULT_LINGER, EndpointSpec, LiveAfter, SendRate};
pub use state::{EndpointState, FailReason, QueueEvent, Reconnected, StateEvent};
pub use status::{EndpointShared, EndpointStatus, StatusTable, human_duration};
pub use supervisor::{
    AddOnOpenHook, Attach, AttachRefused, Control, MAX_HELD_EVENTS, MAX_REMEMBERED, OnOpenHook,
    Rejected, Remember, Stop, StopReceipt, Submit, Submitted, Supervisor, Unattached,
};
