//! The Connection actor: one awc WebSocket life.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_codec::Framed;
use actix_http::ws::Item;
use awc::BoxedSocket;
use awc::error::{WsClientError, WsProtocolError};
use awc::ws::{CloseCode, CloseReason, Codec, Frame, Message as WsMessage};
use bytes::Bytes;
use futures_util::SinkExt;
use wsherd_protocol::{
    EndpointName, Fragment, Heartbeat, HeartbeatAction, HeartbeatMode, Outbound, Reassembled,
    Reassembler, ReassemblyError,
};
use wsherd_router::{DispatchReport, RouteCache, Router};

use crate::batching::BatchClock;
use crate::client::client;
use crate::config::{ConnectionConfig, MAX_CLOSE_REASON, truncate_reason};
use crate::event::{ConnectionEvent, EndReason, Notice, Observed, Side};
use crate::framed::{InFrame, LeanFramed};
use crate::outbox::Outbox;
use crate::reader::{FrameSink, Reader};
use crate::split::{LocalSink, split_local};
use crate::stats::{ConnectionStats, Phase};
use crate::tls::tls_failure;

/// Bytes a Close frame can take: code plus the longest reason.
const MAX_CLOSE_FRAME: usize = MAX_CLOSE_REASON + 2;

type WsSink = LocalSink<LeanFramed<BoxedSocket>>;

/// Writes one message to the peer.
///
/// Answers `Err` with the message handed back when the socket is not open.
#[derive(Debug)]
pub struct Send(pub Outbound);

impl actix::Message for Send {
    type Result = Result<(), SendError>;
}

/// Writes one on-open message (a subscription the owner replays after every open).
///
/// Like [`Send`], except that if the socket ends before the frame is written it is not handed
/// back in [`Notice::Unsent`]: the owner sends it again on the next open anyway.
#[derive(Debug)]
pub struct SendOnOpen(pub Outbound);

impl actix::Message for SendOnOpen {
    type Result = Result<(), SendError>;
}

/// A message could not be written; it is handed back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The handshake has not finished.
    #[error("the connection is not open yet")]
    NotOpen(Outbound),
    /// A Close was sent or received: no more data may be written.
    #[error("the connection is closing")]
    Closing(Outbound),
    /// The write buffer is full: the peer is not reading as fast as we write.
    #[error("the write buffer is full")]
    Full(Outbound),
}

impl SendError {
    /// The message that was not sent.
    pub fn into_message(self) -> Outbound {
        match self {
            SendError::NotOpen(message)
            | SendError::Closing(message)
            | SendError::Full(message) => message,
        }
    }
}

/// Closes the connection gracefully: a Close frame with `code` and `reason` is sent, and the
/// socket ends when the peer answers (or after the close timeout).
#[derive(Debug, Clone, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Close {
    /// Close code (1000 for a normal close).
    pub code: u16,
    /// Reason text; cut to 123 bytes.
    pub reason: String,
}

/// One WebSocket socket life: handshake, frames in and out, and an exact end reason.
///
/// It answers Pings, reassembles fragments under the size cap, routes every message through the
/// [`Router`]'s table, and reports each [`ConnectionEvent`] to its observer and to router
/// subscribers. When the socket ends the actor stops; reconnecting is a supervisor's job.
pub struct Connection {
    name: EndpointName,
    /// `endpoint{name=…}`: every log line of this connection is in it.
    span: tracing::Span,
    config: Arc<ConnectionConfig>,
    routes: RouteCache,
    report: DispatchReport,
    stats: Arc<ConnectionStats>,
    observer: Option<Recipient<Observed>>,
    /// The socket's write half; `None` before open and while a batch is being flushed.
    sink: Option<WsSink>,
    is_open: bool,
    /// Frames waiting for the socket; the flag marks caller messages, handed back if unsent.
    outbox: Outbox<(WsMessage, bool)>,
    reassembler: Reassembler,
    heartbeat: Option<Heartbeat>,
    /// When gathered batches go out.
    batching: BatchClock,
    /// Messages and bytes received this turn, not yet in `stats`.
    unsettled_in: (u64, u64),
    /// Frames (any) and data messages seen since the last heartbeat tick; timestamped at the
    /// tick, so the per-message path reads no clock.
    saw_frame: bool,
    saw_data: bool,
    /// Whether the live-after reply is still awaited.
    awaiting_live_reply: bool,
    closing: Option<Side>,
    /// Set when the peer is gone: once our Close is flushed there is nothing to wait for.
    stop_when_flushed: bool,
    end: Option<EndReason>,
}

