//! Read and write halves of one socket for a single actor.
//!
//! `StreamExt::split` guards the socket with a `BiLock` (atomics and a waker slot per poll)
//! because its halves may live on different threads. A connection's halves never leave its
//! actor, whose context polls both from one task, so a shared `RefCell` is enough. The write
//! half borrows the socket for one poll at a time; the read half (see `Reader`) for one turn
//! of frames, during which the actor only queues writes (they run in a spawned future, after
//! the turn).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use awc::error::WsProtocolError;
use futures_util::Sink;

/// Splits `io` into a reading half and a sink half that share it.
pub(crate) fn split_local<S>(io: S) -> (LocalSink<S>, LocalSource<S>) {
    let shared = Rc::new(RefCell::new(io));
    (LocalSink(Rc::clone(&shared)), LocalSource(shared))
}

/// The reading half.
pub(crate) struct LocalSource<S>(pub(crate) Rc<RefCell<S>>);

/// The writing half.
pub(crate) struct LocalSink<S>(Rc<RefCell<S>>);

/// Runs `poll` on the shared socket. The reader holds the socket for a turn, and the write
/// half is only polled from its own future, after the turn; were the socket ever busy here,
/// answering `Pending` after a wake-up retries instead of panicking.
fn with_socket<S, T>(
    shared: &RefCell<S>,
    cx: &mut Context<'_>,
    poll: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<T>,
) -> Poll<T>
where
    S: Unpin,
{
    match shared.try_borrow_mut() {
        Ok(mut socket) => poll(Pin::new(&mut *socket), cx),
        Err(_) => {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl<S, M> Sink<M> for LocalSink<S>
where
    S: Sink<M, Error = WsProtocolError> + Unpin,
{
    type Error = WsProtocolError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        with_socket(&self.0, cx, |socket, cx| socket.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<(), S::Error> {
        match self.0.try_borrow_mut() {
            Ok(mut socket) => Pin::new(&mut *socket).start_send(item),
            // `start_send` is only called after `poll_ready` said yes, from the same task, so
            // the socket is free here; were it not, the item would be lost without a word.
            Err(_) => Err(WsProtocolError::Io(std::io::Error::other(
                "socket busy in start_send",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        with_socket(&self.0, cx, |socket, cx| socket.poll_flush(cx))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        with_socket(&self.0, cx, |socket, cx| socket.poll_close(cx))
    }
}
