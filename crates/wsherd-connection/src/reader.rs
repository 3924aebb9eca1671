//! Drives the socket's read half inside the connection actor, in turns.
//!
//! actix's `add_stream` handles frames one by one and gives the actor no sign of when a run of
//! frames ends. The connection wants that sign: counters, batches for batched subscribers and
//! the shared statistics are settled once per turn instead of once per frame, which is most of
//! what a frame costs beyond decoding it.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;
use futures_util::Stream;

/// Frames handled in one turn before the reader yields to the actor's mailbox and timers.
///
/// actix's own stream driver yields after 16; frames here are cheap to handle and the turn's
/// settling has a fixed cost, so a longer turn is faster while still letting a `Send` or a
/// heartbeat tick through every few microseconds under a flood.
pub(crate) const FRAMES_PER_TURN: usize = 64;

/// What the actor does with the reader's output.
pub(crate) trait FrameSink<Item>: Actor<Context = Context<Self>> {
    /// One frame (or read error).
    fn on_frame(&mut self, item: Item, ctx: &mut Context<Self>);
    /// The turn is over: the socket has nothing more right now (`socket_drained`), or the
    /// turn's budget is spent, or the actor must wait for something or stop (also drained: no
    /// more frames are read for now).
    fn end_of_turn(&mut self, socket_drained: bool, ctx: &mut Context<Self>);
    /// The stream ended.
    fn on_stream_end(&mut self, ctx: &mut Context<Self>);
}

/// The spawned future that reads `stream` into its actor.
pub(crate) struct Reader<S> {
    stream: S,
}

impl<S> Reader<S> {
    pub(crate) fn new(stream: S) -> Self {
        Reader { stream }
    }
}

impl<A, S> ActorFuture<A> for Reader<S>
where
    S: Stream + Unpin,
    A: FrameSink<S::Item>,
{
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        let mut handled = 0;
        loop {
            match Pin::new(&mut this.stream).poll_next(task) {
                Poll::Ready(Some(item)) => {
                    act.on_frame(item, ctx);
                    handled += 1;
                    if ctx.waiting() || ctx.state() != ActorState::Running {
                        act.end_of_turn(true, ctx);
                        return Poll::Pending;
                    }
                    if handled == FRAMES_PER_TURN {
                        act.end_of_turn(false, ctx);
                        task.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(None) => {
                    act.end_of_turn(true, ctx);
                    act.on_stream_end(ctx);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if handled > 0 {
                        act.end_of_turn(true, ctx);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
