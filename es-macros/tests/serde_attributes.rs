//! Every `#[serde(...)]` placement the derives accept is applied to what is stored: each
//! test encodes an event (or a snapshot), compares the JSON with what the attribute asks
//! for, and reads it back, from a value and from JSON text as stores do. The placements
//! the derives refuse are locked in `tests/ui/domain_event/serde_*.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: the helpers' failed encode or decode is a failed test"
)]

use std::collections::BTreeMap;
use std::fmt::Debug;

use es_core::{AggregateType, DecodeError, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `event` is stored as `payload`, and `payload` reads back as `event`.
#[track_caller]
fn stored_as<E: DomainEvent + PartialEq + Debug>(event: &E, payload: &Value) {
    assert_eq!(&event.encode().unwrap(), payload, "encoding {event:?}");
    let (name, version) = (event.event_type(), event.schema_version());
    assert_eq!(&E::decode(name, version, payload.clone()).unwrap(), event);
    assert_eq!(
        &E::decode_json(name, version, &payload.to_string()).unwrap(),
        event
    );
}

/// `payload`, stored under `name` at version 1, reads as `event` (a form encode never writes).
#[track_caller]
fn reads_as<E: DomainEvent + PartialEq + Debug>(name: &str, payload: &Value, event: &E) {
    assert_eq!(&E::decode(name, 1, payload.clone()).unwrap(), event);
    assert_eq!(
        &E::decode_json(name, 1, &payload.to_string()).unwrap(),
        event
    );
}

mod cents {
    //! Money stored as a string of cents, for `with`, `serialize_with` and `deserialize_with`.

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(cents: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&cents.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn three() -> u8 {
    3
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

/// Field attributes on struct variants: all of serde's, through the payload helpers.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum FieldEvent {
    Renamed {
        #[serde(rename = "ownerName", alias = "owner")]
        owner_name: String,
        #[serde(rename(serialize = "out", deserialize = "in"))]
        both_ways: u8,
    },
    Defaulted {
        #[serde(default)]
        plain: u8,
        #[serde(default = "three")]
        from_fn: u8,
    },
    Skipped {
        kept: u8,
        #[serde(skip)]
        never: u8,
        #[serde(skip_serializing)]
        read_only: u8,
        #[serde(skip_deserializing)]
        write_only: u8,
        #[serde(skip_serializing_if = "is_zero", default)]
        unless_zero: u8,
    },
    Converted {
        #[serde(with = "cents")]
        with: i64,
        #[serde(
            serialize_with = "cents::serialize",
            deserialize_with = "cents::deserialize"
        )]
        split: i64,
    },
    Flattened {
        id: u8,
        #[serde(flatten)]
        rest: BTreeMap<String, u8>,
    },
    /// `with` and friends on a newtype variant's field.
    Amount(#[serde(with = "cents")] i64),
    Split(
        #[serde(
            serialize_with = "cents::serialize",
            deserialize_with = "cents::deserialize"
        )]
        i64,
    ),
}

#[test]
fn rename_and_alias_on_a_variant_field() {
    let event = FieldEvent::Renamed {
        owner_name: "ada".into(),
        both_ways: 1,
    };
    // `rename(serialize, deserialize)` writes one name and reads the other.
    assert_eq!(
        event.encode().unwrap(),
        json!({ "ownerName": "ada", "out": 1 })
    );
    reads_as("Renamed", &json!({ "ownerName": "ada", "in": 1 }), &event);
    reads_as("Renamed", &json!({ "owner": "ada", "in": 1 }), &event);
}

#[test]
fn defaults_on_a_variant_field() {
    let event = FieldEvent::Defaulted {
        plain: 1,
        from_fn: 2,
    };
    stored_as(&event, &json!({ "plain": 1, "from_fn": 2 }));
    reads_as(
        "Defaulted",
        &json!({}),
        &FieldEvent::Defaulted {
            plain: 0,
            from_fn: 3,
        },
    );
}

#[test]
fn skips_on_a_variant_field() {
    let event = FieldEvent::Skipped {
        kept: 1,
        never: 2,
        read_only: 3,
        write_only: 4,
        unless_zero: 0,
    };
    assert_eq!(
        event.encode().unwrap(),
        json!({ "kept": 1, "write_only": 4 })
    );
    reads_as(
        "Skipped",
        &json!({ "kept": 1, "never": 2, "read_only": 3, "write_only": 4, "unless_zero": 5 }),
        &FieldEvent::Skipped {
            kept: 1,
            never: 0,
            read_only: 3,
            write_only: 0,
            unless_zero: 5,
        },
    );
    let event = FieldEvent::Skipped {
        kept: 1,
        never: 0,
        read_only: 0,
        write_only: 0,
        unless_zero: 5,
    };
    assert_eq!(
        event.encode().unwrap(),
        json!({ "kept": 1, "write_only": 0, "unless_zero": 5 })
    );
}

