//! Delivery truth: nothing accepted is lost, duplicated or reordered inside wsherd, and what
//! was not sent comes back to the caller. Counted at the server, not from wsherd's counters,
//! except `messages_flushed`: the one thing only the client can know.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::{Actor, Context, Handler};
use wsherd_testkit::{RawServer, RawStep, Watched};

use super::*;

/// A numbered message, padded so that a few hundred fill any socket buffer.
fn numbered(seq: u64) -> String {
    format!("{seq:08}:{}", "x".repeat(16 * 1024))
}

/// The numbers of `texts`, in order.
fn numbers<'a>(texts: impl Iterator<Item = &'a str>) -> Vec<u64> {
    texts
        .filter_map(|text| text.get(..8)?.parse().ok())
        .collect()
}

/// An endpoint with a small write buffer and room to queue, for filling a socket.
fn filling(url: String) -> EndpointSpec {
    let connection = ConnectionConfig::new(url)
        .write_buffer(256 * 1024)
        .close_timeout(Duration::from_millis(200));
    EndpointSpec::new(connection)
        .backoff(fast_backoff())
        .queue(QueuePolicy {
            max_messages: 100_000,
            max_bytes: 256 * 1024 * 1024,
            ..QueuePolicy::default()
        })
}

/// Sends numbered messages until the socket is full and `queued` of them wait in the queue;
/// returns how many were accepted.
async fn fill(herd: &Herd, name: &str, queued: u64) -> u64 {
    let mut accepted = 0;
    let mut waiting = 0;
    while waiting < queued {
        match herd.send(name, numbered(accepted)).await {
            Ok(Submitted::Queued) => waiting += 1,
            Ok(Submitted::Writing) => {}
            Err(error) => panic!("message {accepted} refused: {error}"),
        }
        accepted += 1;
        assert!(accepted < 100_000, "the socket never filled");
    }
    accepted
}

/// A peer that completes the handshake and never reads: the client's buffers fill.
fn stuck_peer(addr: SocketAddr) -> RawServer {
    RawServer::start_on(addr, vec![RawStep::Handshake, RawStep::Hold]).unwrap()
}

#[actix_rt::test]
async fn a_socket_killed_with_a_full_write_buffer_hands_back_every_unflushed_message_in_order() {
    let stuck = stuck_peer(SocketAddr::from(([127, 0, 0, 1], 0)));
    let addr = stuck.addr();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("sink", filling(stuck.url())).unwrap();
    reached(&states, "sink", 1, is_live).await;
    let accepted = fill(&herd, "sink", 20).await;

    // The peer goes away with our bytes unread: the kernel resets the connection.
    drop(stuck);
    reached(&states, "sink", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    // What the operating system took before the reset is gone with that peer, as with any
    // client; wsherd must account for everything else.
    let flushed = herd.endpoint_status("sink").unwrap().stats.messages_flushed;
    assert!(flushed < accepted, "{flushed} of {accepted} flushed");

    let good = TestServer::builder(vec![])
        .port(addr.port())
        .start()
        .unwrap();
    let expected = accepted - flushed;
    let received = good
        .wait_for(WAIT, |logs| {
            let texts: Vec<String> = logs
                .iter()
                .flat_map(|log| log.texts().map(str::to_owned).collect::<Vec<_>>())
                .collect();
            (texts.len() as u64 >= expected).then_some(texts)
        })
        .await
        .unwrap();
    let seqs = numbers(received.iter().map(String::as_str));
    assert_eq!(
        seqs,
        (flushed..accepted).collect::<Vec<_>>(),
        "every message not flushed arrives once, in order, ahead of none it followed"
    );
}

#[actix_rt::test]
async fn remove_hands_back_what_the_socket_still_held_not_only_the_queue() {
    let stuck = stuck_peer(SocketAddr::from(([127, 0, 0, 1], 0)));
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("sink", filling(stuck.url())).unwrap();
    reached(&states, "sink", 1, is_live).await;
    let queued = 20;
    let accepted = fill(&herd, "sink", queued).await;

    let unsent = herd
        .remove_endpoint("sink", CloseCode::NORMAL, "bye")
        .await
        .unwrap();
    let seqs = numbers(unsent.iter().filter_map(|m| match m {
        Outbound::Text(text) => Some(text.as_str()),
        _ => None,
    }));
    assert!(
        seqs.len() as u64 > queued,
        "the socket's write buffer comes back too: {} of {accepted}",
        seqs.len()
    );
    let first = accepted - seqs.len() as u64;
    assert_eq!(
        seqs,
        (first..accepted).collect::<Vec<_>>(),
        "the unsent are the newest, oldest first"
    );
}

#[actix_rt::test]
async fn a_subscription_remembered_while_open_is_written_once_per_socket() {
    // The first socket never acknowledges; the second does.
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![]),
        _ => Behaviour::Accept(vec![Step::Answer {
            request: "sub".into(),
            reply: "ack".into(),
        }]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "feed",
        spec(server.url("/"))
            .live_after(ReplyMatcher::Text("ack".into()), Duration::from_millis(300)),
    )
    .unwrap();
    reached(&states, "feed", 1, |s| *s == EndpointState::Open).await;
    herd.remember("feed", "sub").await.unwrap();
    reached(&states, "feed", 1, is_live).await;
    herd.send("feed", "after").await.unwrap();

    let second = server.wait_for_received(1, 2, WAIT).await.unwrap();
    let texts: Vec<_> = second.iter().filter_map(|m| m.as_text()).collect();
    assert_eq!(texts, ["sub", "after"], "replayed once, not also queued");
    let first: Vec<String> = server.connections()[0].texts().map(str::to_owned).collect();
    assert_eq!(
        first,
        ["sub"],
        "written at once on the socket that was open"
    );
}

