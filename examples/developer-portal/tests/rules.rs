//! The portal's rules, as given/when/then: the application and survey aggregates, the
//! catalog read model and the survey flows.

#![allow(
    clippy::unwrap_used,
    reason = "fixed test times are parsed from literals that are known to be valid"
)]

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use developer_portal::{
    Application, ApplicationCatalog, ApplicationCommand, ApplicationError, ApplicationEvent,
    ApplicationStatus, ApplicationSummary, ManualClock, PortalServices, SendNewSurveys,
    SequentialKeys, Survey, SurveyCommand, SurveyError, SurveyEvent, SurveyOnProductRemoval,
    SurveyStatus,
};
use es_core::testing::{
    AggregateFixture, AggregateTestExt as _, ProcessManagerFixture, ProjectionFixture,
};
use es_core::{EventEnvelope, Metadata, Position, ProcessManager as _, StreamId, Version};

// ---------------------------------------------------------------------------------------
// Application
// ---------------------------------------------------------------------------------------

fn t0() -> DateTime<Utc> {
    "2026-03-02T09:00:00Z".parse().unwrap()
}

/// An application test whose clock shows `now` and whose keys are `key-1`, `key-2`, ...
fn app_at(now: DateTime<Utc>) -> AggregateFixture<Application> {
    Application::test_with_services(PortalServices::new(
        ManualClock::at(now),
        SequentialKeys::new("key"),
    ))
}

fn app() -> AggregateFixture<Application> {
    app_at(t0())
}

fn created() -> ApplicationEvent {
    ApplicationEvent::Created {
        name: "Weather Dashboard".into(),
        owner: "ada".into(),
    }
}

fn added(product: &str) -> ApplicationEvent {
    ApplicationEvent::ApiProductAdded {
        product: product.into(),
    }
}

fn removed(product: &str, owner: &str) -> ApplicationEvent {
    ApplicationEvent::ApiProductRemoved {
        product: product.into(),
        owner: owner.into(),
    }
}

fn owner_changed(from: &str, to: &str) -> ApplicationEvent {
    ApplicationEvent::OwnerChanged {
        from: from.into(),
        to: to.into(),
    }
}

/// Credentials issued at `t0` for `days`.
fn generated(key: &str, days: i64) -> ApplicationEvent {
    ApplicationEvent::CredentialsGenerated {
        key: key.into(),
        issued_at: t0(),
        expires_at: t0() + TimeDelta::days(days),
    }
}

fn expired(key: &str, at: DateTime<Utc>) -> ApplicationEvent {
    ApplicationEvent::CredentialsExpired {
        key: key.into(),
        expired_at: at,
    }
}

fn add(product: &str) -> ApplicationCommand {
    ApplicationCommand::AddApiProduct {
        product: product.into(),
    }
}

fn remove(product: &str) -> ApplicationCommand {
    ApplicationCommand::RemoveApiProduct {
        product: product.into(),
    }
}

fn generate(days: u32) -> ApplicationCommand {
    ApplicationCommand::GenerateCredentials {
        valid_for_days: days,
    }
}

fn expire(key: &str) -> ApplicationCommand {
    ApplicationCommand::ExpireCredentials { key: key.into() }
}

#[test]
fn creating_records_the_trimmed_name_and_owner() {
    app()
        .given_no_previous_events()
        .when(ApplicationCommand::Create {
            name: "  Weather Dashboard ".into(),
            owner: " ada".into(),
        })
        .then_expect_events([created()]);
}

#[test]
fn an_application_needs_a_name() {
    app()
        .given_no_previous_events()
        .when(ApplicationCommand::Create {
            name: "   ".into(),
            owner: "ada".into(),
        })
        .then_expect_error(ApplicationError::NameRequired);
}

#[test]
fn an_application_needs_an_owner() {
    app()
        .given_no_previous_events()
        .when(ApplicationCommand::Create {
            name: "Weather Dashboard".into(),
            owner: String::new(),
        })
        .then_expect_error(ApplicationError::OwnerRequired);
}

