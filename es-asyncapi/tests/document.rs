//! Documents built from derived events: valid AsyncAPI 3.0.0, shaped as the stored events,
//! and typed errors for what cannot be described.

mod support;

use es_asyncapi::{AsyncApi, AsyncApiError, Channel, Operation, headers};
use es_core::{Aggregate, AggregateType, DomainEvent, EventSchema};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One line of a cart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
struct Line {
    /// The product.
    sku: String,
    quantity: u32,
}

fn added_v1(event: es_core::RawEvent) -> Result<es_core::RawEvent, es_core::UpcastError> {
    Ok(event.with_version(2))
}

/// What happens to a cart.
#[derive(Debug, Clone, DomainEvent, EventSchema)]
enum CartEvent {
    /// A cart was opened.
    ///
    /// One per customer session.
    #[event(name = "CartOpened")]
    Opened { customer: String },
    /// A line was added.
    #[event(name = "CartLineAdded", version = 2, alias = "LineAdded", upcast(from = 1, with = added_v1))]
    LineAdded { line: Line },
    #[event(name = "CartAbandoned")]
    Abandoned,
}

#[derive(Debug, Clone, DomainEvent, EventSchema)]
enum StockEvent {
    /// Stock ran out.
    #[event(name = "StockDepleted")]
    Depleted { sku: String },
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

macro_rules! aggregate {
    ($name:ident, $category:literal, $event:ty) => {
        #[derive(Debug, Default, AggregateType)]
        #[aggregate(name = $category, command = (), event = $event, error = Never)]
        struct $name;
        impl Aggregate for $name {
            async fn handle(&self, _: (), _: &()) -> Result<Vec<$event>, Never> {
                Ok(vec![])
            }
            fn apply(&mut self, _: &$event) {}
        }
    };
}
aggregate!(Cart, "cart", CartEvent);
aggregate!(Stock, "stock_item", StockEvent);

fn shop() -> AsyncApi {
    AsyncApi::new("Shop", "2.1.0")
        .description("Carts and stock.")
        .server("nats", "localhost:4222", "nats")
        .channel(Channel::for_aggregate::<Cart>().with_title("Carts"))
        .channel(Channel::for_aggregate::<Stock>().with_address("shop.{category}.{streamId}"))
        .operation(
            Operation::send("publishCartEvents", "EventSourceCarts")
                .summary("The cart service publishes."),
        )
        .operation(
            Operation::receive("onStockDepleted", "EventSourceStockItems")
                .messages(["StockDepleted"]),
        )
}

#[test]
fn the_document_is_valid_asyncapi_3() {
    let document = shop().build().unwrap();
    let violations = support::violations(document.as_json());
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_validator_rejects_what_breaks_the_specification() {
    // So that the test above can fail: the same document, broken in three ways.
    let mut document = shop().build().unwrap().as_json().clone();
    document["asyncapi"] = json!("2.6.0");
    document["operations"]["publishCartEvents"]["action"] = json!("publish");
    document["channels"]["EventSourceCarts"]["address"] = json!(42);
    let violations = support::violations(&document);
    for path in [
        "/asyncapi",
        "/operations/publishCartEvents",
        "/channels/EventSourceCarts",
    ] {
        assert!(
            violations.iter().any(|v| v.starts_with(path)),
            "{path} not reported: {violations:#?}"
        );
    }
}

#[test]
fn channels_messages_and_operations_are_named_from_the_code() {
    let document = shop().build().unwrap();
    let json = document.as_json();
    assert_eq!(
        json["info"],
        json!({"title": "Shop", "version": "2.1.0", "description": "Carts and stock."})
    );
    let carts = &json["channels"]["EventSourceCarts"];
    assert_eq!(carts["address"], "carts.{streamId}");
    assert_eq!(carts["title"], "Carts");
    assert!(
        carts["parameters"]["streamId"]["description"]
            .as_str()
            .unwrap()
            .contains("42")
    );
    let messages: Vec<&String> = carts["messages"].as_object().unwrap().keys().collect();
    assert_eq!(messages, ["CartAbandoned", "CartLineAdded", "CartOpened"]);
    assert_eq!(
        carts["messages"]["CartOpened"]["$ref"],
        "#/components/messages/CartOpened"
    );

    let stock = &json["channels"]["EventSourceStockItems"];
    assert_eq!(stock["address"], "shop.{category}.{streamId}");
    assert_eq!(stock["parameters"].as_object().unwrap().len(), 2);

    let send = &json["operations"]["publishCartEvents"];
    assert_eq!(send["action"], "send");
    assert_eq!(send["channel"]["$ref"], "#/channels/EventSourceCarts");
    assert_eq!(
        send["messages"].as_array().unwrap().len(),
        3,
        "all by default"
    );
    assert_eq!(send["summary"], "The cart service publishes.");
    let receive = &json["operations"]["onStockDepleted"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(
        receive["messages"],
        json!([{"$ref": "#/channels/EventSourceStockItems/messages/StockDepleted"}])
    );
    assert_eq!(
        json["servers"]["nats"],
        json!({"host": "localhost:4222", "protocol": "nats"})
    );
}

#[test]
fn a_message_is_the_event_type_as_stored() {
    let document = shop().build().unwrap();
    let messages = &document.as_json()["components"]["messages"];
    let opened = &messages["CartOpened"];
    assert_eq!(opened["name"], "CartOpened");
    assert_eq!(opened["title"], "Opened");
    assert_eq!(opened["summary"], "A cart was opened.");
    assert_eq!(opened["description"], "One per customer session.");
    assert_eq!(opened["contentType"], "application/json");
    assert_eq!(opened["x-es-schema-version"], 1);
    assert!(opened.get("x-es-older-versions").is_none());
    assert_eq!(opened["payload"]["required"], json!(["customer"]));
    assert_eq!(
        opened["correlationId"]["location"],
        format!("$message.header#/{}", headers::CORRELATION_ID)
    );
    assert!(
        messages["CartAbandoned"].get("summary").is_none(),
        "no doc comment, no summary"
    );

    let added = &messages["CartLineAdded"];
    assert_eq!(added["x-es-schema-version"], 2);
    assert_eq!(added["x-es-older-versions"], json!([1]));
    assert_eq!(added["x-es-aliases"], json!(["LineAdded"]));
    // The nested type is a shared schema, referred to where the document keeps them.
    assert_eq!(
        added["payload"]["properties"]["line"]["$ref"],
        "#/components/schemas/Line"
    );
    let line = &document.as_json()["components"]["schemas"]["Line"];
    assert_eq!(line["properties"]["sku"]["description"], "The product.");

    // The payload schema accepts what the store writes for the event.
    let stored = CartEvent::LineAdded {
        line: Line {
            sku: "a".into(),
            quantity: 2,
        },
    }
    .encode()
    .unwrap();
    assert_eq!(stored, json!({"line": {"sku": "a", "quantity": 2}}));
}

#[test]
fn headers_name_the_event_and_its_versions() {
    let document = shop().build().unwrap();
    let headers = &document.as_json()["components"]["messages"]["CartLineAdded"]["headers"];
    assert_eq!(headers["discriminator"], headers::EVENT_TYPE);
    assert_eq!(
        headers["properties"][headers::EVENT_TYPE]["enum"],
        json!(["CartLineAdded", "LineAdded"]),
        "an event stored under its old name is relayed under it"
    );
    assert_eq!(headers["properties"][headers::SOURCE]["const"], "cart");
    assert_eq!(
        headers["properties"][headers::SCHEMA_VERSION]["enum"],
        json!(["1", "2"])
    );
    let required: Vec<&str> = headers["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for name in [
        headers::EVENT_ID,
        headers::EVENT_TYPE,
        headers::STREAM_ID,
        headers::VERSION,
        headers::POSITION,
    ] {
        assert!(required.contains(&name), "{name}");
    }
    assert!(
        !required.contains(&headers::CORRELATION_ID),
        "not every event has one"
    );
}

#[test]
fn yaml_and_json_hold_the_same_document() {
    let document = shop().build().unwrap();
    let from_yaml: Value = serde_norway::from_str(&document.to_yaml().unwrap()).unwrap();
    assert_eq!(&from_yaml, document.as_json());
    let from_json: Value = serde_json::from_str(&document.to_json_pretty()).unwrap();
    assert_eq!(&from_json, document.as_json());
}

#[test]
fn bad_input_is_a_typed_error_that_says_what_to_fix() {
    let cases: Vec<(AsyncApi, &str)> = vec![
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>().with_address("carts.*")),
            "channel `EventSourceCarts`: address `carts.*` is invalid",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>().with_address("carts.{id}")),
            "`{id}` is not a parameter",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>().with_name("carts and more")),
            "channel `carts and more` cannot be an AsyncAPI id",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>())
                .channel(Channel::for_aggregate::<Cart>()),
            "two channels are named `EventSourceCarts`",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>())
                .channel(Channel::for_aggregate::<Cart>().with_name("Again")),
            "event type `CartOpened` is in channels `EventSourceCarts` and `Again`",
        ),
        (
            AsyncApi::new("x", "1").operation(Operation::send("s", "Nowhere")),
            "operation `s` names channel `Nowhere`, which is not in the document",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>())
                .operation(Operation::receive("r", "EventSourceCarts").messages(["CartClosed"])),
            "names message `CartClosed`, which channel `EventSourceCarts` does not carry (it carries: CartOpened, CartLineAdded, CartAbandoned)",
        ),
        (
            AsyncApi::new("x", "1")
                .channel(Channel::for_aggregate::<Cart>())
                .operation(Operation::send("s", "EventSourceCarts"))
                .operation(Operation::send("s", "EventSourceCarts")),
            "two operations are named `s`",
        ),
    ];
    for (builder, expected) in cases {
        let error = builder.build().unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{error}\nexpected: {expected}"
        );
    }
}

