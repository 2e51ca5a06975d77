//! Tags: declared by the event and set in its metadata, merged, recorded, and read back
//! alike everywhere; invalid ones refused before anything is stored.

use std::collections::BTreeSet;

use es_core::{
    AppendCondition, AppendError, Committed, EventEnvelope, EventFilter, ExpectedVersion, Metadata,
    NewEvent, Position, Query, QueryItem, RawEvent, Tag, Version, limits,
};
use futures_util::StreamExt as _;

use super::{DcbEvent, PATIENCE, put, query_now, stream, tag, tag_set};
use crate::conformance::read_log;
use es_core::Store;

/// The tags of each event, in order.
fn tags_of<E>(events: &[EventEnvelope<E>]) -> Vec<BTreeSet<Tag>> {
    events.iter().map(|e| e.metadata.tags.clone()).collect()
}

/// Tags an event declares ([`DomainEvent::tags`](es_core::DomainEvent::tags)) and tags set
/// in its metadata are merged (a tag in both is kept once) and read back identically from
/// the append's reply, a stream read, a log read (typed and raw), a subscription, a read by
/// id, a query and a repeated append's reply; an event without tags reads back with none.
/// A query finds an event by a declared tag and by a metadata tag alike.
pub async fn tags_merge_and_read_back_alike_on_every_read_path<S: Store>(store: S) {
    let stream = stream("course", "tagged");
    let batch = vec![
        NewEvent::new(DcbEvent::StudentSubscribed {
            student: "s1".into(),
            course: "c1".into(),
        })
        .with_metadata(
            Metadata::new()
                .with_actor("ada")
                .with_tags([tag("region:eu"), tag("course:c1")]),
        ),
        NewEvent::new(DcbEvent::CourseDefined {
            course: "c1".into(),
            capacity: 2,
        }),
        NewEvent::new(DcbEvent::Labelled { labels: Vec::new() })
            .with_metadata(Metadata::new().with_tag(tag("vip"))),
        NewEvent::new(DcbEvent::Labelled { labels: Vec::new() }),
    ];
    let expected = vec![
        tag_set(["course:c1", "region:eu", "student:s1"]),
        tag_set(["course:c1"]),
        tag_set(["vip"]),
        BTreeSet::new(),
    ];
    let committed = put(&store, &stream, batch.clone()).await;
    assert_eq!(tags_of(&committed.events), expected, "the append's reply");
    assert_eq!(
        committed.events[0].metadata.actor.as_deref(),
        Some("ada"),
        "tags leave the rest of the metadata alone"
    );

    let read = super::read_stream(&store, &stream).await;
    assert_eq!(tags_of(&read), expected, "a stream read");
    let log = read_log::<S, DcbEvent>(&store, Position::START, EventFilter::all(), 4).await;
    assert_eq!(tags_of(&log), expected, "a log read");
    let raw = read_log::<S, RawEvent>(&store, Position::START, EventFilter::all(), 4).await;
    assert_eq!(tags_of(&raw), expected, "a raw log read");
    assert_eq!(
        tags_of(&query_now(&store, &Query::all(), Position::START).await),
        expected,
        "a query"
    );

    let mut subscription =
        Box::pin(store.subscribe::<DcbEvent>(Position::START, EventFilter::all()));
    let mut delivered = Vec::new();
    while delivered.len() < expected.len() {
        match tokio::time::timeout(PATIENCE, subscription.next()).await {
            Ok(Some(Ok(envelope))) => delivered.push(envelope),
            other => panic!(
                "the subscription gave {other:?} after {} of {} events",
                delivered.len(),
                expected.len()
            ),
        }
    }
    drop(subscription);
    assert_eq!(tags_of(&delivered), expected, "a subscription");

    for (envelope, tags) in committed.events.iter().zip(&expected) {
        let found = store
            .find_event::<DcbEvent>(envelope.event_id)
            .await
            .unwrap()
            .expect("the event is found by its id");
        assert_eq!(&found.metadata.tags, tags, "a read by id");
    }

    let repeat = store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .expect("the repeat succeeds");
    assert!(repeat.duplicate);
    assert_eq!(
        tags_of(&repeat.events),
        expected,
        "a repeated append's reply"
    );

    // Both kinds of tag select the event.
    for (by, want) in [
        ("region:eu", vec![0]),
        ("student:s1", vec![0]),
        ("vip", vec![2]),
    ] {
        let query = Query::from(QueryItem::new().with_tag(tag(by)));
        let found = query_now(&store, &query, Position::START).await;
        let want: Vec<_> = want.iter().map(|&i| committed.events[i].event_id).collect();
        assert_eq!(super::ids(&found), want, "a query for `{by}`");
    }
}

