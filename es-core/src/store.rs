//! The event store contract: [`EventStore`] (streams and the global log, read through an
//! [`EventFilter`] in `filter`), [`SnapshotStore`],
//! [`CheckpointStore`], [`DeadLetterStore`] and [`LeaseStore`] (what projection runners
//! keep), and [`Store`], all five at once.
//!
//! Every backend (`es-memory`, `es-postgres`) implements all five with the same semantics,
//! which one conformance suite (`es-testkit`) checks. Reads return async streams so that a
//! long stream or the whole log is never held in memory at once.

use std::future::Future;

use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde_json::Value;
use uuid::Uuid;

use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{DomainEvent, EventEnvelope, NewEvent};
// Where the rest of the crate has always found them.
pub(crate) use crate::filter::{EventFilter, Partition};
use crate::query::{AppendCondition, Query, QueryItem};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

/// Everything a complete store implements: the events, snapshots, checkpoints, parked
/// events and leases. Process managers and the conformance suite ask for this one bound
/// (a [`ProjectionRunner`](crate::ProjectionRunner) asks for all but [`SnapshotStore`]);
/// implement the five traits and it comes for free.
pub trait Store:
    EventStore + SnapshotStore + CheckpointStore + DeadLetterStore + LeaseStore
{
}

impl<S> Store for S where
    S: EventStore + SnapshotStore + CheckpointStore + DeadLetterStore + LeaseStore
{
}

