//! A transaction that commits after a later-numbered one must not be skipped: the classic
//! gap of identity-ordered event stores, provoked deterministically.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]
#![allow(
    clippy::disallowed_methods,
    reason = "the test holds transactions open on purpose, and never cancels them"
)]

mod common;

use std::time::Duration;

use es_core::{
    EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position, RawEvent, StreamId,
};
use es_postgres::PgEventStore;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use uuid::Uuid;

/// Inserts one event row as the store would, inside the caller's transaction.
async fn insert_raw(
    conn: &mut PgConnection,
    store: &PgEventStore,
    stream: &str,
    version: i64,
) -> Uuid {
    let id = Uuid::now_v7();
    let sql = format!(
        "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, payload, metadata) \
         VALUES ($1, $2, $3, 'Noted', 1, $4, '{{}}')",
        store.schema()
    );
    sqlx::query(AssertSqlSafe(sql))
        .bind(stream)
        .bind(version)
        .bind(id)
        .bind(json!({ "by": "held transaction" }))
        .execute(conn)
        .await
        .expect("raw insert");
    id
}

async fn append_one(store: &PgEventStore, stream: &str) -> Uuid {
    let stream = StreamId::parse(stream).unwrap();
    let committed = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new(
                "Noted",
                1,
                json!({ "by": "store" }),
            ))],
        )
        .await
        .expect("append");
    committed.events[0].event_id
}

async fn next_id<S>(subscription: &mut S) -> Uuid
where
    S: futures_util::Stream<Item = Result<es_core::EventEnvelope<RawEvent>, es_core::ReadError>>
        + Unpin,
{
    tokio::time::timeout(Duration::from_secs(30), subscription.next())
        .await
        .expect("an event arrives")
        .expect("the subscription goes on")
        .expect("the event decodes")
        .event_id
}

async fn assert_nothing_for<S>(subscription: &mut S, wait: Duration, why: &str)
where
    S: futures_util::Stream<Item = Result<es_core::EventEnvelope<RawEvent>, es_core::ReadError>>
        + Unpin,
{
    if let Ok(item) = tokio::time::timeout(wait, subscription.next()).await {
        panic!("{why}, but the subscriber got {item:?}");
    }
}

/// T1 takes the lower sequence number and commits last; T2 commits in between. The
/// subscriber must hold T2's event back until T1 is done, then deliver both, once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_commit_with_lower_sequence_is_delivered() {
    let store = common::fresh_store().await;
    let mut subscription =
        Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));

    // Opened directly, within the test's share of the connection budget.
    let _budget = common::hold_connections(1).await;
    let mut held = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    let mut t1 = held.begin().await.unwrap();
    let early = insert_raw(&mut t1, &store, "note-held", 1).await;

    let late = append_one(&store, "note-free").await;
    assert_nothing_for(
        &mut subscription,
        Duration::from_millis(500),
        "an older transaction is still open",
    )
    .await;
    let waiting = store.horizon().await.unwrap();
    assert!(
        waiting.events_waiting >= 1,
        "the horizon reports the held-back event: {waiting:?}"
    );
    // A one-off read of the log stops at the same horizon.
    let visible: Vec<_> = store
        .read_all::<RawEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    assert!(visible.is_empty(), "read_all skipped ahead: {visible:?}");

    t1.commit().await.unwrap();
    assert_eq!(
        next_id(&mut subscription).await,
        early,
        "the held event comes first"
    );
    assert_eq!(next_id(&mut subscription).await, late);
    assert_nothing_for(
        &mut subscription,
        Duration::from_millis(300),
        "every event was delivered",
    )
    .await;
    common::drop_schema(store).await;
}

/// T1 starts first (older transaction id) but inserts after T2 committed, so its row has
/// the *higher* sequence number. Ordering by transaction delivers it first, and a reader
/// that checkpointed after T2's event... never did, because T2's event waited for T1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_transaction_inserting_later_is_delivered_first() {
    let store = common::fresh_store().await;
    let mut subscription =
        Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));

    // Opened directly, within the test's share of the connection budget.
    let _budget = common::hold_connections(1).await;
    let mut held = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    let mut t1 = held.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *t1)
        .await
        .unwrap();

    let late = append_one(&store, "note-free").await;
    assert_nothing_for(
        &mut subscription,
        Duration::from_millis(300),
        "an older transaction is still open",
    )
    .await;
    let early = insert_raw(&mut t1, &store, "note-held", 1).await;
    t1.commit().await.unwrap();

    let first = next_id(&mut subscription).await;
    let second = next_id(&mut subscription).await;
    assert_eq!((first, second), (early, late));

    // The positions order the log the way it was delivered, and resuming after the first
    // delivers exactly the second.
    let log: Vec<_> = store
        .read_all::<RawEvent>(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        log.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [early, late]
    );
    assert!(log[0].position < log[1].position);
    let rest: Vec<_> = store
        .read_all::<RawEvent>(log[0].position, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].event_id, late);
    common::drop_schema(store).await;
}

/// An aborted transaction's event never appears, and does not hold anything back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_events_never_appear() {
    let store = common::fresh_store().await;
    let mut subscription =
        Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    // Opened directly, within the test's share of the connection budget.
    let _budget = common::hold_connections(1).await;
    let mut held = PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    let mut t1 = held.begin().await.unwrap();
    insert_raw(&mut t1, &store, "note-held", 1).await;
    let late = append_one(&store, "note-free").await;
    t1.rollback().await.unwrap();
    assert_eq!(next_id(&mut subscription).await, late);
    assert_nothing_for(
        &mut subscription,
        Duration::from_millis(300),
        "the rolled-back event must not appear",
    )
    .await;
    common::drop_schema(store).await;
}
