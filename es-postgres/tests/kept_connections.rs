//! A store that opens its pool keeps the connection of a finished call at hand for its
//! next call (skipping sqlx's check on the way back to the pool), under the idle check's
//! rule: a connection that died is found by the next call within the idle limit and
//! replaced after it, never kept failing; past the limit it goes back to the pool
//! unseen; the pool's lifetime and `close` still hold, and a pool with none to spare
//! gets its connection back at once.
//!
//! Each test has a store on a pool of its own, opened lazily with an `application_name`
//! of its own, on a schema migrated beforehand through another pool: the only server
//! sessions carrying that name are the ones the store's calls opened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use es_core::{EventStore, ExpectedVersion, NewEvent, StreamId};
use es_postgres::{PgEventStore, PgEventStoreBuilder, PgPoolSettings};
use es_testkit::fixture::AccountEvent;
use uuid::Uuid;

/// Bounds every wait of these tests; none measures speed.
const PATIENCE: Duration = Duration::from_secs(30);

/// A schema migrated through the test kit's pool, and a store on it with a pool of its
/// own (at most two connections, none opened yet, notifications off so that no task of
/// the store's takes a connection behind the test's back), configured by `configure`.
struct Setup {
    setup: PgEventStore,
    store: PgEventStore,
    application_name: String,
}

async fn setup(
    configure: impl FnOnce(PgEventStoreBuilder<PgPoolSettings>) -> PgEventStoreBuilder<PgPoolSettings>,
) -> Setup {
    let setup = common::fresh_store().await;
    let application_name = format!("es-kept-{}", Uuid::now_v7().simple());
    let url = format!(
        "{}?application_name={application_name}",
        common::database_url()
    );
    let store = configure(
        PgEventStore::builder_for_url(&url)
            .unwrap()
            .schema(setup.schema().as_str())
            .unwrap()
            .notify(false)
            .max_connections(2),
    )
    .connect()
    .await
    .unwrap();
    Setup {
        setup,
        store,
        application_name,
    }
}

impl Setup {
    /// Appends one event to a new stream.
    async fn append(&self) -> Result<(), es_core::AppendError> {
        let stream = StreamId::new("kept", &Uuid::now_v7().simple().to_string()).unwrap();
        let event = AccountEvent::Opened {
            owner: "ada".into(),
        };
        self.store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(event)],
            )
            .await
            .map(drop)
    }

    /// The server processes of the store's sessions.
    async fn backends(&self) -> Vec<i32> {
        sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
        )
        .bind(&self.application_name)
        .fetch_all(self.setup.pool())
        .await
        .unwrap()
    }

    /// Ends every session of the store's from a connection of the test's own, and waits
    /// until they are gone.
    async fn kill_backends(&self) -> Vec<i32> {
        let killed = self.backends().await;
        for &pid in &killed {
            common::terminate_backend(pid).await;
        }
        killed
    }

    async fn teardown(self) {
        self.store.pool().close().await;
        common::drop_schema(self.setup).await;
    }
}

/// A minute's keeping (half the acquire timeout, past any wait of these tests), within
/// the idle check's ten minutes.
fn long_keep(builder: PgEventStoreBuilder<PgPoolSettings>) -> PgEventStoreBuilder<PgPoolSettings> {
    builder
        .acquire_timeout(Duration::from_secs(120))
        .ping_after_idle(Some(Duration::from_secs(600)))
        .keep_connections(Some(Duration::from_secs(600)))
}

