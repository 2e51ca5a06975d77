//! Appending: expected versions, atomic batches, idempotent event ids.

use es_core::{AppendError, ExpectedVersion, NewEvent, RawEvent, StreamId, Version};
use serde_json::json;

use super::{account, deposits, read_stream, versions};
use crate::fixture::AccountEvent;
use es_core::Store;

/// `NoStream` on a new stream succeeds and numbers events from 1.
pub async fn append_to_new_stream<S: Store>(store: S) {
    let stream = account("new");
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, deposits(3))
        .await
        .expect("append to a new stream");
    assert_eq!(committed.version, Version::new(3));
    assert!(!committed.duplicate);
    assert_eq!(versions(&committed.events), [1, 2, 3]);
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(3)
    );
    assert_eq!(read_stream(&store, &stream).await, committed.events);
}

/// `Exact(n)` on a stream at `n` succeeds and continues the numbering.
pub async fn append_with_exact_version<S: Store>(store: S) {
    let stream = account("exact");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(2))
        .await
        .unwrap();
    let committed = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            deposits(2),
        )
        .await
        .expect("append at the exact version");
    assert_eq!(versions(&committed.events), [3, 4]);
    // Exact(0) is NoStream.
    let other = account("exact-zero");
    store
        .append(
            &other,
            ExpectedVersion::Exact(Version::INITIAL),
            deposits(1),
        )
        .await
        .expect("Exact(0) on a new stream");
}

/// `Any` appends whatever the version is, to new and existing streams.
pub async fn append_with_any_version<S: Store>(store: S) {
    let stream = account("any");
    store
        .append(&stream, ExpectedVersion::Any, deposits(1))
        .await
        .unwrap();
    let committed = store
        .append(&stream, ExpectedVersion::Any, deposits(2))
        .await
        .unwrap();
    assert_eq!(versions(&committed.events), [2, 3]);
}

