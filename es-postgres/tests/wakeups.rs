//! How subscribers learn of new events across processes: LISTEN/NOTIFY, polling as the
//! fallback, and recovery from lost connections without loss or duplication.

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

use std::collections::HashSet;
use std::time::Duration;

use es_core::{
    EventEnvelope, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position, RawEvent,
    ReadError, StreamId,
};
use es_postgres::PgEventStore;
use futures_util::StreamExt as _;
use serde_json::json;
use uuid::Uuid;

/// Far longer than any test waits: a subscriber with this poll interval only sees events
/// it is woken for.
const NEVER: Duration = Duration::from_secs(3600);

/// Generous bound on a delivery that should be immediate; it bounds a hang, it does not
/// measure speed.
const PATIENCE: Duration = Duration::from_secs(30);

async fn append(store: &PgEventStore, stream: &str, n: usize) -> Vec<Uuid> {
    let events = (0..n)
        .map(|i| NewEvent::new(RawEvent::new("Noted", 1, json!({ "n": i }))))
        .collect();
    store
        .append(
            &StreamId::parse(stream).unwrap(),
            ExpectedVersion::Any,
            events,
        )
        .await
        .expect("append")
        .events
        .iter()
        .map(|e| e.event_id)
        .collect()
}

async fn take<S>(subscription: &mut S, n: usize) -> Vec<Uuid>
where
    S: futures_util::Stream<Item = Result<EventEnvelope<RawEvent>, ReadError>> + Unpin,
{
    let mut ids = Vec::new();
    while ids.len() < n {
        let event = tokio::time::timeout(PATIENCE, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events arrived", ids.len()))
            .expect("a subscription never ends")
            .expect("no error");
        ids.push(event.event_id);
    }
    ids
}

/// Spawns a consumer that takes `n` events from `subscription`, and gives it time to
/// reach the end of the log and wait there, so what it gets next must come by a wake-up
/// or a poll, not by the first query.
async fn waiting_consumer<S>(
    mut subscription: S,
    n: usize,
) -> tokio::task::JoinHandle<(Vec<Uuid>, S)>
where
    S: futures_util::Stream<Item = Result<EventEnvelope<RawEvent>, ReadError>>
        + Unpin
        + Send
        + 'static,
{
    let consumer = tokio::spawn(async move {
        let ids = take(&mut subscription, n).await;
        (ids, subscription)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    consumer
}

/// A subscriber in "another process" (its own pool) that never polls, already waiting at
/// the end of the log, is woken by the writer's notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_wakes_another_process() {
    let writer = common::fresh_store().await;
    let reader =
        common::second_store(&writer, "es-test-listener", |b| b.poll_interval(NEVER)).await;
    let subscription = Box::pin(reader.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let consumer = waiting_consumer(subscription, 3).await;
    let written = append(&writer, "note-1", 3).await;
    let (received, subscription) = consumer.await.unwrap();
    assert_eq!(received, written);

    let consumer = waiting_consumer(subscription, 2).await;
    let written = append(&writer, "note-2", 2).await;
    assert_eq!(consumer.await.unwrap().0, written);
    common::drop_schema(writer).await;
}

/// An event committed behind an older transaction is held back until that transaction
/// ends, which wakes nobody (it appended nothing). A subscriber that has read what it could
/// must notice the held-back event and look again, not wait for the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_looks_again_for_events_held_back() {
    // No notifications, and the listener already connected (it wakes every subscriber
    // once when it connects): a wake-up arriving by chance would hide the defect.
    let store = common::fresh_store_with(|b| b.poll_interval(NEVER).notify(false)).await;
    let _listening = store.subscribe::<RawEvent>(Position::START, EventFilter::all());
    tokio::time::timeout(PATIENCE, async {
        loop {
            let listening: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity \
                 WHERE query LIKE 'LISTEN%' AND state = 'idle')",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            if listening {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the store listens for notifications");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = append(&store, "note-1", 1).await;
    // An older transaction, open across the next append's commit.
    let mut older = store.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    let behind = append(&store, "note-2", 1).await;

    let mut subscription =
        Box::pin(store.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let consumer = tokio::spawn(async move {
        let _ = first_tx.send(take(&mut subscription, 1).await);
        // Reads what is visible (nothing), then waits while the older transaction runs.
        take(&mut subscription, 1).await
    });
    assert_eq!(first.await.unwrap(), before);
    tokio::time::sleep(Duration::from_millis(100)).await;
    older.commit().await.unwrap();
    assert_eq!(
        consumer.await.unwrap(),
        behind,
        "delivered once the older transaction ended, without a wake-up or a poll"
    );
    common::drop_schema(store).await;
}

/// With notifications off, a subscriber of another process that is already waiting still
/// gets everything, by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_covers_missing_notifications() {
    let writer = common::fresh_store_with(|b| b.notify(false)).await;
    let reader = common::second_store(&writer, "es-test-poller", |b| {
        b.poll_interval(Duration::from_millis(50))
    })
    .await;
    let subscription = Box::pin(reader.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let consumer = waiting_consumer(subscription, 4).await;
    let written = append(&writer, "note-1", 4).await;
    assert_eq!(consumer.await.unwrap().0, written);
    common::drop_schema(writer).await;
}

/// A listener keeps its connection for good, so it must not take one from the pool: on a
/// pool of one connection, a store can still subscribe and append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_leaves_a_one_connection_pool_usable() {
    let store = common::fresh_store().await;
    let tiny = es_postgres::PgEventStore::builder(common::connect("es-test-tiny-pool", 1).await)
        .schema(store.schema().as_str())
        .unwrap()
        .build();
    let subscription = Box::pin(tiny.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let consumer = waiting_consumer(subscription, 3).await;
    let written = tokio::time::timeout(PATIENCE, append(&tiny, "note-1", 3))
        .await
        .expect("the pool's one connection is free");
    assert_eq!(consumer.await.unwrap().0, written);
    common::drop_schema(store).await;
}

/// Killing every connection of a subscriber's process (its pool and its listener, with
/// `pg_terminate_backend`) while events are written: it reconnects and resumes where it
/// was, delivering every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_survives_terminated_connections() {
    let writer = common::fresh_store().await;
    let name = format!("es-test-kill-{}", Uuid::now_v7().simple());
    let reader = common::second_store(&writer, &name, |b| {
        b.poll_interval(Duration::from_millis(200)).page_size(7)
    })
    .await;
    let mut subscription =
        Box::pin(reader.subscribe::<RawEvent>(Position::START, EventFilter::all()));

    let mut written = append(&writer, "note-before", 20).await;
    let mut received = take(&mut subscription, 10).await;

    let killer = common::connect("es-test-killer", 1).await;
    let mut kills = 0;
    for round in 0..3 {
        // The reader reconnects in the background; kill it once it is back.
        for _ in 0..500 {
            let connections: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            )
            .bind(&name)
            .fetch_one(&killer)
            .await
            .unwrap();
            if connections > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&name)
        .fetch_all(&killer)
        .await
        .unwrap();
        kills += killed.len();
        written.extend(append(&writer, &format!("note-during-{round}"), 15).await);
        received.extend(take(&mut subscription, 10).await);
    }
    assert!(
        kills >= 3,
        "the reader's connections were killed in every round"
    );
    written.extend(append(&writer, "note-after", 5).await);
    let rest = written.len() - received.len();
    received.extend(take(&mut subscription, rest).await);

    let unique: HashSet<&Uuid> = received.iter().collect();
    assert_eq!(unique.len(), received.len(), "no event delivered twice");
    assert_eq!(received, written, "every event, in order");
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(500), subscription.next()).await {
        panic!("an extra event arrived: {extra:?}");
    }
    common::drop_schema(writer).await;
}

/// With no server at the address, the test helpers fail loudly and say how to start one.
#[tokio::test]
#[should_panic(expected = "No PostgreSQL server answers")]
async fn missing_server_fails_with_instructions() {
    common::connect_to(
        "postgres://postgres@127.0.0.1:1/postgres",
        "es-test-missing",
        1,
    )
    .await;
}

/// The store's own connect error names the server and says what to do.
#[tokio::test]
async fn connect_error_says_what_to_do() {
    let error = PgEventStore::connect("postgres://app:secret@127.0.0.1:1/postgres")
        .await
        .expect_err("nothing listens on port 1");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(message.contains("is the server running"), "{message}");
    assert!(
        !message.contains("secret"),
        "the password stays out: {message}"
    );
}

/// A schema name of PostgreSQL's full 63 bytes still gets a notification channel the
/// server accepts (`es_events_` + the name would be cut short by LISTEN and refused by
/// NOTIFY): a subscriber in another process that never polls is woken by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_wakes_another_process_on_a_long_schema_name() {
    let name = format!("es_test_{}", "l".repeat(55));
    assert_eq!(name.len(), 63);
    let pool = common::connect("es-test-long-schema", 4).await;
    let writer = PgEventStore::builder(pool).schema(&name).unwrap().build();
    // A name without a creation time: drop what a failed run left.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{name}\" CASCADE"
    )))
    .execute(writer.pool())
    .await
    .unwrap();
    writer.migrate().await.unwrap();
    let reader =
        common::second_store(&writer, "es-test-long-listener", |b| b.poll_interval(NEVER)).await;
    let subscription = Box::pin(reader.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let consumer = waiting_consumer(subscription, 2).await;
    let written = append(&writer, "note-1", 2).await;
    assert_eq!(consumer.await.unwrap().0, written);
    common::drop_schema(writer).await;
}
