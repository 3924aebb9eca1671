//! Who holds what: member liveness and the fair share, as plain code on explicit instants.
//!
//! NATS 2.9 has no per-key TTL and writes no marker when a bucket's `max_age` drops a key, so
//! a lease cannot simply lapse. Instead every member renews its own key in the members bucket
//! every third of a lease, and each member times the others by its own clock: a member whose
//! key has not changed for a whole lease, as seen here, is dead, and its leases may be taken
//! (by a revision-checked update, so two takers cannot both win).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

/// When each other member was last seen renewing its key.
#[derive(Debug, Default)]
pub struct Liveness {
    seen: HashMap<String, Seen>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    revision: u64,
    at: Instant,
}

impl Liveness {
    /// `member`'s key was seen at `revision`, at `now`. A new revision (or a member seen for
    /// the first time, whose key may be left by a dead process: it gets one lease from now)
    /// restarts its clock; the same revision again does not.
    pub fn observe(&mut self, member: &str, revision: u64, now: Instant) {
        match self.seen.get_mut(member) {
            Some(seen) if seen.revision == revision => {}
            Some(seen) => *seen = Seen { revision, at: now },
            None => {
                self.seen
                    .insert(member.to_owned(), Seen { revision, at: now });
            }
        }
    }

    /// `member` holds a lease but has not been seen in the members bucket: it gets a lease
    /// from `now` to show up (its key and its lease come through separate watches).
    pub fn observe_unknown(&mut self, member: &str, now: Instant) {
        if !self.seen.contains_key(member) {
            self.seen.insert(
                member.to_owned(),
                Seen {
                    revision: 0,
                    at: now,
                },
            );
        }
    }

    /// `member`'s key was deleted: it left, or was declared dead.
    pub fn forget(&mut self, member: &str) {
        self.seen.remove(member);
    }

    /// Whether `member` renewed within `lease` of `now`.
    pub fn is_live(&self, member: &str, now: Instant, lease: Duration) -> bool {
        self.seen
            .get(member)
            .is_some_and(|seen| now.saturating_duration_since(seen.at) < lease)
    }

    /// Members seen renewing within `lease` of `now`, plus `me`.
    pub fn live(&self, me: &str, now: Instant, lease: Duration) -> BTreeSet<String> {
        let mut live: BTreeSet<String> = self
            .seen
            .keys()
            .filter(|member| self.is_live(member, now, lease))
            .cloned()
            .collect();
        live.insert(me.to_owned());
        live
    }

    /// Members whose keys are still there but who have not renewed for `lease`, with the
    /// revision their key was last seen at (to delete it only if nothing changed since).
    pub fn dead(&self, me: &str, now: Instant, lease: Duration) -> Vec<(String, u64)> {
        self.seen
            .iter()
            .filter(|(member, _)| member.as_str() != me && !self.is_live(member, now, lease))
            .map(|(member, seen)| (member.clone(), seen.revision))
            .collect()
    }
}

/// ceil(endpoints / members): the most one member takes.
pub fn fair_share(endpoints: usize, members: usize) -> usize {
    endpoints.div_ceil(members.max(1))
}

/// One lease as the bucket holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The member that holds it.
    pub owner: String,
    /// The key's revision: the next update must name it.
    pub revision: u64,
}

/// What a member should do next.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Endpoints to take: free, or held by a dead member (with that lease's revision).
    pub take: Vec<(String, Option<u64>)>,
    /// Endpoints to hand over (close, then release): beyond this member's fair share while
    /// another live member holds less than its own.
    pub release: Vec<String>,
}

/// The plan for `me`, given every endpoint of the config, the leases, and the live members.
///
/// A member takes free endpoints until it holds its fair share; it releases what it holds
/// beyond the fair share only while some live member holds less, so a joining member gets
/// its share and nothing moves back and forth. Which free endpoints a member prefers is a
/// hash of its name and theirs, so members taking at once mostly reach for different ones.
pub fn plan(
    me: &str,
    endpoints: &[String],
    leases: &BTreeMap<String, Lease>,
    live: &BTreeSet<String>,
) -> Plan {
    let share = fair_share(endpoints.len(), live.len());
    let mut held: BTreeMap<&str, usize> = live.iter().map(|m| (m.as_str(), 0)).collect();
    let mut free = Vec::new();
    let mut mine = Vec::new();
    for endpoint in endpoints {
        match leases.get(endpoint) {
            Some(lease) if live.contains(&lease.owner) => {
                *held.entry(lease.owner.as_str()).or_default() += 1;
                if lease.owner == me {
                    mine.push(endpoint.clone());
                }
            }
            Some(lease) => free.push((endpoint.clone(), Some(lease.revision))),
            None => free.push((endpoint.clone(), None)),
        }
    }
    let mut plan = Plan::default();
    if mine.len() < share {
        free.sort_by_key(|(endpoint, _)| preference(me, endpoint));
        free.truncate(share - mine.len());
        plan.take = free;
    } else if mine.len() > share && held.values().any(|count| *count < share) && free.is_empty() {
        mine.sort_by_key(|endpoint| std::cmp::Reverse(preference(me, endpoint)));
        mine.truncate(mine.len() - share);
        plan.release = mine;
    }
    plan
}

