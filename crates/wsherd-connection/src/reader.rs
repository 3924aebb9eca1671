//! Drives the socket's read half inside the connection actor, in turns.
//!
//! actix's `add_stream` handles frames one by one and gives the actor no sign of when a run of
//! frames ends. The connection wants that sign: counters, batches for batched subscribers and
//! the shared statistics are settled once per turn instead of once per frame, which is most of
//! what a frame costs beyond decoding it.

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use actix::prelude::*;

use crate::split::LocalSource;

/// Frames handled in one turn before the reader yields to the actor's mailbox and timers.
///
/// actix's own stream driver yields after 16; frames here are cheap to handle and the turn's
/// settling has a fixed cost, so a longer turn is faster while still letting a `Send` or a
/// heartbeat tick through every few microseconds under a flood.
pub(crate) const FRAMES_PER_TURN: usize = 64;

/// Where frames come from: a socket that may lend each frame from its read buffer.
pub(crate) trait FrameSource {
    /// One frame (or read error), possibly borrowing the source.
    type Frame<'a>
    where
        Self: 'a;

    /// The next frame; `None` at the end of the stream.
    fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Frame<'_>>>;
}

/// What the actor does with the reader's output.
pub(crate) trait FrameSink<S: FrameSource>: Actor<Context = Context<Self>> {
    /// Whether the actor wants no frames for now (a full subscriber); the reader parks until
    /// woken through [`FrameSink::park_reader`]'s waker.
    fn reads_paused(&self) -> bool;
    /// Keeps the reader's waker, to wake it when reads resume.
    fn park_reader(&mut self, waker: &std::task::Waker);
    /// One frame (or read error).
    fn on_frame(&mut self, frame: S::Frame<'_>, ctx: &mut Context<Self>);
    /// The turn is over: the socket has nothing more right now (`socket_drained`), or the
    /// turn's budget is spent, or the actor must wait for something or stop (also drained: no
    /// more frames are read for now).
    fn end_of_turn(&mut self, socket_drained: bool, ctx: &mut Context<Self>);
    /// The stream ended.
    fn on_stream_end(&mut self, ctx: &mut Context<Self>);
}

/// The spawned future that reads `source` into its actor.
pub(crate) struct Reader<S> {
    source: LocalSource<S>,
    /// The last turn ended on its budget, so the actor has not yet been told that the socket
    /// drained: the next poll that finds nothing must say so even if it handled no frame.
    drain_owed: bool,
}

impl<S> Reader<S> {
    pub(crate) fn new(source: LocalSource<S>) -> Self {
        Reader {
            source,
            drain_owed: false,
        }
    }
}

impl<A, S> ActorFuture<A> for Reader<S>
where
    S: FrameSource,
    A: FrameSink<S>,
{
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut A,
        ctx: &mut Context<A>,
        task: &mut TaskContext<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        if act.reads_paused() {
            act.park_reader(task.waker());
            return Poll::Pending;
        }
        // Held for the turn: frames may borrow the socket's buffer while the actor handles
        // them. The write half borrows it only from its own future, never during a turn.
        let Ok(mut source) = this.source.0.try_borrow_mut() else {
            task.waker().wake_by_ref();
            return Poll::Pending;
        };
        let mut handled = 0;
        loop {
            match source.poll_frame(task) {
                Poll::Ready(Some(item)) => {
                    act.on_frame(item, ctx);
                    handled += 1;
                    if act.reads_paused() || ctx.waiting() || ctx.state() != ActorState::Running {
                        this.drain_owed = false;
                        act.end_of_turn(true, ctx);
                        if act.reads_paused() {
                            act.park_reader(task.waker());
                        }
                        return Poll::Pending;
                    }
                    if handled == FRAMES_PER_TURN {
                        this.drain_owed = true;
                        act.end_of_turn(false, ctx);
                        task.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Poll::Ready(None) => {
                    this.drain_owed = false;
                    act.end_of_turn(true, ctx);
                    act.on_stream_end(ctx);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    if handled > 0 || std::mem::take(&mut this.drain_owed) {
                        act.end_of_turn(true, ctx);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::StreamExt;
    use tokio::sync::mpsc;

    use super::*;

    /// Frames from a stream of numbers.
    struct Numbers(Box<dyn futures_util::Stream<Item = u32> + Unpin>);

    impl FrameSource for Numbers {
        type Frame<'a> = u32;

        fn poll_frame(&mut self, cx: &mut TaskContext<'_>) -> Poll<Option<u32>> {
            self.0.poll_next_unpin(cx)
        }
    }

    /// Records what the reader tells it.
    struct Probe {
        turns: mpsc::UnboundedSender<(usize, bool)>,
        frames: usize,
        source: Option<Numbers>,
    }

    impl Actor for Probe {
        type Context = Context<Self>;

        fn started(&mut self, ctx: &mut Context<Self>) {
            if let Some(source) = self.source.take() {
                let (_, source) = crate::split::split_local(source);
                ctx.spawn(Reader::new(source));
            }
        }
    }

    impl FrameSink<Numbers> for Probe {
        fn reads_paused(&self) -> bool {
            false
        }
        fn park_reader(&mut self, _: &std::task::Waker) {}
        fn on_frame(&mut self, _: u32, _: &mut Context<Self>) {
            self.frames += 1;
        }
        fn end_of_turn(&mut self, socket_drained: bool, _: &mut Context<Self>) {
            let _ = self
                .turns
                .send((std::mem::take(&mut self.frames), socket_drained));
        }
        fn on_stream_end(&mut self, _: &mut Context<Self>) {}
    }

    /// Starts a probe on `frames` frames followed by a socket that stays quiet.
    fn probe(frames: u32) -> mpsc::UnboundedReceiver<(usize, bool)> {
        let (turns, seen) = mpsc::unbounded_channel();
        let stream = futures_util::stream::iter(0..frames).chain(futures_util::stream::pending());
        Probe {
            turns,
            frames: 0,
            source: Some(Numbers(Box::new(stream))),
        }
        .start();
        seen
    }

    async fn next_turn(seen: &mut mpsc::UnboundedReceiver<(usize, bool)>) -> (usize, bool) {
        // Generous: a missing turn end is the failure, not a slow machine.
        tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .ok()
            .flatten()
            .unwrap_or((usize::MAX, false))
    }

    #[actix_rt::test]
    async fn a_burst_of_whole_turns_still_ends_drained() {
        // 128 frames fill two turns exactly; the poll after them handles none but must still
        // say that the socket drained, or batches would wait for the next frame.
        let mut seen = probe(2 * FRAMES_PER_TURN as u32);
        assert_eq!(next_turn(&mut seen).await, (FRAMES_PER_TURN, false));
        assert_eq!(next_turn(&mut seen).await, (FRAMES_PER_TURN, false));
        assert_eq!(next_turn(&mut seen).await, (0, true));
    }

    #[actix_rt::test]
    async fn a_short_burst_ends_drained() {
        let mut seen = probe(5);
        assert_eq!(next_turn(&mut seen).await, (5, true));
    }
}
