//! Clocks, CPU time and medians.

use std::time::{Duration, Instant};

/// User plus system CPU time of this process so far, from `/proc/self/stat`.
pub(crate) fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) start past the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}

/// This thread's scheduling so far, from `/proc/thread-self/schedstat` (nanosecond clocks,
/// unlike `/proc/self/stat`'s 10 ms ticks): time on a CPU, and time runnable but waiting for
/// one, which is how much other work on the machine held this thread up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ThreadSched {
    pub(crate) on_cpu: Duration,
    pub(crate) waiting: Duration,
}

impl ThreadSched {
    /// Now, or zeros where the kernel does not say.
    pub(crate) fn now() -> ThreadSched {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|text| Self::parse(&text))
            .unwrap_or_default()
    }

    fn parse(text: &str) -> Option<ThreadSched> {
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        Some(ThreadSched {
            on_cpu: Duration::from_nanos(fields.next()??),
            waiting: Duration::from_nanos(fields.next()??),
        })
    }

    /// What was spent since `earlier`.
    pub(crate) fn since(self, earlier: ThreadSched) -> ThreadSched {
        ThreadSched {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            waiting: self.waiting.saturating_sub(earlier.waiting),
        }
    }
}

/// Wall and CPU time of one measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) wall: Duration,
    pub(crate) cpu: Duration,
}

/// Measures `work` (which runs to completion).
pub(crate) fn sample<T>(work: impl FnOnce() -> T) -> (Sample, T) {
    let cpu = cpu_time();
    let start = Instant::now();
    let out = work();
    (
        Sample {
            wall: start.elapsed(),
            cpu: cpu_time().saturating_sub(cpu),
        },
        out,
    )
}

/// The median of `values` (the upper middle for an even count).
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![]), 0.0);
    }

    #[test]
    fn schedstat_is_cpu_then_waiting_in_nanoseconds() {
        assert_eq!(
            ThreadSched::parse("1037867078 553068411 166\n"),
            Some(ThreadSched {
                on_cpu: Duration::from_nanos(1_037_867_078),
                waiting: Duration::from_nanos(553_068_411),
            })
        );
        assert_eq!(ThreadSched::parse("12"), None);
    }

    #[test]
    fn cpu_time_moves() {
        let before = cpu_time();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(cpu_time() >= before);
    }
}
