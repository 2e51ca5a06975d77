//! [`FlakyStore`]: a store that fails for a moment, on purpose, the way a database does
//! when a connection is killed or the server restarts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use es_core::{
    AppendError, CheckpointStore, Committed, DeadLetterStore, DomainEvent, EventEnvelope,
    EventFilter, EventStore, ExpectedVersion, LeaseStore, LoadItem, NewEvent, ParkedEvent,
    Position, ReadError, Snapshot, SnapshotStore, StoreError, StoreErrorKind, StreamId, Version,
};
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use uuid::Uuid;

/// Wraps a store and fails some of its calls with transient errors
/// ([`StoreErrorKind::Unavailable`]), as planned:
///
/// - [`lose_append_replies`](FlakyStore::lose_append_replies): the next appends are
///   *stored*, then reported failed, as when the connection drops after the commit;
/// - [`fail_appends`](FlakyStore::fail_appends): the next appends fail before storing;
/// - [`fail_reads`](FlakyStore::fail_reads): the next stream, load and query reads
///   ([`read_stream`](EventStore::read_stream),
///   [`load_events`](SnapshotStore::load_events), [`read_query`](EventStore::read_query))
///   fail;
/// - [`fail_reads_midway`](FlakyStore::fail_reads_midway): the next stream, load and
///   query reads deliver their first event, then fail, as when the connection drops
///   mid-read;
/// - [`yield_before_conditional_appends`](FlakyStore::yield_before_conditional_appends):
///   every conditional append first lets other tasks run, so that on a store whose calls
///   never wait (memory) racing decisions really read before any of them appends, as
///   they do across a network; [`conditions_failed`](FlakyStore::conditions_failed)
///   then tells whether they did overlap.
///
/// Everything else goes straight through; [`calls`](FlakyStore::calls) counts what came.
#[derive(Debug, Clone)]
pub struct FlakyStore<S> {
    inner: S,
    plan: Arc<Plan>,
}

#[derive(Debug, Default)]
struct Plan {
    lost_replies: AtomicU32,
    failed_appends: AtomicU32,
    failed_reads: AtomicU32,
    failed_reads_midway: AtomicU32,
    appends: AtomicU32,
    reads_failed: AtomicU32,
    yields: AtomicU32,
    conditions_failed: AtomicU32,
    /// Calls, for the round-trip counts ([`FlakyStore::calls`]).
    loads: AtomicU32,
    loaded_events: Arc<AtomicU32>,
    stream_reads: AtomicU32,
    query_reads: AtomicU32,
    snapshot_loads: AtomicU32,
    archive_checks: AtomicU32,
    version_checks: AtomicU32,
}

/// How often each kind of call reached a [`FlakyStore`] ([`FlakyStore::calls`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Calls {
    /// Appends ([`EventStore::append`] and [`EventStore::append_if`]), failed ones
    /// included.
    pub appends: u32,
    /// Aggregate loads ([`SnapshotStore::load_events`]).
    pub loads: u32,
    /// Events those loads delivered.
    pub loaded_events: u32,
    /// Stream reads ([`EventStore::read_stream`]).
    pub stream_reads: u32,
    /// Query reads ([`EventStore::read_query`]).
    pub query_reads: u32,
    /// Snapshot loads ([`SnapshotStore::load_snapshot`]).
    pub snapshot_loads: u32,
    /// Archive checks ([`EventStore::is_archived`]).
    pub archive_checks: u32,
    /// Version checks ([`EventStore::stream_version`]).
    pub version_checks: u32,
}

/// Takes one from `counter` if it is above zero.
fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Plan {
    /// `read` as planned: failing at once, after its first item, or not at all.
    fn read<T: Send + 'static>(
        self: &Arc<Self>,
        operation: &'static str,
        read: impl futures_util::Stream<Item = Result<T, ReadError>> + Send + 'static,
    ) -> BoxStream<'static, Result<T, ReadError>> {
        self.read_failing_after(operation, 1, read)
    }

    /// As [`Plan::read`], a midway failure coming after `first` items (a load's start
    /// and its first event are two).
    fn read_failing_after<T: Send + 'static>(
        self: &Arc<Self>,
        operation: &'static str,
        first: usize,
        read: impl futures_util::Stream<Item = Result<T, ReadError>> + Send + 'static,
    ) -> BoxStream<'static, Result<T, ReadError>> {
        let plan = Arc::clone(self);
        // Counted when the failure is delivered, not planned: a reader that stops after
        // the first event never sees it.
        let failure = futures_util::stream::once(async move {
            plan.reads_failed.fetch_add(1, Ordering::SeqCst);
            Err(ReadError::Store(unavailable(operation)))
        });
        if take(&self.failed_reads) {
            failure.boxed()
        } else if take(&self.failed_reads_midway) {
            read.take(first).chain(failure).boxed()
        } else {
            read.boxed()
        }
    }
}

