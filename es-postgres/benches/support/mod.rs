//! What the benchmark binaries share: a schema with a bare-SQL `baseline` table beside the
//! store's, alternating rounds against that baseline, and the printed table of figures.

#![allow(dead_code, reason = "each benchmark binary uses a part")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use es_postgres::PgEventStore;
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// A memo of about 200 bytes of JSON, the payload size the baseline uses too.
pub(crate) fn memo(n: u64) -> String {
    format!("{n:>12} {}", "lorem ipsum dolor sit amet ".repeat(6))
}

pub(crate) struct Bench {
    pub(crate) pool: PgPool,
    pub(crate) schema: String,
    rows: Vec<Row>,
    store: PgEventStore,
}

struct Row {
    what: String,
    figure: f64,
    unit: &'static str,
    ratio: Option<f64>,
}

impl Bench {
    /// A migrated schema of its own on the tests' server (DATABASE_URL), with a `baseline`
    /// table of the same shape as `events`, and the header printed.
    pub(crate) async fn start(title: &str) -> Self {
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
        let server: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await
            .unwrap();
        println!(
            "{title} against PostgreSQL {server}; ratios are to the baseline of the same run that each part names\n"
        );
        println!(
            "{:<62} {:>10} {:<9} {:>6}",
            "measure", "figure", "unit", "ratio"
        );
        Self {
            pool,
            schema,
            rows: Vec::new(),
            store,
        }
    }

    /// Drops the schema.
    pub(crate) async fn finish(self) {
        es_testkit::postgres::drop_schema(self.store).await;
    }

    /// Prints and keeps one figure; `ratio` is to its baseline.
    pub(crate) fn record(
        &mut self,
        what: impl Into<String>,
        figure: f64,
        unit: &'static str,
        ratio: Option<f64>,
    ) {
        let row = Row {
            what: what.into(),
            figure,
            unit,
            ratio,
        };
        let ratio = row
            .ratio
            .map(|r| format!("{:>5.0}%", 100.0 * r))
            .unwrap_or_default();
        println!(
            "{:<62} {:>10.0} {:<9} {ratio}",
            row.what, row.figure, row.unit
        );
        self.rows.push(row);
    }

    pub(crate) fn store(&self, notify: bool) -> PgEventStore {
        PgEventStore::builder(self.pool.clone())
            .schema(&self.schema)
            .unwrap()
            .notify(notify)
            .build()
    }
}

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

pub(crate) fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
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
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let pool = bench.pool.clone();
        let sql = Arc::clone(&sql);
        let stream = format!("baseline-{}-{writer}", Uuid::now_v7().simple());
        tasks.push(tokio::spawn(async move {
            for n in 0..per_writer {
                sqlx::query(AssertSqlSafe(Arc::clone(&sql)))
                    .bind(&stream)
                    .bind(i64::try_from(n + 1).unwrap())
                    .bind(Uuid::now_v7())
                    .bind(serde_json::json!({ "memo": memo(n) }))
                    .bind(Uuid::now_v7())
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rate(writers * per_writer, start.elapsed())
}
