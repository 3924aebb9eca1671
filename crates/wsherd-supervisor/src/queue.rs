//! The outbound queue: messages sent while the socket is not live wait here, bounded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use wsherd_protocol::Outbound;

/// What happens to a message that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Refuse the new message; the caller gets it back.
    #[default]
    Reject,
    /// Drop the oldest queued messages to make room (counted and reported).
    DropOldest,
}

/// Bounds of the outbound queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuePolicy {
    /// Most messages held.
    pub max_messages: usize,
    /// Most payload bytes held.
    pub max_bytes: usize,
    /// What to do when full.
    pub overflow: OverflowPolicy,
    /// Messages older than this are dropped instead of sent (counted). `None`: never.
    pub ttl: Option<Duration>,
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy {
            max_messages: 1024,
            max_bytes: 1024 * 1024,
            overflow: OverflowPolicy::Reject,
            ttl: None,
        }
    }
}

/// A bounded FIFO of outbound messages with their enqueue times.
#[derive(Debug)]
pub struct OutboundQueue {
    policy: QueuePolicy,
    items: VecDeque<(Outbound, Instant)>,
    bytes: usize,
}

impl OutboundQueue {
    /// An empty queue.
    pub fn new(policy: QueuePolicy) -> Self {
        OutboundQueue {
            policy,
            items: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Messages held.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Payload bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Adds `message` at the back; returns how many old messages were dropped for it, or the
    /// message itself when it is refused.
    pub fn push(&mut self, message: Outbound, now: Instant) -> Result<usize, Outbound> {
        let size = message.len();
        if self.policy.max_messages == 0 || size > self.policy.max_bytes {
            return Err(message);
        }
        let mut dropped = 0;
        while self.items.len() >= self.policy.max_messages
            || self.bytes + size > self.policy.max_bytes
        {
            match self.policy.overflow {
                OverflowPolicy::Reject => return Err(message),
                OverflowPolicy::DropOldest => {
                    if self.pop_raw().is_none() {
                        break;
                    }
                    dropped += 1;
                }
            }
        }
        self.bytes += size;
        self.items.push_back((message, now));
        Ok(dropped)
    }

    /// Puts a message that was taken but could not be written back, keeping its original
    /// time: ahead of every message accepted at or after it (by that time), so that messages handed
    /// back in any order still go out in the order they were accepted. It was accepted once,
    /// so no limit refuses it now.
    pub fn requeue_front(&mut self, message: Outbound, queued_at: Instant) {
        self.bytes += message.len();
        let at = self
            .items
            .iter()
            .position(|(_, other)| *other >= queued_at)
            .unwrap_or(self.items.len());
        self.items.insert(at, (message, queued_at));
    }

    /// Drops messages older than the TTL; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let Some(ttl) = self.policy.ttl else { return 0 };
        let before = self.items.len();
        self.items.retain(|(message, at)| {
            let keep = now.saturating_duration_since(*at) < ttl;
            if !keep {
                self.bytes -= message.len();
            }
            keep
        });
        before - self.items.len()
    }

    /// When the next message will be older than the TTL, if one is held and there is a TTL.
    pub fn next_expiry(&self) -> Option<Instant> {
        let ttl = self.policy.ttl?;
        self.items
            .iter()
            .filter_map(|(_, at)| at.checked_add(ttl))
            .min()
    }

    /// The oldest message and when it was queued.
    pub fn pop(&mut self) -> Option<(Outbound, Instant)> {
        self.pop_raw()
    }

    /// Everything held, oldest first.
    pub fn drain(&mut self) -> Vec<Outbound> {
        self.bytes = 0;
        self.items.drain(..).map(|(message, _)| message).collect()
    }

    fn pop_raw(&mut self) -> Option<(Outbound, Instant)> {
        let item = self.items.pop_front()?;
        self.bytes -= item.0.len();
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Outbound {
        Outbound::from(s)
    }

    fn policy(overflow: OverflowPolicy) -> QueuePolicy {
        QueuePolicy {
            max_messages: 3,
            max_bytes: 10,
            overflow,
            ttl: None,
        }
    }

    #[test]
    fn reject_hands_the_new_message_back() {
        let now = Instant::now();
        let mut queue = OutboundQueue::new(policy(OverflowPolicy::Reject));
        for m in ["a", "b", "c"] {
            assert_eq!(queue.push(text(m), now), Ok(0));
        }
        assert_eq!(queue.push(text("d"), now), Err(text("d")), "count bound");
        let mut queue = OutboundQueue::new(policy(OverflowPolicy::Reject));
        assert_eq!(queue.push(text("12345678"), now), Ok(0));
        assert_eq!(queue.push(text("123"), now), Err(text("123")), "byte bound");
        assert_eq!(queue.push(text("12"), now), Ok(0));
        assert_eq!(queue.bytes(), 10);
    }

    #[test]
    fn drop_oldest_makes_room_and_counts() {
        let now = Instant::now();
        let mut queue = OutboundQueue::new(policy(OverflowPolicy::DropOldest));
        for m in ["a", "b", "c"] {
            queue.push(text(m), now).unwrap();
        }
        assert_eq!(queue.push(text("d"), now), Ok(1));
        // [b, c, d] hold 3 bytes; 8 more would make 11 > 10: b goes.
        assert_eq!(queue.push(text("12345678"), now), Ok(1), "byte bound");
        assert_eq!(
            queue.push(text("xy"), now),
            Ok(2),
            "c and d go: 8 + 2 fits, and the count"
        );
        assert_eq!(queue.drain(), [text("12345678"), text("xy")]);
        assert_eq!(
            queue.push(text("12345678901"), now),
            Err(text("12345678901")),
            "never fits"
        );
    }

    #[test]
    fn ttl_expires_stale_messages_in_order() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut queue = OutboundQueue::new(QueuePolicy {
            ttl: Some(5 * s),
            ..policy(OverflowPolicy::Reject)
        });
        queue.push(text("old"), t0).unwrap();
        queue.push(text("new"), t0 + 3 * s).unwrap();
        assert_eq!(queue.expire(t0 + 4 * s), 0);
        assert_eq!(queue.expire(t0 + 5 * s), 1);
        assert_eq!(queue.pop().map(|(m, _)| m), Some(text("new")));
        assert_eq!(queue.bytes(), 0);
    }

    #[test]
    fn messages_handed_back_out_of_order_go_back_in_the_order_they_were_accepted() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut queue = OutboundQueue::new(policy(OverflowPolicy::Reject));
        queue.push(text("m3"), t0 + 3 * s).unwrap();
        // m2 was refused by a closing socket after m1 had been handed back, and comes back
        // later than m1 does.
        queue.requeue_front(text("m1"), t0 + s);
        queue.requeue_front(text("m2"), t0 + 2 * s);
        assert_eq!(queue.drain(), [text("m1"), text("m2"), text("m3")]);
    }

    #[test]
    fn requeue_keeps_order_and_time() {
        let t0 = Instant::now();
        let mut queue = OutboundQueue::new(policy(OverflowPolicy::Reject));
        queue.push(text("a"), t0).unwrap();
        queue.push(text("b"), t0).unwrap();
        let (first, at) = queue.pop().unwrap();
        queue.push(text("c"), t0).unwrap();
        queue.requeue_front(first, at);
        assert_eq!(queue.drain(), [text("a"), text("b"), text("c")]);
    }
}
