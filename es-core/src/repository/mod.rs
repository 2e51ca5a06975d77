//! Command execution: [`Repository`] loads an aggregate, lets it decide, and appends the
//! outcome with optimistic concurrency.
//!
//! ```
//! use es_core::{Aggregate, AggregateType, CommandContext, DomainEvent, Repository};
//! use es_memory::MemoryEventStore;
//!
//! # #[derive(Debug, Clone, PartialEq, DomainEvent)]
//! # enum CounterEvent { Incremented { by: u32 } }
//! # #[derive(Debug, Clone)]
//! # enum CounterCommand { Increment { by: u32 } }
//! # #[derive(Debug, PartialEq, thiserror::Error)]
//! # enum CounterError { #[error("zero")] Zero }
//! # #[derive(Debug, Default, AggregateType)]
//! # #[aggregate(name = "counter", command = CounterCommand, event = CounterEvent, error = CounterError)]
//! # struct Counter { total: u64 }
//! # impl Aggregate for Counter {
//! #     async fn handle(&self, command: CounterCommand, _: &()) -> Result<Vec<CounterEvent>, CounterError> {
//! #         match command {
//! #             CounterCommand::Increment { by: 0 } => Err(CounterError::Zero),
//! #             CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
//! #         }
//! #     }
//! #     fn apply(&mut self, event: &CounterEvent) {
//! #         match event { CounterEvent::Incremented { by } => self.total += u64::from(*by) }
//! #     }
//! # }
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let repository = Repository::<Counter, _>::new(MemoryEventStore::new());
//!
//! let outcome = repository.execute("c1", CounterCommand::Increment { by: 2 }).await?;
//! assert_eq!(outcome.version.get(), 1);
//!
//! // The same command id twice records once and returns the first outcome.
//! let context = CommandContext::new().with_command_id(uuid::Uuid::now_v7());
//! let first = repository.execute_with("c1", CounterCommand::Increment { by: 3 }, context.clone()).await?;
//! let again = repository.execute_with("c1", CounterCommand::Increment { by: 3 }, context).await?;
//! assert!(again.duplicate);
//! assert_eq!(again.events, first.events);
//!
//! let counter = repository.load("c1").await?;
//! assert_eq!((counter.state.total, counter.version.get()), (5, 2));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The parts: the policies for retries and snapshots (`policy`), loading a state from its
//! snapshot and events (`load`), and running a command through conflicts and store
//! failures (`execute`).

mod execute;
pub(crate) mod ids;
mod load;
mod policy;

use std::fmt;
use std::sync::Arc;

use tracing::Instrument as _;

use crate::aggregate::Aggregate;
use crate::cache::StateCache;
use crate::command::{CommandContext, CommandOutcome};
use crate::error::{CommandError, ReadError};
use crate::event::EventEnvelope;
use crate::store::{EventStore, SnapshotStore};
use crate::stream::{StreamId, StreamIdError, Version};

pub use self::load::{AsOf, LoadError, Loaded};
pub use self::policy::{RetryPolicy, SnapshotPolicy};

/// Loads aggregates of type `A` from store `S` and executes their commands.
///
/// Executing a command:
///
/// 1. loads the aggregate: its snapshot if the policy keeps them (by default one every
///    [`SnapshotPolicy::DEFAULT_EVERY`] events), then the later events, read together
///    ([`SnapshotStore::load_events`]: one round trip on PostgreSQL);
/// 2. lets it decide ([`Aggregate::handle`]);
/// 3. appends the events expecting exactly the loaded version;
/// 4. on a conflict, starts again from 1, up to the [`RetryPolicy`];
/// 5. saves a snapshot if the [`SnapshotPolicy`] says one is due.
///
/// With [`Repository::with_cache`], step 1 starts from the state the last command on the
/// stream left in memory, so a command costs the same however long its stream is (and
/// usually one round trip to the store).
///
/// Each execution runs in a `tracing` span named `es.command`.
pub struct Repository<A: Aggregate, S> {
    store: S,
    services: Arc<A::Services>,
    retry: RetryPolicy,
    snapshots: SnapshotPolicy,
    cache: Option<Arc<StateCache<StreamId, (A, Version)>>>,
}

