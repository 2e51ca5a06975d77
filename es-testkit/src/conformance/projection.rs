//! Projections run by [`ProjectionRunner`] on the store: checkpoints, crashes, rebuilds,
//! competing instances, parked events, partitions and process managers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use es_core::{
    ErrorPolicy, EventFilter, ExpectedVersion, NewEvent, OnFailure, Partition,
    ProcessManagerProjection, ProjectionRunner, Repository, RunnerError, StreamId,
};
use uuid::Uuid;

use super::{account, read_log};
use crate::fixture::{AccountCommand, AccountEvent};
use crate::projections::{
    CountingView, Faults, LedgerStorage, LedgerView, WELCOME_BONUS, WelcomeBonus,
};
use es_core::Store;

/// Generous bound on work that should finish at once; it bounds a hang, it does not
/// measure speed.
const PATIENCE: Duration = Duration::from_secs(60);

/// Appends `n` deposits of 1..=n to `id`, one append each; returns their event ids.
async fn deposit<S: Store>(store: &S, id: &str, n: u64) -> Vec<Uuid> {
    let stream = account(id);
    let mut ids = Vec::new();
    for amount in 1..=n {
        let committed = store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(AccountEvent::Deposited { amount })],
            )
            .await
            .unwrap();
        ids.push(committed.events[0].event_id);
    }
    ids
}

/// Waits until the global log shows `total` events: a store may hold back fresh events
/// for a moment (see [`read_log`]), and a catch-up reads only what is visible.
async fn settled<S: Store>(store: &S, total: usize) {
    read_log::<S, es_core::RawEvent>(store, es_core::Position::START, EventFilter::all(), total)
        .await;
}

fn runner<S: Store, P: es_core::Projection>(store: &S, projection: P) -> ProjectionRunner<P, S> {
    ProjectionRunner::new(store.clone(), projection)
        .with_batch_size(5)
        .with_lease(Some(Duration::from_millis(500)))
        .with_commit_interval(Duration::from_millis(20))
}

/// A runner handles the history, commits, and a later runner resumes after the
/// checkpoint: each event once.
pub async fn projection_catches_up_and_resumes_from_its_checkpoint<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut ids: HashSet<Uuid> = deposit(&store, "a", 7).await.into_iter().collect();
    settled(&store, 7).await;
    let mut first = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(first.catch_up().await.unwrap(), 7);
    let checkpoint = first.status().get().position;
    assert!(checkpoint.is_some(), "the runner committed a checkpoint");

    ids.extend(deposit(&store, "b", 4).await);
    settled(&store, 11).await;
    let mut second = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(
        second.catch_up().await.unwrap(),
        4,
        "it resumes after the checkpoint"
    );
    assert!(storage.get().applied_exactly(&ids));
    assert_eq!(storage.get().balances["a"], 28);
    assert_eq!(
        second.catch_up().await.unwrap(),
        0,
        "nothing new, nothing handled"
    );
}

/// A projection that keeps its own checkpoint is killed mid-batch (its task dropped
/// between writes and the commit): a new runner finishes the job, and every event is
/// applied exactly once.
pub async fn killed_projection_resumes_exactly_once<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 23).await.into_iter().collect();
    settled(&store, 23).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.stall_at(13);
    let mut doomed = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    );
    let task = tokio::spawn(async move { doomed.catch_up().await });
    tokio::time::timeout(PATIENCE, faults.stalled())
        .await
        .expect("the view reached the stall");
    task.abort();
    let _ = task.await;
    let before = storage.get();
    assert_eq!(before.applied.len(), 10, "two batches of 5 were committed");

    let mut survivor = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    )
    // The dead runner's lease must run out first.
    .with_lease(Some(Duration::from_millis(500)));
    let handled = tokio::time::timeout(PATIENCE, async {
        loop {
            match survivor.catch_up().await {
                Err(RunnerError::LeaseHeld { .. }) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other,
            }
        }
    })
    .await
    .expect("the lease expires")
    .unwrap();
    assert_eq!(handled, 13, "it resumes after the last commit");
    let ledger = storage.get();
    assert!(
        ledger.applied_exactly(&ids),
        "every event applied exactly once"
    );
    assert_eq!(ledger.balances["a"], (1..=23).sum::<u64>() as i64);
}

