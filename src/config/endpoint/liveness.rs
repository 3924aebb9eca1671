//! Whether the peer is there: the `heartbeat` table (pings and their timeout) and the
//! `live_after` table (the reply that makes a new socket count as live).

use std::time::Duration;

use config::Value;
use wsherd_connection::ConnectionConfig;
use wsherd_protocol::{HeartbeatMode, MIN_HEARTBEAT_DURATION, ReplyMatcher};
use wsherd_supervisor::LiveAfter;

use super::{HEARTBEAT_KEYS, LIVE_AFTER_KEYS};
use crate::config::read::{Reader, Table, join};

/// Default wait for the `live_after` reply.
const DEFAULT_LIVE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn read_heartbeat(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    connection: &mut ConnectionConfig,
) {
    let Some(table) = reader.table(value, path, HEARTBEAT_KEYS) else {
        return;
    };
    let spec = &mut connection.heartbeat;
    if let Some(interval) = reader.duration(&table, "interval") {
        check_heartbeat_duration(reader, &table, "interval", interval);
        spec.interval = interval;
    }
    if let Some(timeout) = reader.duration(&table, "timeout") {
        check_heartbeat_duration(reader, &table, "timeout", timeout);
        spec.timeout = timeout;
    }
    let payload = reader.string(&table, "payload");
    let reply_kind = reader.string(&table, "reply_kind");
    let reply_text = reader.string(&table, "reply_text");
    let mode = reader
        .choice(&table, "mode", &["ws-ping", "app", "off"])
        .unwrap_or("ws-ping");
    spec.mode = match mode {
        "off" => HeartbeatMode::Off,
        "app" => {
            let reply = match (reply_kind, reply_text) {
                (Some(kind), None) => Some(ReplyMatcher::Kind(kind)),
                (None, Some(text)) => Some(ReplyMatcher::Text(text)),
                _ => {
                    reader.problem(
                        table.origin.as_deref(),
                        path,
                        "mode \"app\" needs exactly one of reply_kind or reply_text",
                    );
                    None
                }
            };
            if payload.is_none() {
                reader.problem(
                    table.origin.as_deref(),
                    &join(path, "payload"),
                    "is required with mode \"app\"",
                );
            }
            match (payload, reply) {
                (Some(payload), Some(reply)) => HeartbeatMode::App { payload, reply },
                _ => HeartbeatMode::WsPing,
            }
        }
        _ => HeartbeatMode::WsPing,
    };
}

/// Reports `key` of `table` when `value` is shorter than the heartbeat's minimum: a zero or
/// tiny interval would re-arm a timer at once, forever. The same bound as
/// [`HeartbeatSpec::validate`](wsherd_protocol::HeartbeatSpec::validate), named by key here.
pub(super) fn check_heartbeat_duration(
    reader: &mut Reader,
    table: &Table<'_>,
    key: &str,
    value: Duration,
) {
    if value < MIN_HEARTBEAT_DURATION {
        let origin = table
            .map
            .get(key)
            .and_then(Value::origin)
            .map(str::to_owned);
        reader.problem(
            origin.as_deref().or(table.origin.as_deref()),
            &join(&table.path, key),
            format!("{value:?} is too short: the minimum is {MIN_HEARTBEAT_DURATION:?}"),
        );
    }
}

pub(super) fn read_live_after(reader: &mut Reader, value: &Value, path: &str) -> Option<LiveAfter> {
    let table = reader.table(value, path, LIVE_AFTER_KEYS)?;
    let timeout = reader
        .duration(&table, "timeout")
        .unwrap_or(DEFAULT_LIVE_TIMEOUT);
    let matcher = match (reader.string(&table, "kind"), reader.string(&table, "text")) {
        (Some(kind), None) => ReplyMatcher::Kind(kind),
        (None, Some(text)) => ReplyMatcher::Text(text),
        _ => {
            reader.problem(
                table.origin.as_deref(),
                path,
                "needs exactly one of kind or text",
            );
            return None;
        }
    };
    Some(LiveAfter { matcher, timeout })
}
