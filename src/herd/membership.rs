//! What a cluster tells about this herd's place in it: which member it is, who owns each
//! endpoint, and the cluster's own figures. A cluster (`wsherd-cluster`) installs a
//! [`Membership`]; the server's status, metrics and dashboard read it from the herd, so they
//! need not know the cluster's crate.

use std::sync::{Arc, PoisonError};

use wsherd_protocol::EndpointName;

use super::Herd;

/// One endpoint's owner as this member last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The endpoint.
    pub endpoint: EndpointName,
    /// The member that holds it, if any.
    pub owner: Option<String>,
    /// Whether this member runs it now.
    pub local: bool,
}

/// One of a cluster's counters, for metrics and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipFigure {
    /// A short snake-case name (`published`, `taken`, …; only `a-z`, `0-9` and `_`, else the
    /// server leaves it out of `/metrics`): the metric is `wsherd_cluster_<name>_total`.
    pub name: &'static str,
    /// One line saying what it counts.
    pub help: &'static str,
    /// Its value now.
    pub value: u64,
}

/// A herd's place in a cluster, as the cluster sees it now.
pub trait Membership: Send + Sync + 'static {
    /// This member's name.
    fn member(&self) -> String;

    /// The members seen alive, this one among them, sorted (as of the cluster's last look:
    /// `wsherd-cluster` looks every third of a lease).
    fn members(&self) -> Vec<String>;

    /// Every endpoint of the cluster with its owner, sorted by endpoint.
    fn ownership(&self) -> Vec<Ownership>;

    /// The cluster's counters for this member.
    fn figures(&self) -> Vec<MembershipFigure>;
}

impl Herd {
    /// Makes `membership` what [`Herd::membership`] answers; `None` forgets it (the herd is
    /// on its own again).
    pub fn set_membership(&self, membership: Option<Arc<dyn Membership>>) {
        *self
            .inner
            .membership
            .write()
            .unwrap_or_else(PoisonError::into_inner) = membership;
    }

    /// The cluster this herd is a member of, if any.
    pub fn membership(&self) -> Option<Arc<dyn Membership>> {
        self.inner
            .membership
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
