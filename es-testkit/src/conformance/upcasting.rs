//! Schema evolution: events stored by older versions of their type are read as today's
//! events on every read path, and never rewritten.

use std::collections::BTreeMap;
use std::time::Duration;

use es_core::{
    DecodeError, EventEnvelope, EventFilter, ExpectedVersion, LoadError, NewEvent, Position,
    ProjectionRunner, RawEvent, ReadError, Repository, StreamId, Version,
};
use futures_util::TryStreamExt as _;
use serde_json::json;

use super::subscription::{assert_quiet, take};
use super::{account, read_log, read_stream};
use crate::fixture::{Account, AccountEvent};
use crate::projections::{Faults, LedgerStorage, LedgerView};
use es_core::Store;

/// Appends events as an older build of the application wrote them.
async fn append_raw<S: Store>(
    store: &S,
    stream: &StreamId,
    events: impl IntoIterator<Item = (&'static str, u32, serde_json::Value)>,
) -> Vec<EventEnvelope<RawEvent>> {
    let events = events
        .into_iter()
        .map(|(event_type, version, payload)| {
            NewEvent::new(RawEvent::new(event_type, version, payload))
        })
        .collect();
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap()
        .events
}

/// Two accounts written over the fixture's history: every shape `Opened` and `Deposited`
/// ever had, next to today's events. Returns them with what they read as today.
async fn legacy_accounts<S: Store>(store: &S) -> (Vec<EventEnvelope<RawEvent>>, Vec<AccountEvent>) {
    let mut stored = append_raw(
        store,
        &account("legacy-1"),
        [
            ("Opened", 1, json!({ "name": "ada" })),
            ("Credited", 1, json!({ "cents": 5 })),
            ("Deposited", 2, json!({ "amount": 7 })),
            ("Withdrawn", 1, json!({ "amount": 2 })),
        ],
    )
    .await;
    stored.extend(
        append_raw(
            store,
            &account("legacy-2"),
            [
                ("Opened", 2, json!({ "holder": "bob" })),
                ("Credited", 1, json!({ "cents": 10 })),
            ],
        )
        .await,
    );
    let today = vec![
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited { amount: 5 },
        AccountEvent::Deposited { amount: 7 },
        AccountEvent::Withdrawn { amount: 2 },
        AccountEvent::Opened {
            owner: "bob".into(),
        },
        AccountEvent::Deposited { amount: 10 },
    ];
    (stored, today)
}

/// Stream reads, aggregate loads, the global log (filtered by category and by event type,
/// which counts the old names), lookups by id, subscriptions and projections all see old
/// events as today's; the stored events keep their old names, versions and payloads.
pub async fn old_event_versions_upcast_on_every_read_path<S: Store>(store: S) {
    let (stored, today) = legacy_accounts(&store).await;
    let expected: Vec<EventEnvelope<AccountEvent>> = stored
        .iter()
        .zip(&today)
        .map(|(raw, event)| raw.clone().map(|_| event.clone()))
        .collect();

    let streams = [
        read_stream(&store, &account("legacy-1")).await,
        read_stream(&store, &account("legacy-2")).await,
    ]
    .concat();
    assert_eq!(streams, expected, "stream reads");

    let repository = Repository::<Account, _>::new(store.clone());
    let ada = repository.load("legacy-1").await.unwrap();
    assert_eq!(ada.state.owner.as_deref(), Some("ada"));
    assert_eq!((ada.state.balance, ada.version), (10, Version::new(4)));
    let bob = repository.load("legacy-2").await.unwrap();
    assert_eq!(
        (bob.state.owner.as_deref(), bob.state.balance),
        (Some("bob"), 10)
    );

    for filter in [
        EventFilter::all(),
        EventFilter::for_aggregate::<Account>(),
        EventFilter::for_event::<AccountEvent>(),
    ] {
        let log = read_log::<S, AccountEvent>(&store, Position::START, filter.clone(), 6).await;
        assert_eq!(log, expected, "the global log with {filter:?}");
    }
    let deposits = read_log::<S, AccountEvent>(
        &store,
        Position::START,
        EventFilter::all().with_event_types(["Deposited", "Credited"]),
        3,
    )
    .await;
    assert_eq!(
        deposits.iter().map(|e| &e.event).collect::<Vec<_>>(),
        [&today[1], &today[2], &today[5]]
    );

    let credited = store
        .find_event::<AccountEvent>(stored[1].event_id)
        .await
        .unwrap();
    assert_eq!(credited.as_ref(), Some(&expected[1]), "lookup by id");

    let mut subscription = Box::pin(
        store.subscribe::<AccountEvent>(Position::START, EventFilter::for_event::<AccountEvent>()),
    );
    assert_eq!(take(&mut subscription, 6).await, expected, "subscriptions");
    assert_quiet(&mut subscription).await;

    let storage = LedgerStorage::default();
    let mut runner = ProjectionRunner::new(
        store.clone(),
        LedgerView::new("legacy-ledger", storage.clone(), Faults::none()),
    )
    .with_lease(Some(Duration::from_secs(5)));
    assert_eq!(runner.catch_up().await.unwrap(), 6);
    assert_eq!(
        storage.get().balances,
        BTreeMap::from([("legacy-1".to_owned(), 10), ("legacy-2".to_owned(), 10)]),
        "projections"
    );

    // Read back raw, the events are exactly as stored: upcasting rewrites nothing.
    let raw: Vec<EventEnvelope<RawEvent>> = store
        .read_stream::<RawEvent>(&account("legacy-1"), Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw, stored[..4]);
    assert_eq!(
        (
            raw[1].event.event_type.as_str(),
            raw[1].event.schema_version
        ),
        ("Credited", 1)
    );
    assert_eq!(raw[1].event.payload, json!({ "cents": 5 }));
}

/// A stored version with no path to today's is a typed error naming the stream, the
/// version in it, the event type and the schema version as stored (an old alias, not the
/// name it would upcast to), on reads and loads alike; the events before it still read.
pub async fn stored_version_without_a_path_is_a_typed_error<S: Store>(store: S) {
    let stream = account("future");
    append_raw(
        &store,
        &stream,
        [
            ("Opened", 3, json!({ "owner": "ada" })),
            ("Deposited", 9, json!({ "amount": 1 })),
        ],
    )
    .await;
    let mut events = Box::pin(store.read_stream::<AccountEvent>(&stream, Version::INITIAL));
    let first = events.try_next().await.unwrap().unwrap();
    assert_eq!(
        first.event,
        AccountEvent::Opened {
            owner: "ada".into()
        }
    );
    let check = |error: &ReadError| match error {
        ReadError::Decode {
            stream: named,
            version,
            event_type,
            schema_version,
            source:
                DecodeError::UnsupportedVersion {
                    version: stored,
                    supported,
                    ..
                },
            ..
        } => {
            assert_eq!(named, &stream);
            assert_eq!(*version, Version::new(2));
            assert_eq!((event_type.as_str(), *schema_version), ("Deposited", 9));
            assert_eq!((*stored, *supported), (9, 2));
            let message = error.to_string();
            assert!(
                message.contains("account-future")
                    && message.contains("`Deposited` (schema version 9)"),
                "the message names stream, type and stored version: {message}"
            );
        }
        other => panic!("expected an unsupported version, got {other:?}"),
    };
    match events.try_next().await {
        Err(error) => check(&error),
        other => panic!("reading version 9 of `Deposited`: {other:?}"),
    }
    match Repository::<Account, _>::new(store.clone())
        .load("future")
        .await
    {
        Err(LoadError::Read { source, .. }) => check(&source),
        other => panic!("loading past version 9 of `Deposited`: {other:?}"),
    }

    // Stored under its old name, the event is reported under that name and the stored
    // version, though decoding got as far as today's name.
    let aliased = account("future-alias");
    append_raw(&store, &aliased, [("Credited", 7, json!({ "cents": 1 }))]).await;
    let error = store
        .read_stream::<AccountEvent>(&aliased, Version::INITIAL)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    match &error {
        ReadError::Decode {
            event_type,
            schema_version,
            source: DecodeError::UnsupportedVersion { .. },
            ..
        } => assert_eq!((event_type.as_str(), *schema_version), ("Credited", 7)),
        other => panic!("expected an unsupported version, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("`Credited` (schema version 7)") && !message.contains("Deposited"),
        "the message names the stored type and version: {message}"
    );
}
