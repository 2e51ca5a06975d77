//! The rule across the catalog and the applications: a product is withdrawn only when no
//! application uses it, and added only while it is offered. Given/when/then tests of each
//! decision, then the decisions on a store (memory, and PostgreSQL), racing.

#![allow(
    clippy::unwrap_used,
    reason = "a failing store or decision should fail the test at once"
)]

use developer_portal::products::{
    AddProductToApplication, InvalidId, OfferProduct, ProductError, ProductEvent,
    RemoveProductFromApplication, WithdrawProduct, product_tag,
};
use developer_portal::{
    Application, ApplicationCommand, ApplicationError, ApplicationEvent, PortalServices,
    application_tag, tagged_context,
};
use es_core::prelude::*;
use es_core::testing::DecisionTestExt as _;
use es_core::{
    AppendCondition, AppendError, CommandContext, Decider, Decision, DecisionError,
    DecisionStates as _, EventEnvelope, EventStore, ExpectedVersion, Metadata, NewEvent, Position,
    RawEvent, Repository, Store, Tag,
};
use es_memory::MemoryEventStore;
use es_testkit::flaky::FlakyStore;
use futures_util::TryStreamExt as _;

fn product(id: &str) -> Tag {
    product_tag(id).unwrap()
}

fn app(id: &str) -> Tag {
    application_tag(id).unwrap()
}

fn offered(id: &str) -> ProductEvent {
    ProductEvent::ApiProductOffered {
        product: id.into(),
        name: format!("The {id}"),
    }
}

fn withdrawn(id: &str) -> ProductEvent {
    ProductEvent::ApiProductWithdrawn { product: id.into() }
}

fn created() -> ApplicationEvent {
    ApplicationEvent::Created {
        name: "Weather".into(),
        owner: "ada".into(),
    }
}

fn added(id: &str) -> ApplicationEvent {
    ApplicationEvent::ApiProductAdded { product: id.into() }
}

fn removed(id: &str) -> ApplicationEvent {
    ApplicationEvent::ApiProductRemoved {
        product: id.into(),
        owner: "ada".into(),
    }
}

// --- Offering ---------------------------------------------------------------------------

#[test]
fn a_product_is_offered_once_tagged_with_its_id() {
    OfferProduct::test()
        .given_no_previous_events()
        .when(OfferProduct::new("maps", "The maps").unwrap())
        .then_expect_selected_by_query()
        .then_expect_events_tagged([(offered("maps"), [product("maps")])]);
}

#[test]
fn offering_an_offered_product_changes_nothing() {
    OfferProduct::test()
        .given([offered("maps")])
        .when(OfferProduct::new("maps", "The maps").unwrap())
        .then_expect_no_events();
}

#[test]
fn a_withdrawn_product_can_be_offered_again() {
    OfferProduct::test()
        .given([offered("maps"), withdrawn("maps")])
        .when(OfferProduct::new("maps", "The maps").unwrap())
        .then_expect_events([offered("maps")]);
}

#[test]
fn another_products_offer_does_not_count() {
    OfferProduct::test()
        .given([offered("geo")])
        .when(OfferProduct::new("maps", "The maps").unwrap())
        .then_expect_events([offered("maps")]);
}

#[test]
fn a_product_needs_a_name_and_an_id() {
    OfferProduct::test()
        .given_no_previous_events()
        .when(OfferProduct::new("maps", " ").unwrap())
        .then_expect_error(ProductError::NameRequired {
            product: "maps".into(),
        });
    assert!(matches!(
        OfferProduct::new("  ", "Nothing"),
        Err(InvalidId::Empty { .. })
    ));
    assert!(matches!(
        WithdrawProduct::new("bad\nid"),
        Err(InvalidId::Tag { .. })
    ));
    assert!(matches!(
        AddProductToApplication::new("", "maps"),
        Err(InvalidId::Empty {
            what: "application"
        })
    ));
}

// --- Withdrawal -------------------------------------------------------------------------

#[test]
fn a_product_no_application_uses_is_withdrawn() {
    WithdrawProduct::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created(), added("maps"), removed("maps")])
        .when(WithdrawProduct::new("maps").unwrap())
        .then_expect_selected_by_query()
        .then_expect_events_tagged([(withdrawn("maps"), [product("maps")])]);
}