#[test]
fn an_application_is_created_once() {
    app()
        .given([created()])
        .when(ApplicationCommand::Create {
            name: "Weather Dashboard".into(),
            owner: "ada".into(),
        })
        .then_expect_error(ApplicationError::AlreadyCreated);
}

#[test]
fn nothing_happens_to_an_application_never_created() {
    for command in [
        add("maps-api"),
        remove("maps-api"),
        generate(30),
        expire("key-1"),
        ApplicationCommand::Delete,
    ] {
        app()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(ApplicationError::NotCreated);
    }
}

#[test]
fn an_application_gains_api_products() {
    app()
        .given([created(), added("forecast-api")])
        .when(add(" maps-api "))
        .then_expect_events([added("maps-api")]);
}

#[test]
fn an_api_product_needs_a_name() {
    app()
        .given([created()])
        .when(add(" "))
        .then_expect_error(ApplicationError::ProductNameRequired);
}

#[test]
fn an_api_product_is_added_once() {
    app()
        .given([created(), added("maps-api")])
        .when(add("maps-api"))
        .then_expect_error(ApplicationError::ProductAlreadyAdded {
            product: "maps-api".into(),
        });
}

#[test]
fn removing_a_product_names_the_current_owner() {
    app()
        .given([created(), added("maps-api"), owner_changed("ada", "grace")])
        .when(remove("maps-api"))
        .then_expect_events([removed("maps-api", "grace")]);
}

#[test]
fn only_a_product_in_use_can_be_removed() {
    app()
        .given([created(), added("maps-api")])
        .when(remove("forecast-api"))
        .then_expect_error(ApplicationError::ProductNotAdded {
            product: "forecast-api".into(),
        });
    app()
        .given([created(), added("maps-api"), removed("maps-api", "ada")])
        .when(remove("maps-api"))
        .then_expect_error(ApplicationError::ProductNotAdded {
            product: "maps-api".into(),
        });
}

#[test]
fn a_removed_product_can_be_added_again() {
    app()
        .given([created(), added("maps-api"), removed("maps-api", "ada")])
        .when(add("maps-api"))
        .then_expect_state(|app| {
            assert_eq!(app.products.iter().collect::<Vec<_>>(), ["maps-api"]);
        });
}

#[test]
fn an_application_changes_hands() {
    app()
        .given([created()])
        .when(ApplicationCommand::ChangeOwner {
            owner: "grace".into(),
        })
        .then_expect_events([owner_changed("ada", "grace")]);
}

#[test]
fn changing_to_the_same_owner_is_rejected() {
    app()
        .given([created()])
        .when(ApplicationCommand::ChangeOwner {
            owner: " ada ".into(),
        })
        .then_expect_error(ApplicationError::SameOwner {
            owner: "ada".into(),
        });
}

#[test]
fn the_new_owner_must_be_named() {
    app()
        .given([created()])
        .when(ApplicationCommand::ChangeOwner { owner: "\t".into() })
        .then_expect_error(ApplicationError::OwnerRequired);
}

#[test]
fn credentials_take_their_key_and_times_from_the_services() {
    app()
        .given([created(), added("maps-api")])
        .when(generate(30))
        .then_expect_events([generated("key-1", 30)]);
}

#[test]
fn credentials_need_an_api_product() {
    app()
        .given([created()])
        .when(generate(30))
        .then_expect_error(ApplicationError::NoApiProducts);
    app()
        .given([created(), added("maps-api"), removed("maps-api", "ada")])
        .when(generate(30))
        .then_expect_error(ApplicationError::NoApiProducts);
}

