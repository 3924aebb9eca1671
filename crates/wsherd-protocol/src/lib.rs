//! Wire types for wsherd, with no actix in sight.
//!
//! - [`KindRule`] finds a message's kind (the routing discriminator) without building a JSON tree.
//! - [`Inbound`] marks a Rust type decoded from one kind or several; [`Outbound`] is a message
//!   to write.
//! - [`DecodeError`] keeps why a message was rejected and a bounded excerpt of it.
//! - [`Reassembler`] joins continuation frames under a size cap.
//! - [`EndpointName`] is a checked endpoint name.
//! - [`Heartbeat`] decides when to ping and when a silent peer is dead.
//! - [`CloseCode`] names the close codes wsherd sends and acts on.
//! - [`redact_url`] shows a URL without its credentials.
//!
//! ```
//! use wsherd_protocol::KindRule;
//!
//! let rule = KindRule::pointer("/data/e");
//! let kind = rule.extract(r#"{"stream":"x","data":{"e":"trade","p":"1.0"}}"#).unwrap();
//! assert_eq!(kind.as_deref(), Some("trade"));
//! ```
#![forbid(unsafe_code)]

mod close;
mod endpoint;
mod heartbeat;
mod kind;
mod message;
mod reassembly;
mod redact;
mod sequence;

pub use close::CloseCode;
pub use endpoint::{EndpointName, InvalidEndpointName, MAX_SESSION_ID};
pub use heartbeat::{
    DEFAULT_PING_INTERVAL, DEFAULT_PONG_TIMEOUT, DeadPeer, Heartbeat, HeartbeatAction,
    HeartbeatMode, HeartbeatSpec, InvalidHeartbeat, MAX_HEARTBEAT_DURATION, MIN_HEARTBEAT_DURATION,
    ReplyMatcher,
};
pub use kind::{KindFn, KindRule, MessageId, same_kind};
pub use message::{
    DecodeError, DecodeStage, EXCERPT_LIMIT, EncodeError, Inbound, Outbound, decode, excerpt,
    validate_text,
};
pub use reassembly::{Fragment, Reassembled, Reassembler, ReassemblyError};
pub use redact::{REDACTED, redact_url};
pub use sequence::{
    DEFAULT_MAX_SCOPES, MAX_SCOPE_KEY, OnGap, Seen, SequenceSpec, SequenceStats, SequenceTracker,
    Verdict,
};
