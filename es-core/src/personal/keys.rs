//! Data subjects and their keys: [`Subject`], [`KeyId`], [`DataKey`], the [`KeyStore`]
//! that keeps one key per subject until the subject is forgotten, and the
//! [`KeyEncryption`] (master key) that key stores wrap the keys with.

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::{KeyInit as _, OsRng};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use zeroize::Zeroizing;

/// The person whose personal data a field holds, by an identifier of the application's
/// (a customer id, say).
///
/// A subject is an *identifier*, stored in clear with the keys and in the record of its
/// forgetting: choose one that is not personal data itself (an opaque id, not an email
/// address). 1 to 255 bytes, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// The longest subject, in bytes.
    pub const MAX_LEN: usize = 255;

    /// A subject from its identifier.
    ///
    /// # Errors
    ///
    /// [`KeyError::InvalidSubject`] if it is empty, longer than [`Subject::MAX_LEN`] bytes or
    /// holds a control character (the error does not repeat it).
    ///
    /// ```
    /// use es_core::personal::Subject;
    ///
    /// assert_eq!(Subject::new("customer-42")?.as_str(), "customer-42");
    /// assert!(Subject::new("").is_err());
    /// # Ok::<(), es_core::personal::KeyError>(())
    /// ```
    pub fn new(id: impl Into<String>) -> Result<Self, KeyError> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("it is empty")
        } else if id.len() > Self::MAX_LEN {
            Some("it is longer than 255 bytes")
        } else if id.chars().any(char::is_control) {
            Some("it holds a control character")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(KeyError::InvalidSubject { reason }),
            None => Ok(Self(id)),
        }
    }

    /// The identifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id of one subject's data key, stored beside each ciphertext made with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(Uuid);

impl KeyId {
    /// A new id (UUID v7: ordered by creation).
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id as a UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for KeyId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for KeyId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for KeyId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::from_str(text).map(Self)
    }
}

/// A subject's 256-bit data key: what its personal fields are encrypted with. Zeroed when
/// dropped; never shown by `Debug`.
///
/// A key carries its cipher, made once (the AES key schedule and the GHASH key cost more
/// than sealing or opening a short field), and clones share both: a key cached by a
/// [`Protected`](super::Protected) opens every field of its subject without making a new
/// cipher. The last clone dropped zeroes the bytes and the AES round keys (best effort:
/// copies moved on the stack are not, nor, in polyval 0.6, the GHASH key).
#[derive(Clone)]
pub struct DataKey(Arc<KeyMaterial>);

struct KeyMaterial {
    bytes: Zeroizing<[u8; 32]>,
    cipher: Aes256Gcm,
}

impl DataKey {
    /// A new random key, from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0_u8; 32]);
        OsRng.fill_bytes(bytes.as_mut());
        Self::from_secret(bytes)
    }

    /// A key from its bytes (a key store reading one it unwrapped). The bytes are copied:
    /// zero the caller's own copy once done with it.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self::from_secret(Zeroizing::new(bytes))
    }

    fn from_secret(bytes: Zeroizing<[u8; 32]>) -> Self {
        let cipher = Aes256Gcm::new(bytes.as_ref().into());
        Self(Arc::new(KeyMaterial { bytes, cipher }))
    }

    /// The key's bytes, for the cipher and for wrapping. Do not log or store them in clear.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0.bytes
    }

    /// The key's cipher, made when the key was.
    pub(super) fn cipher(&self) -> &Aes256Gcm {
        &self.0.cipher
    }
}

impl PartialEq for DataKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.bytes[..] == other.0.bytes[..]
    }
}

impl Eq for DataKey {}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

/// The record that a subject was forgotten: who asked, and when. It holds no personal data
/// (the subject is an identifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgetting {
    /// The subject forgotten.
    pub subject: Subject,
    /// Who had it forgotten (an operator, a ticket, a service), as the caller said.
    pub by: String,
    /// When its keys were destroyed.
    pub at: DateTime<Utc>,
}

