//! The Connection actor: one awc WebSocket life.
//!
//! The actor's concerns are split by layer: `handshake` dials and opens the socket,
//! `inbound` handles frames the reader hands over and routes messages, `heartbeat` keeps
//! the peer honest, `write` is the write side, `close` ends the life gracefully, and
//! `state` is where the life stands. This file holds the actor itself: its fields, its
//! start and stop, and the events it reports.

mod backpressure;
mod close;
mod handshake;
mod heartbeat;
mod inbound;
mod messages;
mod state;
mod write;

use std::sync::Arc;

use actix::prelude::*;
use awc::ws::Message as WsMessage;
use wsherd_protocol::{EndpointName, Reassembler, redact_url};
use wsherd_router::{DispatchReport, RouteCache, Router};

use crate::batching::BatchClock;
use crate::config::SharedConfig;
use crate::event::{ConnectionEvent, EndReason, Notice, Observed};
use crate::framed::{FramesWritten, LeanFramed};
use crate::outbox::Outbox;
use crate::socket::Socket;
use crate::split::{LocalSink, LocalSource};
use crate::stats::ConnectionStats;

use backpressure::Stall;
use heartbeat::Watching;
pub use messages::{Close, ReleaseReads, Write, WriteError, WriteOnOpen};
use state::SocketState;
use write::{Origin, Unflushed};

type WsSink = LocalSink<LeanFramed<Socket>>;
type WsSource = LocalSource<LeanFramed<Socket>>;

/// When the socket is read.
enum Reads {
    /// As soon as it opens.
    AtOnce,
    /// Once released; the read half waits here from the open until then.
    Held(Option<WsSource>),
    /// Being read.
    Running,
}

/// One WebSocket socket life: handshake, frames in and out, and an exact end reason.
///
/// It answers Pings, reassembles fragments under the size cap, routes every message through the
/// [`Router`]'s table, and reports each [`ConnectionEvent`] to its observer and to router
/// subscribers. When the socket ends the actor stops; reconnecting is a supervisor's job.
pub struct Connection {
    name: EndpointName,
    /// Unique in this process: see [`Connection::id`].
    pub(super) id: u64,
    /// `wsherd{endpoint=…}`: every log line of this connection is in it.
    span: tracing::Span,
    config: SharedConfig,
    routes: RouteCache,
    report: DispatchReport,
    stats: Arc<ConnectionStats>,
    observer: Option<Recipient<Observed>>,
    /// Where the life stands; written only by [`Connection::set_state`].
    state: SocketState,
    /// The socket's write half; `None` before open and while a batch is being flushed.
    sink: Option<WsSink>,
    /// Frames waiting for the socket, each with whose it is.
    outbox: Outbox<(WsMessage, Origin)>,
    /// Data frames handed to the socket and not yet taken whole by the operating system.
    unflushed: Unflushed,
    /// Caller messages taken back out of the outbox when the peer closed.
    taken_back: Vec<crate::event::Unsent>,
    /// The socket's count of frames the operating system took whole; `None` before open.
    frames_written: Option<FramesWritten>,
    /// Whether reading waits for [`ReleaseReads`], and the read half while it waits.
    reads: Reads,
    /// Reads paused for full subscribers, and the write watchdog.
    stall: Stall,
    reassembler: Reassembler,
    /// Inflates compressed binary messages (`ConnectionConfig::decompress`), made at the
    /// first one.
    inflater: Option<Box<crate::inflate::Inflater>>,
    /// permessage-deflate's inflater, when the server agreed to it.
    message_inflater: Option<Box<crate::inflate::MessageInflater>>,
    /// The message being reassembled is compressed (its first frame had RSV1).
    compressed_message: bool,
    /// This socket's registration with its arbiter's heartbeat, once open.
    watch: Option<Watching>,
    /// An application ping went out and its reply is awaited (checked per text message only
    /// while this is set).
    awaiting_app_reply: bool,
    /// When gathered batches go out.
    batching: BatchClock,
    /// Messages and bytes received this turn, not yet in `stats`.
    unsettled_in: (u64, u64),
    /// Frames (any) and data messages seen this read turn; told to the heartbeat once per
    /// turn, so the per-message path touches no shared memory and reads no clock.
    saw_frame: bool,
    saw_data: bool,
    /// A socket a server accepted, taken over when the actor starts (instead of dialing),
    /// with the subprotocol agreed.
    accepted: Option<Box<(crate::accepted::AcceptedSocket, Option<String>)>>,
    /// Whether the live-after reply is still awaited.
    awaiting_live_reply: bool,
    /// The owner's requests, answered from inbound text before routing.
    pub(super) replies: Option<Arc<dyn crate::ReplyWaiter>>,
    /// Sequence numbers seen, when the config checks them (shared with the owner, who keeps
    /// them across lives or restarts them).
    sequences: Option<Arc<std::sync::Mutex<wsherd_protocol::SequenceTracker>>>,
    /// A sequence number was read on this socket already.
    sequenced: bool,
    /// Boxed: set once, as the socket ends (32 bytes inline otherwise).
    end: Option<Box<EndReason>>,
}

