//! What `#[derive(DomainEvent)]` generates: names, versions, payloads and decoding errors.

use es_core::{DecodeError, DomainEvent};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A field type with serde, kept out of the enum so the enum itself needs no serde derive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Money {
    cents: i64,
    currency: String,
}

fn eur(cents: i64) -> Money {
    Money {
        cents,
        currency: "EUR".into(),
    }
}

/// No serde derive on the enum: only its field types need serde.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum OrderEvent {
    Placed {
        customer: String,
        total: Money,
    },
    #[event(name = "OrderPaid", version = 3)]
    Paid {
        amount: Money,
    },
    Noted(String),
    #[event(version = 2)]
    Cancelled,
    Archived {},
    Forgotten(),
}

fn all_events() -> Vec<OrderEvent> {
    vec![
        OrderEvent::Placed {
            customer: "ada".into(),
            total: eur(500),
        },
        OrderEvent::Paid { amount: eur(500) },
        OrderEvent::Noted("leave at the door".into()),
        OrderEvent::Cancelled,
        OrderEvent::Archived {},
        OrderEvent::Forgotten(),
    ]
}

#[test]
fn names_default_to_the_variant_and_follow_renames() {
    let events = all_events();
    let names: Vec<&str> = events.iter().map(DomainEvent::event_type).collect();
    assert_eq!(
        names,
        [
            "Placed",
            "OrderPaid",
            "Noted",
            "Cancelled",
            "Archived",
            "Forgotten",
        ]
    );
}

#[test]
fn event_types_lists_every_name_in_declaration_order() {
    assert_eq!(
        OrderEvent::EVENT_TYPES,
        [
            "Placed",
            "OrderPaid",
            "Noted",
            "Cancelled",
            "Archived",
            "Forgotten",
        ]
    );
    assert!(OrderEvent::decodes("OrderPaid"));
    assert!(!OrderEvent::decodes("Paid"), "the variant name is replaced");
}

#[test]
fn versions_default_to_one() {
    let versions: Vec<u32> = all_events().iter().map(|e| e.schema_version()).collect();
    assert_eq!(versions, [1, 3, 1, 2, 1, 1]);
}

#[test]
fn struct_variants_encode_as_an_object_of_their_fields_without_a_tag() {
    let event = OrderEvent::Placed {
        customer: "ada".into(),
        total: eur(500),
    };
    assert_eq!(
        event.encode().unwrap(),
        json!({ "customer": "ada", "total": { "cents": 500, "currency": "EUR" } })
    );
    assert_eq!(
        OrderEvent::Paid { amount: eur(7) }.encode().unwrap(),
        json!({ "amount": { "cents": 7, "currency": "EUR" } })
    );
}

#[test]
fn newtype_variants_encode_as_their_field() {
    assert_eq!(
        OrderEvent::Noted("hi".into()).encode().unwrap(),
        json!("hi")
    );
}

#[test]
fn variants_without_fields_encode_as_an_empty_object() {
    for event in [
        OrderEvent::Cancelled,
        OrderEvent::Archived {},
        OrderEvent::Forgotten(),
    ] {
        assert_eq!(event.encode().unwrap(), json!({}), "{event:?}");
    }
}

#[test]
fn variants_without_fields_decode_from_an_empty_object_or_null() {
    for payload in [json!({}), Value::Null] {
        assert_eq!(
            OrderEvent::decode("Cancelled", 2, payload.clone()).unwrap(),
            OrderEvent::Cancelled
        );
        assert_eq!(
            OrderEvent::decode("Archived", 1, payload.clone()).unwrap(),
            OrderEvent::Archived {}
        );
        assert_eq!(
            OrderEvent::decode("Forgotten", 1, payload).unwrap(),
            OrderEvent::Forgotten()
        );
    }
}

#[test]
fn variants_without_fields_reject_any_other_payload() {
    let error = OrderEvent::decode("Cancelled", 2, json!({ "reason": "x" })).unwrap_err();
    assert!(
        matches!(
            &error,
            DecodeError::InvalidPayload { event_type, version: 2, .. } if event_type == "Cancelled"
        ),
        "{error:?}"
    );
}

#[test]
fn every_event_survives_encode_then_decode() {
    for event in all_events() {
        let payload = event.encode().unwrap();
        let decoded =
            OrderEvent::decode(event.event_type(), event.schema_version(), payload).unwrap();
        assert_eq!(decoded, event);
    }
}

