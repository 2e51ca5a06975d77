//! The data-key cache of a [`Protected`](super::Protected): keys fetched lately, kept for
//! a while so that reads do not ask the key store for every event.

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

    pub(super) fn keep(&self, id: KeyId, key: &DataKey, subject: Option<&Subject>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.by_id.len() >= CACHE_CAPACITY || entries.by_subject.len() >= CACHE_CAPACITY {
            *entries = Entries::default();
        }
        let now = Instant::now();
        entries.by_id.insert(id, (key.clone(), now));
        if let Some(subject) = subject {
            entries
                .by_subject
                .insert(subject.clone(), (id, key.clone(), now));
        }
    }

    pub(super) fn clear(&self) {
        *self.entries() = Entries::default();
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
        cache.keep(id, &key, Some(&ada));
        assert_eq!(cache.by_id(id), Some(key.clone()));
        assert_eq!(cache.by_subject(&ada), Some((id, key.clone())));
        cache.clear();
        assert_eq!(cache.by_id(id), None);
        assert_eq!(cache.by_subject(&ada), None);

        let off = KeyCache::new(Duration::ZERO);
        off.keep(id, &key, Some(&ada));
        assert_eq!(off.by_id(id), None);

        let short = KeyCache::new(Duration::from_millis(1));
        short.keep(id, &key, None);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(short.by_id(id), None, "expired");
    }
}
