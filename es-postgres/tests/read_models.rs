//! Read models declare their tables ([`PgProjection::migrations`]) and name them through
//! [`PgTable`]: the steps run once each, in the store's schema, before the first batch and
//! before a rebuild's reset; again at every restart and from instances that start at once
//! they run no more; an edited, renamed, unknown or inserted-below step is refused, typed,
//! and stops the runner (in memory too) without parking anything; a failing step leaves
//! nothing behind; a runner's start waits a bounded time for the migration lock; and table
//! names are quoted whatever they hold. Inline projections' steps run in `migrate`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    DeadLetterStore as _, ErrorPolicy, EventEnvelope, EventStore as _, ExpectedVersion, NewEvent,
    Partition, ProjectionRunner, RawEvent, RunnerError, RunnerState, StreamId,
};
use es_postgres::{
    PgEventStore, PgInlineProjection, PgMigration, PgProjection, PgProjectionError, PgTable,
    PgTransactionalProjection,
};
use futures_util::future::BoxFuture;
use serde_json::json;
use sqlx::{PgConnection, SqlStr};

/// Bounds every wait of these tests; none measures speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// Steps that fail if run twice: each creates a table (no `IF NOT EXISTS`) and logs itself
/// in `level_steps`.
const STEPS: &[PgMigration] = &[
    PgMigration::new(
        1,
        "levels",
        "CREATE TABLE {schema}.levels (stream_id text PRIMARY KEY, events bigint NOT NULL);
         CREATE TABLE {schema}.level_steps (version integer NOT NULL);
         INSERT INTO {schema}.level_steps VALUES (1);",
    ),
    PgMigration::new(
        2,
        "last event type",
        "ALTER TABLE {schema}.levels ADD COLUMN last_type text;
         INSERT INTO {schema}.level_steps VALUES (2);",
    ),
];

/// Events per stream, and the type of the last, in `levels`.
struct Levels {
    migrations: Vec<PgMigration>,
    count: SqlStr,
    empty: SqlStr,
}

impl Levels {
    fn new(store: &PgEventStore, migrations: &[PgMigration]) -> Self {
        let table = store.table("levels").unwrap();
        Self {
            migrations: migrations.to_vec(),
            count: table.sql(
                "INSERT INTO {table} (stream_id, events, last_type) VALUES ($1, 1, $2)
                 ON CONFLICT (stream_id) DO UPDATE
                 SET events = {table}.events + 1, last_type = EXCLUDED.last_type",
            ),
            empty: table.sql("TRUNCATE {table}"),
        }
    }
}

impl PgProjection for Levels {
    type Event = RawEvent;

    fn name(&self) -> &str {
        "levels"
    }

    fn migrations(&self) -> &[PgMigration] {
        &self.migrations
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<RawEvent>,
    ) -> Result<(), BoxError> {
        sqlx::query(self.count.clone())
            .bind(envelope.stream_id.as_str())
            .bind(&envelope.event.event_type)
            .execute(tx)
            .await?;
        Ok(())
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(self.empty.clone()).execute(tx).await?;
        Ok(())
    }
}

fn runner(
    store: &PgEventStore,
    migrations: &[PgMigration],
) -> ProjectionRunner<PgTransactionalProjection<Levels>, PgEventStore> {
    let projection = PgTransactionalProjection::new(store.clone(), Levels::new(store, migrations));
    ProjectionRunner::new(store.clone(), projection)
}

async fn append(store: &PgEventStore, stream: &str, event_type: &str) {
    let stream = StreamId::new("item", stream).unwrap();
    let event = RawEvent::new(event_type, 1, json!({}));
    store
        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new(event)])
        .await
        .unwrap();
}

