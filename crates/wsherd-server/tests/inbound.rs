//! Inbound endpoints with real clients: devices connect in, become sessions `devices:<id>`,
//! deliver typed messages, receive commands by name, resume within their window, and are
//! refused, replaced, cut or found dead as their config says.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use std::time::{Duration, Instant};

use awc::ws::{Frame, Message};
use common::{WAIT, states, wait_for_state};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsherd::config::{ConfigLoader, ServerSettings};
use wsherd::prelude::*;
use wsherd::{QueueEvent, SessionRefused};
use wsherd_server::{Refusal, RunningServer, ServerOptions};
use wsherd_testkit::{Recorded, Recorder};

type Socket = actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>;

#[derive(Debug, Clone, Deserialize)]
struct Reading {
    device: u32,
    value: f64,
}
wsherd::inbound!(Reading => "reading");

/// A herd whose `[inbound.devices]` is `extra` (TOML keys) on top of a path and kind, and a
/// server serving it on 127.0.0.1.
struct Devices {
    herd: Herd,
    states: Recorded<Delivery<StateEvent>>,
    readings: Recorded<Delivery<Reading>>,
    queue: Recorded<Delivery<QueueEvent>>,
    server: RunningServer,
    _dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed when dropped.
    pub(crate) struct Dir(pub(crate) std::path::PathBuf);
    impl Dir {
        pub(crate) fn new() -> Dir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("wsherd-inbound-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Devices {
    async fn start(extra: &str) -> Devices {
        Self::start_with(extra, ServerOptions::new()).await
    }

    async fn start_with(extra: &str, options: ServerOptions) -> Devices {
        let dir = tempdir::Dir::new();
        let file = dir.0.join("wsherd.toml");
        std::fs::write(
            &file,
            format!("[inbound.devices]\npath = \"/ws/devices/{{id}}\"\nkind = \"type\"\n{extra}\n"),
        )
        .unwrap();
        let config = ConfigLoader::new()
            .file(&file)
            .environment(Default::default())
            .load()
            .unwrap();
        let herd = Herd::from_config(config).unwrap();
        let states = states(&herd);
        let (recorder, readings) = Recorder::<Delivery<Reading>>::start();
        herd.subscribe(recorder.recipient());
        let (recorder, queue) = Recorder::<Delivery<QueueEvent>>::start();
        herd.subscribe_events(recorder.recipient());
        herd.start();
        let settings = ServerSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerSettings::default()
        };
        let server = wsherd_server::serve(herd.clone(), &settings, options).unwrap();
        Devices {
            herd,
            states,
            readings,
            queue,
            server,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.addrs()[0]
    }

    async fn connect(&self, path: &str) -> Socket {
        let (_, socket) = awc::Client::default()
            .ws(self.url(path))
            .connect()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        socket
    }

    /// The upgrade's answer status for `path`, with `header` if given.
    async fn refused(&self, path: &str, header: Option<(&str, &str)>) -> u16 {
        let mut request = awc::Client::default().ws(self.url(path));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        match request.connect().await {
            Err(awc::error::WsClientError::InvalidResponseStatus(status)) => status.as_u16(),
            Ok(_) => panic!("{path} was accepted"),
            Err(other) => panic!("{path}: {other}"),
        }
    }
}

/// The next text frame (other frames skipped); `None` if the socket closed first, with the
/// close frame's code and reason.
async fn next_text(socket: &mut Socket) -> Result<String, Option<(u16, String)>> {
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "no text in time");
        match socket.next().await {
            Some(Ok(Frame::Text(text))) => return Ok(String::from_utf8(text.to_vec()).unwrap()),
            Some(Ok(Frame::Close(reason))) => {
                return Err(reason.map(|r| (u16::from(r.code), r.description.unwrap_or_default())));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn wait_until_gone(herd: &Herd, name: &str) {
    let deadline = Instant::now() + WAIT;
    while herd.endpoint_status(name).is_some() {
        assert!(Instant::now() < deadline, "{name} never went away");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_device_that_connects_in_is_session_devices_42_with_typed_deliveries_and_commands_by_name()
 {
    let devices = Devices::start("auth = \"none\"").await;
    let mut socket = devices.connect("/ws/devices/42").await;
    wait_for_state(&devices.states, "devices:42", "live", 1).await;
    socket
        .send(Message::Text(
            r#"{"type":"reading","device":42,"value":21.5}"#.into(),
        ))
        .await
        .unwrap();
    let reading = devices
        .readings
        .wait_for(WAIT, |seen| seen.first().cloned())
        .await
        .unwrap();
    assert_eq!(reading.endpoint, "devices:42");
    assert_eq!(reading.message.device, 42);
    assert_eq!(reading.message.value, 21.5);
    // A command by the session's name reaches the device.
    devices
        .herd
        .send("devices:42", r#"{"cmd":"reboot"}"#)
        .await
        .unwrap();
    assert_eq!(next_text(&mut socket).await.unwrap(), r#"{"cmd":"reboot"}"#);
    let status = devices.herd.endpoint_status("devices:42").unwrap();
    assert_eq!(status.state.name(), "live");
    assert_eq!(status.url, "/ws/devices/42");
    // The client leaves: the session says so and waits for it.
    socket.send(Message::Close(None)).await.unwrap();
    wait_for_state(&devices.states, "devices:42", "disconnected", 1).await;
    assert_eq!(
        devices.herd.inbound_endpoint("devices").unwrap().sessions(),
        1,
        "kept for its resume window"
    );
}

#[actix_rt::test]
async fn a_token_is_required_as_a_bearer_header_or_a_query_parameter_and_never_echoed() {
    let devices = Devices::start("auth = { token = \"s3cret-device-token\" }").await;
    assert_eq!(devices.refused("/ws/devices/1", None).await, 401);
    assert_eq!(
        devices
            .refused("/ws/devices/1", Some(("Authorization", "Bearer wrong")))
            .await,
        401
    );
    assert_eq!(
        devices.refused("/ws/devices/1?token=wrong", None).await,
        401
    );
    let (_, body) = {
        let mut response = awc::Client::default()
            .get(devices.url("/ws/devices/1?token=nope"))
            .send()
            .await
            .unwrap();
        let body = response.body().await.unwrap();
        (
            response.status(),
            String::from_utf8_lossy(&body).into_owned(),
        )
    };
    assert!(!body.contains("nope") && !body.contains("s3cret"), "{body}");
    let _header = devices.connect_with_bearer("/ws/devices/1").await;
    let _query = devices
        .connect("/ws/devices/2?token=s3cret-device-token")
        .await;
    wait_for_state(&devices.states, "devices:1", "live", 1).await;
    wait_for_state(&devices.states, "devices:2", "live", 1).await;
    let status = devices.herd.endpoint_status("devices:2").unwrap();
    assert!(!status.url.contains("s3cret"), "{}", status.url);
}

impl Devices {
    async fn connect_with_bearer(&self, path: &str) -> Socket {
        let (_, socket) = awc::Client::default()
            .ws(self.url(path))
            .header("Authorization", "Bearer s3cret-device-token")
            .connect()
            .await
            .unwrap();
        socket
    }
}

#[actix_rt::test]
async fn an_auth_hook_maps_the_request_to_the_session_id_or_refuses_it() {
    let options = ServerOptions::new().inbound_auth("devices", |req, path_id| {
        match req
            .headers()
            .get("x-device-key")
            .and_then(|v| v.to_str().ok())
        {
            Some("key-of-7") if path_id == "me" => Ok("7".to_owned()),
            Some(_) => Err(Refusal::forbidden("this key opens another device")),
            None => Err(Refusal::unauthorized("x-device-key is required")),
        }
    });
    let devices = Devices::start_with("auth = \"hook\"", options).await;
    assert_eq!(devices.refused("/ws/devices/me", None).await, 401);
    assert_eq!(
        devices
            .refused("/ws/devices/me", Some(("x-device-key", "key-of-8")))
            .await,
        403
    );
    let (_, _socket) = awc::Client::default()
        .ws(devices.url("/ws/devices/me"))
        .header("x-device-key", "key-of-7")
        .connect()
        .await
        .unwrap();
    wait_for_state(&devices.states, "devices:7", "live", 1).await;
}

#[actix_rt::test]
async fn a_server_for_an_inbound_endpoint_with_auth_hook_and_no_hook_refuses_to_start() {
    let herd = Herd::new();
    let spec = EndpointSpec::new(ConnectionConfig::new("ws://127.0.0.1/unused"));
    herd.add_inbound(
        EndpointName::new("agents").unwrap(),
        wsherd::config::InboundConfig::new("/agents/{id}", wsherd::config::InboundAuth::Hook, spec),
    )
    .unwrap();
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerSettings::default()
    };
    let error = wsherd_server::serve(herd, &settings, ServerOptions::new()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("inbound endpoint agents has auth = \"hook\""),
        "{error}"
    );
}

#[actix_rt::test]
async fn max_sessions_refuses_a_new_id_with_503_but_lets_a_known_one_back() {
    let devices = Devices::start("auth = \"none\"\nmax_sessions = 2\nresume_window = \"1m\"").await;
    let _one = devices.connect("/ws/devices/1").await;
    let two = devices.connect("/ws/devices/2").await;
    wait_for_state(&devices.states, "devices:2", "live", 1).await;
    assert_eq!(devices.refused("/ws/devices/3", None).await, 503);
    drop(two);
    wait_for_state(&devices.states, "devices:2", "disconnected", 1).await;
    // Within its window the known id is no new session.
    let _two = devices.connect("/ws/devices/2").await;
    wait_for_state(&devices.states, "devices:2", "live", 2).await;
    assert_eq!(devices.refused("/ws/devices/3", None).await, 503);
}

#[actix_rt::test]
async fn ids_with_odd_characters_are_refused_with_400() {
    let devices = Devices::start("auth = \"none\"").await;
    for bad in ["a%20b", "a:b", "%C3%A9", &"x".repeat(65)] {
        assert_eq!(
            devices.refused(&format!("/ws/devices/{bad}"), None).await,
            400,
            "{bad}"
        );
    }
    assert!(devices.herd.endpoints().is_empty());
}

#[actix_rt::test]
async fn messages_sent_while_a_session_is_away_arrive_in_order_when_it_comes_back_in_its_window() {
    let devices = Devices::start("auth = \"none\"\nresume_window = \"1m\"").await;
    let socket = devices.connect("/ws/devices/9").await;
    wait_for_state(&devices.states, "devices:9", "live", 1).await;
    drop(socket);
    wait_for_state(&devices.states, "devices:9", "disconnected", 1).await;
    for n in 1..=3 {
        let outcome = devices
            .herd
            .send("devices:9", format!("command {n}"))
            .await
            .unwrap();
        assert_eq!(outcome, Submitted::Queued);
    }
    let mut socket = devices.connect("/ws/devices/9").await;
    for n in 1..=3 {
        assert_eq!(
            next_text(&mut socket).await.unwrap(),
            format!("command {n}")
        );
    }
    let live = devices
        .states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .filter(|d| d.endpoint == "devices:9" && d.message.state.name() == "live")
                .nth(1)
                .cloned()
        })
        .await
        .unwrap();
    assert!(
        live.message.reconnected.is_some(),
        "a resume reads as a reconnect"
    );
}

#[actix_rt::test]
async fn past_the_resume_window_what_waited_is_reported_unsent_and_the_session_ends() {
    let devices = Devices::start("auth = \"none\"\nresume_window = \"300ms\"").await;
    let socket = devices.connect("/ws/devices/5").await;
    wait_for_state(&devices.states, "devices:5", "live", 1).await;
    drop(socket);
    wait_for_state(&devices.states, "devices:5", "disconnected", 1).await;
    devices.herd.send("devices:5", "one").await.unwrap();
    devices.herd.send("devices:5", "two").await.unwrap();
    let unsent = devices
        .queue
        .wait_for(WAIT, |seen| {
            seen.iter()
                .find(|d| d.endpoint == "devices:5")
                .map(|d| d.message.clone())
        })
        .await
        .unwrap();
    assert_eq!(unsent, QueueEvent::Unsent { count: 2 });
    wait_for_state(&devices.states, "devices:5", "stopped", 1).await;
    wait_until_gone(&devices.herd, "devices:5").await;
    assert_eq!(
        devices.herd.inbound_endpoint("devices").unwrap().sessions(),
        0
    );
    // The same id later is a new session, with nothing from before.
    let mut socket = devices.connect("/ws/devices/5").await;
    wait_for_state(&devices.states, "devices:5", "live", 2).await;
    devices.herd.send("devices:5", "fresh").await.unwrap();
    assert_eq!(next_text(&mut socket).await.unwrap(), "fresh");
}

#[actix_rt::test]
async fn a_second_client_with_the_same_id_replaces_the_first_which_is_closed_1008_replaced() {
    let devices = Devices::start("auth = \"none\"").await;
    let mut first = devices.connect("/ws/devices/3").await;
    wait_for_state(&devices.states, "devices:3", "live", 1).await;
    let mut second = devices.connect("/ws/devices/3").await;
    assert_eq!(
        next_text(&mut first).await,
        Err(Some((1008, "replaced".to_owned())))
    );
    first.send(Message::Close(None)).await.unwrap();
    wait_for_state(&devices.states, "devices:3", "live", 2).await;
    devices
        .herd
        .send("devices:3", "to the second")
        .await
        .unwrap();
    assert_eq!(next_text(&mut second).await.unwrap(), "to the second");
}

#[actix_rt::test]
async fn with_on_duplicate_refuse_a_second_client_is_answered_409_and_the_first_stays() {
    let devices = Devices::start("auth = \"none\"\non_duplicate = \"refuse\"").await;
    let mut first = devices.connect("/ws/devices/3").await;
    wait_for_state(&devices.states, "devices:3", "live", 1).await;
    assert_eq!(devices.refused("/ws/devices/3", None).await, 409);
    devices.herd.send("devices:3", "still here").await.unwrap();
    assert_eq!(next_text(&mut first).await.unwrap(), "still here");
}

/// Opens a WebSocket to `path` by hand and returns the stream past the `101` answer.
async fn raw_upgrade(addr: std::net::SocketAddr, path: &str) -> tokio::net::TcpStream {
    let (head, stream) = upgrade(addr, path).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    stream
}

/// Asks for a WebSocket on `path` by hand: the answer's head, and the stream past it.
async fn upgrade(addr: std::net::SocketAddr, path: &str) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!(
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "the answer ended");
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap(), stream)
}

#[actix_rt::test]
async fn a_client_that_never_reads_is_cut_and_what_waits_for_it_stays_bounded() {
    let devices = Devices::start(
        "auth = \"none\"\nwrite_buffer = \"64KiB\"\nwrite_timeout = \"500ms\"\n\
         outbound = { max_messages = 100, overflow = \"drop_oldest\" }\n\
         heartbeat = { interval = \"1m\", timeout = \"1m\" }",
    )
    .await;
    let mut stalled = raw_upgrade(devices.addr(), "/ws/devices/slow").await;
    let _reader = devices.connect("/ws/devices/fine").await;
    wait_for_state(&devices.states, "devices:slow", "live", 1).await;
    wait_for_state(&devices.states, "devices:fine", "live", 1).await;
    let chunk = "x".repeat(16 << 10);
    // Far more than every buffer between the session and the client together.
    let deadline = Instant::now() + WAIT;
    while devices
        .herd
        .endpoint_status("devices:slow")
        .is_some_and(|s| s.state.name() == "live")
    {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never cut"
        );
        let _ = devices.herd.send("devices:slow", chunk.as_str()).await;
        let status = devices.herd.endpoint_status("devices:slow").unwrap();
        assert!(status.queue_depth <= 100, "queue {}", status.queue_depth);
    }
    let disconnected = devices
        .states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .find(|d| d.endpoint == "devices:slow" && d.message.state.name() == "disconnected")
                .cloned()
        })
        .await
        .unwrap();
    let why = disconnected.message.state.to_string();
    assert!(why.contains("read nothing"), "{why}");
    // Its TCP connection is cut: reading what the server wrote ends in an end or an error.
    let mut sink = vec![0u8; 64 << 10];
    let cut = actix_rt::time::timeout(WAIT, async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "the stalled client's socket stayed open");
    // The other session never noticed.
    let status = devices.herd.endpoint_status("devices:fine").unwrap();
    assert_eq!(status.state.name(), "live");
}

