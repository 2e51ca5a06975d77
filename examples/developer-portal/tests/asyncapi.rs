//! The AsyncAPI document this example shares: valid AsyncAPI 3.0.0, equal to the committed
//! `asyncapi.yaml`, and shaped as the design notes describe.

#[path = "../../../es-asyncapi/tests/support/mod.rs"]
mod support;

use developer_portal::channels;

/// The committed copy; `UPDATE_ASYNCAPI=1 cargo test -p developer-portal --test asyncapi` rewrites it
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
    support::assert_committed(&yaml, COMMITTED, "developer-portal");
}

#[test]
fn the_document_has_the_designed_shape() {
    let document = channels::asyncapi().unwrap();
    let json = document.as_json();
    let channels: Vec<&String> = json["channels"].as_object().unwrap().keys().collect();
    assert_eq!(channels, ["EventSourceApplications", "EventSourceSurveys"]);
    assert_eq!(
        json["channels"]["EventSourceApplications"]["messages"]
            .as_object()
            .unwrap()
            .len(),
        7
    );
    let receive = &json["operations"]["surveyOnProductRemoval"];
    assert_eq!(receive["action"], "receive");
    assert_eq!(
        receive["messages"],
        serde_json::json!([{"$ref": "#/channels/EventSourceApplications/messages/ApiProductRemoved"}])
    );
    let created = &json["components"]["messages"]["CredentialsGenerated"]["payload"];
    assert_eq!(created["properties"]["issued_at"]["format"], "date-time");
}
