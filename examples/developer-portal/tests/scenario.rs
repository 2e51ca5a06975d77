//! The example's scenario, on the in-memory store and on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    reason = "a failing store or scenario should fail the test at once"
)]

use std::collections::BTreeMap;

use chrono::TimeDelta;
use developer_portal::scenario::{self, Report};
use developer_portal::{
    ApplicationCommand, ApplicationError, ApplicationEvent, ApplicationStatus, ApplicationSummary,
    ProductError, SurveyEvent, SurveyStatus, survey_id,
};
use es_core::{DomainEvent, EventEnvelope, Version};
use es_memory::MemoryEventStore;

fn types<E: DomainEvent>(events: &[EventEnvelope<E>]) -> Vec<&str> {
    events.iter().map(|e| e.event.event_type()).collect()
}

fn summary(name: &str, owner: &str, products: &[&str], keys: usize) -> ApplicationSummary {
    ApplicationSummary {
        name: name.into(),
        owner: owner.into(),
        products: products.iter().map(|p| (*p).to_owned()).collect(),
        active_credentials: keys,
    }
}

/// The first credentials event of type `CredentialsGenerated` in `events`, from the
/// `nth` (0-based): key, issued, expires.
fn generated(
    events: &[EventEnvelope<ApplicationEvent>],
    nth: usize,
) -> (
    String,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
) {
    events
        .iter()
        .filter_map(|e| match &e.event {
            ApplicationEvent::CredentialsGenerated {
                key,
                issued_at,
                expires_at,
            } => Some((key.clone(), *issued_at, *expires_at)),
            _ => None,
        })
        .nth(nth)
        .unwrap()
}

