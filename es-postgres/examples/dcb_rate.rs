//! A quick measurement of conditional appends beside bare single-row INSERT transactions
//! and ordinary appends, in one run, alternating rounds (the benchmark proper, with the
//! contended and query-read cases, belongs to `benches/`):
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run -p es-postgres --example dcb_rate --release -- 3
//! ```
//!
//! The argument is the seconds of each measurement (default 2). Each writer works on tags
//! and streams of its own (the disjoint case), in a schema of the run's own, dropped at the
//! end.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a measuring tool: the figures are its output, a failed step ends it"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use es_core::{
    AppendCondition, EventStore as _, ExpectedVersion, Metadata, NewEvent, Query, QueryItem,
    RawEvent, StreamId, Tag,
};
use es_postgres::{PgEventStore, PgPoolOptions};
use serde_json::json;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Bare,
    Append,
    TaggedAppend,
    Decision,
}

/// Operations per second by `writers` tasks of `kind` for `seconds`.
async fn measure(store: &PgEventStore, kind: Kind, writers: usize, seconds: f64) -> f64 {
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let bare: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".baseline (stream_id, version, payload) VALUES ($1, $2, $3)",
        store.schema()
    ));
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let (store, bare) = (store.clone(), Arc::clone(&bare));
        tasks.push(tokio::spawn(async move {
            let run = Uuid::now_v7().simple().to_string();
            let mut done = 0_u64;
            while Instant::now() < until {
                let payload =
                    json!({ "memo": format!("{writer:04}-{done:012}-{}", "x".repeat(160)) });
                let stream = StreamId::new("bench", &format!("{run}-{done}")).unwrap();
                let tag = Tag::pair("course", format!("{run}-{done}")).unwrap();
                let event = NewEvent::new(RawEvent::new("Recorded", 1, payload.clone()));
                match kind {
                    Kind::Bare => {
                        sqlx::query(AssertSqlSafe(Arc::clone(&bare)))
                            .bind(stream.as_str())
                            .bind(1_i64)
                            .bind(&payload)
                            .execute(store.pool())
                            .await
                            .unwrap();
                    }
                    Kind::Append => {
                        store
                            .append(&stream, ExpectedVersion::NoStream, vec![event])
                            .await
                            .unwrap();
                    }
                    Kind::TaggedAppend => {
                        let event = event.with_metadata(Metadata::new().with_tag(tag));
                        store
                            .append(&stream, ExpectedVersion::NoStream, vec![event])
                            .await
                            .unwrap();
                    }
                    Kind::Decision => {
                        let query = Query::from(QueryItem::new().with_tag(tag.clone()));
                        let event = event.with_metadata(Metadata::new().with_tag(tag));
                        store
                            .append_if(
                                &stream,
                                ExpectedVersion::NoStream,
                                vec![event],
                                AppendCondition::new(query),
                            )
                            .await
                            .unwrap();
                    }
                }
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2.0);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await
        .unwrap();
    let schema = format!("es_dcb_rate_{}", Uuid::now_v7().simple());
    let store = PgEventStore::builder(pool.clone())
        .schema(&schema)
        .unwrap()
        .build();
    store.migrate().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE TABLE \"{schema}\".baseline (stream_id text NOT NULL, version bigint NOT NULL, \
         payload jsonb NOT NULL, UNIQUE (stream_id, version))"
    )))
    .execute(&pool)
    .await
    .unwrap();
    for writers in [1, 8] {
        let mut rows: Vec<(Kind, Vec<f64>)> =
            [Kind::Bare, Kind::Append, Kind::TaggedAppend, Kind::Decision]
                .into_iter()
                .map(|kind| (kind, Vec::new()))
                .collect();
        for _ in 0..3 {
            for (kind, figures) in &mut rows {
                figures.push(measure(&store, *kind, writers, seconds).await);
            }
        }
        let median = |figures: &[f64]| {
            let mut sorted = figures.to_vec();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        };
        let bare = median(&rows[0].1);
        for (kind, figures) in &rows {
            let figure = median(figures);
            println!(
                "{writers} writer(s) {kind:<13?} {figure:>8.0}/s {:>5.0}% of bare (rounds: {})",
                100.0 * figure / bare,
                figures
                    .iter()
                    .map(|f| format!("{f:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}
