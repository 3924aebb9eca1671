//! One awc client per arbiter thread.

use std::time::Duration;

/// awc's connector gives up on TCP connect on its own clock; ours is the handshake timeout, so
/// the connector's is set out of the way.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(3600);

thread_local! {
    // `awc::Client` is `!Send`: one per arbiter thread, shared by every connection on it. A
    // limit of 0 lifts awc's default cap of 100 connections per client.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_timeout()
        .connector(awc::Connector::new().limit(0).timeout(CONNECTOR_TIMEOUT))
        .finish();
}

/// This thread's client.
pub(crate) fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}