#[track_caller]
fn assert_conflict(
    result: Result<es_core::Committed<AccountEvent>, AppendError>,
    expected: ExpectedVersion,
    actual: u64,
) {
    match result {
        Err(AppendError::Conflict {
            expected: e,
            actual: a,
            ..
        }) => {
            assert_eq!(e, expected, "conflict reports the expected version");
            assert_eq!(
                a,
                Version::new(actual),
                "conflict reports the actual version"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// `NoStream` on an existing stream is a conflict that writes nothing.
pub async fn no_stream_conflicts_on_existing_stream<S: Store>(store: S) {
    let stream = account("exists");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    let result = store
        .append(&stream, ExpectedVersion::NoStream, deposits(1))
        .await;
    assert_conflict(result, ExpectedVersion::NoStream, 1);
    assert_eq!(read_stream(&store, &stream).await.len(), 1);
}

/// A stale `Exact` version is a typed conflict naming the stream, and writes nothing.
pub async fn stale_version_conflicts_and_writes_nothing<S: Store>(store: S) {
    let stream = account("stale");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(3))
        .await
        .unwrap();
    let expected = ExpectedVersion::Exact(Version::new(2));
    let result = store.append(&stream, expected, deposits(2)).await;
    match &result {
        Err(AppendError::Conflict { stream: s, .. }) => assert_eq!(s, &stream),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(result.as_ref().unwrap_err().is_conflict());
    assert!(
        result.unwrap_err().to_string().contains("account-stale"),
        "the message names the stream"
    );
    assert_eq!(versions(&read_stream(&store, &stream).await), [1, 2, 3]);
}

/// An `Exact` version beyond the stream's is a conflict too, also on a missing stream.
pub async fn version_ahead_conflicts<S: Store>(store: S) {
    let stream = account("ahead");
    let expected = ExpectedVersion::Exact(Version::new(5));
    let result = store.append(&stream, expected, deposits(1)).await;
    assert_conflict(result, expected, 0);
    assert!(read_stream(&store, &stream).await.is_empty());
    // Even a version no store can hold is just a conflict.
    let beyond = ExpectedVersion::Exact(Version::new(u64::MAX));
    let result = store.append(&stream, beyond, deposits(1)).await;
    assert_conflict(result, beyond, 0);
}

/// An empty batch writes nothing, but its expected version is still checked.
pub async fn empty_append_checks_version_and_writes_nothing<S: Store>(store: S) {
    let stream = account("empty");
    let committed = store
        .append::<AccountEvent>(&stream, ExpectedVersion::NoStream, Vec::new())
        .await
        .expect("empty append to a new stream");
    assert_eq!(committed.version, Version::INITIAL);
    assert!(committed.events.is_empty());
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(2))
        .await
        .unwrap();
    let committed = store
        .append::<AccountEvent>(&stream, ExpectedVersion::Exact(Version::new(2)), Vec::new())
        .await
        .unwrap();
    assert_eq!(committed.version, Version::new(2));
    let result = store
        .append::<AccountEvent>(&stream, ExpectedVersion::Exact(Version::new(1)), Vec::new())
        .await;
    assert_conflict(result, ExpectedVersion::Exact(Version::new(1)), 2);
    assert_eq!(read_stream(&store, &stream).await.len(), 2);
    assert_eq!(
        super::read_log::<S, AccountEvent>(&store, es_core::Position::START, Default::default(), 2)
            .await
            .len(),
        2
    );
}

/// A batch is stored whole with consecutive versions, or not at all.
pub async fn batch_is_atomic_and_consecutive<S: Store>(store: S) {
    let stream = account("batch");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(2))
        .await
        .unwrap();
    // A batch whose last event clashes (its id is stored elsewhere) must leave no trace.
    let elsewhere = account("batch-other");
    let taken = store
        .append(&elsewhere, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap()
        .events[0]
        .event_id;
    let mut batch = deposits(3);
    batch.push(NewEvent::new(AccountEvent::Deposited { amount: 9 }).with_id(taken));
    let result = store
        .append(&stream, ExpectedVersion::Exact(Version::new(2)), batch)
        .await;
    assert!(
        matches!(result, Err(AppendError::DuplicateEventId { .. })),
        "got {result:?}"
    );
    assert_eq!(versions(&read_stream(&store, &stream).await), [1, 2]);

    let committed = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            deposits(4),
        )
        .await
        .unwrap();
    assert_eq!(versions(&committed.events), [3, 4, 5, 6]);
    let positions: Vec<_> = committed.events.iter().map(|e| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions grow within a batch: {positions:?}"
    );
}

/// A thousand events go in one append.
pub async fn large_batch_in_one_append<S: Store>(store: S) {
    let stream = account("large");
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, deposits(1000))
        .await
        .unwrap();
    assert_eq!(committed.version, Version::new(1000));
    let read = read_stream(&store, &stream).await;
    assert_eq!(read.len(), 1000);
    assert_eq!(versions(&read), (1..=1000).collect::<Vec<_>>());
    assert_eq!(read, committed.events);
}

/// Appending events whose ids are all stored, in this stream, stores nothing more and
/// returns the stored events, whatever the expected version.
pub async fn reappending_stored_ids_is_idempotent<S: Store>(store: S) {
    let stream = account("idem");
    let batch = deposits(2);
    let first = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(2)),
            deposits(1),
        )
        .await
        .unwrap();
    // The writer lost the reply and retries with the same ids and its old expectation.
    let again = store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .expect("a repeated append succeeds");
    assert!(again.duplicate, "the repeat is reported as a duplicate");
    assert_eq!(
        again.events, first.events,
        "the repeat returns the stored events"
    );
    assert_eq!(again.version, Version::new(2));
    assert_eq!(read_stream(&store, &stream).await.len(), 3);
}