impl Connection {
    /// A connection for endpoint `name`; it connects when started. `config` is an
    /// `Arc<ConnectionConfig>` or a [`SharedConfig`] over settings held elsewhere.
    pub fn new(name: EndpointName, config: impl Into<SharedConfig>, router: &Router) -> Self {
        let config = config.into();
        let reassembler = Reassembler::new(config.max_message_size);
        let outbox = Outbox::new(config.write_buffer);
        let stats = Arc::new(ConnectionStats::default());
        let sequences = config.sequence.as_ref().map(|spec| {
            Arc::new(std::sync::Mutex::new(
                wsherd_protocol::SequenceTracker::new(spec),
            ))
        });
        /// The next connection's id.
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Connection {
            span: tracing::info_span!("wsherd", endpoint = %name),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name,
            config,
            routes: router.cache(),
            report: DispatchReport::gathering(Arc::clone(&stats) as _),
            stats,
            observer: None,
            state: SocketState::Connecting,
            sink: None,
            outbox,
            unflushed: Unflushed::default(),
            taken_back: Vec::new(),
            frames_written: None,
            reads: Reads::AtOnce,
            stall: Stall::default(),
            reassembler,
            inflater: None,
            message_inflater: None,
            compressed_message: false,
            watch: None,
            awaiting_app_reply: false,
            batching: BatchClock::default(),
            unsettled_in: (0, 0),
            saw_frame: false,
            saw_data: false,
            awaiting_live_reply: false,
            accepted: None,
            replies: None,
            sequences,
            sequenced: false,
            end: None,
        }
    }

    /// A connection over `socket`, which a server accepted for endpoint `name` (its upgrade
    /// answered, `protocol` the subprotocol it agreed to): it is open as soon as it starts,
    /// and speaks as the server (it reads masked frames and writes unmasked ones). No
    /// compression is negotiated on accepted sockets.
    pub fn accepted(
        name: EndpointName,
        config: impl Into<SharedConfig>,
        router: &Router,
        socket: crate::accepted::AcceptedSocket,
        protocol: Option<String>,
    ) -> Self {
        let mut connection = Self::new(name, config, router);
        connection.accepted = Some(Box::new((socket, protocol)));
        connection
    }

    /// Checks sequence numbers into `tracker` (kept by the owner) instead of a fresh one of
    /// this life's own.
    pub fn with_sequences(
        mut self,
        tracker: Arc<std::sync::Mutex<wsherd_protocol::SequenceTracker>>,
    ) -> Self {
        self.sequences = Some(tracker);
        self
    }

    /// Offers every inbound text message to `replies` first (see [`ReplyWaiter`]).
    ///
    /// [`ReplyWaiter`]: crate::ReplyWaiter
    pub fn with_replies(mut self, replies: Arc<dyn crate::ReplyWaiter>) -> Self {
        self.replies = Some(replies);
        self
    }

    /// This connection's id, unique in the process: its notices carry it.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Counts into `stats` (shared with earlier lives of the same endpoint) instead of fresh ones.
    pub fn with_stats(mut self, stats: Arc<ConnectionStats>) -> Self {
        // Nothing was dispatched yet: a fresh report counting into the new stats.
        self.report = DispatchReport::gathering(Arc::clone(&stats) as _);
        self.stats = stats;
        self
    }

