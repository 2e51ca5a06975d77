//! Decode errors never quote stored values: whatever serde says about a payload that does
//! not fit (a wrong type, a bad number, an unknown variant or field, a custom message from a
//! `Deserialize` impl), the error that reaches the caller, its `Debug` and every error in
//! its source chain keep what is wrong and where, never the value. Stored payloads are
//! personal data and secrets, and errors end up in logs.
//!
//! Every case runs through both store paths of the derive: `decode` (a JSON value, as the
//! in-memory store holds it) and `decode_json` (JSON text, as PostgreSQL hands it over).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed step is a failed test"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "an upcast step takes the stored event by value"
)]

use std::error::Error;

use es_core::{DecodeError, DomainEvent, RawEvent, UpcastError};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Value, json};

/// Every secret below carries this marker in each of its parts, so that any part of one
/// that slipped through shows.
const MARK: &str = "SECRET";

/// Values an attacker could store: quotes, backticks, escaped quotes, serde's own
/// `, expected ` separator, non-ASCII text.
const HOSTILE: &[&str] = &[
    "SECRET ada@example.com",
    "SECRET\"SECRET\"SECRET",
    "SECRET`SECRET`SECRET",
    "SECRET, expected u64, expected SECRET",
    "SECRET\\\"SECRET\\\"SECRET",
    "SECRET`, expected `SECRET\", expected \"SECRET",
    "SECRET\", expected one of `A`, `B` SECRET",
    "SECRET pässwörd 🔑 SECRET",
    "SECRET at line 1 column 2",
    "SECRET\nSECRET\u{0007}SECRET",
];

/// A numeric secret (a PIN, an account number) and a fractional one.
const PIN: i64 = 987_654_321;
const RATE: f64 = 98_765.432_1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Tier {
    Gold,
    Silver,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Address {
    city: String,
    zip: Option<u32>,
}

/// A user type whose `Deserialize` quotes what it refuses, as many hand-written ones do.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Email(String);

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.ends_with("@example.org") {
            Ok(Self(text))
        } else {
            Err(D::Error::custom(format!(
                "`{text}` is not an address at example.org"
            )))
        }
    }
}

/// Version 1 of `Registered` stored the credit as text.
#[derive(Deserialize)]
struct RegisteredV1 {
    credit: u64,
}

impl From<RegisteredV1> for CustomerEvent {
    fn from(old: RegisteredV1) -> Self {
        Self::Scored {
            score: f64::from(u32::try_from(old.credit).unwrap_or(u32::MAX)),
        }
    }
}

/// An upcaster that reads the old payload through serde, with `?` on serde's error.
fn renamed_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    #[derive(Deserialize)]
    struct Old {
        #[allow(dead_code, reason = "only its type matters here")]
        name: u64,
    }
    let _old: Old = serde_json::from_value(event.payload.clone())?;
    Ok(event.with_version(2))
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CustomerEvent {
    #[event(version = 2)]
    Registered {
        email: Email,
        age: u8,
        credit: u64,
        tier: Tier,
        address: Address,
        id: uuid::Uuid,
        born: Option<chrono::NaiveDate>,
        nickname: Option<String>,
    },
    #[event(version = 2, upcast(from = 1, typed = RegisteredV1))]
    Scored {
        score: f64,
    },
    #[event(version = 2, upcast(from = 1, with = renamed_v1_to_v2))]
    Renamed {
        name: String,
    },
    Closed,
}

/// A payload that decodes as `Registered`.
fn registered() -> Value {
    json!({
        "email": "ada@example.org",
        "age": 36,
        "credit": 100,
        "tier": "Gold",
        "address": { "city": "London", "zip": null },
        "id": "67e55044-10b1-426f-9247-bb680e5fe0c8",
        "born": "1815-12-10",
        "nickname": null
    })
}

/// `registered()` with `field` (a `/`-separated path) set to `value`.
fn registered_with(path: &str, value: Value) -> Value {
    let mut payload = registered();
    *payload.pointer_mut(path).expect("a field of the payload") = value;
    payload
}

/// Every `Display` and `Debug` along the error's source chain.
fn rendered(error: &(dyn Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        out.push_str(&format!("{error}\n{error:?}\n{error:#?}\n"));
        next = error.source();
    }
    out
}

