//! Sequence numbers in a feed: which messages came in order, which were skipped, repeated or
//! restarted, kept per kind and per scope (an order book per symbol), in bounded memory.
//!
//! Pure bookkeeping on explicit instants: the connection reads the numbers and acts on the
//! verdicts (an event, a reconnect, a resync request, a dropped duplicate).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::kind::{KindRule, MessageId};

/// Scopes tracked at most per endpoint, unless told otherwise; past it new scopes go
/// untracked (counted).
pub const DEFAULT_MAX_SCOPES: usize = 10_000;

/// The longest kind plus scope tracked: a peer's longer names go untracked (counted), so what
/// the tracker holds stays bounded by `max_scopes` times this.
pub const MAX_SCOPE_KEY: usize = 256;

/// What a gap leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnGap {
    /// A gap event, nothing more.
    #[default]
    Event,
    /// The event, and the socket ends (`EndReason::SequenceGap`) to be reconnected by policy.
    Reconnect,
    /// The event, and the configured resync messages are sent (a snapshot request).
    Resync,
}

/// Where a feed's sequence numbers are and what to do about a gap.
///
/// `Debug` counts the resync messages without showing them (they may carry credentials).
#[derive(Clone)]
pub struct SequenceSpec {
    /// Where the number is: a top-level field or a JSON pointer.
    pub field: String,
    /// The kinds that carry it; empty: every message.
    pub kinds: Vec<String>,
    /// What splits sequences (a field or a pointer, such as the symbol); `None`: one per kind.
    pub scope: Option<String>,
    /// What a gap leads to.
    pub on_gap: OnGap,
    /// Sent after a gap when `on_gap` is `Resync`.
    pub resync: Vec<String>,
    /// A number seen before (repeated or older) is dropped instead of delivered.
    pub drop_duplicates: bool,
    /// Numbers continue across socket lives (else each socket starts afresh).
    pub across_reconnects: bool,
    /// At most one event per scope this often; the others are counted.
    pub event_interval: Duration,
    /// Scopes tracked at most.
    pub max_scopes: usize,
}

impl std::fmt::Debug for SequenceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceSpec")
            .field("field", &self.field)
            .field("kinds", &self.kinds)
            .field("scope", &self.scope)
            .field("on_gap", &self.on_gap)
            .field("resync", &format_args!("{} message(s)", self.resync.len()))
            .field("drop_duplicates", &self.drop_duplicates)
            .field("across_reconnects", &self.across_reconnects)
            .field("event_interval", &self.event_interval)
            .field("max_scopes", &self.max_scopes)
            .finish()
    }
}

impl SequenceSpec {
    /// Numbers at `field`, every message, one sequence per kind, gaps as events.
    pub fn new(field: impl Into<String>) -> Self {
        SequenceSpec {
            field: field.into(),
            kinds: Vec::new(),
            scope: None,
            on_gap: OnGap::Event,
            resync: Vec::new(),
            drop_duplicates: false,
            across_reconnects: false,
            event_interval: Duration::from_secs(1),
            max_scopes: DEFAULT_MAX_SCOPES,
        }
    }
}

/// What one message's number says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The first number of its scope (on this socket, or ever).
    First,
    /// One more than the last.
    InOrder,
    /// Numbers were skipped: `got` is past `expected`.
    Gap {
        /// The number that should have come.
        expected: u64,
        /// The number that came.
        got: u64,
    },
    /// The last number again, or an older one.
    Duplicate {
        /// The number that should have come.
        expected: u64,
        /// The number that came.
        got: u64,
    },
    /// The sequence started over (0 or 1 after a higher number): taken as the new start.
    Reset {
        /// The number that should have come.
        expected: u64,
        /// The number that came.
        got: u64,
    },
    /// No number where the spec looks (absent, a string, negative, fractional, past 64 bits).
    Unsequenced,
    /// A new scope past `max_scopes`: not tracked.
    Untracked,
    /// A kind the spec does not cover.
    Ignored,
}

/// What the connection does with a message after [`SequenceTracker::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// What its number says.
    pub seen: Seen,
    /// Publish an event for it (a gap, duplicate or reset not within `event_interval` of the
    /// scope's last event).
    pub report: bool,
    /// Do not deliver it (a duplicate, with `drop_duplicates`).
    pub drop: bool,
}

