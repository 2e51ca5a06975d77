//! Property test of the store contract's promise about values: whatever the in-memory
//! store (strict, reading back through JSON) and PostgreSQL are given, they accept or refuse
//! it alike, with the same typed reason, and what they accept both read back exactly as
//! written: arbitrary JSON (any text, control characters and NUL included; integers and
//! floats of every magnitude; nesting on both sides of the limit) in payloads and metadata.
//!
//! 96 cases by default, each a round trip to the server; for a deeper search set
//! `PROPTEST_CASES`, e.g. `PROPTEST_CASES=5000 cargo test -p es-postgres --test limits_fuzz`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]

mod common;

use es_core::limits::MAX_DEPTH;
use es_core::{
    AppendError, EventStore, ExpectedVersion, Metadata, NewEvent, RawEvent, StreamId, Version,
};
use es_memory::MemoryEventStore;
use futures_util::TryStreamExt as _;
use proptest::prelude::*;
use serde_json::{Map, Value};

fn float() -> impl Strategy<Value = f64> {
    use proptest::num::f64 as f;
    prop_oneof![
        (f::NORMAL | f::SUBNORMAL | f::ZERO),
        // Around where jsonb starts giving floats back as integers.
        (1e15_f64..3e19_f64).prop_map(f64::trunc),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
    ]
}

/// Any text; now and then one with a NUL, which no store keeps.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => any::<String>().prop_map(|text| text.replace('\u{0}', "")),
        30 => "(?s)[^\u{0}]{0,12}",
        1 => Just("a\u{0}b".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float().prop_map(Value::from),
        text().prop_map(Value::String),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let tree = leaf().prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    });
    // Sometimes buried at the depth limit, or one past it.
    (
        tree,
        prop_oneof![20 => Just(0), 1 => MAX_DEPTH - 2..=MAX_DEPTH + 1],
    )
        .prop_map(|(value, levels)| (0..levels).fold(value, |inner, _| Value::Array(vec![inner])))
}

fn event() -> impl Strategy<Value = NewEvent<RawEvent>> {
    (
        value(),
        prop::option::of(text()),
        prop::collection::vec((text(), value()), 0..3),
        prop_oneof![20 => Just("Noted".to_owned()), 1 => text()],
    )
        .prop_map(|(payload, actor, entries, event_type)| {
            let mut metadata = Metadata::new();
            metadata.actor = actor;
            metadata.user = entries.into_iter().collect();
            NewEvent::new(RawEvent::new(event_type, 1, payload)).with_metadata(metadata)
        })
}

/// What an append's outcome says, to compare the stores: the reason for a refusal
/// (variant and event index), or "stored".
fn outcome<T>(result: &Result<T, AppendError>) -> String {
    match result {
        Ok(_) => "stored".to_owned(),
        Err(AppendError::Unstorable { index, reason, .. }) => {
            let reason = format!("{reason:?}");
            let variant = reason.split([' ', '{', '(']).next().unwrap_or_default();
            format!("unstorable #{index}: {variant}")
        }
        Err(other) => format!("{other:?}"),
    }
}

async fn read_back<S: EventStore>(store: &S, stream: &StreamId) -> Vec<(Value, Metadata)> {
    store
        .read_stream::<RawEvent>(stream, Version::INITIAL)
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event.payload, e.metadata))
        .collect()
}

#[test]
fn both_stores_accept_alike_and_read_back_what_they_accept() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let postgres = runtime.block_on(common::fresh_store());
    let memory = MemoryEventStore::strict();
    let config = ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(96),
        ..ProptestConfig::default()
    };
    proptest!(config, |(events in prop::collection::vec(event(), 1..4))| {
        runtime.block_on(async {
            let stream = StreamId::new("note", &uuid::Uuid::now_v7().simple().to_string()).unwrap();
            let in_memory = memory.append(&stream, ExpectedVersion::NoStream, events.clone()).await;
            let in_postgres = postgres.append(&stream, ExpectedVersion::NoStream, events.clone()).await;
            prop_assert_eq!(outcome(&in_memory), outcome(&in_postgres));
            if in_memory.is_ok() {
                let written: Vec<(Value, Metadata)> = events
                    .iter()
                    .map(|e| (e.event.payload.clone(), e.metadata.clone()))
                    .collect();
                // `==` on JSON numbers is `==` on their values: -0.0 equals 0.0, which
                // PostgreSQL gives back for it (documented in es_core::limits).
                prop_assert!(read_back(&memory, &stream).await == written, "memory changed a value");
                prop_assert!(read_back(&postgres, &stream).await == written, "PostgreSQL changed a value");
            }
            Ok(())
        })?;
    });
    runtime.block_on(common::drop_schema(postgres));
}
