//! The benchmark's server: a separate process writing pre-encoded frames as fast as TCP takes
//! them, so the server's cost never shows in the client's figures.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ExitCode, Stdio};
use std::sync::Arc;

/// One ~120-byte JSON trade; the shape every client decodes.
pub(crate) fn message(seq: u64) -> String {
    message_at(seq, 1_764_000_000_000)
}

/// The trade `seq` with `ts` as its timestamp: the paced server puts its send time there.
/// One function for both servers, so both send the very same shape.
pub(crate) fn message_at(seq: u64, ts: u64) -> String {
    format!(
        r#"{{"type":"trade","seq":{seq},"symbol":"BTCUSDT","venue":"binance","price":64123.45,"qty":0.0125,"side":"buy","ts":{ts}}}"#
    )
}

/// Appends `payload` as one final, unmasked text frame (a server's frames are never masked).
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        len @ 0..=125 => out.push(len as u8),
        len @ 126..=65535 => {
            out.push(126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// All `count` messages as server frames, built once; with `deflate`, each compressed on
/// its own (permessage-deflate without context takeover: RSV1 set, the deflate tail cut).
fn frames(count: u64, deflate: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(count as usize * 130);
    for seq in 0..count {
        let text = message(seq);
        if deflate {
            let start = out.len();
            frame(&wsherd_testkit::deflated(text.as_bytes()), &mut out);
            // FIN, RSV1 (compressed) and text.
            if let Some(first) = out.get_mut(start) {
                *first = 0xC1;
            }
        } else {
            frame(text.as_bytes(), &mut out);
        }
    }
    out
}

/// What a deflate server agrees to: each message compressed on its own, both ways.
const DEFLATE_AGREED: &str = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n";

/// Reads the client's upgrade request and answers it.
pub(crate) fn handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    handshake_with(stream, false)
}

/// Like [`handshake`], agreeing to permessage-deflate when `deflate` (the client must have
/// offered it).
fn handshake_with(stream: &mut TcpStream, deflate: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    while !head.ends_with("\r\n\r\n") {
        if reader.read_line(&mut head)? == 0 {
            return Err(std::io::Error::other("client left during the handshake"));
        }
    }
    let mut answer = wsherd_testkit::accept_response(&head);
    if deflate {
        if !head.to_ascii_lowercase().contains("permessage-deflate") {
            return Err(std::io::Error::other(
                "the client offered no permessage-deflate",
            ));
        }
        // Before the blank line that ends the head.
        answer.truncate(answer.len().saturating_sub(2));
        answer.extend_from_slice(DEFLATE_AGREED.as_bytes());
        answer.extend_from_slice(b"\r\n");
    }
    stream.write_all(&answer)
}

/// `serve COUNT [--deflate]`: listens on 127.0.0.1, prints the port, and sends COUNT messages
/// on every connection (compressed, with `--deflate`), then a Close.
pub(crate) fn serve(args: &[String]) -> ExitCode {
    let deflate = args.iter().any(|a| a == "--deflate");
    let count: u64 = args
        .first()
        .and_then(|c| c.parse().ok())
        .unwrap_or(1_000_000);
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        return ExitCode::FAILURE;
    };
    let Ok(addr) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    println!("{}", addr.port());
    let _ = std::io::stdout().flush();
    let data = Arc::new(frames(count, deflate));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let data = Arc::clone(&data);
        std::thread::spawn(move || {
            let _ = stream.set_nodelay(true);
            if handshake_with(&mut stream, deflate).is_err() {
                return;
            }
            for chunk in data.chunks(256 * 1024) {
                if stream.write_all(chunk).is_err() {
                    return;
                }
            }
            let _ = stream.write_all(&[0x88, 0x02, 0x03, 0xE8]);
            // The client sends nothing but its answer to our Close: once that comes (or the
            // client has gone) the server closes TCP first, as RFC 6455 §7.1.1 has it, so a
            // client that waits for that (wsherd does) is not held until its shutdown timeout.
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            let mut answer = [0u8; 4096];
            let _ = stream.read(&mut answer);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
    }
    ExitCode::SUCCESS
}

/// The server child process; killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    pub(crate) port: u16,
}

impl ServerProcess {
    /// `serve COUNT`: every connection gets COUNT messages as fast as TCP takes them.
    pub(crate) fn start(count: u64) -> Result<ServerProcess, String> {
        Self::spawn(&["serve".to_owned(), count.to_string()])
    }

    /// `serve-paced RATE COUNT`: every connection gets COUNT messages at RATE a second, each
    /// stamped with its send time (see `paced_server.rs`).
    pub(crate) fn start_paced(rate: u64, count: u64) -> Result<ServerProcess, String> {
        Self::spawn(&[
            "serve-paced".to_owned(),
            rate.to_string(),
            count.to_string(),
        ])
    }

    /// Starts this executable as a server child with `args` and reads the port it prints.
    fn spawn(args: &[String]) -> Result<ServerProcess, String> {
        Self::spawn_on(args, None)
    }

    /// [`Self::start`] on core `cpu` alone, if given; with `deflate`, `serve COUNT --deflate`:
    /// the same messages, each compressed (permessage-deflate).
    pub(crate) fn start_pinned(
        count: u64,
        deflate: bool,
        cpu: Option<usize>,
    ) -> Result<ServerProcess, String> {
        let mut args = vec!["serve".to_owned(), count.to_string()];
        if deflate {
            args.push("--deflate".to_owned());
        }
        Self::spawn_on(&args, cpu)
    }

    /// Starts this executable as a server child with `args` (on core `cpu` alone, if given)
    /// and reads the port it prints.
    fn spawn_on(args: &[String], cpu: Option<usize>) -> Result<ServerProcess, String> {
        let mut child = crate::pin::this_executable_on(cpu)?
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the server process: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("the server has no stdout")?;
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let port = line
            .trim()
            .parse()
            .map_err(|_| format!("the server said {line:?}"))?;
        Ok(ServerProcess { child, port })
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