impl<A: Aggregate, S: Clone> Clone for Repository<A, S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            services: Arc::clone(&self.services),
            retry: self.retry,
            snapshots: self.snapshots,
            cache: self.cache.clone(),
        }
    }
}

impl<A: Aggregate, S: fmt::Debug> fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &A::NAME)
            .field("store", &self.store)
            .field("retry", &self.retry)
            .field("snapshots", &self.snapshots)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl<A, S> Repository<A, S>
where
    A: Aggregate,
    S: EventStore + SnapshotStore,
{
    /// A repository on `store`, for an aggregate whose services have a default.
    pub fn new(store: S) -> Self
    where
        A::Services: Default,
    {
        Self::with_services(store, A::Services::default())
    }

    /// A repository on `store` that hands `services` to the command handler.
    pub fn with_services(store: S, services: A::Services) -> Self {
        Self {
            store,
            services: Arc::new(services),
            retry: RetryPolicy::default(),
            snapshots: SnapshotPolicy::default(),
            cache: None,
        }
    }

    /// Sets the retry policy for concurrency conflicts.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the snapshot policy ([`SnapshotPolicy::default`] unless set).
    #[must_use]
    pub fn with_snapshot_policy(mut self, snapshots: SnapshotPolicy) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// Keeps the states of up to `capacity` recently used aggregates in memory between
    /// commands (0 turns the cache off). Clones of the repository share the cache.
    ///
    /// A command on a cached aggregate is decided on the cached state *as is* and appended
    /// expecting the cached version, so the usual command costs one round trip instead of
    /// a read and an append. If another writer (this process or any other) moved the
    /// stream on, the append conflicts, the state catches up with the new events, and the
    /// command is decided again; a rejection or a no-op is likewise re-checked on the
    /// current state before it is returned. So a stale cache never commits a decision, but
    /// the handler may run on a stale state first: services it calls should tolerate that.
    #[must_use]
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| Arc::new(StateCache::new(capacity)));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The stream id of the aggregate with id `id`: `A::NAME` + `-` + `id`.
    ///
    /// # Errors
    ///
    /// Fails if `id` does not make a valid stream id.
    pub fn stream_id(&self, id: &str) -> Result<StreamId, StreamIdError> {
        StreamId::new(A::NAME, id)
    }

    /// Loads the aggregate with id `id`: its snapshot if the policy keeps them and one is
    /// usable, then the events after it.
    ///
    /// # Errors
    ///
    /// [`LoadError::Archived`] if its stream is archived; otherwise fails if the id is
    /// invalid, or an event cannot be read or decoded.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id)?;
        self.current(stream, true).await
    }

    /// The current state of `stream` (`load_current`), its failures as a load's: archived
    /// (when `refuse_archived`) or unreadable.
    async fn current(
        &self,
        stream: StreamId,
        refuse_archived: bool,
    ) -> Result<Loaded<A>, LoadError> {
        match self.load_current(&stream, refuse_archived).await {
            Ok(Some((loaded, _))) => Ok(loaded),
            Ok(None) => Err(LoadError::Archived { stream }),
            Err(source) => Err(LoadError::Read { stream, source }),
        }
    }

    /// Loads the aggregate with id `id` as it was at a version or a point in time: "the
    /// order as it was before shipping". A snapshot is used only if it holds no later
    /// events. Archived streams load too: this is a read of the audit history.
    ///
    /// ```
    /// # use es_core::{Aggregate, AggregateType, AsOf, DomainEvent, Repository, Version};
    /// # use es_memory::MemoryEventStore;
    /// # #[derive(Debug, Clone, PartialEq, DomainEvent)]
    /// # enum CounterEvent { Incremented { by: u32 } }
    /// # #[derive(Debug, Clone)]
    /// # enum CounterCommand { Increment { by: u32 } }
    /// # #[derive(Debug, PartialEq, thiserror::Error)]
    /// # enum CounterError { #[error("zero")] Zero }
    /// # #[derive(Debug, Default, AggregateType)]
    /// # #[aggregate(name = "counter", command = CounterCommand, event = CounterEvent, error = CounterError)]
    /// # struct Counter { total: u64 }
    /// # impl Aggregate for Counter {
    /// #     async fn handle(&self, command: CounterCommand, _: &()) -> Result<Vec<CounterEvent>, CounterError> {
    /// #         match command {
    /// #             CounterCommand::Increment { by: 0 } => Err(CounterError::Zero),
    /// #             CounterCommand::Increment { by } => Ok(vec![CounterEvent::Incremented { by }]),
    /// #         }
    /// #     }
    /// #     fn apply(&mut self, event: &CounterEvent) {
    /// #         match event { CounterEvent::Incremented { by } => self.total += u64::from(*by) }
    /// #     }
    /// # }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let repository = Repository::<Counter, _>::new(MemoryEventStore::new());
    /// for by in [1, 2, 3] {
    ///     repository.execute("c1", CounterCommand::Increment { by }).await?;
    /// }
    /// let then = repository.load_as_of("c1", AsOf::Version(Version::new(2))).await?;
    /// assert_eq!((then.state.total, then.version.get()), (3, 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// Fails if the id is invalid, or an event cannot be read or decoded. `AsOf::Latest`
    /// reads as [`Repository::load`] does, in one load: on a store that protects personal
    /// data it also fails, as `load` does, when the key store cannot be reached to open
    /// the stream's sealed snapshot (the other targets read the snapshot on its own, and
    /// replay the stream without it).
    pub async fn load_as_of(&self, id: &str, as_of: AsOf) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id)?;
        if as_of == AsOf::Latest {
            // The current state, archived or not: the snapshot and the events after it in
            // one load, as `load` reads them.
            return self.current(stream, false).await;
        }
        let start = self.load_snapshot(&stream, Some(as_of)).await;
        self.catch_up(&stream, start, Some(as_of))
            .await
            .map_err(|source| LoadError::Read { stream, source })
    }

    /// The history of the aggregate with id `id`: every event of its stream, in order,
    /// with its metadata (when it was recorded, correlation and causation ids, actor, user
    /// metadata). Archived streams keep their history.
    ///
    /// # Errors
    ///
    /// Fails if the id is invalid; the stream's items fail if an event cannot be read or
    /// decoded.
    pub fn history(
        &self,
        id: &str,
    ) -> Result<
        impl futures_core::Stream<Item = Result<EventEnvelope<A::Event>, ReadError>>
        + Send
        + 'static
        + use<A, S>,
        StreamIdError,
    > {
        let stream = self.stream_id(id)?;
        Ok(self.store.read_stream::<A::Event>(&stream, Version::new(1)))
    }

    /// Executes `command` on the aggregate with id `id`, with a fresh command id.
    ///
    /// # Errors
    ///
    /// See [`Repository::execute_with`].
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        self.execute_with(id, command, CommandContext::new()).await
    }

    /// Executes `command` on the aggregate with id `id` in `context`.
    ///
    /// If the context's command id was executed on this aggregate before and recorded
    /// events, nothing is appended and the first execution's events are returned with
    /// [`CommandOutcome::duplicate`] set. (A first execution that was rejected or changed
    /// nothing leaves no trace, so a repeat of it is decided afresh.) Only the id is
    /// compared, not the command: `command` is not decided at all when the id was used
    /// for another command, so give each command an id of its own.
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`] when the aggregate rejects the command,
    /// [`CommandError::Conflict`] when every attempt lost a concurrency race, and the other
    /// variants when the id is invalid or the store fails.
    pub async fn execute_with(
        &self,
        id: &str,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let stream = self.stream_id(id)?;
        let span = crate::telemetry::command_span(A::NAME, &stream, context.command_id());
        self.run_riding_out(stream, command, context)
            .instrument(span)
            .await
    }
}
