//! `scaling`: the cost of idle supervised connections along a curve of counts (2,500, 5,000,
//! 10,000 and the most one client process can hold here) beside the same baselines as
//! `connections`, and a straight line fitted through wsherd's memory and idle CPU over the
//! count: its slope is the cost of one more connection, the spread of the per-connection cost
//! along the curve shows whether there is a super-linear term, and the slope gives a projection
//! to 100,000 connections in one process, printed as a projection.
//!
//! Each client at each point runs in a fresh child process (`scaling-point CLIENT COUNT
//! SERVERS`) that starts its own idle servers, holds its connections, measures them and prints
//! one line of JSON. A fresh process because the figure is the growth of resident memory: in a
//! process that already held and freed an earlier point's connections, the allocator would
//! serve the next point partly from that freed heap and undercount it, which bends exactly the
//! slope this scenario is for. The server side is spread over several idle-server processes,
//! each holding at most [`SERVER_HOLDS`], well under the open-file cap of one process; the
//! count reported is the client's.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::{Map, Value, json};
use wsherd::Herd;

use super::{
    CAP, Idle, IdleServer, LiveWatch, baselines, herd_config_of, idle_cpu_percent, rss_bytes,
};
use crate::measure::{Line, least_squares};

/// The fixed points of the curve; the last point is the most the process can hold.
const POINTS: [u64; 3] = [2_500, 5_000, 10_000];
/// The last point is rounded down to a multiple of this.
const STEP: u64 = 500;
/// Files kept back from the open-file limit for the client process's own: the runtime's and
/// arbiters' event fds, the standard streams, the pipes to its server children.
const FD_MARGIN: u64 = 400;
/// The curve stops here even where the limit allows more: the default tokio-tungstenite
/// baseline takes about 128 KiB a connection, 6 GiB at this count.
const MOST: u64 = 50_000;
/// The most connections one idle-server child is given.
const SERVER_HOLDS: u64 = 8_000;
/// The heartbeat every connection pings on, wsherd's and the baselines' alike.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// Idle CPU over exactly one heartbeat interval, as one window: a window of one period holds
/// each connection's ping once whatever its phase, where shorter parts of it would each catch
/// some of the pings or none.
const SCALING_IDLE: Idle = Idle {
    heartbeat: HEARTBEAT,
    window: HEARTBEAT,
    parts: 1,
};
/// Server restarts in each point's storm; the recovery time is their median.
const RESTARTS: usize = 3;
/// The count the slopes are projected to.
const PROJECT_TO: f64 = 100_000.0;
/// The goals, printed beside the figures and never asserted.
const GOAL_BYTES: f64 = 8.0 * 1024.0;
/// Idle CPU goal, in percent of a core per 1,000 connections.
const GOAL_CPU_PER_1000: f64 = 0.5;

/// The clients measured at each point: wsherd first, then `connections`' baselines.
const CLIENTS: [&str; 4] = [
    "wsherd_supervised",
    "raw_awc_actor",
    "tokio_tungstenite_default",
    "tokio_tungstenite_4kib",
];

/// The most connections a process with an open-file limit of `limit`, `open_fds` of them
/// already open, can hold keeping `margin` for its own files, in whole [`STEP`]s.
fn max_point(limit: u64, open_fds: u64, margin: u64) -> u64 {
    limit.saturating_sub(open_fds.saturating_add(margin)) / STEP * STEP
}

/// The curve's points up to `max`: those of [`POINTS`] that fit, then `max` itself (capped at
/// [`MOST`]) unless it is one of them.
fn points_up_to(max: u64) -> Vec<u64> {
    let max = max.min(MOST);
    let mut points: Vec<u64> = POINTS.iter().copied().filter(|&p| p <= max).collect();
    if max > 0 && !points.contains(&max) {
        points.push(max);
    }
    points
}

/// Idle-server processes for `count` connections when each holds at most `holds`.
fn servers_for(count: u64, holds: u64) -> u64 {
    count.div_ceil(holds.max(1)).max(1)
}

/// How far the value furthest from the mean of `values` is from it, relative to the mean.
fn largest_relative_deviation(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    if mean == 0.0 {
        return 0.0;
    }
    values
        .iter()
        .map(|v| ((v - mean) / mean).abs())
        .fold(0.0, f64::max)
}

