//! The buckets a cluster keeps in JetStream key-value, and what their values hold.
//!
//! - `<prefix>_members`: one key per member, renewed every third of a lease (its liveness);
//! - `<prefix>_leases`: one key per endpoint, naming the member that runs it;
//! - `<prefix>_config`: the digest of the config the members share (never expires);
//! - `<prefix>_remembered`: what `Herd::remember` kept for each endpoint;
//! - `<prefix>_handover`: sends queued at an endpoint's last owner, for its next one.
//!
//! None of them has a `max_age`: nothing expires on its own (NATS 2.9 would not say when it
//! did), and every removal is a revision-checked delete by a member.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::error::ClusterError;
use crate::subject::Subjects;

/// A member's key: who it is and what it runs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MemberValue {
    /// The member's name.
    pub member: String,
    /// This process's run of that member (a restarted member with the same name has a new
    /// one).
    pub incarnation: String,
    /// [`HerdConfig::shared_digest`](wsherd::HerdConfig::shared_digest), in hex.
    pub config: String,
}

/// An endpoint's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseValue {
    /// The member that runs the endpoint.
    pub owner: String,
}

/// The buckets, opened.
#[derive(Clone)]
pub(crate) struct Buckets {
    pub(crate) members: kv::Store,
    pub(crate) leases: kv::Store,
    pub(crate) config: kv::Store,
    pub(crate) remembered: kv::Store,
    pub(crate) handover: kv::Store,
}

/// Key of the shared config digest in the config bucket.
pub(crate) const DIGEST_KEY: &str = "digest";

impl Buckets {
    /// Opens the buckets, creating those that do not exist yet.
    pub(crate) async fn open(
        jetstream: &jetstream::Context,
        subjects: &Subjects,
        timeout: Duration,
    ) -> Result<Buckets, ClusterError> {
        Ok(Buckets {
            members: open_bucket(jetstream, subjects.bucket("members"), timeout).await?,
            leases: open_bucket(jetstream, subjects.bucket("leases"), timeout).await?,
            config: open_bucket(jetstream, subjects.bucket("config"), timeout).await?,
            remembered: open_bucket(jetstream, subjects.bucket("remembered"), timeout).await?,
            handover: open_bucket(jetstream, subjects.bucket("handover"), timeout).await?,
        })
    }
}

async fn open_bucket(
    jetstream: &jetstream::Context,
    name: String,
    timeout: Duration,
) -> Result<kv::Store, ClusterError> {
    let fail = |what: String| ClusterError::Bucket {
        bucket: name.clone(),
        error: what,
    };
    match tokio::time::timeout(timeout, jetstream.get_key_value(name.clone())).await {
        Ok(Ok(store)) => return Ok(store),
        Ok(Err(_)) => {}
        Err(_) => {
            return Err(fail(
                "JetStream did not answer in time (is it enabled: nats-server -js?)".into(),
            ));
        }
    }
    // The bucket's stream, made as the key-value convention has it. Not through
    // `create_key_value`: it reads the account's info first, whose 2.9 form this client
    // cannot parse.
    let config = jetstream::stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        discard: jetstream::stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        storage: jetstream::stream::StorageType::File,
        num_replicas: 1,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    match tokio::time::timeout(timeout, jetstream.create_stream(config)).await {
        Ok(Ok(_)) | Ok(Err(_)) => match jetstream.get_key_value(name.clone()).await {
            Ok(store) => Ok(store),
            Err(error) => Err(fail(error.to_string())),
        },
        Err(_) => Err(fail("JetStream did not answer in time".into())),
    }
}
