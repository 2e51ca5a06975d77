//! Reading one's own writes: an outcome's position, waiting until a projection has seen
//! it, and the runner for views held in memory, which must not resume from a stored
//! checkpoint.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use es_core::{
    CommandContext, ErrorPolicy, EventFilter, ExpectedVersion, NewEvent, ProjectionRunner,
    RawEvent, Repository, StreamId, WaitError,
};

use super::{PATIENCE, deposit, runner, settled};
use crate::conformance::read_log;
use crate::fixture::{Account, AccountCommand};
use crate::projections::{Faults, LedgerStorage, LedgerView};
use es_core::Store;

/// A runner running live on a task of its own, until [`Live::stop`].
struct Live {
    status: es_core::StatusHandle,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), es_core::RunnerError>>,
}

impl Live {
    fn start<P, S>(mut runner: ProjectionRunner<P, S>) -> Self
    where
        P: es_core::Projection + Sync + 'static,
        S: Store,
    {
        let status = runner.status();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runner
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self { status, stop, task }
    }

    /// Stops the runner; it must have ended without an error.
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Waits (at most [`PATIENCE`]) until `status` shows what `seen` looks for.
async fn until(status: &es_core::StatusHandle, seen: impl Fn(&es_core::ProjectionStatus) -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !seen(&status.get()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the status shows it");
}

/// A command's outcome names the position of its last event, and a repeat of the command
/// (same command id) names the first execution's.
pub async fn outcome_tells_its_last_position<S: Store>(store: S) {
    let accounts = Repository::<Account, _>::new(store.clone());
    accounts
        .execute(
            "ada",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    let context = CommandContext::new().with_command_id(uuid::Uuid::now_v7());
    let deposit = AccountCommand::Deposit { amount: 5 };
    let outcome = accounts
        .execute_with("ada", deposit.clone(), context.clone())
        .await
        .unwrap();
    let position = outcome.position().expect("the deposit recorded an event");
    assert_eq!(position, outcome.events[0].position);
    settled(&store, 2).await;
    let log =
        read_log::<S, RawEvent>(&store, es_core::Position::START, EventFilter::all(), 2).await;
    assert_eq!(log.last().map(|event| event.position), Some(position));

    let repeat = accounts
        .execute_with("ada", deposit, context)
        .await
        .unwrap();
    assert!(repeat.duplicate);
    assert_eq!(
        repeat.position(),
        Some(position),
        "a repeat names the first execution's position"
    );
}

/// Waiting for an outcome's position returns once the live runner's view holds the
/// command's event.
pub async fn waiting_for_a_position_sees_ones_own_writes<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let live = Live::start(runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    ));
    let status = live.status.clone();
    let mut ids = HashSet::new();
    for round in 0..5 {
        let [id] = deposit(&store, &format!("acct-{round}"), 1).await[..] else {
            unreachable!("one deposit")
        };
        ids.insert(id);
        let position = store
            .find_event::<RawEvent>(id)
            .await
            .unwrap()
            .expect("the deposit is stored")
            .position;
        status.wait_for(&store, position, PATIENCE).await.unwrap();
        assert_eq!(
            storage.get().applied.get(&id),
            Some(&1),
            "the view holds the write as soon as the wait returns"
        );
    }
    live.stop().await;
    assert!(storage.get().applied_exactly(&ids));
}

/// Events a projection does not read do not hold a wait up: it returns at once for an
/// event of another category, even with no runner running; but it waits for, and times
/// out on, events it does read that no runner handles.
pub async fn waiting_passes_events_the_projection_does_not_read<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let idle = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    );
    let status = idle.status();
    let other = StreamId::new("audit", "1").unwrap();
    let committed = store
        .append(
            &other,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new(
                "Noted",
                1,
                serde_json::json!({}),
            ))],
        )
        .await
        .unwrap();
    let position = committed.position().unwrap();
    status.wait_for(&store, position, PATIENCE).await.unwrap();

    // An account event the idle runner has not handled, then another audit event.
    deposit(&store, "ada", 1).await;
    let later = store
        .append(
            &other,
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new(
                "Noted",
                1,
                serde_json::json!({}),
            ))],
        )
        .await
        .unwrap()
        .position()
        .unwrap();
    let started = Instant::now();
    let error = status
        .wait_for(&store, later, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(300), "it waited");
    match error {
        WaitError::Timeout {
            projection,
            position,
            reached,
            ..
        } => {
            assert_eq!(projection, "ledger");
            assert_eq!(position, later);
            assert_eq!(reached, None);
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(idle);
}

/// A wait ends as soon as the runner fails, with the runner's error, rather than at its
/// deadline.
pub async fn waiting_ends_when_the_runner_fails<S: Store>(store: S) {
    let faults = Faults::none();
    faults.fail_on(1);
    let mut failing = runner(
        &store,
        LedgerView::new("ledger", LedgerStorage::default(), faults),
    )
    .with_error_policy(ErrorPolicy::stop());
    let status = failing.status();
    let ids = deposit(&store, "ada", 1).await;
    let position = store
        .find_event::<RawEvent>(ids[0])
        .await
        .unwrap()
        .unwrap()
        .position;
    let task = tokio::spawn(async move { failing.run().await });
    let started = Instant::now();
    let error = status
        .wait_for(&store, position, PATIENCE)
        .await
        .unwrap_err();
    assert!(started.elapsed() < PATIENCE);
    assert!(
        matches!(&error, WaitError::Failed { projection, .. } if projection == "ledger"),
        "{error:?}"
    );
    assert!(task.await.unwrap().is_err());
}

/// A runner for a view in memory starts from the beginning of the log, whatever
/// checkpoint an earlier process stored, and leaves that checkpoint alone.
pub async fn in_memory_runner_ignores_a_stored_checkpoint<S: Store>(store: S) {
    deposit(&store, "ada", 3).await;
    settled(&store, 3).await;
    let mut earlier = ProjectionRunner::new(
        store.clone(),
        crate::projections::CountingView::new("view", LedgerStorage::default(), Faults::none()),
    );
    assert_eq!(earlier.catch_up().await.unwrap(), 3);
    let stored = store.load_checkpoint("view").await.unwrap();
    assert!(stored.is_some());

    let fresh = LedgerStorage::default();
    let mut view = ProjectionRunner::in_memory(
        store.clone(),
        crate::projections::CountingView::new("view", fresh.clone(), Faults::none()),
    );
    assert_eq!(view.catch_up().await.unwrap(), 3, "it reads the whole log");
    assert_eq!(fresh.get().applied.len(), 3);
    assert_eq!(store.load_checkpoint("view").await.unwrap(), stored);
}

/// The lease of the standby cases: they assert that the standby never took over, so the
/// holder's renewals must not miss a term on a loaded machine (the engine's usual 500 ms
/// could).
const STANDBY_LEASE: Option<Duration> = Some(Duration::from_secs(5));

/// An instance standing by while another holds the lease shows the checkpoint the holder
/// commits, so waiting on it (another replica of a service sharing the read model) ends
/// once the holder has seen the position, rather than at the deadline.
pub async fn a_standing_by_instance_sees_the_shared_checkpoint<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let start = || {
        Live::start(
            runner(
                &store,
                LedgerView::new("ledger", storage.clone(), Faults::none()),
            )
            .with_lease(STANDBY_LEASE),
        )
    };
    let holder = start();
    until(&holder.status, |s| s.state == es_core::RunnerState::Live).await;
    let standby = start();
    until(&standby.status, |s| {
        s.state == es_core::RunnerState::Standby
    })
    .await;

    let ids = deposit(&store, "ada", 1).await;
    let position = store
        .find_event::<RawEvent>(ids[0])
        .await
        .unwrap()
        .unwrap()
        .position;
    standby
        .status
        .wait_for(&store, position, PATIENCE)
        .await
        .unwrap();
    assert_eq!(
        standby.status.get().state,
        es_core::RunnerState::Standby,
        "the holder did the work"
    );
    assert_eq!(storage.get().applied.get(&ids[0]), Some(&1));

    standby.stop().await;
    holder.stop().await;
}

/// A standby shows what is stored, nothing included: once the shared checkpoint is
/// forgotten (a reset), it shows none rather than the position from before, which would
/// let a wait end against an emptied read model.
pub async fn a_standing_by_instance_shows_a_forgotten_checkpoint_as_none<S: Store>(store: S) {
    let start = || {
        Live::start(
            runner(
                &store,
                crate::projections::CountingView::new(
                    "view",
                    LedgerStorage::default(),
                    Faults::none(),
                ),
            )
            .with_lease(STANDBY_LEASE),
        )
    };
    let holder = start();
    until(&holder.status, |s| s.state == es_core::RunnerState::Live).await;
    let standby = start();
    until(&standby.status, |s| {
        s.state == es_core::RunnerState::Standby
    })
    .await;

    let ids = deposit(&store, "ada", 1).await;
    let position = store
        .find_event::<RawEvent>(ids[0])
        .await
        .unwrap()
        .unwrap()
        .position;
    standby
        .status
        .wait_for(&store, position, PATIENCE)
        .await
        .unwrap();

    store.delete_checkpoint("view").await.unwrap();
    until(&standby.status, |s| s.position.is_none()).await;

    standby.stop().await;
    holder.stop().await;
}
