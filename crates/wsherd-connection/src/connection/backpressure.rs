//! Backpressure without freezing: a full subscriber pauses reading the socket, never the
//! actor. Timers (heartbeat, close timeout), writes, Close, the mailbox and stop keep working
//! while the held deliveries wait, and `max_stall` bounds the wait. A write the peer never
//! takes is bounded the same way by `write_timeout`.
//!
//! While wsherd itself holds the reads, the peer's Pongs (and data) sit unread in the socket,
//! so the dead-peer clock is paused: a stalled subscriber is not the peer's fault. What bounds
//! such a life is `max_stall`.

use std::task::Waker;
use std::time::Instant;

use actix::prelude::*;

use super::Connection;
use crate::event::EndReason;
use crate::stats::ConnectionStats;

/// Where the read side stands with respect to held deliveries.
#[derive(Debug, Default)]
pub(super) struct Stall {
    /// When reads were paused; `None` while reading.
    since: Option<Instant>,
    /// The reader, parked until reads resume.
    reader: Option<Waker>,
    /// The future that drives held deliveries is running.
    draining: bool,
    /// Counts pauses, so that a stall timer knows whether its pause is still the current one.
    pauses: u64,
    /// When the write on its way started, if one is.
    write_since: Option<Instant>,
    /// A write watchdog is armed.
    write_watch: bool,
}

impl Connection {
    /// Whether reads are paused for a full subscriber.
    pub(super) fn reads_paused(&self) -> bool {
        self.stall.since.is_some()
    }

    /// The reader waits here while reads are paused.
    pub(super) fn park_reader(&mut self, waker: &Waker) {
        self.stall.reader = Some(waker.clone());
    }

    /// After routing: when deliveries are held for a full subscriber, pause reads until every
    /// one of them is taken (the socket's TCP window then slows the peer instead of our memory
    /// growing), within `max_stall`.
    pub(super) fn pause_for_held(&mut self, ctx: &mut Context<Self>) {
        if self.report.held() == 0 {
            return;
        }
        if self.stall.since.is_none() {
            self.stall.since = Some(Instant::now());
            self.report_held(true);
            self.stall.pauses += 1;
            let pause = self.stall.pauses;
            let limit = self.config.max_stall;
            ctx.run_later(limit, move |act, ctx| {
                if act.stall.pauses == pause && act.reads_paused() {
                    act.stalled(ctx);
                }
            });
        }
        if !self.stall.draining {
            self.stall.draining = true;
            ctx.spawn(DrainHeld);
        }
    }

    fn resume_reads(&mut self) {
        self.stall.draining = false;
        self.stall.since = None;
        self.report_held(false);
        if let Some(reader) = self.stall.reader.take() {
            reader.wake();
        }
    }

    /// The subscriber took nothing for `max_stall`: give up its deliveries and end the life.
    fn stalled(&mut self, ctx: &mut Context<Self>) {
        let held = self.report.drop_held();
        ConnectionStats::add(&self.stats.dropped_full, held as u64);
        let after = self.config.max_stall;
        self.span
            .in_scope(|| tracing::warn!(?after, held, "subscriber stalled"));
        self.abandon(EndReason::SubscriberStalled { after }, ctx);
    }

    /// A write is on its way (no timer yet: an idle socket's Pings complete at once).
    pub(super) fn write_started(&mut self) {
        self.stall.write_since = Some(Instant::now());
    }

    /// More is waiting behind the write on its way: from now on, watch that the peer takes it
    /// within `write_timeout`. Only a socket whose writes pile up pays for the timer.
    pub(super) fn watch_pending_write(&mut self, ctx: &mut Context<Self>) {
        if let Some(since) = self.stall.write_since
            && !self.stall.write_watch
        {
            self.stall.write_watch = true;
            let left = self.config.write_timeout.saturating_sub(since.elapsed());
            self.watch_write(left, ctx);
        }
    }

    /// The write on its way is done.
    pub(super) fn write_done(&mut self) {
        self.stall.write_since = None;
    }

    /// One timer per `write_timeout` at most, however many writes: it looks at the write on
    /// its way when it fires, and sleeps again for what that write has left.
    fn watch_write(&mut self, wait: std::time::Duration, ctx: &mut Context<Self>) {
        ctx.run_later(wait, |act, ctx| {
            let limit = act.config.write_timeout;
            match act.stall.write_since {
                None => act.stall.write_watch = false,
                Some(since) if since.elapsed() >= limit => {
                    act.stall.write_watch = false;
                    // Nothing more can be written, not even a Close: end at once.
                    act.end
                        .get_or_insert_with(|| Box::new(EndReason::WriteStalled { after: limit }));
                    ctx.stop();
                }
                Some(since) => {
                    let left = limit.saturating_sub(since.elapsed());
                    act.watch_write(left, ctx);
                }
            }
        });
    }
}

/// Drives the held deliveries, oldest first, and resumes reads when all were taken.
struct DrainHeld;

impl ActorFuture<Connection> for DrainHeld {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        act: &mut Connection,
        _: &mut Context<Connection>,
        task: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        match act.report.poll_unblocked(task) {
            std::task::Poll::Ready(()) => {
                act.resume_reads();
                std::task::Poll::Ready(())
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}
