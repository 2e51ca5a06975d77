//! PostgreSQL store throughput, reads, storage and latency, each beside bare-SQL baselines
//! measured in the same run, in alternating rounds.
//!
//! Two baselines, two ratio columns:
//!
//! - **vs minimal**: the `minimal` table, `(stream_id text, version bigint, payload jsonb)`
//!   with a unique `(stream_id, version)` index and the same ~200-byte payloads: the least a
//!   versioned event table can be, and what the performance issue's targets are ratios to.
//!   Single-event commands are compared with its single-row INSERT transactions (on as many
//!   connections as the store has writers), batched appends with its multi-row INSERTs,
//!   stream reads and `Repository::load` with `SELECT payload ... ORDER BY version` of the
//!   same rows, each payload decoded by serde_json into the same event type, and bytes per
//!   event with its table plus index size.
//! - **vs es-shape**: the `baseline` table, created `LIKE events INCLUDING ALL` (the same
//!   columns, constraints and indexes as es-rs's own), written with the same bare INSERTs:
//!   the cost of es-rs's code on its own table shape, without the cost of the shape.
//!
//! The command parts are: one writer on one growing aggregate (without the cache each
//! command replays the whole stream so far, so the figure falls as the stream grows; the
//! label says how long it got), one writer round-robin over 1,000 aggregates, and 1 and 8
//! writers each on aggregates of their own, with and without the state cache.
//!
//! Run with `cargo bench -p es-postgres --bench postgres` (DATABASE_URL, or the local
//! server); `-- <word>` runs only the parts whose name holds the word (`commands`,
//! `growing`, `aggregates`, `batched`, `reads`, `rehydrate`, `loads`, `latency`,
//! `projection`, `storage`). It works in schemas of its own and drops them at the end.
//! Prints figures; it asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, DomainEvent, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Position,
    Repository, SnapshotPolicy, StreamId, Version,
};
use es_postgres::PgEventStore;
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, Row as _};
use uuid::Uuid;

