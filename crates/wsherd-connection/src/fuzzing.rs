//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, never on by default): the
//! path a peer's bytes take through the framing and the inflaters, driven synchronously over
//! an in-memory socket.

use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{AsyncRead, AsyncWrite, Framed, ReadBuf};
use actix_http::ws::{Codec, Frame, Item};

use crate::deflate::Negotiated;
use crate::framed::{InFrame, LeanFramed};
use crate::inflate::{Decompress, Inflated, Inflater, MessageInflater};

/// The most a fuzzed message may inflate to.
const CAP: usize = 64 * 1024;

/// Feeds `data` to a client socket that agreed to permessage-deflate (the first byte picks
/// the window and context takeover) and inflates every compressed message, then feeds it to
/// each payload inflater. Panics only if wsherd has a bug.
pub fn inflate_and_frame(data: &[u8]) {
    let Some((&choice, rest)) = data.split_first() else {
        return;
    };
    let negotiated = Negotiated {
        server_no_context_takeover: choice & 1 == 1,
        client_no_context_takeover: true,
        server_max_window_bits: 8 + (choice >> 1) % 8,
        client_max_window_bits: 15,
    };
    frames(rest, &negotiated);
    for format in [
        Decompress::Gzip,
        Decompress::Deflate,
        Decompress::Zlib,
        Decompress::ZlibStream,
    ] {
        let mut inflater = Inflater::new(format);
        for piece in rest.chunks(usize::from(choice) + 1) {
            check(inflater.inflate(piece, CAP));
        }
    }
}

fn frames(bytes: &[u8], negotiated: &Negotiated) {
    let socket = Replay { bytes, at: 0 };
    let mut framed = LeanFramed::from_framed(
        Framed::new(socket, Codec::new().client_mode().max_size(CAP)),
        CAP,
    );
    framed.accept_compressed();
    let mut inflater = MessageInflater::new(negotiated);
    let waker = futures_util::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    // Each poll takes at least one byte or ends: bounded by the input.
    for _ in 0..=bytes.len() + 1 {
        match framed.next_frame(&mut cx) {
            Poll::Ready(Some(Ok(InFrame::Compressed(
                Frame::Text(payload) | Frame::Binary(payload),
            )))) => check(inflater.inflate(&payload, CAP)),
            Poll::Ready(Some(Ok(InFrame::Compressed(Frame::Continuation(
                Item::FirstText(payload) | Item::FirstBinary(payload),
            ))))) => check(inflater.inflate(&payload, CAP)),
            Poll::Ready(Some(Ok(_))) => {}
            Poll::Ready(Some(Err(_)) | None) | Poll::Pending => return,
        }
    }
}

/// What no input may break.
fn check(inflated: Inflated) {
    if let Inflated::Message(out) = &inflated {
        assert!(out.len() <= CAP, "inflated past the cap: {}", out.len());
    }
}

/// A socket that reads `bytes` and then ends; writes vanish.
struct Replay<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl AsyncRead for Replay<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        let taken = rest.len().min(buf.remaining());
        buf.put_slice(rest.get(..taken).unwrap_or_default());
        self.at += taken;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Replay<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_entry_point_takes_any_bytes_and_real_frames() {
        super::inflate_and_frame(&[]);
        super::inflate_and_frame(&[0xff; 300]);
        let mut data = vec![0];
        data.extend(wsherd_testkit::frame_with(
            0xC1,
            None,
            &wsherd_testkit::deflated(b"{\"type\":\"x\"}"),
        ));
        super::inflate_and_frame(&data);
    }
}
