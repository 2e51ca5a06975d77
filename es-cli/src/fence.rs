//! [`Fence`]: the leases `es` holds while it resets or rebuilds a projection, so that no
//! runner of the application (of the whole log, or of any of its partitions) writes into
//! the read model or the checkpoints it empties.
//!
//! A runner commits its checkpoint with an upsert, so a reset that only deleted it would be
//! undone by the next commit of a runner still going; and a partitioned runner leases
//! `name#number/count`, not `name`. So the fence takes every key
//! [`PgAdmin::lease_keys`](es_postgres::PgAdmin::lease_keys) finds, refuses if any is held,
//! and renews them while the work runs.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use es_core::LeaseStore as _;
use es_postgres::PgEventStore;
use futures_util::future::join_all;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::CliError;

/// How long each lease is taken for. It is renewed a third of the way through, so a slow
/// reset or rebuild keeps it however long it takes, while a crashed `es` blocks the
/// application's runners for half a minute at most.
const TERM: Duration = Duration::from_secs(30);

/// Whether the fence takes the projection's own key, `name`, or leaves it to a
/// [`ProjectionRunner`](es_core::ProjectionRunner) that takes and renews it itself (a
/// rebuild's: its lease has another owner, so taking it here would lock the runner out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Own {
    /// Take `name` too.
    Take,
    /// Only its partitions' keys.
    LeaveToRunner,
}

/// Leases of one projection held by this `es`.
#[derive(Debug)]
pub(crate) struct Fence {
    name: String,
    owner: Uuid,
    keys: Vec<String>,
    term: Duration,
    /// When the leases were asked for: they run out a term after, at the earliest.
    taken_at: Instant,
}

impl Fence {
    /// Takes every lease key of projection `name` (as [`Own`] says for `name` itself) for
    /// `term`, or none: [`CliError::Running`] naming the first key another owner holds.
    async fn take(
        store: &PgEventStore,
        name: &str,
        own: Own,
        term: Duration,
    ) -> Result<Self, CliError> {
        let mut fence = Self {
            name: name.to_owned(),
            owner: Uuid::now_v7(),
            keys: Vec::new(),
            term,
            taken_at: Instant::now(),
        };
        let keys = store.admin().lease_keys(name).await?;
        for key in keys {
            if own == Own::LeaveToRunner && key == name {
                continue;
            }
            match store.acquire_lease(&key, fence.owner, term).await {
                Ok(true) => fence.keys.push(key),
                Ok(false) => {
                    // The held lease is what to report; those taken run out anyway.
                    let _ = fence.release(store).await;
                    return Err(CliError::Running { projection: key });
                }
                Err(error) => {
                    // The failure to report is this one; the leases taken run out anyway.
                    let _ = fence.release(store).await;
                    return Err(error.into());
                }
            }
        }
        Ok(fence)
    }