#[actix_rt::test]
async fn remember_is_refused_when_failed_and_what_it_refused_is_not_kept() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Reject(401),
        _ => Behaviour::Accept(vec![]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("feed", spec(server.url("/"))).unwrap();
    reached(&states, "feed", 1, |s| {
        matches!(s, EndpointState::Failed { .. })
    })
    .await;

    let refused = herd.remember("feed", "sub").await;
    assert!(
        matches!(
            &refused,
            Err(wsherd::SendError::Rejected(Rejected::Down {
                state: "failed",
                ..
            }))
        ),
        "{refused:?}"
    );
    herd.reconnect("feed").unwrap();
    reached(&states, "feed", 1, is_live).await;
    herd.send("feed", "after").await.unwrap();
    let received = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("after"), "nothing was replayed");
}

#[actix_rt::test]
async fn restart_keeps_remembered_subscriptions() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("feed", spec(server.url("/"))).unwrap();
    reached(&states, "feed", 1, is_live).await;
    herd.remember("feed", "sub").await.unwrap();
    server.wait_for_received(0, 1, WAIT).await.unwrap();

    let unsent = herd.restart("feed").await.unwrap();
    assert!(unsent.is_empty());
    reached(&states, "feed", 2, is_live).await;
    herd.send("feed", "after").await.unwrap();
    let received = server.wait_for_received(1, 2, WAIT).await.unwrap();
    let texts: Vec<_> = received.iter().filter_map(|m| m.as_text()).collect();
    assert_eq!(texts, ["sub", "after"]);
}

#[actix_rt::test]
async fn on_open_messages_beyond_the_write_buffer_wait_for_room_instead_of_vanishing() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let connection = ConnectionConfig::new(server.url("/")).write_buffer(64 * 1024);
    let mut endpoint = EndpointSpec::new(connection).backoff(fast_backoff());
    for seq in 0..20 {
        endpoint = endpoint.on_open(numbered(seq));
    }
    herd.add_endpoint("subs", endpoint).unwrap();
    reached(&states, "subs", 1, is_live).await;
    herd.send("subs", numbered(20)).await.unwrap();

    let received = server.wait_for_received(0, 21, WAIT).await.unwrap();
    let seqs = numbers(received.iter().filter_map(|m| m.as_text()));
    assert_eq!(
        seqs,
        (0..21).collect::<Vec<_>>(),
        "all replayed, then the send"
    );
}

