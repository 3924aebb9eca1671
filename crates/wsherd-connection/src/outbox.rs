//! The bounded write side of a connection: frames wait here while the socket is busy.

use std::collections::VecDeque;

/// Bytes counted for each frame beyond its payload: header and bookkeeping, so that a flood
/// of empty frames is bounded too.
pub(crate) const FRAME_OVERHEAD: usize = 16;

/// Frames waiting to be written, and the bytes handed to the socket but not yet flushed.
///
/// Both count against one limit, so a peer that stops reading can make us hold at most
/// `limit` bytes, however fast it sends Pings or the caller sends messages.
#[derive(Debug)]
pub(crate) struct Outbox<T> {
    queue: VecDeque<(T, usize)>,
    queued_bytes: usize,
    in_flight_bytes: usize,
    limit: usize,
}

impl<T> Outbox<T> {
    pub(crate) fn new(limit: usize) -> Self {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight_bytes: 0,
            limit,
        }
    }

    /// Queues `frame` of `payload_len` bytes; refuses it when the limit would be passed,
    /// unless `always` (a Close frame, which must go out whatever is queued). An empty outbox
    /// takes any one frame, so a message larger than the limit can still be sent alone.
    pub(crate) fn push(&mut self, frame: T, payload_len: usize, always: bool) -> Result<(), T> {
        let cost = payload_len.saturating_add(FRAME_OVERHEAD);
        let buffered = self.buffered();
        if !always && buffered > 0 && buffered.saturating_add(cost) > self.limit {
            return Err(frame);
        }
        self.queue.push_back((frame, cost));
        self.queued_bytes += cost;
        Ok(())
    }

    /// Everything queued, now counted as in flight until [`Outbox::flushed`].
    pub(crate) fn take_batch(&mut self) -> (Vec<T>, usize) {
        let bytes = self.queued_bytes;
        self.queued_bytes = 0;
        self.in_flight_bytes += bytes;
        // The queue is taken whole, so a socket that wrote once and went quiet holds no
        // storage for the next write (the batch is collected into a new Vec either way).
        let queue = std::mem::take(&mut self.queue);
        (queue.into_iter().map(|(frame, _)| frame).collect(), bytes)
    }

    /// A batch of `bytes` reached the socket.
    pub(crate) fn flushed(&mut self, bytes: usize) {
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(bytes);
    }

    /// The frames that never reached the socket, in order.
    pub(crate) fn drain_unsent(&mut self) -> impl Iterator<Item = T> + '_ {
        self.queued_bytes = 0;
        self.queue.drain(..).map(|(frame, _)| frame)
    }

    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Bytes queued plus in flight.
    pub(crate) fn buffered(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_counts_queued_and_in_flight_bytes() {
        let mut outbox = Outbox::new(110);
        assert!(outbox.push("a", 40, false).is_ok());
        assert!(outbox.push("b", 30, false).is_ok());
        assert_eq!(outbox.buffered(), 40 + 30 + 2 * FRAME_OVERHEAD);
        assert_eq!(outbox.push("c", 1, false), Err("c"), "would pass the limit");
        let (batch, bytes) = outbox.take_batch();
        assert_eq!(batch, ["a", "b"]);
        assert!(!outbox.has_queued());
        assert_eq!(
            outbox.push("c", 1, false),
            Err("c"),
            "in-flight bytes still count"
        );
        assert!(outbox.push("close", 2, true).is_ok(), "a Close always goes");
        outbox.flushed(bytes);
        assert_eq!(outbox.buffered(), 2 + FRAME_OVERHEAD);
        assert!(outbox.push("d", 10, false).is_ok());
        assert_eq!(outbox.drain_unsent().collect::<Vec<_>>(), ["close", "d"]);
        assert_eq!(outbox.buffered(), 0);
    }

    #[test]
    fn one_frame_larger_than_the_limit_goes_alone() {
        let mut outbox = Outbox::new(10);
        assert!(outbox.push("big", 1000, false).is_ok());
        assert_eq!(outbox.push("next", 0, false), Err("next"));
        let (_, bytes) = outbox.take_batch();
        outbox.flushed(bytes);
        assert!(outbox.push("next", 0, false).is_ok());
    }

    #[test]
    fn empty_frames_are_bounded_too() {
        let mut outbox = Outbox::new(10 * FRAME_OVERHEAD);
        let accepted = (0..100)
            .filter(|_| outbox.push((), 0, false).is_ok())
            .count();
        assert_eq!(accepted, 10);
    }
}
