//! The cipher of personal fields: how one payload's personal fields become envelopes on
//! write and values (or their replacements) on read.
//!
//! Key stores are async and the cipher is not, so each direction is two steps: first
//! collect what keys a payload needs ([`subjects_of`] on write, [`key_ids_of`] on read),
//! let the caller fetch them, then transform the payload with the keys found
//! ([`encrypt_fields`], [`decrypt_fields`]). A batch fetches each key once.
//!
//! The envelope's format, and how one is recognised, is described in `envelope.rs`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

pub use super::envelope::is_envelope;
use super::envelope::{forgotten_envelope, open, parse, seal};
use super::field::{PersonalField, SubjectSource};
use super::keys::{DataKey, KeyId, Subject};

/// The keys [`encrypt_fields`] uses: for each subject, its key, or `None` if the subject
/// is forgotten.
pub type SubjectKeys = HashMap<Subject, Option<(KeyId, DataKey)>>;

/// The keys [`decrypt_fields`] uses: for each key id, the key, or `None` if it is gone
/// (its subject forgotten).
pub type FoundKeys = HashMap<KeyId, Option<DataKey>>;

/// Why a payload's personal fields could not be encrypted or decrypted. Every variant
/// names the event type and field key, never a value (nor a key).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CipherError {
    /// The payload of an event type with personal fields is not a JSON object.
    #[error(
        "the payload of event `{event_type}` is not an object, but the type declares personal fields"
    )]
    NotAnObject {
        /// The event type.
        event_type: String,
    },
    /// The subject of a personal field could not be told: its subject field is missing or
    /// null, or its value is not a valid [`Subject`].
    #[error(
        "personal field `{field}` of event `{event_type}` has no usable subject: {reason}; the subject field must hold an identifier"
    )]
    Subject {
        /// The event type.
        event_type: String,
        /// The personal field.
        field: String,
        /// Why, without the value.
        reason: &'static str,
    },
    /// A typed event's payload lacks a key its personal fields declare (the field itself,
    /// or its subject field): its encoding is not the shape the declaration describes.
    #[error(
        "the payload of event `{event_type}` has no key `{key}` ({what}), but the type declares it: the event must encode each personal field and its subject field under its key (check a `#[serde(into)]`, `skip_serializing_if` or a hand-written `Serialize`)"
    )]
    Shape {
        /// The event type.
        event_type: String,
        /// The personal field.
        field: String,
        /// The key the payload lacks.
        key: String,
        /// Which declared key it is.
        what: &'static str,
    },
    /// No key was fetched for a subject the payload needs (a caller that skipped
    /// [`subjects_of`]).
    #[error(
        "no key was fetched for the subject of personal field `{field}` of event `{event_type}`"
    )]
    KeyNotFetched {
        /// The event type.
        event_type: String,
        /// The personal field.
        field: String,
    },
    /// A stored envelope does not have the envelope's shape: the stored event was altered
    /// or damaged.
    #[error(
        "the envelope of personal field `{field}` of event `{event_type}` is malformed ({reason}): the stored event was altered or damaged"
    )]
    Malformed {
        /// The event type.
        event_type: String,
        /// The personal field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A stored ciphertext failed to authenticate with its key: it was altered, or moved
    /// from another field or event type.
    #[error(
        "personal field `{field}` of event `{event_type}` fails to authenticate under key {key}: the stored event was altered, or the ciphertext moved from another field"
    )]
    Tampered {
        /// The event type.
        event_type: String,
        /// The personal field.
        field: String,
        /// The key id the envelope names.
        key: KeyId,
    },
}

impl CipherError {
    /// The event type the failure is about.
    pub fn event_type(&self) -> &str {
        match self {
            Self::NotAnObject { event_type }
            | Self::Subject { event_type, .. }
            | Self::Shape { event_type, .. }
            | Self::KeyNotFetched { event_type, .. }
            | Self::Malformed { event_type, .. }
            | Self::Tampered { event_type, .. } => event_type,
        }
    }

    /// The field the failure is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::NotAnObject { .. } => None,
            Self::Subject { field, .. }
            | Self::Shape { field, .. }
            | Self::KeyNotFetched { field, .. }
            | Self::Malformed { field, .. }
            | Self::Tampered { field, .. } => Some(field),
        }
    }
}

