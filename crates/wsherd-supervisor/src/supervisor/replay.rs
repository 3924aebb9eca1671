//! The on-open replay: configured on-open messages, remembered ones and the hooks', written on
//! every fresh socket one after another, waiting for room, ahead of anything queued.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;
use wsherd_connection::{Close, WriteError, WriteOnOpen};
use wsherd_protocol::{CloseCode, Outbound};

use super::Supervisor;

/// How soon a message refused by a full write buffer is tried again.
pub(super) const FULL_RETRY: Duration = Duration::from_millis(20);

impl Supervisor {
    /// Starts writing the replay on a socket that just opened. It must be written within the
    /// handshake timeout (the replay is part of opening), or the open is a failed attempt.
    pub(super) fn start_replay(&mut self, ctx: &mut Context<Self>) {
        self.replay_deadline = Instant::now().checked_add(self.connection_config.handshake_timeout);
        if self.spec.on_open_files.is_empty() {
            let on_open = self.spec.on_open.clone();
            return self.replay_with(on_open, ctx);
        }
        // Messages kept in files are read as the files are now, off the arbiter; meanwhile the
        // replay counts as started, so nothing queued overtakes it.
        self.replay_writing = true;
        let life = self.lives_started;
        let paths = self
            .spec
            .on_open_files
            .iter()
            .map(|(_, p)| p.clone())
            .collect();
        let read = wsherd_connection::read_secret_files(paths);
        ctx.spawn(read.into_actor(self).map(move |values, act, ctx| {
            if life != act.lives_started {
                return; // that socket is gone; the new one reads the files again
            }
            act.replay_writing = false;
            let mut on_open = act.spec.on_open.clone();
            for ((index, _), value) in act.spec.on_open_files.iter().zip(values) {
                match value {
                    Ok(text) => {
                        if let Some(slot) = on_open.get_mut(*index) {
                            *slot = Outbound::Text(text);
                        }
                    }
                    Err(reason) => {
                        return act
                            .replay_failed_with(format!("on-open message unavailable: {reason}"));
                    }
                }
            }
            act.replay_with(on_open, ctx);
        }));
    }

    fn replay_with(&mut self, on_open: Vec<Outbound>, ctx: &mut Context<Self>) {
        let (remembered, hooks) = match &self.added {
            Some(added) => (&added.remembered[..], &added.hooks[..]),
            None => (&[][..], &[][..]),
        };
        self.replay = on_open
            .into_iter()
            .chain(remembered.iter().cloned())
            .chain(hooks.iter().flat_map(|hook| hook()))
            .collect();
        self.replay_step(ctx);
    }

    /// Adds one message to this socket's replay (a subscription remembered while open).
    pub(super) fn replay_now(&mut self, message: Outbound, ctx: &mut Context<Self>) {
        if !self.is_replaying() {
            self.replay_deadline =
                Instant::now().checked_add(self.connection_config.handshake_timeout);
        }
        self.replay.push_back(message);
        self.replay_step(ctx);
    }

    /// Whether replayed messages are still to be written: queued ones wait behind them.
    pub(super) fn is_replaying(&self) -> bool {
        self.replay_writing || !self.replay.is_empty()
    }

    /// Forgets the replay of a socket that ended.
    pub(super) fn end_replay(&mut self) {
        self.replay.clear();
        self.replay_writing = false;
        self.replay_deadline = None;
    }

    /// Writes the next replayed message, one at a time so that order holds and a full write
    /// buffer is waited out instead of dropping what does not fit.
    fn replay_step(&mut self, ctx: &mut Context<Self>) {
        if self.replay_writing {
            return;
        }
        let Some(connection) = self.connection.clone() else {
            self.end_replay();
            return;
        };
        if !self.replay.is_empty() && !self.paced(ctx, Self::replay_step) {
            return;
        }
        let Some(message) = self.replay.pop_front() else {
            // Written: the socket's remaining life (usually long) holds no replay storage.
            self.replay = VecDeque::new();
            self.replay_deadline = None;
            self.pump(ctx);
            return;
        };
        self.replay_writing = true;
        let life = self.lives_started;
        let write = connection.send(WriteOnOpen(message));
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            if life != act.lives_started {
                return; // that socket is gone; the new one has a replay of its own
            }
            act.replay_writing = false;
            match result {
                Ok(Ok(())) => act.replay_step(ctx),
                Ok(Err(WriteError::Full(message))) => {
                    act.replay.push_front(message);
                    if act.replay_deadline.is_some_and(|at| Instant::now() >= at) {
                        act.replay_failed();
                    } else {
                        ctx.run_later(FULL_RETRY, move |act, ctx| {
                            if life == act.lives_started {
                                act.replay_step(ctx);
                            }
                        });
                    }
                }
                // The socket is ending: its end decides what follows, and the next socket
                // replays everything again.
                Ok(Err(_)) | Err(_) => act.end_replay(),
            }
        }));
    }

    /// The peer did not take the replay in time: close, and count the life as a failed attempt.
    fn replay_failed(&mut self) {
        let left = self.replay.len();
        let timeout = self.connection_config.handshake_timeout;
        self.replay_failed_with(format!(
            "on-open replay not written within {timeout:?} ({left} messages left): the peer is not reading"
        ));
    }

    /// The replay cannot be written: close with `reason`, a failed attempt.
    fn replay_failed_with(&mut self, reason: String) {
        self.end_replay();
        self.open_failed = true;
        if let Some(connection) = &self.connection {
            connection.do_send(Close {
                code: CloseCode::NORMAL,
                reason,
            });
        }
    }
}
