//! The projections an application registers with [`App`](crate::App): factories kept by
//! name, behind one object-safe trait, so that `es projections rebuild` and `es parked
//! retry` run the application's own projection code through es-core's
//! [`ProjectionRunner`].

use std::time::Duration;

use es_core::{EventFilter, Projection, ProjectionRunner, RunnerError};
use es_postgres::PgEventStore;
use futures_util::future::LocalBoxFuture;
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::error::CliError;
use crate::fence::{Own, fenced};
use crate::retry::OnlyParked;

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
            // The leases (its own and its partitions') keep the application's runners from
            // handling events into the read model while it is emptied (and this from
            // emptying it under one); they are renewed for as long as the reset takes.
            fenced(store, &name, Own::Take, async {
                // Checkpoints first, as a rebuild does: a failure between the two then
                // replays into the old read model, rather than resuming past an emptied one.
                let forgotten = store.admin().forget_checkpoints(&name).await?;
                projection.reset().await.map_err(|e| CliError::Projection {
                    projection: name.clone(),
                    source: Box::new(e),
                })?;
                Ok(forgotten)
            })
            .await
        })
    }

    fn rebuild<'a>(
        &'a self,
        store: &'a PgEventStore,
        progress: &'a ProgressBar,
    ) -> LocalBoxFuture<'a, Result<u64, CliError>> {
        Box::pin(async move {
            let mut runner = ProjectionRunner::new(store.clone(), (self.build)(store));
            let name = runner.key();
            // A rebuild forgets every partition's checkpoint and leaves only its own at
            // the head: the application's partition runners would then replay the whole
            // log on top of the rebuilt model. Their reset, then their own catch-up, is
            // the rebuild of a partitioned projection.
            if let Some(partition) = store
                .admin()
                .lease_keys(&name)
                .await?
                .into_iter()
                .find(|key| *key != name)
            {
                return Err(CliError::Partitioned {
                    projection: name,
                    partition,
                });
            }
            let status = runner.status();
            // The runner takes the projection's own lease and renews it while it rebuilds;
            // the fence holds any partition's key that appeared since (whose runner would
            // write into the read model the rebuild empties), renewed just as long, and
            // leaves `name` to it.
            fenced(store, &name, Own::LeaveToRunner, async {
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
            .await
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
