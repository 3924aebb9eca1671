//! Everything one supervised endpoint is configured with.

use std::fmt;
use std::time::Duration;

use wsherd_connection::{ConnectionConfig, InvalidConfig};
use wsherd_protocol::{Outbound, ReplyMatcher};

use crate::backoff::BackoffPolicy;
use crate::classify::ActionTable;
use crate::intensity::RestartIntensity;
use crate::queue::QueuePolicy;
use crate::requests::RequestPolicy;

/// Become `Live` only once a reply matching `matcher` arrived (a subscription acknowledgement);
/// no reply within `timeout` counts as a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAfter {
    /// The awaited reply.
    pub matcher: ReplyMatcher,
    /// How long to wait for it after the on-open messages were sent.
    pub timeout: Duration,
}

/// How fast an endpoint may send: what many feeds allow before they ban a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendRate {
    /// Messages per second, on average (at least 1).
    pub per_second: u32,
    /// Messages that may go at once after a quiet spell (at least 1).
    pub burst: u32,
}

/// How long an on-demand endpoint stays connected once nobody needs it, unless told otherwise.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);

/// When an endpoint connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConnectMode {
    /// From the start, and again after every end, by the reconnect policy.
    #[default]
    Always,
    /// Only while needed: `Idle` until a subscription names the endpoint (see
    /// `SubscribeOptions::endpoints`; a subscription without a filter names none) or a message
    /// is sent to it; then connected and supervised as always, until for `linger` nothing
    /// named it and nothing was queued: then closed gracefully (1000), `Idle` again.
    OnDemand {
        /// How long the endpoint stays up once it is no longer needed.
        linger: Duration,
    },
    /// An inbound session's: its sockets are accepted by a server, never dialed. When its
    /// client goes away the endpoint waits, `Disconnected`, for the same id to connect again
    /// within `resume_window`; what is sent meanwhile is queued (bounded by the queue policy)
    /// and goes out in order when it does. Past the window the session ends.
    Inbound {
        /// How long a disconnected session waits for its client.
        resume_window: Duration,
    },
}

impl ConnectMode {
    /// On demand, with `linger`.
    pub fn on_demand(linger: Duration) -> Self {
        ConnectMode::OnDemand { linger }
    }

    /// How long a disconnected inbound session waits for its client; `None` for an endpoint
    /// that dials.
    pub fn resume_window(&self) -> Option<Duration> {
        match self {
            ConnectMode::Inbound { resume_window } => Some(*resume_window),
            _ => None,
        }
    }

    /// The linger of an on-demand endpoint; `None` for one that always connects.
    pub fn linger(&self) -> Option<Duration> {
        match self {
            ConnectMode::Always | ConnectMode::Inbound { .. } => None,
            ConnectMode::OnDemand { linger } => Some(*linger),
        }
    }
}

/// A supervised endpoint's whole configuration.
///
/// `Debug` shows the connection as its own `Debug` does (URL redacted, header names only) and
/// how many on-open messages there are, never what they say: they often carry credentials.
#[derive(Clone)]
pub struct EndpointSpec {
    /// The socket: URL, headers, limits, heartbeat, kind rule.
    pub connection: ConnectionConfig,
    /// Reconnect delays.
    pub backoff: BackoffPolicy,
    /// Restart intensity.
    pub intensity: RestartIntensity,
    /// What each close code and handshake status leads to.
    pub actions: ActionTable,
    /// The outbound queue used while the socket is not live.
    pub queue: QueuePolicy,
    /// Sent, in order, after every open and before anything queued.
    pub on_open: Vec<Outbound>,
    /// On-open messages kept in files: `(index into on_open, file)`, read again before every
    /// open when the file changed.
    pub on_open_files: Vec<(usize, std::path::PathBuf)>,
    /// Optional gate before `Live`.
    pub live_after: Option<LiveAfter>,
    /// Always connected, or only while needed.
    pub connect: ConnectMode,
    /// How requests carry their ids and replies are recognised.
    pub request: RequestPolicy,
    /// Paces every message the endpoint writes (on-open ones included, in order, before
    /// queued ones); what waits for its turn waits in the outbound queue, under its bounds.
    pub send_rate: Option<SendRate>,
    /// A live socket is replaced after this long, make before break: a new one is opened and
    /// made live (on-open replay, live-after) before the old one is closed.
    pub max_lifetime: Option<Duration>,
}

