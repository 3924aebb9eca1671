//! `serve-idle PORT [MAX_LIFETIME_S [lifeline]]`: an async server for many idle connections. It
//! completes handshakes, answers Pings and Closes, ignores everything else, and counts what it
//! accepted. A client that offers permessage-deflate gets it (with context takeover and a
//! 15-bit window unless it asks for `server_no_context_takeover`) and one compressed message
//! after the handshake, so that its inflate state exists while it idles. With `lifeline` it exits when its stdin closes: the bench holds the other end, so a
//! bench that dies without killing it (a crash, an out-of-memory kill, Ctrl-C) takes it along.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn handshake(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 || stream.read(&mut byte).await? == 0 {
            return Err(std::io::Error::other("bad handshake"));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let mut response = wsherd_testkit::accept_response(&head);
    // Lower case only to look for the offer: the key itself is case-sensitive.
    let request = head.to_ascii_lowercase();
    if request.contains("permessage-deflate") {
        // Before the blank line that ends the head.
        response.truncate(response.len() - 2);
        let agreed = if request.contains("server_no_context_takeover") {
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n"
        } else {
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        };
        response.extend_from_slice(agreed.as_bytes());
        response.extend_from_slice(&compressed_hello());
    }
    stream.write_all(&response).await
}

/// One permessage-deflate text frame (FIN | RSV1 | text), unmasked, as servers send.
fn compressed_hello() -> Vec<u8> {
    let payload =
        wsherd_testkit::deflated(br#"{"type":"hello","note":"compressed while it idles"}"#);
    wsherd_testkit::frame_with(0xC1, None, &payload)
}

/// Reads client frames (masked); answers Ping with Pong and Close with Close.
async fn serve_frames(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut header = [0u8; 2];
    loop {
        stream.read_exact(&mut header).await?;
        let opcode = header[0] & 0x0F;
        let len = match header[1] & 0x7F {
            126 => u64::from(stream.read_u16().await?),
            127 => stream.read_u64().await?,
            n => u64::from(n),
        };
        if len > 1 << 20 {
            return Err(std::io::Error::other("frame too large for the idle server"));
        }
        let mut mask = [0u8; 4];
        if header[1] & 0x80 != 0 {
            stream.read_exact(&mut mask).await?;
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await?;
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= mask[i % 4];
        }
        match opcode {
            0x9 if payload.len() <= 125 => {
                let mut pong = vec![0x8A, payload.len() as u8];
                pong.extend_from_slice(&payload);
                stream.write_all(&pong).await?;
            }
            0x8 => {
                let _ = stream.write_all(&[0x88, 0x02, 0x03, 0xE8]).await;
                return Ok(());
            }
            _ => {}
        }
    }
}

pub(crate) fn serve_idle(args: &[String]) -> ExitCode {
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    // `soak`: each connection is dropped after a lifetime spread over 0..max seconds, so a
    // thousand of them churn about once a second in all.
    let max_lifetime: Option<u64> = args.get(1).and_then(|s| s.parse().ok()).filter(|&s| s > 0);
    if args.get(2).is_some_and(|a| a == "lifeline") {
        // A plain thread: tokio's stdin would take a blocking thread (and a feature) all the
        // same, and all this does is wait for end-of-file.
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return ExitCode::FAILURE;
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await else {
            return ExitCode::FAILURE;
        };
        let Ok(addr) = listener.local_addr() else {
            return ExitCode::FAILURE;
        };
        println!("{}", addr.port());
        let accepted = Arc::new(AtomicU64::new(0));
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let nth = accepted.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                if handshake(&mut stream).await.is_ok() {
                    match max_lifetime {
                        None => {
                            let _ = serve_frames(&mut stream).await;
                        }
                        Some(max) => {
                            // A multiplicative hash spreads the lifetimes over the range.
                            let lifetime = nth.wrapping_mul(0x9E37_79B9_7F4A_7C15) % (max * 1000);
                            let _ = tokio::time::timeout(
                                std::time::Duration::from_millis(lifetime),
                                serve_frames(&mut stream),
                            )
                            .await;
                        }
                    }
                }
            });
        }
    })
}
