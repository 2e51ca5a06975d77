//! Decisions across streams on PostgreSQL (tags, `read_query`, `append_if`), each beside a
//! bare-SQL baseline measured in the same run: decisions per second for one client and for
//! eight on disjoint tags (against bare single-row INSERT transactions on as many
//! connections), eight clients contending for the seats of one course (accepted, retried,
//! refused, and violations, which must be zero), and a query read of 10,000 tagged events
//! (against a bare SELECT of the same rows).
//!
//! Run with `cargo bench -p es-postgres --bench dcb` (DATABASE_URL, or the local server).
//! It works in a schema of its own and drops it at the end. Prints figures; it asserts
//! nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use es_core::{
    AppendCondition, AppendError, DomainEvent, EventStore as _, ExpectedVersion, NewEvent,
    Position, Query, QueryItem, RawEvent, StreamId, Tag,
};
use es_postgres::PgEventStore;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

mod support;
use support::{Bench, alternate, baseline_inserts, median, memo, rate};

/// A student took a seat in a course: tagged with both, so that a course's seats and a
/// student's courses are each one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum CourseEvent {
    Subscribed {
        course: String,
        student: String,
        memo: String,
    },
}

impl CourseEvent {
    fn tags_of(&self) -> Vec<Tag> {
        let Self::Subscribed {
            course, student, ..
        } = self;
        vec![
            Tag::pair("course", course).unwrap(),
            Tag::pair("student", student).unwrap(),
        ]
    }
}

/// What one decision ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Full,
}

/// Counts over a run of decisions.
#[derive(Default)]
struct Tally {
    accepted: AtomicU64,
    full: AtomicU64,
    retried: AtomicU64,
}

/// One decision: read the course's seats, refuse if full, else take one on the condition
/// that no seat was taken since the read; a failed condition reads and decides again.
async fn subscribe(
    store: &PgEventStore,
    course: &str,
    student: &str,
    capacity: u64,
    tally: &Tally,
) -> Outcome {
    let seats =
        Query::from(QueryItem::of::<CourseEvent>().with_tag(Tag::pair("course", course).unwrap()));
    let stream = StreamId::new("student", student).unwrap();
    for _ in 0..200 {
        let read: Vec<_> = store
            .read_query::<RawEvent>(&seats, Position::START)
            .try_collect()
            .await
            .unwrap();
        if read.len() as u64 >= capacity {
            tally.full.fetch_add(1, Ordering::Relaxed);
            return Outcome::Full;
        }
        let event = CourseEvent::Subscribed {
            course: course.to_owned(),
            student: student.to_owned(),
            memo: memo(read.len() as u64),
        };
        let new = NewEvent::new(event.clone())
            .with_metadata(es_core::Metadata::new().with_tags(event.tags_of()));
        let condition = AppendCondition::new(seats.clone()).after(read.last().map(|e| e.position));
        match store
            .append_if(&stream, ExpectedVersion::Any, vec![new], condition)
            .await
        {
            Ok(_) => {
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                return Outcome::Accepted;
            }
            Err(AppendError::ConditionFailed { .. }) => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => panic!("decision failed: {error}"),
        }
    }
    panic!("a decision failed its condition 200 times in a row");
}

/// `clients` tasks, `per_client` decisions each, every decision on a course of its own
/// (capacity 1, so each reads nothing and takes the seat): the cost of a decision when
/// nothing contends.
async fn disjoint(store: &PgEventStore, clients: u64, per_client: u64) -> f64 {
    let run = Uuid::now_v7().simple().to_string();
    let tally = Arc::new(Tally::default());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let store = store.clone();
        let tally = Arc::clone(&tally);
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let course = format!("{run}-{client}-{n}");
                let outcome = subscribe(&store, &course, &format!("s{client}"), 1, &tally).await;
                assert_eq!(outcome, Outcome::Accepted);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rate(clients * per_client, start.elapsed())
}

async fn uncontended(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    let store = bench.store(true);
    // Warm the server and the statement caches.
    baseline_inserts(bench, 8, 50).await;
    disjoint(&store, 8, 50).await;
    let b = &*bench;
    let mut rows = Vec::new();
    for (clients, per_client) in [(1, 400), (8, 150)] {
        let (base, ours, ratio) = alternate(
            ROUNDS,
            || baseline_inserts(b, clients, per_client),
            || disjoint(&store, clients, per_client),
        )
        .await;
        rows.push((clients, base, ours, ratio));
    }
    for (clients, base, ours, ratio) in rows {
        let plural = if clients == 1 { "" } else { "s" };
        bench.record(
            format!("baseline: bare single-row INSERT, {clients} connection{plural}"),
            base,
            "rows/s",
            None,
        );
        bench.record(
            format!("decisions, {clients} client{plural}, disjoint tags"),
            ours,
            "dec/s",
            Some(ratio),
        );
        if clients == 1 {
            bench.record(
                "  one decision (read + conditional append), microseconds",
                1e6 / ours,
                "µs",
                None,
            );
        }
    }
}

