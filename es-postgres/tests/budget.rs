//! The connection budget every PostgreSQL test shares (`es_testkit::postgres`): a test's
//! first pool takes the test's share of it before connecting, its later pools draw from
//! the share, the share goes back when the last handle on its pools is gone, and a pool
//! larger than the whole budget fails the test at once. (The budget
//! alone, without a server, is tested in es-testkit.)
//!
//! Nothing else in this binary uses the budget, so its counts are this file's alone.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use es_testkit::postgres::ConnectionBudget;

#[tokio::test]
async fn a_pool_holds_its_share_of_the_budget_until_its_last_handle_is_dropped() {
    let budget = ConnectionBudget::global();
    let before = budget.available();
    let store = common::fresh_store_with(|b| b).await;
    assert_eq!(
        budget.available(),
        before - es_testkit::postgres::TEST_SHARE,
        "the test's share, for 12 connections and the listener's and the pools to come"
    );
    // A second pool of the same test draws from its share.
    let second = common::second_store(&store, "es-test-budget-second", |b| b).await;
    assert_eq!(
        budget.available(),
        before - es_testkit::postgres::TEST_SHARE
    );
    drop(second);
    // Two connections open at once.
    let pool = store.pool().clone();
    let (a, b) = tokio::join!(pool.acquire(), pool.acquire());
    drop((a.unwrap(), b.unwrap()));
    assert!(pool.size() >= 2);
    common::drop_schema(store.clone()).await;

    drop(store);
    assert_ne!(
        budget.available(),
        before,
        "a clone of the pool still holds it"
    );
    drop(pool);
    // Connections being handed back to the pool (sqlx does that in a task) and the
    // store's background tasks hold the pool a moment longer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while budget.available() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {before} connections are back after 10 s",
            budget.available()
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
#[should_panic(expected = "more than the whole budget")]
async fn a_pool_larger_than_the_budget_fails_at_once() {
    let whole = ConnectionBudget::global().total();
    let _ = common::connect("es-test-too-large", whole).await;
}
