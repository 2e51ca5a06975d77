//! `#[tag]` fields through a store: the tags an event declares land in the metadata it is
//! read back with (beside the tags set on its metadata), queries find it by them, and a
//! value that makes no valid tag fails the append with nothing stored.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;

use es_core::{
    AppendError, DomainEvent, EventEnvelope, EventStore as _, ExpectedVersion, Metadata, NewEvent,
    Position, Query, QueryItem, StreamId, Tag, Version,
};
use es_memory::MemoryEventStore;
use futures_util::TryStreamExt as _;

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CourseEvent {
    Defined {
        #[tag(prefix = "course")]
        id: String,
        capacity: u32,
    },
    StudentSubscribed {
        #[tag(prefix = "course")]
        course: String,
        #[tag]
        student: u64,
        #[tag]
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cohort: Option<String>,
    },
}

fn tag(text: &str) -> Tag {
    Tag::new(text).unwrap()
}

async fn read(store: &MemoryEventStore, stream: &StreamId) -> Vec<EventEnvelope<CourseEvent>> {
    store
        .read_stream(stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn declared_tags_are_stored_in_the_metadata_beside_those_set_there() {
    let store = MemoryEventStore::new();
    let stream = StreamId::new("course", "c1").unwrap();
    let events = vec![
        NewEvent::new(CourseEvent::Defined {
            id: "c1".into(),
            capacity: 2,
        }),
        NewEvent::new(CourseEvent::StudentSubscribed {
            course: "c1".into(),
            student: 7,
            cohort: Some("2026".into()),
        })
        .with_metadata(Metadata::new().with_tag(tag("source:import"))),
        NewEvent::new(CourseEvent::StudentSubscribed {
            course: "c1".into(),
            student: 8,
            cohort: None,
        }),
    ];
    store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap();

    let stored = read(&store, &stream).await;
    let tags: Vec<BTreeSet<Tag>> = stored.iter().map(|e| e.metadata.tags.clone()).collect();
    assert_eq!(
        tags,
        [
            BTreeSet::from([tag("course:c1")]),
            BTreeSet::from([
                tag("course:c1"),
                tag("student:7"),
                tag("cohort:2026"),
                tag("source:import"),
            ]),
            // `cohort: None` gives no tag.
            BTreeSet::from([tag("course:c1"), tag("student:8")]),
        ]
    );
    // The event read back declares the same tags it was stored with.
    for envelope in &stored {
        let declared: BTreeSet<Tag> = envelope.event.tags().unwrap().into_iter().collect();
        assert!(declared.is_subset(&envelope.metadata.tags));
    }

    // A query finds the events by a declared tag, whatever their stream.
    let query = Query::from(
        QueryItem::new()
            .with_types(["StudentSubscribed"])
            .with_tag(tag("student:8")),
    );
    let found: Vec<EventEnvelope<CourseEvent>> = store
        .read_query(&query, Position::START)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].version, Version::new(3));
}

#[tokio::test(flavor = "current_thread")]
async fn a_value_that_makes_no_valid_tag_fails_the_append_and_stores_nothing() {
    let store = MemoryEventStore::new();
    let stream = StreamId::new("course", "c2").unwrap();
    let events = vec![
        NewEvent::new(CourseEvent::Defined {
            id: "c2".into(),
            capacity: 1,
        }),
        NewEvent::new(CourseEvent::StudentSubscribed {
            course: "c2".into(),
            student: 1,
            cohort: Some("ada@example.com\n".into()),
        }),
    ];
    let error = store
        .append(&stream, ExpectedVersion::NoStream, events)
        .await
        .unwrap_err();
    match &error {
        AppendError::InvalidTag {
            index, event_type, ..
        } => {
            assert_eq!(*index, 1);
            assert_eq!(event_type, "StudentSubscribed");
        }
        other => panic!("not InvalidTag: {other:?}"),
    }
    // The error names the key, never the value (it may identify a person).
    let text = format!("{error} {:?}", std::error::Error::source(&error));
    assert!(text.contains("cohort"), "{text}");
    assert!(!text.contains("ada"), "{text}");
    assert!(read(&store, &stream).await.is_empty());
}