#[test]
fn credentials_are_valid_for_one_day_to_a_year() {
    for days in [0, developer_portal::MAX_VALIDITY_DAYS + 1] {
        app()
            .given([created(), added("maps-api")])
            .when(generate(days))
            .then_expect_error(ApplicationError::InvalidValidity { days });
    }
    for days in [1, developer_portal::MAX_VALIDITY_DAYS] {
        app()
            .given([created(), added("maps-api")])
            .when(generate(days))
            .then_expect_events([generated("key-1", i64::from(days))]);
    }
}

#[test]
fn a_key_in_use_is_not_issued_again() {
    // The fixed generator hands out `key-1` again.
    app()
        .given([created(), added("maps-api"), generated("key-1", 30)])
        .when(generate(30))
        .then_expect_error(ApplicationError::KeyInUse {
            key: "key-1".into(),
        });
}

#[test]
fn credentials_expire_when_due() {
    let due = t0() + TimeDelta::days(30);
    app_at(due)
        .given([created(), added("maps-api"), generated("key-1", 30)])
        .when(expire("key-1"))
        .then_expect_events([expired("key-1", due)]);
}

#[test]
fn credentials_do_not_expire_before_they_are_due() {
    let due = t0() + TimeDelta::days(30);
    app_at(due - TimeDelta::seconds(1))
        .given([created(), added("maps-api"), generated("key-1", 30)])
        .when(expire("key-1"))
        .then_expect_error(ApplicationError::CredentialsNotDue {
            key: "key-1".into(),
            expires_at: due,
        });
}

#[test]
fn only_existing_credentials_expire() {
    app_at(t0() + TimeDelta::days(60))
        .given([created(), added("maps-api"), generated("key-1", 30)])
        .when(expire("key-2"))
        .then_expect_error(ApplicationError::UnknownCredentials {
            key: "key-2".into(),
        });
}

#[test]
fn credentials_expire_once() {
    let later = t0() + TimeDelta::days(60);
    app_at(later)
        .given([
            created(),
            added("maps-api"),
            generated("key-1", 30),
            expired("key-1", t0() + TimeDelta::days(30)),
        ])
        .when(expire("key-1"))
        .then_expect_error(ApplicationError::CredentialsAlreadyExpired {
            key: "key-1".into(),
        });
}

#[test]
fn expired_keys_stay_on_record_but_no_longer_work() {
    let due = t0() + TimeDelta::days(30);
    app_at(due)
        .given([
            created(),
            added("maps-api"),
            generated("key-1", 30),
            generated("key-2", 90),
        ])
        .when(expire("key-1"))
        .then_expect_state(|app| {
            assert_eq!(app.credentials.len(), 2);
            assert_eq!(app.credentials["key-1"].expired_at, Some(due));
            assert_eq!(app.active_keys().collect::<Vec<_>>(), ["key-2"]);
        });
}

#[test]
fn an_application_is_deleted() {
    app()
        .given([created(), added("maps-api")])
        .when(ApplicationCommand::Delete)
        .then_expect_events([ApplicationEvent::Deleted]);
}

#[test]
fn an_application_is_deleted_once() {
    app()
        .given([created(), ApplicationEvent::Deleted])
        .when(ApplicationCommand::Delete)
        .then_expect_error(ApplicationError::AlreadyDeleted);
}

#[test]
fn a_deleted_application_accepts_nothing() {
    let history = [
        created(),
        added("maps-api"),
        generated("key-1", 30),
        ApplicationEvent::Deleted,
    ];
    for command in [
        ApplicationCommand::Create {
            name: "Weather Dashboard".into(),
            owner: "ada".into(),
        },
        add("forecast-api"),
        remove("maps-api"),
        ApplicationCommand::ChangeOwner {
            owner: "grace".into(),
        },
        generate(30),
        expire("key-1"),
    ] {
        app_at(t0() + TimeDelta::days(60))
            .given(history.clone())
            .when(command)
            .then_expect_error(ApplicationError::Deleted);
    }
}

