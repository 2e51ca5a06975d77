//! Waiting until a runner has seen a position: how a caller reads its own writes through a
//! projection ([`StatusHandle::wait_for`]).

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::future::{self, Either};

use super::status::{RunnerState, StatusHandle};
use crate::backoff::Backoff;
use crate::error::ReadError;
use crate::event::RawEvent;
use crate::store::EventStore;
use crate::stream::Position;

/// How often a waiter looks again whether the store lets readers read the position yet,
/// while it holds the event back behind older open transactions.
const READABLE_BACKOFF: Backoff =
    Backoff::new(Duration::from_millis(2), Duration::from_millis(100));

/// Why [`StatusHandle::wait_for`] returned before its projection had seen the position.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WaitError {
    /// The deadline passed first.
    #[error(
        "projection `{projection}` did not reach position {position} within {timeout:?} \
         (it is at {}); is its runner running, and keeping up?",
        at(reached.as_ref())
    )]
    Timeout {
        /// The projection's checkpoint key.
        projection: String,
        /// The position waited for.
        position: Position,
        /// Where it had got to.
        reached: Option<Position>,
        /// How long the caller waited.
        timeout: Duration,
    },
    /// The runner ended with an error before reaching the position; it will not get there
    /// until it is started again.
    #[error("projection `{projection}` failed before reaching position {position}: {last_error}")]
    Failed {
        /// The projection's checkpoint key.
        projection: String,
        /// The position waited for.
        position: Position,
        /// The runner's last error.
        last_error: String,
    },
    /// The store could not tell which events the projection has yet to handle.
    #[error(
        "cannot read which events projection `{projection}` has yet to handle before position {position}"
    )]
    Read {
        /// The projection's checkpoint key.
        projection: String,
        /// The position waited for.
        position: Position,
        /// The store's error.
        #[source]
        source: ReadError,
    },
}

fn at(position: Option<&Position>) -> String {
    position.map_or_else(|| "the start of the log".to_owned(), ToString::to_string)
}

impl StatusHandle {
    /// Waits until the runner has seen `position` (usually an append's
    /// [`Committed::position`](crate::Committed::position)): until its committed checkpoint
    /// has passed every event at or before `position` that the projection reads, so that
    /// the read model reflects that append. Events the projection does not read do not
    /// hold it up: a projection of orders has seen a customer's event at once.
    ///
    /// Only the checkpoint counts: a projection that commits its writes with the runner's
    /// checkpoint (all of es-rs's do) shows them once this returns.
    ///
    /// ```
    /// use std::time::Duration;
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
    /// let mut runner = ProjectionRunner::in_memory(store.clone(), Count::default());
    /// let status = runner.status();
    /// let live = tokio::spawn(async move { runner.run().await });
    ///
    /// let stream = StreamId::new("order", "1")?;
    /// let event = NewEvent::new(RawEvent::new("OrderPlaced", 1, serde_json::json!({})));
    /// let committed = store.append(&stream, ExpectedVersion::NoStream, vec![event]).await?;
    /// let position = committed.position().expect("one event");
    /// status.wait_for(&store, position, Duration::from_secs(5)).await?;
    /// assert!(status.get().position >= Some(position));
    /// # live.abort();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A runner standing by while another instance holds the lease shows the checkpoint
    /// that instance committed (read again every third of the lease's time to live), so a
    /// wait on any instance of a shared read model ends once the holder has seen the
    /// position.
    ///
    /// [`WaitError::Timeout`] when `timeout` passes first (the runner not started or
    /// behind), [`WaitError::Failed`] as soon as the runner has failed, and
    /// [`WaitError::Read`] when the store cannot say what lies before `position`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only reads.
    pub async fn wait_for<S: EventStore>(
        &self,
        store: &S,
        position: Position,
        timeout: Duration,
    ) -> Result<(), WaitError> {
        let deadline = Instant::now() + timeout;
        let mut unreadable = 0;
        loop {
            let status = self.get();
            if status.position >= Some(position) {
                return Ok(());
            }
            if status.state == RunnerState::Failed {
                return Err(WaitError::Failed {
                    projection: status.key,
                    position,
                    last_error: status.last_error.unwrap_or_default(),
                });
            }
            let read = |source| WaitError::Read {
                projection: status.key.clone(),
                position,
                source,
            };
            // Until readers may read `position`, what lies before it is not all visible.
            if !store.readable(position).await.map_err(read)? {
                unreadable += 1;
                let pause = READABLE_BACKOFF.pause(unreadable);
                if !self.sleep_until(pause, deadline).await {
                    return Err(self.timed_out(position, timeout));
                }
                continue;
            }
            // The first event after the checkpoint that the projection reads: the
            // checkpoint has to pass it, unless it lies beyond `position`.
            let after = status.position.unwrap_or(Position::START);
            // (The read ends with this block: a waiter holds no store read while it waits.)
            let next = {
                let mut events =
                    std::pin::pin!(store.read_all::<RawEvent>(after, self.filter.clone()));
                match events.next().await {
                    None => None,
                    Some(Ok(envelope)) => Some(envelope.position),
                    // An event that does not even decode raw (an upcaster failed) is the
                    // runner's to park: wait for its checkpoint to pass `position`.
                    Some(Err(ReadError::Decode { .. })) => Some(position),
                    Some(Err(source)) => return Err(read(source)),
                }
            };
            let Some(next) = next.filter(|next| *next <= position) else {
                return Ok(());
            };
            if !self.wait_until_past(next, deadline).await {
                return Err(self.timed_out(position, timeout));
            }
        }
    }

    /// Waits for the checkpoint to reach `target` (or the runner to fail); `false` once the
    /// deadline has passed.
    async fn wait_until_past(&self, target: Position, deadline: Instant) -> bool {
        loop {
            // Listen before looking, so that a change between the two is not missed.
            let listener = self.changed.listen();
            let status = self.get();
            if status.position >= Some(target) || status.state == RunnerState::Failed {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let timer = futures_timer::Delay::new(left);
            if let Either::Right(_) = future::select(listener, timer).await {
                return false;
            }
        }
    }

    /// Sleeps for `pause`, cut short at the deadline; `false` if the deadline passed.
    async fn sleep_until(&self, pause: Duration, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        futures_timer::Delay::new(pause.min(left)).await;
        true
    }

    fn timed_out(&self, position: Position, timeout: Duration) -> WaitError {
        let status = self.get();
        WaitError::Timeout {
            projection: status.key,
            position,
            reached: status.position,
            timeout,
        }
    }
}
