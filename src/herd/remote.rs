//! Sends to endpoints another process runs: a cluster (`wsherd-cluster`) installs a
//! [`RemoteSender`], and [`Herd::send`] hands it what no local endpoint takes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};

use wsherd_protocol::Outbound;
use wsherd_supervisor::Submitted;

use super::Herd;
use crate::error::SendError;

/// The future a [`RemoteSender`] answers with.
pub type RemoteSend = Pin<Box<dyn Future<Output = Result<Submitted, SendError>> + Send>>;

/// Carries sends to endpoints this herd knows of but does not run.
pub trait RemoteSender: Send + Sync + 'static {
    /// Whether `name` is an endpoint it can reach (configured for the cluster).
    fn knows(&self, name: &str) -> bool;

    /// Sends `message` to `name` wherever it runs and answers with the owner's outcome.
    fn send(&self, name: &str, message: Outbound) -> RemoteSend;

    /// Keeps `message` for `name` (written after every open, by whoever runs it), and writes it
    /// on the open socket now.
    fn remember(&self, name: &str, message: Outbound) -> RemoteRemember;
}

/// The future of [`RemoteSender::remember`].
pub type RemoteRemember = Pin<Box<dyn Future<Output = Result<(), SendError>> + Send>>;

impl Herd {
    /// Sends to endpoints this herd does not run go to `remote` when it
    /// [knows](RemoteSender::knows) them; `None` forgets it.
    pub fn set_remote(&self, remote: Option<Arc<dyn RemoteSender>>) {
        *self
            .inner
            .remote
            .write()
            .unwrap_or_else(PoisonError::into_inner) = remote;
    }

    pub(super) fn remote_for(&self, name: &str) -> Option<Arc<dyn RemoteSender>> {
        self.inner
            .remote
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .filter(|remote| remote.knows(name))
            .cloned()
    }
}
