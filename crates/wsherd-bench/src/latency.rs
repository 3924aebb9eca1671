//! How long a message takes from the server's `write` to the client's handler, at a steady
//! 10,000 and 100,000 messages a second: raw awc, tokio-tungstenite, fastwebsockets, raw awc
//! handing each trade to an actor, and wsherd delivering to one subscriber actor, per message
//! and batched. The raw awc loop with an actor hop is the floor for any delivery to an actor: an
//! actor runs only once the loop that feeds it yields, so every trade of one read waits for the
//! whole read to be decoded, in wsherd as in a hand-written loop.
//!
//! The paced server (`paced_server.rs`, its own process) stamps each trade's `ts` with the wall
//! clock as it writes it; each client reads the clock again when its loop or handler holds the
//! decoded `Trade` and keeps the difference. The clients are the throughput scenario's, generic
//! over what they do with a trade, so both scenarios measure the very same loops. Every run
//! must take all the server's messages, each once, or the scenario fails.

use std::time::Duration;

use serde_json::{Value, json};

use crate::measure::{ThreadSched, median};
use crate::paced_server::now_ns;
use crate::server::ServerProcess;
use crate::throughput::{self, Client, Trade, TradeSink};

/// Messages a second, per connection.
const RATES: [u64; 2] = [10_000, 100_000];
/// Interleaved rounds: each runs every client once at each rate. Many short rounds rather
/// than a few long ones: the load of other work on the machine comes and goes within seconds,
/// and the tail of a client is mostly made of it, so it must fall on every client alike.
const ROUNDS: usize = 10;
/// The start of every run that is received but not timed: the connection's first reads, the
/// allocator's and caches' first touches, and (for wsherd) the frames that arrived before its
/// reader was spawned, none of which a steady feed pays again.
const WARMUP: Duration = Duration::from_millis(100);
/// The timed part of every run: 3 s per client and rate over the rounds.
const TIMED: Duration = Duration::from_millis(300);

/// The goal issue #25 states for wsherd per message against raw awc at 10,000/s.
const GOAL_P99_DIFF_US: f64 = 20.0;

