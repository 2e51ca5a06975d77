//! [`Protected`]: a store decorator that encrypts personal fields on append and decrypts
//! (or redacts) them on every read, with an in-process cache of data keys.
//!
//! The inner store only ever sees [`RawEvent`]s whose personal fields are envelopes (see
//! the [cipher](super::encrypt_fields)), and snapshots of streams with personal data
//! encrypted (see `snapshot`). Everything else passes through.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use uuid::Uuid;

use crate::error::{AppendError, ReadError, StoreError, StoreErrorKind};
use crate::event::{DomainEvent, EncodeError, EventEnvelope, NewEvent, RawEvent};
use crate::query::{AppendCondition, Query};
use crate::store::{Committed, EventFilter, EventStore, Stall};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

use super::cache::{KeyCache, TypeMemo};
use super::cipher::{
    CipherError, FoundKeys, SubjectKeys, check_shape, misfit_replacements, seal_fields,
    subjects_to_seal,
};
use super::field::PersonalField;
use super::keys::{Forgetting, KeyError, KeyId, KeyStore, Subject};

/// How long a data key stays in a [`Protected`]'s cache unless set otherwise.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(60);

/// An event store whose events' personal fields are stored encrypted, each with its
/// subject's key from `K`, so that [`Protected::forget`] makes them unreadable everywhere.
///
/// It implements every store trait its inner store does ([`EventStore`],
/// [`SnapshotStore`](crate::SnapshotStore), [`CheckpointStore`](crate::CheckpointStore),
/// [`DeadLetterStore`](crate::DeadLetterStore), [`LeaseStore`](crate::LeaseStore)), so
/// that a [`Repository`](crate::Repository), a
/// [`ProjectionRunner`](crate::ProjectionRunner) or a process manager runs over it
/// unchanged:
///
/// - **appends** encode each event (with the tags it declares, as every store does),
///   replace its personal fields by envelopes and hand the inner store [`RawEvent`]s; a
///   subject already forgotten gets an envelope without data, so nothing personal is
///   stored;
/// - **every read** (streams, the log, subscriptions, queries, [`EventStore::find_event`])
///   reads [`RawEvent`]s from the inner store and opens their envelopes: a field whose key
///   exists reads as written, one whose subject is forgotten reads as the replacement its
///   field declares ([`Forgotten`](super::Forgotten)), never as an error. A tampered
///   envelope is [`ReadError::Corrupt`], naming the event, stream, version and field but
///   no value. The replacement is the one stored in the envelope when the event was
///   written, so a reader that knows the event under an alias, at another schema version
///   or not at all sees it too; for envelopes written without one, the one declared by the
///   reading type (for a reader of [`RawEvent`]s, by an event type this store has seen: by
///   an append or a typed read, or [`Protected::with_events`]), `null` otherwise. A reader
///   of [`RawEvent`]s gets the envelopes opened too;
/// - a personal field holding `null` (an `Option`'s `None`) holds nothing personal: it is
///   stored as `null`, and needs no subject;
/// - **appends of [`RawEvent`]s** (tools copying events) encrypt only the fields of
///   event types this store knows (declared by a typed append or read, or by
///   [`Protected::with_events`]), and leave fields already sealed as they are. A raw
///   append of a type whose events this store read sealed without knowing its fields is
///   refused ([`AppendError::Encode`]): their opened values would be stored in clear.
///   Declare the types a tool copies with [`Protected::with_events`];
/// - **typed appends** seal every declared personal field whatever it holds, and are
///   refused ([`AppendError::Encode`]) when the payload is not the shape the fields
///   declare (a field or its subject field missing, not an object), or, checked once per
///   event type, when a replacement would not decode;
/// - **snapshots** of streams with personal data are stored encrypted under a key split
///   across the subjects of the stream's events, so forgetting any one of them makes the
///   snapshot unreadable: it then loads as absent and the repository replays the
///   (redacted) events.
///
/// # What it does not protect, and where plaintext can still be
///
/// - Only `#[personal]` fields are encrypted: metadata (actor, user entries), stream ids,
///   tags, event types and the subjects themselves are stored in clear; choose stream and
///   subject ids that are not personal data.
/// - Whatever read the values before a forget keeps them: read models (rebuild them, or
///   have them drop a subject's rows), a [`Repository`](crate::Repository) built
///   `with_cache` (its cached states stay in memory until evicted or the process ends),
///   in-process projections.
/// - Paths that read the inner store directly see the envelopes: run the NATS relay on
///   [`Protected::inner`] (it then publishes the sealed payloads, which a consumer opens
///   with [`Protected::open`]; run on `Protected`, it would publish the values in clear,
///   and nothing in JetStream is ever forgotten), and keep personal values out of a
///   PostgreSQL store's inline projections, which see the sealed fields.
/// - A key the key store never held is a read error ([`KeyError::UnknownKey`](super::KeyError::UnknownKey)
///   inside [`ReadError::Store`]), not a forgotten value: a key store on the wrong schema,
///   or a [`MemoryKeyStore`](super::MemoryKeyStore) after a restart, fails the reads of
///   sealed fields rather than redact them all.
///
/// # The key cache
///
/// Data keys are cached in process for a while ([`DEFAULT_KEY_CACHE_TTL`],
/// [`Protected::with_key_cache_ttl`]) so that reads do not ask the key store for every
/// event. [`Protected::forget`] empties the cache at once; a subject forgotten through
/// another process (or straight through the key store) stays readable here for at most the
/// TTL after that. A TTL of zero turns the cache off.
///
/// ```
/// use es_core::personal::{MemoryKeyStore, Protected, Subject};
/// use es_core::{EventStore, ExpectedVersion, NewEvent, RawEvent, StreamId};
/// use futures_util::TryStreamExt as _;
/// # use es_core::personal::{Forgotten, PersonalField, SubjectSource};
/// # use es_core::{DecodeError, EncodeError};
/// # use serde_json::{json, Value};
/// # #[derive(Debug, Clone, PartialEq)]
/// # struct Registered { customer_id: String, name: String }
/// # impl es_core::DomainEvent for Registered {
/// #     const EVENT_TYPES: &'static [&'static str] = &["Registered"];
/// #     fn event_type(&self) -> &str { "Registered" }
/// #     fn schema_version(&self) -> u32 { 1 }
/// #     fn encode(&self) -> Result<Value, EncodeError> {
/// #         Ok(json!({ "customer_id": self.customer_id, "name": self.name }))
/// #     }
/// #     fn decode(_: &str, _: u32, payload: Value) -> Result<Self, DecodeError> {
/// #         Ok(Self {
/// #             customer_id: payload["customer_id"].as_str().unwrap_or_default().to_owned(),
/// #             name: payload["name"].as_str().unwrap_or_default().to_owned(),
/// #         })
/// #     }
/// #     fn personal_fields(_: &str) -> &'static [PersonalField] {
/// #         &[PersonalField {
/// #             key: "name",
/// #             subject: SubjectSource::Field("customer_id"),
/// #             forgotten: Forgotten::Text("(forgotten)"),
/// #         }]
/// #     }
/// # }
///
/// # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
/// // `Registered` marks `name` as `#[personal(subject = customer_id, forgotten = "(forgotten)")]`.
/// let inner = es_memory::MemoryEventStore::new();
/// let store = Protected::new(inner.clone(), MemoryKeyStore::new());
/// let stream = StreamId::new("customer", "c1")?;
/// let event = Registered { customer_id: "c1".into(), name: "Ada".into() };
/// store.append(&stream, ExpectedVersion::NoStream, vec![NewEvent::new(event.clone())]).await?;
///
/// let read: Vec<_> = store.read_stream::<Registered>(&stream, 1.into()).try_collect().await?;
/// assert_eq!(read[0].event, event);
/// let stored: Vec<_> = inner.read_stream::<RawEvent>(&stream, 1.into()).try_collect().await?;
/// assert!(!stored[0].event.payload.to_string().contains("Ada"));
///
/// store.forget(&Subject::new("c1")?, "support ticket 12").await?;
/// let read: Vec<_> = store.read_stream::<Registered>(&stream, 1.into()).try_collect().await?;
/// assert_eq!(read[0].event.name, "(forgotten)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Protected<S, K> {
    pub(super) store: S,
    pub(super) keys: K,
    cache: Arc<KeyCache>,
    /// What this store learned about event types.
    pub(super) types: Arc<TypeMemo>,
}