/// A projection that lets the runner keep its checkpoint, killed mid-batch, loses nothing:
/// the events since the last checkpoint come again (at least once).
pub async fn killed_projection_without_own_checkpoint_loses_nothing<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 23).await.into_iter().collect();
    settled(&store, 23).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.stall_at(13);
    let mut doomed = runner(
        &store,
        CountingView::new("counting", storage.clone(), faults.clone()),
    )
    .with_lease(None);
    let task = tokio::spawn(async move { doomed.catch_up().await });
    tokio::time::timeout(PATIENCE, faults.stalled())
        .await
        .expect("the view reached the stall");
    task.abort();
    let _ = task.await;

    let mut survivor = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    )
    .with_lease(None);
    survivor.catch_up().await.unwrap();
    let ledger = storage.get();
    assert_eq!(ledger.applied.len(), ids.len(), "no event lost");
    let twice: Vec<_> = ledger.applied.values().filter(|n| **n > 1).collect();
    assert!(
        twice.len() <= 2 && twice.iter().all(|n| **n == 2),
        "only the uncommitted batch (events 11 and 12) comes again: {twice:?}"
    );
}

/// Rebuilding from the start of the log gives exactly the view that live processing gave.
pub async fn rebuild_gives_the_view_live_processing_gave<S: Store>(store: S) {
    let mut ids: HashSet<Uuid> = deposit(&store, "a", 6).await.into_iter().collect();
    let storage = LedgerStorage::default();
    let mut live = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        live.run_until(async {
            let _ = stopped.await;
        })
        .await
        .map(|()| live)
    });
    ids.extend(deposit(&store, "b", 5).await);
    ids.extend(deposit(&store, "a", 3).await);
    tokio::time::timeout(PATIENCE, async {
        while !storage.get().applied_exactly(&ids) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the live runner handles every event");
    let _ = stop.send(());
    let mut live = task.await.unwrap().unwrap();
    let live_view = storage.get();
    settled(&store, ids.len()).await;

    assert_eq!(live.rebuild().await.unwrap(), ids.len() as u64);
    let rebuilt = storage.get();
    assert_eq!(rebuilt.balances, live_view.balances);
    assert_eq!(rebuilt.order, live_view.order);
    assert!(rebuilt.applied_exactly(&ids));
}

/// Two instances of one projection run at once while events arrive: the lease lets one
/// work and the other wait, each event is applied exactly once, and when the first stops
/// the second takes over.
pub async fn two_instances_handle_each_event_once<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut ids: HashSet<Uuid> = HashSet::new();
    let mut instances = Vec::new();
    for _ in 0..2 {
        let mut instance = runner(
            &store,
            LedgerView::new("ledger", storage.clone(), Faults::none()),
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            instance
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        });
        instances.push((stop, task));
    }
    for round in 0..5 {
        ids.extend(deposit(&store, &format!("acct-{round}"), 8).await);
    }
    let all_applied = |ids: HashSet<Uuid>| {
        let storage = storage.clone();
        async move {
            tokio::time::timeout(PATIENCE, async {
                while !storage.get().applied_exactly(&ids) {
                    assert!(
                        storage.get().applied.values().all(|n| *n == 1),
                        "an event was applied twice"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("every event is applied");
        }
    };
    all_applied(ids.clone()).await;

    // Stop one instance (whichever held the lease or not): the other goes on.
    let (stop, task) = instances.remove(0);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    ids.extend(deposit(&store, "after-failover", 6).await);
    all_applied(ids.clone()).await;

    let (stop, task) = instances.remove(0);
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// An event the projection keeps failing on is parked (visible, with its error) and the
/// projection goes on; once the cause is fixed, retrying the parked event applies it.
pub async fn failing_event_is_parked_and_can_be_retried<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 12).await.into_iter().collect();
    settled(&store, 12).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(7);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::retry(2, Duration::from_millis(1)).then(OnFailure::Park));
    assert_eq!(runner.catch_up().await.unwrap(), 12);

    let parked = store.parked("ledger").await.unwrap();
    assert_eq!(parked.len(), 1, "the failing event is parked: {parked:?}");
    assert_eq!(parked[0].version.get(), 7);
    assert_eq!(parked[0].stream_id, account("a"));
    assert_eq!(parked[0].event_type, "Deposited");
    assert_eq!(parked[0].attempts, 3);
    assert!(
        parked[0].error.contains("deposit of 7"),
        "{}",
        parked[0].error
    );
    let status = runner.status().get();
    assert_eq!(status.parked, 1);
    assert!(status.last_error.is_some());
    let ledger = storage.get();
    assert_eq!(ledger.applied.len(), 11, "every other event applied");
    assert!(ledger.applied.values().all(|n| *n == 1));

    // Still broken: the retry fails and the event stays parked, with a new attempt.
    assert_eq!(runner.retry_parked().await.unwrap(), 0);
    assert_eq!(store.parked("ledger").await.unwrap()[0].attempts, 4);

    faults.heal();
    assert_eq!(runner.retry_parked().await.unwrap(), 1);
    assert!(store.parked("ledger").await.unwrap().is_empty());
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids));
    assert_eq!(ledger.balances["a"], (1..=12).sum::<u64>() as i64);
}