impl Connection {
    /// A connection for endpoint `name`; it connects when started.
    pub fn new(name: EndpointName, config: Arc<ConnectionConfig>, router: &Router) -> Self {
        let reassembler = Reassembler::new(config.max_message_size);
        let outbox = Outbox::new(config.write_buffer);
        Connection {
            span: tracing::info_span!("endpoint", name = %name),
            name,
            config,
            routes: router.cache(),
            report: DispatchReport::default(),
            stats: Arc::new(ConnectionStats::default()),
            observer: None,
            sink: None,
            is_open: false,
            outbox,
            reassembler,
            heartbeat: None,
            batching: BatchClock::default(),
            unsettled_in: (0, 0),
            saw_frame: false,
            saw_data: false,
            awaiting_live_reply: false,
            closing: None,
            stop_when_flushed: false,
            end: None,
        }
    }

    /// Counts into `stats` (shared with earlier lives of the same endpoint) instead of fresh ones.
    pub fn with_stats(mut self, stats: Arc<ConnectionStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Sends every event to `observer` as well as to router subscribers, plus the notices only
    /// an owner needs (the live-after reply, messages that never reached the socket).
    pub fn with_observer(mut self, observer: Recipient<Observed>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The counters this connection writes.
    pub fn stats(&self) -> &Arc<ConnectionStats> {
        &self.stats
    }

    fn emit(&mut self, event: ConnectionEvent, ctx: &mut Context<Self>) {
        self.span.in_scope(|| match &event {
            ConnectionEvent::Connecting { url } => tracing::debug!(%url, "connecting"),
            ConnectionEvent::Open { protocol } => tracing::info!(?protocol, "open"),
            ConnectionEvent::Closing {
                initiated_by,
                code,
                reason,
            } => tracing::debug!(?initiated_by, code, %reason, "closing"),
            ConnectionEvent::Closed { reason } => tracing::info!(%reason, "closed"),
        });
        if let Some(observer) = &self.observer {
            // Events are a handful per socket life, never driven by message volume, so an
            // unbounded send cannot be filled by a peer; losing one would desync the owner.
            observer.do_send(Observed {
                endpoint: self.name.clone(),
                notice: Notice::Event(event.clone()),
            });
        }
        let table = Arc::clone(self.routes.current());
        table.publish(&self.name, event, &mut self.report);
        self.settle_report(ctx);
    }

    fn notify_owner(&self, notice: Notice) {
        if let Some(observer) = &self.observer {
            observer.do_send(Observed {
                endpoint: self.name.clone(),
                notice,
            });
        }
    }

    /// After each message: what cannot wait for the end of the turn (a full batch, a stopped
    /// subscriber, a full one that must be waited for).
    fn settle_message(&mut self, ctx: &mut Context<Self>) {
        if self.batching.after_frame(self.report.largest_batch()) {
            self.report.flush_batches();
        }
        if self.report.has_blocked() || !self.report.closed.is_empty() {
            self.settle_report(ctx);
        }
    }

    /// Settles the turn (see [`Self::settle_counts`]) and pauses reading while a full
    /// subscriber catches up.
    fn settle_report(&mut self, ctx: &mut Context<Self>) {
        self.settle_turn(true, ctx);
    }

    /// Settles a turn; gathered batches go out only with `flush_batches` (or when one is full).
    fn settle_turn(&mut self, flush_batches: bool, ctx: &mut Context<Self>) {
        self.settle_counts(flush_batches);
        if let Some(wait) = self.report.take_backpressure() {
            // `wait` holds the actor: no frame is read until every full subscriber took its
            // message, so the socket's TCP window throttles the peer instead of our memory.
            ctx.wait(wait.into_actor(self));
        }
    }

    /// Sends gathered batches (with `flush_batches`), moves the turn's counters into the shared
    /// stats and forgets stopped subscribers.
    fn settle_counts(&mut self, flush_batches: bool) {
        if flush_batches && self.report.pending_deliveries() > 0 {
            self.report.flush_batches();
        }
        let stats = &self.stats;
        ConnectionStats::add(&stats.messages_in, std::mem::take(&mut self.unsettled_in.0));
        ConnectionStats::add(&stats.bytes_in, std::mem::take(&mut self.unsettled_in.1));
        let report = &mut self.report;
        ConnectionStats::add(&stats.delivered, std::mem::take(&mut report.delivered));
        ConnectionStats::add(
            &stats.dropped_full,
            std::mem::take(&mut report.dropped_full),
        );
        if report.decode_failures > 0 || report.dropped_full > 0 {
            self.span.in_scope(|| {
                tracing::debug!(
                    decode_failures = report.decode_failures,
                    dropped_full = report.dropped_full,
                    "messages not delivered"
                )
            });
        }
        ConnectionStats::add(&stats.dead_letters, std::mem::take(&mut report.unrouted));
        ConnectionStats::add(
            &stats.decode_failures,
            std::mem::take(&mut report.decode_failures),
        );
        if !report.closed.is_empty() {
            for id in report.closed.drain(..) {
                self.routes.router().unsubscribe(id);
            }
        }
    }

    fn on_text(&mut self, payload: &[u8], ctx: &mut Context<Self>) {
        self.count_in(payload.len());
        if (self.awaiting_live_reply || self.awaiting_app_reply()) && self.is_owner_reply(payload) {
            return;
        }
        let table = self.routes.current();
        table.route_text(&self.name, &self.config.kind, payload, &mut self.report);
        self.settle_message(ctx);
    }

    fn awaiting_app_reply(&self) -> bool {
        self.heartbeat.as_ref().is_some_and(|hb| {
            hb.is_waiting_for_reply() && matches!(hb.spec().mode, HeartbeatMode::App { .. })
        })
    }

    /// Checks a text message against the replies the connection waits for; returns true when
    /// it was an application heartbeat reply, which is consumed rather than routed.
    fn is_owner_reply(&mut self, payload: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(payload) else {
            return false;
        };
        if self.awaiting_live_reply
            && let Some(matcher) = &self.config.live_after
            && matcher.matches(text, &self.config.kind)
        {
            self.awaiting_live_reply = false;
            self.notify_owner(Notice::LiveReply);
        }
        if let Some(hb) = &mut self.heartbeat
            && hb.is_waiting_for_reply()
            && let HeartbeatMode::App { reply, .. } = &hb.spec().mode
            && reply.matches(text, &self.config.kind)
        {
            if let Some(rtt) = hb.on_app_reply(Instant::now()) {
                self.stats.set_rtt(rtt);
            }
            return true;
        }
        false
    }

    fn on_binary(&mut self, payload: Bytes, ctx: &mut Context<Self>) {
        self.count_in(payload.len());
        let table = self.routes.current();
        table.route_binary(&self.name, payload, &mut self.report);
        self.settle_message(ctx);
    }

    fn count_in(&mut self, bytes: usize) {
        self.saw_data = true;
        self.unsettled_in.0 += 1;
        self.unsettled_in.1 += bytes as u64;
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut Context<Self>) {
        let fragment = match item {
            Item::FirstText(bytes) => Fragment::FirstText(bytes),
            Item::FirstBinary(bytes) => Fragment::FirstBinary(bytes),
            Item::Continue(bytes) => Fragment::Continue(bytes),
            Item::Last(bytes) => Fragment::Last(bytes),
        };
        match self.reassembler.push(fragment) {
            Ok(None) => {}
            Ok(Some(Reassembled::Text(bytes))) => self.on_text(&bytes, ctx),
            Ok(Some(Reassembled::Binary(bytes))) => self.on_binary(bytes, ctx),
            Err(ReassemblyError::TooLarge { size, limit }) => {
                self.fail(EndReason::MessageTooLarge { size, limit }, 1009, ctx)
            }
            Err(error) => self.fail(
                EndReason::Protocol {
                    reason: error.to_string(),
                },
                1002,
                ctx,
            ),
        }
    }

    fn on_peer_close(&mut self, reason: Option<CloseReason>, ctx: &mut Context<Self>) {
        let (code, text) = match reason {
            Some(reason) => (
                u16::from(reason.code),
                reason.description.unwrap_or_default(),
            ),
            None => (1005, String::new()),
        };
        match self.closing {
            Some(Side::Local) => {
                // The peer acknowledged our Close: our frame has arrived, nothing is left to flush.
                if let Some(EndReason::LocalClose { acknowledged, .. }) = &mut self.end {
                    *acknowledged = true;
                }
                ctx.stop();
            }
            Some(Side::Peer) => {}
            None => {
                self.closing = Some(Side::Peer);
                self.end = Some(EndReason::PeerClosed {
                    code,
                    reason: text.clone(),
                });
                // Echo the code (1005 may not be sent on the wire, so answer it with none).
                let echo = (code != 1005).then(|| CloseReason {
                    code: CloseCode::from(code),
                    description: None,
                });
                let _ = self.write_frame(WsMessage::Close(echo), ctx);
                self.stats.set_phase(Phase::Closing);
                self.emit(
                    ConnectionEvent::Closing {
                        initiated_by: Side::Peer,
                        code,
                        reason: text,
                    },
                    ctx,
                );
                // The peer closes TCP after our echo; stopping now could drop the echo unsent.
                ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
            }
        }
    }

    /// Fails the connection because of something the peer did (RFC 6455 §7.1.7): send a Close
    /// with `code`, then wait up to the close timeout for the peer's answer. Stopping at once
    /// would close a socket with unread input, which makes the kernel send a reset that can
    /// destroy our Close before the peer reads it.
    fn fail(&mut self, reason: EndReason, code: u16, ctx: &mut Context<Self>) {
        self.close_after_failure(reason, code, false, ctx);
    }

    /// Like [`Connection::fail`], for a peer that is gone: stop once the Close is flushed.
    fn abandon(&mut self, reason: EndReason, code: u16, ctx: &mut Context<Self>) {
        self.close_after_failure(reason, code, true, ctx);
    }

    fn close_after_failure(
        &mut self,
        reason: EndReason,
        code: u16,
        abandon: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.end.is_none() {
            self.end = Some(reason.clone());
        }
        if self.closing.is_some() {
            return;
        }
        self.stop_when_flushed = abandon;
        let queued = self.send_close(code, &reason.to_string(), ctx);
        if !queued || (abandon && self.is_flushed()) {
            ctx.stop();
        } else {
            ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
        }
    }

    /// Sends our Close (reason cut to fit) and announces `Closing`; returns whether the frame
    /// was queued.
    fn send_close(&mut self, code: u16, reason: &str, ctx: &mut Context<Self>) -> bool {
        self.closing = Some(Side::Local);
        let reason = truncate_reason(reason);
        let queued = self
            .write_frame(
                WsMessage::Close(Some(CloseReason {
                    code: CloseCode::from(code),
                    description: Some(reason.clone()),
                })),
                ctx,
            )
            .is_ok();
        self.stats.set_phase(Phase::Closing);
        self.emit(
            ConnectionEvent::Closing {
                initiated_by: Side::Local,
                code,
                reason,
            },
            ctx,
        );
        queued
    }

    fn is_flushed(&self) -> bool {
        self.sink.is_some() && self.outbox.buffered() == 0
    }

    /// Queues a frame for the socket; false when it is not open or the write buffer is full
    /// (a Close is queued whatever the buffer holds).
    fn write_frame(&mut self, frame: WsMessage, ctx: &mut Context<Self>) -> Result<(), WsMessage> {
        self.write_frame_as(frame, false, ctx)
    }

    fn write_frame_as(
        &mut self,
        frame: WsMessage,
        returnable: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), WsMessage> {
        if !self.is_open {
            return Err(frame);
        }
        let (len, always) = match &frame {
            WsMessage::Text(text) => (text.len(), false),
            WsMessage::Binary(bytes) | WsMessage::Ping(bytes) | WsMessage::Pong(bytes) => {
                (bytes.len(), false)
            }
            WsMessage::Close(_) => (MAX_CLOSE_FRAME, true),
            WsMessage::Continuation(_) | WsMessage::Nop => (0, false),
        };
        self.outbox
            .push((frame, returnable), len, always)
            .map_err(|(frame, _)| frame)?;
        self.pump(ctx);
        Ok(())
    }

    /// Hands everything queued to the socket in one batch, unless a batch is already on its way.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if !self.outbox.has_queued() {
            return;
        }
        let Some(mut sink) = self.sink.take() else {
            return;
        };
        let (batch, bytes) = self.outbox.take_batch();
        let frames = batch.len() as u64;
        let write = async move {
            for (frame, _) in batch {
                sink.feed(frame).await?;
            }
            sink.flush().await?;
            Ok::<_, WsProtocolError>(sink)
        };
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.outbox.flushed(bytes);
            match result {
                Ok(sink) => {
                    ConnectionStats::add(&act.stats.frames_out, frames);
                    act.sink = Some(sink);
                    act.pump(ctx);
                    if act.stop_when_flushed && act.is_flushed() {
                        ctx.stop();
                    }
                }
                Err(error) => {
                    act.end.get_or_insert(EndReason::Io {
                        reason: error.to_string(),
                    });
                    ctx.stop();
                }
            }
        }));
    }

    fn opened(
        &mut self,
        response: awc::ClientResponse,
        framed: Framed<BoxedSocket, Codec>,
        ctx: &mut Context<Self>,
    ) {
        let protocol = response
            .headers()
            .get(awc::http::header::SEC_WEBSOCKET_PROTOCOL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let framed = LeanFramed::from_framed(framed, self.config.max_frame_size);
        let (sink, stream) = split_local(framed);
        self.sink = Some(sink);
        self.is_open = true;
        ctx.spawn(Reader::new(stream));
        ConnectionStats::add(&self.stats.opens, 1);
        self.stats.set_phase(Phase::Open);
        self.awaiting_live_reply = self.config.live_after.is_some();
        self.heartbeat = Some(Heartbeat::new(
            self.config.heartbeat.clone(),
            Instant::now(),
        ));
        self.emit(ConnectionEvent::Open { protocol }, ctx);
        self.heartbeat_tick(ctx);
    }

    /// Runs the heartbeat policy and schedules the next tick.
    fn heartbeat_tick(&mut self, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        let now = Instant::now();
        let Some(hb) = &mut self.heartbeat else {
            return;
        };
        if std::mem::take(&mut self.saw_data) {
            hb.on_data(now);
        }
        if std::mem::take(&mut self.saw_frame) {
            hb.on_frame(now);
        }
        let (action, wake) = hb.poll(now);
        match action {
            None => {}
            Some(HeartbeatAction::Ping(payload)) => {
                let _ = self.write_frame(WsMessage::Ping(payload), ctx);
            }
            Some(HeartbeatAction::AppPing(text)) => {
                let _ = self.write_frame(WsMessage::Text(text.into()), ctx);
            }
            Some(HeartbeatAction::Dead(why)) => {
                // A dead peer will not answer a Close: send one for the record, and go.
                self.abandon(EndReason::Unresponsive { why }, 1011, ctx);
                return;
            }
        }
        ctx.run_later(wake.saturating_duration_since(now), |act, ctx| {
            act.heartbeat_tick(ctx)
        });
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        let config = Arc::clone(&self.config);
        let client = match client(config.tls.as_ref()) {
            Ok(client) => client,
            Err(reason) => {
                self.end = Some(EndReason::TlsConfig { reason });
                ctx.stop();
                return;
            }
        };
        let mut request = client
            .ws(config.url.as_str())
            .max_frame_size(config.max_frame_size);
        if !config.subprotocols.is_empty() {
            request = request.protocols(config.subprotocols.iter().map(String::as_str));
        }
        for (name, value) in &config.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let timeout = config.handshake_timeout;
        let attempt = async move { actix_rt::time::timeout(timeout, request.connect()).await };
        // Spawned, not waited on: the mailbox stays live during the handshake, so a send gets
        // its message back at once and a Close ends the attempt.
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Ok((response, framed))) => act.opened(response, framed, ctx),
                    Ok(Err(error)) => {
                        act.end = Some(handshake_end(error));
                        ctx.stop();
                    }
                    Err(_) => {
                        act.end = Some(EndReason::HandshakeTimeout { after: timeout });
                        ctx.stop();
                    }
                }),
        );
    }
}

