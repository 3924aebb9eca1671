//! Herd configuration from files and the environment, validated before anything starts.
//!
//! See the README's configuration reference for every key. Files are TOML, YAML or JSON by
//! extension, layered in order; `WSHERD__…` environment variables override them
//! (`WSHERD__ENDPOINTS__BINANCE__URL`). `[defaults]` applies to every endpoint, merged key by
//! key under each `[endpoints.<name>]`.

mod cluster;
mod endpoint;
mod gateway;
mod inbound;
mod read;
mod server;
mod show;
mod units;

pub use cluster::{
    ClusterSettings, DEFAULT_LEASE, DEFAULT_SUBJECT_PREFIX, MAX_MEMBER_NAME, MIN_LEASE, NatsAuth,
    NatsTls, NatsUrl, OnClusterLoss, check_member_name, check_subject_prefix,
};
pub use gateway::{
    DEFAULT_GATEWAY_BUFFER, DEFAULT_GATEWAY_SESSIONS, DEFAULT_GATEWAY_TOPICS, GatewayOverflow,
    GatewaySettings, path_problem as gateway_path_problem,
};
pub use inbound::{
    DEFAULT_MAX_SESSIONS, DEFAULT_RESUME_WINDOW, InboundAuth, InboundConfig, OnDuplicate,
    inbound_keys, path_problem,
};
pub use server::{EmptyToken, ServerSettings, ServerTlsFiles, Token, TokenSource, check_tls_files};
pub use show::REDACTED;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use ::config::{Config, Environment, File, Value, ValueKind};
use wsherd_protocol::{EndpointName, Outbound};
use wsherd_supervisor::{EndpointSpec, GovernorPolicy, OutagePolicy};

use read::{Reader, join};

/// One thing wrong with a configuration: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or environment variable) the value came from.
    pub origin: String,
    /// The key path, such as `endpoints.binance.url`.
    pub key: String,
    /// What was expected and what was found.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.origin, self.message)
        } else {
            write!(f, "{}: {}: {}", self.origin, self.key, self.message)
        }
    }
}

/// A configuration was refused; every problem found is listed, not only the first.
///
/// `Debug` prints the same list as `Display`, so `main` returning it with `?` reads well.
#[derive(Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The problems, in key order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "{count} problem{} in the configuration:",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for ConfigError {}

/// Herd-wide settings (`[herd]`).
#[derive(Debug, Clone, PartialEq)]
pub struct HerdSettings {
    /// Arbiters (threads) the endpoints are spread over; default: the number of cores.
    pub workers: usize,
    /// Handshake cap and reconnect rate.
    pub governor: GovernorPolicy,
    /// How often the herd publishes its gauges and counters through the `metrics` facade
    /// (`metrics_interval`); `None` (the default, or `"0s"`): not at all, unless
    /// [`Herd::enable_metrics`](crate::Herd::enable_metrics) is called.
    pub metrics_interval: Option<std::time::Duration>,
    /// `[server]`: where the serving half listens (`wsherd-server`); no `listen`, no server.
    pub server: ServerSettings,
}

impl Default for HerdSettings {
    fn default() -> Self {
        HerdSettings {
            workers: std::thread::available_parallelism().map_or(1, usize::from),
            governor: GovernorPolicy::default(),
            metrics_interval: None,
            server: ServerSettings::default(),
        }
    }
}

/// One endpoint as configured. `Debug` shows the spec as its own `Debug` does (secrets
/// hidden), not the fingerprint, which is a digest of them.
#[derive(Clone)]
pub struct EndpointConfig {
    /// Whether it is started (`enabled = false` keeps it in the file but down).
    pub enabled: bool,
    /// Whether the herd is ready only while this endpoint is live (`/readyz`). Changing it
    /// alone never restarts the endpoint.
    pub required: bool,
    /// Everything the supervisor needs.
    pub spec: EndpointSpec,
    /// A digest of the resolved settings, secrets included, to tell whether a reload changed it.
    fingerprint: u64,
    /// A stable digest of the settings without secrets: what cluster members compare.
    shape: u64,
}