#[test]
fn the_state_follows_the_whole_life() {
    app()
        .given([
            created(),
            added("maps-api"),
            added("forecast-api"),
            owner_changed("ada", "grace"),
            generated("key-1", 30),
        ])
        .when(remove("maps-api"))
        .then_expect_state(|app| {
            assert_eq!(app.status, ApplicationStatus::Active);
            assert_eq!(app.name, "Weather Dashboard");
            assert_eq!(app.owner, "grace");
            assert_eq!(app.products.iter().collect::<Vec<_>>(), ["forecast-api"]);
            assert_eq!(app.active_keys().collect::<Vec<_>>(), ["key-1"]);
        });
}

// ---------------------------------------------------------------------------------------
// Survey
// ---------------------------------------------------------------------------------------

fn survey_added() -> SurveyEvent {
    SurveyEvent::Added {
        application: "42".into(),
        product: "maps-api".into(),
        recipient: "ada".into(),
    }
}

fn add_survey(application: &str, product: &str, recipient: &str) -> SurveyCommand {
    SurveyCommand::Add {
        application: application.into(),
        product: product.into(),
        recipient: recipient.into(),
    }
}

fn sent() -> SurveyEvent {
    SurveyEvent::Sent {
        channel: "email".into(),
    }
}

fn send(channel: &str) -> SurveyCommand {
    SurveyCommand::Send {
        channel: channel.into(),
    }
}

fn feedback(rating: u8) -> SurveyCommand {
    SurveyCommand::RecordFeedback {
        rating,
        comment: "moved to geocoding".into(),
    }
}

#[test]
fn a_survey_is_added() {
    Survey::test()
        .given_no_previous_events()
        .when(add_survey("42", "maps-api", "ada"))
        .then_expect_events([survey_added()]);
}

#[test]
fn a_survey_needs_an_application_a_product_and_a_recipient() {
    for command in [
        add_survey("", "maps-api", "ada"),
        add_survey("42", " ", "ada"),
        add_survey("42", "maps-api", ""),
    ] {
        Survey::test()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(SurveyError::Incomplete);
    }
}

#[test]
fn a_survey_is_added_once() {
    Survey::test()
        .given([survey_added()])
        .when(add_survey("42", "maps-api", "ada"))
        .then_expect_error(SurveyError::AlreadyAdded);
}

#[test]
fn a_survey_never_added_is_neither_sent_nor_answered() {
    for command in [send("email"), feedback(4)] {
        Survey::test()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(SurveyError::NotAdded);
    }
}

#[test]
fn a_survey_is_sent() {
    Survey::test()
        .given([survey_added()])
        .when(send("email"))
        .then_expect_events([sent()]);
}

#[test]
fn a_survey_is_sent_by_some_channel() {
    Survey::test()
        .given([survey_added()])
        .when(send(""))
        .then_expect_error(SurveyError::ChannelRequired);
}

#[test]
fn a_survey_is_sent_once() {
    Survey::test()
        .given([survey_added(), sent()])
        .when(send("sms"))
        .then_expect_error(SurveyError::AlreadySent {
            channel: "email".into(),
        });
    Survey::test()
        .given([
            survey_added(),
            sent(),
            SurveyEvent::FeedbackRecorded {
                rating: 3,
                comment: String::new(),
            },
        ])
        .when(send("email"))
        .then_expect_error(SurveyError::AlreadySent {
            channel: "email".into(),
        });
}

#[test]
fn feedback_comes_only_after_sending() {
    Survey::test()
        .given([survey_added()])
        .when(feedback(4))
        .then_expect_error(SurveyError::NotSent);
}

#[test]
fn feedback_is_recorded() {
    Survey::test()
        .given([survey_added(), sent()])
        .when(feedback(4))
        .then_expect_events([SurveyEvent::FeedbackRecorded {
            rating: 4,
            comment: "moved to geocoding".into(),
        }]);
}

