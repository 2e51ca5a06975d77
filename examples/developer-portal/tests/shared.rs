//! Two services sharing one channel through NATS JetStream: the portal relays its log, the
//! survey service receives the product removals and adds the same surveys, in its own
//! store, that the portal's own flow added; once each, however often it runs.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

use developer_portal::{Survey, SurveyStatus, scenario, shared};
use es_core::Repository;
use es_memory::MemoryEventStore;

#[tokio::test]
async fn the_survey_service_surveys_each_relayed_removal_once() {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned());
    let jetstream =
        async_nats::jetstream::new(async_nats::connect(&url).await.unwrap_or_else(|error| {
            panic!(
                "No NATS server answers at {url} ({error}); start nats-server -js or set NATS_URL"
            )
        }));
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topology = shared::Topology {
        stream: format!("PORTAL_TEST_{run}"),
        prefix: format!("test{run}."),
    };

    let portal = MemoryEventStore::new();
    let report = scenario::run(portal.clone()).await.unwrap();
    let relayed = shared::relay(&portal, &jetstream, &topology).await.unwrap();
    assert!(relayed > 0);

    let surveys = MemoryEventStore::new();
    let handled = shared::survey_service(&surveys, &jetstream, &topology)
        .await
        .unwrap();
    assert_eq!(
        handled, report.removals_handled,
        "every removal the portal's own flow saw"
    );
    let repository = Repository::<Survey, _>::new(surveys.clone());
    for (id, _) in &report.surveys {
        let loaded = repository.load(id).await.unwrap();
        assert_eq!(
            loaded.state.status,
            SurveyStatus::Added,
            "survey {id} added by the second service"
        );
    }

    // Run again, and with the consumer's deliveries replayed: nothing is surveyed twice.
    assert_eq!(
        shared::survey_service(&surveys, &jetstream, &topology)
            .await
            .unwrap(),
        0
    );
    jetstream
        .delete_consumer_from_stream(shared::SURVEY_CONSUMER, &topology.stream)
        .await
        .unwrap();
    assert_eq!(
        shared::survey_service(&surveys, &jetstream, &topology)
            .await
            .unwrap(),
        0
    );
    for (id, _) in &report.surveys {
        assert_eq!(
            repository.load(id).await.unwrap().version.get(),
            1,
            "{id} once"
        );
    }
    jetstream.delete_stream(&topology.stream).await.unwrap();
}
