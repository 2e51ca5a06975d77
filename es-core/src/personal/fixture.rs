//! A hand-written event type with personal fields, for the unit tests of the personal
//! module and the harness (the derive's `#[personal]` writes the same).

use serde_json::{Value, json};

use crate::event::{DecodeError, DomainEvent, EncodeError};

use super::field::{Forgotten, PersonalField, SubjectSource};

/// `Registered { customer_id, name: personal "(forgotten)", phone: personal Option }`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Registered {
    pub(crate) customer_id: String,
    pub(crate) name: String,
    pub(crate) phone: Option<String>,
}

const FIELDS: &[PersonalField] = &[
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
];

impl Registered {
    pub(crate) fn of(customer_id: &str, name: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            name: name.to_owned(),
            phone: Some(format!("phone of {name}")),
        }
    }

    pub(crate) fn forgotten(customer_id: &str) -> Self {
        Self {
            customer_id: customer_id.to_owned(),
            name: "(forgotten)".to_owned(),
            phone: None,
        }
    }
}

impl DomainEvent for Registered {
    const EVENT_TYPES: &'static [&'static str] = &["Registered"];

    fn event_type(&self) -> &str {
        "Registered"
    }

    fn schema_version(&self) -> u32 {
        1
    }

    fn encode(&self) -> Result<Value, EncodeError> {
        Ok(json!({ "customer_id": self.customer_id, "name": self.name, "phone": self.phone }))
    }

    fn decode(event_type: &str, version: u32, payload: Value) -> Result<Self, DecodeError> {
        let text = |key: &str| payload.get(key).and_then(Value::as_str).map(str::to_owned);
        match (text("customer_id"), text("name")) {
            (Some(customer_id), Some(name)) if event_type == "Registered" => Ok(Self {
                customer_id,
                name,
                phone: text("phone"),
            }),
            _ => Err(DecodeError::InvalidPayload {
                event_type: event_type.to_owned(),
                version,
                source: <serde_json::Error as serde::de::Error>::custom("not a Registered").into(),
            }),
        }
    }

    fn personal_fields(event_type: &str) -> &'static [PersonalField] {
        if event_type == "Registered" {
            FIELDS
        } else {
            &[]
        }
    }
}
