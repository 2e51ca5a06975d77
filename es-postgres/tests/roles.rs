//! Least privilege: the application runs as a role granted only what the store uses
//! (`grant_application_role`), checks the schema read-only (`verify`), and cannot forge or
//! rewrite history: each refusal is proven here.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;
#[path = "common/role.rs"]
mod role;
use role::Role;

use std::time::Duration;

use es_core::{
    CheckpointStore as _, DeadLetterStore as _, EventFilter, EventStore as _, ExpectedVersion,
    LeaseStore as _, NewEvent, ParkedEvent, Position, ProjectionRunner, RawEvent, Snapshot,
    SnapshotStore as _, StreamId, Version,
};
use es_postgres::{PgEventStore, PgStoreError};
use es_testkit::projections::{CountingView, Faults, LedgerStorage};
use futures_util::StreamExt as _;
use serde_json::json;
use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// Runs `sql` as the application role and expects the server to refuse it for lack of
/// privilege (SQLSTATE 42501), not for any other reason.
async fn refused(app: &PgEventStore, what: &str, sql: &str) {
    let sql = sql.replace("{s}", &format!("\"{}\"", app.schema()));
    match sqlx::raw_sql(AssertSqlSafe(sql)).execute(app.pool()).await {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("42501") => {}
        other => panic!("{what}: expected a refusal for lack of privilege, got {other:?}"),
    }
}

/// Granted the application role, the store runs every operation an application uses,
/// and `migrate` (on a current schema) and `verify` pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_runs_the_store() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    app.verify()
        .await
        .expect("verify passes for the granted role");
    app.migrate()
        .await
        .expect("migrate on a current schema only reads");

    let stream = StreamId::new("account", "1").unwrap();
    let appended = app
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                es_testkit::fixture::AccountEvent::Deposited { amount: 5 },
            )],
        )
        .await
        .unwrap();
    let mut live = Box::pin(app.subscribe::<RawEvent>(Position::START, EventFilter::all()));
    let first = tokio::time::timeout(Duration::from_secs(30), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.event_id, appended.events[0].event_id);
    app.save_snapshot(Snapshot {
        stream_id: stream.clone(),
        version: Version::new(1),
        schema_version: 1,
        state: json!({}),
        taken_at: chrono::Utc::now(),
    })
    .await
    .unwrap();
    app.save_snapshot(Snapshot {
        stream_id: stream.clone(),
        version: Version::new(1),
        schema_version: 1,
        state: json!({ "again": true }),
        taken_at: chrono::Utc::now(),
    })
    .await
    .unwrap();
    assert!(app.load_snapshot(&stream).await.unwrap().is_some());
    app.save_checkpoint("p", first.position).await.unwrap();
    app.delete_checkpoint("p").await.unwrap();
    let owner_id = Uuid::now_v7();
    assert!(
        app.acquire_lease("l", owner_id, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert!(
        app.renew_lease("l", owner_id, Duration::from_secs(5))
            .await
            .unwrap()
    );
    app.release_lease("l", owner_id).await.unwrap();
    let parked = ParkedEvent {
        projection: "p".into(),
        event_id: first.event_id,
        stream_id: stream.clone(),
        version: first.version,
        position: first.position,
        event_type: "Deposited".into(),
        error: "test".into(),
        attempts: 1,
        parked_at: chrono::Utc::now(),
    };
    app.park(parked.clone()).await.unwrap();
    app.park(parked).await.unwrap();
    app.unpark("p", first.event_id).await.unwrap();
    let ledger = LedgerStorage::default();
    let mut runner = ProjectionRunner::new(
        app.clone(),
        CountingView::new("counting", ledger.clone(), Faults::none()),
    );
    assert_eq!(runner.catch_up().await.unwrap(), 1);
    app.horizon().await.unwrap();
    app.archive_stream(&stream).await.unwrap();
    assert!(app.is_archived(&stream).await.unwrap());
    role.drop_with(owner).await;
}

/// The application role cannot forge history: not the position (even with `OVERRIDING
/// SYSTEM VALUE`), not the transaction id (one far ahead would hide the event from every
/// reader), not the recorded time; nor rewrite, delete or truncate it, un-archive a
/// stream, change the schema or grant itself more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_application_role_cannot_forge_or_rewrite_history() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    let stream = StreamId::new("note", "1").unwrap();
    app.append(
        &stream,
        ExpectedVersion::NoStream,
        vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
    )
    .await
    .unwrap();
    app.archive_stream(&StreamId::new("note", "gone").unwrap())
        .await
        .unwrap();
    let columns = "stream_id, version, event_id, event_type, schema_version, payload, metadata";
    let values = "'note-2', 1, gen_random_uuid(), 'Forged', 1, '{}', '{}'";
    for (what, sql) in [
        (
            "a chosen position",
            format!(
                "INSERT INTO {{s}}.events (position, {columns}) OVERRIDING SYSTEM VALUE \
                 VALUES (1, {values})"
            ),
        ),
        (
            "a transaction id from the future",
            format!(
                "INSERT INTO {{s}}.events (transaction_id, {columns}) \
                 VALUES ('999999999999'::xid8, {values})"
            ),
        ),
        (
            "a recorded time of 2001",
            format!(
                "INSERT INTO {{s}}.events (recorded_at, {columns}) \
                 VALUES ('2001-01-01T00:00:00Z', {values})"
            ),
        ),
        (
            "a rewrite",
            "UPDATE {s}.events SET payload = '{\"forged\": true}'".to_owned(),
        ),
        ("a delete", "DELETE FROM {s}.events".to_owned()),
        ("a truncate", "TRUNCATE {s}.events".to_owned()),
        (
            "an un-archive",
            "DELETE FROM {s}.archived_streams".to_owned(),
        ),
        (
            "a backdated archive",
            "INSERT INTO {s}.archived_streams (stream_id, archived_at) \
             VALUES ('note-9', '2001-01-01T00:00:00Z')"
                .to_owned(),
        ),
        (
            "a schema change",
            "ALTER TABLE {s}.events ADD COLUMN forged text".to_owned(),
        ),
        ("a new table", "CREATE TABLE {s}.forged (x int)".to_owned()),
        (
            "granting itself",
            "SELECT {s}.es_grant_application(current_user)".to_owned(),
        ),
    ] {
        refused(&app, what, &sql).await;
    }
    // A schema version the store never writes is refused, by hand or not.
    let negative = sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events ({columns}) VALUES ('note-3', 1, gen_random_uuid(), 'Forged', -5, '{{}}', '{{}}')",
        app.schema()
    )))
    .execute(app.pool())
    .await;
    assert!(
        matches!(&negative, Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23514")),
        "{negative:?}"
    );
    // What the store itself appends still goes in, with server-assigned columns.
    let appended = app
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
        )
        .await
        .unwrap();
    assert_eq!(appended.version, Version::new(2));
    role.drop_with(owner).await;
}

