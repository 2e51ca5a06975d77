//! PostgreSQL store throughput and latency, each beside a bare-SQL baseline measured in the
//! same run on a table of the same shape.
//!
//! Run with `cargo bench -p es-postgres --bench postgres` (DATABASE_URL, or the local
//! server). It works in a schema of its own and drops it at the end. Prints figures; it
//! asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, DomainEvent, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position,
    Repository, SnapshotPolicy, StreamId, Version,
};
use es_postgres::PgEventStore;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

mod support;
use support::{Bench, alternate, baseline_inserts, median, memo, rate};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum LedgerEvent {
    Recorded { memo: String },
}

#[derive(Debug, Clone)]
struct Record(String);

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

#[derive(Debug, Default, Clone, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(name = "ledger", command = Record, event = LedgerEvent, error = Never)]
struct Ledger {
    entries: u64,
    last: String,
}

impl Aggregate for Ledger {
    async fn handle(&self, command: Record, _: &()) -> Result<Vec<LedgerEvent>, Never> {
        Ok(vec![LedgerEvent::Recorded { memo: command.0 }])
    }

    fn apply(&mut self, event: &LedgerEvent) {
        let LedgerEvent::Recorded { memo } = event;
        self.entries += 1;
        self.last.clone_from(memo);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut bench = Bench::start("es-postgres").await;

    // `cargo bench --bench postgres -- <word>` runs only the parts whose name holds it.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("commands") {
        single_event_commands(&mut bench).await;
    }
    if wanted("batched") {
        batched_appends(&mut bench).await;
    }
    if wanted("reads") {
        reads(&mut bench).await;
    }
    if wanted("loads") {
        loads(&mut bench).await;
    }
    if wanted("latency") {
        latency(&mut bench).await;
    }
    if wanted("projection") {
        projection_rebuild(&mut bench).await;
    }

    bench.finish().await;
}

