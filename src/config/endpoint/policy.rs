//! What the supervisor does about failures and backlog: the `backoff`, `intensity` and
//! `outbound`, `request` and `sequence` tables, and the `on_close` / `on_status` / `on_tls` action tables.

use config::Value;
use wsherd_connection::TlsClass;
use wsherd_supervisor::{
    Action, BackoffPolicy, Jitter, OverflowPolicy, QueuePolicy, RequestPolicy, RestartIntensity,
    SendRate,
};

use wsherd_protocol::{OnGap, SequenceSpec};

use super::{BACKOFF_KEYS, INTENSITY_KEYS, OUTBOUND_KEYS, RATE_KEYS, REQUEST_KEYS, SEQUENCE_KEYS};
use crate::config::read::{Reader, Table, join, origin_of};

const ACTIONS: &[&str] = &["reconnect", "backoff", "stop"];

/// The kinds of TLS failure `on_tls` names.
const TLS_CLASSES: &[(&str, TlsClass)] = &[
    ("certificate", TlsClass::Certificate),
    ("transient", TlsClass::Transient),
    ("files", TlsClass::Files),
];

fn action(name: &str) -> Action {
    match name {
        "reconnect" => Action::ReconnectNow,
        "stop" => Action::Stop,
        _ => Action::Backoff,
    }
}

/// Reads the `backoff` table at `path` into `policy`.
pub(super) fn read_backoff(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    policy: &mut BackoffPolicy,
) {
    let Some(backoff) = reader.table(value, path, BACKOFF_KEYS) else {
        return;
    };
    if let Some(initial) = reader.duration(&backoff, "initial") {
        policy.initial = initial;
    }
    if let Some(max) = reader.duration(&backoff, "max") {
        policy.max = max;
    }
    if let Some(factor) = reader.float(&backoff, "factor", 1.0) {
        policy.factor = factor;
    }
    if let Some(jitter) = reader.choice(&backoff, "jitter", &["full", "equal", "none"]) {
        policy.jitter = match jitter {
            "equal" => Jitter::Equal,
            "none" => Jitter::None,
            _ => Jitter::Full,
        };
    }
    if let Some(reset) = reader.duration(&backoff, "reset_after") {
        policy.reset_after = reset;
    }
    if let Some(attempts) = reader.integer(&backoff, "max_attempts", 0, u32::MAX as u64) {
        policy.max_attempts = attempts as u32;
    }
    if policy.initial > policy.max {
        reader.problem(
            backoff.origin.as_deref(),
            &backoff.path,
            format!(
                "initial ({:?}) is larger than max ({:?})",
                policy.initial, policy.max
            ),
        );
    }
}

/// Reads the `intensity` table at `path` into `intensity`.
pub(super) fn read_intensity(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    intensity: &mut RestartIntensity,
) {
    let Some(table) = reader.table(value, path, INTENSITY_KEYS) else {
        return;
    };
    if let Some(max) = reader.integer(&table, "max_restarts", 0, u32::MAX as u64) {
        intensity.max_restarts = max as u32;
    }
    if let Some(within) = reader.duration(&table, "within") {
        intensity.within = within;
    }
}

/// Reads the `outbound` table at `path` into `queue`.
pub(super) fn read_outbound(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    queue: &mut QueuePolicy,
    send_rate: &mut Option<SendRate>,
) {
    let Some(outbound) = reader.table(value, path, OUTBOUND_KEYS) else {
        return;
    };
    if let Some(rate) = outbound.map.get("rate") {
        let rate_path = join(path, "rate");
        if let Some(table) = reader.table(rate, &rate_path, RATE_KEYS) {
            let per_second = reader.integer(&table, "per_second", 1, u32::MAX as u64);
            if per_second.is_none() && !table.map.contains_key("per_second") {
                reader.problem(
                    table.origin.as_deref(),
                    &join(&rate_path, "per_second"),
                    "is required: messages per second, at least 1",
                );
            }
            let burst = reader.integer(&table, "burst", 1, u32::MAX as u64);
            if let Some(per_second) = per_second {
                let per_second = per_second as u32;
                *send_rate = Some(SendRate {
                    per_second,
                    burst: burst.map_or(per_second, |b| b as u32),
                });
            }
        }
    }
    if let Some(max) = reader.integer(&outbound, "max_messages", 0, u32::MAX as u64) {
        queue.max_messages = max as usize;
    }
    if let Some(max) = reader.size(&outbound, "max_bytes") {
        queue.max_bytes = max;
    }
    if let Some(overflow) = reader.choice(&outbound, "overflow", &["reject", "drop_oldest"]) {
        queue.overflow = if overflow == "drop_oldest" {
            OverflowPolicy::DropOldest
        } else {
            OverflowPolicy::Reject
        };
    }
    if let Some(ttl) = reader.duration(&outbound, "ttl") {
        queue.ttl = Some(ttl);
    }
}