/// The subject of `field` in `object`, as [`SubjectSource`] says.
fn subject_of(
    event_type: &str,
    field: &PersonalField,
    object: &Map<String, Value>,
) -> Result<Subject, CipherError> {
    let refused = |reason| CipherError::Subject {
        event_type: event_type.to_owned(),
        field: field.key.to_owned(),
        reason,
    };
    let id = match field.subject {
        SubjectSource::Fixed(name) => name.to_owned(),
        SubjectSource::Field(key) => match object.get(key) {
            None => return Err(refused("the subject field is missing")),
            Some(Value::Null) => return Err(refused("the subject field is null")),
            Some(Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
        },
    };
    Subject::new(id).map_err(|_| refused("the subject field's value is not a valid subject"))
}

/// Checks that a typed event's `payload` is the shape its personal `fields` declare: an
/// object holding each field's key and, for a subject taken from a field, that key too.
/// Otherwise the cipher would find nothing to seal, and the value would be stored in clear
/// under another key.
///
/// # Errors
///
/// [`CipherError::NotAnObject`] or [`CipherError::Shape`].
pub(crate) fn check_shape(
    event_type: &str,
    fields: &[PersonalField],
    payload: &Value,
) -> Result<(), CipherError> {
    if fields.is_empty() {
        return Ok(());
    }
    let object = payload
        .as_object()
        .ok_or_else(|| CipherError::NotAnObject {
            event_type: event_type.to_owned(),
        })?;
    for field in fields {
        let lacks = |key: &str, what| CipherError::Shape {
            event_type: event_type.to_owned(),
            field: field.key.to_owned(),
            key: key.to_owned(),
            what,
        };
        if !object.contains_key(field.key) {
            return Err(lacks(field.key, "a personal field"));
        }
        if let SubjectSource::Field(subject) = field.subject
            && !object.contains_key(subject)
        {
            return Err(lacks(subject, "the subject field of a personal field"));
        }
    }
    Ok(())
}

/// The personal fields of `object` (the payload of an event of type `event_type` at
/// `version`) whose replacement `E` does not decode: none if `E` decodes the payload with
/// every field replaced; else those that fail alone, or all if none does.
pub(crate) fn misfit_replacements<E: crate::event::DomainEvent>(
    event_type: &str,
    version: u32,
    fields: &'static [PersonalField],
    object: &Map<String, Value>,
) -> Vec<&'static str> {
    let decodes = |replaced: &[PersonalField]| {
        let mut object = object.clone();
        for field in replaced {
            object.insert(field.key.to_owned(), field.forgotten.value());
        }
        E::decode_value(event_type, version, &Value::Object(object)).is_ok()
    };
    if decodes(fields) {
        return Vec::new();
    }
    let alone: Vec<&'static str> = fields
        .iter()
        .filter(|field| !decodes(std::slice::from_ref(*field)))
        .map(|field| field.key)
        .collect();
    if alone.is_empty() {
        fields.iter().map(|field| field.key).collect()
    } else {
        alone
    }
}

/// Whether `value` of a personal field is to be encrypted: it holds something (not
/// `null`), and, unless `typed` (a typed append encrypts whatever its fields hold), it is
/// not already sealed (a stored event copied as it is).
fn to_seal(value: &Value, typed: bool) -> bool {
    !value.is_null() && (typed || !is_envelope(value))
}

/// The subjects whose keys [`encrypt_fields`] needs for this payload: those of the
/// personal `fields` (of event type `event_type`) the payload holds not yet sealed and
/// not `null`, each once.
///
/// # Errors
///
/// [`CipherError::NotAnObject`] if there are such fields and the payload is not an
/// object; [`CipherError::Subject`] if a present personal field's subject cannot be told.
pub fn subjects_of(
    event_type: &str,
    fields: &[PersonalField],
    payload: &Value,
) -> Result<BTreeSet<Subject>, CipherError> {
    subjects_to_seal(event_type, fields, payload, false)
}

