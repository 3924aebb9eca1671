//! Clocks, CPU time, medians and straight-line fits.

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

/// CPU time of this process's threads so far, the sum of the first field of each one's
/// `/proc/self/task/*/schedstat`: nanoseconds, where [`cpu_time`] counts 10 ms ticks (a tick
/// is 17 % of a 20 s window at 0.3 % of a core). A thread that ends takes its time out of the
/// sum, so this is for windows in which no thread ends, such as an idle one. `None` where the
/// kernel keeps no schedstat.
pub(crate) fn threads_cpu_time() -> Option<Duration> {
    let nanos: Vec<u64> = std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(|entry| {
            // A thread that ended since the listing has nothing left to add.
            let text = std::fs::read_to_string(entry.ok()?.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .collect();
    if nanos.is_empty() {
        return None;
    }
    Some(Duration::from_nanos(nanos.iter().sum()))
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

/// A straight line `y = slope * x + intercept`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Line {
    pub(crate) slope: f64,
    pub(crate) intercept: f64,
}

impl Line {
    /// The line's `y` at `x`.
    pub(crate) fn at(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}

/// The least-squares line through `points` (`(x, y)`); `None` with fewer than two distinct `x`,
/// where no line is determined.
pub(crate) fn least_squares(points: &[(f64, f64)]) -> Option<Line> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let num: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let den: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if den <= 0.0 {
        return None;
    }
    let slope = num / den;
    Some(Line {
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn least_squares_through_exact_and_scattered_points() {
        let exact = least_squares(&[(1.0, 3.0), (2.0, 5.0), (3.0, 7.0)]).unwrap();
        assert!(
            close(exact.slope, 2.0) && close(exact.intercept, 1.0),
            "{exact:?}"
        );
        assert!(close(exact.at(10.0), 21.0));
        // Scattered: the best line through (0,0), (1,1), (2,0) is flat at 1/3.
        let flat = least_squares(&[(0.0, 0.0), (1.0, 1.0), (2.0, 0.0)]).unwrap();
        assert!(
            close(flat.slope, 0.0) && close(flat.intercept, 1.0 / 3.0),
            "{flat:?}"
        );
        // Bytes over connections, as `scaling` fits them: 8,000 B each on 2 MB fixed.
        let rss: Vec<(f64, f64)> = [2_500.0, 5_000.0, 10_000.0, 19_500.0]
            .iter()
            .map(|&n| (n, 2.0e6 + 8_000.0 * n))
            .collect();
        let line = least_squares(&rss).unwrap();
        assert!((line.slope - 8_000.0).abs() < 1e-6 && (line.intercept - 2.0e6).abs() < 1e-3);
    }

    #[test]
    fn no_line_through_too_few_points() {
        assert_eq!(least_squares(&[]), None);
        assert_eq!(least_squares(&[(1.0, 2.0)]), None);
        assert_eq!(least_squares(&[(1.0, 2.0), (1.0, 3.0)]), None);
    }

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
    fn threads_cpu_time_counts_nanoseconds_of_work() {
        let Some(before) = threads_cpu_time() else {
            // No schedstat here: the idle probes fall back to `cpu_time`.
            return;
        };
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(x) | 1);
        }
        assert!(x > 0);
        let spent = threads_cpu_time().unwrap_or(before).saturating_sub(before);
        // 50 ms of spinning is at least 25 ms on the CPU even on a loaded machine, and not more
        // than the wall time plus the other test threads' share.
        assert!(spent >= Duration::from_millis(25), "{spent:?}");
        assert!(spent < Duration::from_secs(5), "{spent:?}");
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