#[derive(Debug, Clone, DomainEvent, EventSchema)]
enum SlashEvent {
    #[event(name = "billing/Invoiced")]
    Invoiced,
}
aggregate!(Invoice, "invoice", SlashEvent);

#[test]
fn an_event_type_name_that_is_not_a_message_id_is_refused() {
    let error = AsyncApi::new("x", "1")
        .channel(Channel::for_aggregate::<Invoice>())
        .build()
        .unwrap_err();
    assert!(
        matches!(
            error,
            AsyncApiError::InvalidId {
                what: "event type",
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "event type `billing/Invoiced` cannot be an AsyncAPI id: use only ASCII letters, digits, `.`, `-` and `_` (in channel `EventSourceInvoices`)"
    );
}

/// Every variant's stored payload is valid against its message's payload schema (with the
/// document's shared schemas in reach of its `$ref`s).
#[test]
fn each_stored_payload_is_valid_against_its_schema() {
    let document = shop().build().unwrap();
    let json = document.as_json();
    let stored = [
        (
            "CartOpened",
            CartEvent::Opened {
                customer: "ada".into(),
            }
            .encode()
            .unwrap(),
        ),
        (
            "CartLineAdded",
            CartEvent::LineAdded {
                line: Line {
                    sku: "a".into(),
                    quantity: 2,
                },
            }
            .encode()
            .unwrap(),
        ),
        ("CartAbandoned", CartEvent::Abandoned.encode().unwrap()),
        (
            "StockDepleted",
            StockEvent::Depleted { sku: "x".into() }.encode().unwrap(),
        ),
    ];
    for (name, payload) in stored {
        let mut schema = json["components"]["messages"][name]["payload"].clone();
        schema["components"] = json!({ "schemas": json["components"]["schemas"] });
        let validator = jsonschema::draft7::new(&schema).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&payload)
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors.is_empty(),
            "{name}: {payload} against {schema}: {errors:?}"
        );
        // And the schema is not vacuous: a payload of the wrong shape fails it.
        assert!(
            !validator.is_valid(&json!(["not", "an", "object"])),
            "{name}"
        );
    }
}

/// A field with a default is not required: events stored before it was added lack it, and
/// the relay publishes them as stored.
#[test]
fn a_field_with_a_default_is_not_required() {
    #[derive(Debug, Clone, DomainEvent, EventSchema)]
    enum NoteEvent {
        #[event(name = "NoteTaken")]
        Taken {
            text: String,
            #[serde(default)]
            pinned: bool,
            tag: Option<String>,
        },
    }
    aggregate!(Note, "note", NoteEvent);
    let document = AsyncApi::new("x", "1")
        .channel(Channel::for_aggregate::<Note>())
        .build()
        .unwrap();
    let payload = &document.as_json()["components"]["messages"]["NoteTaken"]["payload"];
    assert_eq!(payload["required"], json!(["text"]), "{payload}");
    let old = NoteEvent::decode("NoteTaken", 1, json!({ "text": "hi" }));
    assert!(old.is_ok(), "and such an old payload reads");
}