/// Fails if `text` shows any part of `secret`: the marker, its non-ASCII characters, or
/// the secret itself in any of the forms a formatter writes it.
#[track_caller]
fn assert_no_trace(text: &str, secret: &str) {
    assert!(!text.contains(MARK), "the secret shows:\n{text}");
    assert!(!text.contains(secret), "the secret shows:\n{text}");
    assert!(
        !text.contains(&format!("{secret:?}")[1..]),
        "the escaped secret shows:\n{text}"
    );
    for c in secret.chars().filter(|c| !c.is_ascii()) {
        assert!(!text.contains(c), "{c:?} of the secret shows:\n{text}");
    }
}

/// Decodes `payload` as `event_type` v`version` from a value and from text, and checks that
/// both fail naming the event, its version and `what` (the part of serde's message that
/// comes from the code), without any trace of `secret`.
#[track_caller]
fn assert_redacted(event_type: &str, version: u32, payload: &Value, secret: &str, what: &str) {
    let text = payload.to_string();
    assert!(
        text.contains(MARK) || text.contains(secret),
        "the payload holds the secret"
    );
    let from_value = CustomerEvent::decode(event_type, version, payload.clone()).unwrap_err();
    let from_text = CustomerEvent::decode_json(event_type, version, &text).unwrap_err();
    for error in [from_value, from_text] {
        assert_redacted_error(&error, event_type, version, secret, what);
    }
}

#[track_caller]
fn assert_redacted_error(
    error: &DecodeError,
    event_type: &str,
    version: u32,
    secret: &str,
    what: &str,
) {
    let shown = rendered(error);
    assert_no_trace(&shown, secret);
    assert_eq!(error.event_type(), event_type);
    let top = error.to_string();
    assert!(top.contains(&format!("`{event_type}`")), "{top}");
    assert!(top.contains(&format!("schema version {version}")), "{top}");
    assert!(shown.contains(what), "{what:?} is missing from:\n{shown}");
}

#[test]
fn the_base_payload_decodes() {
    let event = CustomerEvent::decode("Registered", 2, registered()).unwrap();
    assert!(matches!(event, CustomerEvent::Registered { age: 36, .. }));
}

#[test]
fn a_string_of_the_wrong_type_is_not_quoted() {
    for secret in HOSTILE {
        let payload = registered_with("/credit", json!(secret));
        assert_redacted(
            "Registered",
            2,
            &payload,
            secret,
            "invalid type: string, expected u64",
        );
    }
}

#[test]
fn numbers_of_the_wrong_type_or_range_are_not_quoted() {
    let pin = &PIN.to_string();
    let cases = [
        (
            "/address/city",
            json!(PIN),
            "invalid type: integer, expected a string",
        ),
        ("/age", json!(PIN), "invalid value: integer, expected u8"),
        (
            "/credit",
            json!(-PIN),
            "invalid value: integer, expected u64",
        ),
        (
            "/credit",
            json!(RATE),
            "invalid type: floating point, expected u64",
        ),
        (
            "/address/zip",
            json!(-PIN),
            "invalid value: integer, expected u32",
        ),
    ];
    for (path, value, what) in cases {
        let payload = registered_with(path, value);
        let secret = if path == "/credit" && what.contains("floating") {
            "98765"
        } else {
            pin.as_str()
        };
        let text = payload.to_string();
        for error in [
            CustomerEvent::decode("Registered", 2, payload.clone()).unwrap_err(),
            CustomerEvent::decode_json("Registered", 2, &text).unwrap_err(),
        ] {
            let shown = rendered(&error);
            assert!(!shown.contains(secret), "{secret} shows:\n{shown}");
            assert!(!shown.contains("654321"), "the secret shows:\n{shown}");
            assert!(shown.contains(what), "{what:?} is missing from:\n{shown}");
        }
    }
}

#[test]
fn other_types_name_only_their_kind() {
    let cases = [
        (json!(true), "invalid type: boolean, expected u64"),
        (json!([MARK]), "invalid type: sequence, expected u64"),
        (json!({ MARK: MARK }), "invalid type: map, expected u64"),
        (Value::Null, "invalid type: null, expected u64"),
    ];
    for (value, what) in cases {
        let mut payload = registered_with("/credit", value);
        payload["ignored"] = json!(MARK);
        assert_redacted("Registered", 2, &payload, MARK, what);
    }
}

