//! Between the herd and NATS: local messages and state changes published, other members'
//! messages routed to local subscribers, sends served for and requested from other members,
//! and status answered.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, Weak};
use std::time::Duration;

use actix::prelude::*;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::{Value, json};
use wsherd::{
    Delivery, EndpointName, Outbound, Overflow, RawMessage, RemoteRemember, RemoteSend,
    RemoteSender, SendError, StateEvent, Submitted, SubscribeOptions,
};
use wsherd_router::DispatchReport;

use crate::error::ClusterError;
use crate::{HEADER_ENDPOINT, HEADER_KIND, HEADER_MEMBER, Shared};

/// The header that marks a send request's payload as a binary frame (else it is text).
pub const HEADER_BINARY: &str = "Wsherd-Binary";

/// Messages the publisher's mailbox holds; past this the herd drops them for it (counted as
/// the endpoint's `dropped_full`) instead of slowing the endpoints that read them.
const PUBLISH_MAILBOX: usize = 16_384;

/// Messages waiting for the NATS client, beyond its own buffer: past this many, or past
/// [`PUBLISH_QUEUE_BYTES`] of payload, they are dropped and counted (`publish_dropped`). A
/// burst waits here while the client writes; a NATS slower than the endpoints, or away,
/// fills it.
const PUBLISH_QUEUE: usize = 65_536;

/// Payload bytes waiting for the NATS client at most (messages may be up to the endpoints'
/// `max_message_size` each, so the count alone is no bound on memory).
const PUBLISH_QUEUE_BYTES: usize = 64 << 20;

/// How often the feed looks whether anything here wants other members' messages.
const DEMAND_EVERY: Duration = Duration::from_millis(50);

/// How long a send by request is tried again while a lease names an owner that does not
/// answer yet (it is taking the endpoint over).
const HANDOVER_GRACE: Duration = Duration::from_secs(1);

/// How long a send by request waits for the owner's answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts the publisher, the feeder of remote messages, the status responder, and makes the
/// herd send through this cluster.
pub(crate) async fn start(shared: &Arc<Shared>) -> Result<(), ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    let (queue, outgoing) = tokio::sync::mpsc::channel(PUBLISH_QUEUE);
    let queued_bytes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    actix::spawn(hand_to_nats(
        shared.client.clone(),
        Arc::clone(&shared.counters),
        Arc::clone(&queued_bytes),
        outgoing,
    ));
    let publisher = Publisher {
        shared: Arc::downgrade(shared),
        queue,
        queued_bytes,
    }
    .start();
    let own = shared.herd.subscribe_raw_all(
        publisher.clone().recipient(),
        SubscribeOptions::new().overflow(Overflow::Drop),
    );
    let states = shared.herd.subscribe_events_with::<StateEvent>(
        publisher.recipient(),
        SubscribeOptions::new().overflow(Overflow::Drop),
    );
    shared
        .own_subscriptions
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .extend([own, states]);

    actix::spawn(feed(Arc::downgrade(shared), own));

    let status = shared
        .client
        .subscribe(shared.subjects.status())
        .await
        .map_err(|e| nats(&e))?;
    actix::spawn(answer_status(Arc::downgrade(shared), status));

    shared.herd.set_remote(Some(Arc::new(RemoteSends {
        shared: Arc::downgrade(shared),
    })));
    Ok(())
}

/// Publishes what local endpoints receive, and their state changes.
struct Publisher {
    shared: Weak<Shared>,
    queue: tokio::sync::mpsc::Sender<Outgoing>,
    /// Payload bytes in `queue`.
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
}

/// One message for NATS.
struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

impl Publisher {
    /// Queues one message for NATS without waiting: a full queue drops it and counts it.
    fn publish(&self, shared: &Shared, subject: String, headers: HeaderMap, payload: Bytes) {
        let size = payload.len();
        let drop = || {
            shared
                .counters
                .publish_dropped
                .fetch_add(1, Ordering::Relaxed);
        };
        if self.queued_bytes.load(Ordering::Relaxed) + size > PUBLISH_QUEUE_BYTES {
            return drop();
        }
        let outgoing = Outgoing {
            subject,
            headers,
            payload,
        };
        // Counted before it is queued, so the task's subtraction never comes first.
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if self.queue.try_send(outgoing).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            drop();
        }
    }
}

