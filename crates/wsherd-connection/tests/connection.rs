//! One `Connection` against the testkit's servers, with no supervisor above it: a failure here
//! is the socket layer's (handshake, frames, writes, close), not a policy's.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use serde::Deserialize;
use wsherd_connection::{
    Close, ConnectStage, Connection, ConnectionConfig, ConnectionEvent, ConnectionStats, EndReason,
    Notice, Observed, Side, Write, WriteError,
};
use wsherd_protocol::{CloseCode, EndpointName, HeartbeatMode, HeartbeatSpec, Inbound, Outbound};
use wsherd_router::{Delivery, Router};
use wsherd_testkit::{RawServer, RawStep, Recorded, Recorder, Step, TestServer};

/// Generous: tests wait on events, and a loaded 2-core machine is slow, not broken.
const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize)]
struct Tick {
    seq: u64,
}

impl Inbound for Tick {
    const KIND: &'static str = "tick";
}

/// Starts a connection to `config` that reports to a recorder of its notices.
fn start(config: ConnectionConfig, router: &Router) -> (Addr<Connection>, Recorded<Observed>) {
    let (observer, notices) = Recorder::<Observed>::start();
    let name = EndpointName::new("feed").unwrap();
    let connection = Connection::new(name, Arc::new(config), router)
        .with_observer(observer.recipient())
        .start();
    (connection, notices)
}

/// The events among the notices, in order.
fn events(notices: &Recorded<Observed>) -> Vec<ConnectionEvent> {
    notices.with(|seen| {
        seen.iter()
            .filter_map(|observed| match &observed.notice {
                Notice::Event(event) => Some(event.clone()),
                _ => None,
            })
            .collect()
    })
}

/// Waits for the life to end and returns why.
async fn ended(notices: &Recorded<Observed>) -> EndReason {
    notices
        .wait_for(WAIT, |seen| {
            seen.iter().find_map(|observed| match &observed.notice {
                Notice::Event(ConnectionEvent::Closed { reason }) => Some(reason.clone()),
                _ => None,
            })
        })
        .await
        .unwrap()
}

async fn opened(notices: &Recorded<Observed>) {
    notices
        .wait_for(WAIT, |seen| {
            seen.iter()
                .any(|o| matches!(o.notice, Notice::Event(ConnectionEvent::Open { .. })))
                .then_some(())
        })
        .await
        .unwrap();
}

