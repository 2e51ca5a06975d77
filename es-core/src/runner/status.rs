//! What a runner reports: [`RunnerState`], [`ProjectionStatus`], and the [`StatusHandle`]
//! that reads them while the runner runs.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};

use crate::error::ReadError;
use crate::store::{EventFilter, EventStore, Stall};
use crate::stream::Position;

/// Where a runner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RunnerState {
    /// Not started.
    Idle,
    /// Reading history.
    CatchingUp,
    /// At the end of the log, handling events as they come.
    Live,
    /// Waiting: another instance holds the projection's lease.
    Standby,
    /// Ended normally.
    Stopped,
    /// Ended with an error.
    Failed,
    /// Starting over after a failed commit or store call (a lost connection, say), with
    /// a growing pause between attempts; the error is in `last_error`.
    Recovering,
}

/// What a runner reports about its projection.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectionStatus {
    /// The projection's checkpoint key: its name, with the partition if it has one.
    pub key: String,
    /// Where the runner is.
    pub state: RunnerState,
    /// The last committed position.
    pub position: Option<Position>,
    /// Events handled since the runner started (parked ones included; those of a batch
    /// dropped before its commit taken off again).
    pub handled: u64,
    /// Events parked since the runner started.
    pub parked: u64,
    /// The last error the projection reported, if any.
    pub last_error: Option<String>,
    /// When the last handled event was recorded.
    pub last_event_at: Option<DateTime<Utc>>,
    /// What keeps the store from delivering events to the runner right now, if anything
    /// ([`EventStore::stall`]): the store unreachable or timing out (the runner then
    /// shows [`RunnerState::Recovering`]), or events held back behind an open
    /// transaction.
    pub stall: Option<Stall>,
}

/// A live view of a runner's [`ProjectionStatus`], readable from anywhere while it runs.
#[derive(Clone)]
pub struct StatusHandle {
    status: Arc<Mutex<ProjectionStatus>>,
    /// Notified on every change, for those [waiting](StatusHandle::wait_for) for a position.
    pub(super) changed: Arc<event_listener::Event>,
    pub(super) filter: EventFilter,
    /// The store's [`EventStore::stall`], asked whenever the status is read.
    stall: Arc<dyn Fn() -> Option<Stall> + Send + Sync>,
}

impl fmt::Debug for StatusHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StatusHandle").field(&self.get()).finish()
    }
}

impl StatusHandle {
    /// The status of a runner that has not started, under `key`, reading `filter`, with
    /// `stall` telling what holds the store up.
    pub(super) fn new(
        key: String,
        filter: EventFilter,
        stall: Arc<dyn Fn() -> Option<Stall> + Send + Sync>,
    ) -> Self {
        Self {
            status: Arc::new(Mutex::new(ProjectionStatus {
                key,
                state: RunnerState::Idle,
                position: None,
                handled: 0,
                parked: 0,
                last_error: None,
                last_event_at: None,
                stall: None,
            })),
            changed: Arc::new(event_listener::Event::new()),
            filter,
            stall,
        }
    }

    /// The status now.
    pub fn get(&self) -> ProjectionStatus {
        let mut status = self.lock().clone();
        status.stall = (self.stall)();
        // A runner that thinks it is reading while its store cannot deliver is in truth
        // waiting for the store.
        if matches!(status.stall, Some(Stall::Failing { .. }))
            && matches!(status.state, RunnerState::Live | RunnerState::CatchingUp)
        {
            status.state = RunnerState::Recovering;
        }
        status
    }

    /// How many events the projection has yet to handle: those after its last committed
    /// position that it reads.
    ///
    /// # Errors
    ///
    /// Fails if the store fails.
    pub async fn lag<S: EventStore>(&self, store: &S) -> Result<u64, ReadError> {
        let position = self.get().position.unwrap_or(Position::START);
        store.count_after(position, self.filter.clone()).await
    }

    // The status is plain data; a panic while it was locked leaves it readable.
    fn lock(&self) -> MutexGuard<'_, ProjectionStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn update(&self, change: impl FnOnce(&mut ProjectionStatus)) {
        change(&mut self.lock());
        // Cheap without listeners: one atomic load.
        self.changed.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn handle(failing: Arc<AtomicBool>) -> StatusHandle {
        StatusHandle::new(
            "view".to_owned(),
            EventFilter::all(),
            Arc::new(move || {
                failing.load(Ordering::SeqCst).then(|| Stall::Failing {
                    error: "connection refused".to_owned(),
                    since: Utc::now(),
                })
            }),
        )
    }

    #[test]
    fn a_reading_runner_shows_recovering_while_its_store_fails() {
        let failing = Arc::new(AtomicBool::new(false));
        let status = handle(failing.clone());
        status.update(|s| s.state = RunnerState::Live);
        assert_eq!(status.get().state, RunnerState::Live);
        assert_eq!(status.get().stall, None);

        failing.store(true, Ordering::SeqCst);
        let seen = status.get();
        assert_eq!(seen.state, RunnerState::Recovering);
        assert!(matches!(seen.stall, Some(Stall::Failing { .. })));

        // Not while it is not reading: a stopped runner stays stopped.
        status.update(|s| s.state = RunnerState::Stopped);
        assert_eq!(status.get().state, RunnerState::Stopped);
        status.update(|s| s.state = RunnerState::Standby);
        assert_eq!(status.get().state, RunnerState::Standby);
    }

    #[test]
    fn status_survives_a_panic_while_locked() {
        let status = handle(Arc::new(AtomicBool::new(false)));
        let shared = status.clone();
        let _ = std::thread::spawn(move || {
            shared.update(|s| {
                s.handled = 7;
                panic!("while updating");
            });
        })
        .join();
        assert_eq!(status.get().handled, 7);
    }
}
