//! A projection's database failing for a moment (here: its own connection killed while it
//! works) is the database's failure, not the projection's: the runner starts over instead
//! of parking a good event, and an inline projection's append is run again by `Repository`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use common::{count, create_table};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    ErrorPolicy, EventEnvelope, EventStore as _, ExpectedVersion, NewEvent, ProjectionRunner,
    RawEvent, Repository, RunnerError, StreamId, Version,
};
use es_postgres::{PgEventStore, PgInlineProjection, PgProjection, PgTransactionalProjection};
use es_testkit::fixture::{Account, AccountCommand, AccountEvent};
use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, PgConnection};

/// Kills the connection it runs on, once: the server ends the session mid-transaction.
async fn kill_own_connection_once(
    armed: &AtomicBool,
    connection: &mut PgConnection,
) -> Result<(), BoxError> {
    if armed.swap(false, Ordering::SeqCst) {
        sqlx::query("SELECT pg_terminate_backend(pg_backend_pid())")
            .execute(&mut *connection)
            .await?;
    }
    Ok(())
}

struct Recording {
    table: String,
    kill_at: Version,
    armed: Arc<AtomicBool>,
}

impl PgProjection for Recording {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "recording"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        if envelope.version == self.kill_at {
            kill_own_connection_once(&self.armed, tx).await?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id) VALUES ($1)",
            self.table
        )))
        .bind(envelope.event_id)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// Under the park policy, a transactional projection whose connection is killed while it
/// handles an event parks nothing: the catch-up stops interrupted, having committed
/// nothing of the batch, and the next one handles every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_parks_no_good_event() {
    let store = common::fresh_store().await;
    let table = create_table(&store, "recording").await;
    let stream = StreamId::new("account", "1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            (1..=6)
                .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
                .collect(),
        )
        .await
        .unwrap();
    let armed = Arc::new(AtomicBool::new(true));
    let projection = PgTransactionalProjection::new(
        store.clone(),
        Recording {
            table: table.clone(),
            kill_at: Version::new(4),
            armed: Arc::clone(&armed),
        },
    );
    let mut runner = ProjectionRunner::new(store.clone(), projection)
        .with_batch_size(100)
        .with_error_policy(ErrorPolicy::park());
    match runner.catch_up().await {
        Err(RunnerError::Interrupted { .. }) => {}
        other => panic!("expected the catch-up interrupted, got {other:?}"),
    }
    assert!(runner.parked().await.unwrap().is_empty(), "nothing parked");
    assert_eq!(
        count(&store, &table).await,
        0,
        "the batch was rolled back whole"
    );
    assert_eq!(runner.catch_up().await.unwrap(), 6);
    assert_eq!(count(&store, &table).await, 6);
    assert!(runner.parked().await.unwrap().is_empty());
    common::drop_schema(store).await;
}

struct Audit {
    table: String,
    armed: Arc<AtomicBool>,
}

impl PgInlineProjection for Audit {
    fn name(&self) -> &str {
        "audit"
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            kill_own_connection_once(&self.armed, tx).await?;
            for event in events {
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {} (event_id) VALUES ($1)",
                    self.table
                )))
                .bind(event.event_id)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }
}

/// An inline projection whose connection is killed makes the append fail as the store
/// failing for a moment (nothing stored), so `Repository` runs the command again, and the
/// command and its projected row are recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_in_an_inline_projection_is_ridden_out() {
    let plain = common::fresh_store().await;
    let table = create_table(&plain, "audit").await;
    let armed = Arc::new(AtomicBool::new(false));
    let store = PgEventStore::builder(plain.pool().clone())
        .schema(plain.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Audit {
            table: table.clone(),
            armed: Arc::clone(&armed),
        }))
        .build();
    let accounts = Repository::<Account, _>::new(store.clone());
    accounts
        .execute(
            "1",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    armed.store(true, Ordering::SeqCst);
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        accounts.execute("1", AccountCommand::Deposit { amount: 5 }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(outcome.version, Version::new(2));
    assert!(!armed.load(Ordering::SeqCst), "the connection was killed");
    assert_eq!(count(&plain, &table).await, 2);
    assert_eq!(
        plain
            .stream_version(&StreamId::new("account", "1").unwrap())
            .await
            .unwrap(),
        Version::new(2)
    );
    common::drop_schema(plain).await;
}

/// Times out (the store's statement deadline) on the event at `at`, every time.
struct Slow {
    table: String,
    at: Version,
}

impl PgProjection for Slow {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "slow"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        if envelope.version == self.at {
            sqlx::query("SELECT pg_sleep(5)").execute(&mut *tx).await?;
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id) VALUES ($1)",
            self.table
        )))
        .bind(envelope.event_id)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// A storage failure that recurs at one event every time (here a statement that always
/// outlasts the statement deadline) is, after a few tries, taken for the event's own: the
/// live runner parks it under the park policy and goes on, instead of starting over
/// forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_that_recurs_at_one_event_is_that_events_failure() {
    let owner = common::fresh_store().await;
    let table = create_table(&owner, "slow").await;
    let store = PgEventStore::builder_for_url(&common::database_url())
        .unwrap()
        .schema(owner.schema().as_str())
        .unwrap()
        .statement_timeout(Some(Duration::from_millis(200)))
        .connect()
        .await
        .unwrap();
    let stream = StreamId::new("account", "1").unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            (1..=4)
                .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
                .collect(),
        )
        .await
        .unwrap();
    let projection = PgTransactionalProjection::new(
        store.clone(),
        Slow {
            table: table.clone(),
            at: Version::new(2),
        },
    );
    let mut runner = ProjectionRunner::new(store.clone(), projection)
        .with_error_policy(ErrorPolicy::park())
        .with_lease(None);
    let status = runner.status();
    let running = tokio::spawn(async move { runner.run().await });
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let now = status.get();
            if now.parked == 1 && count(&owner, &table).await == 3 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the event is parked and the others handled");
    assert!(!running.is_finished());
    running.abort();
    common::drop_schema(owner).await;
}

/// A store failure that lasts (here: the checkpoints table is gone) stops a live runner
/// with the error, instead of having it start over forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lasting_store_failure_stops_a_live_runner() {
    let store = common::fresh_store().await;
    let table = create_table(&store, "recording").await;
    sqlx::query(AssertSqlSafe(format!(
        "ALTER TABLE \"{}\".checkpoints RENAME TO checkpoints_gone",
        store.schema()
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let projection = PgTransactionalProjection::new(
        store.clone(),
        Recording {
            table,
            kill_at: Version::new(0),
            armed: Arc::new(AtomicBool::new(false)),
        },
    );
    let mut runner = ProjectionRunner::new(store.clone(), projection).with_lease(None);
    let stopped = tokio::time::timeout(Duration::from_secs(30), runner.run())
        .await
        .expect("the runner stops");
    assert!(stopped.is_err(), "{stopped:?}");
    let said = es_core::error::display_chain(&stopped.unwrap_err());
    assert!(said.contains("checkpoints"), "the cause is told: {said}");
    common::drop_schema(store).await;
}
