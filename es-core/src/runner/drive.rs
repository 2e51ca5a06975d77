//! The loop behind [`catch_up`](ProjectionRunner::catch_up) and
//! [`run_until`](ProjectionRunner::run_until): take the lease, read after the checkpoint,
//! hand each event to the projection under the error policy, commit in batches, and start
//! over from the last commit whenever a batch has to be dropped.

use std::pin::{Pin, pin};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_core::Stream;
use futures_util::future::{Either, select};
use futures_util::{FutureExt as _, StreamExt as _};
use tracing::Instrument as _;
use uuid::Uuid;

use super::checkpoint::CheckpointMode;
use super::policy::OnFailure;
use super::progress::Progress;
use super::{ProjectionRunner, RunnerError, RunnerState};
use crate::backoff::Backoff;
use crate::error::ReadError;
use crate::event::EventEnvelope;
use crate::projection::Projection;
use crate::store::{CheckpointStore, DeadLetterStore, EventStore, LeaseStore, ParkedEvent};
use crate::stream::Position;
use crate::telemetry::{self, Batch};

/// The events a runner reads, boxed so that history and live reads share one type.
type Events<E> = Pin<Box<dyn Stream<Item = Result<EventEnvelope<E>, ReadError>> + Send>>;

/// Short pauses between the starts over of a live runner: it is back within a second of
/// its store.
const RESTART: Backoff = Backoff::new(Duration::from_millis(50), Duration::from_millis(500));

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

/// How a read after the checkpoint ended.
enum Read {
    /// Drop what is uncommitted and read again from the last commit.
    Restart,
    /// The history is read (catching up), or the runner was asked to shut down.
    Done,
}

/// What the next step of a read is.
// Made and matched at once, never stored: boxing the envelope would cost an allocation per
// event for nothing.
#[expect(clippy::large_enum_variant)]
enum Next<E> {
    Event(Result<EventEnvelope<E>, ReadError>),
    /// Nothing came for a while: time to commit or renew.
    Idle,
    /// The history ended (catching up only).
    End,
    Shutdown,
}

