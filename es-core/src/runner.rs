//! [`ProjectionRunner`]: feeds a projection from its checkpoint, commits in batches, applies
//! its error policy, coordinates instances through leases, and rebuilds.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_core::Stream;
use futures_util::future::{Either, select};
use futures_util::{FutureExt as _, StreamExt as _};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::backoff::Backoff;
use crate::error::{BoxError, ReadError, StoreError};
use crate::event::EventEnvelope;
use crate::projection::Projection;
use crate::store::{EventFilter, EventStore, ParkedEvent, Partition, Stall, Store};
use crate::stream::Position;

/// The events a runner reads, boxed so that history and live reads share one type.
type Events<E> = Pin<Box<dyn Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send>>;

/// What a runner does when a projection fails on an event.
///
/// It first tries again `retries` times, waiting `backoff`, then twice as long each time;
/// then it stops or parks the event (sets it aside in the store's dead-letter table, visible
/// through [`DeadLetterStore::parked`](crate::DeadLetterStore::parked) and retried by [`ProjectionRunner::retry_parked`])
/// and goes on. It never drops an event silently.
///
/// An event the runner cannot even decode (a stored version with no upcaster to the
/// projection's type, a payload that does not fit) is parked at once under the park
/// policy (decoding again would fail again), and stops the runner under the others, with
/// a read error naming the event. A deployment that learns to decode it can then
/// [`retry_parked`](ProjectionRunner::retry_parked) or rebuild.
///
/// ```
/// use es_core::{ErrorPolicy, OnFailure};
/// use std::time::Duration;
///
/// let policy = ErrorPolicy::retry(5, Duration::from_millis(100)).then(OnFailure::Park);
/// assert_eq!(policy.retries(), 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorPolicy {
    retries: u32,
    backoff: Duration,
    then: OnFailure,
}

/// What a runner does once retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop the runner with the error; the event stays next in line.
    Stop,
    /// Park the event and go on with the next.
    Park,
}

impl Default for ErrorPolicy {
    /// Three retries from 100 ms, then stop.
    fn default() -> Self {
        Self::retry(3, Duration::from_millis(100))
    }
}

impl ErrorPolicy {
    /// Stop at the first failure.
    pub fn stop() -> Self {
        Self {
            retries: 0,
            backoff: Duration::ZERO,
            then: OnFailure::Stop,
        }
    }

    /// Park at the first failure.
    pub fn park() -> Self {
        Self::stop().then(OnFailure::Park)
    }

    /// Try again `retries` times, waiting `backoff` and doubling, then stop.
    pub fn retry(retries: u32, backoff: Duration) -> Self {
        Self {
            retries,
            backoff,
            then: OnFailure::Stop,
        }
    }

    /// What to do once retries are exhausted.
    #[must_use]
    pub fn then(mut self, then: OnFailure) -> Self {
        self.then = then;
        self
    }

    /// How many times a failed event is tried again.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    fn pause(&self, failures: u32) -> Duration {
        self.backoff
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(Duration::from_secs(60))
    }
}

/// Where a runner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunnerState {
    /// Not started.
    Idle,
    /// Reading history.
    CatchingUp,
    /// At the end of the log, handling events as they come.
    Live,
    /// Waiting: another instance holds the projection's lease.
    Standby,
    /// Ended normally.
    Stopped,
    /// Ended with an error.
    Failed,
    /// Starting over after a failed commit or store call (a lost connection, say), with
    /// a growing pause between attempts; the error is in `last_error`.
    Recovering,
}

/// What a runner reports about its projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The projection's checkpoint key: its name, with the partition if it has one.
    pub key: String,
    /// Where the runner is.
    pub state: RunnerState,
    /// The last committed position.
    pub position: Option<Position>,
    /// Events handled since the runner started (parked ones included; those of a batch
    /// dropped before its commit taken off again).
    pub handled: u64,
    /// Events parked since the runner started.
    pub parked: u64,
    /// The last error the projection reported, if any.
    pub last_error: Option<String>,
    /// When the last handled event was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
    /// What keeps the store from delivering events to the runner right now, if anything
    /// ([`EventStore::stall`]): the store unreachable or timing out (the runner then
    /// shows [`RunnerState::Recovering`]), or events held back behind an open
    /// transaction.
    pub stall: Option<Stall>,
}

/// A live view of a runner's [`ProjectionStatus`], readable from anywhere while it runs.
#[derive(Clone)]
pub struct StatusHandle {
    status: Arc<Mutex<ProjectionStatus>>,
    filter: EventFilter,
    /// The store's [`EventStore::stall`], asked whenever the status is read.
    stall: Arc<dyn Fn() -> Option<Stall> + Send + Sync>,
}

impl fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StatusHandle").field(&self.get()).finish()
    }
}

impl StatusHandle {
    /// The status now.
    pub fn get(&self) -> ProjectionStatus {
        let mut status = self.lock().clone();
        status.stall = (self.stall)();
        if matches!(status.stall, Some(Stall::Failing { .. }))
            && matches!(status.state, RunnerState::Live | RunnerState::CatchingUp)
        {
            status.state = RunnerState::Recovering;
        }
        status
    }

    /// How many events the projection has yet to handle: those after its last committed
    /// position that it reads.
    ///
    /// # Errors
    ///
    /// Fails if the store fails.
    pub async fn lag<S: EventStore>(&self, store: &S) -> Result<u64, ReadError> {
        let position = self.get().position.unwrap_or(Position::START);
        store.count_after(position, self.filter.clone()).await
    }

    // The status is plain data; a panic while it was locked leaves it readable.
    fn lock(&self) -> std::sync::MutexGuard<'_, ProjectionStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, change: impl FnOnce(&mut ProjectionStatus)) {
        change(&mut self.lock());
    }
}

