//! The whole suite again, with every transaction SERIALIZABLE (as a role or database
//! default might make it): serialization failures must surface as typed conflicts or be
//! absorbed, never as raw SQL errors. The engine cases run here too, not only the store
//! contract: racing runners, leases, checkpoints and parked events issue statements of
//! their own, which serialization failures must not break either.

#![allow(
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

async fn serializable_store() -> es_postgres::PgEventStore {
    let store = common::fresh_store().await;
    let options = (*store.pool().connect_options())
        .clone()
        .options([("default_transaction_isolation", "serializable")]);
    let schema = store.schema().as_str().to_owned();
    // The migrating pool goes back to the connection budget before the serializable one
    // takes its share: a test holding one pool while waiting for another could wait on
    // tests doing the same.
    drop(store);
    let pool = common::connect_with(options, 12).await;
    es_postgres::PgEventStore::builder(pool)
        .schema(&schema)
        .expect("valid schema")
        .build()
}

es_testkit::conformance_tests!(serializable_store(), teardown = common::drop_schema);
