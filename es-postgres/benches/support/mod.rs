//! What the benchmark binaries share: a schema with two bare-SQL tables beside the store's
//! (`baseline`, shaped like `events`, and `minimal`, the least a versioned event table can
//! be), alternating rounds against those baselines, and the printed table of figures.

#![allow(dead_code, reason = "each benchmark binary uses a part")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use es_postgres::PgEventStore;
use serde::de::DeserializeOwned;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// A memo of about 200 bytes of JSON, the payload size the baseline uses too.
pub(crate) fn memo(n: u64) -> String {
    format!("{n:>12} {}", "lorem ipsum dolor sit amet ".repeat(6))
}

/// The statement that creates the minimal event table `table` (schema-qualified and
/// quoted): a stream id, a version and the payload, with the unique `(stream_id, version)`
/// index that optimistic concurrency needs and nothing else. The figures the issue on
/// performance sets its targets against are this table's.
pub(crate) fn minimal_table_ddl(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (stream_id text, version bigint, payload jsonb); \
         CREATE UNIQUE INDEX ON {table} (stream_id, version)"
    )
}

/// A schema of its own, the printed table of figures, and the store the schema belongs to.
pub(crate) struct Bench {
    pub(crate) pool: PgPool,
    pub(crate) schema: String,
    rows: Vec<Row>,
    store: PgEventStore,
    /// The width of the printed labels.
    width: usize,
    /// The names of the ratio columns, one per baseline a row can be measured against.
    columns: Vec<&'static str>,
}

struct Row {
    what: String,
    figure: f64,
    unit: &'static str,
    ratios: Vec<Option<f64>>,
}

impl Bench {
    /// A migrated schema of its own on the tests' server (DATABASE_URL), with a `baseline`
    /// table of the same shape as `events` and a `minimal` one, and the header printed with
    /// one ratio column.
    pub(crate) async fn start(title: &str) -> Self {
        Self::start_with_columns(title, 62, &["ratio"]).await
    }

    /// As [`Bench::start`], with labels `width` wide and a ratio column for each name in
    /// `columns` (see [`Bench::record_ratios`]).
    pub(crate) async fn start_with_columns(
        title: &str,
        width: usize,
        columns: &[&'static str],
    ) -> Self {
        // The tests' helper: the same server, a migrated schema of its own, and the "no
        // server answers" message with how to start one.
        let store = es_testkit::postgres::fresh_store_sized(10, |b| b).await;
        let pool = store.pool().clone();
        let schema = store.schema().as_str().to_owned();
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE \"{schema}\".baseline (LIKE \"{schema}\".events INCLUDING ALL)"
        )))
        .execute(&pool)
        .await
        .unwrap();
        sqlx::raw_sql(AssertSqlSafe(minimal_table_ddl(&format!(
            "\"{schema}\".minimal"
        ))))
        .execute(&pool)
        .await
        .unwrap();
        let server: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await
            .unwrap();
        println!(
            "{title} against PostgreSQL {server}; ratios are to the baseline of the same run that each part names\n"
        );
        let mut header = format!("{:<width$} {:>10} {:<9}", "measure", "figure", "unit");
        for column in columns {
            header.push_str(&format!(" {column:>w$}", w = column.len().max(6)));
        }
        println!("{header}");
        Self {
            pool,
            schema,
            rows: Vec::new(),
            store,
            width,
            columns: columns.to_vec(),
        }
    }

    /// Drops the schema.
    pub(crate) async fn finish(self) {
        es_testkit::postgres::drop_schema(self.store).await;
    }

    /// Prints and keeps one figure; `ratio` is to its baseline (the first ratio column).
    pub(crate) fn record(
        &mut self,
        what: impl Into<String>,
        figure: f64,
        unit: &'static str,
        ratio: Option<f64>,
    ) {
        self.record_ratios(what, figure, unit, &[ratio]);
    }

    /// Prints and keeps one figure with its ratio to each baseline, in the order of the
    /// ratio columns the bench started with (`None` leaves a column blank).
    pub(crate) fn record_ratios(
        &mut self,
        what: impl Into<String>,
        figure: f64,
        unit: &'static str,
        ratios: &[Option<f64>],
    ) {
        let row = Row {
            what: what.into(),
            figure,
            unit,
            ratios: ratios.to_vec(),
        };
        let mut line = format!(
            "{:<w$} {:>10.0} {:<9}",
            row.what,
            row.figure,
            row.unit,
            w = self.width
        );
        for (i, column) in self.columns.iter().enumerate() {
            let w = column.len().max(6);
            let cell = match row.ratios.get(i).copied().flatten() {
                Some(r) => format!("{:>w$}", format!("{:>5.0}%", 100.0 * r)),
                // A blank last column prints nothing (as the one-column table always did).
                None if i + 1 == self.columns.len() => String::new(),
                None => " ".repeat(w),
            };
            line.push(' ');
            line.push_str(&cell);
        }
        if self.columns.len() > 1 {
            // No trailing blanks after the last ratio; the one-column table keeps its line as
            // it always printed it.
            line.truncate(line.trim_end().len());
        }
        println!("{line}");
        self.rows.push(row);
    }

    /// A store on the bench's pool, keeping connections at hand between calls as a store
    /// that opens its pool does (the pool checks connections as such a store's does).
    pub(crate) fn store(&self, notify: bool) -> PgEventStore {
        PgEventStore::builder(self.pool.clone())
            .schema(&self.schema)
            .unwrap()
            .notify(notify)
            .keep_connections(KEEP)
            .build()
    }
}

