//! The catalog and the survey flows run by a `ProjectionRunner` on the in-memory store: how
//! they start, resume and rebuild.

#![allow(
    clippy::unwrap_used,
    reason = "a failing store or runner should fail the test at once"
)]

use developer_portal::{
    Application, ApplicationCatalog, ApplicationCommand, ApplicationEvent, ManualClock,
    PortalServices, SendNewSurveys, SequentialKeys, Survey, SurveyEvent, SurveyOnProductRemoval,
    SurveyStatus, survey_id,
};
use es_core::{
    CheckpointStore as _, EventFilter, EventStore as _, Position, ProcessManagerProjection,
    ProjectionRunner, Repository, Version,
};
use es_memory::MemoryEventStore;
use futures_util::TryStreamExt as _;

fn applications(store: &MemoryEventStore) -> Repository<Application, MemoryEventStore> {
    let services = PortalServices::new(
        ManualClock::at(chrono::Utc::now()),
        SequentialKeys::new("key"),
    );
    Repository::with_services(store.clone(), services)
}

async fn create(apps: &Repository<Application, MemoryEventStore>, id: &str, owner: &str) {
    apps.execute(
        id,
        ApplicationCommand::Create {
            name: format!("App {id}"),
            owner: owner.into(),
        },
    )
    .await
    .unwrap();
}

async fn add(apps: &Repository<Application, MemoryEventStore>, id: &str, product: &str) {
    apps.execute(
        id,
        ApplicationCommand::AddApiProduct {
            product: product.into(),
        },
    )
    .await
    .unwrap();
}

/// Removes `product` from `id`: the removal's version.
async fn remove(
    apps: &Repository<Application, MemoryEventStore>,
    id: &str,
    product: &str,
) -> Version {
    apps.execute(
        id,
        ApplicationCommand::RemoveApiProduct {
            product: product.into(),
        },
    )
    .await
    .unwrap()
    .version
}

fn catalog_runner(
    store: &MemoryEventStore,
) -> ProjectionRunner<ApplicationCatalog, MemoryEventStore> {
    ProjectionRunner::new(store.clone(), ApplicationCatalog::default()).with_lease(None)
}

#[tokio::test]
async fn a_new_catalog_reads_the_whole_log_whatever_checkpoint_the_store_holds() {
    let store = MemoryEventStore::new();
    let apps = applications(&store);
    create(&apps, "1", "ada").await;
    create(&apps, "2", "grace").await;
    // A checkpoint under the catalog's name at the end of the log, as a store keeps it
    // after an earlier process ran a catalog there.
    let last = store
        .read_all::<ApplicationEvent>(Position::START, EventFilter::for_aggregate::<Application>())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .pop()
        .unwrap()
        .position;
    store
        .save_checkpoint(ApplicationCatalog::NAME, last)
        .await
        .unwrap();

    let mut runner = catalog_runner(&store);
    assert_eq!(runner.catch_up().await.unwrap(), 2);
    let owners: Vec<&str> = runner
        .projection()
        .applications
        .values()
        .map(|app| app.owner.as_str())
        .collect();
    assert_eq!(owners, ["ada", "grace"]);
}

#[tokio::test]
async fn the_catalog_resumes_after_what_it_has_handled() {
    let store = MemoryEventStore::new();
    let apps = applications(&store);
    create(&apps, "1", "ada").await;
    add(&apps, "1", "maps-api").await;
    let mut runner = catalog_runner(&store);
    assert_eq!(runner.catch_up().await.unwrap(), 2);

    add(&apps, "1", "forecast-api").await;
    assert_eq!(runner.catch_up().await.unwrap(), 1, "only the new event");
    assert_eq!(runner.catch_up().await.unwrap(), 0);
    assert_eq!(runner.projection().applications["1"].products.len(), 2);
    assert_eq!(runner.projection().version_of("1"), Some(Version::new(3)));

    // A rebuild starts over and ends where it was.
    let before = runner.projection().clone();
    assert_eq!(runner.rebuild().await.unwrap(), 3);
    assert_eq!(runner.projection(), &before);
}

#[tokio::test]
async fn the_flows_add_and_send_one_survey_per_removal_even_when_run_again() {
    let store = MemoryEventStore::new();
    let apps = applications(&store);
    create(&apps, "42", "ada").await;
    add(&apps, "42", "maps-api").await;
    let first = remove(&apps, "42", "maps-api").await;
    apps.execute(
        "42",
        ApplicationCommand::ChangeOwner {
            owner: "grace".into(),
        },
    )
    .await
    .unwrap();
    add(&apps, "42", "maps-api").await;
    let second = remove(&apps, "42", "maps-api").await;

    let surveys = Repository::<Survey, _>::new(store.clone());
    let mut add_surveys = ProjectionRunner::new(
        store.clone(),
        ProcessManagerProjection::new(SurveyOnProductRemoval, surveys.clone()),
    );
    let mut send_surveys = ProjectionRunner::new(
        store.clone(),
        ProcessManagerProjection::new(SendNewSurveys, surveys.clone()),
    );
    assert_eq!(add_surveys.catch_up().await.unwrap(), 2);
    assert_eq!(send_surveys.catch_up().await.unwrap(), 2);
    // Handling every event again (a rebuild, or a crash before the checkpoint) issues no
    // command twice.
    assert_eq!(add_surveys.rebuild().await.unwrap(), 2);
    assert_eq!(send_surveys.rebuild().await.unwrap(), 2);

    for (version, recipient) in [(first, "ada"), (second, "grace")] {
        let id = survey_id("42", "maps-api", version);
        let survey = surveys.load(&id).await.unwrap();
        assert_eq!(
            survey.version,
            Version::new(2),
            "{id}: added and sent, once"
        );
        assert_eq!(survey.state.status, SurveyStatus::Sent);
        assert_eq!(survey.state.recipient, recipient);
        assert_eq!(survey.state.channel.as_deref(), Some("email"));
    }
    let all: Vec<_> = store
        .read_all::<SurveyEvent>(Position::START, EventFilter::for_aggregate::<Survey>())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 4);

    // Each survey names the removal that caused it.
    let removals: Vec<_> = store
        .read_all::<ApplicationEvent>(
            Position::START,
            EventFilter::for_aggregate::<Application>().with_event_types(["ApiProductRemoved"]),
        )
        .try_collect()
        .await
        .unwrap();
    let added: Vec<_> = all
        .iter()
        .filter(|e| matches!(e.event, SurveyEvent::Added { .. }))
        .collect();
    for (removal, survey) in removals.iter().zip(added) {
        assert_eq!(survey.metadata.causation_id, Some(removal.event_id));
    }
}
