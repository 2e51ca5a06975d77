//! [`ProjectionRunner`]: feeds a projection from its checkpoint, commits in batches, applies
//! its error policy, coordinates instances through leases, and rebuilds.
//!
//! The runner's parts each live in a module of their own: where the checkpoint and parked
//! events are kept (`checkpoint`), the lease that lets one of several instances run
//! (`lease`), the error policy and the attempts it counts (`policy`), what a runner reports
//! (`status`), why it stops (`error`), and the loop that reads, handles and commits
//! (`drive`), and how a caller waits for it to reach a position (`wait`). This module holds the runner itself: its settings and what callers ask of it.

mod checkpoint;
mod drive;
mod error;
mod lease;
mod policy;
mod progress;
mod status;
mod wait;

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tracing::Instrument as _;
use uuid::Uuid;

use self::checkpoint::{Checkpoint, CheckpointMode};
pub use self::error::RunnerError;
use self::lease::Lease;
use self::policy::Attempts;
pub use self::policy::{ErrorPolicy, OnFailure};
pub use self::status::{ProjectionStatus, RunnerState, StatusHandle};
pub use self::wait::WaitError;
use crate::backoff::Backoff;
use crate::error::{ReadError, StoreError};
use crate::event::EventEnvelope;
use crate::projection::Projection;
use crate::store::{
    CheckpointStore, DeadLetterStore, EventFilter, EventStore, LeaseStore, ParkedEvent, Partition,
};
use crate::stream::Position;

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
    /// How often at most the lag gauge is sampled.
    lag_sample_interval: Duration,
    policy: ErrorPolicy,
    lease: Lease,
    partition: Option<Partition>,
    checkpoint: Checkpoint,
    status: StatusHandle,
    /// Attempts at the events that are failing, across the replays that start over.
    attempts: Attempts,
    /// Events counted in the status as handled since the last commit: taken off again when
    /// their batch is dropped.
    uncommitted: u64,
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

