//! The projections an application registers with [`App`](crate::App): factories kept by
//! name, behind one object-safe trait, so that `es projections rebuild` and `es parked
//! retry` run the application's own projection code through es-core's
//! [`ProjectionRunner`].

use std::time::Duration;

use es_core::{EventFilter, LeaseStore as _, Projection, ProjectionRunner, RunnerError};
use es_postgres::PgEventStore;
use futures_util::future::LocalBoxFuture;
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::error::CliError;
use crate::retry::OnlyParked;

/// How long the CLI holds a projection's lease while it resets it: longer than any reset
/// should take, short enough that a crashed `es` does not block the application for long.
const RESET_LEASE: Duration = Duration::from_secs(30);

/// A registered projection, with its type erased.
pub(crate) trait Registered {
    /// The name of the projection the factory builds.
    fn name(&self, store: &PgEventStore) -> String;

    /// The events it reads.
    fn filter(&self, store: &PgEventStore) -> EventFilter;

    /// Empties its read model and forgets its checkpoints, holding its lease meanwhile.
    fn reset<'a>(&'a self, store: &'a PgEventStore) -> LocalBoxFuture<'a, Result<u64, CliError>>;

    /// Rebuilds it with its runner, showing the events handled on `progress`.
    fn rebuild<'a>(
        &'a self,
        store: &'a PgEventStore,
        progress: &'a ProgressBar,
    ) -> LocalBoxFuture<'a, Result<u64, CliError>>;

    /// Hands it its parked events again (or only `event`): how many it handled.
    fn retry<'a>(
        &'a self,
        store: &'a PgEventStore,
        event: Option<Uuid>,
    ) -> LocalBoxFuture<'a, Result<usize, CliError>>;
}

/// A factory of projections of type `P`.
pub(crate) struct Factory<F, P> {
    build: F,
    _projection: std::marker::PhantomData<fn() -> P>,
}

impl<F, P> Factory<F, P> {
    pub(crate) fn new(build: F) -> Self {
        Self {
            build,
            _projection: std::marker::PhantomData,
        }
    }
}

/// A runner's failure as the CLI reports it: a held lease says what to do.
fn runner_failed(error: RunnerError) -> CliError {
    match error {
        RunnerError::LeaseHeld { projection } => CliError::Running { projection },
        other => CliError::from(other),
    }
}

impl<F, P> Registered for Factory<F, P>
where
    F: Fn(&PgEventStore) -> P,
    P: Projection + 'static,
{
    fn name(&self, store: &PgEventStore) -> String {
        (self.build)(store).name().to_owned()
    }

    fn filter(&self, store: &PgEventStore) -> EventFilter {
        (self.build)(store).filter()
    }

    fn reset<'a>(&'a self, store: &'a PgEventStore) -> LocalBoxFuture<'a, Result<u64, CliError>> {
        Box::pin(async move {
            let mut projection = (self.build)(store);
            let name = projection.name().to_owned();
            // The lease keeps a runner of the application from handling events into the
            // read model while it is emptied (and this from emptying it under one).
            let owner = Uuid::now_v7();
            if !store.acquire_lease(&name, owner, RESET_LEASE).await? {
                return Err(CliError::Running { projection: name });
            }
            // Checkpoints first, as a rebuild does: a failure between the two then replays
            // into the old read model, rather than resuming past an emptied one.
            let outcome = async {
                let forgotten = store.admin().forget_checkpoints(&name).await?;
                projection.reset().await.map_err(|e| CliError::Projection {
                    projection: name.clone(),
                    source: Box::new(e),
                })?;
                Ok::<_, CliError>(forgotten)
            }
            .await;
            // The reset's own failure is the one to report, if both fail.
            let released = store.release_lease(&name, owner).await;
            let forgotten = outcome?;
            released?;
            Ok(forgotten)
        })
    }

    fn rebuild<'a>(
        &'a self,
        store: &'a PgEventStore,
        progress: &'a ProgressBar,
    ) -> LocalBoxFuture<'a, Result<u64, CliError>> {
        Box::pin(async move {
            let mut runner = ProjectionRunner::new(store.clone(), (self.build)(store));
            let status = runner.status();
            let rebuild = runner.rebuild();
            tokio::pin!(rebuild);
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    done = &mut rebuild => {
                        progress.set_position(status.get().handled);
                        return done.map_err(runner_failed);
                    }
                    _ = tick.tick() => progress.set_position(status.get().handled),
                }
            }
        })
    }

    fn retry<'a>(
        &'a self,
        store: &'a PgEventStore,
        event: Option<Uuid>,
    ) -> LocalBoxFuture<'a, Result<usize, CliError>> {
        Box::pin(async move {
            let only = OnlyParked::new(store.clone(), event);
            let mut runner = ProjectionRunner::new(only, (self.build)(store));
            runner.retry_parked().await.map_err(runner_failed)
        })
    }
}
