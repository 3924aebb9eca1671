//! Never frozen: a full subscriber pauses only the socket's reads, a stuck one is bounded by
//! `max_stall`, and a peer that never reads is bounded by `write_timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use wsherd_testkit::{RawServer, RawStep};

use super::*;

/// A subscriber with room for one message that sleeps `nap` on every message it takes,
/// without blocking its thread (its mailbox simply fills).
struct Sleepy {
    nap: Duration,
    taken: Arc<AtomicUsize>,
}

impl Actor for Sleepy {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Delivery<Tick>> for Sleepy {
    type Result = ();

    fn handle(&mut self, _: Delivery<Tick>, ctx: &mut Context<Self>) {
        self.taken.fetch_add(1, Ordering::SeqCst);
        ctx.wait(
            actix::clock::sleep(self.nap)
                .into_actor(self)
                .map(|_, _, _| ()),
        );
    }
}

/// A server that streams small ticks the whole time (small enough to stay in the kernel's
/// buffers, so the server itself keeps reading).
fn streaming() -> TestServer {
    let mut script = Vec::new();
    for burst in 0..200 {
        script.push(Step::Stream {
            kind_field: "type".into(),
            kinds: vec!["tick".into()],
            first_seq: burst * 10,
            count: 10,
            padding: 0,
        });
        script.push(Step::Pause(Duration::from_millis(25)));
    }
    TestServer::start(script).unwrap()
}

#[actix_rt::test]
async fn a_sleeping_subscriber_pauses_only_reads_while_sends_status_close_and_shutdown_go_on() {
    let server = streaming();
    let herd = Herd::new();
    let states = states(&herd);
    let taken = Arc::new(AtomicUsize::new(0));
    let sleepy = Sleepy {
        nap: Duration::from_secs(10),
        taken: Arc::clone(&taken),
    }
    .start();
    herd.subscribe::<Tick>(sleepy.recipient());
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_millis(50),
        timeout: Duration::from_millis(100),
        idle_timeout: None,
    };
    herd.add_endpoint("feed", spec(server.url("/")).heartbeat_spec(heartbeat))
        .unwrap();
    reached(&states, "feed", 1, is_live).await;
    // The subscriber took one message and sleeps; its mailbox is full behind it.
    while taken.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The heartbeat goes on: pings keep reaching the server, and the peer (whose Pongs sit
    // unread behind the paused reads) is not declared dead.
    let pings = server.connections()[0].pings;
    server
        .wait_for(WAIT, |c| (c[0].pings >= pings + 5).then_some(()))
        .await
        .unwrap();

    let sent = herd.send("feed", "during the stall").await.unwrap();
    assert_eq!(
        sent,
        Submitted::Writing,
        "the endpoint is live and takes sends"
    );
    server.wait_for_received(0, 1, WAIT).await.unwrap();
    let status = herd.endpoint_status("feed").unwrap();
    assert_eq!(status.state, EndpointState::Live);

    let started = Instant::now();
    let report = herd.shutdown("bye", Duration::from_millis(500)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    let close = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(close, (1000, "bye".to_owned()));
    assert_eq!(
        taken.load(Ordering::SeqCst),
        1,
        "all of it happened while the subscriber slept"
    );
    let _ = report;
}

#[actix_rt::test]
async fn a_stuck_subscriber_ends_the_socket_after_max_stall_and_the_endpoint_reconnects() {
    let server = streaming();
    let herd = Herd::new();
    let states = states(&herd);
    let sleepy = Sleepy {
        nap: Duration::from_secs(3600),
        taken: Arc::new(AtomicUsize::new(0)),
    }
    .start();
    herd.subscribe::<Tick>(sleepy.recipient());
    let stall = Duration::from_millis(300);
    let connection = ConnectionConfig::new(server.url("/")).max_stall(stall);
    herd.add_endpoint(
        "feed",
        EndpointSpec::new(connection).backoff(fast_backoff()),
    )
    .unwrap();

    let backoff = reached(&states, "feed", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(
            &backoff,
            EndpointState::Backoff {
                reason: EndReason::SubscriberStalled { after },
                ..
            } if *after == stall
        ),
        "{backoff:?}"
    );
    reached(&states, "feed", 2, is_live).await;
    assert!(herd.endpoint_status("feed").unwrap().stats.dropped_full > 0);
}

#[actix_rt::test]
async fn a_peer_that_talks_but_never_reads_ends_the_socket_after_write_timeout() {
    // A text frame every 20 ms keeps the heartbeat happy; nothing we write is ever read.
    let chatter = wsherd_testkit::frame(0x1, br#"{"type":"tick","seq":0}"#);
    let server = RawServer::start(vec![
        RawStep::Handshake,
        RawStep::Repeat(chatter, Duration::from_millis(20)),
    ])
    .unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let timeout = Duration::from_millis(300);
    let connection = ConnectionConfig::new(server.url())
        .write_buffer(64 * 1024)
        .write_timeout(timeout)
        .heartbeat(HeartbeatSpec {
            mode: HeartbeatMode::WsPing,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(200),
            idle_timeout: None,
        });
    herd.add_endpoint(
        "talker",
        EndpointSpec::new(connection).backoff(fast_backoff()),
    )
    .unwrap();
    reached(&states, "talker", 1, is_live).await;
    let big = "x".repeat(64 * 1024);
    // Fill the kernel's buffers and ours; past that, sends wait in the queue.
    for _ in 0..1000 {
        if herd.send("talker", big.clone()).await.unwrap() == Submitted::Queued {
            break;
        }
    }

    let backoff = reached(&states, "talker", 1, |s| {
        matches!(s, EndpointState::Backoff { .. })
    })
    .await;
    assert!(
        matches!(
            &backoff,
            EndpointState::Backoff {
                reason: EndReason::WriteStalled { after },
                ..
            } if *after == timeout
        ),
        "{backoff:?}"
    );
}
