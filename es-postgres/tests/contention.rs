//! The default [`RetryPolicy`] holds eight writers racing on one stream: with about 260
//! commands between them none gives up, each command's event is stored exactly once, and
//! the stream ends at the number of commands. On PostgreSQL (each writer a store of its own,
//! with a connection of its own, as separate processes would be) and on the memory store.
//!
//! A lost race costs a reload and a decision: the decisions counted, less the commands,
//! are the conflicts the writers rode out.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]
#![allow(
    clippy::print_stdout,
    reason = "the figures of a run, for whoever tunes the defaults"
)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use es_core::{
    Aggregate, CommandError, DomainEvent, EventStore, Repository, RetryPolicy, SnapshotStore,
    StreamId, Version,
};
use es_memory::MemoryEventStore;
use es_postgres::PgEventStore;
use futures_util::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const WRITERS: u64 = 8;
const COMMANDS_PER_WRITER: u64 = 33;
/// The stream every writer writes to.
const STOCK: &str = "sku-1";
/// Bounds the whole run; none measures speed.
const PATIENCE: Duration = Duration::from_secs(300);

/// Stock received into one SKU.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum StockEvent {
    Received { writer: u64, n: u64 },
}

#[derive(Debug, Clone, PartialEq)]
struct Receive {
    writer: u64,
    n: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

/// How many decisions the handler made, over all attempts of all commands of all writers,
/// and how long each takes.
#[derive(Debug, Default)]
struct Decisions {
    /// Decisions by command (writer, n): its attempts.
    made: Arc<Mutex<HashMap<(u64, u64), u32>>>,
    /// Zero on PostgreSQL, whose reads and appends take long enough for writers to race;
    /// the memory store's take no time, so there the decision takes it (services it
    /// awaits), or there would hardly be a race.
    think: Duration,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(
    name = "stock",
    command = Receive,
    event = StockEvent,
    error = Never,
    services = Decisions
)]
struct Stock {
    received: u64,
}

impl Aggregate for Stock {
    async fn handle(
        &self,
        command: Receive,
        decisions: &Decisions,
    ) -> Result<Vec<StockEvent>, Never> {
        *decisions
            .made
            .lock()
            .unwrap()
            .entry((command.writer, command.n))
            .or_default() += 1;
        if !decisions.think.is_zero() {
            tokio::time::sleep(decisions.think).await;
        }
        Ok(vec![StockEvent::Received {
            writer: command.writer,
            n: command.n,
        }])
    }

    fn apply(&mut self, _: &StockEvent) {
        self.received += 1;
    }
}

/// Runs the writers, writer `w` on `stores[w]` with the default retry policy; checks the
/// stream on `check` and prints the figures.
async fn contend<S: EventStore + SnapshotStore + Clone + 'static>(
    label: &str,
    stores: Vec<S>,
    think: Duration,
    check: &S,
) {
    assert_eq!(stores.len() as u64, WRITERS);
    let decisions = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();
    let mut writers = Vec::new();
    for (writer, store) in (0..WRITERS).zip(stores) {
        let counted = Decisions {
            made: Arc::clone(&decisions),
            think,
        };
        writers.push(tokio::spawn(async move {
            let repository = Repository::<Stock, _>::with_services(store, counted)
                .with_retry_policy(RetryPolicy::default());
            let mut stored = Vec::new();
            let mut gave_up = Vec::new();
            for n in 0..COMMANDS_PER_WRITER {
                match repository.execute(STOCK, Receive { writer, n }).await {
                    Ok(outcome) => {
                        assert_eq!(outcome.events.len(), 1, "writer {writer} command {n}");
                        stored.push(((writer, n), outcome.events[0].event_id));
                    }
                    Err(CommandError::Conflict { attempts, .. }) => gave_up.push((n, attempts)),
                    Err(other) => panic!("writer {writer} command {n}: {other}"),
                }
            }
            (writer, stored, gave_up)
        }));
    }
    let mut stored: HashMap<(u64, u64), Uuid> = HashMap::new();
    let mut gave_up = Vec::new();
    for writer in writers {
        let (w, ids, lost) = tokio::time::timeout(PATIENCE, writer)
            .await
            .expect("the writers finish")
            .expect("a writer task");
        stored.extend(ids);
        gave_up.extend(lost.into_iter().map(|(n, attempts)| (w, n, attempts)));
    }
    let elapsed = started.elapsed();
    let commands = WRITERS * COMMANDS_PER_WRITER;
    let attempts: Vec<u32> = decisions.lock().unwrap().values().copied().collect();
    let total: u32 = attempts.iter().sum();
    println!(
        "{label}: {commands} commands by {WRITERS} writers on one stream in {elapsed:?}: \
         {} conflicts ridden out, at most {} attempts for one command, {} gave up",
        u64::from(total) - commands,
        attempts.iter().max().unwrap_or(&0),
        gave_up.len()
    );
    assert!(
        gave_up.is_empty(),
        "{label}: commands gave up as (writer, command, attempts): {gave_up:?}"
    );

    // Every command's event, once, in a gapless stream that ends at the number of commands.
    let stream = StreamId::new("stock", STOCK).unwrap();
    let events: Vec<_> = check
        .read_stream::<StockEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, (1..=commands).collect::<Vec<_>>(), "{label}");
    let mut seen: HashMap<(u64, u64), Uuid> = HashMap::new();
    for event in &events {
        let StockEvent::Received { writer, n } = event.event;
        let again = seen.insert((writer, n), event.event_id);
        assert!(
            again.is_none(),
            "{label}: command {n} of writer {writer} stored twice"
        );
    }
    assert_eq!(
        seen, stored,
        "{label}: the stream holds what the commands returned"
    );
    assert_eq!(
        check.stream_version(&stream).await.unwrap(),
        Version::new(commands)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_retry_policy_holds_eight_writers_on_one_postgres_stream() {
    // The checking store needs little; each writer has a pool of one connection, and no
    // listener (nothing here subscribes).
    let store = es_testkit::postgres::fresh_store_sized(2, |builder| builder).await;
    let mut writers: Vec<PgEventStore> = Vec::new();
    for writer in 0..WRITERS {
        let pool = common::connect(&format!("contention-writer-{writer}"), 1).await;
        let own = PgEventStore::builder(pool)
            .schema(store.schema().as_str())
            .unwrap()
            .notify(false)
            .build();
        writers.push(own);
    }
    contend("postgres", writers, Duration::ZERO, &store).await;
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_default_retry_policy_holds_eight_writers_on_one_memory_stream() {
    let store = MemoryEventStore::new();
    contend(
        "memory",
        vec![store.clone(); WRITERS as usize],
        Duration::from_millis(2),
        &store,
    )
    .await;
}
