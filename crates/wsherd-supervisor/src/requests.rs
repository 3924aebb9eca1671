//! Requests by id: a message sent with an id in it, and the reply that carries the id back.
//!
//! The [`Requests`] of an endpoint are shared by whoever sends a request (it registers the
//! request and waits), the endpoint's connections (they offer each inbound text message while
//! a reply is awaited) and its supervisor (it says when a request's message was written, came
//! back unsent, or was on a socket that ended). A request is answered once: by its reply, or
//! as `Disconnected` when the socket it was written on ended first, or `Stopped`; a request
//! whose caller gave up (its timeout) is forgotten, and a reply that comes later is routed
//! like any message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use serde_json::Value;
use wsherd_connection::ReplyWaiter;
use wsherd_protocol::{KindRule, MessageId};

/// Requests an endpoint holds waiting for replies, unless told otherwise.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// How an endpoint's requests carry their ids and how replies are recognised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestPolicy {
    /// Where a request's id is written: a top-level field, or a JSON pointer (`/params/id`).
    pub id_field: String,
    /// Where a reply carries the id; `None`: where requests do.
    pub reply_id_field: Option<String>,
    /// A request written on a socket that ended before its reply is sent again on the next
    /// one (only for requests the peer may safely see twice); else it fails `Disconnected`.
    pub resend_on_reconnect: bool,
    /// A reply also goes to subscribers, as any message would.
    pub route_replies: bool,
    /// Requests waiting for replies at most; past it a request is refused at once.
    pub max_in_flight: usize,
}

impl Default for RequestPolicy {
    fn default() -> Self {
        RequestPolicy {
            id_field: "id".to_owned(),
            reply_id_field: None,
            resend_on_reconnect: false,
            route_replies: true,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }
}

/// What became of a request, as its waiter is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    /// Its reply, the whole message text.
    Reply(&'a str),
    /// The socket it was written on ended before a reply came.
    Disconnected,
    /// The endpoint stopped before a reply came.
    Stopped,
}

/// Why a request could not be registered; the message is handed back.
///
/// `Debug` prints what `Display` does, never the message (a request may carry credentials).
#[derive(Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestRefused {
    /// A request must be a JSON object, to hold its id.
    #[error("a request must be a JSON object to carry its id")]
    NotAnObject(Value),
    /// The message's own id is neither an integer nor a string.
    #[error("the request's id is neither an integer nor a string")]
    BadId(Value),
    /// A request with this id is still waiting for its reply.
    #[error("a request with id {0} is already waiting for its reply")]
    IdInUse(MessageId, Value),
    /// `max_in_flight` requests are waiting already.
    #[error("{0} requests are already waiting for replies (max_in_flight)")]
    TooMany(usize, Value),
}

impl std::fmt::Debug for RequestRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl RequestRefused {
    /// The message, handed back.
    pub fn into_message(self) -> Value {
        match self {
            RequestRefused::NotAnObject(message)
            | RequestRefused::BadId(message)
            | RequestRefused::IdInUse(_, message)
            | RequestRefused::TooMany(_, message) => message,
        }
    }
}

