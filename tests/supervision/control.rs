//! Pause, resume and stop, asked of a running endpoint.

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
