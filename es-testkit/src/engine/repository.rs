//! Command execution on a store: retries, idempotency, snapshots.

use std::time::Duration;

use es_core::{CommandContext, Repository, RetryPolicy, SnapshotPolicy, Version};
use uuid::Uuid;

use crate::conformance::{account, read_stream, versions};
use crate::fixture::{Account, AccountCommand, AccountError};
use es_core::Store;

/// Eight tasks each deposit 25 times into one account through [`Repository`]: every command
/// succeeds (conflicts are retried), each is recorded exactly once, and the balance adds up.
pub async fn repository_commands_under_contention_lose_nothing<S: Store>(store: S) {
    const TASKS: u64 = 8;
    const COMMANDS: u64 = 25;
    let repository = Repository::<Account, _>::new(store.clone()).with_retry_policy(
        RetryPolicy::default()
            .with_max_attempts(10_000)
            .with_backoff(Duration::from_micros(100), Duration::from_millis(5)),
    );
    repository
        .execute(
            "busy",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let repository = repository.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..COMMANDS {
                let amount = task * 1000 + n + 1;
                repository
                    .execute("busy", AccountCommand::Deposit { amount })
                    .await
                    .unwrap_or_else(|e| panic!("task {task} deposit {n}: {e:?}"));
            }
        }));
    }
    for task in tasks {
        task.await.expect("command task");
    }
    let expected_total: u64 = (0..TASKS)
        .flat_map(|t| (0..COMMANDS).map(move |n| t * 1000 + n + 1))
        .sum();
    let loaded = repository.load("busy").await.unwrap();
    assert_eq!(
        loaded.state.balance, expected_total,
        "no deposit lost or doubled"
    );
    assert_eq!(loaded.state.movements, TASKS * COMMANDS);
    assert_eq!(loaded.version, Version::new(1 + TASKS * COMMANDS));
    let events = read_stream(&store, &account("busy")).await;
    assert_eq!(
        versions(&events),
        (1..=1 + TASKS * COMMANDS).collect::<Vec<_>>()
    );
}

/// The same command id executed twice records once and returns the first outcome, even
/// when the repeat would now be rejected.
pub async fn repository_command_id_is_idempotent<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone());
    let open = CommandContext::new().with_command_id(Uuid::now_v7());
    let open_id = open.command_id();
    let first = repository
        .execute_with(
            "idem",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            open.clone(),
        )
        .await
        .unwrap();
    assert!(!first.duplicate);
    // Opening again would be rejected (AlreadyOpen), but this is the same command.
    let again = repository
        .execute_with(
            "idem",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            open,
        )
        .await
        .expect("a repeated command returns its first outcome");
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);

    let deposit = CommandContext::new().with_command_id(Uuid::now_v7());
    let first = repository
        .execute_with(
            "idem",
            AccountCommand::Deposit { amount: 5 },
            deposit.clone(),
        )
        .await
        .unwrap();
    let again = repository
        .execute_with("idem", AccountCommand::Deposit { amount: 5 }, deposit)
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.events, first.events);
    assert_eq!(again.version, Version::new(2));

    // A fresh context is a new command.
    let third = repository
        .execute("idem", AccountCommand::Deposit { amount: 5 })
        .await
        .unwrap();
    assert!(!third.duplicate);
    let loaded = repository.load("idem").await.unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (10, Version::new(3))
    );

    // Rejections still surface for commands never executed.
    let error = repository
        .execute("idem", AccountCommand::Withdraw { amount: 100 })
        .await
        .unwrap_err();
    assert_eq!(
        error.rejection(),
        Some(&AccountError::InsufficientFunds {
            balance: 10,
            requested: 100
        })
    );

    // Events carry the command's metadata: the command caused them, and with no
    // correlation id given, the command also starts the flow.
    let events = read_stream(&store, &account("idem")).await;
    assert_eq!(events[0].metadata.causation_id, Some(open_id));
    assert_eq!(events[0].metadata.correlation_id, Some(open_id));
    assert!(events[1..].iter().all(|e| {
        e.metadata.causation_id.is_some() && e.metadata.causation_id != Some(open_id)
    }));
}

