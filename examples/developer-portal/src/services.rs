//! The outside help an application's command handler needs: a clock and a credential key
//! generator, behind traits so that tests and the scenario choose their own.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, TimeDelta, Utc};

/// Tells the time. Handlers ask it instead of calling `Utc::now()`, so that a test can fix
/// the time and check both sides of a deadline.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The time now.
    fn now(&self) -> DateTime<Utc>;
}

/// Makes credential keys.
pub trait KeyGenerator: Send + Sync + fmt::Debug {
    /// A new key.
    fn generate(&self) -> String;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or moved forward. Clones share the time, so
/// a test or a scenario keeps one clone to move the clock the handlers read.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(now)),
        }
    }

    /// Sets the time.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = now;
    }

    /// Moves the time forward (or back, for a negative `by`).
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        // Plain data: a panic while it was locked leaves it readable.
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Random keys: `key-` and the 32 hex digits of a random UUID (122 random bits, from the
/// thread-local cryptographic generator `rand` seeds from the operating system).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomKeys;

impl KeyGenerator for RandomKeys {
    fn generate(&self) -> String {
        format!("key-{}", uuid::Uuid::new_v4().simple())
    }
}

/// Predictable keys for tests: `prefix-1`, `prefix-2`, ... Clones share the counter.
#[derive(Debug, Clone)]
pub struct SequentialKeys {
    prefix: String,
    issued: Arc<AtomicU64>,
}

impl SequentialKeys {
    /// Keys `prefix-1`, `prefix-2`, ...
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            issued: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl KeyGenerator for SequentialKeys {
    fn generate(&self) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        format!("{}-{n}", self.prefix)
    }
}

/// What the application's command handler gets: a clock and a key generator.
///
/// The default is the system clock and random keys.
#[derive(Debug, Clone)]
pub struct PortalServices {
    clock: Arc<dyn Clock>,
    keys: Arc<dyn KeyGenerator>,
}

impl Default for PortalServices {
    fn default() -> Self {
        Self::new(SystemClock, RandomKeys)
    }
}

impl PortalServices {
    /// Services with this clock and key generator.
    pub fn new(clock: impl Clock + 'static, keys: impl KeyGenerator + 'static) -> Self {
        Self {
            clock: Arc::new(clock),
            keys: Arc::new(keys),
        }
    }

    /// The time now, by the clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A new credential key.
    pub fn new_key(&self) -> String {
        self.keys.generate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_clones_share_the_time() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let clock = ManualClock::at(start);
        let services = PortalServices::new(clock.clone(), SequentialKeys::new("k"));
        clock.advance(TimeDelta::days(2));
        assert_eq!(services.now(), start + TimeDelta::days(2));
        clock.set(start);
        assert_eq!(services.now(), start);
    }

    #[test]
    fn sequential_keys_count_up() {
        let keys = SequentialKeys::new("key");
        let shared = keys.clone();
        assert_eq!(keys.generate(), "key-1");
        assert_eq!(shared.generate(), "key-2");
    }

    #[test]
    fn random_keys_differ() {
        assert_ne!(RandomKeys.generate(), RandomKeys.generate());
    }
}
