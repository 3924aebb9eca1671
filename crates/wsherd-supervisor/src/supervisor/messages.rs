//! What an owner may ask of a supervisor, and what it answers.

use std::sync::Arc;

use wsherd_protocol::{CloseCode, Outbound};

/// Most messages [`Remember`] keeps for replay.
pub const MAX_REMEMBERED: usize = 10_000;

/// What happened to a submitted message.
///
/// Deliberately exhaustive: a caller that counts outcomes should hear from the compiler when
/// a new one appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Handed to the open socket.
    Written,
    /// Kept in the outbound queue; it goes out, in order, once the endpoint is live.
    Queued,
}

/// Why the supervisor refused a message; it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejected {
    /// The queue is full and its policy is `reject` (or the message alone exceeds it).
    #[error("the outbound queue is full")]
    QueueFull(Outbound),
    /// The endpoint has failed or was stopped.
    #[error("the endpoint is {state}")]
    Down {
        /// The endpoint's state name.
        state: &'static str,
        /// The message.
        message: Outbound,
    },
    /// Too many messages are remembered for replay.
    #[error("more than {MAX_REMEMBERED} messages are remembered for replay")]
    TooManyRemembered(Outbound),
}

impl Rejected {
    /// The refused message.
    pub fn into_message(self) -> Outbound {
        match self {
            Rejected::QueueFull(message)
            | Rejected::Down { message, .. }
            | Rejected::TooManyRemembered(message) => message,
        }
    }
}

/// Sends a message now if live, else queues it per the queue policy.
#[derive(Debug)]
pub struct Submit(pub Outbound);

impl actix::Message for Submit {
    type Result = Result<Submitted, Rejected>;
}

/// Sends a message now (or queues it) and replays it after every future open, after the
/// configured on-open messages: a subscription made at run time.
#[derive(Debug)]
pub struct Remember(pub Outbound);

impl actix::Message for Remember {
    type Result = Result<Submitted, Rejected>;
}

/// A function asked for messages to send after every open (after the remembered ones).
pub type OnOpenHook = Arc<dyn Fn() -> Vec<Outbound> + Send + Sync>;

/// Adds an [`OnOpenHook`].
pub struct AddOnOpenHook(pub OnOpenHook);

impl actix::Message for AddOnOpenHook {
    type Result = ();
}

impl std::fmt::Debug for AddOnOpenHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AddOnOpenHook(..)")
    }
}

/// Manual control of one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Close the socket (if any) and connect again at once; from `Failed` this starts over.
    Reconnect,
    /// Close the socket and stay down until `Resume`.
    Pause,
    /// Connect again after `Pause`.
    Resume,
}

impl actix::Message for Control {
    type Result = ();
}

/// Closes the endpoint for good and hands back what was still queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stop {
    /// Close code sent to the peer.
    pub code: CloseCode,
    /// Close reason sent to the peer.
    pub reason: String,
}

impl actix::Message for Stop {
    type Result = StopReceipt;
}

/// What [`Stop`] answers: the messages still queued, and a signal for the end of the close.
#[derive(Debug, actix::MessageResponse)]
pub struct StopReceipt {
    /// Messages that were queued and will never be sent, oldest first.
    pub unsent: Vec<Outbound>,
    /// Completes (with `Err`, the sender being dropped) once the supervisor has stopped, i.e.
    /// the peer answered the Close or the close timeout passed.
    pub closed: tokio::sync::oneshot::Receiver<()>,
}
