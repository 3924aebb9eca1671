//! One endpoint's keys, read into an `EndpointSpec`.
//!
//! This file holds the catalogue of accepted keys and reads the endpoint table itself: the
//! connection keys, headers and TLS files. The nested tables that tune behaviour live apart:
//! [`liveness`] reads `heartbeat` and `live_after` (and checks every heartbeat duration,
//! `idle_timeout` included), [`policy`] reads `backoff`, `intensity`, `outbound`, `on_close`,
//! `on_status` and `on_tls`; [`secret`] resolves the values that may come from the environment
//! or a file (the URL, headers, on-open messages).

mod liveness;
mod policy;
pub(super) mod secret;

use config::Value;
use wsherd_connection::{
    ConnectionConfig, Decompress, DeflateOffer, FileSecret, InvalidUtf8Policy, ProxySetting,
    ProxyUrl, SecretSlot, TlsFiles, client_config, validate_url,
};
use wsherd_protocol::{KindRule, Outbound, redact_url};
use wsherd_supervisor::{ConnectMode, DEFAULT_LINGER, EndpointSpec};

use super::read::{Reader, join, origin_of};

pub(crate) const ENDPOINT_KEYS: &[&str] = &[
    "url",
    "headers",
    "subprotocols",
    "kind",
    "handshake_timeout",
    "connect_timeout",
    "proxy",
    "close_timeout",
    "max_stall",
    "write_timeout",
    "max_frame_size",
    "max_message_size",
    "write_buffer",
    "idle_timeout",
    "invalid_utf8",
    "decompress",
    "compression",
    "deflate",
    "on_open",
    "live_after",
    "enabled",
    "required",
    "connect",
    "linger",
    "max_lifetime",
    "heartbeat",
    "backoff",
    "intensity",
    "outbound",
    "request",
    "sequence",
    "on_close",
    "on_status",
    "on_tls",
    "tls",
];
pub(crate) const HEARTBEAT_KEYS: &[&str] = &[
    "mode",
    "interval",
    "timeout",
    "payload",
    "reply_kind",
    "reply_text",
];
pub(crate) const BACKOFF_KEYS: &[&str] = &[
    "initial",
    "max",
    "factor",
    "jitter",
    "reset_after",
    "max_attempts",
];
pub(crate) const INTENSITY_KEYS: &[&str] = &["max_restarts", "within"];
pub(crate) const OUTBOUND_KEYS: &[&str] = &["max_messages", "max_bytes", "overflow", "ttl", "rate"];
pub(crate) const RATE_KEYS: &[&str] = &["per_second", "burst"];
pub(crate) const REQUEST_KEYS: &[&str] = &[
    "id_field",
    "reply_id_field",
    "resend_on_reconnect",
    "route_replies",
    "max_in_flight",
];
pub(crate) const SEQUENCE_KEYS: &[&str] = &[
    "field",
    "kinds",
    "scope",
    "on_gap",
    "resync",
    "drop_duplicates",
    "across_reconnects",
    "event_interval",
    "max_scopes",
];
pub(crate) const LIVE_AFTER_KEYS: &[&str] = &["kind", "text", "timeout"];
pub(crate) const TLS_KEYS: &[&str] = &["ca_file", "client_cert", "client_key"];
pub(crate) const DEFLATE_KEYS: &[&str] = &[
    "no_context_takeover",
    "server_max_window_bits",
    "client_max_window_bits",
    "min_compress_size",
];

