//! Concurrent writers: nothing lost, nothing duplicated, no false conflicts.

use std::collections::HashSet;

use es_core::{AppendError, EventFilter, ExpectedVersion, NewEvent, Position};

use super::{account, read_log, read_stream, versions};
use crate::fixture::AccountEvent;
use es_core::Store;

/// Writers in the concurrency behaviours.
pub const WRITERS: u64 = 8;
/// Appends per writer in the concurrency behaviours.
pub const APPENDS_PER_WRITER: u64 = 50;

/// The deposit writer `writer` makes in its `n`th append: unique across all writers.
fn amount(writer: u64, n: u64) -> u64 {
    writer * 1_000_000 + n + 1
}

/// Eight writers append to one stream, each reading the version and appending with
/// `Exact`, retrying on conflicts. Every append lands exactly once, versions run 1..n
/// without gaps, and conflicts are the only failure.
pub async fn concurrent_writers_on_one_stream_lose_nothing<S: Store>(store: S) {
    let stream = account("contended");
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        let stream = stream.clone();
        writers.push(tokio::spawn(async move {
            let mut conflicts = 0u64;
            for n in 0..APPENDS_PER_WRITER {
                let event = NewEvent::new(AccountEvent::Deposited {
                    amount: amount(writer, n),
                });
                loop {
                    let current = store.stream_version(&stream).await.unwrap();
                    match store
                        .append(
                            &stream,
                            ExpectedVersion::Exact(current),
                            vec![event.clone()],
                        )
                        .await
                    {
                        Ok(committed) => {
                            assert_eq!(committed.version, current.next());
                            break;
                        }
                        Err(AppendError::Conflict { .. }) => {
                            conflicts += 1;
                            tokio::task::yield_now().await;
                        }
                        Err(other) => panic!("writer {writer}: unexpected error {other:?}"),
                    }
                }
            }
            conflicts
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }

    let events = read_stream(&store, &stream).await;
    let total = WRITERS * APPENDS_PER_WRITER;
    assert_eq!(
        versions(&events),
        (1..=total).collect::<Vec<_>>(),
        "versions are 1..{total} without gaps or repeats"
    );
    let amounts: HashSet<u64> = events
        .iter()
        .map(|e| match e.event {
            AccountEvent::Deposited { amount } => amount,
            ref other => panic!("unexpected event {other:?}"),
        })
        .collect();
    let expected: HashSet<u64> = (0..WRITERS)
        .flat_map(|w| (0..APPENDS_PER_WRITER).map(move |n| amount(w, n)))
        .collect();
    assert_eq!(amounts, expected, "every append is stored exactly once");
}

/// Eight writers on eight streams never see a conflict, and the global log holds every
/// event once.
pub async fn concurrent_writers_on_distinct_streams_never_conflict<S: Store>(store: S) {
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let stream = account(&format!("own-{writer}"));
            let mut expected = ExpectedVersion::NoStream;
            for n in 0..APPENDS_PER_WRITER {
                let event = NewEvent::new(AccountEvent::Deposited {
                    amount: amount(writer, n),
                });
                let committed = store
                    .append(&stream, expected, vec![event])
                    .await
                    .unwrap_or_else(|e| panic!("writer {writer} on its own stream: {e:?}"));
                expected = ExpectedVersion::Exact(committed.version);
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    for writer in 0..WRITERS {
        let events = read_stream(&store, &account(&format!("own-{writer}"))).await;
        assert_eq!(
            versions(&events),
            (1..=APPENDS_PER_WRITER).collect::<Vec<_>>()
        );
    }
    let total = (WRITERS * APPENDS_PER_WRITER) as usize;
    let log = read_log::<S, AccountEvent>(&store, Position::START, EventFilter::all(), total).await;
    assert_eq!(log.len() as u64, WRITERS * APPENDS_PER_WRITER);
    let ids: HashSet<_> = log.iter().map(|e| e.event_id).collect();
    assert_eq!(ids.len(), log.len(), "no event twice in the log");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
}

/// Sixteen writers append to one stream with [`ExpectedVersion::Any`]: none of them ever
/// sees a conflict (the store resolves the race), and every event is stored once.
pub async fn any_version_appends_never_conflict<S: Store>(store: S) {
    const ANY_WRITERS: u64 = 16;
    const APPENDS: u64 = 25;
    let stream = account("any-race");
    let mut writers = Vec::new();
    for writer in 0..ANY_WRITERS {
        let store = store.clone();
        let stream = stream.clone();
        writers.push(tokio::spawn(async move {
            for n in 0..APPENDS {
                let event = NewEvent::new(AccountEvent::Deposited {
                    amount: amount(writer, n),
                });
                store
                    .append(&stream, ExpectedVersion::Any, vec![event])
                    .await
                    .unwrap_or_else(|e| panic!("writer {writer}: `Any` failed: {e:?}"));
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer task");
    }
    let events = read_stream(&store, &stream).await;
    assert_eq!(
        versions(&events),
        (1..=ANY_WRITERS * APPENDS).collect::<Vec<_>>()
    );
}
