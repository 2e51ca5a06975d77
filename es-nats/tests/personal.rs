//! Personal fields through the relay: run on the store under `Protected` (its inner
//! store), the relay publishes the events as stored, their personal fields sealed, so the
//! copies in JetStream are unreadable without the subject's key; a consumer holding the
//! key store opens them with `Protected::open`, and gets the replacement once the subject
//! is forgotten.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use common::{Cleanup, held, jetstream, nats_url, unique};
use es_core::personal::{MemoryKeyStore, Protected, Subject};
use es_core::{
    EventEnvelope, EventStore as _, ExpectedVersion, Metadata, NewEvent, ProjectionRunner,
    RawEvent, StreamId, Version,
};
use es_memory::MemoryEventStore;
use es_nats::Relay;
use es_testkit::customers::CustomerEvent;

const NAME: &str = "Hedy Lamarr";

#[tokio::test]
async fn relayed_copies_stay_sealed_and_are_forgotten_with_the_subject() {
    let name = unique("RELAY_PERSONAL_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let protected = Protected::new(MemoryEventStore::new(), MemoryKeyStore::new());
    let registered = CustomerEvent::registered("c1", NAME, "Vienna");
    protected
        .append(
            &StreamId::new("customer", "c1").unwrap(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(registered.clone())],
        )
        .await
        .unwrap();
    let relay = Relay::builder(protected.inner().clone(), jetstream().await)
        .stream(&name)
        .route("customer", format!("{name}.customers.{{streamId}}"))
        .build()
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(protected.inner().clone(), relay);
    assert_eq!(runner.catch_up().await.unwrap(), 1);

    let copies = held(&jetstream().await, &name).await;
    assert_eq!(copies.len(), 1);
    let text = copies[0].payload.to_string();
    assert!(
        !text.contains(NAME),
        "the relayed copy holds the name: {text}"
    );
    assert!(
        !text.contains("Vienna"),
        "the relayed copy holds the address: {text}"
    );
    let copy = || EventEnvelope {
        event_id: copies[0].event_id,
        stream_id: copies[0].stream_id.clone(),
        version: Version::new(copies[0].version),
        position: copies[0].position,
        recorded_at: chrono::Utc::now(),
        metadata: Metadata::default(),
        event: RawEvent::new("Registered", 1, copies[0].payload.clone()),
    };
    let opened = protected.open::<CustomerEvent>(copy()).await.unwrap();
    assert_eq!(opened.event, registered);

    protected
        .forget(&Subject::new("c1").unwrap(), "privacy desk")
        .await
        .unwrap();
    let opened = protected.open::<CustomerEvent>(copy()).await.unwrap();
    assert_eq!(opened.event, registered.forgotten());
}
