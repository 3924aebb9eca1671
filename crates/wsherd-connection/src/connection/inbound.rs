//! The read side: frames the reader hands over, routed to subscribers and settled per turn.

use actix::prelude::*;
use actix_http::ws::Item;
use awc::error::WsProtocolError;
use awc::ws::{Frame, Message as WsMessage};
use bytes::Bytes;
use wsherd_protocol::{Fragment, OnGap, Reassembled, ReassemblyError, Seen};

use super::Connection;
use super::heartbeat::OwnerReply;
use crate::config::InvalidUtf8Policy;
use crate::event::{EndReason, GapEvent, GapKind};
use crate::framed::{InFrame, LeanFramed};
use crate::inflate::{Decompress, Inflated, Inflater};
use crate::reader::FrameSink;
use crate::stats::ConnectionStats;

/// What the sequence check makes of a message.
enum Sequenced {
    Deliver,
    /// A duplicate, with `drop_duplicates`.
    Drop,
    /// Delivered, then `on_gap` applies.
    Gap(u64, u64),
}

impl Connection {
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

    /// Settles the turn (see [`Self::settle_counts`]) and pauses reading (only reading) while a
    /// full subscriber catches up.
    pub(super) fn settle_report(&mut self, ctx: &mut Context<Self>) {
        self.settle_turn(true, ctx);
    }

    /// Settles a turn; gathered batches go out only with `flush_batches` (or when one is full).
    fn settle_turn(&mut self, flush_batches: bool, ctx: &mut Context<Self>) {
        self.settle_counts(flush_batches);
        self.pause_for_held(ctx);
    }