/// An append-only store of event streams with a global log.
///
/// # Semantics every implementation keeps
///
/// - **Append** ([`append`](EventStore::append)) is atomic: all of the batch is stored, with
///   consecutive versions after the stream's current one, or none of it.
/// - **Expected version**: the append fails with [`AppendError::Conflict`] unless the
///   stream's current version matches, checked atomically with the write. An empty batch
///   writes nothing but still checks it.
/// - **Idempotent event ids**: if every event id of the batch is already stored, in this
///   stream, as one consecutive run, the append writes nothing, succeeds, and returns the
///   stored envelopes with [`Committed::duplicate`] set (the expected version is not checked:
///   a writer retrying after a lost reply must learn it succeeded). If only some are, or one
///   is stored in another stream, it fails with [`AppendError::DuplicateEventId`]. A batch
///   that holds one id twice fails with [`AppendError::DuplicateInBatch`], whatever is
///   stored.
/// - **Global order**: every event gets a [`Position`], and the global log is read in
///   position order. A reader that resumes after a position it was *delivered* (by
///   [`read_all`](EventStore::read_all) or [`subscribe`](EventStore::subscribe)) never
///   misses an event committed later: stores hold back the end of the log until nothing
///   can commit before it any more. A position returned by [`append`](EventStore::append)
///   names the event but is not such a resume point: a transaction still open elsewhere
///   may yet commit events that sort before it.
/// - **Subscriptions** deliver every matching event after their start position exactly once,
///   in position order, first the history and then live.
///
/// All methods are cancel safe in the sense that dropping a future either leaves the append
/// done or not done, never half done.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends `events` to `stream` if its version matches `expected`.
    ///
    /// Returns the recorded envelopes, in order.
    ///
    /// # Errors
    ///
    /// [`AppendError::Conflict`] when the version does not match,
    /// [`AppendError::DuplicateEventId`] for ids already stored elsewhere,
    /// [`AppendError::DuplicateInBatch`] for an id the batch holds twice,
    /// [`AppendError::Encode`] when an event cannot be encoded,
    /// [`AppendError::Unstorable`] or [`AppendError::BatchTooLarge`] when the batch breaks
    /// one of the [limits](crate::limits) every store keeps (checked before anything is
    /// written), and [`AppendError::Store`] when the backend fails.
    fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send;

    /// The current version of `stream` ([`Version::INITIAL`] if it holds no events).
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, ReadError>> + Send;

    /// Reads `stream` forwards from version `from` (inclusive) to its current end.
    ///
    /// Each item is an error if the event cannot be decoded as `E` (the stream then ends) or
    /// the backend fails.
    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<Self, E>;

    /// Reads the global log after `after`, up to the events visible now, keeping the events
    /// that `filter` selects.
    ///
    /// Events are in position order. Use [`EventFilter::for_aggregate`] to read one
    /// aggregate's events typed, or [`RawEvent`](crate::RawEvent) to read everything.
    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<Self, E>;

    /// Subscribes to the global log after `after`: the history first, then every event as it
    /// is committed. The stream never ends on its own; drop it to unsubscribe.
    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<Self, E>;

    /// Appends `events` to `stream` as [`append`](EventStore::append) does, on the further
    /// `condition` that no event its query selects was stored after its position: the
    /// append of a decision that spans streams (Dynamic Consistency Boundaries).
    ///
    /// The check and the write are one atomic step: of two appends whose events each
    /// match the other's condition, at most one succeeds, and an event that sorts between
    /// the condition's position and the appended events in the log always counts, whoever
    /// wrote it and however late it committed. The stream's expected version is checked
    /// too (use [`ExpectedVersion::Any`] for a decision that only the condition guards).
    /// An exact repeat of an append that succeeded (every event id stored, in this stream,
    /// as one run) succeeds again as a duplicate without checking the condition, which
    /// its own events would now fail. Events of archived streams count.
    ///
    /// When more than one check fails, the error is the first of: the stream is archived,
    /// the version does not match, the condition fails (every store reports the same).
    ///
    /// # Errors
    ///
    /// [`AppendError::ConditionFailed`], naming the query and the first event that broke
    /// it; otherwise as [`append`](EventStore::append).
    fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: AppendCondition,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send;

    /// Reads the global log after `after`, up to the events visible now, keeping the events
    /// `query` selects, in position order: what a decision reads before it appends with
    /// [`append_if`](EventStore::append_if). Events of archived streams are included.
    ///
    /// Each position it delivers is a resume point as for
    /// [`read_all`](EventStore::read_all): an event not yet delivered, committed later,
    /// sorts after it. So the last one delivered is the position for the append's
    /// [`AppendCondition`].
    ///
    /// Each item is an error if the event cannot be decoded as `E` (read
    /// [`RawEvent`](crate::RawEvent)s to decode them yourself) or the backend fails.
    ///
    /// The default reads the log through [`read_all`](EventStore::read_all) and filters;
    /// stores with an index on tags override it.
    fn read_query<E: DomainEvent>(
        &self,
        query: &Query,
        after: Position,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<Self, E>
    {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let mut filter = EventFilter::all().including_archived();
        // Every item names types: the log read can leave the other types out.
        if !query.is_none() && query.items().iter().all(|item| item.types().len() > 0) {
            let types: std::collections::BTreeSet<&str> =
                query.items().iter().flat_map(QueryItem::types).collect();
            filter = filter.with_event_types(types);
        }
        let events = if query.is_none() {
            futures_util::stream::empty().boxed()
        } else {
            self.read_all::<crate::RawEvent>(after, filter).boxed()
        };
        let query = query.clone();
        events.try_filter_map(move |envelope| {
            let selected = query.matches(&envelope.event.event_type, &envelope.metadata.tags);
            std::future::ready(if selected {
                decode_raw(envelope).map(Some)
            } else {
                Ok(None)
            })
        })
    }

    /// The position of the newest event committed so far, whether log readers may read it
    /// yet or not (`None` for an empty log). A reader whose reads pass it has seen every
    /// event committed before this call: [`ProjectionRunner::catch_up`] waits for that.
    ///
    /// [`ProjectionRunner::catch_up`]: crate::ProjectionRunner::catch_up
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn head(&self) -> impl Future<Output = Result<Option<Position>, ReadError>> + Send;

    /// How many events `filter` selects after `after`, up to the events visible now: how far
    /// a reader at `after` is behind.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn count_after(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Future<Output = Result<u64, ReadError>> + Send {
        let events = self.read_all::<crate::RawEvent>(after, filter);
        async move {
            use futures_util::TryStreamExt as _;
            events
                .try_fold(0_u64, |n, _| async move { Ok(n + 1) })
                .await
        }
    }

    /// Whether the event at `position` (as an append returned it) is readable from the
    /// global log yet: stores that hold fresh events back from log readers (PostgreSQL,
    /// while older transactions are open) say `false` until it is. Always `true` for a
    /// store that never holds events back.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn readable(&self, position: Position) -> impl Future<Output = Result<bool, ReadError>> + Send {
        let _ = position;
        std::future::ready(Ok(true))
    }

    /// What keeps this store's log readers (subscriptions, runners) from delivering right
    /// now, as far as the store knows: `None` when nothing does. Readers ride such
    /// moments out by themselves; this says why they are quiet, and
    /// [`ProjectionRunner`](crate::ProjectionRunner)s show it in their status.
    ///
    /// Cheap: it reports what the store's readers last found, without asking the backend.
    fn stall(&self) -> Option<Stall> {
        None
    }

    /// Archives `stream` (a soft delete): it takes no more events (appends fail with
    /// [`AppendError::Archived`]), reads of the global log and subscriptions leave its
    /// events out unless their filter asks for archived streams
    /// ([`EventFilter::including_archived`]), and [`Repository`](crate::Repository) refuses
    /// to load it or run commands on it. Its events stay in the store, readable with
    /// [`read_stream`](EventStore::read_stream): the audit history is kept. Archiving an
    /// archived stream changes nothing.
    ///
    /// Once it returns, the stream is final: appends that were under way have committed
    /// (or failed) before it, and every later one is refused.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn archive_stream(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether `stream` is archived.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn is_archived(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<bool, ReadError>> + Send;

    /// Finds an event by its id.
    ///
    /// # Errors
    ///
    /// Fails if the event cannot be decoded as `E` or the backend fails.
    fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<EventEnvelope<E>>, ReadError>> + Send;
}