type Waiter = Box<dyn FnOnce(Answer<'_>) + Send>;

struct Pending {
    /// Registrations before this one: the order requests were sent in.
    seq: u64,
    /// The text sent, id included: how the supervisor recognises the message it handles.
    text: Arc<str>,
    /// The socket life it was last written on (`None` while queued).
    written_on: Option<u64>,
    waiter: Waiter,
}

struct Rules {
    policy: RequestPolicy,
    id: KindRule,
    reply_id: KindRule,
    /// The id field's path, for writing it.
    path: Vec<String>,
}

impl Rules {
    fn of(policy: RequestPolicy) -> Self {
        let id = KindRule::pointer(&policy.id_field);
        let reply_id = policy
            .reply_id_field
            .as_deref()
            .map_or_else(|| id.clone(), KindRule::pointer);
        let path = match &id {
            KindRule::Path(segments) => segments.to_vec(),
            KindRule::Custom(_) => vec![policy.id_field.clone()],
        };
        Rules {
            policy,
            id,
            reply_id,
            path,
        }
    }
}

#[derive(Default)]
struct Inner {
    /// The last id this endpoint gave a request.
    last_id: u64,
    /// Requests registered so far.
    registered: u64,
    pending: HashMap<MessageId, Pending>,
}

/// Counts of an endpoint's requests.
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Requests registered.
    pub sent: AtomicU64,
    /// Replies that answered a request.
    pub replied: AtomicU64,
    /// Requests whose caller stopped waiting first.
    pub timed_out: AtomicU64,
    /// Requests whose socket ended first.
    pub disconnected: AtomicU64,
    /// Messages with an id, seen while requests waited, that answered none of them (an id
    /// never sent, of the wrong type, or of a request already given up).
    pub unmatched: AtomicU64,
}

/// An endpoint's requests at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestStats {
    /// Waiting for their replies now.
    pub in_flight: usize,
    /// Registered so far.
    pub sent: u64,
    /// Answered by their replies.
    pub replied: u64,
    /// Given up by their callers.
    pub timed_out: u64,
    /// Failed because their socket ended first.
    pub disconnected: u64,
    /// Messages with an id, seen while requests waited, that answered none.
    pub unmatched: u64,
}

/// One endpoint's requests waiting for replies; see the module docs.
///
/// An endpoint that never sends a request holds two words of it: the rest is made at the
/// first request (or a policy other than the default).
#[derive(Default)]
pub struct Requests {
    awaiting: AtomicUsize,
    state: OnceLock<Box<State>>,
}

/// What an endpoint that sends requests keeps of them.
struct State {
    rules: Mutex<Arc<Rules>>,
    inner: Mutex<Inner>,
    counters: RequestCounters,
}

