//! When a connection sends the batches it gathered for batched subscribers.
//!
//! A batch is one cross-thread hop for many messages, so the longer it gathers the cheaper each
//! message gets, and the later it arrives. Batches go out when the socket has nothing more to
//! read for now, when one of them is full, or when a delivery has waited a few busy turns: under
//! a flood the socket never drains, and a subscriber of a rare kind must not wait for the
//! flood to end.

/// Deliveries one batch holds at most.
pub(crate) const MAX_BATCH: usize = 256;

/// Busy turns (up to 64 frames each) a gathered delivery waits at most.
pub(crate) const MAX_BUSY_TURNS: u32 = 4;

/// Counts the busy turns that gathered deliveries have waited.
#[derive(Debug, Default)]
pub(crate) struct BatchClock {
    busy_turns: u32,
}

impl BatchClock {
    /// After a frame: whether to send now (a batch is full).
    pub(crate) fn after_frame(&mut self, largest_batch: usize) -> bool {
        let full = largest_batch >= MAX_BATCH;
        if full {
            self.busy_turns = 0;
        }
        full
    }

    /// At the end of a turn with `pending` deliveries gathered: whether to send them.
    pub(crate) fn after_turn(&mut self, socket_drained: bool, pending: usize) -> bool {
        if pending == 0 || socket_drained {
            self.busy_turns = 0;
            return pending > 0;
        }
        self.busy_turns += 1;
        if self.busy_turns >= MAX_BUSY_TURNS {
            self.busy_turns = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drained_socket_sends_what_was_gathered() {
        let mut clock = BatchClock::default();
        assert!(clock.after_turn(true, 1));
        assert!(!clock.after_turn(true, 0), "nothing to send");
    }

    #[test]
    fn a_full_batch_goes_at_once() {
        let mut clock = BatchClock::default();
        assert!(!clock.after_frame(MAX_BATCH - 1));
        assert!(clock.after_frame(MAX_BATCH));
    }

    #[test]
    fn under_a_flood_nothing_waits_more_than_a_few_busy_turns() {
        let mut clock = BatchClock::default();
        // One delivery of a rare kind, then busy turns without it growing.
        let sent_after = (1..=10).find(|_| clock.after_turn(false, 1));
        assert_eq!(sent_after, Some(MAX_BUSY_TURNS));
        // The count starts again for what is gathered next.
        let sent_after = (1..=10).find(|_| clock.after_turn(false, 3));
        assert_eq!(sent_after, Some(MAX_BUSY_TURNS));
    }

    #[test]
    fn the_wait_restarts_after_any_send() {
        let mut clock = BatchClock::default();
        assert!(!clock.after_turn(false, 5));
        assert!(!clock.after_turn(false, 5));
        // A full batch sent everything mid-turn; the next delivery waits afresh.
        assert!(clock.after_frame(MAX_BATCH));
        let sent_after = (1..=10).find(|_| clock.after_turn(false, 1));
        assert_eq!(sent_after, Some(MAX_BUSY_TURNS));
        // A drained socket resets too.
        assert!(!clock.after_turn(false, 2));
        assert!(clock.after_turn(true, 2));
        let sent_after = (1..=10).find(|_| clock.after_turn(false, 1));
        assert_eq!(sent_after, Some(MAX_BUSY_TURNS));
        // Turns with nothing gathered do not count.
        assert!(!clock.after_turn(false, 0));
        assert!(!clock.after_turn(false, 0));
        let sent_after = (1..=10).find(|_| clock.after_turn(false, 1));
        assert_eq!(sent_after, Some(MAX_BUSY_TURNS));
    }
}
