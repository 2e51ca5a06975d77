//! [`MemoryKeyStore`]: subjects' keys in process memory, for tests and for the in-memory
//! event store.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;

use super::keys::{DataKey, Forgetting, KeyEncryption, KeyError, KeyId, KeyStore, Subject};
use super::local::LocalKeyEncryption;

/// A [`KeyStore`] in process memory: keys are kept wrapped by `W`, as a database would
/// keep them, and are gone with the process. Clones share the keys.
///
/// ```
/// use es_core::personal::{KeyStore, MemoryKeyStore, Subject};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let keys = MemoryKeyStore::new();
/// let ada = Subject::new("customer-1")?;
/// let (id, key) = keys.key_for(&ada).await?.expect("not forgotten");
/// assert_eq!(keys.key(id).await?, Some(key));
///
/// let first = keys.forget(&ada, "ticket 7").await?;
/// assert_eq!(keys.key(id).await?, None);
/// assert_eq!(keys.key_for(&ada).await?, None, "forgetting is final");
/// assert_eq!(keys.forget(&ada, "again").await?, first, "and idempotent");
/// # Ok::<(), es_core::personal::KeyError>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct MemoryKeyStore<W: KeyEncryption = LocalKeyEncryption> {
    master: Arc<W>,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// Each live subject's key id.
    subjects: HashMap<Subject, KeyId>,
    /// The wrapped keys, by id.
    keys: HashMap<KeyId, Vec<u8>>,
    /// The forgotten subjects.
    forgotten: HashMap<Subject, Forgetting>,
    /// The ids of the keys destroyed: a key gone because its subject was forgotten, told
    /// from one this store never had.
    forgotten_keys: HashSet<KeyId>,
}

impl MemoryKeyStore {
    /// A store whose keys are wrapped by a fresh random master key.
    pub fn new() -> Self {
        let secret = LocalKeyEncryption::generate_secret();
        // A secret just generated is always 32 bytes of base64; fall back to a random key
        // made otherwise rather than panic.
        let master = LocalKeyEncryption::from_base64(&secret)
            .unwrap_or_else(|_| LocalKeyEncryption::from_bytes(*DataKey::generate().expose()));
        Self::with_master_key(master)
    }
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: KeyEncryption> MemoryKeyStore<W> {
    /// A store whose keys are wrapped by `master`.
    pub fn with_master_key(master: W) -> Self {
        Self {
            master: Arc::new(master),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock (only map operations run under it), so a
        // poisoned lock still holds consistent maps.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<W: KeyEncryption> Clone for MemoryKeyStore<W> {
    fn clone(&self) -> Self {
        Self {
            master: Arc::clone(&self.master),
            state: Arc::clone(&self.state),
        }
    }
}

impl<W: KeyEncryption> fmt::Debug for MemoryKeyStore<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        f.debug_struct("MemoryKeyStore")
            .field("keys", &state.keys.len())
            .field("forgotten", &state.forgotten.len())
            .finish_non_exhaustive()
    }
}

impl<W: KeyEncryption> KeyStore for MemoryKeyStore<W> {
    async fn key_for(&self, subject: &Subject) -> Result<Option<(KeyId, DataKey)>, KeyError> {
        let existing = {
            let state = self.state();
            if state.forgotten.contains_key(subject) {
                return Ok(None);
            }
            state
                .subjects
                .get(subject)
                .and_then(|id| state.keys.get(id).map(|wrapped| (*id, wrapped.clone())))
        };
        if let Some((id, wrapped)) = existing {
            return Ok(Some((id, self.master.unwrap(id, &wrapped).await?)));
        }
        // Made outside the lock (wrapping may be slow, a KMS call); whoever stores first
        // wins, and a forgetting meanwhile wins over both.
        let key = DataKey::generate();
        let wrapped = self.master.wrap(&key).await?;
        let id = KeyId::new();
        let winner = {
            let mut state = self.state();
            if state.forgotten.contains_key(subject) {
                return Ok(None);
            }
            match state.subjects.get(subject).copied() {
                Some(first) => state.keys.get(&first).map(|w| (first, w.clone())),
                None => {
                    state.subjects.insert(subject.clone(), id);
                    state.keys.insert(id, wrapped);
                    return Ok(Some((id, key)));
                }
            }
        };
        match winner {
            Some((first, wrapped)) => Ok(Some((first, self.master.unwrap(first, &wrapped).await?))),
            None => Ok(None),
        }
    }

