//! Restart intensity (OTP's "N restarts in T"): a window of recent restarts.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// More than `max_restarts` restarts within `within` means give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartIntensity {
    /// Restarts allowed in the window; 0 disables the check.
    pub max_restarts: u32,
    /// The window.
    pub within: Duration,
}

impl Default for RestartIntensity {
    /// Off: backoff alone paces a reconnecting endpoint unless a limit is configured.
    fn default() -> Self {
        RestartIntensity {
            max_restarts: 0,
            within: Duration::from_secs(60),
        }
    }
}

/// Recent restart times of one endpoint.
#[derive(Debug, Clone)]
pub struct IntensityWindow {
    limit: RestartIntensity,
    restarts: VecDeque<Instant>,
}

impl IntensityWindow {
    /// An empty window.
    pub fn new(limit: RestartIntensity) -> Self {
        IntensityWindow {
            limit,
            restarts: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; returns true when that exceeds the intensity.
    pub fn record(&mut self, now: Instant) -> bool {
        if self.limit.max_restarts == 0 {
            return false;
        }
        while self
            .restarts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.limit.within)
        {
            self.restarts.pop_front();
        }
        self.restarts.push_back(now);
        // Bounded: anything beyond max_restarts + 1 entries already tripped the limit.
        while self.restarts.len() > self.limit.max_restarts as usize + 1 {
            self.restarts.pop_front();
        }
        self.restarts.len() > self.limit.max_restarts as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_up_after_n_restarts_within_t() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut window = IntensityWindow::new(RestartIntensity {
            max_restarts: 3,
            within: 10 * s,
        });
        assert!(!window.record(t0));
        assert!(!window.record(t0 + s));
        assert!(!window.record(t0 + 2 * s));
        assert!(window.record(t0 + 3 * s), "fourth restart in 10 s");
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut window = IntensityWindow::new(RestartIntensity {
            max_restarts: 2,
            within: 10 * s,
        });
        assert!(!window.record(t0));
        assert!(!window.record(t0 + 5 * s));
        assert!(!window.record(t0 + 11 * s), "the first one expired");
        assert!(window.record(t0 + 12 * s));
    }

    #[test]
    fn zero_disables() {
        let mut window = IntensityWindow::new(RestartIntensity::default());
        let t0 = Instant::now();
        assert!((0..1000).all(|_| !window.record(t0)));
    }
}