impl EndpointConfig {
    /// Wraps a programmatic spec.
    pub fn new(spec: EndpointSpec) -> Self {
        // `Debug` hides the URL's credentials, header values and on-open messages, so they are
        // added: a reload must still see that they changed.
        let c = &spec.connection;
        let mut material = format!("{spec:?}\0{}\0{:?}", c.url, c.headers);
        for message in &spec.on_open {
            match message {
                Outbound::Text(text) => material.push_str(text),
                Outbound::Binary(bytes) => material.push_str(&format!("{:?}", &bytes[..])),
            }
            material.push('\0');
        }
        let fingerprint = digest(&material);
        let shape = stable_digest(format!("{spec:?}").as_bytes());
        EndpointConfig {
            enabled: true,
            required: false,
            spec,
            fingerprint,
            shape,
        }
    }

    /// The same endpoint, with [`EndpointConfig::required`] set to `required`.
    pub fn required(mut self, required: bool) -> Self {
        self.required = required;
        self
    }

    /// The digest a reload compares.
    pub(crate) fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Whether `other` configures the same endpoint identically (a reload keeps its socket).
    pub fn same_as(&self, other: &EndpointConfig) -> bool {
        self.enabled == other.enabled && self.fingerprint == other.fingerprint
    }
}

impl fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("enabled", &self.enabled)
            .field("required", &self.required)
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// A whole, validated herd configuration.
#[derive(Debug, Clone, Default)]
pub struct HerdConfig {
    /// `[herd]`.
    pub settings: HerdSettings,
    /// `[endpoints.<name>]`, with `[defaults]` merged in.
    pub endpoints: BTreeMap<EndpointName, EndpointConfig>,
    /// `[inbound.<name>]`: endpoints clients connect in to (`[defaults]` does not apply).
    pub inbound: BTreeMap<EndpointName, InboundConfig>,
    /// `[gateway]`: local clients subscribe to the herd's messages by topic.
    pub gateway: Option<GatewaySettings>,
    /// `[cluster]`: this herd's endpoints are shared with other processes over NATS
    /// (`wsherd-cluster`).
    pub cluster: Option<ClusterSettings>,
}

impl HerdConfig {
    /// A digest of the outbound endpoints (names, whether enabled, every setting but secrets),
    /// the same on every machine and build: members of one cluster compare it and refuse to
    /// share endpoints configured differently. Secrets stay out because the digest is
    /// published to NATS, and a digest of a short secret could be searched for.
    pub fn shared_digest(&self) -> u64 {
        let mut material = Vec::new();
        for (name, endpoint) in &self.endpoints {
            material.extend_from_slice(name.as_str().as_bytes());
            material.push(0);
            material.push(u8::from(endpoint.enabled));
            material.extend_from_slice(&endpoint.shape.to_le_bytes());
        }
        stable_digest(&material)
    }

    /// Loads one file plus the process environment.
    pub fn from_file(path: impl AsRef<Path>) -> Result<HerdConfig, ConfigError> {
        ConfigLoader::new().file(path).load()
    }
}

/// Builds a [`HerdConfig`] from layered files and environment overrides.
#[derive(Debug, Clone, Default)]
pub struct ConfigLoader {
    files: Vec<PathBuf>,
    environment: Option<HashMap<String, String>>,
}

const TOP_KEYS: &[&str] = &[
    "herd",
    "server",
    "defaults",
    "endpoints",
    "inbound",
    "gateway",
    "cluster",
];
const HERD_KEYS: &[&str] = &[
    "workers",
    "max_concurrent_handshakes",
    "reconnects_per_second",
    "metrics_interval",
    "outage",
];
/// Keys of `[herd.outage]`.
const OUTAGE_KEYS: &[&str] = &["enabled", "min_endpoints", "window", "probe_interval"];

