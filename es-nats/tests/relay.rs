//! The relay against the real NATS server: every event once, in log order, with the
//! described headers; restarts, stale checkpoints and bad input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::time::Duration;

use async_nats::jetstream::stream;
use common::{
    Cleanup, ParcelEvent, assert_holds_exactly_the_log, held, jetstream, nats_url, unique,
};
use es_core::{
    CheckpointStore as _, EventStore as _, ExpectedVersion, NewEvent, Position, ProjectionRunner,
    RawEvent, StreamId,
};
use es_memory::MemoryEventStore;
use es_nats::{Relay, RelayError};

/// A relay of categories `parcel` and `van` on a stream and subjects of its own.
async fn relay(store: &MemoryEventStore, name: &str) -> Relay<MemoryEventStore> {
    Relay::builder(store.clone(), jetstream().await)
        .stream(name)
        .route("parcel", format!("{name}.parcels.{{streamId}}"))
        .route("van", format!("{name}.vans.{{streamId}}"))
        .build()
        .await
        .unwrap()
}

/// A relay of category `parcel` whose stream drops repeats for 1 s only, so that tests can
/// get past JetStream's duplicate window.
async fn short_window_relay(store: &MemoryEventStore, name: &str) -> Relay<MemoryEventStore> {
    Relay::builder(store.clone(), jetstream().await)
        .stream(name)
        .route("parcel", format!("{name}.parcels.{{streamId}}"))
        .duplicate_window(Duration::from_secs(1))
        .build()
        .await
        .unwrap()
}

async fn append_parcels(store: &MemoryEventStore, parcels: usize) {
    for n in 0..parcels {
        let stream = StreamId::new("parcel", &format!("p.{n}")).unwrap();
        store
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![
                    NewEvent::new(ParcelEvent::Registered {
                        weight_grams: 100 + n as u32,
                        to: "Ada".into(),
                    }),
                    NewEvent::new(ParcelEvent::Moved {
                        place: "depot".into(),
                    }),
                    NewEvent::new(ParcelEvent::Delivered),
                ],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn every_event_once_in_log_order_and_nothing_else() {
    let name = unique("RELAY_ONCE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    append_parcels(&store, 20).await;
    // A category without a route is not relayed.
    let other = StreamId::new("invoice", "1").unwrap();
    store
        .append(
            &other,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ParcelEvent::Delivered)],
        )
        .await
        .unwrap();

    let mut runner = ProjectionRunner::new(store.clone(), relay(&store, &name).await);
    assert_eq!(runner.catch_up().await.unwrap(), 60);
    assert_eq!(
        assert_holds_exactly_the_log(&store, &jetstream().await, &name, &["parcel", "van"]).await,
        60
    );

    // Caught up again: nothing new, nothing twice; then new events follow in order.
    assert_eq!(runner.catch_up().await.unwrap(), 0);
    let van = StreamId::new("van", "7").unwrap();
    store
        .append(
            &van,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(ParcelEvent::Moved { place: "A1".into() })],
        )
        .await
        .unwrap();
    append_parcels(&store, 2).await;
    assert_eq!(runner.catch_up().await.unwrap(), 7);
    assert_eq!(
        assert_holds_exactly_the_log(&store, &jetstream().await, &name, &["parcel", "van"]).await,
        67
    );
    assert_eq!(runner.projection().relayed(), 67);
}

#[tokio::test]
async fn subjects_headers_and_payload_are_those_described() {
    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let name = unique("RELAY_HEADERS_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    let stream = StreamId::new("parcel", "a.b").unwrap();
    let correlation = uuid::Uuid::now_v7();
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(ParcelEvent::Registered {
                    weight_grams: 5,
                    to: "Grace".into(),
                })
                .with_metadata(
                    es_core::Metadata::new()
                        .with_correlation_id(correlation)
                        // A later version's traceparent, extra field and all: the relay
                        // publishes only the canonical context.
                        .with_traceparent(format!("01{}-vendor=x", &TRACEPARENT[2..])),
                ),
            ],
        )
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(store.clone(), relay(&store, &name).await);
    runner.catch_up().await.unwrap();

    let js = jetstream().await;
    let handle = js.get_stream(&name).await.unwrap();
    let message = handle.get_raw_message(1).await.unwrap();
    assert_eq!(
        message.subject.as_str(),
        format!("{name}.parcels.a%2Eb"),
        "one token per stream id"
    );
    let stored: Vec<_> = futures_util::TryStreamExt::try_collect::<Vec<_>>(
        store.read_stream::<RawEvent>(&stream, es_core::Version::INITIAL),
    )
    .await
    .unwrap();
    let event = &stored[0];
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    use es_asyncapi::headers as h;
    assert_eq!(header("Nats-Msg-Id"), Some(event.event_id.to_string()));
    assert_eq!(
        header("Nats-Expected-Last-Msg-Id"),
        None,
        "the first message expects nothing"
    );
    assert_eq!(header(h::SPEC_VERSION).as_deref(), Some("1.0"));
    assert_eq!(header(h::EVENT_ID), Some(event.event_id.to_string()));
    assert_eq!(header(h::EVENT_TYPE).as_deref(), Some("ParcelRegistered"));
    assert_eq!(header(h::SOURCE).as_deref(), Some("parcel"));
    assert_eq!(header(h::STREAM_ID).as_deref(), Some("parcel-a.b"));
    assert_eq!(header(h::SCHEMA_VERSION).as_deref(), Some("1"));
    assert_eq!(header(h::VERSION).as_deref(), Some("1"));
    assert_eq!(header(h::POSITION), Some(event.position.to_string()));
    assert_eq!(header(h::CORRELATION_ID), Some(correlation.to_string()));
    assert_eq!(header(h::CAUSATION_ID), None);
    assert_eq!(
        header(h::TRACEPARENT).as_deref(),
        Some(TRACEPARENT),
        "the canonical form"
    );
    let time = chrono::DateTime::parse_from_rfc3339(&header(h::RECORDED_AT).unwrap()).unwrap();
    assert_eq!(time, event.recorded_at);
    let payload: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!(
        payload, event.event.payload,
        "the stored payload, unchanged"
    );
}

