//! The storage of delivered batches, kept for the next batch of the same type on the same thread.
//!
//! A full batch is one allocation of tens of kilobytes. With glibc, every allocation of 1 KiB or
//! more first consolidates the allocator's fast bins, which the subscriber has just filled by
//! dropping the batch's values: measured, that was a tenth of a batched feed's time. A batch
//! dropped on the thread that builds the next one (a subscriber on its endpoint's arbiter) hands
//! its emptied storage back instead, and the next batch reuses it.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;

use super::Delivery;

/// Emptied batches kept per delivered type and thread.
const KEPT_PER_TYPE: usize = 4;

thread_local! {
    /// Per `TypeId` of `T`: a `Vec<Vec<Delivery<T>>>` of emptied batch storage.
    static KEPT: RefCell<HashMap<TypeId, Box<dyn Any>>> = RefCell::new(HashMap::new());
}

/// Storage for a new batch: a kept one when this thread has one, else a new one with room for
/// `capacity` deliveries.
pub(super) fn take<T: 'static>(capacity: usize) -> Vec<Delivery<T>> {
    let kept = KEPT
        .try_with(|kept| {
            let mut kept = kept.try_borrow_mut().ok()?;
            kept.get_mut(&TypeId::of::<T>())?
                .downcast_mut::<Vec<Vec<Delivery<T>>>>()?
                .pop()
        })
        .ok()
        .flatten();
    kept.unwrap_or_else(|| Vec::with_capacity(capacity))
}

/// Keeps `storage` (emptied here) for the next batch of `T` on this thread, unless enough are
/// kept already.
pub(super) fn give_back<T: 'static>(mut storage: Vec<Delivery<T>>) {
    // Dropping the deliveries runs their values' destructors: before any borrow of the pool.
    storage.clear();
    if storage.capacity() == 0 {
        return;
    }
    let refused = KEPT
        .try_with(|kept| {
            let Ok(mut kept) = kept.try_borrow_mut() else {
                return Some(storage);
            };
            let entry = kept
                .entry(TypeId::of::<T>())
                .or_insert_with(|| Box::new(Vec::<Vec<Delivery<T>>>::new()));
            match entry.downcast_mut::<Vec<Vec<Delivery<T>>>>() {
                Some(list) if list.len() < KEPT_PER_TYPE => {
                    list.push(storage);
                    None
                }
                _ => Some(storage),
            }
        })
        .ok()
        .flatten();
    // Freed outside the borrow.
    drop(refused);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_comes_back_empty_on_the_same_thread_and_is_bounded() {
        let name = wsherd_protocol::EndpointName::new("ex").unwrap();
        let mut batch = take::<u64>(8);
        assert!(batch.capacity() >= 8);
        batch.push(Delivery {
            endpoint: name.clone(),
            message: crate::Shared::alone(1),
        });
        let pointer = batch.as_ptr();
        give_back(batch);
        let again = take::<u64>(8);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), pointer, "the same storage, reused");
        // Another type never gets it.
        assert!(take::<u32>(0).capacity() == 0);

        // No more than KEPT_PER_TYPE are kept.
        for _ in 0..KEPT_PER_TYPE + 3 {
            give_back(Vec::<Delivery<u64>>::with_capacity(4));
        }
        let kept = (0..KEPT_PER_TYPE + 3)
            .map(|_| take::<u64>(0))
            .filter(|v| v.capacity() > 0)
            .count();
        assert_eq!(kept, KEPT_PER_TYPE);
        drop(again);
    }

    #[test]
    fn storage_given_back_on_another_thread_stays_there() {
        let storage = take::<i64>(16);
        std::thread::spawn(move || give_back(storage))
            .join()
            .unwrap();
        assert_eq!(take::<i64>(0).capacity(), 0);
    }
}
