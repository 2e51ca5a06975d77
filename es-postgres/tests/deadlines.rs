//! Every wait has a deadline: an append stuck behind a lock fails, typed, instead of
//! hanging; subscriptions and runners ride out an exhausted pool and say so while it lasts.

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
    AppendError, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position,
    ProjectionRunner, RawEvent, RunnerState, Stall, StoreErrorKind, StreamId,
};
use es_postgres::{PgEventStore, PgPoolSettings};
use es_testkit::fixture::AccountEvent;
use es_testkit::projections::{CountingView, Faults, LedgerStorage};
use futures_util::StreamExt as _;
use serde_json::json;
use sqlx::AssertSqlSafe;

/// Bounds every wait of these tests; none measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// A store on `store`'s schema with a pool of its own, configured by `configure`.
async fn own_pool(
    store: &PgEventStore,
    configure: impl FnOnce(
        es_postgres::PgEventStoreBuilder<PgPoolSettings>,
    ) -> es_postgres::PgEventStoreBuilder<PgPoolSettings>,
) -> PgEventStore {
    let builder = PgEventStore::builder_for_url(&common::database_url())
        .unwrap()
        .schema(store.schema().as_str())
        .unwrap();
    configure(builder).connect().await.unwrap()
}

/// Holds version 1 of `stream` in an open transaction, as a slow writer would: another
/// append of version 1 must wait for it to end.
async fn hold_version_one(
    store: &PgEventStore,
    stream: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut holder = store.pool().begin().await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events (stream_id, version, event_id, event_type, schema_version, payload, metadata) \
         VALUES ($1, 1, gen_random_uuid(), 'Noted', 1, '{{}}', '{{}}')",
        store.schema()
    )))
    .bind(stream)
    .execute(&mut *holder)
    .await
    .unwrap();
    holder
}

fn noted() -> Vec<NewEvent<RawEvent>> {
    vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))]
}

type Delivered = tokio::sync::mpsc::UnboundedReceiver<Result<u64, es_core::ReadError>>;

/// The next version a consumer received.
async fn next(received: &mut Delivered) -> u64 {
    tokio::time::timeout(PATIENCE, received.recv())
        .await
        .expect("delivery")
        .expect("a subscription does not end")
        .expect("and does not fail")
}

/// An append waiting on another transaction's lock ends at the lock deadline, or at the
/// statement deadline, as a typed timeout that says so; nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_blocked_by_a_lock_times_out_typed() {
    let store = common::fresh_store().await;
    let quick = Some(Duration::from_millis(200));
    for (what, strict) in [
        (
            "lock deadline",
            own_pool(&store, |b| b.lock_timeout(quick).statement_timeout(None)).await,
        ),
        (
            "statement deadline",
            own_pool(&store, |b| b.lock_timeout(None).statement_timeout(quick)).await,
        ),
    ] {
        let stream = format!("note-{}", what.replace(' ', "-"));
        let holder = hold_version_one(&store, &stream).await;
        let result = tokio::time::timeout(
            PATIENCE,
            strict.append(
                &StreamId::parse(&stream).unwrap(),
                ExpectedVersion::NoStream,
                noted(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{what}: the append hung"));
        match result {
            Err(error @ AppendError::Store { .. }) => {
                assert!(error.is_transient(), "{what}: {error:?}");
                let AppendError::Store { source, .. } = &error else {
                    unreachable!()
                };
                assert_eq!(source.kind(), StoreErrorKind::Timeout, "{what}: {error:?}");
                assert!(source.to_string().contains("timed out"), "{what}: {source}");
            }
            other => panic!("{what}: expected a timeout, got {other:?}"),
        }
        holder.rollback().await.unwrap();
        assert_eq!(
            strict
                .stream_version(&StreamId::parse(&stream).unwrap())
                .await
                .unwrap()
                .get(),
            0
        );
    }
    common::drop_schema(store).await;
}

/// With every connection of its pool taken, a subscription and a runner keep waiting
/// (no error, no end), report the trouble through `stall` and the runner's status, and
/// deliver everything once a connection is free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_runners_ride_out_an_exhausted_pool() {
    let writer = common::fresh_store().await;
    let tight = own_pool(&writer, |b| {
        b.max_connections(2)
            .acquire_timeout(Duration::from_millis(100))
    })
    .await;
    let account = StreamId::new("account", "1").unwrap();
    let deposit = |amount| NewEvent::new(AccountEvent::Deposited { amount });
    writer
        .append(&account, ExpectedVersion::NoStream, vec![deposit(1)])
        .await
        .unwrap();

    // A subscriber that keeps reading, as a live consumer does.
    let (delivered, mut received) = tokio::sync::mpsc::unbounded_channel();
    let subscription = tight.subscribe::<RawEvent>(Position::START, EventFilter::all());
    let consumer = tokio::spawn(async move {
        let mut subscription = Box::pin(subscription);
        while let Some(event) = subscription.next().await {
            let _ = delivered.send(event.map(|e| e.version.get()));
        }
    });
    assert_eq!(next(&mut received).await, 1);
    let ledger = LedgerStorage::default();
    let mut runner = ProjectionRunner::new(
        tight.clone(),
        CountingView::new("counting", ledger.clone(), Faults::none()),
    )
    .with_lease(None);
    let status = runner.status();
    let running = tokio::spawn(async move { runner.run().await });
    tokio::time::timeout(PATIENCE, async {
        while ledger.get().applied.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the runner handles the first event");

    // Take every connection, then append through another pool. One may be kept at hand
    // by the store between its readers' calls for a moment, and the pool's acquire
    // timeout is short: ask again until both are the test's.
    let mut held = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while held.len() < 2 {
            match tight.pool().acquire().await {
                Ok(connection) => held.push(connection),
                Err(sqlx::Error::PoolTimedOut) => {}
                Err(error) => panic!("{error}"),
            }
        }
    })
    .await
    .expect("the test takes every connection of the pool");
    writer
        .append(
            &account,
            ExpectedVersion::Exact(es_core::Version::new(1)),
            vec![deposit(2), deposit(3)],
        )
        .await
        .unwrap();
    let stalled = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(stall @ Stall::Failing { .. }) = tight.stall() {
                return stall;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the store reports that its readers cannot read");
    let Stall::Failing { error, .. } = &stalled else {
        unreachable!()
    };
    assert!(error.contains("timed out"), "{error}");
    let seen = status.get();
    assert_eq!(seen.state, RunnerState::Recovering, "{seen:?}");
    assert!(
        matches!(seen.stall, Some(Stall::Failing { .. })),
        "{seen:?}"
    );

    drop(held);
    assert_eq!(
        [next(&mut received).await, next(&mut received).await],
        [2, 3]
    );
    tokio::time::timeout(PATIENCE, async {
        while ledger.get().applied.len() < 3 || tight.stall().is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the runner goes on and the stall clears");
    assert_ne!(status.get().state, RunnerState::Recovering);
    assert!(!running.is_finished(), "the runner never stopped");
    running.abort();
    consumer.abort();
    common::drop_schema(writer).await;
}
