//! Queued sends handed over with an endpoint (`<prefix>_handover`, one key per endpoint):
//! a member that hands an endpoint over writes what it still had queued there *before* it
//! releases the lease, and the next owner sends it, oldest first, before it answers any send
//! request of its own, so a send made through the new owner never overtakes them.

use std::sync::Arc;

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use wsherd::Outbound;

use crate::Shared;
use crate::remembered::{Kept, parse};
use crate::subject::escape_key;

/// Adds `unsent` to what waits for `endpoint`'s next owner. `Err` hands the messages back
/// (NATS away, or more than a value may hold): the caller forwards them after the release.
pub(crate) async fn leave(
    shared: &Shared,
    endpoint: &str,
    unsent: Vec<Outbound>,
) -> Result<(), Vec<Outbound>> {
    if unsent.is_empty() {
        return Ok(());
    }
    let key = escape_key(endpoint);
    // Only the lease holder writes here, and only before releasing: one writer at a time,
    // but an earlier hand-over nobody took yet is kept in front.
    let (mut list, revision) = match shared.handover.entry(&key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => {
            (parse(&entry.value), Some(entry.revision))
        }
        Ok(Some(entry)) => (Vec::new(), Some(entry.revision)),
        Ok(None) => (Vec::new(), None),
        Err(_) => return Err(unsent),
    };
    list.extend(unsent.iter().map(Kept::from));
    let Ok(value) = serde_json::to_vec(&list) else {
        return Err(unsent);
    };
    let value = Bytes::from(value);
    let written = match revision {
        Some(revision) => shared.handover.update(&key, value, revision).await.is_ok(),
        None => shared.handover.create(&key, value).await.is_ok(),
    };
    if written { Ok(()) } else { Err(unsent) }
}

/// On taking `endpoint`: sends what its last owner handed over (queued here if it is not
/// live yet), then removes the list.
pub(crate) async fn take(shared: &Arc<Shared>, endpoint: &str) {
    let key = escape_key(endpoint);
    let Ok(Some(entry)) = shared.handover.entry(&key).await else {
        return;
    };
    if entry.operation != Operation::Put {
        return;
    }
    let list = parse(&entry.value);
    let total = list.len();
    let mut lost = 0;
    for kept in list {
        if shared
            .herd
            .send(endpoint, Outbound::from(kept))
            .await
            .is_err()
        {
            lost += 1;
        }
    }
    if lost > 0 {
        tracing::warn!(
            endpoint,
            lost,
            total,
            "handed-over sends this member could not queue"
        );
    }
    let _ = shared
        .handover
        .delete_expect_revision(&key, Some(entry.revision))
        .await;
}
