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
        self.0.push(envelope.metadata.traceparent.clone());
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
        opened.events[0].metadata.traceparent.as_deref(),
        Some(traceparent)
    );

    let history: Vec<_> = accounts.history("ada").unwrap().collect().await;
    let stored: Vec<Option<String>> = history
        .into_iter()
        .map(|event| event.unwrap().metadata.traceparent)
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