/// How long the benches' stores keep connections at hand: the default of a store that
/// opens its pool.
pub(crate) const KEEP: Option<std::time::Duration> =
    Some(es_postgres::PgPoolSettings::DEFAULT_KEEP_CONNECTIONS);

pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Measures `ours` against `baseline` in alternating rounds and returns the median of each
/// and the median of the per-round ratios: the server's pace drifts (checkpoints, vacuum,
/// the other core's load), and alternating keeps both sides under the same drift.
pub(crate) async fn alternate<B, O, FB, FO>(
    rounds: usize,
    mut baseline: B,
    mut ours: O,
) -> (f64, f64, f64)
where
    B: FnMut() -> FB,
    O: FnMut() -> FO,
    FB: Future<Output = f64>,
    FO: Future<Output = f64>,
{
    let (mut base, mut mine, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = baseline().await;
        let o = ours().await;
        base.push(b);
        mine.push(o);
        ratios.push(o / b);
    }
    (median(base), median(mine), median(ratios))
}

/// The medians of three sides measured in alternating rounds, and the medians of the
/// per-round ratios of `ours` to each baseline.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Against {
    pub(crate) minimal: f64,
    pub(crate) baseline: f64,
    pub(crate) ours: f64,
    /// Median of `ours / minimal` per round.
    pub(crate) vs_minimal: f64,
    /// Median of `ours / baseline` per round.
    pub(crate) vs_baseline: f64,
    /// Median of `baseline / minimal` per round: the cost of the shape alone.
    pub(crate) baseline_vs_minimal: f64,
}

/// As [`alternate`], with two baselines: each round runs `minimal`, then `baseline`, then
/// `ours`, so all three sides share the server's drift.
pub(crate) async fn alternate3<M, B, O, FM, FB, FO>(
    rounds: usize,
    mut minimal: M,
    mut baseline: B,
    mut ours: O,
) -> Against
where
    M: FnMut() -> FM,
    B: FnMut() -> FB,
    O: FnMut() -> FO,
    FM: Future<Output = f64>,
    FB: Future<Output = f64>,
    FO: Future<Output = f64>,
{
    let (mut min, mut base, mut mine) = (Vec::new(), Vec::new(), Vec::new());
    let (mut vs_min, mut vs_base, mut shape) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let m = minimal().await;
        let b = baseline().await;
        let o = ours().await;
        min.push(m);
        base.push(b);
        mine.push(o);
        vs_min.push(o / m);
        vs_base.push(o / b);
        shape.push(b / m);
    }
    Against {
        minimal: median(min),
        baseline: median(base),
        ours: median(mine),
        vs_minimal: median(vs_min),
        vs_baseline: median(vs_base),
        baseline_vs_minimal: median(shape),
    }
}

