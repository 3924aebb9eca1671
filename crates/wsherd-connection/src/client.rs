//! One awc client per arbiter thread, whose connector is wsherd's dial.

use std::time::Duration;

use crate::dial::Dialer;

/// awc's connector gives up on the TCP stage on its own clock; the dial keeps its own
/// (`connect_timeout` per address, the handshake timeout for the whole attempt), so awc's is
/// set out of the way.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(3600);

thread_local! {
    // `awc::Client` is `!Send`: one per arbiter thread, shared by every connection on it
    // (what differs between endpoints travels in each attempt's dial). A limit of 0 lifts
    // awc's default cap of 100 connections per client.
    static CLIENT: awc::Client = awc::Client::builder()
        .disable_timeout()
        .connector(
            awc::Connector::new()
                .connector(Dialer)
                .limit(0)
                .timeout(CONNECTOR_TIMEOUT),
        )
        .finish();
}

/// This thread's client.
pub(crate) fn client() -> awc::Client {
    CLIENT.with(Clone::clone)
}
