//! The member as its herd shows it: [`wsherd::Membership`] for the server's status, metrics
//! and dashboard.

use std::sync::atomic::Ordering;
use std::sync::{PoisonError, Weak};

use wsherd::{Membership, MembershipFigure, Ownership};

use crate::Shared;

/// Reads the member's shared state; weak, so the herd keeps no member alive.
pub(crate) struct Seen(pub(crate) Weak<Shared>);

impl Membership for Seen {
    fn member(&self) -> String {
        self.0
            .upgrade()
            .map(|shared| shared.member.clone())
            .unwrap_or_default()
    }

    fn members(&self) -> Vec<String> {
        self.0.upgrade().map_or_else(Vec::new, |shared| {
            shared
                .members
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    fn ownership(&self) -> Vec<Ownership> {
        self.0
            .upgrade()
            .map_or_else(Vec::new, |shared| shared.ownership())
    }

    fn figures(&self) -> Vec<MembershipFigure> {
        self.0
            .upgrade()
            .map_or_else(Vec::new, |shared| figures(&shared))
    }
}

/// The member's counters, named as `/api/cluster` and the status subject name them.
pub(crate) fn figures(shared: &Shared) -> Vec<MembershipFigure> {
    let c = &shared.counters;
    let figure = |name, help, counter: &std::sync::atomic::AtomicU64| MembershipFigure {
        name,
        help,
        value: counter.load(Ordering::Relaxed),
    };
    vec![
        figure(
            "published",
            "Messages of this member's endpoints published to NATS.",
            &c.published,
        ),
        figure(
            "publish_dropped",
            "Messages of this member's endpoints not published: NATS did not take them in time.",
            &c.publish_dropped,
        ),
        figure(
            "remote_routed",
            "Messages of other members' endpoints routed to this herd's subscribers.",
            &c.remote_routed,
        ),
        figure(
            "slow_consumer",
            "Times NATS dropped messages for this member's subscriptions (slow consumer).",
            &c.slow_consumer,
        ),
        figure(
            "sends_served",
            "Send requests answered for other members.",
            &c.sends_served,
        ),
        figure("taken", "Endpoints this member took.", &c.taken),
        figure(
            "released",
            "Endpoints this member handed over.",
            &c.released,
        ),
        figure(
            "fenced",
            "Times this member closed every endpoint because it could not renew.",
            &c.fenced,
        ),
    ]
}