/// State loaded through snapshots equals the state replayed from every event, for several
/// snapshot intervals, and each snapshot holds exactly the state at its version.
pub async fn repository_snapshot_state_equals_replayed_state<S: Store>(store: S) {
    for every in [1, 2, 3, 7] {
        let id = format!("snap-{every}");
        let snapshots = Repository::<Account, _>::new(store.clone())
            .with_snapshot_policy(SnapshotPolicy::every(every));
        snapshots
            .execute(
                &id,
                AccountCommand::Open {
                    owner: "ada".into(),
                },
            )
            .await
            .unwrap();
        for amount in 1..=10 {
            snapshots
                .execute(&id, AccountCommand::Deposit { amount })
                .await
                .unwrap();
        }
        snapshots
            .execute(&id, AccountCommand::Withdraw { amount: 4 })
            .await
            .unwrap();

        let stream = account(&id);
        let snapshot = store
            .load_snapshot(&stream)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("a snapshot every {every} events was saved"));
        let expected_version = (12 / every) * every;
        assert_eq!(
            snapshot.version,
            Version::new(expected_version),
            "every {every}"
        );
        // The snapshot holds the state at its version: replay exactly that many events.
        let events = read_stream(&store, &stream).await;
        let mut at_snapshot = Account::default();
        for event in events.iter().take(expected_version as usize) {
            es_core::Aggregate::apply(&mut at_snapshot, &event.event);
        }
        let stored: Account = serde_json::from_value(snapshot.state).unwrap();
        assert_eq!(
            stored, at_snapshot,
            "snapshot state at version {expected_version}"
        );

        let replayed = Repository::<Account, _>::new(store.clone())
            .load(&id)
            .await
            .unwrap();
        let through_snapshot = snapshots.load(&id).await.unwrap();
        assert_eq!(through_snapshot, replayed, "every {every}");
        assert_eq!(replayed.state.balance, 55 - 4);
    }
}

/// Two repositories with state caches share a store: each sees the other's events before
/// it rejects or records anything, so a cached state never decides.
pub async fn repository_cache_never_decides_on_stale_state<S: Store>(store: S) {
    let first = Repository::<Account, _>::new(store.clone()).with_cache(16);
    let second = Repository::<Account, _>::new(store.clone()).with_cache(16);
    first
        .execute(
            "cached",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap();
    // `first` caches an empty account; `second` deposits behind its back.
    second
        .execute("cached", AccountCommand::Deposit { amount: 100 })
        .await
        .unwrap();
    // On the cached state this withdrawal would be rejected; on the real one it succeeds.
    let withdrawn = first
        .execute("cached", AccountCommand::Withdraw { amount: 60 })
        .await
        .expect("decided on the current state, not the cached one");
    assert_eq!(withdrawn.version, Version::new(3));
    // And a stale cache never lets a rule be broken: 40 left, not 100.
    let error = second
        .execute("cached", AccountCommand::Withdraw { amount: 50 })
        .await
        .unwrap_err();
    assert_eq!(
        error.rejection(),
        Some(&AccountError::InsufficientFunds {
            balance: 40,
            requested: 50
        })
    );
    // With no retries allowed, a merely stale cache still is not a conflict.
    let strict = Repository::<Account, _>::new(store.clone())
        .with_cache(16)
        .with_retry_policy(RetryPolicy::never());
    strict
        .execute("cached", AccountCommand::Deposit { amount: 1 })
        .await
        .unwrap();
    first
        .execute("cached", AccountCommand::Deposit { amount: 1 })
        .await
        .unwrap();
    strict
        .execute("cached", AccountCommand::Deposit { amount: 1 })
        .await
        .expect("a stale cache is caught up, not reported as a conflict");
    let loaded = first.load("cached").await.unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (43, Version::new(6))
    );
    let events = read_stream(&store, &account("cached")).await;
    assert_eq!(versions(&events), (1..=6).collect::<Vec<_>>());
}

