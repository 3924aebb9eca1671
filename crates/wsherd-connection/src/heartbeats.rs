//! The heartbeat actor: one per arbiter, keeping every socket on it honest.
//!
//! A socket registers with [`Watch`] and, from then on, only raises flags in its [`Liveness`]
//! (a frame arrived, a data message arrived, wsherd holds its reads) once per read turn. The
//! actor runs each socket's [`Heartbeat`] policy at the instants the policy asks for, from one
//! timer for the whole arbiter, and tells the socket what to do with a [`Beat`]: ping, send the
//! application ping, or give up on a dead peer. It runs whatever the socket is doing: a socket
//! whose reads are paused for a slow subscriber is still watched (its clock stands still while
//! wsherd holds its reads, see `held`), and a socket that stopped answering is still declared
//! dead on time.
//!
//! One actor per arbiter instead of one per socket: 10,000 idle sockets cost one timer instead
//! of 10,000 (figures in the crate's CHANGES). Anything that holds a socket (an outbound
//! connection, an inbound session) can be watched.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use actix::WeakRecipient;
use actix::prelude::*;
use bytes::Bytes;
use wsherd_protocol::{DeadPeer, Heartbeat, HeartbeatAction, HeartbeatSpec};

use crate::stats::ConnectionStats;

/// What a watched socket saw since the heartbeat last looked; raised by the socket, taken by
/// the heartbeat when it next looks (answers keep their arrival time, so a round trip is
/// measured exactly however late that is). No message per frame or per Pong.
#[derive(Debug, Default)]
pub struct Liveness {
    frame: AtomicBool,
    data: AtomicBool,
    held: AtomicBool,
    /// The latest answer to a ping, with when it arrived.
    answer: Mutex<Option<(Answer, Instant)>>,
}

/// An answer to a ping.
#[derive(Debug)]
enum Answer {
    Pong(Bytes),
    AppReply,
}

impl Liveness {
    /// A Pong with this payload arrived (any Pong also counts as a frame).
    pub fn pong(&self, payload: Bytes) {
        self.answered(Answer::Pong(payload));
    }

    /// The application ping's reply arrived.
    pub fn app_reply(&self) {
        self.answered(Answer::AppReply);
    }

    fn answered(&self, answer: Answer) {
        // A poisoned lock only means a panic elsewhere; the slot itself is always valid.
        *self.answer.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((answer, Instant::now()));
    }

    fn take_answer(&self) -> Option<(Answer, Instant)> {
        self.answer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// A frame of any kind arrived.
    pub fn saw_frame(&self) {
        self.frame.store(true, Ordering::Relaxed);
    }

    /// A data message arrived (the idle watchdog's signal).
    pub fn saw_data(&self) {
        self.data.store(true, Ordering::Relaxed);
    }

    /// wsherd holds (or no longer holds) the socket's reads: while it does, the peer's answers
    /// sit unread, so the peer is not blamed for silence.
    pub fn set_held(&self, held: bool) {
        self.held.store(held, Ordering::Relaxed);
    }
}

/// Identifies one watched socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(u64);

impl WatchId {
    /// A fresh id, unique in this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        WatchId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What the heartbeat tells a watched socket to do.
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
#[non_exhaustive]
pub enum Beat {
    /// Send a protocol Ping with this payload.
    Ping(Bytes),
    /// Send the application ping (a text message); its reply is to be reported with
    /// [`Liveness::app_reply`].
    AppPing(String),
    /// The peer is dead: end the socket.
    Dead(DeadPeer),
}

/// Starts watching a socket.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct Watch {
    /// The socket's id, for [`Unwatch`].
    pub id: WatchId,
    /// Its heartbeat settings.
    pub spec: HeartbeatSpec,
    /// The flags the socket raises.
    pub liveness: Arc<Liveness>,
    /// Where measured round trips go.
    pub stats: Arc<ConnectionStats>,
    /// Where [`Beat`]s go.
    pub to: Recipient<Beat>,
}

/// Stops watching a socket (it is closing or gone).
#[derive(Debug, Clone, Copy, actix::Message)]
#[rtype(result = "()")]
pub struct Unwatch(pub WatchId);

struct Watched {
    heartbeat: Heartbeat,
    liveness: Arc<Liveness>,
    stats: Arc<ConnectionStats>,
    /// Weak: a strong sender costs two allocations per socket, and a socket that is gone
    /// simply stops being told anything.
    to: WeakRecipient<Beat>,
    /// When the policy wants to be asked again; heap entries for other instants are stale.
    wake: Instant,
}

/// The heartbeat actor of one arbiter (see the module docs). Get it with
/// [`Heartbeats::for_this_arbiter`] from inside the arbiter.
#[derive(Default)]
pub struct Heartbeats {
    /// Boxed: a map keeps room for up to twice its entries, and an entry is a few hundred bytes
    /// (the heartbeat's clocks and settings), so inline entries cost an idle socket ~200 bytes
    /// more on average than a box.
    watched: HashMap<WatchId, Box<Watched>>,
    /// Every watched socket's next wake, soonest first (stale entries are skipped).
    wakes: BinaryHeap<Reverse<(Instant, u64)>>,
    /// The one timer, and when it fires.
    timer: Option<(Instant, SpawnHandle)>,
}

impl Heartbeats {
    /// Sockets watched now.
    pub fn watched(&self) -> usize {
        self.watched.len()
    }

