//! The socket's framing: awc's WebSocket codec over buffers sized by the traffic.
//!
//! awc hands back an `actix_codec::Framed`, which keeps an 8 KiB read buffer and an 8 KiB write
//! buffer per socket for the socket's whole life, and reads at most 8 KiB per system call. For a
//! herd of mostly idle connections the buffers are most of what a connection costs; for one busy
//! feed the small reads are a system call every ~60 messages. This framing starts from the same
//! parts (the codec and any bytes read past the handshake) and
//! - while idle holds no buffer at all: a read lands in a small stack buffer first, and a read
//!   buffer that is empty when the socket has nothing more is given back;
//! - while busy reads straight into a buffer, asking for room that doubles (to 64 KiB) while
//!   reads fill it;
//! - gives the write buffer back whenever it has been flushed;
//! - rejects a frame as soon as more than the frame cap is buffered without it completing
//!   (actix-http's parser checks the cap only once the whole frame has arrived);
//! - after a protocol error reads and discards the rest, so the peer's bytes neither repeat
//!   the error nor pile up while our Close goes out.
//!
//! As in tokio-util's `FramedImpl`, each side keeps its own state (`read::ReadState`,
//! `write::WriteState`) and only the codec is shared, so what a poll of one side can change is
//! in one place. `header` is the fast path's reading of a frame header, kept apart so that it
//! can be tested on bare bytes.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_codec::{AsyncRead, AsyncWrite, Decoder, Encoder, Framed};
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use bytes::BytesMut;
use futures_util::Sink;

use read::ReadState;
pub(crate) use write::FramesWritten;
use write::WriteState;

mod header;
mod read;
#[cfg(test)]
mod tests;
mod write;

/// A frame's first byte: the last frame of its message.
const FIN: u8 = 0x80;
/// A frame's first byte: compressed (permessage-deflate).
const RSV1: u8 = 0x40;
/// The opcodes of a text and a binary frame.
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;

/// A WebSocket socket, a client's or (made by [`LeanFramed::server`]) a server's: frames in,
/// messages out.
pub(crate) struct LeanFramed<T> {
    io: T,
    /// Shared by both sides: it decodes what is read and encodes (masking) what is written.
    codec: Codec,
    read: ReadState,
    write: WriteState,
    /// permessage-deflate for what is written, once agreed.
    deflate: Option<crate::deflate::Outbound>,
}

impl<T> LeanFramed<T> {
    /// Takes over awc's framing, keeping bytes it read past the handshake. `max_frame_size` must
    /// be the codec's own cap.
    pub(crate) fn from_framed(framed: Framed<T, Codec>, max_frame_size: usize) -> Self {
        let parts = framed.into_parts();
        let keep = |buf: BytesMut| if buf.is_empty() { BytesMut::new() } else { buf };
        LeanFramed {
            io: parts.io,
            codec: parts.codec,
            read: ReadState::new(keep(parts.read_buf), max_frame_size),
            write: WriteState::new(parts.write_buf),
            deflate: None,
        }
    }

    /// The server's side of a socket a server accepted (after its upgrade): frames from the
    /// client must be masked, frames to it are not. `max_frame_size` caps every frame read.
    pub(crate) fn server(io: T, max_frame_size: usize) -> Self {
        let mut read = ReadState::new(BytesMut::new(), max_frame_size);
        read.server = true;
        LeanFramed {
            io,
            codec: Codec::new().max_size(max_frame_size),
            read,
            write: WriteState::new(BytesMut::new()),
            deflate: None,
        }
    }
}

impl<T> LeanFramed<T> {
    /// Accepts RSV1 on the first frame of a message: permessage-deflate was negotiated.
    pub(crate) fn accept_compressed(&mut self) {
        self.read.deflate = true;
    }

    /// Compresses what is written as `outbound` says.
    pub(crate) fn compress_outbound(&mut self, outbound: crate::deflate::Outbound) {
        self.deflate = Some(outbound);
    }

    /// The count of frames the operating system has taken whole, shared: it keeps counting
    /// after this framing is split and moved.
    pub(crate) fn frames_written(&self) -> FramesWritten {
        self.write.frames_written()
    }
}

/// One frame read from the socket.
#[derive(Debug)]
pub(crate) enum InFrame<'a> {
    /// A whole (unfragmented) text frame's payload, still in the read buffer: the common
    /// frame is routed from where it was read, without a `Bytes` of its own.
    Text(&'a [u8]),
    /// Any other frame, as awc's codec decoded it.
    Other(Frame),
    /// The first (or only) frame of a message compressed with permessage-deflate (RSV1 was
    /// set), as the codec decoded it: a text or binary frame, or the first fragment of one.
    Compressed(Frame),
}

