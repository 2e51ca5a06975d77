//! Events: the [`DomainEvent`] contract, the events to append and the envelope a store
//! records around each (the metadata that travels with them is in `metadata`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

// Where the rest of the crate has always found it.
pub use crate::metadata::Metadata;
use crate::payload::PayloadError;
use crate::stream::{Position, StreamId, Version};

/// A fact that happened in the domain, stored in a stream.
///
/// Each value knows its stable event type name (what the store records and what projections
/// filter on) and its schema version, and encodes its payload to JSON *without* a type tag:
/// the store keeps the type beside the payload, and [`DomainEvent::decode`] gets both back.
///
/// Derive it: `#[derive(DomainEvent)]` on an enum gives each variant its own event type (the
/// variant name unless `#[event(name = "...")]`), on a struct one event type (the struct name
/// unless renamed). See the derive's documentation for every option.
///
/// ```
/// use es_core::DomainEvent;
/// use serde_json::json;
///
/// #[derive(Debug, Clone, PartialEq, DomainEvent)]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "FundsDeposited", version = 2)]
///     Deposited { amount: u64 },
///     Closed,
/// }
///
/// let event = AccountEvent::Deposited { amount: 5 };
/// assert_eq!(event.event_type(), "FundsDeposited");
/// assert_eq!(event.schema_version(), 2);
/// assert_eq!(event.encode()?, json!({ "amount": 5 }));
/// assert_eq!(
///     AccountEvent::decode("FundsDeposited", 2, json!({ "amount": 5 }))?,
///     event
/// );
/// assert_eq!(AccountEvent::EVENT_TYPES, ["Opened", "FundsDeposited", "Closed"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a domain event",
    label = "not a domain event",
    note = "add `#[derive(DomainEvent)]` to `{Self}`"
)]
pub trait DomainEvent: Clone + Send + Sync + 'static {
    /// Every event type name this type encodes and decodes, in declaration order.
    const EVENT_TYPES: &'static [&'static str];

    /// The stable name of this event's type, as stored.
    fn event_type(&self) -> &str;

    /// The schema version of this event's payload (1 unless declared otherwise).
    fn schema_version(&self) -> u32;

    /// Encodes the payload, without a type tag.
    ///
    /// # Errors
    ///
    /// Fails if a field's `Serialize` implementation fails (for example a map with non-string
    /// keys).
    fn encode(&self) -> Result<Value, EncodeError>;

    /// Decodes an event from its stored type name, schema version and payload.
    ///
    /// # Errors
    ///
    /// Fails with a [`DecodeError`] naming the type and version if the type is unknown, the
    /// version is not the one this code reads, or the payload does not fit.
    fn decode(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, DecodeError>;

    /// Decodes an event from its stored type name, schema version and payload as JSON text.
    ///
    /// Stores that hold payloads as text use this. The default parses the text and calls
    /// [`DomainEvent::decode`]; the derive reads the text straight into the event, without
    /// building a [`Value`] first.
    ///
    /// # Errors
    ///
    /// As [`DomainEvent::decode`]; also when the text is not JSON.
    fn decode_json(
        event_type: &str,
        schema_version: u32,
        payload: &str,
    ) -> Result<Self, DecodeError> {
        let payload =
            serde_json::from_str(payload).map_err(|error| DecodeError::InvalidPayload {
                event_type: event_type.to_owned(),
                version: schema_version,
                source: PayloadError::from(error),
            })?;
        Self::decode(event_type, schema_version, payload)
    }

    /// Decodes an event from a borrowed payload, as [`DomainEvent::decode`] does: stores
    /// use it to check, before they write an event, that it reads back
    /// ([`limits::encode_batch`](crate::limits::encode_batch)). The default clones the
    /// payload; the derive reads the borrowed value.
    ///
    /// # Errors
    ///
    /// As [`DomainEvent::decode`].
    fn decode_value(
        event_type: &str,
        schema_version: u32,
        payload: &Value,
    ) -> Result<Self, DecodeError> {
        Self::decode(event_type, schema_version, payload.clone())
    }

    /// The [tags](crate::Tag) this event carries because of what it says (the derive's
    /// `#[tag]` fields): stores add them to the event's [`Metadata::tags`] when they
    /// append it. None by default.
    ///
    /// Tags are worked out once, when the event is appended, and stored with it; reading
    /// does not call this again. So events stored before their type gained a `#[tag]`
    /// field (or a new prefix) carry no such tag, and queries by it do not select them: a
    /// decision that relies on the new tag misses the old events. Backfilling means
    /// re-tagging the stored rows, for which es-rs has no tool yet; until then, give the
    /// old events the tag some other way (a decision's own state that reads them by
    /// type), or tag from the start.
    ///
    /// # Errors
    ///
    /// [`TagError`](crate::TagError) when a field's value does not make a valid tag; the
    /// append then fails with [`AppendError::InvalidTag`](crate::AppendError::InvalidTag).
    fn tags(&self) -> Result<Vec<crate::Tag>, crate::TagError> {
        Ok(Vec::new())
    }

    /// The personal fields of the event type `event_type` (the derive's `#[personal]`
    /// fields; see [`crate::personal`]), in declaration order. None by default, and for an
    /// event type this type does not know.
    fn personal_fields(event_type: &str) -> &'static [crate::personal::PersonalField] {
        let _ = event_type;
        &[]
    }

    /// Whether [`DomainEvent::decode`] reads this event type name. Types that read any event
    /// (such as [`RawEvent`]) override it.
    fn decodes(event_type: &str) -> bool {
        Self::EVENT_TYPES.contains(&event_type)
    }
}

