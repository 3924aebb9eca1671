//! State changes of a connection and the exact reason it ended.

use std::fmt;
use std::time::{Duration, Instant};

use wsherd_protocol::{CloseCode, DeadPeer, EndpointName, Outbound};

/// Who sent the first Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This client.
    Local,
    /// The server.
    Peer,
}

/// The kinds of TLS failure, for a policy to tell apart (a supervisor's action table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TlsClass {
    /// A certificate was refused, ours or the server's: [`EndReason::Tls`].
    Certificate,
    /// The handshake broke off for a reason that may pass: [`EndReason::TlsTransient`].
    Transient,
    /// The endpoint's CA, certificate or key file could not be used (missing, unreadable,
    /// not PEM, key and certificate apart): [`EndReason::TlsConfig`].
    Files,
}

/// A network-level reason a connect failed: the host could not be reached at all, which is what
/// every endpoint sees at once when the network is gone (the herd's outage mode counts these,
/// and nothing else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum NetworkCause {
    /// The host name could not be resolved (no DNS answer, no records).
    Dns,
    /// The host refused the TCP connection (nothing listens there).
    Refused,
    /// No route to the host or its network, or the network is down.
    Unreachable,
    /// The connection was reset before the server answered the upgrade request at all: what a
    /// firewall or a load balancer with no backend does; a server that answered (any HTTP
    /// status, a certificate) is reachable and never ends this way.
    Reset,
    /// Connect (with the upgrade) did not finish within the handshake timeout
    /// ([`EndReason::HandshakeTimeout`]).
    Timeout,
}

impl fmt::Display for NetworkCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkCause::Dns => "dns",
            NetworkCause::Refused => "refused",
            NetworkCause::Unreachable => "unreachable",
            NetworkCause::Reset => "reset",
            NetworkCause::Timeout => "timeout",
        })
    }
}

/// How far an attempt got on its way to an open socket: what a failed attempt names, so an
/// operator knows where to look (the resolver, the network, the proxy, the certificates, the
/// server's answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ConnectStage {
    /// Getting what the attempt needs: secrets kept in files, the TLS files, the `on_connect`
    /// hook, the proxy from the environment.
    Prepare,
    /// Resolving the server's host name.
    Dns,
    /// Opening TCP to the server (each resolved address in turn).
    Tcp,
    /// Reaching the proxy and opening the tunnel through it.
    Proxy,
    /// The TLS handshake with the server.
    Tls,
    /// The HTTP upgrade: request sent, waiting for or checking the server's answer.
    Upgrade,
}

impl ConnectStage {
    /// `prepare`, `dns`, `tcp`, `proxy`, `tls` or `upgrade`: a bounded set, fit for a label.
    pub fn name(self) -> &'static str {
        match self {
            ConnectStage::Prepare => "prepare",
            ConnectStage::Dns => "dns",
            ConnectStage::Tcp => "tcp",
            ConnectStage::Proxy => "proxy",
            ConnectStage::Tls => "tls",
            ConnectStage::Upgrade => "upgrade",
        }
    }
}

