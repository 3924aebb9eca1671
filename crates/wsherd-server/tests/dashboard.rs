//! The dashboard at `/`, in a real browser: Debian's headless Chromium, driven over
//! WebDriver (`wsherd_testkit::Browser`; `scripts/test` installs both). The page must list
//! every endpoint, show a state change live (no reload), act through its buttons, and stay
//! responsive with 2,000 endpoints.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test helpers fail loudly

mod common;

use common::{WAIT, states, wait_for_state};
use serde_json::{Value, json};
use wsherd::config::{ServerSettings, Token};
use wsherd::prelude::*;
use wsherd_server::{RunningServer, ServerOptions};
use wsherd_testkit::{Browser, TestServer};

fn serve(herd: &Herd, options: ServerOptions) -> RunningServer {
    let settings = ServerSettings {
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ServerSettings::default()
    };
    wsherd_server::serve(herd.clone(), &settings, options).unwrap()
}

async fn browser() -> Browser {
    Browser::start(1280, 800)
        .await
        .unwrap_or_else(|e| panic!("headless Chromium: {e}"))
}

/// The rows the page shows, as `name=state`.
const ROWS: &str = "return [...document.querySelectorAll('tr[data-endpoint]')]\
    .map(r => r.dataset.endpoint + '=' + r.querySelector('.state').dataset.state);";

/// The state the page shows for `name`'s row, once it is `wanted` (`null` before).
fn row_state_is(name: &str, wanted: &str) -> String {
    format!(
        "const s = document.querySelector('tr[data-endpoint=\"{name}\"] .state'); \
         return s && s.dataset.state === '{wanted}';"
    )
}

/// Marks the page's document, so [`assert_same_document`] can tell it was not reloaded.
const MARK_DOCUMENT: &str = "window.sameDocument = true; return true;";

async fn assert_same_document(browser: &Browser) {
    let same = browser
        .eval("return window.sameDocument === true;")
        .await
        .unwrap();
    assert_eq!(same, Value::Bool(true), "the page was reloaded");
}

#[actix_rt::test]
async fn the_page_needs_no_token_and_may_only_talk_to_its_own_server() {
    let herd = Herd::new();
    let token = Token::new("dash-board-token").unwrap();
    let server = serve(&herd, ServerOptions::new().token(token));
    let mut answer = awc::Client::default()
        .get(server.url())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let header = |name: &str| {
        answer
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    let policy = header("content-security-policy");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    assert!(policy.contains("connect-src 'self'"), "{policy}");
    let page = answer.body().await.unwrap();
    let page = String::from_utf8_lossy(&page);
    // Self-contained: nothing is fetched from anywhere else.
    for outside in ["http://", "https://", "<link", "src=\""] {
        assert!(!page.contains(outside), "the page refers to {outside}");
    }
    // /api still needs the token; the page asks for it.
    let status = awc::Client::default()
        .get(format!("{}/api/status", server.url()))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 401);
}