/// With the stop policy the runner stops at the failing event, naming it, having committed
/// everything before it; after a fix it goes on from there.
pub async fn stop_policy_stops_at_the_failing_event<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 12).await.into_iter().collect();
    settled(&store, 12).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(9);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::retry(1, Duration::from_millis(1)));
    match runner.catch_up().await {
        Err(RunnerError::Handler {
            stream,
            version,
            event_type,
            attempts,
            ..
        }) => {
            assert_eq!(stream, account("a"));
            assert_eq!(version.get(), 9);
            assert_eq!(event_type, "Deposited");
            assert!(attempts >= 2);
        }
        other => panic!("expected a handler error, got {other:?}"),
    }
    let ledger = storage.get();
    assert_eq!(
        ledger.applied.len(),
        8,
        "everything before the failing event is applied"
    );
    assert!(ledger.applied.values().all(|n| *n == 1));
    assert!(
        store.parked("ledger").await.unwrap().is_empty(),
        "nothing parked"
    );

    faults.heal();
    assert_eq!(runner.catch_up().await.unwrap(), 4);
    assert!(storage.get().applied_exactly(&ids));
}

/// The status tells where the projection is, how far behind, and what failed.
pub async fn status_reports_position_lag_and_errors<S: Store>(store: S) {
    deposit(&store, "a", 10).await;
    settled(&store, 10).await;
    let storage = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    let status = runner.status();
    assert_eq!(status.get().position, None);
    assert_eq!(status.get().key, "counting");
    assert_eq!(
        tokio::time::timeout(PATIENCE, status.lag(&store))
            .await
            .unwrap()
            .unwrap(),
        10
    );
    runner.catch_up().await.unwrap();
    let now = status.get();
    assert_eq!(now.handled, 10);
    assert!(now.position.is_some());
    assert!(now.last_event_at.is_some());
    deposit(&store, "b", 3).await;
    // The new events may be held back for a moment; the lag counts them once visible.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let lag = status.lag(&store).await.unwrap();
        if lag == 3 {
            break;
        }
        assert!(lag < 3, "lag {lag} counts more than the new events");
        assert!(tokio::time::Instant::now() < deadline, "lag stuck at {lag}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runners of different partitions share the streams out: together they apply every event
/// once, each stream's events in order, no stream in two partitions.
pub async fn partitioned_runners_split_streams_and_keep_order<S: Store>(store: S) {
    const PARTITIONS: u32 = 3;
    let mut ids = HashSet::new();
    for stream in 0..12 {
        ids.extend(deposit(&store, &format!("p{stream}"), 4).await);
    }
    settled(&store, ids.len()).await;
    let mut tasks = Vec::new();
    let mut storages = Vec::new();
    for partition in Partition::all(PARTITIONS) {
        let storage = LedgerStorage::default();
        storages.push(storage.clone());
        let mut runner = runner(&store, LedgerView::new("ledger", storage, Faults::none()))
            .with_partition(partition);
        assert_eq!(runner.key(), format!("ledger#{partition}"));
        tasks.push(tokio::spawn(async move { runner.catch_up().await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let mut applied: HashMap<Uuid, u32> = HashMap::new();
    let mut owner: HashMap<StreamId, usize> = HashMap::new();
    for (index, storage) in storages.iter().enumerate() {
        let ledger = storage.get();
        for (id, n) in ledger.applied {
            *applied.entry(id).or_default() += n;
        }
        let mut last: HashMap<StreamId, u64> = HashMap::new();
        for (stream, version) in ledger.order {
            let previous = last.insert(stream.clone(), version.get()).unwrap_or(0);
            assert!(version.get() > previous, "{stream} out of order");
            let first = *owner.entry(stream.clone()).or_insert(index);
            assert_eq!(first, index, "{stream} in two partitions");
        }
    }
    assert_eq!(applied.len(), ids.len(), "every event applied");
    assert!(applied.values().all(|n| *n == 1), "each once");
    assert!(
        storages
            .iter()
            .filter(|s| !s.get().applied.is_empty())
            .count()
            > 1,
        "the streams are spread over more than one partition"
    );
}

/// Partitions of one projection feeding one read model: each keeps its own checkpoint,
/// whether the projection commits it with its writes ([`LedgerView`]) or the runner saves
/// it in the store ([`CountingView`]); restarted runners resume each from its own; a
/// rebuild through one partition resets them all, and the others then start over.
pub async fn partitions_of_one_read_model_resume_and_rebuild_together<S: Store>(store: S) {
    // Every event in the log so far: each view reads all account streams.
    let mut ids = HashSet::new();
    partitions_share_a_read_model(&store, &mut ids, "ledger", |storage| {
        LedgerView::new("ledger", storage, Faults::none())
    })
    .await;
    partitions_share_a_read_model(&store, &mut ids, "counting", |storage| {
        CountingView::new("counting", storage, Faults::none())
    })
    .await;
}

async fn partitions_share_a_read_model<S, P>(
    store: &S,
    ids: &mut HashSet<Uuid>,
    name: &str,
    view: impl Fn(LedgerStorage) -> P,
) where
    S: Store,
    P: es_core::Projection + Sync + 'static,
{
    const PARTITIONS: u32 = 3;
    const STREAMS: usize = 12;
    let storage = LedgerStorage::default();
    for stream in 0..STREAMS {
        ids.extend(deposit(store, &format!("{name}{stream}"), 3).await);
    }
    settled(store, ids.len()).await;

    let run_all = |runners: Vec<ProjectionRunner<P, S>>| async move {
        let tasks: Vec<_> = runners
            .into_iter()
            .map(|mut runner| tokio::spawn(async move { runner.catch_up().await.map(|_| runner) }))
            .collect();
        let mut done = Vec::new();
        for task in tasks {
            done.push(task.await.unwrap().unwrap());
        }
        done
    };
    let start = |storage: &LedgerStorage| {
        Partition::all(PARTITIONS)
            .map(|partition| runner(store, view(storage.clone())).with_partition(partition))
            .collect::<Vec<_>>()
    };

    run_all(start(&storage)).await;
    assert!(
        storage.get().applied_exactly(ids),
        "{name}: the partitions together apply every event once"
    );

    // Restarted runners (new processes, say) resume each from its own checkpoint.
    for stream in 0..STREAMS {
        ids.extend(deposit(store, &format!("{name}{stream}"), 2).await);
    }
    settled(store, ids.len()).await;
    let mut runners = run_all(start(&storage)).await;
    let live = storage.get();
    assert!(
        live.applied_exactly(ids),
        "{name}: resumed partitions apply only the new events, each once"
    );
    assert!(
        live.balances
            .keys()
            .filter(|id| id.starts_with(name))
            .all(|id| live.balances[id] == 1 + 2 + 3 + 1 + 2)
    );

    // A rebuild through partition 1 resets the shared read model and every checkpoint.
    let rebuilt_here = runners[0].rebuild().await.unwrap();
    assert!(rebuilt_here > 0 && rebuilt_here < ids.len() as u64);
    let others = runners.split_off(1);
    run_all(others).await;
    let rebuilt = storage.get();
    assert!(
        rebuilt.applied_exactly(ids),
        "{name}: after the rebuild every partition starts over, each event applied once"
    );
    assert_eq!(rebuilt.balances, live.balances);
}

/// A process manager run by a runner issues each command once, even when the events it
/// reacts to are handled again (here: a rebuild), and the commands' events carry the
/// reacting event as causation, its correlation id, its actor and its user metadata.
pub async fn process_manager_issues_each_command_once<S: Store>(store: S) {
    let accounts = Repository::<crate::fixture::Account, _>::new(store.clone());
    let mut openings = HashMap::new();
    for owner in ["ada", "bob", "cy"] {
        let outcome = accounts
            .execute_with(
                owner,
                AccountCommand::Open {
                    owner: owner.into(),
                },
                es_core::CommandContext::new()
                    .with_actor(format!("clerk-{owner}"))
                    .with_user("tenant", "acme"),
            )
            .await
            .unwrap();
        openings.insert(owner, outcome.events[0].clone());
    }
    settled(&store, 3).await;
    let manager = ProcessManagerProjection::new(WelcomeBonus, accounts.clone());
    let mut runner = runner(&store, manager);
    assert_eq!(runner.catch_up().await.unwrap(), 3);
    // Handling the same events again issues nothing new.
    assert_eq!(runner.rebuild().await.unwrap(), 3);

    for owner in openings.keys() {
        let loaded = accounts.load(owner).await.unwrap();
        assert_eq!(loaded.state.balance, WELCOME_BONUS, "{owner}: one bonus");
        assert_eq!(loaded.version.get(), 2);
    }
    let bonuses = read_log::<S, AccountEvent>(
        &store,
        es_core::Position::START,
        EventFilter::all().with_event_types(["Deposited"]),
        3,
    )
    .await;
    assert_eq!(bonuses.len(), 3);
    for bonus in bonuses {
        let opened = &openings[bonus.stream_id.id()];
        assert_eq!(bonus.metadata.causation_id, Some(opened.event_id));
        assert_eq!(
            bonus.metadata.correlation_id,
            opened.metadata.correlation_id
        );
        // The flow carries who started it and the application's metadata along.
        assert_eq!(bonus.metadata.actor, opened.metadata.actor);
        assert_eq!(bonus.metadata.user["tenant"], "acme");
    }
}

/// A runner reading through a just-appended position sees that event, even where the store
/// holds fresh events back for a moment.
pub async fn catch_up_through_sees_the_append<S: Store>(store: S) {
    let storage = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    for round in 0..5 {
        let committed = store
            .append(
                &account("fresh"),
                ExpectedVersion::Any,
                vec![NewEvent::new(AccountEvent::Deposited { amount: 1 })],
            )
            .await
            .unwrap();
        let last = committed.events[0].position;
        tokio::time::timeout(PATIENCE, runner.catch_up_through(last))
            .await
            .expect("the append becomes readable")
            .unwrap();
        assert!(
            storage
                .get()
                .applied
                .contains_key(&committed.events[0].event_id),
            "round {round}: the projection saw the append"
        );
    }
}

/// A runner with its checkpoint in memory stores none: a new runner (a new process, with a
/// new, empty read model) reads the log from the start.
pub async fn checkpoint_in_memory_is_not_stored<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 6).await.into_iter().collect();
    settled(&store, 6).await;
    let first = LedgerStorage::default();
    let mut runner = runner(
        &store,
        CountingView::new("in-memory", first.clone(), Faults::none()),
    )
    .with_checkpoint_in_memory();
    assert_eq!(runner.catch_up().await.unwrap(), 6);
    assert_eq!(
        runner.catch_up().await.unwrap(),
        0,
        "it remembers its own position"
    );
    assert_eq!(store.load_checkpoint("in-memory").await.unwrap(), None);

    let second = LedgerStorage::default();
    let mut restarted = ProjectionRunner::new(
        store.clone(),
        CountingView::new("in-memory", second.clone(), Faults::none()),
    )
    .with_checkpoint_in_memory();
    assert_eq!(restarted.catch_up().await.unwrap(), 6);
    assert!(first.get().applied_exactly(&ids) && second.get().applied_exactly(&ids));
}

/// A process manager that tolerates a rejection goes on past it; one that does not is
/// stopped by its error policy, naming the event.
pub async fn process_manager_tolerated_rejections_count_as_done<S: Store>(store: S) {
    let accounts = Repository::<crate::fixture::Account, _>::new(store.clone());
    for owner in ["ada", "bob"] {
        accounts
            .execute(
                owner,
                AccountCommand::Open {
                    owner: owner.into(),
                },
            )
            .await
            .unwrap();
    }
    settled(&store, 2).await;
    let tolerant = ProcessManagerProjection::new(
        crate::projections::OpeningFee { tolerant: true },
        accounts.clone(),
    );
    let mut runner = runner(&store, tolerant).with_error_policy(ErrorPolicy::stop());
    assert_eq!(runner.catch_up().await.unwrap(), 2);

    let strict = ProcessManagerProjection::new(
        crate::projections::OpeningFee { tolerant: false },
        accounts.clone(),
    );
    let mut runner = ProjectionRunner::new(store.clone(), strict)
        .with_lease(None)
        .with_error_policy(ErrorPolicy::stop());
    match runner.rebuild().await {
        Err(RunnerError::Handler { event_type, .. }) => assert_eq!(event_type, "Opened"),
        other => panic!("expected the rejection to stop the flow, got {other:?}"),
    }
}

/// A runner that resumes from a stored checkpoint reports that position, and no lag,
/// before it has handled anything.
pub async fn resumed_runner_reports_its_checkpoint<S: Store>(store: S) {
    deposit(&store, "a", 5).await;
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let mut first = runner(
        &store,
        CountingView::new("counting", storage.clone(), Faults::none()),
    );
    assert_eq!(first.catch_up().await.unwrap(), 5);
    let committed = first.status().get().position;
    assert!(committed.is_some());

    let mut second = runner(
        &store,
        CountingView::new("counting", storage, Faults::none()),
    );
    assert_eq!(second.catch_up().await.unwrap(), 0);
    let status = second.status();
    assert_eq!(status.get().position, committed);
    assert_eq!(status.lag(&store).await.unwrap(), 0);
}

/// With the stop policy, what came before the failing event in its batch is committed,
/// even for a read model in process memory: after the fix, nothing is applied twice.
pub async fn stop_policy_keeps_the_events_before_the_failure<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let mut runner = runner(
        &store,
        CountingView::new("memory", storage.clone(), faults.clone()),
    )
    .with_checkpoint_in_memory()
    .with_error_policy(ErrorPolicy::stop());
    assert!(matches!(
        runner.catch_up().await,
        Err(RunnerError::Handler { .. })
    ));
    assert_eq!(storage.get().applied.len(), 2);
    faults.heal();
    assert_eq!(runner.catch_up().await.unwrap(), 3);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    assert_eq!(ledger.balances["a"], 15);
}

/// A rebuild replays parked events with the rest: one the projection now handles is
/// unparked, so retrying parked events afterwards applies nothing twice.
pub async fn rebuild_settles_parked_events<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let mut runner = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), faults.clone()),
    )
    .with_error_policy(ErrorPolicy::park());
    assert_eq!(runner.catch_up().await.unwrap(), 5);
    assert_eq!(runner.parked().await.unwrap().len(), 1);

    faults.heal();
    assert_eq!(runner.rebuild().await.unwrap(), 5);
    assert!(store.parked("ledger").await.unwrap().is_empty());
    assert_eq!(runner.retry_parked().await.unwrap(), 0);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    assert_eq!(ledger.balances["a"], 15);
}

