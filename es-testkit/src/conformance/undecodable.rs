//! Events a projection's type cannot decode: parked under the park policy while the runner
//! goes on, a typed stop under the others.

use std::time::Duration;

use es_core::{
    ErrorPolicy, ExpectedVersion, NewEvent, OnFailure, ProjectionRunner, RawEvent, ReadError,
    RunnerError,
};
use serde_json::json;

use super::{account, read_log};
use crate::fixture::AccountEvent;
use crate::projections::{CountingView, Faults, LedgerStorage};
use es_core::Store;

/// Three deposits into `account-poison`, the second of which no `AccountEvent` reader can
/// decode (its amount is text): the poison event an old deployment wrote.
async fn write_with_poison<S: Store>(store: &S) -> uuid::Uuid {
    let stream = account("poison");
    let deposit = |amount| NewEvent::new(AccountEvent::Deposited { amount });
    store
        .append(&stream, ExpectedVersion::NoStream, vec![deposit(1)])
        .await
        .unwrap();
    let poison = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new(
                "Deposited",
                2,
                json!({ "amount": "twelve" }),
            ))],
        )
        .await
        .unwrap();
    store
        .append(&stream, ExpectedVersion::Any, vec![deposit(3)])
        .await
        .unwrap();
    read_log::<S, RawEvent>(
        store,
        es_core::Position::START,
        es_core::EventFilter::all(),
        3,
    )
    .await;
    poison.events[0].event_id
}

fn runner<S: Store>(
    store: &S,
    ledger: &LedgerStorage,
    policy: ErrorPolicy,
) -> ProjectionRunner<CountingView, S> {
    ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", ledger.clone(), Faults::none()),
    )
    .with_lease(Some(Duration::from_millis(500)))
    .with_error_policy(policy)
}

/// Under the park policy an undecodable event is parked, named and explained, and the
/// runner handles the events after it; the checkpoint passes it, so a restart does not
/// meet it again; retrying it while it still cannot be decoded keeps it parked.
pub async fn undecodable_event_is_parked_and_the_runner_goes_on<S: Store>(store: S) {
    let poison = write_with_poison(&store).await;
    let ledger = LedgerStorage::default();
    let park = ErrorPolicy::retry(3, Duration::from_millis(1)).then(OnFailure::Park);
    let mut first = runner(&store, &ledger, park);
    assert_eq!(
        first.catch_up().await.unwrap(),
        3,
        "two handled, one parked"
    );
    assert_eq!(ledger.get().applied.len(), 2);
    let parked = first.parked().await.unwrap();
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].event_id, poison);
    assert_eq!(parked[0].version.get(), 2);
    assert_eq!(parked[0].event_type, "Deposited");
    assert!(
        parked[0].error.contains("cannot decode"),
        "{}",
        parked[0].error
    );
    assert!(
        !parked[0].error.contains("twelve"),
        "the payload's values stay out: {}",
        parked[0].error
    );
    let status = first.status().get();
    assert_eq!((status.parked, status.handled), (1, 3));

    // A second runner resumes after all three.
    let mut second = runner(&store, &ledger, park);
    assert_eq!(second.catch_up().await.unwrap(), 0);
    assert_eq!(second.retry_parked().await.unwrap(), 0);
    let parked = second.parked().await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].attempts, 2, "the retry is counted");
}

/// Under the stop policy the runner stops at the undecodable event with a read error
/// naming it, having committed the event before it.
pub async fn undecodable_event_stops_the_runner_under_the_stop_policy<S: Store>(store: S) {
    let poison = write_with_poison(&store).await;
    let ledger = LedgerStorage::default();
    let mut stopping = runner(&store, &ledger, ErrorPolicy::stop());
    match stopping.catch_up().await {
        Err(RunnerError::Read {
            source: ReadError::Decode {
                event_id, version, ..
            },
            ..
        }) => {
            assert_eq!(event_id, poison);
            assert_eq!(version.get(), 2);
        }
        other => panic!("expected a decode error naming the event, got {other:?}"),
    }
    assert_eq!(ledger.get().applied.len(), 1);
    assert!(stopping.parked().await.unwrap().is_empty());
}
