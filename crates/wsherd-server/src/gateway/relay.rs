//! The relay: one actor per server worker that takes every routed message and state event of
//! the herd and hands each to the gateway sessions whose topics want it.
//!
//! A message's frame is made once, the first time a session wants it, and the same bytes go
//! to every session (a server's frames are unmasked, so they are the same for every client):
//! the upstream text is never parsed or written again per session. The relay never waits for
//! a session: a full one drops its oldest frames or is closed, as its `overflow` says.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::{BufMut, Bytes, BytesMut};
use wsherd::{Delivery, Herd, RawMessage, StateEvent, SubscribeOptions};

use super::queue::{Pushed, SessionQueue};
use super::topics::Subscriptions;
use crate::events::lines::state_line;
use crate::inbound::CUT_AFTER;
use crate::options::Counters;
use crate::socket::SocketHandle;

/// Messages the relay's mailbox holds; past it, the herd's connections wait for it (it never
/// waits for a session, so it only falls behind when the fan-out itself is too much).
const MAILBOX: usize = 16 << 10;

/// (endpoint, kind) pairs whose sessions the relay remembers at most.
const MAX_MATCHES: usize = 4096;

/// How long frames may wait untaken before their session is closed: its client stopped
/// reading, and its body (polled only while the connection can write) can no longer notice.
pub(crate) const STALL_LIMIT: Duration = crate::keepalive::SILENT_LIMIT;

/// How often the relay looks for stalled sessions (and lets go of sessions that left).
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// One gateway session as the relay sees it.
pub(crate) struct Session {
    pub(crate) queue: SessionQueue,
    pub(crate) topics: RwLock<Subscriptions>,
    socket: Option<SocketHandle>,
    cut: std::sync::atomic::AtomicBool,
    counters: Arc<Counters>,
}