impl fmt::Display for ConnectStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a socket life ended. Every way out of a connection has exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The URL or a header could not be turned into a request.
    InvalidRequest {
        /// What was wrong.
        reason: String,
    },
    /// DNS or TCP connect failed (every resolved address was tried).
    ConnectFailed {
        /// The underlying error.
        reason: String,
        /// The network-level cause, when it is one (refused, unreachable, DNS, reset before
        /// any answer); `None` for anything else that failed while connecting.
        cause: Option<NetworkCause>,
    },
    /// The TLS handshake failed: the server's certificate was refused (unknown issuer, wrong
    /// name, expired …) or the server refused ours. Retrying will not help by itself
    /// ([`TlsClass::Certificate`]).
    Tls {
        /// Which check failed, as rustls says it.
        reason: String,
    },
    /// The TLS handshake failed for a reason that may pass: the connection was reset or ended
    /// during it, or the peer sent something other than a certificate complaint (a garbled
    /// record, an internal-error alert) ([`TlsClass::Transient`]).
    TlsTransient {
        /// What went wrong, as rustls or the socket says it.
        reason: String,
    },
    /// The endpoint's TLS files could not be used ([`TlsClass::Files`]).
    TlsConfig {
        /// What is wrong with them.
        reason: String,
    },
    /// The transport was up (TCP, the proxy's tunnel, TLS) but the upgrade request could not
    /// be written or no answer came: the server reset or closed the connection before it said
    /// anything (what a load balancer without a backend does).
    UpgradeFailed {
        /// What happened.
        reason: String,
        /// The network-level cause (a reset before any answer), if it is one.
        cause: Option<NetworkCause>,
    },
    /// The whole attempt (prepare, connect, TLS, upgrade) took longer than the handshake
    /// timeout.
    HandshakeTimeout {
        /// The timeout that ran out.
        after: Duration,
        /// How far the attempt had got.
        stage: ConnectStage,
    },
    /// The proxy could not be reached, did not answer within the connect timeout, or answered
    /// something that is not the proxy protocol. Backs off by default.
    ProxyFailed {
        /// What went wrong (the proxy's address, never its credentials).
        reason: String,
        /// The network-level cause when the proxy itself could not be reached.
        cause: Option<NetworkCause>,
    },
    /// The proxy refused to open the tunnel to the server (an HTTP status other than 2xx, 401
    /// and 407; a SOCKS5 reply other than success). Backs off by default: the server may be
    /// down.
    ProxyRefused {
        /// What the proxy said.
        reason: String,
    },
    /// The proxy wants credentials, or refused the ones given (HTTP 407, a SOCKS5
    /// authentication failure). Stops by default: retrying does not help until someone fixes
    /// the credentials.
    ProxyAuth {
        /// What the proxy said.
        reason: String,
    },
    /// The `on_connect` hook returned an error for this attempt. Backs off by default.
    HookFailed {
        /// The hook's message.
        reason: String,
    },
    /// The server answered the upgrade with a non-101 status.
    HandshakeRejected {
        /// The HTTP status.
        status: u16,
    },
    /// The server answered 101 but the upgrade was not a valid WebSocket handshake.
    HandshakeInvalid {
        /// Which check failed.
        reason: String,
    },
    /// The server's answer to the extensions offered (permessage-deflate) is not one this
    /// client can honour: an extension not offered, a parameter unknown, repeated or out of
    /// range. Not retried by default: the server or the offer has to change.
    ExtensionInvalid {
        /// What was wrong.
        reason: String,
    },
    /// The server sent a Close frame.
    PeerClosed {
        /// Close code ([`CloseCode::NO_STATUS`] when the frame had none).
        code: CloseCode,
        /// Close reason text.
        reason: String,
    },
    /// We sent a Close frame (asked to by the owner, or because of a limit).
    LocalClose {
        /// The code we sent.
        code: CloseCode,
        /// The reason we sent.
        reason: String,
        /// Whether the peer answered with its Close before the socket ended.
        acknowledged: bool,
    },
    /// The socket ended without a Close frame (close code 1006 in RFC 6455's terms).
    StreamEnded,
    /// A frame exceeded the maximum frame size.
    FrameTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// A reassembled message exceeded the maximum message size.
    MessageTooLarge {
        /// Bytes it had reached.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A text message was not valid UTF-8 (RFC 6455 §8.1: the connection fails, with 1007).
    /// Only with [`InvalidUtf8Policy::Fail`](crate::InvalidUtf8Policy::Fail), the default.
    InvalidUtf8 {
        /// Bytes of the message that were valid before the first invalid sequence.
        valid_up_to: usize,
        /// The message's length in bytes.
        len: usize,
    },
    /// A binary message was not valid compressed data of the endpoint's `decompress` format
    /// (close 1007, as for text that is not UTF-8).
    InvalidCompression {
        /// What the inflater said.
        reason: String,
    },
    /// The peer broke the WebSocket protocol.
    Protocol {
        /// What it did.
        reason: String,
    },
    /// Reading or writing the socket failed.
    Io {
        /// The error.
        reason: String,
    },
    /// The heartbeat found the peer silent (half-open socket or stuck feed).
    Unresponsive {
        /// What the heartbeat saw.
        why: DeadPeer,
    },
    /// A full subscriber (`Overflow::Backpressure`) kept the socket's reads paused longer than
    /// `max_stall`. A Close with 1011 was sent; the held deliveries are not delivered.
    SubscriberStalled {
        /// The limit that ran out.
        after: Duration,
    },
    /// One write waited longer than `write_timeout` for the peer to take bytes: the peer sends
    /// (the heartbeat stays happy) but does not read. No Close could be written.
    WriteStalled {
        /// The limit that ran out.
        after: Duration,
    },
    /// A value kept in a file (a token in the URL or a header) could not be read for this
    /// attempt. Backs off by default: a file being rotated comes back.
    SecretUnavailable {
        /// Which file and why (never its contents).
        reason: String,
    },
    /// A sequence gap, with `on_gap = "reconnect"`: the socket is closed (1000) to be
    /// reconnected by the endpoint's policy.
    SequenceGap {
        /// The number that should have come.
        expected: u64,
        /// The number that came.
        got: u64,
    },
    /// The actor was stopped (its owner went away) before any close.
    Stopped,
}

