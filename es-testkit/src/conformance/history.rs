//! Time travel and audit: an aggregate as it was at a version or a time, and a stream's
//! history with its metadata.

use std::time::Duration;

use chrono::Utc;
use es_core::{
    Aggregate as _, AggregateType as _, AsOf, CommandContext, ExpectedVersion, LoadError, NewEvent,
    RawEvent, Repository, Snapshot, SnapshotPolicy, Version,
};
use futures_util::TryStreamExt as _;
use serde_json::json;
use uuid::Uuid;

use super::account;
use crate::fixture::{Account, AccountCommand, AccountError, AccountEvent};
use es_core::Store;

/// The state after applying `events` to a new account.
fn replayed(events: &[AccountEvent]) -> Account {
    let mut state = Account::default();
    for event in events {
        state.apply(event);
    }
    state
}

/// Loading as of each version, and as of each event's recorded time, gives the state of
/// that prefix of the stream, whatever snapshot is stored; before the first event it is
/// the new aggregate, past the last the current one.
pub async fn load_as_of_version_and_time<S: Store>(store: S) {
    let repository =
        Repository::<Account, _>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(3));
    let mut commands = vec![AccountCommand::Open {
        owner: "ada".into(),
    }];
    commands.extend((1..=6).map(|amount| AccountCommand::Deposit { amount }));
    commands.push(AccountCommand::Withdraw { amount: 4 });
    let mut envelopes = Vec::new();
    let before = Utc::now() - chrono::Duration::seconds(1);
    for command in commands {
        let outcome = repository.execute("travel", command).await.unwrap();
        envelopes.extend(outcome.events);
        // Distinct recorded times, so that each prefix has a time of its own.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let events: Vec<AccountEvent> = envelopes.iter().map(|e| e.event.clone()).collect();
    let snapshot = store.load_snapshot(&account("travel")).await.unwrap();
    assert_eq!(
        snapshot.map(|s| s.version),
        Some(Version::new(6)),
        "the policy stored a snapshot in the middle of the stream"
    );

    for (index, envelope) in envelopes.iter().enumerate() {
        let expected = replayed(&events[..=index]);
        let by_version = repository
            .load_as_of("travel", AsOf::Version(envelope.version))
            .await
            .unwrap();
        assert_eq!(
            (by_version.version, &by_version.state),
            (envelope.version, &expected),
            "as of version {}",
            envelope.version
        );
        let by_time = repository
            .load_as_of("travel", AsOf::Time(envelope.recorded_at))
            .await
            .unwrap();
        assert_eq!(
            (by_time.version, &by_time.state),
            (envelope.version, &expected),
            "as of the time of version {}",
            envelope.version
        );
    }
    let start = repository
        .load_as_of("travel", AsOf::Time(before))
        .await
        .unwrap();
    assert_eq!(
        (start.version, start.state),
        (Version::INITIAL, Account::default())
    );
    let zero = repository
        .load_as_of("travel", AsOf::Version(Version::INITIAL))
        .await
        .unwrap();
    assert_eq!(zero.state, Account::default());
    let beyond = repository
        .load_as_of("travel", AsOf::Version(Version::new(100)))
        .await
        .unwrap();
    assert_eq!(beyond, repository.load("travel").await.unwrap());
    let latest = repository.load_as_of("travel", AsOf::Latest).await.unwrap();
    assert_eq!(latest, beyond);
}

/// A load as of a version or a time reads no further than it must: an event after the
/// target that this build cannot decode (here an unknown type, as a newer build might
/// write) leaves it unharmed, while a load of the latest state reports it.
pub async fn load_as_of_ignores_undecodable_events_after_the_target<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone());
    let opened = repository
        .execute(
            "newer",
            AccountCommand::Open {
                owner: "ada".into(),
            },
        )
        .await
        .unwrap()
        .events;
    // A later recorded time for the unreadable event, so that a load as of the first
    // event's time excludes it.
    tokio::time::sleep(Duration::from_millis(3)).await;
    store
        .append(
            &account("newer"),
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new(RawEvent::new(
                "Frozen",
                1,
                json!({ "reason": "audit" }),
            ))],
        )
        .await
        .unwrap();
    let expected = replayed(&[AccountEvent::Opened {
        owner: "ada".into(),
    }]);
    for as_of in [
        AsOf::Version(Version::new(1)),
        AsOf::Time(opened[0].recorded_at),
    ] {
        let loaded = repository.load_as_of("newer", as_of).await.unwrap();
        assert_eq!(
            (loaded.version, loaded.state),
            (Version::new(1), expected.clone()),
            "{as_of:?}"
        );
    }
    assert!(
        matches!(
            repository.load_as_of("newer", AsOf::Latest).await,
            Err(LoadError::Read { .. })
        ),
        "the latest state includes the unknown event"
    );
}