/// `(stream, events, last type)` of every row of `levels`.
async fn levels(store: &PgEventStore) -> Vec<(String, i64, Option<String>)> {
    let table = store.table("levels").unwrap();
    sqlx::query_as(table.sql("SELECT stream_id, events, last_type FROM {table} ORDER BY stream_id"))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// The steps that ran, in the order they ran.
async fn steps_run(store: &PgEventStore) -> Vec<i32> {
    let table = store.table("level_steps").unwrap();
    sqlx::query_scalar(table.sql("SELECT version FROM {table}"))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// What the schema recorded of read model `read_model`: `(version, name)`.
async fn recorded(store: &PgEventStore, read_model: &str) -> Vec<(i32, String)> {
    let table = store.table("es_read_model_migrations").unwrap();
    sqlx::query_as(
        table.sql("SELECT version, name FROM {table} WHERE read_model = $1 ORDER BY version"),
    )
    .bind(read_model)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// The projection's own error under a runner's.
fn projection_error(error: &RunnerError) -> &PgProjectionError {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if let Some(found) = error.downcast_ref::<PgProjectionError>() {
            return found;
        }
        source = error.source();
    }
    panic!("no projection error under {error:?}")
}

#[tokio::test]
async fn steps_run_once_before_the_first_batch_and_never_again_on_restarts() {
    let store = common::fresh_store().await;
    append(&store, "a", "Received").await;
    append(&store, "a", "Shipped").await;
    append(&store, "b", "Received").await;

    // No table was made by hand: the runner's start makes it, before the first batch.
    assert_eq!(runner(&store, STEPS).catch_up().await.unwrap(), 3);
    assert_eq!(
        levels(&store).await,
        [
            ("item-a".to_owned(), 2, Some("Shipped".to_owned())),
            ("item-b".to_owned(), 1, Some("Received".to_owned())),
        ]
    );
    assert_eq!(steps_run(&store).await, [1, 2]);
    assert_eq!(
        recorded(&store, "levels").await,
        [(1, "levels".to_owned()), (2, "last event type".to_owned())]
    );

    // Restarts (new instances) find the steps applied, and run none again.
    for _ in 0..3 {
        append(&store, "b", "Shipped").await;
        runner(&store, STEPS).catch_up().await.unwrap();
    }
    assert_eq!(steps_run(&store).await, [1, 2]);
    assert_eq!(levels(&store).await[1].1, 4);
    assert!(
        store
            .migrate_read_model("levels", STEPS)
            .await
            .unwrap()
            .is_empty()
    );

    // A step added later runs once, on the next start.
    let mut more = STEPS.to_vec();
    more.push(PgMigration::new(
        3,
        "by type",
        "CREATE INDEX levels_by_type ON {schema}.levels (last_type);
         INSERT INTO {schema}.level_steps VALUES (3);",
    ));
    runner(&store, &more).catch_up().await.unwrap();
    runner(&store, &more).catch_up().await.unwrap();
    assert_eq!(steps_run(&store).await, [1, 2, 3]);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn instances_that_start_at_once_apply_each_step_once() {
    let store = es_testkit::postgres::fresh_store_sized(2, |builder| builder).await;
    for n in 0..20 {
        append(&store, &n.to_string(), "Received").await;
    }
    // Four partitions of the read model, each on a store of its own (its own connections,
    // as separate processes), all starting together.
    let mut instances = Vec::new();
    for index in 0..4 {
        let pool = common::connect(&format!("read-models-{index}"), 2).await;
        let own = PgEventStore::builder(pool)
            .schema(store.schema().as_str())
            .unwrap()
            .notify(false)
            .build();
        instances.push(own);
    }
    let start = Arc::new(tokio::sync::Barrier::new(instances.len()));
    let mut runs = Vec::new();
    for (index, own) in instances.iter().enumerate() {
        let start = Arc::clone(&start);
        let mut runner = runner(own, STEPS)
            .with_partition(Partition::new(u32::try_from(index).unwrap(), 4).unwrap());
        runs.push(tokio::spawn(async move {
            start.wait().await;
            runner.catch_up().await
        }));
    }
    let mut handled = 0;
    for run in runs {
        let caught_up = tokio::time::timeout(PATIENCE, run)
            .await
            .expect("the runners finish")
            .expect("a runner task");
        handled += caught_up.expect("no starter fails");
    }
    assert_eq!(handled, 20);
    assert_eq!(steps_run(&store).await, [1, 2]);
    assert_eq!(recorded(&store, "levels").await.len(), 2);
    assert_eq!(levels(&store).await.len(), 20);

    // And deployment tools calling it at once, likewise.
    let mut calls = Vec::new();
    let mut more = STEPS.to_vec();
    more.push(PgMigration::new(
        3,
        "third",
        "INSERT INTO {schema}.level_steps VALUES (3);",
    ));
    let more: &'static [PgMigration] = Vec::leak(more);
    for own in &instances {
        let own = own.clone();
        calls.push(tokio::spawn(async move {
            own.migrate_read_model("levels", more).await
        }));
    }
    let mut ran = Vec::new();
    for call in calls {
        ran.extend(call.await.unwrap().unwrap());
    }
    assert_eq!(
        ran,
        [3],
        "one of the callers ran step 3, the others nothing"
    );
    assert_eq!(steps_run(&store).await, [1, 2, 3]);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn an_edited_renamed_or_unknown_step_is_refused() {
    let store = common::fresh_store().await;
    append(&store, "a", "Received").await;
    runner(&store, STEPS).catch_up().await.unwrap();

    let mut edited = STEPS.to_vec();
    edited[1] = PgMigration::new(
        2,
        "last event type",
        "ALTER TABLE {schema}.levels ADD COLUMN last_kind text;",
    );
    let error = store
        .migrate_read_model("levels", &edited)
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            PgProjectionError::MigrationEdited { projection, schema, version: 2, applied, declared: "last event type" }
                if projection == "levels" && schema == store.schema().as_str() && applied == "last event type"
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("new migration"), "{error}");
    // The runner stops with it, before any batch.
    append(&store, "a", "Shipped").await;
    let stopped = runner(&store, &edited).catch_up().await.unwrap_err();
    assert!(
        matches!(stopped, RunnerError::LoadCheckpoint { .. }),
        "{stopped:?}"
    );
    assert!(
        matches!(
            projection_error(&stopped),
            PgProjectionError::MigrationEdited { version: 2, .. }
        ),
        "{stopped:?}"
    );
    assert_eq!(levels(&store).await[0].1, 1, "no batch ran");

    let mut renamed = STEPS.to_vec();
    renamed[0] = PgMigration::new(1, "stock", STEPS[0].sql());
    let error = store
        .migrate_read_model("levels", &renamed)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PgProjectionError::MigrationEdited { version: 1, applied, declared: "stock", .. } if applied == "levels"),
        "{error:?}"
    );

    let error = store
        .migrate_read_model("levels", &STEPS[..1])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PgProjectionError::UnknownMigration { version: 2, name, .. } if name == "last event type"),
        "{error:?}"
    );

    let backwards = [STEPS[1], STEPS[0]];
    let error = store
        .migrate_read_model("levels", &backwards)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            PgProjectionError::MigrationsOutOfOrder {
                version: 1,
                previous: 2,
                ..
            }
        ),
        "{error:?}"
    );
    // Nothing of the refused lists ran; the declared one still goes on.
    assert_eq!(steps_run(&store).await, [1, 2]);
    runner(&store, STEPS).catch_up().await.unwrap();
    assert_eq!(levels(&store).await[0].1, 2);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn a_failing_step_leaves_nothing_behind() {
    let store = common::fresh_store().await;
    let broken = [
        STEPS[0],
        PgMigration::new(
            2,
            "broken",
            "ALTER TABLE {schema}.no_such_table ADD COLUMN x int;",
        ),
    ];
    let error = store
        .migrate_read_model("levels", &broken)
        .await
        .unwrap_err();
    let PgProjectionError::Database { projection, source } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(projection, "levels");
    assert!(!source.is_transient(), "{source:?}");
    let message = format!("{source}");
    assert!(message.contains("migration 2 (`broken`)"), "{message}");
    // Step 1 rolled back with it: no table, nothing recorded (not even the record's table,
    // made in the same transaction).
    for table in ["levels", "level_steps", "es_read_model_migrations"] {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(store.table(table).unwrap().qualified())
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert!(!exists, "{table}");
    }
    // Fixed, it runs.
    assert_eq!(
        store.migrate_read_model("levels", STEPS).await.unwrap(),
        [1, 2]
    );
    common::drop_schema(store).await;
}

