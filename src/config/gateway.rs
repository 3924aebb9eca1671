//! `[gateway]`: the fan-out gateway `wsherd-server` serves, where local WebSocket clients
//! subscribe to the herd's messages by topic and send through allowed endpoints.

use super::read::{Reader, Table, join, origin_of};
use super::server::read_token;
use super::{EndpointName, Token};
use config::Value;

/// Keys of `[gateway]`.
pub(crate) const GATEWAY_KEYS: &[&str] = &[
    "path",
    "max_buffer",
    "overflow",
    "allow_send",
    "token",
    "allowed_origins",
    "max_sessions",
    "max_topics",
];

/// Bytes that may wait for one session by default.
pub const DEFAULT_GATEWAY_BUFFER: usize = 1 << 20;
/// Sessions the gateway holds at once by default.
pub const DEFAULT_GATEWAY_SESSIONS: usize = 1024;
/// Topics one session may hold by default.
pub const DEFAULT_GATEWAY_TOPICS: usize = 256;

/// What a session whose buffer is full gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayOverflow {
    /// The oldest frames waiting are dropped and counted; the client is told
    /// `{"op":"dropped","count":N}` once it has caught up.
    #[default]
    DropOldest,
    /// The session is closed with 1013 "slow consumer".
    Disconnect,
}

/// `[gateway]` as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct GatewaySettings {
    /// The path clients connect to, such as `/feed`.
    pub path: String,
    /// Bytes that may wait for one session (frames and their bookkeeping).
    pub max_buffer: usize,
    /// What a full session gets.
    pub overflow: GatewayOverflow,
    /// Endpoints clients may send to (`{"op":"send"}`).
    pub allow_send: Vec<EndpointName>,
    /// The token clients must give (`Authorization: Bearer` or `?token=`); none: anyone who
    /// reaches the server.
    pub token: Option<Token>,
    /// Origins a browser may connect from besides the server's own (`"*"`: any). A request
    /// without an `Origin` header is no browser's and is not checked.
    pub allowed_origins: Vec<String>,
    /// Sessions held at once; past it, `503`.
    pub max_sessions: usize,
    /// Topics one session may hold.
    pub max_topics: usize,
}

impl GatewaySettings {
    /// What makes these settings unusable, if anything: the path, or a limit of zero.
    pub fn problem(&self) -> Option<String> {
        if let Some(why) = path_problem(&self.path) {
            return Some(format!("gateway.path: {why}"));
        }
        if self.max_sessions == 0 || self.max_topics == 0 || self.max_buffer < 1024 {
            return Some(
                "gateway: max_sessions and max_topics are at least 1, max_buffer at least 1 KiB"
                    .to_owned(),
            );
        }
        None
    }

    /// A gateway at `path` with the defaults: 1 MiB per session, `drop_oldest`, no sends,
    /// no token, the server's own origin only, 1,024 sessions of 256 topics.
    pub fn new(path: impl Into<String>) -> Self {
        GatewaySettings {
            path: path.into(),
            max_buffer: DEFAULT_GATEWAY_BUFFER,
            overflow: GatewayOverflow::DropOldest,
            allow_send: Vec::new(),
            token: None,
            allowed_origins: Vec::new(),
            max_sessions: DEFAULT_GATEWAY_SESSIONS,
            max_topics: DEFAULT_GATEWAY_TOPICS,
        }
    }
}

impl std::fmt::Debug for GatewaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySettings")
            .field("path", &self.path)
            .field("max_buffer", &self.max_buffer)
            .field("overflow", &self.overflow)
            .field("allow_send", &self.allow_send)
            .field("token", &self.token.as_ref().map(|_| super::REDACTED))
            .field("allowed_origins", &self.allowed_origins)
            .field("max_sessions", &self.max_sessions)
            .field("max_topics", &self.max_topics)
            .finish()
    }
}

/// Reads `[gateway]`; `None`, with its problems noted, when it cannot be used.
pub(crate) fn read_gateway(
    reader: &mut Reader,
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<GatewaySettings> {
    let before = reader.problems.len();
    let table = reader.table(value, "gateway", GATEWAY_KEYS)?;
    let path = reader.string(&table, "path");
    match &path {
        Some(path) => {
            if let Some(why) = path_problem(path) {
                problem(reader, &table, "path", why);
            }
        }
        None if !table.map.contains_key("path") => reader.problem(
            table.origin.as_deref(),
            "gateway.path",
            "is required: the URL path clients connect to, such as \"/feed\"",
        ),
        None => {}
    }
    let mut settings = GatewaySettings::new(path.clone().unwrap_or_default());
    if let Some(size) = reader.size(&table, "max_buffer") {
        if size < 1024 {
            problem(reader, &table, "max_buffer", "is at least 1 KiB".to_owned());
        }
        settings.max_buffer = size;
    }
    if let Some(choice) = reader.choice(&table, "overflow", &["drop_oldest", "disconnect"]) {
        settings.overflow = match choice {
            "disconnect" => GatewayOverflow::Disconnect,
            _ => GatewayOverflow::DropOldest,
        };
    }
    if let Some(names) = reader.strings(&table, "allow_send") {
        for name in names {
            match EndpointName::new(&name) {
                Ok(name) => settings.allow_send.push(name),
                Err(error) => problem(reader, &table, "allow_send", error.to_string()),
            }
        }
    }
    if let Some(token) = table.map.get("token") {
        settings.token = read_token(reader, token, &join("gateway", "token"), lookup);
    }
    if let Some(origins) = reader.strings(&table, "allowed_origins") {
        for origin in &origins {
            if let Some(why) = origin_problem(origin) {
                problem(reader, &table, "allowed_origins", why);
            }
        }
        settings.allowed_origins = origins;
    }
    if let Some(max) = reader.integer(&table, "max_sessions", 1, 1 << 20) {
        settings.max_sessions = max as usize;
    }
    if let Some(max) = reader.integer(&table, "max_topics", 1, 1 << 16) {
        settings.max_topics = max as usize;
    }
    (reader.problems.len() == before && path.is_some()).then_some(settings)
}

fn problem(reader: &mut Reader, table: &Table<'_>, key: &str, why: String) {
    reader.problem(
        table.map.get(key).and_then(origin_of).as_deref(),
        &join("gateway", key),
        why,
    );
}

/// Why `origin` cannot be matched against a browser's `Origin` header, if it cannot: an origin
/// is `scheme://host` with an optional `:port` and nothing else, or `"*"`.
fn origin_problem(origin: &str) -> Option<String> {
    if origin == "*" {
        return None;
    }
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['/', '?', '#', ' ', '@']) => None,
        _ => Some(format!(
            "{origin:?} is no origin: \"https://app.example\" or \"http://127.0.0.1:8080\" (scheme, host, optional port, no path), or \"*\""
        )),
    }
}

/// Why `path` cannot be the gateway's path, if it cannot.
pub fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') || path.len() < 2 {
        return Some(format!(
            "{path:?} is no path: it starts with '/', such as \"/feed\""
        ));
    }
    if path.contains(['{', '}', '?', '#', ' ']) {
        return Some(format!("{path:?}: a plain path, without {{ }}, ? or #"));
    }
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if ["api", "healthz", "readyz", "metrics"].contains(&first) {
        return Some(format!(
            "{path:?} is under /{first}, which the server keeps"
        ));
    }
    None
}