#[actix_rt::test]
async fn the_dashboard_lists_every_endpoint_shows_a_drop_without_a_reload_and_its_buttons_act() {
    let steady = TestServer::start(vec![]).unwrap();
    let flaky = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    for (name, feed) in [("alpha", &steady), ("beta", &steady), ("gamma", &flaky)] {
        herd.add_endpoint(
            name,
            EndpointSpec::new(ConnectionConfig::new(feed.url("/feed"))),
        )
        .unwrap();
    }
    for name in ["alpha", "beta", "gamma"] {
        wait_for_state(&states, name, "live", 1).await;
    }
    let token = Token::new("dash-board-token").unwrap();
    let server = serve(&herd, ServerOptions::new().token(token));
    let browser = browser().await;
    browser.goto(&server.url()).await.unwrap();
    // The page asks for the token, typed in as a user would.
    browser
        .until(
            "the token prompt",
            "return document.getElementById('auth').classList.contains('shown');",
            WAIT,
        )
        .await
        .unwrap();
    browser
        .type_into("#token", "dash-board-token")
        .await
        .unwrap();
    browser.click("#auth button").await.unwrap();
    let listed = browser
        .until(
            "every endpoint live",
            &format!(
                "const rows = (() => {{ {ROWS} }})(); \
                 return rows.length === 3 && rows.every(r => r.endsWith('=live')) ? rows : null;"
            ),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(listed, json!(["alpha=live", "beta=live", "gamma=live"]));
    browser.eval(MARK_DOCUMENT).await.unwrap();
    // gamma's server goes away: the page shows it, live, from /api/events.
    flaky.stop();
    let shown = browser
        .until(
            "gamma no longer live",
            "const s = document.querySelector('tr[data-endpoint=\"gamma\"] .state'); \
             return s && s.dataset.state !== 'live' ? s.dataset.state : null;",
            WAIT,
        )
        .await
        .unwrap();
    assert!(
        ["backoff", "connecting"].contains(&shown.as_str().unwrap()),
        "{shown}"
    );
    assert_same_document(&browser).await;
    // The pause button pauses alpha, and the page shows it.
    browser
        .click("tr[data-endpoint=\"alpha\"] button[data-action=\"pause\"]")
        .await
        .unwrap();
    wait_for_state(&states, "alpha", "paused", 1).await;
    browser
        .until("alpha paused", &row_state_is("alpha", "paused"), WAIT)
        .await
        .unwrap();
    assert_eq!(
        herd.endpoint_status("alpha").unwrap().state.name(),
        "paused"
    );
    let rows = browser.eval(ROWS).await.unwrap();
    assert!(
        rows.as_array().unwrap().contains(&json!("beta=live")),
        "{rows}"
    );
}

#[actix_rt::test]
async fn a_herd_of_2000_endpoints_renders_only_the_rows_in_view_and_stays_live() {
    const ENDPOINTS: usize = 2_000;
    let feed = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let live = states(&herd);
    for n in 0..ENDPOINTS {
        herd.add_endpoint(
            format!("ep-{n:04}").as_str(),
            EndpointSpec::new(ConnectionConfig::new(feed.url("/feed"))),
        )
        .unwrap();
    }
    live.wait_for(WAIT, |seen| {
        (seen
            .iter()
            .filter(|d| d.message.state.name() == "live")
            .count()
            >= ENDPOINTS)
            .then_some(())
    })
    .await
    .unwrap();
    let server = serve(&herd, ServerOptions::new());
    let browser = browser().await;
    browser.goto(&server.url()).await.unwrap();
    let shown = browser
        .until(
            "2,000 endpoints",
            "const d = window.wsherdDashboard; \
             return d && d.names().length === 2000 && d.firstRenderAt !== null \
               && d.firstUpdateAt !== null \
               ? { render: d.firstRenderAt, update: d.firstUpdateAt, \
                   rows: document.querySelectorAll('tr[data-endpoint]').length } : null;",
            WAIT,
        )
        .await
        .unwrap();
    let rows = shown["rows"].as_u64().unwrap();
    assert!(
        (10..100).contains(&rows),
        "only the rows in view are drawn, not 2,000: {rows}"
    );
    // A state change far down the list reaches the page, and the filter finds its row.
    let asked = browser.eval("return performance.now();").await.unwrap();
    herd.pause("ep-1234").unwrap();
    let seen = browser
        .until(
            "ep-1234 paused",
            "const r = window.wsherdDashboard.row('ep-1234'); \
             return r && r.state === 'paused' ? performance.now() : null;",
            WAIT,
        )
        .await
        .unwrap();
    browser.type_into("#filter", "ep-1234").await.unwrap();
    let filtered = browser
        .until(
            "one row for ep-1234",
            &format!(
                "const rows = (() => {{ {ROWS} }})(); return rows.length === 1 ? rows : null;"
            ),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(filtered, json!(["ep-1234=paused"]));
    // Reported, not asserted: the goal is under 1 s for each (see the README).
    eprintln!(
        "dashboard with {ENDPOINTS} endpoints: first render {:.0} ms after navigation, first live line {:.0} ms, a pause shown {:.0} ms after it was asked",
        shown["render"].as_f64().unwrap_or(0.0),
        shown["update"].as_f64().unwrap_or(0.0),
        seen.as_f64().unwrap_or(0.0) - asked.as_f64().unwrap_or(0.0),
    );
}

#[actix_rt::test]
async fn the_page_reconnects_its_events_socket_by_itself_when_the_server_restarts() {
    let feed = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "alpha",
        EndpointSpec::new(ConnectionConfig::new(feed.url("/feed"))),
    )
    .unwrap();
    wait_for_state(&states, "alpha", "live", 1).await;
    let server = serve(&herd, ServerOptions::new());
    let addr = server.addrs()[0];
    let browser = browser().await;
    browser.goto(&server.url()).await.unwrap();
    let link_is =
        |text: &str| format!("return document.getElementById('link').textContent === '{text}';");
    browser
        .until("the events socket", &link_is("live"), WAIT)
        .await
        .unwrap();
    browser.eval(MARK_DOCUMENT).await.unwrap();
    server.stop(false).await;
    browser
        .until("the socket lost", &link_is("reconnecting"), WAIT)
        .await
        .unwrap();
    let settings = ServerSettings {
        listen: Some(addr),
        ..ServerSettings::default()
    };
    let _again = wsherd_server::serve(herd.clone(), &settings, ServerOptions::new()).unwrap();
    browser
        .until("the socket back", &link_is("live"), WAIT)
        .await
        .unwrap();
    herd.pause("alpha").unwrap();
    browser
        .until("alpha paused", &row_state_is("alpha", "paused"), WAIT)
        .await
        .unwrap();
    assert_same_document(&browser).await;
}

#[actix_rt::test]
async fn in_a_cluster_the_page_shows_each_endpoints_member_and_the_others_endpoints_as_elsewhere() {
    let feed = TestServer::start(vec![]).unwrap();
    let herd = Herd::new();
    let states = states(&herd);
    herd.add_endpoint(
        "feed",
        EndpointSpec::new(ConnectionConfig::new(feed.url("/feed"))),
    )
    .unwrap();
    wait_for_state(&states, "feed", "live", 1).await;
    herd.set_membership(Some(std::sync::Arc::new(common::FakeMembership)));
    let server = serve(&herd, ServerOptions::new());
    let browser = browser().await;
    browser.goto(&server.url()).await.unwrap();
    let listed = browser
        .until(
            "three rows, feed live",
            &format!(
                "const rows = (() => {{ {ROWS} }})(); \
                 return rows.length === 3 && rows.includes('feed=live') ? rows : null;"
            ),
            WAIT,
        )
        .await
        .unwrap();
    assert_eq!(
        listed,
        json!(["far=elsewhere", "feed=live", "loose=elsewhere"])
    );
    let owners = browser
        .eval(
            "return [...document.querySelectorAll('tr[data-endpoint]')]\
             .map(r => r.dataset.endpoint + '=' + r.querySelector('.owner').textContent);",
        )
        .await
        .unwrap();
    assert_eq!(owners, json!(["far=m2", "feed=m1", "loose="]));
    let header = browser
        .eval("return document.getElementById('cluster').textContent;")
        .await
        .unwrap();
    assert_eq!(header, json!("member m1 of 2"));
    // Only the endpoint run here has buttons.
    let buttons = browser
        .eval(
            "return [...document.querySelectorAll('tr[data-endpoint]')]\
             .filter(r => r.querySelector('button')).map(r => r.dataset.endpoint);",
        )
        .await
        .unwrap();
    assert_eq!(buttons, json!(["feed"]));
}