#[test]
fn decoding_ignores_unknown_fields() {
    let decoded = OrderEvent::decode(
        "OrderPaid",
        3,
        json!({ "amount": { "cents": 1, "currency": "EUR" }, "added_later": true }),
    )
    .unwrap();
    assert_eq!(decoded, OrderEvent::Paid { amount: eur(1) });
}

#[test]
fn an_unknown_event_type_is_reported_by_name() {
    // The variant name of a renamed variant is not an event type.
    let error = OrderEvent::decode("Paid", 3, json!({})).unwrap_err();
    assert!(
        matches!(&error, DecodeError::UnknownEventType { event_type } if event_type == "Paid"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "unknown event type `Paid`");
}

#[test]
fn another_version_than_the_declared_one_is_unsupported() {
    for stored in [1, 2, 4] {
        let error = OrderEvent::decode(
            "OrderPaid",
            stored,
            json!({ "amount": { "cents": 1, "currency": "EUR" } }),
        )
        .unwrap_err();
        assert!(
            matches!(
                &error,
                DecodeError::UnsupportedVersion { event_type, version, supported: 3 }
                    if event_type == "OrderPaid" && *version == stored
            ),
            "{error:?}"
        );
    }
}

#[test]
fn a_payload_of_the_wrong_shape_is_invalid() {
    let error = OrderEvent::decode("Placed", 1, json!({ "customer": 5 })).unwrap_err();
    let DecodeError::InvalidPayload {
        event_type,
        version,
        source,
    } = &error
    else {
        panic!("expected InvalidPayload, got {error:?}");
    };
    assert_eq!((event_type.as_str(), *version), ("Placed", 1));
    assert!(source.to_string().contains("invalid type"), "{source}");

    let error = OrderEvent::decode("Noted", 1, json!({ "text": "hi" })).unwrap_err();
    assert!(
        matches!(&error, DecodeError::InvalidPayload { event_type, .. } if event_type == "Noted"),
        "{error:?}"
    );
}

mod cents {
    //! A `#[serde(with)]` module: money stored as a string of cents.

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(cents: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&cents.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

fn default_currency() -> String {
    "EUR".into()
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum PaymentEvent {
    Received {
        #[serde(rename = "amountCents", with = "cents")]
        amount: i64,
        #[serde(default = "default_currency")]
        currency: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<String>,
    },
    Refunded(#[serde(with = "cents")] i64),
    /// A field's `#[serde(skip)]` leaves it out of the payload and defaults it on decode.
    Noted {
        text: String,
        #[serde(skip)]
        cached_len: usize,
    },
}

#[test]
fn serde_field_attributes_shape_the_payload() {
    let event = PaymentEvent::Received {
        amount: 1250,
        currency: "USD".into(),
        reference: None,
    };
    assert_eq!(
        event.encode().unwrap(),
        json!({ "amountCents": "1250", "currency": "USD" }),
        "rename + with apply, and skip_serializing_if drops the None"
    );

    let event = PaymentEvent::Received {
        amount: 1,
        currency: "USD".into(),
        reference: Some("inv-1".into()),
    };
    assert_eq!(
        event.encode().unwrap(),
        json!({ "amountCents": "1", "currency": "USD", "reference": "inv-1" })
    );
    assert_eq!(
        PaymentEvent::decode("Received", 1, event.encode().unwrap()).unwrap(),
        event
    );
}

#[test]
fn serde_field_defaults_fill_in_missing_fields() {
    assert_eq!(
        PaymentEvent::decode("Received", 1, json!({ "amountCents": "99" })).unwrap(),
        PaymentEvent::Received {
            amount: 99,
            currency: "EUR".into(),
            reference: None,
        }
    );
}

#[test]
fn serde_attributes_apply_to_newtype_variants() {
    let event = PaymentEvent::Refunded(300);
    assert_eq!(event.encode().unwrap(), json!("300"));
    assert_eq!(
        PaymentEvent::decode("Refunded", 1, json!("300")).unwrap(),
        event
    );
    assert!(matches!(
        PaymentEvent::decode("Refunded", 1, json!(300)),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

#[test]
fn skipped_fields_are_left_out_and_defaulted() {
    let event = PaymentEvent::Noted {
        text: "hi".into(),
        cached_len: 2,
    };
    assert_eq!(event.encode().unwrap(), json!({ "text": "hi" }));
    assert_eq!(
        PaymentEvent::decode("Noted", 1, json!({ "text": "hi" })).unwrap(),
        PaymentEvent::Noted {
            text: "hi".into(),
            cached_len: 0,
        }
    );
}

/// Raw identifiers are stored without their `r#`.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum Keywords {
    r#Type { r#type: String },
}

#[test]
fn raw_identifiers_lose_their_prefix() {
    let event = Keywords::r#Type { r#type: "x".into() };
    assert_eq!(event.event_type(), "Type");
    assert_eq!(event.encode().unwrap(), json!({ "type": "x" }));
    assert_eq!(
        Keywords::decode("Type", 1, json!({ "type": "x" })).unwrap(),
        event
    );
}

/// A struct event: one event type, encoded through its own serde implementation (container
/// attributes included).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[serde(rename_all = "camelCase")]
#[event(name = "user.registered", version = 4)]
struct UserRegistered {
    user_id: u64,
    display_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
struct Tick(u64);

#[derive(Debug, Clone, PartialEq, DomainEvent)]
struct Heartbeat;

#[test]
fn a_struct_is_one_event_type() {
    let event = UserRegistered {
        user_id: 7,
        display_name: "Ada".into(),
    };
    assert_eq!(UserRegistered::EVENT_TYPES, ["user.registered"]);
    assert_eq!(event.event_type(), "user.registered");
    assert_eq!(event.schema_version(), 4);
    assert_eq!(
        event.encode().unwrap(),
        json!({ "userId": 7, "displayName": "Ada" })
    );
    assert_eq!(
        UserRegistered::decode("user.registered", 4, event.encode().unwrap()).unwrap(),
        event
    );

    assert_eq!(Tick::EVENT_TYPES, ["Tick"]);
    assert_eq!(Tick(3).schema_version(), 1);
    assert_eq!(Tick(3).encode().unwrap(), json!(3));
    assert_eq!(Tick::decode("Tick", 1, json!(3)).unwrap(), Tick(3));
}

#[test]
fn a_struct_event_rejects_other_names_versions_and_payloads() {
    assert!(matches!(
        UserRegistered::decode("UserRegistered", 4, json!({})),
        Err(DecodeError::UnknownEventType { event_type }) if event_type == "UserRegistered"
    ));
    assert!(matches!(
        UserRegistered::decode("user.registered", 3, json!({})),
        Err(DecodeError::UnsupportedVersion {
            version: 3,
            supported: 4,
            ..
        })
    ));
    assert!(matches!(
        UserRegistered::decode("user.registered", 4, json!({ "userId": 7 })),
        Err(DecodeError::InvalidPayload { version: 4, .. })
    ));
}

#[test]
fn a_unit_struct_has_the_empty_payload_and_needs_no_serde() {
    assert_eq!(Heartbeat.event_type(), "Heartbeat");
    assert_eq!(Heartbeat.encode().unwrap(), json!({}));
    assert_eq!(
        Heartbeat::decode("Heartbeat", 1, json!({})).unwrap(),
        Heartbeat
    );
    assert_eq!(
        Heartbeat::decode("Heartbeat", 1, Value::Null).unwrap(),
        Heartbeat
    );
    assert!(matches!(
        Heartbeat::decode("Heartbeat", 1, json!([1])),
        Err(DecodeError::InvalidPayload { .. })
    ));
}

/// `crate = "..."`: es-core reached through a re-export, as a facade crate would.
mod facade {
    pub(crate) mod reexported {
        pub(crate) use es_core as core_of_es;
    }
}

mod through_a_facade {
    use crate::facade::reexported::core_of_es::DomainEvent as _;

    #[derive(Debug, Clone, PartialEq, crate::facade::reexported::core_of_es::DomainEvent)]
    #[event(crate = "crate::facade::reexported::core_of_es")]
    enum Event {
        Happened { what: String },
        Nothing,
    }

    #[derive(
        Debug,
        Clone,
        PartialEq,
        serde::Serialize,
        serde::Deserialize,
        crate::facade::reexported::core_of_es::DomainEvent,
    )]
    #[event(crate = "crate::facade::reexported::core_of_es", version = 2)]
    struct Single {
        n: u8,
    }

    #[test]
    fn the_crate_path_is_used_for_every_reference() {
        let event = Event::Happened { what: "x".into() };
        assert_eq!(event.encode().unwrap(), serde_json::json!({ "what": "x" }));
        assert_eq!(
            Event::decode("Happened", 1, serde_json::json!({ "what": "x" })).unwrap(),
            event
        );
        assert_eq!(Event::Nothing.event_type(), "Nothing");
        assert_eq!(Single { n: 1 }.schema_version(), 2);
        assert_eq!(
            Single::decode("Single", 2, serde_json::json!({ "n": 1 })).unwrap(),
            Single { n: 1 }
        );
    }
}

/// Users who also derive serde on the enum get both: serde's tagged encoding for their own
/// use, and the derive's untagged payloads for the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum AlsoSerde {
    Moved {
        #[serde(rename = "to")]
        destination: String,
    },
}

#[test]
fn a_serde_derive_on_the_enum_does_not_change_the_payload() {
    let event = AlsoSerde::Moved {
        destination: "x".into(),
    };
    assert_eq!(event.encode().unwrap(), json!({ "to": "x" }));
    assert_eq!(
        serde_json::to_value(&event).unwrap(),
        json!({ "Moved": { "to": "x" } })
    );
}

mod as_is {
    //! A `#[serde(with)]` module that changes nothing, so that a newtype variant gets a
    //! payload helper of its own.

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(crate) fn serialize<T: Serialize, S: Serializer>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        value.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<T, D::Error> {
        T::deserialize(deserializer)
    }
}

/// An event that contains its own type: the payload helpers cannot name the outer `Self`, so
/// the derive writes the enum's name instead. (The enum needs serde here, as its own field.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
enum Recursive {
    Leaf(u8),
    Pair {
        left: Box<Self>,
        right: Box<Self>,
    },
    #[event(name = "Boxed")]
    Wrapped(#[serde(with = "as_is")] Option<Box<Self>>),
}

#[test]
fn self_in_field_types_refers_to_the_event() {
    let event = Recursive::Pair {
        left: Box::new(Recursive::Leaf(1)),
        right: Box::new(Recursive::Wrapped(None)),
    };
    let payload = event.encode().unwrap();
    assert_eq!(
        payload,
        json!({ "left": { "Leaf": 1 }, "right": { "Wrapped": null } })
    );
    assert_eq!(Recursive::decode("Pair", 1, payload).unwrap(), event);
    let wrapped = Recursive::Wrapped(Some(Box::new(Recursive::Leaf(2))));
    assert_eq!(wrapped.encode().unwrap(), json!({ "Leaf": 2 }));
    assert_eq!(
        Recursive::decode("Boxed", 1, json!({ "Leaf": 2 })).unwrap(),
        wrapped
    );
}

#[test]
fn encoding_errors_name_the_event_type() {
    use std::collections::HashMap;

    #[derive(Debug, Clone, DomainEvent)]
    enum Bad {
        Mapped { by_pair: HashMap<(u8, u8), u8> },
    }

    let event = Bad::Mapped {
        by_pair: HashMap::from([((1, 2), 3)]),
    };
    let error = event.encode().unwrap_err();
    assert_eq!(error.event_type(), "Mapped");
}

#[test]
fn decoding_from_json_text_matches_decoding_from_a_value() {
    for event in all_events() {
        let payload = event.encode().unwrap();
        let text = payload.to_string();
        let from_text =
            OrderEvent::decode_json(event.event_type(), event.schema_version(), &text).unwrap();
        assert_eq!(from_text, event, "from text: {text}");
    }
    // Unit events also accept `null` as text.
    assert_eq!(
        OrderEvent::decode_json("Cancelled", 2, "null").unwrap(),
        OrderEvent::Cancelled
    );
}

#[test]
fn decoding_from_json_text_reports_the_same_errors() {
    assert!(matches!(
        OrderEvent::decode_json("Placed", 1, r#"{"customer": 7}"#),
        Err(DecodeError::InvalidPayload { version: 1, .. })
    ));
    assert!(matches!(
        OrderEvent::decode_json("Placed", 1, "not json"),
        Err(DecodeError::InvalidPayload { .. })
    ));
    assert!(matches!(
        OrderEvent::decode_json("Cancelled", 2, "[1]"),
        Err(DecodeError::InvalidPayload { .. })
    ));
    assert!(matches!(
        OrderEvent::decode_json("OrderPaid", 1, "{}"),
        Err(DecodeError::UnsupportedVersion {
            version: 1,
            supported: 3,
            ..
        })
    ));
    assert!(matches!(
        OrderEvent::decode_json("Exploded", 1, "{}"),
        Err(DecodeError::UnknownEventType { .. })
    ));
}
