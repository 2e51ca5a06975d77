//! What a runner does when a projection fails on an event: the [`ErrorPolicy`], and the
//! count of attempts it judges by.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use crate::backoff::Backoff;

/// What a runner does when a projection fails on an event.
///
/// It first tries again `retries` times, pausing about `backoff` (between half and all of
/// it, so that runners that failed together do not retry together), twice as long each
/// time up to 1024 × `backoff` or a minute, whichever is less; then it stops or parks the event (sets it aside in the store's
/// dead-letter table, visible through
/// [`DeadLetterStore::parked`](crate::DeadLetterStore::parked) and retried by
/// [`ProjectionRunner::retry_parked`](crate::ProjectionRunner::retry_parked)) and goes on.
/// It never drops an event silently.
///
/// An event the runner cannot even decode (a stored version with no upcaster to the
/// projection's type, a payload that does not fit) is parked at once under the park
/// policy (decoding again would fail again), and stops the runner under the others, with
/// a read error naming the event. A deployment that learns to decode it can then
/// [`retry_parked`](crate::ProjectionRunner::retry_parked) or rebuild.
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
    backoff: Backoff,
    pub(super) then: OnFailure,
}

/// What a runner does once retries are exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Stop the runner with the error; the event stays next in line.
    Stop,
    /// Park the event and go on with the next.
    Park,
}

/// The longest pause between two attempts at one event.
const LONGEST_PAUSE: Duration = Duration::from_secs(60);

/// The pauses stop doubling at this many times the first: 2^10.
const MOST_DOUBLED: u32 = 1 << 10;

impl Default for ErrorPolicy {
    /// Three retries from 100 ms, then stop.
    fn default() -> Self {
        Self::retry(3, Duration::from_millis(100))
    }
}

impl ErrorPolicy {
    /// Stop at the first failure.
    pub fn stop() -> Self {
        Self::retry(0, Duration::ZERO)
    }

    /// Park at the first failure.
    pub fn park() -> Self {
        Self::stop().then(OnFailure::Park)
    }

