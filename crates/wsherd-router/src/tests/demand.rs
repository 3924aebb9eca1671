//! Which endpoints are needed: only subscriptions that name them, and only while they live.

use super::*;
use crate::{DemandChanged, SubscribeOptions};

struct Watcher {
    told: Arc<Mutex<Vec<bool>>>,
}

impl Actor for Watcher {
    type Context = Context<Self>;
}

impl Handler<DemandChanged> for Watcher {
    type Result = ();
    fn handle(&mut self, changed: DemandChanged, _: &mut Context<Self>) {
        self.told.lock().unwrap().push(changed.needed);
    }
}

fn watcher() -> (Recipient<DemandChanged>, Arc<Mutex<Vec<bool>>>) {
    let told = Arc::new(Mutex::new(Vec::new()));
    let addr = Watcher { told: told.clone() }.start();
    (addr.recipient(), told)
}

fn name(text: &str) -> EndpointName {
    EndpointName::new(text).unwrap()
}

#[actix_rt::test]
async fn a_subscription_naming_an_endpoint_makes_it_needed_until_it_ends() {
    let router = Router::new();
    let (recipient, told) = watcher();
    let (_, needed) = router.watch_demand(name("feed"), recipient);
    assert!(!needed);
    let (subscriber, _) = collector::<Trade>();
    let id = router.subscribe_with(
        subscriber,
        SubscribeOptions::new().endpoints([name("other"), name("feed")]),
    );
    settle().await;
    assert_eq!(*told.lock().unwrap(), [true]);
    assert!(router.is_demanded(&name("feed")));
    assert!(
        router.is_demanded(&name("other")),
        "unwatched endpoints are answered too"
    );
    router.unsubscribe(id);
    settle().await;
    assert_eq!(*told.lock().unwrap(), [true, false]);
    assert!(!router.is_demanded(&name("feed")));
}

#[actix_rt::test]
async fn taps_and_passive_subscriptions_never_make_an_endpoint_needed() {
    let router = Router::new();
    let (recipient, told) = watcher();
    router.watch_demand(name("feed"), recipient);
    let (everything, _) = collector::<serde_json::Value>();
    router.subscribe_all(everything, SubscribeOptions::new());
    let (events, _) = collector::<crate::DeadLetter>();
    router.subscribe_event(events, SubscribeOptions::new());
    let (monitor, _) = collector::<Trade>();
    router.subscribe_with(
        monitor,
        SubscribeOptions::new().endpoints([name("feed")]).passive(),
    );
    settle().await;
    assert!(told.lock().unwrap().is_empty());
    assert!(!router.is_demanded(&name("feed")));
}

/// A subscriber that stops when told to (the router's recipient alone keeps it running).
struct Mortal;

impl Actor for Mortal {
    type Context = Context<Self>;
}

impl Handler<Delivery<Trade>> for Mortal {
    type Result = ();
    fn handle(&mut self, _: Delivery<Trade>, _: &mut Context<Self>) {}
}

#[derive(Message)]
#[rtype(result = "()")]
struct Die;

impl Handler<Die> for Mortal {
    type Result = ();
    fn handle(&mut self, _: Die, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[actix_rt::test]
async fn a_subscriber_whose_actor_stopped_no_longer_makes_its_endpoint_needed() {
    let router = Router::new();
    let addr = Mortal.start();
    router.subscribe_with(
        addr.clone().recipient::<Delivery<Trade>>(),
        SubscribeOptions::new().endpoints([name("feed")]),
    );
    assert!(router.is_demanded(&name("feed")));
    addr.send(Die).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while router.is_demanded(&name("feed")) {
        assert!(std::time::Instant::now() < deadline, "still needed");
        settle().await;
    }
}

#[actix_rt::test]
async fn a_new_watcher_replaces_the_old_and_the_old_ones_unwatch_leaves_it() {
    let router = Router::new();
    let (first, first_told) = watcher();
    let (old, _) = router.watch_demand(name("feed"), first);
    let (second, second_told) = watcher();
    router.watch_demand(name("feed"), second);
    router.unwatch_demand(&name("feed"), old);
    let (subscriber, _) = collector::<Trade>();
    router.subscribe_with(
        subscriber,
        SubscribeOptions::new().endpoints([name("feed")]),
    );
    settle().await;
    assert!(first_told.lock().unwrap().is_empty());
    assert_eq!(*second_told.lock().unwrap(), [true]);
}
