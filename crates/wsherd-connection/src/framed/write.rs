//! The write side of [`LeanFramed`](super::LeanFramed): encoded frames waiting for the socket,
//! in a buffer held only until they are written, and a count of the frames the operating
//! system has taken whole.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use actix_codec::AsyncWrite;
use bytes::{Buf, BytesMut};

/// Encoded bytes beyond which the sink asks for a flush before taking more.
const WRITE_HIGH: usize = 64 * 1024;

/// How many frames the operating system has taken whole, counted from the socket's first.
///
/// Shared with the connection, which keeps every caller frame until this count passes it: a
/// socket that dies hands back exactly the frames whose last byte never reached the OS.
#[derive(Debug, Clone, Default)]
pub(crate) struct FramesWritten(Rc<Cell<u64>>);

impl FramesWritten {
    /// Frames taken whole so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.get()
    }

    fn add(&self, frames: u64) {
        self.0.set(self.0.get() + frames);
    }
}

/// Encoded frames not yet written.
pub(super) struct WriteState {
    /// Encoded bytes not yet written; no capacity at all once everything has been.
    pub(super) buf: BytesMut,
    /// Bytes ever encoded and ever written: positions in the socket's outbound byte stream.
    encoded: u64,
    written: u64,
    /// Where each frame not yet written whole ends, in that stream.
    ends: VecDeque<u64>,
    frames_written: FramesWritten,
}

impl WriteState {
    /// A write side holding `buf`: bytes awc encoded before the handover, if any, which are
    /// written first but are none of the connection's frames.
    pub(super) fn new(buf: BytesMut) -> Self {
        WriteState {
            encoded: buf.len() as u64,
            buf: if buf.is_empty() { BytesMut::new() } else { buf },
            written: 0,
            ends: VecDeque::new(),
            frames_written: FramesWritten::default(),
        }
    }

    /// The count of frames taken whole, to share.
    pub(super) fn frames_written(&self) -> FramesWritten {
        self.frames_written.clone()
    }

    /// Whether another message may be encoded before a flush.
    #[inline]
    pub(super) fn has_room(&self) -> bool {
        self.buf.len() < WRITE_HIGH
    }

    /// Encodes one frame with `encode` and remembers where it ends.
    #[inline]
    pub(super) fn push_frame<E>(
        &mut self,
        encode: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<(), E> {
        let before = self.buf.len();
        let result = encode(&mut self.buf);
        let added = self.buf.len().saturating_sub(before) as u64;
        if added > 0 {
            self.encoded += added;
            self.ends.push_back(self.encoded);
        }
        result
    }

    /// Writes everything buffered to `io` (without flushing `io`), then gives the buffer back.
    pub(super) fn poll_write_out<T: AsyncWrite + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() {
            let written = ready!(Pin::new(&mut *io).poll_write(cx, &self.buf))?;
            if written == 0 {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the socket took no bytes",
                )));
            }
            self.buf.advance(written);
            self.written += written as u64;
            self.count_whole_frames();
        }
        if self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        if self.ends.is_empty() && self.ends.capacity() > 0 {
            self.ends = VecDeque::new();
        }
        Poll::Ready(Ok(()))
    }

    fn count_whole_frames(&mut self) {
        let mut whole = 0;
        while self.ends.front().is_some_and(|&end| end <= self.written) {
            self.ends.pop_front();
            whole += 1;
        }
        if whole > 0 {
            self.frames_written.add(whole);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A socket that takes at most `room` bytes in all, then is full.
    struct Limited {
        room: usize,
        taken: Vec<u8>,
    }

    impl AsyncWrite for Limited {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.room - self.taken.len());
            if n == 0 {
                return Poll::Pending;
            }
            self.taken.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn frame(state: &mut WriteState, bytes: &[u8]) {
        let _ = state.push_frame(|buf| {
            buf.extend_from_slice(bytes);
            Ok::<(), ()>(())
        });
    }

    #[test]
    fn only_frames_whose_last_byte_the_socket_took_count_as_written() {
        let mut state = WriteState::new(BytesMut::new());
        let written = state.frames_written();
        frame(&mut state, &[1; 10]);
        frame(&mut state, &[2; 10]);
        frame(&mut state, &[3; 10]);
        // Room for the first frame and half of the second.
        let mut io = Limited {
            room: 15,
            taken: Vec::new(),
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(state.poll_write_out(&mut io, &mut cx).is_pending());
        assert_eq!(written.get(), 1);
        io.room = 30;
        assert!(state.poll_write_out(&mut io, &mut cx).is_ready());
        assert_eq!(written.get(), 3);
        assert_eq!(io.taken.len(), 30);
    }

    #[test]
    fn bytes_left_from_the_handshake_go_first_and_are_none_of_our_frames() {
        let mut state = WriteState::new(BytesMut::from(&[9u8; 4][..]));
        let written = state.frames_written();
        frame(&mut state, &[1; 6]);
        let mut io = Limited {
            room: 8,
            taken: Vec::new(),
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(state.poll_write_out(&mut io, &mut cx).is_pending());
        assert_eq!(written.get(), 0, "our frame is only half written");
        io.room = 10;
        assert!(state.poll_write_out(&mut io, &mut cx).is_ready());
        assert_eq!(written.get(), 1);
        assert_eq!(&io.taken[..4], &[9; 4]);
    }
}