/// Every key an endpoint table (or `[defaults]`) accepts, nested ones dotted
/// (`backoff.initial`); tables whose keys are free-form (`headers`, `on_close`, `on_status`)
/// are listed by their own name.
pub fn endpoint_keys() -> Vec<String> {
    let nested: [(&str, &[&str]); 9] = [
        ("tls", endpoint::TLS_KEYS),
        ("deflate", endpoint::DEFLATE_KEYS),
        ("heartbeat", endpoint::HEARTBEAT_KEYS),
        ("backoff", endpoint::BACKOFF_KEYS),
        ("intensity", endpoint::INTENSITY_KEYS),
        ("outbound", endpoint::OUTBOUND_KEYS),
        ("request", endpoint::REQUEST_KEYS),
        ("sequence", endpoint::SEQUENCE_KEYS),
        ("live_after", endpoint::LIVE_AFTER_KEYS),
    ];
    let mut keys = Vec::new();
    for key in endpoint::ENDPOINT_KEYS {
        match nested.iter().find(|(table, _)| table == key) {
            Some((table, inner)) => {
                for k in inner.iter() {
                    if *table == "outbound" && *k == "rate" {
                        keys.extend(
                            endpoint::RATE_KEYS
                                .iter()
                                .map(|r| format!("outbound.rate.{r}")),
                        );
                    } else {
                        keys.push(format!("{table}.{k}"));
                    }
                }
            }
            None => keys.push((*key).to_owned()),
        }
    }
    keys
}

/// `[inbound.<name>]`, each table on its own; paths must differ.
fn read_inbound_tables(
    reader: &mut Reader,
    value: &Value,
    outbound: Option<&Value>,
    lookup: &dyn Fn(&str) -> Option<String>,
    config: &mut HerdConfig,
) {
    let Some(tables) = reader.table(value, "inbound", &[]) else {
        return;
    };
    let mut names: Vec<&String> = tables.map.keys().collect();
    names.sort();
    let mut paths: BTreeMap<String, String> = BTreeMap::new();
    for name in names {
        let path = join("inbound", name);
        let Some(value) = tables.map.get(name) else {
            continue;
        };
        let named = match EndpointName::new(name) {
            Ok(named) if named.session_id().is_none() => Some(named),
            Ok(_) => {
                reader.problem(
                    read::origin_of(value).as_deref(),
                    &path,
                    "':' is kept for the sessions of inbound endpoints (`<inbound>:<id>`)",
                );
                None
            }
            Err(error) => {
                reader.problem(read::origin_of(value).as_deref(), &path, error.why);
                None
            }
        };
        // Sessions are named after their inbound endpoint, and metrics are labelled by it.
        if let Some(ValueKind::Table(endpoints)) = outbound.map(|v| &v.kind)
            && endpoints.contains_key(name.as_str())
        {
            reader.problem(
                read::origin_of(value).as_deref(),
                &path,
                format!(
                    "endpoints.{name} has the same name: an inbound endpoint needs one of its own"
                ),
            );
        }
        let read = inbound::read_inbound(reader, value, &path, lookup);
        if let (Some(named), Some(inbound)) = (named, read) {
            if let Some(other) = paths.insert(inbound.path.clone(), name.clone()) {
                reader.problem(
                    read::origin_of(value).as_deref(),
                    &join(&path, "path"),
                    format!("inbound.{other} is served at {:?} already", inbound.path),
                );
                continue;
            }
            config.inbound.insert(named, inbound);
        }
    }
}