#[test]
fn an_unknown_variant_is_not_named() {
    for secret in HOSTILE {
        let payload = registered_with("/tier", json!(secret));
        assert_redacted(
            "Registered",
            2,
            &payload,
            secret,
            "unknown variant, expected `Gold` or `Silver`",
        );
    }
}

#[test]
fn an_unknown_field_is_not_named() {
    for secret in HOSTILE {
        let payload = registered_with("/address", json!({ "city": "London", *secret: 1 }));
        assert_redacted(
            "Registered",
            2,
            &payload,
            secret,
            "unknown field, expected `city` or `zip`",
        );
    }
}

#[test]
fn a_missing_field_is_named() {
    let mut payload = registered();
    payload.as_object_mut().unwrap().remove("credit");
    payload["ignored"] = json!(HOSTILE[1]);
    assert_redacted(
        "Registered",
        2,
        &payload,
        HOSTILE[1],
        "missing field `credit`",
    );
}

#[test]
fn a_duplicate_field_is_named() {
    let text = r#"{"email":"ada@example.org","age":36,"credit":1,"credit":"SECRET\"`","tier":"Gold",
        "address":{"city":"SECRET"},"id":"67e55044-10b1-426f-9247-bb680e5fe0c8","born":null,"nickname":null}"#;
    let error = CustomerEvent::decode_json("Registered", 2, text).unwrap_err();
    assert_redacted_error(&error, "Registered", 2, MARK, "duplicate field `credit`");
}

#[test]
fn custom_messages_lose_every_quoted_part() {
    for secret in HOSTILE {
        let payload = registered_with("/email", json!(secret));
        assert_redacted(
            "Registered",
            2,
            &payload,
            secret,
            "is not an address at example.org",
        );
    }
}

#[test]
fn library_messages_lose_the_values_they_quote() {
    // uuid quotes the first character it refuses; make that one the secret.
    let bad_uuid = format!("🔑{}", "0".repeat(32));
    assert_eq!(bad_uuid.len(), 36);
    let payload = registered_with("/id", json!(bad_uuid));
    assert_redacted("Registered", 2, &payload, "🔑", "invalid character");

    for secret in HOSTILE {
        let payload = registered_with("/born", json!(secret));
        assert_redacted(
            "Registered",
            2,
            &payload,
            secret,
            "input contains invalid characters",
        );
    }
}

#[test]
fn syntax_errors_say_where_without_the_text() {
    let texts: [(&str, &str); 4] = [
        (r#"{"credit": "SECRET"#, "EOF while parsing a string"),
        (&format!("{} SECRET", registered()), "trailing characters"),
        (r#"{"SECRET": SECRET}"#, "expected value"),
        (r#"{"credit": "SECRET\q"}"#, "invalid escape"),
    ];
    for (text, what) in texts {
        let error = CustomerEvent::decode_json("Registered", 2, text).unwrap_err();
        assert_redacted_error(&error, "Registered", 2, MARK, what);
        assert!(rendered(&error).contains("at line 1 column"), "{error:?}");
    }
}

#[test]
fn a_unit_event_with_a_payload_quotes_nothing() {
    for secret in HOSTILE {
        let payload = json!({ *secret: secret });
        assert_redacted("Closed", 1, &payload, secret, "expected an empty object");
    }
}

#[test]
fn typed_upcasts_quote_nothing() {
    for secret in HOSTILE {
        let payload = json!({ "credit": secret });
        assert_redacted(
            "Scored",
            1,
            &payload,
            secret,
            "invalid type: string, expected u64",
        );
    }
}

#[test]
fn json_upcasts_quote_nothing() {
    for secret in HOSTILE {
        let payload = json!({ "name": secret });
        let text = payload.to_string();
        for error in [
            CustomerEvent::decode("Renamed", 1, payload.clone()).unwrap_err(),
            CustomerEvent::decode_json("Renamed", 1, &text).unwrap_err(),
        ] {
            assert!(
                matches!(&error, DecodeError::Upcast { version: 1, .. }),
                "{error:?}"
            );
            assert_redacted_error(
                &error,
                "Renamed",
                1,
                secret,
                "invalid type: string, expected u64",
            );
        }
    }
}