    /// Sends every event to `observer` as well as to router subscribers, plus the notices only
    /// an owner needs (the live-after reply, messages that never reached the socket, and that
    /// the last deliveries are in).
    pub fn with_observer(mut self, observer: Recipient<Observed>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Reads nothing from the socket until a [`ReleaseReads`] arrives (or this side sends a
    /// Close). An owner that announces the open itself (the supervisor's `Open` and `Live`
    /// states) releases reads after announcing it, so that subscribers see those events before
    /// the socket's first message.
    pub fn hold_reads(mut self) -> Self {
        self.reads = Reads::Held(None);
        self
    }

    /// The counters this connection writes.
    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    /// Moves the life on and publishes its phase: the one writer of both.
    fn set_state(&mut self, state: SocketState) {
        self.state = state;
        self.stats.set_phase(state.phase());
    }

    fn emit(&mut self, event: ConnectionEvent, ctx: &mut Context<Self>) {
        self.span.in_scope(|| match &event {
            ConnectionEvent::Connecting { url } => tracing::debug!(%url, "connecting"),
            ConnectionEvent::Open {
                protocol,
                compression,
            } => match compression {
                Some(agreed) => tracing::info!(?protocol, compression = %agreed, "open"),
                None => tracing::info!(?protocol, "open"),
            },
            ConnectionEvent::Closing {
                initiated_by,
                code,
                reason,
            } => tracing::debug!(?initiated_by, code = code.as_u16(), %reason, "closing"),
            ConnectionEvent::Closed { reason } => tracing::info!(%reason, "closed"),
        });
        if let Some(observer) = &self.observer {
            // Events are a handful per socket life, never driven by message volume, so an
            // unbounded send cannot be filled by a peer; losing one would desync the owner.
            observer.do_send(Observed {
                endpoint: self.name.clone(),
                connection: self.id,
                notice: Notice::Event(event.clone()),
            });
        }
        let table = Arc::clone(self.routes.current());
        if let ConnectionEvent::Closed { .. } = event {
            // The life's last word: the owner hears `Delivered` once subscribers handled it.
            table.publish_confirmed(&self.name, event, &mut self.report);
        } else {
            table.publish(&self.name, event, &mut self.report);
        }
        self.settle_report(ctx);
    }

    fn notify_owner(&self, notice: Notice) {
        if let Some(observer) = &self.observer {
            observer.do_send(Observed {
                endpoint: self.name.clone(),
                connection: self.id,
                notice,
            });
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if let Some((socket, protocol)) = self.accepted.take().map(|a| *a) {
            return self.open_accepted(socket, protocol, ctx);
        }
        self.set_state(SocketState::Connecting);
        self.emit(
            // Events are logged and shown to subscribers: the socket alone gets the real URL.
            ConnectionEvent::Connecting {
                url: redact_url(&self.config.url),
            },
            ctx,
        );
        self.connect(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.unwatch();
        self.settle_counts(true);
        let unsent = self.drain_unsent();
        if !unsent.is_empty() {
            self.notify_owner(Notice::Unsent(unsent));
        }
        let reason = self.end.take().map_or(EndReason::Stopped, |end| *end);
        self.set_state(SocketState::Closed);
        self.stats.set_last_end(reason.clone());
        self.emit(ConnectionEvent::Closed { reason }, ctx);
        // Deliveries still held for full subscribers (the last messages, `Closed` itself) are
        // theirs: they go on without this actor, in order, bounded by what was held.
        // Bounded by `max_stall` like any stall, so a subscriber stuck for good holds no task.
        // The owner hears when they are all in (`Closed` handled), or given up.
        let observer = self.observer.take();
        let delivered = Observed {
            endpoint: self.name.clone(),
            connection: self.id,
            notice: Notice::Delivered,
        };
        match self.report.take_backpressure() {
            None => {
                if let Some(observer) = observer {
                    observer.do_send(delivered);
                }
            }
            Some(held) => {
                let limit = self.config.max_stall;
                actix_rt::spawn(async move {
                    let _ = actix_rt::time::timeout(limit, held).await;
                    if let Some(observer) = observer {
                        observer.do_send(delivered);
                    }
                });
            }
        }
    }
}
