//! A real WebSocket server on 127.0.0.1 that runs scripts per connection.
//!
//! This file holds the server: its builder, the handle tests keep, and the upgrade that
//! records each connection and hands it to a [`session::ScriptedSocket`], which runs the
//! script on that one connection.

mod session;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_web_actors::ws;

use crate::log::{ConnectionLog, Received, ServerLog, summarize};
use crate::script::{Behaviour, Script};
use crate::watch::WaitTimeout;
use session::ScriptedSocket;

/// Decides what each connection does, given its index on the server (from 0).
pub type BehaviourFn = dyn Fn(usize) -> Behaviour + Send + Sync;

/// The largest frame the server accepts from a client.
const SERVER_MAX_FRAME: usize = 64 * 1024 * 1024;

/// Configures and starts a [`TestServer`].
pub struct TestServerBuilder {
    behaviour: Arc<BehaviourFn>,
    protocols: Vec<String>,
    port: u16,
    tls: Option<rustls::ServerConfig>,
    handshake_delay: Duration,
}

impl TestServerBuilder {
    /// Subprotocols the server is willing to speak (it picks the first the client offers).
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Holds every upgrade this long before answering it, so that concurrent handshakes pile
    /// up where [`TestServer::peak_handshakes`] can count them.
    pub fn handshake_delay(mut self, delay: Duration) -> Self {
        self.handshake_delay = delay;
        self
    }

    /// Bind this port on 127.0.0.1 instead of a free one (to restart a server in place).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Serves `wss://` with this rustls configuration (see `TestCerts::server_config`).
    pub fn tls(mut self, config: rustls::ServerConfig) -> Self {
        self.tls = Some(config);
        self
    }

    /// Binds and starts the server on its own thread and actix system.
    pub fn start(self) -> io::Result<TestServer> {
        let log = Arc::new(ServerLog::new(Vec::new()));
        let handshakes = Arc::new(Handshakes::default());
        let shared = Arc::new(Shared {
            behaviour: self.behaviour,
            protocols: self.protocols,
            log: Arc::clone(&log),
            next_index: AtomicUsize::new(0),
            handshake_delay: self.handshake_delay,
            handshakes: Arc::clone(&handshakes),
        });
        let port = self.port;
        let tls = self.tls;
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("wsherd-testkit-{port}"))
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(async move {
                    let data = web::Data::from(shared);
                    let bound = HttpServer::new(move || {
                        App::new()
                            .app_data(data.clone())
                            .default_service(web::to(upgrade))
                    })
                    .on_connect(remember_socket)
                    .workers(1)
                    // Without keep-alive the socket closes as soon as a WebSocket ends, so a
                    // scripted Drop is a real TCP close, not a wait for the keep-alive timer.
                    .keep_alive(actix_web::http::KeepAlive::Disabled)
                    .disable_signals()
                    .shutdown_timeout(1);
                    let bound = match tls {
                        Some(config) => bound.bind_rustls_0_23(("127.0.0.1", port), config),
                        None => bound.bind(("127.0.0.1", port)),
                    };
                    let server = match bound {
                        Ok(server) => server,
                        Err(error) => {
                            let _ = ready_tx.send(Err(error));
                            return;
                        }
                    };
                    let addr = server.addrs().first().copied();
                    let running = server.run();
                    let handle = running.handle();
                    match addr {
                        Some(addr) => {
                            let _ = ready_tx.send(Ok((addr, handle)));
                        }
                        None => {
                            let _ = ready_tx.send(Err(io::Error::other("server bound no address")));
                            return;
                        }
                    }
                    let _ = running.await;
                });
            })?;
        let (addr, handle) = ready_rx
            .recv()
            .map_err(|_| io::Error::other("test server thread died before binding"))??;
        Ok(TestServer {
            addr,
            scheme,
            handle,
            log,
            handshakes,
            thread: Some(thread),
        })
    }
}

/// A WebSocket server on 127.0.0.1, scripted per connection, that records what clients send.
///
/// It runs on its own thread with its own actix system, so it never competes with the
/// client's arbiter. Dropping it stops it and closes every connection without a Close frame.
pub struct TestServer {
    addr: SocketAddr,
    scheme: &'static str,
    handle: ServerHandle,
    log: Arc<ServerLog>,
    handshakes: Arc<Handshakes>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server that runs `script` on every connection.
    pub fn builder(script: Script) -> TestServerBuilder {
        Self::builder_with(move |_| Behaviour::Accept(script.clone()))
    }

