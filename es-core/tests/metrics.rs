//! The metrics a command, a lost race and a projection batch record, as a recorder
//! installed by the application sees them (metrics-util's `DebuggingRecorder`, installed
//! for this thread only).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Account, AccountCommand, AccountEvent, Deposits, Race, runtime};
use es_core::telemetry;
use es_core::{
    CommandContext, CommandError, EventEnvelope, EventStore as _, Projection, ProjectionRunner,
    Repository, RetryPolicy,
};
use es_memory::MemoryEventStore;
use metrics_util::CompositeKey;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

/// What was recorded since the last snapshot (a snapshot drains counters and histograms).
struct Recorded(Vec<(CompositeKey, DebugValue)>);

impl Recorded {
    fn take(snapshotter: &Snapshotter) -> Self {
        Self(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| (key, value))
                .collect(),
        )
    }

    /// Every value recorded under `name` with exactly `labels`.
    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&DebugValue> {
        self.0
            .iter()
            .filter(|(key, _)| {
                let key = key.key();
                let mut have: Vec<(&str, &str)> =
                    key.labels().map(|l| (l.key(), l.value())).collect();
                have.sort_unstable();
                let mut want = labels.to_vec();
                want.sort_unstable();
                key.name() == name && have == want
            })
            .map(|(_, value)| value)
            .collect()
    }
}

fn histogram_count(value: &[&DebugValue]) -> usize {
    match value {
        [DebugValue::Histogram(samples)] => samples.len(),
        other => panic!("not one histogram: {other:?}"),
    }
}

#[test]
fn commands_record_duration_by_outcome_conflicts_and_retries() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = MemoryEventStore::new();
            let race = Arc::new(Race {
                store: Some(store.clone()),
                ..Race::default()
            });
            let accounts = Repository::<Account, _>::with_services(store.clone(), race.clone());

            accounts
                .execute("1", AccountCommand::Deposit { amount: 5 })
                .await
                .unwrap();
            let committed = [("aggregate", "account"), ("outcome", "committed")];
            let account = [("aggregate", "account")];
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &committed)),
                1
            );
            // No race, no retry: nothing counted.
            assert!(
                recorded
                    .values(telemetry::COMMAND_CONFLICTS, &account)
                    .is_empty()
            );
            assert!(
                recorded
                    .values(telemetry::COMMAND_RETRIES, &account)
                    .is_empty()
            );

            // The first append loses a race, the retry goes through.
            race.armed.store(true, Ordering::SeqCst);
            accounts
                .execute("1", AccountCommand::Deposit { amount: 7 })
                .await
                .unwrap();
            assert_eq!(accounts.load("1").await.unwrap().state.balance, 13);
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                recorded.values(telemetry::COMMAND_CONFLICTS, &account),
                [&DebugValue::Counter(1)]
            );
            assert_eq!(
                recorded.values(telemetry::COMMAND_RETRIES, &account),
                [&DebugValue::Counter(1)]
            );
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &committed)),
                1,
                "the retried command is one command"
            );

            accounts
                .execute("1", AccountCommand::Deposit { amount: 0 })
                .await
                .unwrap_err();
            let rejected = [("aggregate", "account"), ("outcome", "rejected")];
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &rejected)),
                1
            );
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &committed)),
                0
            );

            // The same command id again: a duplicate, not a second commit.
            let id = uuid::Uuid::now_v7();
            for _ in 0..2 {
                accounts
                    .execute_with(
                        "1",
                        AccountCommand::Deposit { amount: 1 },
                        CommandContext::new().with_command_id(id),
                    )
                    .await
                    .unwrap();
            }
            let recorded = Recorded::take(&snapshotter);
            let duplicate = [("aggregate", "account"), ("outcome", "duplicate")];
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &committed)),
                1
            );
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &duplicate)),
                1
            );

            // No events decided: unchanged.
            let outcome = accounts
                .execute("1", AccountCommand::Nothing)
                .await
                .unwrap();
            assert!(outcome.events.is_empty());
            let unchanged = [("aggregate", "account"), ("outcome", "unchanged")];
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &unchanged)),
                1
            );

            // Every attempt loses its race: a conflict, each lost race counted.
            race.always.store(true, Ordering::SeqCst);
            let losing = Repository::<Account, _>::with_services(store.clone(), race.clone())
                .with_retry_policy(
                    RetryPolicy::default()
                        .with_max_attempts(2)
                        .with_backoff(Duration::ZERO, Duration::ZERO),
                );
            let error = losing
                .execute("1", AccountCommand::Deposit { amount: 1 })
                .await
                .unwrap_err();
            assert!(matches!(error, CommandError::Conflict { .. }), "{error:?}");
            race.always.store(false, Ordering::SeqCst);
            let conflict = [("aggregate", "account"), ("outcome", "conflict")];
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &conflict)),
                1
            );
            assert_eq!(
                recorded.values(telemetry::COMMAND_CONFLICTS, &account),
                [&DebugValue::Counter(2)]
            );
            assert_eq!(
                recorded.values(telemetry::COMMAND_RETRIES, &account),
                [&DebugValue::Counter(1)]
            );

            // Anything else, such as an archived stream: an error.
            let stream = es_core::StreamId::new("account", "2").unwrap();
            accounts
                .execute("2", AccountCommand::Deposit { amount: 1 })
                .await
                .unwrap();
            store.archive_stream(&stream).await.unwrap();
            accounts
                .execute("2", AccountCommand::Deposit { amount: 1 })
                .await
                .unwrap_err();
            let failed = [("aggregate", "account"), ("outcome", "error")];
            let recorded = Recorded::take(&snapshotter);
            assert_eq!(
                histogram_count(&recorded.values(telemetry::COMMAND_DURATION, &failed)),
                1
            );
        });
    });
}

