//! Reading streams and the global log; decoding; metadata.

use chrono::Utc;
use es_core::{
    DecodeError, EventFilter, ExpectedVersion, Metadata, NewEvent, Position, RawEvent, ReadError,
    StreamId, Version,
};
use futures_util::{StreamExt as _, TryStreamExt as _};
use serde_json::json;
use uuid::Uuid;

use super::{account, deposits, read_log, read_stream, versions};
use crate::fixture::AccountEvent;
use es_core::Store;

/// Reading from a version returns that event and the ones after it.
pub async fn read_stream_from_version<S: Store>(store: S) {
    let stream = account("from");
    store
        .append(&stream, ExpectedVersion::NoStream, deposits(5))
        .await
        .unwrap();
    let tail: Vec<_> = store
        .read_stream::<AccountEvent>(&stream, Version::new(3))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions(&tail), [3, 4, 5]);
    assert_eq!(tail[0].event, AccountEvent::Deposited { amount: 3 });
    let past_end: Vec<_> = store
        .read_stream::<AccountEvent>(&stream, Version::new(6))
        .try_collect()
        .await
        .unwrap();
    assert!(past_end.is_empty());
}

/// A stream with no events reads empty and is at version 0.
pub async fn missing_stream_is_empty<S: Store>(store: S) {
    let stream = account("missing");
    assert!(read_stream(&store, &stream).await.is_empty());
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL
    );
}

/// Event ids, metadata (every field) and the recorded time come back as written.
pub async fn metadata_and_ids_round_trip<S: Store>(store: S) {
    let stream = account("meta");
    let id = Uuid::now_v7();
    let metadata = Metadata::new()
        .with_correlation_id(Uuid::now_v7())
        .with_causation_id(Uuid::now_v7())
        .with_actor("ada@example.com")
        .with_user("ip", "192.0.2.1")
        .with_user(
            "nested",
            json!({ "a": [1, 2, { "b": null }], "ünïcødé": "✓" }),
        );
    let before = Utc::now();
    let committed = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(AccountEvent::Opened {
                    owner: "ada".into(),
                })
                .with_id(id)
                .with_metadata(metadata.clone()),
                NewEvent::new(AccountEvent::Closed),
            ],
        )
        .await
        .unwrap();
    let after = Utc::now();
    let read = read_stream(&store, &stream).await;
    assert_eq!(
        read, committed.events,
        "reads return what the append returned"
    );
    assert_eq!(read[0].event_id, id);
    assert_eq!(
        read[0].metadata, metadata,
        "every metadata field round-trips"
    );
    assert_eq!(read[1].metadata, Metadata::new());
    assert_eq!(read[1].event, AccountEvent::Closed);
    let slack = chrono::Duration::seconds(5);
    for event in &read {
        assert!(
            event.recorded_at >= before - slack && event.recorded_at <= after + slack,
            "recorded time {} is not around now ({before} .. {after})",
            event.recorded_at
        );
    }
}

/// Stream ids holding quotes, semicolons and non-ASCII text are plain data.
pub async fn stream_ids_with_special_characters<S: Store>(store: S) {
    let ids = [
        "it's \"quoted\"; DROP TABLE events; --",
        "ünïcødé-✓",
        "back\\slash%_",
    ];
    for id in ids {
        let stream = StreamId::new("account", id).unwrap();
        store
            .append(&stream, ExpectedVersion::NoStream, deposits(2))
            .await
            .unwrap_or_else(|e| panic!("append to {stream:?}: {e:?}"));
        let read = read_stream(&store, &stream).await;
        assert_eq!(versions(&read), [1, 2], "stream {stream:?}");
        assert!(read.iter().all(|e| e.stream_id == stream));
    }
    let log = read_log::<S, RawEvent>(&store, Position::START, EventFilter::all(), 6).await;
    assert_eq!(log.len(), 6);
}

