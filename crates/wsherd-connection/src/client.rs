//! One awc client per arbiter thread and TLS setting.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{TlsFiles, client_config};

/// awc's connector gives up on TCP connect on its own clock; ours is the handshake timeout, so
/// the connector's is set out of the way.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(3600);

thread_local! {
    // `awc::Client` is `!Send`: one per arbiter thread (and TLS setting), shared by every
    // connection on it. A limit of 0 lifts awc's default cap of 100 connections per client.
    static CLIENTS: RefCell<HashMap<Option<TlsFiles>, awc::Client>> = RefCell::new(HashMap::new());
}

/// This thread's client for `tls`, built on first use.
pub(crate) fn client(tls: Option<&TlsFiles>) -> Result<awc::Client, String> {
    let key = tls.cloned();
    if let Some(client) = CLIENTS.with(|clients| clients.borrow().get(&key).cloned()) {
        return Ok(client);
    }
    let config = client_config(tls)?;
    let connector = awc::Connector::new()
        .rustls_0_23(Arc::new(config))
        .limit(0)
        .timeout(CONNECTOR_TIMEOUT);
    let client = awc::Client::builder()
        .disable_timeout()
        .connector(connector)
        .finish();
    CLIENTS.with(|clients| clients.borrow_mut().insert(key, client.clone()));
    Ok(client)
}