#[test]
fn ratings_go_from_one_to_five() {
    for rating in [0, 6, u8::MAX] {
        Survey::test()
            .given([survey_added(), sent()])
            .when(feedback(rating))
            .then_expect_error(SurveyError::InvalidRating { rating });
    }
    for rating in [1, 5] {
        Survey::test()
            .given([survey_added(), sent()])
            .when(feedback(rating))
            .then_expect_state(|survey| {
                assert_eq!(survey.status, SurveyStatus::Answered);
                assert_eq!(survey.feedback.as_ref().map(|f| f.rating), Some(rating));
            });
    }
}

#[test]
fn feedback_is_recorded_once() {
    Survey::test()
        .given([
            survey_added(),
            sent(),
            SurveyEvent::FeedbackRecorded {
                rating: 4,
                comment: String::new(),
            },
        ])
        .when(feedback(5))
        .then_expect_error(SurveyError::FeedbackAlreadyRecorded);
}

// ---------------------------------------------------------------------------------------
// The catalog
// ---------------------------------------------------------------------------------------

fn created_as(name: &str, owner: &str) -> ApplicationEvent {
    ApplicationEvent::Created {
        name: name.into(),
        owner: owner.into(),
    }
}

fn summary(name: &str, owner: &str, products: &[&str], keys: usize) -> ApplicationSummary {
    ApplicationSummary {
        name: name.into(),
        owner: owner.into(),
        products: products.iter().map(|p| (*p).to_owned()).collect(),
        active_credentials: keys,
    }
}

/// Event `version` of `stream`, recorded at log position `position`.
fn envelope<E>(stream: &str, version: u64, position: u64, event: E) -> EventEnvelope<E> {
    EventEnvelope {
        event_id: uuid::Uuid::now_v7(),
        stream_id: StreamId::parse(stream).unwrap(),
        version: Version::new(version),
        position: Position::from_parts(position, position),
        recorded_at: Utc::now(),
        metadata: Metadata::new(),
        event,
    }
}

#[test]
fn the_catalog_lists_live_applications_with_owners_products_and_keys() {
    ProjectionFixture::new(ApplicationCatalog::default())
        .given(
            "application-1",
            [
                created(),
                added("maps-api"),
                added("forecast-api"),
                generated("key-1", 30),
                generated("key-2", 90),
                expired("key-1", t0() + TimeDelta::days(30)),
                owner_changed("ada", "grace"),
                removed("maps-api", "grace"),
            ],
        )
        .given(
            "application-2",
            [
                created_as("Sandbox", "alan"),
                added("sms-api"),
                ApplicationEvent::Deleted,
            ],
        )
        .given(
            "application-3",
            [
                created_as("Fleet Tracker", "barbara"),
                added("maps-api"),
                added("geocoding-api"),
            ],
        )
        .then_expect(
            |catalog| catalog.applications.clone(),
            BTreeMap::from([
                (
                    "1".to_owned(),
                    summary("Weather Dashboard", "grace", &["forecast-api"], 1),
                ),
                (
                    "3".to_owned(),
                    summary(
                        "Fleet Tracker",
                        "barbara",
                        &["geocoding-api", "maps-api"],
                        0,
                    ),
                ),
            ]),
        );
}

#[test]
fn the_catalog_sorts_products() {
    ProjectionFixture::new(ApplicationCatalog::default())
        .given(
            "application-1",
            [
                created(),
                added("zeta-api"),
                added("alpha-api"),
                added("maps-api"),
            ],
        )
        .then_expect(
            |catalog| {
                catalog.applications["1"]
                    .products
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
            },
            vec!["alpha-api".to_owned(), "maps-api".into(), "zeta-api".into()],
        );
}