fn unavailable(operation: &'static str) -> StoreError {
    StoreError::new(operation, "the connection was closed (injected)")
        .with_kind(StoreErrorKind::Unavailable)
}

impl<S> FlakyStore<S> {
    /// `inner`, failing nothing yet.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            plan: Arc::default(),
        }
    }

    /// The next `n` appends are stored and then reported as failed.
    pub fn lose_append_replies(&self, n: u32) {
        self.plan.lost_replies.store(n, Ordering::SeqCst);
    }

    /// The next `n` appends fail without storing anything.
    pub fn fail_appends(&self, n: u32) {
        self.plan.failed_appends.store(n, Ordering::SeqCst);
    }

    /// The next `n` stream, load and query reads fail (one count for all, taken by
    /// whichever comes first): a repository's load and a decider's read alike.
    pub fn fail_reads(&self, n: u32) {
        self.plan.failed_reads.store(n, Ordering::SeqCst);
    }

    /// The next `n` stream reads and query reads deliver their first event (if any), then
    /// fail: whoever reads must start again from scratch, not keep what it folded.
    pub fn fail_reads_midway(&self, n: u32) {
        self.plan.failed_reads_midway.store(n, Ordering::SeqCst);
    }

    /// Every conditional append from now on first yields to other tasks `n` times (0:
    /// not at all).
    pub fn yield_before_conditional_appends(&self, n: u32) {
        self.plan.yields.store(n, Ordering::SeqCst);
    }

    /// How many conditional appends found their condition failed: with racing
    /// decisions, proof that they overlapped.
    pub fn conditions_failed(&self) -> u32 {
        self.plan.conditions_failed.load(Ordering::SeqCst)
    }

    /// How many reads failed as planned (delivered their failure).
    pub fn reads_failed(&self) -> u32 {
        self.plan.reads_failed.load(Ordering::SeqCst)
    }

    /// How many appends reached this store (failed ones included).
    pub fn appends(&self) -> u32 {
        self.plan.appends.load(Ordering::SeqCst)
    }

    /// How often each kind of call reached this store so far: what a command or a load
    /// costs in round trips, for tests that hold the repository to its count.
    pub fn calls(&self) -> Calls {
        let plan = &self.plan;
        Calls {
            appends: plan.appends.load(Ordering::SeqCst),
            loads: plan.loads.load(Ordering::SeqCst),
            loaded_events: plan.loaded_events.load(Ordering::SeqCst),
            stream_reads: plan.stream_reads.load(Ordering::SeqCst),
            query_reads: plan.query_reads.load(Ordering::SeqCst),
            snapshot_loads: plan.snapshot_loads.load(Ordering::SeqCst),
            archive_checks: plan.archive_checks.load(Ordering::SeqCst),
            version_checks: plan.version_checks.load(Ordering::SeqCst),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: EventStore> EventStore for FlakyStore<S> {
    async fn append<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
    ) -> Result<Committed<E>, AppendError> {
        self.plan.appends.fetch_add(1, Ordering::SeqCst);
        let failed = || AppendError::Store {
            stream: stream.clone(),
            source: unavailable("append"),
        };
        if take(&self.plan.failed_appends) {
            return Err(failed());
        }
        let committed = self.inner.append(stream, expected, events).await?;
        if take(&self.plan.lost_replies) {
            return Err(failed());
        }
        Ok(committed)
    }

    async fn append_if<E: DomainEvent>(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent<E>>,
        condition: es_core::AppendCondition,
    ) -> Result<Committed<E>, AppendError> {
        self.plan.appends.fetch_add(1, Ordering::SeqCst);
        let failed = || AppendError::Store {
            stream: stream.clone(),
            source: unavailable("append"),
        };
        for _ in 0..self.plan.yields.load(Ordering::SeqCst) {
            tokio::task::yield_now().await;
        }
        if take(&self.plan.failed_appends) {
            return Err(failed());
        }
        let committed = self
            .inner
            .append_if(stream, expected, events, condition)
            .await
            .inspect_err(|error| {
                if matches!(error, AppendError::ConditionFailed { .. }) {
                    self.plan.conditions_failed.fetch_add(1, Ordering::SeqCst);
                }
            })?;
        if take(&self.plan.lost_replies) {
            return Err(failed());
        }
        Ok(committed)
    }

    fn read_query<E: DomainEvent>(
        &self,
        query: &es_core::Query,
        after: Position,
    ) -> impl futures_util::Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, E>
    {
        self.plan.query_reads.fetch_add(1, Ordering::SeqCst);
        self.plan
            .read("query read", self.inner.read_query::<E>(query, after))
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, ReadError> {
        self.plan.version_checks.fetch_add(1, Ordering::SeqCst);
        self.inner.stream_version(stream).await
    }

    fn read_stream<E: DomainEvent>(
        &self,
        stream: &StreamId,
        from: Version,
    ) -> impl futures_util::Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, E>
    {
        self.plan.stream_reads.fetch_add(1, Ordering::SeqCst);
        self.plan
            .read("stream read", self.inner.read_stream::<E>(stream, from))
    }

    fn read_all<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl futures_util::Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, E>
    {
        self.inner.read_all::<E>(after, filter)
    }

    fn subscribe<E: DomainEvent>(
        &self,
        after: Position,
        filter: EventFilter,
    ) -> impl futures_util::Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send + 'static + use<S, E>
    {
        self.inner.subscribe::<E>(after, filter)
    }

    async fn count_after(&self, after: Position, filter: EventFilter) -> Result<u64, ReadError> {
        self.inner.count_after(after, filter).await
    }

    async fn head(&self) -> Result<Option<Position>, ReadError> {
        self.inner.head().await
    }

    async fn readable(&self, position: Position) -> Result<bool, ReadError> {
        self.inner.readable(position).await
    }

    fn stall(&self) -> Option<es_core::Stall> {
        self.inner.stall()
    }

    async fn archive_stream(&self, stream: &StreamId) -> Result<(), StoreError> {
        self.inner.archive_stream(stream).await
    }

    async fn is_archived(&self, stream: &StreamId) -> Result<bool, ReadError> {
        self.plan.archive_checks.fetch_add(1, Ordering::SeqCst);
        self.inner.is_archived(stream).await
    }

    async fn find_event<E: DomainEvent>(
        &self,
        event_id: Uuid,
    ) -> Result<Option<EventEnvelope<E>>, ReadError> {
        self.inner.find_event(event_id).await
    }
}

impl<S: SnapshotStore + EventStore> SnapshotStore for FlakyStore<S> {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>, StoreError> {
        self.plan.snapshot_loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_snapshot(stream).await
    }

    /// The wrapped store's own load (one round trip on PostgreSQL), failing as planned
    /// for stream reads: a midway failure comes after the start and the first event.
    fn load_events<E: DomainEvent>(
        &self,
        stream: &StreamId,
        after: Version,
        snapshot: bool,
    ) -> impl futures_util::Stream<Item = Result<LoadItem<E>, ReadError>> + Send + 'static + use<S, E>
    where
        Self: EventStore,
    {
        self.plan.loads.fetch_add(1, Ordering::SeqCst);
        let delivered = Arc::clone(&self.plan.loaded_events);
        let load = self
            .inner
            .load_events::<E>(stream, after, snapshot)
            .inspect(move |item| {
                if matches!(item, Ok(LoadItem::Event { .. })) {
                    delivered.fetch_add(1, Ordering::SeqCst);
                }
            });
        self.plan.read_failing_after("load", 2, load)
    }
}

impl<S: CheckpointStore> CheckpointStore for FlakyStore<S> {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        self.inner.load_checkpoint(name).await
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        self.inner.save_checkpoint(name, position).await
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<(), StoreError> {
        self.inner.delete_checkpoint(name).await
    }
}

impl<S: DeadLetterStore> DeadLetterStore for FlakyStore<S> {
    async fn park(&self, parked: ParkedEvent) -> Result<(), StoreError> {
        self.inner.park(parked).await
    }

    async fn parked(&self, projection: &str) -> Result<Vec<ParkedEvent>, StoreError> {
        self.inner.parked(projection).await
    }

    async fn unpark(&self, projection: &str, event_id: Uuid) -> Result<(), StoreError> {
        self.inner.unpark(projection, event_id).await
    }
}

impl<S: LeaseStore> LeaseStore for FlakyStore<S> {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.acquire_lease(name, owner, ttl).await
    }

    async fn renew_lease(
        &self,
        name: &str,
        owner: Uuid,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.renew_lease(name, owner, ttl).await
    }

    async fn release_lease(&self, name: &str, owner: Uuid) -> Result<(), StoreError> {
        self.inner.release_lease(name, owner).await
    }
}
