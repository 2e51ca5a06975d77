//! [`LocalKeyEncryption`]: data keys wrapped by a master key the process holds, read from an
//! environment secret.

use std::fmt;

use aes_gcm::aead::{Aead as _, AeadCore as _, KeyInit as _, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::keys::{DataKey, KeyEncryption, KeyError, KeyId};

/// What the wrapped key says it was wrapped with: a version byte, so that a later scheme
/// (another cipher, a KMS) can tell its own rows from these.
const VERSION: u8 = 1;

/// The bytes of the nonce, before the ciphertext.
const NONCE_LEN: usize = 12;

/// Wraps data keys with AES-256-GCM under a 256-bit master key held by the process.
///
/// The master key is the one secret that makes every stored data key usable: keep it out
/// of the database (an environment secret, a secrets manager), and keep a copy where
/// backups of the database are not, or restoring them is of no use. Rotating it means
/// unwrapping every data key with the old one and wrapping it with the new one; the data
/// keys, and so the events, stay as they are.
///
/// ```
/// use es_core::personal::{DataKey, KeyEncryption, KeyId, LocalKeyEncryption};
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// let secret = LocalKeyEncryption::generate_secret();
/// let master = LocalKeyEncryption::from_base64(&secret)?;
/// let key = DataKey::generate();
/// let wrapped = master.wrap(&key).await?;
/// assert_eq!(master.unwrap(KeyId::new(), &wrapped).await?, key);
///
/// let other = LocalKeyEncryption::from_base64(&LocalKeyEncryption::generate_secret())?;
/// assert!(other.unwrap(KeyId::new(), &wrapped).await.is_err());
/// # Ok::<(), es_core::personal::KeyError>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct LocalKeyEncryption {
    cipher: Aes256Gcm,
}

impl LocalKeyEncryption {
    /// The master key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&bytes.into()),
        }
    }

    /// The master key from its base64 text (standard alphabet, 32 bytes once decoded), as
    /// [`LocalKeyEncryption::generate_secret`] makes it.
    ///
    /// # Errors
    ///
    /// [`KeyError::MasterKey`] if the text is not base64 of 32 bytes (the error does not
    /// repeat it).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::MasterKey {
                reason: "it is not base64".to_owned(),
            })?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|bytes: Vec<u8>| KeyError::MasterKey {
                reason: format!("it holds {} bytes, not 32", bytes.len()),
            })?;
        Ok(Self::from_bytes(bytes))
    }

    /// The master key from the environment variable `name` (base64, as
    /// [`LocalKeyEncryption::from_base64`] reads it).
    ///
    /// # Errors
    ///
    /// [`KeyError::MasterKey`] if the variable is unset or malformed.
    pub fn from_env(name: &str) -> Result<Self, KeyError> {
        let text = std::env::var(name).map_err(|_| KeyError::MasterKey {
            reason: format!(
                "the environment variable `{name}` is not set (make one with \
                 LocalKeyEncryption::generate_secret)"
            ),
        })?;
        Self::from_base64(&text).map_err(|error| match error {
            KeyError::MasterKey { reason } => KeyError::MasterKey {
                reason: format!("`{name}`: {reason}"),
            },
            other => other,
        })
    }

    /// A new random master key, as base64 text for an environment secret.
    pub fn generate_secret() -> String {
        STANDARD.encode(Aes256Gcm::generate_key(OsRng))
    }
}

impl fmt::Debug for LocalKeyEncryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LocalKeyEncryption(..)")
    }
}

impl KeyEncryption for LocalKeyEncryption {
    async fn wrap(&self, key: &DataKey) -> Result<Vec<u8>, KeyError> {
        let nonce = Aes256Gcm::generate_nonce(OsRng);
        let sealed = self
            .cipher
            .encrypt(&nonce, key.expose().as_slice())
            .map_err(|_| KeyError::MasterKey {
                reason: "it could not encrypt".to_owned(),
            })?;
        let mut wrapped = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        wrapped.push(VERSION);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(wrapped)
    }

    async fn unwrap(&self, id: KeyId, wrapped: &[u8]) -> Result<DataKey, KeyError> {
        let refused = || KeyError::Unwrap { key: id };
        let rest = match wrapped.split_first() {
            Some((&VERSION, rest)) if rest.len() > NONCE_LEN => rest,
            _ => return Err(refused()),
        };
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| refused())?;
        let opened = self
            .cipher
            .decrypt(&Nonce::from(nonce), sealed)
            .map_err(|_| refused())?;
        let mut bytes: [u8; 32] = opened.as_slice().try_into().map_err(|_| refused())?;
        let mut opened = opened;
        zeroize::Zeroize::zeroize(&mut opened);
        let key = DataKey::from_bytes(bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_secrets_are_refused_without_being_repeated() {
        for secret in ["not base64 at all!", "c2hvcnQ="] {
            let error = LocalKeyEncryption::from_base64(secret)
                .unwrap_err()
                .to_string();
            assert!(!error.contains(secret), "{error}");
        }
        assert!(LocalKeyEncryption::from_base64(&LocalKeyEncryption::generate_secret()).is_ok());
    }

    #[test]
    fn a_damaged_wrapped_key_is_refused() {
        let master = LocalKeyEncryption::from_bytes([7; 32]);
        let key = DataKey::generate();
        let mut wrapped = futures_util::FutureExt::now_or_never(master.wrap(&key))
            .unwrap()
            .unwrap();
        let last = wrapped.len() - 1;
        wrapped[last] ^= 1;
        let id = KeyId::new();
        let outcome = futures_util::FutureExt::now_or_never(master.unwrap(id, &wrapped)).unwrap();
        assert!(matches!(outcome, Err(KeyError::Unwrap { key }) if key == id));
        let outcome = futures_util::FutureExt::now_or_never(master.unwrap(id, &[])).unwrap();
        assert!(outcome.is_err());
    }
}