#[test]
fn a_product_in_use_is_not_withdrawn() {
    WithdrawProduct::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created(), added("maps")])
        .given_tagged([app("a2")], [created(), added("maps"), removed("maps")])
        .given_tagged([app("a3")], [created(), added("maps")])
        .when(WithdrawProduct::new("maps").unwrap())
        .then_expect_error(ProductError::InUse {
            product: "maps".into(),
            applications: 2,
        });
}

#[test]
fn other_products_users_do_not_hold_a_withdrawal_back() {
    WithdrawProduct::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created(), added("geo")])
        .when(WithdrawProduct::new("maps").unwrap())
        .then_expect_events([withdrawn("maps")]);
}

#[test]
fn only_an_offered_product_is_withdrawn() {
    WithdrawProduct::test()
        .given_no_previous_events()
        .when(WithdrawProduct::new("maps").unwrap())
        .then_expect_error(ProductError::NotOffered {
            product: "maps".into(),
        });
    WithdrawProduct::test()
        .given([offered("maps"), withdrawn("maps")])
        .when(WithdrawProduct::new("maps").unwrap())
        .then_expect_error(ProductError::Withdrawn {
            product: "maps".into(),
        });
}

// --- Adding to an application -----------------------------------------------------------

#[test]
fn an_application_adds_an_offered_product() {
    AddProductToApplication::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created()])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        // `product:maps` declared by the event, `application:a1` by the decision; and
        // the add's own query selects it, so that a second add racing this one sees it.
        .then_expect_selected_by_query()
        .then_expect_events_tagged([(added("maps"), [app("a1"), product("maps")])]);
}

#[test]
fn an_application_cannot_add_a_product_that_is_not_offered() {
    AddProductToApplication::test()
        .given_tagged([app("a1")], [created()])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::NotOffered {
            product: "maps".into(),
        });
    AddProductToApplication::test()
        .given([offered("maps"), withdrawn("maps")])
        .given_tagged([app("a1")], [created()])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::Withdrawn {
            product: "maps".into(),
        });
}

#[test]
fn the_applications_own_rules_still_hold() {
    // Not created: another application's events do not count.
    AddProductToApplication::test()
        .given([offered("maps")])
        .given_tagged([app("a2")], [created()])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::Application(ApplicationError::NotCreated));
    AddProductToApplication::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created(), ApplicationEvent::Deleted])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::Application(ApplicationError::Deleted));
    AddProductToApplication::test()
        .given([offered("maps")])
        .given_tagged([app("a1")], [created(), added("maps")])
        .when(AddProductToApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::Application(
            ApplicationError::ProductAlreadyAdded {
                product: "maps".into(),
            },
        ));
}

#[test]
fn an_add_and_a_withdrawal_see_each_other() {
    // The add's event, with the tags the decider stores it with.
    let add = AddProductToApplication::new("a1", "maps").unwrap();
    let tags = add.tags().into_iter().chain([product("maps")]).collect();
    assert!(add.state().query().matches("ApiProductAdded", &tags));
    let withdraw = WithdrawProduct::new("maps").unwrap();
    assert!(withdraw.state().query().matches("ApiProductAdded", &tags));
    assert!(
        add.state()
            .query()
            .matches("ApiProductWithdrawn", &[product("maps")].into()),
        "the add reads the product's withdrawal"
    );
}

// --- Removing from an application -------------------------------------------------------

#[test]
fn an_application_removes_a_product_it_uses() {
    RemoveProductFromApplication::test()
        .given_tagged([app("a1")], [created(), added("maps")])
        .when(RemoveProductFromApplication::new("a1", "maps").unwrap())
        .then_expect_selected_by_query()
        .then_expect_events_tagged([(removed("maps"), [app("a1"), product("maps")])]);
    RemoveProductFromApplication::test()
        .given_tagged([app("a1")], [created()])
        .when(RemoveProductFromApplication::new("a1", "maps").unwrap())
        .then_expect_error(ProductError::Application(
            ApplicationError::ProductNotAdded {
                product: "maps".into(),
            },
        ));
}

// --- On a store -------------------------------------------------------------------------

fn applications<S: Store>(store: &S) -> Repository<Application, S> {
    Repository::with_services(store.clone(), PortalServices::default())
}

