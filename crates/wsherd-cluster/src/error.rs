//! What can stop a member from joining its cluster.

/// Why [`Cluster::join`](crate::Cluster::join) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The config has no `[cluster]` table.
    #[error("the config has no [cluster] table: nothing says which NATS to share endpoints over")]
    NotConfigured,
    /// No NATS server of `cluster.nats` could be reached (addresses shown without credentials).
    #[error("cannot connect to NATS at {servers}: {error}")]
    Connect {
        /// The addresses tried, credentials hidden.
        servers: String,
        /// What the client said.
        error: String,
    },
    /// A bucket could not be opened or created.
    #[error("JetStream key-value bucket {bucket}: {error}")]
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// What went wrong.
        error: String,
    },
    /// A live member runs a different config: the two would not agree on the endpoints.
    #[error(
        "member {member} runs a config with digest {theirs}, this one has {ours}: members of one cluster must load the same endpoints (same names and settings; secrets are not compared); stop it or use another subject_prefix"
    )]
    ConfigMismatch {
        /// A live member with the other config.
        member: String,
        /// Its digest.
        theirs: String,
        /// This config's.
        ours: String,
    },
    /// Another live process uses this member name.
    #[error(
        "member name {0:?} is in use by a live process: give each process its own cluster.member"
    )]
    MemberInUse(String),
    /// The herd could not be built from the config.
    #[error(transparent)]
    Herd(#[from] wsherd::HerdError),
    /// A NATS request failed while joining.
    #[error("NATS: {0}")]
    Nats(String),
}