/// `[herd.outage]`: each key checked where it is, so an error names it and its file.
fn read_outage(reader: &mut Reader, table: &read::Table<'_>, outage: &mut OutagePolicy) {
    if let Some(enabled) = reader.boolean(table, "enabled") {
        outage.enabled = enabled;
    }
    if let Some(min) = reader.integer(table, "min_endpoints", 1, u32::MAX as u64) {
        outage.min_endpoints = min as usize;
    }
    if let Some(window) = reader.duration(table, "window") {
        if window.is_zero() {
            let origin = table.map.get("window").and_then(read::origin_of);
            reader.problem(
                origin.as_deref(),
                &join(&table.path, "window"),
                "expected a duration above zero (turn the outage mode off with `enabled = false`)",
            );
        } else {
            outage.window = window;
        }
    }
    if let Some(interval) = reader.duration(table, "probe_interval") {
        if interval.is_zero() {
            let origin = table.map.get("probe_interval").and_then(read::origin_of);
            reader.problem(
                origin.as_deref(),
                &join(&table.path, "probe_interval"),
                "expected a duration above zero",
            );
        } else {
            outage.probe_interval = interval;
        }
    }
}

/// Every key `[herd]` accepts, nested ones dotted (`outage.window`).
pub fn herd_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for key in HERD_KEYS {
        if *key == "outage" {
            keys.extend(OUTAGE_KEYS.iter().map(|k| format!("outage.{k}")));
        } else {
            keys.push((*key).to_owned());
        }
    }
    keys
}

/// Every key `[cluster]` accepts, nested ones dotted (`tls.ca`).
pub fn cluster_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for key in cluster::CLUSTER_KEYS {
        keys.push((*key).to_owned());
        if *key == "tls" {
            keys.extend(cluster::CLUSTER_TLS_KEYS.iter().map(|k| format!("tls.{k}")));
        }
    }
    keys
}

/// Every key of `[gateway]`.
pub fn gateway_keys() -> Vec<&'static str> {
    gateway::GATEWAY_KEYS.to_vec()
}

/// Every key `[server]` accepts, nested ones dotted (`tls.cert`).
pub fn server_keys() -> Vec<String> {
    let mut keys = Vec::new();
    for key in server::SERVER_KEYS {
        if *key == "tls" {
            keys.extend(server::SERVER_TLS_KEYS.iter().map(|k| format!("tls.{k}")));
        } else {
            keys.push((*key).to_owned());
        }
    }
    keys
}