/// How far the point furthest from `line` is from it, relative to that point's `y`: a curve
/// that bends away from a straight line (a super-linear term) shows here even where the
/// per-connection costs are close.
fn largest_relative_residual(points: &[(f64, f64)], line: Line) -> f64 {
    points
        .iter()
        .filter(|p| p.1 != 0.0)
        .map(|&(x, y)| ((y - line.at(x)) / y).abs())
        .fold(0.0, f64::max)
}

/// Files this process has open, from `/proc/self/fd` (less the handle that reads it).
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    Some((entries.count() as u64).saturating_sub(1))
}

/// The one-minute load average, to say how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `12345` as `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `scaling-point CLIENT COUNT SERVERS`: the child process that holds one point for one client
/// and prints its figures (or `{"error": ...}`) as one line of JSON.
pub(crate) fn serve_point(args: &[String]) -> ExitCode {
    let parsed = match (args.first(), args.get(1), args.get(2)) {
        (Some(client), Some(count), Some(servers)) => count
            .parse::<usize>()
            .ok()
            .zip(servers.parse::<usize>().ok())
            .map(|(count, servers)| (client.as_str(), count, servers)),
        _ => None,
    };
    let result = match parsed {
        Some((client, count, servers)) => measure_point(client, count, servers),
        None => Err("usage: scaling-point CLIENT COUNT SERVERS".to_owned()),
    };
    super::reply_to_parent(result)
}

/// Starts `servers` idle servers and measures `client` holding `count` connections over them.
fn measure_point(client: &str, count: usize, servers: usize) -> Result<Value, String> {
    let fds_at_start = open_fds();
    let mut running = (0..servers.max(1))
        .map(|_| IdleServer::start(0))
        .collect::<Result<Vec<_>, _>>()?;
    let ports: Vec<u16> = running.iter().map(|s| s.port).collect();
    let mut figures = match client {
        "wsherd_supervised" => wsherd_point(count, &mut running)?,
        "raw_awc_actor" => idle_figures(baselines::raw_awc_actors(count, &ports, SCALING_IDLE)?),
        "tokio_tungstenite_default" => idle_figures(baselines::tokio_tungstenite(
            count,
            &ports,
            SCALING_IDLE,
            None,
        )?),
        "tokio_tungstenite_4kib" => idle_figures(baselines::tokio_tungstenite(
            count,
            &ports,
            SCALING_IDLE,
            Some(4096),
        )?),
        other => return Err(format!("unknown client {other:?}")),
    };
    // Idle CPU is kept whole under a name `compare` leaves alone and compared per 1,000
    // connections, so a change in it is flagged once.
    if let Some(map) = figures.as_object_mut() {
        let idle = map
            .get("idle_cpu_total_percent")
            .and_then(Value::as_f64)
            .unwrap_or(0.0);
        map.insert(
            "idle_cpu_percent_per_1000".into(),
            json!(idle / (count as f64 / 1000.0)),
        );
        map.insert("fds_at_start".into(), json!(fds_at_start));
    }
    Ok(figures)
}

/// A baseline's `(bytes per connection, open s, idle CPU %)` as figures.
fn idle_figures((per, open, idle): (f64, f64, f64)) -> Value {
    json!({"bytes_per_connection": per, "open_s": open, "idle_cpu_total_percent": idle})
}

