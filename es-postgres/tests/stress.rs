//! Many concurrent writers through command execution, with a live subscriber throughout:
//! afterwards every stream is gapless and the subscriber saw each committed event once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::HashSet;
use std::time::Duration;

use es_core::{
    EventEnvelope, EventFilter, EventStore as _, Position, Repository, RetryPolicy, SnapshotPolicy,
    StreamId, Version,
};
use es_postgres::PgEventStore;
use es_testkit::fixture::{Account, AccountCommand, AccountEvent};
use futures_util::{StreamExt as _, TryStreamExt as _};
use uuid::Uuid;

const TASKS: u64 = 8;
const COMMANDS_PER_TASK: u64 = 500;

/// Commands retry until they win (the point is that none is lost, not that they give up),
/// and start from a snapshot or the cache so that a lost race costs little.
fn repository(store: &PgEventStore) -> Repository<Account, PgEventStore> {
    Repository::<Account, _>::new(store.clone())
        .with_retry_policy(
            RetryPolicy::default()
                .with_max_attempts(100_000)
                .with_backoff(Duration::from_micros(200), Duration::from_millis(20)),
        )
        .with_snapshot_policy(SnapshotPolicy::every(50))
        .with_cache(64)
}

/// Runs `TASKS` tasks of `COMMANDS_PER_TASK` deposits, task `t` on the account `id(t)`,
/// while a subscriber collects the log; checks streams and subscriber.
async fn run(id: fn(u64) -> String) {
    let store = common::fresh_store().await;
    let repository = repository(&store);
    // The subscriber runs from before the first command until it has as many events as
    // were committed, a number known only when the writers are done.
    let (target_tx, mut target) = tokio::sync::watch::channel(None::<u64>);
    let subscriber = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut log =
                Box::pin(store.subscribe::<AccountEvent>(Position::START, EventFilter::all()));
            let mut seen: Vec<EventEnvelope<AccountEvent>> = Vec::new();
            loop {
                if let Some(total) = *target.borrow_and_update()
                    && seen.len() as u64 >= total
                {
                    break;
                }
                tokio::select! {
                    event = log.next() => {
                        let event = event.expect("a subscription never ends");
                        seen.push(event.expect("the subscription never fails"));
                    }
                    _ = target.changed() => {}
                }
            }
            (seen, log)
        })
    };

    let mut opened = HashSet::new();
    for task in 0..TASKS {
        let account = id(task);
        if opened.insert(account.clone()) {
            repository
                .execute(
                    &account,
                    AccountCommand::Open {
                        owner: "ada".into(),
                    },
                )
                .await
                .unwrap();
        }
    }
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let repository = repository.clone();
        let account = id(task);
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..COMMANDS_PER_TASK {
                let outcome = repository
                    .execute(&account, AccountCommand::Deposit { amount: n + 1 })
                    .await
                    .unwrap_or_else(|e| panic!("task {task} command {n}: {e}"));
                assert_eq!(outcome.events.len(), 1);
                ids.push(outcome.events[0].event_id);
            }
            ids
        }));
    }
    let mut committed: HashSet<Uuid> = HashSet::new();
    for task in tasks {
        committed.extend(task.await.expect("writer task"));
    }

    // Every stream: versions 1..n, no gap, no repeat, the balance adds up.
    let per_task: u64 = (1..=COMMANDS_PER_TASK).sum();
    let mut total_events = 0;
    for account in opened {
        let stream = StreamId::new("account", &account).unwrap();
        let events: Vec<_> = store
            .read_stream::<AccountEvent>(&stream, Version::INITIAL)
            .try_collect()
            .await
            .unwrap();
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        assert_eq!(
            versions,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{account}"
        );
        let writers = (0..TASKS).filter(|t| id(*t) == account).count() as u64;
        assert_eq!(
            events.len() as u64,
            1 + writers * COMMANDS_PER_TASK,
            "{account}"
        );
        let balance = repository.load(&account).await.unwrap().state.balance;
        assert_eq!(balance, writers * per_task, "{account}");
        total_events += events.len() as u64;
    }

    target_tx.send_replace(Some(total_events));
    let (seen, mut log) = tokio::time::timeout(Duration::from_secs(120), subscriber)
        .await
        .expect("the subscriber catches up")
        .expect("subscriber task");
    let seen_ids: Vec<Uuid> = seen.iter().map(|e| e.event_id).collect();
    let unique: HashSet<Uuid> = seen_ids.iter().copied().collect();
    assert_eq!(unique.len(), seen_ids.len(), "no event delivered twice");
    assert_eq!(
        seen.len() as u64,
        total_events,
        "every committed event delivered"
    );
    assert!(committed.is_subset(&unique), "every deposit delivered");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "delivered in log order"
    );
    if let Ok(extra) = tokio::time::timeout(Duration::from_millis(500), log.next()).await {
        panic!("the subscriber received more than was committed: {extra:?}");
    }
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_on_one_stream() {
    run(|_| "hot".to_owned()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_on_eight_streams() {
    run(|task| format!("own-{task}")).await;
}
