//! Printing routed messages, dead letters and state changes as JSON lines or for people.
//!
//! # A slow stdout never stalls the herd
//!
//! The printers live on the system arbiter, beside the herd's handshake governor, so they never
//! write stdout themselves: they render lines and hand them to the [`Stdout`] thread through a
//! bounded channel with `try_send`. What they do when that channel is full depends on who feeds
//! them:
//!
//! - [`Printer`] takes messages and dead letters, which come from sockets' read paths. When the
//!   channel is full it waits for room with `ctx.wait`, which pauses this one actor (not the
//!   arbiter): its mailbox fills, and the router's `Overflow::Backpressure` pauses reading the
//!   sockets that feed it, exactly as for any slow subscriber. Nothing is lost, memory stays
//!   bounded (channel plus mailbox), and how long a socket may stay paused is the endpoint's
//!   business, not the printer's.
//! - [`EventPrinter`] takes state events, which come from supervisors. A supervisor that waits
//!   for stdout could not reconnect, so this printer never waits: when the channel is full it
//!   keeps up to [`BACKLOG`] lines and hands them over as room appears (in order, interleaved
//!   fairly with messages); past that it forgets the oldest and prints how many it skipped.
//!
//! Heartbeats, handshakes and the governor run on their arbiters meanwhile, whatever stdout does.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};

use actix::prelude::*;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use wsherd::{
    DeadLetter, DeadLetterReason, Delivery, GapEvent, Herd, KindRule, StateEvent, SubscribeOptions,
};
// One definition of a state line: `/api/events` sends the same fields.
pub(crate) use wsherd_server::{state_line, timestamp};

use crate::args::Format;
use crate::stdout::Stdout;

/// State lines the [`EventPrinter`] keeps while stdout is full.
const BACKLOG: usize = 1024;

/// Which endpoints and kinds to print; empty sets print everything.
#[derive(Debug, Clone, Default)]
pub(crate) struct Filter {
    pub(crate) endpoints: BTreeSet<String>,
    pub(crate) kinds: BTreeSet<String>,
}

impl Filter {
    /// An inbound endpoint's name also selects its sessions (`devices` prints `devices:42`).
    fn endpoint(&self, endpoint: &str) -> bool {
        let family = endpoint
            .split_once(':')
            .map_or(endpoint, |(family, _)| family);
        self.endpoints.is_empty()
            || self.endpoints.contains(endpoint)
            || self.endpoints.contains(family)
    }

    fn kind(&self, kind: Option<&str>) -> bool {
        self.kinds.is_empty() || kind.is_some_and(|k| self.kinds.contains(k))
    }
}

/// Each endpoint's kind rule, to name the kind of what `subscribe_all` delivers.
pub(crate) type KindRules = Arc<Mutex<HashMap<String, KindRule>>>;

/// How lines are written.
#[derive(Debug, Clone, Copy)]
struct Style {
    format: Format,
    colour: bool,
}

impl Style {
    fn render(self, line: &Value) -> String {
        match self.format {
            Format::Json => line.to_string(),
            Format::Pretty => pretty(line, self.colour),
        }
    }
}

/// A line printed as it is, among the messages (a request's reply or failure).
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Printed(pub(crate) Value);

impl Handler<Printed> for Printer {
    type Result = ();

    fn handle(&mut self, Printed(line): Printed, ctx: &mut Context<Self>) {
        self.emit(line, ctx);
    }
}

/// The line of a request's outcome: `reply` with its data, or `request_failed` with why.
pub(crate) fn request_line(
    endpoint: &str,
    outcome: Result<(wsherd::MessageId, Value), wsherd::RequestError>,
) -> Value {
    use wsherd::RequestError;
    match outcome {
        Ok((id, data)) => json!({
            "ts": timestamp(),
            "endpoint": endpoint,
            "event": "reply",
            "id": id.to_value(),
            "data": data,
        }),
        Err(error) => {
            let kind = match &error {
                RequestError::Timeout { .. } => "timeout",
                RequestError::Disconnected { .. } => "disconnected",
                RequestError::Stopped { .. } => "stopped",
                RequestError::Decode { .. } => "decode",
                RequestError::Rejected(_) => "rejected",
                RequestError::Refused(_) => "refused",
                _ => "failed",
            };
            json!({
                "ts": timestamp(),
                "endpoint": endpoint,
                "event": "request_failed",
                "id": error.id().map(wsherd::MessageId::to_value),
                "error": kind,
                "reason": error.to_string(),
            })
        }
    }
}

/// The two printers of a run, started on the current arbiter.
pub(crate) struct Printers {
    messages: Addr<Printer>,
    events: Addr<EventPrinter>,
    /// The endpoints `--endpoint` named, if any.
    named: Vec<wsherd::EndpointName>,
}