/// An event's payload could not be encoded.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode event `{event_type}`")]
pub struct EncodeError {
    event_type: String,
    #[source]
    source: serde_json::Error,
}

impl EncodeError {
    /// An encoding failure of an event of type `event_type`.
    pub fn new(event_type: impl Into<String>, source: serde_json::Error) -> Self {
        Self {
            event_type: event_type.into(),
            source,
        }
    }

    /// The type of the event that could not be encoded.
    pub fn event_type(&self) -> &str {
        &self.event_type
    }
}

/// A stored event could not be decoded into the requested type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type does not know this event type name.
    #[error("unknown event type `{event_type}`")]
    UnknownEventType {
        /// The stored event type name.
        event_type: String,
    },
    /// The stored schema version is not the one the current code reads.
    #[error(
        "event `{event_type}` is stored with schema version {version}, but the code reads version {supported}"
    )]
    UnsupportedVersion {
        /// The stored event type name.
        event_type: String,
        /// The stored schema version.
        version: u32,
        /// The version the current code reads.
        supported: u32,
    },
    /// The payload does not match the event's shape.
    #[error("payload of event `{event_type}` (schema version {version}) does not match its type")]
    InvalidPayload {
        /// The stored event type name.
        event_type: String,
        /// The stored schema version.
        version: u32,
        /// What does not fit, without the stored values.
        #[source]
        source: PayloadError,
    },
    /// An upcaster failed to bring the stored event up to date.
    #[error("cannot upcast event `{event_type}` from schema version {version}")]
    Upcast {
        /// The event type name the step read.
        event_type: String,
        /// The schema version the step read.
        version: u32,
        /// The upcaster's error.
        #[source]
        source: UpcastError,
    },
    /// Upcasting went round in circles (steps that never reach a current version).
    #[error(
        "upcasting event `{event_type}` (at schema version {version}) does not reach a current version"
    )]
    UpcastLoop {
        /// Where the steps were when they were stopped.
        event_type: String,
        /// The schema version there.
        version: u32,
    },
}

impl DecodeError {
    /// The event type name the failure is about.
    pub fn event_type(&self) -> &str {
        match self {
            Self::UnknownEventType { event_type }
            | Self::UnsupportedVersion { event_type, .. }
            | Self::InvalidPayload { event_type, .. }
            | Self::Upcast { event_type, .. }
            | Self::UpcastLoop { event_type, .. } => event_type,
        }
    }
}