    /// Runs `work`, renewing the leases a third of the way through each term meanwhile.
    ///
    /// Stops the work (drops it: its transaction rolls back) when going on could let it
    /// run without the leases: one was lost (another owner took it after it ran out), or
    /// renewals failed or hung until less than a third of a term is left of what the last
    /// one gave. A runner may be writing again by then, and going on would empty what it
    /// writes. A renewal that fails earlier is logged and tried again at the next tick.
    /// Stops it too on Ctrl-C ([`CliError::Interrupted`]), so that the leases are given up
    /// rather than left to run out.
    async fn hold<T>(
        &self,
        store: &PgEventStore,
        mut interrupted: Pin<&mut impl Future<Output = ()>>,
        work: impl Future<Output = Result<T, CliError>>,
    ) -> Result<T, CliError> {
        tokio::pin!(work);
        let period = self.term / 3;
        // Counted from when the leases were taken, not from now: taking them all may have
        // used up part of the term.
        if Instant::now() + period >= self.taken_at + self.term {
            return Err(CliError::FenceLapsed {
                projection: self.name.clone(),
            });
        }
        let mut renew = tokio::time::interval_at(self.taken_at + period, period);
        let mut renewed_at = self.taken_at;
        loop {
            // Biased, renewal first: a renewal due is made (or the work stopped) before
            // the work is polled again, however ready it is.
            tokio::select! {
                biased;
                _ = renew.tick() => {
                    let asked_at = Instant::now();
                    let expires_at = renewed_at + self.term;
                    let renewed = tokio::time::timeout_at(expires_at, self.renew(store))
                        .await
                        .unwrap_or_else(|_| {
                            Err(CliError::FenceLapsed {
                                projection: self.name.clone(),
                            })
                        });
                    match renewed {
                        // The store extended them from when it was asked, or later.
                        Ok(()) => renewed_at = asked_at,
                        Err(error @ CliError::Running { .. }) => return Err(error),
                        // Measured now, after the call: a renewal that hung used up the
                        // term it waited through.
                        Err(error) if Instant::now() + self.term / 3 >= expires_at => {
                            return Err(error);
                        }
                        Err(error) => tracing::warn!(
                            projection = %self.name,
                            error = %error.line(),
                            "renewing the leases failed; trying again at the next tick"
                        ),
                    }
                }
                () = &mut interrupted => {
                    return Err(CliError::Interrupted {
                        projection: self.name.clone(),
                    });
                }
                done = &mut work => return done,
            }
        }
    }

