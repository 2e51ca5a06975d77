//! What the store's log readers last found: whether they can read the server, and whether
//! committed events wait behind an open transaction. [`EventStore::stall`] reports it.
//!
//! [`EventStore::stall`]: es_core::EventStore::stall

use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use es_core::Stall;

/// How long readers must find events held back before it is reported: a transaction that
/// commits within a moment is the normal case, not a stall.
const HELD_BACK_AFTER: Duration = Duration::from_secs(1);

/// Shared by every reader of one store.
#[derive(Debug, Default)]
pub(crate) struct ReaderHealth {
    /// Whether anything is recorded: readers clear it on every page they read, and this
    /// spares them the lock when there is nothing to clear.
    troubled: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    failing: Option<(String, DateTime<Utc>)>,
    held_back: Option<HeldBack>,
}

#[derive(Debug)]
struct HeldBack {
    noticed: Instant,
    since: DateTime<Utc>,
    /// What holds the events back, once looked up.
    cause: Option<String>,
    /// When the cause was last looked up.
    asked: Option<Instant>,
}

impl ReaderHealth {
    // Plain data, consistent after every statement: a panic elsewhere leaves it usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A read failed with a transient error; readers will try again.
    pub(crate) fn failed(&self, error: &dyn std::error::Error) {
        let mut state = self.lock();
        let since = state
            .failing
            .as_ref()
            .map_or_else(Utc::now, |(_, since)| *since);
        state.failing = Some((es_core::error::display_chain(error), since));
        self.troubled.store(true, Ordering::Release);
    }

    /// A read succeeded; `delivered` whether it found events for its reader.
    pub(crate) fn read(&self, delivered: bool) {
        if !self.troubled.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.lock();
        state.failing = None;
        if delivered {
            state.held_back = None;
        }
        self.troubled
            .store(state.held_back.is_some(), Ordering::Release);
    }

    /// A reader found committed events it cannot read yet. Returns whether the cause
    /// should be looked up now (at most once a second, once the events waited a moment).
    pub(crate) fn held_back(&self) -> bool {
        let mut state = self.lock();
        self.troubled.store(true, Ordering::Release);
        let now = Instant::now();
        let held = state.held_back.get_or_insert_with(|| HeldBack {
            noticed: now,
            since: Utc::now(),
            cause: None,
            asked: None,
        });
        let due = now.duration_since(held.noticed) >= HELD_BACK_AFTER
            && held
                .asked
                .is_none_or(|asked| now.duration_since(asked) >= HELD_BACK_AFTER);
        if due {
            held.asked = Some(now);
        }
        due
    }

    /// What holds the events back, as looked up after [`held_back`](Self::held_back).
    pub(crate) fn held_back_by(&self, cause: String) {
        if let Some(held) = &mut self.lock().held_back {
            held.cause = Some(cause);
        }
    }

    /// Nothing waits any more.
    pub(crate) fn released(&self) {
        if self.troubled.load(Ordering::Acquire) {
            let mut state = self.lock();
            state.held_back = None;
            self.troubled
                .store(state.failing.is_some(), Ordering::Release);
        }
    }

    /// What keeps readers from delivering, if anything.
    pub(crate) fn stall(&self) -> Option<Stall> {
        if !self.troubled.load(Ordering::Acquire) {
            return None;
        }
        let state = self.lock();
        if let Some((error, since)) = &state.failing {
            return Some(Stall::Failing {
                error: error.clone(),
                since: *since,
            });
        }
        let held = state.held_back.as_ref()?;
        (held.noticed.elapsed() >= HELD_BACK_AFTER).then(|| Stall::HeldBack {
            cause: held
                .cause
                .clone()
                .unwrap_or_else(|| "a transaction still open in this database".to_owned()),
            since: held.since,
        })
    }
}
