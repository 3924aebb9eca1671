//! The JSON a client reads: an endpoint's status object, a state line, a stats line.
//!
//! State lines are the ones `wsherd run` prints (`wsherd-cli` uses [`state_line`] too), so a
//! script reads the same fields from either.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use wsherd::{EndpointState, EndpointStatus, StateEvent};

/// The JSON line of a state change: `ts`, `endpoint`, `event` (`"state"`), `state`; `attempt`
/// for `connecting`; `attempt`, `delay_ms`, `reason` for `backoff`; `reason` for `failed`;
/// `stage` too for an attempt that never opened (`prepare`, `dns`, `tcp`, `proxy`, `tls`,
/// `upgrade`: where it failed). A
/// `live` after a reconnect says so: `"reconnected": true`, the `attempt` that succeeded and
/// `downtime_ms`, how long the endpoint was down.
pub fn state_line(endpoint: &str, event: &StateEvent) -> Value {
    let state = &event.state;
    let mut line = json!({
        "ts": timestamp(),
        "endpoint": endpoint,
        "event": "state",
        "state": state.name(),
    });
    match state {
        EndpointState::Connecting { attempt } => line["attempt"] = json!(attempt),
        EndpointState::Backoff {
            attempt,
            delay,
            reason,
        } => {
            line["attempt"] = json!(attempt);
            line["delay_ms"] = json!(millis(*delay));
            line["reason"] = json!(reason.to_string());
            if let Some(stage) = reason.stage() {
                line["stage"] = json!(stage.name());
            }
        }
        EndpointState::Failed { reason } => {
            line["reason"] = json!(reason.to_string());
            if let Some(stage) = reason.last_end().stage() {
                line["stage"] = json!(stage.name());
            }
        }
        _ => {}
    }
    if let Some(again) = &event.reconnected {
        line["reconnected"] = json!(true);
        line["attempt"] = json!(again.attempt);
        line["downtime_ms"] = json!(millis(again.downtime));
    }
    if event.rotated {
        line["rotated"] = json!(true);
    }
    line
}

/// The JSON line of an endpoint's figures: `ts`, `endpoint`, `event` (`"stats"`), `state`,
/// `attempt`, `rtt_ms`, `queue_depth`, `messages_in`, `bytes_in`, `messages_out`,
/// `dead_letters`, `reconnects`.
pub fn stats_line(status: &EndpointStatus) -> Value {
    json!({
        "ts": timestamp(),
        "endpoint": status.name.as_str(),
        "event": "stats",
        "state": status.state.name(),
        "attempt": status.attempt,
        "rtt_ms": status.rtt.map(rtt_ms),
        "queue_depth": status.queue_depth,
        "messages_in": status.stats.messages_in,
        "bytes_in": status.stats.bytes_in,
        "messages_out": status.stats.messages_out,
        "dead_letters": status.stats.dead_letters,
        "reconnects": status.reconnects,
    })
}

/// One endpoint as `/api/status` shows it: `name`, `state`, `since_ms` (how long it has been
/// in that state), `attempt` (attempts in a row that never became live), `last_error` (why a
/// failed endpoint gave up, else how its last socket ended; `null` if none did), `rtt_ms`
/// (the last heartbeat round trip, `null` before one), `queue_depth`, `messages_in`,
/// `bytes_in`, `messages_out`, `dead_letters`, `reconnects`, `held_by_outage` (the herd is
/// offline and holds this endpoint's attempt while another probes its host). Nothing secret: no URL, no
/// header, no message.
pub fn status_json(status: &EndpointStatus) -> Value {
    json!({
        "name": status.name.as_str(),
        "state": status.state.name(),
        "since_ms": millis(status.time_in_state),
        "attempt": status.attempt,
        "last_error": last_error(status),
        "rtt_ms": status.rtt.map(rtt_ms),
        "queue_depth": status.queue_depth,
        "messages_in": status.stats.messages_in,
        "bytes_in": status.stats.bytes_in,
        "messages_out": status.stats.messages_out,
        "dead_letters": status.stats.dead_letters,
        "reconnects": status.reconnects,
        "held_by_outage": status.held_by_outage,
    })
}