/// Turns awc's `!Send` error into our own, keeping what a policy needs to classify it.
fn handshake_end(error: WsClientError) -> EndReason {
    use awc::error::{ConnectError, SendRequestError};
    match error {
        WsClientError::InvalidResponseStatus(status) => EndReason::HandshakeRejected {
            status: status.as_u16(),
        },
        WsClientError::SendRequest(SendRequestError::Url(error)) => EndReason::InvalidRequest {
            reason: error.to_string(),
        },
        WsClientError::SendRequest(SendRequestError::Http(error)) => EndReason::InvalidRequest {
            reason: error.to_string(),
        },
        WsClientError::SendRequest(SendRequestError::Connect(ConnectError::Io(error))) => {
            match tls_failure(&error) {
                Some(reason) => EndReason::Tls { reason },
                None => EndReason::ConnectFailed {
                    reason: error.to_string(),
                },
            }
        }
        WsClientError::SendRequest(SendRequestError::Connect(error)) => match tls_failure(&error) {
            Some(reason) => EndReason::Tls { reason },
            None => EndReason::ConnectFailed {
                reason: error.to_string(),
            },
        },
        WsClientError::SendRequest(error) => {
            let tls = match &error {
                SendRequestError::Send(io) => tls_failure(io),
                SendRequestError::Response(actix_http::error::ParseError::Io(io)) => {
                    tls_failure(io)
                }
                other => tls_failure(other),
            };
            match tls {
                Some(reason) => EndReason::Tls { reason },
                None => EndReason::ConnectFailed {
                    reason: error.to_string(),
                },
            }
        }
        other => EndReason::HandshakeInvalid {
            reason: other.to_string(),
        },
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.stats.set_phase(Phase::Connecting);
        self.emit(
            ConnectionEvent::Connecting {
                url: self.config.url.clone(),
            },
            ctx,
        );
        self.connect(ctx);
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        self.settle_counts(true);
        let unsent: Vec<Outbound> = self
            .outbox
            .drain_unsent()
            .filter_map(|(frame, returnable)| match frame {
                WsMessage::Text(text) if returnable => Some(Outbound::Text(text.to_string())),
                WsMessage::Binary(bytes) if returnable => Some(Outbound::Binary(bytes)),
                _ => None,
            })
            .collect();
        if !unsent.is_empty() {
            self.notify_owner(Notice::Unsent(unsent));
        }
        let reason = self.end.take().unwrap_or(EndReason::Stopped);
        self.stats.set_phase(Phase::Closed);
        self.stats.set_last_end(reason.clone());
        self.emit(ConnectionEvent::Closed { reason }, ctx);
    }
}

