//! A way to cut a connection from outside its dispatcher: a duplicate of its socket.
//!
//! actix-http polls a response body only while the connection's write buffer has room, so
//! the body of a client that stops reading is never polled again and cannot end itself.
//! Shutting the socket down makes the dispatcher see the end and drop the connection.

use std::any::Any;
use std::os::fd::AsFd;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// A duplicate of one connection's socket (kept in the connection's data).
#[derive(Clone)]
pub(crate) struct SocketHandle(Arc<socket2::Socket>);

impl SocketHandle {
    /// Shuts both directions: the connection ends at once (whatever its buffers hold).
    pub(crate) fn cut(&self) {
        let _ = self.0.shutdown(std::net::Shutdown::Both);
    }
}

/// For `HttpServer::on_connect`: remembers each connection's socket, plain or TLS, so that
/// an `/api/events` client that stops reading can be cut at once rather than left open with
/// nothing more sent. [`serve`](crate::serve) sets it; an application that mounts
/// [`routes`](crate::routes) into its own server sets it itself:
/// `HttpServer::new(…).on_connect(wsherd_server::on_connect)`. It costs one file descriptor
/// per connection (a duplicate), closed with the connection.
pub fn on_connect(io: &dyn Any, extensions: &mut Extensions) {
    let tcp = io.downcast_ref::<TcpStream>().or_else(|| {
        io.downcast_ref::<TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0)
    });
    if let Some(tcp) = tcp
        && let Ok(fd) = tcp.as_fd().try_clone_to_owned()
    {
        extensions.insert(SocketHandle(Arc::new(socket2::Socket::from(fd))));
    }
}
