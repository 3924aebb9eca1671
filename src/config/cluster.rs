//! `[cluster]`: one herd config served by several processes over NATS (`wsherd-cluster`).
//!
//! Read here, beside the rest of the file, so its errors name the key and the file as every
//! other table's do; the crate that speaks NATS only uses what this module checked.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use config::{Value, ValueKind};
use wsherd_protocol::redact_url;

use super::Token;
use super::read::{Reader, Table, join, origin_of, show};
use super::server::read_token;

/// Keys of `[cluster]`.
pub(crate) const CLUSTER_KEYS: &[&str] = &[
    "nats",
    "member",
    "lease",
    "token",
    "user",
    "password",
    "credentials",
    "tls",
    "subject_prefix",
    "on_cluster_loss",
];
/// Keys of `[cluster.tls]`.
pub(crate) const CLUSTER_TLS_KEYS: &[&str] = &["ca", "cert", "key"];

/// The lease when `lease` is not set.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5);
/// The shortest lease accepted: a member renews every third of it, and a renewal is a
/// JetStream round trip.
pub const MIN_LEASE: Duration = Duration::from_millis(300);
/// The subject prefix when `subject_prefix` is not set.
pub const DEFAULT_SUBJECT_PREFIX: &str = "wsherd";
/// The longest member name (it is part of keys, headers and status).
pub const MAX_MEMBER_NAME: usize = 128;

/// One NATS server address. `Debug` and `Display` hide its user, password and query.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsUrl(String);

impl NatsUrl {
    /// The address as written, credentials included: for the NATS client only. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NatsUrl({})", redact_url(&self.0))
    }
}

impl fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// How a member proves who it is to NATS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// Nothing beyond what the URL carries.
    #[default]
    None,
    /// `token`.
    Token(Token),
    /// `user` and `password`.
    UserPassword {
        /// The user name.
        user: String,
        /// Its password.
        password: Token,
    },
    /// `credentials`: a `.creds` file (a JWT and an nkey seed).
    Credentials(PathBuf),
}

/// `[cluster.tls]`: TLS to NATS. Present means TLS is required.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// PEM roots to trust for the server's certificate, beside the system's.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain (with `key`), when NATS asks for one.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// What a member does with its endpoints once NATS has been out of reach for most of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnClusterLoss {
    /// Close them before the lease could lapse, so that another member that still reaches NATS
    /// can take them without two members ever holding one endpoint (the default: at most one
    /// owner is what the cluster promises).
    #[default]
    Stop,
    /// Keep them open: the feeds go on when NATS is down for everyone, but a member cut off
    /// from NATS alone may hold an endpoint another member took (two connections to one
    /// upstream until NATS is back, when the one whose lease was taken closes it).
    Keep,
}

impl OnClusterLoss {
    /// The name the config uses.
    pub fn as_str(self) -> &'static str {
        match self {
            OnClusterLoss::Stop => "stop",
            OnClusterLoss::Keep => "keep",
        }
    }
}

/// `[cluster]` as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// NATS servers to connect to (any of them).
    pub nats: Vec<NatsUrl>,
    /// This process's name in the cluster; `None`: `<host name>-<process id>`.
    pub member: Option<String>,
    /// How long a member's silence lasts before others take its endpoints.
    pub lease: Duration,
    /// Credentials for NATS.
    pub auth: NatsAuth,
    /// TLS to NATS.
    pub tls: Option<NatsTls>,
    /// The first tokens of every subject, and (dots as underscores) of the buckets' names.
    pub subject_prefix: String,
    /// See [`OnClusterLoss`].
    pub on_cluster_loss: OnClusterLoss,
}

impl ClusterSettings {
    /// Settings for the NATS server at `url` (no credentials), every other key at its default.
    pub fn new(url: impl Into<String>) -> Self {
        ClusterSettings {
            nats: vec![NatsUrl(url.into())],
            member: None,
            lease: DEFAULT_LEASE,
            auth: NatsAuth::None,
            tls: None,
            subject_prefix: DEFAULT_SUBJECT_PREFIX.to_owned(),
            on_cluster_loss: OnClusterLoss::default(),
        }
    }
}

