//! Transactional and inline projections on PostgreSQL: exactly once through killed
//! connections, competing instances without leases, rebuilds, and read-your-writes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use es_core::error::BoxError;
use es_core::{
    AppendError, ErrorPolicy, EventEnvelope, EventFilter, EventStore as _, ExpectedVersion,
    NewEvent, Partition, Position, ProjectionRunner, RawEvent, StreamId, Version,
};
use es_postgres::{PgEventStore, PgInlineProjection, PgProjection, PgTransactionalProjection};
use es_testkit::fixture::AccountEvent;
use futures_util::future::BoxFuture;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

/// Writes one row per event into `<schema>.ledger`, with no unique constraint: a double
/// apply shows as two rows.
struct Ledger {
    table: String,
    /// `Some`: rows gathered by `handle` and written by `flush`, one statement per batch.
    buffer: Option<Vec<(Uuid, String, i64)>>,
}

impl Ledger {
    async fn create(store: &PgEventStore) -> Self {
        let table = format!("\"{}\".ledger", store.schema());
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (event_id uuid NOT NULL, stream_id text NOT NULL, amount bigint NOT NULL)"
        )))
        .execute(store.pool())
        .await
        .unwrap();
        Self {
            table,
            buffer: None,
        }
    }

    fn writer(&self, buffered: bool) -> Self {
        Self {
            table: self.table.clone(),
            buffer: buffered.then(Vec::new),
        }
    }

    async fn rows(&self, store: &PgEventStore) -> Vec<Uuid> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT event_id FROM {}",
            self.table
        )))
        .fetch_all(store.pool())
        .await
        .unwrap()
    }
}

impl PgProjection for Ledger {
    type Event = AccountEvent;

    fn name(&self) -> &str {
        "ledger"
    }

    async fn handle(
        &mut self,
        tx: &mut PgConnection,
        envelope: &EventEnvelope<AccountEvent>,
    ) -> Result<(), BoxError> {
        let amount = match envelope.event {
            AccountEvent::Deposited { amount } => i64::try_from(amount)?,
            _ => 0,
        };
        if let Some(buffer) = &mut self.buffer {
            buffer.push((envelope.event_id, envelope.stream_id.to_string(), amount));
            return Ok(());
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id, stream_id, amount) VALUES ($1, $2, $3)",
            self.table
        )))
        .bind(envelope.event_id)
        .bind(envelope.stream_id.as_str())
        .bind(amount)
        .execute(tx)
        .await?;
        Ok(())
    }

    async fn flush(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        let Some(buffer) = &mut self.buffer else {
            return Ok(());
        };
        let (mut ids, mut streams, mut amounts) = (Vec::new(), Vec::new(), Vec::new());
        for (id, stream, amount) in buffer.drain(..) {
            ids.push(id);
            streams.push(stream);
            amounts.push(amount);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {} (event_id, stream_id, amount) \
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[])",
            self.table
        )))
        .bind(&ids)
        .bind(&streams)
        .bind(&amounts)
        .execute(tx)
        .await?;
        Ok(())
    }

    fn discard(&mut self) {
        if let Some(buffer) = &mut self.buffer {
            buffer.clear();
        }
    }

    async fn reset(&mut self, tx: &mut PgConnection) -> Result<(), BoxError> {
        sqlx::query(AssertSqlSafe(format!("DELETE FROM {}", self.table)))
            .execute(tx)
            .await?;
        Ok(())
    }
}

async fn deposit(store: &PgEventStore, id: &str, n: u64) -> Vec<Uuid> {
    let stream = StreamId::new("account", id).unwrap();
    let events = (1..=n)
        .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
        .collect();
    store
        .append(&stream, ExpectedVersion::Any, events)
        .await
        .unwrap()
        .events
        .iter()
        .map(|e| e.event_id)
        .collect()
}

/// Waits until the ledger holds every id in `ids` exactly once (failing at once on a
/// duplicate).
async fn exactly_once(ledger: &Ledger, store: &PgEventStore, ids: &HashSet<Uuid>) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let rows = ledger.rows(store).await;
            let unique: HashSet<Uuid> = rows.iter().copied().collect();
            assert_eq!(unique.len(), rows.len(), "an event was applied twice");
            if &unique == ids {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every event is applied");
}

