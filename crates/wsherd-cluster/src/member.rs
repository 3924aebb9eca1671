//! The member's controller: renews its liveness key, watches members and leases, takes its
//! fair share, hands extras over, takes dead members' endpoints, and fences itself when it
//! cannot renew.
//!
//! The rules it keeps (the module `share` has the arithmetic):
//! - a lease is taken only by `create` (no key) or by an update naming the revision seen
//!   (a dead owner's key): two members cannot both win one endpoint;
//! - a member runs an endpoint only while the lease names it; a lease that changes under it
//!   (taken, deleted, written by hand) closes the endpoint at once;
//! - a member that has not renewed for two thirds of a lease closes everything
//!   (`on_cluster_loss = "stop"`) before the others, who wait a whole lease, may take it;
//! - a hand-over closes the endpoint first, then deletes the lease (revision-checked), then
//!   sends what was still queued to the next owner.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream::kv::{self, Operation, UpdateErrorKind};
use bytes::Bytes;
use futures_util::StreamExt;
use wsherd::config::OnClusterLoss;
use wsherd::{EndpointName, Outbound};

use crate::Shared;
use crate::error::ClusterError;
use crate::share::{self, Lease, Liveness};
use crate::store::{Buckets, DIGEST_KEY, LeaseValue, MemberValue};
use crate::subject::{escape_key, unescape_key};

/// The member's key in the members bucket, with the revision of its last write.
pub(crate) struct Registration {
    key: String,
    value: Bytes,
    revision: u64,
}

/// Checks the config digest against the bucket's: the same, or written when there was none.
/// A different one is refused while any member with that digest is alive (it renews within
/// a lease); when none is, the cluster's config changed and this one becomes it.
pub(crate) async fn check_config(
    buckets: &Buckets,
    digest: &str,
    me: &str,
    lease: Duration,
) -> Result<(), ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    let stored = buckets
        .config
        .entry(DIGEST_KEY)
        .await
        .map_err(|e| nats(&e))?;
    let revision = match stored {
        None => {
            return match buckets
                .config
                .create(DIGEST_KEY, Bytes::from(digest.to_owned()))
                .await
            {
                Ok(_) => Ok(()),
                // Another member wrote it first: compare with that (once more at most; no
                // key a second time is NATS failing, not a race).
                Err(error) => match buckets.config.entry(DIGEST_KEY).await {
                    Ok(Some(entry)) if entry.value == digest.as_bytes() => Ok(()),
                    Ok(Some(_)) => Box::pin(check_config(buckets, digest, me, lease)).await,
                    _ => Err(nats(&error)),
                },
            };
        }
        Some(entry) if entry.value == digest.as_bytes() && entry.operation == Operation::Put => {
            return Ok(());
        }
        Some(entry) => entry.revision,
    };
    // A different digest: is anyone who runs it alive? Watch the members for a lease.
    let others = members_with_other_digest(buckets, digest, me, lease).await?;
    if let Some((member, theirs)) = others.into_iter().next() {
        return Err(ClusterError::ConfigMismatch {
            member,
            theirs,
            ours: digest.to_owned(),
        });
    }
    buckets
        .config
        .update(DIGEST_KEY, Bytes::from(digest.to_owned()), revision)
        .await
        .map_err(|e| nats(&e))?;
    tracing::info!(
        digest,
        "no live member runs the cluster's previous config: this one replaces it"
    );
    Ok(())
}

/// Members with another digest that renew within `lease` (a lease and a renewal).
async fn members_with_other_digest(
    buckets: &Buckets,
    digest: &str,
    me: &str,
    lease: Duration,
) -> Result<Vec<(String, String)>, ClusterError> {
    let snapshot = member_entries(buckets).await?;
    let candidates: Vec<_> = snapshot
        .into_iter()
        .filter(|(_, value, _)| value.config != digest && value.member != me)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    tokio::time::sleep(lease + lease / 3).await;
    let now: BTreeMap<String, u64> = member_entries(buckets)
        .await?
        .into_iter()
        .map(|(key, _, revision)| (key, revision))
        .collect();
    Ok(candidates
        .into_iter()
        .filter(|(key, _, revision)| now.get(key).is_some_and(|r| r != revision))
        .map(|(_, value, _)| (value.member, value.config))
        .collect())
}

