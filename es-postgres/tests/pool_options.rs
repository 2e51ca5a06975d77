//! The pool a store opens for itself is configured as documented: `connect`'s defaults,
//! each of the builder's pool setters, and a whole `PgPoolOptions` of the caller's, which
//! still gets the store's session deadlines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use es_postgres::{PgEventStore, PgPoolOptions};

/// Bounds every wait of these tests; none measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

async fn show(store: &PgEventStore, setting: &'static str) -> String {
    sqlx::query_scalar("SELECT current_setting($1)")
        .bind(setting)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn connect_picks_the_documented_defaults() {
    let _permit = common::hold_connections(11).await;
    let store = PgEventStore::connect(&common::database_url())
        .await
        .unwrap();
    let options = store.pool().options();
    assert_eq!(options.get_max_connections(), 10);
    assert_eq!(options.get_min_connections(), 0);
    assert_eq!(options.get_acquire_timeout(), Duration::from_secs(5));
    assert_eq!(options.get_idle_timeout(), Some(Duration::from_secs(600)));
    assert_eq!(options.get_max_lifetime(), Some(Duration::from_secs(1800)));
    assert_eq!(show(&store, "statement_timeout").await, "30s");
    assert_eq!(show(&store, "lock_timeout").await, "10s");
    assert_eq!(
        show(&store, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    assert_eq!(
        show(&store, "default_transaction_isolation").await,
        "read committed"
    );
}

#[tokio::test]
async fn the_builder_sets_every_pool_option() {
    let _permit = common::hold_connections(4).await;
    let store = PgEventStore::builder_for_url(&common::database_url())
        .unwrap()
        .max_connections(3)
        .min_connections(2)
        .acquire_timeout(Duration::from_millis(300))
        .idle_timeout(Some(Duration::from_secs(42)))
        .max_lifetime(None)
        .connect()
        .await
        .unwrap();
    let options = store.pool().options();
    assert_eq!(options.get_max_connections(), 3);
    assert_eq!(options.get_min_connections(), 2);
    assert_eq!(options.get_acquire_timeout(), Duration::from_millis(300));
    assert_eq!(options.get_idle_timeout(), Some(Duration::from_secs(42)));
    assert_eq!(options.get_max_lifetime(), None);

    // The minimum is kept open with no call asking for it.
    tokio::time::timeout(PATIENCE, async {
        while store.pool().size() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the pool opens its minimum of connections");

    // The maximum holds: with three taken, a fourth waits out the acquire timeout.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(store.pool().acquire().await.unwrap());
    }
    let fourth = tokio::time::timeout(PATIENCE, store.pool().acquire())
        .await
        .expect("the acquire timeout ends the wait");
    assert!(
        matches!(fourth, Err(sqlx::Error::PoolTimedOut)),
        "{fourth:?}"
    );
    drop(held);
    store.pool().acquire().await.unwrap();
}

#[tokio::test]
async fn pool_options_of_the_callers_keep_the_stores_session_deadlines() {
    let _permit = common::hold_connections(3).await;
    let store = PgEventStore::builder_for_url(&common::database_url())
        .unwrap()
        .statement_timeout(Some(Duration::from_secs(7)))
        .pool_options(
            PgPoolOptions::new()
                .max_connections(2)
                .acquire_timeout(Duration::from_secs(3))
                .test_before_acquire(false),
        )
        .min_connections(1)
        .connect()
        .await
        .unwrap();
    let options = store.pool().options();
    assert_eq!(options.get_max_connections(), 2);
    assert_eq!(
        options.get_min_connections(),
        1,
        "a setter after it still applies"
    );
    assert_eq!(options.get_acquire_timeout(), Duration::from_secs(3));
    assert!(!options.get_test_before_acquire());
    assert_eq!(show(&store, "statement_timeout").await, "7s");
    assert_eq!(show(&store, "lock_timeout").await, "10s");
}

#[tokio::test]
async fn a_pool_of_no_connections_is_given_one() {
    let _permit = common::hold_connections(2).await;
    let store = PgEventStore::builder_for_url(&common::database_url())
        .unwrap()
        .pool_options(PgPoolOptions::new().max_connections(0).min_connections(5))
        .connect()
        .await
        .unwrap();
    let options = store.pool().options();
    assert_eq!(options.get_max_connections(), 1);
    assert_eq!(options.get_min_connections(), 1);
    assert_eq!(show(&store, "lock_timeout").await, "10s");
}
