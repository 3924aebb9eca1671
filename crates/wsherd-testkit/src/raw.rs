//! A raw TCP peer that speaks just enough WebSocket to misbehave exactly as scripted.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::watch::Watched;

/// The largest HTTP request head the raw server reads before giving up on a client.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// The most bytes a `Drain` keeps for the log; the rest is read and discarded.
const MAX_DRAINED: usize = 1024 * 1024;

/// One thing the raw server does on a connection, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawStep {
    /// Read the upgrade request and answer a valid `101 Switching Protocols`.
    Handshake,
    /// Read the upgrade request and answer these bytes instead (a broken handshake).
    HandshakeWith(Vec<u8>),
    /// Read the upgrade request and answer a valid 101 with these header lines added
    /// (`"Sec-WebSocket-Extensions: permessage-deflate"`).
    HandshakeWithHeaders(Vec<String>),
    /// Read the upgrade request and answer a valid 101 one byte at a time, pausing between.
    HandshakeSlowly(Duration),
    /// Write bytes exactly as given.
    Write(Vec<u8>),
    /// Write this text as one permessage-deflate message (FIN | RSV1 | text, compressed by
    /// [`deflated`]): after a `HandshakeWithHeaders` that agreed to the extension.
    WriteDeflated(String),
    /// Write bytes one at a time, pausing between them.
    WriteSlowly(Vec<u8>, Duration),
    /// Keep the socket open without reading or writing until the server is dropped.
    Hold,
    /// Write these bytes again every interval, never reading, until the client goes away or
    /// the server is dropped: a peer that talks but does not listen.
    Repeat(Vec<u8>, Duration),
    /// Read whatever the client sends until it closes or the server is dropped, keeping the
    /// first MiB in [`RawLog::drained`].
    Drain,
}

/// A server frame: FIN set, unmasked (as RFC 6455 requires of servers), this opcode.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(0x80 | (opcode & 0x0F), None, payload)
}

/// A frame with a raw first byte (FIN, RSV bits, opcode) and an optional mask key.
pub fn frame_with(first_byte: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// `text` as the payload of a permessage-deflate message (RFC 7692 §7.2.1): raw DEFLATE,
/// sync-flushed, the final `00 00 ff ff` removed; a compressor of its own, so it inflates
/// with or without context takeover. Frame it with [`frame_with`] and RSV1 set (`0xC1` for a
/// whole text message).
pub fn deflated(text: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a `Vec` cannot fail.
    let _ = encoder.write_all(text);
    let _ = encoder.flush();
    let mut out = encoder.get_ref().clone();
    out.truncate(out.len().saturating_sub(4));
    out
}

/// What a raw connection went through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawLog {
    /// The client's request head, as text.
    pub request: String,
    /// Whether the script ran to its end (or to `Hold`/`Drain`).
    pub finished: bool,
    /// The first I/O error, if any (the client hanging up shows here).
    pub error: Option<String>,
    /// What the client sent during `Drain`, as read off the wire (its frames are masked).
    pub drained: Vec<u8>,
}

impl RawLog {
    /// The client's frames read during `Drain`, unmasked: `(first byte, payload)` each, a cut
    /// frame at the end left out.
    pub fn client_frames(&self) -> Vec<(u8, Vec<u8>)> {
        client_frames(&self.drained)
    }

    /// The code of the first Close frame the client sent during `Drain`.
    pub fn close_code(&self) -> Option<u16> {
        self.client_frames()
            .into_iter()
            .find(|(first, _)| first & 0x0F == 0x8)
            .and_then(|(_, payload)| {
                Some(u16::from_be_bytes([*payload.first()?, *payload.get(1)?]))
            })
    }
}

