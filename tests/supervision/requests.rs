//! Requests by id: what the server received, and which reply answered which request.

use serde_json::{Value, json};
use wsherd::{RequestError, RequestPolicy, RequestRefused};

use super::*;

#[derive(Debug, Deserialize)]
struct Ack {
    id: u64,
    ok: bool,
}

fn replying(template: &str) -> Step {
    Step::ReplyById {
        field: "id".into(),
        reply: template.into(),
    }
}

const ACK: &str = r#"{"type":"ack","id":{id},"ok":true}"#;

/// A server that acknowledges every request by its id and answers "ping" with a pong (which
/// comes after any reply sent before it, on the same socket).
fn acking_server() -> TestServer {
    TestServer::start(vec![
        replying(ACK),
        Step::Answer {
            request: "ping".into(),
            reply: r#"{"type":"pong"}"#.into(),
        },
    ])
    .unwrap()
}

/// Records every JSON message of the herd (replies that are routed among them), in order.
fn everything(herd: &Herd) -> wsherd_testkit::Recorded<Delivery<Value>> {
    let (addr, recorded) = Recorder::<Delivery<Value>>::start();
    herd.router()
        .subscribe_all::<Value>(addr.recipient(), SubscribeOptions::new());
    recorded
}

/// The texts a server's connection `index` received.
fn received_on(server: &TestServer, index: usize) -> Vec<String> {
    server
        .connections()
        .get(index)
        .map(|c| {
            c.received
                .iter()
                .filter_map(|r| r.as_text().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn live_herd(
    name: &str,
    spec: EndpointSpec,
) -> (Herd, wsherd_testkit::Recorded<Delivery<StateEvent>>) {
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(name, spec).unwrap();
    reached(&states, name, 1, is_live).await;
    (herd, states)
}

#[actix_rt::test]
async fn a_request_gets_the_reply_with_its_id_and_subscribers_see_the_reply_too() {
    let server = acking_server();
    let (herd, _) = live_herd("feed", spec(server.url("/"))).await;
    let seen = everything(&herd);
    let first: Ack = herd
        .request("feed", json!({"op": "subscribe"}), WAIT)
        .await
        .unwrap();
    let second: Ack = herd
        .request("feed", json!({"op": "subscribe", "n": 2}), WAIT)
        .await
        .unwrap();
    assert_eq!((first.id, first.ok, second.id), (1, true, 2));
    assert_eq!(
        received_on(&server, 0),
        [
            r#"{"id":1,"op":"subscribe"}"#,
            r#"{"id":2,"n":2,"op":"subscribe"}"#
        ]
    );
    herd.send("feed", "ping").await.unwrap();
    let kinds = seen
        .wait_for(WAIT, |seen| {
            let kinds: Vec<String> = seen
                .iter()
                .map(|d| d.message["type"].as_str().unwrap_or("").to_owned())
                .collect();
            kinds.contains(&"pong".to_owned()).then_some(kinds)
        })
        .await
        .unwrap();
    assert_eq!(kinds, ["ack", "ack", "pong"], "replies are routed too");
    let status = herd.endpoint_status("feed").unwrap();
    assert_eq!((status.requests.sent, status.requests.replied), (2, 2));
    assert_eq!(status.requests.in_flight, 0);
}

#[actix_rt::test]
async fn with_route_replies_off_a_reply_answers_its_request_and_reaches_no_subscriber() {
    let server = acking_server();
    let policy = RequestPolicy {
        route_replies: false,
        ..RequestPolicy::default()
    };
    let (herd, _) = live_herd("feed", spec(server.url("/")).request(policy)).await;
    let seen = everything(&herd);
    let ack: Ack = herd
        .request("feed", json!({"op": "x"}), WAIT)
        .await
        .unwrap();
    assert!(ack.ok);
    herd.send("feed", "ping").await.unwrap();
    // The pong comes after the ack on the same socket: once it is in, the ack would be too.
    seen.wait_for_count(1, WAIT).await.unwrap();
    let kinds: Vec<Value> = seen.with(|s| s.iter().map(|d| d.message["type"].clone()).collect());
    assert_eq!(kinds, [json!("pong")]);
}

#[actix_rt::test]
async fn own_ids_are_kept_a_waiting_id_is_refused_and_a_reply_of_the_wrong_type_answers_nothing() {
    let right = TestServer::start(vec![replying(r#"{"type":"ack","id":{id}}"#)]).unwrap();
    // Answers request 1 with the string "1": an id of the wrong type.
    let wrong = TestServer::start(vec![replying(r#"{"type":"ack","id":"{id}"}"#)]).unwrap();
    let silent = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint("right", spec(right.url("/"))).unwrap();
    herd.add_endpoint("wrong", spec(wrong.url("/"))).unwrap();
    herd.add_endpoint("silent", spec(silent.url("/"))).unwrap();
    for name in ["right", "wrong", "silent"] {
        reached(&states, name, 1, is_live).await;
    }
    let seen = everything(&herd);

    let reply: Value = herd
        .request("right", json!({"id": "abc", "op": "x"}), WAIT)
        .await
        .unwrap();
    assert_eq!(reply, json!({"type": "ack", "id": "abc"}));

    let short = Duration::from_millis(300);
    let error = herd
        .request::<Value>("wrong", json!({"op": "x"}), short)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RequestError::Timeout { id, .. } if id.to_string() == "1"),
        "{error}"
    );
    // The string-id reply was no answer: counted, and routed as any message.
    seen.wait_for(WAIT, |s| {
        s.iter()
            .any(|d| d.endpoint == "wrong" && d.message["id"] == "1")
            .then_some(())
    })
    .await
    .unwrap();
    let wrong_status = herd.endpoint_status("wrong").unwrap();
    assert_eq!(wrong_status.requests.timed_out, 1);
    assert_eq!(wrong_status.requests.in_flight, 0);

    // An id still waiting cannot be used again.
    let waiting = {
        let herd = herd.clone();
        actix_rt::spawn(async move {
            herd.request::<Value>("silent", json!({"id": "dup"}), WAIT)
                .await
        })
    };
    silent.wait_for_received(0, 1, WAIT).await.unwrap();
    let refused = herd
        .request::<Value>("silent", json!({"id": "dup", "again": true}), WAIT)
        .await
        .unwrap_err();
    match refused {
        RequestError::Refused(RequestRefused::IdInUse(id, message)) => {
            assert_eq!(id.to_string(), "\"dup\"");
            assert_eq!(message, json!({"id": "dup", "again": true}), "handed back");
        }
        other => panic!("{other}"),
    }
    assert_eq!(received_on(&silent, 0), [r#"{"id":"dup"}"#]);
    herd.remove_endpoint("silent", CloseCode::NORMAL, "bye")
        .await
        .unwrap();
    assert!(matches!(
        waiting.await.unwrap(),
        Err(RequestError::Stopped { .. })
    ));
}

#[actix_rt::test]
async fn max_in_flight_refuses_the_next_request_at_once_and_an_answer_frees_a_slot() {
    let server = TestServer::start(vec![Step::Answer {
        request: "release".into(),
        reply: r#"{"id":1,"released":true}"#.into(),
    }])
    .unwrap();
    let policy = RequestPolicy {
        max_in_flight: 2,
        ..RequestPolicy::default()
    };
    let (herd, _) = live_herd("feed", spec(server.url("/")).request(policy)).await;
    let mut waiting = Vec::new();
    for n in 0..2 {
        let herd = herd.clone();
        waiting.push(actix_rt::spawn(async move {
            herd.request::<Value>("feed", json!({"n": n}), WAIT).await
        }));
    }
    server.wait_for_received(0, 2, WAIT).await.unwrap();
    let refused = herd
        .request::<Value>("feed", json!({"n": 2}), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &refused,
            RequestError::Refused(RequestRefused::TooMany(2, _))
        ),
        "{refused}"
    );
    assert_eq!(
        received_on(&server, 0).len(),
        2,
        "the refused one was not sent"
    );
    herd.send("feed", "release").await.unwrap();
    let first = waiting.remove(0).await.unwrap().unwrap();
    assert_eq!(first, json!({"id": 1, "released": true}));
    assert_eq!(herd.endpoint_status("feed").unwrap().requests.in_flight, 1);
    // Admitted now (and unanswered: it times out rather than being refused).
    let admitted = herd
        .request::<Value>("feed", json!({"n": 3}), Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(
        matches!(admitted, RequestError::Timeout { .. }),
        "{admitted}"
    );
    // A caller that stops waiting (its future dropped) frees its slot as well.
    waiting.remove(0).abort();
    let deadline = Instant::now() + WAIT;
    while herd.endpoint_status("feed").unwrap().requests.in_flight > 0 {
        assert!(
            Instant::now() < deadline,
            "the dropped request still holds its slot"
        );
        actix_rt::task::yield_now().await;
    }
}

#[actix_rt::test]
async fn a_request_on_a_socket_that_drops_fails_disconnected_and_is_not_sent_again() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::WaitForMessages(1), Step::Cut]),
        _ => Behaviour::Accept(vec![replying(ACK)]),
    })
    .start()
    .unwrap();
    let (herd, states) = live_herd("feed", spec(server.url("/"))).await;
    let error = herd
        .request::<Ack>("feed", json!({"op": "x"}), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(error, RequestError::Disconnected { .. }),
        "{error}"
    );
    reached(&states, "feed", 2, is_live).await;
    // A new request on the new socket is answered; the old one never came again.
    let ack: Ack = herd
        .request("feed", json!({"op": "y"}), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.id, 2);
    assert_eq!(received_on(&server, 1), [r#"{"id":2,"op":"y"}"#]);
    assert_eq!(
        herd.endpoint_status("feed").unwrap().requests.disconnected,
        1
    );
}

#[actix_rt::test]
async fn with_resend_on_reconnect_a_request_cut_off_goes_out_again_and_is_answered() {
    let server = TestServer::builder_with(|index| match index {
        0 => Behaviour::Accept(vec![Step::WaitForMessages(1), Step::Cut]),
        _ => Behaviour::Accept(vec![replying(ACK)]),
    })
    .start()
    .unwrap();
    let policy = RequestPolicy {
        resend_on_reconnect: true,
        ..RequestPolicy::default()
    };
    let (herd, _) = live_herd("feed", spec(server.url("/")).request(policy)).await;
    let ack: Ack = herd
        .request("feed", json!({"op": "x"}), WAIT)
        .await
        .unwrap();
    assert_eq!(ack.id, 1);
    assert_eq!(received_on(&server, 0), [r#"{"id":1,"op":"x"}"#]);
    assert_eq!(received_on(&server, 1), [r#"{"id":1,"op":"x"}"#]);
}

#[actix_rt::test]
async fn a_request_made_while_down_waits_in_the_queue_and_is_answered_after_the_next_open() {
    let server = TestServer::start(vec![replying(ACK)]).unwrap();
    let (herd, states) = live_herd("feed", spec(server.url("/"))).await;
    herd.pause("feed").unwrap();
    reached(&states, "feed", 1, |s| *s == EndpointState::Paused).await;
    let request = {
        let herd = herd.clone();
        actix_rt::spawn(async move { herd.request::<Ack>("feed", json!({"op": "x"}), WAIT).await })
    };
    let deadline = Instant::now() + WAIT;
    while herd.endpoint_status("feed").unwrap().queue_depth == 0 {
        assert!(Instant::now() < deadline, "never queued");
        actix_rt::task::yield_now().await;
    }
    herd.resume("feed").unwrap();
    let ack = request.await.unwrap().unwrap();
    assert_eq!(ack.id, 1);
    assert_eq!(received_on(&server, 1), [r#"{"id":1,"op":"x"}"#]);
}

#[actix_rt::test]
async fn requests_that_cannot_carry_an_id_or_go_nowhere_come_back_with_their_message() {
    let server = TestServer::start(vec![]).unwrap();
    let (herd, _) = live_herd("feed", spec(server.url("/"))).await;
    let not_object = herd
        .request::<Value>("feed", json!(["op"]), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&not_object, RequestError::Refused(RequestRefused::NotAnObject(v)) if *v == json!(["op"])),
        "{not_object}"
    );
    let bad_id = herd
        .request::<Value>("feed", json!({"id": 1.5}), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(bad_id, RequestError::Refused(RequestRefused::BadId(_))),
        "{bad_id}"
    );
    let nowhere = herd
        .request::<Value>("nowhere", json!({"op": "x"}), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &nowhere,
            RequestError::Rejected(SendError::UnknownEndpoint { .. })
        ),
        "{nowhere}"
    );
    assert!(
        !format!("{nowhere:?}").contains("op"),
        "Debug shows no message: {nowhere:?}"
    );
    assert!(server.connections()[0].received.is_empty());
}

#[actix_rt::test]
async fn a_reply_that_does_not_decode_is_a_decode_error_with_its_id() {
    let server = TestServer::start(vec![replying(r#"{"id":{id},"ok":"not a bool"}"#)]).unwrap();
    let (herd, _) = live_herd("feed", spec(server.url("/"))).await;
    let error = herd
        .request::<Ack>("feed", json!({"op": "x"}), WAIT)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RequestError::Decode { id, .. } if id.to_string() == "1"),
        "{error}"
    );
}
