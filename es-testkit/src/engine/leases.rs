//! Leases: competing instances of one projection take turns, and a runner that is slow or
//! retrying keeps its lease rather than letting a second instance handle the same events.

use std::collections::HashSet;
use std::time::Duration;

use es_core::{ErrorPolicy, OnFailure, ProjectionRunner, RunnerError};
use uuid::Uuid;

use super::{PATIENCE, deposit, runner, settled};
use crate::projections::{CountingView, Faults, LedgerStorage, LedgerView};
use es_core::Store;

/// Two instances of one projection run at once while events arrive: the lease lets one
/// work and the other wait, each event is applied exactly once, and when the first stops
/// the second takes over.
pub async fn two_instances_handle_each_event_once<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let mut instance = runner(
            &store,
            LedgerView::new("ledger", storage.clone(), Faults::none()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            instance
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        instances.push((stop, task));
    }
    for round in 0..5 {
        ids.extend(deposit(&store, &format!("acct-{round}"), 8).await);
    }
    let all_applied = |ids: HashSet<Uuid>| {
        let storage = storage.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while !storage.get().applied_exactly(&ids) {
                    assert!(
                        storage.get().applied.values().all(|n| *n == 1),
                        "an event was applied twice"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("every event is applied");
        }
    };
    all_applied(ids.clone()).await;

    // Stop one instance (whichever held the lease or not): the other goes on.
    let (stop, task) = instances.remove(0);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    ids.extend(deposit(&store, "after-failover", 6).await);
    all_applied(ids.clone()).await;

    let (stop, task) = instances.remove(0);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// A runner retrying a failing event with pauses longer than its lease keeps renewing
/// the lease: a second instance cannot take over meanwhile and handle the same events.
pub async fn lease_outlasts_retry_pauses<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 10).await.into_iter().collect();
    settled(&store, 10).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let lease = Some(Duration::from_secs(2));
    // Pauses of up to 1 s, 2 s and 4 s, each at least half of that (the policy jitters
    // them): together at least 3.5 s, past both the lease's 2 s and the 2.2 s a catching-up
    // runner waits for a lease before it gives up. Shorter ones could end in the first
    // runner stopping (and releasing) while the second still waits.
    let mut first = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), faults.clone()),
    )
    .with_lease(lease)
    .with_batch_size(3)
    .with_error_policy(ErrorPolicy::retry(3, Duration::from_secs(1)).then(OnFailure::Stop));
    let first = tokio::spawn(async move { first.catch_up().await });
    tokio::time::timeout(PATIENCE, async {
        while storage.get().applied.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first runner reaches the failing event");

    let mut second = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), Faults::none()),
    )
    .with_lease(lease)
    .with_batch_size(3);
    let taken = second.catch_up().await;
    assert!(
        matches!(taken, Err(RunnerError::LeaseHeld { .. })),
        "the lease is still held by the runner that is retrying; the second runner got {taken:?}"
    );
    faults.heal();
    assert_eq!(first.await.unwrap().unwrap(), 10);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
}

/// An event whose handling outlasts the lease does not make the runner give up its batch
/// when nobody else took the lease meanwhile: it goes on, each event handled once.
pub async fn slow_event_outlasting_the_lease_is_handled_once<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 4).await.into_iter().collect();
    settled(&store, 4).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.slow_on(2, Duration::from_millis(600));
    let mut runner = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), faults),
    )
    .with_lease(Some(Duration::from_millis(200)))
    .with_batch_size(10);
    let handled = tokio::time::timeout(PATIENCE, runner.catch_up())
        .await
        .expect("the runner does not go round in circles")
        .unwrap();
    assert_eq!(handled, 4);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
}