/// Eight clients racing for the seats of one course per round, twice as many attempts as
/// seats: every seat must be taken, none twice.
async fn contended(bench: &mut Bench) {
    const ROUNDS: u64 = 5;
    const CLIENTS: u64 = 8;
    const PER_CLIENT: u64 = 20;
    const CAPACITY: u64 = CLIENTS * PER_CLIENT / 2;
    let store = bench.store(true);
    let tally = Arc::new(Tally::default());
    let mut violations = 0;
    let mut rates = Vec::new();
    for round in 0..ROUNDS {
        let course = format!("contended-{}-{round}", Uuid::now_v7().simple());
        let accepted_before = tally.accepted.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client in 0..CLIENTS {
            let store = store.clone();
            let tally = Arc::clone(&tally);
            let course = course.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let student = format!("s{client}-{n}");
                    subscribe(&store, &course, &student, CAPACITY, &tally).await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        rates.push(rate(CLIENTS * PER_CLIENT, start.elapsed()));
        let accepted = tally.accepted.load(Ordering::Relaxed) - accepted_before;
        // What the log holds, read back, must be exactly the capacity too.
        let seats = Query::from(
            QueryItem::of::<CourseEvent>().with_tag(Tag::pair("course", &course).unwrap()),
        );
        let stored = store
            .read_query::<RawEvent>(&seats, Position::START)
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .len() as u64;
        violations += accepted.abs_diff(CAPACITY) + stored.abs_diff(CAPACITY);
    }
    bench.record(
        format!("decisions, {CLIENTS} clients contending for {CAPACITY} seats"),
        median(rates),
        "dec/s",
        None,
    );
    let attempts = ROUNDS * CLIENTS * PER_CLIENT;
    bench.record(
        format!("  of {attempts} decisions: accepted"),
        tally.accepted.load(Ordering::Relaxed) as f64,
        "",
        None,
    );
    bench.record(
        "  refused (course full)",
        tally.full.load(Ordering::Relaxed) as f64,
        "",
        None,
    );
    bench.record(
        "  condition failed, read and decided again",
        tally.retried.load(Ordering::Relaxed) as f64,
        "",
        None,
    );
    bench.record("  violations (must be 0)", violations as f64, "", None);
}

/// A query read of 10,000 tagged events among as many others, against a bare SELECT of
/// the same rows by tag.
async fn query_reads(bench: &mut Bench) {
    const EVENTS: u64 = 10_000;
    let store = bench.store(true);
    let course = format!("big-{}", Uuid::now_v7().simple());
    for (name, n) in [(course.as_str(), EVENTS), ("noise", EVENTS)] {
        for chunk in 0..n / 1_000 {
            let stream =
                StreamId::new("student", &format!("{name}-{}", Uuid::now_v7().simple())).unwrap();
            let events = (0..1_000)
                .map(|i| {
                    let event = CourseEvent::Subscribed {
                        course: if name == "noise" {
                            format!("noise-{chunk}-{i}")
                        } else {
                            name.to_owned()
                        },
                        student: format!("s{chunk}-{i}"),
                        memo: memo(i),
                    };
                    let tags = event.tags_of();
                    NewEvent::new(event).with_metadata(es_core::Metadata::new().with_tags(tags))
                })
                .collect();
            store
                .append(&stream, ExpectedVersion::Any, events)
                .await
                .unwrap();
        }
    }
    let tag = format!("course:{course}");
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{s}\".baseline SELECT * FROM \"{s}\".events WHERE tags @> ARRAY[$1]::text[]",
        s = bench.schema
    )))
    .bind(&tag)
    .execute(&bench.pool)
    .await
    .unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "ANALYZE \"{}\".events",
        bench.schema
    )))
    .execute(&bench.pool)
    .await
    .unwrap();
    let bare = format!(
        "SELECT position, transaction_id, stream_id, version, event_id, event_type, schema_version, \
             payload, correlation_id, causation_id, actor, metadata, recorded_at, tags \
         FROM \"{}\".baseline WHERE tags @> ARRAY[$1]::text[] ORDER BY transaction_id, position",
        bench.schema
    );
    let query =
        Query::from(QueryItem::of::<CourseEvent>().with_tag(Tag::pair("course", &course).unwrap()));
    let mut base = Vec::new();
    let mut ours = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let rows = sqlx::query(AssertSqlSafe(bare.clone()))
            .bind(&tag)
            .fetch_all(&bench.pool)
            .await
            .unwrap();
        assert_eq!(rows.len() as u64, EVENTS);
        base.push(rate(EVENTS, start.elapsed()));
        let start = Instant::now();
        let events: Vec<_> = store
            .read_query::<CourseEvent>(&query, Position::START)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(events.len() as u64, EVENTS);
        ours.push(rate(EVENTS, start.elapsed()));
    }
    let ratio = median(ours.iter().zip(&base).map(|(o, b)| o / b).collect());
    bench.record(
        "baseline: bare SELECT of 10,000 rows by tag (all columns)",
        median(base),
        "rows/s",
        None,
    );
    bench.record(
        "query read of 10,000 tagged events among 20,000 (decoded)",
        median(ours),
        "events/s",
        Some(ratio),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut bench = Bench::start("es-postgres decisions across streams").await;
    // `cargo bench --bench dcb -- <word>` runs only the parts whose name holds it.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
    if wanted("disjoint") {
        uncontended(&mut bench).await;
    }
    if wanted("contention") {
        contended(&mut bench).await;
    }
    if wanted("reads") {
        query_reads(&mut bench).await;
    }
    bench.finish().await;
}