    /// Sends gathered batches (with `flush_batches`), moves the turn's counters into the shared
    /// stats and forgets stopped subscribers.
    pub(super) fn settle_counts(&mut self, flush_batches: bool) {
        if flush_batches && self.report.pending_deliveries() > 0 {
            self.report.flush_batches();
        }
        let stats = &self.stats;
        if self.unsettled_in.0 > 0 {
            stats.set_last_message_now();
        }
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

    /// A whole text message (one frame, or reassembled). It is checked for UTF-8 here, once:
    /// the owner's replies and the router take the checked `&str`.
    fn on_text(&mut self, payload: &[u8], ctx: &mut Context<Self>) {
        if self.has_failed() {
            return;
        }
        self.count_in(payload.len());
        self.text_message(payload, ctx);
    }

    /// A text message (or what a compressed binary one inflated to), counted already.
    fn text_message(&mut self, payload: &[u8], ctx: &mut Context<Self>) {
        let text = match std::str::from_utf8(payload) {
            Ok(text) => text,
            Err(error) => return self.on_invalid_utf8(payload, error, ctx),
        };
        let reply = if self.awaiting_live_reply || self.awaiting_app_reply() {
            self.owner_reply(text)
        } else {
            OwnerReply::None
        };
        if !matches!(reply, OwnerReply::Heartbeat)
            && let Some(replies) = &self.replies
            && replies.awaiting()
            && replies.offer(text) == Some(false)
        {
            // A reply its request took, which the owner keeps from subscribers.
            self.settle_message(ctx);
            return;
        }
        let mut gap = None;
        if !matches!(reply, OwnerReply::Heartbeat) && self.sequences.is_some() {
            match self.check_sequence(text) {
                Sequenced::Deliver => {}
                Sequenced::Drop => {
                    self.settle_message(ctx);
                    return;
                }
                Sequenced::Gap(expected, got) => gap = Some((expected, got)),
            }
        }
        let table = self.routes.current();
        match reply {
            OwnerReply::None => {
                table.route_str(&self.name, &self.config.kind, text, &mut self.report)
            }
            OwnerReply::Heartbeat => return,
            OwnerReply::LiveAfter => {
                table.route_wanted(&self.name, &self.config.kind, text, &mut self.report);
            }
        }
        self.settle_message(ctx);
        if let Some((expected, got)) = gap {
            self.on_gap(expected, got, ctx);
        }
    }

    /// Reads the message's sequence number; publishes a gap, duplicate or reset event when
    /// one is due.
    fn check_sequence(&mut self, text: &str) -> Sequenced {
        let (Some(spec), Some(tracker)) = (&self.config.sequence, &self.sequences) else {
            return Sequenced::Deliver;
        };
        let kind = self.config.kind.extract(text).ok().flatten();
        let kind = kind.as_deref().unwrap_or("");
        let verdict = tracker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(spec, kind, text, std::time::Instant::now());
        let reported = match verdict.seen {
            Seen::Gap { expected, got } => Some((GapKind::Gap, expected, got)),
            Seen::Duplicate { expected, got } => Some((GapKind::Duplicate, expected, got)),
            Seen::Reset { expected, got } => Some((GapKind::Reset, expected, got)),
            _ => None,
        };
        if verdict.report
            && let Some((what, expected, got)) = reported
        {
            let scope = spec
                .scope
                .as_deref()
                .map(wsherd_protocol::KindRule::pointer)
                .and_then(|rule| rule.extract_id(text))
                .map(|id| match id {
                    wsherd_protocol::MessageId::Text(s)
                    | wsherd_protocol::MessageId::Integer(s) => s,
                })
                .unwrap_or_default();
            let event = GapEvent {
                kind: kind.to_owned(),
                scope,
                what,
                expected,
                got,
            };
            let table = self.routes.current();
            table.publish(&self.name, event, &mut self.report);
        }
        // The first number of a socket can only look like a gap when numbers carry over from
        // the last one: reported, but no reason to end this socket too (that would loop).
        let first_of_socket = !std::mem::replace(&mut self.sequenced, true);
        match verdict.seen {
            _ if verdict.drop => Sequenced::Drop,
            // Acted on at most as often as reported (`event_interval` per scope).
            Seen::Gap { expected, got } if verdict.report && !first_of_socket => {
                Sequenced::Gap(expected, got)
            }
            _ => Sequenced::Deliver,
        }
    }

    /// After a gap was delivered: what `on_gap` says.
    fn on_gap(&mut self, expected: u64, got: u64, ctx: &mut Context<Self>) {
        let Some(spec) = &self.config.sequence else {
            return;
        };
        match spec.on_gap {
            OnGap::Event => {}
            OnGap::Reconnect => self.fail(EndReason::SequenceGap { expected, got }, ctx),
            OnGap::Resync => {
                let resync: Vec<String> = spec.resync.clone();
                let mut refused = 0;
                for message in resync {
                    if self.write_resync(message, ctx).is_err() {
                        refused += 1;
                    }
                }
                if refused > 0 {
                    self.span.in_scope(|| {
                        tracing::warn!(refused, "resync messages found the write buffer full")
                    });
                }
            }
        }
    }

    /// RFC 6455 §8.1: text that is not UTF-8 fails the connection, unless the endpoint chose
    /// to keep such messages as dead letters.
    #[cold]
    fn on_invalid_utf8(
        &mut self,
        payload: &[u8],
        error: std::str::Utf8Error,
        ctx: &mut Context<Self>,
    ) {
        match self.config.invalid_utf8 {
            InvalidUtf8Policy::Fail => self.fail(
                EndReason::InvalidUtf8 {
                    valid_up_to: error.valid_up_to(),
                    len: payload.len(),
                },
                ctx,
            ),
            InvalidUtf8Policy::DeadLetter => {
                // The router's own check turns it into the dead letter, excerpt and all.
                let table = self.routes.current();
                table.route_text(&self.name, &self.config.kind, payload, &mut self.report);
                self.settle_message(ctx);
            }
        }
    }

    fn on_binary(&mut self, payload: Bytes, ctx: &mut Context<Self>) {
        if self.has_failed() {
            return;
        }
        if let Some(format) = self.config.decompress {
            return self.on_compressed(format, &payload, payload.len(), ctx);
        }
        self.count_in(payload.len());
        let table = self.routes.current();
        table.route_binary(&self.name, payload, &mut self.report);
        self.settle_message(ctx);
    }

    /// The first frame of a permessage-deflate message: a whole message is inflated at once;
    /// a first fragment starts one, whose continuations the reassembler gathers (bounded by
    /// the message cap) before it is inflated.
    fn on_compressed_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if self.has_failed() {
            return;
        }
        match frame {
            Frame::Text(payload) => self.on_deflated(true, &payload, ctx),
            Frame::Binary(payload) => self.on_deflated(false, &payload, ctx),
            Frame::Continuation(item) => {
                self.compressed_message = true;
                self.on_fragment(item, ctx);
            }
            // Only data frames are ever marked (see `ReadState::take_rsv1`).
            other => self.fail(
                EndReason::Protocol {
                    reason: format!("RSV1 set on a frame that cannot carry it: {other:?}"),
                },
                ctx,
            ),
        }
    }

