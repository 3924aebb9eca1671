//! wsherd inside an actix-web application, the usual host: a connection actor supervised on
//! its own (no herd) beside a herd, the application's own actor subscribed to both, and HTTP
//! routes that send through them and report the outcome.
//!
//! `cargo run --example actix_web_app`, then for instance
//! `curl -d '{"op":"hello"}' http://127.0.0.1:PORT/send/direct` (the port is printed),
//! `curl http://127.0.0.1:PORT/status`, `curl http://127.0.0.1:PORT/last`. Ctrl-C stops it.
//! Only the WebSocket server it talks to comes from the testkit.
#![allow(clippy::print_stdout)] // printing is what an example is for

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Deserialize;
use wsherd::prelude::*;
use wsherd::{EndpointShared, Router, SendError, Submit, Supervisor};
use wsherd_testkit::{Step, TestServer};

#[derive(Debug, Deserialize)]
struct Trade {
    seq: u64,
}
wsherd::inbound!(Trade => "trade");

/// The application's own actor: remembers the last trade from any endpoint.
struct Tape {
    last: Option<(EndpointName, u64)>,
    /// How many trades it has taken (tests and progress bars wait on it).
    count: tokio::sync::watch::Sender<u64>,
}

impl Actor for Tape {
    type Context = Context<Self>;
}

impl Handler<Delivery<Trade>> for Tape {
    type Result = ();
    fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
        self.last = Some((trade.endpoint.clone(), trade.message.seq));
        self.count.send_modify(|count| *count += 1);
    }
}

/// Asks the tape for the last trade.
struct Last;
impl Message for Last {
    type Result = Option<(EndpointName, u64)>;
}

impl Handler<Last> for Tape {
    type Result = Option<(EndpointName, u64)>;
    fn handle(&mut self, _: Last, _: &mut Context<Self>) -> Self::Result {
        self.last.clone()
    }
}

/// What the HTTP handlers share.
#[derive(Clone)]
struct AppState {
    /// The connection actor run without a herd: its address and its published status.
    direct: Addr<Supervisor>,
    direct_status: Arc<EndpointShared>,
    herd: Herd,
    tape: Addr<Tape>,
}

/// `POST /send/{endpoint}`: the body goes out as one text message; the answer says whether it
/// is being written now, queued for the next open, or refused (and why).
async fn send(
    state: web::Data<AppState>,
    endpoint: web::Path<String>,
    body: String,
) -> HttpResponse {
    let outcome = if endpoint.as_str() == "direct" {
        match state.direct.send(Submit(body.into())).await {
            Ok(result) => result.map_err(SendError::Rejected),
            Err(_) => Err(SendError::Lost),
        }
    } else {
        state.herd.send(&endpoint, body).await
    };
    match outcome {
        Ok(Submitted::Writing) => HttpResponse::Ok().body("writing"),
        Ok(Submitted::Queued) => HttpResponse::Accepted().body("queued"),
        Err(error @ SendError::UnknownEndpoint { .. }) => {
            HttpResponse::NotFound().body(error.to_string())
        }
        Err(error) => HttpResponse::Conflict().body(error.to_string()),
    }
}

/// `GET /status`: one line per endpoint, the supervised one first.
async fn status(state: web::Data<AppState>) -> HttpResponse {
    let mut lines = Vec::new();
    for status in std::iter::once(state.direct_status.snapshot()).chain(state.herd.status()) {
        lines.push(format!(
            "{} {} reconnects={}",
            status.name, status.state, status.reconnects
        ));
    }
    HttpResponse::Ok().body(lines.join("\n"))
}

/// `GET /last`: the last trade the application's actor saw.
async fn last(state: web::Data<AppState>) -> HttpResponse {
    match state.tape.send(Last).await {
        Ok(Some((endpoint, seq))) => HttpResponse::Ok().body(format!("{endpoint} {seq}")),
        Ok(None) => HttpResponse::NoContent().finish(),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// The running application: where it listens, and its parts.
struct Running {
    http: SocketAddr,
    server: actix_web::dev::ServerHandle,
    state: AppState,
    trades: tokio::sync::watch::Receiver<u64>,
}

/// Starts the connection actors, the herd, the tape and the HTTP server on 127.0.0.1.
fn start(feed_url: &str) -> Result<Running, Box<dyn std::error::Error>> {
    let (count, trades) = tokio::sync::watch::channel(0);
    let tape = Tape { last: None, count }.start();

    // A connection actor on its own: its router is the application's, not a herd's.
    let router = Router::new();
    router.subscribe::<Trade>(tape.clone().recipient());
    let spec = EndpointSpec::new(ConnectionConfig::new(format!("{feed_url}/direct")));
    let supervisor = Supervisor::new(EndpointName::new("direct")?, spec, router);
    let direct_status = supervisor.shared();
    let direct = supervisor.start();

    // Beside it, a herd for endpoints managed by name.
    let herd = Herd::new();
    herd.subscribe::<Trade>(tape.clone().recipient());
    herd.add_endpoint("herd", ConnectionConfig::new(format!("{feed_url}/herd")))?;

    let state = AppState {
        direct,
        direct_status,
        herd,
        tape,
    };
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/send/{endpoint}", web::post().to(send))
            .route("/status", web::get().to(status))
            .route("/last", web::get().to(last))
    })
    .workers(1)
    .disable_signals() // the application decides when to stop, below
    .bind(("127.0.0.1", 0))?;
    let http = *server
        .addrs()
        .first()
        .ok_or("the HTTP server bound no address")?;
    let server = server.run();
    let handle = server.handle();
    // Serves on this thread's arbiter and its one worker until stopped.
    actix_web::rt::spawn(server);
    Ok(Running {
        server: handle,
        http,
        state,
        trades,
    })
}