mod support;
use support::{
    Against, Bench, alternate3, baseline_inserts, median, memo, minimal_inserts,
    minimal_inserts_held, minimal_read, minimal_table_ddl, rate,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum LedgerEvent {
    Recorded { memo: String },
}

/// The payload of [`LedgerEvent::Recorded`] as the `minimal` table stores it (es-rs stores
/// the variant's fields untagged too): what the bare read decodes before it makes the event.
#[derive(Debug, Deserialize)]
struct RecordedPayload {
    memo: String,
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
    let mut bench =
        Bench::start_with_columns("es-postgres", 76, &["vs minimal", "vs es-shape", "vs held"])
            .await;

    // `cargo bench --bench postgres -- <word>` runs only the parts whose name holds it.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("commands") {
        single_event_commands(&mut bench).await;
    }
    if wanted("growing") {
        growing_aggregate(&mut bench).await;
    }
    if wanted("aggregates") {
        thousand_aggregates(&mut bench).await;
    }
    if wanted("batched") {
        batched_appends(&mut bench).await;
    }
    // One part: the 10,000-event stream both read.
    if wanted("reads") || wanted("rehydrate") {
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
    if wanted("storage") {
        storage(&mut bench).await;
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

/// Prints the two baselines of a command part: the minimal table's single-row commits (with
/// the es-shape table's ratio to them: the cost of the shape alone) and the es-shape table's.
fn record_baselines(bench: &mut Bench, connections: u64, measured: &[Against]) {
    let minimal = median(measured.iter().map(|a| a.minimal).collect());
    let baseline = median(measured.iter().map(|a| a.baseline).collect());
    let shape = median(measured.iter().map(|a| a.baseline_vs_minimal).collect());
    let connections = if connections == 1 {
        "1 connection".to_owned()
    } else {
        format!("{connections} connections")
    };
    bench.record_ratios(
        format!("minimal: bare single-row INSERT, {connections}"),
        minimal,
        "rows/s",
        &[None, None],
    );
    bench.record_ratios(
        format!("es-shape baseline: bare single-row INSERT, {connections}"),
        baseline,
        "rows/s",
        &[Some(shape), None],
    );
}

/// Prints one measured figure with its ratios to both baselines.
fn record_against(bench: &mut Bench, what: String, unit: &'static str, measured: Against) {
    bench.record_ratios(
        what,
        measured.ours,
        unit,
        &[Some(measured.vs_minimal), Some(measured.vs_baseline)],
    );
}

/// 1 and 8 writers, each on aggregates of its own, with the cache (one stream per writer)
/// and without (a new stream per command), against single-row INSERTs on as many
/// connections into each baseline table.
async fn single_event_commands(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const PER_WRITER_1: u64 = 200;
    const PER_WRITER_8: u64 = 60;
    // Warm the server and the statement caches.
    minimal_inserts(bench, 8, 50).await;
    baseline_inserts(bench, 8, 50).await;
    commands(bench, 8, 50, true, true).await;

    let b = &*bench;
    let mut results = Vec::new();
    for (writers, per_writer) in [(1, PER_WRITER_1), (8, PER_WRITER_8)] {
        let mut rows = Vec::new();
        // The server's own rate on connections held throughout (no pool, so none of
        // sqlx's checks), taken in every round just before the minimal baseline.
        let held = std::cell::RefCell::new(Vec::new());
        for (what, notify, cache) in [
            ("state cache", true, true),
            ("state cache, NOTIFY off", false, true),
            ("no cache: read, then append", true, false),
        ] {
            let held = &held;
            let measured = alternate3(
                ROUNDS,
                || async move {
                    let rate = minimal_inserts_held(b, writers, per_writer).await;
                    held.borrow_mut().push(rate);
                    minimal_inserts(b, writers, per_writer).await
                },
                || baseline_inserts(b, writers, per_writer),
                || commands(b, writers, per_writer, notify, cache),
            )
            .await;
            rows.push((what, measured));
        }
        results.push((writers, rows, median(held.into_inner())));
    }
    for (writers, rows, held) in results {
        let measured: Vec<_> = rows.iter().map(|r| r.1).collect();
        record_baselines(bench, writers, &measured);
        let minimal = median(measured.iter().map(|a| a.minimal).collect());
        bench.record_ratios(
            format!(
                "held: bare single-row INSERT, {writers} held connection{}",
                if writers == 1 { "" } else { "s" }
            ),
            held,
            "rows/s",
            &[Some(held / minimal), None, None],
        );
        for (what, measured) in rows {
            bench.record_ratios(
                format!(
                    "single-event commands, {writers} writer{} ({what})",
                    if writers == 1 { "" } else { "s" }
                ),
                measured.ours,
                "cmds/s",
                &[
                    Some(measured.vs_minimal),
                    Some(measured.vs_baseline),
                    Some(measured.ours / held),
                ],
            );
        }
    }
}

/// How a growing aggregate's commands load it.
#[derive(Clone, Copy)]
enum Loading {
    /// Replaying the whole stream so far (`SnapshotPolicy::Never`): the rate falls as the
    /// stream grows.
    Replaying,
    /// The default policy (a snapshot every 100 events): a snapshot and the events since.
    DefaultSnapshots,
    /// The state cache: each command is one append.
    Cached,
}

/// Commands by one writer on one new aggregate, `count` of them: the stream grows from 0 to
/// `count` events, loaded as `loading` says.
async fn growing(bench: &Bench, count: u64, loading: Loading) -> f64 {
    let repository = Repository::<Ledger, _>::new(bench.store(true));
    let repository = match loading {
        Loading::Replaying => repository.with_snapshot_policy(SnapshotPolicy::Never),
        Loading::DefaultSnapshots => repository,
        Loading::Cached => repository.with_cache(16),
    };
    let id = format!("grow-{}", Uuid::now_v7().simple());
    let start = Instant::now();
    for n in 0..count {
        repository.execute(&id, Record(memo(n))).await.unwrap();
    }
    rate(count, start.elapsed())
}

/// One writer, one growing aggregate, replaying, from the default snapshots and with the
/// cache, against single-row INSERTs on one connection.
async fn growing_aggregate(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const COMMANDS: u64 = 400;
    let b = &*bench;
    let mut rows = Vec::new();
    for (what, loading) in [
        (
            "no cache, no snapshots: replays the stream",
            Loading::Replaying,
        ),
        ("no cache, default snapshots", Loading::DefaultSnapshots),
        ("state cache", Loading::Cached),
    ] {
        let measured = alternate3(
            ROUNDS,
            || minimal_inserts(b, 1, COMMANDS),
            || baseline_inserts(b, 1, COMMANDS),
            || growing(b, COMMANDS, loading),
        )
        .await;
        rows.push((what, measured));
    }
    let measured: Vec<_> = rows.iter().map(|r| r.1).collect();
    record_baselines(bench, 1, &measured);
    for (what, measured) in rows {
        record_against(
            bench,
            format!("1 writer, one aggregate growing to {COMMANDS} events ({what})"),
            "cmds/s",
            measured,
        );
    }
}

/// `count` commands by one writer, round-robin over `ids`, going on from the aggregate
/// after the last one `next` was left at.
async fn round_robin(
    repository: &Repository<Ledger, PgEventStore>,
    ids: &[String],
    next: &AtomicUsize,
    count: usize,
) -> f64 {
    let start = Instant::now();
    for _ in 0..count {
        let n = next.fetch_add(1, Ordering::Relaxed);
        repository
            .execute(&ids[n % ids.len()], Record(memo(n as u64)))
            .await
            .unwrap();
    }
    rate(count as u64, start.elapsed())
}

/// One writer round-robin over 1,000 aggregates, with the cache (which holds them all) and
/// without, against single-row INSERTs on one connection. A first pass, not timed, creates
/// the 1,000 streams and fills the cache; the rounds go on round-robin from there, 250
/// commands each, the cached ones first (so no other writer makes the cache stale), on the
/// same streams: they hold 2 to 4 events when the uncached commands read them.
async fn thousand_aggregates(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const AGGREGATES: usize = 1_000;
    const PER_ROUND: usize = 250;
    let b = &*bench;
    let run = Uuid::now_v7().simple().to_string();
    let ids: Vec<String> = (0..AGGREGATES).map(|n| format!("rr-{run}-{n}")).collect();
    let next = AtomicUsize::new(0);
    let cached = Repository::<Ledger, _>::new(b.store(true)).with_cache(2 * AGGREGATES);
    round_robin(&cached, &ids, &next, AGGREGATES).await;
    let uncached = Repository::<Ledger, _>::new(b.store(true));
    let mut rows = Vec::new();
    for (what, repository) in [
        ("state cache", &cached),
        ("no cache: read, then append", &uncached),
    ] {
        let measured = alternate3(
            ROUNDS,
            || minimal_inserts(b, 1, PER_ROUND as u64),
            || baseline_inserts(b, 1, PER_ROUND as u64),
            || round_robin(repository, &ids, &next, PER_ROUND),
        )
        .await;
        rows.push((what, measured));
    }
    let measured: Vec<_> = rows.iter().map(|r| r.1).collect();
    record_baselines(bench, 1, &measured);
    for (what, measured) in rows {
        record_against(
            bench,
            format!("1 writer, 1,000 aggregates round-robin ({what})"),
            "cmds/s",
            measured,
        );
    }
}

/// Appends of 100 events per transaction by 1 and 4 writers, against multi-row INSERTs.
async fn batched_appends(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    const BATCHES: u64 = 40;
    const BATCH: u64 = 100;
    // Baselines: the same 100 rows in one bare multi-row INSERT per transaction, into each
    // table.
    let minimal_sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".minimal (stream_id, version, payload) \
         SELECT $1, v, jsonb_build_object('memo', $2::text) \
         FROM generate_series($3::bigint, $4::bigint) v",
        bench.schema
    ));
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
    let baseline = |sql: &Arc<str>, writers: u64| {
        let sql = Arc::clone(sql);
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
        let measured = alternate3(
            ROUNDS,
            || baseline(&minimal_sql, writers),
            || baseline(&sql, writers),
            || ours(writers),
        )
        .await;
        results.push((writers, measured));
    }
    for (writers, measured) in results {
        let connections = if writers == 1 {
            "1 connection".to_owned()
        } else {
            format!("{writers} connections")
        };
        bench.record_ratios(
            format!("minimal: bare 100-row INSERT per transaction, {connections}"),
            measured.minimal,
            "rows/s",
            &[None, None],
        );
        bench.record_ratios(
            format!("es-shape baseline: bare 100-row INSERT per transaction, {connections}"),
            measured.baseline,
            "rows/s",
            &[Some(measured.baseline_vs_minimal), None],
        );
        record_against(
            bench,
            format!("batched appends of 100 events, {connections}"),
            "events/s",
            measured,
        );
    }
}

/// One 10,000-event stream (written by the store, then copied row for row into both
/// baseline tables) read in alternating rounds: bare, all columns of the es-shape table;
/// bare, `SELECT payload` of the minimal table decoded by serde_json into `LedgerEvent`
/// (the least a load can do); the same bare read of es-rs's table, of the payloads alone
/// and of the columns a load selects (what a load could reach there if its own code cost
/// nothing); the store's `read_stream`; and `Repository::load`, the rehydration (no
/// snapshot, so it replays all 10,000 events).
async fn reads(bench: &mut Bench) {
    const EVENTS: u64 = 10_000;
    const ROUNDS: usize = 15;
    let store = bench.store(true);
    let id = format!("read-{}", Uuid::now_v7().simple());
    let stream = StreamId::new("ledger", &id).unwrap();
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
    // Baselines: the same rows, fetched bare.
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
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{s}\".minimal (stream_id, version, payload) \
         SELECT 'minimal-read', version, payload FROM \"{s}\".events WHERE stream_id = $1",
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
    // Two bounds on what a load can reach on es-rs's own table, each one bare statement
    // whose payloads are decoded as the minimal read decodes them: the payloads alone (the
    // cost of the table's wider rows), and the columns a load selects (`load_page.sql`).
    let from_events = |columns: &str| {
        format!(
            "SELECT {columns} FROM \"{}\".events WHERE stream_id = $1 ORDER BY version",
            bench.schema
        )
    };
    let payloads_only = from_events("payload");
    let load_columns = from_events(
        "position, transaction_id, version, event_id, event_type, schema_version, payload",
    );
    let bare_decoded = |sql: String, column: usize| {
        let (pool, stream) = (bench.pool.clone(), stream.clone());
        async move {
            let start = Instant::now();
            let events: Vec<LedgerEvent> = sqlx::query(AssertSqlSafe(sql))
                .bind(stream.as_str())
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| LedgerEvent::Recorded {
                    memo: row
                        .get::<sqlx::types::Json<RecordedPayload>, _>(column)
                        .0
                        .memo,
                })
                .collect();
            assert_eq!(events.len() as u64, EVENTS);
            rate(EVENTS, start.elapsed())
        }
    };
    let repository = Repository::<Ledger, _>::new(store.clone());
    let (mut base, mut minimal, mut bare_payloads, mut bare_load, mut read, mut load) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let rows = sqlx::query(AssertSqlSafe(bare.clone()))
            .fetch_all(&bench.pool)
            .await
            .unwrap();
        assert_eq!(rows.len() as u64, EVENTS);
        base.push(rate(EVENTS, start.elapsed()));

        let start = Instant::now();
        let events: Vec<LedgerEvent> = minimal_read::<RecordedPayload>(bench, "minimal-read")
            .await
            .into_iter()
            .map(|p| LedgerEvent::Recorded { memo: p.memo })
            .collect();
        assert_eq!(events.len() as u64, EVENTS);
        minimal.push(rate(EVENTS, start.elapsed()));

        bare_payloads.push(bare_decoded(payloads_only.clone(), 0).await);
        bare_load.push(bare_decoded(load_columns.clone(), 6).await);

        let start = Instant::now();
        let events: Vec<_> = store
            .read_stream::<LedgerEvent>(&stream, Version::INITIAL)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len() as u64, EVENTS);
        read.push(rate(EVENTS, start.elapsed()));

        let start = Instant::now();
        let loaded = repository.load(&id).await.unwrap();
        assert_eq!(loaded.state.entries, EVENTS);
        load.push(rate(EVENTS, start.elapsed()));
    }
    let ratio =
        |ours: &[f64], to: &[f64]| median(ours.iter().zip(to).map(|(o, b)| o / b).collect());
    bench.record_ratios(
        "es-shape baseline: bare SELECT of a 10,000-row stream (all columns)",
        median(base.clone()),
        "rows/s",
        &[None, None],
    );
    bench.record_ratios(
        "minimal: bare SELECT payload of 10,000 rows, serde_json decode",
        median(minimal.clone()),
        "events/s",
        &[None, None],
    );
    bench.record_ratios(
        "bare: SELECT payload of es-rs's table, decoded",
        median(bare_payloads.clone()),
        "events/s",
        &[
            Some(ratio(&bare_payloads, &minimal)),
            Some(ratio(&bare_payloads, &base)),
        ],
    );
    bench.record_ratios(
        "bare: the columns a load selects, payload decoded",
        median(bare_load.clone()),
        "events/s",
        &[
            Some(ratio(&bare_load, &minimal)),
            Some(ratio(&bare_load, &base)),
        ],
    );
    bench.record_ratios(
        "stream read of 10,000 events (decoded)",
        median(read.clone()),
        "events/s",
        &[Some(ratio(&read, &minimal)), Some(ratio(&read, &base))],
    );
    bench.record_ratios(
        "rehydrate: Repository::load of a 10,000-event stream",
        median(load.clone()),
        "events/s",
        &[Some(ratio(&load, &minimal)), Some(ratio(&load, &base))],
    );
}

