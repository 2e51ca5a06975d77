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

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tracing::Instrument as _;

use crate::aggregate::Aggregate;
use crate::backoff::Backoff;
use crate::cache::StateCache;
use crate::command::{CommandContext, CommandOutcome};
use crate::error::{AppendError, CommandError, ReadError};
use crate::event::{DomainEvent as _, EventEnvelope, NewEvent, RawEvent};
use crate::store::{EventStore, Snapshot, SnapshotStore};
use crate::stream::{ExpectedVersion, StreamId, StreamIdError, Version};

/// How often command execution retries after losing an optimistic-concurrency race.
///
/// Each retry reloads the aggregate and decides again, after a randomised exponential
/// backoff (full jitter) that spreads out writers racing on one stream.
///
/// ```
/// use es_core::RetryPolicy;
/// use std::time::Duration;
///
/// let policy = RetryPolicy::default().with_max_attempts(20).with_backoff(Duration::ZERO, Duration::ZERO);
/// assert_eq!(policy.max_attempts(), 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    backoff: Backoff,
    store_retries: u32,
    store_backoff: Backoff,
}

impl Default for RetryPolicy {
    /// Up to 10 attempts after conflicts, backing off from up to 1 ms to up to 50 ms; up
    /// to 10 runs again after the store failed for a moment, backing off from 25 ms to
    /// 500 ms: about 3.5 s of pauses in all, enough for a database restart or a killed
    /// connection. Each run may itself wait up to the store's own deadlines (for
    /// PostgreSQL, its acquire and reply timeouts) before it fails, so a store that stays
    /// unreachable fails a command after the pauses plus up to 11 such waits.
    fn default() -> Self {
        Self {
            max_attempts: 10,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(50)),
            store_retries: 10,
            store_backoff: Backoff::new(Duration::from_millis(25), Duration::from_millis(500)),
        }
    }
}

impl RetryPolicy {
    /// Never retry a decision: a conflict on the current state fails the command at once.
    /// (A cached state found to be behind is still caught up first; see
    /// [`Repository::with_cache`].) Store failures are still ridden out as the policy
    /// says ([`with_store_retries`](RetryPolicy::with_store_retries)).
    pub fn never() -> Self {
        Self::default().with_max_attempts(1)
    }

    /// Sets how many times a command is decided and appended in all (at least 1).
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the backoff bounds after a conflict: the first retry waits up to `initial`,
    /// each later one up to twice as long, never more than `max`. Zero disables waiting.
    #[must_use]
    pub fn with_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff = Backoff::new(initial, max);
        self
    }

    /// Sets how many times a command runs again, from a fresh load, after the store failed
    /// for a moment (its error [is transient](crate::StoreError::is_transient): the
    /// server unavailable or restarting, a connection killed, a deadline passed), and the
    /// pauses between runs (0 retries: fail at once). The retries are safe although an
    /// append that failed so may have been stored: each run appends under the same event
    /// ids, so a stored one is recognised rather than repeated.
    #[must_use]
    pub fn with_store_retries(mut self, retries: u32, backoff: Backoff) -> Self {
        self.store_retries = retries;
        self.store_backoff = backoff;
        self
    }

    /// How many times a command is decided and appended in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How many times a command runs again after the store failed for a moment.
    pub fn store_retries(&self) -> u32 {
        self.store_retries
    }

    fn backoff(&self, failed_attempts: u32) -> Duration {
        self.backoff.pause(failed_attempts)
    }
}

/// When command execution saves a snapshot of the aggregate.
///
/// Snapshots only apply to aggregates that can encode their state (with the derive: those
/// that implement serde's `Serialize` and `Deserialize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Never: every load replays the whole stream.
    #[default]
    Never,
    /// Whenever the stream's version crosses a multiple of this many events.
    EveryNEvents(NonZeroU64),
}

impl SnapshotPolicy {
    /// A snapshot every `n` events; [`SnapshotPolicy::Never`] if `n` is 0.
    pub fn every(n: u64) -> Self {
        NonZeroU64::new(n).map_or(Self::Never, Self::EveryNEvents)
    }