/// Commands through `Repository`, one event each, by `writers` tasks. With `cache`, each
/// task works on a stream of its own, starting from its cached state (one round trip per
/// command); without, each command goes to a new stream, so it reads (nothing) and appends
/// (two round trips) without the replay of a long stream muddying the figure.
async fn commands(bench: &Bench, writers: u64, per_writer: u64, notify: bool, cache: bool) -> f64 {
    let store = bench.store(notify);
    let mut repository = Repository::<Ledger, _>::new(store);
    if cache {
        repository = repository.with_cache(1_024);
    }
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let repository = repository.clone();
        let id = format!("{run}-{writer}");
        tasks.push(tokio::spawn(async move {
            for n in 0..per_writer {
                let id = if cache {
                    id.clone()
                } else {
                    format!("{id}-{n}")
                };
                repository.execute(&id, Record(memo(n))).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rate(writers * per_writer, start.elapsed())
}

async fn single_event_commands(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const PER_WRITER_1: u64 = 400;
    const PER_WRITER_8: u64 = 150;
    // Warm the server and the statement caches.
    baseline_inserts(bench, 8, 50).await;
    commands(bench, 8, 50, true, true).await;

    let b = &*bench;
    let mut results = Vec::new();
    for (writers, per_writer) in [(1, PER_WRITER_1), (8, PER_WRITER_8)] {
        let mut rows = Vec::new();
        for (what, notify, cache) in [
            ("state cache", true, true),
            ("state cache, NOTIFY off", false, true),
            ("no cache: read, then append", true, false),
        ] {
            let (base, ours, ratio) = alternate(
                ROUNDS,
                || baseline_inserts(b, writers, per_writer),
                || commands(b, writers, per_writer, notify, cache),
            )
            .await;
            rows.push((base, what, ours, ratio));
        }
        results.push((writers, rows));
    }
    for (writers, rows) in results {
        let base = median(rows.iter().map(|r| r.0).collect());
        let connections = if writers == 1 {
            "1 connection"
        } else {
            "8 connections"
        };
        bench.record(
            format!("baseline: bare single-row INSERT, {connections}"),
            base,
            "rows/s",
            None,
        );
        for (_, what, ours, ratio) in rows {
            bench.record(
                format!(
                    "single-event commands, {writers} writer{} ({what})",
                    if writers == 1 { "" } else { "s" }
                ),
                ours,
                "cmds/s",
                Some(ratio),
            );
        }
    }
}

async fn batched_appends(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const BATCHES: u64 = 40;
    const BATCH: u64 = 100;
    // Baseline: the same 100 rows in one bare multi-row INSERT per transaction.
    let sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".baseline (stream_id, version, event_id, event_type, schema_version, payload, \
             correlation_id, causation_id, metadata) \
         SELECT $1, v, gen_random_uuid(), 'Recorded', 1, jsonb_build_object('memo', $2::text), \
             gen_random_uuid(), gen_random_uuid(), '{{}}' \
         FROM generate_series($3::bigint, $4::bigint) v",
        bench.schema
    ));
    let b = &*bench;
    // `writers` connections, each appending `BATCHES` batches to a stream of its own.
    let baseline = |writers: u64| {
        let sql = Arc::clone(&sql);
        async move {
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..writers {
                let (pool, sql) = (b.pool.clone(), Arc::clone(&sql));
                tasks.push(tokio::spawn(async move {
                    let stream = format!("baseline-batch-{}", Uuid::now_v7().simple());
                    for n in 0..BATCHES {
                        sqlx::query(AssertSqlSafe(Arc::clone(&sql)))
                            .bind(&stream)
                            .bind(memo(n))
                            .bind(i64::try_from(n * BATCH + 1).unwrap())
                            .bind(i64::try_from((n + 1) * BATCH).unwrap())
                            .execute(&pool)
                            .await
                            .unwrap();
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            rate(writers * BATCHES * BATCH, start.elapsed())
        }
    };
    let ours = |writers: u64| async move {
        let store = b.store(true);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..writers {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let stream =
                    StreamId::new("ledger", &format!("batch-{}", Uuid::now_v7().simple())).unwrap();
                let mut version = Version::INITIAL;
                for n in 0..BATCHES {
                    let events = (0..BATCH)
                        .map(|i| {
                            NewEvent::new(LedgerEvent::Recorded {
                                memo: memo(n * BATCH + i),
                            })
                        })
                        .collect();
                    version = store
                        .append(&stream, ExpectedVersion::Exact(version), events)
                        .await
                        .unwrap()
                        .version;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        rate(writers * BATCHES * BATCH, start.elapsed())
    };
    let mut results = Vec::new();
    for writers in [1, 4] {
        let measured = alternate(ROUNDS, || baseline(writers), || ours(writers)).await;
        results.push((writers, measured));
    }
    for (writers, (base, batched, ratio)) in results {
        let connections = if writers == 1 {
            "1 connection".to_owned()
        } else {
            format!("{writers} connections")
        };
        bench.record(
            format!("baseline: bare 100-row INSERT per transaction, {connections}"),
            base,
            "rows/s",
            None,
        );
        bench.record(
            format!("batched appends of 100 events, {connections}"),
            batched,
            "events/s",
            Some(ratio),
        );
    }
}

async fn reads(bench: &mut Bench) {
    const EVENTS: u64 = 10_000;
    let store = bench.store(true);
    let stream = StreamId::new("ledger", &format!("read-{}", Uuid::now_v7().simple())).unwrap();
    for chunk in 0..EVENTS / 1_000 {
        let events = (0..1_000)
            .map(|n| {
                NewEvent::new(LedgerEvent::Recorded {
                    memo: memo(chunk * 1_000 + n),
                })
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    // Baseline: the same number of rows of the same shape, fetched bare.
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{s}\".baseline (stream_id, version, event_id, event_type, schema_version, payload, \
             correlation_id, causation_id, actor, metadata) \
         SELECT 'baseline-read', version, gen_random_uuid(), event_type, schema_version, payload, \
             correlation_id, causation_id, actor, metadata \
         FROM \"{s}\".events WHERE stream_id = $1",
        s = bench.schema
    )))
    .bind(stream.as_str())
    .execute(&bench.pool)
    .await
    .unwrap();
    let bare = format!(
        "SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version, \
             payload, correlation_id, causation_id, actor, metadata, recorded_at \
         FROM \"{}\".baseline WHERE stream_id = 'baseline-read' ORDER BY version",
        bench.schema
    );
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let rows = sqlx::query(AssertSqlSafe(bare.clone()))
            .fetch_all(&bench.pool)
            .await
            .unwrap();
        assert_eq!(rows.len() as u64, EVENTS);
        base.push(rate(EVENTS, start.elapsed()));
        let start = Instant::now();
        let events: Vec<_> = store
            .read_stream::<LedgerEvent>(&stream, Version::INITIAL)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len() as u64, EVENTS);
        ours.push(rate(EVENTS, start.elapsed()));
    }
    let ratio = median(ours.iter().zip(&base).map(|(o, b)| o / b).collect());
    bench.record(
        "baseline: bare SELECT of a 10,000-row stream (all columns)",
        median(base),
        "rows/s",
        None,
    );
    bench.record(
        "stream read of 10,000 events (decoded)",
        median(ours),
        "events/s",
        Some(ratio),
    );
}

/// Aggregate loads for histories of 10, 10,000 and 1,000,000 events: replaying every
/// event, and from a snapshot at the stream's end. With a snapshot the load reads the
/// snapshot and the (empty) tail of the stream, so its time should not grow with history.
async fn loads(bench: &mut Bench) {
    const RUNS: usize = 21;
    let store = bench.store(true);
    let replaying = Repository::<Ledger, _>::new(store.clone());
    for events in [10_u64, 10_000, 1_000_000] {
        let id = format!("load-{events}-{}", Uuid::now_v7().simple());
        let stream = StreamId::new("ledger", &id).unwrap();
        let mut written = 0;
        while written < events {
            let batch = (events - written).min(5_000);
            let chunk = (written..written + batch)
                .map(|n| NewEvent::new(LedgerEvent::Recorded { memo: memo(n) }))
                .collect();
            store
                .append(&stream, ExpectedVersion::Any, chunk)
                .await
                .unwrap();
            written += batch;
        }
        // A snapshot at the last version, as the policy would have left it.
        let snapshotting = Repository::<Ledger, _>::new(store.clone())
            .with_snapshot_policy(SnapshotPolicy::every(events + 1));
        snapshotting.execute(&id, Record(memo(0))).await.unwrap();
        let total = events + 1;

        // Replaying a million events takes seconds: fewer runs there.
        let replay_runs = if events > 100_000 { 3 } else { RUNS };
        let mut replay = Vec::new();
        for _ in 0..replay_runs {
            let start = Instant::now();
            let loaded = replaying.load(&id).await.unwrap();
            replay.push(start.elapsed());
            assert_eq!(loaded.state.entries, total);
        }
        let mut snapshot = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            let loaded = snapshotting.load(&id).await.unwrap();
            snapshot.push(start.elapsed());
            assert_eq!(loaded.state.entries, total);
        }
        let median_us = |mut d: Vec<Duration>| {
            d.sort();
            d[d.len() / 2].as_secs_f64() * 1e6
        };
        bench.record(
            format!("aggregate load, {total} events, replayed (µs)"),
            median_us(replay),
            "µs",
            None,
        );
        bench.record(
            format!("aggregate load, {total} events, from a snapshot (µs)"),
            median_us(snapshot),
            "µs",
            None,
        );
    }
}

/// From an append's return (its commit) to delivery by a subscriber already waiting.
async fn latency(bench: &mut Bench) {
    const EVENTS: usize = 500;
    for (label, same_process) in [("same process", true), ("other process, via NOTIFY", false)] {
        let writer = bench.store(true);
        let reader = if same_process {
            writer.clone()
        } else {
            let pool =
                es_testkit::postgres::connect_with((*bench.pool.connect_options()).clone(), 2)
                    .await;
            PgEventStore::builder(pool)
                .schema(&bench.schema)
                .unwrap()
                .build()
        };
        let start_at = {
            let log: Vec<_> = reader
                .read_all::<es_core::RawEvent>(Position::START, EventFilter::all())
                .try_collect()
                .await
                .unwrap();
            log.last().map_or(Position::START, |e| e.position)
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let subscriber = tokio::spawn(async move {
            let mut live = Box::pin(reader.subscribe::<LedgerEvent>(
                start_at,
                EventFilter::all().with_categories(["ledger"]),
            ));
            while let Some(event) = live.next().await {
                let event = event.unwrap();
                if tx.send((event.event_id, Instant::now())).is_err() {
                    break;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stream =
            StreamId::new("ledger", &format!("latency-{}", Uuid::now_v7().simple())).unwrap();
        let mut samples = Vec::with_capacity(EVENTS);
        for n in 0..EVENTS {
            let committed = writer
                .append(
                    &stream,
                    ExpectedVersion::Any,
                    vec![NewEvent::new(LedgerEvent::Recorded {
                        memo: memo(n as u64),
                    })],
                )
                .await
                .unwrap();
            let done = Instant::now();
            let id = committed.events[0].event_id;
            loop {
                let (got, at) = rx.recv().await.unwrap();
                if got == id {
                    samples.push(at.saturating_duration_since(done));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        subscriber.abort();
        samples.sort();
        let p = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        bench.record(
            format!("commit-to-subscriber latency p50, {label} (ms)"),
            p(0.5),
            "ms",
            None,
        );
        bench.record(
            format!("commit-to-subscriber latency p99, {label} (ms)"),
            p(0.99),
            "ms",
            None,
        );
    }
}

/// Keeps one row per ledger in `ledger_totals`. `handle` only gathers each ledger's
/// changes; `flush` writes the batch's in one statement, in the batch's transaction.
struct LedgerTotals {
    table: String,
    pending: std::collections::HashMap<String, (i64, String)>,
}

impl es_postgres::PgProjection for LedgerTotals {
    type Event = LedgerEvent;

    fn name(&self) -> &str {
        "ledger-totals"
    }

    async fn handle(
        &mut self,
        _tx: &mut sqlx::PgConnection,
        envelope: &es_core::EventEnvelope<LedgerEvent>,
    ) -> Result<(), es_core::error::BoxError> {
        let LedgerEvent::Recorded { memo } = &envelope.event;
        let entry = self
            .pending
            .entry(envelope.stream_id.id().to_owned())
            .or_insert((0, String::new()));
        entry.0 += 1;
        entry.1.clone_from(memo);
        Ok(())
    }

    async fn flush(&mut self, tx: &mut sqlx::PgConnection) -> Result<(), es_core::error::BoxError> {
        let (mut ledgers, mut entries, mut memos) = (Vec::new(), Vec::new(), Vec::new());
        for (ledger, (count, memo)) in self.pending.drain() {
            ledgers.push(ledger);
            entries.push(count);
            memos.push(memo);
        }
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO {t} (ledger, entries, last_memo) \
             SELECT * FROM UNNEST($1::text[], $2::int8[], $3::text[]) \
             ON CONFLICT (ledger) DO UPDATE \
             SET entries = {t}.entries + EXCLUDED.entries, last_memo = EXCLUDED.last_memo",
            t = self.table
        )))
        .bind(&ledgers)
        .bind(&entries)
        .bind(&memos)
        .execute(tx)
        .await?;
        Ok(())
    }

    fn discard(&mut self) {
        self.pending.clear();
    }

    async fn reset(&mut self, tx: &mut sqlx::PgConnection) -> Result<(), es_core::error::BoxError> {
        self.pending.clear();
        sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", self.table)))
            .execute(tx)
            .await?;
        Ok(())
    }
}

/// Rebuilds a transactional projection (read-model writes and checkpoint in one
/// transaction per batch) over 20,000 events.
async fn projection_rebuild(bench: &mut Bench) {
    const EVENTS: u64 = 20_000;
    let store = bench.store(true);
    let run = Uuid::now_v7().simple().to_string();
    for chunk in 0..EVENTS / 1_000 {
        let stream = StreamId::new("ledger", &format!("proj-{run}-{}", chunk % 20)).unwrap();
        let events = (0..1_000)
            .map(|n| {
                NewEvent::new(LedgerEvent::Recorded {
                    memo: memo(chunk * 1_000 + n),
                })
            })
            .collect();
        store
            .append(&stream, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let table = format!("\"{}\".ledger_totals", bench.schema);
    sqlx::query(AssertSqlSafe(format!(
        "CREATE TABLE {table} (ledger text PRIMARY KEY, entries bigint NOT NULL, last_memo text NOT NULL)"
    )))
    .execute(&bench.pool)
    .await
    .unwrap();
    let total = store
        .count_after(
            Position::START,
            EventFilter::all().with_categories(["ledger"]),
        )
        .await
        .unwrap();
    for batch in [100, 1_000] {
        let projection = es_postgres::PgTransactionalProjection::new(
            store.clone(),
            LedgerTotals {
                table: table.clone(),
                pending: std::collections::HashMap::new(),
            },
        );
        let mut runner = es_core::ProjectionRunner::new(store.clone(), projection)
            .with_batch_size(batch)
            .with_lease(None);
        let mut samples = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            let handled = runner.rebuild().await.unwrap();
            samples.push(rate(handled, start.elapsed()));
            assert_eq!(handled, total);
        }
        bench.record(
            format!("transactional projection rebuild, batches of {batch}"),
            median(samples),
            "events/s",
            None,
        );
    }
}