/// A raw envelope decoded as `E`, failing as a typed read does.
fn decode_raw<E: DomainEvent>(
    envelope: EventEnvelope<crate::RawEvent>,
) -> Result<EventEnvelope<E>, ReadError> {
    let crate::RawEvent {
        event_type,
        schema_version,
        payload,
    } = envelope.event;
    match E::decode(&event_type, schema_version, payload) {
        Ok(event) => Ok(EventEnvelope {
            event_id: envelope.event_id,
            stream_id: envelope.stream_id,
            version: envelope.version,
            position: envelope.position,
            recorded_at: envelope.recorded_at,
            metadata: envelope.metadata,
            event,
        }),
        Err(source) => Err(ReadError::Decode {
            event_id: envelope.event_id,
            stream: envelope.stream_id,
            version: envelope.version,
            position: envelope.position,
            event_type,
            schema_version,
            source,
        }),
    }
}

/// Why a store's log readers are not delivering (see [`EventStore::stall`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Stall {
    /// The store cannot be read: it is unreachable, restarting, timing out, or has no
    /// connection free. Readers keep trying and go on where they were.
    Failing {
        /// What the last attempt reported.
        error: String,
        /// When the trouble began.
        since: DateTime<Utc>,
    },
    /// Committed events wait behind a transaction that is still open: they are delivered,
    /// never skipped, once it ends.
    HeldBack {
        /// What holds them back, as the store can tell (for PostgreSQL, the transaction and
        /// the session running it).
        cause: String,
        /// Since when.
        since: DateTime<Utc>,
    },
}

impl std::fmt::Display for Stall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failing { error, since } => {
                write!(f, "cannot read the store since {since}: {error}")
            }
            Self::HeldBack { cause, since } => write!(f, "held back since {since}: {cause}"),
        }
    }
}

/// What an append recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed<E> {
    /// The stream appended to.
    pub stream_id: StreamId,
    /// The stream's version after the append: the last event's version, or the unchanged
    /// version for an empty batch. For a duplicate, the version of the last matching event.
    pub version: Version,
    /// The recorded events, in order.
    pub events: Vec<EventEnvelope<E>>,
    /// Whether the events were already stored (an idempotent repeat wrote nothing).
    pub duplicate: bool,
}