impl Running {
    /// Stops HTTP first (no new sends), then closes the sockets gracefully.
    async fn stop(self) -> wsherd::ShutdownReport {
        self.server.stop(true).await;
        let mut report = self
            .state
            .herd
            .shutdown("shutting down", wsherd::SHUTDOWN_TIMEOUT)
            .await;
        let stop = wsherd::Stop {
            code: CloseCode::NORMAL,
            reason: "shutting down".into(),
        };
        if let Ok(receipt) = self.state.direct.send(stop).await {
            let mut unsent = receipt.unsent;
            // What the socket handed back as it closed left the queue first.
            match tokio::time::timeout(wsherd::SHUTDOWN_TIMEOUT, receipt.closed).await {
                Ok(late) => unsent.splice(0..0, late.unwrap_or_default()).for_each(drop),
                Err(_) => report
                    .timed_out
                    .push(self.state.direct_status.snapshot().name),
            }
            if !unsent.is_empty() {
                report
                    .unsent
                    .insert(self.state.direct_status.snapshot().name, unsent);
            }
        }
        report
    }
}

/// A local feed: a trade a second on every connection; it records what the clients send.
fn local_feed() -> std::io::Result<TestServer> {
    let mut script = Vec::new();
    for seq in 0..3600 {
        script.push(Step::text(wsherd_testkit::stream_message(
            "type", "trade", seq, 0,
        )));
        script.push(Step::Pause(std::time::Duration::from_secs(1)));
    }
    TestServer::start(script)
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let feed = local_feed()?;
    wsherd::run(async {
        let running = start(&feed.url(""))?;
        println!("listening on http://{}; Ctrl-C to stop", running.http);
        wsherd::shutdown_signal().await;
        let trades = *running.trades.borrow();
        let report = running.stop().await;
        println!("stopped after {trades} trades: {report}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // a test fails loudly

    use super::*;

    const WAIT: std::time::Duration = std::time::Duration::from_secs(60);

    #[test]
    fn http_routes_send_through_a_lone_supervisor_and_a_herd_and_report_the_outcome() {
        let feed = local_feed().unwrap();
        wsherd::run(async {
            let mut running = start(&feed.url("")).unwrap();
            let base = format!("http://{}", running.http);
            // Both endpoints deliver to the application's actor.
            running.trades.wait_for(|n| *n >= 2).await.unwrap();
            let client = awc::Client::new();

            for endpoint in ["direct", "herd"] {
                let mut response = client
                    .post(format!("{base}/send/{endpoint}"))
                    .send_body(format!("hello from {endpoint}"))
                    .await
                    .unwrap();
                let outcome = response.body().await.unwrap();
                assert!(
                    outcome == "writing" || outcome == "queued",
                    "{endpoint}: {outcome:?}"
                );
            }
            let received = feed
                .wait_for(WAIT, |connections| {
                    let texts: Vec<String> = connections
                        .iter()
                        .flat_map(|c| {
                            c.received
                                .iter()
                                .filter_map(|r| r.as_text().map(str::to_owned))
                        })
                        .collect();
                    (texts.len() >= 2).then_some(texts)
                })
                .await
                .unwrap();
            assert!(
                received.contains(&"hello from direct".to_owned()),
                "{received:?}"
            );
            assert!(
                received.contains(&"hello from herd".to_owned()),
                "{received:?}"
            );

            let mut unknown = client
                .post(format!("{base}/send/nowhere"))
                .send_body("x")
                .await
                .unwrap();
            assert_eq!(unknown.status(), 404);
            assert_eq!(
                unknown.body().await.unwrap(),
                r#"no endpoint named "nowhere""#
            );

            let mut last = client.get(format!("{base}/last")).send().await.unwrap();
            let last = String::from_utf8(last.body().await.unwrap().to_vec()).unwrap();
            assert!(
                last.starts_with("direct ") || last.starts_with("herd "),
                "{last}"
            );

            let mut status = client.get(format!("{base}/status")).send().await.unwrap();
            let status = String::from_utf8(status.body().await.unwrap().to_vec()).unwrap();
            assert!(status.starts_with("direct live"), "{status}");
            assert!(status.contains("\nherd live"), "{status}");

            let report = running.stop().await;
            assert!(report.timed_out.is_empty());
        });
    }
}
