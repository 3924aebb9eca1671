//! What a connection's owner may ask of it, and how a refused write is handed back.

use std::time::Instant;

use wsherd_protocol::{CloseCode, Outbound};

/// Writes one message to the peer.
///
/// `Ok` means the message is in the socket's write buffer: it goes to the operating system in
/// order, and if the socket ends before its last byte does, it is handed back to the owner in
/// [`Notice::Unsent`](crate::Notice::Unsent) with `queued_at`. `Err` hands the message back at
/// once when the socket cannot take it.
#[derive(Debug)]
pub struct Write {
    /// The message.
    pub message: Outbound,
    /// When the owner first accepted it (kept for its TTL when it comes back).
    pub queued_at: Instant,
}

impl Write {
    /// A message accepted now.
    pub fn new(message: impl Into<Outbound>) -> Self {
        Write {
            message: message.into(),
            queued_at: Instant::now(),
        }
    }
}

impl actix::Message for Write {
    type Result = Result<(), WriteError>;
}

/// Writes one on-open message (a subscription the owner replays after every open).
///
/// Like [`Write`], except that if the socket ends before the frame is written it is not handed
/// back in [`Notice::Unsent`](crate::Notice::Unsent): the owner sends it again on the next open
/// anyway.
#[derive(Debug)]
pub struct WriteOnOpen(pub Outbound);

impl actix::Message for WriteOnOpen {
    type Result = Result<(), WriteError>;
}

/// The socket refused a message; it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The handshake has not finished.
    #[error("the connection is not open yet")]
    NotOpen(Outbound),
    /// A Close was sent or received: no more data may be written.
    #[error("the connection is closing")]
    Closing(Outbound),
    /// The write buffer is full: the peer is not reading as fast as we write.
    #[error("the write buffer is full")]
    Full(Outbound),
}

impl WriteError {
    /// The message that was not written.
    pub fn into_message(self) -> Outbound {
        match self {
            WriteError::NotOpen(message)
            | WriteError::Closing(message)
            | WriteError::Full(message) => message,
        }
    }
}

/// Closes the connection gracefully: a Close frame with `code` and `reason` is sent, and the
/// socket ends when the peer answers (or after the close timeout).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Close {
    /// Close code ([`CloseCode::NORMAL`] for a normal close).
    pub code: CloseCode,
    /// Reason text; cut to 123 bytes.
    pub reason: String,
}

/// Starts reading a socket that was started with [`Connection::hold_reads`](crate::Connection::hold_reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct ReleaseReads;