/// A live transactional projection whose connections are killed again and again while
/// events arrive applies every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_projection_is_exactly_once_through_killed_connections() {
    killed_connections(false).await;
}

/// The same with writes gathered by `handle` and written by `flush` at each commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_projection_is_exactly_once_through_killed_connections() {
    killed_connections(true).await;
}

async fn killed_connections(buffered: bool) {
    let writer = common::fresh_store().await;
    let name = format!("es-test-projection-{}", Uuid::now_v7().simple());
    let reader = common::second_store(&writer, &name, |b| {
        b.poll_interval(Duration::from_millis(50))
    })
    .await;
    let ledger = Ledger::create(&writer).await;
    let mut runner = ProjectionRunner::new(
        reader.clone(),
        PgTransactionalProjection::new(reader.clone(), ledger.writer(buffered)),
    )
    .with_batch_size(25)
    .with_error_policy(ErrorPolicy::retry(20, Duration::from_millis(10)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        runner
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });

    let killer = common::connect("es-test-killer", 1).await;
    let mut ids = HashSet::new();
    let mut kills = 0;
    for round in 0..8 {
        ids.extend(deposit(&writer, &format!("k{round}"), 60).await);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&name)
        .fetch_all(&killer)
        .await
        .unwrap();
        kills += killed.len();
    }
    assert!(kills > 0, "the projection's connections were killed");
    exactly_once(&ledger, &writer, &ids).await;
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    common::drop_schema(writer).await;
}

