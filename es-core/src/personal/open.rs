//! Opening what a [`Protected`] store reads: each stored event's sealed fields decrypted
//! with its subjects' keys (or replaced, once forgotten) and the event decoded, on every
//! read path.

use futures_core::Stream;
use futures_util::StreamExt as _;

use crate::error::ReadError;
use crate::event::{DomainEvent, EventEnvelope, RawEvent};
use crate::store::EventStore;
use crate::stream::{Position, StreamId, Version};

use super::cipher::{CipherError, decrypt_fields, key_ids_of};
use super::envelope::has_envelope;
use super::keys::KeyStore;
use super::protected::{Protected, key_failure};

impl<S: EventStore, K: KeyStore> Protected<S, K> {
    /// An event as it was stored (its personal fields sealed), opened with this store's
    /// keys and decoded as `E`: what every read path of `Protected` does, for copies of
    /// the events read elsewhere. A service consuming events relayed to NATS (es-nats
    /// relays the sealed payloads when its relay runs on the inner store) decodes each
    /// message as a `RawEvent` and opens it here: it reads the values while the subject's
    /// key exists, and the replacement once the subject is forgotten.
    ///
    /// # Errors
    ///
    /// [`ReadError::Corrupt`] for a sealed field that does not open (damaged, or moved to
    /// another field or event type), [`ReadError::Store`] if the keys cannot be fetched
    /// (its source [`KeyError::UnknownKey`](super::KeyError::UnknownKey) for a key the key
    /// store never held),
    /// [`ReadError::Decode`] if the opened event does not decode as `E`.
    pub async fn open<E: DomainEvent>(
        &self,
        envelope: EventEnvelope<RawEvent>,
    ) -> Result<EventEnvelope<E>, ReadError> {
        let EventEnvelope {
            event_id,
            stream_id,
            version,
            position,
            recorded_at,
            metadata,
            event,
        } = envelope;
        let event = self
            .open_event(event_id, &stream_id, version, position, event)
            .await?;
        Ok(EventEnvelope {
            event_id,
            stream_id,
            version,
            position,
            recorded_at,
            metadata,
            event,
        })
    }

    /// The stored event `event` (its id, stream, version and position name it in
    /// errors), opened and decoded as `E`: [`Protected::open`] without the envelope.
    pub(super) async fn open_event<E: DomainEvent>(
        &self,
        event_id: uuid::Uuid,
        stream_id: &StreamId,
        version: Version,
        position: Position,
        event: RawEvent,
    ) -> Result<E, ReadError> {
        let RawEvent {
            event_type,
            schema_version,
            mut payload,
        } = event;
        let corrupt = |error: CipherError| ReadError::Corrupt {
            detail: format!(
                "event {event_id} at version {version} of stream `{stream_id}` (position {position}): {error}"
            ),
        };
        if has_envelope(&payload) {
            // So that a raw copy of it through this store is refused while its fields
            // are not declared, rather than written with them in clear.
            self.types.saw_sealed(&event_type);
        }
        let ids = key_ids_of(&event_type, &payload).map_err(corrupt)?;
        let keys = self.found_keys(ids).await.map_err(|error| {
            ReadError::Store(key_failure(
                "key fetch",
                error,
                format!("event {event_id} at version {version} of stream `{stream_id}`"),
            ))
        })?;
        // Also without keys: envelopes written for subjects already forgotten have none.
        let fields = self.fields_of::<E>(&event_type);
        decrypt_fields(&event_type, fields, &mut payload, &keys).map_err(corrupt)?;
        E::decode(&event_type, schema_version, payload).map_err(|source| {
            ReadError::decode(
                event_id,
                stream_id.clone(),
                version,
                position,
                event_type,
                schema_version,
                source,
            )
        })
    }

    /// Each stored event of `events`, opened and decoded.
    pub(super) fn open_all<E, R>(
        self,
        events: R,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, K, E, R>
    where
        E: DomainEvent,
        R: Stream<Item = Result<EventEnvelope<RawEvent>, ReadError>> + Send + 'static,
    {
        self.learn::<E>();
        events
            .then(move |item| {
                let this = self.clone();
                async move { this.open::<E>(item?).await }
            })
            // A stream of results ends at its first error, as the stores' own do: one this
            // layer raises (an envelope that does not open, a key that cannot be fetched,
            // an event that does not decode) ends it too.
            .scan(false, |failed, item| {
                let next = (!*failed).then_some(item);
                *failed |= next.as_ref().is_some_and(Result::is_err);
                std::future::ready(next)
            })
    }
}
