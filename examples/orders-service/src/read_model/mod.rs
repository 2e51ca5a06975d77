//! The read model of orders by status: a projection of the orders' events, run by a
//! [`ProjectionRunner`] in the background, in memory for the in-memory store and in a
//! PostgreSQL table (exactly once, through a transactional projection) for PostgreSQL.

mod memory;
mod postgres;

use std::time::Duration;

use es_core::{
    Backoff, CheckpointStore, DeadLetterStore, EventStore, LeaseStore, Projection,
    ProjectionRunner, StatusHandle,
};
use es_postgres::PgTransactionalProjection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::memory::MemoryOrderList;
pub use self::postgres::{MIGRATIONS, PgOrderList, PgReadModelError, PgSetupError, TABLE};
use crate::api::{OrderRow, Status};
use crate::backend::Backend;

/// The projection's name: the key of its checkpoint and lease.
pub const NAME: &str = "orders-by-status";

/// How often the runner commits while events trickle in: the longest a read of your own
/// write waits for a commit once its event is handled.
const COMMIT_INTERVAL: Duration = Duration::from_millis(10);

/// The read model, as the handlers read it.
#[derive(Debug, Clone)]
pub enum ReadModel {
    /// In process memory.
    Memory(MemoryOrderList),
    /// In PostgreSQL.
    Postgres(PgOrderList),
}

impl ReadModel {
    /// Up to `limit` orders by id, those in `status` only if given.
    ///
    /// # Errors
    ///
    /// Fails if the PostgreSQL table cannot be read.
    pub async fn list(
        &self,
        status: Option<Status>,
        limit: u32,
    ) -> Result<Vec<OrderRow>, PgReadModelError> {
        match self {
            Self::Memory(list) => {
                Ok(list.list(status, usize::try_from(limit).unwrap_or(usize::MAX)))
            }
            Self::Postgres(list) => list.list(status, limit).await,
        }
    }
}

/// The read model being kept up to date in the background.
#[derive(Debug)]
pub struct Projector {
    /// What the handlers read.
    pub read_model: ReadModel,
    /// The runner's status: its committed checkpoint is how far the read model got.
    pub status: StatusHandle,
    /// The runner's task, which ends once `shutdown` says so.
    pub task: JoinHandle<()>,
}

/// Starts the read model's runner on `backend` (on PostgreSQL, its table migrated first:
/// the handlers may read it before the runner's first batch); it runs until `shutdown`
/// turns `true`, then commits and releases its lease.
///
/// # Errors
///
/// Fails if the PostgreSQL table cannot be migrated.
pub async fn start(
    backend: &Backend,
    shutdown: watch::Receiver<bool>,
) -> Result<Projector, PgSetupError> {
    Ok(match backend {
        Backend::Memory(store) => {
            let list = MemoryOrderList::default();
            // The view lives in this process: a stored checkpoint would resume a new
            // process past events its empty view never saw.
            let runner = ProjectionRunner::in_memory(store.clone(), list.clone())
                .with_commit_interval(COMMIT_INTERVAL);
            let status = runner.status();
            Projector {
                read_model: ReadModel::Memory(list),
                status,
                task: tokio::spawn(run(runner, shutdown)),
            }
        }
        Backend::Postgres(store) => {
            let list = PgOrderList::prepare(store).await?;
            let projection = PgTransactionalProjection::new(store.clone(), list.clone());
            let runner = ProjectionRunner::new(store.clone(), projection)
                .with_commit_interval(COMMIT_INTERVAL);
            let status = runner.status();
            Projector {
                read_model: ReadModel::Postgres(list),
                status,
                task: tokio::spawn(run(runner, shutdown)),
            }
        }
    })
}

/// The pauses before the runner starts again: from 100 ms, doubling, up to 5 s.
const RESTART: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));

/// The runner's failures in a row, for the pause before it starts again.
#[derive(Debug, Default)]
struct Restarts {
    failures: u32,
}

impl Restarts {
    /// Counts a run that stopped with an error, and says how many in a row have. A run
    /// that `progressed` (committed events of its own) was healthy until it failed, so the
    /// count starts again from one: a runner that fails once a day waits the shortest
    /// pause each time, not the ceiling it reached while the database was down last week.
    fn failed(&mut self, progressed: bool) -> u32 {
        if progressed {
            self.failures = 0;
        }
        self.failures = self.failures.saturating_add(1);
        self.failures
    }
}

/// Runs `runner` until `shutdown`, starting it again (after a pause that grows while runs
/// fail without progress, see [`Restarts`]) when its error policy stops it: the read model
/// should not stay behind for good because one store call failed.
async fn run<P, S>(mut runner: ProjectionRunner<P, S>, mut shutdown: watch::Receiver<bool>)
where
    P: Projection,
    S: EventStore + CheckpointStore + DeadLetterStore + LeaseStore,
{
    let status = runner.status();
    let mut restarts = Restarts::default();
    loop {
        // Events handled and kept: those of a batch dropped before its commit are taken
        // off again, so growth means the run committed.
        let handled_before = status.get().handled;
        let mut stop = shutdown.clone();
        let until = async move {
            // A dropped sender is a shutdown too.
            let _ = stop.wait_for(|stopping| *stopping).await;
        };
        let failures = match runner.run_until(until).await {
            Ok(()) => return,
            Err(error) => {
                let failures = restarts.failed(status.get().handled > handled_before);
                tracing::error!(
                    projection = NAME,
                    error = &error as &dyn std::error::Error,
                    failures,
                    "read model runner stopped; starting it again"
                );
                failures
            }
        };
        tokio::select! {
            () = tokio::time::sleep(RESTART.pause(failures)) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_without_progress_back_off_and_progress_starts_again() {
        let mut restarts = Restarts::default();
        let counts: Vec<u32> = (0..8).map(|_| restarts.failed(false)).collect();
        assert_eq!(counts, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(RESTART.ceiling(8), Duration::from_secs(5), "at the ceiling");
        // A run that committed, then failed: the next pause is the shortest again.
        assert_eq!(restarts.failed(true), 1);
        assert_eq!(RESTART.ceiling(1), Duration::from_millis(100));
        assert_eq!(restarts.failed(false), 2, "and grows again from there");
    }
}