/// Counts of what the numbers said.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceStats {
    /// Gaps seen.
    pub gaps: u64,
    /// Repeated or older numbers seen.
    pub duplicates: u64,
    /// Sequences that started over.
    pub resets: u64,
    /// Messages of a covered kind without a usable number.
    pub unsequenced: u64,
    /// Duplicates dropped (`drop_duplicates`).
    pub dropped: u64,
    /// Events not published because one for the scope was published within `event_interval`.
    pub suppressed: u64,
    /// Messages of scopes past `max_scopes`.
    pub untracked: u64,
}

struct Scope {
    last: u64,
    last_event: Option<Instant>,
    /// The old socket of a rotation is gone; until this scope's next new number, repeats
    /// are what the old one delivered.
    overlap: bool,
}

/// The last number of every scope, and the counts; see the module docs.
pub struct SequenceTracker {
    /// The spec's `field` and `scope`, as written: what this tracker reads.
    reads: (String, Option<String>),
    field: KindRule,
    scope: Option<KindRule>,
    scopes: HashMap<(Box<str>, Box<str>), Scope>,
    /// Two sockets deliver at once (a rotation): what both carry is dropped the second time.
    overlap: bool,
    /// Counts so far.
    pub stats: SequenceStats,
}

impl std::fmt::Debug for SequenceTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequenceTracker")
            .field("scopes", &self.scopes.len())
            .field("stats", &self.stats)
            .finish()
    }
}

impl SequenceTracker {
    /// A tracker reading numbers (and scopes) where `spec` says.
    pub fn new(spec: &SequenceSpec) -> Self {
        SequenceTracker {
            reads: (spec.field.clone(), spec.scope.clone()),
            field: KindRule::pointer(&spec.field),
            scope: spec.scope.as_deref().map(KindRule::pointer),
            scopes: HashMap::new(),
            overlap: false,
            stats: SequenceStats::default(),
        }
    }

    /// Whether this tracker reads numbers and scopes where `spec` says.
    pub fn reads_as(&self, spec: &SequenceSpec) -> bool {
        self.reads.0 == spec.field && self.reads.1 == spec.scope
    }

    /// Forgets every scope's last number (a new socket starts afresh); keeps the counts.
    pub fn restart(&mut self) {
        self.scopes = HashMap::new();
    }

    /// While `overlap`, a repeated or older number is dropped whatever `drop_duplicates` says:
    /// two sockets of one feed deliver it twice.
    pub fn set_overlap(&mut self, overlap: bool) {
        self.overlap = overlap;
        if !overlap {
            for scope in self.scopes.values_mut() {
                scope.overlap = false;
            }
        }
    }

    /// The old socket of a rotation is gone: in each scope, what the new one repeats of it is
    /// still dropped, up to the first number it adds there.
    pub fn end_overlap_when_new(&mut self) {
        if std::mem::take(&mut self.overlap) {
            for scope in self.scopes.values_mut() {
                scope.overlap = true;
            }
        }
    }

    /// Scopes tracked now.
    pub fn scopes(&self) -> usize {
        self.scopes.len()
    }

