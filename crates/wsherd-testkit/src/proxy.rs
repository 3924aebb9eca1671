//! A TCP fault proxy between a client and a server: pass, delay, black-hole, cut.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How the proxy treats traffic right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward everything.
    Pass,
    /// Read from both sides and forward nothing: TCP stays up, the peers hear silence (a
    /// half-open connection as a client sees it).
    BlackHole,
}

const PASS: u8 = 0;
const BLACK_HOLE: u8 = 1;
/// How often a blocked read wakes to look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

struct Shared {
    target: SocketAddr,
    mode: std::sync::atomic::AtomicU8,
    delay_micros: AtomicU64,
    stopping: AtomicBool,
    accepted: AtomicUsize,
    /// Both sockets of every live pair, to cut them.
    live: Mutex<Vec<(TcpStream, TcpStream)>>,
}

/// A TCP proxy on 127.0.0.1 in front of `target`, whose faults tests switch at will.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `target`.
    pub fn start(target: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            mode: std::sync::atomic::AtomicU8::new(PASS),
            delay_micros: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
            live: Mutex::new(Vec::new()),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("wsherd-fault-proxy".into())
                .spawn(move || accept_loop(listener, shared))?
        };
        Ok(FaultProxy {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:<proxy port>/` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// The proxy's own address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches how traffic is treated, for live and future connections.
    pub fn set_mode(&self, mode: ProxyMode) {
        let value = match mode {
            ProxyMode::Pass => PASS,
            ProxyMode::BlackHole => BLACK_HOLE,
        };
        self.shared.mode.store(value, Ordering::SeqCst);
    }

    /// Delays every forwarded chunk by `delay` (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_micros.store(micros, Ordering::SeqCst);
    }

    /// Closes every live connection on both sides (new ones are still accepted).
    pub fn cut(&self) {
        let pairs = std::mem::take(
            &mut *self
                .shared
                .live
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (client, server) in pairs {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.cut();
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .finish()
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut pumps = Vec::new();
    for client in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(client) = client else { continue };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(shared.target) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let clones = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        );
        let (Ok(client_read), Ok(server_write), Ok(client_keep), Ok(server_keep)) = clones else {
            continue;
        };
        shared
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((client_keep, server_keep));
        let up = Arc::clone(&shared);
        pumps.push(std::thread::spawn(move || {
            pump(client_read, server_write, &up)
        }));
        let down = Arc::clone(&shared);
        pumps.push(std::thread::spawn(move || pump(server, client, &down)));
        pumps.retain(|pump: &JoinHandle<()>| !pump.is_finished());
    }
    for pump in pumps {
        let _ = pump.join();
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let _ = from.set_read_timeout(Some(POLL));
    let mut buf = vec![0u8; 64 * 1024];
    while !shared.stopping.load(Ordering::SeqCst) {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if shared.mode.load(Ordering::SeqCst) == BLACK_HOLE {
            continue;
        }
        let delay = shared.delay_micros.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_micros(delay));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