impl<P, S> ProjectionRunner<P, S>
where
    P: Projection,
    S: EventStore + CheckpointStore + DeadLetterStore + LeaseStore,
{
    /// Drives the projection: to the end of the log (`live == false`), or until
    /// `shutdown` completes, starting over after failures a live runner outlasts.
    pub(super) async fn drive(
        &mut self,
        live: bool,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<u64, RunnerError> {
        let mut shutdown = pin!(shutdown.fuse());
        let mut failures = 0;
        let outcome = loop {
            match self.drive_once(live, &mut shutdown).await {
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

    /// One drive until it ends or fails: reads after the checkpoint, and again after it
    /// each time a batch is dropped.
    async fn drive_once<F>(
        &mut self,
        live: bool,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<u64, RunnerError>
    where
        F: Future<Output = ()> + Send,
    {
        let mut progress = Progress::new(self.lag_sample_interval);
        loop {
            progress.drop_pending();
            self.forget_uncommitted();
            if !self.take_lease(live, shutdown).await? {
                return Ok(progress.handled);
            }
            let mut events = self.read_after_checkpoint(live).await?;
            match self
                .read(live, &mut events, &mut progress, shutdown)
                .await?
            {
                Read::Restart => continue,
                Read::Done => return Ok(progress.handled),
            }
        }
    }

    /// Takes the lease, standing by while another instance holds it (live), or waiting at
    /// most one lease term (catching up): long enough for the lease of an instance that
    /// crashed to run out, not for one that is alive. `false` if shut down meanwhile.
    async fn take_lease<F>(
        &mut self,
        live: bool,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<bool, RunnerError>
    where
        F: Future<Output = ()> + Send,
    {
        let Some(ttl) = self.lease.ttl() else {
            return Ok(true);
        };
        let give_up = Instant::now() + ttl + ttl / 10;
        loop {
            if self.acquire().await? {
                return Ok(true);
            }
            if !live {
                if Instant::now() >= give_up {
                    return Err(RunnerError::LeaseHeld {
                        projection: self.key(),
                    });
                }
                futures_timer::Delay::new(ttl / 10).await;
                continue;
            }
            self.status
                .update(|status| status.state = RunnerState::Standby);
            self.refresh_standby_position(ttl / 3).await;
            if wait_or_shutdown(ttl / 3, shutdown).await {
                return Ok(false);
            }
        }
    }

    /// Shows in the status the checkpoint the instance holding the lease has committed:
    /// the read model the instances share is that far, and a caller waiting on this
    /// instance's status to read its own writes ([`StatusHandle::wait_for`], on another
    /// replica of a service) waits for that, not for a lease this instance may never get.
    /// The read prepares nothing ([`Projection::committed_checkpoint`]: no migrations
    /// applied by an instance that is not running the projection) and is bounded by
    /// `bound`; a failed or late read leaves the status as it was.
    ///
    /// [`StatusHandle::wait_for`]: super::StatusHandle::wait_for
    async fn refresh_standby_position(&mut self, bound: Duration) {
        let key = self.key();
        let read = self
            .checkpoint
            .peek(&mut self.projection, &self.store, &key);
        let late = futures_timer::Delay::new(bound);
        // What is stored, none included: after a reset the shared read model is empty, and
        // a position shown from before would let a wait end too early.
        if let Either::Left((Some(committed), _)) = select(pin!(read), late).await {
            self.status.update(|status| status.position = committed);
        }
    }

    /// Loads the checkpoint and the parked events' ids, and opens the read after it: the
    /// history (catching up), or the history and then live events.
    async fn read_after_checkpoint(&mut self, live: bool) -> Result<Events<P::Event>, RunnerError> {
        self.status
            .update(|status| status.state = RunnerState::CatchingUp);
        let key = self.key();
        let committed = self
            .checkpoint
            .load(&mut self.projection, &self.store, &key)
            .await?;
        if let Some(position) = committed
            && self.checkpoint.mode() != CheckpointMode::Memory
        {
            tracing::info!(projection = %key, %position, "resuming from the stored checkpoint");
        }
        self.status.update(|status| status.position = committed);
        self.parked_ids = self
            .parked()
            .await?
            .into_iter()
            .map(|entry| entry.event_id)
            .collect();
        self.recovered.clear();
        let after = committed.unwrap_or(Position::START);
        let filter = self.filter();
        Ok(if live {
            Box::pin(self.store.subscribe::<P::Event>(after, filter))
        } else {
            Box::pin(self.store.read_all::<P::Event>(after, filter))
        })
    }

    /// Handles the events `events` delivers, committing as it goes, until the history ends
    /// (catching up), a shutdown, or a batch that has to be dropped.
    async fn read<F>(
        &mut self,
        live: bool,
        events: &mut Events<P::Event>,
        progress: &mut Progress,
        shutdown: &mut Pin<&mut F>,
    ) -> Result<Read, RunnerError>
    where
        F: Future<Output = ()> + Send,
    {
        let key = self.key();
        // The last event handled and not yet committed, and when it must be by.
        let mut last: Option<Position> = None;
        let mut commit_by: Option<Instant> = None;
        // One timer, moved when its deadline changes: a timer per event would cost more
        // than the event.
        // `None` once it fired: reset at the next turn even to the same deadline (a fired
        // timer would fire again at once).
        let mut timer = futures_timer::Delay::new(Duration::from_secs(3600));
        let mut timer_at = Some(Instant::now() + Duration::from_secs(3600));
        loop {
            // Keep the lease while working.
            if !self.keep_lease().await? {
                tracing::info!(projection = %key, "lost the lease; standing by");
                self.rollback().await;
                return Ok(Read::Restart);
            }
            let next = if live {
                let far = Instant::now() + Duration::from_secs(3600);
                let renewal = self.lease.renew_at().unwrap_or(far);
                // An owed lag sample wakes an idle runner too: that is how a runner that
                // caught up shows it, without counting at every idle commit.
                let lag = progress.lag.wake_at().unwrap_or(far);
                let deadline = commit_by.unwrap_or(far).min(renewal).min(lag);
                if Some(deadline) != timer_at {
                    timer.reset(deadline.saturating_duration_since(Instant::now()));
                    timer_at = Some(deadline);
                }
                let next = next_event(events, &mut timer, shutdown).await;
                if matches!(next, Next::Idle) {
                    timer_at = None;
                }
                next
            } else {
                match events.next().await {
                    Some(event) => Next::Event(event),
                    None => Next::End,
                }
            };
            let envelope = match next {
                Next::Event(Ok(envelope)) => envelope,
                // An event this build cannot decode, under the park policy: set it aside
                // like an event the projection failed on, and read on after it (the read
                // ended at it).
                Next::Event(Err(error @ ReadError::Decode { .. }))
                    if self.policy.then == OnFailure::Park =>
                {
                    self.park_undecodable(&error, progress).await?;
                    return Ok(Read::Restart);
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
                                progress.drop_pending();
                                return Ok(Read::Done);
                            }
                            return Ok(Read::Restart);
                        }
                        progress.committed(&key, position);
                    }
                    commit_by = None;
                    // Idle, nothing held up: the time to count, if a sample is owed and
                    // due (not when stopping: a shutdown waits for no count).
                    if !matches!(next, Next::Shutdown) {
                        self.sample_lag(progress).await;
                    }
                    match next {
                        Next::End if !live => return Ok(Read::Done),
                        Next::Shutdown => return Ok(Read::Done),
                        // A subscription does not end; if one does, start over.
                        Next::End => {
                            if wait_or_shutdown(Duration::from_millis(100), shutdown).await {
                                return Ok(Read::Done);
                            }
                            return Ok(Read::Restart);
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
            let batch = progress
                .batch
                .get_or_insert_with(|| Batch::start(&key, position))
                .span()
                .clone();
            let outcome = match self.handle(&envelope, progress.pending, &key, &batch).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    // The events before the failing one are done: keep them. (Not after an
                    // interruption of a projection whose batch rolled back with it.)
                    let rolled_back = matches!(error, RunnerError::Interrupted { .. })
                        && self.checkpoint.rolls_back_batches();
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
                    progress.count_one();
                    self.uncommitted += 1;
                    last = Some(position);
                    self.status.update(|status| {
                        status.handled += 1;
                        status.last_event_at = Some(envelope.recorded_at);
                    });
                }
                Outcome::Isolate(failed_at) => {
                    progress.isolate_until = Some(failed_at);
                    return Ok(Read::Restart);
                }
                Outcome::LeaseLost => {
                    tracing::info!(projection = %key, "lost the lease while retrying; standing by");
                    return Ok(Read::Restart);
                }
            }
            let isolating = progress
                .isolate_until
                .is_some_and(|until| position <= until);
            if progress
                .isolate_until
                .is_some_and(|until| position >= until)
            {
                progress.isolate_until = None;
            }
            if progress.pending >= self.batch_size || isolating {
                if !self.commit_held(position).instrument(batch).await? {
                    return Ok(Read::Restart);
                }
                progress.committed(&key, position);
                // Reading a long history never idles: sample between batches too, as
                // rarely as the sampler allows.
                self.sample_lag(progress).await;
                last = None;
                commit_by = None;
            } else if commit_by.is_none() {
                commit_by = Some(Instant::now() + self.commit_interval);
            }
        }
    }

    /// Parks the event `error` could not decode (a [`ReadError::Decode`]) and commits past
    /// it, so that the next read starts after it. The caller then reads again: the read
    /// ended at the event.
    async fn park_undecodable(
        &mut self,
        error: &ReadError,
        progress: &mut Progress,
    ) -> Result<(), RunnerError> {
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
        tracing::warn!(projection = %self.key(), error = error as &dyn std::error::Error, "parking an event that cannot be decoded");
        if !self.keep_lease().await? {
            self.rollback().await;
            return Ok(());
        }
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
        .await?;
        self.parked_ids.insert(*event_id);
        progress.count_one();
        self.uncommitted += 1;
        if self.commit_held(*position).await? {
            progress.committed(&self.key(), *position);
        }
        Ok(())
    }

    /// Hands one event to the projection, applying the error policy, in its span
    /// ([`telemetry::HANDLE_SPAN`]) under the batch's.
    async fn handle(
        &mut self,
        envelope: &EventEnvelope<P::Event>,
        pending: usize,
        key: &str,
        batch: &tracing::Span,
    ) -> Result<Outcome, RunnerError> {
        let span = telemetry::handle_span_in(key, envelope, Some(batch));
        self.handle_with_policy(envelope, pending)
            .instrument(span)
            .await
    }

    async fn handle_with_policy(
        &mut self,
        envelope: &EventEnvelope<P::Event>,
        pending: usize,
    ) -> Result<Outcome, RunnerError> {
        let event_id = envelope.event_id;
        loop {
            let error = match self.projection.handle(envelope).await {
                Ok(()) => {
                    self.attempts.succeeded(event_id);
                    return Ok(Outcome::Handled);
                }
                Err(error)
                    if self.projection.is_transient(&error)
                        && self.attempts.interrupted(event_id) =>
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
            let attempts = self.attempts.failed(event_id);
            tracing::warn!(
                attempts,
                error = &error as &dyn std::error::Error,
                "projection failed on an event"
            );
            let message = crate::error::display_chain(&error);
            self.status
                .update(|status| status.last_error = Some(message.clone()));
            if self.checkpoint.rolls_back_batches() {
                // The failed event's writes may be half done: drop the whole batch.
                self.rollback().await;
                if pending > 0 {
                    return Ok(Outcome::Isolate(envelope.position));
                }
            }
            if attempts <= self.policy.retries() {
                // A long pause must not let the lease run out unnoticed: another instance
                // would take it and handle these events too.
                let key = self.key();
                let held = self
                    .lease
                    .pause_holding(&self.store, &key, self.policy.pause(attempts))
                    .await
                    .map_err(self.store_failed())?;
                if !held {
                    self.attempts.judged(event_id);
                    self.rollback().await;
                    return Ok(Outcome::LeaseLost);
                }
                continue;
            }
            self.attempts.judged(event_id);
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
                        event_id,
                        stream_id: envelope.stream_id.clone(),
                        version: envelope.version,
                        position: envelope.position,
                        event_type: crate::DomainEvent::event_type(&envelope.event).to_owned(),
                        error: message,
                        attempts,
                        parked_at: Utc::now(),
                    };
                    self.park(parked).await?;
                    self.parked_ids.insert(event_id);
                    self.status.update(|status| status.parked += 1);
                    Ok(Outcome::Parked)
                }
            };
        }
    }

    pub(super) async fn park(&mut self, entry: ParkedEvent) -> Result<(), RunnerError> {
        self.checkpoint
            .park(&self.store, entry)
            .await
            .map_err(self.store_failed())
    }

    pub(super) async fn unpark(&mut self, event_id: Uuid) -> Result<(), RunnerError> {
        let key = self.key();
        self.checkpoint
            .unpark(&self.store, &key, event_id)
            .await
            .map_err(self.store_failed())
    }

    /// Commits the projection's writes and the checkpoint at `position`, then unparks the
    /// parked events the batch handled.
    pub(super) async fn commit(&mut self, position: Position) -> Result<(), RunnerError> {
        let key = self.key();
        self.checkpoint
            .commit(&mut self.projection, &self.store, &key, position)
            .await?;
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

    pub(super) async fn rollback(&mut self) {
        self.recovered.clear();
        if let Err(error) = self.projection.rollback().await {
            tracing::warn!(projection = %self.key(), error = &error as &dyn std::error::Error, "rollback failed");
        }
    }

    /// Takes the events counted since the last commit off the status: their batch was
    /// dropped and they will be handled again.
    fn forget_uncommitted(&mut self) {
        let dropped = std::mem::take(&mut self.uncommitted);
        self.status
            .update(|status| status.handled = status.handled.saturating_sub(dropped));
    }
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
