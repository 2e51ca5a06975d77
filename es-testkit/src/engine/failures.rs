//! Failing events: the error policy parks or stops, parked events are retried and
//! settled by a rebuild, and the status says where the runner is and what failed.

use std::collections::HashSet;
use std::time::Duration;

use es_core::{ErrorPolicy, OnFailure, RunnerError};
use uuid::Uuid;

use super::{PATIENCE, deposit, runner, settled};
use crate::conformance::account;
use crate::projections::{CountingView, Faults, LedgerStorage, LedgerView};
use es_core::Store;

/// An event the projection keeps failing on is parked (visible, with its error) and the
/// projection goes on; once the cause is fixed, retrying the parked event applies it.
pub async fn failing_event_is_parked_and_can_be_retried<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 12).await.into_iter().collect();
    settled(&store, 12).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(7);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::retry(2, Duration::from_millis(1)).then(OnFailure::Park));
    assert_eq!(runner.catch_up().await.unwrap(), 12);

    let parked = store.parked("ledger").await.unwrap();
    assert_eq!(parked.len(), 1, "the failing event is parked: {parked:?}");
    assert_eq!(parked[0].version.get(), 7);
    assert_eq!(parked[0].stream_id, account("a"));
    assert_eq!(parked[0].event_type, "Deposited");
    assert_eq!(parked[0].attempts, 3);
    assert!(
        parked[0].error.contains("deposit of 7"),
        "{}",
        parked[0].error
    );
    let status = runner.status().get();
    assert_eq!(status.parked, 1);
    assert!(status.last_error.is_some());
    let ledger = storage.get();
    assert_eq!(ledger.applied.len(), 11, "every other event applied");
    assert!(ledger.applied.values().all(|n| *n == 1));

    // Still broken: the retry fails and the event stays parked, with a new attempt.
    assert_eq!(runner.retry_parked().await.unwrap(), 0);
    assert_eq!(store.parked("ledger").await.unwrap()[0].attempts, 4);

    faults.heal();
    assert_eq!(runner.retry_parked().await.unwrap(), 1);
    assert!(store.parked("ledger").await.unwrap().is_empty());
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids));
    assert_eq!(ledger.balances["a"], (1..=12).sum::<u64>() as i64);
}

/// With the stop policy the runner stops at the failing event, naming it, having committed
/// everything before it; after a fix it goes on from there.
pub async fn stop_policy_stops_at_the_failing_event<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 12).await.into_iter().collect();
    settled(&store, 12).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(9);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::retry(1, Duration::from_millis(1)));
    match runner.catch_up().await {
        Err(RunnerError::Handler {
            stream,
            version,
            event_type,
            attempts,
            ..
        }) => {
            assert_eq!(stream, account("a"));
            assert_eq!(version.get(), 9);
            assert_eq!(event_type, "Deposited");
            assert!(attempts >= 2);
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    let ledger = storage.get();
    assert_eq!(
        ledger.applied.len(),
        8,
        "everything before the failing event is applied"
    );
    assert!(ledger.applied.values().all(|n| *n == 1));
    assert!(
        store.parked("ledger").await.unwrap().is_empty(),
        "nothing parked"
    );

    faults.heal();
    assert_eq!(runner.catch_up().await.unwrap(), 4);
    assert!(storage.get().applied_exactly(&ids));
}

/// The status tells where the projection is, how far behind, and what failed.
pub async fn status_reports_position_lag_and_errors<S: Store>(store: S) {
    deposit(&store, "a", 10).await;
    settled(&store, 10).await;
    let storage = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    let status = runner.status();
    assert_eq!(status.get().position, None);
    assert_eq!(status.get().key, "counting");
    assert_eq!(
        tokio::time::timeout(PATIENCE, status.lag(&store))
            .await
            .unwrap()
            .unwrap(),
        10
    );
    runner.catch_up().await.unwrap();
    let now = status.get();
    assert_eq!(now.handled, 10);
    assert!(now.position.is_some());
    assert!(now.last_event_at.is_some());
    deposit(&store, "b", 3).await;
    // The new events may be held back for a moment; the lag counts them once visible.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lag = status.lag(&store).await.unwrap();
        if lag == 3 {
            break;
        }
        assert!(lag < 3, "lag {lag} counts more than the new events");
        assert!(tokio::time::Instant::now() < deadline, "lag stuck at {lag}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// With the stop policy, what came before the failing event in its batch is committed,
/// even for a read model in process memory: after the fix, nothing is applied twice.
pub async fn stop_policy_keeps_the_events_before_the_failure<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let mut runner = runner(
        &store,
        CountingView::new("memory", storage.clone(), faults.clone()),
    )
    .with_checkpoint_in_memory()
    .with_error_policy(ErrorPolicy::stop());
    assert!(matches!(
        runner.catch_up().await,
        Err(RunnerError::Handler { .. })
    ));
    assert_eq!(storage.get().applied.len(), 2);
    faults.heal();
    assert_eq!(runner.catch_up().await.unwrap(), 3);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    assert_eq!(ledger.balances["a"], 15);
}

/// A rebuild replays parked events with the rest: one the projection now handles is
/// unparked, so retrying parked events afterwards applies nothing twice.
pub async fn rebuild_settles_parked_events<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::park());
    assert_eq!(runner.catch_up().await.unwrap(), 5);
    assert_eq!(runner.parked().await.unwrap().len(), 1);

    faults.heal();
    assert_eq!(runner.rebuild().await.unwrap(), 5);
    assert!(store.parked("ledger").await.unwrap().is_empty());
    assert_eq!(runner.retry_parked().await.unwrap(), 0);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    assert_eq!(ledger.balances["a"], 15);
}