#[test]
fn the_catalog_ignores_events_it_has_seen() {
    let expiry = t0() + TimeDelta::days(30);
    let catalog = ProjectionFixture::new(ApplicationCatalog::default())
        .given_envelopes([
            envelope("application-1", 1, 1, created()),
            envelope("application-1", 2, 2, added("maps-api")),
            envelope("application-1", 3, 3, generated("key-1", 30)),
            envelope("application-1", 4, 4, removed("maps-api", "ada")),
            envelope("application-1", 5, 5, expired("key-1", expiry)),
            // A replay from an older checkpoint hands events over again: applied again,
            // they would bring the product and the key back.
            envelope("application-1", 2, 2, added("maps-api")),
            envelope("application-1", 3, 3, generated("key-1", 30)),
            envelope("application-1", 5, 5, expired("key-1", expiry)),
        ])
        .then_expect(
            |catalog| catalog.applications["1"].clone(),
            summary("Weather Dashboard", "ada", &[], 0),
        );
    assert_eq!(catalog.version_of("1"), Some(Version::new(5)));
    assert_eq!(catalog.version_of("2"), None);
}

#[test]
fn the_catalog_remembers_how_far_it_followed_deleted_applications() {
    let catalog = ProjectionFixture::new(ApplicationCatalog::default())
        .given("application-9", [created(), ApplicationEvent::Deleted])
        .then_expect(|catalog| catalog.applications.len(), 0);
    assert_eq!(catalog.version_of("9"), Some(Version::new(2)));
}

// ---------------------------------------------------------------------------------------
// The survey flows
// ---------------------------------------------------------------------------------------

#[test]
fn a_product_removal_asks_the_owner_at_the_time() {
    ProcessManagerFixture::new(SurveyOnProductRemoval)
        .given_envelope(&envelope(
            "application-42",
            5,
            9,
            removed("maps-api", "grace"),
        ))
        .then_expect_commands([("42/maps-api/5", add_survey("42", "maps-api", "grace"))]);
}

#[test]
fn each_removal_gets_a_survey_of_its_own() {
    let first = ProcessManagerFixture::new(SurveyOnProductRemoval)
        .given_envelope(&envelope(
            "application-42",
            3,
            3,
            removed("maps-api", "ada"),
        ))
        .into_result()
        .unwrap();
    let again = ProcessManagerFixture::new(SurveyOnProductRemoval)
        .given_envelope(&envelope(
            "application-42",
            5,
            5,
            removed("maps-api", "ada"),
        ))
        .into_result()
        .unwrap();
    assert_ne!(
        first[0].0, again[0].0,
        "a product removed twice is asked about twice"
    );
}

#[test]
fn other_application_events_call_for_no_survey() {
    for event in [
        created(),
        added("maps-api"),
        owner_changed("ada", "grace"),
        generated("key-1", 30),
        ApplicationEvent::Deleted,
    ] {
        ProcessManagerFixture::new(SurveyOnProductRemoval)
            .given("application-42", event)
            .then_expect_no_commands();
    }
}

#[test]
fn a_new_survey_is_sent_by_email() {
    ProcessManagerFixture::new(SendNewSurveys)
        .given("survey-42/maps-api/5", survey_added())
        .then_expect_commands([("42/maps-api/5", send("email"))]);
}

#[test]
fn sent_and_answered_surveys_are_not_sent_again() {
    for event in [
        sent(),
        SurveyEvent::FeedbackRecorded {
            rating: 4,
            comment: String::new(),
        },
    ] {
        ProcessManagerFixture::new(SendNewSurveys)
            .given("survey-42/maps-api/5", event)
            .then_expect_no_commands();
    }
}

#[test]
fn each_flow_reads_only_the_events_it_reacts_to() {
    let application = StreamId::new("application", "42").unwrap();
    let survey = StreamId::new("survey", "42/maps-api/5").unwrap();

    let removals = SurveyOnProductRemoval.filter();
    assert!(removals.matches(&application, "ApiProductRemoved"));
    assert!(!removals.matches(&application, "ApiProductAdded"));
    assert!(!removals.matches(&survey, "ApiProductRemoved"));

    let additions = SendNewSurveys.filter();
    assert!(additions.matches(&survey, "SurveyAdded"));
    assert!(!additions.matches(&survey, "SurveySent"));
    assert!(!additions.matches(&application, "SurveyAdded"));
}