fn preference(me: &str, endpoint: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (me, endpoint).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(5);

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("e{i:02}")).collect()
    }

    fn members(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|m| (*m).to_owned()).collect()
    }

    fn held_by(owner: &str, endpoints: &[String], leases: &mut BTreeMap<String, Lease>) {
        for e in endpoints {
            leases.insert(
                e.clone(),
                Lease {
                    owner: owner.to_owned(),
                    revision: 7,
                },
            );
        }
    }

    #[test]
    fn a_member_that_stops_renewing_is_dead_one_lease_after_it_was_last_seen() {
        let t0 = Instant::now();
        let mut liveness = Liveness::default();
        liveness.observe("b", 1, t0);
        liveness.observe("b", 1, t0 + Duration::from_secs(3));
        assert!(liveness.is_live("b", t0 + Duration::from_millis(4_999), LEASE));
        assert!(
            !liveness.is_live("b", t0 + LEASE, LEASE),
            "the same revision is no renewal"
        );
        assert_eq!(
            liveness.dead("a", t0 + LEASE, LEASE),
            vec![("b".to_owned(), 1)]
        );
        liveness.observe("b", 2, t0 + Duration::from_secs(4));
        assert!(liveness.is_live("b", t0 + Duration::from_secs(8), LEASE));
        assert_eq!(
            liveness.live("a", t0 + Duration::from_secs(8), LEASE),
            members(&["a", "b"])
        );
        liveness.forget("b");
        assert_eq!(liveness.live("a", t0, LEASE), members(&["a"]));
    }

    #[test]
    fn the_fair_share_rounds_up() {
        assert_eq!(fair_share(30, 3), 10);
        assert_eq!(fair_share(31, 3), 11);
        assert_eq!(fair_share(3, 0), 3);
        assert_eq!(fair_share(0, 2), 0);
    }

    #[test]
    fn three_members_taking_from_nothing_each_take_a_third() {
        let endpoints = names(30);
        let live = members(&["a", "b", "c"]);
        let plan = plan("a", &endpoints, &BTreeMap::new(), &live);
        assert_eq!(plan.take.len(), 10);
        assert!(plan.release.is_empty());
        let other = super::plan("b", &endpoints, &BTreeMap::new(), &live);
        let overlap = plan.take.iter().filter(|t| other.take.contains(t)).count();
        assert!(overlap < 10, "members prefer different endpoints");
    }

    #[test]
    fn a_member_with_its_share_takes_nothing_more() {
        let endpoints = names(30);
        let mut leases = BTreeMap::new();
        held_by("a", &endpoints[..10], &mut leases);
        let plan = plan("a", &endpoints, &leases, &members(&["a", "b", "c"]));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_dead_members_endpoints_are_taken_with_their_revisions() {
        let endpoints = names(30);
        let mut leases = BTreeMap::new();
        held_by("a", &endpoints[..10], &mut leases);
        held_by("b", &endpoints[10..20], &mut leases);
        held_by("dead", &endpoints[20..], &mut leases);
        let plan = plan("a", &endpoints, &leases, &members(&["a", "b"]));
        assert_eq!(plan.take.len(), 5, "share 15, holds 10");
        assert!(
            plan.take
                .iter()
                .all(|(e, rev)| e >= &endpoints[20] && *rev == Some(7))
        );
    }

    #[test]
    fn a_member_hands_over_its_extras_when_another_joins() {
        let endpoints = names(30);
        let mut leases = BTreeMap::new();
        held_by("a", &endpoints[..15], &mut leases);
        held_by("b", &endpoints[15..], &mut leases);
        let live = members(&["a", "b", "c"]);
        let plan = plan("a", &endpoints, &leases, &live);
        assert_eq!(plan.release.len(), 5);
        assert!(plan.take.is_empty());
        let joiner = super::plan("c", &endpoints, &leases, &live);
        assert_eq!(
            joiner,
            Plan::default(),
            "nothing free yet: c waits for hand-overs"
        );
    }

    #[test]
    fn nobody_releases_while_endpoints_are_free() {
        let endpoints = names(30);
        let mut leases = BTreeMap::new();
        held_by("a", &endpoints[..12], &mut leases);
        let plan = plan("a", &endpoints, &leases, &members(&["a", "b", "c"]));
        assert!(plan.release.is_empty() && plan.take.is_empty());
    }
}
