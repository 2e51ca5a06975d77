//! Subscriptions: history, then live, every event exactly once.

use std::collections::HashSet;
use std::time::Duration;

use es_core::{
    EventEnvelope, EventFilter, ExpectedVersion, NewEvent, Position, RawEvent, StreamId,
};
use futures_util::StreamExt as _;
use serde_json::json;
use uuid::Uuid;

use super::{account, deposits};
use crate::fixture::AccountEvent;
use es_core::Store;

/// How long a subscriber may go without an expected event before the test calls it lost.
/// Generous: this bounds a hang, it does not measure speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Time for a spawned subscriber to reach the end of the log and start waiting there.
const SETTLE: Duration = Duration::from_millis(100);

/// Takes the next `n` items of a subscription, failing if one does not come.
pub(crate) async fn take<S>(subscription: &mut S, n: usize) -> Vec<EventEnvelope<AccountEvent>>
where
    S: futures_util::Stream<Item = Result<EventEnvelope<AccountEvent>, es_core::ReadError>> + Unpin,
{
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        match tokio::time::timeout(PATIENCE, subscription.next()).await {
            Ok(Some(Ok(event))) => got.push(event),
            Ok(Some(Err(error))) => panic!("subscription failed: {error:?}"),
            Ok(None) => panic!("subscription ended after {} of {n} events", got.len()),
            Err(_) => panic!(
                "subscriber received only {} of {n} events within {PATIENCE:?}",
                got.len()
            ),
        }
    }
    got
}

/// Asserts nothing more arrives for a moment: a subscriber must not invent or repeat events.
pub(crate) async fn assert_quiet<S>(subscription: &mut S)
where
    S: futures_util::Stream<Item = Result<EventEnvelope<AccountEvent>, es_core::ReadError>> + Unpin,
{
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await {
        panic!("subscriber received an extra item: {extra:?}");
    }
}

/// A subscription first delivers the history, then, while it waits, events appended later:
/// the append itself must wake it.
pub async fn subscriber_sees_history_then_live_events<S: Store>(store: S) {
    let stream = account("sub");
    let history = store
        .append(&stream, ExpectedVersion::NoStream, deposits(3))
        .await
        .unwrap();
    let mut subscription =
        Box::pin(store.subscribe::<AccountEvent>(Position::START, EventFilter::all()));
    let first = take(&mut subscription, 3).await;
    assert_eq!(first, history.events);

    // The subscriber is now at the end of the log; let it wait there before appending.
    let waiting = tokio::spawn(async move {
        let next = take(&mut subscription, 2).await;
        (next, subscription)
    });
    tokio::time::sleep(SETTLE).await;
    let live = store
        .append(
            &stream,
            ExpectedVersion::Exact(history.version),
            deposits(2),
        )
        .await
        .unwrap();
    let (next, mut subscription) = waiting.await.expect("subscriber task");
    assert_eq!(next, live.events);
    assert_quiet(&mut subscription).await;
}

/// While eight writers append (four to one stream, four to their own), a subscriber that
/// was already waiting receives every committed event exactly once, in increasing
/// positions, and nothing else.
pub async fn subscriber_sees_every_event_once_while_writers_run<S: Store>(store: S) {
    const WRITERS: usize = 8;
    const APPENDS: usize = 40;
    // The subscriber runs from before the first append until it has as many events as were
    // committed, a number known only when the writers are done.
    let (target_tx, mut target) = tokio::sync::watch::channel(None::<usize>);
    let subscriber = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut subscription =
                Box::pin(store.subscribe::<AccountEvent>(Position::START, EventFilter::all()));
            let mut received = Vec::new();
            loop {
                if let Some(total) = *target.borrow_and_update()
                    && received.len() >= total
                {
                    return (received, subscription);
                }
                tokio::select! {
                    item = tokio::time::timeout(PATIENCE, subscription.next()) => match item {
                        Ok(Some(Ok(event))) => received.push(event),
                        Ok(Some(Err(error))) => panic!("subscription failed: {error:?}"),
                        Ok(None) => panic!("subscription ended after {} events", received.len()),
                        Err(_) => panic!(
                            "subscriber received only {} events, then nothing for {PATIENCE:?}",
                            received.len()
                        ),
                    },
                    _ = target.changed() => {}
                }
            }
        })
    };
    tokio::time::sleep(SETTLE).await;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let stream = if writer % 2 == 0 {
                account("shared")
            } else {
                account(&format!("solo-{writer}"))
            };
            let mut ids = Vec::new();
            for n in 0..APPENDS {
                // Batches of 1 to 3 events, so batches interleave too. `Any` never fails
                // for a race: the store retries it.
                let batch = deposits((n % 3) as u64 + 1);
                let committed = store
                    .append(&stream, ExpectedVersion::Any, batch)
                    .await
                    .unwrap_or_else(|error| panic!("writer {writer}: {error:?}"));
                ids.extend(committed.events.iter().map(|e| e.event_id));
            }
            ids
        }));
    }
    let mut committed = HashSet::new();
    for writer in writers {
        committed.extend(writer.await.expect("writer task"));
    }
    target_tx.send_replace(Some(committed.len()));

    let (received, mut subscription) = subscriber.await.expect("subscriber task");
    let received_ids: Vec<Uuid> = received.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = received_ids.iter().copied().collect();
    assert_eq!(unique.len(), received_ids.len(), "no event delivered twice");
    assert_eq!(unique, committed, "every committed event delivered");
    assert!(
        received.windows(2).all(|w| w[0].position < w[1].position),
        "delivered in increasing positions"
    );
    assert_quiet(&mut subscription).await;
}

/// A subscription started after a position delivers only the events after it.
pub async fn subscriber_resumes_after_position<S: Store>(store: S) {
    let stream = account("resume");
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, deposits(5))
        .await
        .unwrap();
    let checkpoint = committed.events[2].position;
    let mut subscription =
        Box::pin(store.subscribe::<AccountEvent>(checkpoint, EventFilter::all()));
    let rest = take(&mut subscription, 2).await;
    assert_eq!(rest, committed.events[3..]);
    assert_quiet(&mut subscription).await;
}

/// A subscription with a filter delivers only the selected events, history and live.
pub async fn subscriber_filters<S: Store>(store: S) {
    let note = StreamId::new("note", "1").unwrap();
    let raw_note = || NewEvent::new(RawEvent::new("NoteTaken", 1, json!({})));
    store
        .append(&note, ExpectedVersion::Any, vec![raw_note()])
        .await
        .unwrap();
    let first = store
        .append(&account("filtered"), ExpectedVersion::Any, deposits(1))
        .await
        .unwrap();
    let mut subscription = Box::pin(store.subscribe::<AccountEvent>(
        Position::START,
        EventFilter::all().with_categories(["account"]),
    ));
    store
        .append(&note, ExpectedVersion::Any, vec![raw_note()])
        .await
        .unwrap();
    let second = store
        .append(&account("filtered"), ExpectedVersion::Any, deposits(1))
        .await
        .unwrap();
    let got = take(&mut subscription, 2).await;
    assert_eq!(got, [first.events, second.events].concat());
    assert_quiet(&mut subscription).await;
}
