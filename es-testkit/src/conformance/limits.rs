//! The limits every store keeps (`es_core::limits`): refused alike, before anything is
//! written; and what a store accepts, it reads back exactly as written, on every read path.

use es_core::limits::{
    LimitError, MAX_BATCH_BYTES, MAX_DEPTH, MAX_EVENT_BYTES, MAX_EVENT_TYPE_BYTES,
    MAX_SCHEMA_VERSION,
};
use es_core::{
    AppendError, EventFilter, ExpectedVersion, Metadata, NewEvent, Position, RawEvent, StreamId,
    Version,
};
use futures_util::TryStreamExt as _;
use serde_json::{Value, json};

use super::read_log;
use crate::fixture::Measured;
use es_core::Store;

/// `levels` arrays nested around `1`.
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| Value::Array(vec![inner]))
}

/// Which refusal a case expects.
type Expect = fn(&LimitError) -> bool;

fn noted(payload: Value) -> NewEvent<RawEvent> {
    NewEvent::new(RawEvent::new("Noted", 1, payload))
}

/// Appends `[fine, bad]` and expects `bad` refused with a reason `check` accepts, and
/// nothing stored.
async fn assert_refused<S: Store>(
    store: &S,
    what: &str,
    bad: NewEvent<RawEvent>,
    check: impl Fn(&LimitError) -> bool,
) {
    let stream = StreamId::new("note", "limits").unwrap();
    let result = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![noted(json!({ "text": "fine" })), bad],
        )
        .await;
    match result {
        Err(AppendError::Unstorable {
            stream: s,
            index: 1,
            reason,
            ..
        }) if s == stream && check(&reason) => {}
        other => panic!("{what}: expected the second event refused as unstorable, got {other:?}"),
    }
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL,
        "{what}: nothing of the batch may be stored"
    );
}

/// Text no store can keep (a NUL character, which PostgreSQL's jsonb and text refuse) is
/// refused alike by every store, in a payload, a key, an actor or metadata, naming the
/// event's index and type; nothing of the batch is stored.
pub async fn nul_characters_are_refused_alike<S: Store>(store: S) {
    let mut by_actor = noted(json!({}));
    by_actor.metadata.actor = Some("ada\u{0}".to_owned());
    let mut by_metadata = noted(json!({}));
    by_metadata
        .metadata
        .user
        .insert("tenant".to_owned(), json!(["a\u{0}"]));
    for (what, bad) in [
        ("payload", noted(json!({ "text": "a\u{0}b" }))),
        ("payload key", noted(json!({ "a\u{0}": 1 }))),
        ("actor", by_actor),
        ("metadata", by_metadata),
    ] {
        assert_refused(&store, what, bad, |reason| {
            matches!(reason, LimitError::Nul { .. })
        })
        .await;
    }
}

/// Every limit is refused alike, before anything is written: nesting, floats that would
/// read back as integers, size, event type names, schema versions, and events that do not
/// decode from their own encoding.
pub async fn limits_are_refused_alike<S: Store>(store: S) {
    let mut deep_metadata = noted(json!({}));
    deep_metadata
        .metadata
        .user
        .insert("trace".to_owned(), nested(MAX_DEPTH));
    let too_large = "x".repeat(MAX_EVENT_BYTES);
    let cases: Vec<(&str, NewEvent<RawEvent>, Expect)> = vec![
        ("deep payload", noted(nested(MAX_DEPTH + 1)), |r| {
            matches!(r, LimitError::TooDeep { .. })
        }),
        ("deep metadata", deep_metadata, |r| {
            matches!(r, LimitError::TooDeep { .. })
        }),
        ("float 1e17", noted(json!({ "n": 1e17 })), |r| {
            matches!(r, LimitError::FloatReadsAsInteger { .. })
        }),
        (
            "event too large",
            noted(json!({ "text": too_large })),
            |r| matches!(r, LimitError::TooLarge { .. }),
        ),
        (
            "empty type",
            NewEvent::new(RawEvent::new("", 1, json!({}))),
            |r| matches!(r, LimitError::EventType { .. }),
        ),
        (
            "control character in type",
            NewEvent::new(RawEvent::new("Noted\n", 1, json!({}))),
            |r| matches!(r, LimitError::EventType { .. }),
        ),
        (
            "long type",
            NewEvent::new(RawEvent::new(
                "x".repeat(MAX_EVENT_TYPE_BYTES + 1),
                1,
                json!({}),
            )),
            |r| matches!(r, LimitError::EventType { .. }),
        ),
        (
            "schema version",
            NewEvent::new(RawEvent::new("Noted", MAX_SCHEMA_VERSION + 1, json!({}))),
            |r| matches!(r, LimitError::SchemaVersion { .. }),
        ),
    ];
    for (what, bad, check) in cases {
        assert_refused(&store, what, bad, check).await;
    }

    // A NaN encodes as `null`, which no reader of `Measured` can decode.
    let stream = StreamId::new("measurement", "nan").unwrap();
    let result = store
        .append(
            &stream,
            ExpectedVersion::NoStream,
            vec![NewEvent::new(Measured { value: f64::NAN })],
        )
        .await;
    assert!(
        matches!(
            result,
            Err(AppendError::Unstorable { index: 0, ref reason, .. })
                if matches!(reason, LimitError::Unreadable { .. })
        ),
        "a NaN: expected an unreadable event refused, got {result:?}"
    );
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL
    );
}