/// Messages in a run of `span` at `rate` a second.
fn messages_in(span: Duration, rate: u64) -> u64 {
    u64::try_from(span.as_nanos() * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// A sequence number spread by a large odd factor, so that in a wrapping sum a lost message
/// and a repeated one do not cancel out.
fn spread(seq: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What a client saw in one run: every trade counted, and the latency of each trade past the
/// warm-up, in nanoseconds.
#[derive(Debug, Default)]
struct Recording {
    /// Trades the server sends.
    expected: u64,
    /// Trades with a lower `seq` are counted but not timed.
    warmup: u64,
    count: u64,
    /// Wrapping sum of [`spread`] `seq`s: all of `0..expected`, each once, or the run fails.
    seqs: u64,
    /// The server's stamps on the first and last trades, for the rate it really kept.
    first_ts: u64,
    last_ts: u64,
    /// Allocated up front for every timed trade: a push while timing never allocates.
    latencies_ns: Vec<u64>,
}

impl Recording {
    /// A recording for `expected` trades, the first `warmup` of them untimed.
    fn new(expected: u64, warmup: u64) -> Self {
        Recording {
            expected,
            warmup,
            first_ts: u64::MAX,
            latencies_ns: Vec::with_capacity(
                usize::try_from(expected.saturating_sub(warmup)).unwrap_or(0),
            ),
            ..Recording::default()
        }
    }

    /// Fails unless `name` took exactly the trades the server sent, each once.
    fn check(&self, name: &str) -> Result<(), String> {
        if self.count != self.expected {
            return Err(format!(
                "{name} received {} of {} messages",
                self.count, self.expected
            ));
        }
        let want = (0..self.expected).fold(0u64, |sum, seq| sum.wrapping_add(spread(seq)));
        if self.seqs != want {
            return Err(format!(
                "{name} received {} messages, but not each of the server's once",
                self.count
            ));
        }
        Ok(())
    }

    /// The rate the server kept, from its own stamps on the first and last trades.
    fn kept_rate(&self) -> f64 {
        let span = self.last_ts.saturating_sub(self.first_ts);
        if span == 0 {
            return 0.0;
        }
        self.expected.saturating_sub(1) as f64 / (span as f64 / 1e9)
    }
}

impl TradeSink for Recording {
    fn take(&mut self, trade: &Trade) {
        // The clock first: everything after it is bookkeeping, not latency.
        let now = now_ns();
        self.count += 1;
        self.seqs = self.seqs.wrapping_add(spread(trade.seq));
        self.first_ts = self.first_ts.min(trade.ts);
        self.last_ts = self.last_ts.max(trade.ts);
        if trade.seq >= self.warmup {
            // Both stamps come from one wall clock on one machine; it is only stepped by
            // hand or NTP, and a step back shows as a zero rather than wrapping around.
            self.latencies_ns.push(now.saturating_sub(trade.ts));
        }
    }

    fn count(&self) -> u64 {
        self.count
    }
}

/// The nearest-rank percentile of `sorted` (ascending) at `per_mille` ‰ (990 for p99, 999 for
/// p99.9): the smallest value with at least that share of the values at or below it. 0 for no
/// values. In integers: in floating point, 99.9 % of 1,000 rounds up to rank 1,000.
fn percentile(sorted: &[u64], per_mille: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (per_mille.min(1_000) * sorted.len()).div_ceil(1_000);
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or(0)
}

/// One client's latencies at one rate, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Summary {
    p50: f64,
    /// Printed because on a loaded machine p99 is often other work's doing; p90 less so.
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    samples: usize,
}

impl Summary {
    /// Summarizes `latencies_ns` (in any order).
    fn of(mut latencies_ns: Vec<u64>) -> Summary {
        latencies_ns.sort_unstable();
        let us = |ns: u64| ns as f64 / 1_000.0;
        Summary {
            p50: us(percentile(&latencies_ns, 500)),
            p90: us(percentile(&latencies_ns, 900)),
            p99: us(percentile(&latencies_ns, 990)),
            p999: us(percentile(&latencies_ns, 999)),
            max: us(latencies_ns.last().copied().unwrap_or(0)),
            samples: latencies_ns.len(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "p50_us": self.p50,
            "p90_us": self.p90,
            "p99_us": self.p99,
            "p999_us": self.p999,
            "max_us": self.max,
            "samples": self.samples,
        })
    }
}

// The throughput scenario's clients, each given a recording instead of a tally (and the
// counted ones the number of trades to wait for).

/// The raw awc loop.
fn raw_awc(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    throughput::raw_awc(url, recording)
}

/// The raw tokio-tungstenite loop.
fn tokio_tungstenite(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    throughput::raw_tungstenite(url, recording)
}

/// fastwebsockets, frame by frame.
fn fastwebsockets(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    throughput::fastwebsockets_client(url, recording)
}

/// The raw awc loop handing each trade to an actor.
fn raw_awc_actor(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    let expected = recording.expected;
    throughput::raw_awc_actor_for(url, expected, recording)
}

/// wsherd, one subscriber actor, per message.
fn wsherd(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    let expected = recording.expected;
    throughput::wsherd_client(url, throughput::Via::Mailbox, expected, recording)
}

/// wsherd, one subscriber actor, per message through its inbox.
fn wsherd_inbox(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    let expected = recording.expected;
    throughput::wsherd_client(url, throughput::Via::Inbox, expected, recording)
}

/// wsherd, one subscriber actor, batched.
fn wsherd_batched(url: &str, recording: Recording) -> Result<(Recording, Duration), String> {
    let expected = recording.expected;
    throughput::wsherd_client(url, throughput::Via::Batches, expected, recording)
}

/// The clients, in the order of the table; [`RAW_AWC`], [`RAW_AWC_ACTOR`], [`WSHERD`],
/// [`BATCHED`] and [`INBOX`] index it for the comparisons.
const CLIENTS: [(&str, Client<Recording>); 7] = [
    ("raw_awc", raw_awc),
    ("tokio_tungstenite", tokio_tungstenite),
    ("fastwebsockets", fastwebsockets),
    ("raw_awc_actor", raw_awc_actor),
    ("wsherd", wsherd),
    ("wsherd_batched", wsherd_batched),
    ("wsherd_inbox", wsherd_inbox),
];
/// `raw_awc` in [`CLIENTS`].
const RAW_AWC: usize = 0;
/// `raw_awc_actor` in [`CLIENTS`].
const RAW_AWC_ACTOR: usize = 3;
/// `wsherd` in [`CLIENTS`].
const WSHERD: usize = 4;
/// `wsherd_batched` in [`CLIENTS`].
const BATCHED: usize = 5;
/// `wsherd_inbox` in [`CLIENTS`].
const INBOX: usize = 6;

/// What one rate's runs gathered: every client's timed latencies, pooled over the rounds, each
/// run's p99 on its own (to tell a steady tail from one bad run), and the rate the server kept
/// in each run.
struct AtRate {
    rate: u64,
    server: ServerProcess,
    latencies_ns: Vec<Vec<u64>>,
    run_p99s_us: Vec<Vec<f64>>,
    /// The client thread's time on a CPU and waiting for one, over its runs.
    sched: Vec<ThreadSched>,
    kept_rates: Vec<f64>,
}

/// Runs the scenario: every client at every rate, in interleaved rounds; prints one table per
/// rate and returns the figures.
pub(crate) fn run() -> Result<Value, String> {
    // `WSHERD_BENCH_ONLY=wsherd` runs one client alone: for profiling, not for figures.
    let only = std::env::var("WSHERD_BENCH_ONLY").ok();
    if let Some(only) = &only
        && !CLIENTS.iter().any(|(name, _)| name == only)
    {
        return Err(format!("no client {only:?} in latency"));
    }
    let mut rates = Vec::new();
    for rate in RATES {
        let count = messages_in(WARMUP + TIMED, rate);
        rates.push(AtRate {
            rate,
            server: ServerProcess::start_paced(rate, count)?,
            latencies_ns: vec![Vec::new(); CLIENTS.len()],
            run_p99s_us: vec![Vec::new(); CLIENTS.len()],
            sched: vec![ThreadSched::default(); CLIENTS.len()],
            kept_rates: Vec::new(),
        });
    }
    for round in 0..ROUNDS {
        for at in &mut rates {
            let count = messages_in(WARMUP + TIMED, at.rate);
            let warmup = messages_in(WARMUP, at.rate);
            // Each round starts with another client, so that none is always the first
            // after a change of rate.
            for k in 0..CLIENTS.len() {
                let i = (k + round) % CLIENTS.len();
                let (name, client) = CLIENTS[i];
                if only.as_ref().is_some_and(|only| only != name) {
                    continue;
                }
                // Every client runs its loop or its actors on this thread.
                let before = ThreadSched::now();
                let (recording, _) = client(&at.server.url(), Recording::new(count, warmup))?;
                let spent = ThreadSched::now().since(before);
                recording.check(name)?;
                let sched = &mut at.sched[i];
                sched.on_cpu += spent.on_cpu;
                sched.waiting += spent.waiting;
                at.kept_rates.push(recording.kept_rate());
                let mut run = recording.latencies_ns;
                at.latencies_ns[i].extend_from_slice(&run);
                run.sort_unstable();
                at.run_p99s_us[i].push(percentile(&run, 990) as f64 / 1_000.0);
            }
        }
    }
    println!(
        "latency: µs from the paced server's write to the client's handler holding the decoded \
         trade, one connection; {ROUNDS} interleaved rounds of {:.1} s per client and rate, the \
         first {:.1} s of each run (by the server's schedule) received but not timed",
        (WARMUP + TIMED).as_secs_f64(),
        WARMUP.as_secs_f64(),
    );
    let mut figures = serde_json::Map::new();
    figures.insert("rounds".into(), json!(ROUNDS));
    figures.insert("warmup_s".into(), json!(WARMUP.as_secs_f64()));
    figures.insert("timed_s_per_run".into(), json!(TIMED.as_secs_f64()));
    for at in rates {
        figures.insert(format!("rate_{}", at.rate), report(at));
    }
    Ok(Value::Object(figures))
}

/// One client's figures at one rate.
struct ClientFigures {
    /// Percentiles of all its runs' latencies pooled.
    pooled: Summary,
    /// The median of its runs' p99s: what the differences and ratios use, because one run that
    /// other work on the machine held up for milliseconds sets the pooled p99 on its own.
    run_p99: f64,
    cpu_us_per_msg: f64,
    waited_ms: f64,
}

/// Prints one rate's table and returns its figures; a client left out (by `WSHERD_BENCH_ONLY`)
/// leaves out the comparisons it is in.
fn report(at: AtRate) -> Value {
    let kept = median(at.kept_rates);
    println!(
        "\nat {} msgs/s (the server kept {kept:.0}/s, median of its runs)",
        at.rate
    );
    println!(
        "{:<18} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8} {:>9} {:>8}  p99 of each run",
        "client", "p50", "p90", "p99", "p99.9", "max", "samples", "run p99", "CPU µs/m", "wait ms",
    );
    let mut out = serde_json::Map::new();
    out.insert("kept_msgs_per_s".into(), json!(kept));
    let mut clients: Vec<Option<ClientFigures>> = Vec::new();
    let runs = CLIENTS.iter().zip(at.latencies_ns).zip(at.run_p99s_us);
    for ((((name, _), latencies_ns), run_p99s), sched) in runs.zip(at.sched) {
        if run_p99s.is_empty() {
            // Left out by `WSHERD_BENCH_ONLY`.
            clients.push(None);
            continue;
        }
        // Per message sent, warm-up and connecting included: the same for every client.
        let sent = messages_in(WARMUP + TIMED, at.rate) * run_p99s.len() as u64;
        let figures = ClientFigures {
            pooled: Summary::of(latencies_ns),
            run_p99: median(run_p99s.clone()),
            cpu_us_per_msg: sched.on_cpu.as_secs_f64() * 1e6 / sent.max(1) as f64,
            waited_ms: sched.waiting.as_secs_f64() * 1e3,
        };
        let each: Vec<String> = run_p99s.iter().map(|p99| format!("{p99:.0}")).collect();
        let pooled = &figures.pooled;
        println!(
            "{name:<18} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8} {:>8.1} {:>9.2} {:>8.1}  {}",
            pooled.p50,
            pooled.p90,
            pooled.p99,
            pooled.p999,
            pooled.max,
            pooled.samples,
            figures.run_p99,
            figures.cpu_us_per_msg,
            figures.waited_ms,
            each.join(" ")
        );
        let mut json = pooled.json();
        if let Value::Object(map) = &mut json {
            map.insert("run_p99_median_us".into(), json!(figures.run_p99));
            map.insert("p99_of_each_run_us".into(), json!(run_p99s));
            map.insert("cpu_us_per_msg".into(), json!(figures.cpu_us_per_msg));
            map.insert("run_queue_wait_ms".into(), json!(figures.waited_ms));
        }
        out.insert((*name).into(), json);
        clients.push(Some(figures));
    }
    let pick = |i: usize| clients.get(i).and_then(Option::as_ref);
    let (Some(raw), Some(actor), Some(wsherd), Some(batched)) = (
        pick(RAW_AWC),
        pick(RAW_AWC_ACTOR),
        pick(WSHERD),
        pick(BATCHED),
    ) else {
        return Value::Object(out);
    };
    let goal = if at.rate == 10_000 {
        format!("goal: within {GOAL_P99_DIFF_US} µs")
    } else {
        "no goal at this rate".to_owned()
    };
    let no_added_latency = "goal: batched adds no latency at low rates";
    let rows = [
        (
            "diff_wsherd_raw_awc_p50_us",
            "wsherd p50 - raw_awc p50",
            wsherd.pooled.p50 - raw.pooled.p50,
            String::new(),
        ),
        (
            "diff_wsherd_raw_awc_p99_us",
            "wsherd p99 - raw_awc p99",
            wsherd.run_p99 - raw.run_p99,
            goal,
        ),
        (
            "diff_wsherd_raw_awc_actor_p50_us",
            "wsherd p50 - raw_awc_actor p50",
            wsherd.pooled.p50 - actor.pooled.p50,
            String::new(),
        ),
        (
            "diff_wsherd_raw_awc_actor_p99_us",
            "wsherd p99 - raw_awc_actor p99",
            wsherd.run_p99 - actor.run_p99,
            String::new(),
        ),
        (
            "diff_batched_wsherd_p50_us",
            "batched p50 - wsherd p50",
            batched.pooled.p50 - wsherd.pooled.p50,
            no_added_latency.to_owned(),
        ),
        (
            "diff_batched_wsherd_p99_us",
            "batched p99 - wsherd p99",
            batched.run_p99 - wsherd.run_p99,
            no_added_latency.to_owned(),
        ),
    ];
    let inbox_rows = pick(INBOX).map(|inbox| {
        [
            (
                "diff_inbox_raw_awc_p50_us",
                "inbox p50 - raw_awc p50",
                inbox.pooled.p50 - raw.pooled.p50,
                String::new(),
            ),
            (
                "diff_inbox_raw_awc_p99_us",
                "inbox p99 - raw_awc p99",
                inbox.run_p99 - raw.run_p99,
                String::new(),
            ),
        ]
    });
    println!("(p50: pooled; p99: the median of the runs' p99s)");
    for (key, label, diff, goal) in rows.into_iter().chain(inbox_rows.into_iter().flatten()) {
        println!("{label:<32} {diff:>+9.1} µs  {goal}");
        out.insert(key.into(), json!(diff));
    }
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let ratios = [
        (
            "ratio_wsherd_raw_awc_p50",
            "wsherd / raw_awc p50",
            ratio(wsherd.pooled.p50, raw.pooled.p50),
        ),
        (
            "ratio_wsherd_raw_awc_p99",
            "wsherd / raw_awc p99",
            ratio(wsherd.run_p99, raw.run_p99),
        ),
        (
            "ratio_wsherd_raw_awc_actor_p99",
            "wsherd / raw_awc_actor p99",
            ratio(wsherd.run_p99, actor.run_p99),
        ),
        (
            "ratio_batched_raw_awc_p99",
            "batched / raw_awc p99",
            ratio(batched.run_p99, raw.run_p99),
        ),
    ];
    for (key, label, value) in ratios {
        println!("{label:<32} {value:>9.3}");
        out.insert(key.into(), json!(value));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&values, 500), 50);
        assert_eq!(percentile(&values, 990), 99);
        assert_eq!(percentile(&values, 999), 100);
        assert_eq!(percentile(&values, 1_000), 100);
        assert_eq!(percentile(&values, 0), 1);
        // Ten values: the 99th percentile is the largest, the median the fifth.
        let ten = [3, 5, 8, 13, 21, 34, 55, 89, 144, 233];
        assert_eq!(percentile(&ten, 500), 21);
        assert_eq!(percentile(&ten, 990), 233);
        assert_eq!(percentile(&ten, 900), 144);
        assert_eq!(percentile(&[], 500), 0);
        assert_eq!(percentile(&[7], 999), 7);
        // p99.9 of 2,000 values is the 1,998th, not the largest.
        let many: Vec<u64> = (1..=2_000).collect();
        assert_eq!(percentile(&many, 999), 1_998);
    }

    #[test]
    fn a_summary_sorts_and_converts_to_microseconds() {
        // 1,000 values, given in reverse: 1 µs … 1,000 µs.
        let latencies: Vec<u64> = (1..=1_000).rev().map(|us| us * 1_000).collect();
        let summary = Summary::of(latencies);
        assert_eq!(
            summary,
            Summary {
                p50: 500.0,
                p90: 900.0,
                p99: 990.0,
                p999: 999.0,
                max: 1_000.0,
                samples: 1_000,
            }
        );
    }

    fn trade(seq: u64, ts: u64) -> Result<Trade, String> {
        serde_json::from_str(&crate::server::message_at(seq, ts)).map_err(|e| e.to_string())
    }

    #[test]
    fn warm_up_trades_are_counted_but_not_timed() -> Result<(), String> {
        let mut recording = Recording::new(5, 2);
        let sent = now_ns();
        for seq in 0..5 {
            recording.take(&trade(seq, sent)?);
        }
        recording.check("five")?;
        assert_eq!(recording.latencies_ns.len(), 3);
        // Taken after `sent`, and far less than a minute after it.
        assert!(recording.latencies_ns.iter().all(|ns| *ns < 60_000_000_000));
        Ok(())
    }

    #[test]
    fn a_lost_or_repeated_message_fails_the_run() -> Result<(), String> {
        let mut lost = Recording::new(3, 0);
        for seq in [0, 2] {
            lost.take(&trade(seq, 1)?);
        }
        assert!(lost.check("lost").is_err());
        let mut repeated = Recording::new(3, 0);
        for seq in [0, 1, 1] {
            repeated.take(&trade(seq, 1)?);
        }
        match repeated.check("repeated") {
            Err(e) if e.contains("once") => Ok(()),
            other => Err(format!("expected a failure for a repeat, got {other:?}")),
        }
    }

    #[test]
    fn the_kept_rate_comes_from_the_servers_stamps() -> Result<(), String> {
        let mut recording = Recording::new(11, 0);
        // 11 trades stamped 100 µs apart: 10,000 a second.
        for seq in 0..11 {
            recording.take(&trade(seq, 1_000_000 + seq * 100_000)?);
        }
        assert!((recording.kept_rate() - 10_000.0).abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn runs_are_sized_by_rate() {
        assert_eq!(messages_in(Duration::from_millis(1_100), 10_000), 11_000);
        assert_eq!(messages_in(Duration::from_millis(100), 100_000), 10_000);
    }
}