/// Why a runner stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunnerError {
    /// The projection failed on an event and its policy said stop.
    #[error(
        "projection `{projection}` failed on event `{event_type}` at version {version} of stream `{stream}` (position {position}) after {attempts} attempts"
    )]
    Handler {
        /// The projection's checkpoint key.
        projection: String,
        /// The event's stream.
        stream: crate::stream::StreamId,
        /// Its version.
        version: crate::stream::Version,
        /// Its type.
        event_type: String,
        /// Its position.
        position: Position,
        /// How many times it was tried.
        attempts: u32,
        /// The projection's last error.
        #[source]
        source: BoxError,
    },
    /// The projection's storage failed for a moment while it handled an event
    /// ([`Projection::is_transient`]): nothing of the batch was committed. A live runner
    /// starts over from its checkpoint after a pause.
    #[error(
        "projection `{projection}` was interrupted at position {position}: its storage failed for a moment"
    )]
    Interrupted {
        /// The projection's checkpoint key.
        projection: String,
        /// The event it was handling.
        position: Position,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Committing a batch failed.
    #[error("projection `{projection}` could not commit at position {position}")]
    Commit {
        /// The projection's checkpoint key.
        projection: String,
        /// The position of the batch's last event.
        position: Position,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Reading the log failed, or an event cannot be decoded as the projection's type.
    #[error("projection `{projection}` cannot read the log")]
    Read {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: ReadError,
    },
    /// The store failed (checkpoints, parked events, leases).
    #[error("projection `{projection}`: store failure")]
    Store {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
    /// Resetting the projection for a rebuild failed.
    #[error("projection `{projection}` could not be reset")]
    Reset {
        /// The projection's checkpoint key.
        projection: String,
        /// The failure.
        #[source]
        source: BoxError,
    },
    /// Events committed before a catch-up stayed held back from log readers past the
    /// runner's catch-up wait: a transaction that began before them is still open.
    #[error(
        "projection `{projection}` waited {waited:?} for the log to let it read position {position}{}; find the open transaction (PgEventStore::horizon names it) or wait longer (with_catch_up_wait)",
        cause.as_deref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    HeldBack {
        /// The projection's checkpoint key.
        projection: String,
        /// The position it waited for.
        position: Position,
        /// How long it waited.
        waited: Duration,
        /// What holds the log back, as the store tells ([`EventStore::stall`]).
        cause: Option<String>,
    },
    /// Another instance holds the projection's lease.
    #[error("projection `{projection}` is run by another instance (it holds the lease)")]
    LeaseHeld {
        /// The projection's checkpoint key.
        projection: String,
    },
}

impl RunnerError {
    /// Whether a live runner starts over after it (from its committed checkpoint): a
    /// failed commit (a lost connection, an instance that moved the checkpoint first), a
    /// projection or store interrupted for a moment, or a read the store failed for a
    /// moment; not a lasting store failure (a missing privilege), which would only fail
    /// again.
    fn is_restartable(&self) -> bool {
        match self {
            Self::Interrupted { .. } => true,
            // A store failure that lasts (a missing table, a revoked privilege) would only
            // fail again; anything else (a lost connection, an instance that moved the
            // checkpoint first) is worth starting over for.
            Self::Commit { source, .. } => {
                crate::error::store_failure_within(&**source).is_none_or(StoreError::is_transient)
            }
            Self::Store { source, .. } => source.is_transient(),
            Self::Read { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// How many times in a row the projection's storage may fail on one event (a timeout, a
/// lost connection) before the failure is taken for the event's own and the error policy
/// judges it: a statement that times out on that event every time would otherwise be
/// retried forever.
const INTERRUPTIONS_PER_EVENT: u32 = 5;

/// What became of one event.
enum Outcome {
    Handled,
    Parked,
    /// Drop the uncommitted batch and read again from the last commit, committing event
    /// by event up to and including this position.
    Isolate(Position),
    /// The lease was lost while retrying: drop the uncommitted batch and stand by.
    LeaseLost,
}

/// Feeds a [`Projection`] from the log.
///
/// - **Checkpoints**: the runner reads after the projection's checkpoint and commits every
///   [`batch_size`](ProjectionRunner::with_batch_size) events, at the end of the history,
///   and at least every [`commit_interval`](ProjectionRunner::with_commit_interval) while
///   live. A projection that keeps its own checkpoint commits it with its writes; for
///   others the runner saves it in the store after the projection's
///   [`commit`](Projection::commit).
/// - **Errors**: the projection's [`ErrorPolicy`] decides between retrying, stopping and
///   parking. For a projection with its own checkpoint, a failed event's batch is rolled
///   back and replayed event by event, so the failure never takes other writes with it.
/// - **Instances**: several runners of one projection, in one process or many, take turns
///   through a lease in the store (renewed while they run): only the holder handles
///   events, the others stand by and take over when it stops.
/// - **Partitions**: [`with_partition`](ProjectionRunner::with_partition) restricts a runner
///   to one slice of the streams, with a checkpoint and lease of its own, so that slices
///   can run in parallel (tasks, processes) while each stream keeps its order.
/// - **Status**: [`status`](ProjectionRunner::status) gives a handle to the position,
///   counts, last error and lag, readable while the runner runs.
///
/// Each event is handled in a `tracing` span named `es.projection` (with the projection's
/// key, the stream and the version).
pub struct ProjectionRunner<P: Projection, S> {
    projection: P,
    store: S,
    /// How long `catch_up` waits for events held back behind open transactions.
    catch_up_wait: Duration,
    batch_size: usize,
    commit_interval: Duration,
    policy: ErrorPolicy,
    lease: Option<Duration>,
    partition: Option<Partition>,
    /// The checkpoint lives only in this runner (a read model held in process memory).
    checkpoint_in_memory: bool,
    owner: Uuid,
    status: StatusHandle,
    committed: Option<Position>,
    /// Attempts at the event that is failing, across the replays that isolate it.
    failing: HashMap<uuid::Uuid, u32>,
    /// The event the projection's storage failed on, and how many times in a row: a
    /// storage failure that recurs at one event is taken for the event's own.
    interrupted: Option<(uuid::Uuid, u32)>,
    /// When the lease is due for renewal.
    lease_renew_at: Instant,
    /// Events counted in the status as handled since the last commit: taken off again when
    /// their batch is dropped.
    uncommitted: u64,
    /// The parked events of a runner whose checkpoint lives in memory: they belong to
    /// this process's read model, not to the store's dead-letter table, which other
    /// processes with read models of their own would share.
    parked_here: Vec<ParkedEvent>,
    /// The ids of this runner's parked events, as read when reading started.
    parked_ids: HashSet<Uuid>,
    /// Parked events the projection has since handled (replayed by a rebuild, or re-read
    /// after a crash between parking and commit): unparked once their batch commits.
    recovered: Vec<Uuid>,
}

impl<P: Projection + fmt::Debug, S: fmt::Debug> fmt::Debug for ProjectionRunner<P, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.projection)
            .field("store", &self.store)
            .field("status", &self.status.get())
            .finish_non_exhaustive()
    }
}

impl<P: Projection, S: Store> ProjectionRunner<P, S> {
    /// A runner of `projection` on `store`: batches of 500 events, commits at least every
    /// 100 ms while live, the default [`ErrorPolicy`], and a lease of 10 s.
    pub fn new(store: S, projection: P) -> Self {
        let key = projection.name().to_owned();
        let filter = projection.filter();
        Self {
            status: StatusHandle {
                status: Arc::new(Mutex::new(ProjectionStatus {
                    key,
                    state: RunnerState::Idle,
                    position: None,
                    handled: 0,
                    parked: 0,
                    last_error: None,
                    last_event_at: None,
                    stall: None,
                })),
                filter,
                stall: {
                    let store = store.clone();
                    Arc::new(move || store.stall())
                },
            },
            projection,
            store,
            catch_up_wait: Duration::from_secs(30),
            batch_size: 500,
            commit_interval: Duration::from_millis(100),
            policy: ErrorPolicy::default(),
            lease: Some(Duration::from_secs(10)),
            partition: None,
            checkpoint_in_memory: false,
            owner: Uuid::now_v7(),
            committed: None,
            failing: HashMap::new(),
            interrupted: None,
            lease_renew_at: Instant::now(),
            uncommitted: 0,
            parked_here: Vec::new(),
            parked_ids: HashSet::new(),
            recovered: Vec::new(),
        }
    }

    /// How long [`catch_up`](ProjectionRunner::catch_up) and
    /// [`catch_up_through`](ProjectionRunner::catch_up_through) wait for events that a
    /// store holds back behind transactions still open (default 30 s) before they fail
    /// with [`RunnerError::HeldBack`].
    #[must_use]
    pub fn with_catch_up_wait(mut self, wait: Duration) -> Self {
        self.catch_up_wait = wait;
        self
    }

    /// Commits after this many events (at least 1).
    #[must_use]
    pub fn with_batch_size(mut self, events: usize) -> Self {
        self.batch_size = events.max(1);
        self
    }

    /// Commits at least this often while events trickle in.
    #[must_use]
    pub fn with_commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Sets what happens when the projection fails on an event.
    #[must_use]
    pub fn with_error_policy(mut self, policy: ErrorPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the lease's time to live (how long a crashed instance blocks the others), or
    /// `None` to run without one (only if no other instance can run). A time to live past a
    /// hundred years is taken as a hundred years.
    #[must_use]
    pub fn with_lease(mut self, ttl: Option<Duration>) -> Self {
        // Instants a `Duration::MAX` away cannot be computed; a century is never enough.
        const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);
        self.lease = ttl.map(|ttl| ttl.min(LONGEST));
        self
    }

    /// Keeps the checkpoint in this runner only, not in the store, and runs without a
    /// lease: for a read model held in process memory, which a new process must build from
    /// the start of the log (a stored checkpoint would make it resume with an empty view),
    /// and which each process holds on its own.
    #[must_use]
    pub fn with_checkpoint_in_memory(mut self) -> Self {
        self.checkpoint_in_memory = true;
        self.lease = None;
        self
    }

    /// Restricts the runner to one partition of the streams: its checkpoint and lease are
    /// the projection's name followed by `#index/count`.
    ///
    /// Because the count is part of the key, running with another count starts new
    /// checkpoints at the beginning of the log: changing the count is a
    /// [`rebuild`](ProjectionRunner::rebuild). Runners of different counts, or partitioned
    /// and unpartitioned runners of one projection, also take different leases, so nothing
    /// stops them from running at once and applying events twice: stop the old ones first.
    #[must_use]
    pub fn with_partition(mut self, partition: Partition) -> Self {
        self.partition = Some(partition);
        self.status.filter = self.filter();
        self.status.update(|status| status.key = self.key());
        self
    }

    /// A handle to the runner's status.
    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// The projection, mutably (between runs).
    pub fn projection_mut(&mut self) -> &mut P {
        &mut self.projection
    }

    /// The projection, giving up the runner.
    pub fn into_projection(self) -> P {
        self.projection
    }

    /// The key of the checkpoint, lease and parked events.
    pub fn key(&self) -> String {
        self.key_of(self.partition)
    }

    fn key_of(&self, partition: Option<Partition>) -> String {
        match partition {
            Some(partition) => format!("{}#{partition}", self.projection.name()),
            None => self.projection.name().to_owned(),
        }
    }

    /// The checkpoint keys a rebuild forgets: this runner's, and those of the other
    /// partitions of its count, since the read model they fed is reset too.
    fn sibling_keys(&self) -> Vec<String> {
        match self.partition {
            Some(partition) => Partition::all(partition.count())
                .map(|p| self.key_of(Some(p)))
                .collect(),
            None => vec![self.key()],
        }
    }

    fn filter(&self) -> EventFilter {
        let filter = self.projection.filter();
        match self.partition {
            Some(partition) => filter.with_partition(partition),
            None => filter,
        }
    }

    /// Handles every event committed before the call, commits, and returns how many it
    /// handled (or parked).
    ///
    /// A store may hold fresh events back from log readers for a moment (PostgreSQL does
    /// while transactions that began before them are still open, so that none is ever
    /// skipped). So this first waits, up to the
    /// [catch-up wait](ProjectionRunner::with_catch_up_wait), until the newest event
    /// committed so far ([`EventStore::head`]) is readable, then reads the log to its end:
    /// afterwards the projection has seen every event committed before the call that it
    /// selects. If another instance holds the lease, it waits up to one lease term for it
    /// (the lease of a crashed instance runs out by then).
    ///
    /// # Errors
    ///
    /// [`RunnerError::HeldBack`] if the events stay held back past the wait (the error
    /// says what holds them, as the store tells), and fails if the policy stops on a
    /// failure, a commit or the store fails, or another instance still holds the lease.
    pub async fn catch_up(&mut self) -> Result<u64, RunnerError> {
        let head = self
            .store
            .head()
            .await
            .map_err(|source| RunnerError::Read {
                projection: self.key(),
                source,
            })?;
        if let Some(head) = head {
            self.wait_until_readable(head).await?;
        }
        self.drive(false, std::future::pending()).await
    }

    /// Waits until the event at `position` (one you appended, say) is readable from the
    /// log, then catches up: afterwards the projection has seen it, if it selects it. This
    /// is how to read your own writes through a projection.
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::catch_up`].
    pub async fn catch_up_through(&mut self, position: Position) -> Result<u64, RunnerError> {
        self.wait_until_readable(position).await?;
        self.drive(false, std::future::pending()).await
    }

    /// Waits, up to the catch-up wait, until the store lets log readers read `position`.
    async fn wait_until_readable(&mut self, position: Position) -> Result<(), RunnerError> {
        const PAUSE: Backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(100));
        let deadline = Instant::now() + self.catch_up_wait;
        let mut tries = 0;
        loop {
            let readable =
                self.store
                    .readable(position)
                    .await
                    .map_err(|source| RunnerError::Read {
                        projection: self.key(),
                        source,
                    })?;
            if readable {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(RunnerError::HeldBack {
                    projection: self.key(),
                    position,
                    waited: self.catch_up_wait,
                    cause: self.store.stall().map(|stall| stall.to_string()),
                });
            }
            tries += 1;
            futures_timer::Delay::new(PAUSE.pause(tries)).await;
        }
    }

    /// Runs until the projection's policy stops it: the history, then every new event.
    /// Waits while another instance holds the lease.
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::catch_up`], except that a held lease is waited out.
    pub async fn run(&mut self) -> Result<(), RunnerError> {
        self.run_until(std::future::pending()).await
    }

    /// As [`ProjectionRunner::run`], until `shutdown` completes; then commits what it
    /// handled and releases its lease.
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::run`].
    pub async fn run_until(
        &mut self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RunnerError> {
        self.drive(true, shutdown).await.map(drop)
    }

    /// Forgets the read model and its checkpoint and handles the whole log again.
    ///
    /// For a partitioned runner, the read model is shared: the rebuild resets it and the
    /// checkpoints of every partition of the runner's count, then catches up this
    /// partition. Stop the other partitions' runners first and start them again after:
    /// they begin at the start of the log. (Calling `rebuild` on each of them would reset
    /// the read model again each time.)
    ///
    /// Parked events are replayed with the rest: those the projection now handles are
    /// unparked, the others are parked again.
    ///
    /// # Errors
    ///
    /// As [`ProjectionRunner::catch_up`], and if the reset fails.
    pub async fn rebuild(&mut self) -> Result<u64, RunnerError> {
        let key = self.key();
        if let Some(ttl) = self.lease
            && !self.acquire(ttl).await?
        {
            return Err(RunnerError::LeaseHeld { projection: key });
        }
        // Checkpoints first: a crash before the reset then replays into the old read model
        // (at least once), where the other order would resume past an emptied one.
        if !self.projection.keeps_own_checkpoint() && !self.checkpoint_in_memory {
            for checkpoint in self.sibling_keys() {
                self.store
                    .delete_checkpoint(&checkpoint)
                    .await
                    .map_err(self.store_failed())?;
            }
        }
        self.projection
            .reset()
            .await
            .map_err(|e| RunnerError::Reset {
                projection: key.clone(),
                source: Box::new(e),
            })?;
        // A reset that outlasted the lease may have let another instance start on the
        // emptied model meanwhile, which this one's reset may have wiped in part.
        if !self.keep_lease().await? {
            return Err(RunnerError::LeaseHeld { projection: key });
        }
        self.committed = None;
        self.status.update(|status| status.position = None);
        self.catch_up().await
    }

    /// The events this runner's projection has parked, oldest first: from the store's
    /// dead-letter table, or from the runner itself when its checkpoint lives in memory.
    ///
    /// # Errors
    ///
    /// Fails if the store fails.
    pub async fn parked(&self) -> Result<Vec<ParkedEvent>, RunnerError> {
        if self.checkpoint_in_memory {
            return Ok(self.parked_here.clone());
        }
        self.store
            .parked(&self.key())
            .await
            .map_err(self.store_failed())
    }

    /// Hands each parked event of this projection to it again; those it now handles are
    /// unparked, the others stay parked with the new error. Returns how many were handled.
    ///
    /// # Errors
    ///
    /// Fails if the store fails or a commit fails, or if the runner loses its lease
    /// meanwhile.
    pub async fn retry_parked(&mut self) -> Result<usize, RunnerError> {
        let key = self.key();
        if let Some(ttl) = self.lease
            && !self.acquire(ttl).await?
        {
            return Err(RunnerError::LeaseHeld { projection: key });
        }
        let outcome = self.retry_parked_inner().await;
        self.release().await;
        outcome
    }

    async fn retry_parked_inner(&mut self) -> Result<usize, RunnerError> {
        let key = self.key();
        let parked = self.parked().await?;
        let mut handled = 0;
        for mut entry in parked {
            let envelope = match self.store.find_event::<P::Event>(entry.event_id).await {
                Ok(envelope) => envelope,
                // Still undecodable: it stays parked, with what decoding says now.
                Err(error @ ReadError::Decode { .. }) => {
                    entry.error = crate::error::display_chain(&error);
                    entry.attempts += 1;
                    entry.parked_at = Utc::now();
                    self.park(entry).await?;
                    continue;
                }
                Err(source) => {
                    return Err(RunnerError::Read {
                        projection: key.clone(),
                        source,
                    });
                }
            };
            let Some(envelope) = envelope else {
                continue;
            };
            let span = self.span(&envelope);
            match self.projection.handle(&envelope).instrument(span).await {
                Ok(()) => {
                    if !self.keep_lease().await? {
                        self.rollback().await;
                        return Err(RunnerError::LeaseHeld { projection: key });
                    }
                    // Commit the writes without moving the checkpoint.
                    let position = self.checkpoint().await?.unwrap_or(Position::START);
                    self.commit(position).await?;
                    self.unpark(entry.event_id).await?;
                    handled += 1;
                }
                Err(error) => {
                    self.rollback().await;
                    tracing::warn!(projection = %key, event_id = %entry.event_id, error = &error as &dyn std::error::Error, "parked event failed again");
                    entry.error = error.to_string();
                    entry.attempts += 1;
                    entry.parked_at = Utc::now();
                    self.park(entry).await?;
                }
            }
        }
        Ok(handled)
    }

    /// Parks the event `error` could not decode (a [`ReadError::Decode`]).
    async fn park_undecodable(&mut self, error: &ReadError) -> Result<(), RunnerError> {
        let ReadError::Decode {
            event_id,
            stream,
            version,
            position,
            event_type,
            ..
        } = error
        else {
            return Ok(());
        };
        let message = crate::error::display_chain(error);
        self.status.update(|status| {
            status.last_error = Some(message.clone());
            status.parked += 1;
            status.handled += 1;
        });
        self.park(ParkedEvent {
            projection: self.key(),
            event_id: *event_id,
            stream_id: stream.clone(),
            version: *version,
            position: *position,
            event_type: event_type.clone(),
            error: message,
            attempts: 1,
            parked_at: Utc::now(),
        })
        .await
    }

    async fn park(&mut self, entry: ParkedEvent) -> Result<(), RunnerError> {
        if self.checkpoint_in_memory {
            self.parked_here.retain(|e| e.event_id != entry.event_id);
            self.parked_here.push(entry);
            return Ok(());
        }
        self.store.park(entry).await.map_err(self.store_failed())
    }

    async fn unpark(&mut self, event_id: Uuid) -> Result<(), RunnerError> {
        if self.checkpoint_in_memory {
            self.parked_here.retain(|e| e.event_id != event_id);
            return Ok(());
        }
        self.store
            .unpark(&self.key(), event_id)
            .await
            .map_err(self.store_failed())
    }

    async fn checkpoint(&mut self) -> Result<Option<Position>, RunnerError> {
        let key = self.key();
        if self.checkpoint_in_memory {
            return Ok(self.committed);
        }
        if self.projection.keeps_own_checkpoint() {
            self.projection
                .load_checkpoint(&key)
                .await
                .map_err(|e| RunnerError::Commit {
                    projection: key,
                    position: Position::START,
                    source: Box::new(e),
                })
        } else {
            self.store
                .load_checkpoint(&key)
                .await
                .map_err(self.store_failed())
        }
    }

    async fn commit(&mut self, position: Position) -> Result<(), RunnerError> {
        let key = self.key();
        let failed = |source: BoxError| RunnerError::Commit {
            projection: key.clone(),
            position,
            source,
        };
        self.projection
            .commit(&key, position)
            .await
            .map_err(|e| failed(Box::new(e)))?;
        if !self.projection.keeps_own_checkpoint() && !self.checkpoint_in_memory {
            self.store
                .save_checkpoint(&key, position)
                .await
                .map_err(|e| failed(Box::new(e)))?;
        }
        self.committed = Some(position);
        self.uncommitted = 0;
        self.status
            .update(|status| status.position = Some(position));
        for event_id in std::mem::take(&mut self.recovered) {
            self.unpark(event_id).await?;
        }
        Ok(())
    }

    /// Commits unless the lease may have been lost since the batch began; `false` if it
    /// dropped the batch instead (another instance may have handled these events).
    async fn commit_held(&mut self, position: Position) -> Result<bool, RunnerError> {
        if !self.keep_lease().await? {
            self.rollback().await;
            return Ok(false);
        }
        self.commit(position).await?;
        Ok(true)
    }

    async fn rollback(&mut self) {
        self.recovered.clear();
        if let Err(error) = self.projection.rollback().await {
            tracing::warn!(projection = %self.key(), error = &error as &dyn std::error::Error, "rollback failed");
        }
    }

    /// Takes or renews the lease; `true` if this runner holds it.
    async fn acquire(&mut self, ttl: Duration) -> Result<bool, RunnerError> {
        let asked_at = Instant::now();
        let held = self
            .store
            .acquire_lease(&self.key(), self.owner, ttl)
            .await
            .map_err(self.store_failed())?;
        Ok(self.lease_held(held, asked_at, ttl))
    }

    /// Whether this runner has held its lease without a break, renewing it when due.
    /// `false` once another instance took it (or it was released), even if this one could
    /// take it again now: the other may have handled the same events meanwhile. A lease
    /// that merely ran out while this runner was slow, with nobody taking it, still counts
    /// as held.
    async fn keep_lease(&mut self) -> Result<bool, RunnerError> {
        let Some(ttl) = self.lease else {
            return Ok(true);
        };
        let asked_at = Instant::now();
        if asked_at < self.lease_renew_at {
            return Ok(true);
        }
        let held = self
            .store
            .renew_lease(&self.key(), self.owner, ttl)
            .await
            .map_err(self.store_failed())?;
        Ok(self.lease_held(held, asked_at, ttl))
    }

    /// Counts one more storage failure at `event_id`; how many in a row now.
    fn interruption(&mut self, event_id: Uuid) -> u32 {
        let count = match self.interrupted {
            Some((at, count)) if at == event_id => count + 1,
            _ => 1,
        };
        self.interrupted = Some((event_id, count));
        count
    }

    /// Takes the events counted since the last commit off the status: their batch was
    /// dropped and they will be handled again.
    fn forget_uncommitted(&mut self) {
        let dropped = std::mem::take(&mut self.uncommitted);
        self.status
            .update(|status| status.handled = status.handled.saturating_sub(dropped));
    }

    /// Waits `pause`, renewing the lease meanwhile; `false` if it was lost.
    async fn pause_holding_lease(&mut self, pause: Duration) -> Result<bool, RunnerError> {
        let until = Instant::now() + pause;
        loop {
            if !self.keep_lease().await? {
                return Ok(false);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(true);
            }
            let mut slice = until - now;
            if self.lease.is_some() {
                let renewal = self.lease_renew_at.saturating_duration_since(now);
                slice = slice.min(renewal.max(Duration::from_millis(1)));
            }
            futures_timer::Delay::new(slice).await;
        }
    }

    async fn release(&self) {
        if self.lease.is_some()
            && let Err(error) = self.store.release_lease(&self.key(), self.owner).await
        {
            tracing::warn!(projection = %self.key(), error = &error as &dyn std::error::Error, "cannot release lease");
        }
    }

    /// Wraps a store failure as this runner's error.
    fn store_failed(&self) -> impl FnOnce(StoreError) -> RunnerError + '_ {
        move |source| RunnerError::Store {
            projection: self.key(),
            source,
        }
    }

    /// Notes a lease taken or renewed by a call made at `asked_at`; passes `held` on.
    fn lease_held(&mut self, held: bool, asked_at: Instant, ttl: Duration) -> bool {
        if held {
            self.lease_renew_at = asked_at + ttl / 3;
        }
        held
    }

    fn span(&self, envelope: &EventEnvelope<P::Event>) -> tracing::Span {
        tracing::debug_span!(
            "es.projection",
            projection = %self.key(),
            stream = %envelope.stream_id,
            version = %envelope.version,
        )
    }

    /// The loop behind `catch_up` (`live == false`: ends at the end of the log) and
    /// `run_until`.
    async fn drive(
        &mut self,
        live: bool,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<u64, RunnerError> {
        let mut shutdown = pin!(shutdown.fuse());
        // Short pauses: a runner is back within a second of its store.
        const RESTART: Backoff =
            Backoff::new(Duration::from_millis(50), Duration::from_millis(500));
        let mut failures = 0;
        let outcome = loop {
            match self.drive_inner(live, &mut shutdown).await {
                // A live runner outlasts a failed commit or store call (a lost connection,
                // an instance that moved the checkpoint first): it drops the batch and
                // starts again from the committed checkpoint.
                Err(error) if live && error.is_restartable() => {
                    failures += 1;
                    let pause = RESTART.pause(failures);
                    tracing::warn!(projection = %self.key(), error = &error as &dyn std::error::Error, ?pause, "restarting after a failure");
                    self.status.update(|status| {
                        status.last_error = Some(crate::error::display_chain(&error));
                        status.state = RunnerState::Recovering;
                    });
                    self.rollback().await;
                    self.forget_uncommitted();
                    if wait_or_shutdown(pause, &mut shutdown).await {
                        break Ok(0);
                    }
                }
                outcome => break outcome,
            }
        };
        if outcome.is_err() {
            // Whatever was handled and not committed is not done.
            self.rollback().await;
            self.forget_uncommitted();
        }
        self.release().await;
        self.status.update(|status| {
            status.state = if outcome.is_ok() {
                RunnerState::Stopped
            } else {
                RunnerState::Failed
            };
        });
        outcome
    }

    async fn drive_inner<F>(
        &mut self,
        live: bool,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<u64, RunnerError>
    where
        F: Future<Output = ()> + Send,
    {
        let key = self.key();
        let mut handled = 0;
        // Commit event by event up to here: a failed event is being isolated.
        let mut isolate_until: Option<Position> = None;
        // Events handled since the last commit; forgotten when their batch is dropped.
        let mut pending: usize = 0;
        'restart: loop {
            handled -= pending as u64;
            pending = 0;
            self.forget_uncommitted();
            // Take the lease, or wait for it (live) / give up (catching up).
            if let Some(ttl) = self.lease {
                // Catching up waits at most one lease term: long enough for the lease of an
                // instance that crashed to run out, not for one that is alive.
                let give_up = Instant::now() + ttl + ttl / 10;
                loop {
                    if self.acquire(ttl).await? {
                        break;
                    }
                    if !live {
                        if Instant::now() >= give_up {
                            return Err(RunnerError::LeaseHeld { projection: key });
                        }
                        futures_timer::Delay::new(ttl / 10).await;
                        continue;
                    }
                    self.status
                        .update(|status| status.state = RunnerState::Standby);
                    if wait_or_shutdown(ttl / 3, shutdown).await {
                        return Ok(handled);
                    }
                }
            }
            self.status
                .update(|status| status.state = RunnerState::CatchingUp);
            self.committed = self.checkpoint().await?;
            let committed = self.committed;
            self.status.update(|status| status.position = committed);
            self.parked_ids = self
                .parked()
                .await?
                .into_iter()
                .map(|entry| entry.event_id)
                .collect();
            self.recovered.clear();
            let after = self.committed.unwrap_or(Position::START);
            let filter = self.filter();
            let mut events: Events<P::Event> = if live {
                Box::pin(self.store.subscribe::<P::Event>(after, filter))
            } else {
                Box::pin(self.store.read_all::<P::Event>(after, filter))
            };
            let mut last: Option<Position> = None;
            let mut commit_by: Option<Instant> = None;
            // One timer, moved when its deadline changes: a timer per event would cost more
            // than the event.
            let mut timer = futures_timer::Delay::new(Duration::from_secs(3600));
            let mut timer_at = Instant::now() + Duration::from_secs(3600);
            loop {
                // Keep the lease while working.
                if !self.keep_lease().await? {
                    tracing::info!(projection = %key, "lost the lease; standing by");
                    self.rollback().await;
                    continue 'restart;
                }
                let next = if live {
                    let far = Instant::now() + Duration::from_secs(3600);
                    let renewal = self.lease.map_or(far, |_| self.lease_renew_at);
                    let deadline = commit_by.unwrap_or(far).min(renewal);
                    if deadline != timer_at {
                        timer.reset(deadline.saturating_duration_since(Instant::now()));
                        timer_at = deadline;
                    }
                    next_event(&mut events, &mut timer, shutdown).await
                } else {
                    match events.next().await {
                        Some(event) => Next::Event(event),
                        None => Next::End,
                    }
                };
                let envelope = match next {
                    Next::Event(Ok(envelope)) => envelope,
                    // An event this build cannot decode, under the park policy: set it
                    // aside like an event the projection failed on, and read on after it
                    // (the read ended at it).
                    Next::Event(Err(
                        error @ ReadError::Decode {
                            event_id, position, ..
                        },
                    )) if self.policy.then == OnFailure::Park => {
                        tracing::warn!(projection = %key, error = &error as &dyn std::error::Error, "parking an event that cannot be decoded");
                        if !self.keep_lease().await? {
                            self.rollback().await;
                            continue 'restart;
                        }
                        self.park_undecodable(&error).await?;
                        self.parked_ids.insert(event_id);
                        handled += 1;
                        pending += 1;
                        self.uncommitted += 1;
                        // Committed past it, so that the next read starts after it.
                        if !self.commit_held(position).await? {
                            continue 'restart;
                        }
                        pending = 0;
                        continue 'restart;
                    }
                    Next::Event(Err(source)) => {
                        if let Some(position) = last {
                            self.commit_held(position).await?;
                        }
                        return Err(RunnerError::Read {
                            projection: key,
                            source,
                        });
                    }
                    Next::Idle | Next::End | Next::Shutdown => {
                        if let Some(position) = last.take() {
                            if !self.commit_held(position).await? {
                                if matches!(next, Next::Shutdown) {
                                    self.forget_uncommitted();
                                    return Ok(handled - pending as u64);
                                }
                                continue 'restart;
                            }
                            pending = 0;
                        }
                        commit_by = None;
                        match next {
                            Next::End if !live => return Ok(handled),
                            Next::Shutdown => return Ok(handled),
                            // A subscription does not end; if one does, start over.
                            Next::End => {
                                if wait_or_shutdown(Duration::from_millis(100), shutdown).await {
                                    return Ok(handled);
                                }
                                continue 'restart;
                            }
                            _ => {
                                self.status
                                    .update(|status| status.state = RunnerState::Live);
                                continue;
                            }
                        }
                    }
                };

                let position = envelope.position;
                let outcome = match self.handle(&envelope, pending).await {
                    Ok(outcome) => outcome,
                    Err(error) => {
                        // The events before the failing one are done: keep them. (Not
                        // after an interruption of a projection that keeps its own
                        // checkpoint: the batch was rolled back with it.)
                        let rolled_back = matches!(error, RunnerError::Interrupted { .. })
                            && self.projection.keeps_own_checkpoint();
                        if let Some(position) = last
                            && !rolled_back
                            && let Err(commit) = self.commit_held(position).await
                        {
                            tracing::warn!(projection = %key, error = &commit as &dyn std::error::Error, "cannot commit before stopping");
                        }
                        return Err(error);
                    }
                };
                match outcome {
                    Outcome::Handled | Outcome::Parked => {
                        if matches!(outcome, Outcome::Handled)
                            && !self.parked_ids.is_empty()
                            && self.parked_ids.remove(&envelope.event_id)
                        {
                            self.recovered.push(envelope.event_id);
                        }
                        handled += 1;
                        pending += 1;
                        self.uncommitted += 1;
                        last = Some(position);
                        self.status.update(|status| {
                            status.handled += 1;
                            status.last_event_at = Some(envelope.recorded_at);
                        });
                    }
                    Outcome::Isolate(failed_at) => {
                        isolate_until = Some(failed_at);
                        continue 'restart;
                    }
                    Outcome::LeaseLost => {
                        tracing::info!(projection = %key, "lost the lease while retrying; standing by");
                        continue 'restart;
                    }
                }
                let isolating = isolate_until.is_some_and(|until| position <= until);
                if isolate_until.is_some_and(|until| position >= until) {
                    isolate_until = None;
                }
                if pending >= self.batch_size || isolating {
                    if !self.commit_held(position).await? {
                        continue 'restart;
                    }
                    pending = 0;
                    last = None;
                    commit_by = None;
                } else if commit_by.is_none() {
                    commit_by = Some(Instant::now() + self.commit_interval);
                }
            }
        }
    }

    /// Hands one event to the projection, applying the error policy, in a span named
    /// `es.projection`.
    async fn handle(
        &mut self,
        envelope: &EventEnvelope<P::Event>,
        pending: usize,
    ) -> Result<Outcome, RunnerError> {
        let span = self.span(envelope);
        self.handle_with_policy(envelope, pending)
            .instrument(span)
            .await
    }

    async fn handle_with_policy(
        &mut self,
        envelope: &EventEnvelope<P::Event>,
        pending: usize,
    ) -> Result<Outcome, RunnerError> {
        loop {
            let error = match self.projection.handle(envelope).await {
                Ok(()) => {
                    // Events before it succeed on every start over: only its own success
                    // ends the count.
                    if self
                        .interrupted
                        .is_some_and(|(at, _)| at == envelope.event_id)
                    {
                        self.interrupted = None;
                    }
                    // Per event: skip hashing the id when nothing is failing (nearly always).
                    if !self.failing.is_empty() {
                        self.failing.remove(&envelope.event_id);
                    }
                    return Ok(Outcome::Handled);
                }
                Err(error)
                    if self.projection.is_transient(&error)
                        && self.interruption(envelope.event_id) <= INTERRUPTIONS_PER_EVENT =>
                {
                    // Not the event's fault, as far as can be told: start over, counting
                    // nothing against it.
                    self.rollback().await;
                    return Err(RunnerError::Interrupted {
                        projection: self.key(),
                        position: envelope.position,
                        source: Box::new(error),
                    });
                }
                Err(error) => error,
            };
            let attempts = {
                let attempts = self.failing.entry(envelope.event_id).or_insert(0);
                *attempts += 1;
                *attempts
            };
            tracing::warn!(
                attempts,
                error = &error as &dyn std::error::Error,
                "projection failed on an event"
            );
            let message = crate::error::display_chain(&error);
            self.status
                .update(|status| status.last_error = Some(message.clone()));
            if self.projection.keeps_own_checkpoint() {
                // The failed event's writes may be half done: drop the whole batch.
                self.rollback().await;
                if pending > 0 {
                    return Ok(Outcome::Isolate(envelope.position));
                }
            }
            if attempts <= self.policy.retries {
                // A long pause must not let the lease run out unnoticed: another instance
                // would take it and handle these events too.
                if !self
                    .pause_holding_lease(self.policy.pause(attempts))
                    .await?
                {
                    self.failing.remove(&envelope.event_id);
                    self.rollback().await;
                    return Ok(Outcome::LeaseLost);
                }
                continue;
            }
            self.failing.remove(&envelope.event_id);
            return match self.policy.then {
                OnFailure::Stop => Err(RunnerError::Handler {
                    projection: self.key(),
                    stream: envelope.stream_id.clone(),
                    version: envelope.version,
                    event_type: crate::DomainEvent::event_type(&envelope.event).to_owned(),
                    position: envelope.position,
                    attempts,
                    source: Box::new(error),
                }),
                OnFailure::Park => {
                    // After a slow failure another instance may hold the lease and have
                    // handled this event: parking it then would have it applied again.
                    if !self.keep_lease().await? {
                        self.rollback().await;
                        return Ok(Outcome::LeaseLost);
                    }
                    let parked = ParkedEvent {
                        projection: self.key(),
                        event_id: envelope.event_id,
                        stream_id: envelope.stream_id.clone(),
                        version: envelope.version,
                        position: envelope.position,
                        event_type: crate::DomainEvent::event_type(&envelope.event).to_owned(),
                        error: message,
                        attempts,
                        parked_at: Utc::now(),
                    };
                    self.park(parked).await?;
                    self.parked_ids.insert(envelope.event_id);
                    self.status.update(|status| status.parked += 1);
                    Ok(Outcome::Parked)
                }
            };
        }
    }
}

enum Next<E> {
    Event(Result<EventEnvelope<E>, ReadError>),
    /// Nothing came for a while: time to commit or renew.
    Idle,
    /// The history ended (catching up only).
    End,
    Shutdown,
}

async fn next_event<E, F>(
    events: &mut Events<E>,
    timer: &mut futures_timer::Delay,
    shutdown: &mut Pin<&mut F>,
) -> Next<E>
where
    F: Future<Output = ()>,
{
    let item = events.next();
    let either = select(item, select(timer, shutdown.as_mut())).await;
    match either {
        Either::Left((Some(event), _)) => Next::Event(event),
        Either::Left((None, _)) => Next::End,
        Either::Right((Either::Left(_), _)) => Next::Idle,
        Either::Right((Either::Right(_), _)) => Next::Shutdown,
    }
}

/// Waits `pause`; `true` if `shutdown` completed first.
async fn wait_or_shutdown<F: Future<Output = ()>>(
    pause: Duration,
    shutdown: &mut Pin<&mut F>,
) -> bool {
    let timer = futures_timer::Delay::new(pause);
    matches!(select(timer, shutdown.as_mut()).await, Either::Right(_))
}