/// wsherd at one point: a fresh System and Herd, `count` supervised connections over the
/// servers, memory, time until all are live, idle CPU, then the storm: every server killed
/// and restarted on its port [`RESTARTS`] times, each time until all are live again.
fn wsherd_point(count: usize, servers: &mut Vec<IdleServer>) -> Result<Value, String> {
    let ports: Vec<u16> = servers.iter().map(|s| s.port).collect();
    let system = System::new();
    system.block_on(async {
        let lives = LiveWatch::start();
        let before = rss_bytes();
        let started = Instant::now();
        let herd = Herd::from_config(herd_config_of(count, &ports, HEARTBEAT))
            .map_err(|e| e.to_string())?;
        lives.watch(&herd);
        herd.start();
        lives.until(count as u64).await?;
        let open = started.elapsed();
        let rss = rss_bytes().saturating_sub(before);
        let fds_open = open_fds();
        let idle = idle_cpu_percent(SCALING_IDLE).await;
        let mut recoveries = Vec::new();
        for restart in 1..=RESTARTS {
            // All down before any is back: every connection drops at once, as in `storm`.
            servers.clear();
            let restarted_at = Instant::now();
            for &port in &ports {
                servers.push(IdleServer::start(port)?);
            }
            let target = (restart as u64 + 1) * count as u64;
            lives
                .until(target)
                .await
                .map_err(|e| format!("storm, restart {restart}: {e}"))?;
            recoveries.push(restarted_at.elapsed().as_secs_f64());
        }
        let peak = herd.governor_stats().map(|g| g.peak());
        // No graceful shutdown: the process ends here, and with it every socket.
        Ok::<_, String>(json!({
            "bytes_per_connection": rss as f64 / count as f64,
            "rss_delta_bytes": rss,
            "open_s": open.as_secs_f64(),
            "idle_cpu_total_percent": idle,
            "fds_open": fds_open,
            "storm_recovery_s": crate::measure::median(recoveries.clone()),
            "storm_recoveries_s": recoveries,
            "peak_handshakes": peak,
        }))
    })
}

/// Runs `client` at `count` in a fresh child process; its figures, or why it could not hold
/// them.
fn run_point(client: &str, count: u64, servers: u64) -> Result<Value, String> {
    super::ask_child(&[
        "scaling-point",
        client,
        &count.to_string(),
        &servers.to_string(),
    ])
}

/// A figure of a client's row, `-` when absent.
fn cell(figures: &Value, key: &str, width: usize, decimals: usize) -> String {
    figures.get(key).and_then(Value::as_f64).map_or_else(
        || format!("{:>width$}", "-"),
        |v| format!("{v:>width$.decimals$}"),
    )
}

/// The fitted lines of one client across the points it held: RSS growth and idle CPU over
/// the count.
struct Fit {
    /// `(connections, bytes per connection)` at each point held.
    per_connection: Vec<(f64, f64)>,
    /// `(connections, RSS growth in bytes)` at each point held.
    rss_points: Vec<(f64, f64)>,
    rss: Option<Line>,
    cpu: Option<Line>,
}

fn fit(points: &[(u64, &Value)]) -> Fit {
    let per_connection: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|(count, figures)| {
            figures
                .get("bytes_per_connection")
                .and_then(Value::as_f64)
                .map(|per| (*count as f64, per))
        })
        .collect();
    let rss_points: Vec<(f64, f64)> = per_connection
        .iter()
        .map(|&(n, per)| (n, per * n))
        .collect();
    let cpu_points: Vec<(f64, f64)> = points
        .iter()
        .filter_map(|(count, figures)| {
            figures
                .get("idle_cpu_total_percent")
                .and_then(Value::as_f64)
                .map(|cpu| (*count as f64, cpu))
        })
        .collect();
    Fit {
        rss: least_squares(&rss_points),
        cpu: least_squares(&cpu_points),
        per_connection,
        rss_points,
    }
}

