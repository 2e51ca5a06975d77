//! Projections may open transactions of their own on the connection the store hands them
//! (to try a statement and roll it back, say): those are savepoints inside the store's
//! transaction, so rolling one back undoes only the projection's attempt, never the
//! append or the checkpoint.

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

use common::{count, create_table};

use std::sync::Arc;

use es_core::error::BoxError;
use es_core::{
    EventEnvelope, EventStore as _, ExpectedVersion, NewEvent, ProjectionRunner, RawEvent,
    StreamId, Version,
};
use es_postgres::{PgEventStore, PgInlineProjection, PgProjection, PgTransactionalProjection};
use es_testkit::fixture::AccountEvent;
use futures_util::future::BoxFuture;
use serde_json::json;
use sqlx::{Acquire as _, AssertSqlSafe, PgConnection};

/// The id of the transaction `connection` is in (assigning one if need be).
async fn transaction_id(connection: &mut PgConnection) -> Result<String, BoxError> {
    Ok(sqlx::query_scalar("SELECT pg_current_xact_id()::text")
        .fetch_one(connection)
        .await?)
}

/// Tries a statement that fails inside a transaction of its own, rolls that back, then
/// records the event in `table`; all of it inside the caller's transaction, which must
/// still be the same one afterwards.
async fn try_then_record(
    connection: &mut PgConnection,
    table: &str,
    event_id: uuid::Uuid,
) -> Result<(), BoxError> {
    let before = transaction_id(connection).await?;
    let mut attempt = connection.begin().await?;
    assert!(
        sqlx::query("SELECT 1 / 0")
            .execute(&mut *attempt)
            .await
            .is_err(),
        "the attempt fails"
    );
    attempt.rollback().await?;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (event_id) VALUES ($1)"
    )))
    .bind(event_id)
    .execute(&mut *connection)
    .await?;
    let after = transaction_id(connection).await?;
    assert_eq!(before, after, "still inside the store's transaction");
    Ok(())
}

struct Careful {
    table: String,
}

impl PgInlineProjection for Careful {
    fn name(&self) -> &str {
        "careful"
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for event in events {
                try_then_record(tx, &self.table, event.event_id).await?;
            }
            Ok(())
        })
    }
}

/// An inline projection that rolls back a transaction of its own: the append still
/// commits, with the projection's write, and the next appends go on normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_projection_rolling_back_its_own_transaction_keeps_the_append() {
    let plain = common::fresh_store().await;
    let table = create_table(&plain, "careful").await;
    let store = PgEventStore::builder(plain.pool().clone())
        .schema(plain.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Careful {
            table: table.clone(),
        }))
        .build();
    let stream = StreamId::new("note", "1").unwrap();
    for n in 0..3_u64 {
        let committed = store
            .append(
                &stream,
                ExpectedVersion::Exact(Version::new(n)),
                vec![NewEvent::new(RawEvent::new("Noted", 1, json!({ "n": n })))],
            )
            .await
            .unwrap();
        assert_eq!(committed.version, Version::new(n + 1));
    }
    assert_eq!(
        plain.stream_version(&stream).await.unwrap(),
        Version::new(3),
        "every acknowledged append is stored"
    );
    assert_eq!(count(&plain, &table).await, 3);
    common::drop_schema(plain).await;
}

struct CarefulView {
    table: String,
}

impl PgProjection for CarefulView {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "careful-view"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        try_then_record(tx, &self.table, envelope.event_id).await
    }
}

/// A transactional projection that rolls back a transaction of its own: its batch and
/// checkpoint still commit together, and a second runner finds nothing left to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_projection_rolling_back_its_own_transaction_keeps_its_batch() {
    let store = common::fresh_store().await;
    let table = create_table(&store, "careful_view").await;
    let stream = StreamId::new("account", "1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            (1..=5)
                .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
                .collect(),
        )
        .await
        .unwrap();
    let view = || {
        PgTransactionalProjection::new(
            store.clone(),
            CarefulView {
                table: table.clone(),
            },
        )
    };
    let mut runner = ProjectionRunner::new(store.clone(), view()).with_batch_size(2);
    assert_eq!(runner.catch_up().await.unwrap(), 5);
    assert_eq!(count(&store, &table).await, 5);
    let mut again = ProjectionRunner::new(store.clone(), view());
    assert_eq!(again.catch_up().await.unwrap(), 0, "the checkpoint moved");
    common::drop_schema(store).await;
}

/// Does something to the append's transaction that a projection must not.
struct Careless {
    sql: &'static str,
}

impl PgInlineProjection for Careless {
    fn name(&self) -> &str {
        "careless"
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        _events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            // The error is swallowed, or the statement "succeeds": either way the projection
            // reports success.
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(self.sql))
                .execute(&mut *tx)
                .await;
            Ok(())
        })
    }
}

/// An inline projection that swallows a failed statement (the transaction is then
/// aborted, and COMMIT rolls it back without a word) or ends the store's transaction
/// itself gets an error for the append, never an acknowledgement of events not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_projection_that_breaks_the_transaction_fails_the_append() {
    let plain = common::fresh_store().await;
    for (n, sql) in ["SELECT 1 / 0", "ROLLBACK", "COMMIT"]
        .into_iter()
        .enumerate()
    {
        let store = PgEventStore::builder(plain.pool().clone())
            .schema(plain.schema().as_str())
            .unwrap()
            .inline_projection(Arc::new(Careless { sql }))
            .build();
        let stream = StreamId::new("note", &n.to_string()).unwrap();
        let appended = store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
            )
            .await;
        let stored = plain.stream_version(&stream).await.unwrap();
        match appended {
            Ok(committed) => {
                panic!("`{sql}`: the append was acknowledged ({committed:?}); stored: {stored}")
            }
            Err(error) => {
                let said = es_core::error::display_chain(&error);
                assert!(said.contains("an inline projection"), "`{sql}`: {said}");
            }
        }
        if sql != "COMMIT" {
            assert_eq!(stored, Version::INITIAL, "`{sql}`: nothing stored");
        }
    }
    common::drop_schema(plain).await;
}