#[tokio::test]
async fn messages_expect_their_predecessor_so_none_overtakes_a_lost_one() {
    let name = unique("RELAY_CHAIN_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    append_parcels(&store, 3).await;
    let mut runner = ProjectionRunner::new(store.clone(), relay(&store, &name).await);
    runner.catch_up().await.unwrap();
    let js = jetstream().await;
    let handle = js.get_stream(&name).await.unwrap();
    for sequence in 2..=9 {
        let previous = handle.get_raw_message(sequence - 1).await.unwrap();
        let message = handle.get_raw_message(sequence).await.unwrap();
        assert_eq!(
            message
                .headers
                .get("Nats-Expected-Last-Msg-Id")
                .map(|v| v.as_str().to_owned()),
            previous
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned()),
        );
    }
    // A message whose predecessor JetStream does not hold is refused: the gap stays a gap.
    let refused = js
        .send_publish(
            format!("{name}.parcels.x"),
            async_nats::jetstream::message::PublishMessage::build()
                .message_id(uuid::Uuid::now_v7().to_string())
                .expected_last_message_id(uuid::Uuid::now_v7().to_string())
                .payload("{}".into()),
        )
        .await
        .unwrap()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn a_stale_checkpoint_republishes_nothing_even_past_the_duplicate_window() {
    let name = unique("RELAY_STALE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    append_parcels(&store, 5).await;
    let build = || short_window_relay(&store, &name);
    let mut runner = ProjectionRunner::new(store.clone(), build().await);
    assert_eq!(runner.catch_up().await.unwrap(), 15);
    // The duplicate window passes, and the checkpoint goes back to the start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    store
        .save_checkpoint("nats-relay", Position::START)
        .await
        .unwrap();
    store.delete_checkpoint("nats-relay").await.unwrap();
    append_parcels(&store, 1).await;
    let mut restarted = ProjectionRunner::new(store.clone(), build().await);
    assert_eq!(
        restarted.catch_up().await.unwrap(),
        3,
        "only what JetStream does not hold"
    );
    assert_eq!(
        assert_holds_exactly_the_log(&store, &jetstream().await, &name, &["parcel"]).await,
        18
    );
}

#[tokio::test]
async fn bad_routes_are_typed_errors() {
    let store = MemoryEventStore::new();
    let build = |routes: Vec<(&'static str, &'static str)>| {
        let store = store.clone();
        async move {
            let mut builder = Relay::builder(store, jetstream().await).stream(unique("RELAY_BAD_"));
            for (category, address) in routes {
                builder = builder.route(category, address);
            }
            builder.build().await.unwrap_err()
        }
    };
    assert!(matches!(build(vec![]).await, RelayError::NoRoutes));
    let invalid = build(vec![("parcel", "parcels.>")]).await;
    assert!(
        matches!(&invalid, RelayError::InvalidRoute { category, .. } if category == "parcel"),
        "{invalid:?}"
    );
    let source = std::error::Error::source(&invalid).unwrap().to_string();
    assert!(
        source.contains("`parcels.>`") && source.contains("wildcards"),
        "{source}"
    );
    assert!(matches!(
        build(vec![("parcel", "a.{streamId}"), ("parcel", "b.{streamId}")]).await,
        RelayError::DuplicateRoute { category } if category == "parcel"
    ));
}

#[tokio::test]
async fn a_stream_that_cannot_take_the_events_is_refused() {
    let name = unique("RELAY_CONFLICT_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let js = jetstream().await;
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.invoices.*")],
        ..Default::default()
    })
    .await
    .unwrap();
    let error = Relay::builder(MemoryEventStore::new(), js.clone())
        .stream(&name)
        .route("parcel", format!("{name}.parcels.{{streamId}}"))
        .build()
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, RelayError::StreamConflict { .. }),
        "{error:?}"
    );
    assert!(
        text.contains(&name) && text.contains("do not cover"),
        "{text}"
    );
}

