//! Pause, resume and stop, asked of a running endpoint.

use actix::prelude::*;

use super::*;

#[actix_rt::test]
async fn pause_resume_and_stop_do_what_they_say() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("ctl", spec(server.url("/"))).unwrap();
    reached(&states, "ctl", 1, is_live).await;
    herd.pause("ctl").unwrap();
    reached(&states, "ctl", 1, |s| *s == EndpointState::Paused).await;
    let close = server.wait_for(WAIT, |c| c[0].close.clone()).await.unwrap();
    assert_eq!(close, (1000, "paused".to_owned()));
    assert_eq!(
        herd.send("ctl", "while paused").await.unwrap(),
        Submitted::Queued
    );
    assert_eq!(herd.endpoint_status("ctl").unwrap().queue_depth, 1);
    assert_eq!(server.connections().len(), 1, "no reconnect while paused");

    herd.resume("ctl").unwrap();
    reached(&states, "ctl", 2, is_live).await;
    let received = server.wait_for_received(1, 1, WAIT).await.unwrap();
    assert_eq!(received[0].as_text(), Some("while paused"));

    herd.pause("ctl").unwrap();
    reached(&states, "ctl", 2, |s| *s == EndpointState::Paused).await;
    herd.send("ctl", "never sent").await.unwrap();
    let unsent = herd.remove_endpoint("ctl", 1000, "bye").await.unwrap();
    assert_eq!(unsent, [Outbound::from("never sent")]);
    reached(&states, "ctl", 1, |s| *s == EndpointState::Stopped).await;
    assert_eq!(server.connections().len(), 2);
}

/// Which endpoints' last events a recorder has handled: `Stopped` states, `Closed` sockets.
fn stopped_in(states: &wsherd_testkit::Recorded<Delivery<StateEvent>>) -> Vec<String> {
    let mut names: Vec<String> = states.with(|seen| {
        seen.iter()
            .filter(|d| d.message.state == EndpointState::Stopped)
            .map(|d| d.endpoint.to_string())
            .collect()
    });
    names.sort();
    names
}

fn closed_in(events: &wsherd_testkit::Recorded<Delivery<ConnectionEvent>>) -> Vec<String> {
    let mut names: Vec<String> = events.with(|seen| {
        seen.iter()
            .filter(|d| matches!(&*d.message, ConnectionEvent::Closed { .. }))
            .map(|d| d.endpoint.to_string())
            .collect()
    });
    names.sort();
    names
}

#[actix_rt::test]
async fn shutdown_returns_only_once_subscribers_have_every_endpoint_s_closed_and_stopped() {
    let server = TestServer::start(vec![]).unwrap();
    let names: Vec<String> = (0..5).map(|n| format!("feed{n}")).collect();
    // On this arbiter, and spread over two worker threads; the recorders live on this one.
    let herds = [
        Herd::new(),
        Herd::with_settings(&wsherd::config::HerdSettings {
            workers: 2,
            ..Default::default()
        })
        .unwrap(),
    ];
    for herd in herds {
        // A mailbox of one: five endpoints closing together cannot all fit at once, so some
        // of their last events wait for room.
        let (addr, events) = Recorder::<Delivery<ConnectionEvent>>::start_with_capacity(Some(1));
        herd.subscribe_events(addr.recipient());
        let states = states(&herd);
        for name in &names {
            herd.add_endpoint(name, spec(server.url("/"))).unwrap();
        }
        for name in &names {
            reached(&states, name, 1, is_live).await;
        }
        let report = herd.shutdown("bye", WAIT).await;
        assert!(
            report.timed_out.is_empty() && report.events_pending.is_empty(),
            "{report:?}"
        );
        // No waiting: they are already there.
        assert_eq!(stopped_in(&states), names, "{herd:?}");
        assert_eq!(closed_in(&events), names, "{herd:?}");
    }
}

/// Takes one delivery, then never looks at its mailbox again.
struct Stuck;

impl Actor for Stuck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1);
    }
}

impl Handler<Delivery<StateEvent>> for Stuck {
    type Result = ();

    fn handle(&mut self, _: Delivery<StateEvent>, ctx: &mut Context<Self>) {
        ctx.wait(actix::fut::wrap_future(std::future::pending::<()>()));
    }
}

#[actix_rt::test]
async fn a_subscriber_that_never_takes_its_events_does_not_hold_shutdown_past_its_timeout() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.subscribe_events(Stuck.start().recipient::<Delivery<StateEvent>>());
    // Give up on a stuck subscriber only after an hour: shutdown must not wait for that.
    let mut stuck = spec(server.url("/"));
    stuck.connection.max_stall = Duration::from_secs(3600);
    herd.add_endpoint("stuck", stuck).unwrap();
    reached(&states, "stuck", 1, is_live).await;

    let shutdown = herd.shutdown("bye", Duration::from_millis(300));
    let report = actix_rt::time::timeout(WAIT, shutdown)
        .await
        .expect("shutdown returned within its timeout, not after max_stall");
    assert_eq!(report.events_pending, ["stuck"], "{report:?}");
    assert!(
        report.timed_out.is_empty(),
        "the socket closed in time: {report:?}"
    );
    // A subscriber that takes its events has them all the same (in its mailbox at least:
    // shutdown could not wait for it to handle them behind the stuck one).
    states.flushed().await;
    assert_eq!(stopped_in(&states), ["stuck"]);
}
