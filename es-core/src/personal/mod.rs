//! Personal data that can be forgotten (crypto-shredding).
//!
//! An event field marked `#[personal(subject = customer_id)]` in
//! `#[derive(DomainEvent)]` holds personal data of a *data subject*: the person the value
//! of another field (or a fixed name) identifies. Such fields are meant to be stored
//! encrypted with a key of that subject's own, so that destroying the key (forgetting the
//! subject) makes them unreadable everywhere they were copied, while the log itself stays
//! append-only and intact; readers then see the replacement the field declares.
//!
//! This module holds what the derive describes ([`PersonalField`]): which fields of an event
//! type are personal, whose they are, and what a reader sees once they are forgotten.
//!
//! ```
//! use es_core::DomainEvent;
//! use es_core::personal::{Forgotten, SubjectSource};
//!
//! #[derive(Debug, Clone, DomainEvent)]
//! enum CustomerEvent {
//!     Registered {
//!         customer_id: String,
//!         #[personal(subject = customer_id, forgotten = "(forgotten)")]
//!         name: String,
//!         #[personal(subject = customer_id)]
//!         phone: Option<String>,
//!     },
//! }
//!
//! let fields = CustomerEvent::personal_fields("Registered");
//! assert_eq!(fields[0].key, "name");
//! assert_eq!(fields[0].subject, SubjectSource::Field("customer_id"));
//! assert_eq!(fields[0].forgotten, Forgotten::Text("(forgotten)"));
//! assert_eq!(fields[1].forgotten, Forgotten::Null);
//! ```

mod cache;
mod cipher;
mod envelope;
mod field;
#[cfg(test)]
pub(crate) mod fixture;
mod keys;
mod local;
mod memory;
mod open;
mod protected;
mod redact;
mod snapshot;

pub use cipher::{
    CipherError, FoundKeys, SubjectKeys, decrypt_fields, encrypt_fields, is_envelope, key_ids_of,
    subjects_of,
};
pub use field::{Forgotten, PersonalField, SubjectSource};
pub use keys::{DataKey, Forgetting, KeyEncryption, KeyError, KeyId, KeyStore, Subject};
pub use local::LocalKeyEncryption;
pub use memory::MemoryKeyStore;
pub use protected::{DEFAULT_KEY_CACHE_TTL, Protected};
pub use redact::redact;