impl EndReason {
    /// A short class of cause, for a metrics label or a dashboard: `closed` (a Close either way,
    /// or the stream simply ended), `refused` (the handshake was refused, the connection was
    /// refused or the request could not be made), `timeout` (handshake), `dead_peer` (no
    /// answer to pings, or no data within the idle timeout), `io`, `limit` (frame or message
    /// too large), `protocol` (a broken frame, text not UTF-8, a bad handshake answer), `tls`,
    /// `stalled` (a subscriber or the peer stopped taking data), `secret` (a `{ file }` secret
    /// could not be read), `proxy` (the proxy failed, refused or wants credentials), `hook`
    /// (the `on_connect` hook failed), `gap` (a sequence gap ended it), `stopped` (by the
    /// owner). A bounded set: fit for a label.
    pub fn class(&self) -> &'static str {
        match self {
            EndReason::PeerClosed { .. }
            | EndReason::LocalClose { .. }
            | EndReason::StreamEnded => "closed",
            EndReason::InvalidRequest { .. }
            | EndReason::ConnectFailed { .. }
            | EndReason::UpgradeFailed { .. }
            | EndReason::HandshakeRejected { .. } => "refused",
            EndReason::HandshakeTimeout { .. } => "timeout",
            EndReason::Unresponsive { .. } => "dead_peer",
            EndReason::Io { .. } => "io",
            EndReason::FrameTooLarge { .. } | EndReason::MessageTooLarge { .. } => "limit",
            EndReason::InvalidUtf8 { .. }
            | EndReason::InvalidCompression { .. }
            | EndReason::Protocol { .. }
            | EndReason::ExtensionInvalid { .. }
            | EndReason::HandshakeInvalid { .. } => "protocol",
            EndReason::Tls { .. }
            | EndReason::TlsTransient { .. }
            | EndReason::TlsConfig { .. } => "tls",
            EndReason::SubscriberStalled { .. } | EndReason::WriteStalled { .. } => "stalled",
            EndReason::SecretUnavailable { .. } => "secret",
            EndReason::ProxyFailed { .. }
            | EndReason::ProxyRefused { .. }
            | EndReason::ProxyAuth { .. } => "proxy",
            EndReason::HookFailed { .. } => "hook",
            EndReason::SequenceGap { .. } => "gap",
            EndReason::Stopped => "stopped",
        }
    }

    /// The close code that describes this end, as RFC 6455 numbers them: the code of the
    /// Close frame sent or received, the code wsherd sends when it ends a life for that reason
    /// (1009 for a size limit, 1002 for a protocol error, 1007 for text that is not UTF-8,
    /// 1011 for a dead peer), or 1006 when
    /// the socket ended without a Close. `None` when the socket never opened, or was stopped
    /// before any close.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            EndReason::PeerClosed { code, .. } | EndReason::LocalClose { code, .. } => Some(*code),
            EndReason::StreamEnded | EndReason::Io { .. } | EndReason::WriteStalled { .. } => {
                Some(CloseCode::ABNORMAL)
            }
            EndReason::FrameTooLarge { .. } | EndReason::MessageTooLarge { .. } => {
                Some(CloseCode::TOO_BIG)
            }
            EndReason::Protocol { .. } => Some(CloseCode::PROTOCOL),
            EndReason::InvalidUtf8 { .. } | EndReason::InvalidCompression { .. } => {
                Some(CloseCode::INVALID_PAYLOAD)
            }
            EndReason::Unresponsive { .. } | EndReason::SubscriberStalled { .. } => {
                Some(CloseCode::INTERNAL)
            }
            EndReason::SequenceGap { .. } => Some(CloseCode::NORMAL),
            EndReason::InvalidRequest { .. }
            | EndReason::ConnectFailed { .. }
            | EndReason::UpgradeFailed { .. }
            | EndReason::Tls { .. }
            | EndReason::TlsTransient { .. }
            | EndReason::TlsConfig { .. }
            | EndReason::HandshakeTimeout { .. }
            | EndReason::HandshakeRejected { .. }
            | EndReason::HandshakeInvalid { .. }
            | EndReason::ExtensionInvalid { .. }
            | EndReason::SecretUnavailable { .. }
            | EndReason::ProxyFailed { .. }
            | EndReason::ProxyRefused { .. }
            | EndReason::ProxyAuth { .. }
            | EndReason::HookFailed { .. }
            | EndReason::Stopped => None,
        }
    }

    /// The HTTP status, when the handshake was rejected.
    pub fn handshake_status(&self) -> Option<u16> {
        match self {
            EndReason::HandshakeRejected { status } => Some(*status),
            _ => None,
        }
    }

    /// Which kind of TLS failure this is, when it is one.
    pub fn tls_class(&self) -> Option<TlsClass> {
        match self {
            EndReason::Tls { .. } => Some(TlsClass::Certificate),
            EndReason::TlsTransient { .. } => Some(TlsClass::Transient),
            EndReason::TlsConfig { .. } => Some(TlsClass::Files),
            _ => None,
        }
    }

    /// The network-level cause of a connect that never reached the server: a refused, reset
    /// or unreachable connect, a failed DNS lookup ([`EndReason::ConnectFailed`] with a
    /// cause, and likewise a proxy that could not be reached), or a handshake timeout past the
    /// prepare stage. `None` for everything else, notably for anything a
    /// server answered (an HTTP status, a certificate, a Close) and for the end of a socket
    /// that was open.
    pub fn network_cause(&self) -> Option<NetworkCause> {
        match self {
            EndReason::ConnectFailed { cause, .. } | EndReason::ProxyFailed { cause, .. } => *cause,
            EndReason::HandshakeTimeout { stage, .. } if *stage != ConnectStage::Prepare => {
                Some(NetworkCause::Timeout)
            }
            _ => None,
        }
    }

    /// Whether a server answered this attempt: it reached a server (an HTTP status, a TLS
    /// certificate, an invalid upgrade answer) or the socket was open. The network works.
    pub fn server_answered(&self) -> bool {
        match self {
            EndReason::HandshakeRejected { .. }
            | EndReason::HandshakeInvalid { .. }
            | EndReason::ExtensionInvalid { .. }
            | EndReason::Tls { .. } => true,
            EndReason::InvalidRequest { .. }
            | EndReason::ConnectFailed { .. }
            | EndReason::UpgradeFailed { .. }
            | EndReason::TlsTransient { .. }
            | EndReason::TlsConfig { .. }
            | EndReason::HandshakeTimeout { .. }
            | EndReason::SecretUnavailable { .. }
            | EndReason::ProxyFailed { .. }
            | EndReason::ProxyRefused { .. }
            | EndReason::ProxyAuth { .. }
            | EndReason::HookFailed { .. }
            | EndReason::Stopped => false,
            _ => self.was_open(),
        }
    }

    /// Whether the socket was ever open in this life (false: it ended in the handshake).
    pub fn was_open(&self) -> bool {
        !matches!(
            self,
            EndReason::InvalidRequest { .. }
                | EndReason::ConnectFailed { .. }
                | EndReason::UpgradeFailed { .. }
                | EndReason::Tls { .. }
                | EndReason::TlsTransient { .. }
                | EndReason::TlsConfig { .. }
                | EndReason::HandshakeTimeout { .. }
                | EndReason::HandshakeRejected { .. }
                | EndReason::HandshakeInvalid { .. }
                | EndReason::ExtensionInvalid { .. }
                | EndReason::SecretUnavailable { .. }
                | EndReason::ProxyFailed { .. }
                | EndReason::ProxyRefused { .. }
                | EndReason::ProxyAuth { .. }
                | EndReason::HookFailed { .. }
        )
    }

    /// The stage an attempt that never opened failed in; `None` for the end of a socket that
    /// was open (and for [`EndReason::Stopped`]).
    pub fn stage(&self) -> Option<ConnectStage> {
        match self {
            EndReason::InvalidRequest { .. }
            | EndReason::TlsConfig { .. }
            | EndReason::SecretUnavailable { .. }
            | EndReason::HookFailed { .. } => Some(ConnectStage::Prepare),
            EndReason::ConnectFailed {
                cause: Some(NetworkCause::Dns),
                ..
            } => Some(ConnectStage::Dns),
            EndReason::ConnectFailed { .. } => Some(ConnectStage::Tcp),
            EndReason::ProxyFailed { .. }
            | EndReason::ProxyRefused { .. }
            | EndReason::ProxyAuth { .. } => Some(ConnectStage::Proxy),
            EndReason::Tls { .. } | EndReason::TlsTransient { .. } => Some(ConnectStage::Tls),
            EndReason::HandshakeTimeout { stage, .. } => Some(*stage),
            EndReason::HandshakeRejected { .. }
            | EndReason::HandshakeInvalid { .. }
            | EndReason::ExtensionInvalid { .. }
            | EndReason::UpgradeFailed { .. } => Some(ConnectStage::Upgrade),
            _ => None,
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::InvalidRequest { reason } => write!(f, "invalid request: {reason}"),
            EndReason::ConnectFailed { reason, .. } => write!(f, "connect failed: {reason}"),
            EndReason::UpgradeFailed { reason, .. } => {
                write!(f, "no answer to the upgrade: {reason}")
            }
            EndReason::Tls { reason } => write!(f, "TLS handshake failed: {reason}"),
            EndReason::TlsTransient { reason } => {
                write!(f, "TLS handshake interrupted: {reason}")
            }
            EndReason::TlsConfig { reason } => write!(f, "TLS files unusable: {reason}"),
            EndReason::HandshakeTimeout { after, stage } => {
                write!(
                    f,
                    "handshake timed out after {after:?} (at the {stage} stage)"
                )
            }
            EndReason::ProxyFailed { reason, .. } => write!(f, "proxy failed: {reason}"),
            EndReason::ProxyRefused { reason } => write!(f, "proxy refused the tunnel: {reason}"),
            EndReason::ProxyAuth { reason } => {
                write!(f, "proxy authentication failed: {reason}")
            }
            EndReason::HookFailed { reason } => write!(f, "on_connect hook failed: {reason}"),
            EndReason::HandshakeRejected { status } => {
                write!(f, "handshake rejected with HTTP {status}")
            }
            EndReason::ExtensionInvalid { reason } => {
                write!(f, "extension negotiation failed: {reason}")
            }
            EndReason::HandshakeInvalid { reason } => {
                write!(f, "invalid handshake response: {reason}")
            }
            EndReason::PeerClosed { code, reason } => {
                write!(f, "closed by peer with {code} {reason:?}")
            }
            EndReason::LocalClose {
                code,
                reason,
                acknowledged,
            } => write!(
                f,
                "closed locally with {code} {reason:?} ({})",
                if *acknowledged {
                    "acknowledged"
                } else {
                    "not acknowledged"
                }
            ),
            EndReason::StreamEnded => f.write_str("connection ended without a Close frame"),
            EndReason::FrameTooLarge { limit } => write!(f, "frame larger than {limit} bytes"),
            EndReason::MessageTooLarge { size, limit } => {
                write!(f, "message of at least {size} bytes exceeds {limit}")
            }
            EndReason::InvalidUtf8 { valid_up_to, len } => write!(
                f,
                "text message is not valid UTF-8 (invalid from byte {valid_up_to} of {len})"
            ),
            EndReason::Protocol { reason } => write!(f, "protocol error: {reason}"),
            EndReason::InvalidCompression { reason } => {
                write!(f, "not valid compressed data: {reason}")
            }
            EndReason::Io { reason } => write!(f, "I/O error: {reason}"),
            EndReason::Unresponsive { why } => write!(f, "peer unresponsive: {why}"),
            EndReason::SubscriberStalled { after } => {
                write!(f, "a subscriber took nothing for {after:?}")
            }
            EndReason::WriteStalled { after } => {
                write!(f, "the peer read nothing for {after:?} while we wrote")
            }
            EndReason::SecretUnavailable { reason } => write!(f, "secret unavailable: {reason}"),
            EndReason::SequenceGap { expected, got } => {
                write!(f, "sequence gap: expected {expected}, got {got}")
            }
            EndReason::Stopped => f.write_str("stopped"),
        }
    }
}