impl<S: Clone, K: Clone> Clone for Protected<S, K> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            keys: self.keys.clone(),
            cache: Arc::clone(&self.cache),
            types: Arc::clone(&self.types),
        }
    }
}

impl<S: fmt::Debug, K: fmt::Debug> fmt::Debug for Protected<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protected")
            .field("store", &self.store)
            .field("keys", &self.keys)
            .field("key_cache_ttl", &self.cache.ttl)
            .finish_non_exhaustive()
    }
}

impl<S: EventStore, K: KeyStore> Protected<S, K> {
    /// `store`, with personal fields encrypted with keys from `keys`.
    pub fn new(store: S, keys: K) -> Self {
        Self {
            store,
            keys,
            cache: Arc::new(KeyCache::new(DEFAULT_KEY_CACHE_TTL)),
            types: Arc::default(),
        }
    }

    /// Keeps data keys in the cache for `ttl` (zero: no cache): the longest a subject
    /// forgotten by another process stays readable here. Clones made before share the old
    /// cache.
    #[must_use]
    pub fn with_key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache = Arc::new(KeyCache::new(ttl));
        self
    }

    /// Learns the personal fields of `E`'s event types, so that readers of [`RawEvent`]s
    /// (tools, process managers' reads) see a forgotten field of theirs as its declared
    /// replacement when its envelope carries none, and so that appends of [`RawEvent`]s
    /// of those types (a tool copying events) seal their personal fields: without it, a
    /// raw append of a type read sealed here is refused. Typed appends and reads learn
    /// them by themselves.
    #[must_use]
    pub fn with_events<E: DomainEvent>(self) -> Self {
        self.learn::<E>();
        self
    }

    /// The inner store, which holds the events as stored (personal fields encrypted).
    pub fn inner(&self) -> &S {
        &self.store
    }

    /// The key store.
    pub fn keys(&self) -> &K {
        &self.keys
    }

    /// Forgets `subject`: destroys its keys, so that its personal fields read as their
    /// replacements from now on in every stream, and its streams' snapshots are no longer
    /// used; records who asked (`by`, an operator or a ticket, not personal data). Empties
    /// this store's key cache. Idempotent: a repeat returns the first record.
    ///
    /// # Errors
    ///
    /// Fails if the key store fails; then the subject may or may not be forgotten, and
    /// calling it again is safe.
    pub async fn forget(&self, subject: &Subject, by: &str) -> Result<Forgetting, KeyError> {
        let outcome = self.keys.forget(subject, by).await;
        // Also on failure: the keys may be gone all the same.
        self.cache.clear();
        outcome
    }

    pub(super) fn learn<E: DomainEvent>(&self) {
        self.types.learn::<E>();
    }

    /// The personal fields of `event_type` as `E` declares them, or for a type that reads
    /// any event ([`RawEvent`]) as this store learned them.
    pub(super) fn fields_of<E: DomainEvent>(&self, event_type: &str) -> &'static [PersonalField] {
        if !E::EVENT_TYPES.is_empty() {
            return E::personal_fields(event_type);
        }
        self.types.fields(event_type)
    }

    /// Checks, the first time this store appends an event of type `event_type` as `E`,
    /// that `E` decodes it once its personal fields are forgotten: `payload` (the event
    /// encoded) with each personal field replaced by its replacement. A replacement that
    /// does not fit its field's type (`forgotten = "text"` on a number) would make every
    /// read of the event fail once its subject is forgotten: refused before anything is
    /// stored, while it is still a fix of one attribute.
    fn check_replacements<E: DomainEvent>(
        &self,
        stream: &StreamId,
        event: &E,
        payload: &serde_json::Value,
    ) -> Result<(), AppendError> {
        let event_type = event.event_type();
        let fields = E::personal_fields(event_type);
        let Some(object) = payload.as_object() else {
            return Ok(());
        };
        if fields.is_empty() {
            return Ok(());
        }
        if self.types.checked::<E>(event_type) {
            return Ok(());
        }
        let named = misfit_replacements::<E>(event_type, event.schema_version(), fields, object);
        if !named.is_empty() {
            // The decoder's own words are left out: they may quote other fields' values.
            let message = format!(
                "event `{event_type}` would not decode once its subject is forgotten: the replacement of personal field(s) `{}` does not fit the field's type; fix its `forgotten = ...` (a text only for a string field, `Default` for any type with a default, nothing for an `Option`)",
                named.join("`, `")
            );
            return Err(AppendError::Encode {
                stream: stream.clone(),
                event_type: event_type.to_owned(),
                source: EncodeError::new(
                    event_type,
                    <serde_json::Error as serde::ser::Error>::custom(message),
                ),
            });
        }
        self.types.check::<E>(event_type);
        Ok(())
    }

    /// The keys of `subjects`, for an append.
    async fn subject_keys(&self, subjects: BTreeSet<Subject>) -> Result<SubjectKeys, KeyError> {
        let mut keys = HashMap::with_capacity(subjects.len());
        for subject in subjects {
            let key = match self.cache.by_subject(&subject) {
                Some(key) => Some(key),
                None => {
                    // Noted before the await: a forget meanwhile makes the key not kept.
                    let epoch = self.cache.epoch();
                    let key = self.keys.key_for(&subject).await?;
                    if let Some((id, key)) = &key {
                        self.cache.keep(epoch, *id, key, Some(&subject));
                    }
                    key
                }
            };
            keys.insert(subject, key);
        }
        Ok(keys)
    }

    /// The keys with ids `ids` (`None` for those gone), for a read.
    pub(super) async fn found_keys(&self, ids: BTreeSet<KeyId>) -> Result<FoundKeys, KeyError> {
        let mut keys = HashMap::with_capacity(ids.len());
        for id in ids {
            let key = match self.cache.by_id(id) {
                Some(cached) => cached,
                None => {
                    // Noted before the await: a forget meanwhile makes the key not kept.
                    let epoch = self.cache.epoch();
                    let key = self.keys.key(id).await?;
                    match &key {
                        Some(key) => self.cache.keep(epoch, id, key, None),
                        None => self.cache.keep_absent(epoch, id),
                    }
                    key
                }
            };
            keys.insert(id, key);
        }
        Ok(keys)
    }

    /// Encodes `events` and encrypts their personal fields: what the inner store appends.
    async fn seal_batch<E: DomainEvent>(
        &self,
        stream: &StreamId,
        events: &mut [NewEvent<E>],
    ) -> Result<Vec<NewEvent<RawEvent>>, AppendError> {
        self.learn::<E>();
        // The checks every store runs, on the events as the caller gave them (and their
        // declared tags into the metadata, which the raw events would not declare).
        let payloads = crate::limits::encode_batch(stream, events)?;
        // A typed event's personal fields are sealed whatever they hold; a raw event's
        // already sealed ones (a stored event copied as it is) are left as they are.
        let typed = !E::EVENT_TYPES.is_empty();
        let mut subjects = BTreeSet::new();
        for (new, payload) in events.iter().zip(&payloads) {
            let event_type = new.event.event_type();
            let fields = self.fields_of::<E>(event_type);
            if !typed && fields.is_empty() && self.types.seen_sealed(event_type) {
                return Err(undeclared(stream, event_type));
            }
            if typed {
                // Never store a value in clear because the encoding is not the declared
                // shape, nor one that no reader decodes once its subject is forgotten.
                check_shape(event_type, E::personal_fields(event_type), payload)
                    .map_err(|error| unencodable(stream, &error))?;
                self.check_replacements(stream, &new.event, payload)?;
            }
            subjects.extend(
                subjects_to_seal(event_type, fields, payload, typed)
                    .map_err(|error| unencodable(stream, &error))?,
            );
        }
        let keys = self
            .subject_keys(subjects)
            .await
            .map_err(|error| AppendError::Store {
                stream: stream.clone(),
                source: key_failure("key fetch", error, format!("an append to `{stream}`")),
            })?;
        let mut sealed = Vec::with_capacity(events.len());
        for (new, mut payload) in events.iter().zip(payloads) {
            let event_type = new.event.event_type();
            seal_fields(
                event_type,
                self.fields_of::<E>(event_type),
                &mut payload,
                &keys,
                typed,
            )
            .map_err(|error| unencodable(stream, &error))?;
            sealed.push(NewEvent {
                event_id: new.event_id,
                metadata: new.metadata.clone(),
                event: RawEvent::new(event_type, new.event.schema_version(), payload),
            });
        }
        Ok(sealed)
    }

    /// The caller's events in place of the raw ones the inner store recorded.
    async fn committed<E: DomainEvent>(
        &self,
        committed: Committed<RawEvent>,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        let Committed {
            stream_id,
            version,
            events: recorded,
            duplicate,
        } = committed;
        let mut out = Vec::with_capacity(recorded.len());
        if recorded.len() == events.len() {
            for (envelope, new) in recorded.into_iter().zip(events) {
                out.push(envelope.map(|_| new.event));
            }
        } else {
            // Not what any store does, but then the stored events are the truth.
            for envelope in recorded {
                out.push(
                    self.open::<E>(envelope)
                        .await
                        .map_err(|error| AppendError::Store {
                            stream: stream_id.clone(),
                            source: StoreError::new("append", error),
                        })?,
                );
            }
        }
        Ok(Committed {
            stream_id,
            version,
            events: out,
            duplicate,
        })
    }
}