/// The global log holds every event once, in position order, and resumes after any
/// position.
pub async fn global_log_is_ordered_and_resumable<S: Store>(store: S) {
    let mut appended = Vec::new();
    for (round, id) in ["x", "y", "x", "z", "y"].into_iter().enumerate() {
        let stream = account(id);
        let committed = store
            .append(&stream, ExpectedVersion::Any, deposits(round as u64 + 1))
            .await
            .unwrap();
        appended.extend(committed.events);
    }
    let log =
        read_log::<S, AccountEvent>(&store, Position::START, EventFilter::all(), appended.len())
            .await;
    assert_eq!(log.len(), appended.len());
    assert!(
        log.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase"
    );
    let mut log_ids: Vec<_> = log.iter().map(|e| e.event_id).collect();
    let mut appended_ids: Vec<_> = appended.iter().map(|e| e.event_id).collect();
    // Positions of sequential appends follow append order.
    assert_eq!(log_ids, appended_ids, "sequential appends keep their order");
    log_ids.sort();
    appended_ids.sort();
    assert_eq!(log_ids, appended_ids);

    for k in [0, 3, log.len() - 1] {
        let rest = read_log::<S, AccountEvent>(
            &store,
            log[k].position,
            EventFilter::all(),
            log.len() - k - 1,
        )
        .await;
        assert_eq!(rest, log[k + 1..], "resuming after position #{k}");
    }
    let after_end =
        read_log::<S, AccountEvent>(&store, log[log.len() - 1].position, EventFilter::all(), 0)
            .await;
    assert!(after_end.is_empty());
}

/// Global reads keep only the selected categories and event types.
pub async fn global_log_filters_by_category_and_type<S: Store>(store: S) {
    let note = StreamId::new("note", "1").unwrap();
    store
        .append(
            &note,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new(
                "NoteTaken",
                1,
                json!({ "text": "hi" }),
            ))],
        )
        .await
        .unwrap();
    store
        .append(
            &account("f"),
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(AccountEvent::Opened {
                    owner: "ada".into(),
                }),
                NewEvent::new(AccountEvent::Deposited { amount: 3 }),
            ],
        )
        .await
        .unwrap();

    let accounts = read_log::<S, AccountEvent>(
        &store,
        Position::START,
        EventFilter::all().with_categories(["account"]),
        2,
    )
    .await;
    assert_eq!(accounts.len(), 2);
    let deposits_only = read_log::<S, AccountEvent>(
        &store,
        Position::START,
        EventFilter::all().with_event_types(["Deposited"]),
        1,
    )
    .await;
    assert_eq!(
        deposits_only.iter().map(|e| &e.event).collect::<Vec<_>>(),
        [&AccountEvent::Deposited { amount: 3 }]
    );
    let typed = read_log::<S, AccountEvent>(
        &store,
        Position::START,
        EventFilter::for_aggregate::<crate::fixture::Account>(),
        2,
    )
    .await;
    assert_eq!(typed.len(), 2);
    let notes = read_log::<S, RawEvent>(
        &store,
        Position::START,
        EventFilter::all().with_categories(["note", "nothing"]),
        1,
    )
    .await;
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].event.payload, json!({ "text": "hi" }));
    let everything = read_log::<S, RawEvent>(&store, Position::START, EventFilter::all(), 3).await;
    assert_eq!(everything.len(), 3);
}

/// Events read as another type go through their encoding: typed in, raw out, and raw in,
/// typed out.
pub async fn reading_as_another_type_decodes_the_payload<S: Store>(store: S) {
    let stream = account("raw");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(AccountEvent::Opened {
                owner: "ada".into(),
            })],
        )
        .await
        .unwrap();
    store
        .append(
            &stream,
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new(RawEvent::new(
                "Deposited",
                2,
                json!({ "amount": 42 }),
            ))],
        )
        .await
        .unwrap();
    let raw: Vec<_> = store
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        raw[0].event,
        RawEvent::new("Opened", 3, json!({ "owner": "ada" }))
    );
    assert_eq!(
        raw[1].event,
        RawEvent::new("Deposited", 2, json!({ "amount": 42 }))
    );
    let typed = read_stream(&store, &stream).await;
    assert_eq!(typed[1].event, AccountEvent::Deposited { amount: 42 });
}