async fn create<S: Store>(store: &S, id: &str) {
    applications(store)
        .execute_with(
            id,
            ApplicationCommand::Create {
                name: format!("App {id}"),
                owner: "ada".into(),
            },
            tagged_context(id).unwrap(),
        )
        .await
        .unwrap();
}

fn rejection<E: std::fmt::Debug>(result: Result<E, DecisionError<ProductError>>) -> ProductError {
    match result {
        Err(DecisionError::Rejected { error, .. }) => error,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// Every rule, executed by a decider on `store`, beside the application's repository.
async fn the_rules_hold_on<S: Store>(store: S) {
    let decider = Decider::new(store.clone());
    create(&store, "a1").await;
    let add = AddProductToApplication::new("a1", "maps").unwrap();
    let withdraw = WithdrawProduct::new("maps").unwrap();

    assert_eq!(
        rejection(decider.execute(&add).await),
        ProductError::NotOffered {
            product: "maps".into()
        }
    );
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    let decided = decider.execute(&add).await.unwrap();
    let [envelope] = &decided.events[..] else {
        panic!("one event: {decided:?}");
    };
    assert_eq!(envelope.stream_id.to_string(), "application-a1");
    assert_eq!(envelope.version.get(), 2, "after the repository's Created");
    assert_eq!(
        envelope.metadata.tags,
        [app("a1"), product("maps")].into(),
        "tagged by the event and by the decision"
    );
    assert_eq!(
        rejection(decider.execute(&add).await),
        ProductError::Application(ApplicationError::ProductAlreadyAdded {
            product: "maps".into()
        })
    );
    assert_eq!(
        rejection(decider.execute(&withdraw).await),
        ProductError::InUse {
            product: "maps".into(),
            applications: 1
        }
    );

    // The aggregate sees the decision's event, and its next command follows it.
    let apps = applications(&store);
    let loaded = apps.load("a1").await.unwrap();
    assert!(loaded.state.products.contains("maps"));
    apps.execute_with(
        "a1",
        ApplicationCommand::ChangeOwner {
            owner: "grace".into(),
        },
        tagged_context("a1").unwrap(),
    )
    .await
    .unwrap();

    decider
        .execute(&RemoveProductFromApplication::new("a1", "maps").unwrap())
        .await
        .unwrap();
    let decided = decider.execute(&withdraw).await.unwrap();
    assert_eq!(decided.events[0].stream_id.to_string(), "product-maps");
    assert_eq!(
        rejection(decider.execute(&add).await),
        ProductError::Withdrawn {
            product: "maps".into()
        }
    );

    // A deletion the repository records is seen by the next add.
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    apps.execute_with(
        "a1",
        ApplicationCommand::Delete,
        tagged_context("a1").unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        rejection(decider.execute(&add).await),
        ProductError::Application(ApplicationError::Deleted)
    );
    let history: Vec<String> = store
        .read_stream::<ApplicationEvent>(&add.stream(), es_core::Version::INITIAL)
        .map_ok(|envelope| envelope.event.event_type().to_owned())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        history,
        [
            "ApplicationCreated",
            "ApiProductAdded",
            "OwnerChanged",
            "ApiProductRemoved",
            "ApplicationDeleted"
        ]
    );
}

/// The position of the last event `decision` reads, as a decider would read it.
async fn read_position<S: EventStore, D: Decision>(store: &S, decision: &D) -> Option<Position> {
    let events: Vec<EventEnvelope<RawEvent>> = store
        .read_query(&decision.state().query(), Position::START)
        .try_collect()
        .await
        .unwrap();
    events.last().map(|envelope| envelope.position)
}

/// A lost race, step by step: a decision reads, another appends what the first depends
/// on, and the first's append on what it read fails its condition. Both ways between a
/// withdrawal and an add, and between an add and the repository's deletion.
async fn each_decision_sees_what_the_other_writes_on<S: Store>(store: S) {
    let decider = Decider::new(store.clone());
    create(&store, "a1").await;
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    let add = AddProductToApplication::new("a1", "maps").unwrap();
    let withdraw = WithdrawProduct::new("maps").unwrap();

    // The withdrawal read (offered, unused); then the add went through.
    let after = read_position(&store, &withdraw).await;
    decider.execute(&add).await.unwrap();
    let late = store
        .append_if(
            &withdraw.stream(),
            ExpectedVersion::Any,
            vec![NewEvent::new(withdrawn("maps"))],
            AppendCondition::new(withdraw.state().query()).after(after),
        )
        .await;
    assert!(
        matches!(late, Err(AppendError::ConditionFailed { .. })),
        "{late:?}"
    );

    // The add of a second application read (offered); then the product was given up and
    // withdrawn.
    create(&store, "a2").await;
    let second = AddProductToApplication::new("a2", "maps").unwrap();
    let after = read_position(&store, &second).await;
    decider
        .execute(&RemoveProductFromApplication::new("a1", "maps").unwrap())
        .await
        .unwrap();
    decider.execute(&withdraw).await.unwrap();
    let late = store
        .append_if(
            &second.stream(),
            ExpectedVersion::Any,
            vec![NewEvent::new(added("maps")).with_metadata(Metadata::new().with_tag(app("a2")))],
            AppendCondition::new(second.state().query()).after(after),
        )
        .await;
    assert!(
        matches!(late, Err(AppendError::ConditionFailed { .. })),
        "{late:?}"
    );

    // An add read the application (active); then the repository deleted it.
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    let after = read_position(&store, &second).await;
    applications(&store)
        .execute_with(
            "a2",
            ApplicationCommand::Delete,
            tagged_context("a2").unwrap(),
        )
        .await
        .unwrap();
    let late = store
        .append_if(
            &second.stream(),
            ExpectedVersion::Any,
            vec![NewEvent::new(added("maps")).with_metadata(Metadata::new().with_tag(app("a2")))],
            AppendCondition::new(second.state().query()).after(after),
        )
        .await;
    assert!(
        matches!(late, Err(AppendError::ConditionFailed { .. })),
        "{late:?}"
    );
}

/// `rounds` times, a withdrawal and an add of a fresh product race on separate tasks:
/// exactly one wins, the other is refused for it, and the log agrees.
///
/// Each decider yields before its conditional append ([`FlakyStore`]), so that on the
/// memory store, whose calls never wait, the two really read before either appends; the
/// test then requires that some round saw a condition fail, or it proved nothing.
async fn a_withdrawal_and_an_add_never_both_succeed_on<S: Store>(store: S, rounds: usize) {
    let overlapping = FlakyStore::new(store.clone());
    overlapping.yield_before_conditional_appends(3);
    let decider = Decider::new(overlapping.clone());
    let (mut withdrawals, mut adds) = (0, 0);
    for round in 0..rounds {
        let (application, product_id) = (format!("app{round}"), format!("api{round}"));
        create(&store, &application).await;
        decider
            .execute(&OfferProduct::new(&product_id, "Racing").unwrap())
            .await
            .unwrap();
        let withdraw = WithdrawProduct::new(&product_id).unwrap();
        let add = AddProductToApplication::new(&application, &product_id).unwrap();
        let withdrawing = tokio::spawn({
            let decider = decider.clone();
            async move { decider.execute(&withdraw).await.map(drop) }
        });
        let adding = tokio::spawn({
            let decider = decider.clone();
            async move { decider.execute(&add).await.map(drop) }
        });
        let (withdrawn_result, added_result) = (withdrawing.await.unwrap(), adding.await.unwrap());
        match (withdrawn_result, added_result) {
            (Ok(()), Err(DecisionError::Rejected { error, .. })) => {
                assert_eq!(
                    error,
                    ProductError::Withdrawn {
                        product: product_id.clone()
                    },
                    "round {round}"
                );
                withdrawals += 1;
            }
            (Err(DecisionError::Rejected { error, .. }), Ok(())) => {
                assert_eq!(
                    error,
                    ProductError::InUse {
                        product: product_id.clone(),
                        applications: 1
                    },
                    "round {round}"
                );
                adds += 1;
            }
            other => panic!("round {round}: exactly one must succeed, got {other:?}"),
        }
        // The log holds exactly the winner's event after the offer.
        let types: Vec<String> = store
            .read_query::<RawEvent>(
                &WithdrawProduct::new(&product_id).unwrap().state().query(),
                Position::START,
            )
            .map_ok(|envelope| envelope.event.event_type)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(types.len(), 2, "round {round}: {types:?}");
        assert_eq!(types[0], "ApiProductOffered", "round {round}");
    }
    assert_eq!(withdrawals + adds, rounds);
    assert!(
        overlapping.conditions_failed() > 0,
        "in {rounds} rounds, the withdrawal and the add overlapped at least once"
    );
}

/// Two adds of one product to one application race: one adds, the other finds it added
/// (the `application:<id>` tag guards the application's own rule). They overlap as the
/// withdrawal and the add do above, and some round must show it.
async fn two_adds_to_one_application_add_once_on<S: Store>(store: S, rounds: usize) {
    let overlapping = FlakyStore::new(store.clone());
    overlapping.yield_before_conditional_appends(3);
    let decider = Decider::new(overlapping.clone());
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    for round in 0..rounds {
        let application = format!("twice{round}");
        create(&store, &application).await;
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let decider = decider.clone();
                let add = AddProductToApplication::new(&application, "maps").unwrap();
                tokio::spawn(async move { decider.execute(&add).await.map(drop) })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => accepted += 1,
                Err(DecisionError::Rejected {
                    error: ProductError::Application(ApplicationError::ProductAlreadyAdded { .. }),
                    ..
                }) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(accepted, 1, "round {round}");
        let loaded = applications(&store).load(&application).await.unwrap();
        assert_eq!(
            loaded.version.get(),
            2,
            "round {round}: created, added once"
        );
    }
    assert!(
        overlapping.conditions_failed() > 0,
        "in {rounds} rounds, the two adds overlapped at least once"
    );
}

/// An add under the caller's command id, sent twice (a retried request), adds once: the
/// decision tags its own event, so it runs in the caller's context.
async fn a_repeated_add_records_once_on<S: Store>(store: S) {
    let decider = Decider::new(store.clone());
    create(&store, "a1").await;
    decider
        .execute(&OfferProduct::new("maps", "Maps").unwrap())
        .await
        .unwrap();
    let add = AddProductToApplication::new("a1", "maps").unwrap();
    let request = CommandContext::new().with_command_id(uuid::Uuid::now_v7());
    let first = decider.execute_with(&add, request.clone()).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(
        first.events[0].metadata.tags,
        [app("a1"), product("maps")].into()
    );
    let again = decider.execute_with(&add, request).await.unwrap();
    assert!(again.duplicate, "the repeat is recognised, not refused");
    assert_eq!(again.events, first.events);
    let loaded = applications(&store).load("a1").await.unwrap();
    assert_eq!(loaded.version.get(), 2, "created, added once");
}

#[tokio::test]
async fn the_rules_hold_on_the_in_memory_store() {
    the_rules_hold_on(MemoryEventStore::new()).await;
}

#[tokio::test]
async fn a_repeated_add_records_once_on_the_in_memory_store() {
    a_repeated_add_records_once_on(MemoryEventStore::new()).await;
}

#[tokio::test]
async fn a_repeated_add_records_once_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    a_repeated_add_records_once_on(store.clone()).await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test]
async fn each_decision_sees_what_the_other_writes_on_the_in_memory_store() {
    each_decision_sees_what_the_other_writes_on(MemoryEventStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_and_an_add_never_both_succeed_on_the_in_memory_store() {
    a_withdrawal_and_an_add_never_both_succeed_on(MemoryEventStore::new(), 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adds_to_one_application_add_once_on_the_in_memory_store() {
    two_adds_to_one_application_add_once_on(MemoryEventStore::new(), 200).await;
}

/// The same on PostgreSQL (`DATABASE_URL`, or the local server), in a schema of its own.
#[tokio::test]
async fn the_rules_hold_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    the_rules_hold_on(store.clone()).await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test]
async fn each_decision_sees_what_the_other_writes_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    each_decision_sees_what_the_other_writes_on(store.clone()).await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_and_an_add_never_both_succeed_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    a_withdrawal_and_an_add_never_both_succeed_on(store.clone(), 50).await;
    es_testkit::postgres::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_adds_to_one_application_add_once_on_postgres() {
    let store = es_testkit::postgres::fresh_store().await;
    two_adds_to_one_application_add_once_on(store.clone(), 50).await;
    es_testkit::postgres::drop_schema(store).await;
}
