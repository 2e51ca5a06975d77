//! Checkpoints: a runner catches up, resumes after its checkpoint (stored, kept by the
//! projection, or in memory), survives being killed mid-batch, and rebuilds from the start.

use std::collections::HashSet;
use std::time::Duration;

use es_core::{ExpectedVersion, NewEvent, ProjectionRunner, RunnerError};
use uuid::Uuid;

use super::{PATIENCE, deposit, runner, settled};
use crate::conformance::account;
use crate::fixture::AccountEvent;
use crate::projections::{CountingView, Faults, LedgerStorage, LedgerView};
use es_core::Store;

/// A runner handles the history, commits, and a later runner resumes after the
/// checkpoint: each event once.
pub async fn projection_catches_up_and_resumes_from_its_checkpoint<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut ids: HashSet<Uuid> = deposit(&store, "a", 7).await.into_iter().collect();
    settled(&store, 7).await;
    let mut first = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(first.catch_up().await.unwrap(), 7);
    let checkpoint = first.status().get().position;
    assert!(checkpoint.is_some(), "the runner committed a checkpoint");

    ids.extend(deposit(&store, "b", 4).await);
    settled(&store, 11).await;
    let mut second = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(
        second.catch_up().await.unwrap(),
        4,
        "it resumes after the checkpoint"
    );
    assert!(storage.get().applied_exactly(&ids));
    assert_eq!(storage.get().balances["a"], 28);
    assert_eq!(
        second.catch_up().await.unwrap(),
        0,
        "nothing new, nothing handled"
    );
}

/// A projection that keeps its own checkpoint is killed mid-batch (its task dropped
/// between writes and the commit): a new runner finishes the job, and every event is
/// applied exactly once.
pub async fn killed_projection_resumes_exactly_once<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 23).await.into_iter().collect();
    settled(&store, 23).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.stall_at(13);
    let mut doomed = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    );
    let task = tokio::spawn(async move { doomed.catch_up().await });
    tokio::time::timeout(PATIENCE, faults.stalled())
        .await
        .expect("the view reached the stall");
    task.abort();
    let _ = task.await;
    let before = storage.get();
    assert_eq!(before.applied.len(), 10, "two batches of 5 were committed");

    let mut survivor = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    )
    // The dead runner's lease must run out first.
    .with_lease(Some(Duration::from_millis(500)));
    let handled = tokio::time::timeout(PATIENCE, async {
        loop {
            match survivor.catch_up().await {
                Err(RunnerError::LeaseHeld { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    })
    .await
    .expect("the lease expires")
    .unwrap();
    assert_eq!(handled, 13, "it resumes after the last commit");
    let ledger = storage.get();
    assert!(
        ledger.applied_exactly(&ids),
        "every event applied exactly once"
    );
    assert_eq!(ledger.balances["a"], (1..=23).sum::<u64>() as i64);
}

/// A projection that lets the runner keep its checkpoint, killed mid-batch, loses nothing:
/// the events since the last checkpoint come again (at least once).
pub async fn killed_projection_without_own_checkpoint_loses_nothing<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 23).await.into_iter().collect();
    settled(&store, 23).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.stall_at(13);
    let mut doomed = runner(
        &store,
        CountingView::new("counting", storage.clone(), faults.clone()),
    )
    .with_lease(None);
    let task = tokio::spawn(async move { doomed.catch_up().await });
    tokio::time::timeout(PATIENCE, faults.stalled())
        .await
        .expect("the view reached the stall");
    task.abort();
    let _ = task.await;

    let mut survivor = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    )
    .with_lease(None);
    survivor.catch_up().await.unwrap();
    let ledger = storage.get();
    assert_eq!(ledger.applied.len(), ids.len(), "no event lost");
    let twice: Vec<_> = ledger.applied.values().filter(|n| **n > 1).collect();
    assert!(
        twice.len() <= 2 && twice.iter().all(|n| **n == 2),
        "only the uncommitted batch (events 11 and 12) comes again: {twice:?}"
    );
}