async fn member_entries(
    buckets: &Buckets,
) -> Result<Vec<(String, MemberValue, u64)>, ClusterError> {
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    let mut keys = buckets.members.keys().await.map_err(|e| nats(&e))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if let Ok(Some(entry)) = buckets.members.entry(key.clone()).await
            && entry.operation == Operation::Put
            && let Ok(value) = serde_json::from_slice::<MemberValue>(&entry.value)
        {
            out.push((key, value, entry.revision));
        }
    }
    Ok(out)
}

/// Writes this member's key. A key left by an earlier process of the same name is taken over
/// once it has stayed unchanged for a lease; one that changes meanwhile is a live process.
pub(crate) async fn register(
    buckets: &Buckets,
    me: &str,
    incarnation: &str,
    digest: &str,
    lease: Duration,
) -> Result<Registration, ClusterError> {
    let key = escape_key(me);
    let value = MemberValue {
        member: me.to_owned(),
        incarnation: incarnation.to_owned(),
        config: digest.to_owned(),
    };
    let value = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    let nats = |e: &dyn std::fmt::Display| ClusterError::Nats(e.to_string());
    if let Ok(revision) = buckets.members.create(&key, value.clone()).await {
        return Ok(Registration {
            key,
            value,
            revision,
        });
    }
    let Some(before) = buckets.members.entry(&key).await.map_err(|e| nats(&e))? else {
        let revision = buckets
            .members
            .create(&key, value.clone())
            .await
            .map_err(|e| nats(&e))?;
        return Ok(Registration {
            key,
            value,
            revision,
        });
    };
    tracing::info!(
        member = me,
        "a key with this member name exists: waiting a lease to see whether it is alive"
    );
    tokio::time::sleep(lease + lease / 3).await;
    let after = buckets.members.entry(&key).await.map_err(|e| nats(&e))?;
    match after {
        Some(after) if after.revision != before.revision && after.operation == Operation::Put => {
            Err(ClusterError::MemberInUse(me.to_owned()))
        }
        Some(after) => {
            let revision = buckets
                .members
                .update(&key, value.clone(), after.revision)
                .await
                .map_err(|e| nats(&e))?;
            Ok(Registration {
                key,
                value,
                revision,
            })
        }
        None => {
            let revision = buckets
                .members
                .create(&key, value.clone())
                .await
                .map_err(|e| nats(&e))?;
            Ok(Registration {
                key,
                value,
                revision,
            })
        }
    }
}

/// Starts the controller on the calling arbiter.
pub(crate) fn start(shared: Arc<Shared>, buckets: Buckets, registration: Registration) {
    let controller = Controller {
        now_settled: Instant::now() + shared.renew_every(),
        last_renewed: Instant::now(),
        next_renewal: Instant::now() + shared.renew_every(),
        registration: Some(registration),
        liveness: Liveness::default(),
        leases: BTreeMap::new(),
        members_current: false,
        leases_current: false,
        fenced: false,
        releasing: BTreeSet::new(),
        shared,
        buckets,
    };
    actix::spawn(controller.run());
}

struct Controller {
    shared: Arc<Shared>,
    buckets: Buckets,
    registration: Option<Registration>,
    /// When the last renewal was acknowledged.
    last_renewed: Instant,
    next_renewal: Instant,
    /// Nothing is taken before this: time to see the other members.
    now_settled: Instant,
    liveness: Liveness,
    /// Every lease as the watch last showed it, by endpoint name.
    leases: BTreeMap<String, Lease>,
    members_current: bool,
    leases_current: bool,
    /// Everything was closed because renewals failed; cleared by the next renewal.
    fenced: bool,
    /// Endpoints being handed over (closing, then released).
    releasing: BTreeSet<String>,
}

type Watch = kv::Watch;

