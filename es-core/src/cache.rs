//! A bounded cache of folded states, so that a command need not replay its stream
//! (aggregate states by stream) and a decision need not read its query again (decision
//! states by query).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// States by key (each with whatever says how far it was folded, in `V`), evicted oldest
/// first.
///
/// A state is *taken* out while a command uses it and *put* back afterwards, so it never
/// needs cloning, and two commands on one key never share a state: the second simply
/// misses and reads from the store.
pub(crate) struct StateCache<K, V> {
    inner: Mutex<Entries<K, V>>,
    capacity: usize,
}

struct Entries<K, V> {
    states: HashMap<K, (V, u64)>,
    /// Insertion order as (key, generation); entries whose generation no longer matches
    /// were taken or replaced and are skipped.
    order: VecDeque<(K, u64)>,
    generation: u64,
}

impl<K: Eq + Hash + Clone, V> StateCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Entries {
                states: HashMap::new(),
                order: VecDeque::new(),
                generation: 0,
            }),
            capacity,
        }
    }

    // The lock guards plain bookkeeping; a panic while holding it (in a hash or a clone of
    // a key) leaves the maps usable, so recover them.
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the cached state of `key`, if any.
    pub(crate) fn take(&self, key: &K) -> Option<V> {
        let (state, _) = self.lock().states.remove(key)?;
        Some(state)
    }

    /// Puts the state of `key` back, evicting the oldest entries beyond the capacity.
    pub(crate) fn put(&self, key: &K, state: V) {
        if self.capacity == 0 {
            return;
        }
        let mut evicted = Vec::new();
        {
            let mut entries = self.lock();
            entries.generation += 1;
            let generation = entries.generation;
            // A state replaced (two decisions on one key, both putting back) is dropped
            // outside the lock too.
            evicted.extend(entries.states.insert(key.clone(), (state, generation)));
            entries.order.push_back((key.clone(), generation));
            while entries.states.len() > self.capacity {
                let Some((oldest, generation)) = entries.order.pop_front() else {
                    break;
                };
                if entries
                    .states
                    .get(&oldest)
                    .is_some_and(|e| e.1 == generation)
                {
                    evicted.extend(entries.states.remove(&oldest));
                }
            }
            // Hot streams are put back often; drop their stale order entries now and then
            // so the queue stays proportional to the cache. Saturating: an "unbounded"
            // cache (`usize::MAX`) must not overflow here, after the command committed.
            if entries.order.len() > self.capacity.saturating_mul(2).saturating_add(64) {
                let Entries { states, order, .. } = &mut *entries;
                order.retain(|(key, generation)| {
                    states.get(key).is_some_and(|e| e.1 == *generation)
                });
            }
        }
        // Dropped outside the lock: a state's `Drop` is user code.
        drop(evicted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{StreamId, Version};

    fn stream(n: u32) -> StreamId {
        StreamId::new("t", &n.to_string()).unwrap()
    }

    #[test]
    fn takes_what_was_put() {
        let cache = StateCache::new(2);
        cache.put(&stream(1), ("one", Version::new(1)));
        assert_eq!(cache.take(&stream(1)), Some(("one", Version::new(1))));
        assert_eq!(cache.take(&stream(1)), None, "taking removes");
    }

    #[test]
    fn evicts_oldest_beyond_capacity() {
        let cache = StateCache::new(2);
        cache.put(&stream(1), (1, Version::new(1)));
        cache.put(&stream(2), (2, Version::new(1)));
        cache.put(&stream(3), (3, Version::new(1)));
        assert_eq!(cache.take(&stream(1)), None);
        assert!(cache.take(&stream(2)).is_some());
        assert!(cache.take(&stream(3)).is_some());
    }

    #[test]
    fn a_state_put_back_is_young_again() {
        let cache = StateCache::new(2);
        cache.put(&stream(1), (1, Version::new(1)));
        cache.put(&stream(2), (2, Version::new(1)));
        let (state, version) = cache.take(&stream(1)).unwrap();
        cache.put(&stream(1), (state, version.next()));
        cache.put(&stream(3), (3, Version::new(1)));
        assert_eq!(cache.take(&stream(2)), None, "stream 2 is now the oldest");
        assert_eq!(cache.take(&stream(1)), Some((1, Version::new(2))));
    }

    #[test]
    fn stale_order_entries_stay_bounded() {
        let cache = StateCache::new(4);
        for n in 0..10_000 {
            cache.put(&stream(1), (n, Version::new(n)));
            let _ = cache.take(&stream(1));
        }
        assert!(cache.lock().order.len() <= 2 * 4 + 64);
    }

    #[test]
    fn unbounded_capacity_does_not_overflow() {
        let cache = StateCache::new(usize::MAX);
        cache.put(&stream(1), (1, Version::new(1)));
        assert_eq!(cache.take(&stream(1)), Some((1, Version::new(1))));
    }

    #[test]
    fn zero_capacity_keeps_nothing() {
        let cache = StateCache::new(0);
        cache.put(&stream(1), (1, Version::new(1)));
        assert_eq!(cache.take(&stream(1)), None);
    }
}
