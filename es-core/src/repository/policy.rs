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
    /// Up to [`DEFAULT_MAX_ATTEMPTS`](RetryPolicy::DEFAULT_MAX_ATTEMPTS) (50) attempts
    /// after conflicts, backing off from up to 2 ms, doubling, to up to 100 ms; the pauses
    /// of one command add up to at most about 4.4 s
    /// ([`longest_conflict_wait`](RetryPolicy::longest_conflict_wait)), which only a
    /// command that lost 49 races in a row waits. Up to 10 runs again after the store
    /// failed for a moment, backing off from 25 ms to 500 ms: about 3.5 s of pauses in
    /// all, enough for a database restart or a killed connection. Each run may itself wait
    /// up to the store's own deadlines (for PostgreSQL, its acquire and reply timeouts)
    /// before it fails, so a store that stays unreachable fails a command after the pauses
    /// plus up to 11 such waits.
    ///
    /// Why so many attempts: a writer loses a race when another commits to the stream
    /// between its read and its append, so on a busy stream each attempt loses with about
    /// the same chance, however long the writer paused before it (the pauses lower that
    /// chance by spreading the writers out; they cannot make it small). With 8 writers on
    /// one PostgreSQL stream (es-postgres `tests/contention.rs`), about half the attempts
    /// lost and single commands needed up to 17 attempts on a quiet machine, 20 while other
    /// test suites loaded it; with the former 10, 2 to 5 of 264 commands gave up in each of
    /// 6 runs (11 on the memory store, deciding in 2 ms). 50 attempts leave a wide margin
    /// over what was seen (49 losses in a row is a chance in 10^6 even at the 3 in 4 odds
    /// of a loaded machine), at the cost of the bound above for a command that keeps
    /// losing. For a stream hotter than that, split it (one aggregate per item rather than
    /// one for all) or give it a single writer, rather than retrying longer.
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            backoff: Backoff::new(Duration::from_millis(2), Duration::from_millis(100)),
            store_retries: 10,
            store_backoff: Backoff::new(Duration::from_millis(25), Duration::from_millis(500)),
        }
    }
}

impl RetryPolicy {
    /// How many times the [default](RetryPolicy::default) policy decides and appends a
    /// command in all before it gives up on conflicts.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 50;

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

    /// The longest the pauses after conflicts can add up to for one command, that lost
    /// every attempt: the bound on how long retrying adds to a command on a busy stream
    /// (besides the attempts themselves). About 4.4 s for the default policy.
    ///
    /// ```
    /// use es_core::RetryPolicy;
    /// use std::time::Duration;
    ///
    /// assert!(RetryPolicy::default().longest_conflict_wait() <= Duration::from_millis(4_500));
    /// assert_eq!(RetryPolicy::never().longest_conflict_wait(), Duration::ZERO);
    /// ```
    pub fn longest_conflict_wait(&self) -> Duration {
        // A pause follows every failed attempt but the last.
        (1..self.max_attempts)
            .map(|retry| self.backoff.ceiling(retry))
            .sum()
    }

    /// How many times a command runs again after the store failed for a moment.
    pub fn store_retries(&self) -> u32 {
        self.store_retries
    }

    /// The pause between store-failure retries.
    pub(crate) fn store_backoff(&self) -> Backoff {
        self.store_backoff
    }

    pub(crate) fn backoff(&self, failed_attempts: u32) -> Duration {
        self.backoff.pause(failed_attempts)
    }
}

/// When command execution saves a snapshot of the aggregate.
///
/// Snapshots only apply to aggregates that can encode their state (with the derive: those
/// that implement serde's `Serialize` and `Deserialize`); the others replay their whole
/// stream on every load, whatever the policy.
///
/// The default is a snapshot every [`SnapshotPolicy::DEFAULT_EVERY`] events, so that a
/// command on a long-lived aggregate costs the same however long its stream grows: a load
/// reads the snapshot and the events since (fewer than that many, once the stream has a
/// snapshot: one written before the upgrade, or outside a `Repository`, replays in full
/// until a command takes it past the next multiple), and every that-many-th command writes
/// one snapshot more after it commits.
///
/// A snapshot holds what `apply` made of the events when it was taken: when `apply` (or an
/// upcaster) changes what the events mean for the state, raise the aggregate's
/// `snapshot_version` so that older snapshots are ignored.
///
/// ```
/// use es_core::SnapshotPolicy;
///
/// assert_eq!(SnapshotPolicy::default(), SnapshotPolicy::every(SnapshotPolicy::DEFAULT_EVERY));
/// assert_eq!(SnapshotPolicy::every(0), SnapshotPolicy::Never);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotPolicy {
    /// Never: every load replays the whole stream.
    Never,
    /// Whenever the stream's version crosses a multiple of this many events.
    EveryNEvents(NonZeroU64),
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        Self::every(Self::DEFAULT_EVERY)
    }
}

impl SnapshotPolicy {
    /// How many events apart the default policy takes snapshots: a load from a snapshot
    /// replays fewer than this many events, and a snapshot write comes with one command in
    /// this many.
    pub const DEFAULT_EVERY: u64 = 100;

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
    fn the_default_waits_a_bounded_time_over_many_attempts() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts(), 50);
        // 2 + 4 + ... + 64 ms, then 100 ms for each of the 43 other retries.
        assert_eq!(policy.longest_conflict_wait(), Duration::from_millis(4_426));
        for retry in 1..50 {
            assert!(policy.backoff(retry) <= Duration::from_millis(100));
        }
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
