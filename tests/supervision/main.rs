//! The fault suite: supervised endpoints against servers and a proxy that drop, stall, refuse
//! and restart. Every test waits on events; none sleeps to let something happen, except where
//! the feature itself is about time passing (a TTL). One binary, one module per topic.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

#[path = "../common/mod.rs"]
mod common;

mod backoff;
mod backpressure;
mod control;
mod delivery;
mod governor;
mod heartbeat;
mod on_demand;
mod outage;
mod queue;
mod replay;
mod requests;
mod rotation;
mod sequences;

use std::time::{Duration, Instant};

pub(crate) use common::*;
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{
    ActionTable, BackoffPolicy, FailReason, GovernorPolicy, HeartbeatMode, HeartbeatSpec, Jitter,
    OverflowPolicy, QueueEvent, QueuePolicy, Rejected, ReplyMatcher, RestartIntensity, SendError,
};
use wsherd_testkit::{Behaviour, FaultProxy, ProxyMode, Recorder, Step, TestServer};

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Tick {
    pub(crate) seq: u64,
}
wsherd::inbound!(Tick => "tick");

pub(crate) fn fast_backoff() -> BackoffPolicy {
    BackoffPolicy {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(20),
        factor: 2.0,
        jitter: Jitter::None,
        reset_after: Duration::from_secs(5),
        max_attempts: 0,
    }
}

pub(crate) fn spec(url: String) -> EndpointSpec {
    EndpointSpec::new(ConnectionConfig::new(url)).backoff(fast_backoff())
}