/// Prints each client's fitted lines (and wsherd's projection, labelled as one) and returns
/// them as figures: the fits by client, and the projection.
fn report_fits(held: &[(&str, Vec<(u64, Value)>)]) -> (Map<String, Value>, Value) {
    let mut fits = Map::new();
    let mut projection = Value::Null;
    for (client, list) in held {
        let refs: Vec<(u64, &Value)> = list.iter().map(|(n, f)| (*n, f)).collect();
        let line = fit(&refs);
        let (Some(rss), Some(cpu)) = (line.rss, line.cpu) else {
            if !list.is_empty() {
                println!("{client}: held too few points for a line");
            }
            continue;
        };
        let costs: Vec<f64> = line.per_connection.iter().map(|p| p.1).collect();
        let deviation = largest_relative_deviation(&costs);
        let residual = largest_relative_residual(&line.rss_points, rss);
        let mean = costs.iter().sum::<f64>() / costs.len() as f64;
        let (first_n, first) = line.per_connection.first().copied().unwrap_or_default();
        let (last_n, last) = line.per_connection.last().copied().unwrap_or_default();
        let growth = if first > 0.0 { last / first } else { 0.0 };
        if *client == "wsherd_supervised" {
            println!(
                "wsherd_supervised, least squares over {} points (RSS growth and idle CPU over the count):",
                costs.len()
            );
            println!(
                "  memory: slope {:.0} B per connection at the margin, intercept {:.2} MiB; no point's RSS growth is more than {:.1} % off the line (goal: <= {GOAL_BYTES:.0} B each)",
                rss.slope,
                rss.intercept / (1024.0 * 1024.0),
                residual * 100.0,
            );
            println!(
                "  per connection {:.0}-{:.0} B, at most {:.1} % from their mean ({mean:.0} B); {last:.0} B at {} = {growth:.3}x the {first:.0} B at {} (a super-linear term would make it rise with the count; a fixed cost spread thinner makes it fall)",
                costs.iter().copied().fold(f64::INFINITY, f64::min),
                costs.iter().copied().fold(0.0, f64::max),
                deviation * 100.0,
                thousands(last_n as u64),
                thousands(first_n as u64),
            );
            println!(
                "  idle CPU: slope {:.3} % of a core per 1,000 connections, intercept {:.3} % (goal: <= {GOAL_CPU_PER_1000} % per 1,000)",
                cpu.slope * 1000.0,
                cpu.intercept
            );
            let rss_mib = rss.at(PROJECT_TO) / (1024.0 * 1024.0);
            let cpu_percent = cpu.at(PROJECT_TO);
            println!(
                "  projection (not measured): 100,000 connections in one process ~ {rss_mib:.0} MiB above the process without them, idle CPU ~ {cpu_percent:.1} % of a core, from the slopes above (the open-file cap keeps it from being measured here)"
            );
            projection = json!({
                "connections": PROJECT_TO,
                "rss_mib": rss_mib,
                "idle_cpu_percent_of_a_core": cpu_percent,
            });
        } else {
            println!(
                "{client}: slope {:.0} B per connection (points at most {:.1} % off the line; per connection at most {:.1} % from the mean, {growth:.3}x at {} vs {}), idle CPU slope {:.3} % per 1,000",
                rss.slope,
                residual * 100.0,
                deviation * 100.0,
                thousands(last_n as u64),
                thousands(first_n as u64),
                cpu.slope * 1000.0
            );
        }
        fits.insert(
            (*client).into(),
            json!({
                "points": costs.len(),
                "rss_slope_bytes_per_connection": rss.slope,
                "rss_intercept_bytes": rss.intercept,
                "rss_largest_relative_residual": residual,
                "per_connection_largest_deviation_from_mean": deviation,
                "per_connection_last_over_first": growth,
                "cpu_slope_percent_per_1000": cpu.slope * 1000.0,
                "cpu_intercept_percent": cpu.intercept,
            }),
        );
    }
    (fits, projection)
}