/// An append refused because a personal field cannot be encrypted (its subject cannot be
/// told, or the payload is not the shape its fields declare).
fn unencodable(stream: &StreamId, error: &CipherError) -> AppendError {
    AppendError::Encode {
        stream: stream.clone(),
        event_type: error.event_type().to_owned(),
        source: EncodeError::new(
            error.event_type(),
            <serde_json::Error as serde::ser::Error>::custom(error.to_string()),
        ),
    }
}

/// A raw append refused: events of its type were read here with sealed fields, which
/// this store does not know, so it would store them in clear.
fn undeclared(stream: &StreamId, event_type: &str) -> AppendError {
    let message = format!(
        "events of type `{event_type}` were read through this store with sealed personal fields, but it does not know which fields are personal: a raw append would store them in clear; declare the type with `Protected::with_events::<E>()` (E the event type that declares its `#[personal]` fields)"
    );
    AppendError::Encode {
        stream: stream.clone(),
        event_type: event_type.to_owned(),
        source: EncodeError::new(
            event_type,
            <serde_json::Error as serde::ser::Error>::custom(message),
        ),
    }
}

/// A key store failure, as the store errors report it.
pub(super) fn key_failure(operation: &'static str, error: KeyError, context: String) -> StoreError {
    let kind = match error {
        KeyError::Backend { .. } => StoreErrorKind::Unavailable,
        _ => StoreErrorKind::Other,
    };
    StoreError::new(operation, error)
        .with_kind(kind)
        .with_context(context)
}