/// Aggregate loads for histories of 10, 10,000 and 1,000,000 events: replaying every
/// event, and from a snapshot at the stream's end. With a snapshot the load reads the
/// snapshot and the (empty) tail of the stream, so its time should not grow with history.
async fn loads(bench: &mut Bench) {
    const RUNS: usize = 21;
    let store = bench.store(true);
    let replaying =
        Repository::<Ledger, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::Never);
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

/// The bytes of `table` (schema-qualified and quoted): in all (heap, indexes, toast and the
/// other forks, `pg_total_relation_size`), its heap's main fork, and each index's.
async fn sizes(pool: &sqlx::PgPool, table: &str) -> (i64, i64, Vec<(String, i64)>) {
    let (total, heap): (i64, i64) = sqlx::query_as(
        "SELECT pg_total_relation_size($1::text::regclass), pg_relation_size($1::text::regclass)",
    )
    .bind(table)
    .fetch_one(pool)
    .await
    .unwrap();
    let indexes = sqlx::query_as(
        "SELECT c.relname::text, pg_relation_size(i.indexrelid) \
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
         WHERE i.indrelid = $1::text::regclass ORDER BY c.relname",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap();
    (total, heap, indexes)
}

/// Bytes stored per event for the ~200-byte payload, in a schema of its own so that only
/// these events count: 20,000 events appended by the store (200 streams of 100, one append
/// each, stream ids `ledger-` and 32 hex digits), then the same rows copied into an es-shape
/// table and a minimal one. Each table's total (table, indexes, toast) per event, with its
/// ratio to the baselines' (here a ratio over 100% means more bytes), then the heap's and
/// each index's share.
async fn storage(bench: &mut Bench) {
    const STREAMS: u64 = 200;
    const PER_STREAM: u64 = 100;
    const EVENTS: u64 = STREAMS * PER_STREAM;
    let store = es_testkit::postgres::fresh_store_sized(2, |b| b).await;
    let pool = store.pool().clone();
    let schema = store.schema().as_str().to_owned();
    for _ in 0..STREAMS {
        let stream = StreamId::new("ledger", &Uuid::now_v7().simple().to_string()).unwrap();
        let events = (0..PER_STREAM)
            .map(|n| NewEvent::new(LedgerEvent::Recorded { memo: memo(n) }))
            .collect();
        store
            .append(&stream, ExpectedVersion::NoStream, events)
            .await
            .unwrap();
    }
    let (events, baseline, minimal) = (
        format!("\"{schema}\".events"),
        format!("\"{schema}\".baseline"),
        format!("\"{schema}\".minimal"),
    );
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE {baseline} (LIKE {events} INCLUDING ALL); {}; \
         INSERT INTO {baseline} (stream_id, version, event_id, event_type, schema_version, \
             payload, correlation_id, causation_id, actor, metadata, traceparent, tags) \
         SELECT stream_id, version, event_id, event_type, schema_version, payload, \
             correlation_id, causation_id, actor, metadata, traceparent, tags \
         FROM {events} ORDER BY transaction_id, position; \
         INSERT INTO {minimal} (stream_id, version, payload) \
         SELECT stream_id, version, payload FROM {events} ORDER BY transaction_id, position",
        minimal_table_ddl(&minimal)
    )))
    .execute(&pool)
    .await
    .unwrap();
    // The stream ids' length weighs on every row and on the (stream_id, version) index; the
    // payload's stored size is what "a 200-byte payload" means here.
    let (id_length, payload): (i32, f64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT max(length(stream_id)), avg(pg_column_size(payload))::float8 FROM {events}"
    )))
    .fetch_one(&pool)
    .await
    .unwrap();
    bench.record_ratios(
        format!("storage: {EVENTS} events; stream id length"),
        f64::from(id_length),
        "chars",
        &[None, None],
    );
    bench.record_ratios(
        "storage: payload (jsonb) stored size, average",
        payload,
        "bytes",
        &[None, None],
    );
    let per_event = |bytes: i64| bytes as f64 / EVENTS as f64;
    let measured = [
        ("es-rs events", sizes(&pool, &events).await),
        ("es-shape baseline", sizes(&pool, &baseline).await),
        ("minimal", sizes(&pool, &minimal).await),
    ];
    let (base_total, minimal_total) = (measured[1].1.0, measured[2].1.0);
    for (what, (total, heap, indexes)) in measured {
        bench.record_ratios(
            format!("storage, {what}: table + indexes + toast, per event"),
            per_event(total),
            "bytes",
            &[
                Some(total as f64 / minimal_total as f64),
                Some(total as f64 / base_total as f64),
            ],
        );
        bench.record_ratios("  heap", per_event(heap), "bytes", &[None, None]);
        let mut rest = total - heap;
        for (index, bytes) in indexes {
            rest -= bytes;
            bench.record_ratios(
                format!("  index {index}"),
                per_event(bytes),
                "bytes",
                &[None, None],
            );
        }
        bench.record_ratios(
            "  toast and the other forks",
            per_event(rest),
            "bytes",
            &[None, None],
        );
    }
    es_testkit::postgres::drop_schema(store).await;
}
