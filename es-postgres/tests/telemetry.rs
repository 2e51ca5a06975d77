//! Trace context through PostgreSQL: the traceparent a command carries is stored with its
//! events (migration 0007) and reaches a projection run from the log, as it does on the
//! in-memory store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use es_core::{
    CommandContext, EventEnvelope, EventFilter, Projection, ProjectionRunner, RawEvent, Repository,
};
use es_testkit::fixture::{Account, AccountCommand};
use futures_util::StreamExt as _;

/// The traceparents of the events it handles.
#[derive(Debug, Default)]
struct Traces(Vec<Option<String>>);

impl Projection for Traces {
    type Event = RawEvent;
    type Error = std::convert::Infallible;

    fn name(&self) -> &str {
        "traces"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::all()
    }

    async fn handle(&mut self, envelope: &EventEnvelope<RawEvent>) -> Result<(), Self::Error> {
        self.0
            .push(envelope.metadata.traceparent.map(|c| c.to_string()));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_traceparent_survives_storage() {
    let store = common::fresh_store().await;
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let accounts = Repository::<Account, _>::new(store.clone());
    let opened = accounts
        .execute_with(
            "ada",
            AccountCommand::Open {
                owner: "ada".into(),
            },
            CommandContext::new().with_traceparent(traceparent),
        )
        .await
        .unwrap();
    // And one without: stored as NULL, read as none.
    accounts
        .execute("ada", AccountCommand::Deposit { amount: 5 })
        .await
        .unwrap();
    assert_eq!(
        opened.events[0]
            .metadata
            .traceparent
            .map(|c| c.to_string())
            .as_deref(),
        Some(traceparent)
    );

    let history: Vec<_> = accounts.history("ada").unwrap().collect().await;
    let stored: Vec<Option<String>> = history
        .into_iter()
        .map(|event| event.unwrap().metadata.traceparent.map(|c| c.to_string()))
        .collect();
    assert_eq!(stored, [Some(traceparent.to_owned()), None]);

    let mut runner = ProjectionRunner::new(store.clone(), Traces::default());
    assert_eq!(runner.catch_up().await.unwrap(), 2);
    assert_eq!(
        runner.projection().0,
        [Some(traceparent.to_owned()), None],
        "the log read carries it too"
    );
    common::drop_schema(store).await;
}

/// A row that holds what an earlier version stored as given (a later version's extra
/// fields, a CR/LF that would break a relayed message's headers) is read through the one
/// parser: canonical, or no trace context at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_traceparent_is_read_back_canonical_or_not_at_all() {
    let store = common::fresh_store().await;
    let canonical = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let later = "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let options: sqlx::postgres::PgConnectOptions = common::database_url().parse().unwrap();
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    let cases = [
        (format!("{later}-vendor=x"), Some(canonical)),
        (format!("{later}-\r\nNats-Msg-Id: x"), None),
        ("garbage".to_owned(), None),
    ];
    for (version, (stored, _)) in (1_i64..).zip(&cases) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO \"{}\".events \
             (stream_id, version, event_id, event_type, schema_version, payload, metadata, traceparent) \
             VALUES ('account-by-hand', $1, $2, 'Noted', 1, '{{}}', '{{}}', $3)",
            store.schema()
        )))
        .bind(version)
        .bind(uuid::Uuid::now_v7())
        .bind(stored)
        .execute(&mut connection)
        .await
        .unwrap();
    }
    let stream = es_core::StreamId::new("account", "by-hand").unwrap();
    let read: Vec<Option<String>> =
        es_core::EventStore::read_stream::<RawEvent>(&store, &stream, es_core::Version::INITIAL)
            .map(|event| event.unwrap().metadata.traceparent.map(|c| c.to_string()))
            .collect()
            .await;
    let expected: Vec<Option<String>> = cases
        .iter()
        .map(|(_, read)| read.map(str::to_owned))
        .collect();
    assert_eq!(read, expected);
    common::drop_schema(store).await;
}