/// The store fails for a moment (a killed connection, a restart): [`Repository`] runs the
/// command again by itself, and an append whose reply was lost after it was stored is
/// recognised, not recorded twice, also when no command id was given and when the command,
/// decided again on the state that now includes it, is rejected. Retries are bounded.
pub async fn repository_rides_out_store_failures<S: Store>(store: S) {
    use crate::flaky::FlakyStore;
    use es_core::Backoff;

    let flaky = FlakyStore::new(store.clone());
    let quick = Backoff::new(Duration::from_millis(1), Duration::from_millis(5));
    let accounts = Repository::<Account, _>::new(flaky.clone())
        .with_retry_policy(RetryPolicy::default().with_store_retries(4, quick));
    let deposit = |amount| AccountCommand::Deposit { amount };

    // Stored, then reported lost: the rejection on the new state ("already open") is seen
    // through, and the open is recorded once.
    flaky.lose_append_replies(1);
    let opened = accounts
        .execute(
            "a",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("a lost reply to an open: {e:?}"));
    assert_eq!(opened.version, Version::new(1));
    assert!(!opened.duplicate, "this very command, not an earlier one");
    assert_eq!(opened.events.len(), 1);

    // Stored, reported lost twice over: one deposit.
    flaky.lose_append_replies(2);
    let deposited = accounts.execute("a", deposit(5)).await.unwrap();
    assert_eq!(deposited.version, Version::new(2));
    assert!(!deposited.duplicate);

    // Failed before storing, and reads failing: run again until they pass (four
    // failures, four retries).
    flaky.fail_appends(2);
    flaky.fail_reads(2);
    assert_eq!(
        accounts.execute("a", deposit(7)).await.unwrap().version,
        Version::new(3)
    );

    // With a command id of the caller's: the lost reply is recognised by it.
    flaky.lose_append_replies(1);
    let context = CommandContext::new().with_command_id(Uuid::now_v7());
    let given = accounts
        .execute_with("a", deposit(11), context)
        .await
        .unwrap();
    assert_eq!(given.version, Version::new(4));

    let stored = read_stream(&store, &account("a")).await;
    assert_eq!(
        versions(&stored),
        [1, 2, 3, 4],
        "each command recorded once"
    );

    // Replies lost on every run: the command fails after the retries, saying that it may
    // be stored and under which command id; run again with it, it is recorded once.
    flaky.lose_append_replies(5);
    let before = flaky.appends();
    let error = accounts.execute("a", deposit(13)).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert_eq!(flaky.appends() - before, 5, "one run and four more");
    let es_core::CommandError::Append { command_id, .. } = &error else {
        panic!("expected an append error, got {error:?}");
    };
    assert!(
        error.to_string().contains(&command_id.to_string()),
        "{error}"
    );
    let resolved = accounts
        .execute_with(
            "a",
            deposit(13),
            CommandContext::new().with_command_id(*command_id),
        )
        .await
        .unwrap();
    assert!(resolved.duplicate, "the first run was stored");
    assert_eq!(resolved.version, Version::new(5));

    // A store that stays down: the command fails after the retries, and nothing is stored.
    flaky.fail_appends(u32::MAX);
    let error = accounts.execute("a", deposit(1)).await.unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    flaky.fail_appends(0);
    assert_eq!(
        versions(&read_stream(&store, &account("a")).await),
        [1, 2, 3, 4, 5],
        "each command recorded once"
    );
}

/// A context without a command id of the caller's may be cloned for many commands (to
/// carry the same actor and metadata): each is its own command, recorded, never taken for
/// a repeat of another.
pub async fn repository_context_without_command_id_can_be_reused<S: Store>(store: S) {
    let accounts = Repository::<Account, _>::new(store.clone());
    let context = CommandContext::new().with_actor("ada");
    accounts
        .execute_with(
            "shared",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            context.clone(),
        )
        .await
        .unwrap();
    for amount in [5, 7] {
        let outcome = accounts
            .execute_with(
                "shared",
                AccountCommand::Deposit { amount },
                context.clone(),
            )
            .await
            .unwrap();
        assert!(!outcome.duplicate, "deposit of {amount}");
        assert_eq!(outcome.events.len(), 1);
    }
    let stored = read_stream(&store, &account("shared")).await;
    assert_eq!(versions(&stored), [1, 2, 3], "three commands, three events");
    assert!(
        stored
            .iter()
            .all(|e| e.metadata.actor.as_deref() == Some("ada"))
    );
}