impl<E> Committed<E> {
    /// The log position of the last event recorded, or `None` if the append recorded none
    /// (a command that changed nothing). For a duplicate, the position of the first
    /// execution's last event.
    ///
    /// This is the position to wait for when reading one's own writes through a projection:
    /// once its runner has [seen it](crate::StatusHandle::wait_for), the read model reflects
    /// this append.
    ///
    /// ```
    /// use es_core::{EventStore, ExpectedVersion, NewEvent, RawEvent, StreamId};
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let store = es_memory::MemoryEventStore::new();
    /// let stream = StreamId::new("order", "1")?;
    /// let event = RawEvent::new("OrderPlaced", 1, serde_json::json!({}));
    /// let committed = store.append(&stream, ExpectedVersion::Any, vec![NewEvent::new(event)]).await?;
    /// assert_eq!(committed.position(), Some(committed.events[0].position));
    ///
    /// let nothing = store.append::<RawEvent>(&stream, ExpectedVersion::Any, vec![]).await?;
    /// assert_eq!(nothing.position(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn position(&self) -> Option<Position> {
        self.events.last().map(|envelope| envelope.position)
    }
}

/// A saved aggregate state, so that loading it need not replay its whole stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream version the state includes.
    pub version: Version,
    /// The aggregate's snapshot schema version ([`AggregateType::SNAPSHOT_VERSION`](crate::AggregateType::SNAPSHOT_VERSION)).
    pub schema_version: u32,
    /// The encoded state.
    pub state: Value,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// Storage for aggregate snapshots: at most one per stream, the newest.
pub trait SnapshotStore: Clone + Send + Sync + 'static {
    /// Saves `snapshot`, replacing the stream's snapshot unless that one is at a higher
    /// version (a slow writer never replaces a newer snapshot with an older one).
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stream's snapshot, if one was saved.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn load_snapshot(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// What loading an aggregate reads, in one go: first a [`LoadItem::Start`] with
    /// whether `stream` is archived and, if `snapshot` is asked for, its snapshot when that
    /// is past version `after`; then the stream's events after that snapshot (or after
    /// `after`), in order, as [`LoadItem::Event`]s.
    ///
    /// It gives what [`is_archived`](EventStore::is_archived),
    /// [`load_snapshot`](SnapshotStore::load_snapshot) and
    /// [`read_stream`](EventStore::read_stream) give, without the envelopes a load has no
    /// use for. The default asks those three; a store overrides it to answer with one
    /// round trip (PostgreSQL) or without building envelopes (memory). A snapshot the
    /// store cannot read is left out with a warning, as the events give the same state.
    ///
    /// Each item is an error if the backend fails or an event cannot be decoded as `E`
    /// (the stream then ends).
    ///
    /// # Cancel safety
    ///
    /// A read: dropping the stream at any point leaves the store as it was.
    fn load_events<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> impl Stream<Item = Result<LoadItem<E>, ReadError>> + Send + 'static + use<Self, E>
    where
        Self: EventStore,
    {
        use futures_util::StreamExt as _;
        let (store, stream) = (self.clone(), stream.clone());
        futures_util::stream::once(async move {
            let snapshots = async {
                if !snapshot {
                    return None;
                }
                match store.load_snapshot(&stream).await {
                    Ok(snapshot) => snapshot.filter(|s| s.version > after),
                    Err(error) => {
                        tracing::warn!(%stream, error = &error as &dyn std::error::Error, "cannot load snapshot; replaying events");
                        None
                    }
                }
            };
            let (archived, snapshot) =
                futures_util::future::join(store.is_archived(&stream), snapshots).await;
            let archived = match archived {
                Ok(archived) => archived,
                Err(error) => return futures_util::stream::once(async { Err(error) }).boxed(),
            };
            let from = snapshot.as_ref().map_or(after, |s| s.version).next();
            let events = store.read_stream::<E>(&stream, from).map(|envelope| {
                envelope.map(|envelope| LoadItem::Event {
                    version: envelope.version,
                    event_id: envelope.event_id,
                    position: envelope.position,
                    event: envelope.event,
                })
            });
            futures_util::stream::once(async move {
                Ok(LoadItem::Start(LoadStart { snapshot, archived }))
            })
            .chain(events)
            .boxed()
        })
        .flatten()
    }
}