/// Hands the publisher's messages to the NATS client in order, waiting while its buffer is
/// full. A task of its own, not the publisher's handler: waiting there would leave the
/// client's connection task (on the same arbiter) no turn to write, and drop a burst the
/// client could have taken a moment later.
async fn hand_to_nats(
    client: async_nats::Client,
    counters: Arc<crate::ClusterCounters>,
    queued_bytes: Arc<std::sync::atomic::AtomicUsize>,
    mut outgoing: tokio::sync::mpsc::Receiver<Outgoing>,
) {
    while let Some(message) = outgoing.recv().await {
        queued_bytes.fetch_sub(message.payload.len(), Ordering::Relaxed);
        let sent = client
            .publish_with_headers(message.subject, message.headers, message.payload)
            .await;
        let counter = match sent {
            Ok(()) => &counters.published,
            Err(_) => &counters.publish_dropped,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Actor for Publisher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(PUBLISH_MAILBOX);
    }
}

impl Handler<Delivery<RawMessage>> for Publisher {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<RawMessage>, _: &mut Context<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let endpoint = delivery.endpoint.as_str();
        // Only what this member read itself: a remote message routed here is another
        // member's (it reached this herd before the endpoint became local, if it is now).
        let Some(since) = shared.local_since(endpoint) else {
            return;
        };
        if delivery.message.received_at < since {
            return;
        }
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ENDPOINT, endpoint);
        headers.insert(HEADER_KIND, &*delivery.message.kind);
        headers.insert(HEADER_MEMBER, shared.member.as_str());
        let subject = shared.subjects.message(endpoint, &delivery.message.kind);
        let payload = Bytes::copy_from_slice(delivery.message.text.as_bytes());
        self.publish(&shared, subject, headers, payload);
    }
}

impl Handler<Delivery<StateEvent>> for Publisher {
    type Result = ();

    fn handle(&mut self, delivery: Delivery<StateEvent>, _: &mut Context<Self>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let endpoint = delivery.endpoint.as_str();
        if !shared.is_local(endpoint) {
            return;
        }
        let mut line = wsherd_server::state_line(endpoint, &delivery.message);
        line["member"] = Value::from(shared.member.as_str());
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ENDPOINT, endpoint);
        headers.insert(HEADER_MEMBER, shared.member.as_str());
        let payload = Bytes::from(line.to_string());
        self.publish(&shared, shared.subjects.state(endpoint), headers, payload);
    }
}