    /// A server that asks `behaviour` what to do with each connection, by index.
    pub fn builder_with(
        behaviour: impl Fn(usize) -> Behaviour + Send + Sync + 'static,
    ) -> TestServerBuilder {
        TestServerBuilder {
            behaviour: Arc::new(behaviour),
            protocols: Vec::new(),
            port: 0,
            tls: None,
            handshake_delay: Duration::ZERO,
        }
    }

    /// Starts a server that runs `script` on every connection.
    pub fn start(script: Script) -> io::Result<TestServer> {
        Self::builder(script).start()
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port>/` (`wss://` when serving TLS), plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "{}://{}/{}",
            self.scheme,
            self.addr,
            path.trim_start_matches('/')
        )
    }

    /// The most upgrade requests this server was answering at once (see
    /// [`TestServerBuilder::handshake_delay`]).
    pub fn peak_handshakes(&self) -> usize {
        self.handshakes.peak.load(Ordering::SeqCst)
    }

    /// A snapshot of every connection's log.
    pub fn connections(&self) -> Vec<ConnectionLog> {
        self.log.lock().clone()
    }

    /// Waits until `check` returns `Some` for the log, re-checking on every change.
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[ConnectionLog]) -> Option<R>,
    ) -> Result<R, WaitTimeout> {
        self.log
            .wait_for(timeout, |connections| check(connections), |c| summarize(c))
            .await
    }

    /// Waits until connection `index` has received `count` messages; returns them.
    pub async fn wait_for_received(
        &self,
        index: usize,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Received>, WaitTimeout> {
        self.wait_for(timeout, |connections| {
            connections
                .get(index)
                .filter(|c| c.received.len() >= count)
                .map(|c| c.received.clone())
        })
        .await
    }

    /// Stops accepting, drops every connection, and waits for the server thread to end.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // `stop` sends its command before returning the future; the thread's own system
        // completes it, so the future itself need not be polled.
        drop(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// A duplicate of a connection's socket, so a script can end the TCP connection itself:
/// actix-web keeps a finished WebSocket's connection open for its disconnect timeout.
#[derive(Clone)]
struct SocketHandle(Arc<socket2::Socket>);

impl SocketHandle {
    fn cut(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

fn remember_socket(io: &dyn std::any::Any, extensions: &mut actix_web::dev::Extensions) {
    use std::os::fd::AsFd;
    if let Some(stream) = io.downcast_ref::<actix_web::rt::net::TcpStream>()
        && let Ok(fd) = stream.as_fd().try_clone_to_owned()
    {
        extensions.insert(SocketHandle(Arc::new(socket2::Socket::from(fd))));
    }
}

struct Shared {
    behaviour: Arc<BehaviourFn>,
    protocols: Vec<String>,
    log: Arc<ServerLog>,
    next_index: AtomicUsize,
    handshake_delay: Duration,
    handshakes: Arc<Handshakes>,
}

/// Upgrade requests being answered now, and the most there ever were at once.
#[derive(Debug, Default)]
struct Handshakes {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// Counts one upgrade while it is being answered.
struct InHandshake<'a>(&'a Handshakes);

impl<'a> InHandshake<'a> {
    fn enter(handshakes: &'a Handshakes) -> Self {
        let now = handshakes.now.fetch_add(1, Ordering::SeqCst) + 1;
        handshakes.peak.fetch_max(now, Ordering::SeqCst);
        InHandshake(handshakes)
    }
}

impl Drop for InHandshake<'_> {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
    let _counted = InHandshake::enter(&shared.handshakes);
    if !shared.handshake_delay.is_zero() {
        actix_rt::time::sleep(shared.handshake_delay).await;
    }
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let decided = shared.next_index.fetch_add(1, Ordering::SeqCst);
    let script = match (shared.behaviour)(decided) {
        Behaviour::Reject(status) => {
            shared.log.open(status, path.clone(), headers);
            let status = actix_web::http::StatusCode::from_u16(status)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(HttpResponse::build(status).body("rejected by the test script"));
        }
        Behaviour::Accept(script) => script,
    };
    let index = shared.log.open(101, path, headers);
    let actor = ScriptedSocket::new(
        index,
        req.conn_data::<SocketHandle>().cloned(),
        Arc::clone(&shared.log),
        script,
    );
    let protocols: Vec<&str> = shared.protocols.iter().map(String::as_str).collect();
    let response = ws::WsResponseBuilder::new(actor, &req, stream)
        .protocols(&protocols)
        .frame_size(SERVER_MAX_FRAME)
        .start();
    if response.is_err() {
        shared.log.record(index, |c| {
            c.status = 400;
            c.ended = true;
        });
    }
    response
}
