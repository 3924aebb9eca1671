//! One accepted connection: the actor that runs its script step by step and records what
//! the client sends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web_actors::ws;
use bytes::Bytes;

use super::SocketHandle;
use crate::log::{Received, ServerLog};
use crate::script::{Script, Step, stream_message};

/// The Ping payload a [`Step::Drop`] waits to see answered.
const DROP_PING: &[u8] = b"wsherd-testkit-drop";

/// Messages of a [`Step::Stream`] written per turn, so one stream never starves the server.
const STREAM_BATCH: u64 = 512;

/// Runs one connection's script and records what its client sends.
pub(super) struct ScriptedSocket {
    index: usize,
    socket: Option<SocketHandle>,
    sent_close: bool,
    dropping: bool,
    resume_pending: bool,
    log: Arc<ServerLog>,
    steps: VecDeque<Step>,
    echo: bool,
    answers: Vec<(String, String)>,
    /// `(field, template)`: see [`Step::ReplyById`].
    replies_by_id: Vec<(String, String)>,
    ignore_pings: bool,
    waiting_for: Option<usize>,
    received: usize,
}

impl ScriptedSocket {
    /// A session at the start of `script`, recording as connection `index` of `log`.
    pub(super) fn new(
        index: usize,
        socket: Option<SocketHandle>,
        log: Arc<ServerLog>,
        script: Script,
    ) -> Self {
        ScriptedSocket {
            index,
            socket,
            sent_close: false,
            dropping: false,
            resume_pending: false,
            log,
            steps: script.into(),
            echo: false,
            answers: Vec::new(),
            replies_by_id: Vec::new(),
            ignore_pings: false,
            waiting_for: None,
            received: 0,
        }
    }

    /// Runs steps until the script waits, ends, or closes the connection.
    fn advance(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        // A pause (or a stream continuing on the next turn) resumes the script itself;
        // a message arriving meanwhile must not run the steps early.
        if self.resume_pending {
            return;
        }
        if self.waiting_for.is_some_and(|n| self.received < n) {
            return;
        }
        self.waiting_for = None;
        while let Some(step) = self.steps.pop_front() {
            match step {
                Step::Text(text) => ctx.text(text),
                Step::Binary(bytes) => ctx.binary(bytes),
                Step::Stream {
                    kind_field,
                    kinds,
                    first_seq,
                    count,
                    padding,
                } => {
                    let batch = count.min(STREAM_BATCH);
                    for seq in first_seq..first_seq + batch {
                        let kind = match usize::try_from(seq)
                            .ok()
                            .and_then(|s| kinds.get(s % kinds.len().max(1)))
                        {
                            Some(kind) => kind.as_str(),
                            None => "message",
                        };
                        ctx.text(stream_message(&kind_field, kind, seq, padding));
                    }
                    if batch < count {
                        self.steps.push_front(Step::Stream {
                            kind_field,
                            kinds,
                            first_seq: first_seq + batch,
                            count: count - batch,
                            padding,
                        });
                        self.resume_later(Duration::ZERO, ctx);
                        return;
                    }
                }
                Step::Fragmented {
                    text,
                    fragment_size,
                } => write_fragmented(ctx, &text, fragment_size.max(1)),
                Step::Ping(payload) => ctx.ping(&payload),
                Step::IgnorePings(ignore) => self.ignore_pings = ignore,
                Step::Echo(echo) => self.echo = echo,
                Step::Answer { request, reply } => self.answers.push((request, reply)),
                Step::ReplyById { field, reply } => self.replies_by_id.push((field, reply)),
                Step::WaitForMessages(count) => {
                    if self.received < count {
                        self.waiting_for = Some(count);
                        return;
                    }
                }
                Step::Pause(delay) => {
                    self.resume_later(delay, ctx);
                    return;
                }
                Step::Close { code, reason } => {
                    ctx.close(Some(ws::CloseReason {
                        code: ws::CloseCode::from(code),
                        description: Some(reason),
                    }));
                    // The TCP connection ends when the client answers (see the Close handler).
                    self.sent_close = true;
                    return;
                }
                Step::Cut => {
                    self.cut(ctx);
                    return;
                }
                Step::Drop => {
                    // Cut only once the client has answered a Ping sent after everything
                    // else: TCP order then proves it read every frame written before.
                    ctx.ping(DROP_PING);
                    self.dropping = true;
                    return;
                }
            }
        }
    }

