//! Property tests of derive-generated decoding and upcasting on arbitrary input.
//!
//! - `decode` (a JSON value) and `decode_json` (JSON text, whole or cut and spliced) of any
//!   event type name and version never panic: they give an event or a `DecodeError`, and an
//!   event decoded once encodes and decodes to itself;
//! - a failure never shows any stored string: every generated string holds non-ASCII
//!   marker characters between its hostile ASCII parts (quotes, backticks, serde's
//!   `, expected ` separator), and no error message is anything but ASCII, so a leaked
//!   fragment of any length beyond a few characters shows;
//! - upcast chains (JSON steps, typed steps, aliases) and `RawEvent::rename_field` /
//!   `with_field` take any payload without panicking.
//!
//! Each property runs proptest's default 256 cases, which keeps the suite fast; for a
//! deeper search set `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=20000 cargo test -p es-macros --test decode_fuzz`.

#![allow(
    clippy::needless_pass_by_value,
    reason = "an upcast step takes the stored event by value"
)]

use std::error::Error;

use es_core::{DecodeError, DomainEvent, RawEvent, UpcastError};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Channel {
    Email,
    Sms { number: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Address {
    city: String,
    zip: Option<u32>,
}

/// `Relocated` version 2 kept the address as one line.
#[derive(Deserialize)]
struct RelocatedV2 {
    line: String,
}

impl From<RelocatedV2> for Fuzzed {
    fn from(old: RelocatedV2) -> Self {
        Self::Relocated {
            address: Address {
                city: old.line,
                zip: None,
            },
        }
    }
}

/// `Relocated` version 1 (stored as `Moved`) called the line `to`.
fn relocated_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.rename_field("to", "line")?.with_version(2))
}

/// `Registered` version 1 had no tags.
fn registered_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event
        .with_field("tags", Value::Array(Vec::new()))?
        .with_version(2))
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum Fuzzed {
    #[event(version = 2, upcast(from = 1, with = registered_v1_to_v2))]
    Registered {
        name: String,
        age: u8,
        balance: i64,
        ratio: f64,
        address: Option<Address>,
        channel: Channel,
        tags: Vec<String>,
    },
    Noted(String),
    Counted(u64),
    Closed,
    #[event(
        version = 3,
        alias = "Moved",
        upcast(from = 1, with = relocated_v1_to_v2),
        upcast(from = 2, typed = RelocatedV2)
    )]
    Relocated {
        address: Address,
    },
}

/// Never in an error message: every generated string holds some.
const MARKERS: &[char] = &['é', '🔑', 'ß', '\u{202e}', '\u{feff}', 'Ω'];

/// A string an attacker could store: hostile ASCII parts, each followed by a marker.
fn secret() -> impl Strategy<Value = String> {
    let part = prop_oneof![
        Just("\"".to_owned()),
        Just("`".to_owned()),
        Just("\\\"".to_owned()),
        Just(", expected ".to_owned()),
        Just("`, expected `".to_owned()),
        Just(" at line 1 column 2".to_owned()),
        Just("<redacted>".to_owned()),
        "[ -~]{0,3}",
    ];
    let marker = prop::sample::select(MARKERS);
    prop::collection::vec((part, marker), 1..5).prop_map(|parts| {
        parts
            .into_iter()
            .flat_map(|(part, marker)| part.chars().chain([marker]).collect::<Vec<_>>())
            .collect()
    })
}

/// Object keys: the events' own field names (so decoding goes deep), variant names, and
/// secrets (unknown fields).
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(&[
            "name", "age", "balance", "ratio", "address", "channel", "tags", "city", "zip",
            "number", "Sms", "Email", "line", "to",
        ][..])
        .prop_map(str::to_owned),
        1 => secret(),
    ]
}

/// Any JSON value, its strings secrets or variant names.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..300).prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON numbers are finite", |f| {
            serde_json::Number::from_f64(f).map(Value::Number)
        }),
        secret().prop_map(Value::from),
        prop::sample::select(&["Email", "Sms"][..]).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A payload: mostly an object with the events' field names, sometimes any value.
fn payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::collection::vec((key(), json()), 0..9)
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        1 => json(),
    ]
}

/// Stored names: the current ones, the alias, and others.
fn event_type() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&[
            "Registered", "Noted", "Counted", "Closed", "Relocated", "Moved",
        ][..])
        .prop_map(str::to_owned),
        1 => "[A-Za-z]{0,10}",
    ]
}

/// Every `Display` and `Debug` along the error's source chain.
fn rendered(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        out.push_str(&format!("{error}\n{error:?}\n"));
        next = error.source();
    }
    out
}

/// A decode gave an event that encodes and decodes to itself, or an error that shows no
/// stored string.
fn check(result: Result<Fuzzed, DecodeError>) -> Result<(), TestCaseError> {
    match result {
        Ok(event) => {
            let payload = event
                .encode()
                .map_err(|error| TestCaseError::fail(format!("{event:?}: {error}")))?;
            let again = Fuzzed::decode(event.event_type(), event.schema_version(), payload);
            prop_assert_eq!(again.ok(), Some(event));
        }
        Err(error) => {
            let shown = rendered(&error);
            prop_assert!(shown.is_ascii(), "a stored string shows:\n{}", shown);
        }
    }
    Ok(())
}

proptest! {
    #[test]
    fn decoding_a_value_never_panics_nor_leaks(
        event_type in event_type(),
        version in 0u32..5,
        payload in payload(),
    ) {
        check(Fuzzed::decode(&event_type, version, payload))?;
    }

    #[test]
    fn decoding_text_never_panics_nor_leaks(
        event_type in event_type(),
        version in 0u32..5,
        payload in payload(),
        cut in any::<prop::sample::Index>(),
        splice in prop_oneof![Just(String::new()), secret(), "[\\[\\]{}\",:0-9a-z\\\\ ]{0,4}"],
    ) {
        let text = payload.to_string();
        check(Fuzzed::decode_json(&event_type, version, &text))?;
        // The same text cut at any character and spliced with more.
        let at = text
            .char_indices()
            .map(|(at, _)| at)
            .nth(cut.index(text.chars().count().max(1)))
            .unwrap_or(text.len());
        let spliced = format!("{}{splice}{}", &text[..at], &text[at..]);
        check(Fuzzed::decode_json(&event_type, version, &spliced))?;
        check(Fuzzed::decode_json(&event_type, version, &text[..at]))?;
    }

    #[test]
    fn decoding_any_text_never_panics_nor_leaks(
        event_type in event_type(),
        version in 0u32..5,
        text in any::<String>(),
    ) {
        // Arbitrary text is never quoted either: no message holds anything but ASCII.
        check(Fuzzed::decode_json(&event_type, version, &text))?;
    }

    #[test]
    fn raw_event_steps_never_panic(
        payload in payload(),
        from in key(),
        to in key(),
        value in json(),
    ) {
        let raw = RawEvent::new("Relocated", 1, payload.clone());
        match raw.clone().rename_field(&from, &to) {
            Ok(renamed) => {
                let before = payload.get(&from).cloned();
                prop_assert_eq!(renamed.payload.get(&to).cloned(), before);
                if from != to {
                    prop_assert!(renamed.payload.get(&from).is_none());
                }
            }
            Err(error) => {
                prop_assert!(payload.get(&from).is_none(), "{}", error);
            }
        }
        match raw.with_field(&to, value.clone()) {
            Ok(with) => prop_assert_eq!(with.payload.get(&to), Some(&value)),
            Err(error) => prop_assert!(!payload.is_object(), "{}", error),
        }
    }
}