/// Whether `prefix` can begin every subject: dot-separated tokens of ASCII letters, digits,
/// `_` and `-`. The error says why not.
pub fn check_subject_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        return Err("is empty".to_owned());
    }
    for token in prefix.split('.') {
        if token.is_empty() {
            return Err(format!(
                "{prefix:?} has an empty token (two dots, or one at an end)"
            ));
        }
        if let Some(c) = token
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
        {
            return Err(format!(
                "{prefix:?} holds {c:?}: a prefix is dot-separated tokens of ASCII letters, digits, `_` and `-`"
            ));
        }
    }
    Ok(())
}

/// Whether `name` can name a member: 1 to [`MAX_MEMBER_NAME`] bytes, no whitespace or control
/// characters.
pub fn check_member_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".to_owned());
    }
    if name.len() > MAX_MEMBER_NAME {
        return Err(format!(
            "is {} bytes long; at most {MAX_MEMBER_NAME}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "holds {c:?}; whitespace and control characters are refused"
        ));
    }
    Ok(())
}

/// Reads `[cluster]`.
pub(crate) fn read_cluster(
    reader: &mut Reader,
    value: &Value,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Option<ClusterSettings> {
    let table = reader.table(value, "cluster", CLUSTER_KEYS)?;
    let mut settings = ClusterSettings::new(String::new());
    // Every other key is still checked when the addresses are wrong: all problems at once.
    let urls = read_urls(reader, &table);
    if let Some(member) = reader.string(&table, "member") {
        match check_member_name(&member) {
            Ok(()) => settings.member = Some(member),
            Err(why) => problem_at(reader, &table, "member", why),
        }
    }
    if let Some(lease) = reader.duration(&table, "lease") {
        if lease < MIN_LEASE {
            problem_at(
                reader,
                &table,
                "lease",
                format!("is {lease:?}; at least {MIN_LEASE:?} (a member renews every third of it)"),
            );
        } else {
            settings.lease = lease;
        }
    }
    if let Some(prefix) = reader.string(&table, "subject_prefix") {
        match check_subject_prefix(&prefix) {
            Ok(()) => settings.subject_prefix = prefix,
            Err(why) => problem_at(reader, &table, "subject_prefix", why),
        }
    }
    if let Some(choice) = reader.choice(&table, "on_cluster_loss", &["stop", "keep"]) {
        settings.on_cluster_loss = match choice {
            "keep" => OnClusterLoss::Keep,
            _ => OnClusterLoss::Stop,
        };
    }
    settings.auth = read_auth(reader, &table, lookup);
    if let Some(tls) = table.map.get("tls") {
        settings.tls = read_tls(reader, tls);
    }
    settings.nats = urls?;
    Some(settings)
}

fn problem_at(reader: &mut Reader, table: &Table<'_>, key: &str, why: impl Into<String>) {
    let origin = table.map.get(key).and_then(origin_of);
    reader.problem(origin.as_deref(), &join("cluster", key), why);
}

fn read_urls(reader: &mut Reader, table: &Table<'_>) -> Option<Vec<NatsUrl>> {
    let urls = match table.map.get("nats").map(|v| &v.kind) {
        None => {
            reader.problem(
                table.origin.as_deref(),
                "cluster.nats",
                "is required with [cluster]: the NATS server's address, such as \"nats://127.0.0.1:4222\", or a list of them",
            );
            return None;
        }
        Some(ValueKind::Array(_)) => reader.strings(table, "nats")?,
        Some(_) => vec![reader.string(table, "nats")?],
    };
    if urls.is_empty() {
        problem_at(
            reader,
            table,
            "nats",
            "is an empty list: name at least one server",
        );
        return None;
    }
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let scheme_ok = ["nats://", "tls://", "ws://", "wss://"]
            .iter()
            .any(|scheme| url.starts_with(scheme))
            || !url.contains("://");
        let host = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        if !scheme_ok || host.trim().is_empty() || url.chars().any(char::is_whitespace) {
            problem_at(
                reader,
                table,
                "nats",
                format!(
                    "{} is not a NATS address: expected nats://host:port (or tls://, or host:port)",
                    redact_url(&url)
                ),
            );
            continue;
        }
        out.push(NatsUrl(url));
    }
    (!out.is_empty()).then_some(out)
}

