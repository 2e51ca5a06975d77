//! [`Backoff`]: how long to wait before trying again, the one policy every retry loop in
//! es-rs uses (command retries, reconnecting readers, restarting runners).

use std::time::Duration;

/// Exponential backoff with jitter.
///
/// The pause before retry `n` (1 for the first) is drawn uniformly between half and all of
/// `first * 2^(n-1)`, never more than `max`: growing, so that a struggling server is not
/// hammered; random, so that clients that failed together do not retry together; and never
/// near zero, so that a retry loop cannot spin.
///
/// ```
/// use es_core::Backoff;
/// use std::time::Duration;
///
/// let backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(500));
/// let first = backoff.pause(1);
/// assert!(first >= Duration::from_millis(5) && first <= Duration::from_millis(10));
/// assert!(backoff.pause(30) <= Duration::from_millis(500));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from about `first`, doubling, up to `max` (at least `first`).
    pub const fn new(first: Duration, max: Duration) -> Self {
        let max = if max.as_nanos() < first.as_nanos() {
            first
        } else {
            max
        };
        Self { first, max }
    }

    /// No pause at all.
    pub const fn none() -> Self {
        Self::new(Duration::ZERO, Duration::ZERO)
    }

    /// The pause before retry `retry` (1 for the first retry).
    pub fn pause(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.ceiling(retry).as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(ceiling / 2..=ceiling))
    }

    /// The longest [`pause`](Self::pause) before retry `retry`: `first * 2^(retry-1)`, at
    /// most [`max`](Self::max). A loop that stops backing off once the pauses reach a
    /// bound of its own asks this.
    ///
    /// ```
    /// use es_core::Backoff;
    /// use std::time::Duration;
    ///
    /// let backoff = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
    /// assert_eq!(backoff.ceiling(3), Duration::from_millis(4));
    /// assert_eq!(backoff.ceiling(4), Duration::from_millis(5));
    /// ```
    pub fn ceiling(&self, retry: u32) -> Duration {
        self.first
            .saturating_mul(1 << retry.saturating_sub(1).min(20))
            .min(self.max)
    }

    /// The longest pause this backoff waits.
    pub fn max(&self) -> Duration {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_stay_bounded_and_never_vanish() {
        let backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(40));
        for retry in 1..50 {
            let ceiling = Duration::from_millis(2)
                .saturating_mul(1 << (retry - 1).min(20))
                .min(Duration::from_millis(40));
            for _ in 0..20 {
                let pause = backoff.pause(retry);
                assert!(
                    pause <= ceiling && pause >= ceiling / 2,
                    "{retry}: {pause:?}"
                );
            }
            assert_eq!(backoff.ceiling(retry), ceiling, "{retry}");
        }
        assert_eq!(Backoff::none().pause(3), Duration::ZERO);
        assert_eq!(
            Backoff::new(Duration::from_secs(1), Duration::ZERO).max(),
            Duration::from_secs(1)
        );
    }
}
