//! The data-key cache of a [`Protected`](super::Protected): keys fetched lately, kept for
//! a while so that reads do not ask the key store for every event.
//!
//! Fetching a key awaits the key store, and a [`forget`](super::Protected::forget) may
//! run meanwhile: a key fetched before it and kept after it would keep a forgotten subject
//! readable here for the TTL. So the cache counts its clearings (an epoch): a fetch notes
//! the epoch before it awaits ([`KeyCache::epoch`]) and the key is kept only if no
//! clearing happened since ([`KeyCache::keep`]).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::keys::{DataKey, KeyId, Subject};

/// The most keys the cache holds; past it, it starts over (keys are fetched again).
const CACHE_CAPACITY: usize = 10_000;

/// Data keys fetched lately, by id and by subject.
pub(super) struct KeyCache {
    /// How long a key is kept.
    pub(super) ttl: Duration,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    /// How many times the cache was cleared.
    epoch: u64,
    by_id: HashMap<KeyId, (DataKey, Instant)>,
    by_subject: HashMap<Subject, (KeyId, DataKey, Instant)>,
}

impl KeyCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        // Only map operations run under the lock: a poisoned one still holds whole maps.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// The number of clearings so far: note it before fetching a key, and hand it to
    /// [`KeyCache::keep`].
    pub(super) fn epoch(&self) -> u64 {
        self.entries().epoch
    }

    pub(super) fn by_id(&self, id: KeyId) -> Option<DataKey> {
        let entries = self.entries();
        entries
            .by_id
            .get(&id)
            .filter(|(_, at)| self.fresh(*at))
            .map(|(key, _)| key.clone())
    }

    pub(super) fn by_subject(&self, subject: &Subject) -> Option<(KeyId, DataKey)> {
        let entries = self.entries();
        entries
            .by_subject
            .get(subject)
            .filter(|(_, _, at)| self.fresh(*at))
            .map(|(id, key, _)| (*id, key.clone()))
    }

    /// Keeps a key fetched when the cache was at `epoch`, unless it was cleared since (a
    /// forget ran while the key was fetched: the key may be gone).
    pub(super) fn keep(&self, epoch: u64, id: KeyId, key: &DataKey, subject: Option<&Subject>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.epoch != epoch {
            return;
        }
        if entries.by_id.len() >= CACHE_CAPACITY || entries.by_subject.len() >= CACHE_CAPACITY {
            // Not a clearing: no forget ran, and fetches in flight may keep their keys.
            entries.by_id.clear();
            entries.by_subject.clear();
        }
        let now = Instant::now();
        entries.by_id.insert(id, (key.clone(), now));
        if let Some(subject) = subject {
            entries
                .by_subject
                .insert(subject.clone(), (id, key.clone(), now));
        }
    }

    /// Drops every key, and makes the keys being fetched meanwhile not kept.
    pub(super) fn clear(&self) {
        let mut entries = self.entries();
        let epoch = entries.epoch.wrapping_add(1);
        *entries = Entries {
            epoch,
            ..Entries::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_kept_for_the_ttl_and_cleared_at_once() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let (id, key, ada) = (
            KeyId::new(),
            DataKey::generate(),
            Subject::new("ada").unwrap(),
        );
        cache.keep(cache.epoch(), id, &key, Some(&ada));
        assert_eq!(cache.by_id(id), Some(key.clone()));
        assert_eq!(cache.by_subject(&ada), Some((id, key.clone())));
        cache.clear();
        assert_eq!(cache.by_id(id), None);
        assert_eq!(cache.by_subject(&ada), None);

        let off = KeyCache::new(Duration::ZERO);
        off.keep(off.epoch(), id, &key, Some(&ada));
        assert_eq!(off.by_id(id), None);

        let short = KeyCache::new(Duration::from_millis(1));
        short.keep(short.epoch(), id, &key, None);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.by_id(id), None, "expired");
    }

    #[test]
    fn a_key_fetched_across_a_clearing_is_not_kept() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let (id, key, ada) = (
            KeyId::new(),
            DataKey::generate(),
            Subject::new("ada").unwrap(),
        );
        let before = cache.epoch();
        cache.clear();
        cache.keep(before, id, &key, Some(&ada));
        assert_eq!(cache.by_id(id), None);
        assert_eq!(cache.by_subject(&ada), None);
        cache.keep(cache.epoch(), id, &key, Some(&ada));
        assert_eq!(cache.by_id(id), Some(key));
    }
}