impl Printers {
    /// Starts printers that print what passes `filter` to `stdout`.
    pub(crate) fn start(format: Format, filter: Filter, kinds: KindRules, stdout: &Stdout) -> Self {
        let style = Style {
            format,
            colour: format == Format::Pretty && std::io::stdout().is_terminal(),
        };
        let events = EventPrinter {
            style,
            filter: filter.clone(),
            out: stdout.lines(),
            backlog: VecDeque::new(),
            skipped: 0,
            draining: false,
        }
        .start();
        // A name that is no endpoint name matches no endpoint: nothing to subscribe to.
        let named = filter
            .endpoints
            .iter()
            .filter_map(|name| wsherd::EndpointName::new(name).ok())
            .collect();
        let messages = Printer {
            style,
            filter,
            kinds,
            out: stdout.lines(),
        }
        .start();
        Printers {
            messages,
            events,
            named,
        }
    }

    /// Where request outcomes are printed.
    pub(crate) fn lines(&self) -> Recipient<Printed> {
        self.messages.clone().recipient()
    }

    /// Where other cluster members' state lines are printed.
    pub(crate) fn remote_states(&self) -> Recipient<RemoteState> {
        self.events.clone().recipient()
    }

    /// Subscribes them to every message, dead letter and state event of `herd`. With
    /// `--endpoint`, the message subscription names those endpoints, so the on-demand ones
    /// among them connect; without, it is a tap on everything and wakes none.
    pub(crate) fn subscribe(&self, herd: &Herd) {
        let mut options = SubscribeOptions::new();
        if !self.named.is_empty() {
            options = options.endpoints(self.named.iter().cloned());
        }
        herd.router()
            .subscribe_all::<Value>(self.messages.clone().recipient(), options);
        herd.subscribe_events::<DeadLetter>(self.messages.clone().recipient());
        herd.subscribe_events::<GapEvent>(self.messages.clone().recipient());
        herd.subscribe_events::<StateEvent>(self.events.clone().recipient());
    }
}

/// Prints messages and dead letters; slows their sockets down to the speed of stdout.
pub(crate) struct Printer {
    style: Style,
    filter: Filter,
    kinds: KindRules,
    out: mpsc::Sender<String>,
}

