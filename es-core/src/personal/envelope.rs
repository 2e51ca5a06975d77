//! The envelope of one personal field: how a value is sealed, recognised and opened.
//!
//! Each personal field's value is replaced in the payload object by
//!
//! ```json
//! {"es:personal": 1, "key": "<key id>", "nonce": "<base64, 12 bytes>", "data": "<base64>",
//!  "forgotten": <the field's replacement>}
//! ```
//!
//! where `data` is the AES-256-GCM ciphertext and tag of the value's JSON text under the
//! subject's data key, with the associated data `"{event_type}\u{1f}{field key}"`: a
//! ciphertext copied into another field, or into an event of another type, fails to
//! authenticate. A subject forgotten before the write gets `{"es:personal": 1, "key":
//! null, "forgotten": ..}`: nothing of the value is stored. A `null` value (an `Option`
//! field's `None`) holds nothing personal: it is stored as `null`, and needs no subject.
//!
//! `forgotten` is the replacement the field declared when the event was written
//! ([`Forgotten::value`](super::Forgotten::value), not personal): once the key is gone a
//! reader sees it, whichever type reads the event (one that knows it under an alias, at
//! another schema version, or that does not declare the field at all). Envelopes written
//! without it read as the replacement the reader declares, or `null`.
//!
//! An envelope is recognised strictly: a top-level payload value that is an object with
//! exactly these keys (`forgotten` optional), `es:personal` the number 1, `key` a string
//! (or `null`, without `nonce` and `data`) and `nonce` and `data` strings. Any other
//! object is data, even one holding the key `es:personal`.

use aes_gcm::aead::{Aead as _, AeadCore as _, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use super::cipher::CipherError;
use super::keys::{DataKey, KeyId};

/// The key that marks an envelope, and the version of its format.
pub(super) const MARK: &str = "es:personal";
pub(super) const FORMAT: u64 = 1;
const NONCE_LEN: usize = 12;
/// The key of the replacement an envelope carries.
pub(super) const FORGOTTEN: &str = "forgotten";

/// The associated data of a field's ciphertext.
fn aad(event_type: &str, field: &str) -> String {
    format!("{event_type}\u{1f}{field}")
}

/// The envelope of a value whose subject was forgotten before it was written.
pub(super) fn forgotten_envelope(forgotten: Value) -> Value {
    let mut envelope = Map::new();
    envelope.insert(MARK.to_owned(), Value::from(FORMAT));
    envelope.insert("key".to_owned(), Value::Null);
    envelope.insert(FORGOTTEN.to_owned(), forgotten);
    Value::Object(envelope)
}

/// `value` sealed under `key` (of key id `id`), carrying its replacement `forgotten`.
pub(super) fn seal(
    event_type: &str,
    field: &str,
    id: KeyId,
    key: &DataKey,
    value: &Value,
    forgotten: Value,
) -> Result<Value, CipherError> {
    let cipher = key.cipher();
    let nonce = Aes256Gcm::generate_nonce(OsRng);
    let plaintext = zeroize::Zeroizing::new(value.to_string());
    let aad = aad(event_type, field);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext.as_bytes(),
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| CipherError::Malformed {
            event_type: event_type.to_owned(),
            field: field.to_owned(),
            reason: "the value is too long to encrypt",
        })?;
    let mut envelope = Map::new();
    envelope.insert(MARK.to_owned(), Value::from(FORMAT));
    envelope.insert("key".to_owned(), Value::String(id.to_string()));
    envelope.insert("nonce".to_owned(), Value::String(STANDARD.encode(nonce)));
    envelope.insert("data".to_owned(), Value::String(STANDARD.encode(sealed)));
    envelope.insert(FORGOTTEN.to_owned(), forgotten);
    Ok(Value::Object(envelope))
}

/// Whether `value` is an envelope, recognised strictly: an object with exactly the keys
/// `es:personal` (the number 1), `key` (a string), `nonce` and `data` (strings), or
/// `es:personal` and `key` (`null`); either may also hold `forgotten`. Any other value
/// is data, even an object holding the key `es:personal`.
pub fn is_envelope(value: &Value) -> bool {
    let Some(object) = value.as_object() else {
        return false;
    };
    if object.get(MARK).and_then(Value::as_u64) != Some(FORMAT) {
        return false;
    }
    let keys = object.len() - usize::from(object.contains_key(FORGOTTEN));
    match object.get("key") {
        Some(Value::Null) => keys == 2,
        Some(Value::String(_)) => {
            keys == 4
                && object.get("nonce").is_some_and(Value::is_string)
                && object.get("data").is_some_and(Value::is_string)
        }
        _ => false,
    }
}

/// A parsed envelope: its key (none if the subject was forgotten before the write), nonce
/// and ciphertext, and the replacement it carries.
pub(super) struct Envelope {
    pub(super) key: Option<KeyId>,
    pub(super) sealed: Option<([u8; NONCE_LEN], Vec<u8>)>,
    pub(super) forgotten: Option<Value>,
}

/// The parts of `value`, which [`is_envelope`] recognised.
pub(super) fn parse(event_type: &str, field: &str, value: &Value) -> Result<Envelope, CipherError> {
    let malformed = |reason| CipherError::Malformed {
        event_type: event_type.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let object = value
        .as_object()
        .ok_or_else(|| malformed("not an object"))?;
    let forgotten = object.get(FORGOTTEN).cloned();
    let key = match object.get("key") {
        Some(Value::Null) => {
            return Ok(Envelope {
                key: None,
                sealed: None,
                forgotten,
            });
        }
        Some(Value::String(text)) => text
            .parse::<KeyId>()
            .map_err(|_| malformed("the key is not a key id"))?,
        _ => return Err(malformed("the key is missing")),
    };
    let base64 = |name, missing, invalid| {
        let text = object
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(missing))?;
        STANDARD.decode(text).map_err(|_| malformed(invalid))
    };
    let nonce = base64("nonce", "the nonce is missing", "the nonce is not base64")?;
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| malformed("the nonce is not 12 bytes"))?;
    let data = base64("data", "the data is missing", "the data is not base64")?;
    Ok(Envelope {
        key: Some(key),
        sealed: Some((nonce, data)),
        forgotten,
    })
}

/// The value `data` seals under `key`, with `nonce`.
pub(super) fn open(
    event_type: &str,
    field: &str,
    id: KeyId,
    key: &DataKey,
    nonce: [u8; NONCE_LEN],
    data: &[u8],
) -> Result<Value, CipherError> {
    let tampered = || CipherError::Tampered {
        event_type: event_type.to_owned(),
        field: field.to_owned(),
        key: id,
    };
    let cipher = key.cipher();
    let aad = aad(event_type, field);
    let opened = zeroize::Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: data,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| tampered())?,
    );
    serde_json::from_slice(&opened).map_err(|_| tampered())
}

/// Whether `payload` holds an envelope (sealed, or written for a subject already
/// forgotten) at its top level.
pub(super) fn has_envelope(payload: &Value) -> bool {
    payload
        .as_object()
        .is_some_and(|object| object.values().any(is_envelope))
}