/// As [`subjects_of`]; `typed`: the payload was encoded from a typed event, whose
/// personal fields are encrypted whatever they hold (even a value shaped as an envelope).
pub(crate) fn subjects_to_seal(
    event_type: &str,
    fields: &[PersonalField],
    payload: &Value,
    typed: bool,
) -> Result<BTreeSet<Subject>, CipherError> {
    let mut subjects = BTreeSet::new();
    if fields.is_empty() {
        return Ok(subjects);
    }
    let object = payload
        .as_object()
        .ok_or_else(|| CipherError::NotAnObject {
            event_type: event_type.to_owned(),
        })?;
    for field in fields {
        if object
            .get(field.key)
            .is_some_and(|value| to_seal(value, typed))
        {
            subjects.insert(subject_of(event_type, field, object)?);
        }
    }
    Ok(subjects)
}

/// Replaces each personal field of `payload` by its envelope, encrypted with its
/// subject's key from `keys` (as fetched for [`subjects_of`]); a subject whose entry is
/// `None` (forgotten) gets an envelope without data. A field that already holds an
/// envelope (a stored event copied as it is) is left as it is, and so is a `null` one.
///
/// On error the payload may be partly encrypted: do not store it.
///
/// # Errors
///
/// As [`subjects_of`], and [`CipherError::KeyNotFetched`] if `keys` lacks a subject.
pub fn encrypt_fields(
    event_type: &str,
    fields: &[PersonalField],
    payload: &mut Value,
    keys: &SubjectKeys,
) -> Result<(), CipherError> {
    seal_fields(event_type, fields, payload, keys, false)
}

/// As [`encrypt_fields`]; `typed` as for [`subjects_to_seal`].
pub(crate) fn seal_fields(
    event_type: &str,
    fields: &[PersonalField],
    payload: &mut Value,
    keys: &SubjectKeys,
    typed: bool,
) -> Result<(), CipherError> {
    if fields.is_empty() {
        return Ok(());
    }
    let object = payload
        .as_object_mut()
        .ok_or_else(|| CipherError::NotAnObject {
            event_type: event_type.to_owned(),
        })?;
    // Every subject first: a subject field may itself be personal, and is read in clear.
    let mut subjects = Vec::with_capacity(fields.len());
    for field in fields {
        if object
            .get(field.key)
            .is_some_and(|value| to_seal(value, typed))
        {
            subjects.push((field, subject_of(event_type, field, object)?));
        }
    }
    for (field, subject) in subjects {
        let Some(key) = keys.get(&subject) else {
            return Err(CipherError::KeyNotFetched {
                event_type: event_type.to_owned(),
                field: field.key.to_owned(),
            });
        };
        let Some(value) = object.get_mut(field.key) else {
            continue;
        };
        let forgotten = field.forgotten.value();
        *value = match key {
            None => forgotten_envelope(forgotten),
            Some((id, key)) => seal(event_type, field.key, *id, key, value, forgotten)?,
        };
    }
    Ok(())
}

/// The key ids of the envelopes in `payload` (of event type `event_type`): what
/// [`decrypt_fields`] needs. Every top-level envelope counts, declared personal or not.
///
/// # Errors
///
/// [`CipherError::Malformed`] for an envelope whose key, nonce or data do not parse.
pub fn key_ids_of(event_type: &str, payload: &Value) -> Result<BTreeSet<KeyId>, CipherError> {
    let mut ids = BTreeSet::new();
    if let Some(object) = payload.as_object() {
        for (field, value) in object {
            if is_envelope(value)
                && let Some(id) = parse(event_type, field, value)?.key
            {
                ids.insert(id);
            }
        }
    }
    Ok(ids)
}

/// Replaces each envelope of `payload` by its value, decrypted with the key from `keys`,
/// or, when the key is gone (an entry `None`, or none at all), by the replacement the
/// envelope carries, else the one its field declares in `fields` ([`Forgotten::value`]),
/// else `null`. Every top-level envelope is opened, declared personal or not.
///
/// [`Forgotten::value`]: super::Forgotten::value
///
/// # Errors
///
/// [`CipherError::Malformed`] for an envelope whose key, nonce or data do not parse, and
/// [`CipherError::Tampered`] for one that fails to authenticate (altered, or moved from
/// another field or event type) or does not decrypt to JSON.
pub fn decrypt_fields(
    event_type: &str,
    fields: &[PersonalField],
    payload: &mut Value,
    keys: &FoundKeys,
) -> Result<(), CipherError> {
    let Some(object) = payload.as_object_mut() else {
        return Ok(());
    };
    for (field, value) in object.iter_mut() {
        if !is_envelope(value) {
            continue;
        }
        let envelope = parse(event_type, field, value)?;
        let key = envelope
            .key
            .and_then(|id| keys.get(&id).and_then(Option::as_ref).map(|key| (id, key)));
        *value = match (key, envelope.sealed) {
            (Some((id, key)), Some((nonce, data))) => {
                open(event_type, field, id, key, nonce, &data)?
            }
            _ => envelope
                .forgotten
                .unwrap_or_else(|| replacement(fields, field)),
        };
    }
    Ok(())
}