/// Runners whose read model lives in process memory keep their parked events to
/// themselves: one process retrying its parked event does not take it from another's.
pub async fn in_memory_runners_keep_their_parked_events<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let faults = Faults::none();
    faults.fail_on(3);
    let (here, there) = (LedgerStorage::default(), LedgerStorage::default());
    let in_memory = |storage: &LedgerStorage| {
        runner(
            &store,
            CountingView::new("memory", storage.clone(), faults.clone()),
        )
        .with_checkpoint_in_memory()
        .with_error_policy(ErrorPolicy::park())
    };
    let (mut a, mut b) = (in_memory(&here), in_memory(&there));
    a.catch_up().await.unwrap();
    b.catch_up().await.unwrap();
    assert!(
        store.parked("memory").await.unwrap().is_empty(),
        "nothing in the store's dead-letter table"
    );
    assert_eq!(a.parked().await.unwrap().len(), 1);
    assert_eq!(b.parked().await.unwrap().len(), 1);

    faults.heal();
    assert_eq!(a.retry_parked().await.unwrap(), 1);
    assert_eq!(b.retry_parked().await.unwrap(), 1);
    for storage in [here, there] {
        let ledger = storage.get();
        assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    }
}

/// A live runner whose commit fails (here: another instance moved the checkpoint) says so
/// in its status, as recovering with the error, while it waits to start over.
pub async fn live_runner_reports_recovering_after_a_failed_commit<S: Store>(store: S) {
    deposit(&store, "a", 3).await;
    settled(&store, 3).await;
    let storage = LedgerStorage::default();
    let mut live = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    )
    .with_lease(None);
    let status = live.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        live.run_until(async {
            let _ = stopped.await;
        })
        .await
    });
    tokio::time::timeout(PATIENCE, async {
        while storage.get().applied.len() < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the runner handles the history");
    storage.move_checkpoint("ledger", es_core::Position::START);
    deposit(&store, "a", 1).await;
    tokio::time::timeout(PATIENCE, async {
        while status.get().state != es_core::RunnerState::Recovering {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the runner reports that it is recovering");
    let error = status.get().last_error.unwrap_or_default();
    assert!(error.contains("ledger"), "{error}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A live runner whose projection cannot load the checkpoint it keeps, with an error the
/// projection does not call transient, stops with that error instead of starting over
/// for good.
pub async fn live_runner_stops_when_its_checkpoint_cannot_be_loaded<S: Store>(store: S) {
    deposit(&store, "a", 2).await;
    settled(&store, 2).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.make_checkpoint_unreadable();
    let mut live = runner(
        &store,
        LedgerView::new("unreadable", storage.clone(), faults.clone()),
    );
    let outcome = tokio::time::timeout(PATIENCE, live.run())
        .await
        .expect("the runner stops rather than loading the checkpoint again and again");
    match outcome {
        Err(RunnerError::LoadCheckpoint { projection, source }) => {
            assert_eq!(projection, "unreadable");
            assert!(source.to_string().contains("unreadable"), "{source}");
        }
        other => panic!("expected the checkpoint's error, got {other:?}"),
    }
    assert_eq!(live.status().get().state, es_core::RunnerState::Failed);
    assert!(storage.get().applied.is_empty());
}
