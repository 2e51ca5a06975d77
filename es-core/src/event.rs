//! Events: the [`DomainEvent`] contract, the envelope a store records around each event, and
//! the metadata that travels with it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

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

/// Who and what caused an event, carried beside it in the store.
///
/// Command execution fills in the causation id (the command's id) and the correlation id
/// (the first command's id of a flow, carried from event to command to event); the actor and
/// the free-form `user` map come from the caller.
///
/// ```
/// use es_core::Metadata;
/// use uuid::Uuid;
///
/// let correlation = Uuid::now_v7();
/// let metadata = Metadata::new()
///     .with_correlation_id(correlation)
///     .with_actor("ada")
///     .with_user("tenant", "acme");
/// assert_eq!(metadata.correlation_id, Some(correlation));
/// assert_eq!(metadata.user["tenant"], "acme");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Metadata {
    /// The id shared by everything one business flow caused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The id of the command or event that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who caused the event (a user, a service), as the application names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Free-form application metadata.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub user: serde_json::Map<String, Value>,
    /// The W3C trace context (`traceparent`) of the span that recorded the event, so that
    /// whoever handles it continues the trace (see [`telemetry`](crate::telemetry)).
    /// Serialized as its canonical `traceparent` string; an invalid stored value is
    /// dropped when read, never an error.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "valid_traceparent"
    )]
    pub traceparent: Option<crate::telemetry::TraceContext>,
}

/// Reads a traceparent, dropping one that is not valid: a bad trace context must never
/// make an event unreadable.
fn valid_traceparent<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<crate::telemetry::TraceContext>, D::Error> {
    let value = Option::<Value>::deserialize(deserializer)?;
    Ok(match value {
        Some(Value::String(text)) => crate::telemetry::TraceContext::parse(&text),
        _ => None,
    })
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: Uuid) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    #[must_use]
    pub fn with_causation_id(mut self, id: Uuid) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Sets the actor.
    #[must_use]
    pub fn with_actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Adds one free-form entry.
    #[must_use]
    pub fn with_user(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.user.insert(key.into(), value.into());
        self
    }

    /// Sets the W3C trace context, if `traceparent` is a valid one
    /// ([`TraceContext::parse`](crate::telemetry::TraceContext::parse)); an invalid one
    /// is dropped (and leaves what was set). Only the parsed context is kept, never the
    /// text: a later version's extra fields are not.
    #[must_use]
    pub fn with_traceparent(mut self, traceparent: impl AsRef<str>) -> Self {
        if let Some(context) = crate::telemetry::TraceContext::parse(traceparent.as_ref()) {
            self.traceparent = Some(context);
        }
        self
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
    fn metadata_round_trips_through_json() {
        let metadata = Metadata::new()
            .with_correlation_id(Uuid::now_v7())
            .with_causation_id(Uuid::now_v7())
            .with_actor("ada")
            .with_user("ip", "10.0.0.1");
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), metadata);
    }

    #[test]
    fn metadata_stored_before_traceparents_reads_unchanged() {
        let stored = json!({
            "correlation_id": "0190a0c8-0000-7000-8000-000000000001",
            "actor": "ada",
            "user": { "tenant": "acme" }
        });
        let metadata: Metadata = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(metadata.traceparent, None);
        assert_eq!(metadata.actor.as_deref(), Some("ada"));
        // And writes back exactly as it was: no `traceparent` key.
        assert_eq!(serde_json::to_value(&metadata).unwrap(), stored);
    }

    #[test]
    fn traceparent_round_trips_and_an_invalid_one_is_dropped() {
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let metadata = Metadata::new().with_traceparent(traceparent);
        let json = serde_json::to_value(&metadata).unwrap();
        assert_eq!(json, json!({ "traceparent": traceparent }));
        assert_eq!(serde_json::from_value::<Metadata>(json).unwrap(), metadata);

        assert_eq!(
            Metadata::new().with_traceparent("nonsense").traceparent,
            None
        );
        for bad in [json!("nonsense"), json!(42), json!(null), json!({ "a": 1 })] {
            let read: Metadata =
                serde_json::from_value(json!({ "actor": "ada", "traceparent": bad })).unwrap();
            assert_eq!(read.traceparent, None, "{bad} was kept");
            assert_eq!(read.actor.as_deref(), Some("ada"));
        }
    }

    #[test]
    fn only_the_canonical_traceparent_is_kept() {
        let canonical = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-vendor=x";
        let metadata = Metadata::new().with_traceparent(later);
        assert_eq!(
            serde_json::to_value(&metadata).unwrap(),
            json!({ "traceparent": canonical })
        );
        let read: Metadata = serde_json::from_value(json!({ "traceparent": later })).unwrap();
        assert_eq!(read, metadata);
        for bad in [
            format!("{later}-\0"),
            format!("{later}\r\nNats-Msg-Id: x"),
            format!("{later}-{}", "x".repeat(1 << 20)),
        ] {
            assert_eq!(Metadata::new().with_traceparent(&bad).traceparent, None);
            let read: Metadata = serde_json::from_value(json!({ "traceparent": bad })).unwrap();
            assert_eq!(read.traceparent, None);
        }
    }

    #[test]
    fn empty_metadata_is_an_empty_object() {
        assert_eq!(serde_json::to_value(Metadata::new()).unwrap(), json!({}));
    }

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
