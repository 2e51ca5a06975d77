//! A fresh schema per test on the server `DATABASE_URL` names: `es_testkit::postgres`, the
//! one helper every test of the workspace shares (with its connection budget), under the
//! names these tests use. The fault tests' private clusters are in `cluster.rs`.

#![allow(unused_imports, reason = "each test binary uses a different part")]
#![allow(
    clippy::expect_used,
    reason = "test support: a failed setup step is a failed test"
)]

pub(crate) use es_testkit::postgres::{
    connect, connect_to, connect_with, database_url, drop_schema, fresh_store, fresh_store_with,
    hold_connections, second_store,
};

use std::time::Duration;

use es_postgres::PgEventStore;
use sqlx::{AssertSqlSafe, Connection as _};

/// Creates the table `name` in the store's schema, of the ids of the events a test's
/// projection recorded, and returns its qualified name.
#[allow(dead_code, reason = "each test binary uses a different part")]
pub(crate) async fn create_table(store: &PgEventStore, name: &str) -> String {
    let table = format!("\"{}\".{name}", store.schema());
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (event_id uuid PRIMARY KEY)"
    )))
    .execute(store.pool())
    .await
    .expect("create the test's table");
    table
}

/// How many rows `table` holds.
#[allow(dead_code, reason = "each test binary uses a different part")]
pub(crate) async fn count(store: &PgEventStore, table: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .expect("count the test's table")
}

/// A multi-thread runtime of two workers, as a server or a test harness would start.
#[allow(dead_code, reason = "each test binary uses a different part")]
pub(crate) fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a multi-thread runtime")
}

/// Ends the server process `pid` from a connection of the test's own, and waits (up to
/// 10 s) until it is gone.
#[allow(dead_code, reason = "each test binary uses a different part")]
pub(crate) async fn terminate_backend(pid: i32) {
    let mut admin = sqlx::PgConnection::connect(&database_url())
        .await
        .expect("an admin connection");
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1, 10000)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .expect("terminate the backend");
    assert!(ended, "backend {pid} ended");
    admin.close().await.expect("close the admin connection");
}

/// Waits (up to 30 s, else panics with `what`) until `count`, a `count(*)` query bound
/// to `application_name`, finds none, run on `store`'s pool.
#[allow(dead_code, reason = "each test binary uses a different part")]
pub(crate) async fn until_none(
    store: &PgEventStore,
    count: &'static str,
    application_name: &str,
    what: &str,
) {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let found: i64 = sqlx::query_scalar(count)
                .bind(application_name)
                .fetch_one(store.pool())
                .await
                .expect("count the sessions");
            if found == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}