/// Routes other members' messages to this herd's subscribers, decoded once per type as any
/// local message is; nobody here wanting one is fine (no dead letter: that is the owner's).
///
/// It takes them off NATS only while a subscription here wants messages (`own`, the
/// publisher's, aside): a member without subscribers costs NATS and itself nothing for
/// the others' traffic. Subscriptions are looked at every [`DEMAND_EVERY`] when they changed.
async fn feed(shared: Weak<Shared>, own: wsherd::SubscriptionId) {
    let mut report = DispatchReport::default();
    let mut cache = match shared.upgrade() {
        Some(shared) => shared.herd.router().cache(),
        None => return,
    };
    let mut messages: Option<async_nats::Subscriber> = None;
    let mut looked_at = None;
    let mut check = tokio::time::interval(DEMAND_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = match messages.as_mut() {
            Some(subscriber) => tokio::select! {
                // The tick first: a flood of messages must not keep the check from running.
                biased;
                _ = check.tick() => None,
                message = subscriber.next() => match message {
                    Some(message) => Some(message),
                    None => {
                        // The client closed: subscribe again at the next check.
                        messages = None;
                        looked_at = None;
                        continue;
                    }
                },
            },
            None => {
                check.tick().await;
                None
            }
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.leaving.load(Ordering::SeqCst) {
            if let Some(mut subscriber) = messages.take() {
                let _ = subscriber.unsubscribe().await;
            }
            return;
        }
        let Some(message) = message else {
            let version = cache.current().version();
            if looked_at == Some(version) {
                continue;
            }
            looked_at = Some(version);
            let wanted = shared.herd.router().wants_messages_besides(&[own]);
            if wanted && messages.is_none() {
                match shared
                    .client
                    .subscribe(shared.subjects.all_messages())
                    .await
                {
                    Ok(subscriber) => messages = Some(subscriber),
                    // Tried again at the next check.
                    Err(_) => looked_at = None,
                }
            } else if !wanted && let Some(mut subscriber) = messages.take() {
                let _ = subscriber.unsubscribe().await;
            }
            continue;
        };
        if route_remote(&shared, &mut cache, &mut report, &message) && report.held() > 0 {
            // A full backpressure subscriber: wait for it, and let NATS hold (and, past its
            // own bound, drop and report) what comes meanwhile.
            drop(shared);
            std::future::poll_fn(|cx| report.poll_unblocked(cx)).await;
        }
    }
}

/// Routes one message of another member's endpoint here; whether it was routed.
fn route_remote(
    shared: &Shared,
    cache: &mut wsherd_router::RouteCache,
    report: &mut DispatchReport,
    message: &async_nats::Message,
) -> bool {
    // Borrowed from the message: nothing is allocated per message to look at it.
    let header = |name: &str| message.headers.as_ref()?.get(name).map(|v| v.as_str());
    if header(HEADER_MEMBER) == Some(shared.member.as_str()) {
        return false;
    }
    let parsed;
    let endpoint = match header(HEADER_ENDPOINT) {
        Some(endpoint) => endpoint,
        None => match shared.subjects.parse_message(message.subject.as_str()) {
            Some((endpoint, _)) => {
                parsed = endpoint;
                parsed.as_str()
            }
            None => return false,
        },
    };
    // Ours now: what another member published before the hand-over is not delivered twice.
    if shared.is_local(endpoint) {
        return false;
    }
    // The config's own name (a shared one): only endpoints of the config are routed.
    let Some((name, config)) = shared.config.endpoints.get_key_value(endpoint) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(&message.payload) else {
        return false;
    };
    // Counted before it is handed on: whoever sees the delivery sees the count.
    shared
        .counters
        .remote_routed
        .fetch_add(1, Ordering::Relaxed);
    let table = Arc::clone(cache.current());
    table.route_wanted(name, &config.spec.connection.kind, text, report);
    report.flush_batches();
    for id in report.closed.drain(..) {
        shared.herd.unsubscribe(id);
    }
    true
}

/// Answers `<prefix>.status` with this member's endpoints.
async fn answer_status(shared: Weak<Shared>, mut requests: async_nats::Subscriber) {
    while let Some(request) = requests.next().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(reply) = request.reply else {
            continue;
        };
        let endpoints: Vec<Value> = shared
            .herd
            .status()
            .iter()
            .map(wsherd_server::status_json)
            .collect();
        let counters: serde_json::Map<String, Value> = crate::membership::figures(&shared)
            .iter()
            .map(|figure| (figure.name.to_owned(), Value::from(figure.value)))
            .collect();
        let answer = json!({
            "member": shared.member,
            "endpoints": endpoints,
            "counters": counters,
        });
        let _ = shared
            .client
            .publish(reply, Bytes::from(answer.to_string()))
            .await;
    }
}

/// Asks every member for its status and gathers the answers for `wait`.
pub(crate) async fn gather_status(shared: &Arc<Shared>, wait: Duration) -> Vec<Value> {
    let inbox = shared.client.new_inbox();
    let Ok(mut answers) = shared.client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if shared
        .client
        .publish_with_reply(shared.subjects.status(), inbox, Bytes::new())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.next()).await {
        if let Ok(value) = serde_json::from_slice::<Value>(&answer.payload) {
            out.push(value);
        }
    }
    out.sort_by(|a, b| a["member"].as_str().cmp(&b["member"].as_str()));
    out
}

/// Answers `<prefix>.send.<endpoint>` requests while this member runs `endpoint`.
pub(crate) fn serve_sends(shared: &Arc<Shared>, endpoint: EndpointName) {
    let weak = Arc::downgrade(shared);
    let client = shared.client.clone();
    let subject = shared.subjects.send(endpoint.as_str());
    let key = endpoint.as_str().to_owned();
    let task = actix::spawn(async move {
        // What the last owner handed over goes first: no send by request overtakes it. A
        // task of its own, so that a release aborting this one cannot cut it off halfway.
        if let Some(shared) = weak.upgrade() {
            let taking = actix::spawn(crate::handover::take(shared, endpoint.as_str().to_owned()));
            let _ = taking.await;
        }
        let Ok(mut requests) = client.subscribe(subject).await else {
            return;
        };
        while let Some(request) = requests.next().await {
            let Some(shared) = weak.upgrade() else {
                return;
            };
            let Some(reply) = request.reply.clone() else {
                continue;
            };
            let answer = serve_one(&shared, &endpoint, &request).await;
            shared.counters.sends_served.fetch_add(1, Ordering::Relaxed);
            let _ = client.publish(reply, Bytes::from(answer.to_string())).await;
        }
    });
    if let Some(old) = shared
        .send_tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, task)
    {
        old.abort();
    }
}

