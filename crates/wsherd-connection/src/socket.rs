//! What a connection's frames travel over: a socket it dialed, or one a server accepted.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_codec::{AsyncRead, AsyncWrite, ReadBuf};
use awc::BoxedSocket;

use crate::accepted::AcceptedSocket;

/// One connection's byte stream. An enum rather than a box: the dialed socket is boxed by
/// awc already, and a second indirection would be paid on every read and write.
pub(crate) enum Socket {
    /// Dialed by this connection (through awc's upgrade).
    Dialed(BoxedSocket),
    /// Accepted by a server and handed over ([`Connection::accepted`](crate::Connection::accepted)).
    Accepted(AcceptedSocket),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Dialed(socket) => Pin::new(socket).poll_read(cx, buf),
            Socket::Accepted(socket) => Pin::new(socket).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Dialed(socket) => Pin::new(socket).poll_write(cx, buf),
            Socket::Accepted(socket) => Pin::new(socket).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Dialed(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            Socket::Accepted(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Dialed(socket) => socket.is_write_vectored(),
            Socket::Accepted(socket) => socket.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Dialed(socket) => Pin::new(socket).poll_flush(cx),
            Socket::Accepted(socket) => Pin::new(socket).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Dialed(socket) => Pin::new(socket).poll_shutdown(cx),
            Socket::Accepted(socket) => Pin::new(socket).poll_shutdown(cx),
        }
    }
}
