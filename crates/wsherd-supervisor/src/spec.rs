//! Everything one supervised endpoint is configured with.

use std::time::Duration;

use wsherd_connection::ConnectionConfig;
use wsherd_protocol::{Outbound, ReplyMatcher};

use crate::backoff::BackoffPolicy;
use crate::classify::ActionTable;
use crate::intensity::RestartIntensity;
use crate::queue::QueuePolicy;

/// Become `Live` only once a reply matching `matcher` arrived (a subscription acknowledgement);
/// no reply within `timeout` counts as a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveAfter {
    /// The awaited reply.
    pub matcher: ReplyMatcher,
    /// How long to wait for it after the on-open messages were sent.
    pub timeout: Duration,
}

/// A supervised endpoint's whole configuration.
#[derive(Debug, Clone)]
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
    /// Optional gate before `Live`.
    pub live_after: Option<LiveAfter>,
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
            live_after: None,
        }
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
        self.on_open.push(message.into());
        self
    }

    /// Sets the live-after gate.
    pub fn live_after(mut self, matcher: ReplyMatcher, timeout: Duration) -> Self {
        self.live_after = Some(LiveAfter { matcher, timeout });
        self
    }
}

impl From<ConnectionConfig> for EndpointSpec {
    fn from(connection: ConnectionConfig) -> Self {
        EndpointSpec::new(connection)
    }
}
