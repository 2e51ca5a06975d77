//! In-memory throughput: aggregate rehydration and command execution.
//!
//! Run with `cargo bench -p es-memory --bench throughput`. Prints figures; asserts nothing
//! about time. Each figure is the median of several runs on a single-threaded runtime (one
//! core).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use es_core::{EventStore as _, ExpectedVersion, NewEvent, Repository, SnapshotPolicy, StreamId};
use es_memory::MemoryEventStore;
use es_testkit::fixture::{Account, AccountCommand, AccountEvent};

const HISTORY: u64 = 100_000;
const RUNS: usize = 7;

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        println!("es-memory throughput (median of {RUNS} runs, one core)\n");
        // `cargo bench --bench throughput -- <word>` runs only the parts whose name holds it.
        let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
        let wanted = |name: &str| only.as_deref().is_none_or(|o| name.contains(o));
        if wanted("rehydration") {
            rehydration().await;
        }
        if wanted("commands_one_stream") {
            commands_one_stream().await;
        }
        if wanted("commands_many_streams") {
            commands_many_streams().await;
        }
    });
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn report(what: &str, count: u64, unit: &str, elapsed: Duration) {
    let rate = count as f64 / elapsed.as_secs_f64();
    println!(
        "{what:<58} {:>12.0} {unit}/s  ({count} in {:.1} ms)",
        rate,
        elapsed.as_secs_f64() * 1e3
    );
}

async fn rehydration() {
    let store = MemoryEventStore::new();
    let stream = StreamId::new("account", "big").unwrap();
    let mut events = vec![NewEvent::new(AccountEvent::Opened {
        owner: "ada".into(),
    })];
    events.extend((1..HISTORY).map(|amount| NewEvent::new(AccountEvent::Deposited { amount })));
    for chunk in events.chunks(1_000) {
        store
            .append(&stream, ExpectedVersion::Any, chunk.to_vec())
            .await
            .unwrap();
    }
    let repository = Repository::<Account, _>::new(store);
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let loaded = repository.load("big").await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(loaded.version.get(), HISTORY);
        black_box(loaded);
    }
    report(
        "rehydrate one aggregate of 100,000 events",
        HISTORY,
        "events",
        median(samples),
    );
}

async fn run_commands(
    repository: &Repository<Account, MemoryEventStore>,
    streams: u64,
    commands: u64,
) -> Duration {
    for s in 0..streams {
        repository
            .execute(
                &s.to_string(),
                AccountCommand::Open {
                    owner: "ada".into(),
                },
            )
            .await
            .unwrap();
    }
    let ids: Vec<String> = (0..streams).map(|s| s.to_string()).collect();
    let start = Instant::now();
    for n in 0..commands {
        let id = &ids[(n % streams) as usize];
        black_box(
            repository
                .execute(id, AccountCommand::Deposit { amount: 1 })
                .await
                .unwrap(),
        );
    }
    start.elapsed()
}

async fn commands_one_stream() {
    const COMMANDS: u64 = 200_000;
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new()).with_cache(1_024);
        samples.push(run_commands(&repository, 1, COMMANDS).await);
    }
    report(
        "commands on one stream (state cache on)",
        COMMANDS,
        "commands",
        median(samples),
    );

    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new())
            .with_snapshot_policy(SnapshotPolicy::every(100));
        samples.push(run_commands(&repository, 1, COMMANDS / 10).await);
    }
    report(
        "commands on one stream (snapshot every 100, no cache)",
        COMMANDS / 10,
        "commands",
        median(samples),
    );

    // Without cache or snapshots every command replays its whole stream, so the rate
    // falls as the stream grows: the reason for the two options above.
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new());
        samples.push(run_commands(&repository, 1, 5_000).await);
    }
    report(
        "commands on one stream (replay each time, 5,000 long)",
        5_000,
        "commands",
        median(samples),
    );
}

async fn commands_many_streams() {
    const COMMANDS: u64 = 200_000;
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new()).with_cache(2_048);
        samples.push(run_commands(&repository, 1_000, COMMANDS).await);
    }
    report(
        "commands round-robin over 1,000 streams (state cache on)",
        COMMANDS,
        "commands",
        median(samples),
    );

    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new());
        samples.push(run_commands(&repository, 1_000, COMMANDS / 4).await);
    }
    report(
        "commands round-robin over 1,000 streams (replay each time)",
        COMMANDS / 4,
        "commands",
        median(samples),
    );
}
