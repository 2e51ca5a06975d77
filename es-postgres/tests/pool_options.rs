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

use es_postgres::{PgEventStore, PgEventStoreBuilder, PgPoolOptions, PgPoolSettings};

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

/// The server process behind the pool's one connection.
async fn backend(pool: &sqlx::PgPool) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(pool)
        .await
}

/// Ends the server process `pid` behind `pool`'s one connection from a connection of the
/// test's own, once that connection is back in the pool (sqlx checks it on the way back,
/// in a task of its own), and waits until the process is gone, so that the connection is
/// dead when the test next uses it.
async fn kill(pool: &sqlx::PgPool, pid: i32) {
    tokio::time::timeout(PATIENCE, async {
        while pool.num_idle() < 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the connection goes back to the pool");
    common::terminate_backend(pid).await;
}

/// A store's pool of one connection, checking connections as `configure` says.
async fn one_connection(
    configure: impl FnOnce(PgEventStoreBuilder<PgPoolSettings>) -> PgEventStoreBuilder<PgPoolSettings>,
) -> PgEventStore {
    configure(
        PgEventStore::builder_for_url(&common::database_url())
            .unwrap()
            .max_connections(1),
    )
    .connect()
    .await
    .unwrap()
}

#[tokio::test]
async fn a_connection_used_within_the_idle_limit_is_not_checked_again() {
    let _permit = common::hold_connections(3).await;
    let store = one_connection(|b| b.ping_after_idle(Some(Duration::from_secs(600)))).await;
    let pid = backend(store.pool()).await.unwrap();
    kill(store.pool(), pid).await;
    // No round trip checks it: the call itself finds the connection dead...
    let found = tokio::time::timeout(PATIENCE, backend(store.pool()))
        .await
        .expect("a dead connection fails at once");
    assert!(found.is_err(), "an unchecked dead connection: {found:?}");
    // ...and the pool opens another for the next call.
    let next = backend(store.pool()).await.unwrap();
    assert_ne!(next, pid);
}

#[tokio::test]
async fn a_connection_idle_past_the_limit_is_checked_and_replaced_unseen() {
    let _permit = common::hold_connections(3).await;
    let idle = Duration::from_millis(200);
    let store = one_connection(|b| b.ping_after_idle(Some(idle))).await;
    let pid = backend(store.pool()).await.unwrap();
    kill(store.pool(), pid).await;
    tokio::time::sleep(idle * 2).await;
    let next = backend(store.pool()).await.unwrap();
    assert_ne!(
        next, pid,
        "the check found the dead connection and replaced it"
    );
}

#[tokio::test]
async fn checking_before_every_call_replaces_a_dead_connection_at_once() {
    let _permit = common::hold_connections(6).await;
    // As the store's setting, and as sqlx's own default through options of the caller's.
    for store in [
        one_connection(|b| b.ping_after_idle(Some(Duration::ZERO))).await,
        one_connection(|b| b.pool_options(PgPoolOptions::new().max_connections(1))).await,
    ] {
        let pid = backend(store.pool()).await.unwrap();
        kill(store.pool(), pid).await;
        let next = backend(store.pool()).await.unwrap();
        assert_ne!(next, pid);
    }
}

#[tokio::test]
async fn the_default_checks_only_connections_idle_for_a_second() {
    let settings = PgEventStore::builder_for_url(&common::database_url()).unwrap();
    assert!(
        format!("{settings:?}").contains("ping_after_idle: Some(1s)"),
        "{settings:?}"
    );
    let given = settings.pool_options(PgPoolOptions::new());
    assert!(
        format!("{given:?}").contains("ping_after_idle: \"as the pool options given\""),
        "{given:?}"
    );
    assert_eq!(
        PgPoolSettings::DEFAULT_PING_AFTER_IDLE,
        Duration::from_secs(1)
    );
    let _permit = common::hold_connections(3).await;
    let store = one_connection(|b| b).await;
    assert!(!store.pool().options().get_test_before_acquire());
    // Used again at once: not checked, so the call finds the connection dead.
    let pid = backend(store.pool()).await.unwrap();
    kill(store.pool(), pid).await;
    assert!(backend(store.pool()).await.is_err());
    // Used again after more than a second: checked, and replaced unseen.
    let pid = backend(store.pool()).await.unwrap();
    kill(store.pool(), pid).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_ne!(backend(store.pool()).await.unwrap(), pid);
}