#[tokio::test]
async fn a_stream_filled_from_elsewhere_is_refused_on_start() {
    let name = unique("RELAY_FOREIGN_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    // One store fills the stream; a fresh store, whose log ends earlier, must not
    // continue after positions it never had.
    let first = MemoryEventStore::new();
    append_parcels(&first, 3).await;
    ProjectionRunner::new(first.clone(), relay(&first, &name).await)
        .catch_up()
        .await
        .unwrap();
    let second = MemoryEventStore::new();
    append_parcels(&second, 1).await;
    let error = ProjectionRunner::new(second.clone(), relay(&second, &name).await)
        .catch_up()
        .await
        .unwrap_err();
    let text = format!("{error:?}");
    assert!(text.contains("does not hold there"), "{text}");

    // The same number of events, so the same positions, but other events: still refused.
    let third = MemoryEventStore::new();
    append_parcels(&third, 3).await;
    let error = ProjectionRunner::new(third.clone(), relay(&third, &name).await)
        .catch_up()
        .await
        .unwrap_err();
    assert!(
        format!("{error:?}").contains("filled from another store"),
        "{error:?}"
    );

    // And a message the relay did not publish is named, not misread.
    let foreign = unique("RELAY_FOREIGN2_");
    let _cleanup2 = Cleanup(nats_url(), foreign.clone());
    let js = jetstream().await;
    js.create_stream(stream::Config {
        name: foreign.clone(),
        subjects: vec![format!("{foreign}.parcels.*")],
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish(format!("{foreign}.parcels.x"), "hi".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let store = MemoryEventStore::new();
    append_parcels(&store, 1).await;
    let relay = Relay::builder(store.clone(), js)
        .stream(&foreign)
        .route("parcel", format!("{foreign}.parcels.{{streamId}}"))
        .build()
        .await
        .unwrap();
    let error = ProjectionRunner::new(store, relay)
        .catch_up()
        .await
        .unwrap_err();
    let text = format!("{error:?}");
    assert!(text.contains("not published by an es-rs relay"), "{text}");
}

#[tokio::test]
async fn held_is_empty_for_an_empty_stream() {
    // The helper the other tests lean on reads an empty stream as empty.
    let name = unique("RELAY_EMPTY_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    let _relay = relay(&store, &name).await;
    assert!(held(&jetstream().await, &name).await.is_empty());
}

#[tokio::test]
async fn run_other_than_as_a_relay_must_it_refuses() {
    let name = unique("RELAY_MISUSE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    append_parcels(&store, 1).await;
    // A checkpoint in memory: the runner never asks the relay where to resume.
    let error = ProjectionRunner::new(store.clone(), relay(&store, &name).await)
        .with_checkpoint_in_memory()
        .catch_up()
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("NotResumed"), "{error:?}");
    // One partition of the log.
    let error = ProjectionRunner::new(store.clone(), relay(&store, &name).await)
        .with_partition(es_core::Partition::new(0, 2).unwrap())
        .catch_up()
        .await
        .unwrap_err();
    assert!(format!("{error:?}").contains("Partitioned"), "{error:?}");
    assert!(
        held(&jetstream().await, &name).await.is_empty(),
        "nothing published"
    );
    // As `Relay::runner` sets it up, it relays.
    let relayed = relay(&store, &name)
        .await
        .runner(Duration::from_secs(5))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(relayed, 3);
}

#[tokio::test]
async fn a_deleted_last_message_resumes_after_the_newest_held() {
    let name = unique("RELAY_DELETED_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    append_parcels(&store, 3).await;
    let build = || short_window_relay(&store, &name);
    build()
        .await
        .runner(Duration::from_secs(5))
        .catch_up()
        .await
        .unwrap();
    let js = jetstream().await;
    let stream = js.get_stream(&name).await.unwrap();
    // The last message removed by hand, the checkpoint set back, and the duplicate window
    // past (within it, JetStream would drop the deleted id's repeat): the relay publishes
    // again exactly what is no longer held, resuming after the newest message that is.
    assert!(stream.delete_message(9).await.unwrap());
    store.delete_checkpoint("nats-relay").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let relayed = build()
        .await
        .runner(Duration::from_secs(5))
        .catch_up()
        .await
        .unwrap();
    assert_eq!(relayed, 1, "only the deleted one");
    assert_eq!(
        assert_holds_exactly_the_log(&store, &js, &name, &["parcel"]).await,
        9
    );
}

#[tokio::test]
async fn a_stream_that_forgets_consumed_messages_is_refused() {
    let name = unique("RELAY_WORKQUEUE_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let js = jetstream().await;
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("{name}.parcels.*")],
        retention: stream::RetentionPolicy::WorkQueue,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = Relay::builder(MemoryEventStore::new(), js)
        .stream(&name)
        .route("parcel", format!("{name}.parcels.{{streamId}}"))
        .build()
        .await
        .unwrap_err();
    assert!(error.to_string().contains("limits retention"), "{error}");
}