/// What a reader sees in `field`'s place once its subject is forgotten.
pub(crate) fn replacement(fields: &[PersonalField], field: &str) -> Value {
    fields
        .iter()
        .find(|declared| declared.key == field)
        .map_or(Value::Null, |declared| declared.forgotten.value())
}

/// Replaces each envelope and each personal field of `payload` whose subject
/// `is_forgotten` says is forgotten by its replacement, and leaves the rest as it is: the
/// clear payload as a reader sees it after those subjects are forgotten.
pub(crate) fn redact_fields(
    event_type: &str,
    fields: &[PersonalField],
    payload: &mut Value,
    is_forgotten: &dyn Fn(&Subject) -> bool,
) -> Result<(), CipherError> {
    if fields.is_empty() {
        return Ok(());
    }
    let object = payload
        .as_object_mut()
        .ok_or_else(|| CipherError::NotAnObject {
            event_type: event_type.to_owned(),
        })?;
    let mut forgotten = Vec::new();
    for field in fields {
        // `null` holds nothing personal, and needs no subject: it stays, as stored.
        if object.get(field.key).is_some_and(|value| !value.is_null())
            && is_forgotten(&subject_of(event_type, field, object)?)
        {
            forgotten.push(field);
        }
    }
    for field in forgotten {
        object.insert(field.key.to_owned(), field.forgotten.value());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::personal::Forgotten;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde_json::json;

    const FIELDS: &[PersonalField] = &[
        PersonalField {
            key: "name",
            subject: SubjectSource::Field("customer_id"),
            forgotten: Forgotten::Text("(forgotten)"),
        },
        PersonalField {
            key: "phone",
            subject: SubjectSource::Field("customer_id"),
            forgotten: Forgotten::Null,
        },
        PersonalField {
            key: "note",
            subject: SubjectSource::Fixed("crm"),
            forgotten: Forgotten::TypeDefault(|| json!([])),
        },
    ];

    fn payload() -> Value {
        json!({
            "customer_id": 42,
            "name": "Ada Lovelace",
            "phone": "+44 20 7946 0000",
            "note": ["likes engines"],
            "plan": "gold",
        })
    }

    fn keys_for(subjects: &BTreeSet<Subject>) -> (SubjectKeys, FoundKeys) {
        let mut write = HashMap::new();
        let mut read = HashMap::new();
        for subject in subjects {
            let (id, key) = (KeyId::new(), DataKey::generate());
            read.insert(id, Some(key.clone()));
            write.insert(subject.clone(), Some((id, key)));
        }
        (write, read)
    }

    fn encrypted() -> (Value, FoundKeys) {
        let mut payload = payload();
        let subjects = subjects_of("Registered", FIELDS, &payload).unwrap();
        let (write, read) = keys_for(&subjects);
        encrypt_fields("Registered", FIELDS, &mut payload, &write).unwrap();
        (payload, read)
    }

    #[test]
    fn subjects_are_the_fields_values_and_fixed_names() {
        let subjects = subjects_of("Registered", FIELDS, &payload()).unwrap();
        let names: Vec<&str> = subjects.iter().map(Subject::as_str).collect();
        assert_eq!(names, ["42", "crm"]);
        let missing = subjects_of("Registered", FIELDS, &json!({ "name": "Ada" })).unwrap_err();
        assert!(matches!(missing, CipherError::Subject { ref field, .. } if field == "name"));
        // A field the payload does not hold needs no subject.
        assert!(
            subjects_of("Registered", FIELDS, &json!({ "plan": 1 }))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn fields_round_trip_and_the_stored_text_holds_no_plaintext() {
        let (mut payload, read) = encrypted();
        let text = payload.to_string();
        for secret in ["Ada", "Lovelace", "7946", "engines"] {
            assert!(!text.contains(secret), "{text}");
        }
        assert_eq!(payload["plan"], "gold");
        assert_eq!(payload["customer_id"], 42);
        assert!(is_envelope(&payload["name"]));
        assert_eq!(payload["name"]["es:personal"], 1);
        assert_eq!(
            key_ids_of("Registered", &payload).unwrap().len(),
            2,
            "one key per subject"
        );
        decrypt_fields("Registered", FIELDS, &mut payload, &read).unwrap();
        assert_eq!(payload, self::payload());
    }

    #[test]
    fn fields_already_sealed_are_left_as_they_are() {
        let (sealed, read) = encrypted();
        let mut again = sealed.clone();
        assert_eq!(
            subjects_of("Registered", FIELDS, &again).unwrap().len(),
            0,
            "no key needed"
        );
        encrypt_fields("Registered", FIELDS, &mut again, &HashMap::new()).unwrap();
        assert_eq!(again, sealed);
        decrypt_fields("Registered", FIELDS, &mut again, &read).unwrap();
        assert_eq!(again, payload());
    }

    #[test]
    fn a_forgotten_key_reads_as_the_replacement() {
        let (mut payload, mut read) = encrypted();
        let name_key: KeyId = payload["name"]["key"].as_str().unwrap().parse().unwrap();
        read.insert(name_key, None);
        decrypt_fields("Registered", FIELDS, &mut payload, &read).unwrap();
        assert_eq!(payload["name"], "(forgotten)");
        assert_eq!(payload["phone"], Value::Null);
        assert_eq!(payload["note"], json!(["likes engines"]));

        // A key never fetched is gone too, and `Default` makes its value.
        let (mut payload, _) = encrypted();
        decrypt_fields("Registered", FIELDS, &mut payload, &HashMap::new()).unwrap();
        assert_eq!(payload["note"], json!([]));
    }

    #[test]
    fn a_subject_forgotten_before_the_write_stores_nothing() {
        let mut payload = payload();
        let mut write = HashMap::new();
        write.insert(Subject::new("42").unwrap(), None);
        write.insert(Subject::new("crm").unwrap(), None);
        encrypt_fields("Registered", FIELDS, &mut payload, &write).unwrap();
        assert_eq!(
            payload["name"],
            json!({ "es:personal": 1, "key": null, "forgotten": "(forgotten)" })
        );
        assert!(key_ids_of("Registered", &payload).unwrap().is_empty());
        decrypt_fields("Registered", FIELDS, &mut payload, &HashMap::new()).unwrap();
        assert_eq!(payload["name"], "(forgotten)");
    }

    #[test]
    fn a_ciphertext_moved_to_another_field_or_type_fails() {
        let (payload, read) = encrypted();
        let mut moved = payload.clone();
        moved["phone"] = payload["name"].clone();
        let error = decrypt_fields("Registered", FIELDS, &mut moved, &read).unwrap_err();
        assert!(matches!(error, CipherError::Tampered { ref field, .. } if field == "phone"));
        let text = error.to_string();
        assert!(
            text.contains("Registered") && text.contains("phone"),
            "{text}"
        );

        let mut other_type = payload;
        let error = decrypt_fields("Renamed", FIELDS, &mut other_type, &read).unwrap_err();
        assert!(matches!(error, CipherError::Tampered { .. }));
    }

    #[test]
    fn a_damaged_envelope_is_a_typed_error_without_values() {
        let (payload, read) = encrypted();
        let mut flipped = payload.clone();
        let data = flipped["name"]["data"].as_str().unwrap().to_owned();
        let mut bytes = STANDARD.decode(data).unwrap();
        bytes[0] ^= 1;
        flipped["name"]["data"] = Value::String(STANDARD.encode(bytes));
        assert!(matches!(
            decrypt_fields("Registered", FIELDS, &mut flipped, &read),
            Err(CipherError::Tampered { .. })
        ));
        for damage in [
            json!({ "es:personal": 1, "key": "not a uuid", "nonce": "", "data": "" }),
            json!({ "es:personal": 1, "key": KeyId::new().to_string(), "nonce": "AAAA", "data": "" }),
        ] {
            let mut damaged = payload.clone();
            damaged["name"] = damage;
            let error = decrypt_fields("Registered", FIELDS, &mut damaged, &read).unwrap_err();
            assert!(matches!(error, CipherError::Malformed { .. }), "{error}");
            assert_eq!(error.field(), Some("name"));
        }
    }

    #[test]
    fn only_the_envelope_shape_is_an_envelope() {
        let id = KeyId::new().to_string();
        for data in [
            json!({ "es:personal": 2, "key": null }),
            json!({ "es:personal": 1 }),
            json!({ "es:personal": "1", "key": null }),
            json!({ "es:personal": 1, "key": null, "nonce": "" }),
            json!({ "es:personal": 1, "key": id, "nonce": "", "data": "", "more": 1 }),
            json!({ "es:personal": 1, "key": id, "nonce": 1, "data": "" }),
            json!({ "es:personal": 1, "key": 7, "nonce": "", "data": "" }),
            json!({ "es:personal": "x", "address": "12 Marylebone Road" }),
        ] {
            assert!(!is_envelope(&data), "{data}");
            let mut payload = json!({ "customer_id": 42, "attributes": data.clone() });
            decrypt_fields("Registered", FIELDS, &mut payload, &HashMap::new()).unwrap();
            assert_eq!(payload["attributes"], data, "data is left as it is");
        }
        assert!(is_envelope(&json!({ "es:personal": 1, "key": null })));
        assert!(is_envelope(
            &json!({ "es:personal": 1, "key": id, "nonce": "", "data": "", "forgotten": [] })
        ));
    }

    #[test]
    fn a_gone_key_reads_as_the_envelopes_own_replacement_first() {
        let (mut payload, _) = encrypted();
        assert_eq!(payload["name"]["forgotten"], "(forgotten)");
        // A reader that declares nothing (a narrower type) still sees the replacement.
        decrypt_fields("Registered", &[], &mut payload, &HashMap::new()).unwrap();
        assert_eq!(payload["name"], "(forgotten)");
        assert_eq!(payload["note"], json!([]));
        // An envelope without one reads as the declared replacement, then `null`.
        let (mut payload, _) = encrypted();
        for field in ["name", "note"] {
            payload[field].as_object_mut().unwrap().remove("forgotten");
        }
        let mut undeclared = payload.clone();
        decrypt_fields("Registered", FIELDS, &mut payload, &HashMap::new()).unwrap();
        assert_eq!(payload["name"], "(forgotten)");
        decrypt_fields("Registered", &[], &mut undeclared, &HashMap::new()).unwrap();
        assert_eq!(undeclared["name"], Value::Null);
    }

    #[test]
    fn typed_payloads_seal_values_shaped_as_envelopes_and_leave_null() {
        let lookalike = json!({ "es:personal": 1, "key": null });
        let mut payload = json!({ "customer_id": 42, "name": lookalike, "phone": null });
        let subjects = subjects_to_seal("Registered", FIELDS, &payload, true).unwrap();
        assert_eq!(subjects.len(), 1);
        let (write, read) = keys_for(&subjects);
        seal_fields("Registered", FIELDS, &mut payload, &write, true).unwrap();
        assert!(payload["name"]["data"].is_string(), "{payload}");
        assert_eq!(payload["phone"], Value::Null, "null is stored as null");
        decrypt_fields("Registered", FIELDS, &mut payload, &read).unwrap();
        assert_eq!(payload["name"], lookalike);
        // A null value needs no subject.
        let none = json!({ "name": null, "phone": null });
        assert!(
            subjects_to_seal("Registered", FIELDS, &none, true)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn redaction_replaces_only_forgotten_subjects() {
        let mut payload = payload();
        redact_fields("Registered", FIELDS, &mut payload, &|subject| {
            subject.as_str() == "42"
        })
        .unwrap();
        assert_eq!(payload["name"], "(forgotten)");
        assert_eq!(payload["phone"], Value::Null);
        assert_eq!(payload["note"], json!(["likes engines"]));
    }
}