#[actix_rt::test]
async fn the_heartbeat_finds_an_inbound_peer_that_stopped_answering_pings() {
    let devices = Devices::start(
        "auth = \"none\"\nheartbeat = { interval = \"200ms\", timeout = \"300ms\" }",
    )
    .await;
    // Upgrades, then reads nothing and answers nothing: a peer gone silent.
    let _silent = raw_upgrade(devices.addr(), "/ws/devices/mute").await;
    wait_for_state(&devices.states, "devices:mute", "live", 1).await;
    let started = Instant::now();
    let disconnected = devices
        .states
        .wait_for(WAIT, |seen| {
            seen.iter()
                .find(|d| d.endpoint == "devices:mute" && d.message.state.name() == "disconnected")
                .cloned()
        })
        .await
        .unwrap();
    let text = disconnected.message.state.to_string();
    assert!(text.contains("no reply to a ping"), "{text}");
    assert!(started.elapsed() < WAIT);
}

#[actix_rt::test]
async fn garbage_from_one_client_closes_its_session_and_no_other() {
    let devices = Devices::start("auth = \"none\"\nmax_frame_size = \"1KiB\"").await;
    let mut good = devices.connect("/ws/devices/good").await;
    let mut big = devices.connect("/ws/devices/big").await;
    let mut garbage = raw_upgrade(devices.addr(), "/ws/devices/garbage").await;
    wait_for_state(&devices.states, "devices:garbage", "live", 1).await;
    // An unmasked frame: clients must mask.
    garbage.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    big.send(Message::Text("y".repeat(4 << 10).into()))
        .await
        .unwrap();
    let closed = next_text(&mut big).await;
    let why = devices
        .herd
        .endpoint_status("devices:big")
        .map(|s| s.state.to_string());
    assert_eq!(
        closed.map_err(|e| e.map(|c| c.0)),
        Err(Some(1009)),
        "{why:?}"
    );
    wait_for_state(&devices.states, "devices:garbage", "disconnected", 1).await;
    wait_for_state(&devices.states, "devices:big", "disconnected", 1).await;
    good.send(Message::Text(
        r#"{"type":"reading","device":1,"value":1}"#.into(),
    ))
    .await
    .unwrap();
    devices.readings.wait_for_count(1, WAIT).await.unwrap();
    assert_eq!(
        devices
            .herd
            .endpoint_status("devices:good")
            .unwrap()
            .state
            .name(),
        "live"
    );
}