impl ConfigLoader {
    /// No files yet; the process environment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file; later files override earlier ones key by key.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.files.push(path.as_ref().to_path_buf());
        self
    }

    /// Uses `variables` instead of the process environment, for overrides and `{ env = … }`
    /// secrets alike.
    pub fn environment(mut self, variables: HashMap<String, String>) -> Self {
        self.environment = Some(variables);
        self
    }

    /// Reads, merges and validates everything; reports every problem at once.
    pub fn load(&self) -> Result<HerdConfig, ConfigError> {
        let root = self.collect()?;
        let mut reader = Reader::new(&self.files);
        let config = self.interpret(&root, &mut reader);
        check_gateway(&config, &root, &mut reader);
        if reader.problems.is_empty() {
            Ok(config)
        } else {
            reader
                .problems
                .sort_by(|a, b| a.key.cmp(&b.key).then(a.message.cmp(&b.message)));
            Err(ConfigError {
                problems: reader.problems,
            })
        }
    }

    fn collect(&self) -> Result<Value, ConfigError> {
        let mut problems = Vec::new();
        let mut builder = Config::builder();
        for path in &self.files {
            let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(extension, "toml" | "yaml" | "yml" | "json") {
                problems.push(Problem {
                    origin: path.display().to_string(),
                    key: String::new(),
                    message: format!(
                        "unsupported file extension {extension:?}: use .toml, .yaml, .yml or .json"
                    ),
                });
                continue;
            }
            if !path.is_file() {
                problems.push(Problem {
                    origin: path.display().to_string(),
                    key: String::new(),
                    message: "no such file".to_owned(),
                });
                continue;
            }
            builder = builder.add_source(File::from(path.as_path()).required(true));
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let environment = Environment::with_prefix("WSHERD")
            .prefix_separator("__")
            .separator("__")
            .source(
                self.environment
                    .clone()
                    .map(|vars| vars.into_iter().collect()),
            );
        let built = builder
            .add_source(environment)
            .build()
            .map_err(|error| ConfigError {
                problems: vec![Problem {
                    origin: self
                        .files
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    key: String::new(),
                    message: without_quoted_source(&error.to_string()),
                }],
            })?;
        let table = ::config::Source::collect(&built).map_err(|error| ConfigError {
            problems: vec![Problem {
                origin: "configuration".to_owned(),
                key: String::new(),
                message: without_quoted_source(&error.to_string()),
            }],
        })?;
        Ok(Value::new(None, ValueKind::Table(table)))
    }

    fn interpret(&self, root: &Value, reader: &mut Reader) -> HerdConfig {
        let mut config = HerdConfig::default();
        let Some(top) = reader.table(root, "", TOP_KEYS) else {
            return config;
        };
        if let Some(herd) = top
            .map
            .get("herd")
            .and_then(|v| reader.table(v, "herd", HERD_KEYS))
        {
            if let Some(workers) = reader.integer(&herd, "workers", 1, 1024) {
                config.settings.workers = workers as usize;
            }
            if let Some(cap) =
                reader.integer(&herd, "max_concurrent_handshakes", 0, u32::MAX as u64)
            {
                config.settings.governor.max_concurrent_handshakes = cap as usize;
            }
            if let Some(rate) = reader.float(&herd, "reconnects_per_second", 0.0) {
                config.settings.governor.reconnects_per_second = rate;
            }
            if let Some(interval) = reader.duration(&herd, "metrics_interval") {
                config.settings.metrics_interval = (!interval.is_zero()).then_some(interval);
            }
            if let Some(outage) = herd
                .map
                .get("outage")
                .and_then(|v| reader.table(v, "herd.outage", OUTAGE_KEYS))
            {
                read_outage(reader, &outage, &mut config.settings.governor.outage);
            }
        }
        let lookup = |var: &str| match &self.environment {
            Some(vars) => vars.get(var).cloned(),
            None => std::env::var(var).ok(),
        };
        if let Some(server) = top.map.get("server") {
            server::read_server(reader, server, &lookup, &mut config.settings.server);
        }
        if let Some(gateway) = top.map.get("gateway") {
            config.gateway = gateway::read_gateway(reader, gateway, &lookup);
        }
        if let Some(cluster) = top.map.get("cluster") {
            config.cluster = cluster::read_cluster(reader, cluster, &lookup);
        }
        if let Some(inbound) = top.map.get("inbound") {
            read_inbound_tables(
                reader,
                inbound,
                top.map.get("endpoints"),
                &lookup,
                &mut config,
            );
        }
        let empty = Value::new(None, ValueKind::Table(Default::default()));
        let defaults = match top.map.get("defaults") {
            Some(defaults) => match reader.table(defaults, "defaults", endpoint::ENDPOINT_KEYS) {
                Some(_) => defaults.clone(),
                None => empty,
            },
            None => empty,
        };
        let Some(endpoints) = top.map.get("endpoints") else {
            return config;
        };
        let Some(endpoints) = reader.table(endpoints, "endpoints", &[]) else {
            return config;
        };
        let mut names: Vec<&String> = endpoints.map.keys().collect();
        names.sort();
        for name in names {
            let path = join("endpoints", name);
            let Some(value) = endpoints.map.get(name) else {
                continue;
            };
            // A bad name is one problem; the endpoint's settings are still checked.
            let endpoint_name = match EndpointName::new(name) {
                Ok(named) if named.session_id().is_some() => {
                    reader.problem(
                        read::origin_of(value).as_deref(),
                        &path,
                        "':' is kept for the sessions of inbound endpoints (`<inbound>:<id>`)",
                    );
                    Err(())
                }
                Ok(named) => Ok(named),
                Err(error) => {
                    reader.problem(read::origin_of(value).as_deref(), &path, error.why);
                    Err(())
                }
            };
            let merged = read::merge(&defaults, value);
            let mut scratch = reader.scratch();
            let read = endpoint::read_endpoint(&mut scratch, &merged, &path, &lookup);
            attribute_to_defaults(reader, scratch.problems, &path, value, &defaults);
            if let (Some((endpoint, secrets)), Ok(endpoint_name)) = (read, endpoint_name) {
                // Whether an endpoint is required changes what readiness means, not how it
                // connects: a reload must not restart it for that.
                let mut settings = merged.clone();
                read::remove_path(&mut settings, "required");
                // `linger` means nothing to an endpoint that always connects, and `connect =
                // "always"` is what no `connect` says: neither restarts one on a reload.
                if endpoint.2.connect == wsherd_supervisor::ConnectMode::Always {
                    read::remove_path(&mut settings, "linger");
                    read::remove_path(&mut settings, "connect");
                }
                let shown = canonical(&settings);
                let shape = stable_digest(shown.as_bytes());
                let fingerprint = digest(&(shown + &secrets));
                let (enabled, required, spec) = endpoint;
                config.endpoints.insert(
                    endpoint_name,
                    EndpointConfig {
                        enabled,
                        required,
                        spec,
                        fingerprint,
                        shape,
                    },
                );
            }
        }
        config
    }
}