    /// Try again `retries` times, pausing from about `backoff`, doubling, then stop.
    pub fn retry(retries: u32, backoff: Duration) -> Self {
        Self {
            retries,
            // Ceilings from `backoff` doubling, up to 1024 × `backoff` and never past a
            // minute (a first pause above it included).
            backoff: Backoff::new(
                backoff.min(LONGEST_PAUSE),
                backoff.saturating_mul(MOST_DOUBLED).min(LONGEST_PAUSE),
            ),
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

    /// The pause before retry `attempt` (1 for the first).
    pub(super) fn pause(&self, attempt: u32) -> Duration {
        self.backoff.pause(attempt)
    }
}

/// How many times in a row the projection's storage may fail on one event (a timeout, a
/// lost connection) before the failure is taken for the event's own and the error policy
/// judges it: a statement that times out on that event every time would otherwise be
/// retried forever.
pub(super) const INTERRUPTIONS_PER_EVENT: u32 = 5;

/// The attempts at events that are failing, kept across the replays that start over from
/// the checkpoint (to isolate a failed event, or after an interruption).
#[derive(Debug, Default)]
pub(super) struct Attempts {
    /// Failed attempts at each event the projection is failing on.
    failing: HashMap<Uuid, u32>,
    /// The event the projection's storage failed on, and how many times in a row.
    interrupted: Option<(Uuid, u32)>,
}

impl Attempts {
    /// The projection handled `event_id`: its counts end.
    pub(super) fn succeeded(&mut self, event_id: Uuid) {
        // Events before it succeed on every start over: only its own success ends the
        // count of interruptions.
        if self.interrupted.is_some_and(|(at, _)| at == event_id) {
            self.interrupted = None;
        }
        // Per event: skip hashing the id when nothing is failing (nearly always).
        if !self.failing.is_empty() {
            self.failing.remove(&event_id);
        }
    }

    /// The projection's storage failed at `event_id`; whether that still counts as an
    /// interruption (start over, nothing held against the event) rather than the event's
    /// own failure.
    pub(super) fn interrupted(&mut self, event_id: Uuid) -> bool {
        let count = match self.interrupted {
            Some((at, count)) if at == event_id => count + 1,
            _ => 1,
        };
        self.interrupted = Some((event_id, count));
        count <= INTERRUPTIONS_PER_EVENT
    }

    /// The projection failed on `event_id`; how many times now.
    pub(super) fn failed(&mut self, event_id: Uuid) -> u32 {
        let attempts = self.failing.entry(event_id).or_insert(0);
        *attempts += 1;
        *attempts
    }

    /// The policy has judged `event_id` (stopped, parked, or lost the lease meanwhile):
    /// a later attempt starts counting afresh.
    pub(super) fn judged(&mut self, event_id: Uuid) {
        self.failing.remove(&event_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_within_their_jitter_and_stop_at_a_minute() {
        let policy = ErrorPolicy::retry(20, Duration::from_millis(100));
        for attempt in 1..=5 {
            let full = Duration::from_millis(100) * (1 << (attempt - 1));
            let pause = policy.pause(attempt);
            assert!(
                pause >= full / 2 && pause <= full,
                "attempt {attempt}: {pause:?} not within {full:?}"
            );
        }
        assert!(policy.pause(30) <= LONGEST_PAUSE);
        assert!(policy.pause(30) >= LONGEST_PAUSE / 2);
        // A first pause above the ceiling is capped at it (within its jitter), not
        // raised or cut to zero.
        let slow = ErrorPolicy::retry(1, Duration::from_secs(90));
        assert!(slow.pause(1) <= LONGEST_PAUSE);
        assert!(slow.pause(1) >= LONGEST_PAUSE / 2);
        assert_eq!(ErrorPolicy::stop().pause(1), Duration::ZERO);
    }

    #[test]
    fn pauses_stop_doubling_at_1024_times_the_first() {
        let policy = ErrorPolicy::retry(20, Duration::from_millis(1));
        let cap = Duration::from_millis(1024);
        for attempt in 11..=20 {
            let pause = policy.pause(attempt);
            assert!(
                pause >= cap / 2 && pause <= cap,
                "attempt {attempt}: {pause:?} not within {cap:?}"
            );
        }
        // Twenty retries from 1 ms pause about 11 s in all, at most (not minutes).
        let total: Duration = (1..=20).map(|attempt| policy.pause(attempt)).sum();
        assert!(
            total <= Duration::from_millis(1023 + 10 * 1024),
            "{total:?}"
        );
        // Where 1024 × backoff passes a minute, the minute bounds it.
        let policy = ErrorPolicy::retry(20, Duration::from_millis(100));
        assert!(policy.pause(20) <= LONGEST_PAUSE);
    }

    #[test]
    fn policies_say_what_comes_after_the_retries() {
        assert_eq!(ErrorPolicy::stop().retries(), 0);
        assert_eq!(ErrorPolicy::stop().then, OnFailure::Stop);
        assert_eq!(ErrorPolicy::park().then, OnFailure::Park);
        assert_eq!(ErrorPolicy::default().retries(), 3);
        assert_eq!(ErrorPolicy::default().then, OnFailure::Stop);
    }

    #[test]
    fn interruptions_at_one_event_become_its_failure_after_the_allowance() {
        let mut attempts = Attempts::default();
        let event = Uuid::now_v7();
        for _ in 0..INTERRUPTIONS_PER_EVENT {
            assert!(attempts.interrupted(event));
        }
        assert!(!attempts.interrupted(event), "one past the allowance");
        // Its own success ends the count.
        attempts.succeeded(event);
        assert!(attempts.interrupted(event));
    }

    #[test]
    fn an_interruption_elsewhere_or_an_earlier_success_does_not_reset_the_count() {
        let mut attempts = Attempts::default();
        let (failing, before) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..INTERRUPTIONS_PER_EVENT {
            // Every start over handles the events before it again.
            attempts.succeeded(before);
            assert!(attempts.interrupted(failing));
        }
        attempts.succeeded(before);
        assert!(!attempts.interrupted(failing));
        // Another event's interruption starts its own count.
        assert!(attempts.interrupted(before));
    }

    #[test]
    fn failures_count_per_event_until_judged_or_handled() {
        let mut attempts = Attempts::default();
        let (one, other) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(attempts.failed(one), 1);
        assert_eq!(attempts.failed(one), 2);
        assert_eq!(attempts.failed(other), 1);
        attempts.judged(one);
        assert_eq!(attempts.failed(one), 1);
        attempts.succeeded(other);
        assert_eq!(attempts.failed(other), 1);
    }
}
