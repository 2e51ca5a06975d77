//! One trace across the relay (feature `opentelemetry`): the consumer of a relayed event
//! handles it in a span whose parent is the trace context the event was recorded with.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::convert::Infallible;

use async_nats::jetstream::consumer::pull;
use common::{Cleanup, ParcelEvent, jetstream, nats_url, unique};
use es_core::telemetry::HANDLE_SPAN;
use es_core::{
    EventEnvelope, EventStore as _, ExpectedVersion, Metadata, NewEvent, Projection,
    ProjectionRunner, StreamId,
};
use es_memory::MemoryEventStore;
use es_nats::{Consumer, Relay};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt as _;

/// The traceparents of the events it handles.
#[derive(Debug, Default)]
struct Traces(Vec<Option<String>>);

impl Projection for Traces {
    type Event = ParcelEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        "traces"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<ParcelEvent>) -> Result<(), Infallible> {
        self.0
            .push(envelope.metadata.traceparent.map(|c| c.to_string()));
        Ok(())
    }
}

#[test]
fn the_consumer_continues_the_trace_of_the_relayed_event() {
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let name = unique("TRACE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("es-nats-tests")));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let store = MemoryEventStore::new();
            store
                .append(
                    &StreamId::new("parcel", "1").unwrap(),
                    ExpectedVersion::NoStream,
                    vec![
                        NewEvent::new(ParcelEvent::Delivered)
                            .with_metadata(Metadata::new().with_traceparent(traceparent)),
                    ],
                )
                .await
                .unwrap();
            let relay = Relay::builder(store.clone(), jetstream().await)
                .stream(&name)
                .route("parcel", format!("{name}.parcels.{{streamId}}"))
                .build()
                .await
                .unwrap();
            ProjectionRunner::new(store.clone(), relay)
                .catch_up()
                .await
                .unwrap();

            let durable = jetstream()
                .await
                .get_stream(&name)
                .await
                .unwrap()
                .get_or_create_consumer(
                    "traces",
                    pull::Config {
                        durable_name: Some("traces".to_owned()),
                        ..pull::Config::default()
                    },
                )
                .await
                .unwrap();
            let mut consumer = Consumer::new(durable, Traces::default(), MemoryEventStore::new());
            assert_eq!(consumer.catch_up().await.unwrap(), 1);
            assert_eq!(consumer.projection().0, [Some(traceparent.to_owned())]);
        });
    });
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let consumed = spans
        .iter()
        .find(|span| {
            span.name == HANDLE_SPAN
                && span
                    .attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "projection" && kv.value.as_str() == "traces")
        })
        .expect("the consumer's handle span");
    assert_eq!(
        consumed.span_context.trace_id(),
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
    );
    assert_eq!(
        consumed.parent_span_id,
        SpanId::from_hex("b7ad6b7169203331").unwrap()
    );
    assert!(consumed.parent_span_is_remote);
}