impl Controller {
    async fn run(mut self) {
        let mut members: Option<Watch> = None;
        let mut leases: Option<Watch> = None;
        let tick = (self.shared.settings.lease / 10).max(Duration::from_millis(20));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.shared.leaving.load(Ordering::SeqCst) {
                self.leave().await;
                self.shared.left.notify_waiters();
                return;
            }
            if members.is_none() {
                (members, self.members_current) = watch(&self.buckets.members).await;
            }
            if leases.is_none() {
                self.leases.clear();
                (leases, self.leases_current) = watch(&self.buckets.leases).await;
            }
            tokio::select! {
                entry = next(&mut members) => match entry {
                    Some(entry) => self.on_member(entry).await,
                    None => members = None,
                },
                entry = next(&mut leases) => match entry {
                    Some(entry) => self.on_lease(entry).await,
                    None => leases = None,
                },
                _ = ticker.tick() => self.step().await,
            }
        }
    }

    async fn on_member(&mut self, entry: kv::Entry) {
        if entry.seen_current || entry.delta == 0 {
            self.members_current = true;
        }
        let Some(name) = unescape_key(&entry.key) else {
            return;
        };
        let me = self.shared.member.as_str();
        if name == me {
            // Our own key: deleted, or written by another process of our name.
            let ours = entry.operation == Operation::Put
                && serde_json::from_slice::<MemberValue>(&entry.value)
                    .is_ok_and(|v| v.incarnation == self.shared.incarnation);
            if !ours {
                tracing::warn!(
                    member = me,
                    "this member's key was removed or overwritten: closing its endpoints and joining again"
                );
                self.fence_all("this member was declared dead").await;
                self.registration = None;
            }
            return;
        }
        match entry.operation {
            Operation::Put => self.liveness.observe(&name, entry.revision, Instant::now()),
            Operation::Delete | Operation::Purge => self.liveness.forget(&name),
        }
    }

    async fn on_lease(&mut self, entry: kv::Entry) {
        if entry.seen_current || entry.delta == 0 {
            self.leases_current = true;
        }
        let Some(endpoint) = unescape_key(&entry.key) else {
            return;
        };
        let owner = match entry.operation {
            Operation::Put => Some(
                serde_json::from_slice::<LeaseValue>(&entry.value)
                    // A value no member wrote: held by nobody alive, so it can be taken over.
                    .map_or_else(|_| String::from("\u{0}unreadable"), |v| v.owner),
            ),
            Operation::Delete | Operation::Purge => None,
        };
        {
            let mut owners = self
                .shared
                .owners
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match (&owner, EndpointName::new(&endpoint)) {
                (Some(owner), Ok(name)) => {
                    owners.insert(name, owner.clone());
                }
                (None, Ok(name)) => {
                    owners.remove(&name);
                }
                _ => {}
            }
        }
        match &owner {
            Some(owner) => {
                // An owner not seen in the members bucket yet (its key may come later than
                // its lease): a lease of grace from now, as for any member first seen.
                if owner != &self.shared.member {
                    self.liveness.observe_unknown(owner, Instant::now());
                }
                self.leases.insert(
                    endpoint.clone(),
                    Lease {
                        owner: owner.clone(),
                        revision: entry.revision,
                    },
                );
            }
            None => {
                self.leases.remove(&endpoint);
            }
        }
        let mine = owner.as_deref() == Some(self.shared.member.as_str());
        if !mine && self.shared.is_local(&endpoint) && !self.releasing.contains(&endpoint) {
            tracing::warn!(endpoint = %endpoint, owner = ?owner, "the lease of an endpoint this member runs changed: closing it");
            self.close_local(&endpoint, "lease lost").await;
        }
    }

    async fn step(&mut self) {
        self.prune_releasing();
        let now = Instant::now();
        let lease = self.shared.settings.lease;
        if self.registration.is_none() {
            self.rejoin().await;
        } else if now >= self.next_renewal {
            self.renew().await;
        }
        let silent = Instant::now().saturating_duration_since(self.last_renewed);
        if !self.fenced
            && silent > lease * 2 / 3
            && self.shared.settings.on_cluster_loss == OnClusterLoss::Stop
        {
            tracing::warn!(
                ?silent,
                "cannot renew this member's lease: closing its endpoints before another member may take them"
            );
            self.fence_all("cluster lost").await;
        }
        if self.fenced || !self.members_current || !self.leases_current || now < self.now_settled {
            return;
        }
        self.tidy_dead(now).await;
        self.rebalance(now).await;
    }

    async fn renew(&mut self) {
        let Some(registration) = self.registration.as_mut() else {
            return;
        };
        let timeout = self.shared.renew_every() / 2;
        let attempt = self.buckets.members.update(
            &registration.key,
            registration.value.clone(),
            registration.revision,
        );
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(revision)) => {
                registration.revision = revision;
                self.last_renewed = Instant::now();
                self.next_renewal = self.last_renewed + self.shared.renew_every();
                if self.fenced {
                    tracing::info!("renewing again: taking endpoints back");
                    self.fenced = false;
                    self.now_settled = Instant::now() + self.shared.renew_every();
                }
            }
            Ok(Err(error)) if error.kind() == UpdateErrorKind::WrongLastRevision => {
                tracing::warn!(
                    "this member's key changed under it: another member declared it dead"
                );
                self.fence_all("this member was declared dead").await;
                self.registration = None;
            }
            // NATS is slow or away: try again at the next tick.
            Ok(Err(error)) => tracing::debug!(%error, "renewal failed"),
            Err(_) => tracing::debug!("renewal timed out"),
        }
    }

    async fn rejoin(&mut self) {
        let value = MemberValue {
            member: self.shared.member.clone(),
            incarnation: self.shared.incarnation.clone(),
            config: self.shared.digest.clone(),
        };
        let key = escape_key(&self.shared.member);
        let value = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        let attempt = async {
            match self.buckets.members.create(&key, value.clone()).await {
                Ok(revision) => Some(revision),
                Err(_) => {
                    let entry = self.buckets.members.entry(&key).await.ok()??;
                    self.buckets
                        .members
                        .update(&key, value.clone(), entry.revision)
                        .await
                        .ok()
                }
            }
        };
        if let Ok(Some(revision)) = tokio::time::timeout(self.shared.renew_every(), attempt).await {
            self.registration = Some(Registration {
                key,
                value,
                revision,
            });
            self.last_renewed = Instant::now();
            self.next_renewal = self.last_renewed + self.shared.renew_every();
            self.fenced = false;
            self.now_settled = Instant::now() + self.shared.renew_every();
        }
    }

    /// Deletes the keys of members that stopped renewing (revision-checked: a member that
    /// renewed meanwhile keeps its key), after reading each once more directly: a watch that
    /// fell behind must not make a live member dead.
    async fn tidy_dead(&mut self, now: Instant) {
        let lease = self.shared.settings.lease;
        for (member, revision) in self.liveness.dead(&self.shared.member, now, lease) {
            let key = escape_key(&member);
            match self.buckets.members.entry(&key).await {
                Ok(Some(entry)) if entry.revision != revision => {
                    self.liveness.observe(&member, entry.revision, now);
                }
                Ok(Some(_)) => {
                    tracing::info!(member = %member, "member stopped renewing: taking over its endpoints");
                    let _ = self
                        .buckets
                        .members
                        .delete_expect_revision(&key, Some(revision))
                        .await;
                    self.liveness.forget(&member);
                }
                Ok(None) => self.liveness.forget(&member),
                Err(_) => {}
            }
        }
    }

    async fn rebalance(&mut self, now: Instant) {
        let lease = self.shared.settings.lease;
        let me = self.shared.member.clone();
        let live = self.liveness.live(&me, now, lease);
        *self
            .shared
            .members
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = live.iter().cloned().collect();
        let endpoints: Vec<String> = self
            .shared
            .config
            .endpoints
            .iter()
            .filter(|(_, e)| e.enabled)
            .map(|(name, _)| name.as_str().to_owned())
            .collect();
        // Leases that name this member but are not running here (taken before a fence, or by
        // an earlier process of this name): run them again.
        let orphans: Vec<String> = self
            .leases
            .iter()
            .filter(|(e, l)| {
                l.owner == me && !self.shared.is_local(e) && !self.releasing.contains(*e)
            })
            .map(|(e, _)| e.clone())
            .collect();
        for endpoint in orphans {
            self.open_local(&endpoint);
        }
        let plan = share::plan(&me, &endpoints, &self.leases, &live);
        if !plan.take.is_empty() || !plan.release.is_empty() {
            tracing::debug!(member = %me, live = live.len(), take = ?plan.take, release = ?plan.release, "rebalancing");
        }
        let value =
            Bytes::from(serde_json::to_vec(&LeaseValue { owner: me.clone() }).unwrap_or_default());
        for (endpoint, revision) in plan.take {
            let key = escape_key(&endpoint);
            let taken = match revision {
                None => self.buckets.leases.create(&key, value.clone()).await.ok(),
                Some(revision) => self
                    .buckets
                    .leases
                    .update(&key, value.clone(), revision)
                    .await
                    .ok(),
            };
            if let Some(revision) = taken {
                self.leases.insert(
                    endpoint.clone(),
                    Lease {
                        owner: me.clone(),
                        revision,
                    },
                );
                self.shared.counters.taken.fetch_add(1, Ordering::Relaxed);
                self.open_local(&endpoint);
            }
        }
        for endpoint in plan.release {
            self.release(endpoint);
        }
    }

    fn open_local(&mut self, endpoint: &str) {
        let (Ok(name), Some(config)) = (
            EndpointName::new(endpoint),
            self.shared.endpoint_config(endpoint).cloned(),
        ) else {
            return;
        };
        self.shared
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.clone(), SystemTime::now());
        if let Err(error) = self.shared.herd.add_configured(name.clone(), config) {
            tracing::warn!(endpoint, %error, "could not start a taken endpoint");
            self.shared
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&name);
            return;
        }
        crate::bridge::serve_sends(&self.shared, name);
        actix::spawn(crate::remembered::replay(
            Arc::clone(&self.shared),
            endpoint.to_owned(),
        ));
    }

    /// Closes `endpoint` here (its lease is not ours, or we are fenced) and hands what it
    /// still had queued to whoever owns it next.
    async fn close_local(&mut self, endpoint: &str, reason: &str) {
        let removed = self
            .shared
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(endpoint);
        if removed.is_none() {
            return;
        }
        crate::remembered::forget(&self.shared, endpoint);
        crate::bridge::stop_serving_sends(&self.shared, endpoint);
        let shared = Arc::clone(&self.shared);
        let endpoint = endpoint.to_owned();
        let reason = reason.to_owned();
        // Closing waits for the peer's answer: in the background, so renewals go on.
        actix::spawn(async move {
            let unsent = shared
                .herd
                .remove_endpoint(&endpoint, 1001u16, &reason)
                .await
                .unwrap_or_default();
            forward(shared, endpoint, unsent).await;
        });
    }

    /// Hands `endpoint` over: closes it, leaves what was queued for the next owner in
    /// `<prefix>_handover`, then deletes its lease (if it still names us).
    fn release(&mut self, endpoint: String) {
        let Some(lease) = self.leases.get(&endpoint).cloned() else {
            return;
        };
        self.releasing.insert(endpoint.clone());
        crate::remembered::forget(&self.shared, &endpoint);
        crate::bridge::stop_serving_sends(&self.shared, &endpoint);
        let shared = Arc::clone(&self.shared);
        let leases = self.buckets.leases.clone();
        actix::spawn(async move {
            let unsent = shared
                .herd
                .remove_endpoint(&endpoint, 1001u16, "handed over to another member")
                .await
                .unwrap_or_default();
            shared
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(endpoint.as_str());
            // Before the release: the next owner sends these before anything of its own.
            let left = crate::handover::leave(&shared, &endpoint, unsent).await;
            let released = leases
                .delete_expect_revision(escape_key(&endpoint), Some(lease.revision))
                .await
                .is_ok();
            if released {
                shared.counters.released.fetch_add(1, Ordering::Relaxed);
            }
            // Only what the bucket could not take, or took back: to the next owner by request.
            let unsent = left.after_release(&shared, released).await;
            forward(shared, endpoint, unsent).await;
        });
        // The watch shows the delete; until then the lease is still ours in `leases`, and
        // `releasing` keeps it from being run again.
    }

    /// Forgets hand-overs that are done: closed here, and the lease no longer ours.
    fn prune_releasing(&mut self) {
        let me = self.shared.member.as_str();
        let leases = &self.leases;
        let local = &self.shared;
        self.releasing
            .retain(|e| leases.get(e).is_some_and(|l| l.owner == me) || local.is_local(e));
    }

    async fn fence_all(&mut self, reason: &str) {
        let local = self.shared.local_names();
        if !local.is_empty() {
            self.shared.counters.fenced.fetch_add(1, Ordering::Relaxed);
        }
        self.fenced = true;
        for endpoint in local {
            self.close_local(endpoint.as_str(), reason).await;
        }
    }

    async fn leave(&mut self) {
        let local = self.shared.local_names();
        for name in local {
            let endpoint = name.as_str();
            crate::bridge::stop_serving_sends(&self.shared, endpoint);
            let unsent = self
                .shared
                .herd
                .remove_endpoint(endpoint, 1001u16, "member leaving")
                .await
                .unwrap_or_default();
            // Left for the next owner before the release, as in any hand-over; a member
            // leaving does not wait to forward what the bucket could not take.
            let left = crate::handover::leave(&self.shared, endpoint, unsent).await;
            self.shared
                .local
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(endpoint);
            let released = match self.leases.get(endpoint) {
                Some(lease) => self
                    .buckets
                    .leases
                    .delete_expect_revision(escape_key(endpoint), Some(lease.revision))
                    .await
                    .is_ok(),
                None => false,
            };
            let lost = left.after_release(&self.shared, released).await;
            if !lost.is_empty() {
                tracing::warn!(
                    endpoint,
                    lost = lost.len(),
                    "queued sends lost as the member left"
                );
            }
        }
        if let Some(registration) = &self.registration {
            let _ = self
                .buckets
                .members
                .delete_expect_revision(&registration.key, Some(registration.revision))
                .await;
        }
    }
}

