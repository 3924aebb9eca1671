//! What `Herd::status` reports.

use wsherd_connection::{EndReason, Phase, StatsSnapshot};
use wsherd_protocol::EndpointName;

/// One endpoint at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub name: EndpointName,
    /// Its URL.
    pub url: String,
    /// Where its socket is in its life.
    pub phase: Phase,
    /// Why its last socket life ended, if one has.
    pub last_end: Option<EndReason>,
    /// Its counters.
    pub stats: StatsSnapshot,
}
