//! Aggregate loads (`SnapshotStore::load_events`) of the memory store, which take a page of
//! events at a time under the store's lock: every event once and in order across pages,
//! after any version and from a snapshot, on plain and strict stores; an event of another
//! type decoded, not cloned; a decode failure ends the load with nothing after it; a strict
//! store reads every event back from its encoding; and a load ends where the stream stood.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

use es_core::{
    DomainEvent, EventStore as _, ExpectedVersion, LoadItem, NewEvent, RawEvent, Snapshot,
    SnapshotStore as _, StreamId, Version,
};
use es_memory::MemoryEventStore;
use es_testkit::fixture::AccountEvent;
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// More than two of the store's pages (512 events).
const LONG: u64 = 1_100;

fn deposit(amount: u64) -> NewEvent<AccountEvent> {
    NewEvent::new(AccountEvent::Deposited { amount })
}

fn raw(
    event_type: &'static str,
    schema_version: u32,
    payload: serde_json::Value,
) -> NewEvent<RawEvent> {
    NewEvent::new(RawEvent::new(event_type, schema_version, payload))
}

/// Appends `events` to `stream` at whatever version it stands.
async fn append<E: DomainEvent>(
    store: &MemoryEventStore,
    stream: &StreamId,
    events: Vec<NewEvent<E>>,
) {
    store
        .append(stream, ExpectedVersion::Any, events)
        .await
        .unwrap();
}

/// The load's snapshot version and its items (a version and event, or a failure), polled
/// on past a failure: a load ends at its first error, so nothing may follow one.
async fn load<E: DomainEvent>(
    store: &MemoryEventStore,
    stream: &StreamId,
    after: u64,
    snapshot: bool,
) -> (Option<u64>, Vec<Result<(u64, E), String>>) {
    let mut items = Box::pin(store.load_events::<E>(stream, Version::new(after), snapshot));
    let Some(Ok(LoadItem::Start(start))) = items.next().await else {
        panic!("a load starts with its start");
    };
    let mut read = Vec::new();
    while let Some(item) = items.next().await {
        read.push(match item {
            Ok(LoadItem::Event { version, event, .. }) => Ok((version.get(), event)),
            Ok(_) => panic!("a load has one start"),
            Err(error) => Err(error.to_string()),
        });
    }
    assert!(items.next().await.is_none(), "an ended load stays ended");
    (start.snapshot.map(|s| s.version.get()), read)
}