    /// A permessage-deflate message's compressed bytes: inflated under the message cap, then
    /// handled as the text or binary message it is, counted by its size on the wire.
    fn on_deflated(&mut self, text: bool, compressed: &[u8], ctx: &mut Context<Self>) {
        let limit = self.config.max_message_size;
        let Some(inflater) = self.message_inflater.as_mut() else {
            return self.fail(
                EndReason::Protocol {
                    reason: "a compressed message without permessage-deflate".into(),
                },
                ctx,
            );
        };
        match inflater.inflate(compressed, limit) {
            Inflated::Message(inflated) => {
                if text {
                    self.count_in(compressed.len());
                    self.text_message(&inflated, ctx);
                } else if let Some(format) = self.config.decompress {
                    // A binary message whose payload is itself compressed (`decompress`).
                    self.on_compressed(format, &inflated, compressed.len(), ctx);
                } else {
                    self.count_in(compressed.len());
                    let table = self.routes.current();
                    table.route_binary(&self.name, Bytes::from(inflated), &mut self.report);
                    self.settle_message(ctx);
                }
            }
            Inflated::TooLarge { size } => {
                self.fail(EndReason::MessageTooLarge { size, limit }, ctx)
            }
            Inflated::Corrupt(reason) => self.fail(
                EndReason::InvalidCompression {
                    reason: format!("permessage-deflate: {reason}"),
                },
                ctx,
            ),
            // Only `zlib-stream` waits for more; a deflate message is always whole here.
            Inflated::Partial => {}
        }
    }