fn read_auth(
    reader: &mut Reader,
    table: &Table<'_>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> NatsAuth {
    let token = table
        .map
        .get("token")
        .and_then(|value| read_token(reader, value, "cluster.token", lookup));
    let user = reader.string(table, "user");
    let password = table
        .map
        .get("password")
        .and_then(|value| read_token(reader, value, "cluster.password", lookup));
    let credentials = reader.string(table, "credentials").map(PathBuf::from);
    let given: Vec<&str> = [
        ("token", table.map.contains_key("token")),
        ("user", table.map.contains_key("user")),
        ("credentials", table.map.contains_key("credentials")),
    ]
    .into_iter()
    .filter_map(|(key, set)| set.then_some(key))
    .collect();
    if given.len() > 1 {
        reader.problem(
            table.origin.as_deref(),
            "cluster",
            format!(
                "sets {}: NATS takes one way to authenticate (token, user and password, or credentials)",
                given.join(" and ")
            ),
        );
        return NatsAuth::None;
    }
    if table.map.contains_key("password") && !table.map.contains_key("user") {
        problem_at(reader, table, "password", "is set without cluster.user");
        return NatsAuth::None;
    }
    if let Some(path) = credentials {
        if let Err(error) = std::fs::metadata(&path) {
            problem_at(
                reader,
                table,
                "credentials",
                format!("{}: cannot be read: {error}", path.display()),
            );
            return NatsAuth::None;
        }
        return NatsAuth::Credentials(path);
    }
    if let Some(token) = token {
        return NatsAuth::Token(token);
    }
    match (user, password) {
        (Some(user), Some(password)) => NatsAuth::UserPassword { user, password },
        (Some(_), None) if !table.map.contains_key("password") => {
            problem_at(reader, table, "user", "is set without cluster.password");
            NatsAuth::None
        }
        _ => NatsAuth::None,
    }
}

fn read_tls(reader: &mut Reader, value: &Value) -> Option<NatsTls> {
    // `tls = true`: TLS with the system's roots.
    if let ValueKind::Boolean(on) = value.kind {
        return on.then(NatsTls::default);
    }
    if !matches!(value.kind, ValueKind::Table(_)) {
        reader.problem(
            origin_of(value).as_deref(),
            "cluster.tls",
            format!(
                "expected true or a table with ca, cert and key, found {}",
                show(value)
            ),
        );
        return None;
    }
    let table = reader.table(value, "cluster.tls", CLUSTER_TLS_KEYS)?;
    let mut tls = NatsTls::default();
    for key in CLUSTER_TLS_KEYS {
        let Some(path) = reader.string(&table, key).map(PathBuf::from) else {
            continue;
        };
        if let Err(error) = std::fs::metadata(&path) {
            let origin = table.map.get(*key).and_then(origin_of);
            reader.problem(
                origin.as_deref(),
                &join("cluster.tls", key),
                format!("{}: cannot be read: {error}", path.display()),
            );
            continue;
        }
        match *key {
            "ca" => tls.ca = Some(path),
            "cert" => tls.cert = Some(path),
            _ => tls.key = Some(path),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        reader.problem(
            table.origin.as_deref(),
            "cluster.tls",
            "cert and key go together: a client certificate needs its private key",
        );
    }
    Some(tls)
}