#[test]
fn with_functions_on_a_variant_field() {
    let event = FieldEvent::Converted {
        with: 150,
        split: -2,
    };
    stored_as(&event, &json!({ "with": "150", "split": "-2" }));
}

#[test]
fn flatten_on_a_variant_field() {
    let event = FieldEvent::Flattened {
        id: 1,
        rest: BTreeMap::from([("a".into(), 2), ("b".into(), 3)]),
    };
    stored_as(&event, &json!({ "id": 1, "a": 2, "b": 3 }));
}

#[test]
fn with_functions_on_a_newtype_field() {
    stored_as(&FieldEvent::Amount(7), &json!("7"));
    stored_as(&FieldEvent::Split(8), &json!("8"));
    assert!(matches!(
        FieldEvent::decode("Amount", 1, json!(7)),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

/// The way out the refusals suggest for container attributes: a variant that wraps a struct
/// stores that struct's own serde encoding, container attributes included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Opened {
    owner_name: String,
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum WrappingEvent {
    Opened(Opened),
}

#[test]
fn container_attributes_of_a_wrapped_struct() {
    let event = WrappingEvent::Opened(Opened {
        owner_name: "ada".into(),
    });
    stored_as(&event, &json!({ "ownerName": "ada" }));
    assert!(matches!(
        WrappingEvent::decode("Opened", 1, json!({ "ownerName": "ada", "extra": 1 })),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

/// A struct event with fields is stored as its own serde encoding: container and field
/// attributes are serde's, applied by its derive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
struct Registered {
    user_id: u64,
    #[serde(rename = "who", default)]
    display_name: String,
    #[serde(skip)]
    cached: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "kind")]
struct Tagged {
    n: u8,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(transparent)]
struct Transparent {
    inner: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(default)]
struct AllDefault {
    a: u8,
    b: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(into = "String", try_from = "String")]
struct Converted {
    text: String,
}

impl From<Converted> for String {
    fn from(event: Converted) -> Self {
        format!("<{}>", event.text)
    }
}

impl TryFrom<String> for Converted {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let inner = text.strip_prefix('<').and_then(|t| t.strip_suffix('>'));
        inner
            .map(|text| Self { text: text.into() })
            .ok_or_else(|| format!("not in angle brackets: {text}"))
    }
}

#[test]
fn container_and_field_attributes_of_a_struct_event() {
    let event = Registered {
        user_id: 7,
        display_name: "Ada".into(),
        cached: 0,
    };
    stored_as(&event, &json!({ "USER_ID": 7, "who": "Ada" }));
    reads_as(
        "Registered",
        &json!({ "USER_ID": 7 }),
        &Registered {
            user_id: 7,
            display_name: String::new(),
            cached: 0,
        },
    );
    assert!(matches!(
        Registered::decode("Registered", 1, json!({ "USER_ID": 7, "extra": 1 })),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

#[test]
fn representation_attributes_of_a_struct_event() {
    stored_as(&Tagged { n: 1 }, &json!({ "kind": "Tagged", "n": 1 }));
    stored_as(&Transparent { inner: "x".into() }, &json!("x"));
    reads_as(
        "AllDefault",
        &json!({ "a": 1 }),
        &AllDefault {
            a: 1,
            b: String::new(),
        },
    );
    stored_as(&Converted { text: "hi".into() }, &json!("<hi>"));
    assert!(matches!(
        Converted::decode("Converted", 1, json!("hi")),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

/// An aggregate's snapshot is its own serde encoding, so serde's container and field
/// attributes shape it.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CounterEvent {
    Added,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize, es_core::AggregateType)]
#[aggregate(name = "counter", command = (), event = CounterEvent, error = std::io::Error)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Counter {
    total_count: u64,
    #[serde(rename = "by", default)]
    last_step: u64,
    #[serde(skip)]
    cached: u8,
}

#[test]
fn container_and_field_attributes_of_an_aggregate_snapshot() {
    let state = Counter {
        total_count: 3,
        last_step: 1,
        cached: 9,
    };
    let snapshot = state.encode_snapshot().unwrap().unwrap();
    assert_eq!(snapshot, json!({ "totalCount": 3, "by": 1 }));
    assert_eq!(
        Counter::decode_snapshot(json!({ "totalCount": 3 }))
            .unwrap()
            .unwrap(),
        Counter {
            total_count: 3,
            last_step: 0,
            cached: 0,
        }
    );
    assert!(
        Counter::decode_snapshot(json!({ "totalCount": 3, "extra": 1 }))
            .unwrap()
            .is_err()
    );
}