    fn schedule(&mut self, id: WatchId, wake: Instant, ctx: &mut Context<Self>) {
        if let Some(watched) = self.watched.get_mut(&id) {
            watched.wake = wake;
            self.wakes.push(Reverse((wake, id.0)));
        }
        self.arm(ctx);
    }

    /// Keeps the one timer set for the soonest wake.
    fn arm(&mut self, ctx: &mut Context<Self>) {
        let Some(Reverse((soonest, _))) = self.wakes.peek().copied() else {
            return;
        };
        if let Some((at, handle)) = self.timer {
            if at <= soonest {
                return;
            }
            ctx.cancel_future(handle);
        }
        let wait = soonest.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(wait, |act, ctx| {
            act.timer = None;
            act.tick(ctx);
        });
        self.timer = Some((soonest, handle));
    }

    /// Runs the policy of every socket that is due.
    fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        while let Some(Reverse((wake, id))) = self.wakes.peek().copied() {
            if wake > now {
                break;
            }
            self.wakes.pop();
            let id = WatchId(id);
            let Some(watched) = self.watched.get_mut(&id) else {
                continue;
            };
            if watched.wake != wake {
                continue; // rescheduled since
            }
            if let Some((answer, at)) = watched.liveness.take_answer() {
                let rtt = match answer {
                    Answer::Pong(payload) => watched.heartbeat.on_pong(&payload, at),
                    Answer::AppReply => watched.heartbeat.on_app_reply(at),
                };
                if let Some(rtt) = rtt {
                    watched.stats.set_rtt(rtt);
                }
            }
            let held = watched.liveness.held.load(Ordering::Relaxed);
            if watched.liveness.data.swap(false, Ordering::Relaxed) || held {
                watched.heartbeat.on_data(now);
            }
            if watched.liveness.frame.swap(false, Ordering::Relaxed) || held {
                watched.heartbeat.on_frame(now);
            }
            let (action, next) = watched.heartbeat.poll(now);
            // Beats are one per interval per socket, never driven by a peer: an unbounded
            // send cannot be filled by anyone, and losing one would leave a socket unwatched.
            let beat = match action {
                None => None,
                Some(HeartbeatAction::Ping(payload)) => Some(Beat::Ping(payload)),
                Some(HeartbeatAction::AppPing(text)) => Some(Beat::AppPing(text)),
                Some(HeartbeatAction::Dead(why)) => Some(Beat::Dead(why)),
            };
            let dead = matches!(beat, Some(Beat::Dead(_)));
            if let Some(beat) = beat
                && let Some(to) = watched.to.upgrade()
            {
                to.do_send(beat);
            }
            if dead {
                self.watched.remove(&id);
            } else {
                watched.wake = next;
                self.wakes.push(Reverse((next, id.0)));
            }
        }
        if self.watched.is_empty() {
            self.wakes.clear();
        }
        self.arm(ctx);
    }
}

impl Actor for Heartbeats {
    type Context = Context<Self>;
}

thread_local! {
    /// This thread's heartbeat: an arbiter is one thread.
    static THIS_ARBITER: std::cell::RefCell<Option<Addr<Heartbeats>>> =
        const { std::cell::RefCell::new(None) };
}