/// Splits client-to-server bytes into frames (masked, as RFC 6455 requires of clients).
pub fn client_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let first = bytes[0];
        let masked = bytes[1] & 0x80 != 0;
        let (len, mut at) = match bytes[1] & 0x7F {
            126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&bytes[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            126 | 127 => break,
            len => (u64::from(len), 2),
        };
        let mut key = [0u8; 4];
        if masked {
            let Some(mask) = bytes.get(at..at + 4) else {
                break;
            };
            key.copy_from_slice(mask);
            at += 4;
        }
        let Some(payload) = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(at..at.checked_add(len)?))
        else {
            break;
        };
        let payload: Vec<u8> = payload
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ key[i % 4])
            .collect();
        bytes = &bytes[at + payload.len()..];
        frames.push((first, payload));
    }
    frames
}

/// A TCP server on 127.0.0.1 that runs a [`RawStep`] script on each connection, on plain
/// threads, so it can break the protocol in ways a real WebSocket server never would.
pub struct RawServer {
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    /// Dropping this wakes every `Hold`ing connection.
    release: Option<Sender<()>>,
    log: Arc<Watched<Vec<RawLog>>>,
    thread: Option<JoinHandle<()>>,
}

impl RawServer {
    /// Starts a server that runs `script` on every connection.
    pub fn start(script: Vec<RawStep>) -> io::Result<RawServer> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), script)
    }

    /// Like [`RawServer::start`], on `addr` (a fixed port lets a test put a real server on the
    /// same address after this one is dropped).
    pub fn start_on(addr: SocketAddr, script: Vec<RawStep>) -> io::Result<RawServer> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let (release, held) = channel::<()>();
        let held = Arc::new(std::sync::Mutex::new(held));
        let log = Arc::new(Watched::new(Vec::new()));
        let thread = {
            let stopping = Arc::clone(&stopping);
            let log = Arc::clone(&log);
            std::thread::Builder::new()
                .name("wsherd-testkit-raw".into())
                .spawn(move || accept_loop(listener, script, stopping, held, log))?
        };
        Ok(RawServer {
            addr,
            stopping,
            release: Some(release),
            log,
            thread: Some(thread),
        })
    }

    /// `ws://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each connection went through so far.
    pub fn connections(&self) -> Vec<RawLog> {
        self.log.lock().clone()
    }

    /// Waits until `check` holds for the connections' logs.
    pub async fn wait_for<R>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[RawLog]) -> Option<R>,
    ) -> Result<R, crate::WaitTimeout> {
        self.log
            .wait_for(timeout, |logs| check(logs), |logs| format!("{logs:?}"))
            .await
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.release.take();
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for RawServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn accept_loop(
    listener: TcpListener,
    script: Vec<RawStep>,
    stopping: Arc<AtomicBool>,
    held: Arc<std::sync::Mutex<Receiver<()>>>,
    log: Arc<Watched<Vec<RawLog>>>,
) {
    let mut workers = Vec::new();
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let index = log.update(|logs| {
            logs.push(RawLog::default());
            logs.len() - 1
        });
        let script = script.clone();
        let held = Arc::clone(&held);
        let stopping = Arc::clone(&stopping);
        let log = Arc::clone(&log);
        workers.push(std::thread::spawn(move || {
            let result = run_script(stream, &script, &held, &stopping, &log, index);
            log.update(|logs| {
                if let Some(entry) = logs.get_mut(index) {
                    entry.finished = result.is_ok();
                    if let Err(error) = result {
                        entry.error.get_or_insert(error.to_string());
                    }
                }
            });
        }));
    }
    for worker in workers {
        let _ = worker.join();
    }
}

