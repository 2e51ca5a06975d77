//! In-memory throughput: aggregate rehydration, command execution, projection rebuilds
//! and loads from snapshots.
//!
//! Run with `cargo bench -p es-memory --bench throughput`. Prints figures; asserts nothing
//! about time. Each figure is the median of several runs on a single-threaded runtime (one
//! core).
//!
//! Rehydration and the commands on 1,000 streams are also measured without any store, in
//! the same run: the same events folded from a plain `Vec`, the same commands decided on
//! states in a `HashMap`. Each store figure is printed with its ratio to that baseline, the
//! part of the cost that is the store's and the repository's rather than the machine's.

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a benchmark binary: printing is its output, a failure aborts it"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use es_core::{
    Aggregate as _, EventStore as _, ExpectedVersion, NewEvent, Repository, SnapshotPolicy,
    StreamId,
};
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
        if wanted("projection_rebuild") {
            projection_rebuild().await;
        }
        if wanted("snapshot_loads") {
            snapshot_loads().await;
        }
    });
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Prints a figure and returns its rate per second.
fn report(what: &str, count: u64, unit: &str, elapsed: Duration) -> f64 {
    let rate = count as f64 / elapsed.as_secs_f64();
    println!(
        "{what:<58} {:>12.0} {unit}/s  ({count} in {:.1} ms)",
        rate,
        elapsed.as_secs_f64() * 1e3
    );
    rate
}

/// Prints a figure with its ratio to the baseline's rate, measured in the same run.
fn report_against(what: &str, count: u64, unit: &str, elapsed: Duration, baseline: f64) {
    let rate = report(what, count, unit, elapsed);
    println!(
        "{:<58} {:>11.1}% of the baseline",
        "",
        100.0 * rate / baseline
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
    // The baseline: the same events folded from a `Vec`, by reference (the least any
    // rehydration does) and as clones (what a store that hands out owned events adds).
    let plain: Vec<AccountEvent> = events.into_iter().map(|new| new.event).collect();
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut state = Account::default();
        for event in black_box(&plain) {
            state.apply(event);
        }
        samples.push(start.elapsed());
        black_box(state);
    }
    let baseline = report(
        "baseline: fold 100,000 events from a Vec",
        HISTORY,
        "events",
        median(samples),
    );
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let mut state = Account::default();
        for event in black_box(&plain) {
            state.apply(&black_box(event.clone()));
        }
        samples.push(start.elapsed());
        black_box(state);
    }
    report_against(
        "baseline: fold clones of them",
        HISTORY,
        "events",
        median(samples),
        baseline,
    );

    let repository = Repository::<Account, _>::new(store);
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let loaded = repository.load("big").await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(loaded.version.get(), HISTORY);
        black_box(loaded);
    }
    report_against(
        "rehydrate one aggregate of 100,000 events",
        HISTORY,
        "events",
        median(samples),
        baseline,
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
        // Never, not the default policy (a snapshot every 100 events), to show the growth.
        let repository = Repository::<Account, _>::new(MemoryEventStore::new())
            .with_snapshot_policy(SnapshotPolicy::Never);
        samples.push(run_commands(&repository, 1, 5_000).await);
    }
    report(
        "commands on one stream (replay each time, 5,000 long)",
        5_000,
        "commands",
        median(samples),
    );
}

/// The same commands as [`run_commands`] with no store and no repository: each decided on
/// a state kept in a `HashMap` by aggregate id (`replay` false), or on a state folded from
/// the aggregate's events kept in a `HashMap` (`replay` true), its events then applied or
/// kept. The least a command can cost here.
async fn bare_commands(streams: u64, commands: u64, replay: bool) -> Duration {
    use std::collections::HashMap;

    let mut states: HashMap<String, Account> = HashMap::new();
    let mut histories: HashMap<String, Vec<AccountEvent>> = HashMap::new();
    let ids: Vec<String> = (0..streams).map(|s| s.to_string()).collect();
    let execute = async |states: &mut HashMap<String, Account>,
                         histories: &mut HashMap<String, Vec<AccountEvent>>,
                         id: &str,
                         command| {
        let history = histories.entry(id.to_owned()).or_default();
        let state = if replay {
            let mut state = Account::default();
            for event in history.iter() {
                state.apply(event);
            }
            state
        } else {
            states.get(id).cloned().unwrap_or_default()
        };
        let events = state.handle(command, &()).await.unwrap();
        if replay {
            history.extend(events);
        } else {
            let mut state = state;
            for event in &events {
                state.apply(event);
            }
            states.insert(id.to_owned(), state);
        }
    };
    for id in &ids {
        let open = AccountCommand::Open {
            owner: "ada".into(),
        };
        execute(&mut states, &mut histories, id, open).await;
    }
    let start = Instant::now();
    for n in 0..commands {
        let id = &ids[(n % streams) as usize];
        let deposit = AccountCommand::Deposit { amount: 1 };
        execute(&mut states, &mut histories, black_box(id), deposit).await;
    }
    let elapsed = start.elapsed();
    black_box((states, histories));
    elapsed
}