/// Why an upcaster could not bring a stored event up to date.
///
/// The message and the source reach logs with the decode error: say what is wrong, never
/// the stored values. `?` on a `serde_json::Error` keeps only what [`PayloadError`] keeps
/// of it; pass a serde error to [`UpcastError::caused_by`] as a [`PayloadError`] too.
///
/// ```
/// use es_core::{RawEvent, UpcastError};
/// use serde_json::json;
///
/// /// Version 2 of `OrderShipped` renamed `by` to `carrier`.
/// fn shipped_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
///     Ok(event.rename_field("by", "carrier")?.with_version(2))
/// }
///
/// let old = RawEvent::new("OrderShipped", 1, json!({ "by": "ups" }));
/// assert_eq!(shipped_v1_to_v2(old)?, RawEvent::new("OrderShipped", 2, json!({ "carrier": "ups" })));
/// # Ok::<(), UpcastError>(())
/// ```
#[derive(Debug)]
pub struct UpcastError(Box<UpcastFailure>);

/// What [`UpcastError`] holds; boxed so that decode errors stay small.
#[derive(Debug)]
struct UpcastFailure {
    message: String,
    source: Option<crate::error::BoxError>,
}

impl std::fmt::Display for UpcastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for UpcastError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

impl UpcastError {
    /// An upcast failure, explained.
    pub fn new(message: impl Into<String>) -> Self {
        Self(Box::new(UpcastFailure {
            message: message.into(),
            source: None,
        }))
    }

    /// An upcast failure caused by `source`.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl Into<crate::error::BoxError>,
    ) -> Self {
        Self(Box::new(UpcastFailure {
            message: message.into(),
            source: Some(source.into()),
        }))
    }
}

impl From<serde_json::Error> for UpcastError {
    /// The old payload does not fit the type it was read as; the source is a
    /// [`PayloadError`], which keeps what serde reported without the stored values.
    fn from(error: serde_json::Error) -> Self {
        Self::caused_by(
            "the old payload does not have the expected shape",
            PayloadError::from(error),
        )
    }
}

/// An event to append, with its id and metadata.
///
/// The id makes appends idempotent: appending an event whose id the stream already holds
/// does not store it twice (see [`EventStore::append`](crate::EventStore::append)).
///
/// ```
/// use es_core::{Metadata, NewEvent};
/// # #[derive(Debug, Clone, PartialEq, es_core::DomainEvent)]
/// # enum CounterEvent { Incremented }
///
/// let event = NewEvent::new(CounterEvent::Incremented).with_metadata(Metadata::new().with_actor("ada"));
/// assert_eq!(event.event_id.get_version_num(), 7);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent<E> {
    /// The event's unique id (a UUID v7 unless set otherwise).
    pub event_id: Uuid,
    /// Who and what caused it.
    pub metadata: Metadata,
    /// The event itself.
    pub event: E,
}

impl<E> NewEvent<E> {
    /// The event with a fresh UUID v7 id and empty metadata.
    pub fn new(event: E) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            metadata: Metadata::default(),
            event,
        }
    }

    /// Replaces the event id.
    #[must_use]
    pub fn with_id(mut self, event_id: Uuid) -> Self {
        self.event_id = event_id;
        self
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

impl<E> From<E> for NewEvent<E> {
    fn from(event: E) -> Self {
        Self::new(event)
    }
}

/// A recorded event: the event and everything the store knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventEnvelope<E> {
    /// The event's unique id.
    pub event_id: Uuid,
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its version in the stream (1 for the first event).
    pub version: Version,
    /// Its position in the store's global log.
    pub position: Position,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
    /// Who and what caused it.
    pub metadata: Metadata,
    /// The event itself.
    pub event: E,
}

impl<E: DomainEvent> EventEnvelope<E> {
    /// The event's type name.
    pub fn event_type(&self) -> &str {
        self.event.event_type()
    }
}

impl<E> EventEnvelope<E> {
    /// The same envelope around a transformed event.
    pub fn map<F>(self, f: impl FnOnce(E) -> F) -> EventEnvelope<F> {
        EventEnvelope {
            event_id: self.event_id,
            stream_id: self.stream_id,
            version: self.version,
            position: self.position,
            recorded_at: self.recorded_at,
            metadata: self.metadata,
            event: f(self.event),
        }
    }
}