/// A change in one connection's life, delivered as `Delivery<ConnectionEvent>` to the owner and
/// to any router subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The handshake started.
    Connecting {
        /// The URL being connected to, with its credentials hidden
        /// ([`redact_url`](wsherd_protocol::redact_url)): events are shown to people.
        url: String,
    },
    /// The handshake succeeded.
    Open {
        /// The subprotocol the server chose, if any.
        protocol: Option<String>,
        /// What permessage-deflate the server agreed to, if it was offered and accepted.
        compression: Option<crate::deflate::Negotiated>,
    },
    /// A Close frame was sent or received; the socket is winding down.
    Closing {
        /// Who closed first.
        initiated_by: Side,
        /// The close code.
        code: CloseCode,
        /// The reason text.
        reason: String,
    },
    /// The socket life is over.
    Closed {
        /// Why.
        reason: EndReason,
    },
}

/// A caller message that was accepted but never reached the operating system whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsent {
    /// The message.
    pub message: Outbound,
    /// When the owner first accepted it ([`Write::queued_at`](crate::Write::queued_at)).
    pub queued_at: Instant,
}

/// What a sequence number said, published as an event (see `SequenceSpec`): a gap, a
/// repeated or older number, or a sequence that started over. `Delivery::endpoint` names the
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapEvent {
    /// The message kind.
    pub kind: String,
    /// The scope (the value of `sequence.scope`, empty without one).
    pub scope: String,
    /// What it was.
    pub what: GapKind,
    /// The number that should have come.
    pub expected: u64,
    /// The number that came.
    pub got: u64,
}