impl<S: EventStore, K: KeyStore> EventStore for Protected<S, K> {
    async fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        let sealed = self.seal_batch(stream, &mut events).await?;
        let committed = self.store.append(stream, expected, sealed).await?;
        self.committed(committed, events).await
    }

    async fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent<E>>,
        condition: AppendCondition,
    ) -> Result<Committed<E>, AppendError> {
        let sealed = self.seal_batch(stream, &mut events).await?;
        let committed = self
            .store
            .append_if(stream, expected, sealed, condition)
            .await?;
        self.committed(committed, events).await
    }

    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, ReadError>> + Send {
        self.store.stream_version(stream)
    }

    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, K, E>
    {
        self.clone()
            .open_all(self.store.read_stream::<RawEvent>(stream, from))
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, K, E>
    {
        self.clone()
            .open_all(self.store.read_all::<RawEvent>(after, filter))
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, K, E>
    {
        self.clone()
            .open_all(self.store.subscribe::<RawEvent>(after, filter))
    }

    fn read_query<E: DomainEvent>(
        &self,
        query: &Query,
        after: Position,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, K, E>
    {
        self.clone()
            .open_all(self.store.read_query::<RawEvent>(query, after))
    }

    fn head(&self) -> impl Future<Output = Result<Option<Position>, ReadError>> + Send {
        self.store.head()
    }

    fn count_after(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Future<Output = Result<u64, ReadError>> + Send {
        self.store.count_after(after, filter)
    }

    fn readable(&self, position: Position) -> impl Future<Output = Result<bool, ReadError>> + Send {
        self.store.readable(position)
    }

    fn stall(&self) -> Option<Stall> {
        self.store.stall()
    }

    fn archive_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.archive_stream(stream)
    }

    fn is_archived(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<bool, ReadError>> + Send {
        self.store.is_archived(stream)
    }

    async fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> Result<Option<EventEnvelope<E>>, ReadError> {
        self.learn::<E>();
        match self.store.find_event::<RawEvent>(event_id).await? {
            Some(envelope) => self.open(envelope).await.map(Some),
            None => Ok(None),
        }
    }
}