/// Any event, undecoded: its type name, schema version and JSON payload.
///
/// Reading with `RawEvent` accepts every event type, which suits tools and projections over
/// several categories; it also lets tests and migrations append events exactly as stored.
///
/// ```
/// use es_core::{DomainEvent, RawEvent};
/// use serde_json::json;
///
/// let raw = RawEvent::new("OrderShipped", 1, json!({ "carrier": "ups" }));
/// assert_eq!(raw.event_type(), "OrderShipped");
/// assert!(RawEvent::decodes("AnythingAtAll"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawEvent {
    /// The event type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload.
    pub payload: Value,
}

impl RawEvent {
    /// A raw event from its parts.
    pub fn new(event_type: impl Into<String>, schema_version: u32, payload: Value) -> Self {
        Self {
            event_type: event_type.into(),
            schema_version,
            payload,
        }
    }

    /// The same event at schema version `version` (an upcaster's last step).
    #[must_use]
    pub fn with_version(mut self, version: u32) -> Self {
        self.schema_version = version;
        self
    }

    /// The same event under another type name (an upcaster splitting or renaming a type).
    #[must_use]
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = event_type.into();
        self
    }

    /// The same event with payload field `from` renamed `to`.
    ///
    /// # Errors
    ///
    /// Fails if the payload is not an object or has no field `from`.
    pub fn rename_field(mut self, from: &str, to: &str) -> Result<Self, UpcastError> {
        let object = self.payload.as_object_mut().ok_or_else(|| {
            UpcastError::new(format!("payload of `{}` is not an object", self.event_type))
        })?;
        let value = object.remove(from).ok_or_else(|| {
            UpcastError::new(format!(
                "payload of `{}` has no field `{from}`",
                self.event_type
            ))
        })?;
        object.insert(to.to_owned(), value);
        Ok(self)
    }

    /// The same event with payload field `name` set to `value` (a field added with a
    /// default).
    ///
    /// # Errors
    ///
    /// Fails if the payload is not an object.
    pub fn with_field(mut self, name: &str, value: impl Into<Value>) -> Result<Self, UpcastError> {
        let object = self.payload.as_object_mut().ok_or_else(|| {
            UpcastError::new(format!("payload of `{}` is not an object", self.event_type))
        })?;
        object.insert(name.to_owned(), value.into());
        Ok(self)
    }

    /// Encodes a typed event as a raw one.
    ///
    /// # Errors
    ///
    /// Fails if the event cannot be encoded.
    pub fn from_event<E: DomainEvent>(event: &E) -> Result<Self, EncodeError> {
        Ok(Self::new(
            event.event_type(),
            event.schema_version(),
            event.encode()?,
        ))
    }

    /// Decodes this raw event as a typed one.
    ///
    /// # Errors
    ///
    /// Fails if `E` does not read this type, version or payload.
    pub fn into_event<E: DomainEvent>(self) -> Result<E, DecodeError> {
        E::decode(&self.event_type, self.schema_version, self.payload)
    }
}

impl DomainEvent for RawEvent {
    const EVENT_TYPES: &'static [&'static str] = &[];

    fn event_type(&self) -> &str {
        &self.event_type
    }

    fn schema_version(&self) -> u32 {
        self.schema_version
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        Ok(self.payload.clone())
    }

    fn decode(event_type: &str, schema_version: u32, payload: Value) -> Result<Self, DecodeError> {
        Ok(Self::new(event_type, schema_version, payload))
    }

    fn decodes(_event_type: &str) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decode_json_defaults_to_parsing_then_decode() {
        let raw = RawEvent::decode_json("X", 2, r#"{"a": [1]}"#).unwrap();
        assert_eq!(raw, RawEvent::new("X", 2, json!({ "a": [1] })));
        assert!(matches!(
            RawEvent::decode_json("X", 2, "{"),
            Err(DecodeError::InvalidPayload { version: 2, .. })
        ));
    }

    #[test]
    fn raw_event_reads_everything() {
        let raw = <RawEvent as DomainEvent>::decode("X", 3, json!([1])).unwrap();
        assert_eq!(raw, RawEvent::new("X", 3, json!([1])));
        assert_eq!(raw.encode().unwrap(), json!([1]));
    }
}
