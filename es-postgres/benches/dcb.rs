//! Decisions across streams on PostgreSQL (tags, `read_query`, `append_if`), each beside a
//! bare-SQL baseline measured in the same run: decisions per second for one client and for
//! eight on disjoint tags (against bare single-row INSERT transactions on as many
//! connections), each also with the first attempt unread and beside the same decisions
//! in bare SQL without a condition (a SELECT by tag, then a tagged INSERT: the floor of a
//! decision that reads, then appends), eight clients contending for the seats of one
//! course (accepted, retried,
//! refused, and violations, which must be zero), and a query read of 10,000 tagged events
//! (against a bare SELECT of the same rows); single-event appends, untagged and tagged,
//! against bare inserts: what tags cost an ordinary append; and, by `pgbench` with no Rust
//! client at all, the server's share of a decision against a bare insert (`server.rs`).
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
    Decider, Decision, DecisionError, DecisionState, DomainEvent, EventStore as _, ExpectedVersion,
    NewEvent, Position, Query, QueryItem, RawEvent, StreamId, Tag,
};
use es_postgres::PgEventStore;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

mod support;

#[path = "dcb/server.rs"]
mod server;
use support::{Bench, alternate, baseline_inserts, concurrently, median, memo, rate};

/// A student took a seat in a course: tagged with both by the derive, so that a course's
/// seats and a student's courses are each one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum CourseEvent {
    Subscribed {
        #[tag(prefix = "course")]
        course: String,
        #[tag(prefix = "student")]
        student: String,
        memo: String,
    },
}

/// The seats taken in one course.
struct Seats {
    course: Tag,
    taken: u64,
}

impl DecisionState for Seats {
    type Event = CourseEvent;

    fn query(&self) -> Query {
        QueryItem::of::<CourseEvent>()
            .with_tag(self.course.clone())
            .into()
    }

