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

use es_postgres::PgEventStore;
use sqlx::AssertSqlSafe;

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
