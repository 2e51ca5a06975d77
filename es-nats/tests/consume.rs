//! Another service consuming relayed events: typed and upcast, each handled once, through
//! redelivery and replays.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::convert::Infallible;

use async_nats::jetstream::consumer::pull;
use common::{Cleanup, ParcelEvent, jetstream, nats_url, unique};
use es_core::{
    EventEnvelope, EventFilter, EventStore as _, ExpectedVersion, NewEvent, Projection,
    ProjectionRunner, RawEvent, StreamId,
};
use es_memory::MemoryEventStore;
use es_nats::{ConsumeError, Consumer, MessageError, Relay};
use serde_json::json;

/// Where each parcel is, as a consuming service would keep it.
#[derive(Debug, Default)]
struct Whereabouts {
    handled: Vec<(String, u64)>,
    places: std::collections::BTreeMap<String, String>,
}

impl Projection for Whereabouts {
    type Event = ParcelEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        "whereabouts"
    }

    fn filter(&self) -> EventFilter {
        EventFilter::for_event::<ParcelEvent>()
            .with_event_types(["ParcelMoved", "ParcelRegistered"])
    }

    async fn handle(&mut self, envelope: &EventEnvelope<ParcelEvent>) -> Result<(), Infallible> {
        self.handled
            .push((envelope.stream_id.to_string(), envelope.version.get()));
        if let ParcelEvent::Moved { place } = &envelope.event {
            self.places
                .insert(envelope.stream_id.id().to_owned(), place.clone());
        }
        Ok(())
    }
}

/// The trace context the registrations carry across the relay.
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn relayed_store(name: &str) -> MemoryEventStore {
    let store = MemoryEventStore::new();
    for n in 0..4 {
        let stream = StreamId::new("parcel", &n.to_string()).unwrap();
        store
            .append(
                &stream,
                ExpectedVersion::NoStream,
                vec![
                    NewEvent::new(ParcelEvent::Registered {
                        weight_grams: 1,
                        to: "Ada".into(),
                    })
                    .with_metadata(es_core::Metadata::new().with_traceparent(TRACEPARENT)),
                    NewEvent::new(ParcelEvent::Delivered),
                ],
            )
            .await
            .unwrap();
    }
    // An event stored at its old version: consumers upcast it as any reader does.
    let old = StreamId::new("parcel", "0").unwrap();
    store
        .append(
            &old,
            ExpectedVersion::Any,
            vec![NewEvent::new(RawEvent::new(
                "ParcelMoved",
                1,
                json!({ "at": "depot" }),
            ))],
        )
        .await
        .unwrap();
    let relay = Relay::builder(store.clone(), jetstream().await)
        .stream(name)
        .route("parcel", format!("{name}.parcels.{{streamId}}"))
        .build()
        .await
        .unwrap();
    ProjectionRunner::new(store.clone(), relay)
        .catch_up()
        .await
        .unwrap();
    store
}

async fn durable(name: &str, consumer: &str) -> async_nats::jetstream::consumer::PullConsumer {
    durable_with(name, consumer, pull::Config::default()).await
}

async fn durable_with(
    name: &str,
    consumer: &str,
    config: pull::Config,
) -> async_nats::jetstream::consumer::PullConsumer {
    jetstream()
        .await
        .get_stream(name)
        .await
        .unwrap()
        .get_or_create_consumer(
            consumer,
            pull::Config {
                durable_name: Some(consumer.to_owned()),
                ..config
            },
        )
        .await
        .unwrap()
}