/// Two instances without a lease race for every batch: the checkpoint only moves from the
/// position an instance last saw, so the loser's batch rolls back and nothing is applied
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_instances_without_lease_never_apply_twice() {
    let store = common::fresh_store().await;
    let ledger = Ledger::create(&store).await;
    let mut tasks = Vec::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    for _ in 0..2 {
        let mut runner = ProjectionRunner::new(
            store.clone(),
            PgTransactionalProjection::new(store.clone(), ledger.writer(false)),
        )
        .with_lease(None)
        .with_batch_size(10);
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(async move {
            runner
                .run_until(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    let mut ids = HashSet::new();
    for round in 0..10 {
        ids.extend(deposit(&store, &format!("r{round}"), 30).await);
    }
    exactly_once(&ledger, &store, &ids).await;
    stop.send_replace(true);
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    common::drop_schema(store).await;
}

/// A runner task dropped in the middle of a batch leaves nothing half-applied: the next
/// runner starts from the last commit, and each event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_runner_resumes_exactly_once_and_rebuilds_the_same_view() {
    let store = common::fresh_store().await;
    let ledger = Ledger::create(&store).await;
    let ids: HashSet<Uuid> = deposit(&store, "d", 500).await.into_iter().collect();
    wait_visible(&store, ids.len()).await;

    let mut doomed = ProjectionRunner::new(
        store.clone(),
        PgTransactionalProjection::new(store.clone(), ledger.writer(false)),
    )
    .with_batch_size(40)
    .with_lease(None);
    let task = tokio::spawn(async move { doomed.catch_up().await });
    // Let it commit a few batches, then drop it wherever it is.
    tokio::time::timeout(PATIENCE, async {
        while ledger.rows(&store).await.len() < 100 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    task.abort();
    let _ = task.await;
    // A COMMIT the server had already received when the task was dropped still lands:
    // wait until none of the store's sessions (they carry the schema's name) is at work
    // or inside a transaction, then count. (A quiet moment of the table was not enough on
    // a loaded machine: the COMMIT could land after it.)
    common::until_none(
        &store,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
         AND pid <> pg_backend_pid() AND state <> 'idle'",
        store.schema().as_str(),
        "the dropped runner's session settles",
    )
    .await;
    let partial = ledger.rows(&store).await.len();
    assert!(partial < ids.len(), "the runner was stopped before the end");
    assert_eq!(partial % 40, 0, "only whole batches were committed");

    let mut survivor = ProjectionRunner::new(
        store.clone(),
        PgTransactionalProjection::new(store.clone(), ledger.writer(true)),
    )
    .with_batch_size(40)
    .with_lease(None);
    assert_eq!(
        survivor.catch_up().await.unwrap(),
        (ids.len() - partial) as u64
    );
    exactly_once(&ledger, &store, &ids).await;

    let mut live_rows = ledger.rows(&store).await;
    live_rows.sort();
    assert_eq!(survivor.rebuild().await.unwrap(), ids.len() as u64);
    let mut rebuilt = ledger.rows(&store).await;
    rebuilt.sort();
    assert_eq!(rebuilt, live_rows, "a rebuild gives the same view");
    common::drop_schema(store).await;
}

/// Partitioned runners of one transactional projection share its table: each partition
/// commits its own checkpoint row with its writes, restarted partitions resume each from
/// its own, and a rebuild through one partition resets the table and every partition's
/// checkpoint, after which the others start over. Each event lands once throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_a_transactional_projection_resume_and_rebuild_together() {
    const PARTITIONS: u32 = 3;
    let store = common::fresh_store().await;
    let ledger = Ledger::create(&store).await;
    let mut ids = HashSet::new();
    for stream in 0..12 {
        ids.extend(deposit(&store, &format!("p{stream}"), 20).await);
    }
    wait_visible(&store, ids.len()).await;

    let start = |buffered: bool| {
        Partition::all(PARTITIONS)
            .map(|partition| {
                ProjectionRunner::new(
                    store.clone(),
                    PgTransactionalProjection::new(store.clone(), ledger.writer(buffered)),
                )
                .with_batch_size(25)
                .with_partition(partition)
            })
            .collect::<Vec<_>>()
    };
    let run_all = |runners: Vec<ProjectionRunner<_, PgEventStore>>| async move {
        let tasks: Vec<_> = runners
            .into_iter()
            .map(|mut runner| {
                tokio::spawn(async move { runner.catch_up().await.map(|n| (runner, n)) })
            })
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap().unwrap());
        }
        done
    };

    let first = run_all(start(false)).await;
    assert!(
        first.iter().filter(|(_, handled)| *handled > 0).count() > 1,
        "the streams are spread over partitions"
    );
    exactly_once(&ledger, &store, &ids).await;
    let checkpoints: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT name FROM \"{}\".checkpoints ORDER BY name",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(checkpoints, ["ledger#1/3", "ledger#2/3", "ledger#3/3"]);

    for stream in 0..12 {
        ids.extend(deposit(&store, &format!("p{stream}"), 5).await);
    }
    wait_visible(&store, ids.len()).await;
    let resumed = run_all(start(true)).await;
    let handled: u64 = resumed.iter().map(|(_, n)| n).sum();
    assert_eq!(
        handled, 60,
        "each partition resumes after its own checkpoint"
    );
    exactly_once(&ledger, &store, &ids).await;

    // Another projection whose name merely starts like a partition key keeps its checkpoint.
    es_core::CheckpointStore::save_checkpoint(&store, "ledger#v2", Position::START)
        .await
        .unwrap();
    let mut runners: Vec<_> = resumed.into_iter().map(|(runner, _)| runner).collect();
    let rebuilt_here = runners[0].rebuild().await.unwrap();
    assert_eq!(
        es_core::CheckpointStore::load_checkpoint(&store, "ledger#v2")
            .await
            .unwrap(),
        Some(Position::START)
    );
    assert!(rebuilt_here > 0 && rebuilt_here < ids.len() as u64);
    let others = runners.split_off(1);
    let again: u64 = run_all(others).await.iter().map(|(_, n)| n).sum();
    assert_eq!(
        rebuilt_here + again,
        ids.len() as u64,
        "after the rebuild every partition starts over"
    );
    exactly_once(&ledger, &store, &ids).await;
    common::drop_schema(store).await;
}

/// Writers appending to one stream through an inline projection (each append in a
/// transaction of its own that may begin before the previous event commits) still leave
/// recorded times that never go back along the stream, which loads as of a time rely on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_times_never_go_back_along_a_stream() {
    const WRITERS: u64 = 4;
    const APPENDS: u64 = 40;
    let base = common::fresh_store().await;
    let table = format!("\"{}\".balances", base.schema());
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (account text PRIMARY KEY, balance bigint NOT NULL)"
    )))
    .execute(base.pool())
    .await
    .unwrap();
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Balances { table }))
        .build();
    let stream = StreamId::new("account", "busy").unwrap();
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, stream) = (store.clone(), stream.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..APPENDS {
                // Never 13, which the projection refuses.
                let amount = 100 * writer + n + 14;
                store
                    .append(
                        &stream,
                        ExpectedVersion::Any,
                        vec![NewEvent::new(AccountEvent::Deposited { amount })],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let events: Vec<EventEnvelope<AccountEvent>> = futures_util::TryStreamExt::try_collect(
        store.read_stream::<AccountEvent>(&stream, Version::INITIAL),
    )
    .await
    .unwrap();
    assert_eq!(events.len() as u64, WRITERS * APPENDS);
    for pair in events.windows(2) {
        assert!(
            pair[0].recorded_at <= pair[1].recorded_at,
            "version {} was recorded at {}, after version {} at {}",
            pair[0].version,
            pair[0].recorded_at,
            pair[1].version,
            pair[1].recorded_at
        );
    }
    common::drop_schema(base).await;
}

async fn wait_visible(store: &PgEventStore, n: usize) {
    tokio::time::timeout(PATIENCE, async {
        while store
            .count_after(Position::START, EventFilter::all())
            .await
            .unwrap()
            < n as u64
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

/// Keeps `<schema>.balances` up to date inside every append; refuses deposits of 13.
struct Balances {
    table: String,
}

impl PgInlineProjection for Balances {
    fn name(&self) -> &str {
        "balances"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all().with_categories(["account"])
    }

    fn handle<'a>(
        &'a self,
        tx: &'a mut PgConnection,
        events: &'a [EventEnvelope<RawEvent>],
    ) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            for envelope in events {
                let amount = envelope.event.payload["amount"].as_i64().unwrap_or(0);
                if amount == 13 {
                    return Err("unlucky deposit".into());
                }
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {t} (account, balance) VALUES ($1, $2) \
                     ON CONFLICT (account) DO UPDATE SET balance = {t}.balance + $2",
                    t = self.table
                )))
                .bind(envelope.stream_id.id())
                .bind(amount)
                .execute(&mut *tx)
                .await?;
            }
            Ok(())
        })
    }
}