/// `scaling`: every client at every point, each in its own process, then the fitted lines.
pub(crate) fn run() -> Result<Value, String> {
    let (limit, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map_err(|e| format!("cannot read the open-file limit: {e}"))?;
    let fds = open_fds().ok_or("cannot count /proc/self/fd")?;
    let max = max_point(limit, fds, FD_MARGIN);
    let points = points_up_to(max);
    let Some(&last) = points.last() else {
        return Err(format!(
            "open files are limited to {limit}: not even {STEP} connections fit"
        ));
    };
    let servers = servers_for(last, SERVER_HOLDS);
    let load_start = load_average();
    let list: Vec<String> = points.iter().map(|&p| thousands(p)).collect();
    println!(
        "scaling: idle connections at {}; the last is the most one client process holds here:",
        list.join(", ")
    );
    println!(
        "  open-file limit {} (soft, raised to the hard limit {}) - {fds} files open at start - a margin of {FD_MARGIN} for the process's own, rounded down to a multiple of {STEP}{}",
        thousands(limit),
        thousands(hard),
        if max > MOST {
            format!(", capped at {}", thousands(MOST))
        } else {
            String::new()
        }
    );
    println!(
        "  each client at each point in a fresh process, against {servers} idle-server processes (round-robin, at most {} each); figures are the client process's",
        thousands(last.div_ceil(servers))
    );
    println!(
        "  heartbeat {} s; idle CPU over one {} s window (one heartbeat interval: every connection pings once in it), {}; storm: all servers killed and restarted on their ports, {RESTARTS} times, median time until all are live; handshake cap {CAP}",
        HEARTBEAT.as_secs(),
        SCALING_IDLE.window.as_secs(),
        if crate::measure::threads_cpu_time().is_some() {
            "in nanoseconds from each thread's schedstat".to_owned()
        } else {
            format!(
                "in 10 ms ticks (no schedstat here), so in steps of {:.2} %",
                1.0 / SCALING_IDLE.window.as_secs_f64()
            )
        },
    );
    if let Some(load) = load_start {
        println!("  load average at start {load:.2} (2 cores; other builds may be running)");
    }
    println!(
        "{:>11} {:<27} {:>10} {:>8} {:>10} {:>9} {:>8}",
        "connections", "client", "bytes/conn", "open s", "idle CPU %", "per 1,000", "storm s"
    );
    let mut by_point = Map::new();
    // Each client's figures at each point it held, for the fits.
    let mut held: Vec<(&str, Vec<(u64, Value)>)> =
        CLIENTS.iter().map(|&c| (c, Vec::new())).collect();
    for &count in &points {
        let mut point = Map::new();
        point.insert("connections".into(), json!(count));
        for (i, &client) in CLIENTS.iter().enumerate() {
            let label = if i == 0 {
                thousands(count)
            } else {
                String::new()
            };
            match run_point(client, count, servers) {
                Ok(figures) => {
                    println!(
                        "{label:>11} {client:<27} {} {} {} {} {}",
                        cell(&figures, "bytes_per_connection", 10, 0),
                        cell(&figures, "open_s", 8, 2),
                        cell(&figures, "idle_cpu_total_percent", 10, 2),
                        cell(&figures, "idle_cpu_percent_per_1000", 9, 3),
                        cell(&figures, "storm_recovery_s", 8, 2),
                    );
                    if let Some((_, list)) = held.iter_mut().find(|(c, _)| *c == client) {
                        list.push((count, figures.clone()));
                    }
                    point.insert(client.into(), figures);
                }
                Err(error) => {
                    println!(
                        "{label:>11} {client:<27} could not hold {}: {error}",
                        thousands(count)
                    );
                    point.insert(client.into(), json!({ "error": error }));
                }
            }
        }
        by_point.insert(format!("at_{count:05}"), Value::Object(point));
    }

    let (fits, projection) = report_fits(&held);
    let load_end = load_average();
    if let Some(load) = load_end {
        println!("  load average at the end {load:.2}");
    }
    Ok(json!({
        "open_file_limit": limit,
        "open_file_hard_limit": hard,
        "fds_at_start": fds,
        "fd_margin": FD_MARGIN,
        "max_point": last,
        "servers": servers,
        "heartbeat_s": HEARTBEAT.as_secs(),
        "idle_window_s": SCALING_IDLE.window.as_secs(),
        "restarts": RESTARTS,
        "handshake_cap": CAP,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "points": by_point,
        "fit": fits,
        "projection_not_measured": projection,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::port_of;
    use super::*;

    #[test]
    fn the_last_point_is_the_limit_less_open_files_and_margin_in_whole_steps() {
        // This machine: 20,000 files, a dozen open, 400 kept back: 19,588 rounds to 19,500.
        assert_eq!(max_point(20_000, 12, 400), 19_500);
        // A hundred more open files cost a step.
        assert_eq!(max_point(20_000, 112, 400), 19_000);
        assert_eq!(max_point(1_024, 3, 400), 500);
        assert_eq!(max_point(300, 3, 400), 0);
        assert_eq!(max_point(u64::MAX, u64::MAX, 400), 0);
    }

    #[test]
    fn points_are_the_fixed_ones_that_fit_then_the_most() {
        assert_eq!(points_up_to(19_500), [2_500, 5_000, 10_000, 19_500]);
        assert_eq!(points_up_to(10_000), [2_500, 5_000, 10_000]);
        assert_eq!(points_up_to(4_000), [2_500, 4_000]);
        assert_eq!(points_up_to(1_000_000), [2_500, 5_000, 10_000, MOST]);
        assert!(points_up_to(0).is_empty());
    }

    #[test]
    fn connections_are_dealt_round_robin_within_one_of_each_other() {
        let ports = [7001, 7002, 7003];
        assert_eq!(servers_for(19_500, SERVER_HOLDS), 3);
        assert_eq!(servers_for(8_000, SERVER_HOLDS), 1);
        assert_eq!(servers_for(8_001, SERVER_HOLDS), 2);
        assert_eq!(servers_for(0, SERVER_HOLDS), 1);
        for (count, expected) in [(19_500, [6_500; 3]), (10, [4, 3, 3])] {
            let mut held = [0usize; 3];
            for i in 0..count {
                let port = port_of(i, &ports);
                let slot = ports.iter().position(|&p| p == port).unwrap();
                held[slot] += 1;
            }
            assert_eq!(held, expected);
        }
        assert_eq!(port_of(4, &ports), 7002);
        assert_eq!(port_of(5, &[9000]), 9000);
    }

    #[test]
    fn deviation_is_the_furthest_point_relative_to_the_mean() {
        assert_eq!(
            largest_relative_deviation(&[8_000.0, 8_000.0, 8_000.0]),
            0.0
        );
        // Mean 10,000; 12,000 is 20 % above it.
        let d = largest_relative_deviation(&[9_000.0, 9_000.0, 10_000.0, 12_000.0]);
        assert!((d - 0.2).abs() < 1e-12, "{d}");
        assert_eq!(largest_relative_deviation(&[]), 0.0);
    }

    #[test]
    fn a_super_linear_cost_shows_in_the_fit() {
        // A cost that grows with the count (8,000 B plus 0.1 B per connection already held)
        // must show as a rising per-connection cost, not hide in the slope.
        let figures: Vec<(u64, Value)> = [2_500u64, 5_000, 10_000, 19_500]
            .iter()
            .map(|&n| {
                let per = 8_000.0 + 0.1 * n as f64;
                (n, json!({"bytes_per_connection": per, "idle_cpu_total_percent": 0.05 * n as f64 / 1000.0}))
            })
            .collect();
        let refs: Vec<(u64, &Value)> = figures.iter().map(|(n, f)| (*n, f)).collect();
        let line = fit(&refs);
        let costs: Vec<f64> = line.per_connection.iter().map(|p| p.1).collect();
        assert!(largest_relative_deviation(&costs) > 0.1);
        let cpu = line.cpu.unwrap();
        assert!((cpu.slope * 1000.0 - 0.05).abs() < 1e-9);
        let rss = line.rss.unwrap();
        assert!(rss.slope > 8_000.0);
        // The quadratic bends away from its best line by more than a percent somewhere.
        assert!(largest_relative_residual(&line.rss_points, rss) > 0.01);
    }

    #[test]
    fn a_linear_cost_with_a_fixed_part_stays_on_its_line() {
        // 4 MiB fixed plus 9,000 B each: the per-connection cost falls along the curve, the
        // points stay on the line, and the slope is the 9,000 B.
        let figures: Vec<(u64, Value)> = [2_500u64, 5_000, 10_000, 19_500]
            .iter()
            .map(|&n| {
                let per = (4.0 * 1024.0 * 1024.0 + 9_000.0 * n as f64) / n as f64;
                (
                    n,
                    json!({"bytes_per_connection": per, "idle_cpu_total_percent": 0.1}),
                )
            })
            .collect();
        let refs: Vec<(u64, &Value)> = figures.iter().map(|(n, f)| (*n, f)).collect();
        let line = fit(&refs);
        let rss = line.rss.unwrap();
        assert!((rss.slope - 9_000.0).abs() < 1e-6, "{rss:?}");
        assert!(largest_relative_residual(&line.rss_points, rss) < 1e-9);
        assert!(line.per_connection[0].1 > line.per_connection[3].1);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(19_500), "19,500");
        assert_eq!(thousands(500), "500");
        assert_eq!(thousands(100_000), "100,000");
    }
}
