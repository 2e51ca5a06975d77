//! The description of an event type's personal fields, as `#[derive(DomainEvent)]` writes
//! it from `#[personal(...)]` ([`DomainEvent::personal_fields`](crate::DomainEvent::personal_fields)).

use serde_json::Value;

/// One personal field of an event type's payload.
///
/// Only fields of a payload that is a JSON object are described (a struct event, or a
/// variant with named fields): `key` is the field's key in that object, as serde writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersonalField {
    /// The field's key in the payload object.
    pub key: &'static str,
    /// Whose personal data the field holds.
    pub subject: SubjectSource,
    /// What a reader sees in the field's place once its subject is forgotten.
    pub forgotten: Forgotten,
}

/// Where the data subject of a personal field comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectSource {
    /// The value of another field of the same payload, by its key (`subject = customer_id`):
    /// a string is the subject as it is, any other value its JSON text.
    Field(&'static str),
    /// A subject named in the declaration (`subject = "fixed:..."`, without the `fixed:`).
    Fixed(&'static str),
}

/// What a reader sees in a personal field's place once its subject is forgotten.
///
/// Two `TypeDefault`s compare equal whatever their functions (function addresses are not
/// reliable to compare).
#[derive(Debug, Clone, Copy)]
pub enum Forgotten {
    /// `null`: the field is an `Option`, which reads as `None` (the default for an
    /// `Option` field).
    Null,
    /// A fixed text (`forgotten = "..."`), for a field that reads a string.
    Text(&'static str),
    /// The field type's `Default`, encoded (`forgotten = Default`); the function makes it.
    /// (Not named `Default`: a second item of that name in a dependency makes rustc spell
    /// the trait `std::default::Default` in every error message of its users.)
    TypeDefault(fn() -> Value),
}

impl Forgotten {
    /// The JSON value a reader sees.
    pub fn value(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Text(text) => Value::String((*text).to_owned()),
            Self::TypeDefault(make) => make(),
        }
    }
}

impl PartialEq for Forgotten {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Null, Self::Null) | (Self::TypeDefault(_), Self::TypeDefault(_)) => true,
            (Self::Text(a), Self::Text(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Forgotten {}
