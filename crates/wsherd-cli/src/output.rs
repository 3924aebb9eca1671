//! Printing routed messages, dead letters and state changes as JSON lines or for people.

use std::collections::{BTreeSet, HashMap};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use serde_json::{Value, json};
use wsherd::{DeadLetter, DeadLetterReason, Delivery, EndpointState, KindRule, StateEvent};

use crate::args::Format;

/// Which endpoints and kinds to print; empty sets print everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) endpoints: BTreeSet<String>,
    pub(crate) kinds: BTreeSet<String>,
}

impl Filter {
    fn endpoint(&self, endpoint: &str) -> bool {
        self.endpoints.is_empty() || self.endpoints.contains(endpoint)
    }

    fn kind(&self, kind: Option<&str>) -> bool {
        self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(k))
    }
}

/// Each endpoint's kind rule, to name the kind of what `subscribe_all` delivers.
pub(crate) type KindRules = Arc<Mutex<HashMap<String, KindRule>>>;

/// Prints everything it is sent, one line each.
pub(crate) struct Printer {
    pub(crate) format: Format,
    pub(crate) filter: Filter,
    pub(crate) kinds: KindRules,
    pub(crate) colour: bool,
}

impl Printer {
    pub(crate) fn new(format: Format, filter: Filter, kinds: KindRules) -> Self {
        Printer {
            format,
            filter,
            kinds,
            colour: format == Format::Pretty && std::io::stdout().is_terminal(),
        }
    }

    fn emit(&self, line: Value, ctx: &mut Context<Self>) {
        let text = match self.format {
            Format::Json => line.to_string(),
            Format::Pretty => pretty(&line, self.colour),
        };
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, "{text}")
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // Nobody reads any more (a closed pipe): stop instead of failing forever.
            ctx.stop();
            System::current().stop();
        }
    }
}

impl Actor for Printer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Bursts are absorbed here; beyond that the default back-pressure slows the sockets
        // to the speed of stdout.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Delivery<Value>> for Printer {
    type Result = ();

    fn handle(&mut self, message: Delivery<Value>, ctx: &mut Context<Self>) {
        let endpoint = message.endpoint.as_str();
        let kind = self
            .kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .and_then(|rule| rule.extract_value(&message.message));
        if !self.filter.endpoint(endpoint) || !self.filter.kind(kind.as_deref()) {
            return;
        }
        let line = json!({
            "ts": timestamp(),
            "endpoint": endpoint,
            "event": "message",
            "kind": kind,
            "data": &*message.message,
        });
        self.emit(line, ctx);
    }
}

impl Handler<Delivery<DeadLetter>> for Printer {
    type Result = ();

    fn handle(&mut self, letter: Delivery<DeadLetter>, ctx: &mut Context<Self>) {
        let endpoint = letter.endpoint.as_str();
        if !self.filter.endpoint(endpoint) || !self.filter.kind(letter.message.kind.as_deref()) {
            return;
        }
        let excerpt = match &letter.message.reason {
            DeadLetterReason::NoSubscriber { excerpt, .. } => excerpt.clone(),
            DeadLetterReason::Rejected(error) => error.excerpt.clone(),
        };
        let line = json!({
            "ts": timestamp(),
            "endpoint": endpoint,
            "event": "dead_letter",
            "kind": letter.message.kind,
            "reason": letter.message.to_string(),
            "excerpt": excerpt,
        });
        self.emit(line, ctx);
    }
}

impl Handler<Delivery<StateEvent>> for Printer {
    type Result = ();

    fn handle(&mut self, event: Delivery<StateEvent>, ctx: &mut Context<Self>) {
        let endpoint = event.endpoint.as_str();
        if !self.filter.endpoint(endpoint) {
            return;
        }
        self.emit(state_line(endpoint, &event.message.state), ctx);
    }
}

/// The JSON line of a state change.
pub(crate) fn state_line(endpoint: &str, state: &EndpointState) -> Value {
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
            line["delay_ms"] = json!(delay.as_millis() as u64);
            line["reason"] = json!(reason.to_string());
        }
        EndpointState::Failed { reason } => line["reason"] = json!(reason.to_string()),
        _ => {}
    }
    line
}

fn pretty(line: &Value, colour: bool) -> String {
    let paint = |code: &str, text: String| {
        if colour {
            format!("\u{1b}[{code}m{text}\u{1b}[0m")
        } else {
            text
        }
    };
    let ts = line["ts"].as_str().unwrap_or_default();
    let time = ts.get(11..23).unwrap_or(ts);
    let endpoint = line["endpoint"].as_str().unwrap_or_default();
    let body = match line["event"].as_str() {
        Some("message") => format!(
            "{} {}",
            paint("36", line["kind"].as_str().unwrap_or("-").to_owned()),
            line["data"]
        ),
        Some("dead_letter") => paint(
            "35",
            format!(
                "dead letter: {}",
                line["reason"].as_str().unwrap_or_default()
            ),
        ),
        Some("state") => {
            let state = line["state"].as_str().unwrap_or_default();
            let text = match (state, line.get("reason").and_then(Value::as_str)) {
                ("backoff", Some(reason)) => format!(
                    "reconnecting in {} ms (attempt {}): {reason}",
                    line["delay_ms"], line["attempt"]
                ),
                ("failed", Some(reason)) => format!("gave up: {reason}"),
                ("connecting", _) => format!("connecting (attempt {})", line["attempt"]),
                (other, _) => other.to_owned(),
            };
            let code = match state {
                "live" => "32",
                "failed" => "31",
                "backoff" => "33",
                _ => "2",
            };
            paint(code, format!("[{text}]"))
        }
        _ => line.to_string(),
    };
    format!("{time} {endpoint:>10}  {body}")
}

/// Now as RFC 3339 UTC with milliseconds.
pub(crate) fn timestamp() -> String {
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

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let ts = timestamp();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.ends_with('Z'));
    }

    #[test]
    fn pretty_state_lines() {
        let line = state_line(
            "feed",
            &EndpointState::Backoff {
                attempt: 2,
                delay: std::time::Duration::from_millis(250),
                reason: wsherd::EndReason::StreamEnded,
            },
        );
        assert_eq!(line["delay_ms"], 250);
        let shown = pretty(&line, false);
        assert!(
            shown.contains("reconnecting in 250 ms (attempt 2)"),
            "{shown}"
        );
        assert!(!pretty(&line, false).contains('\u{1b}'));
        assert!(pretty(&line, true).contains('\u{1b}'));
    }
}