#[tokio::test]
async fn tables_live_in_the_stores_schema_and_a_rebuild_empties_them() {
    let first = common::fresh_store().await;
    let second = common::fresh_store().await;
    append(&first, "a", "Received").await;
    append(&second, "b", "Received").await;
    append(&second, "c", "Received").await;

    // A rebuild on a new instance is its first act: the steps run before its reset.
    for store in [&first, &second] {
        runner(store, STEPS).rebuild().await.unwrap();
    }
    assert_eq!(levels(&first).await.len(), 1);
    assert_eq!(levels(&second).await.len(), 2);
    for store in [&first, &second] {
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT table_schema::text FROM information_schema.tables WHERE table_name = 'levels'
             AND table_schema = ANY($1)",
        )
        .bind([first.schema().as_str(), second.schema().as_str()])
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            schemas.len(),
            2,
            "each store's schema has a table of its own"
        );
    }

    // A rebuild empties the table through `reset` and builds it again.
    sqlx::query(
        first
            .table("levels")
            .unwrap()
            .sql("UPDATE {table} SET events = 99"),
    )
    .execute(first.pool())
    .await
    .unwrap();
    runner(&first, STEPS).rebuild().await.unwrap();
    assert_eq!(levels(&first).await[0].1, 1);
    assert_eq!(steps_run(&first).await, [1, 2]);
    common::drop_schema(first).await;
    common::drop_schema(second).await;
}

