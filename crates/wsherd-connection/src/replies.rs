//! Replies awaited by id: the owner's requests, which a connection answers from its inbound
//! text before the message is routed.

/// Whoever waits for replies on an endpoint's sockets (the supervisor's requests).
///
/// A connection asks [`awaiting`](Self::awaiting) for every text message, so it must cost no
/// more than an atomic load; only while it says yes is each message [offered](Self::offer).
pub trait ReplyWaiter: Send + Sync {
    /// Whether a reply is awaited at all.
    fn awaiting(&self) -> bool;

    /// Offers an inbound text message: `None` when it answers no request, else whether it
    /// also goes to subscribers.
    fn offer(&self, text: &str) -> Option<bool>;

    /// The owner's message `text` went into connection `socket`'s write buffer: if it is a
    /// request, its reply may come from now on, and the socket's end concerns it. Told by the
    /// connection itself, before anything it reads afterwards and before its end.
    fn written(&self, text: &str, socket: u64);
}