impl<T: AsyncRead + Unpin> LeanFramed<T> {
    /// The next frame. A [`InFrame::Text`] borrows the read buffer; it is consumed on the
    /// next call.
    ///
    /// Where the read side stands, tested in this order on every call:
    ///
    /// | state | when | meaning | next |
    /// | --- | --- | --- | --- |
    /// | lent | `consumed > 0` | the last [`InFrame::Text`] borrows the buffer | its bytes are dropped; go on below |
    /// | failed | `failed` | an error was reported | discard: drop the buffer, read through the stack and drop, at most 64 reads a poll; end of stream or read error → `None`, never a second error |
    /// | buffered | `readable` | the buffer may hold a whole frame: decode before reading | whole text frame, not fragmenting → [`InFrame::Text`]; an incomplete frame claiming over 1 MiB (and the cap) is not decoded yet (`eof` → failed); else the codec: a frame → [`InFrame::Other`]; none and `eof` → ended; none and over cap + header → failed (`Overflow`); none → idle or busy; error → failed |
    /// | ended | `eof` | the stream is over, no whole frame left | `None` on every call |
    /// | idle | no buffer held | quiet: waiting costs no heap | probe read of up to 512 B through the stack, copied into a new buffer → buffered (`eof` if 0 B); pending → idle; error → failed |
    /// | busy | a buffer held | traffic, or part of a frame read | read straight into the buffer, reserving `chunk` when under 4 KiB is spare; a read that fills the room doubles `chunk` (to 64 KiB) → buffered (`eof` if 0 B); pending with the buffer empty → idle, `chunk` back to 4 KiB if the last read was under 512 B; pending → busy; error → failed |
    /// | fragmenting | `fragmenting`, with any of the above | a fragmented message is open | fast path off, so the codec refuses a whole text frame inside it; cleared by the last fragment |
    pub(crate) fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<InFrame<'_>, ProtocolError>>> {
        self.read.drop_consumed();
        if self.read.failed {
            return self.read.discard(&mut self.io, cx);
        }
        loop {
            if self.read.readable {
                self.read.take_rsv1();
                if !self.read.compressed
                    && let Some((start, end)) = self.read.whole_text_frame()
                {
                    self.read.consumed = end;
                    let payload = self.read.buf.get(start..end).unwrap_or_default();
                    return Poll::Ready(Some(Ok(InFrame::Text(payload))));
                }
                let decoded = if self.read.awaiting_large_frame() {
                    if self.read.eof {
                        return self.read.fail(ProtocolError::Io(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            "the stream ended inside a frame",
                        )));
                    }
                    Ok(None)
                } else if self.read.eof {
                    self.codec.decode_eof(&mut self.read.buf)
                } else {
                    self.codec.decode(&mut self.read.buf)
                };
                match decoded {
                    Ok(Some(frame)) => {
                        self.read.track_fragments(&frame);
                        if std::mem::take(&mut self.read.compressed) {
                            return Poll::Ready(Some(Ok(InFrame::Compressed(frame))));
                        }
                        return Poll::Ready(Some(Ok(InFrame::Other(frame))));
                    }
                    Ok(None) if self.read.eof => {
                        // Frames may remain after the end of the stream; then it ends.
                        self.read.readable = false;
                        return Poll::Ready(None);
                    }
                    Ok(None) if self.read.overflowing() => {
                        return self.read.fail(ProtocolError::Overflow);
                    }
                    Ok(None) => self.read.readable = false,
                    Err(error) => return self.read.fail(error),
                }
            } else if self.read.eof {
                return Poll::Ready(None);
            }
            match self.read.read_more(&mut self.io, cx) {
                Poll::Ready(Ok(read)) => {
                    self.read.eof = read == 0;
                    self.read.readable = true;
                }
                Poll::Ready(Err(error)) => return self.read.fail(error.into()),
                Poll::Pending => {
                    self.read.idle();
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> crate::reader::FrameSource for LeanFramed<T> {
    type Frame<'a>
        = Result<InFrame<'a>, ProtocolError>
    where
        T: 'a;

    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::Frame<'_>>> {
        self.next_frame(cx)
    }
}

impl<T: AsyncWrite + Unpin> Sink<Message> for LeanFramed<T> {
    type Error = ProtocolError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        if self.write.has_room() {
            Poll::Ready(Ok(()))
        } else {
            self.poll_flush(cx)
        }
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), ProtocolError> {
        let this = self.get_mut();
        let codec = &mut this.codec;
        let compressed = this.deflate.as_ref().and_then(|deflate| match &message {
            Message::Text(text) => deflate.compress(text.as_bytes()).map(|c| (OPCODE_TEXT, c)),
            Message::Binary(bytes) => deflate.compress(bytes).map(|c| (OPCODE_BINARY, c)),
            _ => None,
        });
        match compressed {
            // The codec frames and masks the compressed bytes as a binary message; its first
            // byte then gets RSV1 and the message's own opcode (RFC 7692 §6.1).
            Some((opcode, payload)) => this.write.push_frame(|buf| {
                let start = buf.len();
                codec.encode(Message::Binary(payload.into()), buf)?;
                if let Some(first) = buf.get_mut(start) {
                    *first = FIN | RSV1 | opcode;
                }
                Ok(())
            }),
            None => this.write.push_frame(|buf| codec.encode(message, buf)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), ProtocolError>> {
        let this = self.get_mut();
        ready!(this.write.poll_write_out(&mut this.io, cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        ready!(self.as_mut().poll_flush(cx))?;
        ready!(Pin::new(&mut self.get_mut().io).poll_shutdown(cx))?;
        Poll::Ready(Ok(()))
    }
}
