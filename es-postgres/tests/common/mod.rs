//! A fresh schema per test on the server `DATABASE_URL` names.

#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(
    clippy::expect_used,
    reason = "test support: a failed setup step is a failed test"
)]

use std::sync::Once;
use std::time::{SystemTime, UNIX_EPOCH};

use es_postgres::PgEventStore;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

/// The server the tests use.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Connects with `max` connections tagged `application_name`, failing the test with a
/// message that says how to get a server when none answers.
pub(crate) async fn connect(application_name: &str, max: u32) -> PgPool {
    connect_to(&database_url(), application_name, max).await
}

/// As [`connect`], to the server at `url`.
pub(crate) async fn connect_to(url: &str, application_name: &str, max: u32) -> PgPool {
    let options: PgConnectOptions = url
        .parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"))
        .application_name(application_name);
    // One direct attempt first, so that a missing server fails at once rather than after
    // the pool's acquire timeout.
    let first = match PgConnection::connect_with(&options).await {
        Ok(connection) => connection.close().await,
        Err(error) => Err(error),
    };
    first
        .and(Ok(PgPoolOptions::new()
            .max_connections(max)
            .connect_lazy_with(options)))
        .unwrap_or_else(|error| {
            panic!(
                "\n\nNo PostgreSQL server answers at {url}: {error}\n\
                 These tests need one. Start the local cluster with\n\
                 \x20   pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                 or point DATABASE_URL at a server (PostgreSQL 14 or newer).\n"
            )
        })
}

/// A new, migrated store in a schema of its own, named `es_test_<unix time>_<random>`.
pub(crate) async fn fresh_store() -> PgEventStore {
    fresh_store_with(|builder| builder).await
}

/// A second store on the same schema as `store`, with a pool of its own whose connections
/// carry `application_name` (so a test can find and kill them): another process, in effect.
pub(crate) async fn second_store(
    store: &PgEventStore,
    application_name: &str,
    configure: impl FnOnce(es_postgres::PgEventStoreBuilder) -> es_postgres::PgEventStoreBuilder,
) -> PgEventStore {
    let pool = connect(application_name, 4).await;
    configure(
        PgEventStore::builder(pool)
            .schema(store.schema().as_str())
            .expect("valid schema"),
    )
    .build()
}

/// As [`fresh_store`], configured by `configure`.
pub(crate) async fn fresh_store_with(
    configure: impl FnOnce(es_postgres::PgEventStoreBuilder) -> es_postgres::PgEventStoreBuilder,
) -> PgEventStore {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let schema = format!("es_test_{now}_{}", uuid::Uuid::new_v4().simple());
    let schema = &schema[..schema.len().min(63)];
    let pool = connect(schema, 12).await;
    drop_stale_schemas(&pool).await;
    let store = configure(
        PgEventStore::builder(pool)
            .schema(schema)
            .expect("valid schema"),
    )
    .build();
    store.migrate().await.expect("migrate a fresh schema");
    store
}

/// Drops the store's schema (for tests that passed).
pub(crate) async fn drop_schema(store: PgEventStore) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema());
    sqlx::query(AssertSqlSafe(sql))
        .execute(store.pool())
        .await
        .expect("drop the test schema");
}

/// Test schemas left by failed runs more than a day ago are dropped, once per process, so
/// the server does not fill up while recent failures stay for inspection.
async fn drop_stale_schemas(pool: &PgPool) {
    static ONCE: Once = Once::new();
    let mut first = false;
    ONCE.call_once(|| first = true);
    if !first {
        return;
    }
    let cutoff = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        .saturating_sub(24 * 3600);
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'es\\_test\\_%'",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    for schema in schemas {
        let created = schema.split('_').nth(2).and_then(|t| t.parse::<u64>().ok());
        if created.is_some_and(|t| t < cutoff) {
            let _ = sqlx::query(AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(pool)
            .await;
        }
    }
}
