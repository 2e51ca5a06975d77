//! PostgreSQL for tests (feature `postgres`): a fresh, migrated [`PgEventStore`] in a schema
//! of its own, on the server `DATABASE_URL` names, within one connection budget for the
//! whole test process.
//!
//! ```ignore
//! let store = es_testkit::postgres::fresh_store().await;
//! // ... the test ...
//! es_testkit::postgres::drop_schema(store).await; // only once it passed
//! ```
//!
//! Every pool opened here takes its connections from [`ConnectionBudget::global`] first,
//! and gives them back when the pool is gone (when the last clone of it, or of a store on
//! it, is dropped, and the tasks that hand connections back to it have run): `cargo test`
//! runs a test per core at once, and a 16-core machine would otherwise open more
//! connections than the server's default `max_connections` of 100 allows. The budget is
//! [`DEFAULT_BUDGET`] connections, or what [`BUDGET_VAR`] says. A pool reserves one
//! connection more than its size, for the notification listener a store on it may open
//! beside the pool.
//!
//! The budget is counted per test, not per pool: a test's first pool takes the test's
//! whole share ([`TEST_SHARE`]), and the pools it opens after it on the same thread draw
//! from that share without waiting, so tests holding a pool never wait on each other for
//! their next one ([`ConnectionBudget::acquire_for_test`]). Connections a test opens itself
//! are held with [`hold_connections`].
//!
//! When no server answers, the first connection fails the test at once, with a message that
//! says how to start one.

mod budget;

pub use budget::{
    ACQUIRE_DEADLINE, BUDGET_VAR, BudgetError, BudgetPermit, ConnectionBudget, DEFAULT_BUDGET,
    TEST_SHARE, TestPermit,
};

use std::sync::{Arc, Once};
use std::time::{SystemTime, UNIX_EPOCH};

use es_postgres::{PgEventStore, PgEventStoreBuilder};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

/// The server the tests use when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The pool size of [`fresh_store`] and [`fresh_store_with`].
pub const POOL_SIZE: u32 = 12;

/// The server the tests use: `DATABASE_URL`, or [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The options to connect to [`database_url`], with connections tagged
/// `application_name` (so that a test can find them in `pg_stat_activity`).
///
/// # Panics
///
/// If `DATABASE_URL` is not a PostgreSQL URL.
pub fn connect_options(application_name: &str) -> PgConnectOptions {
    parse(&database_url()).application_name(application_name)
}

fn parse(url: &str) -> PgConnectOptions {
    url.parse::<PgConnectOptions>()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a PostgreSQL URL: {e}"))
}

/// A pool of at most `max` connections to [`database_url`], tagged `application_name`,
/// within the budget.
///
/// # Panics
///
/// When no server answers (saying how to start one), or the budget cannot give `max + 1`
/// connections (see [`BudgetError`]).
pub async fn connect(application_name: &str, max: u32) -> PgPool {
    connect_with(connect_options(application_name), max).await
}

/// As [`connect`], to the server at `url`.
///
/// # Panics
///
/// As [`connect`], and if `url` is not a PostgreSQL URL.
pub async fn connect_to(url: &str, application_name: &str, max: u32) -> PgPool {
    connect_with(parse(url).application_name(application_name), max).await
}

/// A pool of at most `max` connections made with `options`, within the budget: the
/// pool's connections and its listener's are taken from [`ConnectionBudget::global`]
/// before anything connects, and given back when the pool is dropped. Connections open
/// lazily, after one direct attempt that fails at once when no server answers.
///
/// # Panics
///
/// As [`connect`].
pub async fn connect_with(options: PgConnectOptions, max: u32) -> PgPool {
    let permit = hold_connections(max + 1).await;
    probe(&options).await;
    // The pool owns the permit through its callback, which lives as long as the pool; the
    // pool's background tasks hold it only weakly, so the last handle dropped frees both.
    let permit = Arc::new(permit);
    // The store's own rule for checking connections before use, so that the tests run
    // the statements' round trips a store that opens its pool does.
    es_postgres::ping_after_idle(
        PgPoolOptions::new(),
        Some(es_postgres::PgPoolSettings::DEFAULT_PING_AFTER_IDLE),
    )
    .max_connections(max)
    .after_connect(move |_connection, _metadata| {
        let _held = &permit;
        Box::pin(async { Ok(()) })
    })
    .connect_lazy_with(options)
}