/// An item of [`SnapshotStore::load_events`]: what a load starts from, then each event.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LoadItem<E> {
    /// The first item, always, and only the first.
    Start(LoadStart),
    /// An event of the stream, after the snapshot if there is one.
    Event {
        /// Its version in the stream.
        version: Version,
        /// Its id, for errors that name it.
        event_id: Uuid,
        /// Its place in the global log, for errors that name it.
        position: Position,
        /// The event.
        event: E,
    },
}

/// What [`SnapshotStore::load_events`] knows of a stream before its events.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LoadStart {
    /// The stream's snapshot, when one was asked for and is past the version the load
    /// starts after; the events that follow are those after it.
    pub snapshot: Option<Snapshot>,
    /// Whether the stream is archived.
    pub archived: bool,
}

impl LoadStart {
    /// A start with `snapshot` for a stream that is archived or not: for stores that
    /// implement [`SnapshotStore::load_events`] themselves.
    pub fn new(snapshot: Option<Snapshot>, archived: bool) -> Self {
        Self { snapshot, archived }
    }
}

/// Storage for projection checkpoints: the last position each named consumer handled.
pub trait CheckpointStore: Clone + Send + Sync + 'static {
    /// The checkpoint saved under `name`, if any.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// Saves `position` under `name`, replacing the previous one (also when it is lower, so
    /// that a rebuild can start over).
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes the checkpoint saved under `name`.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn delete_checkpoint(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// An event a projection could not handle, set aside so that the projection goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedEvent {
    /// The projection (its checkpoint key) that parked it.
    pub projection: String,
    /// The event.
    pub event_id: Uuid,
    /// Its stream.
    pub stream_id: StreamId,
    /// Its version there.
    pub version: Version,
    /// Its position in the log.
    pub position: Position,
    /// Its type.
    pub event_type: String,
    /// The last error the projection reported for it.
    pub error: String,
    /// How many times the projection tried it.
    pub attempts: u32,
    /// When it was parked (or last retried).
    pub parked_at: DateTime<Utc>,
}

/// Storage for parked events: the dead-letter queue of projections.
pub trait DeadLetterStore: Clone + Send + Sync + 'static {
    /// Parks an event for a projection, replacing an earlier record of the same event.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The events parked for `projection`, in log order.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn parked(
        &self,
        projection: &str,
    ) -> impl Future<Output = Result<Vec<ParkedEvent>, StoreError>> + Send;

    /// Removes a parked event (it was handled after all, or given up on).
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn unpark(
        &self,
        projection: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Time-limited exclusive leases, by name: how several instances of a projection (in one
/// process or many) agree on which one runs it.
///
/// A lease is held by an owner until it expires; its owner renews it, anyone may take it
/// once it has expired. Expiry is judged by the store's clock (the database server's for a
/// database store), so instances need not agree on time.
pub trait LeaseStore: Clone + Send + Sync + 'static {
    /// Takes or renews lease `name` for `owner` for `ttl`, unless another owner holds it
    /// unexpired. Returns whether `owner` holds it now.
    ///
    /// A `ttl` longer than the store can record (up to [`Duration::MAX`](std::time::Duration::MAX))
    /// is not an error: the lease is held for as long as the store can hold it, at least
    /// a hundred years, in effect until released.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Extends lease `name` for another `ttl` if `owner` still holds it, that is, if no
    /// other owner took it (and nobody released it) since `owner` last acquired or renewed
    /// it, even if it ran out meanwhile. Returns whether it did. `false` means another
    /// holder may have done the work `owner` did meanwhile.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives up lease `name` if `owner` holds it.
    ///
    /// # Errors
    ///
    /// Fails if the backend fails.
    fn release_lease(
        &self,
        name: &str,
        owner: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