    fn is_due(self, before: Version, after: Version) -> bool {
        match self {
            Self::Never => false,
            Self::EveryNEvents(n) => before.get() / n.get() != after.get() / n.get(),
        }
    }
}

/// An aggregate as loaded from its stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The stream version the state includes ([`Version::INITIAL`] for a new aggregate).
    pub version: Version,
    /// The state.
    pub state: A,
}

/// Which past state [`Repository::load_as_of`] loads.
///
/// ```
/// use es_core::{AsOf, Version};
///
/// let before_shipping = AsOf::Version(Version::new(3));
/// let last_tuesday = AsOf::Time("2026-11-17T00:00:00Z".parse()?);
/// # let _ = (before_shipping, last_tuesday);
/// # Ok::<(), chrono::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AsOf {
    /// The state after the events up to this version (all of them, if the stream is
    /// shorter).
    Version(Version),
    /// The state after the events recorded at or before this time: the stream's longest
    /// prefix whose events were all recorded by then.
    Time(chrono::DateTime<chrono::Utc>),
    /// The state after every event: the latest state, which this also loads for an
    /// archived stream (that [`Repository::load`] refuses).
    Latest,
}

impl AsOf {
    /// Whether a snapshot taken after the event at `version` may hold only events of the
    /// state. For a time, that is checked on the event itself once it is read (see
    /// `Repository::catch_up_to`): the snapshot was taken by the application's clock and the
    /// event recorded by the store's.
    fn admits(self, snapshot: &Snapshot) -> bool {
        match self {
            Self::Version(version) => snapshot.version <= version,
            Self::Time(_) | Self::Latest => true,
        }
    }
}

/// Why an aggregate could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The aggregate id does not make a valid stream id.
    #[error("invalid aggregate id")]
    InvalidId(#[from] StreamIdError),
    /// The stream is archived. Its history stays readable with [`Repository::history`]
    /// and [`Repository::load_as_of`].
    #[error("stream `{stream}` is archived")]
    Archived {
        /// The aggregate's stream.
        stream: StreamId,
    },
    /// Reading the stream failed.
    #[error("cannot load stream `{stream}`")]
    Read {
        /// The aggregate's stream.
        stream: StreamId,
        /// The read failure.
        #[source]
        source: ReadError,
    },
}

/// The ids of the events one execution appends, derived from its command id: the caller's,
/// so that a repeat of the command is recognised; or, when the caller gave none, one drawn
/// for this execution alone (a context may be cloned for many commands, which must not
/// look like repeats of each other). Every attempt of the execution appends under the
/// same ids, so the store recognises an append whose reply was lost; and a caller who runs
/// the command again under [`EventIds::command_id`] is recognised too.
struct EventIds<'a> {
    context: &'a CommandContext,
    stream: &'a StreamId,
    command_id: uuid::Uuid,
    /// An append of this execution failed without telling whether it was stored.
    uncertain: bool,
}

impl<'a> EventIds<'a> {
    fn new(context: &'a CommandContext, stream: &'a StreamId) -> Self {
        let command_id = if context.command_id_given() {
            context.command_id()
        } else {
            uuid::Uuid::now_v7()
        };
        Self {
            context,
            stream,
            command_id,
            uncertain: false,
        }
    }

    /// The id of the `index`th event of a decision.
    fn get(&self, index: usize) -> uuid::Uuid {
        crate::command::derive_event_id(self.command_id, self.stream, index)
    }

    /// Whether events may be stored under these ids already: by an earlier execution of
    /// the same command id, or by an attempt of this one.
    fn may_be_stored(&self) -> bool {
        self.context.command_id_given() || self.uncertain
    }
}

