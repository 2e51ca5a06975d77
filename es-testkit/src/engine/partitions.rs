//! Partitions: runners that share the streams out by partition, alone or feeding one read
//! model.

use std::collections::{HashMap, HashSet};

use es_core::{Partition, ProjectionRunner, StreamId};
use uuid::Uuid;

use super::{deposit, runner, settled};
use crate::projections::{CountingView, Faults, LedgerStorage, LedgerView};
use es_core::Store;

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