/// Runners whose read model lives in process memory keep their parked events to
/// themselves: one process retrying its parked event does not take it from another's.
pub async fn in_memory_runners_keep_their_parked_events<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 5).await.into_iter().collect();
    settled(&store, 5).await;
    let faults = Faults::none();
    faults.fail_on(3);
    let (here, there) = (LedgerStorage::default(), LedgerStorage::default());
    let in_memory = |storage: &LedgerStorage| {
        runner(
            &store,
            CountingView::new("memory", storage.clone(), faults.clone()),
        )
        .with_checkpoint_in_memory()
        .with_error_policy(ErrorPolicy::park())
    };
    let (mut a, mut b) = (in_memory(&here), in_memory(&there));
    a.catch_up().await.unwrap();
    b.catch_up().await.unwrap();
    assert!(
        store.parked("memory").await.unwrap().is_empty(),
        "nothing in the store's dead-letter table"
    );
    assert_eq!(a.parked().await.unwrap().len(), 1);
    assert_eq!(b.parked().await.unwrap().len(), 1);

    faults.heal();
    assert_eq!(a.retry_parked().await.unwrap(), 1);
    assert_eq!(b.retry_parked().await.unwrap(), 1);
    for storage in [here, there] {
        let ledger = storage.get();
        assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
    }
}

