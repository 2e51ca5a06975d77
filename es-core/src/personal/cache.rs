//! The data-key cache of a [`Protected`](super::Protected): keys fetched lately, kept for
//! a while so that reads do not ask the key store for every event.
//!
//! Fetching a key awaits the key store, and a [`forget`](super::Protected::forget) may
//! run meanwhile: a key fetched before it and kept after it would keep a forgotten subject
//! readable here for the TTL. So the cache counts its clearings (an epoch): a fetch notes
//! the epoch before it awaits ([`KeyCache::epoch`]) and the key is kept only if no
//! clearing happened since ([`KeyCache::keep`]).
//!
//! It also holds what a [`Protected`](super::Protected) learned about event types
//! ([`TypeMemo`]): their personal fields, for readers and writers of raw events; which
//! replacements are known to decode; which types were read sealed without being declared.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::event::DomainEvent;

use super::field::PersonalField;
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
    /// `None`: the key store has no such key (its subject was forgotten). Kept too, so that
    /// reading a forgotten subject's events does not ask the key store once per event;
    /// forgetting is final, so an absent key never comes back.
    by_id: HashMap<KeyId, (Option<DataKey>, Instant)>,
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

    /// The key with this id if fetched lately: `Some(None)` if the key store had none.
    pub(super) fn by_id(&self, id: KeyId) -> Option<Option<DataKey>> {
        let entries = self.entries();
        entries
            .by_id
            .get(&id)
            .filter(|(_, at)| self.fresh(*at))
            .map(|(key, _)| key.clone())
    }

    /// Keeps that the key store has no key `id`, as [`KeyCache::keep`] keeps a key.
    pub(super) fn keep_absent(&self, epoch: u64, id: KeyId) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.epoch != epoch {
            return;
        }
        if entries.by_id.len() >= CACHE_CAPACITY {
            entries.by_id.clear();
            entries.by_subject.clear();
        }
        entries.by_id.insert(id, (None, Instant::now()));
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
        entries.by_id.insert(id, (Some(key.clone()), now));
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

/// What a [`Protected`](super::Protected) learned about event types. Every set only
/// grows, and each lock is held for one map operation (a poisoned one still holds a whole
/// map).
#[derive(Default)]
pub(super) struct TypeMemo {
    /// The personal fields of the event types seen, for readers of raw events.
    known: RwLock<HashMap<&'static str, &'static [PersonalField]>>,
    /// The event types (as read by a Rust type) whose replacements are known to decode.
    checked: RwLock<HashSet<(TypeId, String)>>,
    /// The event types read with sealed fields while none of their fields were declared.
    sealed_undeclared: RwLock<HashSet<String>>,
}

impl TypeMemo {
    /// Learns the personal fields of `E`'s event types.
    pub(super) fn learn<E: DomainEvent>(&self) {
        let unknown = {
            let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
            E::EVENT_TYPES.iter().any(|event_type| {
                !known.contains_key(event_type) && !E::personal_fields(event_type).is_empty()
            })
        };
        if unknown {
            let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
            for event_type in E::EVENT_TYPES {
                let fields = E::personal_fields(event_type);
                if !fields.is_empty() {
                    known.insert(event_type, fields);
                }
            }
        }
    }

    /// The personal fields learned for `event_type` (none if none were).
    pub(super) fn fields(&self, event_type: &str) -> &'static [PersonalField] {
        self.known
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_type)
            .copied()
            .unwrap_or(&[])
    }

    /// Whether `E`'s replacements for `event_type` are known to decode.
    pub(super) fn checked<E: DomainEvent>(&self, event_type: &str) -> bool {
        self.checked
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(TypeId::of::<E>(), event_type.to_owned()))
    }

    /// Notes that `E`'s replacements for `event_type` decode.
    pub(super) fn check<E: DomainEvent>(&self, event_type: &str) {
        self.checked
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((TypeId::of::<E>(), event_type.to_owned()));
    }

    /// Notes that an event of `event_type` was read with sealed fields; remembered if no
    /// fields of it were declared.
    pub(super) fn saw_sealed(&self, event_type: &str) {
        if self.fields(event_type).is_empty() && !self.seen_sealed(event_type) {
            self.sealed_undeclared
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(event_type.to_owned());
        }
    }

    /// Whether an event of `event_type` was read with sealed fields while none of its
    /// fields were declared.
    pub(super) fn seen_sealed(&self, event_type: &str) -> bool {
        self.sealed_undeclared
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(event_type)
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
        assert_eq!(cache.by_id(id), Some(Some(key.clone())));
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
        assert_eq!(cache.by_id(id), Some(Some(key)));
    }

    #[test]
    fn an_absent_key_is_kept_as_absent() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let id = KeyId::new();
        assert_eq!(cache.by_id(id), None, "not fetched yet");
        cache.keep_absent(cache.epoch(), id);
        assert_eq!(cache.by_id(id), Some(None), "known to be gone");
        let before = cache.epoch();
        cache.clear();
        cache.keep_absent(before, id);
        assert_eq!(cache.by_id(id), None, "not kept across a clearing");
    }
}
