//! Queued sends handed over with an endpoint (`<prefix>_handover`, one key per endpoint):
//! a member that hands an endpoint over writes what it still had queued there *before* it
//! releases the lease, and the next owner sends it, oldest first, before it answers any send
//! request for the endpoint, so a send by request never overtakes them (one made on the new
//! owner's own herd as it takes the endpoint may).
//!
//! A list has one owner at a time: whoever deletes its key (revision-checked) has it. The
//! next owner deletes before it sends; a member whose release failed (the lease changed
//! under it) deletes to take its list back and forwards it instead. So a list is sent once,
//! and left behind for a later owner only when the next owner cannot claim it (NATS failing
//! its reads or deletes), which it logs.

use std::sync::Arc;

use async_nats::jetstream::kv::Operation;
use bytes::Bytes;
use wsherd::Outbound;

use crate::Shared;
use crate::remembered::{Kept, parse};
use crate::subject::escape_key;

/// Reads and deletes tried before a list is left where it is.
const CLAIM_TRIES: usize = 5;

/// What a member leaves for the next owner before it releases an endpoint.
pub(crate) enum Left {
    /// Nothing was queued.
    Nothing,
    /// Written to the bucket, to take back if the release fails.
    Written {
        key: String,
        revision: u64,
        list: Vec<Kept>,
    },
    /// The bucket did not take them (NATS away, or more than a value may hold).
    Kept(Vec<Outbound>),
}

impl Left {
    /// After the release (`released`: the lease delete went through): what the member still
    /// has to send on itself. Nothing when the bucket holds the list for the next owner, or
    /// when that owner claimed it already; else the messages.
    pub(crate) async fn after_release(self, shared: &Shared, released: bool) -> Vec<Outbound> {
        match self {
            Left::Nothing => Vec::new(),
            Left::Kept(unsent) => unsent,
            Left::Written { .. } if released => Vec::new(),
            // The lease changed under the member (taken): its new owner may never look.
            Left::Written {
                key,
                revision,
                list,
            } => match shared
                .handover
                .delete_expect_revision(&key, Some(revision))
                .await
            {
                Ok(()) => list.into_iter().map(Outbound::from).collect(),
                Err(_) => Vec::new(),
            },
        }
    }
}

/// Adds `unsent` to what waits for `endpoint`'s next owner.
pub(crate) async fn leave(shared: &Shared, endpoint: &str, unsent: Vec<Outbound>) -> Left {
    if unsent.is_empty() {
        return Left::Nothing;
    }
    let key = escape_key(endpoint);
    // Only the lease holder writes here, and only before releasing; an earlier list nobody
    // took yet (its release failed and it was not taken back) is kept in front.
    let (mut list, revision) = match shared.handover.entry(&key).await {
        Ok(Some(entry)) if entry.operation == Operation::Put => {
            (parse(&entry.value), Some(entry.revision))
        }
        Ok(Some(entry)) => (Vec::new(), Some(entry.revision)),
        Ok(None) => (Vec::new(), None),
        Err(_) => return Left::Kept(unsent),
    };
    list.extend(unsent.iter().map(Kept::from));
    let Ok(value) = serde_json::to_vec(&list) else {
        return Left::Kept(unsent);
    };
    let value = Bytes::from(value);
    let written = match revision {
        Some(revision) => shared.handover.update(&key, value, revision).await.ok(),
        None => shared.handover.create(&key, value).await.ok(),
    };
    match written {
        Some(revision) => Left::Written {
            key,
            revision,
            list,
        },
        None => Left::Kept(unsent),
    }
}

/// On taking `endpoint`: claims what its last owner handed over (by deleting it) and sends
/// it, oldest first (queued here if the endpoint is not live yet).
pub(crate) async fn take(shared: Arc<Shared>, endpoint: String) {
    let key = escape_key(&endpoint);
    let mut list = None;
    for _ in 0..CLAIM_TRIES {
        let entry = match shared.handover.entry(&key).await {
            Ok(Some(entry)) if entry.operation == Operation::Put => entry,
            Ok(_) => return,
            // Tried again: a read that fails must not leave the list for a later owner.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        if shared
            .handover
            .delete_expect_revision(&key, Some(entry.revision))
            .await
            .is_ok()
        {
            list = Some(parse(&entry.value));
            break;
        }
        // Changed since it was read (taken back, or written again), or NATS failed: once more.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let Some(list) = list else {
        tracing::warn!(
            endpoint,
            "a hand-over list could not be claimed; it stays in the bucket"
        );
        return;
    };
    let total = list.len();
    let mut lost = 0;
    for kept in list {
        // A herd send: if the endpoint left this member meanwhile, it goes to its next owner.
        if shared
            .herd
            .send(&endpoint, Outbound::from(kept))
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
            "handed-over sends that could not be sent on"
        );
    }
}