impl FrameSink<LeanFramed<BoxedSocket>> for Connection {
    fn end_of_turn(&mut self, socket_drained: bool, ctx: &mut Context<Self>) {
        let send_batches = self
            .batching
            .after_turn(socket_drained, self.report.pending_deliveries());
        self.settle_turn(send_batches, ctx);
    }

    fn on_frame(&mut self, item: Result<InFrame<'_>, WsProtocolError>, ctx: &mut Context<Self>) {
        self.saw_frame = true;
        let item = match item {
            Ok(InFrame::Text(payload)) => return self.on_text(payload, ctx),
            Ok(InFrame::Other(frame)) => Ok(frame),
            Err(error) => Err(error),
        };
        match item {
            Ok(Frame::Text(payload)) => self.on_text(&payload, ctx),
            Ok(Frame::Binary(payload)) => self.on_binary(payload, ctx),
            Ok(Frame::Continuation(item)) => self.on_fragment(item, ctx),
            Ok(Frame::Ping(payload)) => {
                if self.closing.is_none() {
                    // A peer that pings without reading our Pongs fills the write buffer; then
                    // its Pings go unanswered (RFC 6455 lets us answer only the latest one).
                    match self.write_frame(WsMessage::Pong(payload), ctx) {
                        Ok(()) => ConnectionStats::add(&self.stats.pings_answered, 1),
                        Err(_) => ConnectionStats::add(&self.stats.pongs_skipped, 1),
                    }
                }
            }
            Ok(Frame::Pong(payload)) => {
                ConnectionStats::add(&self.stats.pongs_received, 1);
                if let Some(hb) = &mut self.heartbeat
                    && let Some(rtt) = hb.on_pong(&payload, Instant::now())
                {
                    self.stats.set_rtt(rtt);
                }
            }
            Ok(Frame::Close(reason)) => self.on_peer_close(reason, ctx),
            Err(WsProtocolError::Overflow) => self.fail(
                EndReason::FrameTooLarge {
                    limit: self.config.max_frame_size,
                },
                1009,
                ctx,
            ),
            // actix-http reports reserved bits as `InvalidData` I/O: a protocol violation.
            Err(WsProtocolError::Io(error)) if error.kind() == std::io::ErrorKind::InvalidData => {
                self.fail(
                    EndReason::Protocol {
                        reason: error.to_string(),
                    },
                    1002,
                    ctx,
                )
            }
            Err(WsProtocolError::Io(error)) => {
                self.end.get_or_insert(EndReason::Io {
                    reason: error.to_string(),
                });
                ctx.stop();
            }
            Err(error) => self.fail(
                EndReason::Protocol {
                    reason: error.to_string(),
                },
                1002,
                ctx,
            ),
        }
    }

