//! Whether the peer is there: the `heartbeat` table (pings and their timeout) and the
//! `live_after` table (the reply that makes a new socket count as live).

use std::time::Duration;

use config::Value;
use wsherd_connection::ConnectionConfig;
use wsherd_protocol::{HeartbeatMode, ReplyMatcher};
use wsherd_supervisor::LiveAfter;

use super::{HEARTBEAT_KEYS, LIVE_AFTER_KEYS};
use crate::config::read::{Reader, join};

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
        if interval.is_zero() {
            reader.problem(
                table.origin.as_deref(),
                &join(path, "interval"),
                "must be longer than zero",
            );
        }
        spec.interval = interval;
    }
    if let Some(timeout) = reader.duration(&table, "timeout") {
        if timeout.is_zero() {
            reader.problem(
                table.origin.as_deref(),
                &join(path, "timeout"),
                "must be longer than zero",
            );
        }
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
