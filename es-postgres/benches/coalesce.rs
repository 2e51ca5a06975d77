//! Coalesced commits (`PgEventStoreBuilder::coalesce_commits`): concurrent single-event
//! appends, each writer on a stream of its own at exact versions, with and without
//! coalescing, against the `minimal` table's single-row INSERT transactions on as many
//! connections, all in the same run, in alternating rounds (medians of the rounds, and of
//! the per-round ratios).
//!
//! - 8 writers: the minimal table on 8 connections; es-rs without and with coalescing,
//!   each store on a pool of 8.
//! - 64 writers on 16 connections: the minimal table on 16 connections (16 writers, one
//!   per connection: more writers than connections only queue for them); es-rs without and
//!   with coalescing, 64 writers on a pool of 16.
//!
//! The coalesced stores run at most 4 coalesced transactions at once (the default) and, in
//! rows of their own, at most 2 and 1 (fewer at once, larger batches).
//!
//! Run with `cargo bench -p es-postgres --bench coalesce` (DATABASE_URL, or the local
//! server). It works in a schema of its own and drops it at the end. Prints figures; it
//! asserts nothing about time.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use es_core::{DomainEvent, EventStore as _, ExpectedVersion, NewEvent, StreamId, Version};
use es_postgres::PgEventStore;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

mod support;
use support::{Bench, concurrently, median, memo, minimal_inserts_on};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum LedgerEvent {
    Recorded { memo: String },
}

const ROUNDS: usize = 5;

/// `writers` tasks, `per_writer` single-event appends each, each task on a new stream of
/// its own at versions 1, 2, ...: appends/s.
async fn appends(store: &PgEventStore, writers: u64, per_writer: u64) -> f64 {
    let store = store.clone();
    let run = Uuid::now_v7().simple().to_string();
    concurrently(writers, per_writer, move |writer, n| {
        let store = store.clone();
        let stream = StreamId::parse(&format!("ledger-{run}-{writer}")).unwrap();
        async move {
            let expected = match n {
                0 => ExpectedVersion::NoStream,
                n => ExpectedVersion::Exact(Version::new(n)),
            };
            let event = NewEvent::new(LedgerEvent::Recorded { memo: memo(n) });
            store.append(&stream, expected, vec![event]).await.unwrap();
        }
    })
    .await
}

/// A store on `pool`: coalescing with at most `transactions` coalesced transactions at
/// once (the default is 4), or not at all (`None`).
fn store_on(pool: &PgPool, schema: &str, transactions: Option<usize>) -> PgEventStore {
    let builder = PgEventStore::builder(pool.clone())
        .schema(schema)
        .unwrap()
        .keep_connections(support::KEEP);
    match transactions {
        Some(transactions) => builder.coalesce_limits(64, transactions),
        None => builder,
    }
    .build()
}

/// One part: per round, the minimal table on `connections` connections, then es-rs
/// without and with coalescing with `writers` writers on a pool of `connections`.
async fn part(bench: &mut Bench, connections: u32, writers: u64, per_writer: u64) {
    let pool =
        es_testkit::postgres::connect(&format!("coalesce-bench-{connections}"), connections).await;
    let schema = bench.schema.clone();
    let plain = store_on(&pool, &schema, None);
    let coalesced = store_on(&pool, &schema, Some(4));
    let two = store_on(&pool, &schema, Some(2));
    let single = store_on(&pool, &schema, Some(1));
    let minimal_writers = u64::from(connections);
    // The minimal side writes as many rows in all as the es-rs sides.
    let minimal_per_writer = writers * per_writer / minimal_writers;
    // Opens the connections and warms the statements before anything counts.
    appends(&plain, writers, 5).await;
    appends(&coalesced, writers, 5).await;
    appends(&two, writers, 5).await;
    appends(&single, writers, 5).await;
    let (mut minimal, mut without, mut with) = (Vec::new(), Vec::new(), Vec::new());
    let (mut without_ratio, mut with_ratio) = (Vec::new(), Vec::new());
    let (mut wide, mut wide_ratio) = (Vec::new(), Vec::new());
    let (mut one, mut one_ratio) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let m = minimal_inserts_on(&pool, &schema, minimal_writers, minimal_per_writer).await;
        let p = appends(&plain, writers, per_writer).await;
        let c = appends(&coalesced, writers, per_writer).await;
        let w = appends(&two, writers, per_writer).await;
        let o = appends(&single, writers, per_writer).await;
        one.push(o);
        one_ratio.push(o / m);
        wide.push(w);
        wide_ratio.push(w / m);
        minimal.push(m);
        without.push(p);
        with.push(c);
        without_ratio.push(p / m);
        with_ratio.push(c / m);
    }
    bench.record(
        format!("minimal: bare single-row INSERT, {connections} connections"),
        median(minimal),
        "rows/s",
        None,
    );
    bench.record(
        format!("es-rs, {writers} writers, pool of {connections}, no coalescing"),
        median(without),
        "appends/s",
        Some(median(without_ratio)),
    );
    bench.record(
        format!("es-rs, {writers} writers, pool of {connections}, coalesced (default)"),
        median(with),
        "appends/s",
        Some(median(with_ratio)),
    );
    bench.record(
        format!("es-rs, {writers} writers, pool of {connections}, coalesced, 2 at once"),
        median(wide),
        "appends/s",
        Some(median(wide_ratio)),
    );
    bench.record(
        format!("es-rs, {writers} writers, pool of {connections}, coalesced, 1 at once"),
        median(one),
        "appends/s",
        Some(median(one_ratio)),
    );
    // Its connections go back to the test budget before the next part takes its own.
    drop((plain, coalesced, two, single));
    pool.close().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut bench =
        Bench::start("es-postgres coalesced commits (ratio: to the minimal table)").await;
    part(&mut bench, 8, 8, 250).await;
    part(&mut bench, 16, 64, 40).await;
    bench.finish().await;
}
