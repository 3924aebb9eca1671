//! Proxies that open tunnels, for tests of connecting through one: HTTP `CONNECT` and SOCKS5,
//! each optionally demanding a user name and password, or misbehaving on purpose.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Which protocol the proxy speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelProtocol {
    /// HTTP `CONNECT host:port`, `Proxy-Authorization: Basic` when credentials are required.
    HttpConnect,
    /// SOCKS5 (RFC 1928), username/password authentication (RFC 1929) when required.
    Socks5,
}

/// What the proxy does with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelBehaviour {
    /// Opens the tunnel asked for (after checking credentials, if required).
    Tunnel,
    /// Reads the client's first bytes, writes these bytes and closes.
    Answer(Vec<u8>),
    /// Accepts and reads, never answers.
    Silent,
}

/// One tunnel request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    /// The target as asked for: `host:port` for HTTP and for a SOCKS5 name, `ip:port` for a
    /// SOCKS5 address.
    pub target: String,
    /// Whether a SOCKS5 client sent a name (remote DNS) rather than an address; `false` for
    /// HTTP.
    pub by_name: bool,
    /// Whether the client's credentials were accepted (`true` when none are required).
    pub authorized: bool,
}

struct Shared {
    protocol: TunnelProtocol,
    credentials: Option<(String, String)>,
    behaviour: TunnelBehaviour,
    stopping: AtomicBool,
    accepted: AtomicUsize,
    requests: Mutex<Vec<TunnelRequest>>,
    live: Mutex<Vec<TcpStream>>,
}

/// A tunnelling proxy on 127.0.0.1.
pub struct TunnelProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TunnelProxy {
    /// An HTTP `CONNECT` proxy that opens every tunnel.
    pub fn http() -> io::Result<TunnelProxy> {
        TunnelProxy::start(TunnelProtocol::HttpConnect, None, TunnelBehaviour::Tunnel)
    }

    /// A SOCKS5 proxy that opens every tunnel.
    pub fn socks5() -> io::Result<TunnelProxy> {
        TunnelProxy::start(TunnelProtocol::Socks5, None, TunnelBehaviour::Tunnel)
    }