    /// A binary message the server compressed: inflated under the message cap, then taken
    /// as text (kind, typed decode, router), counted by its size on the wire.
    fn on_compressed(
        &mut self,
        format: Decompress,
        payload: &[u8],
        wire: usize,
        ctx: &mut Context<Self>,
    ) {
        let limit = self.config.max_message_size;
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(format)));
        match inflater.inflate(payload, limit) {
            Inflated::Message(text) => {
                self.count_in(wire);
                self.text_message(&text, ctx);
            }
            Inflated::Partial => {
                // Counted with the message it completes: the bytes arrived, the message not yet.
                self.unsettled_in.1 += wire as u64;
            }
            Inflated::TooLarge { size } => {
                self.fail(EndReason::MessageTooLarge { size, limit }, ctx);
            }
            Inflated::Corrupt(reason) => self.fail(
                EndReason::InvalidCompression {
                    reason: format!("{format}: {reason}"),
                },
                ctx,
            ),
        }
    }

    fn count_in(&mut self, bytes: usize) {
        self.saw_data = true;
        self.unsettled_in.0 += 1;
        self.unsettled_in.1 += bytes as u64;
    }

    /// Whether this life was failed for something the peer did (or a dead peer): RFC 6455
    /// §7.1.7 then forbids processing its data, so frames already read behind the fault are
    /// dropped. A Close that we or the peer started is no failure: data still arriving then is
    /// delivered.
    fn has_failed(&self) -> bool {
        matches!(
            self.end.as_deref(),
            Some(reason) if !matches!(
                reason,
                EndReason::LocalClose { .. } | EndReason::PeerClosed { .. }
            )
        )
    }

    fn on_fragment(&mut self, item: Item, ctx: &mut Context<Self>) {
        if self.has_failed() {
            return;
        }
        let fragment = match item {
            Item::FirstText(bytes) => Fragment::FirstText(bytes),
            Item::FirstBinary(bytes) => Fragment::FirstBinary(bytes),
            Item::Continue(bytes) => Fragment::Continue(bytes),
            Item::Last(bytes) => Fragment::Last(bytes),
        };
        match self.reassembler.push(fragment) {
            Ok(None) => {}
            Ok(Some(message)) if std::mem::take(&mut self.compressed_message) => {
                let (text, bytes) = match message {
                    Reassembled::Text(bytes) => (true, bytes),
                    Reassembled::Binary(bytes) => (false, bytes),
                };
                self.on_deflated(text, &bytes, ctx);
            }
            Ok(Some(Reassembled::Text(bytes))) => self.on_text(&bytes, ctx),
            Ok(Some(Reassembled::Binary(bytes))) => self.on_binary(bytes, ctx),
            Err(ReassemblyError::TooLarge { size, limit }) => {
                self.fail(EndReason::MessageTooLarge { size, limit }, ctx)
            }
            Err(error) => self.fail(
                EndReason::Protocol {
                    reason: error.to_string(),
                },
                ctx,
            ),
        }
    }

    fn on_ping(&mut self, payload: Bytes, ctx: &mut Context<Self>) {
        if self.state.is_closing() {
            return;
        }
        // A peer that pings without reading our Pongs fills the write buffer; then its Pings
        // go unanswered (RFC 6455 lets us answer only the latest one).
        match self.write_frame(WsMessage::Pong(payload), ctx) {
            Ok(()) => ConnectionStats::add(&self.stats.pings_answered, 1),
            Err(_) => ConnectionStats::add(&self.stats.pongs_skipped, 1),
        }
    }

    fn on_pong(&mut self, payload: Bytes) {
        ConnectionStats::add(&self.stats.pongs_received, 1);
        self.report_pong(payload);
    }

    fn on_read_error(&mut self, error: WsProtocolError, ctx: &mut Context<Self>) {
        match error {
            WsProtocolError::Overflow => self.fail(
                EndReason::FrameTooLarge {
                    limit: self.config.max_frame_size,
                },
                ctx,
            ),
            // actix-http reports reserved bits as `InvalidData` I/O: a protocol violation.
            WsProtocolError::Io(error) if error.kind() == std::io::ErrorKind::InvalidData => self
                .fail(
                    EndReason::Protocol {
                        reason: error.to_string(),
                    },
                    ctx,
                ),
            WsProtocolError::Io(error) => {
                self.end.get_or_insert_with(|| {
                    Box::new(EndReason::Io {
                        reason: error.to_string(),
                    })
                });
                ctx.stop();
            }
            error => self.fail(
                EndReason::Protocol {
                    reason: error.to_string(),
                },
                ctx,
            ),
        }
    }
}

impl FrameSink<LeanFramed<crate::socket::Socket>> for Connection {
    fn reads_paused(&self) -> bool {
        Connection::reads_paused(self)
    }

    fn park_reader(&mut self, waker: &std::task::Waker) {
        Connection::park_reader(self, waker);
    }

    fn end_of_turn(&mut self, socket_drained: bool, ctx: &mut Context<Self>) {
        self.report_liveness();
        if socket_drained && let Some(inflater) = self.message_inflater.as_mut() {
            inflater.idle();
        }
        let send_batches = self
            .batching
            .after_turn(socket_drained, self.report.pending_deliveries());
        self.settle_turn(send_batches, ctx);
    }

    fn on_frame(&mut self, item: Result<InFrame<'_>, WsProtocolError>, ctx: &mut Context<Self>) {
        self.saw_frame = true;
        match item {
            Ok(InFrame::Text(payload)) => self.on_text(payload, ctx),
            Ok(InFrame::Other(Frame::Text(payload))) => self.on_text(&payload, ctx),
            Ok(InFrame::Other(Frame::Binary(payload))) => self.on_binary(payload, ctx),
            Ok(InFrame::Other(Frame::Continuation(item))) => self.on_fragment(item, ctx),
            Ok(InFrame::Other(Frame::Ping(payload))) => self.on_ping(payload, ctx),
            Ok(InFrame::Other(Frame::Pong(payload))) => self.on_pong(payload),
            Ok(InFrame::Other(Frame::Close(reason))) => self.on_peer_close(reason, ctx),
            Ok(InFrame::Compressed(frame)) => self.on_compressed_frame(frame, ctx),
            Err(error) => self.on_read_error(error, ctx),
        }
    }

    fn on_stream_end(&mut self, ctx: &mut Context<Self>) {
        self.end
            .get_or_insert_with(|| Box::new(EndReason::StreamEnded));
        ctx.stop();
    }
}