/// What a [`GapEvent`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Numbers were skipped.
    Gap,
    /// The last number again, or an older one.
    Duplicate,
    /// The sequence started over.
    Reset,
}

impl GapKind {
    /// `gap`, `duplicate` or `reset`.
    pub fn name(self) -> &'static str {
        match self {
            GapKind::Gap => "gap",
            GapKind::Duplicate => "duplicate",
            GapKind::Reset => "reset",
        }
    }
}

/// What a connection tells its owner (the supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// A state change, as router subscribers also see it.
    Event(ConnectionEvent),
    /// The reply awaited by `live_after` arrived.
    LiveReply,
    /// Caller messages ([`Write`](crate::Write)) that were accepted but whose last byte never
    /// reached the operating system before the socket ended, in order: those in the write
    /// buffer and those in a write the socket's end cut short.
    Unsent(Vec<Unsent>),
    /// Sent once, after `Closed`: every delivery this life made is in its subscriber's
    /// mailbox, and `Closed` itself was handled by every backpressure subscriber (taken by a
    /// `Drop` one with room), or given up because a subscriber stayed full for `max_stall`.
    /// An owner that must not end before
    /// its subscribers heard the end (a shutdown) waits for it.
    Delivered,
}

/// A [`Notice`] from the connection of `endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Observed {
    /// The endpoint.
    pub endpoint: EndpointName,
    /// Which connection ([`Connection::id`](crate::Connection::id)): an owner with two at once
    /// (a planned rotation) tells them apart.
    pub connection: u64,
    /// What happened.
    pub notice: Notice,
}