/// Loads aggregates of type `A` from store `S` and executes their commands.
///
/// Executing a command:
///
/// 1. loads the aggregate (its snapshot if the policy keeps them, then the later events);
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
    cache: Option<Arc<StateCache<A>>>,
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
            snapshots: SnapshotPolicy::Never,
            cache: None,
        }
    }

    /// Sets the retry policy for concurrency conflicts.
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the snapshot policy.
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
        // Both at once: one round trip's wait instead of two.
        let (archived, start) = futures_util::future::join(
            self.store.is_archived(&stream),
            self.load_snapshot(&stream, None),
        )
        .await;
        match archived {
            Ok(false) => {}
            Ok(true) => return Err(LoadError::Archived { stream }),
            Err(source) => return Err(LoadError::Read { stream, source }),
        }
        self.catch_up(&stream, start, None)
            .await
            .map_err(|source| LoadError::Read { stream, source })
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
    /// Fails if the id is invalid, or an event cannot be read or decoded.
    pub async fn load_as_of(&self, id: &str, as_of: AsOf) -> Result<Loaded<A>, LoadError> {
        let stream = self.stream_id(id)?;
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
        let span = tracing::info_span!(
            "es.command",
            aggregate = A::NAME,
            stream = %stream,
            command_id = %context.command_id(),
        );
        self.run_riding_out(stream, command, context)
            .instrument(span)
            .await
    }

    /// Runs the command, and again, from a fresh load, while the store fails for a moment
    /// (unavailable, timing out), up to the policy's store retries. An append that failed
    /// so may have been stored: the retry appends under the same event ids, so the store
    /// recognises it, and a decision that now differs is checked against what was stored.
    async fn run_riding_out(
        &self,
        stream: StreamId,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let mut ids = EventIds::new(&context, &stream);
        let mut failures = 0;
        loop {
            match self.run(&stream, command.clone(), &mut ids).await {
                Err(error) if error.is_transient() && failures < self.retry.store_retries => {
                    ids.uncertain |= matches!(error, CommandError::Append { .. });
                    failures += 1;
                    let pause = self.retry.store_backoff.pause(failures);
                    tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        ?pause,
                        "store failed for a moment; running the command again"
                    );
                    futures_timer::Delay::new(pause).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn run(
        &self,
        stream: &StreamId,
        command: A::Command,
        ids: &mut EventIds<'_>,
    ) -> Result<CommandOutcome<A::Event>, CommandError<A::Error>> {
        let context = ids.context;
        let stream = stream.clone();
        let load_error = |source| CommandError::Load {
            stream: stream.clone(),
            source,
        };
        let mut attempt = 0;
        // The state to catch up and decide on again after a lost race.
        let mut previous: Option<Loaded<A>> = None;
        loop {
            // A cached state is used as is: if other writers moved the stream on, the append
            // below conflicts and the retry catches up. So the usual command costs one
            // round trip to the store, not two.
            let (loaded, fresh) = match previous.take() {
                Some(stale) => {
                    let start = Some((stale.state, stale.version));
                    (
                        self.catch_up(&stream, start, None)
                            .await
                            .map_err(load_error)?,
                        true,
                    )
                }
                None => match self.cache.as_ref().and_then(|cache| cache.take(&stream)) {
                    Some((state, version)) => (
                        Loaded {
                            stream_id: stream.clone(),
                            version,
                            state,
                        },
                        false,
                    ),
                    None => {
                        let start = self.load_snapshot(&stream, None).await;
                        (
                            self.catch_up(&stream, start, None)
                                .await
                                .map_err(load_error)?,
                            true,
                        )
                    }
                },
            };
            let decision = loaded.state.handle(command.clone(), &self.services).await;
            let events = match decision {
                Ok(events) if !events.is_empty() => events,
                // A rejection or a no-op must come from the current state, never a cached
                // one that other writers have moved past: catch up and decide again.
                _ if !fresh => {
                    previous = Some(loaded);
                    continue;
                }
                // A repeated command may be rejected or be a no-op now *because* its first
                // execution went through, so look for that first.
                Ok(_) => {
                    let version = loaded.version;
                    self.keep(loaded);
                    return match self.first_outcome(&stream, ids).await? {
                        Some(outcome) => Ok(outcome),
                        None if self.archived(&stream).await? => {
                            Err(CommandError::Archived { stream })
                        }
                        None => Ok(CommandOutcome {
                            stream_id: stream,
                            version,
                            events: Vec::new(),
                            duplicate: false,
                        }),
                    };
                }
                Err(error) => {
                    self.keep(loaded);
                    return match self.first_outcome(&stream, ids).await? {
                        Some(outcome) => Ok(outcome),
                        None if self.archived(&stream).await? => {
                            Err(CommandError::Archived { stream })
                        }
                        None => Err(CommandError::Rejected { stream, error }),
                    };
                }
            };

            // Only decisions on the current state count: a cached state that was merely
            // behind is caught up for free.
            if fresh {
                attempt += 1;
            }
            let metadata = context.event_metadata();
            let new_events = events
                .into_iter()
                .enumerate()
                .map(|(index, event)| {
                    NewEvent::new(event)
                        .with_id(ids.get(index))
                        .with_metadata(metadata.clone())
                })
                .collect();
            let expected = ExpectedVersion::Exact(loaded.version);
            match self.store.append(&stream, expected, new_events).await {
                Ok(committed) if committed.duplicate => {
                    tracing::debug!("command already executed");
                    self.keep(loaded);
                    return Ok(self
                        .first_outcome(&stream, ids)
                        .await?
                        .unwrap_or(CommandOutcome {
                            duplicate: context.command_id_given(),
                            ..committed
                        }));
                }
                Ok(committed) => {
                    tracing::debug!(version = %committed.version, events = committed.events.len(), "command committed");
                    self.after_commit(loaded, &committed.events).await;
                    return Ok(committed);
                }
                Err(AppendError::Conflict {
                    expected, actual, ..
                }) => {
                    if fresh && attempt >= self.retry.max_attempts {
                        self.keep(loaded);
                        return Err(CommandError::Conflict {
                            stream,
                            attempts: attempt,
                            expected,
                            actual,
                        });
                    }
                    tracing::debug!(attempt, %actual, "concurrency conflict, retrying");
                    if fresh {
                        self.back_off(attempt).await;
                    }
                    previous = Some(loaded);
                }
                // Some ids of this decision are stored already: the first execution of this
                // command emitted more events than this one did.
                Err(source @ AppendError::DuplicateEventId { .. }) => {
                    return match self.first_outcome(&stream, ids).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(CommandError::Append {
                            stream,
                            command_id: ids.command_id,
                            source,
                        }),
                    };
                }
                Err(AppendError::Archived { .. }) => {
                    return Err(CommandError::Archived { stream });
                }
                Err(source) => {
                    return Err(CommandError::Append {
                        stream,
                        command_id: ids.command_id,
                        source,
                    });
                }
            }
        }
    }

    /// Whether `stream` is archived, asked only where no append has answered it: before a
    /// rejection or a no-op is returned, so that every command on an archived stream fails
    /// alike.
    async fn archived(&self, stream: &StreamId) -> Result<bool, CommandError<A::Error>> {
        self.store
            .is_archived(stream)
            .await
            .map_err(|source| CommandError::Load {
                stream: stream.clone(),
                source,
            })
    }

    /// Puts a state that is right as of its version back into the cache.
    fn keep(&self, loaded: Loaded<A>) {
        if let Some(cache) = &self.cache {
            cache.put(&loaded.stream_id, loaded.state, loaded.version);
        }
    }

    /// Evolves the state by the committed events, once, when the cache or a due snapshot
    /// needs it.
    async fn after_commit(&self, loaded: Loaded<A>, committed: &[EventEnvelope<A::Event>]) {
        let Some(last) = committed.last() else {
            return;
        };
        let snapshot_due = self.snapshots.is_due(loaded.version, last.version);
        if !snapshot_due && self.cache.is_none() {
            return;
        }
        let mut state = loaded.state;
        for envelope in committed {
            state.apply(&envelope.event);
        }
        if snapshot_due {
            self.save_snapshot(&state, last).await;
        }
        self.keep(Loaded {
            stream_id: loaded.stream_id,
            version: last.version,
            state,
        });
    }

    /// Applies the events after `start` (or all of them) to its state, up to `as_of`.
    ///
    /// Nothing past the target is decoded: an event a load does not include must not make
    /// it fail, even one this build cannot read (a newer schema version, an unknown type).
    async fn catch_up(
        &self,
        stream: &StreamId,
        start: Option<(A, Version)>,
        as_of: Option<AsOf>,
    ) -> Result<Loaded<A>, ReadError> {
        let (mut state, mut version) = start.unwrap_or_else(|| (A::default(), Version::INITIAL));
        let target = match as_of {
            Some(AsOf::Time(time)) => return self.catch_up_to(stream, state, version, time).await,
            Some(AsOf::Version(target)) => Some(target),
            Some(AsOf::Latest) | None => None,
        };
        if target.is_none_or(|target| version < target) {
            let events = self.store.read_stream::<A::Event>(stream, version.next());
            futures_util::pin_mut!(events);
            while let Some(envelope) = events.next().await {
                let envelope = envelope?;
                state.apply(&envelope.event);
                version = envelope.version;
                // Stop here rather than at the first later event: reading that one would
                // decode it.
                if target.is_some_and(|target| version >= target) {
                    break;
                }
            }
        }
        Ok(Loaded {
            stream_id: stream.clone(),
            version,
            state,
        })
    }

    /// Applies the events after `version` to `state` while they were recorded at or before
    /// `time`.
    ///
    /// The stream is read raw so that each event's recorded time is checked before its
    /// payload is decoded: the first event recorded too late ends the load undecoded.
    async fn catch_up_to(
        &self,
        stream: &StreamId,
        mut state: A,
        mut version: Version,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Loaded<A>, ReadError> {
        // The snapshot was taken by the application's clock and its events recorded by the
        // store's, so its own last event is read again to check that it was recorded in
        // time.
        let mut check_start = version > Version::INITIAL;
        let from = if check_start { version } else { version.next() };
        let events = self.store.read_stream::<RawEvent>(stream, from);
        futures_util::pin_mut!(events);
        while let Some(envelope) = events.next().await {
            let envelope = envelope?;
            let included = envelope.recorded_at <= time;
            if std::mem::take(&mut check_start) {
                if included {
                    continue;
                }
                // The snapshot holds events recorded later: replay from the start instead.
                return Box::pin(self.catch_up(stream, None, Some(AsOf::Time(time)))).await;
            }
            if !included {
                break;
            }
            let RawEvent {
                event_type,
                schema_version,
                payload,
            } = envelope.event;
            let event =
                A::Event::decode(&event_type, schema_version, payload).map_err(|source| {
                    ReadError::decode(
                        envelope.event_id,
                        envelope.stream_id,
                        envelope.version,
                        envelope.position,
                        event_type,
                        schema_version,
                        source,
                    )
                })?;
            state.apply(&event);
            version = envelope.version;
        }
        Ok(Loaded {
            stream_id: stream.clone(),
            version,
            state,
        })
    }

    /// The usable snapshot of `stream`, if the policy keeps them (and, for a load `as_of`,
    /// it holds no later events). A snapshot that cannot be used (another schema version,
    /// a state that no longer decodes, a failing backend) is skipped with a warning:
    /// replaying the events always gives the right state.
    async fn load_snapshot(&self, stream: &StreamId, as_of: Option<AsOf>) -> Option<(A, Version)> {
        if self.snapshots == SnapshotPolicy::Never {
            return None;
        }
        let snapshot = match self.store.load_snapshot(stream).await {
            Ok(snapshot) => snapshot?,
            Err(error) => {
                tracing::warn!(%stream, error = &error as &dyn std::error::Error, "cannot load snapshot; replaying events");
                return None;
            }
        };
        if as_of.is_some_and(|as_of| !as_of.admits(&snapshot)) {
            return None;
        }
        if snapshot.schema_version != A::SNAPSHOT_VERSION {
            tracing::info!(%stream, stored = snapshot.schema_version, current = A::SNAPSHOT_VERSION, "ignoring snapshot of another schema version");
            return None;
        }
        match A::decode_snapshot(snapshot.state)? {
            Ok(state) => Some((state, snapshot.version)),
            Err(error) => {
                // serde's message quotes the state's values: log what is wrong only.
                let error = crate::PayloadError::from(error);
                tracing::warn!(%stream, version = %snapshot.version, error = &error as &dyn std::error::Error, "cannot decode snapshot; replaying events");
                None
            }
        }
    }

    async fn save_snapshot(&self, state: &A, last: &EventEnvelope<A::Event>) {
        let encoded = match state.encode_snapshot() {
            Some(Ok(encoded)) => encoded,
            Some(Err(error)) => {
                let error = crate::PayloadError::from(error);
                tracing::warn!(stream = %last.stream_id, error = &error as &dyn std::error::Error, "cannot encode snapshot");
                return;
            }
            None => return,
        };
        let snapshot = Snapshot {
            stream_id: last.stream_id.clone(),
            version: last.version,
            schema_version: A::SNAPSHOT_VERSION,
            state: encoded,
            taken_at: chrono::Utc::now(),
        };
        // The command has committed; a lost snapshot only costs a longer load later.
        if let Err(error) = self.store.save_snapshot(snapshot).await {
            tracing::warn!(stream = %last.stream_id, error = &error as &dyn std::error::Error, "cannot save snapshot");
        }
    }

    /// The events a previous execution of this command (or an attempt of this one whose
    /// append may have been stored) recorded on `stream`, if any.
    async fn first_outcome(
        &self,
        stream: &StreamId,
        ids: &EventIds<'_>,
    ) -> Result<Option<CommandOutcome<A::Event>>, CommandError<A::Error>> {
        if !ids.may_be_stored() {
            return Ok(None);
        }
        let load_error = |source| CommandError::Load {
            stream: stream.clone(),
            source,
        };
        let first_id = ids.get(0);
        let Some(first) = self
            .store
            .find_event::<A::Event>(first_id)
            .await
            .map_err(load_error)?
        else {
            return Ok(None);
        };
        if &first.stream_id != stream {
            return Ok(None);
        }
        let mut events = Vec::new();
        let rest = self.store.read_stream::<A::Event>(stream, first.version);
        futures_util::pin_mut!(rest);
        while let Some(envelope) = rest.next().await {
            let envelope = envelope.map_err(load_error)?;
            if ids.get(events.len()) != envelope.event_id {
                break;
            }
            events.push(envelope);
        }
        Ok(Some(CommandOutcome {
            stream_id: stream.clone(),
            version: events.last().map_or(first.version, |e| e.version),
            events,
            // A command id of this execution alone: what was stored is this very command,
            // whose first reply was lost, not an earlier one. (With the caller's id it may
            // be either; it is reported as the repeat it may be.)
            duplicate: ids.context.command_id_given(),
        }))
    }

    async fn back_off(&self, failed_attempts: u32) {
        let delay = self.retry.backoff(failed_attempts);
        if !delay.is_zero() {
            // A timer of its own, so that command execution works on any runtime (or on a
            // Tokio runtime built without its time driver).
            futures_timer::Delay::new(delay).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_is_due_when_crossing_a_multiple() {
        let every3 = SnapshotPolicy::every(3);
        assert!(!every3.is_due(Version::new(0), Version::new(2)));
        assert!(every3.is_due(Version::new(2), Version::new(3)));
        assert!(every3.is_due(Version::new(1), Version::new(7)));
        assert!(!every3.is_due(Version::new(3), Version::new(5)));
        assert!(!SnapshotPolicy::every(0).is_due(Version::new(0), Version::new(100)));
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy =
            RetryPolicy::default().with_backoff(Duration::from_millis(2), Duration::from_millis(5));
        for attempt in 1..40 {
            assert!(policy.backoff(attempt) <= Duration::from_millis(5));
        }
        let none = RetryPolicy::default().with_backoff(Duration::ZERO, Duration::ZERO);
        assert_eq!(none.backoff(3), Duration::ZERO);
    }
}