#[tokio::test]
async fn hostile_table_names_are_quoted() {
    let store = common::fresh_store().await;
    let canary = store.table("canary").unwrap();
    sqlx::query(canary.sql("CREATE TABLE {table} (n int)"))
        .execute(store.pool())
        .await
        .unwrap();
    let hostile = [
        "x\"; DROP TABLE canary; --",
        "Mixed Case",
        "{schema}",
        "\"",
        "levels'); DROP TABLE canary; --",
        "ünïcødé ✓",
    ];
    for name in hostile {
        let table: PgTable = store.table(name).unwrap();
        sqlx::query(table.sql("CREATE TABLE {table} (n int)"))
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query(table.sql("INSERT INTO {table} VALUES ($1)"))
            .bind(7)
            .execute(store.pool())
            .await
            .unwrap();
        let n: i32 = sqlx::query_scalar(table.sql("SELECT n FROM {table}"))
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 7, "{name}");
    }
    // Each table has exactly the name asked for, in the store's schema, and the canary
    // still stands.
    let mut names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 AND tablename = ANY($2)",
    )
    .bind(store.schema().as_str())
    .bind(hostile.iter().chain(&["canary"]).collect::<Vec<_>>())
    .fetch_all(store.pool())
    .await
    .unwrap();
    names.sort();
    let mut expected: Vec<String> = hostile
        .iter()
        .chain(&["canary"])
        .map(|n| (*n).to_owned())
        .collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(store.table(&"x".repeat(64)).is_err());
    common::drop_schema(store).await;
}

/// Counts the events of each append's streams in `inline_counts`, inside the append.
struct InlineCounts {
    migrations: Vec<PgMigration>,
    count: SqlStr,
}

const INLINE_STEPS: &[PgMigration] = &[PgMigration::new(
    1,
    "inline counts",
    "CREATE TABLE {schema}.inline_counts (stream_id text PRIMARY KEY, events bigint NOT NULL);
     CREATE TABLE {schema}.inline_steps (version integer NOT NULL);
     INSERT INTO {schema}.inline_steps VALUES (1);",
)];

impl PgInlineProjection for InlineCounts {
    fn name(&self) -> &str {
        "inline-counts"
    }

    fn migrations(&self) -> &[PgMigration] {
        &self.migrations
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for event in events {
                sqlx::query(self.count.clone())
                    .bind(event.stream_id.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
            Ok(())
        })
    }
}

