//! A bench history: `all --save` keeps a run as `bench/results/<date>-<host>.json` (`-2`, `-3`…
//! after it for more runs of the day: an earlier run is never written over), and
//! `compare A.json B.json` sets two runs side by side. Only what is comparable across runs is
//! compared: ratios (wsherd over its baselines in the same run, so the machine's speed cancels
//! out), costs per connection (bytes, idle CPU, and `scaling`'s idle CPU per 1,000 connections at
//! each point), and the latency scenario's median latencies of
//! wsherd against its baselines in the same run, as ratios and as differences (in µs: a
//! difference can be near zero or below, where a relative change means nothing). Absolute
//! rates, times and latencies are kept in the files but never compared: between runs here they
//! move by ±5–15 % on their own. Nor are the latency scenario's p99 ratios and differences: on
//! the project's loaded 2-core machines a run's p99 is whether other work held the client off
//! the CPU for a tick (~4 ms) during it, so they moved by milliseconds between runs.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// A change beyond this, for the worse, is flagged (noise between runs is within ±15 %).
const FLAG_BEYOND: f64 = 0.15;

/// A latency difference that grew by more than this many µs is flagged: the median differences
/// moved by up to 15 µs between runs on a loaded 2-core machine.
const FLAG_BEYOND_US: f64 = 20.0;

/// Where results are kept: `bench/results` at the workspace root.
fn results_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/results")
}

/// `YYYY-MM-DD` of `now` (UTC), from days since the epoch (H. Hinnant's civil-from-days).
fn civil_date(now: SystemTime) -> String {
    let days = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// This machine's name, fit for a file name.
fn host() -> String {
    let name = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".to_owned());
    let clean: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if clean.is_empty() {
        "host".to_owned()
    } else {
        clean
    }
}

/// Writes `results` (every scenario's figures) with when and where they were measured.
pub(crate) fn save(results: &Value) -> Result<PathBuf, String> {
    save_in(&results_dir(), results, SystemTime::now())
}

/// Files of one day and host kept before a save gives up looking for a free name.
const MOST_SAVES_A_DAY: u32 = 1_000;

/// [`save`] into `dir`, as measured at `now`: as `<date>-<host>.json`, or when a run of the day
/// is kept there already, `<date>-<host>-2.json` and so on. Never over an earlier run: a lone
/// `throughput --save` once replaced the day's whole `all` run.
fn save_in(dir: &Path, results: &Value, now: SystemTime) -> Result<PathBuf, String> {
    use std::io::Write;

    let date = civil_date(now);
    let host = host();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let record = json!({
        "date": date,
        "host": host,
        "unix_time": now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "results": results,
    });
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())? + "\n";
    for n in 1..=MOST_SAVES_A_DAY {
        let name = if n == 1 {
            format!("{date}-{host}.json")
        } else {
            format!("{date}-{host}-{n}.json")
        };
        let path = dir.join(name);
        // `create_new`: the check for an earlier file and the write are one step.
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(mut file) => {
                if let Err(error) = file.write_all(text.as_bytes()) {
                    // A half-written run would stand under the day's name and fail `compare`.
                    drop(file);
                    let _ = std::fs::remove_file(&path);
                    return Err(format!("{}: {error}", path.display()));
                }
                return Ok(path.canonicalize().unwrap_or(path));
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(format!("{}: {error}", path.display())),
        }
    }
    Err(format!(
        "{}: {MOST_SAVES_A_DAY} runs of {date} on {host} are kept there already",
        dir.display()
    ))
}

/// Which way is better for a compared figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
    /// Lower, and compared by how many µs it moved rather than by how much in proportion.
    LowerMicros,
}

/// The comparable figures of a run, by dotted path, with which way is better; the rest
/// (absolute rates and times) is left out on purpose.
fn comparable(results: &Value) -> Vec<(String, f64, Better)> {
    let mut out = Vec::new();
    walk(results, String::new(), &mut out);
    out
}

