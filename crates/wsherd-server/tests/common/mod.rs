//! What the server's tests share: a herd with a live endpoint, the server beside it on
//! 127.0.0.1, and an HTTP client that reads JSON answers.
// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::Value;
use wsherd::config::ServerSettings;
use wsherd::prelude::*;
use wsherd_server::{RunningServer, ServerOptions};
use wsherd_testkit::{Recorded, Recorder, Script, TestServer};

/// Generous: tests wait on events, and a loaded 2-core machine is slow, not broken.
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// A herd whose endpoint `feed` is live against a local server, and the server beside it.
pub(crate) struct Fixture {
    pub(crate) herd: Herd,
    pub(crate) states: Recorded<Delivery<StateEvent>>,
    pub(crate) dead_letters: Recorded<Delivery<DeadLetter>>,
    pub(crate) feed: TestServer,
    pub(crate) server: RunningServer,
    pub(crate) options: ServerOptions,
    pub(crate) base: String,
}

impl Fixture {
    /// `feed` runs `script` on every connection; the server has `options`.
    pub(crate) async fn start(script: Script, options: ServerOptions) -> Fixture {
        let feed = TestServer::start(script).unwrap();
        let herd = Herd::new();
        let states = states(&herd);
        let (recorder, dead_letters) = Recorder::<Delivery<DeadLetter>>::start();
        herd.subscribe_events(recorder.recipient());
        herd.add_endpoint(
            "feed",
            EndpointSpec::new(ConnectionConfig::new(feed.url("/feed"))),
        )
        .unwrap();
        wait_for_state(&states, "feed", "live", 1).await;
        let settings = ServerSettings {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..ServerSettings::default()
        };
        let server = wsherd_server::serve(herd.clone(), &settings, options.clone()).unwrap();
        let base = server.url();
        Fixture {
            herd,
            states,
            dead_letters,
            feed,
            server,
            options,
            base,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path`, the answer's status and JSON (or `Value::String` of a non-JSON body).
    pub(crate) async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(awc::Client::default().get(self.url(path)), None)
            .await
    }

    /// `POST path` with `body`.
    pub(crate) async fn post(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let request = awc::Client::default().post(self.url(path));
        self.request(request, Some(body.to_owned())).await
    }

    pub(crate) async fn request(
        &self,
        request: awc::ClientRequest,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let request = request.timeout(WAIT);
        let mut response = match body {
            Some(body) => request.send_body(body).await.unwrap(),
            None => request.send().await.unwrap(),
        };
        let status = response.status();
        let bytes = response.body().limit(64 << 20).await.unwrap();
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    /// Waits until `/api/status/feed` shows `state`.
    pub(crate) async fn until_state_shows(&self, state: &str) -> Value {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (_, status) = self.get("/api/status/feed").await;
            if status["state"] == state {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never {state}: {status}"
            );
            // Each state change is an event: wait for the next one, not for a fixed time.
            let seen = self.states.len();
            let _ = self
                .states
                .wait_for(Duration::from_secs(1), |all| {
                    (all.len() > seen).then_some(())
                })
                .await;
        }
    }
}

/// Records every state event of the herd.
pub(crate) fn states(herd: &Herd) -> Recorded<Delivery<StateEvent>> {
    let (addr, recorded) = Recorder::<Delivery<StateEvent>>::start();
    herd.subscribe_events(addr.recipient());
    recorded
}

/// Waits until endpoint `name` has entered state `state` (by name) `nth` times.
pub(crate) async fn wait_for_state(
    states: &Recorded<Delivery<StateEvent>>,
    name: &str,
    state: &str,
    nth: usize,
) {
    states
        .wait_for(WAIT, |seen| {
            (seen
                .iter()
                .filter(|d| d.endpoint == name && d.message.state.name() == state)
                .count()
                >= nth)
                .then_some(())
        })
        .await
        .unwrap_or_else(|e| panic!("{name} never became {state} {nth} times: {e}"));
}

/// A cluster's view as a test sets it: this herd is member `m1` of `m1` and `m2`; it runs
/// `feed`, `m2` runs `far`, and nobody holds `loose`.
pub(crate) struct FakeMembership;

impl wsherd::Membership for FakeMembership {
    fn member(&self) -> String {
        "m1".to_owned()
    }

    fn members(&self) -> Vec<String> {
        vec!["m1".to_owned(), "m2".to_owned()]
    }

    fn ownership(&self) -> Vec<wsherd::Ownership> {
        let seen = |name: &str, owner: Option<&str>| wsherd::Ownership {
            endpoint: EndpointName::new(name).unwrap(),
            owner: owner.map(str::to_owned),
            local: owner == Some("m1"),
        };
        vec![
            seen("far", Some("m2")),
            seen("feed", Some("m1")),
            seen("loose", None),
        ]
    }

    fn figures(&self) -> Vec<wsherd::MembershipFigure> {
        vec![wsherd::MembershipFigure {
            name: "published",
            help: "Messages published.",
            value: 7,
        }]
    }
}