/// What a command costs in calls to the store, counted by a [`FlakyStore`](crate::flaky::FlakyStore)
/// around it: without the cache one load ([`SnapshotStore::load_events`](es_core::SnapshotStore::load_events),
/// which gives the snapshot, the archive state and the events together) and one append;
/// with the cache one append; a lost race one load more (the catch-up); a rejection its
/// load alone (on a cached state, the catch-up's); the latest state as of now (`load_as_of(AsOf::Latest)`) one load. Nothing
/// else: no separate snapshot read, archive check or stream read. And with the default snapshot
/// policy a load of a long-lived aggregate reads fewer than
/// [`SnapshotPolicy::DEFAULT_EVERY`] events, however long its stream: its cost stays flat.
pub async fn repository_command_costs_one_load_and_one_append<S: Store>(store: S) {
    let store = crate::flaky::FlakyStore::new(store);
    let repository = Repository::<Account, _>::new(store.clone());
    let open = AccountCommand::Open {
        owner: "ada".into(),
    };
    let deposit = AccountCommand::Deposit { amount: 1 };
    let (_, cost) = costs(&store, async {
        repository.execute("costs", open.clone()).await.unwrap();
        repository.execute("costs", deposit.clone()).await.unwrap();
    })
    .await;
    assert_eq!(
        cost,
        Cost::only(2, 2),
        "two commands without the cache: a load and an append each, nothing else"
    );

    // A rejection costs its load alone: the load said whether the stream is archived, so
    // the rejection is not followed by an archive check.
    let (rejected, cost) = costs(
        &store,
        repository.execute("costs", AccountCommand::Withdraw { amount: 1_000 }),
    )
    .await;
    assert!(
        matches!(
            rejected,
            Err(es_core::CommandError::Rejected {
                error: AccountError::InsufficientFunds { .. },
                ..
            })
        ),
        "{rejected:?}"
    );
    assert_eq!(
        cost,
        Cost::only(1, 0),
        "a rejected command: its load, no append, no archive check after the load"
    );

    // A long-lived aggregate: the default policy snapshots it, so a command's load stays
    // short whatever the stream's length.
    let events = 3 * SnapshotPolicy::DEFAULT_EVERY;
    for _ in 2..events {
        repository.execute("costs", deposit.clone()).await.unwrap();
    }
    let read_before = store.calls().loaded_events;
    let (loaded, cost) = costs(&store, repository.load("costs")).await;
    let read = store.calls().loaded_events - read_before;
    let loaded = loaded.unwrap();
    assert_eq!(loaded.version, Version::new(events));
    assert_eq!(loaded.state.balance, events - 1);
    assert_eq!(cost, Cost::only(1, 0), "one load alone");
    assert!(
        read < u32::try_from(SnapshotPolicy::DEFAULT_EVERY).unwrap(),
        "a load of {events} events read {read} of them: the default policy keeps a snapshot"
    );
    let (latest, cost) = costs(
        &store,
        repository.load_as_of("costs", es_core::AsOf::Latest),
    )
    .await;
    assert_eq!(
        latest.unwrap(),
        loaded,
        "the latest state is the current one"
    );
    assert_eq!(
        cost,
        Cost::only(1, 0),
        "the latest state: one load alone, no separate snapshot read"
    );
    let replayed = Repository::<Account, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::Never)
        .load("costs")
        .await
        .unwrap();
    assert_eq!(replayed, loaded, "the snapshot gives the replayed state");

    // With the cache: one append a command; a stale cached state costs one load more.
    let cached = Repository::<Account, _>::new(store.clone()).with_cache(8);
    cached.execute("cached", open).await.unwrap();
    let (_, cost) = costs(&store, async {
        cached.execute("cached", deposit.clone()).await.unwrap();
    })
    .await;
    assert_eq!(cost, Cost::only(0, 1), "a cached command: one append");
    repository.execute("cached", deposit.clone()).await.unwrap();
    let (outcome, cost) = costs(&store, cached.execute("cached", deposit.clone())).await;
    assert_eq!(outcome.unwrap().version, Version::new(4));
    assert_eq!(
        cost,
        Cost::only(1, 2),
        "a lost race: the refused append, one catch-up load, the append again; nothing else"
    );
    // A rejection decided first on a cached state is decided again on the caught-up one,
    // whose load says whether the stream is archived: no archive check follows.
    repository.execute("cached", deposit.clone()).await.unwrap();
    let (rejected, cost) = costs(
        &store,
        cached.execute("cached", AccountCommand::Withdraw { amount: 1_000 }),
    )
    .await;
    assert!(
        matches!(rejected, Err(es_core::CommandError::Rejected { .. })),
        "{rejected:?}"
    );
    assert_eq!(
        cost,
        Cost::only(1, 0),
        "a rejection on a cached state: one catch-up load, no append, no archive check"
    );
}

/// What some work cost a [`FlakyStore`](crate::flaky::FlakyStore): its loads and appends,
/// and whether it made any other call.
#[derive(Debug, PartialEq, Eq)]
struct Cost {
    loads: u32,
    appends: u32,
    /// A stream read, snapshot load, archive check or version check.
    other: bool,
}

impl Cost {
    /// `loads` loads and `appends` appends, nothing else.
    fn only(loads: u32, appends: u32) -> Self {
        Self {
            loads,
            appends,
            other: false,
        }
    }
}

/// Runs `work` and measures what it cost `store`.
async fn costs<S: Store, T>(
    store: &crate::flaky::FlakyStore<S>,
    work: impl std::future::Future<Output = T>,
) -> (T, Cost) {
    let others = |calls: crate::flaky::Calls| {
        (
            calls.stream_reads,
            calls.snapshot_loads,
            calls.archive_checks,
            calls.version_checks,
        )
    };
    let before = store.calls();
    let output = work.await;
    let after = store.calls();
    let cost = Cost {
        loads: after.loads - before.loads,
        appends: after.appends - before.appends,
        other: others(after) != others(before),
    };
    (output, cost)
}