fn walk(value: &Value, path: String, out: &mut Vec<(String, f64, Better)>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(child, child_path, out);
            }
        }
        Value::Number(number) => {
            let Some(figure) = number.as_f64() else {
                return;
            };
            let leaf = path.rsplit('.').next().unwrap_or(&path);
            let latency = path.starts_with("latency.");
            let better = if path == "detect.ratio" || path == "cluster.takeover_over_lease" {
                // Time to detect over interval + timeout: lower is better.
                Some(Better::Lower)
            } else if latency && leaf.contains("_p99") {
                // Kept, not compared: see the module's documentation.
                None
            } else if latency && leaf.starts_with("ratio") {
                // Latency over a baseline's latency: lower is better.
                Some(Better::Lower)
            } else if latency && leaf.starts_with("diff") && leaf.ends_with("_us") {
                Some(Better::LowerMicros)
            } else if leaf.starts_with("ratio") {
                Some(Better::Higher)
            } else if leaf == "bytes_per_connection"
                || leaf == "idle_cpu_percent"
                || leaf == "idle_cpu_percent_per_1000"
            {
                Some(Better::Lower)
            } else {
                None
            };
            if let Some(better) = better {
                out.push((path, figure, better));
            }
        }
        _ => {}
    }
}

fn load(path: &str) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let record: Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    // A saved run, or the bare output of `--json`.
    Ok(record.get("results").cloned().unwrap_or(record))
}

/// A row of the comparison, and whether it is a change for the worse beyond the noise.
fn row(name: &str, before: f64, after: f64, better: Better) -> (String, bool) {
    if better == Better::LowerMicros {
        let change = after - before;
        let worse = change > FLAG_BEYOND_US;
        let mark = if worse { "  <- worse" } else { "" };
        return (
            format!("{name:<60} {before:>12.3} {after:>12.3} {change:>+7.1} µs{mark}"),
            worse,
        );
    }
    let change = if before == 0.0 {
        0.0
    } else {
        after / before - 1.0
    };
    let worse = match better {
        Better::Higher => change < -FLAG_BEYOND,
        Better::Lower | Better::LowerMicros => change > FLAG_BEYOND,
    };
    let mark = if worse { "  <- worse" } else { "" };
    (
        format!(
            "{name:<78} {before:>12.3} {after:>12.3} {:>+8.1} %{mark}",
            change * 100.0
        ),
        worse,
    )
}