impl Session {
    pub(crate) fn new(
        queue: SessionQueue,
        socket: Option<SocketHandle>,
        counters: Arc<Counters>,
    ) -> Self {
        Session {
            queue,
            topics: RwLock::new(Subscriptions::default()),
            socket,
            cut: std::sync::atomic::AtomicBool::new(false),
            counters,
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    fn topics(&self) -> std::sync::RwLockReadGuard<'_, Subscriptions> {
        self.topics.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `frame`; a session that overflowed under `disconnect` is cut if its body has
    /// not ended [`CUT_AFTER`] later (a client that stops reading never takes its Close).
    fn push(&self, frame: &Bytes) {
        match self.queue.push(frame) {
            Pushed::Queued { dropped: 0 } | Pushed::Closed => {}
            Pushed::Queued { dropped } => {
                self.counters
                    .gateway_dropped
                    .fetch_add(dropped, Ordering::Relaxed);
            }
            Pushed::Overflowed => {
                self.counters
                    .gateway_slow_closed
                    .fetch_add(1, Ordering::Relaxed);
                if !self.cut.swap(true, Ordering::AcqRel)
                    && let Some(socket) = self.socket.clone()
                {
                    actix_rt::spawn(async move {
                        actix_rt::time::sleep(CUT_AFTER).await;
                        socket.cut();
                    });
                }
            }
        }
    }
}

/// The sessions of one worker.
#[derive(Default)]
pub(crate) struct Registry {
    sessions: RwLock<Vec<Arc<Session>>>,
    /// Bumped whenever a session joins, leaves or changes its topics: the relay's matches
    /// are good while it stays.
    generation: AtomicU64,
    /// Sessions held, against `max_sessions`.
    pub(crate) count: AtomicUsize,
    relay: Mutex<Option<Addr<Relay>>>,
}

impl Registry {
    /// Adds `session`, starting the relay with the first.
    pub(crate) fn join(self: &Arc<Self>, herd: &Herd, session: Arc<Session>) {
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(session);
        self.changed();
        let mut relay = self.relay.lock().unwrap_or_else(PoisonError::into_inner);
        if relay.as_ref().is_none_or(|relay| !relay.connected()) {
            // An arbiter of its own: the fan-out runs beside the worker that writes the
            // sessions' frames, not in turns with it. It ends with the relay.
            let arbiter = Arbiter::new();
            let subscriptions = Arc::new(Mutex::new(Vec::new()));
            let (held, registry) = (Arc::clone(&subscriptions), Arc::downgrade(self));
            let relay_herd = herd.clone();
            let addr = Relay::start_in_arbiter(&arbiter.handle(), move |_| Relay {
                herd: relay_herd,
                subscriptions: held,
                registry,
                matches: HashMap::new(),
                matched: 0,
                generation: u64::MAX,
            });
            // Subscribed here, not when the relay starts on its arbiter: the session's ack
            // may only go out once what happens next reaches it.
            // Its home is its own arbiter (not this worker's, the default for a subscription
            // made here): deliveries are relayed there.
            let home = || SubscribeOptions::new().arbiter(arbiter.handle());
            let ids = [
                herd.subscribe_raw_all(addr.clone().recipient(), home()),
                herd.subscribe_events_with::<StateEvent>(addr.clone().recipient(), home()),
            ];
            subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend(ids);
            *relay = Some(addr);
        }
    }

    /// Forgets `session` (its body is gone); with the last one the relay goes too, so the
    /// herd delivers nothing to a gateway nobody uses.
    pub(crate) fn leave(&self, session: &Arc<Session>) {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|s| !Arc::ptr_eq(s, session));
        self.changed();
        if sessions.is_empty() {
            // Under the sessions' lock: a session joining now starts a new relay.
            let relay = self
                .relay
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(relay) = relay {
                relay.do_send(Retire);
            }
        }
    }

    /// A session's topics changed.
    pub(crate) fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn each(&self, mut f: impl FnMut(&Arc<Session>)) {
        let sessions = self.sessions.read().unwrap_or_else(PoisonError::into_inner);
        for session in sessions.iter() {
            f(session);
        }
    }
}

/// The relay has no sessions left: it unsubscribes and ends.
#[derive(Message)]
#[rtype(result = "()")]
struct Retire;

/// See the module docs.
pub(crate) struct Relay {
    herd: Herd,
    /// Its subscriptions to the herd (made by the registry as it starts the relay), undone
    /// when it stops.
    subscriptions: Arc<Mutex<Vec<wsherd::SubscriptionId>>>,
    /// Weak: the relay ends when the server's routes (which hold the registry) go.
    registry: Weak<Registry>,
    /// The sessions each (endpoint, kind) goes to, as of `generation`: one lookup per
    /// message instead of a topic match per session.
    /// By endpoint, then kind: looked up with the message's own strings, no key made per
    /// message.
    matches: HashMap<String, HashMap<String, Vec<Arc<Session>>>>,
    /// (endpoint, kind) pairs in `matches`.
    matched: usize,
    generation: u64,
}

impl Relay {
    /// Closes sessions whose client stopped reading, and lets go of the sessions that left.
    fn watch(&mut self, ctx: &mut Context<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            return ctx.stop();
        };
        if registry.generation.load(Ordering::Acquire) != self.generation {
            self.matches.clear();
            self.matched = 0;
        }
        let now = Instant::now();
        registry.each(|session| {
            if session.queue.close_if_stalled(now, STALL_LIMIT) {
                session
                    .counters
                    .gateway_slow_closed
                    .fetch_add(1, Ordering::Relaxed);
                if !session.cut.swap(true, Ordering::AcqRel)
                    && let Some(socket) = &session.socket
                {
                    socket.cut();
                }
            }
        });
    }

    /// The sessions a message of `kind` from `endpoint` goes to.
    fn sessions_for(&mut self, registry: &Registry, endpoint: &str, kind: &str) -> &[Arc<Session>] {
        let now = registry.generation.load(Ordering::Acquire);
        // Kinds come from the peers: a feed sending ever new ones must not grow the cache
        // without bound, so past MAX_MATCHES it starts over.
        if now != self.generation || self.matched >= MAX_MATCHES {
            self.matches.clear();
            self.matched = 0;
            self.generation = now;
        }
        let known = self
            .matches
            .get(endpoint)
            .is_some_and(|kinds| kinds.contains_key(kind));
        if !known {
            let mut wanted = Vec::new();
            registry.each(|session| {
                if session.topics().wants(endpoint, kind) {
                    wanted.push(Arc::clone(session));
                }
            });
            self.matches
                .entry(endpoint.to_owned())
                .or_default()
                .insert(kind.to_owned(), wanted);
            self.matched += 1;
        }
        self.matches
            .get(endpoint)
            .and_then(|kinds| kinds.get(kind))
            .map_or(&[], Vec::as_slice)
    }
}