/// A watch of every key of `store`, and whether it has shown everything already there: true
/// at once for an empty bucket (no entry will say so), else once the entry with nothing
/// after it arrives. A failed watch is tried again on the next turn.
async fn watch(store: &kv::Store) -> (Option<Watch>, bool) {
    let empty = matches!(store.stream.get_info().await, Ok(info) if info.state.messages == 0);
    // With history: the last value of every key first, then changes (`watch_all` gives only
    // changes).
    match store.watch_with_history(">").await {
        Ok(watch) => (Some(watch), empty),
        Err(error) => {
            tracing::debug!(%error, bucket = %store.name, "cannot watch the bucket yet");
            tokio::time::sleep(Duration::from_millis(100)).await;
            (None, false)
        }
    }
}

async fn next(watch: &mut Option<Watch>) -> Option<kv::Entry> {
    match watch {
        Some(watch) => match watch.next().await {
            Some(Ok(entry)) => Some(entry),
            _ => None,
        },
        None => std::future::pending().await,
    }
}

/// Sends `unsent` (oldest first) to `endpoint`'s next owner, retrying while nobody owns it,
/// for up to a lease and two seconds: what a takeover takes. What is still unsent then is
/// logged as lost.
async fn forward(shared: Arc<Shared>, endpoint: String, unsent: Vec<Outbound>) {
    if unsent.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + shared.settings.lease + Duration::from_secs(2);
    let total = unsent.len();
    let mut sent = 0;
    for message in unsent {
        loop {
            match crate::bridge::request_send(&shared, &endpoint, &message).await {
                Ok(_) => {
                    sent += 1;
                    break;
                }
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    tracing::warn!(endpoint = %endpoint, lost = total - sent, "queued messages could not be handed to the next owner");
                    return;
                }
            }
        }
    }
}
