//! The server on its own: what `wsherd run --listen` starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpServer, web};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use wsherd::Herd;
use wsherd::config::{ServerSettings, ServerTlsFiles};

use crate::{ServerOptions, errors, routes};

/// Connections the server holds at once; more wait in the listen backlog. Open files are
/// capped per process (20,000 on the project's machines) and a herd's sockets need theirs.
pub const MAX_CONNECTIONS: usize = 1024;

/// Connections beyond [`MAX_CONNECTIONS`] the server holds for inbound sessions: the sum of
/// the inbound endpoints' `max_sessions`, at most this. Each session holds two open files (its
/// socket and the duplicate that can cut it), and the process's cap is shared with the herd's
/// outbound sockets.
pub const MAX_INBOUND_CONNECTIONS: usize = 8192;

/// Why [`serve`] did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// `listen` is not set.
    #[error("no address to listen on: set server.listen (or pass --listen)")]
    NoListen,
    /// A non-loopback address without a token or `allow_unauthenticated`.
    #[error("{0}")]
    Exposed(String),
    /// The certificate or key cannot be used.
    #[error("server TLS: {0}")]
    Tls(String),
    /// The address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The gateway's settings cannot be used.
    #[error("{0}")]
    Gateway(String),
    /// An inbound endpoint has `auth = "hook"` and `options` holds no hook for it.
    #[error(
        "inbound endpoint {0} has auth = \"hook\" and no hook was given (ServerOptions::inbound_auth); a config run by `wsherd run` needs auth = {{ token = … }} or \"none\""
    )]
    MissingHook(String),
}

/// A running server: where it listens, and how to stop it.
#[derive(Debug)]
pub struct RunningServer {
    addrs: Vec<SocketAddr>,
    tls: bool,
    handle: ServerHandle,
}

impl RunningServer {
    /// The addresses it is bound to (the port chosen when `listen` said port 0).
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its base URL, `http://127.0.0.1:9090` or `https://…`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.addrs.first() {
            Some(addr) => format!("{scheme}://{addr}"),
            None => format!("{scheme}://"),
        }
    }

    /// Stops it: open connections get up to 2 s to finish when `graceful`, none otherwise.
    pub async fn stop(&self, graceful: bool) {
        self.handle.stop(graceful).await;
    }
}

/// Serves [`routes`] for `herd` on `settings.listen` (HTTPS with `settings.tls`), with a JSON
/// `404` for any other path, on one worker of its own, its connections remembered for
/// [`on_connect`](crate::on_connect)'s cut. The token is `options`' if it has one, else
/// `settings`'; without either, only a loopback address is served unless
/// `settings.allow_unauthenticated`. Must be called inside a running actix system; the server
/// runs until [`RunningServer::stop`] or the end of the system. Logs each request at `debug`
/// (method, path, status; never the query or a header).
pub fn serve(
    herd: Herd,
    settings: &ServerSettings,
    options: ServerOptions,
) -> Result<RunningServer, ServeError> {
    let listen = settings.listen.ok_or(ServeError::NoListen)?;
    let options = match (&options.token, &settings.token) {
        (None, Some(token)) => options.token(token.clone()),
        _ => options,
    };
    if !options.has_token() {
        settings
            .check_exposure(listen)
            .map_err(ServeError::Exposed)?;
    }
    let tls = settings
        .tls
        .as_ref()
        .map(tls_config)
        .transpose()
        .map_err(ServeError::Tls)?;
    if let Some(why) = options
        .gateway
        .as_ref()
        .and_then(|gateway| gateway.problem())
    {
        return Err(ServeError::Gateway(why));
    }
    if let Some(inbound) = herd.inbound_endpoints().iter().find(|inbound| {
        inbound.enabled()
            && *inbound.auth() == wsherd::config::InboundAuth::Hook
            && !options.inbound_hooks.contains_key(inbound.name().as_str())
    }) {
        return Err(ServeError::MissingHook(inbound.name().to_string()));
    }
    let sessions: usize = herd
        .inbound_endpoints()
        .iter()
        .filter(|inbound| inbound.enabled())
        .map(|inbound| inbound.max_sessions())
        .fold(0, usize::saturating_add);
    if sessions > MAX_INBOUND_CONNECTIONS {
        tracing::warn!(
            "the inbound endpoints' max_sessions add up to {sessions}; the server holds {MAX_INBOUND_CONNECTIONS} sessions' connections, and more wait in the listen backlog"
        );
    }
    let gateway = options.gateway.as_ref().map_or(0, |g| g.max_sessions);
    let max_connections = MAX_CONNECTIONS
        + sessions
            .saturating_add(gateway)
            .min(MAX_INBOUND_CONNECTIONS);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(log_request))
            .configure(routes(herd.clone(), options.clone()))
            .default_service(web::to(errors::not_found))
    })
    .workers(1)
    .max_connections(max_connections)
    .backlog(1024)
    .disable_signals()
    .shutdown_timeout(2)
    .client_disconnect_timeout(Duration::from_secs(1))
    .on_connect(crate::on_connect);
    let is_tls = tls.is_some();
    let bound = match tls {
        Some(config) => server.bind_rustls_0_23(listen, config),
        None => server.bind(listen),
    }
    .map_err(|source| ServeError::Bind {
        addr: listen,
        source,
    })?;
    let addrs = bound.addrs();
    let running = bound.run();
    let handle = running.handle();
    actix_rt::spawn(running);
    tracing::info!(
        "serving /healthz, /readyz, /metrics, /api on {}",
        addrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(RunningServer {
        addrs,
        tls: is_tls,
        handle,
    })
}

/// The rustls configuration (ring provider) presenting `files`' certificate; ALPN offers
/// `http/1.1` only. Reads the files.
pub fn tls_config(files: &ServerTlsFiles) -> Result<rustls::ServerConfig, String> {
    wsherd::config::check_tls_files(files)?;
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| {
            format!(
                "{} and {} do not fit together: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One `debug` line per request: method, path (never the query: it may hold a token), status.
async fn log_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let path = errors::shown(req.path());
    let response = next.call(req).await?;
    tracing::debug!("{method} {path} -> {}", response.status().as_u16());
    Ok(response)
}
