//! One herd config served by several processes over NATS.
//!
//! Every member loads the same config (with a `[cluster]` table) and calls
//! [`Cluster::join`]. Each endpoint is then connected by at most one live member at a time,
//! under a revision-checked lease in a JetStream key-value bucket; a member takes at most its
//! fair share, hands its extras over when another joins, and takes over the endpoints of a
//! member that stopped renewing. Every message an endpoint receives is published on
//! `<prefix>.msg.<endpoint>.<kind>` (the upstream text byte for byte), and every member's
//! [`Herd`] delivers the whole cluster's messages to its subscribers (taking other members'
//! off NATS only while it has some); [`Herd::send`] to an
//! endpoint another member runs goes there by NATS request.
//!
//! The subjects, the escaping rule, the lease protocol and what is guaranteed:
#![doc = include_str!("../docs/cluster.md")]

mod bridge;
mod error;
mod handover;
mod member;
mod membership;
mod remembered;
pub mod share;
mod store;
pub mod subject;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_nats::ConnectOptions;
use wsherd::config::{ClusterSettings, EndpointConfig, HerdConfig, NatsAuth};
use wsherd::{EndpointName, Herd};

/// The NATS client crate this one speaks through ([`Cluster::client`] is one of its clients),
/// so that callers need not match its version themselves.
pub use async_nats;
pub use bridge::HEADER_BINARY;
pub use error::ClusterError;
pub use remembered::MAX_REMEMBERED_PER_ENDPOINT;
pub use subject::Subjects;
pub use wsherd::Ownership;

/// The header naming the endpoint a published message came from.
pub const HEADER_ENDPOINT: &str = "Wsherd-Endpoint";
/// The header naming the message's kind.
pub const HEADER_KIND: &str = "Wsherd-Kind";
/// The header naming the member that published it.
pub const HEADER_MEMBER: &str = "Wsherd-Member";

/// Counters of one member's traffic over NATS.
#[derive(Debug, Default)]
pub struct ClusterCounters {
    /// Messages of local endpoints published.
    pub published: AtomicU64,
    /// Messages of local endpoints not published: the publisher's queue for the NATS client
    /// was full (NATS slower than the endpoints, or away), or the client refused them. Those
    /// the publisher's own mailbox had no room for are counted in the endpoint's
    /// `dropped_full`, as for any subscriber that drops.
    pub publish_dropped: AtomicU64,
    /// Messages of other members' endpoints routed to this herd's subscribers.
    pub remote_routed: AtomicU64,
    /// Messages NATS dropped for this member's subscriptions (it said "slow consumer").
    pub slow_consumer: AtomicU64,
    /// Sends answered for other members.
    pub sends_served: AtomicU64,
    /// Endpoints this member took.
    pub taken: AtomicU64,
    /// Endpoints this member handed over.
    pub released: AtomicU64,
    /// Times this member closed every endpoint because it could not renew (fencing).
    pub fenced: AtomicU64,
}

/// What the members share between their tasks.
pub(crate) struct Shared {
    pub(crate) herd: Herd,
    pub(crate) config: HerdConfig,
    pub(crate) settings: ClusterSettings,
    pub(crate) member: String,
    pub(crate) incarnation: String,
    pub(crate) digest: String,
    pub(crate) client: async_nats::Client,
    pub(crate) subjects: Subjects,
    /// Endpoints this member runs, with when it took each: a message routed before that is
    /// another member's (see the publisher).
    pub(crate) local: Mutex<BTreeMap<EndpointName, SystemTime>>,
    /// Every endpoint's lease owner, as last seen.
    pub(crate) owners: Mutex<BTreeMap<EndpointName, String>>,
    /// The members seen alive at the last rebalance, this one among them.
    pub(crate) members: Mutex<Vec<String>>,
    pub(crate) counters: Arc<ClusterCounters>,
    /// `<prefix>_remembered`: what `Herd::remember` kept for each endpoint.
    pub(crate) remembered: async_nats::jetstream::kv::Store,
    /// `<prefix>_handover`: queued sends of endpoints handed over, for their next owners.
    pub(crate) handover: async_nats::jetstream::kv::Store,
    /// How many of each local endpoint's remembered messages were written here.
    pub(crate) remembered_applied: Mutex<std::collections::HashMap<String, usize>>,
    /// The tasks answering send requests, one per endpoint this member runs.
    pub(crate) send_tasks: Mutex<std::collections::HashMap<String, tokio::task::JoinHandle<()>>>,
    /// The publisher's subscriptions to the herd, undone by [`Cluster::leave`].
    pub(crate) own_subscriptions: Mutex<Vec<wsherd::SubscriptionId>>,
    /// Set by [`Cluster::leave`]: the controller releases everything and stops.
    pub(crate) leaving: AtomicBool,
    pub(crate) left: tokio::sync::Notify,
}

