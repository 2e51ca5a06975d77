//! Reads stream rows: a long stream is read in order, and a reader dropped half-way gives
//! its connection back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use es_core::{EventStore as _, ExpectedVersion, NewEvent, RawEvent, StreamId, Version};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

async fn long_stream(store: &es_postgres::PgEventStore, events: u64) -> StreamId {
    let stream = StreamId::new("note", "long").unwrap();
    for chunk in 0..events / 500 {
        let batch = (0..500)
            .map(|n| NewEvent::new(RawEvent::new("Noted", 1, json!({ "n": chunk * 500 + n }))))
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_stream_reads_in_order_from_any_version() {
    let store = common::fresh_store().await;
    let stream = long_stream(&store, 5_000).await;
    let all: Vec<_> = store
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let versions: Vec<u64> = all.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, (1..=5_000).collect::<Vec<_>>());
    assert_eq!(all[4_321].event.payload, json!({ "n": 4_321 }));
    let tail: Vec<_> = store
        .read_stream::<RawEvent>(&stream, Version::new(4_990))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tail.len(), 11);
    assert_eq!(tail[0].version, Version::new(4_990));
    common::drop_schema(store).await;
}

/// With a pool of two connections, twenty readers that each stop after a few events must
/// not keep a connection each: the next query still gets one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_readers_give_their_connection_back() {
    let store = common::fresh_store().await;
    let stream = long_stream(&store, 5_000).await;
    let small = es_postgres::PgEventStore::builder(common::connect("es-test-small-pool", 2).await)
        .schema(store.schema().as_str())
        .unwrap()
        .build();
    for _ in 0..20 {
        let mut events = Box::pin(small.read_stream::<RawEvent>(&stream, Version::INITIAL));
        for _ in 0..3 {
            events.next().await.unwrap().unwrap();
        }
    }
    let version = tokio::time::timeout(Duration::from_secs(20), small.stream_version(&stream))
        .await
        .expect("a connection is free again")
        .unwrap();
    assert_eq!(version, Version::new(5_000));
    common::drop_schema(store).await;
}

/// An aggregate's load with pages of 4 events: the first page (with the snapshot and the
/// archive state) and the later ones join without a gap or a repeat, whatever the
/// snapshot's version, as the conformance case asks of every store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_reads_its_later_pages_after_the_first() {
    for page in [4, 1] {
        let store = common::fresh_store().await;
        let name = format!("es-test-load-pages-{}", uuid::Uuid::now_v7().simple());
        let paged = common::second_store(&store, &name, |b| b.page_size(page)).await;
        es_testkit::conformance::load_events_start_with_the_snapshot_then_the_events_after(paged)
            .await;
        common::drop_schema(store).await;
    }
}

/// A snapshot row the store cannot read (a state nested deeper than the JSON parser goes,
/// or a negative schema version written by hand) is left out of a load, which replays the
/// events instead: a snapshot is a cache, never the reason an aggregate stops loading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_snapshot_row_is_left_out_of_the_load() {
    use es_core::{Repository, SnapshotPolicy};
    use es_testkit::fixture::{Account, AccountCommand};
    let store = common::fresh_store().await;
    let repository = Repository::<Account, _>::new(store.clone());
    repository
        .execute(
            "deep",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    repository
        .execute("deep", AccountCommand::Deposit { amount: 7 })
        .await
        .unwrap();
    let replayed = Repository::<Account, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::Never)
        .load("deep")
        .await
        .unwrap();
    let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
    for (schema_version, state) in [(1, deep.as_str()), (-1, "{}")] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{}\".snapshots (stream_id, version, schema_version, state, taken_at) \
             VALUES ('account-deep', 1, $1, $2::jsonb, now()) \
             ON CONFLICT (stream_id) DO UPDATE SET schema_version = $1, state = $2::jsonb",
            store.schema().as_str()
        )))
        .bind(schema_version)
        .bind(state)
        .execute(store.pool())
        .await
        .unwrap();
        let loaded = repository.load("deep").await.unwrap_or_else(|error| {
            panic!("a load past an unreadable snapshot ({schema_version}) failed: {error:?}")
        });
        assert_eq!(
            loaded, replayed,
            "replayed past snapshot ({schema_version})"
        );
    }
    common::drop_schema(store).await;
}

/// Rows are handed from the query to the reader in chunks of 128: with pages of 256 (whole
/// chunks), 300 (two chunks and a part) and 2,000 rows, a 1,000-event stream reads and
/// loads every version once, in order, whatever version the read starts from or the
/// snapshot the load starts after (the start row of a load's first page takes a row of its
/// first chunk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_handed_over_in_chunks_join_without_a_gap_or_a_repeat() {
    use es_core::{LoadItem, Snapshot, SnapshotStore as _};
    let store = common::fresh_store().await;
    let stream = long_stream(&store, 1_000).await;
    // A reader that repeated a page would never end: the test fails instead of hanging.
    let reads = async {
        for page in [256, 300, 2_000] {
            let name = format!("es-test-chunks-{page}");
            let paged = common::second_store(&store, &name, |b| b.page_size(page)).await;
            for from in [1, 128, 129, 257, 300, 301, 999, 1_000] {
                let read: Vec<_> = paged
                    .read_stream::<RawEvent>(&stream, Version::new(from))
                    .try_collect()
                    .await
                    .unwrap();
                let versions: Vec<u64> = read.iter().map(|e| e.version.get()).collect();
                assert_eq!(
                    versions,
                    (from..=1_000).collect::<Vec<_>>(),
                    "page {page}, from {from}"
                );
                assert!(
                    read.iter()
                        .all(|e| e.event.payload == json!({ "n": e.version.get() - 1 })),
                    "page {page}, from {from}: each event's own payload"
                );
            }
            for snapshot_at in [
                None,
                Some(127),
                Some(128),
                Some(299),
                Some(300),
                Some(1_000),
            ] {
                if let Some(version) = snapshot_at {
                    // A newer snapshot replaces the one before; the loop's are ascending.
                    paged
                        .save_snapshot(Snapshot {
                            stream_id: stream.clone(),
                            version: Version::new(version),
                            schema_version: 1,
                            state: json!(version),
                            taken_at: chrono::Utc::now(),
                        })
                        .await
                        .unwrap();
                }
                let items: Vec<_> = paged
                    .load_events::<RawEvent>(&stream, Version::INITIAL, snapshot_at.is_some())
                    .try_collect()
                    .await
                    .unwrap();
                let mut items = items.into_iter();
                let Some(LoadItem::Start(start)) = items.next() else {
                    panic!("page {page}: a load starts with its start");
                };
                assert_eq!(
                    start.snapshot.map(|s| s.version.get()),
                    snapshot_at,
                    "page {page}"
                );
                let versions: Vec<u64> = items
                    .map(|item| match item {
                        LoadItem::Event { version, event, .. } => {
                            assert_eq!(event.payload, json!({ "n": version.get() - 1 }));
                            version.get()
                        }
                        other => panic!("page {page}: a second start {other:?}"),
                    })
                    .collect();
                let first = snapshot_at.unwrap_or(0) + 1;
                assert_eq!(
                    versions,
                    (first..=1_000).collect::<Vec<_>>(),
                    "page {page}, snapshot at {snapshot_at:?}"
                );
            }
            // The next page size starts without a snapshot again.
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM \"{}\".snapshots",
                store.schema()
            )))
            .execute(store.pool())
            .await
            .unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), reads)
        .await
        .expect("every read ends");
    common::drop_schema(store).await;
}
