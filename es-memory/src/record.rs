//! One stored event, kept typed, and its conversion back into an envelope.

use std::any::Any;
use std::borrow::Cow;

use chrono::{DateTime, Utc};
use es_core::{
    DecodeError, DomainEvent, EncodeError, EventEnvelope, Metadata, Position, ReadError, StreamId,
    Version,
};
use serde_json::Value;
use uuid::Uuid;

/// A typed event with its type erased, so one log can hold events of every type.
pub(crate) trait ErasedEvent: Any + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn encode(&self) -> Result<Value, EncodeError>;
}

impl<E: DomainEvent> ErasedEvent for E {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        DomainEvent::encode(self)
    }
}

/// An event as the store keeps it: what every event has, then its typed body, in one
/// allocation (`Arc<Record>` is `Arc<Record<dyn ErasedEvent>>`, made from a
/// `Record<E>`).
///
/// In declared order (`repr(C)`): what only envelopes read first, then what a load reads
/// for every event (about 72 bytes), right before the body, so that a load touches two or
/// three cache lines of each record rather than three to five; records are spread over the
/// heap, and a profile of commands on many streams showed those misses as the load's main
/// cost.
#[repr(C)]
pub(crate) struct Record<B: ?Sized = dyn ErasedEvent> {
    pub(crate) stream_id: StreamId,
    pub(crate) metadata: Metadata,
    /// Borrowed when it is one of the names the event type declares, as it usually is:
    /// no allocation per event for it.
    pub(crate) event_type: Cow<'static, str>,
    /// Side by side with the time, whose 12 bytes leave it room: no padding.
    pub(crate) schema_version: u32,
    pub(crate) recorded_at: DateTime<Utc>,
    /// The encoded payload, kept by a strict store, which reads every event back from it.
    pub(crate) payload: Option<Value>,
    pub(crate) event_id: Uuid,
    pub(crate) version: Version,
    pub(crate) position: Position,
    /// Last: the part whose type is erased.
    pub(crate) body: B,
}

/// `event_type` as the record keeps it: the declared name it equals, if any.
pub(crate) fn type_name<E: DomainEvent>(event_type: &str) -> Cow<'static, str> {
    match E::EVENT_TYPES.iter().find(|name| **name == event_type) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(event_type.to_owned()),
    }
}

impl Record {
    /// The record as an envelope of `E`: a clone when `E` wrote it (unless the store is
    /// strict), else a decode of its encoding, exactly as a store that keeps JSON would.
    pub(crate) fn envelope<E: DomainEvent>(&self) -> Result<EventEnvelope<E>, ReadError> {
        let event = self.event()?;
        Ok(EventEnvelope {
            event_id: self.event_id,
            stream_id: self.stream_id.clone(),
            version: self.version,
            position: self.position,
            recorded_at: self.recorded_at,
            metadata: self.metadata.clone(),
            event,
        })
    }

    /// The event, if `E` wrote it and the store is not strict: what a clone reads.
    #[inline]
    pub(crate) fn typed<E: DomainEvent>(&self) -> Option<&E> {
        match &self.payload {
            None => self.body.as_any().downcast_ref::<E>(),
            Some(_) => None,
        }
    }

    /// The event as `E`: a clone when `E` wrote it (unless the store is strict), else a
    /// decode of its encoding.
    #[inline]
    pub(crate) fn event<E: DomainEvent>(&self) -> Result<E, ReadError> {
        match self.typed::<E>() {
            Some(event) => Ok(event.clone()),
            None => self.decode(),
        }
    }

    /// The event decoded as `E` from its encoding: the one kept (strict), or a fresh one.
    /// Out of line: the usual read is the clone above.
    #[cold]
    fn decode<E: DomainEvent>(&self) -> Result<E, ReadError> {
        let payload = match &self.payload {
            Some(payload) => payload.clone(),
            None => self.body.encode().map_err(|error| ReadError::Corrupt {
                detail: format!(
                    "event at version {} of stream `{}` cannot be re-encoded: {error}",
                    self.version, self.stream_id
                ),
            })?,
        };
        E::decode(&self.event_type, self.schema_version, payload)
            .map_err(|source| self.decode_error(source))
    }

    fn decode_error(&self, source: DecodeError) -> ReadError {
        ReadError::decode(
            self.event_id,
            self.stream_id.clone(),
            self.version,
            self.position,
            &*self.event_type,
            self.schema_version,
            source,
        )
    }
}
