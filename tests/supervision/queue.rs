//! The outbound queue while an endpoint is down: overflow policies and TTL.

use super::*;

#[actix_rt::test]
async fn overflow_policies_and_ttl_behave_as_documented() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let (queue_events, queue_seen) = Recorder::<Delivery<QueueEvent>>::start();
    herd.subscribe_events(queue_events.recipient());
    let small = |overflow, ttl| QueuePolicy {
        max_messages: 3,
        max_bytes: 1024,
        overflow,
        ttl,
    };
    herd.add_endpoint(
        "rej",
        spec(server.url("/")).queue(small(OverflowPolicy::Reject, None)),
    )
    .unwrap();
    herd.add_endpoint(
        "old",
        spec(server.url("/")).queue(small(OverflowPolicy::DropOldest, None)),
    )
    .unwrap();
    let ttl = Duration::from_millis(100);
    herd.add_endpoint(
        "ttl",
        spec(server.url("/")).queue(small(OverflowPolicy::Reject, Some(ttl))),
    )
    .unwrap();
    for name in ["rej", "old", "ttl"] {
        reached(&states, name, 1, is_live).await;
        herd.pause(name).unwrap();
        reached(&states, name, 1, |s| *s == EndpointState::Paused).await;
    }

    let mut refused = Vec::new();
    for i in 0..5 {
        match herd.send("rej", format!("r{i}")).await {
            Ok(outcome) => assert_eq!(outcome, Submitted::Queued),
            Err(error) => refused.push(error.into_message().unwrap()),
        }
    }
    assert_eq!(
        refused,
        [Outbound::from("r3"), Outbound::from("r4")],
        "the newest come back"
    );
    for i in 0..5 {
        assert_eq!(
            herd.send("old", format!("o{i}")).await.unwrap(),
            Submitted::Queued
        );
    }
    queue_seen
        .wait_for(WAIT, |seen| {
            let dropped: usize = seen
                .iter()
                .filter(|d| d.endpoint == "old")
                .map(|d| match *d.message {
                    QueueEvent::DroppedOldest { count } => count,
                    _ => 0,
                })
                .sum();
            (dropped == 2).then_some(())
        })
        .await
        .unwrap();
    herd.send("ttl", "stale").await.unwrap();
    // The TTL is about time passing: let it pass.
    tokio::time::sleep(ttl * 2).await;
    herd.send("ttl", "fresh").await.unwrap();

    for name in ["rej", "old", "ttl"] {
        herd.resume(name).unwrap();
        reached(&states, name, 2, is_live).await;
    }
    // Connections 0..2 were the first lives, 3..5 the resumed ones (in some order).
    let texts = |first: &str| -> Vec<String> {
        let logs = server.connections();
        logs.iter()
            .skip(3)
            .flat_map(|c| c.texts().map(str::to_owned).collect::<Vec<_>>())
            .filter(|t| t.starts_with(first))
            .collect()
    };
    server
        .wait_for(WAIT, |c| {
            let total: usize = c.iter().skip(3).map(|c| c.received.len()).sum();
            // three from "rej", three from "old", one fresh from "ttl"
            (total >= 7).then_some(())
        })
        .await
        .unwrap();
    assert_eq!(texts("r"), ["r0", "r1", "r2"]);
    assert_eq!(texts("o"), ["o2", "o3", "o4"]);
    assert_eq!(texts("fresh"), ["fresh"]);
    assert!(texts("stale").is_empty());
    let status = |name: &str| herd.endpoint_status(name).unwrap();
    assert_eq!(status("rej").queue_rejected, 2);
    assert_eq!(status("old").queue_dropped, 2);
    assert_eq!(status("ttl").queue_expired, 1);
}

#[actix_rt::test]
async fn a_paced_endpoint_sends_its_on_open_messages_then_the_queue_in_order_at_its_rate() {
    let server = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    let spec = spec(server.url("/"))
        .on_open("a")
        .on_open("b")
        .on_open("c")
        .pace(10, 1);
    herd.add_endpoint("paced", spec).unwrap();
    reached(&states, "paced", 1, is_live).await;
    let started = Instant::now();
    for n in 0..5 {
        herd.send("paced", format!("m{n}")).await.unwrap();
    }
    assert!(
        herd.endpoint_status("paced").unwrap().queue_depth > 0,
        "what waits for its turn waits in the queue"
    );
    let received = server.wait_for_received(0, 8, WAIT).await.unwrap();
    let took = started.elapsed();
    let texts: Vec<&str> = received.iter().filter_map(|r| r.as_text()).collect();
    assert_eq!(texts, ["a", "b", "c", "m0", "m1", "m2", "m3", "m4"]);
    // Eight messages at 10 a second with no burst: at least seven tenths of a second, less
    // what the on-open messages had spent of it before `started`.
    assert!(
        took >= Duration::from_millis(400),
        "8 messages at 10/s arrived within {took:?}"
    );
}
