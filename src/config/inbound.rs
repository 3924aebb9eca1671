//! `[inbound.<name>]`: endpoints that clients connect *in* to, read into an [`InboundConfig`].
//!
//! An inbound table takes the keys of an outbound endpoint that mean something for a socket a
//! server accepted (the kind, limits, heartbeat, outbound queue, on-open messages, requests,
//! sequence numbers) plus its own: `path`, `auth`, `max_sessions`, `on_duplicate` and
//! `resume_window`. The shared keys are read by the endpoint reader itself, so they are
//! checked exactly as they are for outbound endpoints and their errors name the same keys.

use std::fmt;
use std::time::Duration;

use config::{Value, ValueKind};
use wsherd_supervisor::{ConnectMode, EndpointSpec};

use super::endpoint::read_endpoint;
use super::read::{Reader, join, origin_of};
use super::server::read_token;
use super::{REDACTED, Token};

/// The keys an inbound table shares with outbound endpoints.
const SHARED_KEYS: &[&str] = &[
    "kind",
    "close_timeout",
    "max_stall",
    "write_timeout",
    "max_frame_size",
    "max_message_size",
    "write_buffer",
    "idle_timeout",
    "invalid_utf8",
    "decompress",
    "on_open",
    "live_after",
    "enabled",
    "heartbeat",
    "outbound",
    "request",
    "sequence",
];

/// The keys only an inbound table has.
const OWN_KEYS: &[&str] = &[
    "path",
    "auth",
    "max_sessions",
    "on_duplicate",
    "resume_window",
];

/// Keys of `auth` when it is a table.
const AUTH_KEYS: &[&str] = &["token"];

/// Sessions an inbound endpoint holds by default (connected or in their resume window):
/// as many connections as `wsherd-server` holds for sessions, each of which takes two of a
/// process's open files (its socket and the duplicate that can cut it).
pub const DEFAULT_MAX_SESSIONS: usize = 8_192;

/// How long a disconnected session waits for its client by default.
pub const DEFAULT_RESUME_WINDOW: Duration = Duration::from_secs(60);

/// Every key an inbound table accepts.
pub fn inbound_keys() -> Vec<&'static str> {
    OWN_KEYS.iter().chain(SHARED_KEYS).copied().collect()
}

/// Who may open a session.
#[derive(Clone, PartialEq, Eq)]
pub enum InboundAuth {
    /// `auth = "none"`: anyone who reaches the server.
    None,
    /// `auth = { token = … }`: `Authorization: Bearer <token>` or `?token=<token>`,
    /// compared in constant time.
    Token(Token),
    /// `auth = "hook"`: a Rust hook given to the server maps each request to a session id
    /// or a refusal (`wsherd_server::ServerOptions::inbound_auth`).
    Hook,
}

impl fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InboundAuth::None => f.write_str("None"),
            InboundAuth::Token(_) => write!(f, "Token({REDACTED})"),
            InboundAuth::Hook => f.write_str("Hook"),
        }
    }
}

/// What a second client with the id of a connected session gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDuplicate {
    /// It takes over; the first is closed with 1008 "replaced" (the default: a device that
    /// lost its network comes back before its old socket is found dead).
    #[default]
    Replace,
    /// It is refused (`409`); the first stays.
    Refuse,
}

/// One inbound endpoint as configured.
#[derive(Debug, Clone)]
pub struct InboundConfig {
    /// Whether it is served (`enabled = false` keeps it in the file but refuses its clients).
    pub enabled: bool,
    /// The URL path clients connect to, with one `{id}` segment: `/ws/devices/{id}`.
    pub path: String,
    /// Who may open a session.
    pub auth: InboundAuth,
    /// Sessions held at most, connected or within their resume window; a client past it
    /// is refused with `503`.
    pub max_sessions: usize,
    /// What a second client with a connected session's id gets.
    pub on_duplicate: OnDuplicate,
    /// What each session runs with (its `connect` is `ConnectMode::Inbound`, carrying the
    /// resume window).
    pub spec: EndpointSpec,
}

impl InboundConfig {
    /// An inbound endpoint at `path` with `auth`, the defaults for the rest, and `spec`'s
    /// settings for its sessions (whose URL is not used).
    pub fn new(path: impl Into<String>, auth: InboundAuth, mut spec: EndpointSpec) -> Self {
        spec.connect = ConnectMode::Inbound {
            resume_window: DEFAULT_RESUME_WINDOW,
        };
        InboundConfig {
            enabled: true,
            path: path.into(),
            auth,
            max_sessions: DEFAULT_MAX_SESSIONS,
            on_duplicate: OnDuplicate::Replace,
            spec,
        }
    }

    /// Whether `other` configures the same inbound endpoint: path, auth, limits and every
    /// setting its sessions run with.
    pub fn same_as(&self, other: &InboundConfig) -> bool {
        self.enabled == other.enabled
            && self.path == other.path
            && self.auth == other.auth
            && self.max_sessions == other.max_sessions
            && self.on_duplicate == other.on_duplicate
            && super::EndpointConfig::new(self.spec.clone())
                .same_as(&super::EndpointConfig::new(other.spec.clone()))
    }

