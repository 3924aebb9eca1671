//! One type for several kinds, and raw text by kind.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use serde::{Deserialize, Deserializer};
use wsherd_protocol::Inbound;

use super::{collector, route, settle};
use crate::{Delivery, RawMessage, Router, Shared, SubscribeOptions};

thread_local! {
    /// Decodes of `Feed` on this thread (each test runs on its own).
    static FEED_DECODES: AtomicUsize = const { AtomicUsize::new(0) };
}

fn feed_decodes() -> usize {
    FEED_DECODES.with(|count| count.load(Ordering::SeqCst))
}

/// A feed modelled as one internally tagged enum, counting its decodes.
#[derive(Debug, Clone, PartialEq)]
enum Feed {
    Trade { seq: u64 },
    Quote { bid: f64 },
}

impl<'de> Deserialize<'de> for Feed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        enum Tagged {
            Trade { seq: u64 },
            Quote { bid: f64 },
        }
        FEED_DECODES.with(|count| count.fetch_add(1, Ordering::SeqCst));
        Ok(match Tagged::deserialize(deserializer)? {
            Tagged::Trade { seq } => Feed::Trade { seq },
            Tagged::Quote { bid } => Feed::Quote { bid },
        })
    }
}

impl Inbound for Feed {
    const KINDS: &'static [&'static str] = &["trade", "quote"];
}