/// An event that does not decode is an error naming its stream, version and type; the
/// events before it still arrive and the read ends there.
pub async fn undecodable_event_names_stream_version_and_type<S: Store>(store: S) {
    let stream = account("bad");
    store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new(RawEvent::new("Opened", 3, json!({ "owner": "ada" }))),
                NewEvent::new(RawEvent::new("Deposited", 2, json!({ "amount": "lots" }))),
                NewEvent::new(RawEvent::new("Deposited", 2, json!({ "amount": 1 }))),
            ],
        )
        .await
        .unwrap();
    let items: Vec<_> = store
        .read_stream::<AccountEvent>(&stream, Version::INITIAL)
        .collect()
        .await;
    assert_eq!(
        items.len(),
        2,
        "the read ends at the first error: {items:?}"
    );
    assert!(items[0].is_ok());
    match &items[1] {
        Err(ReadError::Decode {
            stream: s,
            version,
            event_type,
            source: DecodeError::InvalidPayload { .. },
            ..
        }) => {
            assert_eq!(s, &stream);
            assert_eq!(*version, Version::new(2));
            assert_eq!(event_type, "Deposited");
            let message = items[1].as_ref().unwrap_err().to_string();
            assert!(
                message.contains("account-bad")
                    && message.contains("Deposited")
                    && message.contains('2'),
                "the message names stream, type and version: {message}"
            );
        }
        other => panic!("expected a payload decode error, got {other:?}"),
    }

    let unknown = account("unknown");
    store
        .append(
            &unknown,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(RawEvent::new("Exploded", 1, json!({})))],
        )
        .await
        .unwrap();
    let items: Vec<_> = store
        .read_stream::<AccountEvent>(&unknown, Version::INITIAL)
        .collect()
        .await;
    assert!(
        matches!(
            items.as_slice(),
            [Err(ReadError::Decode {
                source: DecodeError::UnknownEventType { .. },
                ..
            })]
        ),
        "got {items:?}"
    );
}

/// Events are found by id, with their envelope.
pub async fn find_event_by_id<S: Store>(store: S) {
    let stream = account("find");
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, deposits(3))
        .await
        .unwrap();
    let second = &committed.events[1];
    let found = store
        .find_event::<AccountEvent>(second.event_id)
        .await
        .unwrap()
        .expect("a stored event is found");
    assert_eq!(&found, second);
    assert!(
        store
            .find_event::<AccountEvent>(Uuid::now_v7())
            .await
            .unwrap()
            .is_none()
    );
}

/// A traceparent comes back on every read path (stream, log, by id, the reply to a
/// repeated append) in its canonical form, the same in every store: a later version's
/// extra fields are not kept; a value with a NUL, a CR/LF (a header injected into a relayed
/// message), an over-long one or one that is not a traceparent at all is dropped, never
/// stored (PostgreSQL would refuse the NUL) nor an error; an event without one reads
/// without one.
pub async fn traceparent_round_trips_on_every_read_path<S: Store>(store: S) {
    let stream = account("traced");
    let canonical = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let given = [
        canonical.to_owned(),
        format!("{later}-vendor=x"),
        format!("{later}-\0"),
        format!("{later}-\r\nNats-Msg-Id: x"),
        format!("{later}-{}", "x".repeat(1 << 20)),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-zzzz-01".to_owned(),
    ];
    let mut expected: Vec<Option<String>> = vec![
        Some(canonical.to_owned()),
        Some(canonical.to_owned()),
        None,
        None,
        None,
        None,
    ];
    let mut batch: Vec<_> = given
        .iter()
        .map(|traceparent| {
            NewEvent::new(AccountEvent::Deposited { amount: 1 }).with_metadata(
                Metadata::new()
                    .with_actor("ada")
                    .with_traceparent(traceparent),
            )
        })
        .collect();
    batch.push(NewEvent::new(AccountEvent::Closed));
    expected.push(None);
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, batch.clone())
        .await
        .unwrap();
    let traceparents = |events: &[es_core::EventEnvelope<AccountEvent>]| {
        events
            .iter()
            .map(|e| e.metadata.traceparent.map(|context| context.to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        traceparents(&committed.events),
        expected,
        "the append's reply"
    );
    assert_eq!(
        traceparents(&read_stream(&store, &stream).await),
        expected,
        "a stream read"
    );
    let log = read_log::<S, AccountEvent>(&store, Position::START, EventFilter::all(), 7).await;
    assert_eq!(traceparents(&log), expected, "a log read");
    let found = store
        .find_event::<AccountEvent>(committed.events[1].event_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.metadata.traceparent.map(|c| c.to_string()).as_deref(),
        Some(canonical),
        "a read by id"
    );
    let repeat = store
        .append(&stream, ExpectedVersion::NoStream, batch)
        .await
        .unwrap();
    assert!(repeat.duplicate);
    assert_eq!(traceparents(&repeat.events), expected, "a repeat's reply");
    assert_eq!(log[3].metadata.actor.as_deref(), Some("ada"));
}
