//! Upcasting declared on the derive: old names and versions of stored events decode into
//! today's events, through JSON steps, typed steps and aliases.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed step is a failed test"
)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "an upcast step takes the stored event by value, whether or not it uses it"
)]

use es_core::{DecodeError, DomainEvent, RawEvent, UpcastError};
use serde::Deserialize;
use serde_json::{Value, json};

/// Version 1 called the carrier `by`.
fn shipped_v1_to_v2(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.rename_field("by", "carrier")?.with_version(2))
}

/// Version 2 had no tracking number.
fn shipped_v2_to_v3(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.with_field("tracking", "unknown")?.with_version(3))
}

/// Version 1 stored the amount as text.
#[derive(Deserialize)]
struct PaidV1 {
    amount: String,
}

impl From<PaidV1> for OrderEvent {
    fn from(old: PaidV1) -> Self {
        Self::Paid {
            cents: old.amount.parse().unwrap_or_default(),
        }
    }
}

/// `Refunded` v1 carried a signed delta (positive for payments): it is now two event types.
fn split_balance_change(event: RawEvent) -> Result<RawEvent, UpcastError> {
    let delta = event.payload["delta"]
        .as_i64()
        .ok_or_else(|| UpcastError::new("no delta"))?;
    Ok(if delta < 0 {
        RawEvent::new("Refunded", 2, json!({ "cents": -delta }))
    } else {
        RawEvent::new("OrderPaid", 2, json!({ "cents": delta }))
    })
}

fn broken_step(_: RawEvent) -> Result<RawEvent, UpcastError> {
    Err(UpcastError::new("this step always fails"))
}

fn circular_step(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event)
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum OrderEvent {
    #[event(
        name = "OrderShipped",
        version = 3,
        alias = "Shipped",
        upcast(from = 1, with = shipped_v1_to_v2),
        upcast(from = 2, with = shipped_v2_to_v3)
    )]
    Shipped { carrier: String, tracking: String },
    #[event(
        name = "OrderPaid",
        version = 2,
        alias = "BalanceChanged",
        upcast(from = 1, typed = PaidV1)
    )]
    Paid { cents: i64 },
    #[event(version = 2, upcast(from = 1, with = split_balance_change))]
    Refunded { cents: i64 },
}

/// Struct events upcast the same way.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize, DomainEvent)]
#[event(name = "NoteTaken", version = 2, alias = "Noted", upcast(from = 1, with = note_v1))]
struct NoteTaken {
    text: String,
}

fn note_v1(event: RawEvent) -> Result<RawEvent, UpcastError> {
    Ok(event.rename_field("body", "text")?.with_version(2))
}

/// One event with a broken step and one with a circular step.
#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum Faulty {
    #[event(version = 2, upcast(from = 1, with = broken_step))]
    Broken,
    #[event(version = 2, upcast(from = 1, with = circular_step))]
    Circular,
}

fn decode<E: DomainEvent>(
    event_type: &str,
    version: u32,
    payload: Value,
) -> Result<E, DecodeError> {
    // Both ways in must agree: from a value, and from text as a database hands it over.
    let from_text = E::decode_json(event_type, version, &payload.to_string());
    let from_value = E::decode(event_type, version, payload);
    match (&from_value, &from_text) {
        (Ok(_), Ok(_)) | (Err(_), Err(_)) => {}
        _ => panic!("decode and decode_json disagree on {event_type} v{version}"),
    }
    from_value
}

#[test]
fn json_steps_chain_up_to_the_current_version() {
    let shipped = OrderEvent::Shipped {
        carrier: "ups".into(),
        tracking: "unknown".into(),
    };
    assert_eq!(
        decode::<OrderEvent>("OrderShipped", 1, json!({ "by": "ups" })).unwrap(),
        shipped
    );
    assert_eq!(
        decode::<OrderEvent>("OrderShipped", 2, json!({ "carrier": "ups" })).unwrap(),
        shipped
    );
    assert_eq!(
        decode::<OrderEvent>(
            "OrderShipped",
            3,
            json!({ "carrier": "ups", "tracking": "unknown" })
        )
        .unwrap(),
        shipped
    );
}

#[test]
fn aliases_decode_under_the_old_name_with_its_steps() {
    assert_eq!(
        decode::<OrderEvent>("Shipped", 1, json!({ "by": "dhl" })).unwrap(),
        OrderEvent::Shipped {
            carrier: "dhl".into(),
            tracking: "unknown".into()
        }
    );
    assert!(OrderEvent::EVENT_TYPES.contains(&"Shipped"));
    assert!(OrderEvent::decodes("BalanceChanged"));
}

#[test]
fn a_typed_step_decodes_the_old_shape_and_converts_it() {
    assert_eq!(
        decode::<OrderEvent>("OrderPaid", 1, json!({ "amount": "250" })).unwrap(),
        OrderEvent::Paid { cents: 250 }
    );
}

#[test]
fn a_step_can_split_one_old_type_into_several() {
    assert_eq!(
        decode::<OrderEvent>("Refunded", 1, json!({ "delta": -40 })).unwrap(),
        OrderEvent::Refunded { cents: 40 }
    );
    assert_eq!(
        decode::<OrderEvent>("Refunded", 1, json!({ "delta": 70 })).unwrap(),
        OrderEvent::Paid { cents: 70 }
    );
}

#[test]
fn struct_events_upcast_too() {
    assert_eq!(
        decode::<NoteTaken>("Noted", 1, json!({ "body": "hello" })).unwrap(),
        NoteTaken {
            text: "hello".into()
        }
    );
    assert_eq!(NoteTaken::EVENT_TYPES, ["NoteTaken", "Noted"]);
}

#[test]
fn a_version_without_a_path_is_a_typed_error() {
    match decode::<OrderEvent>("OrderShipped", 4, json!({})) {
        Err(DecodeError::UnsupportedVersion {
            event_type,
            version,
            supported,
        }) => assert_eq!(
            (event_type.as_str(), version, supported),
            ("OrderShipped", 4, 3)
        ),
        other => panic!("expected an unsupported version, got {other:?}"),
    }
    assert!(matches!(
        decode::<OrderEvent>("Refunded", 7, json!({})),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        decode::<OrderEvent>("Exploded", 1, json!({})),
        Err(DecodeError::UnknownEventType { .. })
    ));
}

#[test]
fn a_failing_step_names_the_type_and_version_it_read() {
    match decode::<Faulty>("Broken", 1, json!({})) {
        Err(DecodeError::Upcast {
            event_type,
            version,
            source,
        }) => {
            assert_eq!((event_type.as_str(), version), ("Broken", 1));
            assert_eq!(source.to_string(), "this step always fails");
        }
        other => panic!("expected an upcast error, got {other:?}"),
    }
    assert!(matches!(
        decode::<OrderEvent>("OrderShipped", 1, json!({ "carrier": "ups" })),
        Err(DecodeError::Upcast { version: 1, .. })
    ));
}

#[test]
fn circular_steps_are_stopped() {
    assert!(matches!(
        decode::<Faulty>("Circular", 1, json!({})),
        Err(DecodeError::UpcastLoop { version: 1, .. })
    ));
}

#[test]
fn current_events_still_encode_at_their_version() {
    let paid = OrderEvent::Paid { cents: 5 };
    assert_eq!(paid.schema_version(), 2);
    assert_eq!(paid.encode().unwrap(), json!({ "cents": 5 }));
    assert_eq!(
        decode::<OrderEvent>("OrderPaid", 2, json!({ "cents": 5 })).unwrap(),
        paid
    );
}
