//! The write side of [`LeanFramed`](super::LeanFramed): encoded frames waiting for the socket,
//! in a buffer held only until they are written.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_codec::AsyncWrite;
use bytes::{Buf, BytesMut};

/// Encoded bytes beyond which the sink asks for a flush before taking more.
const WRITE_HIGH: usize = 64 * 1024;

/// Encoded frames not yet written.
pub(super) struct WriteState {
    /// Encoded bytes not yet written; no capacity at all once everything has been.
    pub(super) buf: BytesMut,
}

impl WriteState {
    /// Whether another message may be encoded before a flush.
    #[inline]
    pub(super) fn has_room(&self) -> bool {
        self.buf.len() < WRITE_HIGH
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
        }
        if self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}