/// The rules of the default policy, shared by every endpoint that keeps it.
fn default_rules() -> Arc<Rules> {
    static DEFAULT: OnceLock<Arc<Rules>> = OnceLock::new();
    Arc::clone(DEFAULT.get_or_init(|| Arc::new(Rules::of(RequestPolicy::default()))))
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("awaiting", &self.awaiting.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `id` at `path` in `value`, making the objects on the way; `false` when something on
/// the way is not an object.
fn set_at(value: &mut Value, path: &[String], id: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = value;
    for segment in parents {
        let Value::Object(map) = current else {
            return false;
        };
        current = map
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
    match current {
        Value::Object(map) => {
            map.insert(last.clone(), id);
            true
        }
        _ => false,
    }
}

/// What is at `path` in `value`, if anything.
fn get_at<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter()
        .try_fold(value, |current, segment| match current {
            Value::Object(map) => map.get(segment),
            _ => None,
        })
}

impl Requests {
    /// Takes `policy` for the requests registered from now on.
    pub fn configure(&self, policy: &RequestPolicy) {
        if self.state.get().is_none() && *policy == RequestPolicy::default() {
            return;
        }
        let mut rules = lock(&self.state().rules);
        if rules.policy != *policy {
            *rules = Arc::new(Rules::of(policy.clone()));
        }
    }

    fn state(&self) -> &State {
        self.state.get_or_init(|| {
            Box::new(State {
                rules: Mutex::new(default_rules()),
                inner: Mutex::new(Inner::default()),
                counters: RequestCounters::default(),
            })
        })
    }

    fn rules(&self) -> Arc<Rules> {
        match self.state.get() {
            Some(state) => Arc::clone(&lock(&state.rules)),
            None => default_rules(),
        }
    }

    /// The counts now.
    pub fn stats(&self) -> RequestStats {
        let Some(state) = self.state.get() else {
            return RequestStats::default();
        };
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &state.counters;
        RequestStats {
            in_flight: self.in_flight(),
            sent: count(&counters.sent),
            replied: count(&counters.replied),
            timed_out: count(&counters.timed_out),
            disconnected: count(&counters.disconnected),
            unmatched: count(&counters.unmatched),
        }
    }

    /// Requests waiting for replies now.
    pub fn in_flight(&self) -> usize {
        self.awaiting.load(Ordering::Acquire)
    }

    /// Registers the request `message`: gives it the endpoint's next id unless it carries its
    /// own, and keeps `waiter` until it is answered. Returns the id and the text to send.
    pub fn register(
        &self,
        mut message: Value,
        waiter: impl FnOnce(Answer<'_>) + Send + 'static,
    ) -> Result<(MessageId, Arc<str>), RequestRefused> {
        let rules = self.rules();
        if !message.is_object() {
            return Err(RequestRefused::NotAnObject(message));
        }
        let mut inner = lock(&self.state().inner);
        if inner.pending.len() >= rules.policy.max_in_flight {
            return Err(RequestRefused::TooMany(inner.pending.len(), message));
        }
        let id = match get_at(&message, &rules.path) {
            Some(own) => match MessageId::of_value(own) {
                Some(id) => id,
                None => return Err(RequestRefused::BadId(message)),
            },
            None => {
                // Skips ids the caller chose for requests still waiting.
                loop {
                    inner.last_id += 1;
                    let id = MessageId::Integer(inner.last_id.to_string());
                    if !inner.pending.contains_key(&id) {
                        break id;
                    }
                }
            }
        };
        if inner.pending.contains_key(&id) {
            return Err(RequestRefused::IdInUse(id, message));
        }
        if !set_at(&mut message, &rules.path, id.to_value()) {
            return Err(RequestRefused::NotAnObject(message));
        }
        let text: Arc<str> = Arc::from(message.to_string());
        let seq = inner.registered;
        inner.registered += 1;
        inner.pending.insert(
            id.clone(),
            Pending {
                seq,
                text: Arc::clone(&text),
                written_on: None,
                waiter: Box::new(waiter),
            },
        );
        self.awaiting.store(inner.pending.len(), Ordering::Release);
        self.state().counters.sent.fetch_add(1, Ordering::Relaxed);
        Ok((id, text))
    }

    /// Forgets request `id` unanswered (its caller stopped waiting, or it was never sent);
    /// returns whether it was still waiting.
    pub fn forget(&self, id: &MessageId, timed_out: bool) -> bool {
        let mut inner = lock(&self.state().inner);
        let forgotten = inner.pending.remove(id).is_some();
        self.awaiting.store(inner.pending.len(), Ordering::Release);
        drop(inner);
        if forgotten && timed_out {
            self.state()
                .counters
                .timed_out
                .fetch_add(1, Ordering::Relaxed);
        }
        forgotten
    }

    /// The waiting request whose message is `text`, by the id in it.
    fn pending_of<'i>(
        &self,
        inner: &'i mut Inner,
        rules: &Rules,
        text: &str,
    ) -> Option<&'i mut Pending> {
        let id = rules.id.extract_id(text)?;
        inner
            .pending
            .get_mut(&id)
            .filter(|pending| &*pending.text == text)
    }

    /// `text` went to socket `socket` (its [`Connection::id`](wsherd_connection::Connection::id)).
    pub fn mark_written(&self, text: &str, socket: u64) {
        let life = socket;
        if self.in_flight() == 0 {
            return;
        }
        let rules = self.rules();
        let mut inner = lock(&self.state().inner);
        if let Some(pending) = self.pending_of(&mut inner, &rules, text) {
            pending.written_on = Some(life);
        }
    }

    /// `text` came back unsent from a socket that ended: it goes out again, still awaited.
    pub fn unwritten(&self, text: &str) {
        if self.in_flight() == 0 {
            return;
        }
        let rules = self.rules();
        let mut inner = lock(&self.state().inner);
        if let Some(pending) = self.pending_of(&mut inner, &rules, text) {
            pending.written_on = None;
        }
    }

    /// Socket life `life` ended: the requests written on it and not answered are
    /// `Disconnected`, or, with `resend_on_reconnect`, returned (oldest first) to be sent
    /// again.
    pub fn socket_ended(&self, life: u64) -> Vec<Arc<str>> {
        if self.in_flight() == 0 {
            return Vec::new();
        }
        let rules = self.rules();
        let mut inner = lock(&self.state().inner);
        let ended: Vec<MessageId> = inner
            .pending
            .iter()
            .filter(|(_, pending)| pending.written_on == Some(life))
            .map(|(id, _)| id.clone())
            .collect();
        let mut resend = Vec::new();
        let mut failed = Vec::new();
        for id in ended {
            if rules.policy.resend_on_reconnect {
                if let Some(pending) = inner.pending.get_mut(&id) {
                    pending.written_on = None;
                    resend.push((pending.seq, Arc::clone(&pending.text)));
                }
            } else if let Some(pending) = inner.pending.remove(&id) {
                failed.push(pending.waiter);
            }
        }
        self.awaiting.store(inner.pending.len(), Ordering::Release);
        drop(inner);
        self.state()
            .counters
            .disconnected
            .fetch_add(failed.len() as u64, Ordering::Relaxed);
        for waiter in failed {
            waiter(Answer::Disconnected);
        }
        resend.sort_by_key(|(seq, _)| *seq);
        resend.into_iter().map(|(_, text)| text).collect()
    }

    /// The endpoint stopped: every waiting request is `Stopped`.
    pub fn stop_all(&self) {
        let pending = std::mem::take(&mut lock(&self.state().inner).pending);
        self.awaiting.store(0, Ordering::Release);
        for (_, pending) in pending {
            (pending.waiter)(Answer::Stopped);
        }
    }
}

impl ReplyWaiter for Requests {
    fn awaiting(&self) -> bool {
        self.in_flight() > 0
    }

    fn written(&self, text: &str, socket: u64) {
        self.mark_written(text, socket);
    }

    fn offer(&self, text: &str) -> Option<bool> {
        let rules = self.rules();
        let id = rules.reply_id.extract_id(text)?;
        let mut inner = lock(&self.state().inner);
        // Only a request that went out can be answered: a feed's own message that happens to
        // carry the id of one still queued is no reply.
        let sent = inner
            .pending
            .get(&id)
            .is_some_and(|pending| pending.written_on.is_some());
        let Some(pending) = sent.then(|| inner.pending.remove(&id)).flatten() else {
            drop(inner);
            self.state()
                .counters
                .unmatched
                .fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.awaiting.store(inner.pending.len(), Ordering::Release);
        drop(inner);
        self.state()
            .counters
            .replied
            .fetch_add(1, Ordering::Relaxed);
        (pending.waiter)(Answer::Reply(text));
        Some(rules.policy.route_replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Told = Arc<Mutex<Vec<String>>>;

    fn waiter(told: &Told) -> impl FnOnce(Answer<'_>) + Send + 'static {
        let told = Arc::clone(told);
        move |answer| {
            let line = match answer {
                Answer::Reply(text) => text.to_owned(),
                other => format!("{other:?}"),
            };
            told.lock().unwrap().push(line);
        }
    }

    #[test]
    fn ids_come_from_a_counter_unless_the_request_has_its_own_and_a_reply_answers_once() {
        let requests = Requests::default();
        let told = Told::default();
        let (first, text) = requests
            .register(json!({"op":"sub"}), waiter(&told))
            .unwrap();
        assert_eq!(first, MessageId::Integer("1".into()));
        assert_eq!(&*text, r#"{"id":1,"op":"sub"}"#);
        let (own, _) = requests
            .register(json!({"op":"x","id":"abc"}), waiter(&told))
            .unwrap();
        assert_eq!(own, MessageId::Text("abc".into()));
        assert!(matches!(
            requests.register(json!({"id":"abc"}), waiter(&told)),
            Err(RequestRefused::IdInUse(..))
        ));
        assert_eq!(requests.in_flight(), 2);
        // Not written yet: a message carrying its id is no reply.
        assert_eq!(requests.offer(r#"{"id":1}"#), None);
        requests.mark_written(&text, 1);
        // The string "1" does not answer request 1; the number does, once.
        assert_eq!(requests.offer(r#"{"id":"1"}"#), None);
        assert_eq!(requests.offer(r#"{"id":1,"ok":true}"#), Some(true));
        assert_eq!(requests.offer(r#"{"id":1,"ok":true}"#), None);
        assert_eq!(*told.lock().unwrap(), [r#"{"id":1,"ok":true}"#]);
        assert_eq!(requests.stats().unmatched, 3);
        assert_eq!(requests.in_flight(), 1);
    }

    #[test]
    fn nested_id_fields_are_made_and_bad_requests_come_back_whole() {
        let requests = Requests::default();
        requests.configure(&RequestPolicy {
            id_field: "/params/req".into(),
            reply_id_field: Some("rid".into()),
            max_in_flight: 1,
            ..RequestPolicy::default()
        });
        let told = Told::default();
        let (_, text) = requests
            .register(json!({"method":"get"}), waiter(&told))
            .unwrap();
        assert_eq!(&*text, r#"{"method":"get","params":{"req":1}}"#);
        requests.mark_written(&text, 1);
        assert!(matches!(
            requests.register(json!({"x":1}), waiter(&told)),
            Err(RequestRefused::TooMany(1, value)) if value == json!({"x":1})
        ));
        assert_eq!(requests.offer(r#"{"params":{"req":1}}"#), None);
        assert_eq!(requests.offer(r#"{"rid":1}"#), Some(true));
        for bad in [json!([1]), json!("text"), json!({"params":5})] {
            let refused = requests.register(bad.clone(), waiter(&told)).unwrap_err();
            assert!(
                matches!(&refused, RequestRefused::NotAnObject(v) if *v == bad),
                "{refused:?}"
            );
        }
        assert!(matches!(
            requests.register(json!({"params":{"req":1.5}}), waiter(&told)),
            Err(RequestRefused::BadId(_))
        ));
    }

    #[test]
    fn a_socket_end_fails_what_was_written_on_it_and_keeps_what_came_back_unsent() {
        let requests = Requests::default();
        let told = Told::default();
        let (_, written) = requests.register(json!({"a":1}), waiter(&told)).unwrap();
        let (_, unsent) = requests.register(json!({"b":1}), waiter(&told)).unwrap();
        let (_, queued) = requests.register(json!({"c":1}), waiter(&told)).unwrap();
        requests.written(&written, 1);
        requests.written(&unsent, 1);
        requests.unwritten(&unsent);
        // A text that merely carries a waiting id is not its request.
        requests.written(r#"{"id":3,"other":true}"#, 1);
        assert!(requests.socket_ended(1).is_empty());
        assert_eq!(*told.lock().unwrap(), ["Disconnected"]);
        assert_eq!(requests.in_flight(), 2);
        requests.stop_all();
        assert_eq!(
            *told.lock().unwrap(),
            ["Disconnected", "Stopped", "Stopped"]
        );
        assert_eq!(requests.in_flight(), 0);
        let _ = queued;
    }

    #[test]
    fn resend_on_reconnect_returns_what_was_written_in_the_order_it_was_sent() {
        let requests = Requests::default();
        requests.configure(&RequestPolicy {
            resend_on_reconnect: true,
            ..RequestPolicy::default()
        });
        let told = Told::default();
        let texts: Vec<Arc<str>> = (0..12)
            .map(|n| requests.register(json!({"n":n}), waiter(&told)).unwrap().1)
            .collect();
        for text in &texts {
            requests.written(text, 7);
        }
        assert_eq!(
            requests.socket_ended(7),
            texts,
            "in the order sent (10 after 9)"
        );
        assert!(told.lock().unwrap().is_empty());
        assert_eq!(requests.in_flight(), 12);
    }
}
