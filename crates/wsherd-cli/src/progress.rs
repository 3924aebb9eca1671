//! Progress while `wsherd run` brings its endpoints up: on a terminal, one line redrawn in
//! place ("live 8,234 / 10,000, waiting 1,766, failed 0"); elsewhere a plain line at most once
//! a second when the counts change. Either way a summary once every endpoint has settled (live,
//! failed, paused or stopped), and then nothing more: state changes are logged from then on.

use std::time::{Duration, Instant};

use wsherd::{EndpointState, Herd};

use crate::logs::Stderr;

/// Counts of endpoints by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: usize,
    pub(crate) live: usize,
    pub(crate) waiting: usize,
    pub(crate) failed: usize,
    /// On-demand endpoints nobody needs: settled, with no socket.
    pub(crate) idle: usize,
}

impl Counts {
    pub(crate) fn of<'a>(states: impl IntoIterator<Item = &'a EndpointState>) -> Counts {
        let mut counts = Counts::default();
        for state in states {
            counts.total += 1;
            match state {
                EndpointState::Live => counts.live += 1,
                EndpointState::Failed { .. } => counts.failed += 1,
                EndpointState::Connecting { .. }
                | EndpointState::Open
                | EndpointState::Backoff { .. } => counts.waiting += 1,
                EndpointState::Idle => counts.idle += 1,
                // Held by the owner: neither coming up nor failed.
                _ => {}
            }
        }
        counts
    }

    /// Every endpoint got where it is going, for now.
    pub(crate) fn settled(&self) -> bool {
        self.waiting == 0
    }

    /// "live 8,234 / 10,000, waiting 1,766, failed 0".
    pub(crate) fn line(&self) -> String {
        format!(
            "live {} / {}, waiting {}, failed {}",
            thousands(self.live),
            thousands(self.total),
            thousands(self.waiting),
            thousands(self.failed)
        )
    }

    /// "10,000 endpoints up in 3.2 s: 9,998 live, 2 failed".
    pub(crate) fn summary(&self, took: Duration) -> String {
        let mut text = format!(
            "{} endpoint{} settled in {:.1} s: {} live, {} failed",
            thousands(self.total),
            if self.total == 1 { "" } else { "s" },
            took.as_secs_f64(),
            thousands(self.live),
            thousands(self.failed)
        );
        if self.idle > 0 {
            text.push_str(&format!(", {} idle (on demand)", thousands(self.idle)));
        }
        let held = self.total - self.live - self.failed - self.waiting - self.idle;
        if held > 0 {
            text.push_str(&format!(", {} paused or stopped", thousands(held)));
        }
        text
    }
}

/// `1234567` → `"1,234,567"`.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Reports until the herd settled, on the current arbiter.
pub(crate) fn spawn(herd: Herd, stderr: Stderr, terminal: bool) {
    let tick = if terminal {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    actix_rt::spawn(async move {
        let started = Instant::now();
        let mut last = None;
        // The first look one tick after the start: by then the held endpoints took their
        // resume, and a `paused` one is one the owner paused.
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let statuses = herd.status();
            let counts = Counts::of(statuses.iter().map(|s| &s.state));
            if counts.settled() {
                if terminal {
                    stderr.status(None);
                }
                stderr.write(format!("wsherd: {}\n", counts.summary(started.elapsed())));
                return;
            }
            if terminal {
                stderr.status(Some(counts.line()));
            } else if last != Some(counts) {
                stderr.write(format!("wsherd: {}\n", counts.line()));
            }
            last = Some(counts);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsherd::EndReason;

    #[test]
    fn counts_say_how_many_are_live_waiting_and_failed() {
        let states = [
            EndpointState::Live,
            EndpointState::Connecting { attempt: 1 },
            EndpointState::Backoff {
                attempt: 2,
                delay: Duration::from_secs(1),
                reason: EndReason::StreamEnded,
            },
            EndpointState::Paused,
        ];
        let counts = Counts::of(&states);
        assert_eq!(counts.line(), "live 1 / 4, waiting 2, failed 0");
        assert!(!counts.settled());
        let settled = Counts::of(&[
            EndpointState::Live,
            EndpointState::Paused,
            EndpointState::Idle,
        ]);
        assert_eq!(
            settled.summary(Duration::from_millis(3240)),
            "3 endpoints settled in 3.2 s: 1 live, 0 failed, 1 idle (on demand), 1 paused or stopped"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(8234), "8,234");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