impl Shared {
    pub(crate) fn is_local(&self, endpoint: &str) -> bool {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(endpoint)
    }

    pub(crate) fn local_since(&self, endpoint: &str) -> Option<SystemTime> {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(endpoint)
            .copied()
    }

    /// Whether the last-seen lease of `endpoint` names a member.
    pub(crate) fn has_owner(&self, endpoint: &str) -> bool {
        self.owners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(endpoint)
    }

    /// The endpoints this member runs now.
    pub(crate) fn local_names(&self) -> Vec<EndpointName> {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect()
    }

    /// Every enabled endpoint of the config with its owner, as last seen.
    pub(crate) fn ownership(&self) -> Vec<Ownership> {
        // Both held at once; no other code holds either while it takes the other.
        let owners = self.owners.lock().unwrap_or_else(PoisonError::into_inner);
        let local = self.local.lock().unwrap_or_else(PoisonError::into_inner);
        self.config
            .endpoints
            .iter()
            .filter(|(_, endpoint)| endpoint.enabled)
            .map(|(name, _)| Ownership {
                endpoint: name.clone(),
                owner: owners.get(name).cloned(),
                local: local.contains_key(name),
            })
            .collect()
    }

    pub(crate) fn endpoint_config(&self, endpoint: &str) -> Option<&EndpointConfig> {
        self.config.endpoints.get(endpoint)
    }

    pub(crate) fn renew_every(&self) -> Duration {
        self.settings.lease / 3
    }
}

/// A member of a cluster: its herd, connected to its share of the endpoints.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

impl Cluster {
    /// Joins the cluster `config`'s `[cluster]` table names, with the endpoints of `config`.
    ///
    /// Call it inside a running actix system. It connects to NATS, checks that live members
    /// run the same config, registers this member and starts its herd with no endpoint; the
    /// member takes its share a third of a lease later (time to see the other members), so
    /// subscriptions made on [`Cluster::herd`] right after this returns miss nothing of its
    /// own endpoints (other members' messages reach them within 50 ms of subscribing: see
    /// the crate docs).
    /// Inbound endpoints and the gateway stay local to each process.
    pub async fn join(config: HerdConfig) -> Result<Cluster, ClusterError> {
        // Joining holds a config and several NATS requests at once (18 KB of future): boxed,
        // so that a caller's own future stays small.
        Box::pin(Self::join_boxed(config)).await
    }

    async fn join_boxed(config: HerdConfig) -> Result<Cluster, ClusterError> {
        let settings = config.cluster.clone().ok_or(ClusterError::NotConfigured)?;
        let member = settings.member.clone().unwrap_or_else(default_member_name);
        let counters = Arc::new(ClusterCounters::default());
        let client = connect(&settings, &member, Arc::clone(&counters)).await?;
        let subjects = Subjects::new(&settings.subject_prefix);
        let jetstream = async_nats::jetstream::new(client.clone());
        let timeout = settings.lease.max(Duration::from_secs(2));
        let buckets = store::Buckets::open(&jetstream, &subjects, timeout).await?;
        let digest = format!("{:016x}", config.shared_digest());
        let incarnation = async_nats::Client::new_inbox(&client)
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        member::check_config(&buckets, &digest, &member, settings.lease).await?;
        let registration =
            member::register(&buckets, &member, &incarnation, &digest, settings.lease).await?;
        let herd = Herd::from_config(HerdConfig {
            endpoints: BTreeMap::new(),
            cluster: None,
            ..config.clone()
        })?;
        herd.start();
        let shared = Arc::new(Shared {
            herd,
            config,
            settings,
            member: member.clone(),
            incarnation,
            digest,
            client,
            subjects,
            local: Mutex::new(BTreeMap::new()),
            owners: Mutex::new(BTreeMap::new()),
            // Until the first rebalance has seen the others.
            members: Mutex::new(vec![member.clone()]),
            counters,
            send_tasks: Mutex::new(std::collections::HashMap::new()),
            remembered: buckets.remembered.clone(),
            handover: buckets.handover.clone(),
            remembered_applied: Mutex::new(std::collections::HashMap::new()),
            own_subscriptions: Mutex::new(Vec::new()),
            leaving: AtomicBool::new(false),
            left: tokio::sync::Notify::new(),
        });
        bridge::start(&shared).await?;
        shared
            .herd
            .set_membership(Some(Arc::new(membership::Seen(Arc::downgrade(&shared)))));
        actix::spawn(remembered::watch(
            Arc::downgrade(&shared),
            shared.remembered.clone(),
        ));
        member::start(Arc::clone(&shared), buckets, registration);
        Ok(Cluster { shared })
    }

    /// This member's herd: subscribe to it (deliveries of every endpoint in the cluster),
    /// send through it (to any endpoint in the cluster), read its status (this member's
    /// endpoints).
    pub fn herd(&self) -> &Herd {
        &self.shared.herd
    }