#[tokio::test]
async fn a_long_load_reads_every_event_once_in_order_across_pages() {
    for store in [MemoryEventStore::new(), MemoryEventStore::strict()] {
        let stream = StreamId::new("account", "long").unwrap();
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                (1..=LONG).map(deposit).collect(),
            )
            .await
            .unwrap();
        for after in [0, 1, 511, 512, 513, 1_023, 1_024, 1_099, LONG, 2_000] {
            let (_, items) = load::<AccountEvent>(&store, &stream, after, false).await;
            let items: Vec<_> = items.into_iter().map(Result::unwrap).collect();
            let versions: Vec<u64> = items.iter().map(|(version, _)| *version).collect();
            assert_eq!(
                versions,
                (after + 1..=LONG).collect::<Vec<_>>(),
                "after {after}"
            );
            assert!(
                items
                    .iter()
                    .all(|(version, event)| *event == AccountEvent::Deposited { amount: *version }),
                "after {after}: each event its own"
            );
        }
        store
            .save_snapshot(Snapshot {
                stream_id: stream.clone(),
                version: Version::new(600),
                schema_version: 1,
                state: json!({ "balance": 0 }),
                taken_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let (snapshot, items) = load::<AccountEvent>(&store, &stream, 0, true).await;
        assert_eq!(snapshot, Some(600));
        let versions: Vec<u64> = items.into_iter().map(|item| item.unwrap().0).collect();
        assert_eq!(
            versions,
            (601..=LONG).collect::<Vec<_>>(),
            "after the snapshot"
        );
    }
}

#[tokio::test]
async fn another_type_is_decoded_and_a_failure_ends_the_load() {
    for store in [MemoryEventStore::new(), MemoryEventStore::strict()] {
        // An event written as raw JSON between typed ones (an old type, which the fixture
        // upcasts to a deposit), then one this build cannot read
        // (an unknown schema version) in the second page, with events after it.
        let stream = StreamId::new("account", "mixed").unwrap();
        append(&store, &stream, (1..=3).map(deposit).collect()).await;
        append(
            &store,
            &stream,
            vec![raw("Credited", 1, json!({ "cents": 40 }))],
        )
        .await;
        append(&store, &stream, (5..=515).map(deposit).collect()).await;
        append(
            &store,
            &stream,
            vec![raw("Deposited", 9, json!({ "amount": 1 }))],
        )
        .await;
        append(&store, &stream, (517..=520).map(deposit).collect()).await;
        let (_, items) = load::<AccountEvent>(&store, &stream, 0, false).await;
        assert_eq!(items.len(), 516, "nothing after the failure at 516");
        assert_eq!(
            items[3],
            Ok((4, AccountEvent::Deposited { amount: 40 })),
            "decoded"
        );
        assert!(items[515].is_err(), "{:?}", items[515]);
        for (index, item) in items[..515].iter().enumerate() {
            assert_eq!(item.as_ref().unwrap().0, index as u64 + 1);
        }

        // A failure in the first page, typed events after it in the same page.
        let stream = StreamId::new("account", "early").unwrap();
        append(&store, &stream, vec![deposit(1)]).await;
        append(
            &store,
            &stream,
            vec![raw("Deposited", 9, json!({ "amount": 1 }))],
        )
        .await;
        append(&store, &stream, (3..=5).map(deposit).collect()).await;
        let (_, items) = load::<AccountEvent>(&store, &stream, 0, false).await;
        assert_eq!(items.len(), 2, "nothing after the failure at 2: {items:?}");
        assert!(items[1].is_err());
    }
}

/// An event whose encoding leaves out a field: a plain store hands back the event it was
/// given, a strict one what its encoding holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, es_core::DomainEvent)]
struct Noted {
    text: String,
    #[serde(skip)]
    length: usize,
}

#[tokio::test]
async fn a_strict_store_loads_every_event_from_its_encoding() {
    let stream = StreamId::new("note", "n").unwrap();
    for (store, length) in [
        (MemoryEventStore::new(), 2),
        (MemoryEventStore::strict(), 0),
    ] {
        let notes = (0..600)
            .map(|_| {
                NewEvent::new(Noted {
                    text: "hi".into(),
                    length: 2,
                })
            })
            .collect();
        append(&store, &stream, notes).await;
        let (_, items) = load::<Noted>(&store, &stream, 0, false).await;
        assert_eq!(items.len(), 600);
        assert!(
            items
                .iter()
                .all(|item| item.as_ref().unwrap().1.length == length),
            "every event as the store {} keeps it",
            if length == 0 { "strict" } else { "plain" }
        );
    }
}

#[tokio::test]
async fn a_load_ends_where_the_stream_stood() {
    let store = MemoryEventStore::new();
    for (id, before) in [("empty", 0), ("short", 3)] {
        let stream = StreamId::new("account", id).unwrap();
        if before > 0 {
            store
                .append(
                    &stream,
                    ExpectedVersion::NoStream,
                    (1..=before).map(deposit).collect(),
                )
                .await
                .unwrap();
        }
        let mut items =
            Box::pin(store.load_events::<AccountEvent>(&stream, Version::INITIAL, false));
        assert!(matches!(items.next().await, Some(Ok(LoadItem::Start(_)))));
        append(&store, &stream, vec![deposit(99)]).await;
        let mut read = 0;
        while let Some(item) = items.next().await {
            item.unwrap();
            read += 1;
        }
        assert_eq!(read, before, "{id}: the events stored when the load began");
    }
}