async fn commands_many_streams() {
    const COMMANDS: u64 = 200_000;
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        samples.push(bare_commands(1_000, COMMANDS, false).await);
    }
    let baseline = report(
        "baseline: 1,000 states in a HashMap, no store",
        COMMANDS,
        "commands",
        median(samples),
    );
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let repository = Repository::<Account, _>::new(MemoryEventStore::new()).with_cache(2_048);
        samples.push(run_commands(&repository, 1_000, COMMANDS).await);
    }
    report_against(
        "commands round-robin over 1,000 streams (state cache on)",
        COMMANDS,
        "commands",
        median(samples),
        baseline,
    );

    println!();
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        samples.push(bare_commands(1_000, COMMANDS / 4, true).await);
    }
    let baseline = report(
        "baseline: 1,000 histories in a HashMap, replayed, no store",
        COMMANDS / 4,
        "commands",
        median(samples),
    );
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        // The default snapshot policy (every 100 events), which these streams of at most
        // 51 events never reach: each command replays its stream.
        let repository = Repository::<Account, _>::new(MemoryEventStore::new());
        samples.push(run_commands(&repository, 1_000, COMMANDS / 4).await);
    }
    report_against(
        "commands round-robin over 1,000 streams (no cache, replay)",
        COMMANDS / 4,
        "commands",
        median(samples),
        baseline,
    );
}

/// Counts events per stream: about the least a projection can do, so the figure is the
/// runner's and the store's cost.
#[derive(Default)]
struct StreamCounts {
    counts: std::collections::HashMap<String, u64>,
}

impl es_core::Projection for StreamCounts {
    type Event = AccountEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "stream-counts"
    }

    async fn handle(
        &mut self,
        envelope: &es_core::EventEnvelope<AccountEvent>,
    ) -> Result<(), Self::Error> {
        if let Some(count) = self.counts.get_mut(envelope.stream_id.id()) {
            *count += 1;
        } else {
            self.counts.insert(envelope.stream_id.id().to_owned(), 1);
        }
        Ok(())
    }

    async fn reset(&mut self) -> Result<(), Self::Error> {
        self.counts.clear();
        Ok(())
    }
}

async fn projection_rebuild() {
    const EVENTS: u64 = 1_000_000;
    let store = MemoryEventStore::new();
    for stream in 0..1_000 {
        let id = StreamId::new("account", &stream.to_string()).unwrap();
        let events: Vec<_> = (0..EVENTS / 1_000)
            .map(|amount| NewEvent::new(AccountEvent::Deposited { amount }))
            .collect();
        store
            .append(&id, ExpectedVersion::Any, events)
            .await
            .unwrap();
    }
    let mut runner =
        es_core::ProjectionRunner::new(store, StreamCounts::default()).with_batch_size(10_000);
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let handled = runner.rebuild().await.unwrap();
        samples.push(start.elapsed());
        assert_eq!(handled, EVENTS);
    }
    assert_eq!(runner.projection().counts.len(), 1_000);
    report(
        "projection rebuild, 1,000,000 events over 1,000 streams",
        EVENTS,
        "events",
        median(samples),
    );
}

/// Aggregate loads for histories of 10, 10,000 and 1,000,000 events: replaying every event,
/// and from a snapshot at the stream's end, whose time should not grow with history.
async fn snapshot_loads() {
    const LOADS: u32 = 1_000;
    println!();
    for events in [10_u64, 10_000, 1_000_000] {
        let store = MemoryEventStore::new();
        let stream = StreamId::new("account", "long").unwrap();
        let mut history = vec![NewEvent::new(AccountEvent::Opened {
            owner: "ada".into(),
        })];
        history.extend((1..events).map(|amount| NewEvent::new(AccountEvent::Deposited { amount })));
        for chunk in history.chunks(10_000) {
            store
                .append(&stream, ExpectedVersion::Any, chunk.to_vec())
                .await
                .unwrap();
        }
        // Never: the snapshot taken below would otherwise serve this one too.
        let replaying = Repository::<Account, _>::new(store.clone())
            .with_snapshot_policy(SnapshotPolicy::Never);
        // One more command crosses a multiple of the interval: a snapshot at the end.
        let snapshotting = Repository::<Account, _>::new(store.clone())
            .with_snapshot_policy(SnapshotPolicy::every(events + 1));
        snapshotting
            .execute("long", AccountCommand::Deposit { amount: 1 })
            .await
            .unwrap();

        let replay_runs = if events > 100_000 { 3 } else { RUNS };
        let mut replay = Vec::new();
        for _ in 0..replay_runs {
            let start = Instant::now();
            black_box(replaying.load("long").await.unwrap());
            replay.push(start.elapsed());
        }
        // Snapshot loads are short: time a thousand at once, several times.
        let mut snapshot = Vec::new();
        for _ in 0..RUNS {
            let start = Instant::now();
            for _ in 0..LOADS {
                let loaded = snapshotting.load("long").await.unwrap();
                assert_eq!(loaded.version.get(), events + 1);
                black_box(loaded);
            }
            snapshot.push(start.elapsed() / LOADS);
        }
        println!(
            "aggregate load, {:>9} events: replayed {:>12.1} µs, from a snapshot {:>6.2} µs",
            events + 1,
            median(replay).as_secs_f64() * 1e6,
            median(snapshot).as_secs_f64() * 1e6,
        );
    }
}
