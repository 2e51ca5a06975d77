//! Tags across the relay: an event's `Metadata::tags` (declared by its `#[tag]` fields and
//! set on its metadata) reach the consumer exactly, whatever characters they hold, and a
//! message with a bad tag header still reads, without that tag.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use std::collections::BTreeSet;
use std::convert::Infallible;

use async_nats::jetstream::consumer::pull;
use common::{Cleanup, jetstream, nats_url, unique};
use es_core::{
    DomainEvent, EventEnvelope, EventStore as _, ExpectedVersion, Metadata, NewEvent, Projection,
    ProjectionRunner, StreamId, Tag,
};
use es_memory::MemoryEventStore;
use es_nats::{Consumer, Relay};

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum SeatEvent {
    Booked {
        #[tag(prefix = "course")]
        course: String,
        #[tag]
        student: u64,
    },
}

/// The tags of the events it handles.
#[derive(Debug, Default)]
struct Tags(Vec<BTreeSet<Tag>>);

impl Projection for Tags {
    type Event = SeatEvent;
    type Error = Infallible;

    fn name(&self) -> &str {
        "tags"
    }

    async fn handle(&mut self, envelope: &EventEnvelope<SeatEvent>) -> Result<(), Infallible> {
        self.0.push(envelope.metadata.tags.clone());
        Ok(())
    }
}

/// Tags that a header would mangle if sent as they are: spaces at either end (trimmed),
/// `,` (folded headers), `%`, `:` after the key, and non-ASCII text, a Unicode space last.
const AWKWARD: [&str; 6] = [
    " padded ",
    "list:a,b",
    "rate:100%",
    "k:v:w",
    "city:Zürich 日本",
    "wide:\u{3000}",
];

#[tokio::test]
async fn tags_reach_the_consumer_exactly_and_a_bad_tag_header_is_dropped() {
    let name = unique("TAGS_");
    let _cleanup = Cleanup(nats_url(), name.clone());
    let store = MemoryEventStore::new();
    let extra: BTreeSet<Tag> = AWKWARD.iter().map(|t| Tag::new(*t).unwrap()).collect();
    store
        .append(
            &StreamId::new("seat", "1").unwrap(),
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(SeatEvent::Booked {
                    course: "c 1".into(),
                    student: 7,
                })
                .with_metadata(Metadata::new().with_tags(extra.clone())),
                NewEvent::new(SeatEvent::Booked {
                    course: "c2".into(),
                    student: 8,
                }),
            ],
        )
        .await
        .unwrap();
    let relay = Relay::builder(store.clone(), jetstream().await)
        .stream(&name)
        .route("seat", format!("{name}.seats.{{streamId}}"))
        .build()
        .await
        .unwrap();
    ProjectionRunner::new(store.clone(), relay)
        .catch_up()
        .await
        .unwrap();

    // The consumer side reads them back into the metadata, as stored.
    let mut first = extra.clone();
    first.insert(Tag::pair("course", "c 1").unwrap());
    first.insert(Tag::pair("student", 7).unwrap());
    let second = BTreeSet::from([
        Tag::pair("course", "c2").unwrap(),
        Tag::pair("student", 8).unwrap(),
    ]);
    let stream = jetstream().await.get_stream(&name).await.unwrap();
    let durable = stream
        .get_or_create_consumer(
            "tags",
            pull::Config {
                durable_name: Some("tags".to_owned()),
                ..pull::Config::default()
            },
        )
        .await
        .unwrap();
    let mut consumer = Consumer::new(durable, Tags::default(), MemoryEventStore::new());
    assert_eq!(consumer.catch_up().await.unwrap(), 2);
    assert_eq!(consumer.projection().0, [first.clone(), second]);

    // What travelled: one header, the tags in printable ASCII separated by `,`; read back
    // from the stream by sequence (a path where async-nats keeps only the last value of a
    // repeated header), it still holds them all.
    let held = stream.get_raw_message(1).await.unwrap();
    let header = held.headers.get("es-tags").unwrap().as_str().to_owned();
    assert_eq!(header.split(',').count(), first.len(), "{header}");
    assert!(header.bytes().all(|b| b.is_ascii_graphic()), "{header}");
    let message = |headers| async_nats::Message {
        subject: held.subject.clone(),
        reply: None,
        payload: held.payload.clone(),
        headers: Some(headers),
        status: None,
        description: None,
        length: 0,
    };
    let envelope = es_nats::decode::<SeatEvent>(&message(held.headers.clone())).unwrap();
    assert_eq!(envelope.metadata.tags, first);

    // A bad tag (broken encoding, not UTF-8, a control character) is dropped; the event
    // still reads, with its other tags.
    let mut headers = held.headers.clone();
    headers.insert("es-tags", format!("%ZZ,{header},%FF%FE,a%0Ab").as_str());
    let envelope = es_nats::decode::<SeatEvent>(&message(headers)).unwrap();
    assert_eq!(envelope.metadata.tags, first);
    assert_eq!(
        envelope.event.tags().unwrap().len(),
        2,
        "the event's own tags are among them"
    );
}