/// What `[gateway]` names must exist: the endpoints it lets clients send to; and its path may
/// not be an inbound endpoint's.
fn check_gateway(config: &HerdConfig, root: &Value, reader: &mut Reader) {
    let Some(gateway) = &config.gateway else {
        return;
    };
    // Where the key was written, for the problem's file.
    let origin = |key: &str| {
        let ValueKind::Table(top) = &root.kind else {
            return None;
        };
        let ValueKind::Table(table) = &top.get("gateway")?.kind else {
            return None;
        };
        read::origin_of(table.get(key)?)
    };
    for name in &gateway.allow_send {
        if !config.endpoints.contains_key(name) {
            reader.problem(
                origin("allow_send").as_deref(),
                "gateway.allow_send",
                format!("names {name}, which is no [endpoints] table"),
            );
        }
    }
    for (name, inbound) in &config.inbound {
        if inbound.path == gateway.path {
            reader.problem(
                origin("path").as_deref(),
                "gateway.path",
                format!("{:?} is inbound endpoint {name}'s path", gateway.path),
            );
        }
    }
}

/// Reports an endpoint's problems; one about a value the endpoint inherited from
/// `[defaults]` (the endpoint does not set that key itself, `[defaults]` does) is reported once,
/// at `defaults.<key>` where the mistake is, however many endpoints inherit it. The merged
/// endpoint is what is checked, so a default that is only valid together with an endpoint's own
/// keys is accepted.
fn attribute_to_defaults(
    reader: &mut Reader,
    problems: Vec<Problem>,
    path: &str,
    own: &Value,
    defaults: &Value,
) {
    let prefix = format!("{path}.");
    for mut problem in problems {
        if let Some(relative) = problem.key.strip_prefix(&prefix)
            && !read::has_path(own, relative)
            && read::has_path(defaults, relative)
        {
            problem.key = format!("defaults.{relative}");
        }
        if !reader.problems.contains(&problem) {
            reader.problems.push(problem);
        }
    }
}

/// A parse error without the lines of the file it quotes (TOML's `3 | url = "…"` and the caret
/// under it): the line at fault may hold a secret. Line, column and what was wrong remain.
fn without_quoted_source(message: &str) -> String {
    let quoted = |line: &str| {
        line.trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start()
            .starts_with('|')
    };
    message
        .lines()
        .filter(|line| !quoted(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value with keys sorted and origins dropped, so equal settings print equally.
fn canonical(value: &Value) -> String {
    match &value.kind {
        ValueKind::Table(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .filter_map(|k| map.get(k).map(|v| format!("{k:?}={}", canonical(v))))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        ValueKind::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        ValueKind::String(text) => format!("{text:?}"),
        _ => value.to_string(),
    }
}

/// FNV-1a, 64 bits: unlike `DefaultHasher`, the same for every Rust version, so two builds
/// of one config agree.
fn stable_digest(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn digest(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}
