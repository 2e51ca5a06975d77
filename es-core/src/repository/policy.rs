//! How a [`Repository`](super::Repository) retries ([`RetryPolicy`]) and when it saves
//! snapshots ([`SnapshotPolicy`]).

use std::num::NonZeroU64;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::stream::Version;

/// How often command execution retries after losing an optimistic-concurrency race.
///
/// Each retry reloads the aggregate and decides again, after a randomised exponential
/// backoff (with jitter) that spreads out writers racing on one stream.
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
    /// [`Repository::with_cache`](super::Repository::with_cache).) Store failures are still ridden out as the policy
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

    /// The pause between store-failure retries.
    pub(super) fn store_backoff(&self) -> Backoff {
        self.store_backoff
    }

    pub(super) fn backoff(&self, failed_attempts: u32) -> Duration {
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

    pub(super) fn is_due(self, before: Version, after: Version) -> bool {
        match self {
            Self::Never => false,
            Self::EveryNEvents(n) => before.get() / n.get() != after.get() / n.get(),
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