/// `compare A.json B.json`: each comparable figure of both runs; `Err` names the figures that
/// got worse beyond the noise (so a script can fail on it).
pub(crate) fn compare(before: &str, after: &str) -> Result<(), String> {
    let old = comparable(&load(before)?);
    let new = comparable(&load(after)?);
    println!("{:<78} {:>12} {:>12} {:>10}", "figure", "A", "B", "B vs A");
    let mut worse = Vec::new();
    for (name, after_figure, better) in &new {
        match old.iter().find(|(n, _, _)| n == name) {
            Some((_, before_figure, _)) => {
                let (line, is_worse) = row(name, *before_figure, *after_figure, *better);
                println!("{line}");
                if is_worse {
                    worse.push(name.clone());
                }
            }
            None => println!("{name:<78} {:>12} {after_figure:>12.3}", "-"),
        }
    }
    for (name, before_figure, _) in &old {
        if !new.iter().any(|(n, _, _)| n == name) {
            println!("{name:<78} {before_figure:>12.3} {:>12}", "-");
        }
    }
    if worse.is_empty() {
        println!(
            "nothing got worse by more than {:.0} % (latency differences: {FLAG_BEYOND_US} µs)",
            FLAG_BEYOND * 100.0
        );
        Ok(())
    } else {
        Err(format!(
            "worse by more than {:.0} % (latency differences: {FLAG_BEYOND_US} µs): {}",
            FLAG_BEYOND * 100.0,
            worse.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_second_save_of_the_day_keeps_the_first() -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("wsherd-bench-history-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_764_806_400);
        let first = save_in(&dir, &json!({"all": 1}), now)?;
        let second = save_in(&dir, &json!({"throughput": 2}), now)?;
        assert_ne!(first, second);
        assert!(second.to_string_lossy().ends_with("-2.json"), "{second:?}");
        let kept = load(&first.to_string_lossy())?;
        assert_eq!(kept, json!({"all": 1}), "the first run is untouched");
        assert_eq!(load(&second.to_string_lossy())?, json!({"throughput": 2}));
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(civil_date(UNIX_EPOCH), "1970-01-01");
        let day = std::time::Duration::from_secs(86_400);
        // 2026-12-01 is day 20,788 since the epoch; 2024-02-29 a leap day.
        assert_eq!(civil_date(UNIX_EPOCH + day * 20_788), "2026-12-01");
        assert_eq!(civil_date(UNIX_EPOCH + day * 19_782), "2024-02-29");
    }

    #[test]
    fn only_ratios_and_costs_per_connection_are_compared() {
        let results = json!({
            "throughput": {"wsherd": {"msgs_per_s": 2.0e6}, "ratio_wsherd_raw_awc": 1.1},
            "connections": {"wsherd_supervised": {"bytes_per_connection": 8800.0, "open_s": 1.8}},
            "detect": {"detect_s": 1.0, "ratio": 1.0},
            "scaling": {
                "points": {"at_02500": {"connections": 2500, "wsherd_supervised": {
                    "bytes_per_connection": 8700.0,
                    "idle_cpu_percent_per_1000": 0.1,
                    "storm_recovery_s": 0.4,
                }}},
                "fit": {"wsherd_supervised": {"rss_slope_bytes_per_connection": 8600.0}},
                "projection_not_measured": {"rss_mib": 820.0, "idle_cpu_percent_of_a_core": 7.0},
            },
        });
        let mut names: Vec<String> = comparable(&results)
            .into_iter()
            .map(|(n, _, _)| n)
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "connections.wsherd_supervised.bytes_per_connection",
                "detect.ratio",
                "scaling.points.at_02500.wsherd_supervised.bytes_per_connection",
                "scaling.points.at_02500.wsherd_supervised.idle_cpu_percent_per_1000",
                "throughput.ratio_wsherd_raw_awc",
            ]
        );
    }

    #[test]
    fn latency_medians_are_compared_lower_is_better_and_p99s_are_not() {
        let results = json!({
            "latency": {
                "warmup_s": 0.1,
                "rate_10000": {
                    "kept_msgs_per_s": 9999.0,
                    "wsherd": {"p50_us": 30.0, "p99_us": 80.0},
                    "ratio_wsherd_raw_awc_p50": 1.1,
                    "diff_wsherd_raw_awc_p50_us": 4.0,
                    "ratio_wsherd_raw_awc_p99": 1.2,
                    "diff_wsherd_raw_awc_p99_us": 14.0,
                },
            },
        });
        let mut compared = comparable(&results);
        compared.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            compared,
            [
                (
                    "latency.rate_10000.diff_wsherd_raw_awc_p50_us".to_owned(),
                    4.0,
                    Better::LowerMicros
                ),
                (
                    "latency.rate_10000.ratio_wsherd_raw_awc_p50".to_owned(),
                    1.1,
                    Better::Lower
                ),
            ]
        );
    }

    #[test]
    fn latency_differences_are_flagged_by_microseconds() {
        // From 2 µs to 5 µs is +150 %, but 3 µs is within the noise.
        assert!(!row("d", 2.0, 5.0, Better::LowerMicros).1);
        assert!(row("d", 2.0, 2.0 + FLAG_BEYOND_US + 1.0, Better::LowerMicros).1);
        // A difference below zero that grows towards zero got worse, by µs.
        assert!(row("d", -40.0, -10.0, Better::LowerMicros).1);
        assert!(!row("d", 30.0, -30.0, Better::LowerMicros).1);
        // A latency ratio that rose is worse.
        assert!(row("r", 1.0, 1.3, Better::Lower).1);
    }

    #[test]
    fn a_change_for_the_worse_beyond_the_noise_is_flagged_either_way() {
        assert!(row("r", 1.0, 0.8, Better::Higher).1);
        assert!(!row("r", 1.0, 0.9, Better::Higher).1);
        assert!(row("bytes", 8000.0, 9600.0, Better::Lower).1);
        assert!(!row("bytes", 8000.0, 7000.0, Better::Lower).1);
    }
}
