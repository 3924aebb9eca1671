//! What an owner may ask of a supervisor, and what it answers.

use std::sync::Arc;

use wsherd_protocol::{CloseCode, Outbound};

/// Most messages [`Remember`] keeps for replay.
pub const MAX_REMEMBERED: usize = 10_000;

/// What became of an accepted message (see `docs/guarantees.md`). Whatever the outcome, the
/// message is now wsherd's: it goes out in order, or comes back to the caller from `stop`,
/// `remove`, `restart`, `reload` or `shutdown`, or is dropped and counted by the queue's
/// policy (TTL, `drop_oldest`). Neither outcome says that it reached the peer.
///
/// Deliberately exhaustive: a caller that counts outcomes should hear from the compiler when
/// a new one appears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// In the open socket's write buffer, being written. If the socket ends before the
    /// operating system took its last byte, it goes back to the front of the queue and out on
    /// the next socket.
    Writing,
    /// In the endpoint's outbound queue; it goes out, in order, once the endpoint is live.
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

/// Keeps a message for replay after every open, after the configured on-open messages, and
/// writes it on the open socket now if there is one: a subscription made at run time. Refused
/// (and not kept) when the endpoint failed or is stopping.
#[derive(Debug)]
pub struct Remember(pub Outbound);

impl actix::Message for Remember {
    type Result = Result<(), Rejected>;
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

/// What [`Stop`] answers: the messages still queued, what a restart carries over, and the
/// messages the socket hands back as it closes.
#[derive(actix::MessageResponse)]
pub struct StopReceipt {
    /// Messages that were queued and will never be sent, oldest first.
    pub unsent: Vec<Outbound>,
    /// Messages kept by [`Remember`], for a successor to replay.
    pub remembered: Vec<Outbound>,
    /// The on-open hooks, for a successor.
    pub hooks: Vec<OnOpenHook>,
    /// Completes once the socket is closed (the peer answered the Close or the close timeout
    /// passed) with the messages the socket handed back while closing, oldest first:
    /// accepted, but never taken whole by the operating system. `Err` when the supervisor went
    /// away without a word (its system stopped).
    pub closed: tokio::sync::oneshot::Receiver<Vec<Outbound>>,
    /// Completes once the supervisor has stopped, after `closed`: the endpoint's last events
    /// (the connection's `Closed` and the state `Stopped`) were handled by every subscriber
    /// with `Overflow::Backpressure` (the default) and are in the mailbox of every `Drop` one
    /// with room, and whatever was held before them went out; or a subscriber stayed full for
    /// `max_stall` and they were given up (counted in `events_dropped`). `Err` when the
    /// supervisor went away without a word.
    pub settled: tokio::sync::oneshot::Receiver<()>,
}

impl std::fmt::Debug for StopReceipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Message contents can be secrets (subscriptions with tokens): counts only.
        f.debug_struct("StopReceipt")
            .field("unsent", &self.unsent.len())
            .field("remembered", &self.remembered.len())
            .field("hooks", &self.hooks.len())
            .finish_non_exhaustive()
    }
}