/// Reads endpoint `path`; returns `(enabled, required, spec)` and the resolved secrets (for
/// the fingerprint), or `None` when something was wrong (the reader has the problems).
pub(crate) fn read_endpoint(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<((bool, bool, EndpointSpec), String)> {
    let before = reader.problems.len();
    let table = reader.table(value, path, ENDPOINT_KEYS)?;
    let mut secrets = String::new();
    let url_path = join(path, "url");
    let url =
        match table.map.get("url") {
            Some(value) => secret::resolve(reader, value, &url_path, lookup, &mut secrets)
                .and_then(|url| match validate_url(&url) {
                    Ok(()) => Some(url),
                    Err(why) => {
                        // The URL may carry credentials: the problem shows it redacted.
                        let shown = redact_url(&url);
                        reader.problem(
                            origin_of(value).as_deref(),
                            &url_path,
                            format!("{shown:?} {why}"),
                        );
                        None
                    }
                }),
            None => {
                reader.problem(
                    table.origin.as_deref(),
                    &url_path,
                    "is required: the ws:// or wss:// URL to connect to",
                );
                None
            }
        };
    let mut connection = ConnectionConfig::new(url.unwrap_or_default());
    if let Some(file) = table.map.get("url").and_then(secret::file_of) {
        connection.file_secrets.push(FileSecret {
            slot: SecretSlot::Url,
            path: file,
        });
    }
    if let Some(headers) = table.map.get("headers") {
        read_headers(
            reader,
            headers,
            &join(path, "headers"),
            lookup,
            &mut connection,
            &mut secrets,
        );
    }
    if let Some(protocols) = reader.strings(&table, "subprotocols") {
        connection.subprotocols = protocols;
    }
    if let Some(kind) = reader.string(&table, "kind") {
        if kind.is_empty() {
            let origin = table.map.get("kind").and_then(origin_of);
            reader.problem(origin.as_deref(), &join(path, "kind"), "must not be empty");
        }
        connection.kind = KindRule::pointer(&kind);
    }
    if let Some(timeout) = reader.duration(&table, "handshake_timeout") {
        connection.handshake_timeout = timeout;
    }
    if let Some(timeout) = reader.duration(&table, "connect_timeout") {
        if timeout.is_zero() {
            let origin = table.map.get("connect_timeout").and_then(origin_of);
            reader.problem(
                origin.as_deref(),
                &join(path, "connect_timeout"),
                "must be more than \"0s\"",
            );
        }
        connection.connect_timeout = timeout;
    }
    if let Some(value) = table.map.get("proxy") {
        let proxy_path = join(path, "proxy");
        if let Some(text) = secret::resolve(reader, value, &proxy_path, lookup, &mut secrets) {
            match read_proxy(&text) {
                Ok(proxy) => connection.proxy = proxy.map(Box::new),
                Err(why) => reader.problem(origin_of(value).as_deref(), &proxy_path, why),
            }
        }
    }
    if let Some(stall) = reader.duration(&table, "max_stall") {
        connection.max_stall = stall;
    }
    if let Some(timeout) = reader.duration(&table, "write_timeout") {
        connection.write_timeout = timeout;
    }
    if let Some(timeout) = reader.duration(&table, "close_timeout") {
        connection.close_timeout = timeout;
    }
    if let Some(size) = reader.size(&table, "max_frame_size") {
        connection.max_frame_size = size;
    }
    if let Some(size) = reader.size(&table, "max_message_size") {
        connection.max_message_size = size;
    }
    if let Some(size) = reader.size(&table, "write_buffer") {
        connection.write_buffer = size;
    }
    if let Some(idle) = reader.duration(&table, "idle_timeout") {
        liveness::check_heartbeat_duration(reader, &table, "idle_timeout", idle);
        connection.heartbeat.idle_timeout = Some(idle);
    }
    if let Some(policy) = reader.choice(&table, "invalid_utf8", &["fail", "dead_letter"]) {
        connection.invalid_utf8 = match policy {
            "dead_letter" => InvalidUtf8Policy::DeadLetter,
            _ => InvalidUtf8Policy::Fail,
        };
    }
    if let Some(format) = reader.choice(
        &table,
        "decompress",
        &["none", "gzip", "deflate", "zlib", "zlib-stream"],
    ) {
        connection.decompress = match format {
            "gzip" => Some(Decompress::Gzip),
            "deflate" => Some(Decompress::Deflate),
            "zlib" => Some(Decompress::Zlib),
            "zlib-stream" => Some(Decompress::ZlibStream),
            _ => None,
        };
    }
    // `deflate` alone is no problem: `[defaults]` may tune it for the endpoints that turn
    // compression on.
    let mut offer = DeflateOffer::default();
    if let Some(deflate) = table.map.get("deflate")
        && let Some(deflate) = reader.table(deflate, &join(path, "deflate"), DEFLATE_KEYS)
    {
        if let Some(no_takeover) = reader.boolean(&deflate, "no_context_takeover") {
            offer.no_context_takeover = no_takeover;
        }
        offer.server_max_window_bits = reader
            .integer(&deflate, "server_max_window_bits", 8, 15)
            .map(|bits| bits as u8);
        offer.client_max_window_bits = reader
            .integer(&deflate, "client_max_window_bits", 8, 15)
            .map(|bits| bits as u8);
        if let Some(size) = reader.size(&deflate, "min_compress_size") {
            offer.min_compress_size = size;
        }
    }
    if let Some(mode) = reader.choice(&table, "compression", &["off", "deflate"]) {
        connection.compression = (mode == "deflate").then_some(offer);
    }
    if let Some(heartbeat) = table.map.get("heartbeat") {
        liveness::read_heartbeat(reader, heartbeat, &join(path, "heartbeat"), &mut connection);
    }
    if let Some(tls) = table.map.get("tls") {
        read_tls(reader, tls, &join(path, "tls"), &mut connection);
    }
    if let Some(sequence) = table.map.get("sequence") {
        connection.sequence =
            policy::read_sequence(reader, sequence, &join(path, "sequence")).map(Box::new);
    }
    let enabled = reader.boolean(&table, "enabled").unwrap_or(true);
    let required = reader.boolean(&table, "required").unwrap_or(false);
    let mut spec = EndpointSpec::new(connection);
    if let Some(messages) = table.map.get("on_open") {
        let path = join(path, "on_open");
        if let Some(resolved) = secret::resolve_list(reader, messages, &path, lookup, &mut secrets)
        {
            spec.on_open = resolved.into_iter().map(Outbound::Text).collect();
            if let config::ValueKind::Array(items) = &messages.kind {
                spec.on_open_files = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| secret::file_of(item).map(|file| (i, file)))
                    .collect();
            }
        }
    }
    if let Some(live) = table.map.get("live_after") {
        spec.live_after = liveness::read_live_after(reader, live, &join(path, "live_after"));
    }
    // `linger` alone is no problem: `[defaults]` may set it for the endpoints that connect on
    // demand, and it means nothing to the others.
    if let Some(lifetime) = reader.duration(&table, "max_lifetime") {
        if lifetime < std::time::Duration::from_secs(1) {
            let origin = table.map.get("max_lifetime").and_then(origin_of);
            reader.problem(
                origin.as_deref(),
                &join(path, "max_lifetime"),
                "must be at least \"1s\": each rotation opens a new socket",
            );
        } else {
            spec.max_lifetime = Some(lifetime);
        }
    }
    let linger = reader.duration(&table, "linger").unwrap_or(DEFAULT_LINGER);
    if let Some(connect) = reader.choice(&table, "connect", &["always", "on_demand"]) {
        spec.connect = match connect {
            "on_demand" => ConnectMode::OnDemand { linger },
            _ => ConnectMode::Always,
        };
    }
    if let Some(backoff) = table.map.get("backoff") {
        policy::read_backoff(reader, backoff, &join(path, "backoff"), &mut spec.backoff);
    }
    if let Some(intensity) = table.map.get("intensity") {
        policy::read_intensity(
            reader,
            intensity,
            &join(path, "intensity"),
            &mut spec.intensity,
        );
    }
    if let Some(outbound) = table.map.get("outbound") {
        policy::read_outbound(
            reader,
            outbound,
            &join(path, "outbound"),
            &mut spec.queue,
            &mut spec.send_rate,
        );
    }
    if let Some(request) = table.map.get("request") {
        policy::read_request(reader, request, &join(path, "request"), &mut spec.request);
    }
    if let Some(on_close) = table.map.get("on_close") {
        policy::read_actions(
            reader,
            on_close,
            &join(path, "on_close"),
            1000..=4999,
            &mut spec.actions.on_close,
        );
    }
    if let Some(on_status) = table.map.get("on_status") {
        policy::read_actions(
            reader,
            on_status,
            &join(path, "on_status"),
            100..=599,
            &mut spec.actions.on_status,
        );
    }
    if let Some(on_tls) = table.map.get("on_tls") {
        policy::read_tls_actions(
            reader,
            on_tls,
            &join(path, "on_tls"),
            &mut spec.actions.on_tls,
        );
    }
    (reader.problems.len() == before).then_some(((enabled, required, spec), secrets))
}