/// `verify` tells an application what is wrong before it starts: a schema behind the
/// code (and `migrate`, which that role may not run, fails typed), or a role without
/// the grants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_says_what_is_missing() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    let ungranted = role.store(&owner);
    match ungranted.verify().await {
        Err(PgStoreError::Migrate { .. } | PgStoreError::MissingPrivileges { .. }) => {}
        other => panic!("an ungranted role: expected a refusal, got {other:?}"),
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT USAGE ON SCHEMA \"{0}\" TO \"{1}\"; GRANT SELECT ON \"{0}\".es_migrations TO \"{1}\"",
        owner.schema(),
        role.name
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    match ungranted.verify().await {
        Err(PgStoreError::MissingPrivileges {
            missing, role: who, ..
        }) => {
            assert_eq!(who, role.name);
            assert!(
                missing
                    .iter()
                    .any(|m| m.starts_with("SELECT on") && m.ends_with(".events")),
                "{missing:?}"
            );
            assert!(
                missing.iter().any(|m| m.contains("(payload)")),
                "{missing:?}"
            );
        }
        other => panic!("expected missing privileges, got {other:?}"),
    }

    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    app.verify().await.unwrap();
    // The schema falls behind this code (as after an upgrade of es-postgres).
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM \"{}\".es_migrations WHERE version = (SELECT max(version) FROM \"{}\".es_migrations)",
        owner.schema(),
        owner.schema()
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    match app.verify().await {
        Err(PgStoreError::SchemaBehind { found, latest, .. }) => assert_eq!(found + 1, latest),
        other => panic!("expected the schema behind, got {other:?}"),
    }
    assert!(matches!(
        app.migrate().await,
        Err(PgStoreError::Migrate { .. })
    ));
    role.drop_with(owner).await;
}

/// In a hardened database, where PUBLIC may execute nothing, the granted role still runs
/// the store (its grants name the functions appends and reads call), and `verify` tells an
/// ungranted role that it lacks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hardened_database_runs_the_granted_role_and_verify_names_the_functions() {
    let owner = common::fresh_store().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA \"{}\" FROM PUBLIC",
        owner.schema()
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    let app = role.store(&owner);
    app.verify().await.unwrap();
    let stream = StreamId::new("note", "1").unwrap();
    let appended = app
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Noted", 1, json!({})))],
        )
        .await
        .unwrap();
    assert!(app.readable(appended.events[0].position).await.is_ok());

    sqlx::raw_sql(AssertSqlSafe(format!(
        "REVOKE EXECUTE ON FUNCTION \"{0}\".es_stream_open(text) FROM \"{1}\"",
        owner.schema(),
        role.name
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    match app.verify().await {
        Err(PgStoreError::MissingPrivileges { missing, .. }) => assert!(
            missing.iter().any(|m| m.contains("es_stream_open")),
            "{missing:?}"
        ),
        other => panic!("expected the function named, got {other:?}"),
    }
    role.drop_with(owner).await;
}

/// A role granted before migration 0007 added the traceparent column appends after it, with
/// a traceparent: the migration grants the new column to the roles that may append.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_granted_before_the_traceparent_column_appends_after_it() {
    let owner = common::fresh_store().await;
    let role = Role::create(&owner).await;
    owner.grant_application_role(&role.name).await.unwrap();
    // Put the schema back as migration 0006 left it (dropping the column drops its grant).
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER TABLE \"{0}\".events DROP COLUMN traceparent; \
         DELETE FROM \"{0}\".es_migrations WHERE version = 7",
        owner.schema()
    )))
    .execute(owner.pool())
    .await
    .unwrap();
    owner.migrate().await.unwrap();

    let app = role.store(&owner);
    app.verify()
        .await
        .expect("the role may write the new column");
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let stream = StreamId::new("account", "1").unwrap();
    let appended = app
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(es_testkit::fixture::AccountEvent::Deposited { amount: 5 })
                    .with_metadata(es_core::Metadata::new().with_traceparent(traceparent)),
            ],
        )
        .await
        .unwrap();
    let read = app
        .find_event::<RawEvent>(appended.events[0].event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        read.metadata.traceparent.map(|c| c.to_string()).as_deref(),
        Some(traceparent)
    );
    role.drop_with(owner).await;
}
