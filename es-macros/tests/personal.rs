//! `#[personal(...)]` fields: what the derived `DomainEvent::personal_fields` describes.

use es_core::DomainEvent;
use es_core::personal::{Forgotten, PersonalField, SubjectSource};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// A field type with a default of its own, to see `forgotten = Default` encode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    street: String,
    city: String,
}

impl Default for Address {
    fn default() -> Self {
        Self {
            street: String::new(),
            city: "unknown".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum CustomerEvent {
    Registered {
        customer_id: String,
        #[personal(subject = customer_id, forgotten = "(forgotten)")]
        name: String,
        #[personal(subject = customer_id)]
        #[serde(default)]
        phone: Option<String>,
        #[personal(subject = customer_id, forgotten = Default)]
        #[serde(rename = "postalAddress")]
        address: Address,
        plan: u8,
    },
    // The subject's own rename is what the payload holds, so it is what is described.
    #[event(name = "CustomerMoved")]
    Moved {
        #[serde(rename = "customerId")]
        customer: u64,
        #[personal(forgotten = Default, subject = customer)]
        age: u32,
        #[personal(subject = "fixed:crm")]
        crm_note: Option<String>,
    },
    // No personal field: nothing to describe.
    Deactivated {
        customer_id: String,
    },
    Renamed(String),
    Closed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "NewsletterSubscribed", alias = "Subscribed")]
struct NewsletterSubscribed {
    subscriber: String,
    #[personal(subject = subscriber, forgotten = "")]
    #[serde(rename = "emailAddress")]
    email: String,
    #[personal(subject = subscriber, forgotten = Default)]
    #[serde(default)]
    topics: Vec<String>,
}

#[test]
fn each_variant_describes_its_own_personal_fields_in_declaration_order() {
    let registered = CustomerEvent::personal_fields("Registered");
    assert_eq!(
        registered,
        [
            PersonalField {
                key: "name",
                subject: SubjectSource::Field("customer_id"),
                forgotten: Forgotten::Text("(forgotten)"),
            },
            PersonalField {
                key: "phone",
                subject: SubjectSource::Field("customer_id"),
                forgotten: Forgotten::Null,
            },
            PersonalField {
                key: "postalAddress",
                subject: SubjectSource::Field("customer_id"),
                forgotten: Forgotten::TypeDefault(|| json!(null)),
            },
        ]
    );
    assert_eq!(
        registered[2].forgotten.value(),
        json!({ "street": "", "city": "unknown" })
    );
    assert_eq!(registered[0].forgotten.value(), json!("(forgotten)"));
    assert_eq!(registered[1].forgotten.value(), json!(null));

    let moved = CustomerEvent::personal_fields("CustomerMoved");
    assert_eq!(
        moved,
        [
            PersonalField {
                key: "age",
                subject: SubjectSource::Field("customerId"),
                forgotten: Forgotten::TypeDefault(|| json!(null)),
            },
            PersonalField {
                key: "crm_note",
                subject: SubjectSource::Fixed("crm"),
                forgotten: Forgotten::Null,
            },
        ]
    );
    assert_eq!(moved[0].forgotten.value(), json!(0));
}

#[test]
fn the_keys_are_those_the_payload_holds() {
    let event = CustomerEvent::Registered {
        customer_id: "c-1".into(),
        name: "Ada".into(),
        phone: Some("555".into()),
        address: Address::default(),
        plan: 2,
    };
    let payload = event.encode().expect("encodes");
    for field in CustomerEvent::personal_fields(event.event_type()) {
        assert!(
            payload.get(field.key).is_some(),
            "{} is in {payload}",
            field.key
        );
        if let SubjectSource::Field(subject) = field.subject {
            assert_eq!(payload[subject], json!("c-1"));
        }
    }

    let moved = CustomerEvent::Moved {
        customer: 7,
        age: 40,
        crm_note: None,
    };
    let payload = moved.encode().expect("encodes");
    assert_eq!(payload["customerId"], json!(7));
    assert_eq!(payload["age"], json!(40));
}

#[test]
fn events_without_personal_fields_and_unknown_types_describe_none() {
    assert!(CustomerEvent::personal_fields("Deactivated").is_empty());
    assert!(CustomerEvent::personal_fields("Renamed").is_empty());
    assert!(CustomerEvent::personal_fields("Closed").is_empty());
    // The variant's Rust name is not its event type name.
    assert!(CustomerEvent::personal_fields("Moved").is_empty());
    assert!(CustomerEvent::personal_fields("NoSuchEvent").is_empty());
    assert!(CustomerEvent::personal_fields("").is_empty());
}

#[test]
fn a_struct_event_describes_its_fields_under_its_current_name() {
    assert_eq!(
        NewsletterSubscribed::personal_fields("NewsletterSubscribed"),
        [
            PersonalField {
                key: "emailAddress",
                subject: SubjectSource::Field("subscriber"),
                forgotten: Forgotten::Text(""),
            },
            PersonalField {
                key: "topics",
                subject: SubjectSource::Field("subscriber"),
                forgotten: Forgotten::TypeDefault(|| json!(null)),
            },
        ]
    );
    let fields = NewsletterSubscribed::personal_fields("NewsletterSubscribed");
    assert_eq!(fields[1].forgotten.value(), json!([]));
    // An alias names payloads of an older shape, which the declaration does not describe.
    assert!(NewsletterSubscribed::personal_fields("Subscribed").is_empty());
    assert!(NewsletterSubscribed::personal_fields("Other").is_empty());
}

#[test]
fn personal_fields_change_nothing_in_the_payload() {
    let event = NewsletterSubscribed {
        subscriber: "s-1".into(),
        email: "ada@example.com".into(),
        topics: vec!["rust".into()],
    };
    let payload = event.encode().expect("encodes");
    assert_eq!(
        payload,
        json!({ "subscriber": "s-1", "emailAddress": "ada@example.com", "topics": ["rust"] })
    );
    let decoded =
        NewsletterSubscribed::decode("NewsletterSubscribed", 1, payload).expect("decodes");
    assert_eq!(decoded, event);
}

/// A type whose encoding fails: `forgotten = Default` then gives `null`, without a panic.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
struct Unencodable;

impl Serialize for Unencodable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("never encodes"))
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent)]
enum Odd {
    Noted {
        who: String,
        #[personal(subject = who, forgotten = Default)]
        secret: Unencodable,
    },
}

#[test]
fn a_default_that_does_not_encode_reads_as_null() {
    let fields = Odd::personal_fields("Noted");
    assert_eq!(fields.len(), 1);
    assert_eq!(fields[0].forgotten.value(), json!(null));
}