/// What every run of the scenario must have done, on any store.
fn check(report: &Report) {
    let [weather, checkout, fleet, sandbox] =
        <[String; 4]>::try_from(report.application_ids.clone()).unwrap();

    // Each application's history.
    let histories: BTreeMap<&str, &[EventEnvelope<ApplicationEvent>]> = report
        .histories
        .iter()
        .map(|(id, events)| (id.as_str(), events.as_slice()))
        .collect();
    assert_eq!(
        types(histories[weather.as_str()]),
        [
            "ApplicationCreated",
            "ApiProductAdded",
            "ApiProductAdded",
            "CredentialsGenerated",
            "ApiProductRemoved",
            "CredentialsExpired",
            "CredentialsGenerated",
        ]
    );
    assert_eq!(
        types(histories[checkout.as_str()]),
        [
            "ApplicationCreated",
            "ApiProductAdded",
            "ApiProductAdded",
            "CredentialsGenerated",
            "OwnerChanged",
            "ApiProductRemoved",
        ]
    );
    assert_eq!(
        types(histories[fleet.as_str()]),
        [
            "ApplicationCreated",
            "ApiProductAdded",
            "ApiProductAdded",
            "CredentialsGenerated",
        ]
    );
    assert_eq!(
        types(histories[sandbox.as_str()]),
        [
            "ApplicationCreated",
            "ApiProductAdded",
            "ApplicationDeleted"
        ]
    );
    for (_, events) in &report.histories {
        let versions: Vec<u64> = events.iter().map(|e| e.version.get()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
    }

    // Times come from the scenario's clock: the weather key was valid 30 days, expired on
    // day 31 and was replaced by one valid 30 days from then; the checkout key is valid 90.
    let weather_events = histories[weather.as_str()];
    let (first_key, day0, first_expiry) = generated(weather_events, 0);
    let (second_key, day31, second_expiry) = generated(weather_events, 1);
    assert_eq!(first_expiry - day0, TimeDelta::days(30));
    assert_eq!(day31 - day0, TimeDelta::days(31));
    assert_eq!(second_expiry - day31, TimeDelta::days(30));
    assert_ne!(first_key, second_key);
    assert!(weather_events.iter().any(|e| e.event
        == ApplicationEvent::CredentialsExpired {
            key: first_key.clone(),
            expired_at: day31,
        }));
    let (checkout_key, issued, checkout_expiry) = generated(histories[checkout.as_str()], 0);
    assert_eq!(checkout_expiry - issued, TimeDelta::days(90));

    // The states rebuilt from the events.
    let states: Vec<(ApplicationStatus, &str)> = report
        .states
        .iter()
        .map(|(_, s)| (s.status, s.owner.as_str()))
        .collect();
    assert_eq!(
        states,
        [
            (ApplicationStatus::Active, "ada"),
            (ApplicationStatus::Active, "linus"),
            (ApplicationStatus::Active, "barbara"),
            (ApplicationStatus::Deleted, "alan"),
        ]
    );

    // The rejected commands, in the order they were issued.
    assert_eq!(
        report.rejections,
        [
            (
                sandbox.clone(),
                ApplicationCommand::GenerateCredentials { valid_for_days: 30 },
                ApplicationError::NoApiProducts,
            ),
            (
                sandbox,
                ApplicationCommand::AddApiProduct {
                    product: "payments-api".into()
                },
                ApplicationError::Deleted,
            ),
            (
                checkout.clone(),
                ApplicationCommand::ExpireCredentials {
                    key: checkout_key.clone()
                },
                ApplicationError::CredentialsNotDue {
                    key: checkout_key,
                    expires_at: checkout_expiry,
                },
            ),
        ]
    );

    // The product decisions: six offers (new, or already offered on a store an earlier run
    // left), then the rule across the catalog and the applications at work.
    let (offers, rules) = report.product_decisions.split_at(6);
    for (asked, outcome) in offers {
        assert!(asked.starts_with("offer "), "{asked}");
        assert!(matches!(outcome, Ok(0 | 1)), "{asked}: {outcome:?}");
    }
    let fraud_check = || "fraud-check-api".to_owned();
    assert_eq!(
        rules,
        [
            (
                "withdraw fraud-check-api".to_owned(),
                Err(ProductError::InUse {
                    product: fraud_check(),
                    applications: 1
                })
            ),
            (
                format!("add ledger-api to application-{checkout}"),
                Err(ProductError::NotOffered {
                    product: "ledger-api".into()
                })
            ),
            ("withdraw fraud-check-api".to_owned(), Ok(1)),
            (
                format!("add fraud-check-api to application-{fleet}"),
                Err(ProductError::Withdrawn {
                    product: fraud_check()
                })
            ),
        ]
    );
    assert!(report.text.contains("is still used by 1 application(s)"));

    // The catalog: this run's live applications, as their states say.
    let catalog: BTreeMap<&str, &ApplicationSummary> = report
        .application_ids
        .iter()
        .filter_map(|id| Some((id.as_str(), report.catalog.applications.get(id)?)))
        .collect();
    assert_eq!(
        catalog,
        BTreeMap::from([
            (
                weather.as_str(),
                &summary("Weather Dashboard", "ada", &["forecast-api"], 1)
            ),
            (
                checkout.as_str(),
                &summary("Checkout", "linus", &["payments-api"], 1)
            ),
            (
                fleet.as_str(),
                &summary(
                    "Fleet Tracker",
                    "barbara",
                    &["geocoding-api", "maps-api"],
                    1
                )
            ),
        ])
    );
    for (id, state) in &report.states {
        if let Some(listed) = catalog.get(id.as_str()) {
            assert_eq!(listed.owner, state.owner, "{id}");
            assert_eq!(listed.products, state.products, "{id}");
            assert_eq!(
                listed.active_credentials,
                state.active_keys().count(),
                "{id}"
            );
        }
        assert_eq!(
            report.catalog.version_of(id),
            Some(Version::new(histories[id.as_str()].len() as u64)),
            "the catalog followed {id} to its last event"
        );
    }

    // The surveys the flows added and sent, one per removal, to the owner at the time.
    let survey_ids: Vec<&str> = report.surveys.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        survey_ids,
        [
            survey_id(&checkout, "fraud-check-api", Version::new(6)),
            survey_id(&weather, "maps-api", Version::new(5)),
        ]
    );
    let survey_types: Vec<Vec<&str>> = report.surveys.iter().map(|(_, e)| types(e)).collect();
    assert_eq!(
        survey_types,
        [
            vec!["SurveyAdded", "SurveySent"],
            vec!["SurveyAdded", "SurveySent", "SurveyFeedbackRecorded"],
        ]
    );
    let surveys: Vec<(&str, &str, SurveyStatus)> = report
        .survey_states
        .iter()
        .map(|(_, s)| (s.recipient.as_str(), s.product.as_str(), s.status))
        .collect();
    assert_eq!(
        surveys,
        [
            ("linus", "fraud-check-api", SurveyStatus::Sent),
            ("ada", "maps-api", SurveyStatus::Answered),
        ]
    );
    assert_eq!(
        report.survey_states[1]
            .1
            .feedback
            .as_ref()
            .map(|f| f.rating),
        Some(4)
    );
    // Each survey was caused by its removal and belongs to its flow.
    for ((_, events), app) in report.surveys.iter().zip([&checkout, &weather]) {
        let removal = histories[app.as_str()]
            .iter()
            .find(|e| matches!(e.event, ApplicationEvent::ApiProductRemoved { .. }))
            .unwrap();
        assert!(matches!(events[0].event, SurveyEvent::Added { .. }));
        assert_eq!(events[0].metadata.causation_id, Some(removal.event_id));
        assert_eq!(
            events[1].metadata.causation_id,
            Some(events[0].event_id),
            "sent because it was added"
        );
    }

    assert!(report.text.contains("CredentialsExpired"));
    assert!(
        report
            .text
            .contains("the application has no API products: credentials need at least one")
    );
    assert!(report.text.contains("SurveyFeedbackRecorded"));
}

#[tokio::test]
async fn scenario_runs_the_portal_on_the_in_memory_store() {
    let report = scenario::run(MemoryEventStore::new()).await.unwrap();
    check(&report);
    assert_eq!(report.catalog.applications.len(), 3);
    assert_eq!((report.removals_handled, report.surveys_handled), (2, 2));
}

/// The same scenario on PostgreSQL (`DATABASE_URL`, or the local server), in a schema of
/// its own, twice: the second run, on the data of the first, must do the same, with a
/// catalog built from the whole log and flows that resume after their checkpoints.
#[tokio::test]
async fn scenario_runs_on_postgres_and_again_on_the_same_schema() {
    let store = es_testkit::postgres::fresh_store().await;

    let first = scenario::run(store.clone()).await.unwrap();
    check(&first);
    assert_eq!(first.catalog.applications.len(), 3);
    assert_eq!((first.removals_handled, first.surveys_handled), (2, 2));

    let second = scenario::run(store.clone()).await.unwrap();
    check(&second);
    assert_ne!(first.application_ids, second.application_ids);
    assert_eq!(
        second.catalog.applications.len(),
        6,
        "the catalog lists the first run's applications too"
    );
    assert_eq!(
        (second.removals_handled, second.surveys_handled),
        (2, 2),
        "the flows resumed after the first run's events"
    );

    es_testkit::postgres::drop_schema(store).await;
}
