//! A page read again after a failure joins the rows already handed over without a gap or a
//! repeat, wherever in a page and its chunks the failure falls; a failure that is not
//! retried reaches the reader after every row handed over before it. The failures are
//! raised by the server ([`super::faults`]).

use std::time::Duration;

use es_core::{
    EventStore as _, ExpectedVersion, LoadItem, NewEvent, RawEvent, Snapshot, SnapshotStore as _,
    StreamId, Version,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;

use super::{CHUNK, faults};
use crate::PgEventStore;
use crate::error::SERIALIZATION_RETRIES;

/// Retried: a serialization failure.
const RETRIED: &str = "40001";
/// Not retried: a statement the server refused.
const REFUSED: &str = "22023";
const PAGE: u32 = 256;

/// A store on a schema of its own, reading pages of [`PAGE`] rows.
async fn store() -> PgEventStore {
    // Named as es-testkit names its schemas (`es_test_{seconds}_{id}`), so that one a
    // failed run leaves is dropped by a later run once it is a day old.
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let schema = format!("es_test_{seconds}_{}", uuid::Uuid::now_v7().simple());
    let schema = &schema[..schema.len().min(63)];
    let pool = es_testkit::postgres::connect(schema, 2).await;
    let store = PgEventStore::builder(pool)
        .schema(schema)
        .expect("valid schema")
        .page_size(PAGE)
        .build();
    store.migrate().await.expect("migrate a fresh schema");
    store
}

async fn drop_schema(store: &PgEventStore) {
    let sql = format!("DROP SCHEMA \"{}\" CASCADE", store.schema());
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .expect("drop the test schema");
}

/// A stream of `events` events, the nth holding `n`; its id is the test's own, since the
/// planned failures are keyed by stream.
async fn stream(store: &PgEventStore, id: &str, events: u64) -> StreamId {
    let stream = StreamId::new("note", id).unwrap();
    let batch = (1..=events)
        .map(|n| NewEvent::new(RawEvent::new("Noted", 1, json!({ "n": n }))))
        .collect();
    store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    stream
}

/// Runs `test` with a deadline: a reader that repeated a page forever fails, not hangs.
async fn within_a_minute(test: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(60), test)
        .await
        .expect("the reads end");
}

/// Row counts of a page attempt to fail after: before the first chunk is full, at its
/// end, just after it, mid-way through the second, at the page's end.
fn plans() -> Vec<Vec<usize>> {
    vec![
        vec![1],
        vec![CHUNK - 1],
        vec![CHUNK],
        vec![CHUNK + 1],
        vec![200, 200],
        vec![PAGE as usize],
        // Ordered so that each is met on a page after the one the last was met on.
        vec![1, CHUNK + 1, 200, PAGE as usize - 1, PAGE as usize],
    ]
}

/// The versions a read of `stream` from `from` returns, each event's payload checked.
async fn read_from(store: &PgEventStore, stream: &StreamId, from: u64) -> Vec<u64> {
    let read: Vec<_> = store
        .read_stream::<RawEvent>(stream, Version::new(from))
        .try_collect()
        .await
        .unwrap();
    assert!(
        read.iter()
            .all(|e| e.event.payload == json!({ "n": e.version.get() })),
        "from {from}: each event's own payload"
    );
    read.iter().map(|e| e.version.get()).collect()
}

/// Asserts that every failure planned for `stream` was raised: a plan that never fired
/// would let a test pass without testing anything.
fn assert_all_met(store: &PgEventStore, stream: &StreamId, case: &str) {
    assert_eq!(
        faults::pending(store.schema(), stream),
        0,
        "{case}: every planned failure was met"
    );
}

