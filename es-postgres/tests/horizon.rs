//! The log's horizon belongs to this database: transactions elsewhere on the server hold
//! nothing back, one here that may still write does (and is named), and delivery stays
//! gapless while other databases churn.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    EventEnvelope, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position,
    ProjectionRunner, RawEvent, RunnerError, Stall, StreamId,
};
use es_postgres::{PgEventStore, PgInlineProjection};
use es_testkit::fixture::AccountEvent;
use es_testkit::projections::{CountingView, Faults, LedgerStorage};
use futures_util::future::BoxFuture;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use uuid::Uuid;

/// Bounds every wait; nothing here measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// Taken by every test here that writes to this database: the horizon names the oldest
/// open transaction, which the holder test asserts is its own (beside the churn test it
/// once saw one of its dawdling appends named instead, and beside the other-database test
/// one of that test's appends, a clean-clone CI run on 2026-12-02).
static HOLDING_HERE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A connection to another database of the same server, tagged `application`.
async fn other_database(store: &PgEventStore, application: &str) -> PgConnection {
    let other: String = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database \
         WHERE datallowconn AND datname <> current_database() \
         ORDER BY datistemplate, datname = 'postgres' DESC LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .expect("the server has another database (template1 at least)");
    let options: PgConnectOptions = common::database_url()
        .parse::<PgConnectOptions>()
        .unwrap()
        .database(&other)
        .application_name(application);
    PgConnection::connect_with(&options).await.unwrap()
}

/// Opens a transaction on `connection` that holds a transaction id, and returns it.
async fn open_writing_transaction(connection: &mut PgConnection) -> u64 {
    sqlx::query("BEGIN")
        .execute(&mut *connection)
        .await
        .unwrap();
    let id: String = sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(&mut *connection)
        .await
        .unwrap();
    id.parse().unwrap()
}

async fn append(store: &PgEventStore, stream: &str, n: usize) -> Vec<EventEnvelope<RawEvent>> {
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
        .unwrap()
        .events
}

/// A transaction open in another database, with a transaction id (as any writer there
/// has), does not hold back this store's readers: on a shared server, another team's
/// long transaction or forgotten session must not stall delivery here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_in_another_database_holds_nothing_back() {
    let _alone = HOLDING_HERE.lock().await;
    let store = common::fresh_store().await;
    let _budget = common::hold_connections(1).await;
    let mut elsewhere = other_database(&store, "es-test-elsewhere").await;
    let held = open_writing_transaction(&mut elsewhere).await;
    let written = append(&store, "note-1", 3).await;

    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            let log: Vec<EventEnvelope<RawEvent>> = store
                .read_all(Position::START, EventFilter::all())
                .try_collect()
                .await
                .unwrap();
            if log.len() == written.len() {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("events are delivered while the other database's transaction stays open");
    let ids =
        |events: &[EventEnvelope<RawEvent>]| events.iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(&read), ids(&written));
    assert!(store.readable(written[2].position).await.unwrap());
    let horizon = store.horizon().await.unwrap();
    assert!(
        horizon.oldest_running_transaction > held,
        "the horizon is past the other database's transaction: {horizon:?}"
    );
    sqlx::query("ROLLBACK")
        .execute(&mut elsewhere)
        .await
        .unwrap();
    common::drop_schema(store).await;
}