impl Actor for Relay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(WATCH_EVERY, |relay, ctx| relay.watch(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        let ids = std::mem::take(
            &mut *self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for id in ids {
            self.herd.unsubscribe(id);
        }
        Arbiter::current().stop();
    }
}

impl Handler<Delivery<RawMessage>> for Relay {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<RawMessage>, ctx: &mut Context<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            return ctx.stop();
        };
        let endpoint = delivery.endpoint.as_str();
        let kind = &*delivery.message.kind;
        let sessions = self.sessions_for(&registry, endpoint, kind);
        if sessions.is_empty() {
            return;
        }
        let frame = message_frame(endpoint, kind, &delivery.message.text);
        for session in sessions {
            session.push(&frame);
        }
    }
}

impl Handler<Retire> for Relay {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Delivery<StateEvent>> for Relay {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<StateEvent>, ctx: &mut Context<Self>) {
        let Some(registry) = self.registry.upgrade() else {
            return ctx.stop();
        };
        let endpoint = delivery.endpoint.as_str();
        let mut frame = None;
        registry.each(|session| {
            if session.topics().wants_state(endpoint) {
                let frame = frame.get_or_insert_with(|| {
                    text_frame(
                        state_line(endpoint, &delivery.message)
                            .to_string()
                            .as_bytes(),
                    )
                });
                session.push(frame);
            }
        });
    }
}

/// `{"endpoint":…,"kind":…,"data":<the text as it came>}` as a text frame. Text that is not
/// JSON (a kind rule may take a message whose first field alone it read) goes as a JSON
/// string, so no peer can add keys of its own to the frame.
pub(crate) fn message_frame(endpoint: &str, kind: &str, text: &str) -> Bytes {
    let mut payload = Vec::with_capacity(text.len() + endpoint.len() + kind.len() + 40);
    payload.extend_from_slice(b"{\"endpoint\":");
    write_json_string(&mut payload, endpoint);
    payload.extend_from_slice(b",\"kind\":");
    write_json_string(&mut payload, kind);
    payload.extend_from_slice(b",\"data\":");
    if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
        payload.extend_from_slice(text.as_bytes());
    } else {
        write_json_string(&mut payload, text);
    }
    payload.push(b'}');
    text_frame(&payload)
}

fn write_json_string(out: &mut Vec<u8>, text: &str) {
    // serde_json writes a &str as a JSON string and cannot fail into a Vec.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// One unmasked text frame (as a server sends it) holding `payload`.
pub(crate) fn text_frame(payload: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    frame.put_u8(0x81);
    match payload.len() {
        len @ 0..=125 => frame.put_u8(len as u8),
        len @ 126..=0xffff => {
            frame.put_u8(126);
            frame.put_u16(len as u16);
        }
        len => {
            frame.put_u8(127);
            frame.put_u64(len as u64);
        }
    }
    frame.put_slice(payload);
    frame.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_codec::Decoder;
    use actix_http::ws::{Codec, Frame};

    fn decoded(frame: &Bytes) -> String {
        let mut buf = BytesMut::from(&frame[..]);
        match Codec::new()
            .client_mode()
            .max_size(1 << 20)
            .decode(&mut buf)
        {
            Ok(Some(Frame::Text(text))) => String::from_utf8(text.to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_message_frame_carries_the_upstream_text_byte_for_byte() {
        let text = "{ \"type\" : \"trade\",\"p\":1.50 }";
        let frame = message_frame("binance", "trade", text);
        assert_eq!(
            decoded(&frame),
            "{\"endpoint\":\"binance\",\"kind\":\"trade\",\"data\":{ \"type\" : \"trade\",\"p\":1.50 }}"
        );
        let odd = message_frame("a\"b", "k\\", "1");
        let value: serde_json::Value = serde_json::from_str(&decoded(&odd)).unwrap();
        assert_eq!(value["endpoint"], "a\"b");
        assert_eq!(value["kind"], "k\\");
    }

    #[test]
    fn text_that_is_not_json_goes_as_a_string_and_adds_no_keys() {
        let sneaky = r#"{"type":"t"},"endpoint":"other","data":{"x":1}"#;
        let value: serde_json::Value =
            serde_json::from_str(&decoded(&message_frame("feed", "t", sneaky))).unwrap();
        assert_eq!(value["endpoint"], "feed");
        assert_eq!(value["data"], sneaky);
    }

    #[test]
    fn frames_of_every_length_class_decode() {
        for len in [0usize, 125, 126, 65_535, 65_536, 200_000] {
            let payload = "x".repeat(len);
            assert_eq!(decoded(&text_frame(payload.as_bytes())).len(), len);
        }
    }
}
