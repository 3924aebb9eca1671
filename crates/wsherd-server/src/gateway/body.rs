//! One gateway session's WebSocket, as a response body: what the relay queued for it, the
//! answers to its requests, Pongs for its Pings and a Ping of our own every [`PING_EVERY`](crate::keepalive::PING_EVERY);
//! and its requests read, one JSON text frame each, under [`MAX_CLIENT_FRAME`].
//!
//! What waits is bounded: the relay's frames by `max_buffer` ([`SessionQueue`]), answers by
//! [`MAX_ANSWERS`] and sends by [`MAX_SENDS`] (past either, the client's requests are not
//! read until some went out: its TCP stream pushes back).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use actix_http::ws::{CloseCode, Frame, ProtocolError};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use futures_core::Stream;
use serde_json::{Value, json};
use wsherd::config::GatewaySettings;
use wsherd::{Herd, Submitted};

use super::queue::{Next, SLOW_CONSUMER};
use super::relay::{Registry, Session, text_frame};
use super::topics::Topic;
use crate::keepalive::Framing;

/// The largest frame a client may send: a request, not a feed.
pub(crate) const MAX_CLIENT_FRAME: usize = 64 << 10;
/// What is read from the client before its frames are decoded.
const READ_LIMIT: usize = MAX_CLIENT_FRAME + 16;
/// Answers waiting to go out before the client's requests wait too.
pub(crate) const MAX_ANSWERS: usize = 64;
/// Sends under way for one session before its requests wait.
pub(crate) const MAX_SENDS: usize = 16;
/// Frames waiting for a client taken together into one chunk of the response, at most.
const BATCH: usize = 64 << 10;
/// See the module docs.
pub(crate) struct GatewayBody {
    payload: web::Payload,
    read: BytesMut,
    session: Arc<Session>,
    registry: Arc<Registry>,
    settings: Arc<GatewaySettings>,
    herd: Herd,
    answers: VecDeque<Bytes>,
    /// Sends spawned whose answers have not come back.
    sends_under_way: usize,
    sends: tokio::sync::mpsc::Receiver<Bytes>,
    send_results: tokio::sync::mpsc::Sender<Bytes>,
    framing: Framing,
}

impl GatewayBody {
    pub(crate) fn new(
        payload: web::Payload,
        session: Arc<Session>,
        registry: Arc<Registry>,
        settings: Arc<GatewaySettings>,
        herd: Herd,
    ) -> Self {
        let (send_results, sends) = tokio::sync::mpsc::channel(MAX_SENDS);
        GatewayBody {
            payload,
            read: BytesMut::new(),
            session,
            registry,
            settings,
            herd,
            answers: VecDeque::new(),
            sends_under_way: 0,
            sends,
            send_results,
            framing: Framing::new(MAX_CLIENT_FRAME),
        }
    }

    fn answer(&mut self, value: &Value) {
        self.answers
            .push_back(text_frame(value.to_string().as_bytes()));
    }

    /// Reads what the client sent and answers it; `Some(close)` when the conversation is over.
    fn read_client(&mut self, cx: &mut Context<'_>) -> Option<(CloseCode, &'static str)> {
        loop {
            // Answers and sends bound what one client's requests hold: past them, its
            // requests wait in its TCP stream.
            if self.answers.len() >= MAX_ANSWERS || self.sends_under_way >= MAX_SENDS {
                return None;
            }
            match self.framing.decode(&mut self.read) {
                Ok(Some(Frame::Text(text))) => match std::str::from_utf8(&text) {
                    Ok(text) => self.request(text),
                    Err(_) => return Some((CloseCode::Invalid, "a text frame that is not UTF-8")),
                },
                Ok(Some(Frame::Binary(_))) => self.answer(&json!({
                    "op": "error", "id": null,
                    "error": "requests are JSON text frames",
                })),
                Ok(Some(Frame::Continuation(_))) => {
                    return Some((CloseCode::Unsupported, "fragmented messages are not taken"));
                }
                Ok(Some(Frame::Ping(data))) => self.framing.pinged(data),
                Ok(Some(Frame::Pong(_))) => {}
                Ok(Some(Frame::Close(_))) => return Some((CloseCode::Normal, "bye")),
                Ok(None) => {
                    if self.read.len() >= READ_LIMIT {
                        return None;
                    }
                    match Pin::new(&mut self.payload).poll_next(cx) {
                        Poll::Ready(Some(Ok(chunk))) => {
                            self.framing.heard();
                            self.read.extend_from_slice(&chunk);
                        }
                        // The client went away: nothing to say to it.
                        Poll::Ready(Some(Err(_)) | None) => return Some((CloseCode::Away, "")),
                        Poll::Pending => return None,
                    }
                }
                Err(ProtocolError::Overflow) => {
                    return Some((CloseCode::Size, "requests are at most 64 KiB"));
                }
                Err(_) => return Some((CloseCode::Protocol, "not a WebSocket frame")),
            }
        }
    }