/// Notes the lag gauge as each event is handled.
struct Peek {
    snapshotter: Snapshotter,
    taken: Vec<Recorded>,
}

impl Projection for Peek {
    type Event = AccountEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "deposits"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<AccountEvent>) -> Result<(), Self::Error> {
        self.taken.push(Recorded::take(&self.snapshotter));
        if envelope.version.get() == 4 {
            // Well past the pause the sampler keeps after a count (a few times the count's
            // own microseconds): the commit at the end is due a sample too.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

/// Five deposits to account 1.
async fn five_deposits(store: &MemoryEventStore) {
    let accounts = Repository::<Account, _>::with_services(store.clone(), Arc::default());
    for amount in 1..=5 {
        accounts
            .execute("1", AccountCommand::Deposit { amount })
            .await
            .unwrap();
    }
}

const PROJECTION: [(&str, &str); 1] = [("projection", "deposits")];

#[test]
fn a_projection_batch_records_its_events_duration_and_lag() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = MemoryEventStore::new();
            five_deposits(&store).await;
            let peek = Peek {
                snapshotter: snapshotter.clone(),
                taken: Vec::new(),
            };
            let mut runner = ProjectionRunner::new(store.clone(), peek)
                .with_batch_size(3)
                .with_lag_sample_interval(Duration::ZERO);
            assert_eq!(runner.catch_up().await.unwrap(), 5);
            let mut taken = std::mem::take(&mut runner.projection_mut().taken);
            taken.push(Recorded::take(&snapshotter));

            let lag: Vec<_> = taken
                .iter()
                .map(|recorded| recorded.values(telemetry::PROJECTION_LAG, &PROJECTION))
                .collect();
            // Nothing before the first commit; two events behind it after it (taken as
            // the fourth event is handled); none once caught up.
            assert!(lag[0].is_empty());
            assert_eq!(lag[3], [&DebugValue::Gauge(2.0.into())]);
            assert_eq!(lag[5], [&DebugValue::Gauge(0.0.into())]);

            // A batch of three, then one of two (a snapshot drains what it shows).
            let events: u64 = taken
                .iter()
                .flat_map(|recorded| recorded.values(telemetry::PROJECTION_EVENTS, &PROJECTION))
                .map(|value| match value {
                    DebugValue::Counter(n) => *n,
                    other => panic!("not a counter: {other:?}"),
                })
                .sum();
            assert_eq!(events, 5);
            let batches: usize = taken
                .iter()
                .map(|recorded| recorded.values(telemetry::PROJECTION_BATCH_DURATION, &PROJECTION))
                .filter(|values| !values.is_empty())
                .map(|values| histogram_count(&values))
                .sum();
            assert_eq!(batches, 2);
        });
    });
}

/// The lag gauge of the `deposits` projection, as it stands (a gauge is not drained).
fn lag_gauge(snapshotter: &Snapshotter) -> Option<f64> {
    match Recorded::take(snapshotter)
        .values(telemetry::PROJECTION_LAG, &PROJECTION)
        .as_slice()
    {
        [DebugValue::Gauge(value)] => Some(value.into_inner()),
        _ => None,
    }
}

/// Runs `runner` live until `done` says so (checked every few milliseconds, for at most
/// 30 s), then stops it.
async fn run_live_until<P: Projection<Event = AccountEvent>>(
    runner: &mut ProjectionRunner<P, MemoryEventStore>,
    mut done: impl FnMut() -> bool,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    let watch = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "not done within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.store(true, Ordering::SeqCst);
    };
    let (run, ()) = tokio::join!(runner.run_until(shutdown), watch);
    run.unwrap();
}

#[test]
fn idle_commits_respect_the_lag_interval() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = MemoryEventStore::new();
            five_deposits(&store).await;
            // Catching up: the commit at the end of the history is not sampled before the
            // interval has passed.
            let mut runner = ProjectionRunner::new(store.clone(), Deposits::default())
                .with_batch_size(3)
                .with_lag_sample_interval(Duration::from_secs(3600));
            assert_eq!(runner.catch_up().await.unwrap(), 5);
            assert_eq!(lag_gauge(&snapshotter), None, "counted at the end");

            // Live: nor is any idle commit.
            let mut runner = ProjectionRunner::in_memory(store.clone(), Deposits::default())
                .with_batch_size(3)
                .with_commit_interval(Duration::from_millis(1))
                .with_lag_sample_interval(Duration::from_secs(3600));
            let status = runner.status();
            run_live_until(&mut runner, || status.get().handled == 5).await;
            assert_eq!(runner.projection().seen.len(), 5);
            assert_eq!(lag_gauge(&snapshotter), None, "counted at an idle commit");
        });
    });
}

#[test]
fn a_live_runner_that_caught_up_shows_it_when_the_interval_has_passed() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = MemoryEventStore::new();
            five_deposits(&store).await;
            // The first commits come before the interval has passed: the runner, idle by
            // then, wakes when it has to sample.
            let mut runner = ProjectionRunner::in_memory(store.clone(), Deposits::default())
                .with_batch_size(3)
                .with_commit_interval(Duration::from_millis(1))
                .with_lag_sample_interval(Duration::from_millis(200));
            run_live_until(&mut runner, || lag_gauge(&snapshotter) == Some(0.0)).await;
            assert_eq!(runner.projection().seen.len(), 5);
        });
    });
}
