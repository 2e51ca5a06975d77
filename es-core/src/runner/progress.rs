//! What one drive of a runner has done so far ([`Progress`]): the events handled, the
//! batch since the last commit and its telemetry, and when the projection's lag
//! ([`telemetry::PROJECTION_LAG`]) is next asked of the store ([`LagSampler`]).

use std::pin::pin;
use std::time::{Duration, Instant};

use futures_util::future::{Either, select};

use super::ProjectionRunner;
use crate::projection::Projection;
use crate::store::{CheckpointStore, DeadLetterStore, EventStore, LeaseStore};
use crate::stream::Position;
use crate::telemetry::{self, Batch};

/// The longest a lag count holds a runner up.
const LAG_COUNT_BOUND: Duration = Duration::from_secs(2);

/// At most this share of a runner's time goes to counting its lag: after a count that
/// took `t`, the next waits at least `t * LAG_COST_FACTOR` (and the sample interval), so a
/// count over a long log (a scan, on PostgreSQL with a filter) cannot take over the runner.
const LAG_COST_FACTOR: u32 = 9;

/// What a drive has done so far, kept across the reads that start over.
pub(super) struct Progress {
    /// Events handled (or parked) and kept.
    pub(super) handled: u64,
    /// Of those, the ones since the last commit: not kept if their batch is dropped.
    pub(super) pending: usize,
    /// Commit event by event up to here: a failed event is being isolated.
    pub(super) isolate_until: Option<Position>,
    /// The span and start of the batch since the last commit.
    pub(super) batch: Option<Batch>,
    /// When to ask the store for the lag next.
    pub(super) lag: LagSampler,
}

impl Progress {
    /// A drive's progress, its lag sampled at most every `lag_interval`.
    pub(super) fn new(lag_interval: Duration) -> Self {
        Self {
            handled: 0,
            pending: 0,
            isolate_until: None,
            batch: None,
            lag: LagSampler::new(lag_interval),
        }
    }

    /// The batch was dropped: its events are not done.
    pub(super) fn drop_pending(&mut self) {
        self.handled -= self.pending as u64;
        self.pending = 0;
        self.batch = None;
    }

    /// The batch since the last commit was committed, up to `last`.
    pub(super) fn committed(&mut self, projection: &str, last: Position) {
        if let Some(batch) = self.batch.take() {
            batch.committed(projection, last, self.pending);
        }
        self.pending = 0;
        self.lag.committed(last);
    }

    pub(super) fn count_one(&mut self) {
        self.handled += 1;
        self.pending += 1;
    }
}

/// When a runner asks its store how far behind it is. Never more often than the interval
/// (nor than [`LAG_COST_FACTOR`] allows), never before the interval has passed since the
/// drive began (a short catch-up does not pay a count), and only after a commit the gauge
/// does not show yet. A runner that goes idle with such a commit wakes on its timer when
/// the next sample is due ([`wake_at`](Self::wake_at)), so that a caught-up runner shows
/// its final lag rather than the one of its last busy batch.
#[derive(Debug)]
pub(super) struct LagSampler {
    interval: Duration,
    /// The earliest the next sample may be taken.
    next_at: Instant,
    /// The last commit, if the gauge does not show the lag after it yet.
    owed: Option<Position>,
}

impl LagSampler {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_at: Instant::now() + interval,
            owed: None,
        }
    }

    fn committed(&mut self, position: Position) {
        self.owed = Some(position);
    }

    /// The commit to count after, if a sample is owed and due now.
    fn due(&self) -> Option<Position> {
        self.owed.filter(|_| Instant::now() >= self.next_at)
    }

    /// When an idle runner should wake to take an owed sample; `None` if none is owed.
    pub(super) fn wake_at(&self) -> Option<Instant> {
        self.owed.map(|_| self.next_at)
    }

    /// A sample that began at `started` was taken (or failed: it is not retried before
    /// the next interval either).
    fn sampled(&mut self, started: Instant) {
        let took = started.elapsed();
        self.owed = None;
        self.next_at = Instant::now() + self.interval.max(took * LAG_COST_FACTOR);
    }
}

impl<P, S> ProjectionRunner<P, S>
where
    P: Projection,
    S: EventStore + CheckpointStore + DeadLetterStore + LeaseStore,
{
    /// Asks the store how far behind the last commit is, for the lag gauge, if a sample is
    /// owed and due ([`LagSampler`]). A failure only leaves the gauge as it was.
    ///
    /// The count is given until the lease is due for renewal (at most
    /// [`LAG_COUNT_BOUND`]): the runner handles nothing meanwhile, and a count of a long log
    /// must not cost it its lease. A count cut short leaves the gauge as it was, and puts
    /// the next one off as a slow one would.
    pub(super) async fn sample_lag(&self, progress: &mut Progress) {
        let Some(position) = progress.lag.due() else {
            return;
        };
        let started = Instant::now();
        let bound = self
            .lease
            .renew_at()
            .map_or(LAG_COUNT_BOUND, |at| at.saturating_duration_since(started))
            .min(LAG_COUNT_BOUND);
        let count = self.store.count_after(position, self.filter());
        let late = futures_timer::Delay::new(bound);
        match select(pin!(count), late).await {
            Either::Left((Ok(behind), _)) => telemetry::projection_lag(&self.key(), behind),
            Either::Left((Err(error), _)) => {
                tracing::debug!(projection = %self.key(), error = &error as &dyn std::error::Error, "cannot tell the lag");
            }
            Either::Right(_) => {
                tracing::debug!(projection = %self.key(), ?bound, "counting the lag took too long; left as it was");
            }
        }
        progress.lag.sampled(started);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_is_owed_only_after_a_commit_and_due_only_after_the_interval() {
        let mut lag = LagSampler::new(Duration::from_secs(3600));
        assert_eq!(lag.wake_at(), None, "nothing committed, nothing owed");
        lag.committed(Position::from_parts(1, 0));
        assert_eq!(lag.due(), None, "not before the interval has passed");
        assert!(lag.wake_at().is_some());

        let mut lag = LagSampler::new(Duration::ZERO);
        assert_eq!(lag.due(), None);
        lag.committed(Position::from_parts(2, 0));
        assert_eq!(lag.due(), Some(Position::from_parts(2, 0)));
        lag.sampled(Instant::now());
        assert_eq!(
            lag.due(),
            None,
            "sampled: nothing owed until the next commit"
        );
        assert_eq!(lag.wake_at(), None);
    }

    #[test]
    fn a_slow_count_puts_the_next_one_off() {
        let mut lag = LagSampler::new(Duration::ZERO);
        let started = Instant::now() - Duration::from_secs(10);
        lag.sampled(started);
        lag.committed(Position::from_parts(3, 0));
        assert_eq!(lag.due(), None, "a 10 s count: the next waits about 90 s");
    }
}
