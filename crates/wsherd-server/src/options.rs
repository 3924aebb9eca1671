//! What a server is told: the token, the Prometheus handle, and its limits.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use wsherd::config::{ServerSettings, Token};

/// How `/api/events` clients are bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Bytes of state lines waiting for one client (each counted with a 64-byte overhead); a
    /// client that lets more wait is cut. Stats lines do not count: at most one waits per
    /// endpoint, the newest. Default 1 MiB.
    pub buffer: usize,
    /// How long lines may wait for a client that takes none of them before it is cut.
    /// Default 10 s.
    pub stall_timeout: Duration,
    /// Event clients at once, over all workers; more are answered `503`. Default 64.
    pub max_clients: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            buffer: 1 << 20,
            stall_timeout: Duration::from_secs(10),
            max_clients: 64,
        }
    }
}

/// Counters every clone of one [`ServerOptions`] shares (so every worker adds to the same).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// `/api/events` clients connected now.
    pub(crate) event_clients: AtomicUsize,
    /// `/api/events` clients cut because they did not read.
    pub(crate) event_clients_cut: AtomicU64,
    /// Gateway sessions connected now.
    pub(crate) gateway_sessions: AtomicUsize,
    /// Frames the gateway dropped for clients that did not keep up (`drop_oldest`).
    pub(crate) gateway_dropped: AtomicU64,
    /// Gateway sessions closed as slow consumers (`disconnect`).
    pub(crate) gateway_slow_closed: AtomicU64,
}

/// The serving half's options: the token, the Prometheus handle `/metrics` renders, and the
/// limits that keep a hostile or broken client from costing more than a bounded amount.
///
/// `Debug` never shows the token.
#[derive(Clone)]
pub struct ServerOptions {
    pub(crate) token: Option<Token>,
    pub(crate) prometheus: Option<PrometheusHandle>,
    pub(crate) max_body: usize,
    pub(crate) events: EventLimits,
    pub(crate) metrics_cache: Duration,
    pub(crate) counters: Arc<Counters>,
    /// `auth = "hook"` inbound endpoints' hooks, by endpoint name.
    pub(crate) inbound_hooks: Arc<HashMap<String, InboundAuthHook>>,
    /// Whether `GET /` serves the dashboard.
    pub(crate) dashboard: bool,
    /// `[gateway]`, when served.
    pub(crate) gateway: Option<Arc<wsherd::config::GatewaySettings>>,
}

/// Decides who may open a session of an inbound endpoint with `auth = "hook"`: given the
/// upgrade request and the `{id}` of its path, the session id to use (often that `{id}`,
/// or one found from a credential), or a refusal.
pub type InboundAuthHook =
    Arc<dyn Fn(&actix_web::HttpRequest, &str) -> Result<String, Refusal> + Send + Sync>;

/// A client refused by an [`InboundAuthHook`]: the HTTP status and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub(crate) status: actix_web::http::StatusCode,
    pub(crate) reason: String,
}

impl Refusal {
    /// `401`: no credential, or a wrong one.
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Refusal {
            status: actix_web::http::StatusCode::UNAUTHORIZED,
            reason: reason.into(),
        }
    }

    /// `403`: a valid credential that may not open this session.
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Refusal {
            status: actix_web::http::StatusCode::FORBIDDEN,
            reason: reason.into(),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ServerOptions {
    /// No token (every route open), no Prometheus handle (`/metrics` shows only the herd-wide
    /// gauges), request bodies up to 4 KiB, [`EventLimits::default`], and `/metrics` rendered
    /// at most every 250 ms (scrapes in between share the text).
    pub fn new() -> Self {
        ServerOptions {
            token: None,
            prometheus: None,
            max_body: 4 << 10,
            events: EventLimits::default(),
            metrics_cache: Duration::from_millis(250),
            counters: Arc::default(),
            inbound_hooks: Arc::default(),
            dashboard: true,
            gateway: None,
        }
    }

    /// Serves the fan-out gateway `settings` describe (`[gateway]`) at its path. Its sessions
    /// and their relay belong to one server worker: [`serve`](crate::serve) runs one; an
    /// application that mounts [`routes`](crate::routes) in several workers gets a gateway in
    /// each, each with `max_sessions` of its own.
    pub fn gateway(mut self, settings: wsherd::config::GatewaySettings) -> Self {
        self.gateway = Some(Arc::new(settings));
        self
    }

    /// Whether `GET /` serves the dashboard (on by default). Turn it off when the
    /// application serves `/` itself.
    pub fn dashboard(mut self, on: bool) -> Self {
        self.dashboard = on;
        self
    }

    /// The options `[server]` describes: its token.
    pub fn from_settings(settings: &ServerSettings) -> Self {
        let options = Self::new();
        match &settings.token {
            Some(token) => options.token(token.clone()),
            None => options,
        }
    }

    /// Requires `Authorization: Bearer <token>` on `/metrics` and `/api/*` (and accepts a
    /// `token` query parameter on `/api/events`).
    pub fn token(mut self, token: Token) -> Self {
        self.token = Some(token);
        self
    }

    /// The recorder `/metrics` renders (see [`install_prometheus`](crate::install_prometheus));
    /// `None` leaves only the herd-wide gauges.
    pub fn prometheus(mut self, handle: impl Into<Option<PrometheusHandle>>) -> Self {
        self.prometheus = handle.into();
        self
    }

    /// The largest request body accepted (`413` beyond). Default 4 KiB.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// How `/api/events` clients are bounded.
    pub fn event_limits(mut self, limits: EventLimits) -> Self {
        self.events = limits;
        self
    }

    /// How long a rendered `/metrics` text is served again (at most); zero renders it for
    /// every scrape. Default 250 ms: a thousand scrapes at once cost one rendering.
    pub fn metrics_cache(mut self, age: Duration) -> Self {
        self.metrics_cache = age;
        self
    }

    /// Decides who may open sessions of inbound endpoint `inbound` (configured with
    /// `auth = "hook"`): see [`InboundAuthHook`]. Without one, such an endpoint refuses every
    /// client (`503`).
    pub fn inbound_auth(
        mut self,
        inbound: &str,
        hook: impl Fn(&actix_web::HttpRequest, &str) -> Result<String, Refusal> + Send + Sync + 'static,
    ) -> Self {
        Arc::make_mut(&mut self.inbound_hooks).insert(inbound.to_owned(), Arc::new(hook));
        self
    }

    /// Whether a token is required.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `/api/events` clients connected now, over every server these options (or their
    /// clones) serve.
    pub fn event_clients(&self) -> usize {
        self.counters
            .event_clients
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `/api/events` clients cut so far because they did not read what was sent.
    pub fn event_clients_cut(&self) -> u64 {
        self.counters
            .event_clients_cut
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field(
                "token",
                &self.token.as_ref().map(|_| wsherd::config::REDACTED),
            )
            .field("prometheus", &self.prometheus.is_some())
            .field("max_body", &self.max_body)
            .field("events", &self.events)
            .field("metrics_cache", &self.metrics_cache)
            .field(
                "inbound_hooks",
                &self.inbound_hooks.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}
