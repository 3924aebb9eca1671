//! What a herd publishes about itself, as opposed to what its peers send: the types
//! [`Herd::subscribe_events`](crate::Herd::subscribe_events) accepts.

use wsherd_connection::{ConnectionEvent, GapEvent};
use wsherd_router::{Binary, DeadLetter};
use wsherd_supervisor::{NetworkEvent, QueueEvent, StateEvent};

mod sealed {
    pub trait Sealed {}
}

/// An event wsherd publishes to subscribers: [`StateEvent`], [`ConnectionEvent`],
/// [`QueueEvent`], [`NetworkEvent`] (the herd went offline or came back), [`GapEvent`] (a
/// sequence gap, duplicate or reset), [`DeadLetter`] and [`Binary`] frames, and nothing else
/// (sealed), so a
/// subscription to a type that is never published does not compile.
///
/// ```no_run
/// # use wsherd::prelude::*;
/// # fn demo(herd: Herd, states: wsherd::actix::Recipient<Delivery<StateEvent>>) {
/// herd.subscribe_events(states);
/// herd.on_event::<ConnectionEvent, _>(|event| println!("{}: {:?}", event.endpoint, event.message))
///     .expect("inside an actix system");
/// # }
/// ```
///
/// A type that is not an event is refused at compile time, by either method:
///
/// ```compile_fail
/// # use wsherd::prelude::*;
/// # fn demo(herd: Herd, states: wsherd::actix::Recipient<Delivery<EndpointState>>) {
/// herd.subscribe_events(states); // EndpointState is what a StateEvent carries
/// # }
/// ```
///
/// ```compile_fail
/// # use wsherd::prelude::*;
/// # fn demo(herd: Herd, states: wsherd::actix::Recipient<Delivery<StateEvent>>) {
/// herd.subscribe(states); // events are not peer messages: use subscribe_events
/// # }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event wsherd publishes",
    label = "not an event",
    note = "the events are StateEvent, ConnectionEvent, QueueEvent, NetworkEvent, GapEvent, DeadLetter and Binary; messages from a peer are subscribed with `Herd::subscribe` (a type with an `Inbound` impl)"
)]
pub trait Event: sealed::Sealed + Send + Sync + 'static {}

macro_rules! events {
    ($($ty:ty),+) => {
        $(
            impl sealed::Sealed for $ty {}
            impl Event for $ty {}
        )+
    };
}

events!(
    StateEvent,
    ConnectionEvent,
    QueueEvent,
    NetworkEvent,
    GapEvent,
    DeadLetter,
    Binary
);