#[actix_rt::test]
async fn accept_session_refuses_an_unknown_inbound_endpoint_and_a_bad_id() {
    let devices = Devices::start("auth = \"none\"").await;
    let (socket, _wire) = wsherd::accepted_socket(1024);
    assert_eq!(
        devices
            .herd
            .accept_session("sensors", "1", socket, None)
            .await,
        Err(SessionRefused::UnknownInbound("sensors".into()))
    );
    let (socket, _wire) = wsherd::accepted_socket(1024);
    let refused = devices
        .herd
        .accept_session("devices", "a b", socket, None)
        .await
        .unwrap_err();
    assert_eq!(refused.status(), 400);
}

#[actix_rt::test]
async fn a_reconnect_loop_with_one_id_keeps_one_session_and_the_last_client_works() {
    let devices = Devices::start("auth = \"none\"").await;
    let mut last = None;
    for _ in 0..50 {
        // Each new client replaces the one before, which may not even have opened yet.
        last = Some(devices.connect("/ws/devices/loop").await);
    }
    let mut last = last.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let status = devices.herd.endpoint_status("devices:loop").unwrap();
        if status.state.name() == "live" && devices.herd.send("devices:loop", "ping?").await.is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never live again: {}",
            status.state
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(next_text(&mut last).await.unwrap(), "ping?");
    assert_eq!(devices.herd.endpoints().len(), 1);
    assert_eq!(
        devices.herd.inbound_endpoint("devices").unwrap().sessions(),
        1
    );
}