/// The runner asks of its store the four traits it uses, not snapshots
/// ([`Store`](crate::Store) without [`SnapshotStore`](crate::SnapshotStore)).
impl<P, S> ProjectionRunner<P, S>
where
    P: Projection,
    S: EventStore + CheckpointStore + DeadLetterStore + LeaseStore,
{
    /// A runner of `projection` on `store` that **resumes from the checkpoint stored under
    /// the projection's name**: batches of 500 events, commits at least every 100 ms while
    /// live, the default [`ErrorPolicy`], and a lease of 10 s.
    ///
    /// This is the runner for a read model that outlives the process (a table, a document
    /// store) or keeps its own checkpoint. For a read model held in process memory, which
    /// a new process starts empty, use [`in_memory`](ProjectionRunner::in_memory): resuming
    /// from a checkpoint stored by an earlier process would leave it empty of everything
    /// before. A runner that resumes from a stored checkpoint says so in an `info` event.
    pub fn new(store: S, projection: P) -> Self {
        let status = StatusHandle::new(projection.name().to_owned(), projection.filter(), {
            let store = store.clone();
            Arc::new(move || store.stall())
        });
        Self {
            checkpoint: Checkpoint::of(&projection),
            status,
            projection,
            store,
            catch_up_wait: Duration::from_secs(30),
            batch_size: 500,
            commit_interval: Duration::from_millis(100),
            lag_sample_interval: crate::telemetry::LAG_SAMPLE_INTERVAL,
            policy: ErrorPolicy::default(),
            lease: Lease::new(Some(Duration::from_secs(10))),
            partition: None,
            attempts: Attempts::default(),
            uncommitted: 0,
            parked_ids: HashSet::new(),
            recovered: Vec::new(),
        }
    }

    /// A runner for a read model held in process memory: it starts from the beginning of
    /// the log in every process, whatever checkpoint an earlier one stored, and runs without
    /// a lease (each process holds its own copy). The same as
    /// [`new`](ProjectionRunner::new) followed by
    /// [`with_checkpoint_in_memory`](ProjectionRunner::with_checkpoint_in_memory).
    ///
    /// ```
    /// use es_core::{EventEnvelope, EventStore, ExpectedVersion, NewEvent, Projection, ProjectionRunner, RawEvent, StreamId};
    ///
    /// #[derive(Debug, Default)]
    /// struct Count(u64);
    ///
    /// impl Projection for Count {
    ///     type Event = RawEvent;
    ///     type Error = std::convert::Infallible;
    ///     fn name(&self) -> &str { "count" }
    ///     async fn handle(&mut self, _: &EventEnvelope<RawEvent>) -> Result<(), Self::Error> {
    ///         self.0 += 1;
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
    /// let store = es_memory::MemoryEventStore::new();
    /// let stream = StreamId::new("order", "1")?;
    /// let event = NewEvent::new(RawEvent::new("OrderPlaced", 1, serde_json::json!({})));
    /// store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
    ///
    /// // An earlier process's runner stored a checkpoint past the event ...
    /// ProjectionRunner::new(store.clone(), Count::default()).catch_up().await?;
    /// // ... which a fresh view in memory must not resume from.
    /// let mut fresh = ProjectionRunner::in_memory(store, Count::default());
    /// fresh.catch_up().await?;
    /// assert_eq!(fresh.projection().0, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn in_memory(store: S, projection: P) -> Self {
        Self::new(store, projection).with_checkpoint_in_memory()
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

    /// Asks the store how far behind the runner is (the
    /// [`PROJECTION_LAG`](crate::telemetry::PROJECTION_LAG) gauge) at most this often;
    /// [`LAG_SAMPLE_INTERVAL`](crate::telemetry::LAG_SAMPLE_INTERVAL) by default. Each
    /// sample is a count of the events left, which on a long log is a scan: a shorter
    /// interval costs queries, a longer one leaves the gauge behind.
    #[must_use]
    pub fn with_lag_sample_interval(mut self, interval: Duration) -> Self {
        self.lag_sample_interval = interval;
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
        self.lease = Lease::new(ttl);
        self
    }

    /// Keeps the checkpoint in this runner only, not in the store, and runs without a
    /// lease: for a read model held in process memory, which a new process must build from
    /// the start of the log (a stored checkpoint would make it resume with an empty view),
    /// and which each process holds on its own. Its parked events stay in the runner too
    /// ([`parked`](ProjectionRunner::parked)).
    ///
    /// Not meant for a projection that keeps its own checkpoint
    /// ([`Projection::keeps_own_checkpoint`]): the runner would ignore the stored one and
    /// start from the beginning of the log. It still rolls a failed or interrupted
    /// event's batch back whole, as that projection's writes and checkpoint go together,
    /// and commits the checkpoint in memory only past what the projection committed.
    #[must_use]
    pub fn with_checkpoint_in_memory(mut self) -> Self {
        if self.checkpoint.mode() == CheckpointMode::Projection {
            tracing::warn!(projection = %self.key(), "a checkpoint in memory for a projection that keeps its own: the stored one is ignored");
        }
        self.checkpoint.set_mode(CheckpointMode::Memory);
        self.lease = Lease::new(None);
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
    /// committed so far ([`EventStore::head`](crate::EventStore::head)) is readable, then reads the log to its end:
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
        if !self.acquire().await? {
            return Err(RunnerError::LeaseHeld { projection: key });
        }
        // Checkpoints first: a crash before the reset then replays into the old read model
        // (at least once), where the other order would resume past an emptied one.
        let siblings = self.sibling_keys();
        self.checkpoint
            .forget(&self.store, &siblings)
            .await
            .map_err(|source| RunnerError::Store {
                projection: key.clone(),
                source,
            })?;
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
        self.checkpoint.restart_from_the_beginning();
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
        self.checkpoint
            .parked(&self.store, &self.key())
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
        if !self.acquire().await? {
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
                    let position = self
                        .checkpoint
                        .load(&mut self.projection, &self.store, &key)
                        .await?
                        .unwrap_or(Position::START);
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

    /// Takes the lease, or renews it; `true` if this runner holds it (always, without one).
    async fn acquire(&mut self) -> Result<bool, RunnerError> {
        let key = self.key();
        self.lease
            .acquire(&self.store, &key)
            .await
            .map_err(self.store_failed())
    }

    /// Whether this runner has held its lease without a break, renewing it when due.
    async fn keep_lease(&mut self) -> Result<bool, RunnerError> {
        let key = self.key();
        self.lease
            .keep(&self.store, &key)
            .await
            .map_err(self.store_failed())
    }

    async fn release(&self) {
        self.lease.release(&self.store, &self.key()).await;
    }

    /// Wraps a store failure as this runner's error.
    fn store_failed(&self) -> impl FnOnce(StoreError) -> RunnerError + '_ {
        move |source| RunnerError::Store {
            projection: self.key(),
            source,
        }
    }

    fn span(&self, envelope: &EventEnvelope<P::Event>) -> tracing::Span {
        crate::telemetry::handle_span(&self.key(), envelope)
    }
}
