//! The event store contract: [`EventStore`], [`SnapshotStore`] and [`CheckpointStore`].
//!
//! Every backend (`es-memory`, `es-postgres`) implements all three with the same semantics,
//! which one conformance suite (`es-testkit`) checks. Reads return async streams so that a
//! long stream or the whole log is never held in memory at once.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_core::Stream;
use serde_json::Value;
use uuid::Uuid;

use crate::aggregate::AggregateType;
use crate::error::{AppendError, ReadError, StoreError};
use crate::event::{DomainEvent, EventEnvelope, NewEvent};
use crate::stream::{ExpectedVersion, Position, StreamId, Version};

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
///   is stored in another stream, it fails with [`AppendError::DuplicateEventId`].
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
    /// [`AppendError::Encode`] when an event cannot be encoded and [`AppendError::Store`]
    /// when the backend fails.
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

/// Which events a read of the global log returns: by stream category and by event type.
///
/// Both lists are "any of"; an absent list selects everything.
///
/// ```
/// use es_core::{EventFilter, StreamId};
///
/// let filter = EventFilter::all().with_categories(["order"]).with_event_types(["OrderShipped"]);
/// let order = StreamId::new("order", "1")?;
/// assert!(filter.matches(&order, "OrderShipped"));
/// assert!(!filter.matches(&order, "OrderNew"));
/// assert!(EventFilter::all().matches(&order, "OrderNew"));
/// # Ok::<(), es_core::StreamIdError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    categories: Option<Arc<[String]>>,
    event_types: Option<Arc<[String]>>,
}

impl EventFilter {
    /// Selects every event.
    pub fn all() -> Self {
        Self::default()
    }

    /// Selects the events of aggregate `A`: its category and its event types.
    pub fn for_aggregate<A: AggregateType>() -> Self {
        let filter = Self::all().with_categories([A::NAME]);
        if A::Event::EVENT_TYPES.is_empty() {
            filter
        } else {
            filter.with_event_types(A::Event::EVENT_TYPES.iter().copied())
        }
    }

    /// Keeps only events of streams in these categories.
    #[must_use]
    pub fn with_categories<I, S>(mut self, categories: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.categories = Some(categories.into_iter().map(Into::into).collect());
        self
    }

    /// Keeps only events of these types.
    #[must_use]
    pub fn with_event_types<I, S>(mut self, event_types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.event_types = Some(event_types.into_iter().map(Into::into).collect());
        self
    }

    /// The selected categories, if restricted.
    pub fn categories(&self) -> Option<&[String]> {
        self.categories.as_deref()
    }

    /// The selected event types, if restricted.
    pub fn event_types(&self) -> Option<&[String]> {
        self.event_types.as_deref()
    }

    /// Whether an event of `event_type` in `stream` is selected.
    pub fn matches(&self, stream: &StreamId, event_type: &str) -> bool {
        let category = stream.category();
        self.categories
            .as_deref()
            .is_none_or(|c| c.iter().any(|c| c == category))
            && self
                .event_types
                .as_deref()
                .is_none_or(|t| t.iter().any(|t| t == event_type))
    }
}

/// A saved aggregate state, so that loading it need not replay its whole stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream version the state includes.
    pub version: Version,
    /// The aggregate's snapshot schema version ([`AggregateType::SNAPSHOT_VERSION`]).
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