#[actix_rt::test]
async fn a_client_waiting_to_replace_one_that_ignores_the_close_hears_why_when_its_session_is_paused_or_stopped()
 {
    // The old clients never read, so they never answer the Close that would let the
    // newcomers in: the newcomers wait, attached, until their sessions are paused or stopped.
    let devices = Devices::start("auth = \"none\"\nclose_timeout = \"30s\"").await;
    let _old_five = devices.connect("/ws/devices/5").await;
    let _old_six = devices.connect("/ws/devices/6").await;
    wait_for_state(&devices.states, "devices:5", "live", 1).await;
    wait_for_state(&devices.states, "devices:6", "live", 1).await;
    let mut five = devices.connect("/ws/devices/5").await;
    let mut six = devices.connect("/ws/devices/6").await;
    devices.herd.pause("devices:5").unwrap();
    assert_eq!(
        next_text(&mut five).await,
        Err(Some((1013, "paused".to_owned())))
    );
    let herd = devices.herd.clone();
    // Not awaited: the stop waits for the old client's answer too.
    actix_rt::spawn(async move {
        let _ = herd.remove_endpoint("devices:6", 1001, "maintenance").await;
    });
    assert_eq!(
        next_text(&mut six).await,
        Err(Some((1001, "maintenance".to_owned())))
    );
}