    fn apply(&mut self, _: &CourseEvent) {
        self.taken += 1;
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the course is full")]
struct Full;

/// A student takes a seat in a course while it has one.
struct Subscribe {
    course: String,
    student: String,
    capacity: u64,
}

impl Decision for Subscribe {
    type State = Seats;
    type Event = CourseEvent;
    type Error = Full;

    fn state(&self) -> Seats {
        Seats {
            course: Tag::pair("course", &self.course).unwrap(),
            taken: 0,
        }
    }

    fn stream(&self) -> StreamId {
        StreamId::new("student", &self.student).unwrap()
    }

    fn decide(&self, seats: &Seats) -> Result<Vec<CourseEvent>, Full> {
        if seats.taken >= self.capacity {
            return Err(Full);
        }
        Ok(vec![CourseEvent::Subscribed {
            course: self.course.clone(),
            student: self.student.clone(),
            memo: memo(seats.taken),
        }])
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

/// One decision through the `Decider`: it reads the course's seats, refuses if full, else
/// takes one on the condition that no seat was taken since its read, reading and deciding
/// again (after a jittered pause) when one was.
async fn subscribe(
    decider: &Decider<PgEventStore>,
    course: &str,
    student: &str,
    capacity: u64,
    tally: &Tally,
) -> Outcome {
    let decision = Subscribe {
        course: course.to_owned(),
        student: student.to_owned(),
        capacity,
    };
    match decider.execute(&decision).await {
        Ok(decided) => {
            tally
                .retried
                .fetch_add(u64::from(decided.attempts - 1), Ordering::Relaxed);
            tally.accepted.fetch_add(1, Ordering::Relaxed);
            Outcome::Accepted
        }
        Err(DecisionError::Rejected { .. }) => {
            tally.full.fetch_add(1, Ordering::Relaxed);
            Outcome::Full
        }
        Err(error) => panic!("decision failed: {error}"),
    }
}

/// How a decider of `disjoint` starts a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// It reads, then appends.
    Read,
    /// Its first attempt reads nothing (`Decider::with_unread_first_attempt`): one round
    /// trip on a new course, one more (the refused append) on a course with seats taken.
    Unread,
    /// As `Unread`, and it keeps the states of its decisions (`Decider::with_cache`): a
    /// decision on a course it decided on before starts from what it kept, one round trip.
    Cached,
}

/// `clients` tasks, `per_client` decisions each, each task on courses of its own: with
/// `per_course` 1 every decision is on a new course (it reads nothing), with 10 a course
/// takes ten decisions (they read 0 to 9 events). The cost of a decision when nothing
/// contends, started as `start` says.
async fn disjoint(
    store: &PgEventStore,
    clients: u64,
    per_client: u64,
    per_course: u64,
    start: Start,
) -> f64 {
    let run = Uuid::now_v7().simple().to_string();
    let tally = Arc::new(Tally::default());
    let began = Instant::now();
    let mut tasks = Vec::new();
    for client in 0..clients {
        let decider = Decider::new(store.clone())
            .with_unread_first_attempt(start != Start::Read)
            .with_cache(if start == Start::Cached { 64 } else { 0 });
        let tally = Arc::clone(&tally);
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client {
                let course = format!("{run}-{client}-{}", n / per_course);
                let student = format!("s{client}-{n}");
                let outcome = subscribe(&decider, &course, &student, per_course, &tally).await;
                assert_eq!(outcome, Outcome::Accepted);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rate(clients * per_client, began.elapsed())
}

/// What a decision costs in bare SQL, without its guarantees: `clients` connections,
/// each deciding `per_client` times as `disjoint` does, by a SELECT of the course's rows
/// by tag and then a single-row INSERT of the seat (tagged), each its own transaction, and
/// no condition (not race-free). The floor that two round trips and a tagged insert set.
async fn bare_decisions(bench: &Bench, clients: u64, per_client: u64, per_course: u64) -> f64 {
    let read: Arc<str> = Arc::from(format!(
        "SELECT position, transaction_id, stream_id, version, event_id, event_type, \
             schema_version, payload, correlation_id, causation_id, actor, metadata, tags, \
             recorded_at \
         FROM \"{}\".baseline WHERE tags @> ARRAY[$1]::text[] ORDER BY transaction_id, position",
        bench.schema
    ));
    let write: Arc<str> = Arc::from(format!(
        "INSERT INTO \"{}\".baseline (stream_id, version, event_id, event_type, schema_version, \
             payload, correlation_id, causation_id, metadata, tags) \
         VALUES ($1, 1, $2, 'Subscribed', 1, $3, $4, $4, '{{}}', $5)",
        bench.schema
    ));
    let (pool, run) = (bench.pool.clone(), Uuid::now_v7().simple().to_string());
    concurrently(clients, per_client, move |client, n| {
        let (pool, read, write) = (pool.clone(), Arc::clone(&read), Arc::clone(&write));
        let course = format!("course:bare-{run}-{client}-{}", n / per_course);
        let student = format!("student:s{client}-{n}");
        let stream = format!("{student}-{run}");
        async move {
            let taken = sqlx::query(AssertSqlSafe(read))
                .bind(&course)
                .fetch_all(&pool)
                .await
                .unwrap()
                .len() as u64;
            assert!(taken < per_course);
            sqlx::query(AssertSqlSafe(write))
                .bind(stream)
                .bind(Uuid::now_v7())
                .bind(serde_json::json!({ "memo": memo(taken) }))
                .bind(Uuid::now_v7())
                .bind(vec![course, student])
                .execute(&pool)
                .await
                .unwrap();
        }
    })
    .await
}

async fn uncontended(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    let store = bench.store(true);
    // Warm the server and the statement caches.
    baseline_inserts(bench, 8, 50).await;
    disjoint(&store, 8, 50, 1, Start::Read).await;
    let b = &*bench;
    let mut rows = Vec::new();
    for (clients, per_client) in [(1, 400), (8, 150)] {
        let mut figures = Vec::new();
        for per_course in [1, 10] {
            // Each way of starting, against bare inserts alternated with its own rounds.
            let mut started = Vec::new();
            let mut base = 0.0;
            for start in [Start::Read, Start::Unread, Start::Cached] {
                let (baseline, ours, ratio) = alternate(
                    ROUNDS,
                    || baseline_inserts(b, clients, per_client),
                    || disjoint(&store, clients, per_client, per_course, start),
                )
                .await;
                if start == Start::Read {
                    base = baseline;
                }
                started.push((ours, ratio));
            }
            // The floor of the same decisions in bare SQL, against the same baseline.
            let (_, floor, floor_ratio) = alternate(
                ROUNDS,
                || baseline_inserts(b, clients, per_client),
                || bare_decisions(b, clients, per_client, per_course),
            )
            .await;
            figures.push(Figures {
                per_course,
                base,
                started,
                floor: (floor, floor_ratio),
            });
        }
        rows.push((clients, figures));
    }
    for (clients, figures) in rows {
        let plural = if clients == 1 { "" } else { "s" };
        let base = median(figures.iter().map(|f| f.base).collect());
        bench.record(
            format!("baseline: bare single-row INSERT, {clients} connection{plural}"),
            base,
            "rows/s",
            None,
        );
        for Figures {
            per_course,
            started,
            floor: (floor, floor_ratio),
            ..
        } in figures
        {
            let [(ours, ratio), unread, cached] = started[..] else {
                unreachable!("three ways of starting were measured");
            };
            let reads = if per_course == 1 {
                "reading no event"
            } else {
                "reading 0-9 events"
            };
            bench.record(
                format!("decisions, {clients} client{plural}, disjoint tags, {reads}"),
                ours,
                "dec/s",
                Some(ratio),
            );
            if clients == 1 {
                bench.record("  one decision (Decider::execute)", 1e6 / ours, "µs", None);
            }
            bench.record(
                "  bare SQL floor: SELECT by tag, then tagged INSERT (no condition)",
                floor,
                "dec/s",
                Some(floor_ratio),
            );
            bench.record(
                "  decisions to that floor (ratio of the medians)",
                100.0 * ours / floor,
                "%",
                None,
            );
            bench.record(
                if per_course == 1 {
                    "  first attempt unread (with_unread_first_attempt): each commits"
                } else {
                    "  first attempt unread: 9 in 10 refused, then read"
                },
                unread.0,
                "dec/s",
                Some(unread.1),
            );
            bench.record(
                if per_course == 1 {
                    "  unread first, with the cache (with_cache): nothing kept, as above"
                } else {
                    "  unread first, with the cache: 9 in 10 on kept states, one round trip"
                },
                cached.0,
                "dec/s",
                Some(cached.1),
            );
        }
    }
}

/// What `uncontended` measured for one number of decisions per course.
struct Figures {
    per_course: u64,
    /// The bare inserts' median, in the rounds alternated with the read-first decisions.
    base: f64,
    /// Decisions per second and the ratio to their own rounds' bare inserts, for
    /// `Start::Read`, `Start::Unread` and `Start::Cached`, in that order.
    started: Vec<(f64, f64)>,
    /// The bare SQL floor, likewise.
    floor: (f64, f64),
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
            let decider = Decider::new(store.clone());
            let tally = Arc::clone(&tally);
            let course = course.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0..PER_CLIENT {
                    let student = format!("s{client}-{n}");
                    subscribe(&decider, &course, &student, CAPACITY, &tally).await;
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
        "  conditions failed, read and decided again",
        tally.retried.load(Ordering::Relaxed) as f64,
        "",
        None,
    );
    bench.record("  violations (must be 0)", violations as f64, "", None);
}

/// Single-event appends by `writers` tasks, each to a stream of its own: untagged (a
/// `RawEvent` of the same payload) or carrying two tags (the derive's): what tagging costs
/// an ordinary append.
async fn appends(store: &PgEventStore, writers: u64, per_writer: u64, tagged: bool) -> f64 {
    let run = Uuid::now_v7().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let store = store.clone();
        let stream = StreamId::new("student", &format!("{run}-{writer}")).unwrap();
        let run = run.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..per_writer {
                let event = CourseEvent::Subscribed {
                    course: format!("{run}-{writer}-{n}"),
                    student: format!("s{writer}"),
                    memo: memo(n),
                };
                if tagged {
                    store
                        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new(event)])
                        .await
                        .unwrap();
                } else {
                    let raw = RawEvent::from_event(&event).unwrap();
                    store
                        .append(&stream, ExpectedVersion::Any, vec![NewEvent::new(raw)])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    rate(writers * per_writer, start.elapsed())
}

async fn tagged_appends(bench: &mut Bench) {
    const ROUNDS: usize = 5;
    let store = bench.store(true);
    let b = &*bench;
    let mut rows = Vec::new();
    for (writers, per_writer) in [(1, 400), (8, 150)] {
        let mut figures = Vec::new();
        for tagged in [false, true] {
            let (base, ours, ratio) = alternate(
                ROUNDS,
                || baseline_inserts(b, writers, per_writer),
                || appends(&store, writers, per_writer, tagged),
            )
            .await;
            figures.push((tagged, base, ours, ratio));
        }
        rows.push((writers, figures));
    }
    for (writers, figures) in rows {
        let plural = if writers == 1 { "" } else { "s" };
        bench.record(
            format!("baseline: bare single-row INSERT, {writers} connection{plural}"),
            median(figures.iter().map(|f| f.1).collect()),
            "rows/s",
            None,
        );
        for (tagged, _, ours, ratio) in figures {
            let what = if tagged { "two tags" } else { "untagged" };
            bench.record(
                format!("single-event appends, {writers} writer{plural}, {what}"),
                ours,
                "events/s",
                Some(ratio),
            );
        }
    }
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
                    NewEvent::new(event)
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
        "INSERT INTO \"{s}\".baseline (stream_id, version, event_id, event_type, schema_version, \
             payload, correlation_id, causation_id, actor, metadata, tags) \
         SELECT stream_id, version, event_id, event_type, schema_version, payload, correlation_id, \
             causation_id, actor, metadata, tags \
         FROM \"{s}\".events WHERE tags @> ARRAY[$1]::text[] ORDER BY transaction_id, position",
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
    let (base, ours, ratio) = alternate(
        7,
        || async {
            let start = Instant::now();
            let rows = sqlx::query(AssertSqlSafe(bare.clone()))
                .bind(&tag)
                .fetch_all(&bench.pool)
                .await
                .unwrap();
            assert_eq!(rows.len() as u64, EVENTS);
            rate(EVENTS, start.elapsed())
        },
        || async {
            let start = Instant::now();
            let events: Vec<_> = store
                .read_query::<CourseEvent>(&query, Position::START)
                .try_collect()
                .await
                .unwrap();
            assert_eq!(events.len() as u64, EVENTS);
            rate(EVENTS, start.elapsed())
        },
    )
    .await;
    bench.record(
        "baseline: bare SELECT of 10,000 rows by tag (all columns)",
        base,
        "rows/s",
        None,
    );
    bench.record(
        "query read of 10,000 tagged events among 20,000 (decoded)",
        ours,
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
    if wanted("appends") {
        tagged_appends(&mut bench).await;
    }
    if wanted("server") {
        server::server_side(&mut bench);
    }
    bench.finish().await;
}
