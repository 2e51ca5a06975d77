//! Migrations: from nothing, idempotent, safe to run concurrently, schemas kept apart, and
//! refusing schemas this code does not know.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use es_core::{EventStore as _, ExpectedVersion, NewEvent, RawEvent, StreamId, Version};
use es_postgres::{PgEventStore, PgStoreError};
use serde_json::json;
use sqlx::AssertSqlSafe;

async fn tables(store: &PgEventStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
    )
    .bind(store.schema().as_str())
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_twice_changes_nothing_and_keeps_data() {
    let store = common::fresh_store().await;
    assert_eq!(
        tables(&store).await,
        [
            "archived_streams",
            "checkpoints",
            "es_migrations",
            "events",
            "forgotten_keys",
            "forgotten_subjects",
            "leases",
            "parked_events",
            "snapshots",
            "subject_keys"
        ]
    );
    let stream = StreamId::new("note", "1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
        )
        .await
        .unwrap();
    store.migrate().await.expect("a second migrate is a no-op");
    store.migrate().await.expect("and a third");
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(1)
    );
    let versions: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{}\".es_migrations ORDER BY version",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once() {
    concurrent_migrations("read committed").await;
}

/// As above on pools whose transactions default to REPEATABLE READ: a migrator that
/// waited for the lock still sees what the one before it did.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_apply_once_under_repeatable_read() {
    concurrent_migrations("repeatable read").await;
}

async fn concurrent_migrations(isolation: &str) {
    let store = common::fresh_store_with(|b| b).await;
    let options = (*store.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", isolation)]);
    // Within the test's share of the connection budget with the store's 13: the eight
    // migrators below take turns on its connections.
    let pool = common::connect_with(options, 6).await;
    // A brand-new schema, migrated by eight "processes" at once.
    let schema = format!("{}_c", store.schema());
    let mut runs = Vec::new();
    for _ in 0..8 {
        let pool = pool.clone();
        let schema = schema.clone();
        runs.push(tokio::spawn(async move {
            PgEventStore::builder(pool)
                .schema(&schema)
                .unwrap()
                .build()
                .migrate()
                .await
        }));
    }
    for run in runs {
        run.await
            .unwrap()
            .expect("every concurrent migrate succeeds");
    }
    let applied: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{schema}\".es_migrations"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(applied, 12, "each migration once");
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(store.pool())
        .await
        .unwrap();
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_independent() {
    // Small pools: two stores of the full size would pass the test's share of the
    // connection budget.
    let a = es_testkit::postgres::fresh_store_sized(4, |b| b).await;
    let b = es_testkit::postgres::fresh_store_sized(4, |b| b).await;
    let stream = StreamId::new("note", "1").unwrap();
    let event = || vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))];
    a.append(&stream, ExpectedVersion::NoStream, event())
        .await
        .unwrap();
    b.append(&stream, ExpectedVersion::NoStream, event())
        .await
        .expect("the same stream in another schema is another stream");
    assert_eq!(a.stream_version(&stream).await.unwrap(), Version::new(1));
    common::drop_schema(a).await;
    common::drop_schema(b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_schema_is_refused() {
    let store = common::fresh_store().await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".es_migrations (version, name) VALUES (99, 'from the future')",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    match store.migrate().await {
        Err(PgStoreError::SchemaTooNew {
            found, supported, ..
        }) => assert_eq!((found, supported), (99, 12)),
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renamed_migration_is_refused() {
    let store = common::fresh_store().await;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".es_migrations SET name = 'edited' WHERE version = 1",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    assert!(matches!(
        store.migrate().await,
        Err(PgStoreError::MigrationMismatch { version: 1, .. })
    ));
    common::drop_schema(store).await;
}

/// A migration whose text changed after a schema applied it is refused by name, not
/// left to fail later on whatever it no longer creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_migration_is_refused() {
    let store = common::fresh_store().await;
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".es_migrations SET checksum = 'something else' WHERE version = 3",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    match store.migrate().await {
        Err(error @ PgStoreError::MigrationEdited { version: 3, .. }) => {
            assert!(error.to_string().contains("archive"), "{error}");
        }
        other => panic!("expected MigrationEdited, got {other:?}"),
    }
    common::drop_schema(store).await;
}

/// Schemas migrated before checksums were recorded get them on the next migrate, and are
/// checked from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_are_recorded_for_older_schemas() {
    let store = common::fresh_store().await;
    let checksums = |store: PgEventStore| async move {
        sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(format!(
            "SELECT checksum FROM \"{}\".es_migrations ORDER BY version",
            store.schema()
        )))
        .fetch_all(store.pool())
        .await
        .unwrap()
    };
    let recorded = checksums(store.clone()).await;
    assert!(recorded.iter().all(Option::is_some));
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE \"{}\".es_migrations SET checksum = NULL",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    store.migrate().await.unwrap();
    assert_eq!(checksums(store.clone()).await, recorded);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn schema_names_are_identifiers_only() {
    let pool = sqlx::PgPool::connect_lazy("postgres://localhost/x").unwrap();
    let injected = PgEventStore::builder(pool).schema("es\"; DROP TABLE x; --");
    assert!(matches!(injected, Err(PgStoreError::InvalidSchemaName(_))));
}

/// Events copied from a cluster whose transaction counter was further on are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_a_cluster_further_on_are_refused() {
    let store = common::fresh_store().await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events (transaction_id, stream_id, version, event_id, event_type, \
             schema_version, payload, metadata) \
         VALUES ('4000000000'::xid8, 'note-1', 1, gen_random_uuid(), 'Noted', 1, '{{}}', '{{}}')",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    match store.migrate().await {
        Err(PgStoreError::TransactionIdsAhead { newest, .. }) => assert_eq!(newest, 4_000_000_000),
        other => panic!("expected TransactionIdsAhead, got {other:?}"),
    }
    common::drop_schema(store).await;
}

/// A schema created by the release before archiving (migrations 1 and 2) is brought up to
/// date in place: its events stay, and archiving works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_before_archiving_is_upgraded_in_place() {
    let store = common::fresh_store().await;
    let stream = StreamId::new("note", "kept").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
        )
        .await
        .unwrap();
    // Put the schema back as migration 2 left it.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP FUNCTION \"{0}\".es_stream_open(text); DROP TABLE \"{0}\".archived_streams; \
         ALTER TABLE \"{0}\".events ALTER COLUMN recorded_at SET DEFAULT now(); \
         DELETE FROM \"{0}\".es_migrations WHERE version = 3",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    assert!(
        !tables(&store)
            .await
            .contains(&"archived_streams".to_owned())
    );

    store.migrate().await.unwrap();
    let versions: Vec<i32> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM \"{}\".es_migrations ORDER BY version",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    assert!(
        tables(&store)
            .await
            .contains(&"archived_streams".to_owned())
    );
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(1)
    );
    store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
        )
        .await
        .unwrap();
    store.archive_stream(&stream).await.unwrap();
    assert!(store.is_archived(&stream).await.unwrap());
    assert!(
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))]
            )
            .await
            .is_err()
    );
    common::drop_schema(store).await;
}