/// A batch with some ids stored and some new is rejected and writes nothing.
pub async fn partly_stored_batch_is_rejected<S: Store>(store: S) {
    let stream = account("partly");
    let first = store
        .append(&stream, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    let stored_id = first.events[0].event_id;
    let batch = vec![
        NewEvent::new(AccountEvent::Deposited { amount: 1 }).with_id(stored_id),
        NewEvent::new(AccountEvent::Deposited { amount: 2 }),
    ];
    let result = store.append(&stream, ExpectedVersion::Any, batch).await;
    match result {
        Err(AppendError::DuplicateEventId { event_id, .. }) => assert_eq!(event_id, stored_id),
        other => panic!("expected a duplicate id error, got {other:?}"),
    }
    assert_eq!(read_stream(&store, &stream).await.len(), 1);
}

/// An id stored in another stream is rejected, naming that stream.
pub async fn id_stored_in_another_stream_is_rejected<S: Store>(store: S) {
    let a = account("a");
    let b = account("b");
    let first = store
        .append(&a, ExpectedVersion::NoStream, deposits(1))
        .await
        .unwrap();
    let id = first.events[0].event_id;
    let result = store
        .append(
            &b,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(AccountEvent::Deposited { amount: 1 }).with_id(id)],
        )
        .await;
    match result {
        Err(AppendError::DuplicateEventId {
            event_id,
            existing_stream,
            existing_version,
            ..
        }) => {
            assert_eq!(event_id, id);
            assert_eq!(existing_stream, a);
            assert_eq!(existing_version, Version::new(1));
        }
        other => panic!("expected a duplicate id error, got {other:?}"),
    }
    assert!(read_stream(&store, &b).await.is_empty());
}

/// A batch that holds one event id twice is refused whole with an error naming the id,
/// whether the id is new or already stored, and nothing is written.
pub async fn id_twice_in_one_batch_is_rejected<S: Store>(store: S) {
    let stream = account("twice");
    let event = NewEvent::new(AccountEvent::Deposited { amount: 1 });
    let twice = vec![event.clone(), event.clone()];
    match store
        .append(&stream, ExpectedVersion::NoStream, twice.clone())
        .await
    {
        Err(AppendError::DuplicateInBatch {
            event_id,
            stream: named,
        }) => assert_eq!((event_id, &named), (event.event_id, &stream)),
        other => panic!("expected the repeated id to be named, got {other:?}"),
    }
    assert!(read_stream(&store, &stream).await.is_empty());

    // Stored once, the id is still not a repeat of the two-event batch.
    store
        .append(&stream, ExpectedVersion::NoStream, vec![event.clone()])
        .await
        .unwrap();
    let result = store.append(&stream, ExpectedVersion::Any, twice).await;
    assert!(
        matches!(result, Err(AppendError::DuplicateInBatch { event_id, .. }) if event_id == event.event_id),
        "got {result:?}"
    );
    assert_eq!(read_stream(&store, &stream).await.len(), 1);
}

/// An event that cannot be encoded is refused with an error naming the stream and type, and
/// nothing of its batch is stored.
pub async fn unencodable_event_is_refused_and_writes_nothing<S: Store>(store: S) {
    let stream = StreamId::new("tally", "1").unwrap();
    let bad = crate::fixture::Tallied {
        counts: [((1, 2), 3)].into(),
    };
    let good = crate::fixture::Tallied {
        counts: Default::default(),
    };
    let result = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(good), NewEvent::new(bad)],
        )
        .await;
    match result {
        Err(AppendError::Encode {
            stream: s,
            event_type,
            ..
        }) => {
            assert_eq!(s, stream);
            assert_eq!(event_type, "Tallied");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL
    );
}

/// An id stored as another type in another category is reported as taken, naming where.
pub async fn id_of_another_type_elsewhere_is_rejected<S: Store>(store: S) {
    let note = StreamId::new("note", "1").unwrap();
    let stored = store
        .append(
            &note,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new(
                "NoteTaken",
                1,
                json!({ "text": "hi" }),
            ))],
        )
        .await
        .unwrap();
    let id = stored.events[0].event_id;
    let result = store
        .append(
            &account("typed"),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(AccountEvent::Deposited { amount: 1 }).with_id(id)],
        )
        .await;
    match result {
        Err(AppendError::DuplicateEventId {
            event_id,
            existing_stream,
            ..
        }) => {
            assert_eq!(event_id, id);
            assert_eq!(existing_stream, note);
        }
        other => panic!("expected a duplicate id error, got {other:?}"),
    }
}