/// What went wrong with a subject's keys. No variant holds a key or a personal value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A subject identifier was refused.
    #[error("invalid data subject: {reason}")]
    InvalidSubject {
        /// Why.
        reason: &'static str,
    },
    /// The master key is missing or malformed.
    #[error("the master key is unusable: {reason}")]
    MasterKey {
        /// Why, without the key.
        reason: String,
    },
    /// A stored data key could not be unwrapped with the master key: a different master
    /// key than the one that wrapped it, or a damaged row.
    #[error(
        "data key {key} cannot be unwrapped: was it wrapped with another master key, or damaged?"
    )]
    Unwrap {
        /// The key.
        key: KeyId,
    },
    /// No key has this id, and none with it was forgotten: the events were sealed with
    /// another key store (another database or schema), or its keys were lost. Not read as
    /// forgotten, which would show the replacement as if the subject had asked.
    #[error(
        "data key {key} is not in the key store, and no key of that id was forgotten: are \
         the events read with the key store they were written with (the same database and \
         schema)?"
    )]
    UnknownKey {
        /// The key.
        key: KeyId,
    },
    /// The key store's backend failed; the operation may be retried.
    #[error("the key store failed")]
    Backend {
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl KeyError {
    /// A backend failure.
    pub fn backend(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Backend {
            source: source.into(),
        }
    }
}

/// How data keys are wrapped (encrypted) for storage: by a master key that the application
/// holds, locally ([`LocalKeyEncryption`](super::LocalKeyEncryption)) or in a key
/// management service (implement this trait over its client).
pub trait KeyEncryption: Send + Sync + 'static {
    /// `key`, encrypted for storage.
    ///
    /// # Errors
    ///
    /// Fails if the master key cannot be used.
    fn wrap(&self, key: &DataKey) -> impl Future<Output = Result<Vec<u8>, KeyError>> + Send;

    /// The key that [`KeyEncryption::wrap`] made `wrapped` of; `id` names it in errors.
    ///
    /// # Errors
    ///
    /// [`KeyError::Unwrap`] if `wrapped` was not made with this master key or was damaged.
    fn unwrap(
        &self,
        id: KeyId,
        wrapped: &[u8],
    ) -> impl Future<Output = Result<DataKey, KeyError>> + Send;
}

/// Where subjects' data keys are kept: one per subject, made on first use, destroyed when
/// the subject is forgotten. Implementations store keys only wrapped by a
/// [`KeyEncryption`], make forgetting final (a forgotten subject gets no new key), and
/// remember which keys they destroyed, to tell them from keys they never had.
pub trait KeyStore: Clone + Send + Sync + 'static {
    /// The subject's key, made and stored on first use; `None` once the subject is
    /// forgotten.
    ///
    /// # Errors
    ///
    /// Fails if the backend or the master key fails.
    fn key_for(
        &self,
        subject: &Subject,
    ) -> impl Future<Output = Result<Option<(KeyId, DataKey)>, KeyError>> + Send;

    /// The key with this id; `None` if its subject was forgotten.
    ///
    /// # Errors
    ///
    /// [`KeyError::UnknownKey`] if the store never had the key (nor forgot it); fails if
    /// the backend or the master key fails.
    fn key(&self, id: KeyId) -> impl Future<Output = Result<Option<DataKey>, KeyError>> + Send;

    /// Destroys the subject's keys and records who had it done and when; a repeat changes
    /// nothing and returns the first record. A subject never seen is forgotten all the same
    /// (it gets no key afterwards).
    ///
    /// # Errors
    ///
    /// Fails if the backend fails; then nothing was destroyed, or all was.
    fn forget(
        &self,
        subject: &Subject,
        by: &str,
    ) -> impl Future<Output = Result<Forgetting, KeyError>> + Send;

    /// The record of the subject's forgetting, if it was forgotten.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn forgotten(
        &self,
        subject: &Subject,
    ) -> impl Future<Output = Result<Option<Forgetting>, KeyError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_validated_without_repeating_them() {
        assert!(Subject::new("customer-1").is_ok());
        for bad in [String::new(), "x".repeat(256), "a\nb".to_owned()] {
            let error = Subject::new(bad.clone()).unwrap_err().to_string();
            assert!(
                !bad.is_empty() && !error.contains(&bad) || bad.is_empty(),
                "{error}"
            );
        }
    }

    #[test]
    fn data_keys_are_random_and_never_shown() {
        let (a, b) = (DataKey::generate(), DataKey::generate());
        assert_ne!(a, b);
        assert_eq!(format!("{a:?}"), "DataKey(..)");
        assert_eq!(DataKey::from_bytes(*a.expose()), a);
    }

    #[test]
    fn key_ids_round_trip_through_text() {
        let id = KeyId::new();
        assert_eq!(id.to_string().parse::<KeyId>().unwrap(), id);
    }
}