/// A transaction open in this database may still write events that sort before newer
/// ones, so those wait (never skipped), and everything that reports on the log names the
/// session: `horizon()`, `stall()`, and a catch-up that runs out of patience.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_here_holds_back_and_is_named() {
    let _alone = HOLDING_HERE.lock().await;
    let store = common::fresh_store().await;
    let options: PgConnectOptions = common::database_url()
        .parse::<PgConnectOptions>()
        .unwrap()
        .application_name("es-test-holder");
    // Opened directly, within the test's share of the connection budget.
    let _budget = common::hold_connections(1).await;
    let mut holder = PgConnection::connect_with(&options).await.unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut holder)
        .await
        .unwrap();
    open_writing_transaction(&mut holder).await;
    let account = StreamId::new("account", "held").unwrap();
    let appended = store
        .append(
            &account,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(AccountEvent::Deposited { amount: 1 })],
        )
        .await
        .unwrap();
    let position = appended.events[0].position;
    assert!(!store.readable(position).await.unwrap());

    let horizon = store.horizon().await.unwrap();
    assert_eq!(horizon.events_waiting, 1, "{horizon:?}");
    let named = horizon.held_by.as_ref().expect("the holder is named");
    assert_eq!(named.pid, pid);
    assert_eq!(named.application.as_deref(), Some("es-test-holder"));
    assert_eq!(named.state.as_deref(), Some("idle in transaction"));
    assert!(horizon.to_string().contains(&pid.to_string()), "{horizon}");

    let ledger = LedgerStorage::default();
    let mut runner = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", ledger.clone(), Faults::none()),
    )
    .with_catch_up_wait(Duration::from_millis(1_500));
    match runner.catch_up().await {
        Err(RunnerError::HeldBack { cause, .. }) => {
            let cause = cause.expect("the store says what holds the log back");
            assert!(cause.contains(&pid.to_string()), "{cause}");
        }
        other => panic!("expected the catch-up to be held back, got {other:?}"),
    }
    match store.stall() {
        Some(Stall::HeldBack { cause, .. }) => assert!(cause.contains(&pid.to_string())),
        other => panic!("expected a held-back stall, got {other:?}"),
    }
    assert_eq!(ledger.get().applied.len(), 0, "nothing skipped ahead");

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    assert_eq!(runner.catch_up().await.unwrap(), 1);
    assert_eq!(ledger.get().applied.len(), 1);
    assert_eq!(store.stall(), None);
    common::drop_schema(store).await;
}

/// Holds each append's transaction open for a random moment after its insert, so that
/// transactions overlap and commit out of order.
struct Dawdle;

impl PgInlineProjection for Dawdle {
    fn name(&self) -> &str {
        "dawdle"
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            sqlx::query("SELECT pg_sleep(random() * 0.004)")
                .execute(tx)
                .await?;
            Ok(())
        })
    }
}

/// Writers whose transactions overlap and commit out of order, while transactions in
/// another database start and end all the time (and so, now and then, end just as a
/// reader looks): a live subscriber receives every event exactly once, in log order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stays_gapless_while_other_databases_churn() {
    const WRITERS: usize = 4;
    const APPENDS: usize = 60;
    let _alone = HOLDING_HERE.lock().await;
    let store = common::fresh_store_with(|b| b.inline_projection(Arc::new(Dawdle))).await;
    let done = Arc::new(AtomicBool::new(false));
    let mut churn = Vec::new();
    for i in 0..2 {
        let _budget = common::hold_connections(1).await;
        let mut elsewhere = other_database(&store, &format!("es-test-churn-{i}")).await;
        let done = Arc::clone(&done);
        churn.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                open_writing_transaction(&mut elsewhere).await;
                sqlx::query("SELECT pg_sleep(random() * 0.003)")
                    .execute(&mut elsewhere)
                    .await
                    .unwrap();
                sqlx::query("COMMIT").execute(&mut elsewhere).await.unwrap();
            }
        }));
    }
    let subscription = store.subscribe::<RawEvent>(Position::START, EventFilter::all());
    let expected = WRITERS * APPENDS;
    let consumer = tokio::spawn(async move {
        let mut subscription = Box::pin(subscription);
        let mut received = Vec::new();
        while received.len() < expected {
            let event = tokio::time::timeout(PATIENCE, subscription.next())
                .await
                .expect("delivery goes on")
                .expect("a subscription does not end")
                .expect("no error");
            received.push(event);
        }
        received
    });
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..APPENDS {
                    append(&store, &format!("note-{w}"), 1).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let received = consumer.await.unwrap();
    done.store(true, Ordering::Relaxed);
    for task in churn {
        task.await.unwrap();
    }

    let log: Vec<EventEnvelope<RawEvent>> = store
        .read_all(Position::START, EventFilter::all())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(log.len(), expected);
    let order = |events: &[EventEnvelope<RawEvent>]| {
        events.iter().map(|e| e.event_id).collect::<Vec<Uuid>>()
    };
    assert_eq!(
        order(&received),
        order(&log),
        "delivered in log order, once each"
    );
    assert_eq!(
        order(&received).into_iter().collect::<HashSet<_>>().len(),
        expected
    );
    common::drop_schema(store).await;
}
