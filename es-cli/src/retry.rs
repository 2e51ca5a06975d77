//! [`OnlyParked`]: the store as a runner sees it for `es parked retry NAME EVENT_ID`, with
//! one parked event only, so that es-core's own retry (which hands a projection all its
//! parked events) handles just that one.

use es_core::{
    AppendError, CheckpointStore, Committed, DeadLetterStore, DomainEvent, EventEnvelope,
    EventFilter, EventStore, ExpectedVersion, LeaseStore, NewEvent, ParkedEvent, Position,
    ReadError, Stall, StoreError, StreamId, Version,
};
use es_postgres::PgEventStore;
use futures_util::Stream;
use uuid::Uuid;

/// The PostgreSQL store, but with only `event` among the parked events (all of them when
/// `None`); everything else is the store's.
#[derive(Debug, Clone)]
pub(crate) struct OnlyParked {
    store: PgEventStore,
    event: Option<Uuid>,
}

impl OnlyParked {
    pub(crate) fn new(store: PgEventStore, event: Option<Uuid>) -> Self {
        Self { store, event }
    }
}

impl EventStore for OnlyParked {
    fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        self.store.append(stream, expected, events)
    }

    fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: es_core::AppendCondition,
    ) -> impl Future<Output = Result<Committed<E>, AppendError>> + Send {
        self.store.append_if(stream, expected, events, condition)
    }

    fn read_query<E: DomainEvent>(
        &self,
        query: &es_core::Query,
        after: Position,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.store.read_query(query, after)
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
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.store.read_stream(stream, from)
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.store.read_all(after, filter)
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<E> {
        self.store.subscribe(after, filter)
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

    fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> impl Future<Output = Result<Option<EventEnvelope<E>>, ReadError>> + Send {
        self.store.find_event(event_id)
    }
}

impl CheckpointStore for OnlyParked {
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send {
        self.store.load_checkpoint(name)
    }

    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.save_checkpoint(name, position)
    }

    fn delete_checkpoint(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.delete_checkpoint(name)
    }
}

impl DeadLetterStore for OnlyParked {
    fn park(&self, parked: ParkedEvent) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.park(parked)
    }

    async fn parked(&self, projection: &str) -> Result<Vec<ParkedEvent>, StoreError> {
        let mut parked = self.store.parked(projection).await?;
        if let Some(event) = self.event {
            parked.retain(|entry| entry.event_id == event);
        }
        Ok(parked)
    }

    fn unpark(
        &self,
        projection: &str,
        event_id: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.unpark(projection, event_id)
    }
}

impl LeaseStore for OnlyParked {
    fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.store.acquire_lease(name, owner, ttl)
    }

    fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.store.renew_lease(name, owner, ttl)
    }

    fn release_lease(
        &self,
        name: &str,
        owner: Uuid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.store.release_lease(name, owner)
    }
}
