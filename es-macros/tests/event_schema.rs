//! `#[derive(EventSchema)]`: names, versions, docs and payload schemas as stored.

use es_core::{DomainEvent, EventSchema};
use schemars::SchemaGenerator;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A line of an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Line {
    sku: String,
    quantity: u32,
}

fn v1(event: es_core::RawEvent) -> Result<es_core::RawEvent, es_core::UpcastError> {
    Ok(event.with_version(2))
}

fn v2(event: es_core::RawEvent) -> Result<es_core::RawEvent, es_core::UpcastError> {
    Ok(event.with_version(3))
}

#[derive(Debug, Clone, PartialEq, DomainEvent, EventSchema)]
enum OrderEvent {
    /// The customer placed the order.
    ///
    /// Lines are never empty.
    #[event(name = "OrderNew")]
    Placed {
        /// Who ordered.
        customer: String,
        lines: Vec<Line>,
        #[serde(rename = "note_text", default)]
        note: Option<String>,
        #[serde(skip)]
        cached: u8,
    },
    #[event(name = "OrderShipped", version = 3, alias = "Shipped", upcast(from = 2, with = v2), upcast(from = 1, with = v1))]
    Shipped(String),
    Cancelled,
    Reopened {},
}

fn described() -> (Vec<es_core::EventDescription>, Value) {
    let mut generator = SchemaGenerator::default();
    let described = OrderEvent::describe(&mut generator);
    let definitions = Value::Object(generator.take_definitions(true));
    (described, definitions)
}

#[test]
fn one_description_per_event_type_in_declaration_order() {
    let (described, _) = described();
    let names: Vec<_> = described.iter().map(|d| d.name()).collect();
    assert_eq!(names, ["OrderNew", "OrderShipped", "Cancelled", "Reopened"]);
    assert_eq!(
        names,
        OrderEvent::EVENT_TYPES[..4],
        "the same names DomainEvent stores"
    );
    assert_eq!(described[1].version(), 3);
    assert_eq!(described[0].version(), 1);
    assert_eq!(described[0].rust_name(), "Placed");
    assert_eq!(described[1].aliases(), ["Shipped"]);
    assert_eq!(described[1].older_versions(), [1, 2], "ascending");
    assert!(described[0].older_versions().is_empty());
}

#[test]
fn docs_are_the_doc_comment() {
    let (described, _) = described();
    assert_eq!(
        described[0].docs(),
        "The customer placed the order.\n\nLines are never empty."
    );
    assert_eq!(described[2].docs(), "");
}

#[test]
fn struct_variant_schema_follows_the_stored_payload() {
    let (described, definitions) = described();
    let schema = described[0].payload().as_value();
    assert_eq!(schema["type"], "object");
    let properties = schema["properties"].as_object().unwrap();
    let mut keys: Vec<_> = properties.keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["customer", "lines", "note_text"],
        "renamed and skipped as serde does"
    );
    assert_eq!(schema["required"], json!(["customer", "lines"]));
    assert_eq!(properties["customer"]["description"], "Who ordered.");
    // Nested types are definitions, referred to by `$ref`.
    assert!(
        properties["lines"]["items"]["$ref"]
            .as_str()
            .unwrap()
            .ends_with("/Line")
    );
    assert_eq!(
        definitions["Line"]["properties"]["quantity"]["type"],
        "integer"
    );

    // And the stored payload has exactly those keys.
    let stored = OrderEvent::Placed {
        customer: "ada".into(),
        lines: vec![],
        note: Some("x".into()),
        cached: 7,
    }
    .encode()
    .unwrap();
    let mut stored_keys: Vec<_> = stored.as_object().unwrap().keys().cloned().collect();
    stored_keys.sort();
    assert_eq!(stored_keys, keys);
}

#[test]
fn newtype_and_unit_payloads() {
    let (described, _) = described();
    assert_eq!(described[1].payload().as_value()["type"], "string");
    for unit in &described[2..] {
        let schema = unit.payload().as_value();
        assert_eq!(
            schema["type"],
            "object",
            "{}: the payload is {{}}",
            unit.name()
        );
        assert!(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .is_none_or(|p| p.is_empty())
        );
    }
}

/// A struct event is its own payload, container attributes included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent, EventSchema)]
#[serde(rename_all = "camelCase")]
#[event(name = "UserRenamed", version = 2, upcast(from = 1, with = v1))]
struct UserRenamed {
    new_name: String,
}

#[test]
fn struct_event_schema_carries_its_container_attributes() {
    let mut generator = SchemaGenerator::default();
    let described = UserRenamed::describe(&mut generator);
    assert_eq!(described.len(), 1);
    assert_eq!(described[0].name(), "UserRenamed");
    assert_eq!(described[0].version(), 2);
    assert_eq!(described[0].older_versions(), [1]);
    assert_eq!(
        described[0].payload().as_value()["required"],
        json!(["newName"])
    );
    let stored = UserRenamed {
        new_name: "x".into(),
    }
    .encode()
    .unwrap();
    assert_eq!(stored, json!({"newName": "x"}));
}

/// A number stored as a string, through serde's `with`.
mod as_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&n.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, PartialEq, DomainEvent, EventSchema)]
enum CounterEvent {
    /// `serde(with)` names a module, which schemars cannot describe; `schemars(with)` says
    /// what the stored value looks like.
    Counted {
        #[serde(with = "as_string")]
        #[schemars(with = "String")]
        count: u64,
    },
}

#[test]
fn schemars_attributes_describe_what_serde_with_stores() {
    let mut generator = SchemaGenerator::default();
    let described = CounterEvent::describe(&mut generator);
    assert_eq!(
        described[0].payload().as_value()["properties"]["count"]["type"],
        "string"
    );
    assert_eq!(
        CounterEvent::Counted { count: 7 }.encode().unwrap(),
        json!({"count": "7"}),
        "and that is what is stored"
    );
}