    async fn key(&self, id: KeyId) -> Result<Option<DataKey>, KeyError> {
        let wrapped = {
            let state = self.state();
            match state.keys.get(&id) {
                Some(wrapped) => wrapped.clone(),
                None if state.forgotten_keys.contains(&id) => return Ok(None),
                None => return Err(KeyError::UnknownKey { key: id }),
            }
        };
        Ok(Some(self.master.unwrap(id, &wrapped).await?))
    }

    async fn forget(&self, subject: &Subject, by: &str) -> Result<Forgetting, KeyError> {
        let mut state = self.state();
        if let Some(first) = state.forgotten.get(subject) {
            return Ok(first.clone());
        }
        if let Some(id) = state.subjects.remove(subject) {
            state.keys.remove(&id);
            state.forgotten_keys.insert(id);
        }
        let record = Forgetting {
            subject: subject.clone(),
            by: by.to_owned(),
            at: Utc::now(),
        };
        state.forgotten.insert(subject.clone(), record.clone());
        Ok(record)
    }

    async fn forgotten(&self, subject: &Subject) -> Result<Option<Forgetting>, KeyError> {
        Ok(self.state().forgotten.get(subject).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    fn now<T>(future: impl std::future::Future<Output = T>) -> T {
        future
            .now_or_never()
            .expect("the memory key store never waits")
    }

    #[test]
    fn one_key_per_subject_until_forgotten() {
        let keys = MemoryKeyStore::new();
        let (ada, bob) = (Subject::new("ada").unwrap(), Subject::new("bob").unwrap());
        let (id, key) = now(keys.key_for(&ada)).unwrap().unwrap();
        assert_eq!(now(keys.key_for(&ada)).unwrap(), Some((id, key.clone())));
        let (other, _) = now(keys.key_for(&bob)).unwrap().unwrap();
        assert_ne!(id, other);
        let clone = keys.clone();
        assert_eq!(now(clone.key(id)).unwrap(), Some(key), "clones share");
        assert_eq!(now(keys.forgotten(&ada)).unwrap(), None);

        let first = now(keys.forget(&ada, "ops")).unwrap();
        assert_eq!((first.subject.as_str(), first.by.as_str()), ("ada", "ops"));
        assert_eq!(now(keys.key(id)).unwrap(), None);
        assert_eq!(now(keys.key_for(&ada)).unwrap(), None);
        let never = KeyId::new();
        assert!(
            matches!(now(keys.key(never)), Err(KeyError::UnknownKey { key }) if key == never),
            "a key never made is not a forgotten one"
        );
        assert_eq!(now(keys.forget(&ada, "later")).unwrap(), first);
        assert_eq!(now(keys.forgotten(&ada)).unwrap(), Some(first));
        assert!(
            now(keys.key(other)).unwrap().is_some(),
            "others keep theirs"
        );
    }

    #[test]
    fn a_subject_never_seen_is_forgotten_all_the_same() {
        let keys = MemoryKeyStore::new();
        let carol = Subject::new("carol").unwrap();
        now(keys.forget(&carol, "gdpr")).unwrap();
        assert_eq!(now(keys.key_for(&carol)).unwrap(), None);
    }

    #[test]
    fn keys_are_kept_wrapped() {
        let keys = MemoryKeyStore::new();
        let (id, key) = now(keys.key_for(&Subject::new("ada").unwrap()))
            .unwrap()
            .unwrap();
        let wrapped = keys.state().keys[&id].clone();
        assert!(
            !wrapped
                .windows(key.expose().len())
                .any(|window| window == key.expose())
        );
    }
}