#[actix_rt::test]
async fn a_type_of_two_kinds_gets_both_and_each_message_is_decoded_once() {
    assert_eq!(Feed::KIND, "trade", "KIND is the first of KINDS");
    let router = Router::new();
    let (a, seen_a) = collector::<Feed>();
    let (b, seen_b) = collector::<Feed>();
    router.subscribe::<Feed>(a);
    router.subscribe_with::<Feed>(b, SubscribeOptions::new());
    assert_eq!(
        router.subscription_count(),
        2,
        "one subscription each, two kinds"
    );

    let before = feed_decodes();
    let trade = route(&router, "ex", r#"{"type":"trade","seq":1}"#);
    let quote = route(&router, "ex", r#"{"type":"quote","bid":2.5}"#);
    assert_eq!(
        feed_decodes() - before,
        2,
        "once per message, not per kind or subscriber"
    );
    assert_eq!((trade.delivered, quote.delivered), (2, 2));
    settle().await;

    for seen in [seen_a, seen_b] {
        let got: Vec<Feed> = seen
            .lock()
            .unwrap()
            .drain(..)
            .map(Delivery::into_inner)
            .collect();
        assert_eq!(got, [Feed::Trade { seq: 1 }, Feed::Quote { bid: 2.5 }]);
    }
}

#[actix_rt::test]
async fn a_kind_not_listed_is_not_delivered_to_a_type_of_several_kinds() {
    let router = Router::new();
    let (feed, seen) = collector::<Feed>();
    router.subscribe::<Feed>(feed);
    let before = feed_decodes();
    let report = route(&router, "ex", r#"{"type":"cancel","seq":3}"#);
    assert_eq!((report.delivered, report.unrouted), (0, 1));
    assert_eq!(feed_decodes(), before, "not even decoded");
    settle().await;
    assert!(seen.lock().unwrap().is_empty());
}

#[actix_rt::test]
async fn unsubscribing_a_type_of_several_kinds_forgets_every_kind() {
    let router = Router::new();
    let (feed, _) = collector::<Feed>();
    let id = router.subscribe::<Feed>(feed);
    assert!(router.unsubscribe(id));
    assert_eq!(router.subscription_count(), 0);
    for text in [r#"{"type":"trade","seq":1}"#, r#"{"type":"quote","bid":1}"#] {
        assert_eq!(route(&router, "ex", text).unrouted, 1, "{text}");
    }
}

#[actix_rt::test]
async fn a_raw_subscriber_gets_the_exact_text_and_when_it_arrived() {
    let router = Router::new();
    let (a, seen_a) = collector::<RawMessage>();
    let (b, seen_b) = collector::<RawMessage>();
    router.subscribe_raw("quote", a, SubscribeOptions::new());
    router.subscribe_raw("quote", b, SubscribeOptions::new());
    let (typed, typed_seen) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("quote", typed, SubscribeOptions::new());

    // Spacing, key order, escapes and non-ASCII text exactly as sent.
    let text = "{ \"bid\" : 1.50,\n \"type\":\"quote\", \"venue\":\"Z\\u00fcrich – ü\" }";
    let before = SystemTime::now();
    let report = route(&router, "ex", text);
    let after = SystemTime::now();
    assert_eq!((report.delivered, report.unrouted), (3, 0));
    assert_eq!(
        route(&router, "ex", r#"{"type":"trade"}"#).unrouted,
        1,
        "only its kind"
    );
    settle().await;

    let raw_a: Vec<Delivery<RawMessage>> = seen_a.lock().unwrap().drain(..).collect();
    let raw_b: Vec<Delivery<RawMessage>> = seen_b.lock().unwrap().drain(..).collect();
    assert_eq!(raw_a.len(), 1);
    let raw = &raw_a[0];
    assert_eq!(raw.endpoint, "ex");
    assert_eq!(&*raw.message.text, text);
    assert_eq!(&*raw.message.kind, "quote");
    assert!(before <= raw.message.received_at && raw.message.received_at <= after);
    assert!(
        Shared::ptr_eq(&raw.message, &raw_b[0].message),
        "one copy of the text for both raw subscribers"
    );
    assert_eq!(typed_seen.lock().unwrap()[0].message["bid"], 1.5);
}

#[actix_rt::test]
async fn a_raw_subscriber_of_every_kind_gets_each_text_with_its_kind_and_no_dead_letter() {
    let router = Router::new();
    let (all, seen) = collector::<RawMessage>();
    router.subscribe_raw_all(all, SubscribeOptions::new());
    let quote = "{ \"type\":\"quote\", \"bid\" : 1.50 }";
    let untyped = r#"{"bid":2}"#;
    for text in [quote, r#"{"type":"trade","seq":7}"#, untyped] {
        let report = route(&router, "ex", text);
        assert_eq!((report.delivered, report.unrouted), (1, 0), "{text}");
    }
    settle().await;
    let seen: Vec<(String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|d| (d.message.kind.to_string(), d.message.text.to_string()))
        .collect();
    assert_eq!(
        seen,
        [
            ("quote".to_owned(), quote.to_owned()),
            ("trade".to_owned(), r#"{"type":"trade","seq":7}"#.to_owned()),
            (String::new(), untyped.to_owned()),
        ]
    );
}

/// What one report routes, message after message, as a connection does.
fn route_all(
    router: &Router,
    rule: &wsherd_protocol::KindRule,
    texts: &[&str],
) -> crate::DispatchReport {
    let mut report = crate::DispatchReport::default();
    for text in texts {
        router
            .table()
            .route_text(&super::name("ex"), rule, text.as_bytes(), &mut report);
    }
    report
}

#[actix_rt::test]
async fn a_message_that_only_starts_like_the_last_one_is_routed_by_its_own_kind() {
    let router = Router::new();
    let (trades, seen_trades) = collector::<serde_json::Value>();
    let (traders, seen_traders) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("trade", trades, SubscribeOptions::new());
    router.subscribe_kind::<serde_json::Value>("trader", traders, SubscribeOptions::new());
    let report = route_all(
        &router,
        &wsherd_protocol::KindRule::default(),
        &[
            r#"{"type":"trade","n":1}"#,
            r#"{"type":"trade","n":2}"#,
            // The remembered `{"type":"trade"` is not a prefix of these.
            r#"{"type":"trader","n":3}"#,
            r#"{"type":"trade\u0072","n":4}"#,
            r#"{"type": "trade","n":5}"#,
            r#"{"type":"trade","n":6}"#,
        ],
    );
    assert_eq!((report.delivered, report.unrouted), (6, 0), "{report:?}");
    settle().await;
    let numbers = |seen: &super::Seen<serde_json::Value>| -> Vec<u64> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|d| d.message["n"].as_u64())
            .collect()
    };
    assert_eq!(numbers(&seen_trades), vec![1, 2, 5, 6]);
    assert_eq!(
        numbers(&seen_traders),
        vec![3, 4],
        "an escaped kind is the same kind"
    );
}

#[actix_rt::test]
async fn a_remembered_kind_is_not_taken_for_another_rule_or_another_table() {
    let router = Router::new();
    let (quotes, seen_quotes) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("quote", quotes, SubscribeOptions::new());
    let (trades, seen_trades) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("trade", trades, SubscribeOptions::new());
    let mut report = crate::DispatchReport::default();
    let by_type = wsherd_protocol::KindRule::default();
    let by_e = wsherd_protocol::KindRule::field("e");
    let text = r#"{"type":"trade","e":"quote"}"#;
    router
        .table()
        .route_text(&super::name("ex"), &by_type, text.as_bytes(), &mut report);
    // The same text under another rule has another kind.
    router
        .table()
        .route_text(&super::name("ex"), &by_e, text.as_bytes(), &mut report);
    // A new table (a subscription came first in its list) is searched anew.
    router
        .table()
        .route_text(&super::name("ex"), &by_type, text.as_bytes(), &mut report);
    let (first, seen_first) = collector::<serde_json::Value>();
    router.subscribe_kind::<serde_json::Value>("aaa", first, SubscribeOptions::new());
    router
        .table()
        .route_text(&super::name("ex"), &by_type, text.as_bytes(), &mut report);
    assert_eq!(report.delivered, 4, "{report:?}");
    settle().await;
    assert_eq!(seen_trades.lock().unwrap().len(), 3);
    assert_eq!(seen_quotes.lock().unwrap().len(), 1);
    assert!(seen_first.lock().unwrap().is_empty());
}