    fn on_stream_end(&mut self, ctx: &mut Context<Self>) {
        self.end.get_or_insert(EndReason::StreamEnded);
        ctx.stop();
    }
}

impl Connection {
    fn write_message(
        &mut self,
        message: Outbound,
        returnable: bool,
        ctx: &mut Context<Self>,
    ) -> Result<(), SendError> {
        if self.closing.is_some() {
            return Err(SendError::Closing(message));
        }
        if !self.is_open {
            return Err(SendError::NotOpen(message));
        }
        let len = message.len() as u64;
        let frame = match message {
            Outbound::Text(text) => WsMessage::Text(text.into()),
            Outbound::Binary(bytes) => WsMessage::Binary(bytes),
        };
        match self.write_frame_as(frame, returnable, ctx) {
            Ok(()) => {
                ConnectionStats::add(&self.stats.messages_out, 1);
                ConnectionStats::add(&self.stats.bytes_out, len);
                Ok(())
            }
            Err(WsMessage::Text(text)) => Err(SendError::Full(Outbound::Text(text.to_string()))),
            Err(WsMessage::Binary(bytes)) => Err(SendError::Full(Outbound::Binary(bytes))),
            Err(_) => Err(SendError::Full(Outbound::Binary(Bytes::new()))),
        }
    }
}

impl Handler<Send> for Connection {
    type Result = Result<(), SendError>;

    fn handle(&mut self, Send(message): Send, ctx: &mut Context<Self>) -> Self::Result {
        self.write_message(message, true, ctx)
    }
}

impl Handler<SendOnOpen> for Connection {
    type Result = Result<(), SendError>;

    fn handle(&mut self, SendOnOpen(message): SendOnOpen, ctx: &mut Context<Self>) -> Self::Result {
        self.write_message(message, false, ctx)
    }
}

impl Handler<Close> for Connection {
    type Result = ();

    fn handle(&mut self, Close { code, reason }: Close, ctx: &mut Context<Self>) {
        if self.closing.is_some() {
            return;
        }
        if !self.is_open {
            // Still in the handshake: there is no peer to tell.
            self.end = Some(EndReason::LocalClose {
                code,
                reason,
                acknowledged: false,
            });
            ctx.stop();
            return;
        }
        self.end = Some(EndReason::LocalClose {
            code,
            reason: truncate_reason(&reason),
            acknowledged: false,
        });
        self.send_close(code, &reason, ctx);
        ctx.run_later(self.config.close_timeout, |_, ctx| ctx.stop());
    }
}