/// Takes `connections` from the test's share of [`ConnectionBudget::global`]
/// ([`ConnectionBudget::acquire_for_test`]), for connections a test opens itself rather than
/// through a pool of this module's (a `PgConnection`, a pool of its own): hold the permit
/// as long as they are open.
///
/// # Panics
///
/// When the budget cannot give them (see [`BudgetError`]).
pub async fn hold_connections(connections: u32) -> TestPermit {
    ConnectionBudget::global()
        .acquire_for_test(connections, ACQUIRE_DEADLINE)
        .await
        .unwrap_or_else(|error| panic!("\n\n{error}\n"))
}

/// One direct connection, so that a missing server fails the test at once rather than
/// after the pool's acquire timeout.
async fn probe(options: &PgConnectOptions) {
    let attempt = match PgConnection::connect_with(options).await {
        Ok(connection) => connection.close().await,
        Err(error) => Err(error),
    };
    if let Err(error) = attempt {
        let host = options.get_host();
        let port = options.get_port();
        panic!(
            "\n\nNo PostgreSQL server answers at {host}:{port} (database {database:?}): \
             {error}\n\
             These tests need one. Start the local cluster with\n\
             \x20   pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
             or point DATABASE_URL at a server (PostgreSQL 14 or newer).\n",
            database = options.get_database().unwrap_or("postgres"),
        );
    }
}

/// A new, migrated store in a schema of its own, named `es_test_<unix time>_<random>`, on
/// a pool of [`POOL_SIZE`] connections.
///
/// # Panics
///
/// As [`connect`], and when the migration fails.
pub async fn fresh_store() -> PgEventStore {
    fresh_store_with(|builder| builder).await
}

/// As [`fresh_store`], configured by `configure`.
///
/// # Panics
///
/// As [`fresh_store`].
pub async fn fresh_store_with(
    configure: impl FnOnce(PgEventStoreBuilder) -> PgEventStoreBuilder,
) -> PgEventStore {
    fresh_store_sized(POOL_SIZE, configure).await
}

/// As [`fresh_store_with`], on a pool of `max` connections.
///
/// # Panics
///
/// As [`fresh_store`].
pub async fn fresh_store_sized(
    max: u32,
    configure: impl FnOnce(PgEventStoreBuilder) -> PgEventStoreBuilder,
) -> PgEventStore {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let schema = format!("es_test_{now}_{}", uuid::Uuid::now_v7().simple());
    let schema = &schema[..schema.len().min(63)];
    let pool = connect(schema, max).await;
    drop_stale_schemas(&pool).await;
    let store = configure(
        PgEventStore::builder(pool)
            .schema(schema)
            .expect("valid schema")
            .keep_connections(KEEP),
    )
    .build();
    store.migrate().await.expect("migrate a fresh schema");
    store
}

/// As a store that opens its pool itself: the connections of finished calls are kept at
/// hand for its next calls.
const KEEP: Option<std::time::Duration> =
    Some(es_postgres::PgPoolSettings::DEFAULT_KEEP_CONNECTIONS);

/// A second store on the same schema as `store`, with a pool of its own of 4 connections
/// carrying `application_name` (so a test can find and kill them): another process, in
/// effect.
///
/// # Panics
///
/// As [`connect`].
pub async fn second_store(
    store: &PgEventStore,
    application_name: &str,
    configure: impl FnOnce(PgEventStoreBuilder) -> PgEventStoreBuilder,
) -> PgEventStore {
    let pool = connect(application_name, 4).await;
    configure(
        PgEventStore::builder(pool)
            .schema(store.schema().as_str())
            .expect("valid schema")
            .keep_connections(KEEP),
    )
    .build()
}

/// Drops the store's schema (for tests that passed; a failed test leaves it for
/// inspection, and a later run drops it after a day).
///
/// # Panics
///
/// When the schema cannot be dropped.
pub async fn drop_schema(store: PgEventStore) {
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