/// An inline projection reflects an append as soon as it returns; if it fails, the append
/// fails whole and the view is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_projection_reads_its_writes_and_fails_with_the_append() {
    let base = common::fresh_store().await;
    let table = format!("\"{}\".balances", base.schema());
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (account text PRIMARY KEY, balance bigint NOT NULL)"
    )))
    .execute(base.pool())
    .await
    .unwrap();
    let store = PgEventStore::builder(base.pool().clone())
        .schema(base.schema().as_str())
        .unwrap()
        .inline_projection(Arc::new(Balances {
            table: table.clone(),
        }))
        .build();
    let balance = |account: &'static str| {
        let (pool, table) = (base.pool().clone(), table.clone());
        async move {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!(
                "SELECT balance FROM {table} WHERE account = $1"
            )))
            .bind(account)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };

    let stream = StreamId::new("account", "ada").unwrap();
    let deposit = |amount| vec![NewEvent::new(AccountEvent::Deposited { amount })];
    store
        .append(&stream, ExpectedVersion::NoStream, deposit(5))
        .await
        .unwrap();
    assert_eq!(
        balance("ada").await,
        Some(5),
        "visible as soon as the append returns"
    );
    store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            [deposit(7), deposit(8)].concat(),
        )
        .await
        .unwrap();
    assert_eq!(balance("ada").await, Some(20));

    let refused = store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(3)),
            [deposit(1), deposit(13)].concat(),
        )
        .await;
    match refused {
        Err(AppendError::Store { source, .. }) => {
            assert!(source.to_string().contains("balances"), "{source}");
        }
        other => panic!("expected the inline projection's failure, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::new(3),
        "nothing stored"
    );
    assert_eq!(balance("ada").await, Some(20), "the view is untouched");

    // A conflict is still a conflict, and events the projection does not select pass.
    let conflict = store
        .append(&stream, ExpectedVersion::Exact(Version::new(1)), deposit(2))
        .await;
    assert!(conflict.unwrap_err().is_conflict());
    let note = StreamId::new("note", "1").unwrap();
    store
        .append(
            &note,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new(
                "Noted",
                1,
                serde_json::json!({ "amount": 13 }),
            ))],
        )
        .await
        .expect("not the projection's category");
    common::drop_schema(base).await;
}