impl EndpointSpec {
    /// Defaults around `connection`.
    pub fn new(connection: ConnectionConfig) -> Self {
        EndpointSpec {
            connection,
            backoff: BackoffPolicy::default(),
            intensity: RestartIntensity::default(),
            actions: ActionTable::default(),
            queue: QueuePolicy::default(),
            on_open: Vec::new(),
            on_open_files: Vec::new(),
            live_after: None,
            connect: ConnectMode::Always,
            request: RequestPolicy::default(),
            max_lifetime: None,
            send_rate: None,
        }
    }

    /// Checks the settings an endpoint cannot run with (see [`ConnectionConfig::validate`]); a
    /// herd checks every endpoint it adds.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        self.connection.validate()
    }

    /// Asks `hook` before every attempt for the URL and headers to connect with (a listen key
    /// or a short-lived token fetched first); see [`ConnectHook`](wsherd_connection::ConnectHook).
    pub fn on_connect(mut self, hook: wsherd_connection::ConnectHook) -> Self {
        self.connection.on_connect = Some(hook);
        self
    }

    /// Sets the heartbeat of the connection.
    pub fn heartbeat_spec(mut self, heartbeat: wsherd_protocol::HeartbeatSpec) -> Self {
        self.connection.heartbeat = heartbeat;
        self
    }

    /// Sets the backoff.
    pub fn backoff(mut self, backoff: BackoffPolicy) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the restart intensity.
    pub fn intensity(mut self, intensity: RestartIntensity) -> Self {
        self.intensity = intensity;
        self
    }

    /// Sets the action table.
    pub fn actions(mut self, actions: ActionTable) -> Self {
        self.actions = actions;
        self
    }

    /// Sets the queue policy.
    pub fn queue(mut self, queue: QueuePolicy) -> Self {
        self.queue = queue;
        self
    }

    /// Adds an on-open message.
    pub fn on_open(mut self, message: impl Into<Outbound>) -> Self {
        // Exactly as many as given: the list lives as long as the endpoint, and a first push
        // would keep room for four.
        self.on_open.reserve_exact(1);
        self.on_open.push(message.into());
        self
    }

    /// Connects only while needed, and stays up for `linger` once nobody needs it (see
    /// [`ConnectMode::OnDemand`]).
    pub fn on_demand(mut self, linger: Duration) -> Self {
        self.connect = ConnectMode::OnDemand { linger };
        self
    }

    /// Replaces each live socket after `lifetime`, make before break (see
    /// [`EndpointSpec::max_lifetime`](Self::max_lifetime)).
    pub fn rotate_after(mut self, lifetime: Duration) -> Self {
        self.max_lifetime = Some(lifetime);
        self
    }

    /// Sends at most `per_second` messages a second, in bursts of at most `burst` (see
    /// [`EndpointSpec::send_rate`](Self::send_rate)).
    pub fn pace(mut self, per_second: u32, burst: u32) -> Self {
        self.send_rate = Some(SendRate { per_second, burst });
        self
    }

    /// Sets how requests carry their ids and replies are recognised.
    pub fn request(mut self, request: RequestPolicy) -> Self {
        self.request = request;
        self
    }

    /// Sets the live-after gate.
    pub fn live_after(mut self, matcher: ReplyMatcher, timeout: Duration) -> Self {
        self.live_after = Some(LiveAfter { matcher, timeout });
        self
    }
}

impl fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("connection", &self.connection)
            .field("backoff", &self.backoff)
            .field("intensity", &self.intensity)
            .field("actions", &self.actions)
            .field("queue", &self.queue)
            .field(
                "on_open",
                &format_args!("{} message(s)", self.on_open.len()),
            )
            .field("live_after", &self.live_after)
            .field("connect", &self.connect)
            .field("request", &self.request)
            .field("max_lifetime", &self.max_lifetime)
            .field("send_rate", &self.send_rate)
            .finish()
    }
}

impl From<ConnectionConfig> for EndpointSpec {
    fn from(connection: ConnectionConfig) -> Self {
        EndpointSpec::new(connection)
    }
}

impl AsRef<ConnectionConfig> for EndpointSpec {
    fn as_ref(&self) -> &ConnectionConfig {
        &self.connection
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_counts_on_open_messages_without_showing_them() {
        let spec = EndpointSpec::new(ConnectionConfig::new("ws://h/?token=t0k3n"))
            .on_open(r#"{"op":"auth","key":"k3y"}"#);
        let shown = format!("{spec:?}");
        assert!(shown.contains("1 message(s)"), "{shown}");
        assert!(
            !shown.contains("k3y") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }
}
