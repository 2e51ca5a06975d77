//! Process managers run by a runner: each command once, causation and correlation carried
//! over, tolerated rejections.

use std::collections::HashMap;

use es_core::{
    ErrorPolicy, EventFilter, ProcessManagerProjection, ProjectionRunner, Repository, RunnerError,
};

use super::{runner, settled};
use crate::conformance::read_log;
use crate::fixture::{AccountCommand, AccountEvent};
use crate::projections::{MATCHING_POT, MatchFirstDeposit, WELCOME_BONUS, WelcomeBonus};
use es_core::Store;

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

/// A process manager reads state as of the event it reacts to: whether a deposit was an
/// account's first does not change with the deposits after it, when it is handled late or
/// handled again.
pub async fn process_manager_reads_state_as_of_its_event<S: Store>(store: S) {
    let accounts = Repository::<crate::fixture::Account, _>::new(store.clone());
    for id in [MATCHING_POT, "ada", "bob"] {
        accounts
            .execute(id, AccountCommand::Open { owner: id.into() })
            .await
            .unwrap();
    }
    for (id, amount) in [("ada", 10), ("ada", 20), ("bob", 7), ("bob", 1)] {
        accounts
            .execute(id, AccountCommand::Deposit { amount })
            .await
            .unwrap();
    }
    settled(&store, 7).await;
    // Handled only now, after every deposit: read as of now, no deposit would be a first.
    let manager = ProcessManagerProjection::new(MatchFirstDeposit, accounts.clone());
    let mut runner = runner(&store, manager);
    runner.catch_up().await.unwrap();
    let pot = accounts.load(MATCHING_POT).await.unwrap().state;
    assert_eq!(
        (pot.balance, pot.movements),
        (17, 2),
        "the first deposits of ada and bob"
    );

    settled(&store, 9).await;
    runner.rebuild().await.unwrap();
    let pot = accounts.load(MATCHING_POT).await.unwrap().state;
    assert_eq!(
        (pot.balance, pot.movements),
        (17, 2),
        "handled again, the same decisions"
    );
}

/// What a reaction reads stops at its event: an event recorded after it, even one this
/// build cannot decode, is not read, so it cannot fail the reaction.
pub async fn process_manager_reads_stop_at_their_event<S: Store>(store: S) {
    let accounts = Repository::<crate::fixture::Account, _>::new(store.clone());
    for id in [MATCHING_POT, "ada"] {
        accounts
            .execute(id, AccountCommand::Open { owner: id.into() })
            .await
            .unwrap();
    }
    accounts
        .execute("ada", AccountCommand::Deposit { amount: 10 })
        .await
        .unwrap();
    // A later event of a type no version of this build knows.
    store
        .append(
            &crate::conformance::account("ada"),
            es_core::ExpectedVersion::Any,
            vec![es_core::NewEvent::new(es_core::RawEvent::new(
                "FromTheFuture",
                1,
                serde_json::json!({}),
            ))],
        )
        .await
        .unwrap();
    settled(&store, 4).await;
    let manager = ProcessManagerProjection::new(MatchFirstDeposit, accounts.clone());
    runner(&store, manager).catch_up().await.unwrap();
    let pot = accounts.load(MATCHING_POT).await.unwrap().state;
    assert_eq!(pot.balance, 10, "the reaction read ada as of her deposit");
}
