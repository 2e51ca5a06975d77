//! The AsyncAPI document this example shares: valid AsyncAPI 3.0.0, equal to the committed
//! `asyncapi.yaml`, and shaped as the design notes describe.

#[path = "../../../es-asyncapi/tests/support/mod.rs"]
mod support;

use orders::channels;

/// The committed copy; `UPDATE_ASYNCAPI=1 cargo test -p orders --test asyncapi` rewrites it
/// after a deliberate change to the events.
const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/asyncapi.yaml");

#[test]
fn the_document_is_valid_asyncapi_3() {
    let document = channels::asyncapi().unwrap();
    let violations = support::violations(document.as_json());
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn the_document_equals_the_committed_copy() {
    let yaml = channels::asyncapi().unwrap().to_yaml().unwrap();
    support::assert_committed(&yaml, COMMITTED, "orders");
}

#[test]
fn the_document_has_the_designed_shape() {
    let document = channels::asyncapi().unwrap();
    let json = document.as_json();
    let channels: Vec<&String> = json["channels"].as_object().unwrap().keys().collect();
    assert_eq!(channels, ["EventSourceOrders"]);
    let channel = &json["channels"]["EventSourceOrders"];
    assert_eq!(channel["address"], "orders.{streamId}");
    let messages: Vec<&String> = channel["messages"].as_object().unwrap().keys().collect();
    assert_eq!(
        messages,
        [
            "OrderNew",
            "OrderPaymentReceived",
            "OrderPreparing",
            "OrderShipped"
        ]
    );
    let operations = json["operations"].as_object().unwrap();
    assert_eq!(operations.len(), 1);
    let send = &operations["publishOrderEvents"];
    assert_eq!(send["action"], "send");
    assert_eq!(send["messages"].as_array().unwrap().len(), 4);
    // The nested line item is a shared schema with its doc comments.
    let line = &json["components"]["schemas"]["LineItem"];
    assert_eq!(
        line["properties"]["sku"]["description"],
        "The product's stock-keeping unit."
    );
    assert_eq!(
        json["components"]["messages"]["OrderNew"]["payload"]["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/LineItem"
    );
}