    fn resume_later(&mut self, delay: Duration, ctx: &mut ws::WebsocketContext<Self>) {
        self.resume_pending = true;
        ctx.run_later(delay, |act, ctx| {
            act.resume_pending = false;
            act.advance(ctx);
        });
    }

    /// Ends the TCP connection at once, without a Close frame.
    fn cut(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(socket) = &self.socket {
            socket.cut();
        }
        ctx.stop();
    }

    fn record(&mut self, message: Received, ctx: &mut ws::WebsocketContext<Self>) {
        if let Received::Text(text) = &message
            && let Some((_, reply)) = self.answers.iter().find(|(request, _)| request == text)
        {
            ctx.text(reply.clone());
        }
        if let Received::Text(text) = &message
            && !self.replies_by_id.is_empty()
            && let Ok(serde_json::Value::Object(request)) = serde_json::from_str(text)
        {
            for (field, template) in &self.replies_by_id {
                if let Some(id) = request.get(field) {
                    ctx.text(template.replace("{id}", &id.to_string()));
                }
            }
        }
        if self.echo {
            match &message {
                Received::Text(text) => ctx.text(text.clone()),
                Received::Binary(bytes) => ctx.binary(bytes.clone()),
            }
        }
        self.received += 1;
        self.log.record(self.index, |c| c.received.push(message));
        self.advance(ctx);
    }
}

fn write_fragmented(
    ctx: &mut ws::WebsocketContext<ScriptedSocket>,
    text: &str,
    fragment_size: usize,
) {
    let mut pieces = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut cut = fragment_size.min(rest.len());
        while !rest.is_char_boundary(cut) {
            cut += 1;
        }
        let (piece, tail) = rest.split_at(cut);
        pieces.push(Bytes::copy_from_slice(piece.as_bytes()));
        rest = tail;
    }
    let last = pieces.len().saturating_sub(1);
    for (i, piece) in pieces.into_iter().enumerate() {
        let item = match i {
            0 if last == 0 => {
                ctx.text(text.to_owned());
                return;
            }
            0 => actix_http::ws::Item::FirstText(piece),
            i if i == last => actix_http::ws::Item::Last(piece),
            _ => actix_http::ws::Item::Continue(piece),
        };
        ctx.write_raw(ws::Message::Continuation(item));
    }
}

impl Actor for ScriptedSocket {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.advance(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.log.record(self.index, |c| c.ended = true);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for ScriptedSocket {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => self.record(Received::Text(text.to_string()), ctx),
            Ok(ws::Message::Binary(bytes)) => self.record(Received::Binary(bytes), ctx),
            Ok(ws::Message::Ping(payload)) => {
                self.log.record(self.index, |c| c.pings += 1);
                if !self.ignore_pings {
                    ctx.pong(&payload);
                }
            }
            Ok(ws::Message::Pong(payload)) => {
                if self.dropping && payload.as_ref() == DROP_PING {
                    self.cut(ctx);
                } else {
                    self.log.record(self.index, |c| c.pongs.push(payload));
                }
            }
            Ok(ws::Message::Close(reason)) => {
                let (code, text) = match &reason {
                    Some(reason) => (
                        u16::from(reason.code),
                        reason.description.clone().unwrap_or_default(),
                    ),
                    None => (1005, String::new()),
                };
                self.log
                    .record(self.index, |c| c.close = Some((code, text)));
                ctx.close(reason);
                ctx.stop();
            }
            Ok(ws::Message::Continuation(_) | ws::Message::Nop) => {}
            Err(_) => ctx.stop(),
        }
    }
}
