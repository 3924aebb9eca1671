//! The hub: one actor per worker that takes the herd's state events and, once a second, the
//! endpoints' figures, and hands every line to each event client's [`Outbox`].
//!
//! It never waits for a client. A client whose outbox is full of state lines, or whose lines
//! waited longer than the stall timeout, is cut (stats lines are coalesced, one per endpoint,
//! and never fill it): its lines are freed and its socket shut down (when the
//! server was given [`on_connect`](crate::on_connect)). The hub is subscribed to state events
//! with `Overflow::Drop` only while it has clients, so supervisors never wait for it either.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix::prelude::*;
use wsherd::{
    Delivery, EndpointName, EndpointStatus, Herd, Overflow, StateEvent, SubscribeOptions,
    SubscriptionId,
};

use super::lines::{state_line, stats_line};
use super::outbox::Outbox;
use crate::options::{Counters, EventLimits};
use crate::socket::SocketHandle;

/// How often stats lines are made (and stalls checked).
const TICK: Duration = Duration::from_secs(1);

/// State events the hub's mailbox holds before new ones are dropped (it takes them at once).
const MAILBOX: usize = 8192;

/// State events handled in a row before the hub lets its arbiter run something else.
///
/// actix takes an actor's messages for as long as its mailbox has any, without returning to
/// the runtime: a herd publishing faster than the hub renders would otherwise starve the
/// worker it shares with the HTTP connections (their bodies, timers, this hub's own tick).
const BURST: u32 = 64;

/// A client joining: its outbox, its socket when the server can reach it, and the figures of
/// the stats lines it is sent first.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Join {
    outbox: Arc<Outbox>,
    socket: Option<SocketHandle>,
    known: HashMap<EndpointName, Figures>,
}

impl Join {
    /// `outbox`'s client, who is sent a stats line for each of `initial` first.
    pub(crate) fn new(
        outbox: Arc<Outbox>,
        socket: Option<SocketHandle>,
        initial: &[EndpointStatus],
    ) -> Self {
        let known = initial
            .iter()
            .map(|status| (status.name.clone(), Figures::from(status)))
            .collect();
        Join {
            outbox,
            socket,
            known,
        }
    }
}

struct Client {
    outbox: Arc<Outbox>,
    socket: Option<SocketHandle>,
    /// Until the client's first tick, the figures it was sent first. The snapshot is taken
    /// when the request is handled, before the hub takes the client in: what changed in
    /// between is in neither the snapshot nor the hub's `last`, so it is compared here.
    known: Option<HashMap<EndpointName, Figures>>,
}

impl Client {
    /// Whether this client needs a stats line of `endpoint`, whose figures are now `now` and
    /// were `last` at the hub's previous tick.
    fn needs(&self, endpoint: &EndpointName, now: &Figures, last: Option<&Figures>) -> bool {
        match &self.known {
            Some(known) => known.get(endpoint) != Some(now),
            None => last != Some(now),
        }
    }
}

/// What a stats line reports, apart from the time and the round trip (which changes with
/// every heartbeat and alone does not make a line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Figures {
    state: &'static str,
    attempt: u32,
    queue_depth: usize,
    messages_in: u64,
    bytes_in: u64,
    messages_out: u64,
    dead_letters: u64,
    reconnects: u64,
}

impl From<&EndpointStatus> for Figures {
    fn from(status: &EndpointStatus) -> Self {
        Figures {
            state: status.state.name(),
            attempt: status.attempt,
            queue_depth: status.queue_depth,
            messages_in: status.stats.messages_in,
            bytes_in: status.stats.bytes_in,
            messages_out: status.stats.messages_out,
            dead_letters: status.stats.dead_letters,
            reconnects: status.reconnects,
        }
    }
}

/// See the module docs.
pub(crate) struct Hub {
    herd: Herd,
    limits: EventLimits,
    counters: Arc<Counters>,
    clients: Vec<Client>,
    subscription: Option<SubscriptionId>,
    last: HashMap<EndpointName, Figures>,
    /// State events handled since the hub last gave its arbiter back.
    burst: u32,
}

impl Hub {
    pub(crate) fn new(herd: Herd, limits: EventLimits, counters: Arc<Counters>) -> Self {
        Hub {
            herd,
            limits,
            counters,
            clients: Vec::new(),
            subscription: None,
            last: HashMap::new(),
            burst: 0,
        }
    }