#[actix_rt::test]
async fn a_connection_routes_what_it_reads_writes_what_it_is_given_and_closes_with_our_code() {
    let server = TestServer::start(vec![Step::stream(&["tick"], 3)]).unwrap();
    let router = Router::new();
    let (subscriber, ticks) = Recorder::<Delivery<Tick>>::start();
    router.subscribe::<Tick>(subscriber.recipient());
    let (connection, notices) = start(ConnectionConfig::new(server.url("/")), &router);

    ticks.wait_for_count(3, WAIT).await.unwrap();
    let seqs: Vec<u64> = ticks.with(|seen| seen.iter().map(|d| d.message.seq).collect());
    assert_eq!(seqs, [0, 1, 2]);

    connection.send(Write::new("hello")).await.unwrap().unwrap();
    let received = server.wait_for_received(0, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("hello"));

    connection
        .send(Close {
            code: CloseCode::from(4000),
            reason: "done".into(),
        })
        .await
        .unwrap();
    let reason = ended(&notices).await;
    assert_eq!(
        reason,
        EndReason::LocalClose {
            code: CloseCode::from(4000),
            reason: "done".into(),
            acknowledged: true,
        }
    );
    let close = server
        .wait_for(WAIT, |c| c.first().and_then(|c| c.close.clone()))
        .await
        .unwrap();
    assert_eq!(close, (4000, "done".to_owned()));
    let kinds: Vec<&'static str> = events(&notices)
        .iter()
        .map(|event| match event {
            ConnectionEvent::Connecting { .. } => "connecting",
            ConnectionEvent::Open { .. } => "open",
            ConnectionEvent::Closing {
                initiated_by: Side::Local,
                ..
            } => "closing (local)",
            ConnectionEvent::Closing { .. } => "closing (peer)",
            ConnectionEvent::Closed { .. } => "closed",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["connecting", "open", "closing (local)", "closed"]);
}

#[actix_rt::test]
async fn a_write_before_the_handshake_finishes_is_handed_back_and_the_handshake_times_out() {
    // Accepts TCP (the kernel's backlog does) but never answers the upgrade.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", silent.local_addr().unwrap());
    let config = ConnectionConfig::new(url).handshake_timeout(Duration::from_millis(300));
    let (connection, notices) = start(config, &Router::new());

    let refused = connection.send(Write::new("too early")).await.unwrap();
    assert_eq!(
        refused,
        Err(WriteError::NotOpen(Outbound::from("too early")))
    );
    let reason = ended(&notices).await;
    assert_eq!(
        reason,
        EndReason::HandshakeTimeout {
            after: Duration::from_millis(300),
            stage: ConnectStage::Upgrade,
        }
    );
    assert_eq!(reason.stage(), Some(ConnectStage::Upgrade));
    assert!(!reason.was_open());
    assert_eq!(reason.close_code(), None);
}

#[actix_rt::test]
async fn a_peer_close_is_echoed_and_ends_the_life_with_the_peers_code() {
    let server = TestServer::start(vec![Step::close(4001, "maintenance")]).unwrap();
    let (_connection, notices) = start(ConnectionConfig::new(server.url("/")), &Router::new());

    let reason = ended(&notices).await;
    assert_eq!(
        reason,
        EndReason::PeerClosed {
            code: CloseCode::from(4001),
            reason: "maintenance".into(),
        }
    );
    assert_eq!(reason.close_code(), Some(CloseCode::from(4001)));
    assert!(events(&notices).iter().any(|event| matches!(
        event,
        ConnectionEvent::Closing {
            initiated_by: Side::Peer,
            code,
            ..
        } if *code == 4001
    )));
}

#[actix_rt::test]
async fn server_pings_are_answered_with_their_payload() {
    let server = TestServer::start(vec![Step::Ping("are you there".into())]).unwrap();
    let (connection, notices) = start(ConnectionConfig::new(server.url("/")), &Router::new());
    opened(&notices).await;

    let pongs = server
        .wait_for(WAIT, |c| {
            c.first()
                .filter(|c| !c.pongs.is_empty())
                .map(|c| c.pongs.clone())
        })
        .await
        .unwrap();
    assert_eq!(pongs, [bytes::Bytes::from_static(b"are you there")]);
    connection.do_send(Close {
        code: CloseCode::NORMAL,
        reason: String::new(),
    });
    ended(&notices).await;
}

#[actix_rt::test]
async fn a_silent_peer_is_declared_dead_and_told_so_with_the_code_the_end_reason_gives() {
    // A raw peer that completes the handshake, then reads everything and answers nothing.
    // (actix-web-actors would lose a Close that arrives together with the end of the stream.)
    let server = RawServer::start(vec![RawStep::Handshake, RawStep::Drain]).unwrap();
    let heartbeat = HeartbeatSpec {
        mode: HeartbeatMode::WsPing,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        idle_timeout: None,
    };
    let config = ConnectionConfig::new(server.url()).heartbeat(heartbeat);
    let (_connection, notices) = start(config, &Router::new());

    let reason = ended(&notices).await;
    assert!(
        matches!(reason, EndReason::Unresponsive { .. }),
        "{reason:?}"
    );
    assert_eq!(reason.close_code(), Some(CloseCode::INTERNAL));
    let told = server
        .wait_for(WAIT, |logs| logs.first().and_then(|log| log.close_code()))
        .await
        .unwrap();
    assert_eq!(
        Some(CloseCode::from(told)),
        reason.close_code(),
        "the peer hears the code the end reason reports"
    );
}

#[actix_rt::test]
async fn writes_the_os_never_took_whole_are_handed_back_in_order_with_their_time() {
    // Completes the handshake and never reads: our buffers fill, then the kernel's.
    let server = RawServer::start(vec![RawStep::Handshake, RawStep::Hold]).unwrap();
    let config = ConnectionConfig::new(server.url())
        .write_buffer(128 * 1024)
        .close_timeout(Duration::from_millis(100));
    let stats = Arc::new(ConnectionStats::default());
    let (observer, notices) = Recorder::<Observed>::start();
    let connection = Connection::new(
        EndpointName::new("sink").unwrap(),
        Arc::new(config),
        &Router::new(),
    )
    .with_stats(Arc::clone(&stats))
    .with_observer(observer.recipient())
    .start();
    opened(&notices).await;

    let accepted_at = std::time::Instant::now();
    let mut accepted = 0u64;
    loop {
        let write = Write {
            message: Outbound::from(format!("{accepted:08}:{}", "x".repeat(16 * 1024))),
            queued_at: accepted_at,
        };
        match connection.send(write).await.unwrap() {
            Ok(()) => accepted += 1,
            Err(WriteError::Full(_)) => break,
            Err(other) => panic!("{other:?}"),
        }
        assert!(accepted < 100_000, "the socket never filled");
    }
    connection.do_send(Close {
        code: CloseCode::NORMAL,
        reason: "bye".into(),
    });
    ended(&notices).await;

    let unsent = notices.with(|seen| {
        seen.iter()
            .find_map(|observed| match &observed.notice {
                Notice::Unsent(unsent) => Some(unsent.clone()),
                _ => None,
            })
            .unwrap_or_default()
    });
    let seqs: Vec<u64> = unsent
        .iter()
        .filter_map(|u| match &u.message {
            Outbound::Text(text) => text.get(..8)?.parse().ok(),
            Outbound::Binary(_) => None,
        })
        .collect();
    let flushed = stats.snapshot().messages_flushed;
    assert!(!seqs.is_empty(), "the write buffer held messages");
    assert_eq!(
        seqs,
        (flushed..accepted).collect::<Vec<_>>(),
        "exactly the messages after the last one the OS took whole, oldest first"
    );
    assert!(unsent.iter().all(|u| u.queued_at == accepted_at));
}