    /// The resume window its sessions keep.
    pub fn resume_window(&self) -> Duration {
        self.spec
            .connect
            .resume_window()
            .unwrap_or(DEFAULT_RESUME_WINDOW)
    }
}

/// Why `path` cannot be an inbound endpoint's path.
pub fn path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return Some(format!("expected a path starting with '/', found {path:?}"));
    }
    if path.contains(['?', '#', '%', ' ']) {
        return Some(format!(
            "a path holds no '?', '#', '%' or spaces, found {path:?}"
        ));
    }
    let ids = path.split('/').filter(|segment| *segment == "{id}").count();
    if ids != 1 || path.matches('{').count() != 1 || path.matches('}').count() != 1 {
        return Some(format!(
            "expected exactly one whole `{{id}}` segment, such as \"/ws/devices/{{id}}\", found {path:?}"
        ));
    }
    if path.split('/').nth(1) == Some("{id}") {
        return Some(format!(
            "the first segment cannot be `{{id}}` (it would match /api, /healthz, /metrics): put it under a fixed segment, such as \"/ws/{{id}}\", found {path:?}"
        ));
    }
    for reserved in ["/api", "/healthz", "/readyz", "/metrics"] {
        if path == reserved || path.starts_with(&format!("{reserved}/")) {
            return Some(format!(
                "{reserved} is the server's own (status, health, metrics); choose another path"
            ));
        }
    }
    None
}

/// Reads inbound endpoint `path` (`inbound.<name>`); `None` when something was wrong (the
/// reader has the problems).
pub(crate) fn read_inbound(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<InboundConfig> {
    let before = reader.problems.len();
    let known = inbound_keys();
    let table = reader.table(value, path, &known)?;
    let url_path = table
        .map
        .get("path")
        .and_then(|_| reader.string(&table, "path"));
    match &url_path {
        Some(url_path) => {
            if let Some(why) = path_problem(url_path) {
                reader.problem(
                    table.map.get("path").and_then(origin_of).as_deref(),
                    &join(path, "path"),
                    why,
                );
            }
        }
        None if !table.map.contains_key("path") => reader.problem(
            table.origin.as_deref(),
            &join(path, "path"),
            "is required: the URL path clients connect to, such as \"/ws/devices/{id}\"",
        ),
        None => {}
    }
    let auth = match table.map.get("auth") {
        None => {
            reader.problem(
                table.origin.as_deref(),
                &join(path, "auth"),
                "is required: { token = … } (a string, { env = \"VARIABLE\" } or { file = \"PATH\" }), \"hook\", or \"none\" to let anyone in",
            );
            None
        }
        Some(auth) => read_auth(reader, auth, &join(path, "auth"), lookup),
    };
    let max_sessions = reader
        .integer(&table, "max_sessions", 1, 1 << 24)
        .map_or(DEFAULT_MAX_SESSIONS, |max| max as usize);
    let on_duplicate = match reader.choice(&table, "on_duplicate", &["replace", "refuse"]) {
        Some("refuse") => OnDuplicate::Refuse,
        _ => OnDuplicate::Replace,
    };
    let resume_window = reader
        .duration(&table, "resume_window")
        .unwrap_or(DEFAULT_RESUME_WINDOW);
    let enabled = reader.boolean(&table, "enabled").unwrap_or(true);
    // The shared keys are the endpoint reader's: it is given them alone, with a URL it
    // needs and an inbound session never uses (its socket is accepted, not dialed).
    let mut shared = value.clone();
    if let ValueKind::Table(map) = &mut shared.kind {
        map.retain(|key, _| SHARED_KEYS.contains(&key.as_str()));
        map.insert(
            "url".to_owned(),
            Value::new(None, ValueKind::String("ws://127.0.0.1/inbound".to_owned())),
        );
    }
    let read = read_endpoint(reader, &shared, path, lookup);
    if reader.problems.len() > before {
        return None;
    }
    let ((_, _, mut spec), _) = read?;
    spec.connect = ConnectMode::Inbound { resume_window };
    Some(InboundConfig {
        enabled,
        path: url_path?,
        auth: auth?,
        max_sessions,
        on_duplicate,
        spec,
    })
}

fn read_auth(
    reader: &mut Reader,
    value: &Value,
    path: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<InboundAuth> {
    if let ValueKind::String(text) = &value.kind {
        return match text.as_str() {
            "none" => Some(InboundAuth::None),
            "hook" => Some(InboundAuth::Hook),
            _ => {
                // A token written here by mistake is never shown back.
                reader.problem(
                    origin_of(value).as_deref(),
                    path,
                    format!(
                        "expected \"none\", \"hook\" or {{ token = … }}, found another string ({REDACTED})"
                    ),
                );
                None
            }
        };
    }
    let table = reader.table(value, path, AUTH_KEYS)?;
    let Some(token) = table.map.get("token") else {
        reader.problem(
            table.origin.as_deref(),
            &join(path, "token"),
            "is required in an auth table: a string, { env = \"VARIABLE\" } or { file = \"PATH\" }",
        );
        return None;
    };
    read_token(reader, token, &join(path, "token"), lookup).map(InboundAuth::Token)
}