#[actix_rt::test]
async fn stale_messages_expire_while_down_and_never_refuse_fresh_ones() {
    let server = TestServer::builder_with(|_| Behaviour::Reject(503))
        .start()
        .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (queue_events, queue_seen) = Recorder::<Delivery<QueueEvent>>::start();
    herd.subscribe_events(queue_events.recipient());
    let ttl = Duration::from_millis(200);
    let endpoint = spec(server.url("/"))
        .backoff(BackoffPolicy {
            initial: Duration::from_secs(3600),
            max: Duration::from_secs(3600),
            ..fast_backoff()
        })
        .queue(QueuePolicy {
            max_messages: 2,
            max_bytes: 1024,
            overflow: OverflowPolicy::Reject,
            ttl: Some(ttl),
        });
    herd.add_endpoint("down", endpoint).unwrap();
    reached(&states, "down", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    for text in ["stale 1", "stale 2"] {
        assert_eq!(herd.send("down", text).await.unwrap(), Submitted::Queued);
    }

    // Expiry runs while the endpoint is down: it is announced without anyone sending.
    queue_seen
        .wait_for(WAIT, |seen| {
            let expired: usize = seen
                .iter()
                .map(|d| match *d.message {
                    QueueEvent::Expired { count } => count,
                    _ => 0,
                })
                .sum();
            (expired == 2).then_some(())
        })
        .await
        .unwrap();
    assert_eq!(herd.endpoint_status("down").unwrap().queue_depth, 0);
    assert_eq!(
        herd.send("down", "fresh").await.unwrap(),
        Submitted::Queued,
        "the stale messages no longer hold the room"
    );
}

#[actix_rt::test]
async fn peers_cut_while_messages_are_on_the_wire_lose_only_what_was_flushed_and_never_reorder() {
    const LIVES: usize = 15;
    const PER_LIFE: usize = 40;
    const BURST: u64 = 100;
    // Each of the first lives takes the hello and some messages, then the peer vanishes with
    // whatever is still on the wire; the last life stays.
    let server = TestServer::builder_with(|index| {
        if index < LIVES {
            Behaviour::Accept(vec![Step::WaitForMessages(1 + PER_LIFE), Step::Cut])
        } else {
            Behaviour::Accept(vec![])
        }
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let endpoint = spec(server.url("/")).on_open("hello").queue(QueuePolicy {
        max_messages: 100_000,
        max_bytes: 64 * 1024 * 1024,
        ..QueuePolicy::default()
    });
    herd.add_endpoint("feed", endpoint).unwrap();
    let mut seq = 0;
    for life in 1..=LIVES {
        reached(&states, "feed", life, is_live).await;
        // More than the peer will read: the rest is on the wire, or still ours, at the cut.
        for _ in 0..BURST {
            herd.send("feed", format!("{seq:08}")).await.unwrap();
            seq += 1;
        }
        reached(&states, "feed", life, |s| {
            matches!(s, EndpointState::Backoff { .. })
        })
        .await;
    }
    reached(&states, "feed", LIVES + 1, is_live).await;
    let last = format!("{seq:08}");
    herd.send("feed", last.clone()).await.unwrap();
    let sent = seq + 1;

    let logs = server
        .wait_for(WAIT, |logs| {
            logs.iter()
                .any(|log| log.texts().any(|t| t == last))
                .then(|| logs.to_vec())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; client: {:?}", herd.endpoint_status("feed")));
    let lives: Vec<Vec<u64>> = logs
        .iter()
        .map(|log| numbers(log.texts().filter(|t| *t != "hello")))
        .collect();
    for (index, life) in lives.iter().enumerate() {
        assert!(
            life.windows(2).all(|pair| pair[1] == pair[0] + 1),
            "life {index} skipped or repeated inside one socket: {life:?}"
        );
    }
    let all: Vec<u64> = lives.concat();
    assert!(
        all.windows(2).all(|pair| pair[1] > pair[0]),
        "nothing repeated or reordered across lives"
    );
    // Each message was taken whole by the operating system exactly once: a message lost
    // inside wsherd would never be, a resent one twice. (On-open hellos count too.) Those
    // missing at the server are the ones a cut peer's kernel threw away.
    let hellos = logs.len() as u64;
    let flushed = loop {
        let flushed = herd.endpoint_status("feed").unwrap().stats.messages_flushed;
        if flushed >= sent + hellos {
            break flushed;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(flushed, sent + hellos);
}

/// Records messages and state events in one mailbox: the order one subscriber sees.
struct Both(Arc<Watched<Vec<String>>>);

impl Actor for Both {
    type Context = Context<Self>;
}

impl Handler<Delivery<Tick>> for Both {
    type Result = ();

    fn handle(&mut self, tick: Delivery<Tick>, _: &mut Context<Self>) {
        self.0
            .update(|seen| seen.push(format!("tick {}", tick.message.seq)));
    }
}

impl Handler<Delivery<StateEvent>> for Both {
    type Result = ();

    fn handle(&mut self, event: Delivery<StateEvent>, _: &mut Context<Self>) {
        let name = event.message.state.name();
        self.0.update(|seen| seen.push(name.to_owned()));
    }
}

#[actix_rt::test]
async fn a_subscriber_sees_each_open_before_its_messages_and_each_end_before_the_next_lifes() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::stream(&["tick"], 5), Step::Drop]),
        _ => Behaviour::Accept(vec![Step::stream(&["tick"], 5)]),
    })
    .start()
    .unwrap();
    let herd = Herd::new();
    let seen = Arc::new(Watched::new(Vec::new()));
    let both = Both(Arc::clone(&seen)).start();
    herd.subscribe::<Tick>(both.clone().recipient());
    herd.subscribe_events::<StateEvent>(both.recipient());
    herd.add_endpoint("feed", spec(server.url("/"))).unwrap();

    let seen = seen
        .wait_for(
            WAIT,
            |seen| {
                let ticks = seen.iter().filter(|s| s.starts_with("tick")).count();
                (ticks == 10).then(|| seen.clone())
            },
            |seen| format!("{seen:?}"),
        )
        .await
        .unwrap();
    let at = |what: &str, from: usize| {
        seen.iter()
            .skip(from)
            .position(|s| s.starts_with(what))
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} after {from}: {seen:?}"))
    };
    let live = at("live", 0);
    assert!(
        live < at("tick", 0),
        "live before the first message: {seen:?}"
    );
    let backoff = at("backoff", live);
    assert_eq!(
        seen[..backoff]
            .iter()
            .filter(|s| s.starts_with("tick"))
            .count(),
        5,
        "the first life's messages before its end: {seen:?}"
    );
    let second_live = at("live", backoff);
    assert!(
        second_live < at("tick", backoff),
        "the next life's live before its first message: {seen:?}"
    );
}