fn run_script(
    mut stream: TcpStream,
    script: &[RawStep],
    held: &std::sync::Mutex<Receiver<()>>,
    stopping: &AtomicBool,
    log: &Watched<Vec<RawLog>>,
    index: usize,
) -> io::Result<()> {
    for step in script {
        match step {
            RawStep::Handshake => {
                let request = read_head(&mut stream)?;
                record_request(log, index, &request);
                stream.write_all(&accept_response(&request))?;
            }
            RawStep::HandshakeSlowly(pause) => {
                let request = read_head(&mut stream)?;
                record_request(log, index, &request);
                for byte in accept_response(&request) {
                    stream.write_all(&[byte])?;
                    stream.flush()?;
                    std::thread::sleep(*pause);
                }
            }
            RawStep::HandshakeWith(bytes) => {
                let request = read_head(&mut stream)?;
                record_request(log, index, &request);
                stream.write_all(bytes)?;
            }
            RawStep::HandshakeWithHeaders(lines) => {
                let request = read_head(&mut stream)?;
                record_request(log, index, &request);
                let mut answer = accept_response(&request);
                // Before the blank line that ends the head.
                answer.truncate(answer.len() - 2);
                for line in lines {
                    answer.extend_from_slice(line.as_bytes());
                    answer.extend_from_slice(b"\r\n");
                }
                answer.extend_from_slice(b"\r\n");
                stream.write_all(&answer)?;
            }
            RawStep::Write(bytes) => stream.write_all(bytes)?,
            RawStep::WriteDeflated(text) => {
                stream.write_all(&frame_with(0xC1, None, &deflated(text.as_bytes())))?;
            }
            RawStep::WriteSlowly(bytes, pause) => {
                for byte in bytes {
                    stream.write_all(std::slice::from_ref(byte))?;
                    stream.flush()?;
                    std::thread::sleep(*pause);
                }
            }
            RawStep::Repeat(bytes, every) => {
                while !stopping.load(Ordering::SeqCst) {
                    stream.write_all(bytes)?;
                    std::thread::sleep(*every);
                }
                return Ok(());
            }
            RawStep::Hold => {
                // Blocks until the server is dropped (the sender goes away).
                let guard = held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = guard.recv();
                return Ok(());
            }
            RawStep::Drain => {
                stream.set_read_timeout(Some(Duration::from_millis(100)))?;
                let mut buf = [0u8; 16 * 1024];
                while !stopping.load(Ordering::SeqCst) {
                    match stream.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(read) => log.update(|logs| {
                            if let Some(entry) = logs.get_mut(index) {
                                let room = MAX_DRAINED.saturating_sub(entry.drained.len());
                                entry.drained.extend_from_slice(&buf[..read.min(room)]);
                            }
                        }),
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                return Ok(());
            }
        }
    }
    Ok(())
}

fn record_request(log: &Watched<Vec<RawLog>>, index: usize, request: &str) {
    log.update(|logs| {
        if let Some(entry) = logs.get_mut(index) {
            entry.request = request.to_owned();
        }
    });
}

fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client closed during the request",
            ));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// A valid 101 answer to `request`.
pub fn accept_response(request: &str) -> Vec<u8> {
    let key = request
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    let accept = actix_http::ws::hash_key(key.as_bytes());
    let mut response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ".to_vec();
    response.extend_from_slice(&accept);
    response.extend_from_slice(b"\r\n\r\n");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_lengths_and_masks() {
        assert_eq!(frame(0x1, b"hi"), [0x81, 2, b'h', b'i']);
        let medium = frame(0x2, &[0u8; 300]);
        assert_eq!(&medium[..4], &[0x82, 126, 1, 44]);
        let large = frame(0x2, &vec![0u8; 70_000]);
        assert_eq!(&large[..2], &[0x82, 127]);
        assert_eq!(large.len(), 10 + 70_000);
        let masked = frame_with(0x81, Some([1, 2, 3, 4]), b"ab");
        assert_eq!(masked, [0x81, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2]);
    }

    #[test]
    fn client_frames_are_unmasked_and_a_cut_one_is_left_out() {
        let mut wire = frame_with(0x81, Some([9, 8, 7, 6]), b"hello");
        wire.extend(frame_with(0x88, Some([1, 2, 3, 4]), &[0x03, 0xF3, b'x']));
        wire.extend(&frame_with(0x82, Some([1, 1, 1, 1]), &[0u8; 300])[..50]);
        let log = RawLog {
            drained: wire,
            ..RawLog::default()
        };
        let frames = log.client_frames();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0], (0x81, b"hello".to_vec()));
        assert_eq!(log.close_code(), Some(1011));
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        let request = "GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        let response = String::from_utf8(accept_response(request)).unwrap();
        assert!(response.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}