async fn serve_one(
    shared: &Arc<Shared>,
    endpoint: &EndpointName,
    request: &async_nats::Message,
) -> Value {
    let binary = request
        .headers
        .as_ref()
        .and_then(|h| h.get(HEADER_BINARY))
        .is_some();
    let message = if binary {
        Outbound::Binary(request.payload.clone())
    } else {
        match String::from_utf8(request.payload.to_vec()) {
            Ok(text) => Outbound::Text(text),
            Err(_) => {
                return json!({
                    "status": "rejected",
                    "error": format!("the payload is not UTF-8 text; send binary frames with the {HEADER_BINARY} header"),
                });
            }
        }
    };
    if !shared.is_local(endpoint.as_str()) {
        return json!({"status": "rejected", "error": "this member no longer runs the endpoint"});
    }
    match shared.herd.send(endpoint.as_str(), message).await {
        Ok(Submitted::Writing) => json!({"status": "writing"}),
        Ok(Submitted::Queued) => json!({"status": "queued"}),
        Err(error) => json!({"status": "rejected", "error": error.to_string()}),
    }
}

/// Stops answering sends for `endpoint` (it is being closed here).
pub(crate) fn stop_serving_sends(shared: &Arc<Shared>, endpoint: &str) {
    if let Some(task) = shared
        .send_tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(endpoint)
    {
        task.abort();
    }
}

/// Sends `message` to `endpoint` through its owner and reads the owner's outcome.
pub(crate) async fn request_send(
    shared: &Arc<Shared>,
    endpoint: &str,
    message: &Outbound,
) -> Result<Submitted, SendError> {
    let (payload, binary) = match message {
        Outbound::Text(text) => (Bytes::from(text.clone()), false),
        Outbound::Binary(bytes) => (bytes.clone(), true),
    };
    let mut headers = HeaderMap::new();
    headers.insert(HEADER_MEMBER, shared.member.as_str());
    if binary {
        headers.insert(HEADER_BINARY, "1");
    }
    let no_owner = || SendError::NoOwner {
        name: endpoint.to_owned(),
        message: message.clone(),
    };
    let started = tokio::time::Instant::now();
    let answer = loop {
        let request = shared.client.request_with_headers(
            shared.subjects.send(endpoint),
            headers.clone(),
            payload.clone(),
        );
        match tokio::time::timeout(SEND_TIMEOUT, request).await {
            Ok(Ok(answer)) => break answer,
            Ok(Err(error)) => match error.kind() {
                // A lease names an owner that does not answer yet: a hand-over or a takeover
                // under way (the new owner answers once it has sent what was handed over).
                async_nats::client::RequestErrorKind::NoResponders
                    if started.elapsed() < HANDOVER_GRACE && shared.has_owner(endpoint) =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                async_nats::client::RequestErrorKind::NoResponders
                | async_nats::client::RequestErrorKind::TimedOut => return Err(no_owner()),
                _ => {
                    return Err(SendError::Remote {
                        name: endpoint.to_owned(),
                        error: error.to_string(),
                    });
                }
            },
            Err(_) => return Err(no_owner()),
        }
    };
    let value: Value = serde_json::from_slice(&answer.payload).unwrap_or(Value::Null);
    match value["status"].as_str() {
        Some("writing") => Ok(Submitted::Writing),
        Some("queued") => Ok(Submitted::Queued),
        Some("rejected") if value["error"] == "this member no longer runs the endpoint" => {
            Err(no_owner())
        }
        _ => Err(SendError::Remote {
            name: endpoint.to_owned(),
            error: value["error"]
                .as_str()
                .unwrap_or("the owner's answer was not understood")
                .to_owned(),
        }),
    }
}

/// What the herd sends through for endpoints of the cluster it does not run.
struct RemoteSends {
    shared: Weak<Shared>,
}

impl RemoteSender for RemoteSends {
    fn knows(&self, name: &str) -> bool {
        self.shared
            .upgrade()
            .is_some_and(|shared| shared.endpoint_config(name).is_some())
    }

    fn remember(&self, name: &str, message: Outbound) -> RemoteRemember {
        let shared = self.shared.upgrade();
        let name = name.to_owned();
        Box::pin(async move {
            match shared {
                Some(shared) => crate::remembered::remember(&shared, &name, &message).await,
                None => Err(SendError::NoOwner { name, message }),
            }
        })
    }

    fn send(&self, name: &str, message: Outbound) -> RemoteSend {
        let shared = self.shared.upgrade();
        let name = name.to_owned();
        Box::pin(async move {
            match shared {
                Some(shared) => request_send(&shared, &name, &message).await,
                None => Err(SendError::NoOwner { name, message }),
            }
        })
    }
}