/// Reads `request`: how requests carry their ids and replies are recognised.
pub(super) fn read_request(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    request: &mut RequestPolicy,
) {
    let Some(table) = reader.table(value, path, REQUEST_KEYS) else {
        return;
    };
    if let Some(field) = id_field(reader, &table, path, "id_field") {
        request.id_field = field;
    }
    if let Some(field) = id_field(reader, &table, path, "reply_id_field") {
        request.reply_id_field = Some(field);
    }
    if let Some(resend) = reader.boolean(&table, "resend_on_reconnect") {
        request.resend_on_reconnect = resend;
    }
    if let Some(route) = reader.boolean(&table, "route_replies") {
        request.route_replies = route;
    }
    if let Some(max) = reader.integer(&table, "max_in_flight", 1, u32::MAX as u64) {
        request.max_in_flight = max as usize;
    }
}

/// Reads `sequence`: where a feed's sequence numbers are and what a gap leads to.
pub(super) fn read_sequence(
    reader: &mut Reader,
    value: &Value,
    path: &str,
) -> Option<SequenceSpec> {
    let table = reader.table(value, path, SEQUENCE_KEYS)?;
    let Some(field) = id_field(reader, &table, path, "field") else {
        if !table.map.contains_key("field") {
            reader.problem(
                table.origin.as_deref(),
                &join(path, "field"),
                "is required: the field or JSON pointer of the sequence number",
            );
        }
        return None;
    };
    let mut spec = SequenceSpec::new(field);
    if let Some(kinds) = reader.strings(&table, "kinds") {
        spec.kinds = kinds;
    }
    spec.scope = id_field(reader, &table, path, "scope");
    if let Some(on_gap) = reader.choice(&table, "on_gap", &["event", "reconnect", "resync"]) {
        spec.on_gap = match on_gap {
            "reconnect" => OnGap::Reconnect,
            "resync" => OnGap::Resync,
            _ => OnGap::Event,
        };
    }
    if let Some(resync) = reader.strings(&table, "resync") {
        spec.resync = resync;
    }
    if spec.on_gap == OnGap::Resync && spec.resync.is_empty() {
        reader.problem(
            table.origin.as_deref(),
            &join(path, "resync"),
            "on_gap = \"resync\" needs the messages to send (such as a snapshot request)",
        );
    }
    if let Some(drop) = reader.boolean(&table, "drop_duplicates") {
        spec.drop_duplicates = drop;
    }
    if let Some(across) = reader.boolean(&table, "across_reconnects") {
        spec.across_reconnects = across;
    }
    if let Some(interval) = reader.duration(&table, "event_interval") {
        spec.event_interval = interval;
    }
    if let Some(max) = reader.integer(&table, "max_scopes", 1, u32::MAX as u64) {
        spec.max_scopes = max as usize;
    }
    Some(spec)
}

/// A field name or a JSON pointer at `key`; an empty one is a problem there.
fn id_field(reader: &mut Reader, table: &Table<'_>, path: &str, key: &str) -> Option<String> {
    let field = reader.string(table, key)?;
    if field.is_empty() || field == "/" {
        reader.problem(
            table.map.get(key).and_then(origin_of).as_deref(),
            &join(path, key),
            "must name a field, or a JSON pointer such as \"/params/id\"",
        );
        return None;
    }
    Some(field)
}

/// Reads a table of codes (close codes or HTTP statuses, keyed `K`) to actions.
pub(super) fn read_actions<K: From<u16> + Ord>(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    range: std::ops::RangeInclusive<u16>,
    into: &mut std::collections::BTreeMap<K, Action>,
) {
    let Some(table) = reader.table(value, path, &[]) else {
        return;
    };
    let mut keys: Vec<&String> = table.map.keys().collect();
    keys.sort();
    for key in keys {
        let Some(entry) = table.map.get(key) else {
            continue;
        };
        let code = key.parse::<u16>().ok().filter(|code| range.contains(code));
        let Some(code) = code.map(K::from) else {
            reader.problem(
                origin_of(entry).as_deref(),
                &join(path, key),
                format!(
                    "{key:?} is not a code from {} to {}",
                    range.start(),
                    range.end()
                ),
            );
            continue;
        };
        if let Some(name) = reader.choice(&table, key, ACTIONS) {
            into.insert(code, action(name));
        }
    }
}

/// Reads the `on_tls` table (`certificate`, `transient`, `files`) to actions.
pub(super) fn read_tls_actions(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    into: &mut std::collections::BTreeMap<TlsClass, Action>,
) {
    let keys: Vec<&str> = TLS_CLASSES.iter().map(|(key, _)| *key).collect();
    let Some(table) = reader.table(value, path, &keys) else {
        return;
    };
    for (key, class) in TLS_CLASSES {
        if let Some(name) = reader.choice(&table, key, ACTIONS) {
            into.insert(*class, action(name));
        }
    }
}
