//! A real WebSocket server on 127.0.0.1 that runs scripts per connection.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use actix::prelude::*;
use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use actix_web_actors::ws;
use bytes::Bytes;

use crate::log::{ConnectionLog, Received, ServerLog, summarize};
use crate::script::{Behaviour, Script, Step, stream_message};
use crate::watch::WaitTimeout;

/// Decides what each connection does, given its index on the server (from 0).
pub type BehaviourFn = dyn Fn(usize) -> Behaviour + Send + Sync;

/// The largest frame the server accepts from a client.
const SERVER_MAX_FRAME: usize = 64 * 1024 * 1024;

/// The Ping payload a [`Step::Drop`] waits to see answered.
const DROP_PING: &[u8] = b"wsherd-testkit-drop";

/// Messages of a [`Step::Stream`] written per turn, so one stream never starves the server.
const STREAM_BATCH: u64 = 512;

/// Configures and starts a [`TestServer`].
pub struct TestServerBuilder {
    behaviour: Arc<BehaviourFn>,
    protocols: Vec<String>,
    port: u16,
    tls: Option<rustls::ServerConfig>,
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
        let shared = Arc::new(Shared {
            behaviour: self.behaviour,
            protocols: self.protocols,
            log: Arc::clone(&log),
            next_index: AtomicUsize::new(0),
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
}

async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, actix_web::Error> {
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
    let actor = ScriptedSocket {
        index,
        socket: req.conn_data::<SocketHandle>().cloned(),
        sent_close: false,
        dropping: false,
        resume_pending: false,
        log: Arc::clone(&shared.log),
        steps: script.into(),
        echo: false,
        answers: Vec::new(),
        ignore_pings: false,
        waiting_for: None,
        received: 0,
    };
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

struct ScriptedSocket {
    index: usize,
    socket: Option<SocketHandle>,
    sent_close: bool,
    dropping: bool,
    resume_pending: bool,
    log: Arc<ServerLog>,
    steps: VecDeque<Step>,
    echo: bool,
    answers: Vec<(String, String)>,
    ignore_pings: bool,
    waiting_for: Option<usize>,
    received: usize,
}

impl ScriptedSocket {
    /// Runs steps until the script waits, ends, or closes the connection.
    fn advance(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        // A pause (or a stream continuing on the next turn) resumes the script itself;
        // a message arriving meanwhile must not run the steps early.
        if self.resume_pending {
            return;
        }
        if self.waiting_for.is_some_and(|n| self.received < n) {
            return;
        }
        self.waiting_for = None;
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Text(text) => ctx.text(text),
                Step::Binary(bytes) => ctx.binary(bytes),
                Step::Stream {
                    kind_field,
                    kinds,
                    first_seq,
                    count,
                    padding,
                } => {
                    let batch = count.min(STREAM_BATCH);
                    for seq in first_seq..first_seq + batch {
                        let kind = match usize::try_from(seq)
                            .ok()
                            .and_then(|s| kinds.get(s % kinds.len().max(1)))
                        {
                            Some(kind) => kind.as_str(),
                            None => "message",
                        };
                        ctx.text(stream_message(&kind_field, kind, seq, padding));
                    }
                    if batch < count {
                        self.steps.push_front(Step::Stream {
                            kind_field,
                            kinds,
                            first_seq: first_seq + batch,
                            count: count - batch,
                            padding,
                        });
                        self.resume_later(Duration::ZERO, ctx);
                        return;
                    }
                }
                Step::Fragmented {
                    text,
                    fragment_size,
                } => write_fragmented(ctx, &text, fragment_size.max(1)),
                Step::Ping(payload) => ctx.ping(&payload),
                Step::IgnorePings(ignore) => self.ignore_pings = ignore,
                Step::Echo(echo) => self.echo = echo,
                Step::Answer { request, reply } => self.answers.push((request, reply)),
                Step::WaitForMessages(count) => {
                    if self.received < count {
                        self.waiting_for = Some(count);
                        return;
                    }
                }
                Step::Pause(delay) => {
                    self.resume_later(delay, ctx);
                    return;
                }
                Step::Close { code, reason } => {
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::from(code),
                        description: Some(reason),
                    }));
                    // The TCP connection ends when the client answers (see the Close handler).
                    self.sent_close = true;
                    return;
                }
                Step::Drop => {
                    // Cut only once the client has answered a Ping sent after everything
                    // else: TCP order then proves it read every frame written before.
                    ctx.ping(DROP_PING);
                    self.dropping = true;
                    return;
                }
            }
        }
    }

    fn resume_later(&mut self, delay: Duration, ctx: &mut ws::WebsocketContext<Self>) {
        self.resume_pending = true;
        ctx.run_later(delay, |act, ctx| {
            act.resume_pending = false;
            act.advance(ctx);
        });
    }

    /// Ends the TCP connection at once, without a Close frame.
    fn cut(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(socket) = &self.socket {
            socket.cut();
        }
        ctx.stop();
    }

    fn record(&mut self, message: Received, ctx: &mut ws::WebsocketContext<Self>) {
        if let Received::Text(text) = &message
            && let Some((_, reply)) = self.answers.iter().find(|(request, _)| request == text)
        {
            ctx.text(reply.clone());
        }
        if self.echo {
            match &message {
                Received::Text(text) => ctx.text(text.clone()),
                Received::Binary(bytes) => ctx.binary(bytes.clone()),
            }
        }
        self.received += 1;
        self.log.record(self.index, |c| c.received.push(message));
        self.advance(ctx);
    }
}

fn write_fragmented(
    ctx: &mut ws::WebsocketContext<ScriptedSocket>,
    text: &str,
    fragment_size: usize,
) {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = fragment_size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(Bytes::copy_from_slice(piece.as_bytes()));
        rest = tail;
    }
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.into_iter().enumerate() {
        let item = match i {
            0 if last == 0 => {
                ctx.text(text.to_owned());
                return;
            }
            0 => actix_http::ws::Item::FirstText(piece),
            i if i == last => actix_http::ws::Item::Last(piece),
            _ => actix_http::ws::Item::Continue(piece),
        };
        ctx.write_raw(ws::Message::Continuation(item));
    }
}

impl Actor for ScriptedSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.advance(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.log.record(self.index, |c| c.ended = true);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ScriptedSocket {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.record(Received::Text(text.to_string()), ctx),
            Ok(ws::Message::Binary(bytes)) => self.record(Received::Binary(bytes), ctx),
            Ok(ws::Message::Ping(payload)) => {
                self.log.record(self.index, |c| c.pings += 1);
                if !self.ignore_pings {
                    ctx.pong(&payload);
                }
            }
            Ok(ws::Message::Pong(payload)) => {
                if self.dropping && payload.as_ref() == DROP_PING {
                    self.cut(ctx);
                } else {
                    self.log.record(self.index, |c| c.pongs.push(payload));
                }
            }
            Ok(ws::Message::Close(reason)) => {
                let (code, text) = match &reason {
                    Some(reason) => (
                        u16::from(reason.code),
                        reason.description.clone().unwrap_or_default(),
                    ),
                    None => (1005, String::new()),
                };
                self.log
                    .record(self.index, |c| c.close = Some((code, text)));
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_) | ws::Message::Nop) => {}
            Err(_) => ctx.stop(),
        }
    }
}