    /// Hands the state line `line` to every client; cuts those that cannot take it.
    fn broadcast(&mut self, line: &Arc<str>) {
        let mut full = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            if client.outbox.push(line).is_err() {
                full.push(index);
            }
        }
        for index in full.into_iter().rev() {
            let client = self.clients.swap_remove(index);
            self.cut(client, "its buffer is full");
        }
    }

    fn cut(&self, client: Client, why: &str) {
        let waiting = client.outbox.queued_bytes();
        client.outbox.cut();
        if let Some(socket) = &client.socket {
            socket.cut();
        }
        self.counters
            .event_clients_cut
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            waiting_bytes = waiting,
            "an /api/events client did not read what was sent and was cut: {why}"
        );
    }

    fn tick(&mut self, _: &mut Context<Self>) {
        self.clients.retain(|client| !client.outbox.is_gone());
        let now = Instant::now();
        let mut stalled = Vec::new();
        for (index, client) in self.clients.iter().enumerate() {
            if client.outbox.stalled_for(now) > self.limits.stall_timeout {
                stalled.push(index);
            }
        }
        for index in stalled.into_iter().rev() {
            let client = self.clients.swap_remove(index);
            self.cut(client, "nothing was taken within the stall timeout");
        }
        if self.clients.is_empty() {
            if let Some(id) = self.subscription.take() {
                self.herd.unsubscribe(id);
            }
            return;
        }
        let statuses = self.herd.status();
        let mut seen = HashMap::with_capacity(statuses.len());
        for status in &statuses {
            let figures = Figures::from(status);
            let last = self.last.get(&status.name);
            let mut line: Option<Arc<str>> = None;
            for client in &self.clients {
                if client.needs(&status.name, &figures, last) {
                    let line =
                        line.get_or_insert_with(|| Arc::from(stats_line(status).to_string()));
                    client.outbox.push_stats(&status.name, line);
                }
            }
            seen.insert(status.name.clone(), figures);
        }
        for client in &mut self.clients {
            client.known = None;
        }
        self.last = seen;
    }
}

impl Actor for Hub {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX);
        ctx.run_interval(TICK, Self::tick);
    }
}

impl Handler<Join> for Hub {
    type Result = ();

    fn handle(&mut self, join: Join, ctx: &mut Context<Self>) {
        if self.subscription.is_none() {
            let options = SubscribeOptions::new().overflow(Overflow::Drop);
            let id = self
                .herd
                .subscribe_events_with::<StateEvent>(ctx.address().recipient(), options);
            self.subscription = Some(id);
        }
        self.clients.push(Client {
            outbox: join.outbox,
            socket: join.socket,
            known: Some(join.known),
        });
    }
}

impl Handler<Delivery<StateEvent>> for Hub {
    type Result = ();

    fn handle(&mut self, event: Delivery<StateEvent>, ctx: &mut Context<Self>) {
        self.burst += 1;
        if self.burst >= BURST {
            // Waiting ends actix's loop over the mailbox: the runtime polls the connections,
            // the timers and the I/O driver before the next message is taken.
            ctx.wait(
                actix::fut::wrap_future::<_, Self>(actix_rt::task::yield_now())
                    .map(|(), hub, _| hub.burst = 0),
            );
        }
        self.clients.retain(|client| !client.outbox.is_gone());
        if self.clients.is_empty() {
            return;
        }
        let line: Arc<str> =
            Arc::from(state_line(event.endpoint.as_str(), &event.message).to_string());
        self.broadcast(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(messages_in: u64) -> Figures {
        Figures {
            state: "live",
            attempt: 0,
            queue_depth: 0,
            messages_in,
            bytes_in: messages_in * 4,
            messages_out: 0,
            dead_letters: 0,
            reconnects: 0,
        }
    }

    fn client(known: Option<HashMap<EndpointName, Figures>>) -> Client {
        Client {
            outbox: Arc::new(Outbox::new(1024)),
            socket: None,
            known,
        }
    }

    #[test]
    fn a_change_between_a_clients_snapshot_and_its_joining_is_still_sent_to_it() {
        let feed = EndpointName::new("feed").unwrap();
        // The snapshot saw no message; the hub's last tick (for the clients before) saw one.
        let joined = client(Some(HashMap::from([(feed.clone(), figures(0))])));
        let earlier = client(None);
        let now = figures(1);
        assert!(joined.needs(&feed, &now, Some(&now)));
        assert!(!earlier.needs(&feed, &now, Some(&now)));
    }

    #[test]
    fn figures_that_did_not_change_make_no_line() {
        let feed = EndpointName::new("feed").unwrap();
        let joined = client(Some(HashMap::from([(feed.clone(), figures(3))])));
        let earlier = client(None);
        assert!(!joined.needs(&feed, &figures(3), Some(&figures(1))));
        assert!(!earlier.needs(&feed, &figures(3), Some(&figures(3))));
        assert!(
            earlier.needs(&feed, &figures(3), None),
            "an endpoint added since"
        );
    }
}