/// Rebuilding from the start of the log gives exactly the view that live processing gave.
pub async fn rebuild_gives_the_view_live_processing_gave<S: Store>(store: S) {
    let mut ids: HashSet<Uuid> = deposit(&store, "a", 6).await.into_iter().collect();
    let storage = LedgerStorage::default();
    let mut live = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        live.run_until(async {
            let _ = stopped.await;
        })
        .await
        .map(|()| live)
    });
    ids.extend(deposit(&store, "b", 5).await);
    ids.extend(deposit(&store, "a", 3).await);
    tokio::time::timeout(PATIENCE, async {
        while !storage.get().applied_exactly(&ids) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live runner handles every event");
    let _ = stop.send(());
    let mut live = task.await.unwrap().unwrap();
    let live_view = storage.get();
    settled(&store, ids.len()).await;

    assert_eq!(live.rebuild().await.unwrap(), ids.len() as u64);
    let rebuilt = storage.get();
    assert_eq!(rebuilt.balances, live_view.balances);
    assert_eq!(rebuilt.order, live_view.order);
    assert!(rebuilt.applied_exactly(&ids));
}

/// A runner reading through a just-appended position sees that event, even where the store
/// holds fresh events back for a moment.
pub async fn catch_up_through_sees_the_append<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    for round in 0..5 {
        let committed = store
            .append(
                &account("fresh"),
                ExpectedVersion::Any,
                vec![NewEvent::new(AccountEvent::Deposited { amount: 1 })],
            )
            .await
            .unwrap();
        let last = committed.events[0].position;
        tokio::time::timeout(PATIENCE, runner.catch_up_through(last))
            .await
            .expect("the append becomes readable")
            .unwrap();
        assert!(
            storage
                .get()
                .applied
                .contains_key(&committed.events[0].event_id),
            "round {round}: the projection saw the append"
        );
    }
}

/// A runner with its checkpoint in memory stores none: a new runner (a new process, with a
/// new, empty read model) reads the log from the start.
pub async fn checkpoint_in_memory_is_not_stored<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 6).await.into_iter().collect();
    settled(&store, 6).await;
    let first = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("in-memory", first.clone(), Faults::none()),
    )
    .with_checkpoint_in_memory();
    assert_eq!(runner.catch_up().await.unwrap(), 6);
    assert_eq!(
        runner.catch_up().await.unwrap(),
        0,
        "it remembers its own position"
    );
    assert_eq!(store.load_checkpoint("in-memory").await.unwrap(), None);

    let second = LedgerStorage::default();
    let mut restarted = ProjectionRunner::new(
        store.clone(),
        CountingView::new("in-memory", second.clone(), Faults::none()),
    )
    .with_checkpoint_in_memory();
    assert_eq!(restarted.catch_up().await.unwrap(), 6);
    assert!(first.get().applied_exactly(&ids) && second.get().applied_exactly(&ids));
}

/// A projection that keeps its own checkpoint, run with the checkpoint in memory, still has
/// a failed or interrupted event's batch rolled back whole: the runner commits nothing past
/// writes the projection dropped, so no event is skipped and each is applied once.
pub async fn checkpoint_in_memory_rolls_back_a_projection_keeping_its_own<S: Store>(store: S) {
    let ids: Vec<Uuid> = deposit(&store, "a", 12).await;
    settled(&store, 12).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    // Mid-batch: the view's storage drops the staged deposits of 1 and 2 with it.
    faults.interrupt_once_on(3);
    // Mid-batch too, later: parked after its batch is rolled back and replayed.
    faults.fail_on(8);
    let mut runner = runner(
        &store,
        LedgerView::new("own-in-memory", storage.clone(), faults.clone()),
    )
    .with_checkpoint_in_memory()
    .with_error_policy(es_core::ErrorPolicy::park());
    assert!(
        matches!(
            runner.catch_up().await,
            Err(RunnerError::Interrupted { .. })
        ),
        "a catch-up returns the interruption"
    );
    assert!(storage.get().applied.is_empty(), "nothing was committed");
    assert_eq!(runner.catch_up().await.unwrap(), 12);
    let ledger = storage.get();
    let expected: HashSet<Uuid> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7)
        .map(|(_, id)| *id)
        .collect();
    assert!(
        ledger.applied_exactly(&expected),
        "every event but the parked one, each once: {ledger:?}"
    );
    let parked = runner.parked().await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, ids[7]);
}

/// A runner that resumes from a stored checkpoint reports that position, and no lag,
/// before it has handled anything.
pub async fn resumed_runner_reports_its_checkpoint<S: Store>(store: S) {
    deposit(&store, "a", 5).await;
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let mut first = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(first.catch_up().await.unwrap(), 5);
    let committed = first.status().get().position;
    assert!(committed.is_some());

    let mut second = runner(
        &store,
        CountingView::new("counting", storage, Faults::none()),
    );
    assert_eq!(second.catch_up().await.unwrap(), 0);
    let status = second.status();
    assert_eq!(status.get().position, committed);
    assert_eq!(status.lag(&store).await.unwrap(), 0);
}