    /// Renews every lease, all at once (each waits on the store, not on the others):
    /// [`CliError::Running`] naming one another owner took.
    async fn renew(&self, store: &PgEventStore) -> Result<(), CliError> {
        let renewals = self
            .keys
            .iter()
            .map(|key| store.renew_lease(key, self.owner, self.term));
        let outcomes = join_all(renewals).await;
        let mut failed = None;
        for (key, outcome) in self.keys.iter().zip(outcomes) {
            match outcome {
                Ok(true) => {}
                Ok(false) => {
                    return Err(CliError::Running {
                        projection: key.clone(),
                    });
                }
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(()), |error| Err(error.into()))
    }

    /// Gives the leases up, so that the application's runners start at once; waits a term
    /// at most (by then they have run out anyway).
    async fn release(&self, store: &PgEventStore) -> Result<(), CliError> {
        let releases = self
            .keys
            .iter()
            .map(|key| store.release_lease(key, self.owner));
        let Ok(outcomes) = tokio::time::timeout(self.term, join_all(releases)).await else {
            // What the leases guarded is done (or failed, which is reported instead).
            tracing::warn!(
                projection = %self.name,
                "giving the leases up timed out; they run out within {}",
                humantime::format_duration(self.term)
            );
            return Ok(());
        };
        match outcomes.into_iter().find_map(Result::err) {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }
}

/// Resolves on Ctrl-C (SIGINT); never, if the signal cannot be listened for (the default,
/// ending the process, then stays).
async fn interrupted() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs `work` on projection `name` holding its leases ([`Fence`]) for [`TERM`], renewed:
/// refuses with [`CliError::Running`] while a runner of it holds any, and gives them up
/// after. The work's own failure is the one reported if the release fails too.
pub(crate) async fn fenced<T>(
    store: &PgEventStore,
    name: &str,
    own: Own,
    work: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    fenced_for(store, name, own, TERM, work).await
}

async fn fenced_for<T>(
    store: &PgEventStore,
    name: &str,
    own: Own,
    term: Duration,
    work: impl Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    // Listened for before any lease is taken (the first poll installs the handler), so
    // that a Ctrl-C from here on is answered by giving them up, not by the default end of
    // the process that would leave them for a term.
    let interrupted = interrupted();
    tokio::pin!(interrupted);
    if let Poll::Ready(()) = futures_util::poll!(interrupted.as_mut()) {
        return Err(CliError::Interrupted {
            projection: name.to_owned(),
        });
    }
    let fence = Fence::take(store, name, own, term).await?;
    let outcome = fence.hold(store, interrupted, work).await;
    let released = fence.release(store).await;
    let value = outcome?;
    released?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use es_core::LeaseStore as _;
    use es_testkit::postgres::{drop_schema, fresh_store, second_store};
    use sqlx::AssertSqlSafe;
    use tokio::time::Instant;
    use uuid::Uuid;

    use super::{Own, fenced_for};
    use crate::error::CliError;

    #[tokio::test]
    async fn a_slow_operation_keeps_its_leases_past_their_term() {
        let store = fresh_store().await;
        // A partition's runner ran once: its siblings are fenced too.
        let runner = Uuid::now_v7();
        assert!(
            store
                .acquire_lease("totals#2/2", runner, Duration::from_millis(1))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let term = Duration::from_millis(1500);
        let probe = store.clone();
        let outcome = fenced_for(&store, "totals", Own::Take, term, async move {
            // Three terms: without renewal every lease would have run out twice over.
            for _ in 0..3 {
                tokio::time::sleep(term).await;
                for key in ["totals", "totals#1/2", "totals#2/2"] {
                    let taken = probe
                        .acquire_lease(key, Uuid::now_v7(), Duration::from_secs(60))
                        .await?;
                    assert!(!taken, "{key} is still fenced");
                }
            }
            Ok::<_, CliError>("done")
        })
        .await;
        assert_eq!(outcome.unwrap(), "done");
        // Given up after: the runner takes its lease again at once.
        assert!(
            store
                .acquire_lease("totals#2/2", runner, Duration::from_secs(60))
                .await
                .unwrap()
        );
        drop_schema(store).await;
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "holds a transaction open on purpose: the lock the renewal waits on"
    )]
    async fn a_renewal_that_hangs_past_the_term_stops_the_work() {
        let store = fresh_store().await;
        let term = Duration::from_millis(1500);
        let probe = store.clone();
        let outcome = fenced_for(&store, "totals", Own::Take, term, async move {
            // Another transaction locks the lease's row: the renewal a third of the way
            // through waits on it, past the term, as on a database that stopped answering.
            let mut lock = probe.pool().begin().await.unwrap();
            let sql = format!(
                "SELECT 1 FROM \"{}\".leases WHERE name = 'totals' FOR UPDATE",
                probe.schema()
            );
            sqlx::query(AssertSqlSafe(sql))
                .execute(&mut *lock)
                .await
                .unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(term * 3).await;
                drop(lock);
            });
            // Would resume when the lock goes, two terms after the leases ran out.
            tokio::time::sleep(term * 4).await;
            Ok::<_, CliError>("went on without its leases")
        })
        .await;
        assert!(
            matches!(outcome, Err(CliError::FenceLapsed { ref projection }) if projection == "totals"),
            "{outcome:?}"
        );
        drop_schema(store).await;
    }

    #[tokio::test]
    async fn renewals_that_fail_stop_the_work_before_the_leases_run_out() {
        let store = fresh_store().await;
        let cli = second_store(&store, "fence-renewals-fail", |builder| builder).await;
        let term = Duration::from_millis(1500);
        let closing = cli.clone();
        let ran_unleased = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&ran_unleased);
        let outcome = fenced_for(&cli, "totals", Own::Take, term, async move {
            // The leases were taken before this began: they run out a term from now at
            // the latest, unless renewed. Every renewal fails from here on, at once, so
            // the work must stop while a third of the term is left (the margin for a
            // renewal's round trip and the server's clock), never in it.
            let unleased_at = Instant::now() + term - term / 3;
            closing.pool().close().await;
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if Instant::now() >= unleased_at {
                    flag.store(true, Ordering::SeqCst);
                }
                if Instant::now() >= unleased_at + 2 * term {
                    return Ok::<_, CliError>("went on without its leases");
                }
            }
        })
        .await;
        assert!(matches!(outcome, Err(CliError::Store(_))), "{outcome:?}");
        assert!(
            !ran_unleased.load(Ordering::SeqCst),
            "the work was stopped with a third of the leases' term left"
        );
        drop_schema(store).await;
    }
}
