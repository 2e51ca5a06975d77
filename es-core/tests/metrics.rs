//! The metrics a command, a lost race and a projection batch record, as a recorder
//! installed by the application sees them (metrics-util's `DebuggingRecorder`, installed
//! for this thread only).

#![allow(clippy::unwrap_used, reason = "tests")]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use common::{Account, AccountCommand, AccountEvent, Race, runtime};
use es_core::telemetry;
use es_core::{EventEnvelope, Projection, ProjectionRunner, Repository};
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
        if envelope.version.get() == 3 {
            // The end of the first batch: let its commit be the first whose lag is due.
            tokio::time::sleep(telemetry::LAG_SAMPLE_INTERVAL).await;
        }
        Ok(())
    }
}

#[test]
fn a_projection_batch_records_its_events_duration_and_lag() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        runtime().block_on(async {
            let store = MemoryEventStore::new();
            let accounts = Repository::<Account, _>::with_services(store.clone(), Arc::default());
            for amount in 1..=5 {
                accounts
                    .execute("1", AccountCommand::Deposit { amount })
                    .await
                    .unwrap();
            }
            let peek = Peek {
                snapshotter: snapshotter.clone(),
                taken: Vec::new(),
            };
            let mut runner = ProjectionRunner::new(store.clone(), peek).with_batch_size(3);
            assert_eq!(runner.catch_up().await.unwrap(), 5);
            let mut taken = std::mem::take(&mut runner.projection_mut().taken);
            taken.push(Recorded::take(&snapshotter));

            let projection = [("projection", "deposits")];
            let lag: Vec<_> = taken
                .iter()
                .map(|recorded| recorded.values(telemetry::PROJECTION_LAG, &projection))
                .collect();
            // Nothing before the first commit; two events behind it after it, the interval
            // having passed (taken as the fourth event is handled); none once caught up.
            assert!(lag[0].is_empty());
            assert_eq!(lag[3], [&DebugValue::Gauge(2.0.into())]);
            assert_eq!(lag[5], [&DebugValue::Gauge(0.0.into())]);

            // A batch of three, then one of two (a snapshot drains what it shows).
            let events: u64 = taken
                .iter()
                .flat_map(|recorded| recorded.values(telemetry::PROJECTION_EVENTS, &projection))
                .map(|value| match value {
                    DebugValue::Counter(n) => *n,
                    other => panic!("not a counter: {other:?}"),
                })
                .sum();
            assert_eq!(events, 5);
            let batches: usize = taken
                .iter()
                .map(|recorded| recorded.values(telemetry::PROJECTION_BATCH_DURATION, &projection))
                .filter(|values| !values.is_empty())
                .map(|values| histogram_count(&values))
                .sum();
            assert_eq!(batches, 2);
        });
    });
}
