//! One trace from a command through its event to the projection that handles it and to
//! the commands a process manager issues in reaction (feature `opentelemetry`): the spans
//! as OpenTelemetry's in-memory exporter receives them, on the in-memory store.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::sync::Arc;

use common::{
    Account, AccountCommand, AccountEvent, Bookkeeping, Deposits, Ledger, LedgerEvent, runtime,
};
use es_core::telemetry::{COMMAND_SPAN, HANDLE_SPAN, REACTION_SPAN, TraceContext};
use es_core::{
    CommandContext, EventEnvelope, EventStore as _, ExpectedVersion, Metadata, NewEvent,
    ProcessManagerProjection, ProjectionRunner, Repository, StreamId,
};
use es_memory::MemoryEventStore;
use futures_util::StreamExt as _;
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument as _;
use tracing_subscriber::layer::SubscriberExt as _;

/// Runs `test` with spans exported to memory, and returns what was exported.
fn traced(test: impl AsyncFnOnce()) -> Vec<SpanData> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("es-core-tests")));
    tracing::subscriber::with_default(subscriber, || runtime().block_on(test()));
    provider.force_flush().unwrap();
    exporter.get_finished_spans().unwrap()
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|span| span.name == name).collect()
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// The trace and span ids a traceparent names.
fn ids(traceparent: TraceContext) -> (TraceId, SpanId) {
    (
        TraceId::from(traceparent.trace_id()),
        SpanId::from(traceparent.span_id()),
    )
}

async fn all_events<E: es_core::DomainEvent>(store: &MemoryEventStore) -> Vec<EventEnvelope<E>> {
    store
        .read_all::<E>(
            es_core::Position::START,
            es_core::EventFilter::for_event::<E>(),
        )
        .map(Result::unwrap)
        .collect()
        .await
}

#[test]
fn a_commands_trace_reaches_projections_and_reactions() {
    let store = MemoryEventStore::new();
    let (deposits, notes) = (
        std::sync::Mutex::new(Vec::new()),
        std::sync::Mutex::new(Vec::new()),
    );
    let spans = traced(async || {
        let accounts = Repository::<Account, _>::with_services(store.clone(), Arc::default());
        // Instrumented rather than entered: a guard held across an await would leave the
        // span entered on whatever else the thread polls meanwhile.
        accounts
            .execute("1", AccountCommand::Deposit { amount: 5 })
            .instrument(tracing::info_span!("request"))
            .await
            .unwrap();

        let mut view = ProjectionRunner::new(store.clone(), Deposits::default());
        assert_eq!(view.catch_up().await.unwrap(), 1);
        let ledger = Repository::<Ledger, _>::new(store.clone());
        let mut flow = ProjectionRunner::new(
            store.clone(),
            ProcessManagerProjection::new(Bookkeeping, ledger),
        );
        assert_eq!(flow.catch_up().await.unwrap(), 1);
        *deposits.lock().unwrap() = all_events::<AccountEvent>(&store).await;
        *notes.lock().unwrap() = all_events::<LedgerEvent>(&store).await;
    });
    let deposits = deposits.into_inner().unwrap();
    let notes = notes.into_inner().unwrap();

    // The command's event carries the command span's context.
    let request = named(&spans, "request")[0];
    let trace = request.span_context.trace_id();
    let commands = named(&spans, COMMAND_SPAN);
    let deposit = commands
        .iter()
        .find(|span| attribute(span, "aggregate").as_deref() == Some("account"))
        .unwrap();
    assert_eq!(deposit.span_context.trace_id(), trace);
    assert_eq!(deposit.parent_span_id, request.span_context.span_id());
    assert_eq!(attribute(deposit, "outcome").as_deref(), Some("committed"));
    let stored = deposits[0].metadata.traceparent.unwrap();
    assert_eq!(ids(stored), (trace, deposit.span_context.span_id()));

    // Both runners handle it in a span whose parent is the command's.
    let handled = named(&spans, HANDLE_SPAN);
    assert_eq!(handled.len(), 2, "{handled:#?}");
    for span in &handled {
        assert_eq!(span.span_context.trace_id(), trace);
        assert_eq!(span.parent_span_id, deposit.span_context.span_id());
        assert!(span.parent_span_is_remote);
    }

    // The reaction's command is in the same trace, and its event carries it on.
    let reaction = named(&spans, REACTION_SPAN)[0];
    assert_eq!(reaction.span_context.trace_id(), trace);
    let note = commands
        .iter()
        .find(|span| attribute(span, "aggregate").as_deref() == Some("ledger"))
        .unwrap();
    assert_eq!(note.span_context.trace_id(), trace);
    assert_eq!(note.parent_span_id, reaction.span_context.span_id());
    let carried = notes[0].metadata.traceparent.unwrap();
    assert_eq!(ids(carried), (trace, note.span_context.span_id()));
}

#[test]
fn a_callers_traceparent_is_kept_and_continued() {
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let store = MemoryEventStore::new();
    let spans = traced(async || {
        let accounts = Repository::<Account, _>::with_services(store.clone(), Arc::default());
        accounts
            .execute_with(
                "1",
                AccountCommand::Deposit { amount: 5 },
                CommandContext::new().with_traceparent(incoming),
            )
            .await
            .unwrap();
        let events = all_events::<AccountEvent>(&store).await;
        assert_eq!(
            events[0]
                .metadata
                .traceparent
                .map(|c| c.to_string())
                .as_deref(),
            Some(incoming)
        );
        let mut view = ProjectionRunner::new(store.clone(), Deposits::default());
        view.catch_up().await.unwrap();
        assert_eq!(view.projection().seen, [Some(incoming.to_owned())]);
    });
    let (trace, parent) = ids(TraceContext::parse(incoming).unwrap());
    let handled = named(&spans, HANDLE_SPAN)[0];
    assert_eq!(handled.span_context.trace_id(), trace);
    assert_eq!(handled.parent_span_id, parent);
}

#[test]
fn an_event_with_a_bad_traceparent_is_handled_in_a_trace_of_its_own() {
    let store = MemoryEventStore::new();
    let spans = traced(async || {
        let stream = StreamId::new("account", "1").unwrap();
        // A zero trace id: not a trace context, so not kept.
        let metadata = Metadata::new()
            .with_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01");
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![NewEvent::new(AccountEvent::Deposited { amount: 1 }).with_metadata(metadata)],
            )
            .await
            .unwrap();
        let mut view = ProjectionRunner::new(store.clone(), Deposits::default());
        assert_eq!(view.catch_up().await.unwrap(), 1);
        assert_eq!(view.projection().seen, [None]);
    });
    let handled = named(&spans, HANDLE_SPAN)[0];
    assert!(handled.span_context.is_valid());
    assert!(!handled.parent_span_is_remote);
}

#[test]
fn set_parent_ignores_what_is_not_a_traceparent() {
    let spans = traced(async || {
        for bad in [
            "",
            "garbage",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ] {
            let span = tracing::info_span!("consumer");
            es_core::telemetry::set_parent(&span, TraceContext::parse(bad));
            drop(span);
        }
        let span = tracing::info_span!("consumer");
        es_core::telemetry::set_parent(&span, None);
    });
    let consumers = named(&spans, "consumer");
    assert_eq!(consumers.len(), 5);
    for span in consumers {
        assert_eq!(span.parent_span_id, SpanId::INVALID, "a root span");
        assert!(!span.parent_span_is_remote);
    }
}