pub(crate) fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Runs `writers` tasks at once, each calling `write(writer, n)` for `n` in
/// `0..per_writer` one after another, and returns the rate of all the calls.
pub(crate) async fn concurrently<F, Fut>(writers: u64, per_writer: u64, write: F) -> f64
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let write = Arc::new(write);
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let write = Arc::clone(&write);
            tokio::spawn(async move {
                for n in 0..per_writer {
                    write(writer, n).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rate(writers * per_writer, start.elapsed())
}

/// Bare single-row INSERT transactions by `writers` connections, `per_writer` each, each
/// writer on its own stream: the rate the server can commit rows of this shape.
pub(crate) async fn baseline_inserts(bench: &Bench, writers: u64, per_writer: u64) -> f64 {
    // The same columns a command writes: payload, correlation and causation ids, and the
    // (empty) free-form metadata.
    let sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".baseline (stream_id, version, event_id, event_type, schema_version, payload, \
             correlation_id, causation_id, metadata) \
         VALUES ($1, $2, $3, 'Recorded', 1, $4, $5, $5, '{{}}')",
        bench.schema
    ));
    let (pool, run) = (bench.pool.clone(), Uuid::now_v7().simple().to_string());
    concurrently(writers, per_writer, move |writer, n| {
        let (pool, sql) = (pool.clone(), Arc::clone(&sql));
        let stream = format!("baseline-{run}-{writer}");
        async move {
            sqlx::query(AssertSqlSafe(sql))
                .bind(stream)
                .bind(i64::try_from(n + 1).unwrap())
                .bind(Uuid::now_v7())
                .bind(serde_json::json!({ "memo": memo(n) }))
                .bind(Uuid::now_v7())
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await
}

/// Single-row INSERT transactions into the `minimal` table by `writers` connections,
/// `per_writer` each, each writer on its own stream (versions 1, 2, ...) with the payload
/// `baseline_inserts` writes: the rate the server commits the least an event row can be.
pub(crate) async fn minimal_inserts(bench: &Bench, writers: u64, per_writer: u64) -> f64 {
    let sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".minimal (stream_id, version, payload) VALUES ($1, $2, $3)",
        bench.schema
    ));
    let (pool, run) = (bench.pool.clone(), Uuid::now_v7().simple().to_string());
    concurrently(writers, per_writer, move |writer, n| {
        let (pool, sql) = (pool.clone(), Arc::clone(&sql));
        let stream = format!("minimal-{run}-{writer}");
        async move {
            sqlx::query(AssertSqlSafe(sql))
                .bind(stream)
                .bind(i64::try_from(n + 1).unwrap())
                .bind(serde_json::json!({ "memo": memo(n) }))
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await
}

/// As [`minimal_inserts`], each writer on one connection it holds throughout instead of
/// one from the pool per row: without sqlx's check of each connection on its way back to
/// the pool (a round trip per row that no pool option turns off), the server's own rate.
pub(crate) async fn minimal_inserts_held(bench: &Bench, writers: u64, per_writer: u64) -> f64 {
    let sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".minimal (stream_id, version, payload) VALUES ($1, $2, $3)",
        bench.schema
    ));
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let (pool, sql) = (bench.pool.clone(), Arc::clone(&sql));
            let stream = format!("held-{run}-{writer}");
            tokio::spawn(async move {
                let mut connection = pool.acquire().await.unwrap();
                for n in 0..per_writer {
                    sqlx::query(AssertSqlSafe(Arc::clone(&sql)))
                        .bind(&stream)
                        .bind(i64::try_from(n + 1).unwrap())
                        .bind(serde_json::json!({ "memo": memo(n) }))
                        .execute(&mut *connection)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    rate(writers * per_writer, start.elapsed())
}

/// Reads the stream `stream_id` of the `minimal` table in version order, decoding each
/// payload with serde_json into a `T` (straight from the row's bytes, no JSON value in
/// between): the least a load can do.
pub(crate) async fn minimal_read<T>(bench: &Bench, stream_id: &str) -> Vec<T>
where
    T: DeserializeOwned + Send + Unpin + 'static,
{
    sqlx::query_scalar::<_, sqlx::types::Json<T>>(AssertSqlSafe(format!(
        "SELECT payload FROM \"{}\".minimal WHERE stream_id = $1 ORDER BY version",
        bench.schema
    )))
    .bind(stream_id)
    .fetch_all(&bench.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|payload| payload.0)
    .collect()
}

/// As [`minimal_inserts`], on `pool` (a pool of its own, sized for the part), into the
/// `minimal` table of `schema`.
pub(crate) async fn minimal_inserts_on(
    pool: &PgPool,
    schema: &str,
    writers: u64,
    per_writer: u64,
) -> f64 {
    let sql: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{schema}\".minimal (stream_id, version, payload) VALUES ($1, $2, $3)"
    ));
    let (pool, run) = (pool.clone(), Uuid::now_v7().simple().to_string());
    concurrently(writers, per_writer, move |writer, n| {
        let (pool, sql) = (pool.clone(), Arc::clone(&sql));
        let stream = format!("minimal-{run}-{writer}");
        async move {
            sqlx::query(AssertSqlSafe(sql))
                .bind(stream)
                .bind(i64::try_from(n + 1).unwrap())
                .bind(serde_json::json!({ "memo": memo(n) }))
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await
}