/// A runner retrying a failing event with pauses longer than its lease keeps renewing
/// the lease: a second instance cannot take over meanwhile and handle the same events.
pub async fn lease_outlasts_retry_pauses<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 10).await.into_iter().collect();
    settled(&store, 10).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.fail_on(3);
    let lease = Some(Duration::from_secs(2));
    // Pauses of 0.5 s, 1 s and 2 s: together well past the lease's 2 s.
    let mut first = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), faults.clone()),
    )
    .with_lease(lease)
    .with_batch_size(3)
    .with_error_policy(ErrorPolicy::retry(3, Duration::from_millis(500)).then(OnFailure::Stop));
    let first = tokio::spawn(async move { first.catch_up().await });
    tokio::time::timeout(PATIENCE, async {
        while storage.get().applied.len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the first runner reaches the failing event");

    let mut second = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), Faults::none()),
    )
    .with_lease(lease)
    .with_batch_size(3);
    assert!(
        matches!(second.catch_up().await, Err(RunnerError::LeaseHeld { .. })),
        "the lease is still held by the runner that is retrying"
    );
    faults.heal();
    assert_eq!(first.await.unwrap().unwrap(), 10);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
}

/// A live runner whose commit fails (here: another instance moved the checkpoint) says so
/// in its status, as recovering with the error, while it waits to start over.
pub async fn live_runner_reports_recovering_after_a_failed_commit<S: Store>(store: S) {
    deposit(&store, "a", 3).await;
    settled(&store, 3).await;
    let storage = LedgerStorage::default();
    let mut live = runner(
        &store,
        LedgerView::new("ledger", storage.clone(), Faults::none()),
    )
    .with_lease(None);
    let status = live.status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        live.run_until(async {
            let _ = stopped.await;
        })
        .await
    });
    tokio::time::timeout(PATIENCE, async {
        while storage.get().applied.len() < 3 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the runner handles the history");
    storage.move_checkpoint("ledger", es_core::Position::START);
    deposit(&store, "a", 1).await;
    tokio::time::timeout(PATIENCE, async {
        while status.get().state != es_core::RunnerState::Recovering {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("the runner reports that it is recovering");
    let error = status.get().last_error.unwrap_or_default();
    assert!(error.contains("ledger"), "{error}");
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

/// An event whose handling outlasts the lease does not make the runner give up its batch
/// when nobody else took the lease meanwhile: it goes on, each event handled once.
pub async fn slow_event_outlasting_the_lease_is_handled_once<S: Store>(store: S) {
    let ids: HashSet<Uuid> = deposit(&store, "a", 4).await.into_iter().collect();
    settled(&store, 4).await;
    let storage = LedgerStorage::default();
    let faults = Faults::none();
    faults.slow_on(2, Duration::from_millis(600));
    let mut runner = ProjectionRunner::new(
        store.clone(),
        CountingView::new("counting", storage.clone(), faults),
    )
    .with_lease(Some(Duration::from_millis(200)))
    .with_batch_size(10);
    let handled = tokio::time::timeout(PATIENCE, runner.catch_up())
        .await
        .expect("the runner does not go round in circles")
        .unwrap();
    assert_eq!(handled, 4);
    let ledger = storage.get();
    assert!(ledger.applied_exactly(&ids), "each event once: {ledger:?}");
}

/// Renewing a lease succeeds only for the owner nobody displaced, even after it ran out
/// unnoticed; once another owner took it, or it was released, renewal fails.
pub async fn lease_renewal_proves_nobody_took_it<S: Store>(store: S) {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let short = Duration::from_millis(50);
    assert!(store.acquire_lease("renewed", a, short).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(
        store.renew_lease("renewed", a, short).await.unwrap(),
        "ran out, but nobody took it"
    );
    assert!(!store.renew_lease("renewed", b, short).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(store.acquire_lease("renewed", b, short).await.unwrap());
    assert!(
        !store.renew_lease("renewed", a, short).await.unwrap(),
        "another owner took it"
    );
    store.release_lease("renewed", b).await.unwrap();
    assert!(
        !store.renew_lease("renewed", b, short).await.unwrap(),
        "released"
    );
    assert!(!store.renew_lease("never taken", a, short).await.unwrap());
}