    /// This member's name.
    pub fn member(&self) -> &str {
        &self.shared.member
    }

    /// The NATS client this member speaks through.
    pub fn client(&self) -> &async_nats::Client {
        &self.shared.client
    }

    /// The subjects of this cluster (its `subject_prefix`).
    pub fn subjects(&self) -> &Subjects {
        &self.shared.subjects
    }

    /// This member's counters.
    pub fn counters(&self) -> &ClusterCounters {
        &self.shared.counters
    }

    /// The endpoints this member runs now.
    pub fn local_endpoints(&self) -> Vec<EndpointName> {
        self.shared.local_names()
    }

    /// Every endpoint of the config with its owner, as this member last saw the leases.
    pub fn ownership(&self) -> Vec<Ownership> {
        self.shared.ownership()
    }

    /// Asks every member for its endpoints' status (`<prefix>.status`) and gathers the
    /// answers that come within `wait`: one JSON object per member,
    /// `{"member":…,"endpoints":[…],"counters":{…}}`.
    pub async fn cluster_status(&self, wait: Duration) -> Vec<serde_json::Value> {
        bridge::gather_status(&self.shared, wait).await
    }

    /// Hands every endpoint over (close, then release the lease), removes this member's key
    /// and stops taking: what a process does before it exits, so that the others take its
    /// endpoints at once instead of after a lease.
    pub async fn leave(&self) {
        // Made before the flag is set: it hears the controller's notice however soon that comes.
        let left = self.shared.left.notified();
        self.shared.leaving.store(true, Ordering::SeqCst);
        // The controller may have stopped already (it never runs twice).
        let _ = tokio::time::timeout(self.shared.settings.lease * 2, left).await;
        // No longer a member: nothing more published, sent or shown as the cluster's (the
        // feed of other members' messages sees `leaving` and ends too).
        let own = std::mem::take(
            &mut *self
                .shared
                .own_subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for id in own {
            self.shared.herd.unsubscribe(id);
        }
        self.shared.herd.set_membership(None);
        self.shared.herd.set_remote(None);
    }
}

/// `<host name>-<process id>`: unique on one machine, readable in status.
pub fn default_member_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && wsherd::config::check_member_name(h).is_ok())
        .unwrap_or_else(|| "host".to_owned());
    format!("{host}-{}", std::process::id())
}

async fn connect(
    settings: &ClusterSettings,
    member: &str,
    counters: Arc<ClusterCounters>,
) -> Result<async_nats::Client, ClusterError> {
    let servers = settings
        .nats
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let fail = |error: String| ClusterError::Connect {
        servers: servers.clone(),
        error,
    };
    let mut options = ConnectOptions::new()
        .name(format!("wsherd {member}"))
        .connection_timeout(settings.lease.max(Duration::from_secs(1)))
        // Reconnect for as long as the process runs: a NATS restart is an outage, not an end.
        .max_reconnects(None)
        .retry_on_initial_connect();
    options = match &settings.auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(token.expose().to_owned()),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), password.expose().to_owned())
        }
        NatsAuth::Credentials(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| fail(format!("credentials {}: {e}", path.display())))?,
    };
    if let Some(tls) = &settings.tls {
        options = options.require_tls(true);
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    options = options.event_callback(move |event| {
        let counters = Arc::clone(&counters);
        async move {
            match event {
                async_nats::Event::SlowConsumer(_) => {
                    counters.slow_consumer.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("NATS dropped messages for a slow subscription of this member");
                }
                async_nats::Event::Disconnected => tracing::warn!("NATS connection lost"),
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                other => tracing::debug!(event = %other, "NATS"),
            }
        }
    });
    let addrs: Vec<async_nats::ServerAddr> = settings
        .nats
        .iter()
        .filter_map(|url| url.expose().parse().ok())
        .collect();
    if addrs.is_empty() {
        return Err(fail("no address could be parsed".into()));
    }
    // `retry_on_initial_connect` makes `connect` return at once; the first request says
    // whether a server is there, within the connection timeout.
    let client = options
        .connect(addrs)
        .await
        .map_err(|e| fail(redact(&e.to_string(), settings)))?;
    let deadline = settings.lease.max(Duration::from_secs(2)) * 2;
    let started = tokio::time::Instant::now();
    while client.connection_state() != async_nats::connection::State::Connected {
        if started.elapsed() > deadline {
            return Err(fail(format!("no server answered within {deadline:?}")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(client)
}

/// `text` with every configured server's credentials replaced by the redacted address.
fn redact(text: &str, settings: &ClusterSettings) -> String {
    let mut text = text.to_owned();
    for url in &settings.nats {
        text = text.replace(url.expose(), &url.to_string());
    }
    text
}