/// A load as of a version or time uses a stored snapshot exactly when it holds no later
/// events. The snapshot here is planted with a balance no replay gives, so the result
/// shows whether it was used.
pub async fn load_as_of_uses_only_snapshots_from_before<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::every(1_000));
    let mut envelopes = Vec::new();
    for command in [
        AccountCommand::Open {
            owner: "ada".into(),
        },
        AccountCommand::Deposit { amount: 1 },
        AccountCommand::Deposit { amount: 2 },
    ] {
        envelopes.extend(repository.execute("planted", command).await.unwrap().events);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let planted = Account {
        owner: Some("ada".into()),
        open: true,
        balance: 1_000_000,
        movements: 1,
    };
    store
        .save_snapshot(Snapshot {
            stream_id: account("planted"),
            version: Version::new(2),
            schema_version: Account::SNAPSHOT_VERSION,
            state: serde_json::to_value(&planted).unwrap(),
            taken_at: Utc::now(),
        })
        .await
        .unwrap();

    let balance = |as_of| {
        let repository = repository.clone();
        async move {
            repository
                .load_as_of("planted", as_of)
                .await
                .unwrap()
                .state
                .balance
        }
    };
    assert_eq!(balance(AsOf::Version(Version::new(1))).await, 0);
    assert_eq!(balance(AsOf::Version(Version::new(2))).await, 1_000_000);
    assert_eq!(balance(AsOf::Version(Version::new(3))).await, 1_000_002);
    assert_eq!(balance(AsOf::Time(envelopes[0].recorded_at)).await, 0);
    assert_eq!(
        balance(AsOf::Time(envelopes[1].recorded_at)).await,
        1_000_000
    );
    assert_eq!(
        balance(AsOf::Time(envelopes[2].recorded_at)).await,
        1_000_002
    );
}

/// A snapshot the aggregate cannot use (written by another snapshot schema version, or
/// holding a state that no longer decodes) is ignored: loading replays the events and
/// never fails, and commands go on.
pub async fn unusable_snapshots_are_ignored<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone())
        .with_snapshot_policy(SnapshotPolicy::every(1_000));
    let stale = Account {
        owner: Some("ada".into()),
        open: true,
        balance: 999,
        movements: 1,
    };
    // An older aggregate shape, and a state of today's version that does not decode.
    let unusable = [
        (
            Account::SNAPSHOT_VERSION + 1,
            serde_json::to_value(&stale).unwrap(),
        ),
        (
            Account::SNAPSHOT_VERSION,
            json!({ "balance": "not a number" }),
        ),
    ];
    for (case, (schema_version, state)) in unusable.into_iter().enumerate() {
        let id = format!("reshaped-{case}");
        repository
            .execute(
                &id,
                AccountCommand::Open {
                    owner: "ada".into(),
                },
            )
            .await
            .unwrap();
        repository
            .execute(&id, AccountCommand::Deposit { amount: 7 })
            .await
            .unwrap();
        let replayed = repository.load(&id).await.unwrap();
        assert_eq!(replayed.state.balance, 7);
        store
            .save_snapshot(Snapshot {
                stream_id: account(&id),
                version: Version::new(2),
                schema_version,
                state,
                taken_at: Utc::now(),
            })
            .await
            .unwrap();
        assert_eq!(
            repository.load(&id).await.unwrap(),
            replayed,
            "snapshot of schema version {schema_version} ignored"
        );
        // Commands decide on the replayed state too.
        match repository
            .execute(&id, AccountCommand::Withdraw { amount: 8 })
            .await
        {
            Err(es_core::CommandError::Rejected { error, .. }) => assert_eq!(
                error,
                AccountError::InsufficientFunds {
                    balance: 7,
                    requested: 8
                }
            ),
            other => panic!("withdrawing 8 of 7: {other:?}"),
        }
        let outcome = repository
            .execute(&id, AccountCommand::Withdraw { amount: 7 })
            .await
            .unwrap();
        assert_eq!(outcome.version, Version::new(3));
    }
}

/// A stream's history lists every event in order with who caused it, when, and within
/// which flow: the context's correlation id, causation id, actor and user metadata reach
/// every event a command produces.
pub async fn history_lists_events_with_their_metadata<S: Store>(store: S) {
    let repository = Repository::<Account, _>::new(store.clone());
    let flow = Uuid::now_v7();
    let request = Uuid::now_v7();
    let opened = repository
        .execute_with(
            "audited",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            CommandContext::new()
                .with_correlation_id(flow)
                .with_actor("clerk-7")
                .with_user("ip", "10.0.0.1")
                .with_user("tenant", json!({ "id": 42 })),
        )
        .await
        .unwrap();
    let deposit = CommandContext::new()
        .with_correlation_id(flow)
        .with_causation_id(request)
        .with_actor("ada");
    let deposited = repository
        .execute_with(
            "audited",
            AccountCommand::Deposit { amount: 30 },
            deposit.clone(),
        )
        .await
        .unwrap();

    let history: Vec<_> = repository
        .history("audited")
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(history, [opened.events, deposited.events].concat());
    let [open, pay] = &history[..] else {
        panic!("two events expected, got {history:?}");
    };
    assert_eq!(open.metadata.correlation_id, Some(flow));
    assert_eq!(open.metadata.actor.as_deref(), Some("clerk-7"));
    assert_eq!(open.metadata.user["ip"], "10.0.0.1");
    assert_eq!(open.metadata.user["tenant"], json!({ "id": 42 }));
    assert_eq!(pay.metadata.correlation_id, Some(flow));
    assert_eq!(pay.metadata.causation_id, Some(request));
    assert_eq!(pay.metadata.actor.as_deref(), Some("ada"));
    assert!(pay.metadata.user.is_empty());
    assert!(open.recorded_at <= pay.recorded_at);
    assert!(open.recorded_at > Utc::now() - chrono::Duration::minutes(5));
    assert!(
        repository.history("bad id\u{0}").is_err(),
        "ids are validated"
    );
}
