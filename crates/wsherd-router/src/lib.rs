//! Subscriptions and typed delivery for wsherd.
//!
//! A [`Router`] owns subscriptions: an actor's [`Recipient`](actix::Recipient) for a Rust type,
//! by kind, optionally only from some endpoints. Every change publishes a new immutable
//! [`RouteTable`]; connections keep a [`RouteCache`] and deliver straight into subscriber
//! mailboxes, so the router is never a hop on the message path. Each message is decoded once per
//! subscribed type, shared between that type's subscribers as a [`Delivery`]. What nobody wants,
//! or what fails to decode, becomes a [`DeadLetter`].
//!
//! A subscriber whose actor runs on another arbiter than the connection is relayed: the turn's
//! deliveries for that arbiter cross threads as one parcel and are put into the mailboxes from
//! there (see [`SubscribeOptions`]). A type may be decoded from several kinds
//! ([`Inbound::KINDS`](wsherd_protocol::Inbound::KINDS)); [`Router::subscribe_raw`] delivers a
//! kind's text undecoded, as a [`RawMessage`].
//!
//! ```no_run
//! use actix::prelude::*;
//! use serde::Deserialize;
//! use wsherd_protocol::{EndpointName, Inbound, KindRule};
//! use wsherd_router::{Delivery, DispatchReport, Router};
//!
//! #[derive(Debug, Deserialize)]
//! struct Trade { price: f64 }
//! impl Inbound for Trade { const KIND: &'static str = "trade"; }
//!
//! struct Printer;
//! impl Actor for Printer { type Context = Context<Self>; }
//! impl Handler<Delivery<Trade>> for Printer {
//!     type Result = ();
//!     fn handle(&mut self, trade: Delivery<Trade>, _: &mut Context<Self>) {
//!         println!("{}: {}", trade.endpoint, trade.message.price);
//!     }
//! }
//!
//! # #[actix::main] async fn main() {
//! let router = Router::new();
//! router.subscribe::<Trade>(Printer.start().recipient());
//! // What a connection does with each text frame:
//! let mut routes = router.cache();
//! let mut report = DispatchReport::default();
//! let endpoint = EndpointName::new("exchange").unwrap();
//! routes.current().route_text(&endpoint, &KindRule::default(), br#"{"type":"trade","price":1.5}"#, &mut report);
//! # }
//! ```
#![forbid(unsafe_code)]

// A one-way chain, each module using only those to its left, so each reads without the ones after
// it: delivery → dispatch → subscription → table → demand → router.
mod delivery;
mod demand;
mod dispatch;
mod router;
mod subscription;
mod table;

pub use delivery::{Batch, Binary, DeadLetter, DeadLetterReason, Delivery, RawMessage, Shared};
pub use demand::{DemandChanged, DemandWatch};
pub use dispatch::{DispatchReport, Overflow, RelayCounters, SubscriptionId};
pub use router::{RouteCache, Router};
pub use subscription::SubscribeOptions;
pub use table::RouteTable;

#[cfg(test)]
mod tests;