fn read_headers(
    reader: &mut Reader,
    headers: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    connection: &mut ConnectionConfig,
    secrets: &mut String,
) {
    let Some(table) = reader.table(headers, path, &[]) else {
        return;
    };
    let mut names: Vec<&String> = table.map.keys().collect();
    names.sort();
    for name in names {
        let Some(value) = table.map.get(name) else {
            continue;
        };
        let key = join(path, name);
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            || name.is_empty()
        {
            reader.problem(
                origin_of(value).as_deref(),
                &key,
                format!("{name:?} is not a valid HTTP header name"),
            );
            continue;
        }
        let resolved = secret::resolve(reader, value, &key, lookup, secrets);
        if let Some(resolved) = resolved {
            if resolved.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                reader.problem(
                    origin_of(value).as_deref(),
                    &key,
                    "the header value contains a line break or NUL",
                );
                continue;
            }
            connection.headers.push((name.clone(), resolved));
            if let Some(file) = secret::file_of(value) {
                connection.file_secrets.push(FileSecret {
                    slot: SecretSlot::Header(connection.headers.len() - 1),
                    path: file,
                });
            }
        }
    }
}

/// `"env"`, `"none"` or a proxy URL; the error never shows the URL's credentials.
fn read_proxy(text: &str) -> Result<Option<ProxySetting>, String> {
    match text.trim() {
        "env" => Ok(Some(ProxySetting::Environment)),
        "none" => Ok(None),
        url => ProxyUrl::parse(url)
            .map(|url| Some(ProxySetting::Url(url)))
            .map_err(|error| {
                format!(
                    "{}; expected \"env\", \"none\" or http://, socks5:// or socks5h://[user:pass@]host:port",
                    error
                )
            }),
    }
}

fn read_tls(reader: &mut Reader, value: &Value, path: &str, connection: &mut ConnectionConfig) {
    let Some(table) = reader.table(value, path, TLS_KEYS) else {
        return;
    };
    let files = TlsFiles {
        ca_file: reader.string(&table, "ca_file").map(Into::into),
        client_cert: reader.string(&table, "client_cert").map(Into::into),
        client_key: reader.string(&table, "client_key").map(Into::into),
    };
    // Load them now: a missing or broken file is a configuration error, not a runtime surprise.
    match client_config(Some(&files)) {
        Ok(_) => connection.tls = Some(files),
        Err(why) => reader.problem(table.origin.as_deref(), path, why),
    }
}