/// Waits (within [`PATIENCE`]) until `done` holds.
async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
    tokio::time::timeout(PATIENCE, async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_calls_connection_is_kept_for_the_next_and_given_back_when_unused() {
    let _permit = common::hold_connections(3).await;
    // The defaults: kept for 100 ms, checked after a second idle.
    let setup = setup(|b| b).await;
    for _ in 0..20 {
        setup.append().await.unwrap();
        // Kept by the store, not back in the pool (where sqlx would check it).
        assert_eq!(setup.store.pool().num_idle(), 0);
    }
    // One connection served every call: none was out being checked when the next began.
    assert_eq!(setup.store.pool().size(), 1);
    assert_eq!(setup.backends().await.len(), 1);
    // Unused for a while, it goes back to the pool.
    eventually("the kept connection goes back to the pool", async || {
        setup.store.pool().num_idle() == 1
    })
    .await;
    setup.append().await.unwrap();
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_kept_no_longer_than_the_idle_check_allows() {
    let _permit = common::hold_connections(3).await;
    // Kept for ten minutes, were it not for the check after 200 ms idle.
    let setup = setup(|b| {
        b.ping_after_idle(Some(Duration::from_millis(200)))
            .keep_connections(Some(Duration::from_secs(600)))
    })
    .await;
    setup.append().await.unwrap();
    assert_eq!(setup.store.pool().num_idle(), 0, "kept");
    eventually("the kept connection goes back to the pool", async || {
        setup.store.pool().num_idle() == 1
    })
    .await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_not_kept_while_the_pool_has_none_to_spare() {
    let _permit = common::hold_connections(3).await;
    let setup = setup(long_keep).await;
    // One of the pool's two connections is the test's: the append's is the other, and
    // with nothing idle and no room left, someone may be waiting for it.
    let held = setup.store.pool().acquire().await.unwrap();
    setup.append().await.unwrap();
    eventually(
        "the append's connection goes back to the pool",
        async || setup.store.pool().num_idle() == 1,
    )
    .await;
    drop(held);
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_pool_does_not_wait_for_a_kept_connection() {
    let _permit = common::hold_connections(3).await;
    // Kept for a minute (half the acquire timeout) unless the pool closes.
    let setup = setup(long_keep).await;
    setup.append().await.unwrap();
    assert_eq!(setup.store.pool().num_idle(), 0, "kept");
    tokio::time::timeout(PATIENCE, setup.store.pool().close())
        .await
        .expect("the pool closes with a connection kept at hand");
    let after = tokio::time::timeout(PATIENCE, setup.append())
        .await
        .expect("a call after the close fails at once");
    assert!(after.is_err(), "{after:?}");
    eventually("the kept connection's session ends", async || {
        setup.backends().await.is_empty()
    })
    .await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_that_died_fails_one_call_and_is_not_kept_again() {
    let _permit = common::hold_connections(4).await;
    let setup = setup(|b| {
        b.ping_after_idle(Some(Duration::from_secs(600)))
            .keep_connections(Some(Duration::from_secs(600)))
    })
    .await;
    setup.append().await.unwrap();
    let killed = setup.kill_backends().await;
    assert_eq!(killed.len(), 1);
    // Within the idle limit nothing checks it: the call finds it dead...
    let found = tokio::time::timeout(PATIENCE, setup.append())
        .await
        .expect("a dead connection fails at once");
    assert!(found.is_err(), "an unchecked dead connection: {found:?}");
    // ...and closes it rather than keeping it: every later call works.
    for _ in 0..5 {
        setup.append().await.unwrap();
    }
    let now = setup.backends().await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, killed);
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_that_died_while_unused_past_the_limit_is_replaced_unseen() {
    let _permit = common::hold_connections(4).await;
    let idle = Duration::from_millis(300);
    let setup = setup(|b| b.ping_after_idle(Some(idle))).await;
    setup.append().await.unwrap();
    let killed = setup.kill_backends().await;
    assert_eq!(killed.len(), 1);
    tokio::time::sleep(idle * 2).await;
    setup.append().await.unwrap();
    assert_ne!(setup.backends().await, killed);
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_in_constant_use_is_still_retired_at_the_pools_lifetime() {
    let _permit = common::hold_connections(4).await;
    let setup = setup(|b| {
        b.ping_after_idle(Some(Duration::from_secs(600)))
            .keep_connections(Some(Duration::from_secs(600)))
            .max_lifetime(Some(Duration::from_millis(300)))
    })
    .await;
    setup.append().await.unwrap();
    let first = setup.backends().await;
    assert_eq!(first.len(), 1);
    // Never unused for long: only its age sends it back, where the pool retires it.
    eventually("the first connection is retired", async || {
        setup.append().await.unwrap();
        let now = setup.backends().await;
        !now.contains(&first[0])
    })
    .await;
    setup.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_before_every_call_keeps_no_connection() {
    let _permit = common::hold_connections(3).await;
    let setup = setup(|b| {
        b.ping_after_idle(Some(Duration::ZERO))
            .keep_connections(Some(Duration::from_secs(600)))
    })
    .await;
    setup.append().await.unwrap();
    eventually("the connection goes back to the pool", async || {
        setup.store.pool().num_idle() == 1
    })
    .await;
    setup.teardown().await;
}

/// A store dropped outside any runtime (a synchronous `main` between two `block_on`s)
/// still gives its kept connections back to the pool, so that closing the pool later
/// does not wait for them for ever.
#[test]
fn a_store_dropped_outside_a_runtime_gives_its_kept_connections_back() {
    let runtime = common::multi_thread_runtime();
    let (setup, _permit) = runtime.block_on(async {
        let permit = common::hold_connections(3).await;
        let setup = setup(long_keep).await;
        setup.append().await.unwrap();
        assert_eq!(setup.store.pool().num_idle(), 0, "kept");
        (setup, permit)
    });
    let pool = setup.store.pool().clone();
    let Setup {
        setup: base, store, ..
    } = setup;
    drop(store);
    runtime.block_on(async {
        tokio::time::timeout(PATIENCE, pool.close())
            .await
            .expect("the pool closes: the dropped store's connection went back");
        common::drop_schema(base).await;
    });
}

/// The task that gives kept connections back ends with the runtime it ran on (one per
/// test, one per request): what it kept goes back to the pool then, rather than holding
/// the pool's slots (and its `close`) until the store's next call.
#[test]
fn kept_connections_go_back_when_the_runtime_that_kept_them_shuts_down() {
    let main = common::multi_thread_runtime();
    let (setup, _permit) = main.block_on(async {
        let permit = common::hold_connections(3).await;
        (setup(long_keep).await, permit)
    });
    let other = common::multi_thread_runtime();
    other.block_on(async {
        setup.append().await.unwrap();
        assert_eq!(setup.store.pool().num_idle(), 0, "kept");
    });
    drop(other);
    main.block_on(async {
        tokio::time::timeout(PATIENCE, setup.store.pool().close())
            .await
            .expect("the pool closes: the kept connection went back with its runtime");
        common::drop_schema(setup.setup).await;
    });
}