    /// One request: answered at once, or (a send) once the endpoint took it.
    fn request(&mut self, text: &str) {
        let request: Value = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => Value::Object(map),
            Ok(_) => return self.error(Value::Null, "a request is a JSON object"),
            Err(error) => return self.error(Value::Null, &format!("not JSON: {error}")),
        };
        let id = request.get("id").cloned().unwrap_or(Value::Null);
        match request.get("op").and_then(Value::as_str) {
            Some(op @ ("subscribe" | "unsubscribe")) => self.topics(op, &request, id),
            Some("send") => self.send(&request, id),
            Some(other) => {
                let other = crate::errors::shown(other);
                self.error(
                    id,
                    &format!("unknown op {other}: subscribe, unsubscribe or send"),
                );
            }
            None => self.error(id, "no \"op\": subscribe, unsubscribe or send"),
        }
    }

    fn error(&mut self, id: Value, why: &str) {
        self.answer(&json!({ "op": "error", "id": id, "error": why }));
    }

    fn topics(&mut self, op: &str, request: &Value, id: Value) {
        let Some(given) = request.get("topics").and_then(Value::as_array) else {
            return self.error(id, "\"topics\" is an array of strings");
        };
        let max = self.settings.max_topics;
        if given.len() > max {
            return self.error(id, &format!("at most {max} topics per session"));
        }
        let mut topics = Vec::with_capacity(given.len());
        let mut names = Vec::with_capacity(given.len());
        for topic in given {
            let Some(name) = topic.as_str() else {
                return self.error(id, "\"topics\" is an array of strings");
            };
            match Topic::parse(name) {
                Ok(topic) => {
                    topics.push(topic);
                    names.push(name.to_owned());
                }
                // Nothing is applied: the whole request or none of it.
                Err(why) => return self.error(id, &why),
            }
        }
        let mut held = self
            .session
            .topics
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = if op == "subscribe" {
            if held.len() + held.new_among(&topics) > max {
                drop(held);
                return self.error(id, &format!("at most {max} topics per session"));
            }
            held.add_all(topics)
        } else {
            held.remove_all(&topics)
        };
        drop(held);
        if changed {
            self.registry.changed();
        }
        self.answer(&json!({ "op": "ack", "id": id, "topics": names }));
    }

    fn send(&mut self, request: &Value, id: Value) {
        let Some(endpoint) = request.get("endpoint").and_then(Value::as_str) else {
            return self.error(id, "\"endpoint\" names the endpoint to send to");
        };
        if !self
            .settings
            .allow_send
            .iter()
            .any(|allowed| allowed.as_str() == endpoint)
        {
            let endpoint = crate::errors::shown(endpoint);
            return self.error(
                id,
                &format!("sends to {endpoint} are not allowed (allow_send)"),
            );
        }
        let text = match request.get("data") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Null) | None => {
                return self.error(id, "\"data\" is the message: a JSON value or a string");
            }
            Some(other) => other.to_string(),
        };
        let herd = self.herd.clone();
        let results = self.send_results.clone();
        self.sends_under_way += 1;
        let endpoint = endpoint.to_owned();
        actix_rt::spawn(async move {
            let answer = match herd.send(&endpoint, text).await {
                Ok(submitted) => json!({ "op": "ack", "id": id, "status": status(submitted) }),
                Err(error) => json!({ "op": "error", "id": id, "error": error.to_string() }),
            };
            // The body may be gone: then nobody waits for the answer.
            let _ = results
                .send(text_frame(answer.to_string().as_bytes()))
                .await;
        });
    }
}

/// A send's outcome as the gateway names it.
fn status(submitted: Submitted) -> &'static str {
    match submitted {
        Submitted::Writing => "writing",
        Submitted::Queued => "queued",
    }
}

impl Stream for GatewayBody {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.framing.is_done() {
            return Poll::Ready(None);
        }
        if let Some((code, why)) = this.read_client(cx) {
            return this.framing.finish(code, why);
        }
        if let Some(chunk) = this.framing.poll_keepalive(cx) {
            return chunk;
        }
        while let Poll::Ready(Some(answer)) = this.sends.poll_recv(cx) {
            this.sends_under_way = this.sends_under_way.saturating_sub(1);
            this.answers.push_back(answer);
        }
        if let Some(answer) = this.answers.pop_front() {
            return Poll::Ready(Some(Ok(answer)));
        }
        match this.session.queue.poll_batch(cx, BATCH) {
            Poll::Ready(Next::Frame(frame)) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Next::Dropped(count)) => {
                let dropped = json!({ "op": "dropped", "count": count });
                Poll::Ready(Some(Ok(text_frame(dropped.to_string().as_bytes()))))
            }
            Poll::Ready(Next::SlowConsumer) => this.framing.close(CloseCode::Again, SLOW_CONSUMER),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for GatewayBody {
    fn drop(&mut self) {
        self.session.queue.set_gone();
        self.registry.leave(&self.session);
        self.registry.count.fetch_sub(1, Ordering::AcqRel);
        self.session
            .counters()
            .gateway_sessions
            .fetch_sub(1, Ordering::Relaxed);
    }
}