/// A store on `base`'s schema with the inline projection of `migrations`, migrated.
async fn with_inline(
    base: &PgEventStore,
    migrations: &[PgMigration],
) -> Result<PgEventStore, es_postgres::PgStoreError> {
    let table = PgTable::new(base.schema(), "inline_counts").unwrap();
    let projection = InlineCounts {
        migrations: migrations.to_vec(),
        count: table.sql(
            "INSERT INTO {table} (stream_id, events) VALUES ($1, 1)
             ON CONFLICT (stream_id) DO UPDATE SET events = {table}.events + 1",
        ),
    };
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(projection))
        .build();
    store.migrate().await.map(|()| store)
}

#[tokio::test]
async fn migrate_makes_the_tables_of_inline_projections() {
    let base = common::fresh_store().await;
    let store = with_inline(&base, INLINE_STEPS).await.unwrap();
    append(&store, "a", "Received").await;
    append(&store, "a", "Shipped").await;
    let counts = store.table("inline_counts").unwrap();
    let events: i64 = sqlx::query_scalar(counts.sql("SELECT events FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(events, 2);
    // Again, from another start: nothing runs twice.
    let again = with_inline(&base, INLINE_STEPS).await.unwrap();
    let steps = again.table("inline_steps").unwrap();
    let ran: Vec<i32> = sqlx::query_scalar(steps.sql("SELECT version FROM {table}"))
        .fetch_all(again.pool())
        .await
        .unwrap();
    assert_eq!(ran, [1]);

    let edited = [PgMigration::new(1, "inline counts", "SELECT 1")];
    let error = with_inline(&base, &edited).await.unwrap_err();
    let es_postgres::PgStoreError::InlineProjection { projection, source } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(projection, "inline-counts");
    assert!(
        matches!(
            **source,
            PgProjectionError::MigrationEdited { version: 1, .. }
        ),
        "{source:?}"
    );
    common::drop_schema(base).await;
}

#[tokio::test]
async fn a_runner_that_keeps_its_checkpoint_in_memory_gets_the_tables_too() {
    let store = common::fresh_store().await;
    append(&store, "a", "Received").await;
    let mut runner = runner(&store, STEPS).with_checkpoint_in_memory();
    assert_eq!(runner.catch_up().await.unwrap(), 1);
    assert_eq!(levels(&store).await.len(), 1);
    assert_eq!(steps_run(&store).await, [1, 2]);
    common::drop_schema(store).await;
}

#[tokio::test]
async fn a_step_inserted_below_an_applied_one_is_refused() {
    let store = common::fresh_store().await;
    let step =
        |version: u32, name: &'static str, sql: &'static str| PgMigration::new(version, name, sql);
    let first = step(
        1,
        "log",
        "CREATE TABLE {schema}.level_steps (version integer NOT NULL);",
    );
    let third = step(3, "third", "INSERT INTO {schema}.level_steps VALUES (3);");
    assert_eq!(
        store
            .migrate_read_model("levels", &[first, third])
            .await
            .unwrap(),
        [1, 3]
    );

    // Step 2 would run after 3 here, before it on a fresh schema.
    let second = step(2, "second", "INSERT INTO {schema}.level_steps VALUES (2);");
    let error = store
        .migrate_read_model("levels", &[first, second, third])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            PgProjectionError::MigrationBelowApplied { projection, schema, version: 2, name: "second", highest: 3 }
                if projection == "levels" && schema == store.schema().as_str()
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("version above 3"), "{error}");
    assert_eq!(
        steps_run(&store).await,
        [3],
        "nothing of the refused list ran"
    );

    // Given a version above the highest applied, it runs.
    let fourth = step(4, "second", "INSERT INTO {schema}.level_steps VALUES (2);");
    assert_eq!(
        store
            .migrate_read_model("levels", &[first, third, fourth])
            .await
            .unwrap(),
        [4]
    );
    assert_eq!(steps_run(&store).await, [3, 2]);
    common::drop_schema(store).await;
}

/// The first error under `error` that `wanted` picks, however deep.
fn find_error(
    error: &RunnerError,
    wanted: impl Fn(&PgProjectionError) -> bool,
) -> Option<&PgProjectionError> {
    let mut source = std::error::Error::source(error);
    while let Some(error) = source {
        if let Some(found) = error.downcast_ref::<PgProjectionError>()
            && wanted(found)
        {
            return Some(found);
        }
        source = error.source();
    }
    None
}

#[tokio::test]
async fn a_refused_step_stops_a_runner_in_memory_and_parks_nothing() {
    let store = common::fresh_store().await;
    append(&store, "a", "Received").await;
    runner(&store, STEPS)
        .with_checkpoint_in_memory()
        .catch_up()
        .await
        .unwrap();
    assert_eq!(levels(&store).await.len(), 1);

    let mut edited = STEPS.to_vec();
    edited[1] = PgMigration::new(2, "last event type", "SELECT 1;");
    append(&store, "a", "Shipped").await;
    append(&store, "b", "Received").await;
    // Catching up, and live: neither takes the refusal for an event's fault.
    for live in [false, true] {
        let mut runner = runner(&store, &edited)
            .with_checkpoint_in_memory()
            .with_error_policy(ErrorPolicy::park());
        let stopped = if live {
            tokio::time::timeout(PATIENCE, runner.run())
                .await
                .expect("a live runner stops")
                .unwrap_err()
        } else {
            runner.catch_up().await.unwrap_err()
        };
        assert!(matches!(stopped, RunnerError::Commit { .. }), "{stopped:?}");
        assert!(
            find_error(&stopped, |e| matches!(
                e,
                PgProjectionError::MigrationEdited { version: 2, .. }
            ))
            .is_some(),
            "{stopped:?}"
        );
        let message = es_core::error::display_chain(&stopped);
        assert!(message.contains("migration 2"), "{message}");
        assert!(runner.parked().await.unwrap().is_empty(), "live: {live}");
        assert_eq!(runner.status().get().parked, 0);
        assert_eq!(runner.status().get().state, RunnerState::Failed);
    }
    assert!(store.parked("levels").await.unwrap().is_empty());
    assert_eq!(
        levels(&store).await,
        [("item-a".to_owned(), 1, Some("Received".to_owned()))],
        "no batch ran"
    );

    // A step whose SQL fails stops it as well, naming the step.
    let mut broken = STEPS.to_vec();
    broken.push(PgMigration::new(
        3,
        "broken",
        "ALTER TABLE {schema}.no_such_table ADD COLUMN x int;",
    ));
    let mut runner = runner(&store, &broken)
        .with_checkpoint_in_memory()
        .with_error_policy(ErrorPolicy::park());
    let stopped = tokio::time::timeout(PATIENCE, runner.run())
        .await
        .expect("a live runner stops")
        .unwrap_err();
    let message = es_core::error::display_chain(&stopped);
    assert!(message.contains("migration 3 (`broken`)"), "{message}");
    assert!(runner.parked().await.unwrap().is_empty());
    assert_eq!(steps_run(&store).await, [1, 2]);
    common::drop_schema(store).await;
}

/// Holds the migration lock of `store`'s schema on a connection of its own, as a
/// deployment's long migration would, until the connection is dropped or unlocks.
async fn hold_migration_lock(store: &PgEventStore) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    let mut operator = sqlx::PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtextextended('es-postgres migrations ' || $1, 0))")
        .bind(store.schema().as_str())
        .execute(&mut operator)
        .await
        .unwrap();
    operator
}

