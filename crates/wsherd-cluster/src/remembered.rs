//! Remembered messages (`Herd::remember` on a cluster endpoint) kept in the bucket
//! `<prefix>_remembered`, one key per endpoint, so that whoever runs the endpoint, now or after
//! a takeover, writes them after every open.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use wsherd::{Outbound, SendError};

use crate::Shared;
use crate::subject::{escape_key, unescape_key};

/// The most messages kept for one endpoint: a key's value stays well inside NATS's default
/// 1 MiB payload for messages of a few hundred bytes.
pub const MAX_REMEMBERED_PER_ENDPOINT: usize = 256;

/// One message as a bucket keeps it (remembered here, handed over in `handover`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Kept {
    Text(String),
    Binary(Vec<u8>),
}

impl From<&Outbound> for Kept {
    fn from(message: &Outbound) -> Self {
        match message {
            Outbound::Text(text) => Kept::Text(text.clone()),
            Outbound::Binary(bytes) => Kept::Binary(bytes.to_vec()),
        }
    }
}

impl From<Kept> for Outbound {
    fn from(kept: Kept) -> Self {
        match kept {
            Kept::Text(text) => Outbound::Text(text),
            Kept::Binary(bytes) => Outbound::Binary(Bytes::from(bytes)),
        }
    }
}

/// A bucket's list of messages.
pub(crate) fn parse(value: &[u8]) -> Vec<Kept> {
    // A value no member wrote is nothing to replay (and is replaced by the next remember).
    serde_json::from_slice(value).unwrap_or_default()
}

/// Adds `message` to `endpoint`'s list (revision-checked, retried when another member added
/// one at the same moment). Its owner writes it when its watch shows the change.
pub(crate) async fn remember(
    shared: &Arc<Shared>,
    endpoint: &str,
    message: &Outbound,
) -> Result<(), SendError> {
    let key = escape_key(endpoint);
    let failed = |error: String| SendError::Remote {
        name: endpoint.to_owned(),
        error,
    };
    for _ in 0..16 {
        let entry = shared
            .remembered
            .entry(&key)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (mut list, revision) = match entry {
            Some(entry) if entry.operation == Operation::Put => {
                (parse(&entry.value), Some(entry.revision))
            }
            Some(entry) => (Vec::new(), Some(entry.revision)),
            None => (Vec::new(), None),
        };
        if list.len() >= MAX_REMEMBERED_PER_ENDPOINT {
            return Err(failed(format!(
                "{MAX_REMEMBERED_PER_ENDPOINT} messages are remembered for it already"
            )));
        }
        list.push(Kept::from(message));
        let value = Bytes::from(serde_json::to_vec(&list).unwrap_or_default());
        let written = match revision {
            Some(revision) => shared
                .remembered
                .update(&key, value, revision)
                .await
                .is_ok(),
            None => shared.remembered.create(&key, value).await.is_ok(),
        };
        if written {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(failed(
        "the remembered list kept changing under this member".into(),
    ))
}

/// Writes what `list` holds beyond what this member applied for `endpoint` already. The
/// count is claimed before the first await: two callers never apply one message twice.
async fn apply(shared: &Arc<Shared>, endpoint: &str, list: Vec<Kept>) {
    let start = {
        let mut applied = shared
            .remembered_applied
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let start = applied.get(endpoint).copied().unwrap_or(0);
        if list.len() <= start || !shared.is_local(endpoint) {
            return;
        }
        applied.insert(endpoint.to_owned(), list.len());
        start
    };
    for kept in list.into_iter().skip(start) {
        if let Err(error) = shared
            .herd
            .remember_here(endpoint, Outbound::from(kept))
            .await
        {
            tracing::warn!(endpoint, %error, "a remembered message could not be kept");
        }
    }
}

/// On taking `endpoint`: writes everything remembered for it.
pub(crate) async fn replay(shared: Arc<Shared>, endpoint: String) {
    if let Ok(Some(entry)) = shared.remembered.entry(escape_key(&endpoint)).await
        && entry.operation == Operation::Put
    {
        apply(&shared, &endpoint, parse(&entry.value)).await;
    }
}

/// On closing `endpoint` here: the next time it is taken, everything is written again.
pub(crate) fn forget(shared: &Shared, endpoint: &str) {
    shared
        .remembered_applied
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(endpoint);
}

/// Applies additions to the lists of endpoints this member runs, as they are written.
pub(crate) async fn watch(shared: std::sync::Weak<Shared>, store: kv::Store) {
    loop {
        let Ok(mut changes) = store.watch_all().await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Some(change) = changes.next().await {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let Ok(change) = change else {
                break;
            };
            if change.operation != Operation::Put {
                continue;
            }
            if let Some(endpoint) = unescape_key(&change.key) {
                apply(&shared, &endpoint, parse(&change.value)).await;
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
    }
}