    /// Reads the number (and scope) of message `text` of kind `kind` and says what it means.
    pub fn observe(
        &mut self,
        spec: &SequenceSpec,
        kind: &str,
        text: &str,
        now: Instant,
    ) -> Verdict {
        let quiet = |seen| Verdict {
            seen,
            report: false,
            drop: false,
        };
        if !spec.kinds.is_empty() && !spec.kinds.iter().any(|k| k == kind) {
            return quiet(Seen::Ignored);
        }
        let number = match self.field.extract_id(text) {
            Some(MessageId::Integer(digits)) => digits.parse::<u64>().ok(),
            _ => None,
        };
        let Some(got) = number else {
            self.stats.unsequenced += 1;
            return quiet(Seen::Unsequenced);
        };
        let scope: Box<str> = match self.scope.as_ref().and_then(|rule| rule.extract_id(text)) {
            Some(MessageId::Text(text) | MessageId::Integer(text)) => text.into(),
            None => "".into(),
        };
        if kind.len() + scope.len() > MAX_SCOPE_KEY {
            self.stats.untracked += 1;
            return quiet(Seen::Untracked);
        }
        let key = (Box::from(kind), scope);
        let Some(state) = self.scopes.get_mut(&key) else {
            if self.scopes.len() >= spec.max_scopes {
                self.stats.untracked += 1;
                return quiet(Seen::Untracked);
            }
            self.scopes.insert(
                key,
                Scope {
                    last: got,
                    last_event: None,
                    overlap: false,
                },
            );
            return quiet(Seen::First);
        };
        let expected = state.last.saturating_add(1);
        let seen = if got == expected {
            Seen::InOrder
        } else if got > expected {
            self.stats.gaps += 1;
            Seen::Gap { expected, got }
        } else if got <= 1 && state.last > 1 {
            self.stats.resets += 1;
            Seen::Reset { expected, got }
        } else {
            // The overlap of a rotation repeats what the old socket delivered: expected.
            if !self.overlap && !state.overlap {
                self.stats.duplicates += 1;
            }
            Seen::Duplicate { expected, got }
        };
        let duplicate = matches!(seen, Seen::Duplicate { .. });
        let drop = duplicate && (spec.drop_duplicates || self.overlap || state.overlap);
        if drop {
            self.stats.dropped += 1;
        }
        // A late repeat does not move the sequence back (the next number would look like a
        // gap); a gap or a reset is where it goes on from.
        if !duplicate {
            state.last = got;
            state.overlap = false;
        }
        let mut report = false;
        let expected_repeat =
            (self.overlap || state.overlap) && matches!(seen, Seen::Duplicate { .. });
        if !matches!(seen, Seen::InOrder) && !expected_repeat {
            let due = state
                .last_event
                .is_none_or(|at| now.saturating_duration_since(at) >= spec.event_interval);
            if due {
                state.last_event = Some(now);
                report = true;
            } else {
                self.stats.suppressed += 1;
            }
        }
        Verdict { seen, report, drop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: &str, symbol: &str) -> String {
        format!(r#"{{"type":"trade","seq":{seq},"s":"{symbol}"}}"#)
    }

    fn seen(tracker: &mut SequenceTracker, spec: &SequenceSpec, text: &str, at: Instant) -> Seen {
        tracker.observe(spec, "trade", text, at).seen
    }

    #[test]
    fn numbers_in_order_a_gap_a_duplicate_and_a_reset_per_scope() {
        let spec = SequenceSpec {
            scope: Some("s".into()),
            ..SequenceSpec::new("seq")
        };
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        assert_eq!(seen(&mut tracker, &spec, &msg("5", "BTC"), t), Seen::First);
        assert_eq!(
            seen(&mut tracker, &spec, &msg("6", "BTC"), t),
            Seen::InOrder
        );
        // Another scope has its own sequence.
        assert_eq!(
            seen(&mut tracker, &spec, &msg("100", "ETH"), t),
            Seen::First
        );
        assert_eq!(
            seen(&mut tracker, &spec, &msg("9", "BTC"), t),
            Seen::Gap {
                expected: 7,
                got: 9
            }
        );
        assert_eq!(
            seen(&mut tracker, &spec, &msg("9", "BTC"), t),
            Seen::Duplicate {
                expected: 10,
                got: 9
            }
        );
        assert_eq!(
            seen(&mut tracker, &spec, &msg("1", "BTC"), t),
            Seen::Reset {
                expected: 10,
                got: 1
            }
        );
        assert_eq!(
            seen(&mut tracker, &spec, &msg("2", "BTC"), t),
            Seen::InOrder
        );
        assert_eq!(
            (
                tracker.stats.gaps,
                tracker.stats.duplicates,
                tracker.stats.resets
            ),
            (1, 1, 1)
        );
    }

    #[test]
    fn strings_negatives_fractions_huge_and_absent_numbers_are_unsequenced_and_counted() {
        let spec = SequenceSpec::new("/data/seq");
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        for text in [
            r#"{"data":{"seq":"7"}}"#,
            r#"{"data":{"seq":-1}}"#,
            r#"{"data":{"seq":1.5}}"#,
            r#"{"data":{"seq":123456789012345678901234567890}}"#,
            r#"{"data":{}}"#,
            "not json",
        ] {
            assert_eq!(
                seen(&mut tracker, &spec, text, t),
                Seen::Unsequenced,
                "{text}"
            );
        }
        assert_eq!(tracker.stats.unsequenced, 6);
        assert_eq!(tracker.scopes(), 0);
        assert_eq!(
            seen(
                &mut tracker,
                &spec,
                &format!(r#"{{"data":{{"seq":{}}}}}"#, u64::MAX),
                t
            ),
            Seen::First
        );
        // u64::MAX + 1 saturates: no overflow, the same number again is a duplicate.
        assert!(matches!(
            seen(
                &mut tracker,
                &spec,
                &format!(r#"{{"data":{{"seq":{}}}}}"#, u64::MAX),
                t
            ),
            Seen::Duplicate { .. } | Seen::InOrder
        ));
    }

    #[test]
    fn a_late_repeat_delivered_anyway_does_not_make_the_next_number_a_gap() {
        let spec = SequenceSpec::new("seq");
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        for n in ["5", "6", "7"] {
            seen(&mut tracker, &spec, &msg(n, "x"), t);
        }
        assert!(matches!(
            seen(&mut tracker, &spec, &msg("6", "x"), t),
            Seen::Duplicate { .. }
        ));
        assert_eq!(seen(&mut tracker, &spec, &msg("8", "x"), t), Seen::InOrder);
        assert_eq!(tracker.stats.gaps, 0);
        let long = "s".repeat(MAX_SCOPE_KEY);
        assert_eq!(
            SequenceTracker::new(&SequenceSpec {
                scope: Some("s".into()),
                ..SequenceSpec::new("seq")
            })
            .observe(
                &SequenceSpec {
                    scope: Some("s".into()),
                    ..SequenceSpec::new("seq")
                },
                "trade",
                &msg("1", &long),
                t
            )
            .seen,
            Seen::Untracked,
            "a peer's endless scope names are not kept"
        );
    }

    #[test]
    fn a_rotation_overlap_is_dropped_per_scope_until_each_scope_has_a_new_number() {
        let spec = SequenceSpec {
            scope: Some("s".into()),
            ..SequenceSpec::new("seq")
        };
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        tracker.set_overlap(true);
        for symbol in ["BTC", "ETH"] {
            for n in ["1", "2", "3"] {
                seen(&mut tracker, &spec, &msg(n, symbol), t);
            }
        }
        tracker.end_overlap_when_new();
        let drop = |tracker: &mut SequenceTracker, n: &str, s: &str| {
            tracker.observe(&spec, "trade", &msg(n, s), t).drop
        };
        assert!(drop(&mut tracker, "2", "BTC"));
        assert!(!drop(&mut tracker, "4", "BTC"));
        // ETH has not moved on yet: its repeats are still the old socket's.
        assert!(drop(&mut tracker, "3", "ETH"));
        assert!(!drop(&mut tracker, "4", "ETH"));
        // Past the overlap a repeat is a duplicate again, delivered (no drop_duplicates).
        assert!(!drop(&mut tracker, "4", "BTC"));
        assert_eq!(
            tracker.stats.duplicates, 1,
            "overlap repeats are not counted"
        );
    }

    #[test]
    fn duplicates_are_dropped_on_request_and_events_come_at_most_once_per_interval() {
        let spec = SequenceSpec {
            drop_duplicates: true,
            event_interval: Duration::from_secs(1),
            ..SequenceSpec::new("seq")
        };
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        tracker.observe(&spec, "trade", &msg("1", "x"), t);
        let gap = tracker.observe(&spec, "trade", &msg("3", "x"), t);
        assert!(gap.report && !gap.drop);
        let dup = tracker.observe(
            &spec,
            "trade",
            &msg("3", "x"),
            t + Duration::from_millis(10),
        );
        assert!(dup.drop, "dropped");
        assert!(!dup.report, "within the interval: counted, not reported");
        let later = tracker.observe(&spec, "trade", &msg("2", "x"), t + Duration::from_secs(2));
        assert!(later.drop && later.report);
        // A dropped duplicate does not move the sequence back.
        assert_eq!(
            tracker.observe(&spec, "trade", &msg("4", "x"), t).seen,
            Seen::InOrder
        );
        assert_eq!((tracker.stats.dropped, tracker.stats.suppressed), (2, 1));
    }

    #[test]
    fn only_the_named_kinds_count_and_scopes_past_the_cap_go_untracked() {
        let spec = SequenceSpec {
            kinds: vec!["trade".into()],
            scope: Some("s".into()),
            max_scopes: 2,
            ..SequenceSpec::new("seq")
        };
        let mut tracker = SequenceTracker::new(&spec);
        let t = Instant::now();
        assert_eq!(
            tracker.observe(&spec, "quote", &msg("1", "a"), t).seen,
            Seen::Ignored
        );
        for symbol in ["a", "b"] {
            assert_eq!(seen(&mut tracker, &spec, &msg("1", symbol), t), Seen::First);
        }
        assert_eq!(
            seen(&mut tracker, &spec, &msg("1", "c"), t),
            Seen::Untracked
        );
        assert_eq!(tracker.scopes(), 2);
        tracker.restart();
        assert_eq!(seen(&mut tracker, &spec, &msg("9", "a"), t), Seen::First);
        assert_eq!(tracker.stats.untracked, 1, "counts survive a restart");
    }
}
