//! Events written by an older build, inserted as raw rows the way that build stored them,
//! read as today's events through every path the store offers.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use es_core::{
    AsOf, EventFilter, EventStore as _, Position, ProjectionRunner, RawEvent, Repository, StreamId,
    Version,
};
use es_testkit::fixture::{Account, AccountEvent};
use es_testkit::projections::{Faults, LedgerStorage, LedgerView};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// The rows an older build stored for one account, oldest shapes first.
const LEGACY: [(&str, i32, &str); 4] = [
    ("Opened", 1, r#"{"name": "ada"}"#),
    ("Credited", 1, r#"{"cents": 5}"#),
    ("Opened", 2, r#"{"holder": "ada"}"#),
    ("Credited", 1, r#"{"cents": 7}"#),
];

/// Inserts `LEGACY` into `account-<id>` with plain SQL, as that build's store did: no
/// es-rs code touches the payloads on the way in.
async fn insert_legacy_rows(store: &es_postgres::PgEventStore, id: &str) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for (index, (event_type, schema_version, payload)) in LEGACY.iter().enumerate() {
        let event_id = Uuid::now_v7();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO \"{}\".events \
                 (stream_id, version, event_id, event_type, schema_version, payload, actor, metadata) \
             VALUES ($1, $2, $3, $4, $5, $6::jsonb, 'legacy-import', '{{}}')",
            store.schema()
        )))
        .bind(format!("account-{id}"))
        .bind(index as i64 + 1)
        .bind(event_id)
        .bind(event_type)
        .bind(schema_version)
        .bind(payload)
        .execute(store.pool())
        .await
        .expect("raw insert");
        ids.push(event_id);
    }
    ids
}

fn today() -> Vec<AccountEvent> {
    vec![
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited { amount: 5 },
        AccountEvent::Opened {
            owner: "ada".into(),
        },
        AccountEvent::Deposited { amount: 7 },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_rows_of_old_versions_upcast_on_every_read_path() {
    let store = common::fresh_store().await;
    let ids = insert_legacy_rows(&store, "legacy").await;
    let stream = StreamId::new("account", "legacy").unwrap();

    let read: Vec<AccountEvent> = store
        .read_stream::<AccountEvent>(&stream, Version::INITIAL)
        .map_ok(|e| e.event)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(read, today(), "stream read");

    let repository = Repository::<Account, _>::new(store.clone());
    let loaded = repository.load("legacy").await.unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (12, Version::new(4))
    );
    let before = repository
        .load_as_of("legacy", AsOf::Version(Version::new(2)))
        .await
        .unwrap();
    assert_eq!(before.state.balance, 5);

    // The log's end is held back while any older transaction of the database is open
    // (another test's, say): read until the rows are delivered, within a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let log: Vec<AccountEvent> = loop {
        let log: Vec<AccountEvent> = store
            .read_all::<AccountEvent>(Position::START, EventFilter::for_event::<AccountEvent>())
            .map_ok(|e| e.event)
            .try_collect()
            .await
            .unwrap();
        if log.len() >= today().len() || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        log,
        today(),
        "global log, filtered by today's types and aliases"
    );

    let found = store
        .find_event::<AccountEvent>(ids[1])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.event, AccountEvent::Deposited { amount: 5 });
    assert_eq!(found.metadata.actor.as_deref(), Some("legacy-import"));

    let mut subscription =
        Box::pin(store.subscribe::<AccountEvent>(Position::START, EventFilter::all()));
    let mut live = Vec::new();
    while live.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("the subscription delivers")
            .expect("it goes on")
            .expect("the event decodes");
        live.push(next.event);
    }
    assert_eq!(live, today(), "subscription");

    let storage = LedgerStorage::default();
    let mut runner = ProjectionRunner::new(
        store.clone(),
        LedgerView::new("legacy", storage.clone(), Faults::none()),
    );
    assert_eq!(runner.catch_up().await.unwrap(), 4);
    assert_eq!(
        storage.get().balances,
        BTreeMap::from([("legacy".to_owned(), 12)])
    );

    // Nothing was rewritten: the rows are as the old build left them.
    let rows: Vec<(String, i32, Value)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT event_type, schema_version, payload FROM \"{}\".events ORDER BY version",
        store.schema()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected: Vec<(String, i32, Value)> = LEGACY
        .iter()
        .map(|(t, v, p)| ((*t).to_owned(), *v, serde_json::from_str(p).unwrap()))
        .collect();
    assert_eq!(rows, expected);
    let raw: Vec<RawEvent> = store
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .map_ok(|e| e.event)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(raw[1], RawEvent::new("Credited", 1, json!({ "cents": 5 })));
    common::drop_schema(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_row_with_no_upcast_path_names_stream_version_and_type() {
    let store = common::fresh_store().await;
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{}\".events \
             (stream_id, version, event_id, event_type, schema_version, payload, metadata) \
         VALUES ('account-odd', 1, $1, 'Opened', 0, '{{\"who\": 1}}', '{{}}')",
        store.schema()
    )))
    .bind(Uuid::now_v7())
    .execute(store.pool())
    .await
    .unwrap();
    let error = Repository::<Account, _>::new(store.clone())
        .load("odd")
        .await
        .unwrap_err();
    // The whole chain, as a log line with causes shows it.
    let mut message = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(next) = cause {
        message = format!("{message}: {next}");
        cause = next.source();
    }
    assert!(
        message.contains("account-odd")
            && message.contains("Opened")
            && message.contains("schema version 0"),
        "{message}"
    );
    match error {
        es_core::LoadError::Read {
            source:
                es_core::ReadError::Decode {
                    stream,
                    version,
                    event_type,
                    source:
                        es_core::DecodeError::UnsupportedVersion {
                            version: stored, ..
                        },
                    ..
                },
            ..
        } => {
            assert_eq!(stream.as_str(), "account-odd");
            assert_eq!(version, Version::new(1));
            assert_eq!(event_type, "Opened");
            assert_eq!(stored, 0);
        }
        other => panic!("expected an unsupported version, got {other:?}"),
    }
    common::drop_schema(store).await;
}