#[tokio::test]
async fn a_projection_handles_each_selected_event_once_typed_and_upcast() {
    let name = unique("CONSUME_ONCE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    relayed_store(&name).await;
    // The consuming service's own store keeps the consumer's checkpoint.
    let own = MemoryEventStore::new();
    let mut consumer = Consumer::new(
        durable(&name, "whereabouts").await,
        Whereabouts::default(),
        own.clone(),
    )
    .with_batch_size(3);
    assert_eq!(
        consumer.catch_up().await.unwrap(),
        5,
        "4 registered and 1 moved; deliveries skipped"
    );
    let projection = consumer.projection();
    assert_eq!(
        projection.places.get("0").map(String::as_str),
        Some("depot"),
        "upcast from `at`"
    );
    assert_eq!(
        projection
            .handled
            .iter()
            .filter(|(s, _)| s == "parcel-0")
            .count(),
        2
    );
    assert_eq!(
        consumer.catch_up().await.unwrap(),
        0,
        "everything was acked"
    );

    // A new durable consumer replays the stream from the start (as after a lost ack, or
    // a consumer recreated): the checkpoint makes it skip everything handled.
    let mut again = Consumer::new(
        durable(&name, "replay").await,
        Whereabouts::default(),
        own.clone(),
    );
    // Same projection name, so the same checkpoint.
    assert_eq!(again.catch_up().await.unwrap(), 0);
    assert!(again.projection().handled.is_empty());
}

#[tokio::test]
async fn decode_reads_a_message_back_as_the_store_reads_the_event() {
    let name = unique("CONSUME_DECODE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = relayed_store(&name).await;
    let consumer = durable(&name, "decode").await;
    let mut messages = consumer.fetch().max_messages(100).messages().await.unwrap();
    let mut decoded = Vec::new();
    while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
        let message = message.unwrap();
        decoded.push(es_nats::decode::<ParcelEvent>(&message).unwrap());
        message.ack().await.unwrap();
    }
    let read: Vec<EventEnvelope<ParcelEvent>> = futures_util::TryStreamExt::try_collect(
        store.read_all::<ParcelEvent>(es_core::Position::START, EventFilter::all()),
    )
    .await
    .unwrap();
    assert_eq!(decoded.len(), 9);
    assert_eq!(
        decoded[0]
            .metadata
            .traceparent
            .map(|c| c.to_string())
            .as_deref(),
        Some(TRACEPARENT),
        "the traceparent crosses the relay"
    );
    assert_eq!(
        decoded, read,
        "envelopes equal to the store's own reads, metadata included"
    );
}

#[tokio::test]
async fn a_message_not_from_a_relay_is_a_typed_error_and_is_delivered_again() {
    let name = unique("CONSUME_BAD_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    relayed_store(&name).await;
    let js = jetstream().await;
    js.publish(format!("{name}.parcels.9"), "{}".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let own = MemoryEventStore::new();
    let mut consumer = Consumer::new(
        durable(&name, "strict").await,
        Whereabouts::default(),
        own.clone(),
    )
    .with_batch_size(100);
    let error = consumer.catch_up().await.unwrap_err();
    assert!(
        matches!(
            &error,
            ConsumeError::Message(MessageError::MissingHeader {
                header: "ce-id",
                ..
            })
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("could not be read"), "{error}");
    // What came before it in its batch is kept (checkpointed, acked); the bad message is
    // handed back, not acked, so it comes again.
    let kept = es_core::CheckpointStore::load_checkpoint(&own, "whereabouts")
        .await
        .unwrap();
    assert!(kept.is_some(), "the events before it are kept");
    assert_eq!(consumer.projection().handled.len(), 5);
    let again = consumer.catch_up().await.unwrap_err();
    assert!(
        matches!(again, ConsumeError::Message(_)),
        "delivered again: {again:?}"
    );
    assert_eq!(
        consumer.projection().handled.len(),
        5,
        "and nothing applied twice"
    );
}

#[tokio::test]
async fn a_crash_mid_batch_loses_nothing() {
    // A consumer that took messages and died without acking them: JetStream lets nothing
    // else out until it redelivers them, so the next consumer cannot skip past them.
    let name = unique("CONSUME_CRASH_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    relayed_store(&name).await;
    let config = pull::Config {
        ack_wait: std::time::Duration::from_secs(1),
        max_ack_pending: 4,
        ..Default::default()
    };
    let crashed = durable_with(&name, "crashy", config.clone()).await;
    let mut taken = crashed.fetch().max_messages(4).messages().await.unwrap();
    let mut count = 0;
    while let Some(message) = futures_util::StreamExt::next(&mut taken).await {
        message.unwrap();
        count += 1;
    }
    assert_eq!(count, 4, "taken, never acked");
    let own = MemoryEventStore::new();
    let mut consumer = Consumer::new(
        durable_with(&name, "crashy", config).await,
        Whereabouts::default(),
        own,
    );
    // The next consumer gets the redelivered ones first (after `ack_wait`), then the rest.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut total = 0;
    while total < 5 && std::time::Instant::now() < deadline {
        total += consumer.catch_up().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        total, 5,
        "every selected event, none skipped past the unacked ones"
    );
    assert_eq!(
        consumer
            .projection()
            .handled
            .first()
            .map(|(s, v)| (s.as_str(), *v)),
        Some(("parcel-0", 1)),
        "the redelivered first"
    );
    let handled = &consumer.projection().handled;
    let mut unique_handled = handled.clone();
    unique_handled.sort();
    unique_handled.dedup();
    assert_eq!(
        unique_handled.len(),
        handled.len(),
        "each once: {handled:?}"
    );
}

/// Fails on the `fail_at`-th event it is given, once.
#[derive(Debug, Default)]
struct FailsOnce {
    seen: usize,
    fail_at: usize,
    failed: bool,
    handled: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

impl Projection for FailsOnce {
    type Event = ParcelEvent;
    type Error = Refused;

    fn name(&self) -> &str {
        "fails-once"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<ParcelEvent>) -> Result<(), Refused> {
        self.seen += 1;
        if self.seen == self.fail_at && !self.failed {
            self.failed = true;
            return Err(Refused);
        }
        self.handled
            .push((envelope.stream_id.to_string(), envelope.version.get()));
        Ok(())
    }
}

#[tokio::test]
async fn a_failed_event_keeps_what_came_before_and_comes_again() {
    let name = unique("CONSUME_FAIL_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    relayed_store(&name).await;
    let own = MemoryEventStore::new();
    let mut consumer = Consumer::new(
        durable(&name, "failing").await,
        FailsOnce {
            fail_at: 4,
            ..FailsOnce::default()
        },
        own,
    );
    let error = consumer.catch_up().await.unwrap_err();
    assert!(
        matches!(error, ConsumeError::Projection { .. }),
        "{error:?}"
    );
    assert_eq!(
        consumer.projection().handled.len(),
        3,
        "the three before it"
    );
    // The failed one and the rest come again at once (handed back), each handled once.
    assert_eq!(consumer.catch_up().await.unwrap(), 6);
    let handled = &consumer.projection().handled;
    assert_eq!(handled.len(), 9);
    let mut unique_handled = handled.clone();
    unique_handled.sort();
    unique_handled.dedup();
    assert_eq!(unique_handled.len(), 9, "each once: {handled:?}");
}

#[tokio::test]
async fn a_consumer_that_could_skip_events_is_refused() {
    let name = unique("CONSUME_CONFIG_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    relayed_store(&name).await;
    let unlimited = pull::Config {
        max_ack_pending: -1,
        ..Default::default()
    };
    let mut consumer = Consumer::new(
        durable_with(&name, "unlimited", unlimited).await,
        Whereabouts::default(),
        MemoryEventStore::new(),
    );
    let error = consumer.catch_up().await.unwrap_err();
    assert!(matches!(error, ConsumeError::Config { .. }), "{error:?}");
    assert!(error.to_string().contains("max_ack_pending"), "{error}");
}