/// Asserts `result` is [`AppendError::InvalidTag`] for the event at `index` of `event_type`
/// appended to `stream`, and that neither its message nor its sources show a tag value.
#[track_caller]
fn assert_invalid_tag(
    result: &Result<Committed<DcbEvent>, AppendError>,
    stream: &es_core::StreamId,
    index: usize,
) {
    match result {
        Err(
            error @ AppendError::InvalidTag {
                stream: s,
                index: i,
                event_type,
                ..
            },
        ) => {
            assert_eq!((s, *i, event_type.as_str()), (stream, index, "Labelled"));
            let text = super::condition::error_chain(error);
            assert!(!text.contains("secret"), "a tag value shows: {text}");
        }
        other => panic!("expected an invalid tag at index {index}, got {other:?}"),
    }
}

/// A tag the event declares that is not valid (empty, or holding a control character) is
/// refused with [`AppendError::InvalidTag`] naming the event's index and type but not the
/// value, by `append` and `append_if` alike, and nothing of the batch is stored.
pub async fn tags_invalid_are_refused_and_nothing_stored<S: Store>(store: S) {
    let stream = stream("label", "invalid");
    let good = NewEvent::new(DcbEvent::Labelled {
        labels: vec!["fine".into()],
    });
    for bad in ["", "email:secret@example.com\n"] {
        let batch = vec![
            good.clone(),
            NewEvent::new(DcbEvent::Labelled {
                labels: vec!["fine".into(), bad.into()],
            }),
        ];
        let result = store
            .append(&stream, ExpectedVersion::Any, batch.clone())
            .await;
        assert_invalid_tag(&result, &stream, 1);
        let result = store
            .append_if(
                &stream,
                ExpectedVersion::Any,
                batch,
                AppendCondition::new(Query::none()),
            )
            .await;
        assert_invalid_tag(&result, &stream, 1);
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL,
        "nothing of a refused batch is stored"
    );
    assert!(
        store
            .find_event::<DcbEvent>(good.event_id)
            .await
            .unwrap()
            .is_none(),
        "the valid event of a refused batch is not stored"
    );
    // The same event ids go in once the tags are valid: nothing was left behind.
    put(&store, &stream, vec![good]).await;
}

/// `count` distinct tags `label:0`, `label:1`, ...
fn labels(from: usize, count: usize) -> Vec<String> {
    (from..from + count).map(|i| format!("label:{i}")).collect()
}

/// More than [`limits::MAX_TAGS`] tags on one event, declared, or declared and set in its
/// metadata together, are refused with [`AppendError::InvalidTag`] and nothing is stored;
/// exactly the limit is stored, also when tags in both places overlap (they count once).
pub async fn tags_beyond_the_limit_are_refused_and_nothing_stored<S: Store>(store: S) {
    let max = limits::MAX_TAGS;
    let stream = stream("label", "many");
    let declared_too_many = NewEvent::new(DcbEvent::Labelled {
        labels: labels(0, max + 1),
    });
    let half = max / 2;
    let merged_too_many = NewEvent::new(DcbEvent::Labelled {
        labels: labels(0, half),
    })
    .with_metadata(Metadata::new().with_tags(labels(half, max - half + 1).iter().map(|l| tag(l))));
    for too_many in [declared_too_many, merged_too_many] {
        let batch = vec![
            NewEvent::new(DcbEvent::Labelled { labels: Vec::new() }),
            too_many,
        ];
        let result = store.append(&stream, ExpectedVersion::Any, batch).await;
        assert_invalid_tag(&result, &stream, 1);
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL,
        "nothing of a refused batch is stored"
    );

    let all: BTreeSet<Tag> = labels(0, max).iter().map(|l| tag(l)).collect();
    let exactly = NewEvent::new(DcbEvent::Labelled {
        labels: labels(0, max),
    });
    let overlapping = NewEvent::new(DcbEvent::Labelled {
        labels: labels(0, max),
    })
    .with_metadata(Metadata::new().with_tags(all.iter().cloned()));
    let committed = put(&store, &stream, vec![exactly, overlapping]).await;
    let read = super::read_stream(&store, &stream).await;
    assert_eq!(tags_of(&read), vec![all.clone(), all], "every tag is kept");
    let last = Query::from(QueryItem::new().with_tag(tag(&format!("label:{}", max - 1))));
    assert_eq!(
        super::ids(&query_now(&store, &last, Position::START).await),
        super::ids(&committed.events),
        "the last tag selects both events"
    );
}
