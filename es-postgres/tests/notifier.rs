//! The store's notifications and conditional appends: a binary of its own, because its
//! test holds a bare NOTIFY open for the length of a reply deadline, which would hold up
//! the conditional appends of every other test running beside it in the same database.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use es_core::{
    AppendCondition, AppendError, EventStore as _, ExpectedVersion, Metadata, NewEvent, QueryItem,
    RawEvent, StreamId, Tag,
};
use es_postgres::PgEventStore;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

fn tag(key: &str, value: impl std::fmt::Display) -> Tag {
    Tag::pair(key, value).unwrap()
}

fn tagged(event_type: &str, tags: impl IntoIterator<Item = Tag>) -> NewEvent<RawEvent> {
    NewEvent::new(RawEvent::new(event_type, 1, serde_json::json!({ "n": 1 })))
        .with_metadata(Metadata::new().with_tags(tags))
}

fn stream(category: &str, id: impl std::fmt::Display) -> StreamId {
    StreamId::new(category, &id.to_string()).unwrap()
}

async fn own_connection(application_name: &str) -> PgConnection {
    PgConnection::connect_with(&es_testkit::postgres::connect_options(application_name))
        .await
        .unwrap()
}

/// The store's notification that events were appended is a short transaction of its own,
/// with an id: it announces that it writes no events (migration 0009), so a conditional
/// append on a tagged query does not wait for it, though it is older and still open. A
/// bare NOTIFY in the same place holds the append up to its deadline, as any writer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_notification_does_not_hold_conditional_appends_up() {
    let base = common::fresh_store().await;
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .reply_timeout(Some(Duration::from_secs(2)))
        .build();
    let _budget = common::hold_connections(1).await;
    let mut held = own_connection("es-test-dcb-notifier").await;
    let channel = format!("es_events_{}", base.schema());
    for (notification, announced) in [
        (format!("SELECT \"{}\".es_notify($1)", base.schema()), true),
        (
            "SELECT pg_notify($1, ''), pg_current_xact_id()".to_owned(),
            false,
        ),
    ] {
        sqlx::raw_sql("BEGIN").execute(&mut held).await.unwrap();
        sqlx::query(AssertSqlSafe(notification))
            .bind(&channel)
            .execute(&mut held)
            .await
            .unwrap();
        let course = tag("course", announced);
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            store.append_if(
                &stream("subscription", announced),
                ExpectedVersion::NoStream,
                vec![tagged("StudentSubscribed", [course.clone()])],
                AppendCondition::new(QueryItem::new().with_tag(course)),
            ),
        )
        .await
        .unwrap();
        sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
        if announced {
            outcome.expect("the append does not wait for the notifier");
        } else {
            match outcome {
                Err(AppendError::Store { source, .. }) => {
                    assert!(source.is_transient(), "{source:?}");
                }
                other => panic!("expected the bare NOTIFY to be waited for, got {other:?}"),
            }
        }
    }
    // A transaction that wrote before may not announce that it writes nothing.
    sqlx::raw_sql("BEGIN").execute(&mut held).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut held)
        .await
        .unwrap();
    let refused = sqlx::query(AssertSqlSafe(format!(
        "SELECT \"{}\".es_notify($1)",
        base.schema()
    )))
    .bind(&channel)
    .execute(&mut held)
    .await
    .unwrap_err();
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("ESNT0"),
        "{refused:?}"
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut held).await.unwrap();
    held.close().await.unwrap();
    drop(store);
    common::drop_schema(base).await;
}