impl Heartbeats {
    /// The heartbeat of the arbiter this is called on, started the first time. (actix's own
    /// arbiter registry would hand back the dead address of an earlier system that ran on the
    /// same thread; this one starts a new heartbeat then.)
    pub fn for_this_arbiter() -> Addr<Heartbeats> {
        THIS_ARBITER.with(|slot| {
            let mut slot = slot.borrow_mut();
            match &*slot {
                Some(addr) if addr.connected() => addr.clone(),
                _ => {
                    let addr = Heartbeats::default().start();
                    *slot = Some(addr.clone());
                    addr
                }
            }
        })
    }

    /// Stops watching socket `id` on this arbiter's heartbeat, if it still runs (one that has
    /// stopped watches nothing; none is started for it).
    pub fn unwatch_here(id: WatchId) {
        // `try_with`: a connection dropped while its thread winds down finds the slot gone,
        // and its heartbeat with it.
        let _ = THIS_ARBITER.try_with(|slot| {
            if let Ok(slot) = slot.try_borrow()
                && let Some(addr) = &*slot
                && addr.connected()
            {
                addr.do_send(Unwatch(id));
            }
        });
    }
}

impl Handler<Watch> for Heartbeats {
    type Result = ();

    fn handle(&mut self, watch: Watch, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let heartbeat = Heartbeat::new(watch.spec, now);
        self.watched.insert(
            watch.id,
            Box::new(Watched {
                heartbeat,
                liveness: watch.liveness,
                stats: watch.stats,
                to: watch.to.downgrade(),
                wake: now,
            }),
        );
        self.schedule(watch.id, now, ctx);
    }
}

impl Handler<Unwatch> for Heartbeats {
    type Result = ();

    fn handle(&mut self, Unwatch(id): Unwatch, _: &mut Context<Self>) {
        self.watched.remove(&id);
        if self.watched.is_empty() {
            self.wakes.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc;
    use wsherd_protocol::HeartbeatMode;

    use super::*;

    /// A watched socket that only records what it is told.
    struct Socket(mpsc::UnboundedSender<Beat>);

    impl Actor for Socket {
        type Context = Context<Self>;
    }

    impl Handler<Beat> for Socket {
        type Result = ();

        fn handle(&mut self, beat: Beat, _: &mut Context<Self>) {
            let _ = self.0.send(beat);
        }
    }

    /// Watches a recording socket; the address keeps it alive (the heartbeat holds it weakly).
    fn watch(liveness: &Arc<Liveness>) -> (Addr<Socket>, mpsc::UnboundedReceiver<Beat>) {
        let (beats, seen) = mpsc::unbounded_channel();
        let socket = Socket(beats).start();
        Heartbeats::for_this_arbiter().do_send(Watch {
            id: WatchId::next(),
            spec: HeartbeatSpec {
                mode: HeartbeatMode::WsPing,
                interval: Duration::from_millis(30),
                timeout: Duration::from_millis(60),
                idle_timeout: None,
            },
            liveness: Arc::clone(liveness),
            stats: Arc::new(ConnectionStats::default()),
            to: socket.clone().recipient(),
        });
        (socket, seen)
    }

    async fn next(seen: &mut mpsc::UnboundedReceiver<Beat>) -> Option<Beat> {
        // Generous: a missing beat is the failure, not a slow machine.
        tokio::time::timeout(Duration::from_secs(30), seen.recv())
            .await
            .ok()
            .flatten()
    }

    #[actix_rt::test]
    async fn a_silent_socket_is_pinged_then_declared_dead() {
        let liveness = Arc::new(Liveness::default());
        let (_socket, mut seen) = watch(&liveness);
        assert!(matches!(next(&mut seen).await, Some(Beat::Ping(_))));
        loop {
            match next(&mut seen).await {
                Some(Beat::Ping(_)) => continue,
                Some(Beat::Dead(_)) => break,
                other => panic!("expected the peer to be declared dead, got {other:?}"),
            }
        }
    }

    #[actix_rt::test]
    async fn a_socket_whose_reads_wsherd_holds_keeps_being_pinged_and_is_never_blamed() {
        let liveness = Arc::new(Liveness::default());
        liveness.set_held(true);
        let (_socket, mut seen) = watch(&liveness);
        // Ten intervals: silence alone would have been fatal after two.
        for _ in 0..10 {
            let beat = next(&mut seen).await;
            assert!(matches!(beat, Some(Beat::Ping(_))), "{beat:?}");
        }
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    #[test]
    fn a_new_system_on_the_same_thread_gets_a_live_heartbeat() {
        for _ in 0..2 {
            let system = actix::System::new();
            let connected = system.block_on(async { Heartbeats::for_this_arbiter().connected() });
            assert!(connected);
        }
    }
}