impl Printer {
    fn emit(&mut self, line: Value, ctx: &mut Context<Self>) {
        match self.out.try_send(self.style.render(&line)) {
            Ok(()) => {}
            Err(TrySendError::Full(text)) => {
                // Take nothing more until stdout has room for this line: the mailbox fills and
                // the router holds the sockets' reads (back-pressure), the arbiter runs on.
                let out = self.out.clone();
                ctx.wait(
                    async move { out.send(text).await.is_ok() }
                        .into_actor(self)
                        .map(|sent, _, ctx| {
                            if !sent {
                                ctx.stop();
                            }
                        }),
                );
            }
            // Stdout is gone; the run is ending on that (see `Stdout::closed`).
            Err(TrySendError::Closed(_)) => ctx.stop(),
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
            .get(message.endpoint.family())
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

impl Handler<Delivery<GapEvent>> for Printer {
    type Result = ();

    fn handle(&mut self, gap: Delivery<GapEvent>, ctx: &mut Context<Self>) {
        let endpoint = gap.endpoint.as_str();
        if !self.filter.endpoint(endpoint) || !self.filter.kind(Some(&gap.message.kind)) {
            return;
        }
        let line = json!({
            "ts": timestamp(),
            "endpoint": endpoint,
            "event": "gap",
            "what": gap.message.what.name(),
            "kind": gap.message.kind,
            "scope": gap.message.scope,
            "expected": gap.message.expected,
            "got": gap.message.got,
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

/// Prints state events; never makes a supervisor wait for stdout.
pub(crate) struct EventPrinter {
    style: Style,
    filter: Filter,
    out: mpsc::Sender<String>,
    /// Lines waiting for room in the channel, oldest first.
    backlog: VecDeque<String>,
    /// Lines forgotten because the backlog was full, not yet announced.
    skipped: u64,
    /// Whether a wait for room is under way.
    draining: bool,
}

impl EventPrinter {
    fn emit(&mut self, line: Value, ctx: &mut Context<Self>) {
        let text = self.style.render(&line);
        if self.backlog.is_empty() && self.skipped == 0 {
            match self.out.try_send(text) {
                Ok(()) => return,
                Err(TrySendError::Full(text)) => self.backlog.push_back(text),
                Err(TrySendError::Closed(_)) => {
                    ctx.stop();
                    return;
                }
            }
        } else {
            if self.backlog.len() >= BACKLOG {
                self.backlog.pop_front();
                self.skipped += 1;
            }
            self.backlog.push_back(text);
        }
        self.drain(ctx);
    }

    /// Waits for room in the channel (spawned: events keep coming in meanwhile) and hands
    /// over the oldest waiting line, or the note of what was skipped; again until none wait.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            return;
        }
        self.draining = true;
        let out = self.out.clone();
        ctx.spawn(
            async move { out.reserve_owned().await }
                .into_actor(self)
                .map(|permit, act, ctx| {
                    act.draining = false;
                    let Ok(permit) = permit else {
                        ctx.stop();
                        return;
                    };
                    let text = if act.skipped > 0 {
                        let note = skipped_line(std::mem::take(&mut act.skipped));
                        act.style.render(&note)
                    } else if let Some(text) = act.backlog.pop_front() {
                        text
                    } else {
                        return;
                    };
                    permit.send(text);
                    if !act.backlog.is_empty() || act.skipped > 0 {
                        act.drain(ctx);
                    }
                }),
        );
    }
}

impl Actor for EventPrinter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // This printer never waits, so its mailbox empties at the arbiter's pace; room for a
        // herd's worth of endpoints changing state at once keeps supervisors from queueing.
        ctx.set_mailbox_capacity(4096);
    }
}

impl Handler<Delivery<StateEvent>> for EventPrinter {
    type Result = ();

    fn handle(&mut self, event: Delivery<StateEvent>, ctx: &mut Context<Self>) {
        let endpoint = event.endpoint.as_str();
        if !self.filter.endpoint(endpoint) {
            return;
        }
        self.emit(state_line(endpoint, &event.message), ctx);
    }
}

/// A state line another cluster member published (`<prefix>.state.<endpoint>`): printed as
/// this process prints its own, with the member that runs the endpoint.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct RemoteState(pub(crate) Value);

impl Handler<RemoteState> for EventPrinter {
    type Result = ();

    fn handle(&mut self, RemoteState(line): RemoteState, ctx: &mut Context<Self>) {
        let Some(endpoint) = line["endpoint"].as_str() else {
            return;
        };
        if !self.filter.endpoint(endpoint) {
            return;
        }
        self.emit(line, ctx);
    }
}

/// The JSON line saying `count` state events were not printed.
fn skipped_line(count: u64) -> Value {
    json!({
        "ts": timestamp(),
        "event": "skipped",
        "state_events": count,
        "reason": "stdout was not read",
    })
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
                ("live", _) if line["reconnected"] == true => format!(
                    "live again after {} ms down (attempt {})",
                    line["downtime_ms"], line["attempt"]
                ),
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
        Some("skipped") => paint(
            "31",
            format!(
                "[{} state event(s) not shown: {}]",
                line["state_events"],
                line["reason"].as_str().unwrap_or_default()
            ),
        ),
        _ => line.to_string(),
    };
    format!("{time} {endpoint:>10}  {body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wsherd::EndpointState;

    /// A state line as the [`EventPrinter`] gets it from a state event.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Line(Value);

    impl Handler<Line> for EventPrinter {
        type Result = ();

        fn handle(&mut self, Line(line): Line, ctx: &mut Context<Self>) {
            self.emit(line, ctx);
        }
    }

    #[actix_rt::test]
    async fn state_lines_never_wait_for_stdout_and_what_the_backlog_cannot_hold_is_counted() {
        let (out, mut stdout) = mpsc::channel(1);
        let printer = EventPrinter {
            style: Style {
                format: Format::Json,
                colour: false,
            },
            filter: Filter::default(),
            out,
            backlog: VecDeque::new(),
            skipped: 0,
            draining: false,
        }
        .start();
        let sent = BACKLOG + 11;
        // Nobody reads `stdout` yet: every send still returns (the printer never waits).
        for n in 0..sent {
            printer.send(Line(json!({ "n": n }))).await.unwrap();
        }
        let mut read = Vec::new();
        while read.len() < BACKLOG + 2 {
            let line: Value = serde_json::from_str(&stdout.recv().await.unwrap()).unwrap();
            read.push(line);
        }
        assert_eq!(read[0]["n"], 0, "the first line went straight through");
        assert_eq!(read[1]["event"], "skipped");
        assert_eq!(
            read[1]["state_events"], 10,
            "the oldest waiting lines were forgotten"
        );
        let rest: Vec<u64> = read[2..].iter().filter_map(|l| l["n"].as_u64()).collect();
        assert_eq!(rest, (11..sent as u64).collect::<Vec<_>>());
        assert!(pretty(&read[1], false).contains("[10 state event(s) not shown"));
    }

    #[test]
    fn pretty_state_lines() {
        let line = state_line(
            "feed",
            &StateEvent::new(EndpointState::Backoff {
                attempt: 2,
                delay: std::time::Duration::from_millis(250),
                reason: wsherd::EndReason::StreamEnded,
            }),
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

    #[test]
    fn a_reconnect_is_a_live_line_with_the_attempt_and_the_downtime() {
        use wsherd::Reconnected;
        let again = Reconnected::new(3, std::time::Duration::from_millis(1_250));
        let line = state_line("feed", &StateEvent::reconnected(again));
        assert_eq!(line["state"], "live");
        assert_eq!(line["reconnected"], true);
        assert_eq!(line["attempt"], 3);
        assert_eq!(line["downtime_ms"], 1_250);
        let shown = pretty(&line, false);
        assert!(
            shown.ends_with("feed  [live again after 1250 ms down (attempt 3)]"),
            "{shown}"
        );
        let first = state_line("feed", &StateEvent::new(EndpointState::Live));
        assert!(first.get("reconnected").is_none(), "{first}");
        assert!(pretty(&first, false).ends_with("[live]"));
    }
}
