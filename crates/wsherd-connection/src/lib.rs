//! The wsherd Connection actor: one awc WebSocket life.
//!
//! A [`Connection`] connects with a handshake timeout, custom headers and subprotocols; answers
//! every Ping; reassembles continuation frames under [`ConnectionConfig::max_message_size`];
//! refuses frames over [`ConnectionConfig::max_frame_size`]; routes every message through a
//! [`Router`](wsherd_router::Router)'s table; writes [`Write`] messages in order; closes
//! gracefully on [`Close`]; and reports each [`ConnectionEvent`] with the exact [`EndReason`].
//!
//! Limits and what happens when they are hit:
//!
//! | limit | default | when exceeded |
//! | --- | --- | --- |
//! | handshake timeout | 10 s | the whole attempt; life ends with [`EndReason::HandshakeTimeout`], naming the [`ConnectStage`] |
//! | connect timeout | 5 s | per resolved address (the next is tried), and for the proxy's answer ([`EndReason::ProxyFailed`]) |
//! | frame size | 1 MiB | Close 1009 sent, [`EndReason::FrameTooLarge`] |
//! | text that is not UTF-8 | fail ([`InvalidUtf8Policy`]) | Close 1007 sent, [`EndReason::InvalidUtf8`]; or, opted in, a dead letter |
//! | message size | 1 MiB | Close 1009 sent, [`EndReason::MessageTooLarge`]; a compressed binary message ([`ConnectionConfig::decompress`]) likewise once it has *inflated* past it, having inflated at most that much |
//! | close timeout | 5 s | socket dropped; the end reason says whether the peer acknowledged |
//! | close reason | 123 bytes | cut on a character boundary |
//! | write buffer | 4 MiB | writes fail with [`WriteError::Full`]; server Pings go unanswered |
//! | stall | 30 s | a full subscriber paused reads that long: [`EndReason::SubscriberStalled`] |
//! | write timeout | 30 s | one write waited that long for the peer to read: [`EndReason::WriteStalled`] |
//!
//! ```no_run
//! use std::sync::Arc;
//! use actix::prelude::*;
//! use wsherd_connection::{Close, Connection, ConnectionConfig, Write};
//! use wsherd_protocol::{CloseCode, EndpointName, Outbound};
//! use wsherd_router::Router;
//!
//! # #[actix::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let router = Router::new();
//! let config = Arc::new(ConnectionConfig::new("ws://127.0.0.1:9001/feed"));
//! let connection = Connection::new(EndpointName::new("feed")?, config, &router).start();
//! connection.send(Write::new(r#"{"op":"subscribe"}"#)).await??;
//! connection.send(Close { code: CloseCode::NORMAL, reason: "done".into() }).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod accepted;
mod batching;
mod client;
mod config;
mod connection;
mod deflate;
mod dial;
mod event;
mod framed;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
mod heartbeats;
mod inflate;
mod outbox;
mod prepare;
mod proxy;
mod reader;
mod replies;
mod secret_files;
mod socket;
mod split;
mod stats;
mod tls;
mod tls_cache;

pub use accepted::{AcceptedSocket, DEFAULT_PIPE_CAPACITY, Feed, SocketWire, accepted_socket};
pub use config::{
    ConnectionConfig, DEFAULT_CLOSE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_FRAME_SIZE, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_STALL, DEFAULT_WRITE_BUFFER,
    DEFAULT_WRITE_TIMEOUT, InvalidConfig, InvalidUtf8Policy, MAX_CLOSE_REASON, SharedConfig,
    validate_url,
};
pub use connection::{Close, Connection, ReleaseReads, Write, WriteError, WriteOnOpen};
pub use deflate::{DEFAULT_MIN_COMPRESS_SIZE, DeflateOffer, Negotiated};
pub use event::{
    ConnectStage, ConnectionEvent, EndReason, GapEvent, GapKind, NetworkCause, Notice, Observed,
    Side, TlsClass, Unsent,
};
pub use heartbeats::{Beat, Heartbeats, Liveness, Unwatch, Watch, WatchId};
pub use inflate::Decompress;
pub use prepare::{ConnectHook, ConnectTarget};
pub use proxy::{InvalidProxy, ProxyCredentials, ProxyKind, ProxySetting, ProxyUrl, bypassed};
pub use replies::ReplyWaiter;
pub use secret_files::{FileSecret, SecretSlot, read_secret_files};
pub use stats::{ConnectionStats, Phase, StatsSnapshot};
pub use tls::{TlsFiles, client_config};
