//! Archiving against an append that is under way: the archive waits for it, so the stream
//! read when `archive_stream` returns is final. The append is held open deterministically
//! by an inline projection that waits inside the append's transaction.

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

use std::sync::Arc;
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    AppendError, EventEnvelope, EventStore as _, ExpectedVersion, NewEvent, RawEvent, StreamId,
    Version,
};
use es_postgres::{PgEventStore, PgInlineProjection};
use futures_util::TryStreamExt as _;
use futures_util::future::BoxFuture;
use serde_json::json;
use sqlx::PgConnection;
use tokio::sync::{Notify, Semaphore};

/// Holds every append's transaction open, after its insert, until released.
struct Gate {
    inside: Arc<Notify>,
    release: Arc<Semaphore>,
}

impl PgInlineProjection for Gate {
    fn name(&self) -> &str {
        "gate"
    }

    fn handle<'a>(
        &'a self,
        _tx: &'a mut PgConnection,
        _events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            self.inside.notify_one();
            self.release.acquire().await?.forget();
            Ok(())
        })
    }
}

fn noted() -> Vec<NewEvent<RawEvent>> {
    vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_waits_for_the_append_under_way() {
    let base = common::fresh_store().await;
    let stream = StreamId::new("note", "closing").unwrap();
    base.append(&stream, ExpectedVersion::NoStream, noted())
        .await
        .unwrap();
    let inside = Arc::new(Notify::new());
    let release = Arc::new(Semaphore::new(0));
    let gated = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Gate {
            inside: Arc::clone(&inside),
            release: Arc::clone(&release),
        }))
        .build();

    // An append that has inserted its row and not committed yet.
    let under_way = {
        let (gated, stream) = (gated.clone(), stream.clone());
        tokio::spawn(async move { gated.append(&stream, ExpectedVersion::Any, noted()).await })
    };
    tokio::time::timeout(Duration::from_secs(30), inside.notified())
        .await
        .expect("the append reaches its projection");

    let archiving = {
        let (base, stream) = (base.clone(), stream.clone());
        tokio::spawn(async move {
            base.archive_stream(&stream).await.unwrap();
            let at_archive: Vec<EventEnvelope<RawEvent>> = base
                .read_stream::<RawEvent>(&stream, Version::INITIAL)
                .try_collect()
                .await
                .unwrap();
            at_archive
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !archiving.is_finished(),
        "archive_stream returned while an append was under way"
    );

    release.add_permits(1);
    let appended = under_way
        .await
        .unwrap()
        .expect("the append under way commits");
    let at_archive = tokio::time::timeout(Duration::from_secs(30), archiving)
        .await
        .expect("the archive completes once the append has")
        .unwrap();
    assert_eq!(at_archive.len(), 2);
    assert_eq!(at_archive[1].event_id, appended.events[0].event_id);

    // And after it, nothing more: not through the gated store either.
    release.add_permits(1);
    match gated.append(&stream, ExpectedVersion::Any, noted()).await {
        Err(AppendError::Archived { .. }) => {}
        other => panic!("an append after the archive: {other:?}"),
    }
    let last: Vec<EventEnvelope<RawEvent>> = base
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(last, at_archive, "the stream read at the archive is final");
    common::drop_schema(base).await;
}

/// Under REPEATABLE READ (a role's default, say) an append reads with the snapshot its
/// statement began with. One that waited for an archive's lock must still not slip in
/// after the archive: the stream read when the archive commits stays final.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_holds_under_repeatable_read() {
    archive_holds_under("repeatable read").await;
}

/// As under REPEATABLE READ, with SERIALIZABLE for both the append and the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_holds_under_serializable() {
    archive_holds_under("serializable").await;
}

async fn archive_holds_under(isolation: &str) {
    let base = common::fresh_store().await;
    let stream = StreamId::new("note", "frozen").unwrap();
    base.append(&stream, ExpectedVersion::NoStream, noted())
        .await
        .unwrap();
    let options = (*base.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", isolation)]);
    let repeatable = PgEventStore::builder(common::connect_with(options, 2).await)
        .schema(base.schema().as_str())
        .unwrap()
        .build();

    // An archive in progress, as `archive_stream` makes it: the stream's lock taken
    // exclusively, its last version read, its row written, not yet committed.
    let mut archive = base.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET TRANSACTION ISOLATION LEVEL {isolation}"
    )))
    .execute(&mut *archive)
    .await
    .unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || $2, 0))")
        .bind(format!("\"{}\".", base.schema()))
        .bind(stream.as_str())
        .execute(&mut *archive)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT coalesce(max(version), 0) FROM \"{}\".events WHERE stream_id = $1",
        base.schema()
    )))
    .bind(stream.as_str())
    .execute(&mut *archive)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO \"{}\".archived_streams (stream_id) VALUES ($1)",
        base.schema()
    )))
    .bind(stream.as_str())
    .execute(&mut *archive)
    .await
    .unwrap();

    // The append starts (its snapshot taken) and waits for that lock.
    let waiting = {
        let stream = stream.clone();
        tokio::spawn(async move {
            repeatable
                .append(&stream, ExpectedVersion::Any, noted())
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let blocked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            )
            .fetch_one(base.pool())
            .await
            .unwrap();
            if blocked > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the append waits for the archive's lock");
    archive.commit().await.unwrap();

    match waiting.await.unwrap() {
        Err(AppendError::Archived { .. }) => {}
        other => panic!("an append that waited for the archive: {other:?}"),
    }
    let events: Vec<EventEnvelope<RawEvent>> = base
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(events.len(), 1, "the stream read at the archive is final");
    common::drop_schema(base).await;
}