#[tokio::test]
async fn a_runner_start_waits_for_the_migration_lock_a_bounded_time() {
    let bound = Duration::from_secs(1);
    let store = common::fresh_store_with(|builder| builder.reply_timeout(Some(bound))).await;
    append(&store, "a", "Received").await;
    let mut operator = hold_migration_lock(&store).await;

    // At the checkpoint's load, and at the first commit of a runner in memory.
    for in_memory in [false, true] {
        let mut runner = runner(&store, STEPS).with_error_policy(ErrorPolicy::park());
        if in_memory {
            runner = runner.with_checkpoint_in_memory();
        }
        let stopped = tokio::time::timeout(PATIENCE, runner.catch_up())
            .await
            .expect("the wait is bounded")
            .unwrap_err();
        let Some(error) = find_error(&stopped, |e| {
            matches!(e, PgProjectionError::MigrationLockTimeout { .. })
        }) else {
            panic!("{stopped:?}");
        };
        assert!(
            matches!(error, PgProjectionError::MigrationLockTimeout { projection, schema, waited, .. }
                if projection == "levels" && schema == store.schema().as_str() && *waited == bound),
            "{error:?}"
        );
        assert!(error.is_transient(), "{error:?}");
        assert!(runner.parked().await.unwrap().is_empty());
    }
    let recording: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(store.table("es_read_model_migrations").unwrap().qualified())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!recording, "nothing was applied, nor recorded");

    // A live runner shows it as recovering, and starts once the lock is released.
    let mut live = runner(&store, STEPS);
    let status = live.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(async move {
        live.run_until(async {
            let _ = stopped.await;
        })
        .await
    });
    let recovering = tokio::time::timeout(PATIENCE, async {
        while status.get().state != RunnerState::Recovering {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(recovering.is_ok(), "{:?}", status.get());
    let shown = status.get().last_error.unwrap_or_default();
    assert!(shown.contains("migration lock"), "{shown}");
    sqlx::query("SELECT pg_advisory_unlock_all()")
        .execute(&mut operator)
        .await
        .unwrap();
    let caught_up = tokio::time::timeout(PATIENCE, async {
        while levels_if_any(&store).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(caught_up.is_ok(), "{:?}", status.get());
    stop.send(()).unwrap();
    run.await.unwrap().unwrap();
    assert_eq!(steps_run(&store).await, [1, 2]);
    common::drop_schema(store).await;
}

/// The rows of `levels`, none while it is not made yet.
async fn levels_if_any(store: &PgEventStore) -> Vec<(String, i64, Option<String>)> {
    let made: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(store.table("levels").unwrap().qualified())
        .fetch_one(store.pool())
        .await
        .unwrap();
    if made {
        levels(store).await
    } else {
        Vec::new()
    }
}

/// An instance of a newer version standing by (another instance holds the lease, as in a
/// rolling deploy) shows the checkpoint the holder commits, and applies none of its new
/// steps: the schema changes only when it takes over.
#[tokio::test]
async fn a_standing_by_instance_shows_progress_and_migrates_nothing() {
    let store = common::fresh_store().await;
    // Long enough that the holder's renewals (each a third of it) never miss a term on a
    // loaded machine: the standby must not take over.
    let lease = Some(Duration::from_secs(3));
    let mut holder = runner(&store, STEPS).with_lease(lease);
    let (stop_holder, stopped) = tokio::sync::oneshot::channel::<()>();
    let holder_status = holder.status();
    let holder_task = tokio::spawn(async move {
        holder
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    let until = |status: es_core::StatusHandle, state: RunnerState| async move {
        tokio::time::timeout(PATIENCE, async {
            while status.get().state != state {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the runner reaches the state");
    };
    until(holder_status.clone(), RunnerState::Live).await;

    let mut newer_steps = STEPS.to_vec();
    newer_steps.push(PgMigration::new(
        3,
        "by type",
        "CREATE INDEX levels_by_type ON {schema}.levels (last_type);
         INSERT INTO {schema}.level_steps VALUES (3);",
    ));
    let mut newer = runner(&store, &newer_steps).with_lease(lease);
    let standby = newer.status();
    let (stop_newer, stopped) = tokio::sync::oneshot::channel::<()>();
    let newer_task = tokio::spawn(async move {
        newer
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    until(standby.clone(), RunnerState::Standby).await;

    append(&store, "a", "Received").await;
    let position = store.head().await.unwrap().unwrap();
    standby.wait_for(&store, position, PATIENCE).await.unwrap();
    // Several refreshes (each a third of the lease) have passed by now.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        standby.get().state,
        RunnerState::Standby,
        "holder: {:?}",
        holder_status.get()
    );
    assert_eq!(
        steps_run(&store).await,
        [1, 2],
        "the standby applied no step"
    );

    let _ = stop_newer.send(());
    newer_task.await.unwrap().unwrap();
    let _ = stop_holder.send(());
    holder_task.await.unwrap().unwrap();
    common::drop_schema(store).await;
}