/// A batch larger than one append may take is refused whole, though each event fits.
pub async fn batch_over_the_size_limit_is_refused<S: Store>(store: S) {
    let stream = StreamId::new("note", "big").unwrap();
    let each = MAX_EVENT_BYTES - 1024;
    let count = MAX_BATCH_BYTES / each + 1;
    let text = "y".repeat(each);
    let events = (0..count).map(|_| noted(json!({ "t": text }))).collect();
    let result = store.append(&stream, ExpectedVersion::Any, events).await;
    assert!(
        matches!(result, Err(AppendError::BatchTooLarge { events, max, .. }) if events == count && max == MAX_BATCH_BYTES),
        "expected the batch refused as too large, got {result:?}"
    );
    assert_eq!(
        store.stream_version(&stream).await.unwrap(),
        Version::INITIAL
    );
}

/// An expected version past the last one any stream can reach is a conflict, typed, on
/// every store (not an arithmetic overflow in the store's backend).
pub async fn expected_version_beyond_the_last_conflicts<S: Store>(store: S) {
    let stream = StreamId::new("note", "far").unwrap();
    for expected in [Version::MAX, Version::new(u64::MAX)] {
        let result = store
            .append(
                &stream,
                ExpectedVersion::Exact(expected),
                vec![noted(json!({}))],
            )
            .await;
        assert!(
            matches!(result, Err(AppendError::Conflict { actual, .. }) if actual == Version::INITIAL),
            "expected version {expected}: expected a conflict, got {result:?}"
        );
    }
}

/// What a store accepts it reads back exactly as written, through every read path: the
/// deepest nesting allowed, extreme and subnormal floats, 64-bit integers, escapes and
/// non-ASCII text, in payloads and metadata, and an event just under the size limit.
pub async fn accepted_values_read_back_identically<S: Store>(store: S) {
    let stream = StreamId::new("note", "edges").unwrap();
    let payload = json!({
        "deepest": nested(MAX_DEPTH - 1),
        "floats": [f64::MAX, f64::MIN, 1.7e308, 5e-324, f64::MIN_POSITIVE, f64::EPSILON, 0.1,
                   9_999_999_999_999_998.0, 2e19, -1e300, 1.0, 123.456],
        "integers": [u64::MAX, i64::MIN, 0, -1],
        "text": "quote \" backslash \\ tab \t bell \u{7} del \u{7f} ünïcödé 🦀 \u{2028}",
        "": "empty key",
    });
    let mut trace = Metadata::new().with_actor("zoë \u{1}");
    trace.user.insert("trace".to_owned(), nested(MAX_DEPTH - 1));
    trace.user.insert("n".to_owned(), json!(f64::MAX));
    let written = vec![
        noted(payload).with_metadata(trace),
        noted(json!({ "text": "z".repeat(MAX_EVENT_BYTES - 64) })),
    ];
    let committed = store
        .append(&stream, ExpectedVersion::NoStream, written.clone())
        .await
        .unwrap_or_else(|e| panic!("values every store keeps were refused: {e:?}"));

    let from_stream: Vec<_> = store
        .read_stream::<RawEvent>(&stream, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let from_log = read_log::<S, RawEvent>(
        &store,
        Position::START,
        EventFilter::all().with_categories(["note"]),
        written.len(),
    )
    .await;
    for (path, read) in [("stream", from_stream), ("log", from_log)] {
        assert_eq!(read.len(), written.len(), "{path}");
        for (read, written) in read.iter().zip(&written) {
            assert!(
                read.event.payload == written.event.payload,
                "{path}: a payload came back changed"
            );
            assert_eq!(read.metadata, written.metadata, "{path}: metadata changed");
        }
    }
    let found = store
        .find_event::<RawEvent>(committed.events[0].event_id)
        .await
        .unwrap()
        .unwrap();
    assert!(found.event.payload == written[0].event.payload);

    // Typed events too: floats at the ends of their range.
    let measured = StreamId::new("measurement", "edges").unwrap();
    let values = [f64::MAX, f64::MIN, 5e-324, 1.7e308, 0.1 + 0.2];
    store
        .append(
            &measured,
            ExpectedVersion::NoStream,
            values
                .iter()
                .map(|&value| NewEvent::new(Measured { value }))
                .collect(),
        )
        .await
        .unwrap();
    let read: Vec<_> = store
        .read_stream::<Measured>(&measured, Version::INITIAL)
        .try_collect()
        .await
        .unwrap();
    let read: Vec<f64> = read.iter().map(|e| e.event.value).collect();
    assert_eq!(
        read.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "floats came back changed: {read:?}"
    );
}
