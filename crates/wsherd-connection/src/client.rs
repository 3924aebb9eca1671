//! One awc client per arbiter thread and TLS setting, rebuilt when the TLS files changed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::ClientConfig;

use crate::tls::{TlsFiles, client_config};
use crate::tls_cache;

/// awc's connector gives up on TCP connect on its own clock; ours is the handshake timeout, so
/// the connector's is set out of the way.
const CONNECTOR_TIMEOUT: Duration = Duration::from_secs(3600);

/// A client and the TLS configuration it was built on.
type Built = (Arc<ClientConfig>, awc::Client);

thread_local! {
    // `awc::Client` is `!Send`: one per arbiter thread (and TLS setting), shared by every
    // connection on it. A limit of 0 lifts awc's default cap of 100 connections per client.
    static CLIENTS: RefCell<HashMap<Option<TlsFiles>, Built>> = RefCell::new(HashMap::new());
}

/// The Web PKI configuration: built in memory, no file to watch.
fn default_config() -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    DEFAULT
        .get_or_init(|| client_config(None).map(Arc::new))
        .clone()
}

/// This thread's client for `tls` as its files are now: the TLS files are looked at (and read
/// again if they changed) on the blocking pool, then the client is built here if its
/// configuration is new.
pub(crate) async fn client(tls: Option<TlsFiles>) -> Result<awc::Client, String> {
    let config = match &tls {
        Some(files) => tls_cache::current(files.clone()).await?,
        None => default_config()?,
    };
    Ok(CLIENTS.with(|clients| {
        let mut clients = clients.borrow_mut();
        if let Some((built_on, client)) = clients.get(&tls)
            && Arc::ptr_eq(built_on, &config)
        {
            return client.clone();
        }
        let connector = awc::Connector::new()
            .rustls_0_23(Arc::clone(&config))
            .limit(0)
            .timeout(CONNECTOR_TIMEOUT);
        let client = awc::Client::builder()
            .disable_timeout()
            .connector(connector)
            .finish();
        // Sockets opened through the replaced client keep working: a WebSocket owns its
        // connection once upgraded.
        clients.insert(tls, (config, client.clone()));
        client
    }))
}