fn planned(store: &PgEventStore, stream: &StreamId, rows: &[usize], code: &'static str) {
    let failures: Vec<_> = rows.iter().map(|&at| (at, code)).collect();
    faults::plan(store.schema(), stream, &failures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_read_again_resumes_after_the_last_row_handed_over() {
    let store = store().await;
    let stream = stream(&store, "resume-envelopes", 1_000).await;
    within_a_minute(async {
        for plan in plans() {
            for from in [1, CHUNK as u64 + 1, 300] {
                planned(&store, &stream, &plan, RETRIED);
                assert_eq!(
                    read_from(&store, &stream, from).await,
                    (from..=1_000).collect::<Vec<_>>(),
                    "failures after {plan:?} rows, from {from}"
                );
                assert_all_met(&store, &stream, &format!("{plan:?}"));
            }
        }
    })
    .await;
    drop_schema(&store).await;
}

/// The versions of a load's events, after its start (whose snapshot version it returns).
fn unpacked(items: Vec<LoadItem<RawEvent>>) -> (Option<u64>, Vec<u64>) {
    let mut items = items.into_iter();
    let Some(LoadItem::Start(start)) = items.next() else {
        panic!("a load starts with its start");
    };
    let versions = items
        .map(|item| match item {
            LoadItem::Event { version, event, .. } => {
                assert_eq!(
                    event.payload,
                    json!({ "n": version.get() }),
                    "its own payload"
                );
                version.get()
            }
            _ => panic!("a load has one start, then events"),
        })
        .collect();
    (start.snapshot.map(|s| s.version.get()), versions)
}

/// A load of `stream` after `after` under the failures of `plan` (retried), unpacked; every
/// planned failure must have fired.
async fn load_under(
    store: &PgEventStore,
    stream: &StreamId,
    plan: &[usize],
    after: u64,
    snapshot: bool,
) -> (Option<u64>, Vec<u64>) {
    planned(store, stream, plan, RETRIED);
    let items = store
        .load_events::<RawEvent>(stream, Version::new(after), snapshot)
        .try_collect()
        .await
        .unwrap();
    assert_all_met(store, stream, &format!("{plan:?}"));
    unpacked(items)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_read_again_hands_its_start_over_once() {
    let store = store().await;
    let stream = stream(&store, "resume-load", 1_000).await;
    within_a_minute(async {
        // A load's first page is its start row and a page of events.
        let mut plans = plans();
        plans.push(vec![PAGE as usize + 1]);
        for plan in &plans {
            assert_eq!(
                load_under(&store, &stream, plan, 37, false).await,
                (None, (38..=1_000).collect()),
                "after 37, failures after {plan:?} rows"
            );
        }
        store
            .save_snapshot(Snapshot {
                stream_id: stream.clone(),
                version: Version::new(300),
                schema_version: 1,
                state: json!(300),
                taken_at: chrono::Utc::now(),
            })
            .await
            .unwrap();
        for plan in &plans {
            assert_eq!(
                load_under(&store, &stream, plan, 0, true).await,
                (Some(300), (301..=1_000).collect()),
                "from the snapshot, failures after {plan:?} rows"
            );
        }
    })
    .await;
    drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ending_on_a_page_boundary_ends_after_a_failure_there() {
    let store = store().await;
    let stream = stream(&store, "resume-boundary", 2 * u64::from(PAGE)).await;
    within_a_minute(async {
        // From 1, both pages fail at their last row; from 257, the one page does.
        for (from, failures) in [(1, 2), (u64::from(PAGE) + 1, 1)] {
            planned(&store, &stream, &vec![PAGE as usize; failures], RETRIED);
            assert_eq!(
                read_from(&store, &stream, from).await,
                (from..=2 * u64::from(PAGE)).collect::<Vec<_>>(),
                "from {from}"
            );
            assert_all_met(&store, &stream, &format!("from {from}"));
        }
    })
    .await;
    drop_schema(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_not_retried_reaches_the_reader_after_the_rows_handed_over() {
    let store = store().await;
    let stream = stream(&store, "refused", 1_000).await;
    within_a_minute(async {
        // Mid-way through the second chunk: the first was handed over. At the page's end:
        // both chunks were, and the failure takes the page's spare slot.
        for (at, handed_over) in [(200, CHUNK as u64), (PAGE as usize, u64::from(PAGE))] {
            planned(&store, &stream, &[at], REFUSED);
            let items: Vec<_> = store
                .read_stream::<RawEvent>(&stream, Version::new(1))
                .collect()
                .await;
            let (read, failed): (Vec<_>, Vec<_>) = items.into_iter().partition(Result::is_ok);
            let versions: Vec<u64> = read.into_iter().map(|e| e.unwrap().version.get()).collect();
            assert_eq!(
                versions,
                (1..=handed_over).collect::<Vec<_>>(),
                "a failure after {at} rows"
            );
            assert_eq!(failed.len(), 1, "the read ends at its failure");
            let error = format!("{:?}", failed[0].as_ref().unwrap_err());
            assert!(
                error.contains(REFUSED) || error.contains("planned fault"),
                "the server's own failure, not a read cut short: {error}"
            );
        }
        // More serialization failures than a read rides out: the last one is told.
        let budget = usize::try_from(SERIALIZATION_RETRIES).unwrap() + 1;
        planned(&store, &stream, &vec![1; budget], RETRIED);
        let mut reads = Box::pin(store.read_stream::<RawEvent>(&stream, Version::new(1)));
        let first = reads.next().await.expect("an item");
        let error = format!("{:?}", first.expect_err("no event before the failure"));
        assert!(
            error.contains(RETRIED) || error.contains("planned fault"),
            "the last serialization failure is told: {error}"
        );
        drop(reads);
        assert_all_met(&store, &stream, "the retry budget");
        // The store reads on after its failures.
        assert_eq!(
            read_from(&store, &stream, 1).await,
            (1..=1_000).collect::<Vec<_>>()
        );
    })
    .await;
    drop_schema(&store).await;
}