/// Why a failed endpoint gave up, else how its last socket ended, on one line.
fn last_error(status: &EndpointStatus) -> Option<String> {
    let text = match (&status.state, &status.last_error) {
        (EndpointState::Failed { reason }, _) => reason.to_string(),
        (_, Some(last)) => last.to_string(),
        (_, None) => return None,
    };
    Some(
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect(),
    )
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds with microseconds kept: loopback round trips are well under one.
fn rtt_ms(rtt: std::time::Duration) -> f64 {
    rtt.as_micros() as f64 / 1000.0
}

/// Now as RFC 3339 UTC with milliseconds (`2025-11-25T08:15:02.117Z`).
pub fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Howard Hinnant's days-to-civil conversion.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_since_the_epoch_are_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let ts = timestamp();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn a_backoff_line_has_the_attempt_the_delay_and_the_reason() {
        let line = state_line(
            "feed",
            &StateEvent::new(EndpointState::Backoff {
                attempt: 2,
                delay: Duration::from_millis(250),
                reason: wsherd::EndReason::StreamEnded,
            }),
        );
        assert_eq!(line["event"], "state");
        assert_eq!(line["state"], "backoff");
        assert_eq!(line["attempt"], 2);
        assert_eq!(line["delay_ms"], 250);
        assert!(line["reason"].is_string());
    }

    #[test]
    fn a_reconnect_is_a_live_line_with_the_attempt_and_the_downtime() {
        let again = wsherd::Reconnected::new(3, Duration::from_millis(1_250));
        let line = state_line("feed", &StateEvent::reconnected(again));
        assert_eq!(line["state"], "live");
        assert_eq!(line["reconnected"], true);
        assert_eq!(line["attempt"], 3);
        assert_eq!(line["downtime_ms"], 1_250);
        let first = state_line("feed", &StateEvent::new(EndpointState::Live));
        assert!(first.get("reconnected").is_none(), "{first}");
    }

    #[test]
    fn a_backoff_or_failure_of_an_attempt_that_never_opened_names_its_stage() {
        let refused = wsherd::EndReason::ProxyAuth {
            reason: "HTTP/1.1 407".into(),
        };
        let failed = state_line(
            "feed",
            &StateEvent::new(EndpointState::Failed {
                reason: wsherd::FailReason::NotRetryable(refused),
            }),
        );
        assert_eq!(failed["stage"], "proxy");
        let backoff = state_line(
            "feed",
            &StateEvent::new(EndpointState::Backoff {
                attempt: 2,
                delay: Duration::from_millis(500),
                reason: wsherd::EndReason::HandshakeTimeout {
                    after: Duration::from_secs(10),
                    stage: wsherd::ConnectStage::Tls,
                },
            }),
        );
        assert_eq!(backoff["stage"], "tls");
        let dropped = state_line(
            "feed",
            &StateEvent::new(EndpointState::Backoff {
                attempt: 1,
                delay: Duration::from_millis(500),
                reason: wsherd::EndReason::StreamEnded,
            }),
        );
        assert!(dropped.get("stage").is_none(), "{dropped}");
    }

    #[test]
    fn a_status_object_has_every_documented_field_and_no_url() {
        let name = wsherd::EndpointName::new("feed").unwrap();
        let shared = wsherd::EndpointShared::new(name, "wss://u:pw@h/ws?key=k3y".into());
        let status = status_json(&shared.snapshot());
        for field in [
            "name",
            "state",
            "since_ms",
            "attempt",
            "last_error",
            "rtt_ms",
            "queue_depth",
            "messages_in",
            "bytes_in",
            "messages_out",
            "dead_letters",
            "reconnects",
        ] {
            assert!(status.get(field).is_some(), "{field} missing: {status}");
        }
        let shown = status.to_string();
        assert!(!shown.contains("k3y") && !shown.contains("pw"), "{shown}");
        assert_eq!(status["state"], "connecting");
        assert_eq!(status["last_error"], Value::Null);
    }
}