    /// A proxy speaking `protocol`, requiring `credentials` (user, password) when given.
    pub fn start(
        protocol: TunnelProtocol,
        credentials: Option<(&str, &str)>,
        behaviour: TunnelBehaviour,
    ) -> io::Result<TunnelProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            protocol,
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            behaviour,
            stopping: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
            live: Mutex::new(Vec::new()),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wsherd-tunnel-proxy".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(TunnelProxy {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy URL for a wsherd endpoint: `scheme://[user:pass@]127.0.0.1:port`, `scheme`
    /// being `http`, `socks5` or `socks5h`.
    pub fn url(&self, scheme: &str, credentials: Option<(&str, &str)>) -> String {
        match credentials {
            Some((user, password)) => format!("{scheme}://{user}:{password}@{}", self.addr),
            None => format!("{scheme}://{}", self.addr),
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Every tunnel request read so far, in order.
    pub fn requests(&self) -> Vec<TunnelRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Closes every live connection (tunnels included); new ones are still accepted.
    pub fn cut(&self) {
        let live = std::mem::take(
            &mut *self
                .shared
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for stream in live {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for TunnelProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for TunnelProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelProxy")
            .field("addr", &self.addr)
            .field("protocol", &self.shared.protocol)
            .finish()
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if let Ok(keep) = client.try_clone() {
            remember(&shared, keep);
        }
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            let _ = serve(client, &shared);
        });
    }
}

fn remember(shared: &Shared, stream: TcpStream) {
    shared
        .live
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(stream);
}

fn record(shared: &Shared, request: TunnelRequest) {
    shared
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(request);
}

fn serve(mut client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    match &shared.behaviour {
        TunnelBehaviour::Tunnel => {}
        TunnelBehaviour::Answer(bytes) => {
            let mut first = [0u8; 512];
            let _ = client.read(&mut first)?;
            client.write_all(bytes)?;
            return client.shutdown(Shutdown::Both);
        }
        TunnelBehaviour::Silent => {
            let mut sink = [0u8; 512];
            while !shared.stopping.load(Ordering::SeqCst) {
                match client.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            return Ok(());
        }
    }
    let server = match shared.protocol {
        TunnelProtocol::HttpConnect => http_connect(&mut client, shared)?,
        TunnelProtocol::Socks5 => socks5(&mut client, shared)?,
    };
    let Some(server) = server else {
        return Ok(());
    };
    client.set_read_timeout(None)?;
    if let Ok(keep) = server.try_clone() {
        remember(shared, keep);
    }
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = io::copy(&mut server_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = up.join();
    Ok(())
}

/// Reads the `CONNECT` head, checks credentials, connects: the server stream, or `None`
/// when the client was answered with an error.
fn http_connect(client: &mut TcpStream, shared: &Shared) -> io::Result<Option<TcpStream>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 || head.len() > 16 * 1024 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some("CONNECT"), Some(target)) = (parts.next(), parts.next()) else {
        client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")?;
        return Ok(None);
    };
    let authorization = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    let authorized = match &shared.credentials {
        None => true,
        Some((user, password)) => {
            authorization.as_deref() == Some(&format!("Basic {}", base64(user, password)))
        }
    };
    record(
        shared,
        TunnelRequest {
            target: target.to_owned(),
            by_name: false,
            authorized,
        },
    );
    if !authorized {
        client.write_all(
            b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
        )?;
        return Ok(None);
    }
    match TcpStream::connect(target) {
        Ok(server) => {
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            Ok(Some(server))
        }
        Err(_) => {
            client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")?;
            Ok(None)
        }
    }
}

fn socks5(client: &mut TcpStream, shared: &Shared) -> io::Result<Option<TcpStream>> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting)?;
    let mut methods = vec![0u8; usize::from(greeting[1])];
    client.read_exact(&mut methods)?;
    let wanted = if shared.credentials.is_some() { 2 } else { 0 };
    if greeting[0] != 5 || !methods.contains(&wanted) {
        client.write_all(&[5, 0xff])?;
        record(
            shared,
            TunnelRequest {
                target: String::new(),
                by_name: false,
                authorized: false,
            },
        );
        return Ok(None);
    }
    client.write_all(&[5, wanted])?;
    let mut authorized = true;
    if let Some((user, password)) = &shared.credentials {
        let mut version_and_len = [0u8; 2];
        client.read_exact(&mut version_and_len)?;
        let mut given_user = vec![0u8; usize::from(version_and_len[1])];
        client.read_exact(&mut given_user)?;
        let mut len = [0u8; 1];
        client.read_exact(&mut len)?;
        let mut given_password = vec![0u8; usize::from(len[0])];
        client.read_exact(&mut given_password)?;
        authorized = given_user == user.as_bytes() && given_password == password.as_bytes();
        client.write_all(&[1, if authorized { 0 } else { 1 }])?;
        if !authorized {
            record(
                shared,
                TunnelRequest {
                    target: String::new(),
                    by_name: false,
                    authorized,
                },
            );
            return Ok(None);
        }
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request)?;
    let (host, by_name) = match request[3] {
        1 => {
            let mut octets = [0u8; 4];
            client.read_exact(&mut octets)?;
            (Ipv4Addr::from(octets).to_string(), false)
        }
        4 => {
            let mut octets = [0u8; 16];
            client.read_exact(&mut octets)?;
            (format!("[{}]", Ipv6Addr::from(octets)), false)
        }
        3 => {
            let mut len = [0u8; 1];
            client.read_exact(&mut len)?;
            let mut name = vec![0u8; usize::from(len[0])];
            client.read_exact(&mut name)?;
            (String::from_utf8_lossy(&name).into_owned(), true)
        }
        _ => {
            client.write_all(&[5, 8, 0, 1, 0, 0, 0, 0, 0, 0])?;
            return Ok(None);
        }
    };
    let mut port = [0u8; 2];
    client.read_exact(&mut port)?;
    let target = format!("{host}:{}", u16::from_be_bytes(port));
    record(
        shared,
        TunnelRequest {
            target: target.clone(),
            by_name,
            authorized,
        },
    );
    match TcpStream::connect(target.as_str()) {
        Ok(server) => {
            client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0])?;
            Ok(Some(server))
        }
        Err(_) => {
            client.write_all(&[5, 5, 0, 1, 0, 0, 0, 0, 0, 0])?;
            Ok(None)
        }
    }
}

fn base64(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