#[actix_rt::test]
async fn once_the_herd_shuts_down_a_client_is_refused_503_and_no_session_outlives_it() {
    let devices = Devices::start("auth = \"none\"").await;
    let mut first = devices.connect("/ws/devices/1").await;
    wait_for_state(&devices.states, "devices:1", "live", 1).await;
    let client = actix_rt::spawn(async move {
        let heard = next_text(&mut first).await;
        first.send(Message::Close(None)).await.unwrap();
        heard
    });
    let report = devices.herd.shutdown("bye", WAIT).await;
    assert_eq!(client.await.unwrap(), Err(Some((1000, "bye".to_owned()))));
    assert!(report.timed_out.is_empty(), "{report:?}");
    assert_eq!(devices.refused("/ws/devices/2", None).await, 503);
    assert!(devices.herd.endpoint_status("devices:2").is_none());
    let inbound = devices.herd.inbound_endpoint("devices").unwrap();
    let deadline = Instant::now() + WAIT;
    while inbound.sessions() > 0 {
        assert!(
            Instant::now() < deadline,
            "a session slot was never given back"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn a_burst_of_connects_past_max_sessions_is_answered_503_at_once_and_leaves_the_sessions_alone()
 {
    let devices = Devices::start("auth = \"none\"\nmax_sessions = 20").await;
    let mut known = devices.connect("/ws/devices/known").await;
    wait_for_state(&devices.states, "devices:known", "live", 1).await;
    let addr = devices.addr();
    let paths: Vec<String> = (0..300).map(|n| format!("/ws/devices/{n}")).collect();
    let answers =
        futures_util::future::join_all(paths.iter().map(|path| upgrade(addr, path))).await;
    let status = |code: &str| {
        answers
            .iter()
            .filter(|(head, _)| head.starts_with(&format!("HTTP/1.1 {code}")))
            .count()
    };
    let (taken, refused) = (status("101"), status("503"));
    assert_eq!(
        (taken, refused),
        (19, 281),
        "every connect answered, 20 sessions in all"
    );
    devices.herd.send("devices:known", "unmoved").await.unwrap();
    assert_eq!(next_text(&mut known).await.unwrap(), "unmoved");
}

#[actix_rt::test]
async fn an_owner_pauses_resumes_and_reconnects_a_session_and_its_client_hears_why() {
    let devices = Devices::start("auth = \"none\"").await;
    let mut device = devices.connect("/ws/devices/9").await;
    wait_for_state(&devices.states, "devices:9", "live", 1).await;
    devices.herd.pause("devices:9").unwrap();
    assert_eq!(
        next_text(&mut device).await,
        Err(Some((1000, "paused".to_owned())))
    );
    device.send(Message::Close(None)).await.unwrap();
    wait_for_state(&devices.states, "devices:9", "paused", 1).await;
    // Paused by its owner: the device may not come back, and what is sent waits.
    assert_eq!(devices.refused("/ws/devices/9", None).await, 403);
    devices
        .herd
        .send("devices:9", "while paused")
        .await
        .unwrap();
    devices.herd.resume("devices:9").unwrap();
    wait_for_state(&devices.states, "devices:9", "disconnected", 1).await;
    let mut device = devices.connect("/ws/devices/9").await;
    assert_eq!(next_text(&mut device).await.unwrap(), "while paused");
    wait_for_state(&devices.states, "devices:9", "live", 2).await;
    // A reconnect closes the client's socket; the session waits for it to come back.
    devices.herd.reconnect("devices:9").unwrap();
    assert_eq!(
        next_text(&mut device).await,
        Err(Some((1000, "reconnect requested".to_owned())))
    );
    device.send(Message::Close(None)).await.unwrap();
    wait_for_state(&devices.states, "devices:9", "disconnected", 2).await;
    let _device = devices.connect("/ws/devices/9").await;
    wait_for_state(&devices.states, "devices:9", "live", 3).await;
    assert_eq!(
        devices.herd.inbound_endpoint("devices").unwrap().sessions(),
        1
    );
}
